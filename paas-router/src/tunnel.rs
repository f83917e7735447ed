//! Upgraded connections (WebSockets and any other `101 Switching Protocols`): once both the
//! client's and the instance's side have switched, bytes are copied both ways until either
//! side closes or nothing moves for the upgrade idle timeout.
//!
//! Owns only the copying and its idle clock; the request's bookkeeping (`body::Finish`:
//! in-flight count, stats, the access line, the client connection's admission) is held here
//! and settles when the tunnel ends. Must not route, retry or parse what flows through.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::Instant;

use super::body::Finish;
use super::h1;

/// Copy buffers per direction: a WebSocket carries small messages, and 20,000 idle sockets
/// should not hold 16 KiB each (tokio's default is 8 KiB per direction).
const BUF: usize = 4096;

/// The client's side of a switch: hyper's (a WebSocket over HTTP/2) or ours (HTTP/1.1).
pub(crate) enum ClientSide {
    Hyper(OnUpgrade),
    H1(h1::OnUpgrade),
}

/// Runs one tunnel to its end. `early` is what the instance sent right behind its 101: the
/// client gets it first.
pub(crate) async fn run(
    client: ClientSide,
    upstream: TcpStream,
    early: Bytes,
    finish: Finish,
    idle: Duration,
) {
    let switched = match client {
        ClientSide::Hyper(u) => match u.await {
            Ok(c) => return pump(TokioIo::new(c), upstream, early, finish, idle).await,
            Err(e) => e.to_string(),
        },
        ClientSide::H1(u) => match u.upgraded().await {
            Ok(c) => return pump(c, upstream, early, finish, idle).await,
            Err(e) => e.to_string(),
        },
    };
    tracing::debug!("router: upgrade failed: {switched}");
}

async fn pump<C: AsyncRead + AsyncWrite + Unpin>(
    client: C,
    upstream: TcpStream,
    early: Bytes,
    mut finish: Finish,
    idle: Duration,
) {
    let clock = Arc::new(Clock::new());
    let mut client = Counted {
        io: client,
        clock: Arc::clone(&clock),
        read: 0,
    };
    if !early.is_empty() {
        if let Err(e) = client.write_all(&early).await {
            tracing::debug!("router: upgraded connection: {e}");
            return;
        }
    }
    let mut upstream = Counted {
        io: upstream,
        clock: Arc::clone(&clock),
        read: early.len() as u64,
    };
    {
        let copy = tokio::io::copy_bidirectional_with_sizes(&mut client, &mut upstream, BUF, BUF);
        tokio::pin!(copy);
        loop {
            let deadline = clock.last() + idle;
            tokio::select! {
                r = &mut copy => {
                    if let Err(e) = r {
                        tracing::debug!("router: upgraded connection: {e}");
                    }
                    break;
                }
                () = tokio::time::sleep_until(deadline) => {
                    if clock.last() + idle <= Instant::now() {
                        tracing::debug!("router: upgraded connection idle for {idle:?}, closed");
                        break;
                    }
                }
            }
        }
    }
    finish.bytes_upgraded = upstream.read;
}

/// When a byte last moved, in milliseconds since the tunnel opened.
struct Clock {
    born: Instant,
    last_ms: AtomicU64,
}

impl Clock {
    fn new() -> Clock {
        Clock {
            born: Instant::now(),
            last_ms: AtomicU64::new(0),
        }
    }

    fn touch(&self) {
        let ms = self.born.elapsed().as_millis();
        self.last_ms
            .store(u64::try_from(ms).unwrap_or(u64::MAX), Relaxed);
    }

    fn last(&self) -> Instant {
        self.born + Duration::from_millis(self.last_ms.load(Relaxed))
    }
}

/// One side of a tunnel: reads move the idle clock and are counted.
struct Counted<T> {
    io: T,
    clock: Arc<Clock>,
    read: u64,
}

impl<T: AsyncRead + Unpin> AsyncRead for Counted<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let r = Pin::new(&mut this.io).poll_read(cx, buf);
        let n = buf.filled().len() - before;
        if n > 0 {
            this.read += n as u64;
            this.clock.touch();
        }
        r
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Counted<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}
