//! HTTP/1.1 API on the Unix socket: our own accept loop (a task per connection, so a slow or
//! streaming client never blocks another) and graceful shutdown (stop accepting, let
//! in-flight requests finish, bounded). Translates HTTP to service calls; no business logic.

pub mod access;
pub mod body;
pub mod error;
pub mod logs;
pub mod routes;
pub mod socket;

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::UnixListener;

use crate::apps::Apps;

/// What handlers can reach.
pub struct State {
    pub addons: crate::addons::Addons,
    pub platform: crate::platform_backup::PlatformBackups,
    pub volumes: crate::volumes::Volumes,
    pub apps: Apps,
    pub oneoffs: crate::oneoff::OneOffs,
    pub builds: crate::build::Builds,
    pub supervisor: crate::supervisor::Supervisor,
    pub certs: crate::certs::Certs,
    /// app.json `cron`: `GET /apps/{app}/cron`.
    pub cron: crate::cron::Cron,
    /// Where the HTTP router listens (known once it is bound).
    pub router_addr: Option<std::net::SocketAddr>,
    /// Where the router serves HTTPS, if configured.
    pub router_tls_addr: Option<std::net::SocketAddr>,
    /// The router's process: its client connection counters.
    pub edge: crate::edge::Edge,
    pub stacks: crate::stacks::Stacks,
    pub logs: crate::logs::Logs,
    pub git: crate::git::Git,
    pub limits: body::Limits,
    pub started: Instant,
}

/// How long shutdown waits for in-flight requests before giving up on them.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);

/// Serves until `shutdown` resolves, then drains open connections.
pub async fn serve(listener: UnixListener, state: Arc<State>, shutdown: impl Future<Output = ()>) {
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let stream = match accepted {
                    Ok((stream, _)) => stream,
                    Err(e) => {
                        // EMFILE and friends: back off instead of spinning, keep serving.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let state = Arc::clone(&state);
                // Who is on the other end, for the deployment record.
                let peer_uid = stream.peer_cred().ok().map(|c| c.uid());
                let service = service_fn(move |req| {
                    let state = Arc::clone(&state);
                    async move { Ok::<_, std::convert::Infallible>(routes::handle(state, req, peer_uid).await) }
                });
                let conn = http1::Builder::new()
                    .timer(TokioTimer::new())
                    .header_read_timeout(Duration::from_secs(30))
                    .serve_connection(TokioIo::new(stream), service);
                let conn = graceful.watch(conn);
                tokio::spawn(async move {
                    if let Err(e) = conn.await {
                        tracing::debug!(error = %e, "api connection ended with an error");
                    }
                });
            }
            () = &mut shutdown => break,
        }
    }
    drop(listener);
    tracing::info!("shutting down: no new connections, finishing in-flight requests");
    tokio::select! {
        () = graceful.shutdown() => tracing::info!("all connections closed"),
        () = tokio::time::sleep(DRAIN_TIMEOUT) => tracing::warn!("drain timeout; closing remaining connections"),
    }
}
