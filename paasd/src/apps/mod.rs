//! The app service: create/list/info/destroy apps, config vars (each change a release, with
//! Heroku semantics), domains, formation and the release list. Owns the business rules and
//! the encryption of config values; must not speak HTTP (the API layer translates) nor SQL
//! (it composes `store` queries inside one transaction).

mod cron;
pub mod redact;
mod releases;
mod resources;
mod running;
pub mod validate;

pub use cron::CronRun;
pub use releases::{generate_secret, BuildContext, EnvDefaults, RunTarget};
pub use resources::{AppResources, Limits, ResourceSettings};
pub use running::{default_quantity, RouteInfo, Runnable};

use std::collections::BTreeMap;
use std::time::{Duration, UNIX_EPOCH};

use paas_api as api;
use paas_api::ReleaseStatus;

use crate::secrets::{SecretBox, SecretError};
use crate::store::{
    self,
    apps::AppRow,
    releases::{ReleaseRow, Runs},
    Store, StoreError, Tx,
};

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("app '{0}' does not exist (see `paas apps`)")]
    NotFound(String),
    #[error("app '{0}' already exists; pick another name")]
    AlreadyExists(String),
    #[error("{0}")]
    InvalidName(String),
    #[error("{0}")]
    InvalidEnv(String),
    #[error("{0}")]
    InvalidDomain(String),
    #[error("domain '{domain}' is already attached to app '{app}'; remove it there first")]
    DomainTaken { domain: String, app: String },
    #[error("domain '{domain}' is not attached to app '{app}'")]
    DomainNotFound { domain: String, app: String },
    #[error("{0}")]
    InvalidFormation(String),
    #[error("{0}")]
    InvalidRequest(String),
    /// A resource limit out of bounds, or for a process type the app does not run.
    #[error("{0}")]
    InvalidResources(String),
    #[error("app '{app}' has no release v{version} (see `paas releases {app}`)")]
    ReleaseNotFound { app: String, version: u32 },
    #[error("every app uid of [users] ({first}, {count} of them) has been handed out; raise [users] count in paasd.toml")]
    NoUidLeft { first: u32, count: u32 },
    #[error("app '{0}' has no uid yet (paasd gives one to every app at start)")]
    NoUid(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Secret(#[from] SecretError),
}

/// The host uids apps run as: `first`, `first + 1`, ... (`[users]` in paasd.toml).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UidRange {
    pub first: u32,
    pub count: u32,
}

impl UidRange {
    /// The uid the edge (the router's process) serves as: the range's last, which no app or
    /// add-on gets. A uid of its own, not `nobody`'s: no other host process can signal it.
    pub fn edge(&self) -> u32 {
        self.first + self.count.saturating_sub(1)
    }

    /// The part apps and add-ons take uids from: all but the edge's.
    pub fn for_apps(&self) -> UidRange {
        UidRange {
            first: self.first,
            count: self.count.saturating_sub(1),
        }
    }
}

/// Where volume `name` of `app` is mounted on the host: the volumes service mounts it
/// there, every container of the app binds it from there.
pub fn volume_mount(dir: &std::path::Path, app: &str, name: &str) -> std::path::PathBuf {
    dir.join(app).join(name)
}

/// One of an app's volumes as its containers bind it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolumeBind {
    pub host: std::path::PathBuf,
    /// Absolute path inside the container.
    pub path: String,
}

/// Who an app's processes are on the host: its own uid (and the gid of the same number), and
/// its number in the instance network's membership sets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Identity {
    pub uid: u32,
    pub group: u32,
}

impl Identity {
    pub(super) fn of(app: &AppRow) -> Result<Identity, AppError> {
        let uid = app.uid.ok_or_else(|| AppError::NoUid(app.name.clone()))?;
        // Row ids start at 1 and SQLite hands out at most i64::MAX; one above u32 would need
        // four billion apps.
        let group = u32::try_from(app.id).map_err(|_| AppError::NoUid(app.name.clone()))?;
        Ok(Identity { uid, group })
    }
}

/// What the service needs from the daemon configuration.
#[derive(Debug, Clone)]
pub struct Settings {
    pub base_domain: String,
    pub max_instances_per_type: u32,
    /// Stacks an app may ask for (`host`, the configured and the imported ones); shared with
    /// the stack service, which adds imports.
    pub stacks: std::sync::Arc<std::sync::RwLock<Vec<String>>>,
    /// Creating or destroying an app and changing its domains change what the router must
    /// know: those operations return once the router has it.
    pub routes: crate::routing::RouteSignal,
    pub uids: UidRange,
    /// Where apps' volumes are mounted on the host (`STATE/volumes`; see [`volume_mount`]).
    pub volumes_dir: std::path::PathBuf,
    /// Instance limits: paasd's defaults and the bounds `paas resources` may set.
    pub resources: ResourceSettings,
}

#[derive(Clone)]
pub struct Apps {
    store: Store,
    secrets: SecretBox,
    settings: Settings,
}

impl Apps {
    pub fn new(store: Store, secrets: SecretBox, settings: Settings) -> Apps {
        Apps {
            store,
            secrets,
            settings,
        }
    }

    pub async fn create(&self, req: api::CreateApp) -> Result<api::App, AppError> {
        validate::app_name(&req.name).map_err(AppError::InvalidName)?;
        let stack = req.stack.unwrap_or_else(|| "host".to_string());
        let known = self
            .settings
            .stacks
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        validate::stack(&stack, &known).map_err(AppError::InvalidRequest)?;
        if let Some(bp) = &req.buildpack {
            validate::buildpack(bp).map_err(AppError::InvalidRequest)?;
        }
        let this = self.clone();
        let created = self
            .store
            .tx(move |tx| {
                if store::apps::find(tx, &req.name)?.is_some() {
                    return Err(AppError::AlreadyExists(req.name));
                }
                // The default domain of an app must not already be someone's custom domain.
                let default_domain = this.default_domain(&req.name);
                if let Some(owner) = store::domains::owner(tx, &default_domain)? {
                    return Err(AppError::DomainTaken {
                        domain: default_domain,
                        app: owner,
                    });
                }
                let now = store::now();
                let UidRange { first, count } = this.settings.uids;
                let uid = store::apps::take_uid(tx, first, count)?
                    .ok_or(AppError::NoUidLeft { first, count })?;
                let app =
                    store::apps::insert(tx, &req.name, &stack, req.buildpack.as_deref(), now, uid)
                        .map_err(|e| {
                            if e.is_unique_violation() {
                                AppError::AlreadyExists(req.name.clone())
                            } else {
                                e.into()
                            }
                        })?;
                // Heroku semantics: every app starts with v1, "Initial release".
                this.insert_release(
                    tx,
                    &app,
                    "Initial release",
                    &BTreeMap::new(),
                    ReleaseStatus::Succeeded,
                    &Runs::default(),
                )?;
                tracing::info!(app = %app.name, "app created");
                this.app_view(tx, &app)
            })
            .await?;
        self.settings.routes.changed().await;
        Ok(created)
    }

    /// Gives every app that has no uid (made before uids were per app) its own. Returns
    /// them, so their files (slugs, build cache) can be given to the new owner.
    pub async fn assign_uids(&self) -> Result<Vec<(String, u32)>, AppError> {
        let UidRange { first, count } = self.settings.uids;
        self.store
            .tx(move |tx| {
                let mut given = Vec::new();
                for app in store::apps::list(tx)? {
                    if app.uid.is_some() {
                        continue;
                    }
                    let uid = store::apps::take_uid(tx, first, count)?
                        .ok_or(AppError::NoUidLeft { first, count })?;
                    store::apps::set_uid(tx, app.id, uid)?;
                    tracing::info!(app = %app.name, uid, "gave the app its own uid");
                    given.push((app.name, uid));
                }
                Ok(given)
            })
            .await
    }

    /// The app's volumes, as every container of it binds them (read-write).
    pub async fn volume_binds(&self, name: &str) -> Result<Vec<VolumeBind>, AppError> {
        let (name, dir) = (name.to_string(), self.settings.volumes_dir.clone());
        self.store
            .tx(move |tx| {
                let app = find(tx, &name)?;
                Ok(store::volumes::of_app(tx, app.id)?
                    .into_iter()
                    .map(|v| VolumeBind {
                        host: volume_mount(&dir, &app.name, &v.name),
                        path: v.path,
                    })
                    .collect())
            })
            .await
    }

    /// The app's uid and network group.
    pub async fn identity(&self, name: &str) -> Result<Identity, AppError> {
        let name = name.to_string();
        self.store
            .tx(move |tx| Identity::of(&find(tx, &name)?))
            .await
    }

    pub async fn list(&self) -> Result<Vec<api::App>, AppError> {
        let this = self.clone();
        self.store
            .tx(move |tx| {
                store::apps::list(tx)?
                    .iter()
                    .map(|a| this.app_view(tx, a))
                    .collect()
            })
            .await
    }

    pub async fn info(&self, name: String) -> Result<api::App, AppError> {
        let this = self.clone();
        self.store
            .tx(move |tx| {
                let app = find(tx, &name)?;
                this.app_view(tx, &app)
            })
            .await
    }

    /// Deletes the app and everything it owns in the database.
    pub async fn destroy(&self, name: String) -> Result<(), AppError> {
        self.store
            .tx(move |tx| {
                let app = find(tx, &name)?;
                store::apps::delete(tx, app.id)?;
                tracing::info!(app = %app.name, "app destroyed");
                Ok::<_, AppError>(())
            })
            .await?;
        self.settings.routes.changed().await;
        Ok(())
    }

    pub async fn env(&self, name: String, reveal: bool) -> Result<api::EnvVars, AppError> {
        let this = self.clone();
        self.store
            .tx(move |tx| {
                let app = find(tx, &name)?;
                Ok(env_view(this.load_vars(tx, &app)?, reveal))
            })
            .await
    }

    /// Sets (Some) and unsets (None) keys; one release for the whole change.
    pub async fn patch_env(
        &self,
        name: String,
        patch: api::EnvPatch,
    ) -> Result<api::EnvChanged, AppError> {
        if patch.is_empty() {
            return Err(AppError::InvalidEnv(
                "no config vars given: send {\"KEY\": \"value\"} to set, {\"KEY\": null} to unset"
                    .into(),
            ));
        }
        for (k, v) in &patch {
            validate::env_key(k).map_err(AppError::InvalidEnv)?;
            if let Some(v) = v {
                validate::env_value(k, v).map_err(AppError::InvalidEnv)?;
            }
        }
        self.change_env(name, move |current| {
            let mut next = current.clone();
            for (k, v) in patch {
                match v {
                    Some(v) => next.insert(k, v),
                    None => next.remove(&k),
                };
            }
            next
        })
        .await
    }

    /// Replaces the whole config with `vars`; one release.
    pub async fn replace_env(
        &self,
        name: String,
        vars: api::EnvReplace,
    ) -> Result<api::EnvChanged, AppError> {
        for (k, v) in &vars {
            validate::env_key(k).map_err(AppError::InvalidEnv)?;
            validate::env_value(k, v).map_err(AppError::InvalidEnv)?;
        }
        self.change_env(name, move |_| vars).await
    }

    async fn change_env(
        &self,
        name: String,
        apply: impl FnOnce(&BTreeMap<String, String>) -> BTreeMap<String, String> + Send + 'static,
    ) -> Result<api::EnvChanged, AppError> {
        let this = self.clone();
        self.store
            .tx(move |tx| {
                let app = find(tx, &name)?;
                let current = this.load_vars(tx, &app)?;
                let next = apply(&current);
                if next == current {
                    return Ok(api::EnvChanged {
                        release: None,
                        env: env_view(current, false),
                    });
                }
                this.put_vars(tx, &app, &next)?;
                let description = describe_change(&current, &next);
                // A config change runs what the current release runs, with the new config.
                let runs = store::releases::current(tx, app.id)?
                    .map(|r| r.runs)
                    .unwrap_or_default();
                let release = this.insert_release(
                    tx,
                    &app,
                    &description,
                    &next,
                    ReleaseStatus::Succeeded,
                    &runs,
                )?;
                let keys: Vec<&String> = next.keys().collect();
                tracing::info!(app = %app.name, version = release.version, ?keys, "config changed");
                Ok(api::EnvChanged {
                    release: Some(this.release_view(tx, &release)?),
                    env: env_view(next, false),
                })
            })
            .await
    }

    pub async fn domains(&self, name: String) -> Result<Vec<api::Domain>, AppError> {
        self.store
            .tx(move |tx| {
                let app = find(tx, &name)?;
                Ok(store::domains::list_for_app(tx, app.id)?
                    .into_iter()
                    .map(|d| api::Domain {
                        domain: d.domain,
                        app: d.app,
                        created_at: rfc3339(d.created_at),
                    })
                    .collect())
            })
            .await
    }

    pub async fn add_domain(&self, name: String, domain: String) -> Result<api::Domain, AppError> {
        let domain = validate::domain(&domain).map_err(AppError::InvalidDomain)?;
        let this = self.clone();
        let added = self
            .store
            .tx(move |tx| {
                let app = find(tx, &name)?;
                if let Some(owner) = store::domains::owner(tx, &domain)? {
                    return Err(AppError::DomainTaken { domain, app: owner });
                }
                // `<app>.<base-domain>` routes to the app already; `<other>.<base-domain>` is
                // another app's default URL: taking it would hijack it.
                let base = this.settings.base_domain.to_ascii_lowercase();
                if let Some(label) = domain
                    .strip_suffix(base.as_str())
                    .and_then(|rest| rest.strip_suffix('.'))
                {
                    if label == app.name {
                        return Err(AppError::InvalidDomain(format!(
                            "'{domain}' is the default domain of '{}': it routes there already, \
                             no need to add it (custom domains are names outside {base})",
                            app.name
                        )));
                    }
                    if store::apps::find(tx, label)?.is_some() {
                        let owner = label.to_string();
                        return Err(AppError::DomainTaken { domain, app: owner });
                    }
                }
                let now = store::now();
                store::domains::insert(tx, app.id, &domain, now)?;
                tracing::info!(app = %app.name, %domain, "domain added");
                Ok(api::Domain {
                    domain,
                    app: app.name,
                    created_at: rfc3339(now),
                })
            })
            .await?;
        self.settings.routes.changed().await;
        Ok(added)
    }

    pub async fn remove_domain(&self, name: String, domain: String) -> Result<(), AppError> {
        let domain = validate::domain(&domain).map_err(AppError::InvalidDomain)?;
        self.store
            .tx(move |tx| {
                let app = find(tx, &name)?;
                if !store::domains::delete(tx, app.id, &domain)? {
                    return Err(AppError::DomainNotFound {
                        domain,
                        app: app.name,
                    });
                }
                // Its certificate goes with it (the router drops it at the next publish).
                store::certs::delete(tx, app.id, &domain)?;
                tracing::info!(app = %app.name, %domain, "domain removed");
                Ok::<_, AppError>(())
            })
            .await?;
        self.settings.routes.changed().await;
        Ok(())
    }

    /// Stores new desired counts. `instances` is an alias of `web`. The supervisor starts or
    /// stops instances to match (`Supervisor::scale`).
    pub async fn scale(
        &self,
        name: String,
        req: api::ScaleRequest,
    ) -> Result<api::Formation, AppError> {
        let wanted = parse_scale(&req, self.settings.max_instances_per_type)?;
        self.store
            .tx(move |tx| {
                let app = find(tx, &name)?;
                let built = built_release(tx, app.id)?;
                if let Some(release) = &built {
                    let stored = store::formation::get(tx, app.id)?;
                    check_types(&app.name, release, &stored, &wanted)?;
                }
                for (ptype, n) in &wanted {
                    store::formation::set(tx, app.id, ptype, *n)?;
                }
                tracing::info!(app = %app.name, ?wanted, "scaled");
                Ok(api::Formation {
                    formation: formation_of(tx, app.id, built.as_ref())?,
                })
            })
            .await
    }

    /// The most instances `paas scale` (and app.json `formation`) may ask for per type.
    pub fn max_instances_per_type(&self) -> u32 {
        self.settings.max_instances_per_type
    }

    fn default_domain(&self, app: &str) -> String {
        format!("{app}.{}", self.settings.base_domain)
    }

    fn app_view(&self, tx: &Tx<'_>, app: &AppRow) -> Result<api::App, AppError> {
        let domains: Vec<String> = store::domains::list_for_app(tx, app.id)?
            .into_iter()
            .map(|d| d.domain)
            .collect();
        let mut urls = vec![format!("http://{}", self.default_domain(&app.name))];
        urls.extend(domains.iter().map(|d| format!("http://{d}")));
        let current = store::releases::current(tx, app.id)?;
        let built = current.as_ref().filter(|r| r.runs.slug_id.is_some());
        Ok(api::App {
            name: app.name.clone(),
            stack: app.stack.clone(),
            buildpacks: buildpacks_of(app),
            created_at: rfc3339(app.created_at),
            status: if current.as_ref().is_some_and(|r| r.runs.slug_id.is_some()) {
                api::AppStatus::Deployed
            } else {
                api::AppStatus::Created
            },
            release: current.as_ref().map(|r| r.version),
            formation: formation_of(tx, app.id, built)?,
            domains,
            urls,
            uid: app.uid,
            resources: Some(self.resources_view(tx, app)?),
        })
    }

    /// Makes the app's config vars exactly `next` (only changed keys are written).
    fn put_vars(
        &self,
        tx: &Tx<'_>,
        app: &AppRow,
        next: &BTreeMap<String, String>,
    ) -> Result<(), AppError> {
        let current = self.load_vars(tx, app)?;
        for key in current.keys().filter(|k| !next.contains_key(*k)) {
            store::config_vars::delete(tx, app.id, key)?;
        }
        for (key, value) in next.iter().filter(|(k, v)| current.get(*k) != Some(v)) {
            let sealed = self
                .secrets
                .seal(&var_context(app.id, key), value.as_bytes())?;
            store::config_vars::put(tx, app.id, key, &sealed)?;
        }
        Ok(())
    }

    fn load_vars(&self, tx: &Tx<'_>, app: &AppRow) -> Result<BTreeMap<String, String>, AppError> {
        store::config_vars::list(tx, app.id)?
            .into_iter()
            .map(|(k, sealed)| {
                let plain = self.secrets.open(&var_context(app.id, &k), &sealed)?;
                let v = String::from_utf8(plain)
                    .map_err(|_| StoreError::Corrupt(format!("config var {k} is not UTF-8")))?;
                Ok((k, v))
            })
            .collect()
    }
}

/// The app's buildpack list; stored one per line in `apps.buildpack` (names never hold
/// whitespace).
fn buildpacks_of(app: &AppRow) -> Vec<String> {
    app.buildpack
        .as_deref()
        .unwrap_or("")
        .lines()
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect()
}

/// The app row named `name`, or `NotFound` (the services over `apps` use it too).
pub(crate) fn find(tx: &Tx<'_>, name: &str) -> Result<AppRow, AppError> {
    store::apps::find(tx, name)?.ok_or_else(|| AppError::NotFound(name.to_string()))
}

pub(crate) fn var_context(app_id: i64, key: &str) -> String {
    format!("config:{app_id}:{key}")
}

/// Config vars as listed: unless `reveal`, values of secret-looking keys hidden whole, and
/// passwords inside URL-shaped values hidden in place (see `redact`).
fn env_view(vars: BTreeMap<String, String>, reveal: bool) -> api::EnvVars {
    let mut redacted = Vec::new();
    let vars = vars
        .into_iter()
        .map(|(k, v)| {
            if reveal {
                return (k, v);
            }
            if redact::is_secret_key(&k) {
                redacted.push(k.clone());
                return (k, api::REDACTED.to_string());
            }
            match redact::url_secrets(&v) {
                Some(shown) => {
                    redacted.push(k.clone());
                    (k, shown)
                }
                None => (k, v),
            }
        })
        .collect();
    api::EnvVars { vars, redacted }
}

/// Heroku-style release descriptions: "Set A, B config vars", "Remove C config var".
fn describe_change(before: &BTreeMap<String, String>, after: &BTreeMap<String, String>) -> String {
    let set: Vec<&str> = after
        .iter()
        .filter(|(k, v)| before.get(*k) != Some(v))
        .map(|(k, _)| k.as_str())
        .collect();
    let removed: Vec<&str> = before
        .keys()
        .filter(|k| !after.contains_key(*k))
        .map(String::as_str)
        .collect();
    let part = |verb: &str, keys: &[&str]| {
        let noun = if keys.len() == 1 {
            "config var"
        } else {
            "config vars"
        };
        format!("{verb} {} {noun}", keys.join(", "))
    };
    match (set.is_empty(), removed.is_empty()) {
        (false, true) => part("Set", &set),
        (true, false) => part("Remove", &removed),
        _ => format!("{}; {}", part("Set", &set), part("remove", &removed)),
    }
}

/// The current release when it has something built to run (process types).
fn built_release(tx: &Tx<'_>, app_id: i64) -> Result<Option<ReleaseRow>, AppError> {
    Ok(store::releases::current(tx, app_id)?.filter(|r| r.runs.slug_id.is_some()))
}

/// Process types of a release that instances can be scaled for (`release` is the release
/// phase, run once per release, never scaled).
fn scalable_types(release: &ReleaseRow) -> impl Iterator<Item = &String> {
    release
        .runs
        .process_types
        .keys()
        .filter(|t| t.as_str() != "release")
}

/// The desired formation: for a built app, every process type of its current release with
/// its scaled count (else its app.json `formation` quantity, else one `web`, or one `worker`
/// when there is no `web`); before the first build, what was scaled so far.
fn formation_of(
    tx: &Tx<'_>,
    app_id: i64,
    built: Option<&ReleaseRow>,
) -> Result<BTreeMap<String, u32>, AppError> {
    let stored = store::formation::get(tx, app_id)?;
    Ok(match built {
        Some(release) => scalable_types(release)
            .map(|t| (t.clone(), quantity(&stored, release, t)))
            .collect(),
        None => stored,
    })
}

/// Instances of `process_type` for `release`: `paas scale` wins, then the release's app.json
/// `formation`, then the default (one `web`, or one `worker` when there is no `web`).
fn quantity(scaled: &BTreeMap<String, u32>, release: &ReleaseRow, process_type: &str) -> u32 {
    scaled
        .get(process_type)
        .or_else(|| release.runs.formation.get(process_type))
        .copied()
        .unwrap_or_else(|| default_quantity(process_type, release.runs.process_types.keys()))
}

/// Every type scaled must be one the current release runs. Scaling one it does not run to 0
/// is let through when a count for it is stored (set before the first build), so it can be
/// cleared.
fn check_types(
    app: &str,
    release: &ReleaseRow,
    stored: &BTreeMap<String, u32>,
    wanted: &BTreeMap<String, u32>,
) -> Result<(), AppError> {
    let known: Vec<&String> = scalable_types(release).collect();
    for (ptype, n) in wanted {
        if known.contains(&ptype) || (*n == 0 && stored.contains_key(ptype)) {
            continue;
        }
        let names: Vec<&str> = known.iter().map(|t| t.as_str()).collect();
        return Err(AppError::InvalidFormation(format!(
            "unknown process type '{ptype}': v{} of {app} runs {} (its Procfile or buildpack \
             defines them)",
            release.version,
            if names.is_empty() {
                "no process types".to_string()
            } else {
                names.join(", ")
            }
        )));
    }
    Ok(())
}

/// Validates a scale request: known shape, process type names, counts in `0..=max`.
fn parse_scale(req: &api::ScaleRequest, max: u32) -> Result<BTreeMap<String, u32>, AppError> {
    if req.is_empty() {
        return Err(AppError::InvalidFormation(
            "nothing to scale: give counts like {\"web\": 2, \"worker\": 1}".into(),
        ));
    }
    if req.contains_key("instances") && req.contains_key("web") {
        return Err(AppError::InvalidFormation(
            "'instances' is an alias of 'web': give one of them, not both".into(),
        ));
    }
    let mut out = BTreeMap::new();
    for (key, value) in req {
        let ptype = if key == "instances" {
            "web"
        } else {
            key.as_str()
        };
        validate::process_type(ptype).map_err(AppError::InvalidFormation)?;
        let n = value
            .as_i64()
            .ok_or_else(|| {
                AppError::InvalidFormation(format!(
                    "count for '{ptype}' must be a whole number, got {value}"
                ))
            })
            .and_then(|n| {
                u32::try_from(n).ok().filter(|n| *n <= max).ok_or_else(|| {
                    AppError::InvalidFormation(format!(
                        "count for '{ptype}' must be between 0 and {max}, got {n}"
                    ))
                })
            })?;
        out.insert(ptype.to_string(), n);
    }
    Ok(out)
}

/// RFC 3339 in UTC, seconds precision: the timestamp format of the whole API.
pub fn rfc3339(unix_secs: i64) -> String {
    let t = UNIX_EPOCH + Duration::from_secs(unix_secs.max(0) as u64);
    humantime::format_rfc3339_seconds(t).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn describes_changes_like_heroku() {
        let a = map(&[("A", "1")]);
        assert_eq!(
            describe_change(&a, &map(&[("A", "1"), ("B", "2")])),
            "Set B config var"
        );
        assert_eq!(describe_change(&a, &map(&[])), "Remove A config var");
        assert_eq!(
            describe_change(&a, &map(&[("B", "2"), ("C", "3")])),
            "Set B, C config vars; remove A config var"
        );
    }

    #[test]
    fn scale_parsing() {
        let r = |v: serde_json::Value| -> api::ScaleRequest {
            serde_json::from_value(v).expect("object")
        };
        let ok = parse_scale(&r(json!({"instances": 3, "worker": 0})), 100).expect("valid");
        assert_eq!(
            ok,
            BTreeMap::from([("web".into(), 3), ("worker".into(), 0)])
        );
        for bad in [
            json!({}),
            json!({"web": -1}),
            json!({"web": 101}),
            json!({"web": 1.5}),
            json!({"web": "2"}),
            json!({"web": 1, "instances": 2}),
            json!({"bad type": 1}),
            json!({"web": 1e300}),
        ] {
            assert!(parse_scale(&r(bad.clone()), 100).is_err(), "{bad}");
        }
    }

    #[test]
    fn scaling_is_limited_to_the_release_s_process_types() {
        let release = ReleaseRow {
            version: 3,
            description: String::new(),
            status: ReleaseStatus::Succeeded,
            config: vec![],
            config_keys: vec![],
            created_at: 0,
            runs: Runs {
                slug_id: Some(1),
                process_types: BTreeMap::from([
                    ("web".into(), "npm start".into()),
                    ("worker".into(), "node w.js".into()),
                    ("release".into(), "migrate".into()),
                ]),
                deployment_id: None,
                formation: BTreeMap::new(),
            },
            rollout: vec![],
        };
        let want = |pairs: &[(&str, u32)]| -> BTreeMap<String, u32> {
            pairs.iter().map(|(k, n)| (k.to_string(), *n)).collect()
        };
        let stored = want(&[("old", 2)]);
        assert!(check_types("x", &release, &stored, &want(&[("web", 2), ("worker", 0)])).is_ok());
        // A count stored before the first build can be cleared, not raised.
        assert!(check_types("x", &release, &stored, &want(&[("old", 0)])).is_ok());
        for bad in [("old", 1), ("nosuch", 0), ("release", 1)] {
            let e = check_types("x", &release, &stored, &want(&[bad])).expect_err("refused");
            let m = e.to_string();
            assert!(
                m.contains(&format!("unknown process type '{}'", bad.0))
                    && m.contains("v3 of x runs web, worker"),
                "{m}"
            );
        }
    }

    #[test]
    fn a_scale_beats_app_json_formation_which_beats_the_default() {
        let mut release = ReleaseRow {
            version: 2,
            description: String::new(),
            status: ReleaseStatus::Succeeded,
            config: vec![],
            config_keys: vec![],
            created_at: 0,
            runs: Runs::default(),
            rollout: vec![],
        };
        release.runs.formation = BTreeMap::from([("web".into(), 3), ("worker".into(), 2)]);
        let scaled = BTreeMap::from([("worker".to_string(), 0)]);
        assert_eq!(quantity(&scaled, &release, "web"), 3, "app.json");
        assert_eq!(quantity(&scaled, &release, "worker"), 0, "paas scale wins");
        assert_eq!(
            quantity(&scaled, &release, "clock"),
            0,
            "default for non-web"
        );
        release.runs.formation.clear();
        assert_eq!(quantity(&scaled, &release, "web"), 1, "default web");
    }

    #[test]
    fn redaction() {
        let v = env_view(
            map(&[
                ("DB_PASSWORD", "x"),
                ("URL", "y"),
                ("DATABASE_URL", "postgres://u:hunter2@db/app"),
                ("REDIS_URL", "redis://cache:6379"),
            ]),
            false,
        );
        assert_eq!(v.vars["DB_PASSWORD"], api::REDACTED);
        assert_eq!(v.vars["URL"], "y");
        assert_eq!(v.vars["DATABASE_URL"], "postgres://u:[REDACTED]@db/app");
        assert_eq!(v.vars["REDIS_URL"], "redis://cache:6379");
        assert_eq!(
            v.redacted,
            vec!["DATABASE_URL".to_string(), "DB_PASSWORD".to_string()]
        );
        let all = env_view(
            map(&[("DB_PASSWORD", "x"), ("DATABASE_URL", "postgres://u:p@db")]),
            true,
        );
        assert_eq!(all.vars["DB_PASSWORD"], "x");
        assert_eq!(all.vars["DATABASE_URL"], "postgres://u:p@db");
        assert!(all.redacted.is_empty());
    }
}
