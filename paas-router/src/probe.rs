//! The first read into a connection's unallocated buffer, shared by both sides of the
//! router (a client's request head in `h1`, an instance's response head in `upstream`).
//!
//! Buffers exist only while bytes are in them (what keeps 2,000 idle keep-alive connections
//! cheap), so every message starts with a read into no buffer. This reads onto the stack
//! and allocates only for what came. Owns that one read; parsing and framing are the
//! callers'.

use std::io;
use std::mem::MaybeUninit;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::BytesMut;
use tokio::io::{AsyncRead, ReadBuf};

/// The most a probe reads (`poll_probe`): a typical request head, or a response head with a
/// small body, fits.
pub(crate) const PROBE: usize = 4 * 1024;

/// The first read into an unallocated buffer goes to the stack, and `buf` gets an
/// allocation only for what came, at its size (twice the probe if the probe filled up: more
/// is on its way). A read that has to wait then costs no allocation, and the small buffers
/// of small messages stay in the allocator's per-thread cache, which 4 KiB ones miss. The
/// copy is at most 4 KiB, and only of bytes that arrived.
pub(crate) fn poll_probe<R: AsyncRead + Unpin + ?Sized>(
    io: &mut R,
    cx: &mut Context<'_>,
    buf: &mut BytesMut,
) -> Poll<io::Result<usize>> {
    debug_assert_eq!(
        buf.capacity(),
        0,
        "a probe is only for an unallocated buffer"
    );
    let mut probe = [MaybeUninit::<u8>::uninit(); PROBE];
    let mut read = ReadBuf::uninit(&mut probe);
    std::task::ready!(Pin::new(io).poll_read(cx, &mut read))?;
    let got = read.filled();
    if !got.is_empty() {
        let room = if got.len() == PROBE {
            2 * PROBE
        } else {
            got.len()
        };
        let mut fresh = BytesMut::with_capacity(room);
        fresh.extend_from_slice(got);
        *buf = fresh;
    }
    Poll::Ready(Ok(got.len()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn probe(mut src: impl AsyncRead + Unpin) -> (Poll<usize>, BytesMut) {
        let mut buf = BytesMut::new();
        let mut cx = Context::from_waker(std::task::Waker::noop());
        let r = poll_probe(&mut src, &mut cx, &mut buf).map(|r| r.expect("reads"));
        (r, buf)
    }

    #[test]
    fn a_small_message_gets_a_buffer_of_its_own_size() {
        let (r, buf) = probe(&b"GET / HTTP/1.1\r\n\r\n"[..]);
        assert_eq!(r, Poll::Ready(18));
        assert_eq!(&buf[..], b"GET / HTTP/1.1\r\n\r\n");
        assert_eq!(buf.capacity(), 18);
    }

    #[test]
    fn a_read_that_waits_allocates_nothing() {
        let (_writer, reader) = tokio::io::duplex(64);
        let (r, buf) = probe(reader);
        assert_eq!(r, Poll::Pending);
        assert_eq!(buf.capacity(), 0);
    }

    #[test]
    fn a_full_probe_leaves_room_for_what_follows_and_the_end_is_zero() {
        let big = vec![b'x'; PROBE + 100];
        let (r, buf) = probe(&big[..]);
        assert_eq!(r, Poll::Ready(PROBE));
        assert_eq!(buf.len(), PROBE);
        assert!(buf.capacity() >= 2 * PROBE);
        let (r, buf) = probe(&b""[..]);
        assert_eq!(r, Poll::Ready(0));
        assert_eq!(buf.capacity(), 0);
    }
}
