//! The app log stream (DESIGN section 2, `logs/`): instance output, router access lines,
//! build output and platform events, per app, with timestamp, source, process and release.
//! [`Logs`] is the service the supervisor, router, builds and API call. Owns the append
//! queue, the writer thread's lifetime and the line rules (length, timestamp form); must not
//! block or fail an appender, speak HTTP, or know who produces the lines.
//!
//! On disk: `STATE/logs/APP/stream/NNNN.ndjson` segments (see `store`) for what the app
//! prints, `STATE/logs/APP/platform/` for platform and build lines (their own cap, so a
//! flood of app lines never rotates them away), next to the build logs
//! `STATE/logs/APP/deploy-ID.log`. Lines reach followers from the writer thread as it
//! takes them off the queue (microseconds under normal load), and the files after every
//! batch (at most `writer::BATCH_TIME` later).

mod follow;
pub mod query;
mod store;
mod writer;

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::mpsc::Sender;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use paas_api::{LogLine, LogSource};
use tokio::sync::oneshot;

pub use follow::Follower;
pub use query::{FilterError, LogFilter};

/// `process` of platform lines.
pub const PLATFORM_PROCESS: &str = "paasd";
/// `process` of router lines.
pub const ROUTER_PROCESS: &str = "router";
/// `process` of build and release-phase lines.
pub const BUILD_PROCESS: &str = "build";
/// Longer lines are cut here (Heroku cuts at 10 KB) and marked.
pub const MAX_LINE_BYTES: usize = 16 * 1024;
/// The smallest segment: with lines cut at [`MAX_LINE_BYTES`], even a line of escapes fits.
const MIN_SEGMENT_BYTES: u64 = 256 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error("log dir {}: {source}", .path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the log writer has stopped")]
    Stopped,
    #[error("log reader task failed: {0}")]
    Worker(String),
}

/// Sizes of the log service. `Default` is what `[logs]` in paasd.toml defaults to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogConfig {
    /// Everything one app's stream (app, router and cron lines) may occupy on disk (at
    /// least 1 MiB).
    pub max_bytes_per_app: u64,
    /// The same for its platform and build lines (at least 1 MiB).
    pub platform_bytes_per_app: u64,
    /// A segment's size (at least 256 KiB, at most a quarter of the cap so rotation drops at
    /// most a quarter of the history at once).
    pub segment_bytes: u64,
    /// Lines waiting for the writer; beyond this, appends are dropped and counted.
    pub queue_lines: usize,
    /// Lines a follower may fall behind before it misses some (and is told how many).
    pub follow_buffer: usize,
}

impl Default for LogConfig {
    fn default() -> LogConfig {
        LogConfig {
            max_bytes_per_app: 32 << 20,
            platform_bytes_per_app: 8 << 20,
            segment_bytes: 4 << 20,
            queue_lines: 65_536,
            follow_buffer: 4_096,
        }
    }
}

impl LogConfig {
    /// The sizes from `[logs]` in paasd.toml, the rest at their defaults.
    pub fn from_settings(c: &crate::config::LogsConfig) -> LogConfig {
        LogConfig {
            max_bytes_per_app: c.max_mb_per_app.bytes(),
            platform_bytes_per_app: c.platform_mb_per_app.bytes(),
            segment_bytes: c.segment_mb.bytes(),
            ..LogConfig::default()
        }
    }

    /// The limits actually applied: each cap and its segment size made consistent.
    fn limits(&self) -> writer::SetLimits {
        let set = |cap: u64| {
            let max_bytes = cap.max(4 * MIN_SEGMENT_BYTES);
            let segment_bytes = self.segment_bytes.clamp(MIN_SEGMENT_BYTES, max_bytes / 4);
            store::Limits {
                max_bytes,
                segment_bytes,
            }
        };
        writer::SetLimits {
            stream: set(self.max_bytes_per_app),
            platform: set(self.platform_bytes_per_app),
        }
    }
}

/// The log service. Cheap to clone; every clone talks to the same writer thread.
#[derive(Clone)]
pub struct Logs {
    inner: Arc<Inner>,
}

struct Inner {
    root: PathBuf,
    cfg: LogConfig,
    tx: Sender<writer::Cmd>,
    shared: Arc<writer::Shared>,
}

/// An access line of the router, for [`Logs::router`].
#[derive(Debug, Clone)]
pub struct Access<'a> {
    pub method: &'a str,
    pub path: &'a str,
    pub status: u16,
    /// Response body bytes sent.
    pub bytes: u64,
    pub duration: Duration,
    /// The instance that answered (`web.1`), none when no instance did (502, 503).
    pub instance: Option<&'a str>,
}

impl Logs {
    /// Starts the writer thread for the streams under `dir` (`STATE/logs`). Streams a
    /// previous run left there are found again as their apps are used.
    pub fn new(dir: &Path, cfg: LogConfig) -> Result<Logs, LogError> {
        let io = |source| LogError::Io {
            path: dir.to_path_buf(),
            source,
        };
        std::fs::create_dir_all(dir).map_err(io)?;
        let (tx, rx) = std::sync::mpsc::channel();
        let shared = Arc::new(writer::Shared::default());
        let w = writer::Writer::new(
            dir.to_path_buf(),
            cfg.limits(),
            cfg.queue_lines.max(1),
            cfg.follow_buffer,
            Arc::clone(&shared),
        );
        std::thread::Builder::new()
            .name("paas-logs".into())
            .spawn(move || w.run(rx))
            .map_err(io)?;
        Ok(Logs {
            inner: Arc::new(Inner {
                root: dir.to_path_buf(),
                cfg,
                tx,
                shared,
            }),
        })
    }

    /// Adds a line to `app`'s stream. Never blocks and never fails the caller (an app
    /// printing fast must not be slowed by disk or followers): when the writer is too far
    /// behind, the line is dropped and counted, and the stream later says how many were.
    pub fn append(&self, app: &str, mut line: LogLine) {
        if crate::apps::validate::app_name(app).is_err() {
            tracing::debug!(app = %app.escape_debug(), "log line for an invalid app name ignored");
            return;
        }
        let shared = &self.inner.shared;
        if shared.queued.fetch_add(1, Ordering::AcqRel) >= self.inner.cfg.queue_lines.max(1) {
            shared.queued.fetch_sub(1, Ordering::AcqRel);
            *shared
                .dropped
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .entry(app.to_string())
                .or_default() += 1;
            shared.any_dropped.store(true, Ordering::Release);
            return;
        }
        normalize(&mut line);
        let cmd = writer::Cmd::Line {
            app: app.to_string(),
            line,
        };
        if self.inner.tx.send(cmd).is_err() {
            shared.queued.fetch_sub(1, Ordering::AcqRel);
        }
    }

    /// Convenience for platform events (source `platform`, process `paasd`), timestamped now.
    pub fn platform(&self, app: &str, release: Option<u32>, msg: impl Into<String>) {
        self.append(
            app,
            LogLine {
                ts: now(),
                source: LogSource::Platform,
                process: PLATFORM_PROCESS.into(),
                release,
                line: msg.into(),
            },
        );
    }

    /// Convenience for the router: one access line (source `router`, process `router`):
    /// `method=GET path="/" status=200 bytes=512 duration=3ms instance=web.1`.
    pub fn router(&self, app: &str, release: Option<u32>, access: &Access<'_>) {
        self.append(
            app,
            LogLine {
                ts: now(),
                source: LogSource::Router,
                process: ROUTER_PROCESS.into(),
                release,
                line: access_line(access),
            },
        );
    }

    /// The last `filter.tail` lines of `app` matching `filter`, oldest first. Sees every line
    /// appended before the call (except dropped ones). An app without logs has none.
    pub async fn query(&self, app: &str, filter: &LogFilter) -> Result<Vec<LogLine>, LogError> {
        if crate::apps::validate::app_name(app).is_err() {
            return Ok(Vec::new());
        }
        let (reply, end) = oneshot::channel();
        self.send(writer::Cmd::End {
            app: app.to_string(),
            reply,
        })?;
        let ends = end.await.map_err(|_| LogError::Stopped)?;
        let (dir, filter) = (self.app_dir(app), filter.clone());
        tokio::task::spawn_blocking(move || query::tail(&dir, ends, &filter))
            .await
            .map_err(|e| LogError::Worker(e.to_string()))?
    }

    /// Follows `app`: the last `filter.tail` matching lines, then new matching lines as they
    /// come (no line twice, none missed in between), until the app is removed or paasd
    /// stops. A follower that reads too slowly gets `Dropped { count }` instead of the lines
    /// it missed; it never slows anyone else.
    pub fn follow(&self, app: &str, filter: LogFilter) -> Follower {
        let dir = self.app_dir(app);
        if crate::apps::validate::app_name(app).is_err() {
            return Follower::new(app.to_string(), dir, filter, None);
        }
        let (reply, rx) = oneshot::channel();
        let sent = self.send(writer::Cmd::Subscribe {
            app: app.to_string(),
            reply,
        });
        Follower::new(app.to_string(), dir, filter, sent.ok().map(|()| rx))
    }

    /// Deletes the app's logs (stream and build logs) and ends its followers: the app was
    /// destroyed.
    pub async fn remove_app(&self, app: &str) {
        if crate::apps::validate::app_name(app).is_err() {
            return;
        }
        let (reply, done) = oneshot::channel();
        if self
            .send(writer::Cmd::Remove {
                app: app.to_string(),
                reply,
            })
            .is_ok()
        {
            let _ = done.await;
        }
    }

    /// Returns once everything appended before the call is written to the files (and
    /// synced), for tests and shutdown.
    pub async fn flush(&self) {
        let (reply, done) = oneshot::channel();
        if self.send(writer::Cmd::Flush { reply }).is_ok() {
            let _ = done.await;
        }
    }

    /// Ends every follower (their streams end after the lines already sent) and refuses
    /// new ones, so a daemon that is stopping is not held open by `logs --follow`.
    pub fn close_followers(&self) {
        let _ = self.send(writer::Cmd::CloseFollowers);
    }

    fn app_dir(&self, app: &str) -> PathBuf {
        self.inner.root.join(app)
    }

    fn send(&self, cmd: writer::Cmd) -> Result<(), LogError> {
        self.inner.tx.send(cmd).map_err(|_| LogError::Stopped)
    }
}

/// RFC 3339 UTC with milliseconds (`2026-11-23T10:00:00.123Z`): the form of every stored
/// timestamp (so they compare as text).
pub fn timestamp(t: SystemTime) -> String {
    humantime::format_rfc3339_millis(t).to_string()
}

/// [`timestamp`] of now.
pub fn now() -> String {
    timestamp(SystemTime::now())
}

/// `2026-11-23T10:00:00.123Z` exactly.
fn is_canonical(ts: &str) -> bool {
    let b = ts.as_bytes();
    b.len() == 24
        && b.iter().enumerate().all(|(i, c)| match i {
            4 | 7 => *c == b'-',
            10 => *c == b'T',
            13 | 16 => *c == b':',
            19 => *c == b'.',
            23 => *c == b'Z',
            _ => c.is_ascii_digit(),
        })
}

/// Puts the timestamp in canonical form (now, if it cannot be read) and cuts long lines.
fn normalize(line: &mut LogLine) {
    if !is_canonical(&line.ts) {
        line.ts = humantime::parse_rfc3339_weak(&line.ts)
            .map(timestamp)
            .unwrap_or_else(|_| now());
    }
    if line.line.len() > MAX_LINE_BYTES {
        let mut cut = MAX_LINE_BYTES;
        while !line.line.is_char_boundary(cut) {
            cut -= 1;
        }
        let extra = line.line.len() - cut;
        line.line.truncate(cut);
        line.line
            .push_str(&format!(" [line cut: {extra} more bytes]"));
    }
    if line.process.len() > 64 {
        let mut cut = 64;
        while !line.process.is_char_boundary(cut) {
            cut -= 1;
        }
        line.process.truncate(cut);
    }
}

fn access_line(a: &Access<'_>) -> String {
    let mut path = String::with_capacity(a.path.len());
    for c in a.path.chars().take(2048) {
        match c {
            '"' => path.push_str("%22"),
            '\\' => path.push_str("%5C"),
            c if c.is_control() => path.push_str(&format!("%{:02X}", c as u32 & 0xff)),
            c => path.push(c),
        }
    }
    let ms = a.duration.as_secs_f64() * 1000.0;
    let duration = if ms < 10.0 {
        format!("{ms:.1}ms")
    } else {
        format!("{}ms", ms.round() as u64)
    };
    format!(
        "method={} path=\"{path}\" status={} bytes={} duration={duration} instance={}",
        a.method,
        a.status,
        a.bytes,
        a.instance.unwrap_or("none")
    )
}

#[cfg(test)]
mod tests;
