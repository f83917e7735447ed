//! `paasd` binary: parse flags, initialise logging, wait for SIGTERM/SIGINT, call [`paasd::run`].

#![forbid(unsafe_code)]

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;

/// The paas daemon. Every flag overrides the key of the same name in the config file.
#[derive(Debug, Parser)]
#[command(name = "paasd", version)]
struct Flags {
    /// Config file (default /etc/paas/paasd.toml, read if it exists).
    #[arg(long)]
    config: Option<PathBuf>,
    /// API socket path (default /run/paas/paasd.sock).
    #[arg(long)]
    socket: Option<PathBuf>,
    /// State directory: database, key (unless --key-file), slugs, logs (default /var/lib/paas).
    #[arg(long)]
    state_dir: Option<PathBuf>,
    /// Config-var encryption key file (default /etc/paas/secret.key, or STATE_DIR/secret.key).
    #[arg(long)]
    key_file: Option<PathBuf>,
    /// Group allowed to use the API socket (default paas).
    #[arg(long)]
    socket_group: Option<String>,
    /// Router listen address (default 0.0.0.0:80).
    #[arg(long)]
    http: Option<SocketAddr>,
    /// Apps are served at APP.BASE_DOMAIN (default paas.localhost).
    #[arg(long)]
    base_domain: Option<String>,
    /// cgroup subtree for containers (default paas).
    #[arg(long)]
    cgroup_parent: Option<String>,
    /// Bridge for instance networking (default paas0).
    #[arg(long)]
    bridge: Option<String>,
    /// Instance subnet (default 10.88.0.0/16).
    #[arg(long)]
    subnet: Option<String>,
    /// Directory of the built-in buildpacks (default /usr/local/share/paas/buildpacks).
    #[arg(long)]
    buildpacks_dir: Option<PathBuf>,
    /// The system user `git push` logs in as ([git] user; default paas).
    #[arg(long)]
    git_user: Option<String>,
}

fn main() -> anyhow::Result<()> {
    // The container helper mode: a fresh single-threaded process that may fork (see runtime).
    if std::env::args_os()
        .nth(1)
        .is_some_and(|a| a == paas_runtime::helper::HELPER_ARG)
    {
        std::process::exit(paas_runtime::helper::main());
    }
    let flags = Flags::parse();
    // Private by default: the database, key and logs are root's. Set before any thread starts;
    // files meant to be shared (the socket) get their mode explicitly.
    nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o077));
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("PAASD_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let config = paasd::Config::load(paasd::Overrides {
        config: flags.config,
        socket: flags.socket,
        state_dir: flags.state_dir,
        key_file: flags.key_file,
        socket_group: flags.socket_group,
        http: flags.http,
        base_domain: flags.base_domain,
        cgroup_parent: flags.cgroup_parent,
        bridge: flags.bridge,
        subnet: flags.subnet,
        buildpacks_dir: flags.buildpacks_dir,
        git_user: flags.git_user,
    })?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("paasd")
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async {
        let shutdown = shutdown_signal()?;
        paasd::run(config, shutdown).await?;
        anyhow::Ok(())
    })
}

/// Resolves on the first SIGTERM or SIGINT.
fn shutdown_signal() -> anyhow::Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).context("installing SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("installing SIGINT handler")?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM received"),
            _ = int.recv() => tracing::info!("SIGINT received"),
        }
    })
}
