//! One upstream address as the router sees it over time: requests in flight to it and its
//! idle keep-alive connections.
//!
//! Owns connecting (timeout, TCP_NODELAY), the idle stack of sockets and the in-flight
//! counter. A `Backend` is shared by every published table that lists its address, which is
//! what keeps counters and warm connections across table swaps. It must not choose between
//! upstreams or decide about retries: that is the proxy's job.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::net::TcpStream;

#[derive(Debug, thiserror::Error)]
pub(crate) enum ConnectError {
    #[error("connect to {addr}: timed out after {after:?}")]
    Timeout { addr: SocketAddr, after: Duration },
    #[error("connect to {addr}: {source}")]
    Io {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

pub(crate) struct Backend {
    addr: SocketAddr,
    inflight: AtomicUsize,
    /// A stack: the most recently used connection is the warmest and the least likely to have
    /// been closed by the upstream's own idle timeout.
    idle: Mutex<Vec<Idle>>,
}

/// A pooled connection is its socket and nothing else: no task, no buffer.
struct Idle {
    io: TcpStream,
    since: Instant,
}

/// A connection ready for one request. `reused` says it sat in the pool, where the upstream
/// may have closed it just as we send: the one failure a retry is meant to hide.
pub(crate) struct Conn {
    pub io: TcpStream,
    pub reused: bool,
}

/// Counts one request in flight to a backend until dropped.
pub(crate) struct InflightGuard(Arc<Backend>);

impl Drop for InflightGuard {
    fn drop(&mut self) {
        self.0.inflight.fetch_sub(1, Ordering::Release);
    }
}

impl InflightGuard {
    pub fn backend(&self) -> &Arc<Backend> {
        &self.0
    }
}

/// What a backend needs from the router's options.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PoolConfig {
    pub connect_timeout: Duration,
    pub idle_timeout: Duration,
    pub max_idle: usize,
}

impl Backend {
    pub fn new(addr: SocketAddr) -> Backend {
        Backend {
            addr,
            inflight: AtomicUsize::new(0),
            idle: Mutex::new(Vec::new()),
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn inflight(&self) -> usize {
        self.inflight.load(Ordering::Acquire)
    }

    pub fn enter(self: &Arc<Self>) -> InflightGuard {
        self.inflight.fetch_add(1, Ordering::AcqRel);
        InflightGuard(self.clone())
    }

    /// A poisoned lock only means another request panicked mid-push or mid-pop; the stack is
    /// still a valid Vec, so keep using it.
    fn idle(&self) -> MutexGuard<'_, Vec<Idle>> {
        self.idle.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A pooled connection that is still open, else a new one.
    pub async fn checkout(&self, cfg: &PoolConfig) -> Result<Conn, ConnectError> {
        loop {
            let Some(idle) = self.idle().pop() else { break };
            if idle.since.elapsed() > cfg.idle_timeout {
                // The stack is ordered by age: everything below is older still.
                self.clear_idle();
                break;
            }
            if still_open(&idle.io) {
                return Ok(Conn {
                    io: idle.io,
                    reused: true,
                });
            }
        }
        self.connect(cfg).await.map(|io| Conn { io, reused: false })
    }

    async fn connect(&self, cfg: &PoolConfig) -> Result<TcpStream, ConnectError> {
        let addr = self.addr;
        let stream = tokio::time::timeout(cfg.connect_timeout, TcpStream::connect(addr))
            .await
            .map_err(|_| ConnectError::Timeout {
                addr,
                after: cfg.connect_timeout,
            })?
            .map_err(|source| ConnectError::Io { addr, source })?;
        // Small requests and responses must not wait for Nagle's algorithm.
        let _ = stream.set_nodelay(true);
        Ok(stream)
    }

    /// Returns a connection whose response was read to the end.
    pub fn checkin(&self, io: TcpStream, cfg: &PoolConfig) {
        let now = Instant::now();
        let mut idle = self.idle();
        // While we hold the lock anyway: a pool that shrinks after a burst sheds its surplus.
        expire(&mut idle, now, cfg.idle_timeout);
        if idle.len() < cfg.max_idle {
            idle.push(Idle { io, since: now });
        }
    }

    /// Closes the connections idle for longer than the idle timeout; for the router's
    /// periodic sweep, since an app that gets no more requests never calls `checkin` again.
    pub fn expire_idle(&self, cfg: &PoolConfig) {
        let expired = {
            let mut idle = self.idle();
            expire(&mut idle, Instant::now(), cfg.idle_timeout)
        };
        // Closing sockets outside the lock.
        drop(expired);
    }

    /// Drops every idle connection: called when a pooled one turned out dead, since its
    /// siblings (same instance, same moment) most likely are too.
    pub fn clear_idle(&self) {
        let drained = std::mem::take(&mut *self.idle());
        drop(drained);
    }
}

/// Removes the expired bottom of an idle stack (the oldest entries) and returns it.
fn expire(idle: &mut Vec<Idle>, now: Instant, timeout: Duration) -> Vec<Idle> {
    let n = idle
        .iter()
        .take_while(|i| now.duration_since(i.since) > timeout)
        .count();
    idle.drain(..n).collect()
}

/// An idle connection the instance has not closed (nor written to: it owes us nothing). Costs
/// no system call unless the reactor saw it readable, which for an idle connection means a
/// FIN, a reset or stray bytes; one it has not seen yet is the race retries exist for.
fn still_open(io: &TcpStream) -> bool {
    let mut probe = [0u8; 1];
    matches!(io.try_read(&mut probe), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
}
