//! `paasd` binary: parse flags, initialise logging, wait for SIGTERM/SIGINT, call [`paasd::run`].

#![forbid(unsafe_code)]

use anyhow::Context;
use clap::Parser;

/// The paas daemon. Every flag overrides the key of the same name in the config file.
#[derive(Debug, Parser)]
#[command(name = "paasd", version)]
struct Flags {
    #[command(flatten)]
    overrides: paasd::Overrides,
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
    let config = paasd::Config::load(flags.overrides)?;
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
