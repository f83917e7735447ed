//! The bodies that cross the router, and the bookkeeping that ends when a response ends.
//!
//! Owns [`ClientBody`] (a client's request body, from either server side), [`ProxyBody`] (what the client gets: the upstream's body or one of our pages, counted
//! as it goes) and [`Finish`], which runs exactly once per request when the
//! response is over or abandoned: the connection back to the pool, the in-flight count down,
//! stats, the access line. It must not decide anything about routing or retries.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::header::HeaderValue;
use tokio::net::TcpStream;

use super::conn::Busy;
use super::h1;
use super::pool::InflightGuard;
use super::snapshot::AppRoute;
use super::upstream::UpstreamReader;
use super::{AccessLine, Router};

/// Status logged for a request whose client went away before it had a response (nginx's
/// convention).
pub(crate) const CLIENT_CLOSED: u16 = 499;

/// Everything to settle once a request is over. Settles on drop, so no path (error, client
/// gone, panic in a body) skips the access line or leaks an in-flight count.
pub(crate) struct Finish {
    router: Arc<Router>,
    start: Instant,
    method: hyper::Method,
    /// Copied rather than kept as a slice of the request head: that would pin hyper's read
    /// buffer for the whole request.
    path: String,
    request_id: HeaderValue,
    pub app: Option<Arc<AppRoute>>,
    /// Index of the upstream in `app` that answered.
    pub upstream: Option<usize>,
    pub status: u16,
    bytes: u64,
    pub inflight: Option<InflightGuard>,
    /// The upstream connection, once its response was read to the end and it can carry
    /// another request: back to the pool.
    pub conn: Option<TcpStream>,
    /// The request became an upgraded connection: its 101 is in the stats already, and this
    /// settles when the connection closes (`bytes`: everything the instance sent).
    pub upgraded: bool,
    pub bytes_upgraded: u64,
    /// A WebSocket over HTTP/2 counts as a client connection until it closes.
    pub tunnel_permit: Option<super::limits::Permit>,
    /// Keeps the client connection busy (no idle or header timeout) until the response is
    /// over; released after everything above.
    _busy: Busy,
}

impl Finish {
    pub fn new(
        router: Arc<Router>,
        start: Instant,
        method: &hyper::Method,
        uri: &hyper::Uri,
        request_id: HeaderValue,
        busy: Busy,
    ) -> Finish {
        Finish {
            router,
            start,
            method: method.clone(),
            path: uri.path_and_query().map_or("/", |p| p.as_str()).to_owned(),
            request_id,
            app: None,
            upstream: None,
            status: CLIENT_CLOSED,
            bytes: 0,
            inflight: None,
            conn: None,
            upgraded: false,
            bytes_upgraded: 0,
            tunnel_permit: None,
            _busy: busy,
        }
    }
}

impl Finish {
    /// The upstream switched protocols: the request counts now, with the status the client
    /// got (101; a WebSocket over HTTP/2 gets 200, RFC 8441), its latency the time to the
    /// switch, and the connection as an open upgrade until this drops.
    pub fn upgrade_opened(&mut self, status: u16) {
        self.status = status;
        self.upgraded = true;
        if let Some(app) = &self.app {
            app.stats.record(status, 0, self.start.elapsed());
            app.stats.upgrade_opened();
        }
    }
}

impl Drop for Finish {
    fn drop(&mut self) {
        if let (Some(io), Some(guard)) = (self.conn.take(), &self.inflight) {
            guard.backend().checkin(io, &self.router.pool);
        }
        // Down before the access line: whoever waits for a drained instance may stop it now.
        self.inflight = None;
        let took = self.start.elapsed();
        let (mut instance, mut release) = (None, None);
        let app = match &self.app {
            Some(app) => {
                if self.upgraded {
                    app.stats.upgrade_closed(self.bytes_upgraded);
                    self.bytes = self.bytes_upgraded;
                } else {
                    app.stats.record(self.status, self.bytes, took);
                }
                if let Some(up) = self.upstream.and_then(|i| app.upstreams.get(i)) {
                    instance = Some(up.instance.as_str());
                    release = Some(up.release);
                }
                app.name.as_str()
            }
            None => "",
        };
        (self.router.access)(&AccessLine {
            app,
            method: self.method.as_str(),
            path: &self.path,
            status: self.status,
            bytes: self.bytes,
            duration: took,
            instance,
            release,
            request_id: self.request_id.to_str().unwrap_or_default(),
        });
    }
}

/// The body of a response to a client.
pub(crate) struct ProxyBody {
    kind: Kind,
    finish: Option<Finish>,
}

enum Kind {
    Upstream(UpstreamReader),
    Page(Option<Bytes>),
}

impl ProxyBody {
    pub fn upstream(body: UpstreamReader, finish: Finish) -> ProxyBody {
        ProxyBody {
            kind: Kind::Upstream(body),
            finish: Some(finish),
        }
    }

    /// The empty body of a 101: the upgraded connection settles its own bookkeeping.
    pub fn empty() -> ProxyBody {
        ProxyBody {
            kind: Kind::Page(None),
            finish: None,
        }
    }

    pub fn page(body: Bytes, finish: Finish) -> ProxyBody {
        ProxyBody {
            kind: Kind::Page(Some(body)),
            finish: Some(finish),
        }
    }

    /// Runs the bookkeeping; a response read to its end gives its connection back first.
    fn settle(&mut self, complete: bool) {
        if let Some(mut f) = self.finish.take() {
            if let (true, Kind::Upstream(r)) = (complete, &mut self.kind) {
                f.conn = r.take_reusable();
            }
        }
    }
}

impl Body for ProxyBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        let this = self.get_mut();
        let polled = match &mut this.kind {
            Kind::Upstream(r) => ready!(r.poll_data(cx)).map(|d| d.map(Frame::data)),
            Kind::Page(p) => p.take().map(|b| Ok(Frame::data(b))),
        };
        match &polled {
            Some(Ok(frame)) => {
                if let (Some(data), Some(f)) = (frame.data_ref(), this.finish.as_mut()) {
                    f.bytes += data.len() as u64;
                }
                // hyper stops polling once the body says it has ended, so settle now rather
                // than waiting for a `None` that may never be asked for.
                if this.is_end_stream() {
                    this.settle(true);
                }
            }
            Some(Err(_)) => this.settle(false),
            None => this.settle(true),
        }
        Poll::Ready(polled)
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Upstream(r) => r.is_end(),
            Kind::Page(p) => p.is_none(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Upstream(r) => r
                .exact_len()
                .map_or_else(SizeHint::new, SizeHint::with_exact),
            Kind::Page(p) => SizeHint::with_exact(p.as_ref().map_or(0, |b| b.len() as u64)),
        }
    }
}

impl Drop for ProxyBody {
    fn drop(&mut self) {
        // An empty body (204, HEAD, Content-Length: 0) is never polled; it still completed.
        let complete = self.is_end_stream();
        self.settle(complete);
    }
}

/// Why a client's request body could not be read.
pub(crate) type BodyError = Box<dyn std::error::Error + Send + Sync>;

/// A client's request body: hyper's over HTTP/2, ours (`h1`) over HTTP/1.1.
pub(crate) enum ClientBody {
    H1(h1::RequestBody),
    H2(Incoming),
}

impl Body for ClientBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        match self.get_mut() {
            ClientBody::H1(b) => Pin::new(b).poll_frame(cx).map_err(Into::into),
            ClientBody::H2(b) => Pin::new(b).poll_frame(cx).map_err(Into::into),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            ClientBody::H1(b) => b.is_end_stream(),
            ClientBody::H2(b) => b.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            ClientBody::H1(b) => b.size_hint(),
            ClientBody::H2(b) => b.size_hint(),
        }
    }
}
