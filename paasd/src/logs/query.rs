//! Which lines a reader wants ([`LogFilter`]: tail, since, release, process, source), the
//! parsing of those filters from what people type (`2h`, `v12`, `web`), and finding the last
//! N matching lines by reading segments newest first, each set of an app's (stream,
//! platform) apart, merged in time order. Must not write anything or know about HTTP; works
//! on an app's log dir up to the end positions the writer handed out.

use std::path::Path;
use std::time::{Duration, SystemTime};

use paas_api::{LogLine, LogSource};

use super::store::{self, End, Ends, Set};
use super::LogError;

/// Lines a query returns when nobody says how many (Heroku's default).
pub const DEFAULT_TAIL: usize = 100;
/// The most lines one query returns.
pub const MAX_TAIL: usize = 100_000;
/// Timestamps come from several writers; a line this much older than `since` may still be
/// followed by newer ones, so scanning stops only past it.
const SINCE_SLACK: Duration = Duration::from_secs(60);

/// What a reader wants. `Default` is the last [`DEFAULT_TAIL`] lines of everything.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogFilter {
    /// At most this many lines, the newest ones (history of a follower: 0 = none).
    pub tail: usize,
    /// Only lines at or after this time.
    pub since: Option<SystemTime>,
    /// Only lines of this release.
    pub release: Option<u32>,
    /// A process type (`web` matches `web.1`, `web.2`) or one process (`web.1`, `router`).
    pub ps: Option<String>,
    pub source: Option<LogSource>,
}

impl Default for LogFilter {
    fn default() -> LogFilter {
        LogFilter {
            tail: DEFAULT_TAIL,
            since: None,
            release: None,
            ps: None,
            source: None,
        }
    }
}

impl LogFilter {
    /// True when `line` passes every filter but `tail`.
    pub fn matches(&self, line: &LogLine) -> bool {
        self.matches_since(line, self.since.map(super::timestamp).as_deref())
    }

    /// [`LogFilter::matches`] with `since` already in timestamp form (stored timestamps are
    /// all canonical, so they compare as text).
    fn matches_since(&self, line: &LogLine, since: Option<&str>) -> bool {
        if self.source.is_some_and(|s| s != line.source) {
            return false;
        }
        if self.release.is_some_and(|r| line.release != Some(r)) {
            return false;
        }
        if let Some(ps) = &self.ps {
            let kind_match = !ps.contains('.')
                && line
                    .process
                    .strip_prefix(ps.as_str())
                    .is_some_and(|rest| rest.starts_with('.'));
            if line.process != *ps && !kind_match {
                return false;
            }
        }
        since.is_none_or(|t| line.ts.as_str() >= t)
    }
}

/// A filter value a person got wrong, with what to type instead.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FilterError {
    #[error("since: '{0}' is neither a duration nor a time; give a duration like 2h or 30m, or an RFC 3339 time like 2026-11-23T10:00:00Z")]
    Since(String),
    #[error("tail: '{0}' is not a number of lines; give a whole number from 0 to {MAX_TAIL}")]
    Tail(String),
    #[error("release: '{0}' is not a release; give a version like v12")]
    Release(String),
    #[error("ps: '{0}' is not a process; give a process type like web or an instance like web.1")]
    Ps(String),
    #[error("source: '{0}' is not a log source; give app, router, build, platform or cron")]
    Source(String),
}

/// `2h`, `30m`, `1h30m`, `3days` (that long before `now`), or an RFC 3339 time (UTC, or
/// with an offset like `+01:00`).
pub fn parse_since(s: &str, now: SystemTime) -> Result<SystemTime, FilterError> {
    let s = s.trim();
    if let Ok(d) = humantime::parse_duration(s) {
        return Ok(now.checked_sub(d).unwrap_or(SystemTime::UNIX_EPOCH));
    }
    parse_time(s).ok_or_else(|| FilterError::Since(s.to_string()))
}

fn parse_time(s: &str) -> Option<SystemTime> {
    if let Ok(t) = humantime::parse_rfc3339_weak(s) {
        return Some(t);
    }
    // humantime reads UTC only: take a `+HH:MM` / `-HH:MM` offset off and apply it.
    let cut = s.len().checked_sub(6)?;
    let (base, offset) = (s.get(..cut)?, s.get(cut..)?.as_bytes());
    let ahead = match offset[0] {
        b'+' => true,
        b'-' => false,
        _ => return None,
    };
    let digits = |r: std::ops::Range<usize>| -> Option<u64> {
        let d = offset.get(r)?;
        d.iter()
            .all(u8::is_ascii_digit)
            .then(|| d.iter().fold(0, |n, c| n * 10 + u64::from(c - b'0')))
    };
    let (hours, minutes) = (digits(1..3)?, digits(4..6)?);
    if offset[3] != b':' || hours > 23 || minutes > 59 {
        return None;
    }
    let local = humantime::parse_rfc3339_weak(base).ok()?;
    let shift = Duration::from_secs(hours * 3600 + minutes * 60);
    if ahead {
        local.checked_sub(shift)
    } else {
        local.checked_add(shift)
    }
}

pub fn parse_tail(s: &str) -> Result<usize, FilterError> {
    s.trim()
        .parse::<usize>()
        .ok()
        .filter(|n| *n <= MAX_TAIL)
        .ok_or_else(|| FilterError::Tail(s.to_string()))
}

/// `v12` or `12`.
pub fn parse_release(s: &str) -> Result<u32, FilterError> {
    let t = s.trim();
    t.strip_prefix('v')
        .unwrap_or(t)
        .parse::<u32>()
        .ok()
        .filter(|v| *v > 0)
        .ok_or_else(|| FilterError::Release(s.to_string()))
}

/// A process type (`web`) or process name (`web.1`, `router`, `build`, `paasd`).
pub fn parse_ps(s: &str) -> Result<String, FilterError> {
    let (kind, index) = match s.split_once('.') {
        Some((k, i)) => (k, Some(i)),
        None => (s, None),
    };
    let kind_ok = (1..=30).contains(&kind.len())
        && kind
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    let index_ok =
        index.is_none_or(|i| (1..=6).contains(&i.len()) && i.bytes().all(|b| b.is_ascii_digit()));
    if kind_ok && index_ok {
        Ok(s.to_string())
    } else {
        Err(FilterError::Ps(s.to_string()))
    }
}

pub fn parse_source(s: &str) -> Result<LogSource, FilterError> {
    match s.trim() {
        "app" => Ok(LogSource::App),
        "router" => Ok(LogSource::Router),
        "build" => Ok(LogSource::Build),
        "platform" => Ok(LogSource::Platform),
        "cron" => Ok(LogSource::Cron),
        _ => Err(FilterError::Source(s.to_string())),
    }
}

/// The last `filter.tail` lines matching `filter` of the app whose logs are in `app_dir`,
/// oldest first: each set read up to its end in `ends`, the two merged in the order the
/// writer wrote them (their write sequence: timestamps alone are milliseconds from several
/// clocks, so lines of one moment would come out in an order nobody saw).
pub fn tail(app_dir: &Path, ends: Ends, filter: &LogFilter) -> Result<Vec<LogLine>, LogError> {
    // Only platform and build lines are in the platform set; older streams (before the
    // split) have theirs in `stream/`, which is why that one is always read.
    let platform = if filter
        .source
        .is_none_or(|s| matches!(s, LogSource::Platform | LogSource::Build))
    {
        tail_set(
            &app_dir.join(Set::Platform.dir_name()),
            ends.platform,
            filter,
        )?
    } else {
        Vec::new()
    };
    let stream = tail_set(&app_dir.join(Set::Stream.dir_name()), ends.stream, filter)?;
    let mut merged = merge(stream, platform);
    let extra = merged.len().saturating_sub(filter.tail);
    merged.drain(..extra);
    Ok(merged)
}

/// Two lists of (write sequence, line), each in its own order, as one by sequence; `first`
/// wins ties (only lines from before there was a sequence have equal ones, all 0, and they
/// are all in one set).
fn merge(first: Vec<(u64, LogLine)>, second: Vec<(u64, LogLine)>) -> Vec<LogLine> {
    let mut out = Vec::with_capacity(first.len() + second.len());
    let (mut a, mut b) = (first.into_iter().peekable(), second.into_iter().peekable());
    loop {
        let take_a = match (a.peek(), b.peek()) {
            (Some(x), Some(y)) => x.0 <= y.0,
            (Some(_), None) => true,
            (None, Some(_)) => false,
            (None, None) => return out,
        };
        out.extend(if take_a { a.next() } else { b.next() }.map(|(_, l)| l));
    }
}

/// The last `filter.tail` lines matching `filter` in the segment set at `dir`, oldest
/// first, reading no further than `end`. Lines that do not parse (cut by a crash) are
/// skipped.
fn tail_set(
    dir: &Path,
    end: Option<End>,
    filter: &LogFilter,
) -> Result<Vec<(u64, LogLine)>, LogError> {
    let Some(end) = end else {
        return Ok(Vec::new());
    };
    if filter.tail == 0 {
        return Ok(Vec::new());
    }
    let io = |source| LogError::Io {
        path: dir.to_path_buf(),
        source,
    };
    let stop_before = filter
        .since
        .map(|t| super::timestamp(t.checked_sub(SINCE_SLACK).unwrap_or(t)));
    let since = filter.since.map(super::timestamp);
    let mut out = Vec::new();
    let segments = store::list_segments(dir).map_err(io)?;
    'segments: for &(seq, _) in segments.iter().rev().filter(|s| s.0 <= end.seq) {
        let limit = (seq == end.seq).then_some(end.len);
        let bytes = store::read_segment(dir, seq, limit).map_err(io)?;
        for raw in bytes.rsplit(|b| *b == b'\n') {
            if raw.is_empty() {
                continue;
            }
            let Some((seq, line)) = store::decode(raw) else {
                continue;
            };
            if stop_before.as_deref().is_some_and(|t| line.ts.as_str() < t) {
                break 'segments;
            }
            if filter.matches_since(&line, since.as_deref()) {
                out.push((seq, line));
                if out.len() >= filter.tail {
                    break 'segments;
                }
            }
        }
    }
    out.reverse();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(process: &str, source: LogSource, release: Option<u32>) -> LogLine {
        LogLine {
            ts: "2026-11-23T10:00:00.000Z".into(),
            source,
            process: process.into(),
            release,
            line: "x".into(),
        }
    }

    #[test]
    fn ps_matches_a_type_or_one_instance() {
        let f = LogFilter {
            ps: Some("web".into()),
            ..LogFilter::default()
        };
        assert!(f.matches(&line("web.1", LogSource::App, None)));
        assert!(f.matches(&line("web", LogSource::App, None)));
        assert!(!f.matches(&line("webby.1", LogSource::App, None)));
        assert!(!f.matches(&line("worker.1", LogSource::App, None)));
        let f = LogFilter {
            ps: Some("web.2".into()),
            ..LogFilter::default()
        };
        assert!(f.matches(&line("web.2", LogSource::App, None)));
        assert!(!f.matches(&line("web.1", LogSource::App, None)));
        assert!(!f.matches(&line("web.22", LogSource::App, None)));
    }

    #[test]
    fn source_release_and_since() {
        let f = LogFilter {
            source: Some(LogSource::Router),
            release: Some(3),
            ..LogFilter::default()
        };
        assert!(f.matches(&line("router", LogSource::Router, Some(3))));
        assert!(!f.matches(&line("router", LogSource::Router, Some(4))));
        assert!(!f.matches(&line("router", LogSource::Router, None)));
        assert!(!f.matches(&line("web.1", LogSource::App, Some(3))));
        let at = humantime::parse_rfc3339("2026-11-23T10:00:00Z").expect("time");
        let f = LogFilter {
            since: Some(at),
            ..LogFilter::default()
        };
        assert!(f.matches(&line("web.1", LogSource::App, None)));
        let f = LogFilter {
            since: Some(at + Duration::from_millis(1)),
            ..LogFilter::default()
        };
        assert!(!f.matches(&line("web.1", LogSource::App, None)));
    }

    #[test]
    fn merging_follows_the_write_sequence_not_the_timestamps() {
        let at = |seq: u64, ts: &str, text: &str| {
            (
                seq,
                LogLine {
                    ts: ts.into(),
                    line: text.into(),
                    ..line("x", LogSource::App, None)
                },
            )
        };
        let platform = vec![
            at(10, "2026-11-23T10:00:00.000Z", "deploy"),
            at(30, "2026-11-23T10:00:02.000Z", "started"),
            at(60, "2026-11-23T10:00:02.000Z", "exited"),
        ];
        let stream = vec![
            // Written before the sequence existed.
            at(0, "2026-11-23T09:00:00.000Z", "old"),
            at(20, "2026-11-23T10:00:02.000Z", "a"),
            at(40, "2026-11-23T10:00:02.000Z", "b"),
            // Stamped earlier by its own clock, written later.
            at(50, "2026-11-23T10:00:01.500Z", "c"),
            at(70, "2026-11-23T10:00:06.000Z", "d"),
        ];
        let merged: Vec<String> = merge(stream, platform)
            .into_iter()
            .map(|l| l.line)
            .collect();
        assert_eq!(
            merged,
            ["old", "deploy", "a", "started", "b", "c", "exited", "d"]
        );
        assert!(merge(Vec::new(), Vec::new()).is_empty());
    }

    #[test]
    fn parsing_what_people_type() {
        let now = humantime::parse_rfc3339("2026-11-23T12:00:00Z").expect("time");
        assert_eq!(
            parse_since("2h", now),
            Ok(humantime::parse_rfc3339("2026-11-23T10:00:00Z").expect("time"))
        );
        assert_eq!(
            parse_since("1h30m", now),
            Ok(humantime::parse_rfc3339("2026-11-23T10:30:00Z").expect("time"))
        );
        assert_eq!(
            parse_since("2026-11-23T09:15:00.5Z", now),
            Ok(humantime::parse_rfc3339("2026-11-23T09:15:00.500Z").expect("time"))
        );
        let ten = humantime::parse_rfc3339("2026-11-23T10:00:00Z").expect("time");
        assert_eq!(parse_since("2026-11-23T11:00:00+01:00", now), Ok(ten));
        assert_eq!(parse_since("2026-11-23T07:30:00.000-02:30", now), Ok(ten));
        assert!(parse_since("2026-11-23T11:00:00+1:000", now).is_err());
        let e = parse_since("yesterday", now).expect_err("bad");
        assert!(e.to_string().contains("give a duration like 2h"), "{e}");
        assert!(parse_since("2", now).is_err());
        assert_eq!(parse_tail("0"), Ok(0));
        assert_eq!(parse_tail("250"), Ok(250));
        assert!(parse_tail("-1").is_err());
        assert!(parse_tail("1000001").is_err());
        assert_eq!(parse_release("v12"), Ok(12));
        assert_eq!(parse_release("12"), Ok(12));
        assert!(parse_release("v0").is_err());
        assert!(parse_release("twelve").is_err());
        assert_eq!(parse_ps("web"), Ok("web".into()));
        assert_eq!(parse_ps("web.1"), Ok("web.1".into()));
        assert_eq!(parse_ps("router"), Ok("router".into()));
        for bad in ["", "web.", ".1", "web.x", "a/b", "web.1.2"] {
            assert!(parse_ps(bad).is_err(), "{bad}");
        }
        assert_eq!(parse_source("router"), Ok(LogSource::Router));
        assert!(parse_source("stdout").is_err());
    }
}
