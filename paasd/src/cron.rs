//! The cron scheduler (dokku's app.json `cron`): at the start of every minute (UTC), each
//! entry of each app's current release whose schedule names that minute runs as a one-off
//! on that release with its config; its output goes into the app's log stream (source
//! `cron`, process `cron.N`) and its last run is recorded (`paas cron APP`). Runs of one
//! entry never overlap: a minute that finds the previous run still going is skipped and
//! says so. Entries are read from the slug's app.json each minute, so a deploy or rollback
//! changes them at once. Must not speak HTTP or SQL (apps records runs) nor start
//! containers itself (one-offs do).

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, DurationRound, TimeDelta, Utc};
use paas_api::{self as api, LogLine, LogSource, RunEvent};

use crate::app_json::{self, CronEntry};
use crate::apps::{AppError, Apps, Runnable};
use crate::floods::{LineGate, LineRate};
use crate::logs::Logs;
use crate::oneoff::{OneOff, OneOffs};
use crate::slugs::Slugs;

#[derive(Debug, thiserror::Error)]
pub enum CronError {
    #[error(transparent)]
    App(#[from] AppError),
}

/// The scheduler and `GET /apps/{app}/cron` (cheap to clone).
#[derive(Clone)]
pub struct Cron {
    inner: Arc<Inner>,
}

struct Inner {
    apps: Apps,
    oneoffs: OneOffs,
    slugs: Slugs,
    logs: Logs,
    /// Each run's output budget (`[logs] lines_per_sec`), like an instance's.
    line_rate: LineRate,
    /// (app, schedule, command) of the runs going on now.
    running: Mutex<BTreeSet<(String, String, String)>>,
}

impl Cron {
    pub fn new(
        apps: Apps,
        oneoffs: OneOffs,
        slugs: Slugs,
        logs: Logs,
        line_rate: LineRate,
    ) -> Cron {
        Cron {
            inner: Arc::new(Inner {
                apps,
                oneoffs,
                slugs,
                logs,
                line_rate,
                running: Mutex::new(BTreeSet::new()),
            }),
        }
    }

    /// Starts the scheduler task; it ticks at the start of every minute until paasd exits.
    pub async fn start(&self) {
        match self.inner.apps.lose_running_cron().await {
            Ok(n) if n > 0 => tracing::warn!(count = n, "cron runs interrupted by a paasd stop"),
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "could not mark interrupted cron runs"),
        }
        let this = self.clone();
        tokio::spawn(async move {
            let mut last: Option<DateTime<Utc>> = None;
            loop {
                let now = Utc::now();
                // A wake-up a hair early (wall clock vs timer) must not tick a minute twice.
                let minute = match last {
                    Some(l) => next_minute(now).max(l + TimeDelta::minutes(1)),
                    None => next_minute(now),
                };
                last = Some(minute);
                let wait = (minute - now).to_std().unwrap_or(Duration::ZERO);
                tokio::time::sleep(wait).await;
                this.tick(minute).await;
            }
        });
    }

    /// `paas cron APP`: the entries of the current release with their next and last run.
    pub async fn list(&self, app: String) -> Result<api::CronList, CronError> {
        self.inner.apps.info(app.clone()).await?;
        let Some((_, entries)) = self.entries(&app).await? else {
            return Ok(api::CronList::default());
        };
        let runs = self.inner.apps.cron_runs(app).await?;
        let now = Utc::now();
        Ok(api::CronList {
            entries: entries
                .iter()
                .enumerate()
                .map(|(i, e)| api::CronEntry {
                    schedule: e.schedule.as_str().to_string(),
                    command: e.command.0.clone(),
                    process: process(i),
                    next_run_at: e
                        .schedule
                        .next_after(now)
                        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)),
                    last_run: runs
                        .iter()
                        .find(|r| r.schedule == e.schedule.as_str() && r.command == e.command.0)
                        .map(|r| api::CronRun {
                            release: r.release,
                            started_at: r.started_at.clone(),
                            finished_at: r.finished_at.clone(),
                            exit_code: r.exit_code,
                            outcome: r.outcome.clone(),
                        }),
                })
                .collect(),
        })
    }

    /// The current release of `app` and its cron entries; `None` before the first deploy.
    async fn entries(&self, app: &str) -> Result<Option<(Runnable, Vec<CronEntry>)>, AppError> {
        let Some(r) = self.inner.apps.runnable(app.to_string(), None).await? else {
            return Ok(None);
        };
        let dir = self.inner.slugs.layer(app, r.slug_id).join("app");
        let text = match crate::app_files::read(&dir, "app.json") {
            Ok(Some(t)) => t,
            Ok(None) => return Ok(Some((r, Vec::new()))),
            Err(e) => {
                tracing::warn!(%app, error = %e, "cron: app.json of the current release unreadable");
                return Ok(Some((r, Vec::new())));
            }
        };
        // The deploy refused a malformed app.json; one that slipped through runs nothing.
        let entries = app_json::parse(&text)
            .map(|p| p.manifest.cron)
            .unwrap_or_default();
        Ok(Some((r, entries)))
    }

    async fn tick(&self, minute: DateTime<Utc>) {
        let names = match self.inner.apps.names().await {
            Ok(n) => n,
            Err(e) => {
                tracing::warn!(error = %e, "cron: could not list apps");
                return;
            }
        };
        for app in names {
            let (r, entries) = match self.entries(&app).await {
                Ok(Some(found)) => found,
                Ok(None) => continue,
                Err(e) => {
                    tracing::warn!(%app, error = %e, "cron: could not read the current release");
                    continue;
                }
            };
            for (i, e) in entries.into_iter().enumerate() {
                if e.schedule.fires_at(minute) {
                    let (this, r) = (self.clone(), r.clone());
                    tokio::spawn(async move { this.run(r, i, e).await });
                }
            }
        }
    }

    /// One run of entry `index` on release `r`, from start to recorded end.
    async fn run(&self, r: Runnable, index: usize, e: CronEntry) {
        let inner = &self.inner;
        let (schedule, command) = (e.schedule.as_str().to_string(), e.command.0.clone());
        let key = (r.app.clone(), schedule.clone(), command.clone());
        let fresh = inner
            .running
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(key.clone());
        if !fresh {
            inner.logs.platform(
                &r.app,
                Some(r.version),
                format!("cron: `{command}` is still running from its last start; this minute's run is skipped"),
            );
            return;
        }
        let started = unix_now();
        let record = |finished: Option<i64>, code: Option<i32>, outcome: &'static str| {
            let (apps, app, schedule, command) = (
                inner.apps.clone(),
                r.app.clone(),
                schedule.clone(),
                command.clone(),
            );
            let version = r.version;
            async move {
                if let Err(err) = apps
                    .record_cron(
                        app, schedule, command, version, started, finished, code, outcome,
                    )
                    .await
                {
                    tracing::warn!(error = %err, "cron: could not record a run");
                }
            }
        };
        record(None, None, "running").await;
        inner.logs.platform(
            &r.app,
            Some(r.version),
            format!(
                "cron: running `{command}` ({schedule}) as {}",
                process(index)
            ),
        );
        let (code, outcome, said) = self.execute(&r, index, &command).await;
        record(Some(unix_now()), code, outcome).await;
        inner
            .logs
            .platform(&r.app, Some(r.version), format!("cron: `{command}` {said}"));
        inner
            .running
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&key);
    }

    /// Runs the command and relays its output; returns the exit code, the outcome and
    /// words for the platform line.
    async fn execute(
        &self,
        r: &Runnable,
        index: usize,
        command: &str,
    ) -> (Option<i32>, &'static str, String) {
        let inner = &self.inner;
        let name = process(index);
        let spawned = inner
            .oneoffs
            .spawn(OneOff {
                app: r.app.clone(),
                prefix: format!("{}-cron", r.app),
                stack: r.stack.clone(),
                layers: vec![inner.slugs.layer(&r.app, r.slug_id)],
                env: crate::launch::process_env(&r.config, &name),
                command: command.to_string(),
                limits: crate::oneoff::default_limits(),
                identity: r.identity,
            })
            .await;
        let mut events = match spawned {
            Ok(ev) => ev,
            Err(e) => return (None, "failed", format!("could not start: {e}")),
        };
        let mut gate = LineGate::new(&name, inner.line_rate, std::time::Instant::now());
        let outcome = self.relay(r, &name, &mut events, &mut gate).await;
        if let Some(report) = gate.flush(std::time::Instant::now()) {
            inner.logs.platform(&r.app, Some(r.version), report);
        }
        outcome
    }

    /// A run's output into the log (within its line budget) until it ends; how it ended.
    async fn relay(
        &self,
        r: &Runnable,
        name: &str,
        events: &mut tokio::sync::mpsc::Receiver<RunEvent>,
        gate: &mut LineGate,
    ) -> (Option<i32>, &'static str, String) {
        let inner = &self.inner;
        while let Some(ev) = events.recv().await {
            match ev {
                RunEvent::Output { line, .. } => {
                    let now = std::time::Instant::now();
                    if gate.admit(now) {
                        inner.logs.append(
                            &r.app,
                            LogLine {
                                ts: crate::logs::now(),
                                source: LogSource::Cron,
                                process: name.to_string(),
                                release: Some(r.version),
                                line,
                            },
                        );
                    } else if let Some(report) = gate.report(now) {
                        inner.logs.platform(&r.app, Some(r.version), report);
                    }
                }
                RunEvent::Exited { oom: true, .. } => {
                    return (None, "oom", "ran out of memory and was killed".into())
                }
                RunEvent::Exited { code: Some(c), .. } => {
                    return (Some(c), "exited", format!("exited with status {c}"))
                }
                RunEvent::Exited { signal, .. } => {
                    return (
                        None,
                        "signaled",
                        format!("was killed by signal {}", signal.unwrap_or(0)),
                    )
                }
                RunEvent::Error { message } => return (None, "lost", message),
                RunEvent::Started { .. } => {}
            }
        }
        (None, "lost", "ended without an exit status".into())
    }
}

/// `cron.1` for the first entry: the process name of its lines.
fn process(index: usize) -> String {
    format!("cron.{}", index + 1)
}

/// The start of the minute after `now`.
fn next_minute(now: DateTime<Utc>) -> DateTime<Utc> {
    let minute = TimeDelta::minutes(1);
    now.duration_trunc(minute).unwrap_or(now) + minute
}

fn unix_now() -> i64 {
    Utc::now().timestamp()
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn ticks_fall_on_minute_starts() {
        let t = |h, m, s| {
            Utc.with_ymd_and_hms(2024, 5, 6, h, m, s)
                .single()
                .expect("time")
        };
        assert_eq!(next_minute(t(10, 5, 30)), t(10, 6, 0));
        assert_eq!(next_minute(t(10, 5, 0)), t(10, 6, 0));
        assert_eq!(next_minute(t(23, 59, 59)), t(0, 0, 0) + TimeDelta::days(1));
        assert_eq!(process(0), "cron.1");
    }
}
