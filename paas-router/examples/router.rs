//! `paas_router::Router` on its own, with a static table: for bench/router.sh (standalone
//! mode) and for poking at the router by hand without a supervisor.
//!
//! Usage: router --listen ADDR --route HOST=ADDR[,ADDR...] [--route ...]
//!               [--base-domain D] [--threads N] [--access-log]
//! Each HOST becomes a custom domain of an app named after its first label; `HOST=` with no
//! address gives an app without instances. Without
//! `--access-log` the access sink only counts lines (printed at exit), which is what the
//! benchmark compares against nginx with `access_log off`.

#![forbid(unsafe_code)]

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use anyhow::{bail, Context};
use clap::Parser;
use paas_router::{AccessLine, AccessSink, RouteTable, Router, RouterOptions, Upstream};

#[derive(Parser)]
struct Args {
    #[arg(long)]
    listen: SocketAddr,
    /// HOST=ADDR[,ADDR...]
    #[arg(long = "route", required = true)]
    routes: Vec<String>,
    #[arg(long, default_value = "paas.test")]
    base_domain: String,
    /// Tokio worker threads; 1 runs a current-thread runtime.
    #[arg(long)]
    threads: Option<usize>,
    /// Print access lines to stdout instead of only counting them.
    #[arg(long)]
    access_log: bool,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let mut table = RouteTable::new(&args.base_domain);
    for route in &args.routes {
        let Some((host, addrs)) = route.split_once('=') else {
            bail!("--route {route:?}: expected HOST=ADDR[,ADDR...]");
        };
        // `HOST=` routes an app with no instance (a 503), for trying the error page.
        let upstreams = addrs
            .split(',')
            .filter(|a| !a.is_empty())
            .enumerate()
            .map(|(i, a)| {
                Ok(Upstream {
                    addr: a
                        .parse()
                        .with_context(|| format!("--route {route:?}: {a:?}"))?,
                    instance: format!("web.{}", i + 1),
                    release: 1,
                })
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        let app = host.split('.').next().unwrap_or(host);
        table.add_app(app, &[host.to_string()], upstreams);
    }

    let lines = Arc::new(AtomicU64::new(0));
    let counted = lines.clone();
    let print = args.access_log;
    let sink: AccessSink = Arc::new(move |l: AccessLine| {
        counted.fetch_add(1, Ordering::Relaxed);
        if print {
            println!(
                "app={} {} {} status={} bytes={} {:?} instance={} release={} request_id={}",
                l.app,
                l.method,
                l.path,
                l.status,
                l.bytes,
                l.duration,
                l.instance.as_deref().unwrap_or("-"),
                l.release.map_or("-".to_string(), |r| format!("v{r}")),
                l.request_id
            );
        }
    });

    let threads = args
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let rt = if threads <= 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .enable_all()
            .build()?
    };
    rt.block_on(async {
        let router = Router::new(RouterOptions::default(), sink);
        router.publish(table);
        let listener =
            paas_router::bind(args.listen).with_context(|| format!("bind {}", args.listen))?;
        eprintln!("router: listening on {}", listener.local_addr()?);
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        router
            .serve(listener, async move {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            })
            .await;
        anyhow::Ok(())
    })?;
    eprintln!("router: {} access lines", lines.load(Ordering::Relaxed));
    Ok(())
}
