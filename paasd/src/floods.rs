//! Floods an app process can cause, turned into the few lines a person reads: forks refused
//! by its pids limit ([`PidsWatch`]: one line when an episode starts, at most one a minute
//! while it lasts, one when it is over) and output lines beyond its log rate ([`LineGate`]: a
//! token bucket per process, and at most one "N lines dropped" line per
//! [`DROP_REPORT_EVERY`]). Pure: callers read the counters (the cgroup's, the clock) and put
//! the lines where they belong. Must not read files, know where lines go or who reads them,
//! and must never say more than its rate: the report of a flood must not be a flood.

use std::time::{Duration, Instant};

/// How often a running process's counters are looked at (pids; drops are also checked as
/// lines arrive).
pub const CHECK_EVERY: Duration = Duration::from_secs(1);
/// While a process keeps hitting its pids limit, a reminder at most this often.
pub const PIDS_REMIND_EVERY: Duration = Duration::from_secs(60);
/// Dropped lines are reported at most this often per process.
pub const DROP_REPORT_EVERY: Duration = Duration::from_secs(10);
/// A process may print this many seconds' worth of lines at once before drops begin.
pub const BURST_SECS: u32 = 5;

/// `12,345`: counts people read at a glance.
pub fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// "once", "37 times".
fn times(n: u64) -> String {
    if n == 1 {
        "once".to_string()
    } else {
        format!("{} times", thousands(n))
    }
}

/// "once more", "37 more times".
fn more_times(n: u64) -> String {
    if n == 1 {
        "once more".to_string()
    } else {
        format!("{} more times", thousands(n))
    }
}

fn secs(d: Duration) -> u64 {
    d.as_secs_f64().round().max(1.0) as u64
}

/// Fork failures of one container against its pids limit, from successive reads of its
/// cgroup's counter (which starts at 0 with the container and only grows).
#[derive(Debug)]
pub struct PidsWatch {
    /// `web.1`, or `the command` for a one-off.
    name: String,
    limit: String,
    /// The counter at the last read.
    seen: u64,
    /// The part of the counter some line has already told.
    told: u64,
    episode: Option<Episode>,
}

#[derive(Debug, Clone, Copy)]
struct Episode {
    started: Instant,
    last_line: Instant,
}

impl PidsWatch {
    pub fn new(name: &str, limit: Option<u64>) -> PidsWatch {
        PidsWatch {
            name: name.to_string(),
            limit: limit.map_or_else(
                || "its process limit".to_string(),
                |n| format!("its process limit ({})", thousands(n)),
            ),
            seen: 0,
            told: 0,
            episode: None,
        }
    }

    /// A read of the counter at `now` ([`CHECK_EVERY`]); the line to log, if one is due. An
    /// episode lasts while the counter grows from one read to the next.
    pub fn observe(&mut self, count: u64, now: Instant) -> Option<String> {
        let grew = count > self.seen;
        self.seen = self.seen.max(count);
        let new = self.seen - self.told;
        match (self.episode, grew) {
            (None, true) => {
                self.episode = Some(Episode {
                    started: now,
                    last_line: now,
                });
                self.told = self.seen;
                Some(format!(
                    "{} hit {}: fork failed {}",
                    self.name,
                    self.limit,
                    times(new)
                ))
            }
            (Some(mut e), true) => {
                if now.duration_since(e.last_line) < PIDS_REMIND_EVERY {
                    return None;
                }
                let line = format!(
                    "{} is still at {}: fork failed {} in the last {} s",
                    self.name,
                    self.limit,
                    more_times(new),
                    secs(now.duration_since(e.last_line))
                );
                e.last_line = now;
                self.episode = Some(e);
                self.told = self.seen;
                Some(line)
            }
            (Some(e), false) => {
                self.episode = None;
                if new == 0 {
                    return None;
                }
                self.told = self.seen;
                Some(format!(
                    "{} is back under {} after {} s: fork failed {}",
                    self.name,
                    self.limit,
                    secs(now.duration_since(e.started)),
                    more_times(new)
                ))
            }
            (None, false) => None,
        }
    }

    /// The container ended; `count` is the counter's last read. Says what no line has yet.
    pub fn finish(&mut self, count: u64) -> Option<String> {
        self.seen = self.seen.max(count);
        let new = self.seen - self.told;
        self.told = self.seen;
        let in_episode = self.episode.take().is_some();
        match (new, in_episode) {
            (0, _) => None,
            (_, false) => Some(format!(
                "{} hit {}: fork failed {}",
                self.name,
                self.limit,
                times(new)
            )),
            (_, true) => Some(format!(
                "{} was still at {} when it ended: fork failed {}",
                self.name,
                self.limit,
                more_times(new)
            )),
        }
    }
}

/// How many output lines one process may log: `per_sec` on average, [`BURST_SECS`] worth at
/// once (`[logs] lines_per_sec`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LineRate {
    pub per_sec: u32,
}

/// The token bucket of one process's output, and the count of what it dropped.
#[derive(Debug)]
pub struct LineGate {
    name: String,
    rate: LineRate,
    tokens: f64,
    refilled: Instant,
    /// Dropped since the last report.
    dropped: u64,
    /// When the first of those was dropped.
    since: Option<Instant>,
}

impl LineGate {
    pub fn new(name: &str, rate: LineRate, now: Instant) -> LineGate {
        LineGate {
            name: name.to_string(),
            rate,
            tokens: Self::burst(rate),
            refilled: now,
            dropped: 0,
            since: None,
        }
    }

    fn burst(rate: LineRate) -> f64 {
        f64::from(rate.per_sec.max(1)) * f64::from(BURST_SECS)
    }

    /// True when the line may go to the log; false when it is dropped (and counted).
    pub fn admit(&mut self, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.refilled).as_secs_f64();
        self.refilled = now.max(self.refilled);
        self.tokens =
            (self.tokens + elapsed * f64::from(self.rate.per_sec)).min(Self::burst(self.rate));
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            return true;
        }
        self.dropped += 1;
        self.since.get_or_insert(now);
        false
    }

    /// The drop report, once [`DROP_REPORT_EVERY`] has passed since the first unreported
    /// drop: "web.1: 12,345 log lines dropped in the last 10 s (app writes faster than 2,000
    /// lines/s, the log limit per process)".
    pub fn report(&mut self, now: Instant) -> Option<String> {
        let since = self.since?;
        if now.saturating_duration_since(since) < DROP_REPORT_EVERY {
            return None;
        }
        self.flush(now)
    }

    /// The drop report now, whatever the time (the process ended).
    pub fn flush(&mut self, now: Instant) -> Option<String> {
        let since = self.since.take()?;
        let n = std::mem::take(&mut self.dropped);
        Some(format!(
            "{}: {} log line{} dropped in the last {} s (app writes faster than {} lines/s, the log limit per process)",
            self.name,
            thousands(n),
            if n == 1 { "" } else { "s" },
            secs(now.saturating_duration_since(since)),
            thousands(u64::from(self.rate.per_sec))
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thousands_separators() {
        for (n, s) in [
            (0, "0"),
            (999, "999"),
            (1000, "1,000"),
            (12_345, "12,345"),
            (1_234_567, "1,234,567"),
        ] {
            assert_eq!(thousands(n), s);
        }
    }

    #[test]
    fn one_line_per_pids_episode_and_reminders_at_most_a_minute_apart() {
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        let mut w = PidsWatch::new("web.1", Some(512));
        assert_eq!(w.observe(0, at(1)), None, "nothing refused");
        assert_eq!(
            w.observe(37, at(2)).as_deref(),
            Some("web.1 hit its process limit (512): fork failed 37 times")
        );
        // Still failing: quiet until a minute has passed since the last line.
        assert_eq!(w.observe(500, at(3)), None);
        assert_eq!(w.observe(900, at(61)), None);
        assert_eq!(
            w.observe(1237, at(62)).as_deref(),
            Some("web.1 is still at its process limit (512): fork failed 1,200 more times in the last 60 s")
        );
        assert_eq!(w.observe(1240, at(63)), None);
        // A read without growth ends the episode, with what was not told yet.
        assert_eq!(
            w.observe(1240, at(64)).as_deref(),
            Some(
                "web.1 is back under its process limit (512) after 62 s: fork failed 3 more times"
            )
        );
        assert_eq!(w.observe(1240, at(65)), None);
        // A second episode is a new first line.
        assert_eq!(
            w.observe(1241, at(90)).as_deref(),
            Some("web.1 hit its process limit (512): fork failed once")
        );
        // An episode whose failures were all told ends silently.
        assert_eq!(w.observe(1241, at(91)), None);
        assert_eq!(w.finish(1241), None);
    }

    #[test]
    fn what_happened_between_the_last_read_and_the_end_is_told_at_the_end() {
        let t0 = Instant::now();
        let mut w = PidsWatch::new("the command", None);
        assert_eq!(
            w.finish(9).as_deref(),
            Some("the command hit its process limit: fork failed 9 times")
        );
        let mut w = PidsWatch::new("worker.2", Some(32));
        assert!(w.observe(5, t0).is_some());
        assert_eq!(
            w.finish(8).as_deref(),
            Some("worker.2 was still at its process limit (32) when it ended: fork failed 3 more times")
        );
        let mut w = PidsWatch::new("worker.2", Some(32));
        assert!(w.observe(5, t0).is_some());
        assert_eq!(w.finish(5), None, "nothing new");
        // A counter that reads lower (should not happen) never reports negative numbers.
        let mut w = PidsWatch::new("web.1", Some(32));
        assert!(w.observe(5, t0).is_some());
        assert_eq!(w.observe(2, t0 + Duration::from_secs(1)), None);
        assert_eq!(w.finish(3), None);
    }

    #[test]
    fn the_gate_lets_a_burst_through_then_the_rate_and_reports_drops_every_10_s() {
        let t0 = Instant::now();
        let rate = LineRate { per_sec: 100 };
        let mut g = LineGate::new("web.1", rate, t0);
        // The burst: 5 s worth at once.
        let first: usize = (0..1000).filter(|_| g.admit(t0)).count();
        assert_eq!(first, 500);
        assert_eq!(g.report(t0), None, "not before 10 s");
        // Then 100 lines/s, whatever the app writes: 10,000 lines over one second.
        let mut admitted = 0;
        for i in 0..10_000u64 {
            if g.admit(t0 + Duration::from_micros(100 * (i + 1))) {
                admitted += 1;
            }
        }
        assert!((99..=101).contains(&admitted), "{admitted}");
        assert_eq!(g.report(t0 + Duration::from_secs(9)), None);
        let dropped = 500 + 10_000 - admitted;
        assert_eq!(
            g.report(t0 + Duration::from_secs(10)),
            Some(format!(
                "web.1: {} log lines dropped in the last 10 s (app writes faster than 100 lines/s, the log limit per process)",
                thousands(dropped)
            ))
        );
        assert_eq!(g.report(t0 + Duration::from_secs(30)), None, "nothing new");
        // Quiet for long enough, the burst is back.
        let later = t0 + Duration::from_secs(60);
        assert_eq!((0..500).filter(|_| g.admit(later)).count(), 500);
        assert!(!g.admit(later));
        assert_eq!(
            g.flush(later).as_deref(),
            Some("web.1: 1 log line dropped in the last 1 s (app writes faster than 100 lines/s, the log limit per process)")
        );
        assert_eq!(g.flush(later), None);
    }
}
