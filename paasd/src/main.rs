//! `paasd` binary: parse flags, initialise logging, wait for SIGTERM/SIGINT, call [`paasd::run`].
//! SIGTERM is a restart: apps keep running for the next paasd (unless systemd is stopping
//! the unit, not restarting it); SIGINT stops everything.

#![forbid(unsafe_code)]

use anyhow::Context;
use clap::Parser;

/// mimalloc, not glibc's malloc, for every Rust allocation of paasd and its edge (the
/// router's process). At 2,000 connections the router has that many requests in flight, each
/// with ~10 short-lived allocations: far past glibc's per-thread cache (7 chunks per size),
/// so most went through its arena's slow paths (`malloc_consolidate`, `unlink_chunk`,
/// `_int_free`), a fifth of the router's cache misses. mimalloc's per-page free lists cut the
/// router's instructions per request by 8% and its last-level cache misses by 21%
/// (docs/benchmarks.md), and it hands freed pages back to the kernel by itself a few seconds
/// after a burst, where glibc kept the peak until `malloc_trim`. C libraries (SQLite, the TLS
/// crypto) keep glibc's heap, which `paas_runtime::heap::trim` still trims.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
    // The edge mode: the router's process (`paasd __edge STATE_DIR`), started by paasd.
    let mut args = std::env::args_os().skip(1);
    if args.next().is_some_and(|a| a == paasd::edge::EDGE_ARG) {
        init_process();
        let Some(state_dir) = args.next() else {
            anyhow::bail!("usage: paasd __edge STATE_DIR");
        };
        std::process::exit(paasd::edge::main(std::path::Path::new(&state_dir)));
    }
    let flags = Flags::parse();
    init_process();
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

/// Private files by default and logging to stderr (the journal under systemd).
fn init_process() {
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
}

/// Resolves on the first SIGTERM or SIGINT, with what becomes of the app instances.
fn shutdown_signal() -> anyhow::Result<impl std::future::Future<Output = paasd::Shutdown>> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).context("installing SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("installing SIGINT handler")?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => {
                if systemd_is_stopping().await {
                    tracing::info!("SIGTERM received: systemd stops paasd; stopping the apps too");
                    paasd::Shutdown::StopAll
                } else {
                    tracing::info!("SIGTERM received: restarting; the apps keep running");
                    paasd::Shutdown::Detach
                }
            }
            _ = int.recv() => {
                tracing::info!("SIGINT received: stopping paasd and the apps");
                paasd::Shutdown::StopAll
            }
        }
    })
}

/// Under systemd, SIGTERM comes for `systemctl stop` (and at shutdown) as for `systemctl
/// restart`; only the job queued for our unit tells them apart ("stop" or "restart"). Not
/// under systemd, or unable to ask: false (a restart keeps the apps; SIGINT stops them).
async fn systemd_is_stopping() -> bool {
    if std::env::var_os("INVOCATION_ID").is_none() {
        return false;
    }
    let Some(unit) = own_unit() else {
        return false;
    };
    let asked = tokio::process::Command::new("systemctl")
        .args(["list-jobs", "--no-legend", "--plain", "--full", &unit])
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .output();
    match tokio::time::timeout(std::time::Duration::from_secs(3), asked).await {
        Ok(Ok(out)) => job_is_stop(&String::from_utf8_lossy(&out.stdout), &unit),
        _ => false,
    }
}

/// The systemd unit whose cgroup this process is in (`paasd.service`).
fn own_unit() -> Option<String> {
    let text = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    text.lines()
        .flat_map(|l| l.split('/'))
        .rfind(|c| c.ends_with(".service"))
        .map(str::to_string)
}

/// `systemctl list-jobs` lines are `ID UNIT TYPE STATE`.
fn job_is_stop(listing: &str, unit: &str) -> bool {
    listing.lines().any(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        f.len() >= 3 && f[1] == unit && f[2] == "stop"
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn only_a_stop_job_stops_the_apps() {
        let unit = "paasd.service";
        assert!(super::job_is_stop("123 paasd.service stop running\n", unit));
        assert!(!super::job_is_stop(
            "124 paasd.service restart running\n",
            unit
        ));
        assert!(!super::job_is_stop(
            "125 other.service stop running\n",
            unit
        ));
        assert!(!super::job_is_stop("", unit));
    }
}
