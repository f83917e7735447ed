//! One add-on service's container, kept running: start it (or take back the one the last
//! paasd left running), wait until it answers, probe it every few seconds, restart it after a
//! crash or a failed probe with backoff, stop it cleanly (the kind's own shutdown signal) or
//! let it go for the next paasd. Owns that loop and the service's status; must not touch the
//! store or the network policy (`mod.rs` does).

use std::collections::VecDeque;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use paas_api::AddonState;
use paas_runtime::cgroups::Limits;
use paas_runtime::proto::Bind;
use paas_runtime::{FromHelper, Instance, Networking, RunSpec, Runtime, User};
use tokio::sync::watch;

use super::kind::{Kind, DATA_MOUNT};
use crate::supervisor::backoff;

/// Output lines kept for `paas addons info`.
const RECENT_LINES: usize = 50;
/// How long a start may take to answer (PostgreSQL replaying a long WAL can take a while).
const READY_WITHIN: Duration = Duration::from_secs(120);
const PROBE_EVERY: Duration = Duration::from_secs(5);
/// Failed probes in a row after which a running service is restarted.
const PROBE_FAILURES: u32 = 3;
/// How long a clean stop may take before SIGKILL.
const STOP_WITHIN: Duration = Duration::from_secs(30);

const RESTARTS: backoff::Policy = backoff::Policy {
    initial: Duration::from_secs(1),
    max: Duration::from_secs(60),
    // A database is never given up on: apps cannot work without it.
    limit: u32::MAX,
    reset_after: Duration::from_secs(120),
};

/// What the service's container runs with; fixed for the service's life.
#[derive(Clone)]
pub struct Spec {
    pub name: String,
    pub kind: Kind,
    pub version: String,
    pub uid: u32,
    pub password: String,
    pub ip: Ipv4Addr,
    pub data_dir: PathBuf,
    pub limits: Limits,
}

impl Spec {
    pub fn memory_mb(&self) -> u64 {
        self.limits.memory_bytes.unwrap_or(0) / (1024 * 1024)
    }
}

/// The tag of a service's container ([`RunSpec::attach`]): how the next paasd knows it.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct Tag {
    pub addon: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Order {
    Run,
    Stop,
    /// paasd restarts: the container keeps running for the next paasd.
    Detach,
}

#[derive(Debug, Clone)]
pub struct Status {
    pub state: AddonState,
    pub restarts: u32,
    pub last_error: Option<String>,
    pub recent: VecDeque<String>,
}

/// A running service loop.
pub struct Service {
    orders: watch::Sender<Order>,
    status: Arc<Mutex<Status>>,
    task: tokio::task::JoinHandle<()>,
}

impl Service {
    pub fn spawn(runtime: Arc<Runtime>, spec: Spec, adopted: Option<Instance>) -> Service {
        let (orders, rx) = watch::channel(Order::Run);
        let status = Arc::new(Mutex::new(Status {
            state: AddonState::Starting,
            restarts: 0,
            last_error: None,
            recent: VecDeque::new(),
        }));
        let task = tokio::spawn(run(runtime, spec, Arc::clone(&status), rx, adopted));
        Service {
            orders,
            status,
            task,
        }
    }

    pub fn status(&self) -> Status {
        self.status
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Stops (or lets go of) the container and waits for the loop to end.
    pub async fn end(self, order: Order) {
        let _ = self.orders.send(order);
        let _ = self.task.await;
    }
}

enum End {
    /// Stopped or let go: the loop ends.
    Done,
    Crashed(String),
}

async fn run(
    runtime: Arc<Runtime>,
    spec: Spec,
    status: Arc<Mutex<Status>>,
    mut orders: watch::Receiver<Order>,
    mut adopted: Option<Instance>,
) {
    let set = |f: &dyn Fn(&mut Status)| f(&mut status.lock().unwrap_or_else(|p| p.into_inner()));
    let mut crashes = 0u32;
    loop {
        if *orders.borrow() != Order::Run {
            set(&|s| s.state = AddonState::Stopped);
            return;
        }
        let started = Instant::now();
        let instance = match adopted.take() {
            Some(i) => Ok(i),
            None => start(&runtime, &spec).await,
        };
        let end = match instance {
            Ok(i) => {
                set(&|s| s.state = AddonState::Starting);
                supervise(i, &spec, &status, &mut orders).await
            }
            Err(e) => End::Crashed(format!("could not start: {e}")),
        };
        let End::Crashed(why) = end else {
            set(&|s| s.state = AddonState::Stopped);
            return;
        };
        crashes = if started.elapsed() >= RESTARTS.reset_after {
            1
        } else {
            crashes.saturating_add(1)
        };
        tracing::warn!(addon = %spec.name, crashes, reason = %why, "add-on service crashed; restarting it");
        set(&|s| {
            s.state = AddonState::Crashed;
            s.restarts += 1;
            s.last_error = Some(why.clone());
        });
        let backoff::Next::RestartIn(wait) = RESTARTS.next(crashes) else {
            return;
        };
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            _ = orders.changed() => {}
        }
    }
}

async fn start(runtime: &Runtime, spec: &Spec) -> Result<Instance, paas_runtime::RuntimeError> {
    let tag = serde_json::to_string(&Tag {
        addon: spec.name.clone(),
    })
    .unwrap_or_default();
    runtime
        .run(RunSpec {
            id: runtime.new_id(&format!("addon-{}", spec.name)),
            argv: spec.kind.entry(&spec.name, &spec.version, spec.memory_mb()),
            env: vec![
                ("PATH".into(), "/usr/local/bin:/usr/bin:/bin".into()),
                ("HOME".into(), "/tmp".into()),
                ("LANG".into(), "C.UTF-8".into()),
                ("PAAS_ADDON_PASSWORD".into(), spec.password.clone()),
            ],
            net: Networking::Bridge(spec.ip),
            limits: spec.limits,
            stack: "host".into(),
            layers: Vec::new(),
            binds: vec![Bind {
                source: spec.data_dir.clone(),
                dest: DATA_MOUNT.into(),
                writable: true,
            }],
            user: User {
                uid: spec.uid,
                gid: spec.uid,
            },
            attach: Some(tag),
        })
        .await
}

async fn supervise(
    mut inst: Instance,
    spec: &Spec,
    status: &Arc<Mutex<Status>>,
    orders: &mut watch::Receiver<Order>,
) -> End {
    let since = Instant::now();
    let mut up = false;
    let mut failures = 0u32;
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            msg = inst.container.next() => match msg {
                Some(FromHelper::Output { line, .. }) => {
                    tracing::info!(addon = %spec.name, "{line}");
                    let mut s = status.lock().unwrap_or_else(|p| p.into_inner());
                    if s.recent.len() == RECENT_LINES {
                        s.recent.pop_front();
                    }
                    s.recent.push_back(line);
                }
                Some(FromHelper::Exited { code, signal }) => {
                    let oom = inst.oom_killed();
                    inst.finish(false).await;
                    return End::Crashed(match (oom, code, signal) {
                        (true, _, _) => "out of memory (killed at its memory limit)".into(),
                        (_, Some(c), _) => format!("exited with status {c}"),
                        (_, _, Some(s)) => format!("killed by signal {s}"),
                        _ => "exited".into(),
                    });
                }
                Some(FromHelper::Failed { stage, error }) => {
                    inst.finish(true).await;
                    return End::Crashed(format!("setup failed at {stage}: {error}"));
                }
                Some(_) => {}
                None => {
                    inst.finish(true).await;
                    return End::Crashed("its monitor ended without an exit status".into());
                }
            },
            _ = tick.tick() => {
                let ok = super::probe(spec).await;
                match (up, ok) {
                    (false, true) => {
                        up = true;
                        failures = 0;
                        tick = tokio::time::interval(PROBE_EVERY);
                        tick.reset();
                        tracing::info!(addon = %spec.name, after_ms = since.elapsed().as_millis() as u64, "add-on service is up");
                        let mut s = status.lock().unwrap_or_else(|p| p.into_inner());
                        s.state = AddonState::Up;
                    }
                    (false, false) if since.elapsed() > READY_WITHIN => {
                        stop(inst, spec.kind, libc::SIGKILL).await;
                        return End::Crashed(format!("did not answer within {} s", READY_WITHIN.as_secs()));
                    }
                    (true, false) => {
                        failures += 1;
                        if failures >= PROBE_FAILURES {
                            stop(inst, spec.kind, spec.kind.stop_signal()).await;
                            return End::Crashed(format!("{failures} health checks in a row failed"));
                        }
                    }
                    (true, true) => failures = 0,
                    (false, false) => {}
                }
            },
            changed = orders.changed() => {
                let order = if changed.is_err() { Order::Stop } else { *orders.borrow() };
                match order {
                    Order::Run => {}
                    Order::Detach => {
                        inst.detach();
                        return End::Done;
                    }
                    Order::Stop => {
                        stop(inst, spec.kind, spec.kind.stop_signal()).await;
                        return End::Done;
                    }
                }
            }
        }
    }
}

/// Sends `signal`, waits for the exit (at most [`STOP_WITHIN`]), then kills what is left.
async fn stop(mut inst: Instance, kind: Kind, signal: i32) {
    let _ = inst.container.signal(signal).await;
    let exited = tokio::time::timeout(STOP_WITHIN, async {
        while let Some(msg) = inst.container.next().await {
            if matches!(msg, FromHelper::Exited { .. }) {
                return true;
            }
        }
        false
    })
    .await
    .unwrap_or(false);
    if !exited {
        tracing::warn!(
            kind = kind.as_str(),
            "an add-on service did not stop in time; killing it"
        );
    }
    inst.finish(!exited).await;
}
