//! Admission of client connections: the global cap, the per-source cap, the file-descriptor
//! budget the global cap is held under, making room at the cap by evicting an idle
//! connection, and the counters of what was admitted, refused, evicted and timed out.
//!
//! At the global cap a newcomer is not refused while some connection is idle: the oldest
//! connection that never sent a byte is asked to close instead, else the oldest one waiting
//! between requests. An idle flood then cannot lock users out for a whole header timeout; a
//! user's connection sends its request at once and so is rarely silent when a newcomer needs
//! room, and keep-alive users lose their idle connection only after the silent ones.
//!
//! Owns the count of open client connections (a [`Permit`] per connection, released on
//! drop) and the queue of eviction candidates. It must not read or write sockets (the
//! accept loop closes what this refuses, the connection task closes itself when evicted or
//! timed out) and knows nothing of HTTP.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex, MutexGuard, Weak};

/// Descriptors kept for everything but client connections when RLIMIT_NOFILE is small: the
/// API socket and its clients, health checks, log files, container helpers and their pipes.
pub const MIN_FD_RESERVE: u64 = 512;

/// How many client connections the router may hold when the process may open `nofile`
/// descriptors: a tenth of them (at least [`MIN_FD_RESERVE`], at most half) stays in reserve
/// for the rest of paasd, and each client connection counts twice, since a proxied request
/// holds an upstream connection too (and the idle upstream pool never holds more than the
/// peak of concurrent requests).
pub fn connection_budget(nofile: u64) -> usize {
    let reserve = (nofile / 10).max(MIN_FD_RESERVE).min(nofile / 2);
    usize::try_from((nofile - reserve) / 2).unwrap_or(usize::MAX)
}

/// How far past the cap evictions may take the open count while evicted connections have not
/// closed yet (each closes as soon as its task runs). Part of the descriptor reserve.
const MAX_EVICTING: usize = 64;

/// Which connections an eviction may take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Idle {
    /// Connected, never sent a byte.
    Silent,
    /// Silent, or waiting between requests.
    Any,
}

/// A connection that may be asked to make room.
pub(crate) trait Evictable: Send + Sync {
    /// Asks the connection to close if it is idle in the way `which` says now; false if it
    /// is not (it is reading a head or serving a request, or it is not silent).
    fn evict(&self, which: Idle) -> bool;
}

/// Why a connection was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refused {
    /// `max_connections` (or the descriptor budget under it) are open.
    Total,
    /// The source address (an IPv6 client's /64) has `max_connections_per_ip` open.
    PerIp,
}

/// The router's client connections since it started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ConnStats {
    /// Open now.
    pub open: u64,
    /// The most open at once.
    pub peak: u64,
    pub accepted: u64,
    /// Closed at once because `max_connections` were open.
    pub refused_total: u64,
    /// Closed at once because their source had `max_connections_per_ip` open.
    pub refused_per_ip: u64,
    /// Idle connections closed to make room for a newcomer at `max_connections`.
    pub evicted: u64,
    /// Closed because a request head (or a new connection's first one) took longer than the
    /// header timeout.
    pub header_timeouts: u64,
    /// Keep-alive connections closed after the idle timeout without a new request.
    pub idle_timeouts: u64,
}

/// One source as the per-source cap counts it: an IPv4 address, or an IPv6 /64 (one
/// subscriber's network: counting single v6 addresses would let one client take 2^64 slots).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Source {
    V4(u32),
    V6(u64),
}

impl Source {
    fn of(ip: IpAddr) -> Source {
        match ip.to_canonical() {
            IpAddr::V4(v4) => Source::V4(u32::from(v4)),
            IpAddr::V6(v6) => Source::V6((u128::from(v6) >> 64) as u64),
        }
    }
}

pub(crate) struct Admission {
    max_total: usize,
    max_per_source: usize,
    open: AtomicUsize,
    /// Taken when a connection opens and when it closes; per request only while the router
    /// is under pressure (see [`Admission::under_pressure`]).
    inner: Mutex<Inner>,
    peak: AtomicUsize,
    accepted: AtomicU64,
    refused_total: AtomicU64,
    refused_per_ip: AtomicU64,
    evicted: AtomicU64,
    header_timeouts: AtomicU64,
    idle_timeouts: AtomicU64,
}

#[derive(Default)]
struct Inner {
    /// Sources with at least one open connection; an entry goes when its count reaches
    /// zero, so the map is as large as the set of connected sources and no larger.
    per_source: HashMap<Source, u32>,
    /// Eviction candidates, oldest first: every new connection (`silent`), and connections
    /// that went idle after a request while under pressure (`idle`). Entries of closed or
    /// busy connections are dropped when met and swept when a queue outgrows the open
    /// connections.
    silent: VecDeque<Weak<dyn Evictable>>,
    idle: VecDeque<Weak<dyn Evictable>>,
}

/// One admitted connection; its slot is released on drop.
pub(crate) struct Permit {
    admission: Arc<Admission>,
    source: Source,
}

impl Admission {
    /// Caps of 0 mean 1: a router that admits nothing is a misconfiguration the config layer
    /// refuses, and here it must not divide the world into nothing.
    pub fn new(max_total: usize, max_per_source: usize) -> Admission {
        Admission {
            max_total: max_total.max(1),
            max_per_source: max_per_source.max(1),
            open: AtomicUsize::new(0),
            inner: Mutex::new(Inner::default()),
            peak: AtomicUsize::new(0),
            accepted: AtomicU64::new(0),
            refused_total: AtomicU64::new(0),
            refused_per_ip: AtomicU64::new(0),
            evicted: AtomicU64::new(0),
            header_timeouts: AtomicU64::new(0),
            idle_timeouts: AtomicU64::new(0),
        }
    }

    /// Counts a connection from `ip` in, or says which cap refuses it (and counts that). At
    /// the global cap an idle connection is evicted to make room if there is one. `conn` is
    /// the newcomer, queued as an eviction candidate until it sends something.
    pub fn admit(
        self: &Arc<Self>,
        ip: IpAddr,
        conn: Weak<dyn Evictable>,
    ) -> Result<Permit, Refused> {
        let source = Source::of(ip);
        let mut inner = self.room_for(source)?;
        // Only the accept loop admits, so `open` cannot grow between this check and the
        // increment below; closing connections only lower it.
        let open = self.open.load(Relaxed);
        if open >= self.max_total {
            let room = open < self.max_total + MAX_EVICTING
                && (evict_one(&mut inner.silent, Idle::Silent)
                    || evict_one(&mut inner.idle, Idle::Any));
            if !room {
                drop(inner);
                self.refused_total.fetch_add(1, Relaxed);
                return Err(Refused::Total);
            }
            self.evicted.fetch_add(1, Relaxed);
        }
        *inner.per_source.entry(source).or_insert(0) += 1;
        inner.silent.push_back(conn);
        sweep(&mut inner.silent, open + 1);
        drop(inner);
        let open = self.open.fetch_add(1, Relaxed) + 1;
        self.peak.fetch_max(open, Relaxed);
        self.accepted.fetch_add(1, Relaxed);
        Ok(Permit {
            admission: Arc::clone(self),
            source,
        })
    }

    /// The lock, if `source` is below its cap (a refusal is counted).
    fn room_for(&self, source: Source) -> Result<MutexGuard<'_, Inner>, Refused> {
        let inner = self.inner();
        let n = inner.per_source.get(&source).copied().unwrap_or(0);
        if n as usize >= self.max_per_source {
            drop(inner);
            self.refused_per_ip.fetch_add(1, Relaxed);
            return Err(Refused::PerIp);
        }
        Ok(inner)
    }

    /// Counts a WebSocket over HTTP/2 from `ip` in as a connection of its own: it holds an
    /// instance socket as an upgraded HTTP/1.1 connection does, and up to 128 of them share
    /// one client connection, so without this one source could hold 128 times its cap of
    /// instance sockets. Never evicts (a tunnel is not idle in the caps' sense); may go a
    /// few over the total cap when requests race the accept loop.
    pub fn admit_tunnel(self: &Arc<Self>, ip: IpAddr) -> Result<Permit, Refused> {
        let source = Source::of(ip);
        let mut inner = self.room_for(source)?;
        if self.open.load(Relaxed) >= self.max_total {
            drop(inner);
            self.refused_total.fetch_add(1, Relaxed);
            return Err(Refused::Total);
        }
        *inner.per_source.entry(source).or_insert(0) += 1;
        drop(inner);
        let open = self.open.fetch_add(1, Relaxed) + 1;
        self.peak.fetch_max(open, Relaxed);
        Ok(Permit {
            admission: Arc::clone(self),
            source,
        })
    }

    /// Half the cap or more is open: connections that go idle after a request queue
    /// themselves as eviction candidates (below that nobody needs their room, and the
    /// request path takes no lock).
    pub fn under_pressure(&self) -> bool {
        self.open.load(Relaxed) * 2 >= self.max_total
    }

    /// Drops the candidates of closed connections from both queues and gives back their
    /// room: after a flood, entries that are never met again would otherwise keep a small
    /// allocation each (their connection's clock, held by the weak pointer) scattered over
    /// the heap, where the allocator cannot return the pages around them. For the accept
    /// loop's periodic sweep.
    pub fn sweep(&self) {
        let mut guard = self.inner();
        let inner = &mut *guard;
        for q in [&mut inner.silent, &mut inner.idle] {
            if q.capacity() > 64 {
                q.retain(|w| w.strong_count() > 0);
                if q.capacity() > 4 * q.len() + 64 {
                    q.shrink_to_fit();
                }
            }
        }
    }

    /// Queues a connection that just went idle as an eviction candidate.
    pub fn idle(&self, conn: Weak<dyn Evictable>) {
        let mut inner = self.inner();
        inner.idle.push_back(conn);
        sweep(&mut inner.idle, self.open.load(Relaxed));
    }

    pub fn header_timeout(&self) {
        self.header_timeouts.fetch_add(1, Relaxed);
    }

    pub fn idle_timeout(&self) {
        self.idle_timeouts.fetch_add(1, Relaxed);
    }

    pub fn stats(&self) -> ConnStats {
        ConnStats {
            open: self.open.load(Relaxed) as u64,
            peak: self.peak.load(Relaxed) as u64,
            accepted: self.accepted.load(Relaxed),
            refused_total: self.refused_total.load(Relaxed),
            refused_per_ip: self.refused_per_ip.load(Relaxed),
            evicted: self.evicted.load(Relaxed),
            header_timeouts: self.header_timeouts.load(Relaxed),
            idle_timeouts: self.idle_timeouts.load(Relaxed),
        }
    }

    /// Nothing under this lock can panic halfway through a change (a counter, a queue of
    /// weak pointers), so a poisoned lock is still consistent.
    fn inner(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Asks the oldest candidate of `queue` that is idle as `which` says to close; false if
/// none is. Candidates met that are closed or not idle leave the queue (one that is busy
/// queues itself again when it next goes idle under pressure).
fn evict_one(queue: &mut VecDeque<Weak<dyn Evictable>>, which: Idle) -> bool {
    while let Some(w) = queue.pop_front() {
        if w.upgrade().is_some_and(|c| c.evict(which)) {
            return true;
        }
    }
    false
}

/// Drops the entries of closed connections once they outnumber the open ones, so a queue
/// stays within about twice the open connections (amortised: each sweep at least halves it).
fn sweep(queue: &mut VecDeque<Weak<dyn Evictable>>, open: usize) {
    if queue.len() > 2 * open + 64 {
        queue.retain(|w| w.strong_count() > 0);
        if queue.capacity() > 4 * queue.len() + 1024 {
            queue.shrink_to_fit();
        }
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        let a = &self.admission;
        {
            let mut inner = a.inner();
            let map = &mut inner.per_source;
            if let Some(n) = map.get_mut(&self.source) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    map.remove(&self.source);
                }
            }
            // A map that once held a flood's sources keeps its table; give it back once the
            // flood is gone.
            if map.is_empty() && map.capacity() > 1024 {
                map.shrink_to_fit();
            }
        }
        a.open.fetch_sub(1, Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fd_budget_keeps_a_reserve_and_counts_two_descriptors_per_connection() {
        // systemd/paasd.service's LimitNOFILE: a tenth in reserve.
        assert_eq!(connection_budget(1_048_576), (1_048_576 - 104_857) / 2);
        // A typical shell's hard limit here.
        assert_eq!(connection_budget(20_000), 9_000);
        // The common default soft limit: the 512-descriptor floor of the reserve wins.
        assert_eq!(connection_budget(1024), 256);
        assert_eq!(connection_budget(4096), (4096 - 512) / 2);
        // Tiny limits: never more than half in reserve, never an underflow.
        assert_eq!(connection_budget(600), 150);
        assert_eq!(connection_budget(1), 0);
        assert_eq!(connection_budget(0), 0);
        for n in [
            0u64,
            1,
            7,
            100,
            1000,
            1024,
            5000,
            65_536,
            1 << 20,
            u64::MAX / 4,
        ] {
            let b = connection_budget(n) as u64;
            let reserve = n - 2 * b;
            assert!(reserve >= (n / 10).min(n / 2), "{n}: reserve {reserve}");
            assert!(
                reserve >= MIN_FD_RESERVE.min(n / 2),
                "{n}: reserve {reserve}"
            );
        }
    }

    use std::sync::atomic::AtomicBool;

    /// A connection that is silent, idle after a request or busy, remembering whether it
    /// was evicted.
    #[derive(Default)]
    struct Conn {
        busy: AtomicBool,
        spoke: AtomicBool,
        evicted: AtomicBool,
    }

    impl Evictable for Conn {
        fn evict(&self, which: Idle) -> bool {
            if self.busy.load(Relaxed) || (which == Idle::Silent && self.spoke.load(Relaxed)) {
                return false;
            }
            self.evicted.store(true, Relaxed);
            true
        }
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    /// Admits a busy connection (never evictable) from `src`.
    fn busy(a: &Arc<Admission>, src: &str) -> Result<(Permit, Arc<Conn>), Refused> {
        let c = Arc::new(Conn::default());
        c.busy.store(true, Relaxed);
        let w: Weak<dyn Evictable> = Arc::downgrade(&c) as Weak<dyn Evictable>;
        a.admit(ip(src), w).map(|p| (p, c))
    }

    #[test]
    fn caps_refuse_and_release() {
        let a = Arc::new(Admission::new(3, 2));
        let p1 = busy(&a, "10.0.0.1").expect("first");
        let p2 = busy(&a, "10.0.0.1").expect("second");
        assert_eq!(busy(&a, "10.0.0.1").err(), Some(Refused::PerIp));
        // The same address as IPv4-mapped IPv6 is the same source.
        assert_eq!(busy(&a, "::ffff:10.0.0.1").err(), Some(Refused::PerIp));
        let p3 = busy(&a, "10.0.0.2").expect("other source");
        assert_eq!(busy(&a, "10.0.0.3").err(), Some(Refused::Total));
        let s = a.stats();
        assert_eq!((s.open, s.peak, s.accepted), (3, 3, 3));
        assert_eq!((s.refused_per_ip, s.refused_total, s.evicted), (2, 1, 0));
        drop(p1);
        let p4 = busy(&a, "10.0.0.1").expect("a slot came free");
        drop((p2, p3, p4));
        assert_eq!(a.stats().open, 0);
        assert!(
            a.inner().per_source.is_empty(),
            "no entry outlives its connections"
        );
    }

    #[test]
    fn at_the_cap_silent_connections_make_room_first_then_idle_ones() {
        let a = Arc::new(Admission::new(4, 10));
        let (_p1, c1) = busy(&a, "10.0.0.1").expect("busy");
        let keeper = Arc::new(Conn::default());
        let _pk = a.admit(
            ip("10.0.0.2"),
            Arc::downgrade(&keeper) as Weak<dyn Evictable>,
        );
        // The keeper made a request and waits for the next one (idle, not silent).
        keeper.spoke.store(true, Relaxed);
        let silent = [Arc::new(Conn::default()), Arc::new(Conn::default())];
        let _ps: Vec<_> = silent
            .iter()
            .map(|c| a.admit(ip("10.0.0.3"), Arc::downgrade(c) as Weak<dyn Evictable>))
            .collect();
        // Full: the busy one and the keeper are passed over, the oldest silent one goes.
        let (_p5, _c5) = busy(&a, "10.0.0.5").expect("room made");
        assert!(silent[0].evicted.load(Relaxed));
        assert!(!silent[1].evicted.load(Relaxed) && !keeper.evicted.load(Relaxed));
        let (_p6, _c6) = busy(&a, "10.0.0.6").expect("room made");
        assert!(silent[1].evicted.load(Relaxed));
        assert_eq!(a.stats().evicted, 2);
        // No silent one left, and the keeper never queued as idle: refused.
        assert_eq!(busy(&a, "10.0.0.7").err(), Some(Refused::Total));
        assert!(!keeper.evicted.load(Relaxed));
        // Connections that go idle under pressure queue themselves; the oldest goes next.
        assert!(a.under_pressure());
        c1.busy.store(false, Relaxed);
        a.idle(Arc::downgrade(&c1) as Weak<dyn Evictable>);
        a.idle(Arc::downgrade(&keeper) as Weak<dyn Evictable>);
        assert!(busy(&a, "10.0.0.7").is_ok());
        assert!(c1.evicted.load(Relaxed) && !keeper.evicted.load(Relaxed));
    }

    #[test]
    fn evictions_cannot_run_away_while_evicted_connections_linger() {
        let a = Arc::new(Admission::new(1, 1000));
        let mut held = Vec::new();
        // Every newcomer is idle and evicts the previous one, whose permit (in this test)
        // is never dropped: past the cap by at most MAX_EVICTING.
        for i in 0..200 {
            let c = Arc::new(Conn::default());
            if let Ok(p) = a.admit(ip("10.0.0.1"), Arc::downgrade(&c) as Weak<dyn Evictable>) {
                held.push((p, c));
            } else {
                assert_eq!(i, 1 + MAX_EVICTING, "refused from here on");
                break;
            }
        }
        assert_eq!(held.len(), 1 + MAX_EVICTING);
    }

    #[test]
    fn the_candidate_queue_stays_proportional_to_the_open_connections() {
        let a = Arc::new(Admission::new(100, 100));
        for _ in 0..10_000 {
            let (p, c) = busy(&a, "10.0.0.1").expect("admitted");
            drop((p, c));
        }
        let left = a.inner().silent.len();
        assert!(left <= 2 + 64 + 1, "{left}");
        // The periodic sweep leaves nothing of closed connections, and no room for them.
        a.sweep();
        assert_eq!(a.inner().silent.len(), 0);
        assert!(a.inner().silent.capacity() <= 64);
    }

    #[test]
    fn an_ipv6_client_is_counted_by_its_64() {
        let a = Arc::new(Admission::new(100, 2));
        let _p1 = busy(&a, "2001:db8:1:2::1").expect("first");
        let _p2 = busy(&a, "2001:db8:1:2:ffff::9").expect("same /64");
        assert_eq!(busy(&a, "2001:db8:1:2::77").err(), Some(Refused::PerIp));
        let _p3 = busy(&a, "2001:db8:1:3::1").expect("another /64");
    }
}
