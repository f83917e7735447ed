//! HTTP/1.1 towards an instance, spoken from the client request's own task: the request head
//! encoded once (and kept for a retry), the body streamed after it, the response head parsed
//! with `httparse`, and the response body framed (a length, chunked, or until close) and
//! handed to the client's connection as it arrives.
//!
//! Why not hyper's client: it runs every upstream connection as a task of its own with an
//! 8 KiB read and an 8 KiB write buffer, and passes each request and response across a
//! channel between that task and the request's. Here an idle pooled connection is its socket
//! and nothing else, a request's buffer lives only as long as its response, and nothing
//! crosses tasks (docs/benchmarks.md, "the upstream side without hyper's client").
//!
//! Owns the wire format towards instances, and nothing else: it must not route, pick
//! upstreams, retry or pool (`proxy` decides, `pool` keeps sockets). Instances are tenants'
//! code, so everything read here is checked as strictly as a client's request would be: a
//! response that is ambiguous about where it ends is an error or ends the connection.

use std::future::poll_fn;
use std::io;
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use http_body_util::BodyExt;
use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::{Method, StatusCode, Uri, Version};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use super::body::{BodyError, ClientBody};
use super::framing::{
    content_length, ends_chunked, header_map, keep_alive, spans, Decoded, Decoder, NO_SPAN,
};
use super::probe;

/// The largest response head read: the same ceiling as for a client's request head.
const MAX_HEAD: usize = 64 * 1024;
/// Each later read of a body.
const BODY_READ: usize = 16 * 1024;
/// Headers in one response head (hyper's limit).
const MAX_HEADERS: usize = 100;
/// Headers `proxy` may add to a response (`X-Request-Id`, `Strict-Transport-Security`).
const ADDED_TO_RESPONSE: usize = 2;

#[derive(Debug, thiserror::Error)]
pub(crate) enum UpstreamError {
    #[error("writing the request: {0}")]
    Write(#[source] io::Error),
    #[error("reading the response: {0}")]
    Read(#[source] io::Error),
    #[error("connection closed before a response")]
    Closed,
    #[error("connection closed in the middle of the response head")]
    ClosedInHead,
    #[error("malformed response head: {0}")]
    Malformed(&'static str),
    #[error("response head larger than {MAX_HEAD} bytes")]
    HeadTooLarge,
    #[error("101 Switching Protocols to a request that asked for no upgrade")]
    UnaskedSwitch,
    #[error("reading the client's request body: {0}")]
    ClientBody(#[source] BodyError),
}

/// The body of a request to an instance.
pub(crate) enum UpstreamBody {
    /// The request had no body, so it can be sent again to another upstream.
    Empty,
    Client(ClientBody),
}

/// How a request's body is delimited on the wire towards the instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RequestFraming {
    /// No body (a `Content-Length` from the client, if any, is 0 and forwarded).
    None,
    /// The client's `Content-Length`, forwarded; its body has exactly that many bytes
    /// (the server side, `h1` or hyper's, checked it).
    Length,
    /// Chunked (we added `Transfer-Encoding: chunked`): the client's body has no length.
    Chunked,
}

/// Decides the framing of a request body and adds the header it needs. `empty`: the body is
/// known to be empty.
pub(crate) fn frame_request(headers: &mut HeaderMap, empty: bool) -> RequestFraming {
    if empty {
        RequestFraming::None
    } else if headers.contains_key(header::CONTENT_LENGTH) {
        RequestFraming::Length
    } else {
        headers.insert(
            header::TRANSFER_ENCODING,
            HeaderValue::from_static("chunked"),
        );
        RequestFraming::Chunked
    }
}

/// The request head as bytes: `METHOD TARGET HTTP/1.1`, then every header. The target is the
/// origin form (`proxy` turned an absolute one into it).
pub(crate) fn encode_head(method: &Method, uri: &Uri, headers: &HeaderMap) -> Bytes {
    let target = uri.path_and_query().map_or("/", |p| p.as_str());
    // Exactly the size written: a Vec that has to grow copies itself, and one whose length
    // is not its capacity costs `Bytes` an allocation more.
    let size = headers
        .iter()
        .map(|(n, v)| n.as_str().len() + v.len() + 4)
        .sum::<usize>()
        + method.as_str().len()
        + 1
        + target.len()
        + b" HTTP/1.1\r\n\r\n".len();
    let mut out = Vec::with_capacity(size);
    out.extend_from_slice(method.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(target.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\n");
    for (name, value) in headers {
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
    debug_assert_eq!(out.len(), size);
    Bytes::from(out)
}

/// How a response body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    None,
    Length(u64),
    Chunked,
    UntilClose,
}

/// A response head from an instance, with what is needed to read its body.
pub(crate) struct Response {
    pub status: StatusCode,
    pub headers: HeaderMap,
    /// What was read past the head: the start of the body (or, after a 101, of the new
    /// protocol's bytes).
    buf: BytesMut,
    framing: Framing,
    /// The connection may carry another request once this body has been read to its end.
    keep_alive: bool,
}

impl Response {
    /// The status and headers as a response head for the client (HTTP/1.1; the caller
    /// rewrites the headers).
    pub fn take_parts(&mut self) -> hyper::http::response::Parts {
        let mut out = hyper::Response::new(());
        *out.status_mut() = self.status;
        *out.headers_mut() = std::mem::take(&mut self.headers);
        out.into_parts().0
    }

    /// The body reader over `io`, the connection this response came on.
    pub fn into_body(self, io: TcpStream) -> UpstreamReader {
        let state = match self.framing {
            Framing::None => Decoder::Done,
            Framing::Length(n) => Decoder::length(n),
            Framing::Chunked => Decoder::chunked(),
            Framing::UntilClose => Decoder::UntilClose,
        };
        UpstreamReader {
            io: Some(io),
            buf: self.buf,
            state,
            keep_alive: self.keep_alive && self.framing != Framing::UntilClose,
        }
    }

    /// After a 101: the bytes of the new protocol that came with the head.
    pub fn into_leftover(self) -> Bytes {
        self.buf.freeze()
    }
}

/// A failed exchange, and what it means for trying again.
pub(crate) struct Failed {
    pub error: UpstreamError,
    /// The instance cannot have acted on the request (its head did not get out whole, its
    /// body was not touched): any request may go to another upstream.
    pub unsent: bool,
    /// Some bytes of a response arrived: the instance saw the request.
    pub answered: bool,
}

/// Sends one request on `io` and reads the response head. `head_request`: the method is
/// HEAD (its response has no body whatever its headers say); `upgrade`: the request asks to
/// switch protocols (a 101 is then the answer, and the connection is the tunnel's).
pub(crate) async fn exchange(
    io: &mut TcpStream,
    head: &Bytes,
    body: &mut UpstreamBody,
    framing: RequestFraming,
    head_request: bool,
    upgrade: bool,
) -> Result<Response, Failed> {
    if let Err(e) = io.write_all(head).await {
        return Err(Failed {
            error: UpstreamError::Write(e),
            unsent: true,
            answered: false,
        });
    }
    // Unallocated: the first read is a probe, and the buffer then the response's size.
    let mut buf = BytesMut::new();
    let mut answered = false;
    let client_body = match body {
        UpstreamBody::Client(b) if framing != RequestFraming::None => Some(b),
        _ => None,
    };
    let Some(client_body) = client_body else {
        // The common case: nothing more to send.
        return read_head(io, &mut buf, &mut answered)
            .await
            .and_then(|p| finish_head(p, buf, head_request, upgrade))
            .map_err(|error| Failed {
                error,
                unsent: false,
                answered,
            });
    };
    // The body goes out while the response is awaited: an instance may answer early (a 413,
    // a redirect) without reading it, and waiting for the send to finish first would then
    // hang. A response that came before the whole body went out ends the connection.
    let (parsed, sent_all) = {
        let (mut rd, mut wr) = io.split();
        let sending = send_body(&mut wr, client_body, framing == RequestFraming::Chunked);
        let reading = read_head(&mut rd, &mut buf, &mut answered);
        tokio::pin!(sending, reading);
        let mut sent = false;
        let mut write_failed = None;
        let parsed = loop {
            tokio::select! {
                biased;
                r = &mut reading => break r,
                r = &mut sending, if !sent => {
                    sent = true;
                    match r {
                        Ok(()) => {}
                        Err(e @ UpstreamError::ClientBody(_)) => break Err(e),
                        // The instance stopped reading; it may still have answered.
                        Err(e) => write_failed = Some(e),
                    }
                }
            }
        };
        let parsed = match (parsed, write_failed) {
            (Err(UpstreamError::Closed), Some(w)) => Err(w),
            (p, _) => p,
        };
        (parsed, sent)
    };
    let mut resp = parsed
        .and_then(|p| finish_head(p, buf, head_request, upgrade))
        .map_err(|error| Failed {
            error,
            unsent: false,
            answered,
        })?;
    if !sent_all {
        resp.keep_alive = false;
    }
    Ok(resp)
}

/// Copies the client's body to the instance, chunk-encoding it if asked to.
async fn send_body<W: AsyncWrite + Unpin>(
    wr: &mut W,
    body: &mut ClientBody,
    chunked: bool,
) -> Result<(), UpstreamError> {
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(UpstreamError::ClientBody)?;
        // Trailers of a client's chunked body are dropped, as nginx does.
        let Ok(data) = frame.into_data() else {
            continue;
        };
        if data.is_empty() {
            continue;
        }
        if chunked {
            let size = format!("{:x}\r\n", data.len());
            wr.write_all(size.as_bytes())
                .await
                .map_err(UpstreamError::Write)?;
            wr.write_all(&data).await.map_err(UpstreamError::Write)?;
            wr.write_all(b"\r\n").await.map_err(UpstreamError::Write)?;
        } else {
            wr.write_all(&data).await.map_err(UpstreamError::Write)?;
        }
    }
    if chunked {
        wr.write_all(b"0\r\n\r\n")
            .await
            .map_err(UpstreamError::Write)?;
    }
    Ok(())
}

/// A parsed final response head (1xx interim responses other than 101 are skipped).
struct Parsed {
    status: StatusCode,
    version: Version,
    headers: HeaderMap,
}

async fn read_head<R: AsyncRead + Unpin>(
    rd: &mut R,
    buf: &mut BytesMut,
    answered: &mut bool,
) -> Result<Parsed, UpstreamError> {
    loop {
        if !buf.is_empty() {
            if let Some(p) = parse_head(buf)? {
                if p.status.is_informational() && p.status != StatusCode::SWITCHING_PROTOCOLS {
                    // 100 Continue, 103 Early Hints: the final response follows.
                    continue;
                }
                return Ok(p);
            }
            if buf.len() >= MAX_HEAD {
                return Err(UpstreamError::HeadTooLarge);
            }
        }
        let n = if buf.capacity() == 0 {
            poll_fn(|cx| probe::poll_probe(rd, cx, buf)).await
        } else {
            if buf.capacity() - buf.len() < 1024 {
                buf.reserve(buf.len().max(probe::PROBE));
            }
            rd.read_buf(buf).await
        }
        .map_err(UpstreamError::Read)?;
        if n == 0 {
            return Err(if *answered {
                UpstreamError::ClosedInHead
            } else {
                UpstreamError::Closed
            });
        }
        *answered = true;
    }
}

/// A complete head at the start of `buf`, split off it; `None` if it is not all there yet.
fn parse_head(buf: &mut BytesMut) -> Result<Option<Parsed>, UpstreamError> {
    let mut slots = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut resp = httparse::Response::new(&mut slots);
    let len = match resp.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => {
            return Err(UpstreamError::Malformed("more than 100 headers"))
        }
        Err(_) => return Err(UpstreamError::Malformed("not an HTTP/1.x response head")),
    };
    let status = resp
        .code
        .and_then(|c| StatusCode::from_u16(c).ok())
        .ok_or(UpstreamError::Malformed("bad status code"))?;
    let version = match resp.version {
        Some(1) => Version::HTTP_11,
        _ => Version::HTTP_10,
    };
    let mut at = [NO_SPAN; MAX_HEADERS];
    let spans = spans(buf, resp.headers, &mut at);
    let head = buf.split_to(len).freeze();
    let headers = header_map(&head, spans, ADDED_TO_RESPONSE).map_err(UpstreamError::Malformed)?;
    Ok(Some(Parsed {
        status,
        version,
        headers,
    }))
}

/// Works out how the body is delimited and whether the connection can be reused
/// (RFC 9112 §6.3 and §9.3).
fn finish_head(
    p: Parsed,
    buf: BytesMut,
    head_request: bool,
    upgrade: bool,
) -> Result<Response, UpstreamError> {
    let Parsed {
        status,
        version,
        mut headers,
    } = p;
    if status == StatusCode::SWITCHING_PROTOCOLS && !upgrade {
        return Err(UpstreamError::UnaskedSwitch);
    }
    let mut keep_alive = keep_alive(version, &headers);
    let framing = if head_request
        || status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED
    {
        Framing::None
    } else if headers.contains_key(header::TRANSFER_ENCODING) {
        // A length beside a transfer coding is ignored, and must not reach the client.
        headers.remove(header::CONTENT_LENGTH);
        if ends_chunked(&headers) {
            Framing::Chunked
        } else {
            Framing::UntilClose
        }
    } else if headers.contains_key(header::CONTENT_LENGTH) {
        Framing::Length(content_length(&headers).map_err(UpstreamError::Malformed)?)
    } else {
        Framing::UntilClose
    };
    if framing == Framing::UntilClose {
        keep_alive = false;
    }
    Ok(Response {
        status,
        headers,
        buf,
        framing,
        keep_alive,
    })
}

/// Reads a response body off its connection, one piece per poll, without copying: each
/// piece is a slice of the buffer it was read into.
pub(crate) struct UpstreamReader {
    /// `None` once handed back for the pool.
    io: Option<TcpStream>,
    buf: BytesMut,
    state: Decoder,
    keep_alive: bool,
}

fn broken(what: &'static str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what)
}

impl UpstreamReader {
    /// The whole body has been read.
    pub fn is_end(&self) -> bool {
        self.state.is_done()
    }

    /// The body's exact length, when the response gave one.
    pub fn exact_len(&self) -> Option<u64> {
        self.state.exact_len()
    }

    /// The connection, for the pool, if the body ended cleanly and nothing followed it.
    pub fn take_reusable(&mut self) -> Option<TcpStream> {
        if self.state.is_done() && self.keep_alive && self.buf.is_empty() {
            self.io.take()
        } else {
            None
        }
    }

    /// The next piece of the body; `None` at its end.
    pub fn poll_data(&mut self, cx: &mut Context<'_>) -> Poll<Option<io::Result<Bytes>>> {
        loop {
            match self.state.decode(&mut self.buf) {
                Ok(Decoded::Data(piece)) => return Poll::Ready(Some(Ok(piece))),
                Ok(Decoded::End) => return Poll::Ready(None),
                Err(what) => return Poll::Ready(Some(Err(broken(what)))),
                Ok(Decoded::More) => {}
            }
            // Nothing usable buffered: read more.
            match self.fill(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Err(e)) => return Poll::Ready(Some(Err(e))),
                Poll::Ready(Ok(0)) if self.state == Decoder::UntilClose => {
                    self.state = Decoder::Done;
                    return Poll::Ready(None);
                }
                Poll::Ready(Ok(0)) => {
                    return Poll::Ready(Some(Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "the instance closed the connection in the middle of a response body",
                    ))))
                }
                Poll::Ready(Ok(_)) => {}
            }
        }
    }

    fn fill(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        let Some(io) = &self.io else {
            return Poll::Ready(Ok(0));
        };
        if self.buf.capacity() - self.buf.len() < 1024 {
            self.buf.reserve(BODY_READ);
        }
        loop {
            match io.try_read_buf(&mut self.buf) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    if let Err(e) = std::task::ready!(io.poll_read_ready(cx)) {
                        return Poll::Ready(Err(e));
                    }
                }
                r => return Poll::Ready(r),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(raw: &str) -> (Result<Option<Parsed>, UpstreamError>, BytesMut) {
        let mut buf = BytesMut::from(raw.as_bytes());
        (parse_head(&mut buf), buf)
    }

    fn response(raw: &str, head_request: bool) -> Result<Response, UpstreamError> {
        let mut buf = BytesMut::from(raw.as_bytes());
        let p = parse_head(&mut buf)?.ok_or(UpstreamError::ClosedInHead)?;
        finish_head(p, buf, head_request, false)
    }

    #[test]
    fn a_head_is_split_off_and_its_values_share_the_buffer() {
        let (p, rest) =
            parsed("HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-A: 1\r\nX-A: 2\r\n\r\nhello");
        let p = p.ok().flatten().expect("complete");
        assert_eq!(p.status, StatusCode::OK);
        assert_eq!(p.version, Version::HTTP_11);
        let xa: Vec<_> = p.headers.get_all("x-a").iter().collect();
        assert_eq!(xa, ["1", "2"]);
        assert_eq!(&rest[..], b"hello");
        let (p, rest) = parsed("HTTP/1.1 200 OK\r\nContent-Le");
        assert!(matches!(p, Ok(None)));
        assert_eq!(rest.len(), 27, "a partial head stays in the buffer");
        assert!(matches!(
            parsed("SSH-2.0-OpenSSH\r\n\r\n").0,
            Err(UpstreamError::Malformed(_))
        ));
    }

    #[test]
    fn framing_follows_rfc_9112() {
        use Framing::{Chunked, Length, UntilClose};
        const OK: &str = "HTTP/1.1 200 OK\r\n";
        /// Framing and keep-alive; `None`: refused.
        type Outcome = Option<(Framing, bool)>;
        // (status line, headers, a HEAD request?, outcome)
        let cases: &[(&str, &str, bool, Outcome)] = &[
            (OK, "Content-Length: 3", false, Some((Length(3), true))),
            (OK, "Content-Length: 3, 3", false, Some((Length(3), true))),
            (OK, "Content-Length: 3\r\nContent-Length: 4", false, None),
            (OK, "Content-Length: +3", false, None),
            (
                OK,
                "Transfer-Encoding: gzip, chunked\r\nContent-Length: 9",
                false,
                Some((Chunked, true)),
            ),
            (
                OK,
                "Transfer-Encoding: gzip",
                false,
                Some((UntilClose, false)),
            ),
            (
                OK,
                "X-Nothing: about the length",
                false,
                Some((UntilClose, false)),
            ),
            (OK, "Content-Length: 3", true, Some((Framing::None, true))),
            (
                "HTTP/1.1 304 Not Modified\r\n",
                "Content-Length: 3",
                false,
                Some((Framing::None, true)),
            ),
            (
                "HTTP/1.1 204 No Content\r\n",
                "X-A: b",
                false,
                Some((Framing::None, true)),
            ),
            (
                "HTTP/1.0 200 OK\r\n",
                "Content-Length: 3",
                false,
                Some((Length(3), false)),
            ),
            (
                "HTTP/1.0 200 OK\r\n",
                "Connection: keep-alive\r\nContent-Length: 3",
                false,
                Some((Length(3), true)),
            ),
            (
                OK,
                "Connection: close\r\nContent-Length: 3",
                false,
                Some((Length(3), false)),
            ),
        ];
        for (status, headers, head, want) in cases {
            let raw = format!("{status}{headers}\r\n\r\n");
            let got = response(&raw, *head)
                .ok()
                .map(|r| (r.framing, r.keep_alive));
            assert_eq!(&got, want, "{raw:?} (HEAD: {head})");
        }
        let r = response(
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 9\r\n\r\n",
            false,
        );
        assert!(
            r.is_ok_and(|r| !r.headers.contains_key(header::CONTENT_LENGTH)),
            "a length beside chunked is dropped"
        );
        assert!(matches!(
            response(
                "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n",
                false
            ),
            Err(UpstreamError::UnaskedSwitch)
        ));
    }

    #[test]
    fn a_request_head_is_origin_form_http_1_1() {
        let mut h = HeaderMap::new();
        h.insert(header::HOST, HeaderValue::from_static("a.test"));
        assert_eq!(frame_request(&mut h, false), RequestFraming::Chunked);
        let uri: Uri = "/x?y=1".parse().expect("uri");
        let head = encode_head(&Method::POST, &uri, &h);
        assert_eq!(
            &head[..],
            b"POST /x?y=1 HTTP/1.1\r\nhost: a.test\r\ntransfer-encoding: chunked\r\n\r\n"
        );
    }
}
