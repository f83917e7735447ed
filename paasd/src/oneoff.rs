//! One-off containers (`paas run APP -- CMD`), like `heroku run`: a fresh container with the
//! app's config on its current release (the stack alone before the first deploy), output
//! streamed back, exit status reported. Release phases, app.json scripts and cron runs run
//! the same way. Owns turning a command into a runtime spec; must not mount or spawn
//! anything itself.

use std::sync::Arc;

use paas_api::{OutputStream, RunEvent};
use tokio::sync::mpsc;

use crate::addresses::{AddressError, Addresses};
use crate::apps::{AppError, Apps};
use crate::floods::{self, PidsWatch};
use crate::launch::{launch_argv, process_env};
use crate::slugs::Slugs;
use paas_runtime::cgroups::Limits;
use paas_runtime::{FromHelper, RunSpec, Runtime, RuntimeError, Stream};

/// Defaults for a one-off container (Heroku's standard dyno is 512 MB).
pub const DEFAULT_MEMORY_MB: u64 = 512;
pub const DEFAULT_CPU_PERCENT: u32 = 100;
pub const DEFAULT_PIDS: u64 = 512;

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    App(#[from] AppError),
    #[error("give a command to run, e.g. `paas run APP -- ls -la`")]
    EmptyCommand,
    #[error("{0}")]
    InvalidLimits(String),
    /// The command could not be started (e.g. not found); the message is for the user.
    #[error("the container could not start: {0}")]
    Start(String),
    #[error(transparent)]
    Runtime(RuntimeError),
    #[error(transparent)]
    Address(#[from] AddressError),
}

/// A command to run once in a fresh container, attached: output streamed, exit reported.
#[derive(Debug, Clone)]
pub struct OneOff {
    /// The app whose command it is (its volumes are bound in).
    pub app: String,
    /// Instance id prefix (`APP-run`, `APP-release`).
    pub prefix: String,
    pub stack: String,
    /// The release's slug layer, if it has one.
    pub layers: Vec<std::path::PathBuf>,
    pub env: Vec<(String, String)>,
    /// Run with `bash -c` after `.profile.d` is sourced, like a Procfile command.
    pub command: String,
    pub limits: Limits,
    /// The app's uid and network group: a one-off reaches its app's instances.
    pub identity: crate::apps::Identity,
}

/// The one-off service: what `paas run` and release phases start.
#[derive(Clone)]
pub struct OneOffs {
    apps: Apps,
    addresses: Addresses,
    runtime: Arc<Runtime>,
    slugs: Slugs,
}

impl OneOffs {
    pub fn new(apps: Apps, addresses: Addresses, runtime: Arc<Runtime>, slugs: Slugs) -> OneOffs {
        OneOffs {
            apps,
            addresses,
            runtime,
            slugs,
        }
    }

    /// `paas run`: the command on the app's current release (the stack alone before any deploy).
    pub async fn run(
        &self,
        app: String,
        req: paas_api::RunRequest,
    ) -> Result<mpsc::Receiver<RunEvent>, RunError> {
        let limits = limits(&req)?;
        let command = match req.command.as_slice() {
            [] => return Err(RunError::EmptyCommand),
            [one] if one.trim().is_empty() => return Err(RunError::EmptyCommand),
            [one] => one.clone(),
            many => many
                .iter()
                .map(|a| shell_quote(a))
                .collect::<Vec<_>>()
                .join(" "),
        };
        let target = self.apps.run_target(app.clone()).await?;
        self.spawn(OneOff {
            app: app.clone(),
            prefix: format!("{app}-run"),
            stack: target.stack,
            layers: target
                .slug_id
                .map(|id| self.slugs.layer(&app, id))
                .into_iter()
                .collect(),
            identity: target.identity,
            env: process_env(&target.config, "run.1"),
            command,
            limits,
        })
        .await
    }

    /// Starts the one-off and returns its events; errors before the command runs come back here.
    ///
    /// The setup runs in a task of its own: if the client disconnects while we wait here, the
    /// request future is dropped, and a half-made container (cgroup, address, helper) must still
    /// either start and be supervised or be cleaned up, never abandoned.
    pub async fn spawn(&self, o: OneOff) -> Result<mpsc::Receiver<RunEvent>, RunError> {
        let this = self.clone();
        tokio::spawn(async move { this.start(o).await })
            .await
            .map_err(|e| RunError::Runtime(RuntimeError::Protocol(format!("run task: {e}"))))?
    }

    async fn start(&self, o: OneOff) -> Result<mpsc::Receiver<RunEvent>, RunError> {
        let id = self.runtime.new_id(&o.prefix);
        let binds = (self.apps.volume_binds(&o.app).await?)
            .into_iter()
            .map(|v| crate::launch::volume_bind(v.host, v.path))
            .collect();
        let lease = self.addresses.allocate(&id, Some(o.identity.group)).await?;
        let ip = lease.ip;
        let started = self
            .runtime
            .run(RunSpec {
                id: id.clone(),
                argv: launch_argv(&o.command),
                env: o.env,
                net: lease.networking(),
                limits: o.limits,
                stack: o.stack,
                layers: o.layers,
                binds,
                user: crate::launch::user(o.identity.uid),
                // Dies with paasd: nobody would take it back.
                attach: None,
            })
            .await;
        let mut instance = match started {
            Ok(i) => i,
            Err(e) => {
                self.addresses.release(&id).await;
                return Err(match e {
                    RuntimeError::Setup { stage, error } if stage == "exec" || stage == "chdir" => {
                        RunError::Start(error)
                    }
                    other => RunError::Runtime(other),
                });
            }
        };
        let (tx, rx) = mpsc::channel(256);
        let addresses = self.addresses.clone();
        let mut pids = PidsWatch::new("the command", o.limits.pids);
        tokio::spawn(async move {
            let _ = tx
                .send(RunEvent::Started {
                    id: instance.id.clone(),
                    ip: Some(ip.to_string()),
                })
                .await;
            let mut exited = false;
            let mut client_gone = false;
            let mut tick = tokio::time::interval(floods::CHECK_EVERY);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                // A silent command must notice its client leaving too, not only at the next line.
                let msg = tokio::select! {
                    msg = instance.container.next() => msg,
                    _ = tick.tick(), if !client_gone => {
                        let line = instance
                            .fork_failures()
                            .and_then(|n| pids.observe(n, std::time::Instant::now()));
                        if let Some(line) = line {
                            let _ = tx.send(platform_note(line)).await;
                        }
                        continue;
                    }
                    () = tx.closed(), if !client_gone => {
                        client_gone = true;
                        tracing::info!(id = %instance.id, "run client went away; killing the container");
                        let _ = instance.container.signal(libc::SIGKILL).await;
                        continue;
                    }
                };
                let Some(msg) = msg else { break };
                let ev = match msg {
                    FromHelper::Output { stream, line, .. } => RunEvent::Output {
                        stream: match stream {
                            Stream::Stdout => OutputStream::Stdout,
                            Stream::Stderr => OutputStream::Stderr,
                        },
                        line,
                    },
                    FromHelper::Exited { code, signal } => {
                        exited = true;
                        let oom = instance.oom_killed();
                        let told = instance.fork_failures().and_then(|n| pids.finish(n));
                        if let Some(line) = told {
                            let _ = tx.send(platform_note(line)).await;
                        }
                        RunEvent::Exited { code, signal, oom }
                    }
                    _ => continue,
                };
                // `paas run` is attached, like `heroku run`: once nobody reads its output the
                // container is killed (SIGKILL from the parent namespace reaches even PID 1).
                if tx.send(ev).await.is_err() && !client_gone {
                    client_gone = true;
                    tracing::info!(id = %instance.id, "run client went away; killing the container");
                    let _ = instance.container.signal(libc::SIGKILL).await;
                }
            }
            if !exited {
                let _ = tx
                    .send(RunEvent::Error {
                        message: "the container's monitor ended without an exit status".into(),
                    })
                    .await;
            }
            let id = instance.id.clone();
            instance.finish(!exited).await;
            addresses.release(&id).await;
        });
        Ok(rx)
    }
}

/// A line of ours among the command's output (its stderr, marked `paas:`): the one-off
/// event stream has no other channel, and whoever reads the output (the `paas run` terminal,
/// a deploy's release phase, the cron log) is who needs to know.
fn platform_note(line: String) -> RunEvent {
    RunEvent::Output {
        stream: OutputStream::Stderr,
        line: format!("paas: {line}"),
    }
}

/// A one-off's limits when nobody asked for others (cron runs).
pub fn default_limits() -> Limits {
    Limits {
        memory_bytes: Some(DEFAULT_MEMORY_MB * 1024 * 1024),
        cpu_percent: Some(DEFAULT_CPU_PERCENT),
        pids: Some(DEFAULT_PIDS),
        disk_bytes: None,
    }
}

/// The request's limits within sane bounds, defaults for what it leaves out.
fn limits(req: &paas_api::RunRequest) -> Result<Limits, RunError> {
    let check = |what: &str, v: u64, lo: u64, hi: u64| {
        if (lo..=hi).contains(&v) {
            Ok(v)
        } else {
            Err(RunError::InvalidLimits(format!(
                "{what} must be between {lo} and {hi}, got {v}"
            )))
        }
    };
    let memory = check(
        "memory (MiB)",
        req.memory_mb.unwrap_or(DEFAULT_MEMORY_MB),
        16,
        1 << 20,
    )?;
    let cpu = check(
        "cpu (% of one CPU)",
        u64::from(req.cpu_percent.unwrap_or(DEFAULT_CPU_PERCENT)),
        1,
        100 * 1024,
    )?;
    let pids = check("pids", req.pids.unwrap_or(DEFAULT_PIDS), 8, 1 << 22)?;
    Ok(Limits {
        memory_bytes: Some(memory * 1024 * 1024),
        cpu_percent: Some(cpu as u32),
        pids: Some(pids),
        disk_bytes: None,
    })
}

/// Quotes one argument for `bash -c` (single quotes; embedded ones as '\'').
fn shell_quote(s: &str) -> String {
    if !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./=:,+@%".contains(&b))
    {
        return s.to_string();
    }
    format!("'{}'", s.replace('\'', r"'\''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_keeps_arguments_whole() {
        assert_eq!(shell_quote("ls"), "ls");
        assert_eq!(shell_quote("a b"), "'a b'");
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
        assert_eq!(shell_quote("$HOME"), "'$HOME'");
        assert_eq!(shell_quote(""), "''");
    }
}
