//! The one writer: a dedicated thread that takes lines off the append queue in batches,
//! writes them to each app's [`AppStream`] of the line's [`Set`] (platform and build lines
//! apart from the rest), hands them to the app's followers, and flushes
//! after every batch (so at least every [`BATCH_TIME`]). Also serves the commands that need
//! a consistent point in the stream (subscribe, end position, flush, remove). Must not block
//! appenders (they only ever push onto an unbounded channel whose length they bound
//! themselves) and must not parse or filter lines.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, TryRecvError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use paas_api::{LogLine, LogSource};
use tokio::sync::oneshot;

use super::follow::{Hub, Subscription};
use super::store::{AppStream, Ends, Limits, Set};

/// A batch ends after this long even if more lines are waiting, so lines reach the files
/// (and readers) at least this often under load.
pub const BATCH_TIME: Duration = Duration::from_millis(50);
/// When a batch had more than one line (lines are arriving faster than one at a time), the
/// writer rests this long before taking the next batch. Waking per line would cost a thread
/// wake-up and a write per request at router rates, on CPUs the router needs (measured: p99
/// behind nginx's in `bench/router.sh --paasd`); resting bounds wake-ups to ~100/s and keeps
/// `--follow` well inside its 100 ms.
pub const COALESCE: Duration = Duration::from_millis(10);
/// The same disk error is logged at most this often per app.
const WARN_EVERY: Duration = Duration::from_secs(60);
/// An app's stream says that the queue dropped some of its lines at most this often.
const DROP_NOTE_EVERY: Duration = Duration::from_secs(10);

pub enum Cmd {
    Line {
        app: String,
        line: LogLine,
    },
    Subscribe {
        app: String,
        reply: oneshot::Sender<Subscription>,
    },
    End {
        app: String,
        reply: oneshot::Sender<Ends>,
    },
    Flush {
        reply: oneshot::Sender<()>,
    },
    Remove {
        app: String,
        reply: oneshot::Sender<()>,
    },
    /// Ends every follower; later subscriptions end at once.
    CloseFollowers,
    /// Tests: stop taking lines until the sender is dropped, to fill the queue.
    #[cfg(test)]
    Pause(std::sync::mpsc::Receiver<()>),
}

/// What appenders and the writer share besides the channel.
#[derive(Default)]
pub struct Shared {
    /// Lines sent and not yet taken by the writer.
    pub queued: AtomicUsize,
    /// Lines refused because the queue was full, per app, not yet reported.
    pub dropped: Mutex<HashMap<String, u64>>,
    pub any_dropped: AtomicBool,
}

/// The caps of each set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SetLimits {
    pub stream: Limits,
    pub platform: Limits,
}

impl SetLimits {
    fn of(&self, set: Set) -> Limits {
        match set {
            Set::Stream => self.stream,
            Set::Platform => self.platform,
        }
    }
}

/// Which set a line belongs to: what the platform says about the app and its builds
/// outlives whatever the app prints.
pub fn set_of(source: LogSource) -> Set {
    match source {
        LogSource::Platform | LogSource::Build => Set::Platform,
        LogSource::App | LogSource::Router | LogSource::Cron => Set::Stream,
    }
}

pub struct Writer {
    root: PathBuf,
    limits: SetLimits,
    queue_lines: usize,
    shared: Arc<Shared>,
    streams: HashMap<(String, Set), AppStream>,
    /// The write sequence of the last line written (see `store::encode`).
    last_seq: u64,
    hub: Hub,
    closed: bool,
    warned: HashMap<String, Instant>,
    /// When each app's stream last said the queue dropped lines.
    noted: HashMap<String, Instant>,
}

impl Writer {
    pub fn new(
        root: PathBuf,
        limits: SetLimits,
        queue_lines: usize,
        follow_buffer: usize,
        shared: Arc<Shared>,
    ) -> Writer {
        Writer {
            root,
            limits,
            queue_lines,
            shared,
            streams: HashMap::new(),
            last_seq: 0,
            hub: Hub::new(follow_buffer),
            closed: false,
            warned: HashMap::new(),
            noted: HashMap::new(),
        }
    }

    /// Runs until every `Logs` handle is gone, then flushes and returns.
    pub fn run(mut self, rx: Receiver<Cmd>) {
        while let Ok(cmd) = rx.recv() {
            let started = Instant::now();
            self.handle(cmd);
            let mut handled = 1usize;
            while started.elapsed() < BATCH_TIME {
                match rx.try_recv() {
                    Ok(cmd) => {
                        self.handle(cmd);
                        handled += 1;
                    }
                    Err(TryRecvError::Empty | TryRecvError::Disconnected) => break,
                }
            }
            self.flush_all();
            self.report_drops(false);
            if handled > 1 && !self.closed {
                std::thread::sleep(COALESCE);
            }
        }
        self.flush_all();
        for stream in self.streams.values_mut() {
            let _ = stream.sync();
        }
    }

    fn handle(&mut self, cmd: Cmd) {
        match cmd {
            Cmd::Line { app, line } => {
                self.shared.queued.fetch_sub(1, Ordering::AcqRel);
                self.write(&app, line);
            }
            Cmd::Subscribe { app, reply } => {
                if self.closed {
                    return;
                }
                let end = self.end(&app);
                let live = self.hub.subscribe(&app);
                let _ = reply.send(Subscription { live, end });
            }
            // Drops are reported before a reader is told where the stream ends: lines appended
            // before its call are in, and so is the note about those that were not.
            Cmd::End { app, reply } => {
                self.report_drops(true);
                let _ = reply.send(self.end(&app));
            }
            Cmd::Flush { reply } => {
                self.report_drops(true);
                self.flush_all();
                for ((app, _), stream) in &mut self.streams {
                    if let Err(e) = stream.sync() {
                        tracing::warn!(%app, error = %e, "syncing a log segment failed");
                    }
                }
                let _ = reply.send(());
            }
            Cmd::Remove { app, reply } => {
                self.streams.retain(|(a, _), _| *a != app);
                self.noted.remove(&app);
                self.hub.close(&app);
                let dir = self.root.join(&app);
                if let Err(e) = std::fs::remove_dir_all(&dir) {
                    if e.kind() != std::io::ErrorKind::NotFound {
                        tracing::warn!(dir = %dir.display(), error = %e, "could not remove an app's logs");
                    }
                }
                let _ = reply.send(());
            }
            Cmd::CloseFollowers => {
                self.closed = true;
                self.hub.close_all();
            }
            #[cfg(test)]
            Cmd::Pause(until) => {
                let _ = until.recv();
            }
        }
    }

    /// Now in nanoseconds, or one more than the last if the clock has not moved (or went
    /// back): lines of an app's two sets merge back in the order they were written.
    fn next_seq(&mut self) -> u64 {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX));
        self.last_seq = now.max(self.last_seq.saturating_add(1));
        self.last_seq
    }

    fn write(&mut self, app: &str, line: LogLine) {
        let line = Arc::new(line);
        let seq = self.next_seq();
        match super::store::encode(&line, seq) {
            Ok(bytes) => {
                let result = self
                    .stream(app, set_of(line.source))
                    .and_then(|s| s.append(&bytes));
                if let Err(e) = result {
                    self.warn(app, "writing to the log stream failed", &e);
                }
            }
            Err(e) => tracing::warn!(%app, error = %e, "encoding a log line failed"),
        }
        // Followers get the line even when the disk refused it.
        self.hub.publish(app, &line);
    }

    /// One set of the app's, loaded from disk the first time.
    fn stream(&mut self, app: &str, set: Set) -> std::io::Result<&mut AppStream> {
        let key = (app.to_string(), set);
        if !self.streams.contains_key(&key) {
            let dir = self.root.join(app).join(set.dir_name());
            let stream = AppStream::open(dir, self.limits.of(set))?;
            self.streams.insert(key.clone(), stream);
        }
        self.streams
            .get_mut(&key)
            .ok_or_else(|| std::io::Error::other("stream vanished"))
    }

    /// Where each of the app's sets ends now, buffered lines flushed first.
    fn end(&mut self, app: &str) -> Ends {
        let mut ends = Ends::default();
        for set in Set::ALL {
            let stream = match self.stream(app, set) {
                Ok(s) => s,
                Err(e) => {
                    self.warn(app, "opening the log stream failed", &e);
                    continue;
                }
            };
            let flushed = stream.flush();
            ends.set(set, stream.end());
            if let Err(e) = flushed {
                self.warn(app, "flushing the log stream failed", &e);
            }
        }
        ends
    }

    fn flush_all(&mut self) {
        let mut failed = Vec::new();
        for ((app, _), stream) in &mut self.streams {
            if stream.is_dirty() {
                if let Err(e) = stream.flush() {
                    failed.push((app.clone(), e));
                }
            }
        }
        for (app, e) in failed {
            self.warn(&app, "flushing the log stream failed", &e);
        }
    }

    /// Once the queue has room again, says in each app's stream how many lines it lost; at
    /// most once per [`DROP_NOTE_EVERY`] per app (a queue that keeps overflowing would
    /// otherwise add a note every batch), unless `now` (a reader is about to be told where
    /// the stream ends, or a flush): then the note about lines appended before it is in.
    fn report_drops(&mut self, now: bool) {
        if !self.shared.any_dropped.load(Ordering::Acquire)
            || self.shared.queued.load(Ordering::Acquire) > self.queue_lines / 2
        {
            return;
        }
        self.shared.any_dropped.store(false, Ordering::Release);
        let mut dropped = std::mem::take(
            &mut *self
                .shared
                .dropped
                .lock()
                .unwrap_or_else(|p| p.into_inner()),
        );
        if !now {
            let at = Instant::now();
            let early: Vec<String> = dropped
                .keys()
                .filter(|app| {
                    self.noted
                        .get(*app)
                        .is_some_and(|t| at.duration_since(*t) < DROP_NOTE_EVERY)
                })
                .cloned()
                .collect();
            if !early.is_empty() {
                // Back for a later batch, added to whatever is dropped meanwhile.
                let mut shared = self
                    .shared
                    .dropped
                    .lock()
                    .unwrap_or_else(|p| p.into_inner());
                for app in early {
                    if let Some(count) = dropped.remove(&app) {
                        *shared.entry(app).or_default() += count;
                    }
                }
                self.shared.any_dropped.store(true, Ordering::Release);
            }
        }
        for (app, count) in dropped {
            self.noted.insert(app.clone(), Instant::now());
            tracing::warn!(%app, count, "log lines dropped: the log writer fell behind");
            let line = LogLine {
                ts: super::timestamp(std::time::SystemTime::now()),
                source: LogSource::Platform,
                process: super::PLATFORM_PROCESS.into(),
                release: None,
                line: format!(
                    "{count} log line{} dropped: they came faster than they could be written",
                    if count == 1 { " was" } else { "s were" }
                ),
            };
            self.write(&app, line);
        }
        self.flush_all();
    }

    fn warn(&mut self, app: &str, what: &str, e: &std::io::Error) {
        let now = Instant::now();
        let recent = self
            .warned
            .get(app)
            .is_some_and(|t| now.duration_since(*t) < WARN_EVERY);
        if !recent {
            tracing::warn!(%app, error = %e, "{what}");
            self.warned.insert(app.to_string(), now);
        }
    }
}
