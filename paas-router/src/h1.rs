//! The router's HTTP/1.1 server side: reads each request head (httparse) and body (a length or
//! chunks) off a client connection, hands the request to a handler (`proxy`), writes the
//! response, and after a `101` hands the connection to the tunnel. HTTP/2 stays with hyper.
//!
//! Why not hyper's server: it keeps an 8 KiB read and an 8 KiB write buffer per connection
//! for the connection's whole life (not configurable), 32 MB at 2,000 keep-alive connections,
//! more than nginx's whole footprint. Here a read buffer exists only while bytes are in it
//! or arriving, and the write buffer only while a response is written: a connection waiting
//! between requests is its socket, its task and this module's small shared state.
//!
//! Framing follows RFC 9112 strictly, because a proxy that delimits a request differently
//! from the instance behind it is a request-smuggling hole: `Transfer-Encoding` together with
//! `Content-Length`, differing lengths, `Transfer-Encoding` in HTTP/1.0 and a transfer coding
//! other than `chunked` are refused, and what is read is always sent on with framing of the
//! router's own (`upstream::frame_request`).
//!
//! Must not route, retry or time anything out: `proxy` decides what to answer, `conn` when a
//! connection has waited too long (it sees our reads through its socket wrapper).

use std::future::{poll_fn, Future};
use std::io;
use std::pin::{pin, Pin};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};

use bytes::{Buf, Bytes, BytesMut};
use hyper::body::{Body, Frame, SizeHint};
use hyper::header::{self, HeaderMap};
use hyper::{Method, Request, Response, StatusCode, Uri, Version};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};
use tokio::sync::{oneshot, watch};

use super::body::{ClientBody, ProxyBody};
use super::framing::{self, content_length, header_map, spans, tokens, Decoded, Decoder, NO_SPAN};
use super::probe;

/// The largest request head (request line and headers) read.
const MAX_HEAD: usize = super::MAX_BUF;
/// Headers in one request head (hyper's limit).
const MAX_HEADERS: usize = 100;
/// A read for a request head (a probe into no buffer, or this much more room in one).
const FIRST_READ: usize = probe::PROBE;
/// Each later read of a body.
const BODY_READ: usize = 16 * 1024;
/// Headers `proxy` adds to a request before it goes on (`X-Forwarded-For`, `-Proto`,
/// `-Host`, `-Port`, `X-Real-IP`, `Forwarded`, `X-Request-Id`, `Transfer-Encoding`).
const ADDED_TO_REQUEST: usize = 8;
/// Response bytes gathered before a write: a small response goes out in one write, head and
/// body together.
const GATHER: usize = 16 * 1024;

const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";

/// A client connection's stream: a TCP socket, or TLS over one.
pub(crate) trait Io: AsyncRead + AsyncWrite + Send + Unpin + 'static {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin + 'static> Io for T {}

/// What the connection's task, the request body it hands out and (after a 101) the tunnel
/// share. Only one of them uses it at a time, so the lock is never contended; it is there
/// because a request body must be read while its task waits for the handler.
struct Shared<T: ?Sized> {
    /// Bytes read and not yet used. Empty and unallocated while nothing is arriving.
    buf: BytesMut,
    /// What remains of the current request's body.
    body: Decoder,
    /// Bytes of a `100 Continue` still owed to the client, sent when the body is first read.
    cont: usize,
    /// The interim response is written and must be flushed (TLS buffers it).
    cont_flush: bool,
    io: T,
}

type Link = Arc<Mutex<Shared<dyn Io>>>;

fn lock(link: &Link) -> MutexGuard<'_, Shared<dyn Io>> {
    // A panic while reading cannot leave the buffer unsound, only the framing unknown; the
    // body state then is not `Done`, and the connection closes after the response.
    link.lock().unwrap_or_else(|p| p.into_inner())
}

impl Shared<dyn Io> {
    /// Reads more into `buf`, allocating `want` bytes for it if it has little room. A read
    /// that has to wait gives an empty buffer back, so waiting costs no memory.
    ///
    /// With no buffer at all, a head's read is a probe (`probe::poll_probe`): between
    /// requests, and while one is answered (`client_gone`), the read nearly always has to
    /// wait, and a 4 KiB buffer allocated for it and freed again was the costliest three of
    /// the 27 allocations a proxied request made.
    fn poll_fill(&mut self, cx: &mut Context<'_>, want: usize) -> Poll<io::Result<usize>> {
        if self.buf.capacity() == 0 && want <= probe::PROBE {
            return probe::poll_probe(&mut self.io, cx, &mut self.buf);
        }
        if self.buf.capacity() - self.buf.len() < 512 {
            self.buf.reserve(want);
        }
        let r = pin!(self.io.read_buf(&mut self.buf)).poll(cx);
        if r.is_pending() && self.buf.is_empty() {
            self.buf = BytesMut::new();
        }
        r
    }

    /// Sends the `100 Continue` a client waits for before its body, if one is owed.
    fn poll_continue(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.cont > 0 {
            let sent = CONTINUE.len() - self.cont;
            let n = std::task::ready!(Pin::new(&mut self.io).poll_write(cx, &CONTINUE[sent..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.cont -= n;
            self.cont_flush = self.cont == 0;
        }
        if self.cont_flush {
            std::task::ready!(Pin::new(&mut self.io).poll_flush(cx))?;
            self.cont_flush = false;
        }
        Poll::Ready(Ok(()))
    }
}

/// A client's request body over HTTP/1.1, read off its connection as the handler asks.
pub(crate) struct RequestBody {
    link: Link,
}

impl Body for RequestBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        let mut s = lock(&self.link);
        if s.body.is_done() {
            return Poll::Ready(None);
        }
        std::task::ready!(s.poll_continue(cx))?;
        loop {
            let Shared { buf, body, .. } = &mut *s;
            match body.decode(buf) {
                Ok(Decoded::Data(piece)) => return Poll::Ready(Some(Ok(Frame::data(piece)))),
                Ok(Decoded::End) => return Poll::Ready(None),
                Err(what) => {
                    return Poll::Ready(Some(Err(io::Error::new(io::ErrorKind::InvalidData, what))))
                }
                Ok(Decoded::More) => {}
            }
            match std::task::ready!(s.poll_fill(cx, BODY_READ)) {
                Ok(0) => {
                    return Poll::Ready(Some(Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "the client closed the connection in the middle of its request body",
                    ))))
                }
                Ok(_) => {}
                Err(e) => return Poll::Ready(Some(Err(e))),
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        lock(&self.link).body.is_done()
    }

    fn size_hint(&self) -> SizeHint {
        lock(&self.link)
            .body
            .exact_len()
            .map_or_else(SizeHint::new, SizeHint::with_exact)
    }
}

/// The client's side of a protocol switch, in the request's extensions when it asked for an
/// upgrade: resolves once the handler's `101` has been written.
/// (Clone because request extensions must be; only one clone gets the connection.)
#[derive(Clone)]
pub(crate) struct OnUpgrade(Arc<Mutex<Option<oneshot::Receiver<Upgraded>>>>);

impl OnUpgrade {
    pub async fn upgraded(self) -> io::Result<Upgraded> {
        let rx = self.0.lock().unwrap_or_else(|p| p.into_inner()).take();
        let Some(rx) = rx else {
            return Err(io::Error::other("the upgrade was taken already"));
        };
        rx.await.map_err(|_| {
            io::Error::new(
                io::ErrorKind::ConnectionAborted,
                "the client connection ended before its upgrade",
            )
        })
    }
}

/// A client connection after a `101`: what the client sent behind its request comes first.
pub(crate) struct Upgraded(Link);

impl AsyncRead for Upgraded {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        out: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let mut s = lock(&self.0);
        if !s.buf.is_empty() {
            let n = s.buf.len().min(out.remaining());
            out.put_slice(&s.buf[..n]);
            s.buf.advance(n);
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut s.io).poll_read(cx, out)
    }
}

impl AsyncWrite for Upgraded {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, b: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut lock(&self.0).io).poll_write(cx, b)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut lock(&self.0).io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut lock(&self.0).io).poll_shutdown(cx)
    }
}

/// Why a request head is refused, with the status it gets.
#[derive(Debug, PartialEq, Eq)]
enum Refusal {
    Bad(&'static str),
    TooLarge,
    NotImplemented(&'static str),
}

impl Refusal {
    fn status(&self) -> StatusCode {
        match self {
            Refusal::Bad(_) => StatusCode::BAD_REQUEST,
            Refusal::TooLarge => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            Refusal::NotImplemented(_) => StatusCode::NOT_IMPLEMENTED,
        }
    }

    fn message(&self) -> &'static str {
        match self {
            Refusal::Bad(m) | Refusal::NotImplemented(m) => m,
            Refusal::TooLarge => "request head too large (at most 64 KiB and 100 headers)",
        }
    }
}

/// A request head, parsed and checked.
struct Head {
    request: Request<()>,
    body: Decoder,
    keep_alive: bool,
    /// `Expect: 100-continue`.
    expects_continue: bool,
    /// The request names a protocol to switch to.
    upgrade: bool,
}

/// A complete request head at the start of `buf`, split off it; `None` if it is not all
/// there yet.
fn parse_head(buf: &mut BytesMut) -> Result<Option<Head>, Refusal> {
    let mut slots = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut slots);
    let len = match req.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) if buf.len() < MAX_HEAD => return Ok(None),
        Ok(httparse::Status::Partial) | Err(httparse::Error::TooManyHeaders) => {
            return Err(Refusal::TooLarge)
        }
        Err(_) => return Err(Refusal::Bad("malformed request head")),
    };
    if len > MAX_HEAD {
        return Err(Refusal::TooLarge);
    }
    let method = Method::from_bytes(req.method.unwrap_or_default().as_bytes())
        .map_err(|_| Refusal::Bad("bad method"))?;
    let version = match req.version {
        Some(1) => Version::HTTP_11,
        _ => Version::HTTP_10,
    };
    let target = req.path.unwrap_or_default().as_bytes();
    let target_at = target.as_ptr() as usize - buf.as_ptr() as usize;
    let target = target_at..target_at + target.len();
    let mut at = [NO_SPAN; MAX_HEADERS];
    let spans = spans(buf, req.headers, &mut at);
    let head = buf.split_to(len).freeze();
    let headers = header_map(&head, spans, ADDED_TO_REQUEST).map_err(Refusal::Bad)?;
    let uri = Uri::from_maybe_shared(head.slice(target))
        .map_err(|_| Refusal::Bad("bad request target"))?;
    let body = request_body(version, &headers)?;
    let keep_alive = framing::keep_alive(version, &headers);
    let expects_continue = version == Version::HTTP_11
        && tokens(&headers, header::EXPECT).any(|t| t.eq_ignore_ascii_case(b"100-continue"));
    let upgrade = version == Version::HTTP_11 && headers.contains_key(header::UPGRADE);
    let mut request = Request::new(());
    *request.method_mut() = method;
    *request.uri_mut() = uri;
    *request.version_mut() = version;
    *request.headers_mut() = headers;
    Ok(Some(Head {
        request,
        body,
        keep_alive,
        expects_continue,
        upgrade,
    }))
}

/// Where a request's body ends (RFC 9112 section 6), refusing every ambiguity.
fn request_body(version: Version, headers: &HeaderMap) -> Result<Decoder, Refusal> {
    if headers.contains_key(header::TRANSFER_ENCODING) {
        if version == Version::HTTP_10 {
            return Err(Refusal::Bad("Transfer-Encoding in an HTTP/1.0 request"));
        }
        if headers.contains_key(header::CONTENT_LENGTH) {
            return Err(Refusal::Bad(
                "both Transfer-Encoding and Content-Length: the body's end is ambiguous",
            ));
        }
        let mut codings = tokens(headers, header::TRANSFER_ENCODING);
        let only_chunked = codings
            .next()
            .is_some_and(|t| t.eq_ignore_ascii_case(b"chunked"))
            && codings.next().is_none();
        return if only_chunked {
            Ok(Decoder::chunked())
        } else if framing::ends_chunked(headers) {
            Err(Refusal::NotImplemented(
                "no transfer coding but chunked is supported",
            ))
        } else {
            Err(Refusal::Bad("Transfer-Encoding does not end in chunked"))
        };
    }
    if headers.contains_key(header::CONTENT_LENGTH) {
        return content_length(headers)
            .map(Decoder::length)
            .map_err(Refusal::Bad);
    }
    Ok(Decoder::Done)
}

/// Serves HTTP/1.1 on `io` until the client closes, a response ends the connection, the
/// router stops (`stopping`; a request in progress finishes first) or a `101` hands it over.
/// `handle` answers one request.
pub(crate) async fn serve<T, H, F>(
    io: T,
    stopping: watch::Receiver<bool>,
    mut handle: H,
) -> io::Result<()>
where
    T: Io,
    H: FnMut(Request<ClientBody>) -> F,
    F: Future<Output = Response<ProxyBody>>,
{
    let link: Link = Arc::new(Mutex::new(Shared {
        buf: BytesMut::new(),
        body: Decoder::Done,
        cont: 0,
        cont_flush: false,
        io,
    }));
    // One wait for the stop for the connection's whole life: a wait begun anew for every
    // request joined and left the channel's list of waiters (a lock, and a touch of two
    // other connections' waits) each time, ~1.5% of the router's CPU at 2,000 connections.
    let mut stop = pin!(stopped(stopping.clone()));
    loop {
        let head = loop {
            let parsed = {
                let mut s = lock(&link);
                if s.buf.is_empty() {
                    None
                } else {
                    Some(parse_head(&mut s.buf))
                }
            };
            match parsed {
                Some(Ok(Some(head))) => break head,
                Some(Ok(None)) => {}
                Some(Err(refusal)) => return refuse(&link, refusal).await,
                None => {
                    // Between requests: a stop closes the connection now.
                    if *stopping.borrow() {
                        return shutdown(&link).await;
                    }
                }
            }
            let idle = lock(&link).buf.is_empty();
            let read = if idle {
                tokio::select! {
                    biased;
                    r = fill(&link, FIRST_READ) => r?,
                    () = &mut stop => return shutdown(&link).await,
                }
            } else {
                fill(&link, FIRST_READ).await?
            };
            if read == 0 {
                // The client left, between requests or in the middle of a head: nothing
                // to answer.
                return Ok(());
            }
        };
        let Head {
            request,
            body,
            keep_alive,
            expects_continue,
            upgrade,
        } = head;
        {
            let mut s = lock(&link);
            s.cont = if expects_continue && !body.is_done() {
                CONTINUE.len()
            } else {
                0
            };
            s.body = body;
            if s.buf.is_empty() {
                // The head holds its own slice of the buffer; the rest is not ours to keep.
                s.buf = BytesMut::new();
            }
        }
        let head_request = request.method() == Method::HEAD;
        let version = request.version();
        let mut request = request.map(|()| {
            ClientBody::H1(RequestBody {
                link: Arc::clone(&link),
            })
        });
        let switch = upgrade.then(|| {
            let (tx, rx) = oneshot::channel();
            request
                .extensions_mut()
                .insert(OnUpgrade(Arc::new(Mutex::new(Some(rx)))));
            tx
        });
        let response = tokio::select! {
            biased;
            r = handle(request) => r,
            // Dropping the handler's future settles the request as 499 and lets its
            // instance connection go.
            () = client_gone(&link) => return Ok(()),
        };
        let keep_alive = keep_alive && !*stopping.borrow();
        let next = write_response(&link, response, head_request, version, keep_alive).await?;
        match next {
            Next::Switch => {
                // The handler's tunnel takes the connection; without one there is nothing
                // to switch to.
                let body_read = lock(&link).body.is_done();
                if let (Some(tx), true) = (switch, body_read) {
                    let _ = tx.send(Upgraded(Arc::clone(&link)));
                }
                return Ok(());
            }
            Next::Close => return shutdown(&link).await,
            Next::KeepAlive => {}
        }
        let body_read = {
            let mut s = lock(&link);
            if s.buf.is_empty() {
                s.buf = BytesMut::new();
            }
            s.body.is_done()
        };
        if !body_read {
            // The handler answered without reading all of the body: what is left of it
            // would be taken for the next request.
            return shutdown(&link).await;
        }
    }
}

/// Resolves when the client closes its connection while its request is being answered (the
/// read side ending counts, as in hyper and nginx). Bytes of a next request that come
/// meanwhile are kept, up to one head's worth. Until the request's body has been read, the
/// body reads the socket; this is polled again whenever the task wakes, so it takes over
/// once the body is done.
async fn client_gone(link: &Link) {
    loop {
        let read = poll_fn(|cx| {
            let mut s = lock(link);
            if !s.body.is_done() || s.buf.len() >= MAX_HEAD {
                return Poll::Pending;
            }
            s.poll_fill(cx, FIRST_READ)
        })
        .await;
        if !matches!(read, Ok(n) if n > 0) {
            return;
        }
    }
}

/// Resolves when the router stops (or is gone).
async fn stopped(mut stopping: watch::Receiver<bool>) {
    let _ = stopping.wait_for(|s| *s).await;
}

/// Reads more of the connection.
async fn fill(link: &Link, want: usize) -> io::Result<usize> {
    poll_fn(|cx| lock(link).poll_fill(cx, want)).await
}

async fn write_all(link: &Link, mut bytes: &[u8]) -> io::Result<()> {
    while !bytes.is_empty() {
        let n = poll_fn(|cx| Pin::new(&mut lock(link).io).poll_write(cx, bytes)).await?;
        if n == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        bytes = &bytes[n..];
    }
    Ok(())
}

async fn flush(link: &Link) -> io::Result<()> {
    poll_fn(|cx| Pin::new(&mut lock(link).io).poll_flush(cx)).await
}

/// Ends our side of the connection (TLS: its close_notify) after the last response.
async fn shutdown(link: &Link) -> io::Result<()> {
    poll_fn(|cx| Pin::new(&mut lock(link).io).poll_shutdown(cx)).await
}

/// Answers a head we refuse, and closes.
async fn refuse(link: &Link, refusal: Refusal) -> io::Result<()> {
    let status = refusal.status();
    let message = refusal.message();
    let mut out = Vec::with_capacity(256);
    status_line(&mut out, Version::HTTP_11, status);
    out.extend_from_slice(b"content-type: text/plain; charset=utf-8\r\n");
    out.extend_from_slice(format!("content-length: {}\r\n", message.len() + 1).as_bytes());
    out.extend_from_slice(b"connection: close\r\n");
    date(&mut out);
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(message.as_bytes());
    out.push(b'\n');
    write_all(link, &out).await?;
    flush(link).await?;
    shutdown(link).await
}

/// What follows a response on its connection.
#[derive(Debug, PartialEq, Eq)]
enum Next {
    KeepAlive,
    Close,
    /// A `101` went out: the connection is the tunnel's.
    Switch,
}

/// How the response body is delimited towards the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Out {
    None,
    Length(u64),
    Chunked,
    UntilClose,
}

/// The status line; an HTTP/1.0 client is answered in 1.0 (as hyper did before this module).
fn status_line(out: &mut Vec<u8>, version: Version, status: StatusCode) {
    out.extend_from_slice(if version == Version::HTTP_10 {
        b"HTTP/1.0 "
    } else {
        b"HTTP/1.1 "
    });
    out.extend_from_slice(status.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(status.canonical_reason().unwrap_or("").as_bytes());
    out.extend_from_slice(b"\r\n");
}

/// Writes `response`; the body settles its bookkeeping as it ends, before this returns.
async fn write_response(
    link: &Link,
    response: Response<ProxyBody>,
    head_request: bool,
    version: Version,
    keep_alive: bool,
) -> io::Result<Next> {
    let (mut parts, mut body) = response.into_parts();
    let status = parts.status;
    let switch = status == StatusCode::SWITCHING_PROTOCOLS;
    let bodiless = head_request
        || status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED;
    let out = if bodiless {
        Out::None
    } else if let Some(n) = body.size_hint().exact() {
        Out::Length(n)
    } else if version == Version::HTTP_11 {
        Out::Chunked
    } else {
        Out::UntilClose
    };
    let mut keep_alive = keep_alive && out != Out::UntilClose;
    // Room for the status line and the headers added here (a date, a length, `connection`)
    // and for a small body, gathered after the head: one allocation, never a copy to grow.
    let small_body = match out {
        Out::Length(n) => usize::try_from(n).unwrap_or(usize::MAX),
        _ => 0,
    };
    let head_size = 160
        + parts
            .headers
            .iter()
            .map(|(n, v)| n.as_str().len() + v.len() + 4)
            .sum::<usize>();
    let mut head = Vec::with_capacity(if head_size + small_body <= GATHER {
        head_size + small_body
    } else {
        head_size
    });
    status_line(&mut head, version, status);
    let mut has_date = false;
    for (name, value) in &parts.headers {
        if name == header::TRANSFER_ENCODING || (!bodiless && name == header::CONTENT_LENGTH) {
            // Ours to decide, below.
            continue;
        }
        if name == header::CONNECTION {
            if switch {
                // `Connection: upgrade`, which the client needs in a 101.
                head_line(&mut head, name.as_str(), value.as_bytes());
            } else if value.as_bytes().eq_ignore_ascii_case(b"close") {
                keep_alive = false;
            }
            continue;
        }
        has_date |= name == header::DATE;
        head_line(&mut head, name.as_str(), value.as_bytes());
    }
    if !has_date {
        date(&mut head);
    }
    match out {
        Out::Length(n) => head_line(&mut head, "content-length", decimal(n, &mut [0; 20])),
        Out::Chunked => head_line(&mut head, "transfer-encoding", b"chunked"),
        Out::None | Out::UntilClose => {}
    }
    if !switch {
        if !keep_alive {
            head_line(&mut head, "connection", b"close");
        } else if version == Version::HTTP_10 {
            head_line(&mut head, "connection", b"keep-alive");
        }
    }
    head.extend_from_slice(b"\r\n");
    super::spares::give_back(std::mem::take(&mut parts.headers));
    drop(parts);
    if out == Out::None {
        // Settles now: a HEAD, 1xx, 204 or 304 has no body to wait for.
        drop(body);
        write_all(link, &head).await?;
        flush(link).await?;
        return Ok(if switch {
            Next::Switch
        } else if keep_alive {
            Next::KeepAlive
        } else {
            Next::Close
        });
    }
    let mut pending = head;
    let mut sent: u64 = 0;
    loop {
        // Gather what is ready without waiting; wait only with nothing to write.
        let frame = if pending.is_empty() {
            poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await
        } else {
            match poll_fn(|cx| Poll::Ready(Pin::new(&mut body).poll_frame(cx))).await {
                Poll::Ready(f) => f,
                Poll::Pending => {
                    write_all(link, &pending).await?;
                    flush(link).await?;
                    pending.clear();
                    continue;
                }
            }
        };
        let (data, none_left) = match frame {
            None => (Bytes::new(), true),
            Some(Ok(frame)) => (frame.into_data().unwrap_or_default(), false),
            Some(Err(e)) => {
                // The instance failed mid-body: the client must not take what it got for
                // the whole response, so the connection ends without a proper end.
                write_all(link, &pending).await?;
                flush(link).await?;
                return Err(e);
            }
        };
        sent += data.len() as u64;
        if let Out::Length(n) = out {
            if sent > n {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "response body longer than its length",
                ));
            }
        }
        let ended = none_left || body.is_end_stream();
        if !data.is_empty() {
            if out == Out::Chunked {
                pending.extend_from_slice(chunk_size_line(data.len(), &mut [0; 18]));
            }
            if pending.len() + data.len() <= GATHER {
                pending.extend_from_slice(&data);
            } else {
                write_all(link, &pending).await?;
                pending.clear();
                write_all(link, &data).await?;
            }
            if out == Out::Chunked {
                pending.extend_from_slice(b"\r\n");
            }
        }
        if ended {
            break;
        }
        if pending.len() >= GATHER {
            write_all(link, &pending).await?;
            pending.clear();
        }
    }
    drop(body);
    if out == Out::Chunked {
        pending.extend_from_slice(b"0\r\n\r\n");
    }
    write_all(link, &pending).await?;
    flush(link).await?;
    if let Out::Length(n) = out {
        if sent != n {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "response body shorter than its length",
            ));
        }
    }
    Ok(if keep_alive {
        Next::KeepAlive
    } else {
        Next::Close
    })
}

/// A chunk's size line, `HEX\r\n`, written into `line` (16 digits at most, and CRLF).
fn chunk_size_line(n: usize, line: &mut [u8; 18]) -> &[u8] {
    line[16..].copy_from_slice(b"\r\n");
    let at = 16 - digits(n as u64, 16, &mut line[..16]).len();
    &line[at..]
}

/// `n` in decimal, written into `out` (a u64 has at most 20 digits): no String per response.
fn decimal(n: u64, out: &mut [u8; 20]) -> &[u8] {
    digits(n, 10, out)
}

/// `n` in base `radix` (10 or 16), written at the end of `out`, which must be long enough.
fn digits(mut n: u64, radix: u64, out: &mut [u8]) -> &[u8] {
    let mut at = out.len();
    loop {
        at -= 1;
        out[at] = b"0123456789abcdef"[(n % radix) as usize];
        n /= radix;
        if n == 0 {
            return &out[at..];
        }
    }
}

fn head_line(out: &mut Vec<u8>, name: &str, value: &[u8]) {
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// A `date` header, formatted once per second per thread.
fn date(out: &mut Vec<u8>) {
    use std::cell::RefCell;
    use std::time::{SystemTime, UNIX_EPOCH};
    thread_local! {
        static CACHED: RefCell<(u64, String)> = const { RefCell::new((0, String::new())) };
    }
    let now = SystemTime::now();
    let secs = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    CACHED.with(|c| {
        let mut c = c.borrow_mut();
        if c.0 != secs || c.1.is_empty() {
            *c = (secs, httpdate::fmt_http_date(now));
        }
        head_line(out, "date", c.1.as_bytes());
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(raw: &str) -> Result<Option<Head>, Refusal> {
        parse_head(&mut BytesMut::from(raw.as_bytes()))
    }

    fn refused(raw: &str) -> Refusal {
        match head(raw) {
            Err(r) => r,
            Ok(Some(h)) => panic!("accepted {raw:?}: {:?}", h.request),
            Ok(None) => panic!("incomplete {raw:?}"),
        }
    }

    #[test]
    fn a_chunk_size_line_is_hex_and_crlf() {
        for n in [0, 9, 10, 255, 16 * 1024, usize::MAX] {
            assert_eq!(
                chunk_size_line(n, &mut [0; 18]),
                format!("{n:x}\r\n").as_bytes()
            );
        }
    }

    #[test]
    fn a_length_is_written_in_decimal() {
        for n in [0, 7, 10, 4096, u64::MAX] {
            assert_eq!(decimal(n, &mut [0; 20]), n.to_string().as_bytes());
        }
    }

    #[test]
    fn a_request_map_has_room_for_the_headers_the_router_adds() {
        let h = head("GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            .ok()
            .flatten()
            .expect("complete");
        assert!(
            h.request.headers().capacity() > ADDED_TO_REQUEST,
            "one header and room for ours"
        );
    }

    #[test]
    fn a_head_is_split_off_with_its_framing() {
        let mut buf = BytesMut::from(
            &b"POST /a?b=1 HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhelloGET"[..],
        );
        let h = parse_head(&mut buf).expect("valid").expect("complete");
        assert_eq!(h.request.method(), Method::POST);
        assert_eq!(h.request.uri(), "/a?b=1");
        assert_eq!(h.request.headers()["host"], "x");
        assert_eq!(h.body, Decoder::Length(5));
        assert!(h.keep_alive && !h.expects_continue && !h.upgrade);
        assert_eq!(&buf[..], b"helloGET", "the body and what follows stay");
        assert!(head("GET / HTTP/1.1\r\nHost: x\r\n").expect("ok").is_none());
        let h = head("GET / HTTP/1.0\r\n\r\n")
            .expect("ok")
            .expect("complete");
        assert!(!h.keep_alive, "HTTP/1.0 closes unless asked");
        let h = head("GET / HTTP/1.1\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nExpect: 100-continue\r\n\r\n")
            .expect("ok")
            .expect("complete");
        assert!(h.upgrade && h.expects_continue && h.body.is_done());
        let h = head("PUT / HTTP/1.1\r\nTransfer-Encoding: Chunked\r\n\r\n")
            .expect("ok")
            .expect("complete");
        assert_eq!(h.body, Decoder::chunked());
    }

    #[test]
    fn ambiguous_framing_is_refused() {
        for raw in [
            "POST / HTTP/1.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
            "POST / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
            "POST / HTTP/1.1\r\nContent-Length: 5, 6\r\n\r\n",
            "POST / HTTP/1.1\r\nContent-Length: +5\r\n\r\n",
            "POST / HTTP/1.1\r\nContent-Length: 99999999999999999999999\r\n\r\n",
            "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n",
            "POST / HTTP/1.1\r\nTransfer-Encoding: chunked, gzip\r\n\r\n",
            "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n\r\n",
            "GET / HTTP/1.1\r\nBad Name: x\r\n\r\n",
            "GET / HTTP/1.1\r\nX: a\u{1}b\r\n\r\n",
            "GET\x01 / HTTP/1.1\r\n\r\n",
            "GET / HTTP/2.0\r\n\r\n",
        ] {
            assert!(
                matches!(refused(raw), Refusal::Bad(_)),
                "{raw:?} refused as bad"
            );
        }
        assert!(matches!(
            refused("POST / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"),
            Refusal::NotImplemented(_)
        ));
        let h = head("POST / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n")
            .expect("repeats of one length are fine")
            .expect("complete");
        assert_eq!(h.body, Decoder::Length(5));
    }

    #[test]
    fn a_head_past_the_limits_is_too_large() {
        let long = format!("GET /{} HTTP/1.1\r\n", "a".repeat(MAX_HEAD));
        assert_eq!(refused(&long), Refusal::TooLarge);
        let mut many = String::from("GET / HTTP/1.1\r\n");
        for i in 0..=MAX_HEADERS {
            many.push_str(&format!("X-{i}: 1\r\n"));
        }
        many.push_str("\r\n");
        assert_eq!(refused(&many), Refusal::TooLarge);
    }
}
