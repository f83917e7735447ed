//! Where an HTTP/1.1 body ends: the decoder for a body delimited by a length, by chunks or by
//! the connection's close, shared by both sides of the router (a client's request body in
//! `h1`, an instance's response body in `upstream`).
//!
//! Pure: it works on bytes already read and never touches a socket. Chunked bodies are read
//! strictly (a chunk's data must end in CRLF; size lines and trailers are bounded), and the
//! router always sends what it decoded with framing of its own, so no peculiarity of a
//! sender's chunking reaches the other side.

use bytes::{Buf, Bytes, BytesMut};
use std::ops::Range;

use hyper::header::{self, HeaderMap, HeaderName, HeaderValue};
use hyper::Version;

/// A chunk-size line, extensions included.
const MAX_CHUNK_LINE: usize = 4 * 1024;
/// All trailer lines of a chunked body together (they are read and dropped, as nginx does).
const MAX_TRAILERS: usize = 64 * 1024;

/// The decoder's state: what comes next on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Decoder {
    /// This many bytes of body remain.
    Length(u64),
    Chunk(Chunk),
    /// Everything until the peer closes (a response without length; never a request).
    UntilClose,
    Done,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Chunk {
    Size,
    Data(u64),
    /// The CRLF after a chunk's data.
    DataEnd,
    /// After the last chunk: trailer lines (bytes read of them so far), then an empty line.
    Trailers(usize),
}

/// What [`Decoder::decode`] found in the buffer.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Decoded {
    /// The next piece of the body, a slice of the buffer (no copy).
    Data(Bytes),
    /// The body is complete.
    End,
    /// More bytes are needed.
    More,
}

impl Decoder {
    /// A body of `n` bytes.
    pub fn length(n: u64) -> Decoder {
        if n == 0 {
            Decoder::Done
        } else {
            Decoder::Length(n)
        }
    }

    pub fn chunked() -> Decoder {
        Decoder::Chunk(Chunk::Size)
    }

    pub fn is_done(&self) -> bool {
        *self == Decoder::Done
    }

    /// The bytes of body still to come, when the framing says.
    pub fn exact_len(&self) -> Option<u64> {
        match self {
            Decoder::Length(n) => Some(*n),
            Decoder::Done => Some(0),
            _ => None,
        }
    }

    /// Takes the next piece of the body out of `buf`, or says the body is over or more bytes
    /// are needed. An error means the framing is broken: the connection cannot be used again.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Decoded, &'static str> {
        loop {
            match *self {
                Decoder::Done => return Ok(Decoded::End),
                Decoder::Length(n) | Decoder::Chunk(Chunk::Data(n)) if !buf.is_empty() => {
                    let take = usize::try_from(n).unwrap_or(usize::MAX).min(buf.len());
                    let piece = buf.split_to(take).freeze();
                    let left = n - take as u64;
                    *self = match (*self, left) {
                        (Decoder::Length(_), 0) => Decoder::Done,
                        (Decoder::Length(_), _) => Decoder::Length(left),
                        (_, 0) => Decoder::Chunk(Chunk::DataEnd),
                        (_, _) => Decoder::Chunk(Chunk::Data(left)),
                    };
                    return Ok(Decoded::Data(piece));
                }
                Decoder::UntilClose if !buf.is_empty() => {
                    return Ok(Decoded::Data(buf.split().freeze()));
                }
                Decoder::Chunk(Chunk::Size) if !buf.is_empty() => {
                    match httparse::parse_chunk_size(buf) {
                        Ok(httparse::Status::Complete((used, size))) => {
                            buf.advance(used);
                            *self = Decoder::Chunk(if size == 0 {
                                Chunk::Trailers(0)
                            } else {
                                Chunk::Data(size)
                            });
                            continue;
                        }
                        Ok(httparse::Status::Partial) if buf.len() < MAX_CHUNK_LINE => {}
                        _ => return Err("bad chunk size line"),
                    }
                }
                Decoder::Chunk(Chunk::DataEnd) if buf.len() >= 2 => {
                    if &buf[..2] != b"\r\n" {
                        return Err("chunk data longer than its size");
                    }
                    buf.advance(2);
                    *self = Decoder::Chunk(Chunk::Size);
                    continue;
                }
                Decoder::Chunk(Chunk::Trailers(seen)) if !buf.is_empty() => {
                    if let Some(end) = buf.windows(2).position(|w| w == b"\r\n") {
                        buf.advance(end + 2);
                        if seen + end + 2 > MAX_TRAILERS {
                            return Err("trailers too large");
                        }
                        *self = if end == 0 {
                            Decoder::Done
                        } else {
                            Decoder::Chunk(Chunk::Trailers(seen + end + 2))
                        };
                        continue;
                    }
                    if seen + buf.len() > MAX_TRAILERS {
                        return Err("trailers too large");
                    }
                }
                _ => {}
            }
            return Ok(Decoded::More);
        }
    }
}

/// Where a header's name and value sit in the buffer httparse parsed them from, so that the
/// values can share its memory once the head is split off and frozen.
pub(crate) type Span = (Range<usize>, Range<usize>);
/// An unused slot of a caller's span array (on the stack: a head costs no allocation here).
pub(crate) const NO_SPAN: Span = (0..0, 0..0);

/// The spans of `headers` in `buf`, written to the start of `out` (as long as httparse's
/// header slots, so that they fit).
pub(crate) fn spans<'o>(
    buf: &[u8],
    headers: &[httparse::Header<'_>],
    out: &'o mut [Span],
) -> &'o [Span] {
    let base = buf.as_ptr() as usize;
    let n = headers.len().min(out.len());
    for (slot, h) in out.iter_mut().zip(headers) {
        let name = h.name.as_ptr() as usize - base;
        let value = h.value.as_ptr() as usize - base;
        *slot = (name..name + h.name.len(), value..value + h.value.len());
    }
    &out[..n]
}

/// The headers at `spans` of `head`; the values are slices of it, not copies. The map has
/// room for `extra` more headers: the router adds its own (forwarding headers to a request,
/// a request id to a response), and growing a map rehashes it and allocates twice.
pub(crate) fn header_map(
    head: &Bytes,
    spans: &[Span],
    extra: usize,
) -> Result<HeaderMap, &'static str> {
    let mut headers = super::spares::take(spans.len() + extra);
    for (name, value) in spans {
        let name = HeaderName::from_bytes(&head[name.clone()]).map_err(|_| "bad header name")?;
        let value = HeaderValue::from_maybe_shared(head.slice(value.clone()))
            .map_err(|_| "bad header value")?;
        headers.append(name, value);
    }
    Ok(headers)
}

/// The comma-separated tokens of every value of a header, trimmed, empty ones skipped.
pub(crate) fn tokens(headers: &HeaderMap, name: HeaderName) -> impl Iterator<Item = &[u8]> {
    headers
        .get_all(name)
        .into_iter()
        .flat_map(|v| v.as_bytes().split(|b| *b == b','))
        .map(<[u8]>::trim_ascii)
        .filter(|t| !t.is_empty())
}

/// Whether the connection stays open after this message (RFC 9112 section 9.3).
pub(crate) fn keep_alive(version: Version, headers: &HeaderMap) -> bool {
    let mut close = false;
    let mut keep = false;
    for t in tokens(headers, header::CONNECTION) {
        close |= t.eq_ignore_ascii_case(b"close");
        keep |= t.eq_ignore_ascii_case(b"keep-alive");
    }
    !close && (version == Version::HTTP_11 || keep)
}

/// The last transfer coding is `chunked`.
pub(crate) fn ends_chunked(headers: &HeaderMap) -> bool {
    tokens(headers, header::TRANSFER_ENCODING)
        .last()
        .is_some_and(|t| t.eq_ignore_ascii_case(b"chunked"))
}

/// The one length of every `Content-Length` value (repeats of the same number are allowed).
pub(crate) fn content_length(headers: &HeaderMap) -> Result<u64, &'static str> {
    let mut found = None;
    for t in tokens(headers, header::CONTENT_LENGTH) {
        let n = std::str::from_utf8(t)
            .ok()
            .filter(|s| s.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|s| s.parse::<u64>().ok())
            .ok_or("bad Content-Length")?;
        if found.is_some_and(|f| f != n) {
            return Err("conflicting Content-Length values");
        }
        found = Some(n);
    }
    found.ok_or("empty Content-Length")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `wire` one byte at a time and collects the body.
    fn byte_by_byte(mut d: Decoder, wire: &[u8]) -> Result<(Vec<u8>, usize), &'static str> {
        let mut buf = BytesMut::new();
        let mut body = Vec::new();
        for (i, b) in wire.iter().enumerate() {
            buf.extend_from_slice(&[*b]);
            loop {
                match d.decode(&mut buf)? {
                    Decoded::Data(p) => body.extend_from_slice(&p),
                    Decoded::End => return Ok((body, wire.len() - i - 1 + buf.len())),
                    Decoded::More => break,
                }
            }
        }
        Err("incomplete")
    }

    #[test]
    fn a_chunked_body_decodes_whole_or_a_byte_at_a_time() {
        let wire = b"5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nX-T: 1\r\n\r\nNEXT";
        let (body, left) = byte_by_byte(Decoder::chunked(), wire).expect("decodes");
        assert_eq!(body, b"hello world");
        assert_eq!(left, 4, "stops right after the empty line: NEXT is left");
        let mut buf = BytesMut::from(&wire[..]);
        let mut d = Decoder::chunked();
        let mut body = Vec::new();
        while let Decoded::Data(p) = d.decode(&mut buf).expect("decodes") {
            body.extend_from_slice(&p);
        }
        assert_eq!(body, b"hello world");
        assert_eq!(&buf[..], b"NEXT", "the next message stays in the buffer");
    }

    #[test]
    fn broken_chunking_is_an_error() {
        for wire in [
            &b"5\r\nhelloXX0\r\n\r\n"[..],
            b"zz\r\n",
            b"ffffffffffffffffffff\r\n",
        ] {
            assert!(
                byte_by_byte(Decoder::chunked(), wire).is_err(),
                "{:?}",
                String::from_utf8_lossy(wire)
            );
        }
        let mut long = b"1".repeat(MAX_CHUNK_LINE + 1);
        long.extend_from_slice(b"\r\n");
        assert!(byte_by_byte(Decoder::chunked(), &long).is_err());
        let mut trailers = b"0\r\n".to_vec();
        for _ in 0..MAX_TRAILERS / 8 + 1 {
            trailers.extend_from_slice(b"X-A: 1\r\n");
        }
        assert!(byte_by_byte(Decoder::chunked(), &trailers).is_err());
    }

    #[test]
    fn a_length_takes_exactly_its_bytes() {
        let mut buf = BytesMut::from(&b"abcdefNEXT"[..]);
        let mut d = Decoder::length(6);
        assert_eq!(d.exact_len(), Some(6));
        assert_eq!(
            d.decode(&mut buf),
            Ok(Decoded::Data(Bytes::from_static(b"abcdef")))
        );
        assert_eq!(d.decode(&mut buf), Ok(Decoded::End));
        assert_eq!(&buf[..], b"NEXT");
        assert!(Decoder::length(0).is_done());
    }
}
