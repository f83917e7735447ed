//! One client connection from accept to close: wait for its first byte, serve it (HTTP/1.1
//! with `h1`, HTTP/2 with hyper), and close it when a request head is too slow, it sits idle
//! too long, or it is idle when `limits` needs its room for a newcomer.
//!
//! Why the first byte is awaited on the bare socket: the server side's state (and, on a
//! TLS listener, the handshake's) exists only from then on, so 20,000 idle connections that
//! never send anything cost their sockets' registrations and this small task. The timeouts
//! live here rather than in the server side, so that the idle wait between requests and the
//! head itself have a limit each.
//!
//! Why no timer per connection: the accept loop sweeps its connections' clocks ([`Clocks`])
//! a few times per shortest timeout and flags the ones past their deadline, waking their
//! task. A connection's task then only reads a flag when it wakes up; a timer of its own,
//! polled beside hyper at every wake-up and re-armed at every request, cost ~5% of the
//! router's CPU at 2,000 connections (docs/benchmarks.md). The price is precision: a
//! deadline is met within a quarter of the shortest client timeout (at most 1 s) after it.
//! (The upstream's response timeout does keep a timer per connection, [`ResponseTimer`]:
//! it is polled only while a request waits for its response, and re-armed by a store.)
//!
//! Must not route or proxy a request (`proxy`) nor count connections (`limits`).

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::{poll_fn, Future};
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::Ordering::SeqCst;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicU8, Ordering::Relaxed};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::Request;
use hyper_util::rt::TokioIo;
use hyper_util::server::graceful::Watcher;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::time::{Instant, Sleep};

use super::body::{ClientBody, ProxyBody};
use super::h1;
use super::headers::Peer;
use super::limits::{Admission, Evictable, Idle, Permit};
use super::{proxy, spares, Http, Router};

/// The client-side timeouts of one connection.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Timeouts {
    /// From a request's first byte (a new connection's: from accept) to its complete head.
    pub header: Duration,
    /// From the end of a response to the next request's first byte.
    pub idle: Duration,
}

impl Timeouts {
    /// How often the accept loop sweeps its connections: a quarter of the shortest timeout,
    /// between 10 ms and 1 s.
    pub fn sweep_every(&self) -> Duration {
        (self.header.min(self.idle) / 4).clamp(Duration::from_millis(10), Duration::from_secs(1))
    }
}

const NONE: u64 = u64::MAX;

/// Where the connection is in its request cycle, in milliseconds since accept. Shared by
/// the socket wrapper (a first byte starts a head), the requests (a head is complete; a
/// response ended), the connection's task, the sweep of [`Clocks`] and `limits` when it
/// looks for an idle connection to evict (a stale read there costs at most one connection
/// over the cap, see `limits`).
pub(crate) struct Clock {
    born: Instant,
    /// Nothing received yet: no server side has started.
    fresh: AtomicBool,
    /// To queue the connection as an eviction candidate when it goes idle under pressure.
    admission: Arc<Admission>,
    /// When the head being read began; `NONE` while a request is served or none has begun.
    head_since: AtomicU64,
    /// When the last response ended (0 before the first: then `head_since` is 0 too).
    idle_since: AtomicU64,
    /// Requests from the server side (`h1` or hyper's h2) calling the proxy until their
    /// response body is done (for an
    /// upgraded connection: until its tunnel closes).
    busy: AtomicU32,
    /// Why the connection should close (an [`Expired`] as a number; 0: no reason), set by
    /// the sweep or by `limits` and checked again by the connection's task, which may have
    /// begun a request since.
    expired: AtomicU8,
    /// The connection's task, woken when `expired` is set, or when `busy` drops to 0 while
    /// it is `draining`.
    waker: OnceLock<Waker>,
    /// The server side is done with the connection and its task waits for `busy` to reach 0 (an
    /// upgraded connection's tunnel).
    draining: AtomicBool,
    /// The response timeout's timer, kept between requests (see [`ResponseTimer`]).
    timer: Mutex<Option<Pin<Box<Sleep>>>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expired {
    Header = 1,
    Idle = 2,
    Evicted = 3,
}

impl Clock {
    pub fn new(admission: Arc<Admission>) -> Arc<Clock> {
        Arc::new(Clock {
            born: Instant::now(),
            fresh: AtomicBool::new(true),
            admission,
            // A new connection is reading its first head from the start.
            head_since: AtomicU64::new(0),
            idle_since: AtomicU64::new(0),
            busy: AtomicU32::new(0),
            expired: AtomicU8::new(0),
            waker: OnceLock::new(),
            draining: AtomicBool::new(false),
            timer: Mutex::new(None),
        })
    }

    /// This connection as an eviction candidate, for `limits`.
    pub fn candidate(self: &Arc<Self>) -> Weak<dyn Evictable> {
        Arc::downgrade(self) as Weak<dyn Evictable>
    }

    /// Has sent nothing yet, or waits between requests.
    fn is_idle(&self) -> bool {
        self.busy.load(Relaxed) == 0
            && (self.fresh.load(Relaxed) || self.head_since.load(Relaxed) == NONE)
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.born.elapsed().as_millis()).unwrap_or(NONE - 1)
    }

    fn at(&self, ms: u64) -> Instant {
        self.born + Duration::from_millis(ms)
    }

    /// Bytes arrived: outside a request that is the next head beginning.
    fn bytes_read(&self) {
        if self.busy.load(Relaxed) == 0 && self.head_since.load(Relaxed) == NONE {
            self.head_since.store(self.now_ms(), Relaxed);
        }
    }

    /// The next moment the connection may be closed, if nothing happens before it; `None`
    /// while a request is being served (its own timeouts apply).
    fn deadline(&self, t: Timeouts) -> Option<(Instant, Expired)> {
        if self.busy.load(Relaxed) > 0 {
            return None;
        }
        match self.head_since.load(Relaxed) {
            NONE => Some((
                self.at(self.idle_since.load(Relaxed)) + t.idle,
                Expired::Idle,
            )),
            since => Some((self.at(since) + t.header, Expired::Header)),
        }
    }

    /// Flags the connection to close and wakes its task (a reason already set stays).
    fn expire(&self, why: Expired) {
        if self
            .expired
            .compare_exchange(0, why as u8, SeqCst, SeqCst)
            .is_ok()
        {
            self.wake();
        }
    }

    fn wake(&self) {
        if let Some(w) = self.waker.get() {
            w.wake_by_ref();
        }
    }

    /// Ready when the connection should close: a flagged reason that still holds. One
    /// that no longer does (a request began since the sweep looked) is cleared.
    fn poll_expired(&self, cx: &mut Context<'_>, t: Timeouts) -> Poll<Expired> {
        // The connection is polled by its own task only, whose waker does not change.
        self.waker.get_or_init(|| cx.waker().clone());
        let flagged = self.expired.load(SeqCst);
        let why = match flagged {
            0 => return Poll::Pending,
            1 => Expired::Header,
            2 => Expired::Idle,
            _ => Expired::Evicted,
        };
        let holds = match why {
            Expired::Evicted => self.is_idle(),
            _ => self
                .deadline(t)
                .is_some_and(|(at, w)| w == why && at <= Instant::now()),
        };
        if holds {
            return Poll::Ready(why);
        }
        let _ = self.expired.compare_exchange(flagged, 0, SeqCst, SeqCst);
        Poll::Pending
    }

    /// Resolves when the connection should close.
    async fn expired(&self, t: Timeouts) -> Expired {
        poll_fn(|cx| self.poll_expired(cx, t)).await
    }
}

impl Evictable for Clock {
    fn evict(&self, which: Idle) -> bool {
        let ok = match which {
            Idle::Silent => self.fresh.load(Relaxed),
            Idle::Any => self.is_idle(),
        };
        if !ok {
            return false;
        }
        // Seen by the task at its next poll if it is not waiting yet.
        self.expire(Expired::Evicted);
        true
    }
}

/// The open connections of one listener, swept by its accept loop.
#[derive(Default)]
pub(crate) struct Clocks {
    next: AtomicU64,
    all: Mutex<HashMap<u64, Weak<Clock>>>,
}

/// A connection's place in its listener's [`Clocks`], given up on drop.
pub(crate) struct Listed {
    clocks: Arc<Clocks>,
    id: u64,
}

impl Drop for Listed {
    fn drop(&mut self) {
        self.clocks.lock().remove(&self.id);
    }
}

impl Clocks {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Weak<Clock>>> {
        // Only inserts and removes happen under it: a poisoned map is still a valid map.
        self.all.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn add(self: &Arc<Self>, clock: &Arc<Clock>) -> Listed {
        let id = self.next.fetch_add(1, Relaxed);
        self.lock().insert(id, Arc::downgrade(clock));
        Listed {
            clocks: Arc::clone(self),
            id,
        }
    }

    /// Flags every connection past its deadline.
    pub fn sweep(&self, t: Timeouts) {
        let now = Instant::now();
        let due: Vec<(Arc<Clock>, Expired)> = self
            .lock()
            .values()
            .filter_map(Weak::upgrade)
            .filter_map(|c| {
                let (at, why) = c.deadline(t)?;
                (at <= now).then_some((c, why))
            })
            .collect();
        for (c, why) in due {
            c.expire(why);
        }
    }
}

/// One request of a connection being served; the connection counts as busy until it drops
/// with the request's bookkeeping (`body::Finish`), i.e. when the response is over.
pub(crate) struct Busy(Arc<Clock>);

impl Busy {
    fn enter(clock: &Arc<Clock>) -> Busy {
        clock.busy.fetch_add(1, SeqCst);
        clock.head_since.store(NONE, Relaxed);
        Busy(Arc::clone(clock))
    }

    /// A timer for this request's response timeout: the connection's own if no other
    /// request of it (HTTP/2) has it now.
    pub fn response_timer(&self) -> ResponseTimer {
        let sleep = self.0.timer.lock().ok().and_then(|mut t| t.take());
        ResponseTimer {
            sleep,
            clock: Arc::clone(&self.0),
        }
    }
}

/// Bounds the wait for an upstream's response with a timer that lives as long as its
/// connection. Why not `tokio::time::timeout` per attempt: that put an entry into the
/// runtime's timer wheel and took it out again for every request (~1.5% of the router's
/// CPU at 2,000 connections). A timer already in the wheel only has its deadline moved
/// later by an atomic store; the wheel re-files it when the old deadline comes, at most
/// once per response timeout, so the deadline is still exact.
pub(crate) struct ResponseTimer {
    sleep: Option<Pin<Box<Sleep>>>,
    clock: Arc<Clock>,
}

impl ResponseTimer {
    /// `f`'s output, or `None` if it took longer than `limit`. (`f` is pinned by the caller
    /// so that this future does not hold a copy of it: a request's future is boxed, and its
    /// size is an allocation per request.)
    pub async fn within<F: Future>(
        &mut self,
        limit: Duration,
        mut f: Pin<&mut F>,
    ) -> Option<F::Output> {
        let deadline = Instant::now() + limit;
        let sleep = match &mut self.sleep {
            Some(sleep) => {
                sleep.as_mut().reset(deadline);
                sleep
            }
            none => none.insert(Box::pin(tokio::time::sleep_until(deadline))),
        };
        poll_fn(|cx| {
            if let Poll::Ready(out) = f.as_mut().poll(cx) {
                return Poll::Ready(Some(out));
            }
            sleep.as_mut().poll(cx).map(|()| None)
        })
        .await
    }
}

impl Drop for ResponseTimer {
    fn drop(&mut self) {
        if let Some(sleep) = self.sleep.take() {
            if let Ok(mut home) = self.clock.timer.lock() {
                home.get_or_insert(sleep);
            }
        }
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        let c = &self.0;
        c.idle_since.store(c.now_ms(), Relaxed);
        if c.busy.fetch_sub(1, SeqCst) == 1 {
            if c.draining.load(SeqCst) {
                c.wake();
            }
            if c.admission.under_pressure() {
                c.admission.idle(c.candidate());
            }
        }
    }
}

/// The socket as the server side sees it, telling the clock when bytes arrive.
struct Watched {
    stream: TcpStream,
    clock: Arc<Clock>,
}

impl AsyncRead for Watched {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let r = Pin::new(&mut this.stream).poll_read(cx, buf);
        if matches!(r, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            this.clock.bytes_read();
        }
        r
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}

/// What a connection task needs besides its socket.
pub(crate) struct Accepted {
    pub stream: TcpStream,
    pub peer: SocketAddr,
    pub client: Arc<Peer>,
    pub clock: Arc<Clock>,
    /// Keeps the connection in its listener's sweep until it closes.
    pub listed: Listed,
    pub permit: Permit,
    /// The router's graceful shutdown waits for this until the connection is done.
    pub watcher: Watcher,
    /// Turns true when the router stops: a connection still waiting for its first byte
    /// closes then (its `watcher` would otherwise hold the shutdown until its timeout).
    pub stopping: watch::Receiver<bool>,
    /// On a TLS listener: the handshake to do first.
    pub tls: Option<tokio_rustls::TlsAcceptor>,
}

/// Serves one admitted connection until the client leaves, a timeout closes it or the router
/// shuts down; its permit is released at the end. On a TLS listener the handshake comes
/// first, within the header timeout.
pub(crate) async fn serve(router: Arc<Router>, http: Arc<Http>, a: Accepted) {
    let Accepted {
        stream,
        peer,
        client,
        clock,
        listed: _listed,
        permit,
        watcher,
        mut stopping,
        tls,
    } = a;
    let t = router.timeouts;
    // `peek`, not `readable()`: a new socket may report readiness before any byte is there
    // (tokio then learns otherwise only by reading), and that would start the server side at once.
    let mut first = [0u8; 1];
    let peeked = tokio::select! {
        r = stream.peek(&mut first) => r,
        why = clock.expired(t) => return router.closed_early(why),
        _ = stopping.wait_for(|s| *s) => return,
    };
    match peeked {
        Ok(_) => clock.fresh.store(false, Relaxed),
        Err(e) => {
            tracing::debug!(%peer, "router: client connection: {e}");
            return;
        }
    }
    let forward = {
        let (router, clock) = (Arc::clone(&router), Arc::clone(&clock));
        move |req: Request<ClientBody>| {
            // Boxed: a connection's task stays small between requests.
            spares::Request::new(proxy::forward(
                Arc::clone(&router),
                req,
                Arc::clone(&client),
                Busy::enter(&clock),
            ))
        }
    };
    let io = Watched {
        stream,
        clock: Arc::clone(&clock),
    };
    let Some(acceptor) = tls else {
        // Boxed too: the task of a connection that has sent nothing yet stays small.
        let conn = h1_until_done(io, stopping, forward, watcher);
        drive(Box::pin(conn), &router, &clock, peer).await;
        drop(permit);
        return;
    };
    // Within the first head's deadline, like the bytes of the head itself.
    let handshake = tokio::select! {
        r = acceptor.accept(io) => r,
        why = clock.expired(t) => return router.closed_early(why),
        _ = stopping.wait_for(|s| *s) => return,
    };
    let stream = match handshake {
        Ok(s) => s,
        Err(e) => {
            tracing::debug!(%peer, "router: TLS handshake: {e}");
            return;
        }
    };
    match stream.get_ref().1.alpn_protocol() {
        // An ACME server validating a TLS-ALPN-01 challenge: the handshake was all of it.
        Some(super::tls::ACME_TLS_ALPN) => return,
        Some(b"h2") => {
            let service = service_fn(move |req: Request<Incoming>| {
                let fut = forward(req.map(ClientBody::H2));
                async move { Ok::<_, Infallible>(fut.await) }
            });
            let conn = http
                .h2
                .serve_connection_with_upgrades(TokioIo::new(stream), service);
            drive(Box::pin(watcher.watch(conn)), &router, &clock, peer).await;
        }
        _ => {
            let conn = h1_until_done(stream, stopping, forward, watcher);
            drive(Box::pin(conn), &router, &clock, peer).await;
        }
    }
    drop(permit);
}

/// Our HTTP/1.1 server side on `io`; `watcher` holds the router's graceful stop until it is
/// done (a stop closes the connection between requests, see `h1::serve`).
async fn h1_until_done<T, H, F>(
    io: T,
    stopping: watch::Receiver<bool>,
    forward: H,
    watcher: Watcher,
) -> io::Result<()>
where
    T: h1::Io,
    H: FnMut(Request<ClientBody>) -> F,
    F: std::future::Future<Output = hyper::Response<ProxyBody>>,
{
    let r = h1::serve(io, stopping, forward).await;
    drop(watcher);
    r
}

/// Runs the server side of a connection until it ends or our clock expires it. An upgraded
/// connection leaves it early; it stays admitted (its permit held by our caller) until
/// its tunnel closes.
async fn drive<E: std::fmt::Display>(
    mut conn: Pin<Box<impl std::future::Future<Output = Result<(), E>>>>,
    router: &Router,
    clock: &Arc<Clock>,
    peer: SocketAddr,
) {
    let t = router.timeouts;
    // Not `select!`: that would poll the clock's branch as a future of its own at every
    // wake-up; this reads its flag.
    let ended = poll_fn(|cx| {
        if let Poll::Ready(why) = clock.poll_expired(cx, t) {
            return Poll::Ready(Err(why));
        }
        conn.as_mut().poll(cx).map(Ok)
    })
    .await;
    let r = match ended {
        Ok(r) => r,
        Err(why) => {
            // Counted before the socket closes: whoever sees it closed sees the count.
            router.closed_early(why);
            return;
        }
    };
    // What the server side still holds (a request it gave up on, a response body) settles now; only an
    // upgraded connection's tunnel keeps the connection busy after this.
    drop(conn);
    if let Err(e) = r {
        tracing::debug!(%peer, "router: client connection: {e}");
    }
    clock.draining.store(true, SeqCst);
    poll_fn(|cx| {
        clock.waker.get_or_init(|| cx.waker().clone());
        if clock.busy.load(SeqCst) == 0 {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    })
    .await;
}

impl Router {
    /// Counts a connection our clock closed (an eviction was counted by `limits`).
    fn closed_early(&self, why: Expired) {
        match why {
            Expired::Header => self.admission.header_timeout(),
            Expired::Idle => self.admission.idle_timeout(),
            Expired::Evicted => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: Timeouts = Timeouts {
        header: Duration::from_secs(10),
        idle: Duration::from_secs(60),
    };

    fn clock() -> Arc<Clock> {
        let c = Clock::new(Arc::new(Admission::new(10, 10)));
        // As after the first byte of the first request arrived.
        c.fresh.store(false, Relaxed);
        c
    }

    /// Whether the connection's task would see a reason to close now.
    async fn closing(c: &Clock) -> Option<Expired> {
        tokio::time::timeout(Duration::from_millis(1), c.expired(T))
            .await
            .ok()
    }

    #[tokio::test(start_paused = true)]
    async fn a_head_has_the_header_timeout_and_the_wait_between_requests_the_idle_one() {
        let c = clock();
        let born = c.born;
        // New connection: its first head is due within the header timeout of accept.
        assert_eq!(c.deadline(T), Some((born + T.header, Expired::Header)));
        tokio::time::advance(Duration::from_secs(3)).await;
        c.bytes_read();
        assert_eq!(c.deadline(T), Some((born + T.header, Expired::Header)));
        // Head complete: a request is served, no deadline of ours.
        let busy = Busy::enter(&c);
        c.bytes_read(); // its body
        assert_eq!(c.deadline(T), None);
        tokio::time::advance(Duration::from_secs(100)).await;
        drop(busy);
        let ended = Instant::now();
        assert_eq!(c.deadline(T), Some((ended + T.idle, Expired::Idle)));
        tokio::time::advance(Duration::from_secs(50)).await;
        // The next request's first byte: its head is due within the header timeout.
        c.bytes_read();
        let first = Instant::now();
        assert_eq!(c.deadline(T), Some((first + T.header, Expired::Header)));
        // More bytes of the same head do not move it (a byte at a time buys nothing).
        tokio::time::advance(Duration::from_secs(5)).await;
        c.bytes_read();
        assert_eq!(c.deadline(T), Some((first + T.header, Expired::Header)));
    }

    #[tokio::test(start_paused = true)]
    async fn the_sweep_closes_a_connection_past_its_deadline_and_nothing_else() {
        let clocks = Arc::new(Clocks::default());
        let (slow, idle, busy) = (clock(), clock(), clock());
        let _listed = [&slow, &idle, &busy].map(|c| clocks.add(c));
        drop(Busy::enter(&idle));
        let _serving = Busy::enter(&busy);
        tokio::time::advance(T.header - Duration::from_millis(1)).await;
        clocks.sweep(T);
        assert_eq!(closing(&slow).await, None, "before its deadline");
        tokio::time::advance(Duration::from_millis(1)).await;
        clocks.sweep(T);
        assert_eq!(closing(&slow).await, Some(Expired::Header));
        assert_eq!(
            closing(&idle).await,
            None,
            "idle for only the header timeout"
        );
        tokio::time::advance(T.idle).await;
        clocks.sweep(T);
        assert_eq!(closing(&idle).await, Some(Expired::Idle));
        assert_eq!(
            closing(&busy).await,
            None,
            "serving a request: never ours to close"
        );
        // A request that began after the sweep flagged the connection keeps it open.
        let late = clock();
        let _l = clocks.add(&late);
        drop(Busy::enter(&late));
        tokio::time::advance(T.idle).await;
        clocks.sweep(T);
        let _req = Busy::enter(&late);
        assert_eq!(closing(&late).await, None);
        // Closed connections leave the sweep.
        drop(_listed);
        drop(_l);
        assert!(clocks.lock().is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn only_an_idle_connection_can_be_evicted() {
        let fresh = Clock::new(Arc::new(Admission::new(10, 10)));
        assert!(fresh.evict(Idle::Silent), "never sent anything");
        let c = clock();
        assert!(!c.evict(Idle::Any), "reading its first head");
        let busy = Busy::enter(&c);
        assert!(!c.evict(Idle::Any), "serving a request");
        drop(busy);
        assert!(!c.evict(Idle::Silent), "between requests, but not silent");
        assert!(c.evict(Idle::Any), "between requests");
        assert_eq!(closing(&c).await, Some(Expired::Evicted));
        // Picked while idle, but a request began before it looked: it stays.
        let c = clock();
        drop(Busy::enter(&c));
        assert!(c.evict(Idle::Any));
        let _busy = Busy::enter(&c);
        assert_eq!(closing(&c).await, None);
    }
}
