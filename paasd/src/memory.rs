//! Giving memory back after a burst. Neither heap returns freed memory by itself (see
//! `paas_runtime::heap`): after 20,000 client connections came and went paasd stayed at its
//! peak RSS (292 MB after closing them, from 11 MB idle). Every few seconds this looks at
//! the process's RSS and the router's open connections, and when the RSS is well above the
//! rest (by half of it) and the connections have fallen to half their peak or less, it
//! trims the heaps (`paas_runtime::heap::trim` on a blocking thread, then `ask_threads` so
//! that each runtime worker collects its own heap when it parks): once when they closed,
//! again if the RSS grew or 30 s later while it stays up. It runs in the edge, the process
//! that holds the connections.
//!
//! Owns only that policy; must not touch the router or its connections (it is handed a
//! function that counts them).

use std::time::Duration;

/// How often the RSS and the connections are looked at.
const TICK: Duration = Duration::from_secs(5);

/// How long the workers get to collect their heaps before the RSS is read again (only the
/// log line depends on it).
const SETTLE: Duration = Duration::from_millis(200);

/// Growth over the RSS after the last trim that makes another one worth it.
const GROWTH: u64 = 8 << 20;

/// Connections that must have closed since the peak for their memory to be worth a trim.
const CLOSED: u64 = 64;

/// While paasd stays well above its rest and quiet, a trim is tried again after this many
/// looks (30 s): what one trim could not release (a page still holding a live allocation
/// then) may be free by now. Cheap at these sizes (a millisecond).
const RETRY_TICKS: u32 = 6;

/// The decision, apart from the clock and /proc, to be testable.
#[derive(Debug, Default)]
pub struct Trigger {
    /// The lowest RSS seen: paasd at rest.
    baseline: u64,
    /// RSS right after the last trim.
    trimmed_at: u64,
    /// The most open connections seen since the last trim.
    peak_open: u64,
    /// Looks since the last trim.
    ticks: u32,
}

impl Trigger {
    pub fn new(rss: u64) -> Trigger {
        Trigger {
            baseline: rss,
            trimmed_at: rss,
            peak_open: 0,
            ticks: 0,
        }
    }

    /// One look: true when a trim is due now. Only when paasd is well above its rest (by
    /// half of it, at least 4 MB) and quiet (connections at half their peak or less: while
    /// they are open their memory is in use), and then when connections closed in numbers,
    /// the RSS grew again since the last trim, or the last trim is 30 s old.
    pub fn due(&mut self, rss: u64, open: u64) -> bool {
        self.baseline = self.baseline.min(rss);
        self.trimmed_at = self.trimmed_at.min(rss);
        self.peak_open = self.peak_open.max(open);
        self.ticks = self.ticks.saturating_add(1);
        let above_rest = rss >= self.baseline + (self.baseline / 2).max(4 << 20);
        let quiet = open <= self.peak_open / 2;
        let closed = self.peak_open - open >= CLOSED;
        let grew = rss >= self.trimmed_at + GROWTH;
        above_rest && quiet && (closed || grew || self.ticks >= RETRY_TICKS)
    }

    /// After a trim: the peak starts again from what is open now.
    pub fn trimmed(&mut self, rss: u64, open: u64) {
        self.trimmed_at = rss;
        self.peak_open = open;
        self.ticks = 0;
    }
}

/// paasd's resident set in bytes (`/proc/self/statm`, in pages).
fn rss() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    let page = nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE)
        .ok()
        .flatten()
        .and_then(|p| u64::try_from(p).ok())
        .unwrap_or(4096);
    Some(pages * page)
}

/// Runs for the daemon's lifetime; `open` counts the router's client connections.
pub async fn watch(open: impl Fn() -> u64 + Send + 'static) {
    let Some(start) = rss() else {
        tracing::debug!("no /proc/self/statm; heap trimming off");
        return;
    };
    let mut trigger = Trigger::new(start);
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(before) = rss() else { continue };
        if !trigger.due(before, open()) {
            continue;
        }
        let released = tokio::task::spawn_blocking(paas_runtime::heap::trim)
            .await
            .unwrap_or(false);
        // The runtime's workers hold their own free pages; each hands them back as it
        // parks (`heap::collect_if_asked`), which an idle worker does at once.
        paas_runtime::heap::ask_threads();
        tokio::time::sleep(SETTLE).await;
        let after = rss().unwrap_or(before);
        trigger.trimmed(after, open());
        tracing::info!(
            released,
            "heap trimmed after a burst: RSS {} MB -> {} MB",
            before >> 20,
            after >> 20
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MB: u64 = 1 << 20;

    #[test]
    fn a_trim_follows_a_burst_once_its_connections_are_gone() {
        let mut t = Trigger::new(11 * MB);
        assert!(!t.due(14 * MB, 3), "not well above the rest");
        // 20,000 connections open: their memory is in use.
        assert!(!t.due(150 * MB, 20_000));
        assert!(!t.due(150 * MB, 12_000));
        // Down to half the peak: due.
        assert!(t.due(150 * MB, 9_000));
        t.trimmed(140 * MB, 9_000);
        assert!(
            !t.due(141 * MB, 9_000),
            "just trimmed; nothing closed since"
        );
        // The rest closes: due again, although the RSS did not grow.
        assert!(t.due(140 * MB, 0));
        t.trimmed(23 * MB, 0);
        // What a trim could not release is not trimmed at every look...
        for _ in 1..RETRY_TICKS {
            assert!(!t.due(23 * MB, 0));
        }
        // ...but again after 30 s while still well above the rest.
        assert!(t.due(23 * MB, 0));
        t.trimmed(15 * MB, 0);
        for _ in 0..3 * RETRY_TICKS {
            assert!(!t.due(15 * MB, 10), "near the rest: nothing to do");
        }
        // A burst between two looks (its peak never seen) counts once memory grew.
        assert!(t.due(15 * MB + GROWTH + 2 * MB, 0));
    }

    #[test]
    fn rss_is_read() {
        assert!(rss().is_some_and(|r| r > MB));
    }
}
