//! The supervisor: desired state (an app's current release and formation) made real as
//! running instances, and kept so. Starts and stops instances, rolls releases out without
//! dropping a request (start new -> ready -> switch routes -> drain old -> stop), scales,
//! restarts, and publishes the route table the router reads. Must not speak HTTP nor SQL:
//! it asks the app service for releases and reports through the hooks it is given.

mod adopt;
pub(crate) mod backoff;
pub mod health;
mod instance;
mod rollout;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use paas_api as api;
use paas_api::{LogLine, LogSource};

use crate::addresses::{AddressError, Addresses};
use crate::apps::{AppError, Apps};
use crate::config::InstanceConfig;
use crate::floods::LineRate;
use crate::locks::AppLocks;
use crate::routing::RouteSignal;
use crate::slugs::Slugs;
use paas_router::{RouteTable, Upstream};
use paas_runtime::Runtime;

pub use instance::Handle;

#[derive(Debug, thiserror::Error)]
pub enum SupervisorError {
    #[error(transparent)]
    App(#[from] AppError),
    #[error(transparent)]
    Address(#[from] AddressError),
    #[error("app '{0}' has nothing deployed yet: `paas deploy {0}` first")]
    NotDeployed(String),
    /// The new instances never got ready; the previous ones keep serving.
    #[error("{0}")]
    RolloutFailed(String),
    #[error("{0}")]
    InvalidCheck(String),
    #[error("paasd is stopping")]
    ShuttingDown,
}

/// Appends a line to an app's log stream.
pub type LogHook = Arc<dyn Fn(&str, LogLine) + Send + Sync>;

/// Asks the router how many requests are in flight to an upstream.
pub type Inflight = Arc<
    dyn Fn(SocketAddr) -> std::pin::Pin<Box<dyn std::future::Future<Output = usize> + Send>>
        + Send
        + Sync,
>;

/// How the supervisor reaches the router and the log stream (wired in `paasd::run`).
#[derive(Clone)]
pub struct Hooks {
    /// Replaces the router's whole table.
    pub publish: Arc<dyn Fn(RouteTable) + Send + Sync>,
    /// Requests in flight to an upstream (draining waits for 0).
    pub inflight: Inflight,
    /// Appends a line to an app's log stream; never blocks.
    pub log: LogHook,
}

/// Shared by the supervisor and its instance tasks.
pub(crate) struct Ctx {
    runtime: Arc<Runtime>,
    addresses: Addresses,
    locks: AppLocks,
    apps: Apps,
    slugs: Slugs,
    hooks: Hooks,
    base_domain: String,
    cfg_drain: Duration,
    cfg_grace: Duration,
    /// How many output lines one instance may log (`[logs] lines_per_sec`).
    line_rate: LineRate,
    policy: backoff::Policy,
    /// Instances by app.
    registry: Mutex<BTreeMap<String, Arc<AppState>>>,
    stopping: AtomicBool,
    /// Rebuild requests for the route table, shared with the app service.
    routes: RouteSignal,
}

#[derive(Default)]
struct AppState {
    instances: Mutex<Vec<Arc<Handle>>>,
}

impl AppState {
    fn list(&self) -> Vec<Arc<Handle>> {
        self.instances
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

impl Ctx {
    fn shutting_down(&self) -> bool {
        self.stopping.load(Ordering::SeqCst)
    }

    fn app_state(&self, app: &str) -> Arc<AppState> {
        let mut r = self.registry.lock().unwrap_or_else(|p| p.into_inner());
        Arc::clone(r.entry(app.to_string()).or_default())
    }

    fn existing(&self, app: &str) -> Option<Arc<AppState>> {
        let r = self.registry.lock().unwrap_or_else(|p| p.into_inner());
        r.get(app).cloned()
    }

    fn platform(&self, h: &Handle, line: String) {
        self.event(&h.app, Some(h.release), line);
    }

    /// A platform event in the app's log stream.
    fn event(&self, app: &str, release: Option<u32>, line: String) {
        tracing::info!(%app, "{line}");
        (self.hooks.log)(
            app,
            LogLine {
                ts: crate::logs::now(),
                source: LogSource::Platform,
                process: crate::logs::PLATFORM_PROCESS.into(),
                release,
                line,
            },
        );
    }

    fn app_line(&self, h: &Handle, ts_ms: u64, line: String) {
        (self.hooks.log)(&h.app, instance::log_line(h, ts_ms, line));
    }

    /// Asks for the route table to be rebuilt; returns the generation that will hold it.
    fn routes_changed(&self) -> u64 {
        self.routes.request()
    }

    /// Rebuilds the route table and waits until the router has it.
    async fn publish_now(&self) {
        self.routes.changed().await;
    }

    async fn instance_gone(&self, h: &Arc<Handle>) {
        self.instance_detached(h);
        self.addresses.release(&h.key).await;
        self.routes_changed();
    }

    /// Out of its app's list. Alone (its container runs on without this paasd), the
    /// address is kept for the next paasd.
    fn instance_detached(&self, h: &Arc<Handle>) {
        if let Some(state) = self.existing(&h.app) {
            state
                .instances
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .retain(|x| !Arc::ptr_eq(x, h));
        }
    }

    async fn build_routes(&self) -> Result<RouteTable, AppError> {
        let infos = self.apps.route_info().await?;
        let mut table = RouteTable::new(&self.base_domain);
        for i in infos {
            {
                let upstreams = self
                    .existing(&i.app)
                    .map(|s| s.list())
                    .unwrap_or_default()
                    .into_iter()
                    .filter(|h| h.process_type == "web" && h.routable())
                    .map(|h| Upstream {
                        addr: h.addr(),
                        instance: h.name(),
                        release: h.release,
                    })
                    .collect();
                table.add_app(&i.app, &i.domains, upstreams);
                table.set_https(
                    &i.app,
                    paas_router::Https {
                        redirect: i.https.redirect,
                        hsts: i.https.hsts,
                    },
                );
            }
        }
        Ok(table)
    }
}

/// What the supervisor works with.
pub struct Services {
    pub runtime: Arc<Runtime>,
    /// The route table's rebuild signal; this supervisor runs its only publisher.
    pub routes: RouteSignal,
    pub addresses: Addresses,
    /// The per-app lock it shares with deploys.
    pub locks: AppLocks,
    pub apps: Apps,
    pub slugs: Slugs,
    pub hooks: Hooks,
    /// Each instance's output budget (`[logs] lines_per_sec`).
    pub line_rate: LineRate,
}

/// The supervisor service (cheap to clone).
#[derive(Clone)]
pub struct Supervisor {
    ctx: Arc<Ctx>,
}

impl Supervisor {
    /// Starts the route publisher; nothing runs until [`Supervisor::start_all`].
    pub fn new(services: Services, base_domain: String, cfg: InstanceConfig) -> Supervisor {
        let Services {
            runtime,
            routes,
            addresses,
            locks,
            apps,
            slugs,
            hooks,
            line_rate,
        } = services;
        let ctx = Arc::new(Ctx {
            runtime,
            addresses,
            locks,
            apps,
            slugs,
            hooks,
            base_domain,
            cfg_drain: Duration::from_secs(cfg.drain_secs),
            cfg_grace: Duration::from_secs(cfg.grace_secs),
            line_rate,
            policy: backoff::Policy {
                initial: Duration::from_millis(cfg.backoff_initial_ms),
                max: Duration::from_secs(cfg.backoff_max_secs),
                limit: cfg.crash_limit,
                reset_after: Duration::from_secs(cfg.crash_reset_secs),
            },
            registry: Mutex::new(BTreeMap::new()),
            stopping: AtomicBool::new(false),
            routes,
        });
        let weak = Arc::downgrade(&ctx);
        let signal = ctx.routes.clone();
        tokio::spawn(async move {
            loop {
                let g = signal.next_request().await;
                let Some(ctx) = weak.upgrade() else { return };
                match ctx.build_routes().await {
                    Ok(table) => (ctx.hooks.publish)(table),
                    Err(e) => tracing::error!(error = %e, "could not build the route table"),
                }
                signal.published(g);
            }
        });
        Supervisor { ctx }
    }

    /// At paasd start, before the router accepts: the containers the last paasd left running
    /// (`Runtime::recover`) are instances again, routed once ready; returns how many were
    /// kept. Every other address on record is freed.
    pub async fn adopt(&self, adopted: Vec<paas_runtime::Adopted>) -> usize {
        adopt::adopt(&self.ctx, adopted).await
    }

    /// At paasd start, after [`Supervisor::adopt`]: every app's current release at its
    /// formation (only what is missing starts).
    pub async fn start_all(&self) {
        self.ctx.routes_changed();
        let names = match self.ctx.apps.names().await {
            Ok(n) => n,
            Err(e) => {
                tracing::error!(error = %e, "could not list apps to start");
                return;
            }
        };
        for app in names {
            if let Err(e) = self.apply_formation(&app).await {
                tracing::warn!(%app, error = %e, "could not start the app's instances");
            }
        }
    }

    /// `paas ps APP`.
    pub async fn ps(&self, app: String) -> Result<api::InstanceList, SupervisorError> {
        self.ctx.apps.info(app.clone()).await?;
        let mut instances: Vec<api::InstanceInfo> = self
            .ctx
            .existing(&app)
            .map(|s| s.list())
            .unwrap_or_default()
            .iter()
            .map(|h| h.info())
            .collect();
        instances.sort_by(|a, b| {
            (&a.process_type, index_of(&a.name), a.release).cmp(&(
                &b.process_type,
                index_of(&b.name),
                b.release,
            ))
        });
        Ok(api::InstanceList { instances })
    }

    /// `paas scale`: stores the formation, then starts or drains and stops the difference.
    pub async fn scale(
        &self,
        app: String,
        req: api::ScaleRequest,
    ) -> Result<api::Formation, SupervisorError> {
        let formation = self.ctx.apps.scale(app.clone(), req).await?;
        self.apply_formation(&app).await?;
        Ok(formation)
    }

    /// Rolls release `version` out; see [`rollout`]. Settles its status and records the
    /// phase timings. `progress` gets lines for a person watching the deploy.
    pub async fn rollout(
        &self,
        app: &str,
        version: u32,
        progress: Option<tokio::sync::mpsc::UnboundedSender<String>>,
    ) -> Result<Vec<api::PhaseTiming>, SupervisorError> {
        rollout::rollout(&self.ctx, app, version, progress).await
    }

    /// `paas restart`: the current release rolled out again, instance by instance ready
    /// before the old ones go.
    pub async fn restart(&self, app: String) -> Result<api::Release, SupervisorError> {
        let current = self
            .ctx
            .apps
            .runnable(app.clone(), None)
            .await?
            .ok_or_else(|| SupervisorError::NotDeployed(app.clone()))?;
        self.ctx
            .event(&app, Some(current.version), "restart requested".into());
        rollout::rollout(&self.ctx, &app, current.version, None).await?;
        Ok(self.ctx.apps.release(app, current.version).await?)
    }

    /// `paas rollback APP [--to vN]`: a new release with vN's slug and config, rolled out.
    pub async fn rollback(
        &self,
        app: String,
        to: Option<u32>,
    ) -> Result<api::Release, SupervisorError> {
        let r = self.ctx.apps.rollback(app.clone(), to).await?;
        self.ctx.event(
            &app,
            Some(r.version),
            format!("{}: rolling out", r.description),
        );
        rollout::rollout(&self.ctx, &app, r.version, None).await?;
        Ok(self.ctx.apps.release(app, r.version).await?)
    }

    /// A config change made `version`: roll it out when something runs.
    pub async fn config_changed(&self, app: String, version: u32) -> Result<(), SupervisorError> {
        if self
            .ctx
            .apps
            .runnable(app.clone(), Some(version))
            .await?
            .is_none()
        {
            return Ok(());
        }
        self.ctx
            .event(&app, Some(version), "config changed: rolling out".into());
        rollout::rollout(&self.ctx, &app, version, None).await?;
        Ok(())
    }

    /// The app is being destroyed: its instances are drained and stopped.
    pub async fn stop_app(&self, app: &str) {
        let Some(state) = self.ctx.existing(app) else {
            self.ctx.publish_now().await;
            return;
        };
        let _turn = self.ctx.locks.turn(app).await;
        rollout::stop_all(&self.ctx, state.list()).await;
        self.ctx
            .registry
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(app);
        self.ctx.publish_now().await;
    }

    /// `GET /apps/{app}/checks`.
    pub async fn checks(&self, app: String) -> Result<api::CheckList, SupervisorError> {
        let current = self.ctx.apps.runnable(app.clone(), None).await?;
        let set = self.ctx.apps.checks(app.clone()).await?;
        let app_json = current
            .as_ref()
            .and_then(|r| crate::app_files::app_json(&self.app_dir(&app, r.slug_id)));
        let mut types: Vec<String> = current
            .map(|r| r.formation.keys().cloned().collect())
            .unwrap_or_default();
        types.extend(set.keys().cloned());
        if types.is_empty() {
            types.push("web".into());
        }
        types.sort();
        types.dedup();
        let checks = types
            .into_iter()
            .map(|t| {
                let (origin, list) =
                    health::configured(&t, set.get(&t).map(String::as_str), app_json.as_ref());
                (
                    t,
                    api::CheckInForce {
                        origin: origin.as_str().into(),
                        checks: list,
                    },
                )
            })
            .collect();
        Ok(api::CheckList { checks })
    }

    /// `paas checks set APP TYPE ...` (None: back to app.json or the default). Applies from
    /// the next rollout.
    pub async fn set_check(
        &self,
        app: String,
        process_type: String,
        check: Option<api::HealthCheck>,
    ) -> Result<api::CheckList, SupervisorError> {
        let spec = match check {
            Some(c) => {
                health::Check::from_api(&c).map_err(SupervisorError::InvalidCheck)?;
                Some(
                    serde_json::to_string(&vec![c])
                        .map_err(|e| SupervisorError::InvalidCheck(e.to_string()))?,
                )
            }
            None => None,
        };
        self.ctx
            .apps
            .set_check(app.clone(), process_type, spec)
            .await?;
        self.checks(app).await
    }

    /// paasd is stopping: instances get SIGTERM (and SIGKILL after a short grace); none is
    /// restarted.
    pub async fn shutdown(&self) {
        self.ctx.stopping.store(true, Ordering::SeqCst);
        let all: Vec<Arc<Handle>> = {
            let r = self.ctx.registry.lock().unwrap_or_else(|p| p.into_inner());
            r.values().flat_map(|s| s.list()).collect()
        };
        let stop = rollout::stop_all(&self.ctx, all);
        if tokio::time::timeout(Duration::from_secs(10), stop)
            .await
            .is_err()
        {
            tracing::warn!("instances still stopping after 10 s; the runtime kills them");
        }
    }

    /// paasd is restarting or upgrading: every instance is let go and keeps running for the
    /// next paasd, which adopts it; none is restarted meanwhile. Returns once every instance
    /// task has let go (at most 5 s).
    pub async fn detach(&self) {
        self.ctx.stopping.store(true, Ordering::SeqCst);
        let all: Vec<Arc<Handle>> = {
            let r = self.ctx.registry.lock().unwrap_or_else(|p| p.into_inner());
            r.values().flat_map(|s| s.list()).collect()
        };
        for h in &all {
            h.request_detach();
        }
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while tokio::time::Instant::now() < deadline {
            let left = {
                let r = self.ctx.registry.lock().unwrap_or_else(|p| p.into_inner());
                r.values().map(|s| s.list().len()).sum::<usize>()
            };
            if left == 0 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        tracing::warn!("instances still busy after 5 s; leaving them to the next paasd");
    }

    fn app_dir(&self, app: &str, slug_id: i64) -> std::path::PathBuf {
        self.ctx.slugs.layer(app, slug_id).join("app")
    }

    /// Starts or stops instances so the app runs its current release at its formation.
    async fn apply_formation(&self, app: &str) -> Result<(), SupervisorError> {
        rollout::apply_formation(&self.ctx, app).await
    }
}

/// `web.12` -> 12, for sorting.
fn index_of(name: &str) -> u32 {
    name.rsplit('.')
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}
