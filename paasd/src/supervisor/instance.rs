//! One instance (`web.1`) for its whole life: start its container, pass its output to the
//! log stream, say when its pids limit refuses forks, run its readiness and liveness checks,
//! restart it with backoff when it exits, give up when it keeps crashing, and stop it
//! gracefully (drain, SIGTERM, grace, SIGKILL) when told to. Must not decide how many instances run or which are routed: the
//! supervisor does, from what this reports.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use paas_api::{HealthState, InstanceInfo, InstanceState, LogSource};
use tokio::sync::watch;

use crate::floods::{self, LineGate, PidsWatch};

use super::backoff::Next;
use super::health::{self, Check, Kind, ProbeError, APP_PORT};
use super::Ctx;
use paas_runtime::cgroups::Limits;
use paas_runtime::{FromHelper, Networking, RunSpec};

/// How far an instance got, for whoever waits for it (a rollout, a scale).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Progress {
    Starting,
    /// The container runs; its readiness check has not passed yet.
    Started,
    Ready,
    /// It could not start, exited or failed its readiness check before it was ready.
    Failed(String),
}

/// What the instance's task is told.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Order {
    Run,
    /// Drain, SIGTERM, grace, SIGKILL.
    Stop,
    /// paasd is restarting: let the container run on for the next paasd.
    Detach,
}

/// What a container of an instance carries for the next paasd ([`RunSpec::attach`]): who it
/// is, so that the next paasd can adopt it instead of starting another.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Tag {
    pub app: String,
    pub process_type: String,
    pub index: u32,
    pub release: u32,
    /// The key of its address (see `Handle::key`).
    pub key: String,
    pub ip: Ipv4Addr,
    /// Its app's group in the network policy.
    pub group: u32,
    /// When its container started, in milliseconds since the Unix epoch.
    pub started_ms: u64,
}

/// What to run, the same for every restart.
#[derive(Debug, Clone)]
pub struct Launch {
    pub stack: String,
    pub layers: Vec<PathBuf>,
    pub env: Vec<(String, String)>,
    pub command: String,
    pub limits: Limits,
    pub checks: Vec<Check>,
    pub user: paas_runtime::User,
}

#[derive(Debug)]
struct Status {
    state: InstanceState,
    health: HealthState,
    started_at: Option<SystemTime>,
    restarts: u32,
    last_error: Option<String>,
}

/// The supervisor's view of one instance; the task owns the container.
#[derive(Debug)]
pub struct Handle {
    pub app: String,
    pub process_type: String,
    pub index: u32,
    pub release: u32,
    /// Unique across restarts of paasd: the key of its address.
    pub key: String,
    pub ip: Ipv4Addr,
    /// The app's group in the network policy.
    pub group: u32,
    /// Out of the route table: being replaced, scaled away or stopped.
    leaving: AtomicBool,
    status: Mutex<Status>,
    progress: watch::Sender<Progress>,
    stop: watch::Sender<Order>,
}

impl Handle {
    pub fn new(
        app: &str,
        process_type: &str,
        index: u32,
        release: u32,
        key: String,
        ip: Ipv4Addr,
        group: u32,
    ) -> Handle {
        Handle {
            app: app.to_string(),
            process_type: process_type.to_string(),
            index,
            release,
            key,
            ip,
            group,
            leaving: AtomicBool::new(false),
            status: Mutex::new(Status {
                state: InstanceState::Starting,
                health: HealthState::Unknown,
                started_at: None,
                restarts: 0,
                last_error: None,
            }),
            progress: watch::channel(Progress::Starting).0,
            stop: watch::channel(Order::Run).0,
        }
    }

    /// What its containers carry for the next paasd.
    fn tag(&self) -> Tag {
        Tag {
            app: self.app.clone(),
            process_type: self.process_type.clone(),
            index: self.index,
            release: self.release,
            key: self.key.clone(),
            ip: self.ip,
            group: self.group,
            started_ms: SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64),
        }
    }

    /// `web.1`.
    pub fn name(&self) -> String {
        format!("{}.{}", self.process_type, self.index)
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from((self.ip, APP_PORT))
    }

    pub fn is_leaving(&self) -> bool {
        self.leaving.load(Ordering::SeqCst)
    }

    pub fn set_leaving(&self) {
        self.leaving.store(true, Ordering::SeqCst);
    }

    /// Ready and not leaving: the router may send it requests.
    pub fn routable(&self) -> bool {
        !self.is_leaving() && self.lock().state == InstanceState::Up
    }

    /// Asks the task to stop the instance (drain, SIGTERM, grace, SIGKILL).
    pub fn request_stop(&self) {
        self.set_leaving();
        self.stop.send_replace(Order::Stop);
    }

    /// Asks the task to let go of the instance, which keeps running (paasd is restarting).
    pub fn request_detach(&self) {
        self.stop.send_if_modified(|o| {
            let change = *o == Order::Run;
            if change {
                *o = Order::Detach;
            }
            change
        });
    }

    pub fn progress(&self) -> watch::Receiver<Progress> {
        self.progress.subscribe()
    }

    pub fn info(&self) -> InstanceInfo {
        let s = self.lock();
        let started = s
            .started_at
            .filter(|_| !matches!(s.state, InstanceState::Crashed | InstanceState::Restarting));
        InstanceInfo {
            name: self.name(),
            process_type: self.process_type.clone(),
            state: s.state,
            release: self.release,
            address: Some(self.addr().to_string()),
            started_at: started.map(|t| humantime::format_rfc3339_seconds(t).to_string()),
            uptime_secs: started
                .and_then(|t| SystemTime::now().duration_since(t).ok())
                .map(|d| d.as_secs()),
            restarts: s.restarts,
            health: s.health,
            last_error: s.last_error.clone(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Status> {
        self.status.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn set_state(&self, state: InstanceState) {
        self.lock().state = state;
    }
}

enum Outcome {
    Exited {
        code: Option<i32>,
        signal: Option<i32>,
    },
    Unhealthy(String),
    Stop,
    Detach,
}

/// Runs the instance until it is told to stop; then frees its address and leaves the
/// supervisor's list. `adopted`: its container, left running by an earlier paasd, is the
/// first one (no new start).
pub async fn run(
    ctx: Arc<Ctx>,
    h: Arc<Handle>,
    launch: Launch,
    adopted: Option<paas_runtime::Adopted>,
) {
    let mut adopted = adopted;
    let mut stop = h.stop.subscribe();
    let mut crashes = 0u32;
    let name = h.name();
    let mut floods = Watch {
        lines: LineGate::new(&name, ctx.line_rate, Instant::now()),
        pids: PidsWatch::new(&name, launch.limits.pids),
    };
    loop {
        if adopted.is_none() && (*stop.borrow() != Order::Run || ctx.shutting_down()) {
            break;
        }
        let tag = h.tag();
        {
            let mut s = h.lock();
            s.state = InstanceState::Starting;
            s.health = HealthState::Unknown;
            s.started_at = Some(SystemTime::now());
        }
        let began = Instant::now();
        let started = match adopted.take() {
            Some(a) => {
                let since = serde_json::from_str::<Tag>(&a.tag).map_or(0, |t| t.started_ms);
                h.lock().started_at = Some(SystemTime::UNIX_EPOCH + Duration::from_millis(since));
                let pid = a.instance.container.pid;
                ctx.platform(
                    &h,
                    if a.running {
                        format!("{name} (pid {pid}) kept running while paasd restarted")
                    } else {
                        format!("{name} ended while paasd was restarting")
                    },
                );
                if a.dropped > 0 {
                    ctx.platform(
                        &h,
                        format!(
                            "{name}: {} output lines were dropped while paasd was away",
                            a.dropped
                        ),
                    );
                }
                Ok(a.instance)
            }
            None => {
                // Volumes as they are now: one added since the rollout began is in too.
                // Never started without them: its writes would land on the tmpfs and be lost.
                let volumes = ctx.apps.volume_binds(&h.app).await;
                let binds = volumes
                    .as_ref()
                    .map(|v| {
                        v.iter()
                            .map(|v| crate::launch::volume_bind(v.host.clone(), v.path.clone()))
                            .collect()
                    })
                    .unwrap_or_default();
                let spec = RunSpec {
                    id: ctx.runtime.new_id(&format!("{}-{name}", h.app)),
                    argv: crate::launch::launch_argv(&launch.command),
                    env: launch.env.clone(),
                    net: Networking::Bridge(h.ip),
                    limits: launch.limits,
                    stack: launch.stack.clone(),
                    layers: launch.layers.clone(),
                    binds,
                    user: launch.user,
                    attach: serde_json::to_string(&tag).ok(),
                };
                let started = match volumes {
                    Ok(_) => ctx.runtime.run(spec).await,
                    Err(e) => Err(paas_runtime::RuntimeError::Setup {
                        stage: "volumes".into(),
                        error: format!("could not read the app's volumes: {e}"),
                    }),
                };
                if started.is_ok() {
                    ctx.platform(&h, format!("{name} started: {}", launch.command));
                }
                started
            }
        };
        let reason = match started {
            Err(e) => format!("{name} could not start: {e}"),
            Ok(mut inst) => {
                h.progress.send_replace(Progress::Started);
                // A fresh cgroup, a fresh counter.
                floods.pids = PidsWatch::new(&name, launch.limits.pids);
                let outcome =
                    supervise(&ctx, &h, &mut inst, &launch.checks, &mut stop, &mut floods).await;
                let reason = match outcome {
                    Outcome::Detach => {
                        inst.detach();
                        ctx.instance_detached(&h);
                        return;
                    }
                    Outcome::Stop => {
                        stop_gracefully(&ctx, &h, &mut inst, &mut floods).await;
                        floods.ended(&ctx, &h, &inst);
                        inst.finish(false).await;
                        ctx.platform(&h, format!("{name} stopped"));
                        break;
                    }
                    Outcome::Exited { code, signal } => {
                        let oom = inst.oom_killed();
                        floods.ended(&ctx, &h, &inst);
                        inst.finish(false).await;
                        if oom {
                            format!(
                                "{name} was killed: out of memory (its limit is {} MB)",
                                launch.limits.memory_bytes.unwrap_or(0) >> 20
                            )
                        } else {
                            match (code, signal) {
                                (Some(c), _) => format!("{name} exited with code {c}"),
                                (_, Some(s)) => format!("{name} was killed by signal {s}"),
                                _ => format!("{name} ended"),
                            }
                        }
                    }
                    Outcome::Unhealthy(e) => {
                        // Out of the route table before it dies, so no request is sent to
                        // an instance that is about to be killed.
                        if h.lock().state == InstanceState::Up {
                            h.set_state(InstanceState::Stopping);
                            ctx.publish_now().await;
                        }
                        let _ = inst.container.signal(libc::SIGKILL).await;
                        while let Some(msg) = inst.container.next().await {
                            if matches!(msg, FromHelper::Exited { .. }) {
                                break;
                            }
                        }
                        floods.ended(&ctx, &h, &inst);
                        inst.finish(false).await;
                        format!("{name} failed its health check ({e}); replaced")
                    }
                };
                reason
            }
        };
        let was_up = h.lock().state == InstanceState::Up;
        if *h.progress.borrow() != Progress::Ready {
            h.progress.send_replace(Progress::Failed(reason.clone()));
        }
        crashes = ctx.policy.count(crashes, began.elapsed());
        {
            let mut s = h.lock();
            s.last_error = Some(reason.clone());
            s.health = HealthState::Unknown;
        }
        if was_up {
            ctx.routes_changed();
        }
        if *stop.borrow() != Order::Run || ctx.shutting_down() {
            ctx.platform(&h, reason);
            break;
        }
        match ctx.policy.next(crashes) {
            Next::GiveUp => {
                h.set_state(InstanceState::Crashed);
                ctx.platform(
                    &h,
                    format!(
                        "{reason}; it crashed {} times in a row, so it is not restarted \
                         (`paas restart {}` or a deploy tries again)",
                        crashes, h.app
                    ),
                );
                let _ = stop.wait_for(|o| *o != Order::Run).await;
                break;
            }
            Next::RestartIn(delay) => {
                {
                    let mut s = h.lock();
                    s.state = InstanceState::Restarting;
                    s.restarts += 1;
                }
                ctx.platform(
                    &h,
                    format!("{reason}; restarting in {:.1} s", delay.as_secs_f32()),
                );
                tokio::select! {
                    () = tokio::time::sleep(delay) => {}
                    _ = stop.wait_for(|o| *o != Order::Run) => break,
                }
            }
        }
    }
    ctx.instance_gone(&h).await;
}

/// What the instance floods (see `floods`): its output's line budget, kept across restarts
/// so a crash loop gets no fresh burst, and its current container's refused forks.
struct Watch {
    lines: LineGate,
    pids: PidsWatch,
}

impl Watch {
    /// An output line: to the log if the budget allows, else counted (and reported at most
    /// every [`floods::DROP_REPORT_EVERY`]).
    fn output(&mut self, ctx: &Ctx, h: &Handle, ts_ms: u64, line: String) {
        let now = Instant::now();
        if self.lines.admit(now) {
            ctx.app_line(h, ts_ms, line);
        } else if let Some(report) = self.lines.report(now) {
            ctx.platform(h, report);
        }
    }

    /// Every [`floods::CHECK_EVERY`]: the pids counter (cgroupfs answers from memory, so
    /// this does not block), and a drop report that is due even if the app went quiet.
    fn tick(&mut self, ctx: &Ctx, h: &Handle, inst: &paas_runtime::Instance) {
        let now = Instant::now();
        if let Some(line) = inst
            .fork_failures()
            .and_then(|count| self.pids.observe(count, now))
        {
            ctx.platform(h, line);
        }
        if let Some(report) = self.lines.report(now) {
            ctx.platform(h, report);
        }
    }

    /// The container has exited (its cgroup not yet removed): what no line has told yet,
    /// before the line saying how it ended.
    fn ended(&mut self, ctx: &Ctx, h: &Handle, inst: &paas_runtime::Instance) {
        if let Some(line) = inst
            .fork_failures()
            .and_then(|count| self.pids.finish(count))
        {
            ctx.platform(h, line);
        }
        if let Some(report) = self.lines.flush(Instant::now()) {
            ctx.platform(h, report);
        }
    }
}

/// Passes output on and runs the checks until the container exits, fails a check or is
/// told to stop. Looks at its floods every [`floods::CHECK_EVERY`].
async fn supervise(
    ctx: &Arc<Ctx>,
    h: &Arc<Handle>,
    inst: &mut paas_runtime::Instance,
    checks: &[Check],
    stop: &mut watch::Receiver<Order>,
    floods: &mut Watch,
) -> Outcome {
    let host = format!("{}.{}", h.app, ctx.base_domain);
    let readiness: Vec<Check> = checks
        .iter()
        .filter(|c| c.kind == Kind::Readiness)
        .cloned()
        .collect();
    let liveness: Option<Check> = checks.iter().find(|c| c.kind == Kind::Liveness).cloned();
    let ready = {
        let (ctx, h, host) = (Arc::clone(ctx), Arc::clone(h), host.clone());
        async move {
            for c in &readiness {
                tokio::time::sleep(c.initial_delay).await;
                let mut last = String::new();
                let mut passed = false;
                let (mut failed, mut inconclusive) = (0, 0);
                let mut shortage = Shortage::default();
                // Attempts paasd could not make do not count against the instance; they
                // get a budget of their own so that a rollout still ends if paasd stays
                // short (the rollout then fails naming paasd, not the app).
                while failed < c.attempts && inconclusive < c.attempts {
                    if failed + inconclusive > 0 {
                        tokio::time::sleep(c.wait).await;
                    }
                    match health::probe(c, h.ip, &host).await {
                        Ok(()) => {
                            passed = true;
                            break;
                        }
                        Err(ProbeError::Failed(e)) => {
                            failed += 1;
                            shortage.over();
                            last = e;
                        }
                        Err(ProbeError::Inconclusive(e)) => {
                            inconclusive += 1;
                            shortage.note(&ctx, &h, "readiness", &e);
                            last = e;
                        }
                    }
                }
                if !passed {
                    return Err(format!("{last} (after {} attempts)", failed + inconclusive));
                }
            }
            Ok(())
        }
    };
    tokio::pin!(ready);
    let mut is_ready = false;
    let live = {
        let (ctx, h, host) = (Arc::clone(ctx), Arc::clone(h), host);
        async move {
            let Some(c) = liveness else {
                return std::future::pending::<String>().await;
            };
            tokio::time::sleep(c.initial_delay).await;
            let mut fails = 0;
            let mut shortage = Shortage::default();
            loop {
                tokio::time::sleep(c.wait).await;
                match health::probe(&c, h.ip, &host).await {
                    Ok(()) => {
                        fails = 0;
                        shortage.over();
                        h.lock().health = HealthState::Passing;
                    }
                    // Not a strike, and the health state stays what it was: paasd learnt
                    // nothing about the instance.
                    Err(ProbeError::Inconclusive(e)) => shortage.note(&ctx, &h, "liveness", &e),
                    Err(ProbeError::Failed(e)) => {
                        shortage.over();
                        fails += 1;
                        {
                            let mut s = h.lock();
                            s.health = HealthState::Failing;
                            s.last_error = Some(e.clone());
                        }
                        if fails >= c.attempts {
                            return format!("{e}, {fails} times in a row");
                        }
                    }
                }
            }
        }
    };
    tokio::pin!(live);
    let mut disk = DiskWatch::default();
    let mut disk_tick = tokio::time::interval(DISK_CHECK_EVERY);
    let mut tick = tokio::time::interval(floods::CHECK_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => floods.tick(ctx, h, inst),
            _ = disk_tick.tick() => {
                if let Some(line) = disk.check(&h.name(), inst.disk_usage()) {
                    ctx.platform(h, line);
                }
            }
            msg = inst.container.next() => match msg {
                Some(FromHelper::Output { line, ts_ms, .. }) => floods.output(ctx, h, ts_ms, line),
                Some(FromHelper::Exited { code, signal }) => return Outcome::Exited { code, signal },
                Some(_) => {}
                None => return Outcome::Exited { code: None, signal: None },
            },
            r = &mut ready, if !is_ready => match r {
                Ok(()) => {
                    is_ready = true;
                    {
                        let mut s = h.lock();
                        s.state = InstanceState::Up;
                        s.health = HealthState::Passing;
                    }
                    h.progress.send_replace(Progress::Ready);
                    ctx.routes_changed();
                }
                Err(e) => {
                    {
                        let mut s = h.lock();
                        s.health = HealthState::Failing;
                        s.last_error = Some(e.clone());
                    }
                    h.progress.send_replace(Progress::Failed(format!(
                        "{} did not pass its readiness check: {e}",
                        h.name()
                    )));
                    return Outcome::Unhealthy(e);
                }
            },
            e = &mut live, if is_ready => return Outcome::Unhealthy(e),
            o = stop.wait_for(|o| *o != Order::Run) => {
                return match o.map(|o| *o) {
                    Ok(Order::Detach) => Outcome::Detach,
                    _ => Outcome::Stop,
                };
            }
        }
    }
}

/// How often a running instance's writable layer is looked at (a statfs: microseconds).
const DISK_CHECK_EVERY: Duration = Duration::from_secs(2);

/// Reports an instance filling its disk once per episode: when it is full, and again only
/// after it went below 90 % in between.
#[derive(Debug, Default)]
struct DiskWatch {
    full: bool,
}

impl DiskWatch {
    /// `usage`: bytes used and size of the writable layer.
    fn check(&mut self, name: &str, usage: Option<(u64, u64)>) -> Option<String> {
        let (used, size) = usage?;
        if size == 0 {
            return None;
        }
        // tmpfs keeps no reserve: full means not one more page fits.
        let full = size - used.min(size) < 64 * 1024;
        if full && !self.full {
            self.full = true;
            return Some(format!(
                "{name} filled its disk ({} MB): writes fail with \"No space left on device\" \
                 (raise it with `paas resources APP --disk MB` or [instances] disk_mb)",
                size >> 20
            ));
        }
        if self.full && used * 10 < size * 9 {
            self.full = false;
        }
        None
    }
}

/// A run of health checks that paasd could not make: logged once when it starts (paasd's
/// log and the app's stream, as a platform problem) and once when it ends, not per attempt.
#[derive(Default)]
struct Shortage {
    since: Option<Instant>,
    skipped: u32,
}

impl Shortage {
    fn note(&mut self, ctx: &Ctx, h: &Handle, kind: &str, e: &str) {
        self.skipped += 1;
        if self.since.is_none() {
            self.since = Some(Instant::now());
            tracing::warn!(app = %h.app, instance = %h.name(), "{kind} check inconclusive: {e}");
            ctx.platform(
                h,
                format!(
                    "{} {kind} check could not be made by paasd ({e}); not counted against \
                     the instance (a platform problem, see paasd's log)",
                    h.name()
                ),
            );
        }
    }

    fn over(&mut self) {
        if let Some(since) = self.since.take() {
            tracing::info!(
                "health checks possible again after {:.1} s ({} skipped)",
                since.elapsed().as_secs_f32(),
                self.skipped
            );
            self.skipped = 0;
        }
    }
}

/// Drain (the router no longer sends it requests; wait for those in flight), SIGTERM, the
/// grace period, SIGKILL. Returns as soon as the instance has exited, so a rollout is as fast
/// as the app's shutdown. Output keeps flowing to the log meanwhile, and how the instance
/// ended (signal or code, seconds after SIGTERM) goes to the platform log.
async fn stop_gracefully(
    ctx: &Arc<Ctx>,
    h: &Arc<Handle>,
    inst: &mut paas_runtime::Instance,
    floods: &mut Watch,
) {
    h.set_state(InstanceState::Draining);
    let addr = h.addr();
    let drain_until = Instant::now() + ctx.cfg_drain;
    while (ctx.hooks.inflight)(addr).await > 0 && Instant::now() < drain_until {
        tokio::select! {
            msg = inst.container.next() => match msg {
                Some(FromHelper::Output { line, ts_ms, .. }) => floods.output(ctx, h, ts_ms, line),
                Some(FromHelper::Exited { code, signal }) => {
                    ctx.platform(h, format!("{} exited while draining: {}", h.name(), ended(code, signal)));
                    return;
                }
                None => return,
                Some(_) => {}
            },
            () = tokio::time::sleep(Duration::from_millis(20)) => {}
        }
    }
    h.set_state(InstanceState::Stopping);
    let sent = Instant::now();
    let _ = inst.container.signal(libc::SIGTERM).await;
    let grace = tokio::time::sleep(ctx.cfg_grace);
    tokio::pin!(grace);
    let mut killed = false;
    loop {
        tokio::select! {
            msg = inst.container.next() => match msg {
                Some(FromHelper::Output { line, ts_ms, .. }) => floods.output(ctx, h, ts_ms, line),
                Some(FromHelper::Exited { code, signal }) => {
                    ctx.platform(h, format!(
                        "{} stopped {:.1} s after SIGTERM: {}",
                        h.name(),
                        sent.elapsed().as_secs_f64(),
                        ended(code, signal)
                    ));
                    return;
                }
                None => return,
                Some(_) => {}
            },
            () = &mut grace, if !killed => {
                killed = true;
                ctx.platform(h, format!(
                    "{} did not exit within {} s of SIGTERM; sending SIGKILL",
                    h.name(),
                    ctx.cfg_grace.as_secs()
                ));
                let _ = inst.container.signal(libc::SIGKILL).await;
            }
        }
    }
}

/// How a process ended, for people: "exited on SIGTERM", "exited with code 0", "killed by
/// SIGKILL".
pub fn ended(code: Option<i32>, signal: Option<i32>) -> String {
    let name = |s: i32| {
        nix::sys::signal::Signal::try_from(s)
            .map(|s| s.as_str().to_string())
            .unwrap_or_else(|_| format!("signal {s}"))
    };
    match (code, signal) {
        (_, Some(s)) if s == libc::SIGKILL => "killed by SIGKILL".to_string(),
        (_, Some(s)) => format!("exited on {}", name(s)),
        (Some(c), None) => format!("exited with code {c}"),
        (None, None) => "ended without an exit status".to_string(),
    }
}

/// An app's output line as a log line.
pub fn log_line(h: &Handle, ts_ms: u64, line: String) -> paas_api::LogLine {
    let ts = if ts_ms == 0 {
        SystemTime::now()
    } else {
        SystemTime::UNIX_EPOCH + Duration::from_millis(ts_ms)
    };
    paas_api::LogLine {
        ts: crate::logs::timestamp(ts),
        source: LogSource::App,
        process: h.name(),
        release: Some(h.release),
        line,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_disk_is_reported_once_per_episode() {
        let mb = 1u64 << 20;
        let mut w = DiskWatch::default();
        assert_eq!(w.check("web.1", None), None);
        assert_eq!(w.check("web.1", Some((10 * mb, 32 * mb))), None);
        let line = w
            .check("web.1", Some((32 * mb, 32 * mb)))
            .expect("reported");
        assert!(line.starts_with("web.1 filled its disk (32 MB)"), "{line}");
        assert_eq!(w.check("web.1", Some((32 * mb, 32 * mb))), None, "once");
        assert_eq!(
            w.check("web.1", Some((30 * mb, 32 * mb))),
            None,
            "still nearly full"
        );
        assert_eq!(w.check("web.1", Some((mb, 32 * mb))), None, "freed");
        assert!(
            w.check("web.1", Some((32 * mb, 32 * mb))).is_some(),
            "full again"
        );
    }

    #[test]
    fn endings_read_like_a_person_would_say_them() {
        assert_eq!(ended(None, Some(libc::SIGTERM)), "exited on SIGTERM");
        assert_eq!(ended(None, Some(libc::SIGKILL)), "killed by SIGKILL");
        assert_eq!(ended(Some(0), None), "exited with code 0");
        assert_eq!(ended(Some(143), None), "exited with code 143");
        assert_eq!(ended(None, None), "ended without an exit status");
    }
}
