//! Per-app request statistics: counts, status classes, bytes and a latency histogram.
//!
//! Owns the counters (plain relaxed atomics, so recording costs a handful of uncontended
//! adds on the request path) and the percentile arithmetic over a fixed log-scale histogram.
//! It must not lock, allocate or know anything about HTTP beyond a status code.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

/// Four buckets per power of two of microseconds: every bucket is at most 25% wide, which
/// is as precise as p99 over a few thousand requests is anyway. 160 buckets reach ~2^40 µs.
const SUB_BITS: u32 = 2;
const SUB: u64 = 1 << SUB_BITS;
const BUCKETS: usize = 160;

/// A snapshot of one app's counters since paasd started (or since the app first appeared
/// in a published table).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AppStats {
    pub requests: u64,
    /// Responses per status class: `[1xx, 2xx, 3xx, 4xx, 5xx]`.
    pub status: [u64; 5],
    /// Response body bytes sent to clients (and, for upgraded connections, every byte from
    /// the instance to the client).
    pub bytes: u64,
    /// Connections upgraded (101 Switching Protocols, e.g. WebSockets) since paasd started,
    /// and those still open.
    pub upgrades: u64,
    pub upgrades_open: u64,
    pub p50: Duration,
    pub p95: Duration,
    pub p99: Duration,
    /// The non-empty histogram buckets, ascending: requests that took at most `le`
    /// (and more than the previous bucket's bound). For a metrics exporter.
    pub latency: Vec<LatencyBucket>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LatencyBucket {
    pub le: Duration,
    pub count: u64,
}

/// The live counters of one app; shared by every table that routes it.
pub(crate) struct StatsCell {
    requests: AtomicU64,
    status: [AtomicU64; 5],
    bytes: AtomicU64,
    upgrades: AtomicU64,
    upgrades_open: AtomicU64,
    buckets: [AtomicU64; BUCKETS],
}

impl Default for StatsCell {
    fn default() -> Self {
        StatsCell {
            requests: AtomicU64::new(0),
            status: std::array::from_fn(|_| AtomicU64::new(0)),
            bytes: AtomicU64::new(0),
            upgrades: AtomicU64::new(0),
            upgrades_open: AtomicU64::new(0),
            buckets: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }
}

impl StatsCell {
    pub fn record(&self, status: u16, bytes: u64, took: Duration) {
        self.requests.fetch_add(1, Relaxed);
        if let Some(class) = (status / 100).checked_sub(1).filter(|c| *c < 5) {
            self.status[class as usize].fetch_add(1, Relaxed);
        }
        if bytes > 0 {
            self.bytes.fetch_add(bytes, Relaxed);
        }
        let us = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
        self.buckets[bucket_of(us)].fetch_add(1, Relaxed);
    }

    /// An upgraded connection opened: its 101 was recorded as a request (its latency is the
    /// time to the 101); what flows afterwards counts only as bytes.
    pub fn upgrade_opened(&self) {
        self.upgrades.fetch_add(1, Relaxed);
        self.upgrades_open.fetch_add(1, Relaxed);
    }

    pub fn upgrade_closed(&self, bytes: u64) {
        self.upgrades_open.fetch_sub(1, Relaxed);
        self.bytes.fetch_add(bytes, Relaxed);
    }

    pub fn snapshot(&self) -> AppStats {
        let counts: Vec<u64> = self.buckets.iter().map(|b| b.load(Relaxed)).collect();
        let total: u64 = counts.iter().sum();
        let pct = |q: f64| -> Duration {
            if total == 0 {
                return Duration::ZERO;
            }
            // The rank of the q-quantile, 1-based; reported as its bucket's upper bound so a
            // percentile is never better than what was measured.
            let rank = ((q * total as f64).ceil() as u64).clamp(1, total);
            let mut seen = 0;
            for (i, c) in counts.iter().enumerate() {
                seen += c;
                if seen >= rank {
                    return upper_bound(i);
                }
            }
            upper_bound(BUCKETS - 1)
        };
        AppStats {
            requests: self.requests.load(Relaxed),
            status: std::array::from_fn(|i| self.status[i].load(Relaxed)),
            bytes: self.bytes.load(Relaxed),
            upgrades: self.upgrades.load(Relaxed),
            upgrades_open: self.upgrades_open.load(Relaxed),
            p50: pct(0.50),
            p95: pct(0.95),
            p99: pct(0.99),
            latency: counts
                .iter()
                .enumerate()
                .filter(|(_, c)| **c > 0)
                .map(|(i, c)| LatencyBucket {
                    le: upper_bound(i),
                    count: *c,
                })
                .collect(),
        }
    }
}

/// Exact below 4 µs, then `SUB` buckets per power of two.
fn bucket_of(us: u64) -> usize {
    if us < SUB {
        return us as usize;
    }
    let log = 63 - us.leading_zeros();
    let sub = (us >> (log - SUB_BITS)) & (SUB - 1);
    let idx = (log - SUB_BITS + 1) as usize * SUB as usize + sub as usize;
    idx.min(BUCKETS - 1)
}

/// The smallest value (µs) that falls in bucket `i`.
fn lower_bound_us(i: usize) -> u64 {
    let i = i as u64;
    if i < SUB {
        return i;
    }
    let log = i / SUB + SUB_BITS as u64 - 1;
    (SUB + i % SUB) << (log - SUB_BITS as u64)
}

/// Everything in bucket `i` took at most this long.
fn upper_bound(i: usize) -> Duration {
    Duration::from_micros(lower_bound_us(i + 1).saturating_sub(1).max(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn router_stats_buckets_are_contiguous_and_monotonic() {
        let mut last = 0;
        for us in 0..100_000u64 {
            let b = bucket_of(us);
            assert!(b == last || b == last + 1, "{us}: {last} -> {b}");
            assert!(
                lower_bound_us(b) <= us && us < lower_bound_us(b + 1),
                "{us} in {b}"
            );
            last = b;
        }
        assert_eq!(bucket_of(u64::MAX), BUCKETS - 1);
        // At most 25% wide beyond the exact range.
        for i in SUB as usize..BUCKETS - 1 {
            let (lo, hi) = (lower_bound_us(i), lower_bound_us(i + 1));
            assert!((hi - lo) * 4 <= lo, "bucket {i}: {lo}..{hi}");
        }
    }

    #[test]
    fn router_stats_counts_classes_bytes_and_percentiles() {
        let s = StatsCell::default();
        assert_eq!(s.snapshot(), AppStats::default());
        for i in 0..100u64 {
            let status = if i < 90 { 200 } else { 503 };
            // 1 ms for 90 requests, 100 ms for 9, 1 s for one.
            let took = match i {
                0..90 => Duration::from_millis(1),
                90..99 => Duration::from_millis(100),
                _ => Duration::from_secs(1),
            };
            s.record(status, 10, took);
        }
        s.record(101, 0, Duration::ZERO);
        s.record(404, 0, Duration::ZERO);
        s.record(999, 0, Duration::ZERO);
        let snap = s.snapshot();
        assert_eq!(snap.requests, 103);
        assert_eq!(snap.status, [1, 90, 0, 1, 10]);
        assert_eq!(snap.bytes, 1000);
        let within = |d: Duration, want: Duration| d >= want && d <= want + want / 4;
        assert!(within(snap.p50, Duration::from_millis(1)), "{:?}", snap.p50);
        assert!(
            within(snap.p95, Duration::from_millis(100)),
            "{:?}",
            snap.p95
        );
        assert!(
            within(snap.p99, Duration::from_millis(100)),
            "{:?}",
            snap.p99
        );
        assert_eq!(snap.latency.iter().map(|b| b.count).sum::<u64>(), 103);
        assert!(snap.latency.windows(2).all(|w| w[0].le < w[1].le));
    }
}
