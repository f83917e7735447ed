//! `paas_router::Router` on its own, with a static table: for bench/router.sh (standalone
//! mode) and for poking at the router by hand without a supervisor.
//!
//! Usage: router --listen ADDR --route HOST=ADDR[,ADDR...] [--route ...]
//!               [--base-domain D] [--threads N] [--access-log] [--max-connections-per-ip N]
//!               [--max-idle-per-upstream N]
//!               [--tls-listen ADDR --cert FILE --key FILE [--tls-name NAME ...]
//!                [--https-redirect]]
//! Each HOST becomes a custom domain of an app named after its first label; `HOST=` with no
//! address gives an app without instances. Without
//! `--access-log` the access sink only counts lines (printed at exit), which is what the
//! benchmark compares against nginx with `access_log off`.
//!
//! With `--tls-listen` the same router also serves TLS there (HTTP/2 by ALPN, else HTTP/1.1)
//! with the one certificate chain of `--cert` (PEM, leaf first) and its key `--key`, for every
//! `--tls-name` or, without one, for every route's HOST, `*.BASE-DOMAIN` and `localhost`. A
//! client must send one of those names as SNI (the router picks certificates by SNI; a client
//! of `https://127.0.0.1/` sends none): the benchmark uses `https://localhost:PORT/` with a
//! `Host` header. Plain HTTP is still proxied, not redirected, unless `--https-redirect`
//! gives the apps the router's default (a 308 to `https://` for names with a certificate).

#![forbid(unsafe_code)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use anyhow::{bail, Context};
use clap::Parser;
use paas_router::tls::{Certificate, Certs};
use paas_router::{AccessLine, AccessSink, Https, RouteTable, Router, RouterOptions, Upstream};

/// The allocator paasd's edge runs the router with (see paasd/src/main.rs), so that the
/// benchmark measures what production runs.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
    /// Client connections from one source address (the router's default is 256; a load
    /// generator on loopback needs more).
    #[arg(long)]
    max_connections_per_ip: Option<usize>,
    /// Idle keep-alive connections kept per upstream (the router's default keeps them all
    /// until their idle timeout).
    #[arg(long)]
    max_idle_per_upstream: Option<usize>,
    /// Also serve TLS on this address (needs --cert and --key).
    #[arg(long, requires_all = ["cert", "key"])]
    tls_listen: Option<SocketAddr>,
    /// PEM certificate chain, leaf first.
    #[arg(long, requires = "tls_listen")]
    cert: Option<PathBuf>,
    /// PEM private key of the leaf (PKCS#8, PKCS#1 or SEC1).
    #[arg(long, requires = "tls_listen")]
    key: Option<PathBuf>,
    /// A name (or `*.parent`) to serve the certificate for; repeatable.
    #[arg(long = "tls-name", requires = "tls_listen")]
    tls_names: Vec<String>,
    /// Redirect plain-HTTP requests to HTTPS (the router's default for an app).
    #[arg(long, requires = "tls_listen")]
    https_redirect: bool,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let mut table = RouteTable::new(&args.base_domain);
    let mut hosts = Vec::new();
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
        table.set_https(
            app,
            Https {
                redirect: args.https_redirect,
                hsts: false,
            },
        );
        hosts.push(host.to_string());
    }
    let certs = match (&args.cert, &args.key) {
        (Some(cert), Some(key)) => {
            let read = |p: &PathBuf| std::fs::read(p).with_context(|| format!("{}", p.display()));
            let cert = Certificate::from_pem(&read(cert)?, &read(key)?)
                .with_context(|| format!("--cert {} --key {}", cert.display(), key.display()))?;
            let names = if args.tls_names.is_empty() {
                hosts
                    .iter()
                    .cloned()
                    .chain([format!("*.{}", args.base_domain), "localhost".to_string()])
                    .collect()
            } else {
                args.tls_names.clone()
            };
            let mut certs = Certs::new();
            for name in &names {
                certs.add(name, cert.clone());
            }
            Some(certs)
        }
        _ => None,
    };

    let lines = Arc::new(AtomicU64::new(0));
    let counted = lines.clone();
    let print = args.access_log;
    let sink: AccessSink = Arc::new(move |l: &AccessLine<'_>| {
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
                l.instance.unwrap_or("-"),
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
    let mut opts = RouterOptions::default();
    if let Some(n) = args.max_connections_per_ip {
        opts.max_connections_per_ip = n;
    }
    if let Some(n) = args.max_idle_per_upstream {
        opts.max_idle_per_upstream = n;
    }
    rt.block_on(async {
        let router = Router::new(opts, sink);
        router.publish(table);
        let listener =
            paas_router::bind(args.listen).with_context(|| format!("bind {}", args.listen))?;
        eprintln!("router: listening on {}", listener.local_addr()?);
        // Both listeners stop at the first SIGINT or SIGTERM.
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let stopping = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
            let _ = rx.wait_for(|s| *s).await;
        };
        let tls = match (args.tls_listen, certs) {
            (Some(addr), Some(certs)) => {
                router.publish_certs(certs);
                let listener = paas_router::bind(addr).with_context(|| format!("bind {addr}"))?;
                eprintln!("router: TLS on {}", listener.local_addr()?);
                let serving = Arc::clone(&router).serve_tls(listener, stopping(stopped.clone()));
                Some(tokio::spawn(serving))
            }
            _ => None,
        };
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        tokio::spawn(async move {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            let _ = stop.send(true);
        });
        Arc::clone(&router).serve(listener, stopping(stopped)).await;
        if let Some(tls) = tls {
            tls.await?.context("TLS listener")?;
        }
        anyhow::Ok(())
    })?;
    eprintln!("router: {} access lines", lines.load(Ordering::Relaxed));
    Ok(())
}
