//! Fan-out of new lines to followers: one bounded `broadcast` ring per followed app
//! ([`Hub`], owned by the writer thread, the only publisher) and the reader side
//! ([`Follower`]: its history, then live lines). A follower that reads too slowly falls
//! behind the ring and is told how many lines it missed; it never holds up the writer, the
//! app or other followers. Must not touch segment files except to read history.

use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::Arc;

use paas_api::{LogEvent, LogLine};
use tokio::sync::{broadcast, oneshot};

use super::query::{self, LogFilter};
use super::store::Ends;

/// What the writer hands a new follower: live lines from this point on, and where the app's
/// sets on disk ended at that point (its history reads up to there, so nothing is seen twice
/// and nothing is missed in between).
pub struct Subscription {
    pub live: broadcast::Receiver<Arc<LogLine>>,
    pub end: Ends,
}

/// The writer's senders, one per app that has followers.
pub struct Hub {
    capacity: usize,
    senders: HashMap<String, broadcast::Sender<Arc<LogLine>>>,
}

impl Hub {
    pub fn new(capacity: usize) -> Hub {
        Hub {
            capacity: capacity.max(16),
            senders: HashMap::new(),
        }
    }

    pub fn subscribe(&mut self, app: &str) -> broadcast::Receiver<Arc<LogLine>> {
        if let Some(tx) = self.senders.get(app) {
            return tx.subscribe();
        }
        let (tx, rx) = broadcast::channel(self.capacity);
        self.senders.insert(app.to_string(), tx);
        rx
    }

    /// Never blocks: a full ring overwrites what the slowest follower has not read yet.
    pub fn publish(&mut self, app: &str, line: &Arc<LogLine>) {
        let Some(tx) = self.senders.get(app) else {
            return;
        };
        if tx.send(Arc::clone(line)).is_err() {
            // Every follower has gone.
            self.senders.remove(app);
        }
    }

    /// Ends the app's followers (after the lines they have not read yet).
    pub fn close(&mut self, app: &str) {
        self.senders.remove(app);
    }

    pub fn close_all(&mut self) {
        self.senders.clear();
    }
}

enum State {
    /// Waiting for the writer to reach the point where `follow` was called.
    Subscribing(oneshot::Receiver<Subscription>),
    History(VecDeque<LogLine>, broadcast::Receiver<Arc<LogLine>>),
    Live(broadcast::Receiver<Arc<LogLine>>),
    Done,
}

/// One reader of an app's stream: the last `filter.tail` matching lines, then new matching
/// lines as they are written, until the app is removed or paasd stops.
pub struct Follower {
    app: String,
    dir: PathBuf,
    filter: LogFilter,
    state: State,
}

impl Follower {
    pub(super) fn new(
        app: String,
        dir: PathBuf,
        filter: LogFilter,
        sub: Option<oneshot::Receiver<Subscription>>,
    ) -> Follower {
        Follower {
            app,
            dir,
            filter,
            state: sub.map_or(State::Done, State::Subscribing),
        }
    }

    /// The next line, or `Dropped` when this follower missed lines by reading too slowly;
    /// `None` when the stream has ended (app removed, paasd stopping).
    pub async fn next(&mut self) -> Option<LogEvent> {
        loop {
            match &mut self.state {
                State::Subscribing(rx) => {
                    let Ok(sub) = rx.await else {
                        self.state = State::Done;
                        return None;
                    };
                    let history = self.history(sub.end).await;
                    self.state = State::History(history.into(), sub.live);
                }
                State::History(lines, _) => {
                    if let Some(l) = lines.pop_front() {
                        return Some(LogEvent::Line(l));
                    }
                    let State::History(_, live) = std::mem::replace(&mut self.state, State::Done)
                    else {
                        return None;
                    };
                    self.state = State::Live(live);
                }
                State::Live(live) => match live.recv().await {
                    Ok(line) if self.filter.matches(&line) => {
                        return Some(LogEvent::Line(LogLine::clone(&line)))
                    }
                    Ok(_) => {}
                    Err(broadcast::error::RecvError::Lagged(count)) => {
                        return Some(LogEvent::Dropped { count })
                    }
                    Err(broadcast::error::RecvError::Closed) => {
                        self.state = State::Done;
                        return None;
                    }
                },
                State::Done => return None,
            }
        }
    }

    async fn history(&self, end: Ends) -> Vec<LogLine> {
        let (dir, filter) = (self.dir.clone(), self.filter.clone());
        match tokio::task::spawn_blocking(move || query::tail(&dir, end, &filter)).await {
            Ok(Ok(lines)) => lines,
            Ok(Err(e)) => {
                tracing::warn!(app = %self.app, error = %e, "reading log history for a follower failed");
                Vec::new()
            }
            Err(e) => {
                tracing::warn!(app = %self.app, error = %e, "log history task failed");
                Vec::new()
            }
        }
    }
}

impl Drop for Follower {
    fn drop(&mut self) {
        tracing::debug!(app = %self.app, "log follower ended");
    }
}
