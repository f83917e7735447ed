//! The HTTP router: Host → app → one of its ready upstreams (DESIGN §10).
//!
//! This module owns the [`Router`] itself: the accept loop and connection tasks, the
//! published route snapshot and its atomic swap, and the registry that keeps per-address and
//! per-app state alive across swaps. It must not query the store or know how instances are
//! started: the supervisor builds a [`RouteTable`] and calls [`Router::publish`].
//!
//! The parts: `limits` (which connections are admitted), `conn` (one client connection and
//! its timeouts), `table` (host matching, upstream choice), `snapshot` (a table bound to live
//! state), `pool` (per-address connections and in-flight count), `proxy` (one request),
//! `h1` (HTTP/1.1 towards clients: heads, bodies, responses), `framing` (where a body
//! ends), `upstream` (HTTP/1.1 towards an instance, in the request's own task),
//! `headers` (Host and forwarding headers), `trust` (trusted-proxy networks), `body` (bodies
//! and per-request bookkeeping), `tunnel` (upgraded connections: WebSockets), `tls` (TLS
//! termination: server config and SNI over published certificates), `stats`, `pages`
//! (error pages).

#![forbid(unsafe_code)]

mod body;
mod conn;
mod framing;
mod h1;
mod headers;
mod limits;
mod pages;
mod pool;
mod probe;
mod proxy;
mod snapshot;
mod spares;
mod stats;
mod table;
#[cfg(test)]
mod tests;
pub mod tls;
mod trust;
mod tunnel;
mod upstream;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use arc_swap::ArcSwap;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use tokio::net::TcpListener;

pub use limits::{connection_budget, ConnStats, MIN_FD_RESERVE};
pub use stats::{AppStats, LatencyBucket};
pub use table::{AppSpec, Https, RouteTable, TableSpec, Upstream};
pub use trust::{IpNet, IpNetError};

use limits::{Admission, Refused};
use pool::PoolConfig;
use snapshot::{AppRoute, Registry, Snapshot};

/// One request as the router saw it, for the app's log stream (source `router`). Borrowed:
/// a sink copies what it keeps, so a request costs no allocation for a line nobody keeps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessLine<'a> {
    /// Empty when the Host matched no app.
    pub app: &'a str,
    pub method: &'a str,
    /// Path and query, as requested.
    pub path: &'a str,
    /// The status sent to the client; 499 if the client left before a response.
    pub status: u16,
    /// Response body bytes sent to the client.
    pub bytes: u64,
    /// From the request's arrival to its response's last byte (or abandonment).
    pub duration: Duration,
    /// The instance that answered, if one did.
    pub instance: Option<&'a str>,
    pub release: Option<u32>,
    pub request_id: &'a str,
}

/// Receives one [`AccessLine`] per request, on the request path: it must be cheap and must
/// not block (hand the line to a channel).
pub type AccessSink = Arc<dyn Fn(&AccessLine<'_>) + Send + Sync>;

/// ACME HTTP-01 answers: token → key authorization (see [`Router::answer_acme_with`]).
pub type AcmeAnswers = Arc<dyn Fn(&str) -> Option<String> + Send + Sync>;

#[derive(Debug, Clone)]
pub struct RouterOptions {
    /// TCP connect to an upstream; a timeout is retried on another upstream like a refusal.
    pub connect_timeout: Duration,
    /// From sending a request upstream to its response headers; beyond it the client gets 504.
    pub response_timeout: Duration,
    /// How long an upstream keep-alive connection may sit unused before it is dropped. Below
    /// the common app-server defaults (Node's 5 s) so that we, not the app, close idle
    /// connections: the app closing one just as we reuse it is the race retries exist for.
    pub idle_timeout: Duration,
    /// For a client to send a request's head, from its first byte (a new connection's: from
    /// accept). Sheds slowloris and connections that never send anything.
    pub client_header_timeout: Duration,
    /// How long a client keep-alive connection may wait for its next request.
    pub client_idle_timeout: Duration,
    /// How long an upgraded connection (a WebSocket) may pass no byte either way before it is
    /// closed. Apps keep theirs open with pings (Socket.IO every 25 s, Phoenix every 30 s).
    pub upgrade_idle_timeout: Duration,
    /// Client connections open at once; more are closed at accept (with a 503 if the socket
    /// takes it at once). Lowered to the descriptor budget of `nofile` when that is smaller.
    pub max_connections: usize,
    /// Client connections open at once from one source address (an IPv6 client's /64).
    pub max_connections_per_ip: usize,
    /// The process's RLIMIT_NOFILE, if known: the router then keeps its connections within
    /// [`connection_budget`] so that the rest of the process always gets descriptors.
    pub nofile: Option<u64>,
    /// Further attempts on other upstreams after one failed in a retryable way.
    pub max_retries: u32,
    /// Idle keep-alive connections kept per upstream address. The default keeps every
    /// connection that finished cleanly (it is as high as `max_connections`): a cap below a
    /// burst's concurrency closes the surplus at every check-in and opens it again for the
    /// next burst, churning connections into TIME_WAIT (at 2,000 client connections a cap of
    /// 256 cost a fifth of the router's throughput). What gives the connections back after a
    /// burst is `idle_timeout`, so the pool is never larger than what was recently in use.
    pub max_idle_per_upstream: usize,
    /// Peers whose `X-Forwarded-*`, `X-Real-IP` and `Forwarded` are believed (a load
    /// balancer in front of us). Empty: the router is the edge and replaces them all.
    pub trusted_proxies: Vec<IpNet>,
}

impl Default for RouterOptions {
    fn default() -> Self {
        RouterOptions {
            connect_timeout: Duration::from_secs(5),
            response_timeout: Duration::from_secs(60),
            idle_timeout: Duration::from_secs(4),
            client_header_timeout: Duration::from_secs(10),
            client_idle_timeout: Duration::from_secs(60),
            upgrade_idle_timeout: Duration::from_secs(60),
            max_connections: 10_000,
            max_connections_per_ip: 256,
            nofile: None,
            max_retries: 2,
            max_idle_per_upstream: 10_000,
            trusted_proxies: Vec::new(),
        }
    }
}

pub struct Router {
    opts: RouterOptions,
    pool: PoolConfig,
    timeouts: conn::Timeouts,
    /// Client connections: caps and counters.
    admission: Arc<Admission>,
    current: ArcSwap<Snapshot>,
    /// Only `publish`, `inflight` and `stats` take this; the request path never does.
    registry: Mutex<Registry>,
    access: AccessSink,
    /// The certificates TLS listeners serve (see [`Router::publish_certs`]).
    certs: Arc<tls::Resolver>,
    /// ACME HTTP-01 answers by token, for `/.well-known/acme-challenge/TOKEN` over plain HTTP.
    acme: ArcSwap<Option<AcmeAnswers>>,
    /// The port of the TLS listener (0: none), for redirects to HTTPS.
    tls_port: std::sync::atomic::AtomicU16,
}

/// hyper's HTTP/2 server, for TLS clients that chose `h2` (HTTP/1.1 is ours: `h1`).
pub(crate) struct Http {
    pub h2: hyper_util::server::conn::auto::Builder<TokioExecutor>,
}

impl Http {
    fn new() -> Http {
        let mut h2 =
            hyper_util::server::conn::auto::Builder::new(TokioExecutor::new()).http2_only();
        // nginx's defaults: 128 concurrent streams, and the same 64 KiB of request head as
        // over HTTP/1.1.
        // Extended CONNECT (RFC 8441): browsers then open WebSockets on the h2 connection.
        h2.http2()
            .timer(TokioTimer::new())
            .max_concurrent_streams(128)
            .max_header_list_size(MAX_BUF as u32)
            .enable_connect_protocol();
        Http { h2 }
    }
}

/// The largest request head read (over HTTP/1.1: request line and headers; over HTTP/2:
/// the header list), eight times nginx's default line limit.
const MAX_BUF: usize = 64 * 1024;

/// What a connection over a cap gets, if its socket takes it at once.
const REFUSED: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\n\
Content-Length: 28\r\nRetry-After: 1\r\nConnection: close\r\n\r\ntoo many connections; retry\n";

fn effective_max_connections(opts: &RouterOptions) -> usize {
    let budget = opts.nofile.map_or(usize::MAX, connection_budget);
    opts.max_connections.min(budget)
}

/// Refusals are logged with counts, the first at once and then at most once per sweep
/// interval: a flood must not turn into a flood of log lines.
#[derive(Default)]
struct RefusalLog {
    total: u64,
    per_ip: u64,
    /// A line went out since the last quiet sweep: later refusals wait for the next sweep.
    logging: bool,
}

impl RefusalLog {
    fn note(&mut self, why: Refused, router: &Router) {
        match why {
            Refused::Total => self.total += 1,
            Refused::PerIp => self.per_ip += 1,
        }
        if !self.logging {
            self.flush(router);
        }
    }

    fn flush(&mut self, router: &Router) {
        if self.total == 0 && self.per_ip == 0 {
            self.logging = false;
            return;
        }
        tracing::warn!(
            "router: refused {} connections at max_connections ({}) and {} over \
             max_connections_per_ip ({}); {} open",
            self.total,
            router.max_connections(),
            self.per_ip,
            router.opts.max_connections_per_ip,
            router.admission.stats().open,
        );
        self.total = 0;
        self.per_ip = 0;
        self.logging = true;
    }
}

/// A listener for [`Router::serve`]: `SO_REUSEADDR` (as `TcpListener::bind`), so a restarted
/// paasd can bind its port again while connections of the previous one sit in TIME_WAIT, and a
/// backlog of 4096 (capped by `net.core.somaxconn`) instead of tokio's 128: hundreds of
/// clients connecting at once would otherwise overflow the queue, and each dropped SYN costs
/// its client a one-second retransmit.
pub fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(4096)
}

impl Router {
    pub fn new(opts: RouterOptions, access: AccessSink) -> Arc<Router> {
        let mut registry = Registry::default();
        let empty = Snapshot::bind(RouteTable::new(""), &mut registry);
        let max_connections = effective_max_connections(&opts);
        Arc::new(Router {
            pool: PoolConfig {
                connect_timeout: opts.connect_timeout,
                idle_timeout: opts.idle_timeout,
                max_idle: opts.max_idle_per_upstream,
            },
            timeouts: conn::Timeouts {
                header: opts.client_header_timeout,
                idle: opts.client_idle_timeout,
            },
            admission: Arc::new(Admission::new(max_connections, opts.max_connections_per_ip)),
            opts,
            current: ArcSwap::from_pointee(empty),
            registry: Mutex::new(registry),
            access,
            certs: Arc::default(),
            acme: ArcSwap::from_pointee(None),
            tls_port: std::sync::atomic::AtomicU16::new(0),
        })
    }

    /// Atomic swap of the whole table: requests in flight keep the snapshot they started
    /// with; no connection is dropped.
    pub fn publish(&self, table: RouteTable) {
        let mut reg = self.registry();
        let snap = Snapshot::bind(table, &mut reg);
        // Stored under the lock, so two racing publishes land in the order they bound.
        self.current.store(Arc::new(snap));
    }

    /// Requests currently in flight to this upstream address, counted from picking it until
    /// its response's last byte went to the client.
    pub fn inflight(&self, addr: SocketAddr) -> usize {
        self.registry()
            .backends
            .get(&addr)
            .and_then(std::sync::Weak::upgrade)
            .map_or(0, |b| b.inflight())
    }

    /// Client connections admitted at once: `max_connections`, or the descriptor budget when
    /// that is lower.
    pub fn max_connections(&self) -> usize {
        effective_max_connections(&self.opts)
    }

    /// The client connection counters.
    pub fn connections(&self) -> ConnStats {
        self.admission.stats()
    }

    /// The app's counters, if the published table routes it.
    pub fn stats(&self, app: &str) -> Option<AppStats> {
        let cell = self.registry().stats.get(app)?.clone();
        Some(cell.snapshot())
    }

    /// The certificates TLS listeners serve from now on (handshakes in progress keep the
    /// set they started with).
    pub fn publish_certs(&self, certs: tls::Certs) {
        self.certs.publish(certs);
    }

    /// Where ACME HTTP-01 validations are answered from: `answers(token)` is the key
    /// authorization to send for `GET /.well-known/acme-challenge/TOKEN` (plain HTTP, any
    /// host), `None` to route the request as usual.
    pub fn answer_acme_with(&self, answers: AcmeAnswers) {
        self.acme.store(Arc::new(Some(answers)));
    }

    pub(crate) fn acme_answer(&self, token: &str) -> Option<String> {
        self.acme.load().as_ref().as_ref().and_then(|f| f(token))
    }

    /// Where a plain-HTTP request for `host` (a Host value) should go instead, if the app
    /// wants HTTPS and a TLS listener has a certificate for the name.
    pub(crate) fn https_port_for(&self, host: &str) -> Option<u16> {
        let port = self.tls_port.load(std::sync::atomic::Ordering::Relaxed);
        let name = table::normalize_host(host)?;
        (port != 0 && self.certs.covers(&name)).then_some(port)
    }

    /// Serves HTTP/1.1 on the listener until `shutdown` resolves, then stops accepting and
    /// lets in-flight requests finish (idle keep-alive connections are closed at once).
    pub async fn serve(self: Arc<Self>, listener: TcpListener, shutdown: impl Future<Output = ()>) {
        self.accept(listener, None, shutdown).await;
    }

    /// [`Router::serve`] over TLS, with the certificates of [`Router::publish_certs`]:
    /// HTTP/2 for clients that offer it, else HTTP/1.1. A client asking for a name we have
    /// no certificate for fails its handshake.
    pub async fn serve_tls(
        self: Arc<Self>,
        listener: TcpListener,
        shutdown: impl Future<Output = ()>,
    ) -> Result<(), tls::TlsError> {
        let config = tls::server_config(Arc::clone(&self.certs))?;
        if let Ok(addr) = listener.local_addr() {
            self.tls_port
                .store(addr.port(), std::sync::atomic::Ordering::Relaxed);
        }
        self.accept(
            listener,
            Some(tokio_rustls::TlsAcceptor::from(config)),
            shutdown,
        )
        .await;
        Ok(())
    }

    async fn accept(
        self: Arc<Self>,
        listener: TcpListener,
        tls: Option<tokio_rustls::TlsAcceptor>,
        shutdown: impl Future<Output = ()>,
    ) {
        let graceful = hyper_util::server::graceful::GracefulShutdown::new();
        let http = Arc::new(Http::new());
        let port = listener.local_addr().map_or(0, |a| a.port());
        tokio::pin!(shutdown);
        let mut sweep = tokio::time::interval(self.opts.idle_timeout.max(Duration::from_secs(1)));
        sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut refusals = RefusalLog::default();
        let (stopping, stop) = tokio::sync::watch::channel(false);
        let clocks = Arc::new(conn::Clocks::default());
        let mut deadlines = tokio::time::interval(self.timeouts.sweep_every());
        deadlines.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let accepted = tokio::select! {
                biased;
                () = &mut shutdown => break,
                // Before accepting: a flood of new connections must not hold off the sweep
                // that closes the slow ones.
                _ = deadlines.tick() => {
                    clocks.sweep(self.timeouts);
                    continue;
                }
                a = listener.accept() => a,
                _ = sweep.tick() => {
                    self.expire_idle();
                    self.admission.sweep();
                    refusals.flush(&self);
                    continue;
                }
            };
            let (stream, peer) = match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors, typically: give connections time to close
                    // instead of spinning on the error.
                    tracing::warn!("router: accept: {e}");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
            };
            let clock = conn::Clock::new(Arc::clone(&self.admission));
            let permit = match self.admission.admit(peer.ip(), clock.candidate()) {
                Ok(p) => p,
                Err(why) => {
                    // Closed right here: a refused connection costs no task, no buffer and
                    // its descriptor only for this moment. The 503 goes out only if the
                    // socket takes it at once.
                    let _ = stream.try_write(REFUSED);
                    drop(stream);
                    refusals.note(why, &self);
                    continue;
                }
            };
            let _ = stream.set_nodelay(true);
            let client = Arc::new(headers::Peer::new(
                peer.ip(),
                &self.opts.trusted_proxies,
                port,
                tls.is_some(),
            ));
            let accepted = conn::Accepted {
                stream,
                peer,
                client,
                listed: clocks.add(&clock),
                clock,
                permit,
                watcher: graceful.watcher(),
                stopping: stop.clone(),
                tls: tls.clone(),
            };
            tokio::spawn(conn::serve(Arc::clone(&self), Arc::clone(&http), accepted));
        }
        drop(listener);
        // Connections that never sent a byte close now; hyper's finish their requests.
        let _ = stopping.send(true);
        graceful.shutdown().await;
    }

    fn expire_idle(&self) {
        let backends: Vec<_> = self
            .registry()
            .backends
            .values()
            .filter_map(std::sync::Weak::upgrade)
            .collect();
        for b in backends {
            b.expire_idle(&self.pool);
        }
    }

    fn route(&self, host: &str) -> Option<Arc<AppRoute>> {
        self.current.load().route(host).cloned()
    }

    /// Nothing under this lock can panic halfway through a change that matters (maps of
    /// weak pointers and counters), so a poisoned lock is still usable.
    fn registry(&self) -> MutexGuard<'_, Registry> {
        self.registry.lock().unwrap_or_else(|p| p.into_inner())
    }
}
