//! Add-on services (`paas addons`): PostgreSQL and Redis, each a container of our runtime
//! under its own uid and limits, with a data dir that outlives every release, an address
//! held for its life, a generated password sealed like config vars, links to apps (its URL
//! in their config, a new release and a rolling restart; a `links` element in the network
//! policy so only linked apps reach it), client commands, backups and their schedule.
//! Owns the services' lifecycle and links; the container loop is `service.rs`, what a kind
//! means `kind.rs`, the host tools `tools.rs`, backup files `backups.rs`. Must not write
//! SQL (`store::addons`) or touch an app's instances (a config change goes through `apps`
//! and the supervisor like `paas env set`).

pub mod backups;
pub mod kind;
pub mod service;
pub mod tools;

use std::collections::{BTreeMap, HashMap};
use std::net::Ipv4Addr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use paas_api::{AddonState, BackupSchedule};
use paas_runtime::cgroups::Limits;
use paas_runtime::{Adopted, Runtime};

use crate::addresses::{AddressError, Addresses, SERVICE_PREFIX};
use crate::apps::{validate, AppError, Apps, UidRange};
use crate::disk_image;
use crate::secrets::{SecretBox, SecretError};
use crate::store::{self, Store, StoreError};
use crate::supervisor::{Supervisor, SupervisorError};
use kind::Kind;
use service::{Order, Service, Spec};
use tools::{Ran, Tool, ToolError};

pub const DEFAULT_MEMORY_MB: u64 = 512;
const MEMORY_MB: std::ops::RangeInclusive<u64> = 64..=65536;
pub const DEFAULT_DISK_MB: u64 = 1024;
const DISK_MB: std::ops::RangeInclusive<u64> = 64..=1_048_576;
const CPU_PERCENT: u32 = 100;
const PIDS: u64 = 256;
/// The shortest schedule interval (seconds).
pub const MIN_EVERY_SECS: u64 = 5;
/// How long a new service may take to answer before its creation is undone.
const CREATE_WITHIN: Duration = Duration::from_secs(120);
const QUERY_TIMEOUT: Duration = Duration::from_secs(60);
const DUMP_TIMEOUT: Duration = Duration::from_secs(3600);
/// The context string of sealed add-on passwords (a config var's sealed value can never be
/// opened as one).
const SEAL_CONTEXT: &str = "addon-password";

#[derive(Debug, thiserror::Error)]
pub enum AddonError {
    #[error("add-on '{0}' not found")]
    NotFound(String),
    #[error("an add-on named '{0}' already exists")]
    AlreadyExists(String),
    #[error("unknown add-on type '{0}': choose postgres or redis")]
    UnknownKind(String),
    #[error("{0}")]
    Invalid(String),
    #[error("{kind} is not installed on this host: install the Debian package {package} (install.sh does)")]
    NotInstalled { kind: String, package: String },
    #[error("{kind} {asked} is not installed on this host; available: {available}")]
    NoSuchVersion {
        kind: String,
        asked: String,
        available: String,
    },
    #[error("'{addon}' is already linked to '{app}' (as {env_var})")]
    AlreadyLinked {
        addon: String,
        app: String,
        env_var: String,
    },
    #[error("'{addon}' is not linked to '{app}'")]
    NotLinked { addon: String, app: String },
    #[error(
        "'{app}' already has {env_var} set; unset it first (`paas env unset {app} {env_var}`)"
    )]
    EnvTaken { app: String, env_var: String },
    #[error("backup '{backup}' of '{addon}' not found (`paas addons backups {addon}` lists them)")]
    BackupNotFound { addon: String, backup: String },
    #[error("{0}")]
    RestoreRefused(String),
    #[error("the service did not come up: {0}")]
    NotUp(String),
    #[error("{0}")]
    Failed(String),
    #[error(transparent)]
    App(#[from] AppError),
    #[error(transparent)]
    Supervisor(#[from] SupervisorError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Secret(#[from] SecretError),
    #[error(transparent)]
    Address(#[from] AddressError),
    #[error(transparent)]
    Tool(#[from] ToolError),
    #[error("{what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> AddonError {
    let what = what.into();
    move |source| AddonError::Io { what, source }
}

/// What the service needs from the rest of paasd (wired in `paasd::run`).
pub struct Services {
    pub store: Store,
    pub secrets: SecretBox,
    pub apps: Apps,
    pub supervisor: Supervisor,
    pub addresses: Addresses,
    pub runtime: Arc<Runtime>,
    pub uids: UidRange,
    /// `STATE/addons`.
    pub data: PathBuf,
    /// `STATE/backups/addons`.
    pub backups: PathBuf,
}

#[derive(Clone)]
pub struct Addons {
    inner: Arc<Inner>,
}

struct Inner {
    s: Services,
    running: tokio::sync::Mutex<HashMap<String, Service>>,
    /// The `links` elements applied, held for a whole [`Addons::apply_links`]: two of them
    /// interleaving could leave an element of a link that is gone, or miss one.
    applied: tokio::sync::Mutex<Vec<(u32, Ipv4Addr, u16)>>,
    /// One change (create, destroy, link, unlink, restore) at a time: they are rare, and
    /// each spans the store, the network policy, app releases and the service's container.
    changes: tokio::sync::Mutex<()>,
}

/// A service as the store has it, password opened.
struct Known {
    row: store::addons::AddonRow,
    kind: Kind,
    password: String,
}

impl Known {
    /// A host client program run against this service: as its uid, its password in the
    /// environment, nothing on stdin, stdout kept.
    fn tool<'a>(&self, program: &'a Path, args: Vec<String>, timeout: Duration) -> Tool<'a> {
        Tool {
            program,
            args,
            env: self.kind.client_env(&self.password),
            uid: self.row.uid,
            timeout,
            package: client_package(self.kind),
            stdin: None,
            stdout: None,
        }
    }
}

impl Addons {
    pub fn new(s: Services) -> Addons {
        Addons {
            inner: Arc::new(Inner {
                s,
                running: tokio::sync::Mutex::default(),
                applied: tokio::sync::Mutex::default(),
                changes: tokio::sync::Mutex::default(),
            }),
        }
    }

    /// At start: every service on record runs again (the containers the last paasd left
    /// running are taken back from `adopted`), and its links are back in the network policy
    /// (rewritten empty at start). Returns the adopted containers that are not services'.
    pub async fn start(&self, adopted: Vec<Adopted>) -> Vec<Adopted> {
        let mut ours: HashMap<String, Adopted> = HashMap::new();
        let mut rest = Vec::new();
        for a in adopted {
            match serde_json::from_str::<service::Tag>(&a.tag) {
                Ok(t) => {
                    if let Some(dup) = ours.insert(t.addon, a) {
                        dup.instance.finish(true).await;
                    }
                }
                Err(_) => rest.push(a),
            }
        }
        let rows = match self.known_all().await {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(error = %e, "could not read add-on services; none started");
                Vec::new()
            }
        };
        for k in rows {
            let name = k.row.name.clone();
            let adopted = ours.remove(&name).map(|a| a.instance);
            let taken_back = adopted.is_some();
            match self.run_service(&k, adopted).await {
                Ok(()) => tracing::info!(addon = %name, taken_back, "add-on service running"),
                Err(e) => {
                    tracing::error!(addon = %name, error = %e, "could not start an add-on service")
                }
            }
        }
        if let Err(e) = self.apply_links().await {
            tracing::error!(error = %e, "could not restore add-on links in the network policy");
        }
        if let Err(e) = self.refresh_urls().await {
            tracing::error!(error = %e, "could not update linked apps' add-on URLs");
        }
        for (name, a) in ours {
            tracing::info!(addon = %name, "stopping a container of an add-on that no longer exists");
            a.instance.finish(true).await;
        }
        rest
    }

    /// Stops every service (`Order::Stop`) or lets them run on for the next paasd.
    pub async fn shutdown(&self, detach: bool) {
        let order = if detach { Order::Detach } else { Order::Stop };
        let all: Vec<Service> = self
            .inner
            .running
            .lock()
            .await
            .drain()
            .map(|(_, s)| s)
            .collect();
        let ends = all.into_iter().map(|s| s.end(order));
        for e in ends {
            e.await;
        }
        // Stopped for good: nothing uses the data disks now (a restart keeps them mounted
        // for the services that keep running).
        if !detach {
            for k in self.known_all().await.unwrap_or_default() {
                let data = self.data_dir(&k.row.name);
                if disk_image::is_mounted(&data) {
                    disk_image::unmount_path(&data);
                }
            }
        }
    }

    pub async fn create(&self, req: paas_api::CreateAddon) -> Result<paas_api::Addon, AddonError> {
        let kind =
            Kind::parse(&req.kind).ok_or_else(|| AddonError::UnknownKind(req.kind.clone()))?;
        validate::app_name(&req.app).map_err(|m| AddonError::App(AppError::InvalidName(m)))?;
        if let Some(n) = &req.name {
            validate::app_name(n).map_err(|m| {
                AddonError::Invalid(format!("add-on name: {}", m.replace("app name", "name")))
            })?;
        }
        let memory_mb = req.memory_mb.unwrap_or(DEFAULT_MEMORY_MB);
        if !MEMORY_MB.contains(&memory_mb) {
            return Err(AddonError::Invalid(format!(
                "memory must be between {} and {} MB, got {memory_mb}",
                MEMORY_MB.start(),
                MEMORY_MB.end()
            )));
        }
        let disk_mb = req.disk_mb.unwrap_or(DEFAULT_DISK_MB);
        if !DISK_MB.contains(&disk_mb) {
            return Err(AddonError::Invalid(format!(
                "disk must be between {} and {} MB, got {disk_mb}",
                DISK_MB.start(),
                DISK_MB.end()
            )));
        }
        let versions = kind.versions(std::path::Path::new("/"));
        let Some(newest) = versions.first() else {
            return Err(AddonError::NotInstalled {
                kind: kind.as_str().into(),
                package: kind.package().into(),
            });
        };
        let version = match &req.version {
            None => newest.clone(),
            Some(v) if versions.contains(v) => v.clone(),
            Some(v) => {
                return Err(AddonError::NoSuchVersion {
                    kind: kind.as_str().into(),
                    asked: v.clone(),
                    available: versions.join(", "),
                })
            }
        };
        let _change = self.inner.changes.lock().await;
        let password = crate::secrets::random_hex()[..32].to_string();
        let sealed = self
            .inner
            .s
            .secrets
            .seal(SEAL_CONTEXT, password.as_bytes())?;
        let UidRange { first, count } = self.inner.s.uids;
        let (app, asked) = (req.app.clone(), req.name.clone());
        let version2 = version.clone();
        let row = self
            .inner
            .s
            .store
            .tx(move |tx| {
                if store::apps::find(tx, &app)?.is_none() {
                    return Err(AddonError::App(AppError::NotFound(app)));
                }
                let name = match asked {
                    Some(n) => {
                        if store::addons::find(tx, &n)?.is_some() {
                            return Err(AddonError::AlreadyExists(n));
                        }
                        n
                    }
                    None => free_name(tx, &app, kind)?,
                };
                let uid = store::apps::take_uid(tx, first, count)?
                    .ok_or(AppError::NoUidLeft { first, count })?;
                let row = store::addons::insert(
                    tx,
                    &store::addons::NewAddon {
                        name: &name,
                        kind: kind.as_str(),
                        version: &version2,
                        uid,
                        password: &sealed,
                        memory_mb,
                        disk_mb,
                        now: store::now(),
                    },
                )
                .map_err(|e| {
                    if e.is_unique_violation() {
                        AddonError::AlreadyExists(name.clone())
                    } else {
                        e.into()
                    }
                })?;
                Ok(row)
            })
            .await?;
        let name = row.name.clone();
        tracing::info!(addon = %name, kind = kind.as_str(), %version, uid = row.uid, "creating an add-on service");
        let known = Known {
            row,
            kind,
            password,
        };
        let made = async {
            self.prepare_data_dir(&known, true)?;
            self.run_service(&known, None).await?;
            self.wait_up(&name, CREATE_WITHIN).await?;
            self.link_locked(&name, &req.app).await?;
            Ok::<_, AddonError>(())
        }
        .await;
        if let Err(e) = made {
            tracing::warn!(addon = %name, error = %e, "creating the add-on failed; undoing it");
            if let Err(undo) = self.remove(&known).await {
                tracing::error!(addon = %name, error = %undo, "could not undo a failed add-on creation");
            }
            return Err(e);
        }
        self.info(name).await
    }

    pub async fn list(&self, app: Option<String>) -> Result<Vec<paas_api::Addon>, AddonError> {
        if let Some(a) = &app {
            validate::app_name(a).map_err(|m| AddonError::App(AppError::InvalidName(m)))?;
            let a = a.clone();
            self.inner
                .s
                .store
                .tx(move |tx| Ok::<_, AddonError>(crate::apps::find(tx, &a).map(drop)?))
                .await?;
        }
        let links = self.inner.s.store.tx(store::addons::links).await?;
        let mut out = Vec::new();
        for k in self.known_all().await? {
            if let Some(a) = &app {
                if !links.iter().any(|l| l.addon == k.row.name && &l.app == a) {
                    continue;
                }
            }
            out.push(self.view(&k, &links, false).await?);
        }
        Ok(out)
    }

    pub async fn info(&self, name: String) -> Result<paas_api::Addon, AddonError> {
        let k = self.known(&name).await?;
        let links = self.inner.s.store.tx(store::addons::links).await?;
        self.view(&k, &links, true).await
    }

    pub async fn destroy(&self, name: String, confirm: Option<String>) -> Result<(), AddonError> {
        if confirm.as_deref() != Some(name.as_str()) {
            return Err(AddonError::Invalid(format!(
                "destroying '{name}' deletes its data; confirm with --confirm {name} (backups are kept)"
            )));
        }
        let _change = self.inner.changes.lock().await;
        let k = self.known(&name).await?;
        let links = self.inner.s.store.tx(store::addons::links).await?;
        for l in links.iter().filter(|l| l.addon == name) {
            self.unlink_locked(&name, &l.app).await?;
        }
        self.remove(&k).await?;
        tracing::info!(addon = %name, "add-on destroyed");
        Ok(())
    }

    pub async fn link(&self, name: String, app: String) -> Result<paas_api::AddonLink, AddonError> {
        validate::app_name(&app).map_err(|m| AddonError::App(AppError::InvalidName(m)))?;
        let _change = self.inner.changes.lock().await;
        self.known(&name).await?;
        self.link_locked(&name, &app).await
    }

    pub async fn unlink(&self, name: String, app: String) -> Result<(), AddonError> {
        validate::app_name(&app).map_err(|m| AddonError::App(AppError::InvalidName(m)))?;
        let _change = self.inner.changes.lock().await;
        self.known(&name).await?;
        self.unlink_locked(&name, &app).await
    }

    /// After an app is destroyed: its links went with it (cascade), so their elements in the
    /// network policy go too (an app id may be handed out again).
    pub async fn app_destroyed(&self) {
        if let Err(e) = self.apply_links().await {
            tracing::error!(error = %e, "could not update add-on links after an app was destroyed");
        }
    }

    /// `paas addons psql NAME -c SQL` / `paas addons redis-cli NAME ARGS...`.
    pub async fn query(
        &self,
        name: String,
        q: paas_api::AddonQuery,
    ) -> Result<paas_api::AddonQueryOutput, AddonError> {
        let k = self.known(&name).await?;
        let ip = self.held_address(&name).await?;
        let (program, mut args) = k.kind.client(&name, &k.row.version, ip);
        match k.kind {
            Kind::Postgres => {
                let [sql] = q.args.as_slice() else {
                    return Err(AddonError::Invalid(
                        "give one SQL command: paas addons psql NAME -c 'SELECT 1'".into(),
                    ));
                };
                // psql runs a -c string that starts with a backslash as a meta-command, and
                // `\!` would be a shell on the host.
                if sql.trim_start().starts_with('\\') {
                    return Err(AddonError::Invalid(
                        "psql meta-commands (\\...) are not run here; send SQL".into(),
                    ));
                }
                args.push("-c".into());
                args.push(sql.clone());
            }
            Kind::Redis => {
                match q.args.first() {
                    None => {
                        return Err(AddonError::Invalid(
                            "give a command: paas addons redis-cli NAME PING".into(),
                        ))
                    }
                    Some(a) if a.starts_with('-') => {
                        return Err(AddonError::Invalid(format!(
                            "'{a}': give a Redis command, not redis-cli options"
                        )))
                    }
                    Some(_) => {}
                }
                args.extend(q.args);
            }
        }
        let ran = k.tool(&program, args, QUERY_TIMEOUT).run().await?;
        Ok(paas_api::AddonQueryOutput {
            exit_code: ran.code,
            stdout: ran.stdout,
            stderr: ran.stderr,
        })
    }

    /// A consistent backup, streamed to `backups/addons/NAME/`: `pg_dump -Fc` (one snapshot
    /// transaction) or `redis-cli --rdb` (the snapshot a replica would get).
    pub async fn backup(
        &self,
        name: String,
        scheduled: bool,
    ) -> Result<paas_api::Backup, AddonError> {
        let k = self.known(&name).await?;
        let ip = self.held_address(&name).await?;
        let dir = self.inner.s.backups.join(&name);
        std::fs::create_dir_all(&dir).map_err(io(format!("creating {}", dir.display())))?;
        let _ = std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700));
        let stamp = backups::new_name(&dir, chrono::Utc::now(), scheduled, k.kind);
        let file = dir.join(format!("{stamp}.{}", k.kind.backup_ext()));
        let partial = dir.join(format!("{stamp}.{}.partial", k.kind.backup_ext()));
        let out = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&partial)
            .map_err(io(format!("creating {}", partial.display())))?;
        let (program, args) = match k.kind {
            Kind::Postgres => {
                let (_, mut args) = k.kind.client(&name, &k.row.version, ip);
                // The client's connection flags fit pg_dump as they are, minus psql's own.
                args.retain(|a| a != "-X" && a != "-q" && a != "ON_ERROR_STOP=1" && a != "-v");
                args.push("-Fc".into());
                (kind::pg_bin(&k.row.version, "pg_dump"), args)
            }
            Kind::Redis => {
                let (program, mut args) = k.kind.client(&name, &k.row.version, ip);
                args.push("--rdb".into());
                args.push("-".into());
                (program, args)
            }
        };
        let keep = out.try_clone().map_err(io("the backup file"))?;
        let ran = Tool {
            stdout: Some(out),
            ..k.tool(&program, args, DUMP_TIMEOUT)
        }
        .run()
        .await;
        let ran = match ran {
            Ok(r) if r.ok() => r,
            Ok(r) => {
                let _ = std::fs::remove_file(&partial);
                return Err(AddonError::Failed(format!(
                    "backup failed: {}",
                    r.stderr.trim()
                )));
            }
            Err(e) => {
                let _ = std::fs::remove_file(&partial);
                return Err(e.into());
            }
        };
        drop(ran);
        // On disk before it has its name: a crash never leaves an empty "backup".
        if let Err(e) = keep.sync_all() {
            let _ = std::fs::remove_file(&partial);
            return Err(io("syncing the backup")(e));
        }
        std::fs::rename(&partial, &file).map_err(io(format!("renaming {}", partial.display())))?;
        let b = backups::find(&dir, &stamp)
            .ok_or_else(|| AddonError::Failed("the backup vanished".into()))?;
        tracing::info!(addon = %name, backup = %b.name, bytes = b.bytes, scheduled, "add-on backed up");
        Ok(backup_view(&name, &b))
    }

    /// Where backup `backup` (a name, without extension) of add-on `name` is kept.
    pub fn backup_path(&self, name: &str, backup: &str, ext: &str) -> PathBuf {
        self.inner
            .s
            .backups
            .join(name)
            .join(format!("{backup}.{ext}"))
    }

    pub async fn backups(&self, name: String) -> Result<Vec<paas_api::Backup>, AddonError> {
        validate::app_name(&name).map_err(|_| AddonError::NotFound(name.clone()))?;
        let dir = self.inner.s.backups.join(&name);
        let all = backups::list(&dir);
        if all.is_empty() {
            // Backups outlive their service; with none, the name must at least be a service.
            self.known(&name).await?;
        }
        Ok(all.iter().map(|b| backup_view(&name, b)).collect())
    }

    /// Replaces the service's data with a backup's. PostgreSQL: `pg_restore --clean` in one
    /// transaction (a bad archive changes nothing). Redis: the snapshot is checked with
    /// `redis-check-rdb` first, then the service restarts on it.
    pub async fn restore(
        &self,
        name: String,
        backup: String,
    ) -> Result<paas_api::Backup, AddonError> {
        let _change = self.inner.changes.lock().await;
        let k = self.known(&name).await?;
        // `OTHER/BACKUP` restores another service's backup (a copy, or one of a service
        // destroyed since).
        let (source, wanted) = match backup.split_once('/') {
            Some((s, b)) => (s.to_string(), b.to_string()),
            None => (name.clone(), backup.clone()),
        };
        validate::app_name(&source).map_err(|_| AddonError::BackupNotFound {
            addon: source.clone(),
            backup: wanted.clone(),
        })?;
        let dir = self.inner.s.backups.join(&source);
        let b = backups::find(&dir, &wanted).ok_or_else(|| AddonError::BackupNotFound {
            addon: source.clone(),
            backup: wanted.clone(),
        })?;
        if b.kind != k.kind {
            return Err(AddonError::RestoreRefused(format!(
                "'{backup}' is a {} backup; '{name}' is {}",
                b.kind.as_str(),
                k.kind.as_str()
            )));
        }
        let ip = self.held_address(&name).await?;
        // Just started (a platform restore): it must answer first.
        self.wait_up(&name, CREATE_WITHIN).await?;
        let input =
            || std::fs::File::open(&b.path).map_err(io(format!("opening {}", b.path.display())));
        match k.kind {
            Kind::Postgres => {
                let (_, mut args) = k.kind.client(&name, &k.row.version, ip);
                args.retain(|a| a != "-X" && a != "-q" && a != "ON_ERROR_STOP=1" && a != "-v");
                args.extend(
                    [
                        "--clean",
                        "--if-exists",
                        "--no-owner",
                        "--exit-on-error",
                        "--single-transaction",
                    ]
                    .map(String::from),
                );
                let program = kind::pg_bin(&k.row.version, "pg_restore");
                let ran = Tool {
                    stdin: Some(input()?),
                    ..k.tool(&program, args, DUMP_TIMEOUT)
                }
                .run()
                .await?;
                refused_unless_ok(&ran, &backup)?;
            }
            Kind::Redis => {
                // The snapshot goes into the service's data dir as a file of ours (never
                // through a name the service could have planted), is checked there as the
                // service's uid, and only then replaces the data.
                let data = self.data_dir(&name);
                let partial = data.join("restore.rdb.partial");
                let _ = std::fs::remove_file(&partial);
                copy_private(&b.path, &partial, k.row.uid)
                    .map_err(io(format!("copying to {}", partial.display())))?;
                let checker = std::path::Path::new("/usr/bin/redis-check-rdb");
                let opened = std::fs::File::open(&partial);
                let ran = match opened {
                    Ok(f) => {
                        Tool {
                            env: Vec::new(),
                            package: "redis-tools",
                            stdin: Some(f),
                            ..k.tool(checker, vec!["/dev/stdin".into()], DUMP_TIMEOUT)
                        }
                        .run()
                        .await
                    }
                    Err(e) => Err(ToolError::Spawn {
                        program: partial.display().to_string(),
                        source: e,
                    }),
                };
                let checked = match ran {
                    Ok(r) => refused_unless_ok(&r, &backup),
                    Err(e) => Err(e.into()),
                };
                if let Err(e) = checked {
                    let _ = std::fs::remove_file(&partial);
                    return Err(e);
                }
                let stopping = self.inner.running.lock().await.remove(&name);
                if let Some(s) = stopping {
                    s.end(Order::Stop).await;
                }
                // rename() replaces whatever has the name (a planted symlink included)
                // without following it.
                let placed = std::fs::rename(&partial, data.join("restore.rdb"));
                // Running again whatever happened: on its old data if the snapshot is not
                // in place.
                self.run_service(&k, None).await?;
                placed.map_err(io("placing the snapshot"))?;
                self.wait_up(&name, CREATE_WITHIN).await?;
                self.wait_aof_rewritten(&k, ip).await?;
            }
        }
        tracing::info!(addon = %name, backup = %b.name, "add-on restored from a backup");
        Ok(backup_view(&name, &b))
    }

    pub async fn set_schedule(
        &self,
        name: String,
        schedule: Option<BackupSchedule>,
    ) -> Result<paas_api::Addon, AddonError> {
        if let Some(s) = schedule {
            if s.every_secs < MIN_EVERY_SECS || s.keep == 0 {
                return Err(AddonError::Invalid(format!(
                    "a schedule needs --every of at least {MIN_EVERY_SECS}s and --keep of at least 1"
                )));
            }
        }
        let n = name.clone();
        self.inner
            .s
            .store
            .tx(move |tx| {
                let row = store::addons::find(tx, &n)?.ok_or(AddonError::NotFound(n))?;
                store::addons::set_schedule(
                    tx,
                    row.id,
                    schedule.map(|s| s.every_secs as i64),
                    schedule.map(|s| i64::from(s.keep)),
                )?;
                Ok::<_, AddonError>(())
            })
            .await?;
        self.info(name).await
    }

    /// Runs due scheduled backups every few seconds and prunes old ones; until paasd stops.
    pub fn start_scheduler(&self) {
        let this = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(2));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                this.run_due_backups().await;
            }
        });
    }

    async fn run_due_backups(&self) {
        let Ok(all) = self.known_all().await else {
            return;
        };
        for k in all {
            let Some(every) = k.row.backup_every.and_then(|e| u64::try_from(e).ok()) else {
                continue;
            };
            let keep = k
                .row
                .backup_keep
                .and_then(|k| usize::try_from(k).ok())
                .unwrap_or(1);
            let dir = self.inner.s.backups.join(&k.row.name);
            let newest = backups::list(&dir)
                .into_iter()
                .filter(|b| b.scheduled)
                .map(|b| b.created)
                .max();
            let due = newest.is_none_or(|t| {
                (chrono::Utc::now() - t).num_seconds() >= i64::try_from(every).unwrap_or(i64::MAX)
            });
            if !due || self.state_of(&k.row.name).await != AddonState::Up {
                continue;
            }
            if let Err(e) = self.backup(k.row.name.clone(), true).await {
                tracing::warn!(addon = %k.row.name, error = %e, "scheduled backup failed");
                continue;
            }
            for old in backups::beyond(&backups::list(&dir), keep) {
                match std::fs::remove_file(&old.path) {
                    Ok(()) => {
                        tracing::info!(addon = %k.row.name, backup = %old.name, "pruned a scheduled backup")
                    }
                    Err(e) => {
                        tracing::warn!(addon = %k.row.name, backup = %old.name, error = %e, "could not prune a backup")
                    }
                }
            }
        }
    }

    // ---- internals ----

    async fn known(&self, name: &str) -> Result<Known, AddonError> {
        validate::app_name(name).map_err(|_| AddonError::NotFound(name.to_string()))?;
        let n = name.to_string();
        let row = self
            .inner
            .s
            .store
            .tx(move |tx| store::addons::find(tx, &n))
            .await?
            .ok_or_else(|| AddonError::NotFound(name.to_string()))?;
        self.open(row)
    }

    async fn known_all(&self) -> Result<Vec<Known>, AddonError> {
        let rows = self.inner.s.store.tx(store::addons::list).await?;
        rows.into_iter().map(|r| self.open(r)).collect()
    }

    fn open(&self, row: store::addons::AddonRow) -> Result<Known, AddonError> {
        let kind =
            Kind::parse(&row.kind).ok_or_else(|| AddonError::UnknownKind(row.kind.clone()))?;
        let password = String::from_utf8(self.inner.s.secrets.open(SEAL_CONTEXT, &row.password)?)
            .map_err(|_| AddonError::Secret(SecretError::Decrypt))?;
        Ok(Known {
            row,
            kind,
            password,
        })
    }

    fn data_dir(&self, name: &str) -> PathBuf {
        self.inner.s.data.join(name).join("data")
    }

    /// `addons/NAME/data`: the service's data disk (`data.img`, `disk_mb`, mounted there
    /// until the service is destroyed), its uid's alone (PostgreSQL refuses a data dir others
    /// can read). `fresh`: a leftover of an earlier service of the same name is removed.
    fn prepare_data_dir(&self, k: &Known, fresh: bool) -> Result<(), AddonError> {
        let base = self.inner.s.data.join(&k.row.name);
        let data = base.join("data");
        if fresh && base.exists() {
            if disk_image::is_mounted(&data) {
                disk_image::unmount_path(&data);
            }
            std::fs::remove_dir_all(&base).map_err(io(format!("removing {}", base.display())))?;
        }
        std::fs::create_dir_all(&data).map_err(io(format!("creating {}", data.display())))?;
        for (dir, mode) in [(&self.inner.s.data, 0o711), (&base, 0o700)] {
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode))
                .map_err(io(format!("chmod {}", dir.display())))?;
        }
        let image = base.join("data.img");
        let mounted = disk_image::mount_kept(&image, &data, k.row.disk_mb * 1024 * 1024, k.row.uid)
            .map_err(|e| AddonError::Failed(format!("the data disk: {e}")))?;
        if !mounted {
            tracing::warn!(addon = %k.row.name, "mkfs.ext4 is missing (install e2fsprogs): the add-on's data has no size limit");
        }
        std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o700))
            .map_err(io(format!("chmod {}", data.display())))?;
        std::os::unix::fs::chown(&data, Some(k.row.uid), Some(k.row.uid))
            .map_err(io(format!("chown {}", data.display())))?;
        Ok(())
    }

    async fn address(&self, name: &str) -> Result<Ipv4Addr, AddonError> {
        let lease = self
            .inner
            .s
            .addresses
            .allocate(&format!("{SERVICE_PREFIX}{name}"), None)
            .await?;
        Ok(lease.ip)
    }

    /// The service's address without taking one: a read must never hand a destroyed
    /// service an address again.
    async fn held_address(&self, name: &str) -> Result<Ipv4Addr, AddonError> {
        self.inner
            .s
            .addresses
            .held(&format!("{SERVICE_PREFIX}{name}"))
            .await?
            .ok_or_else(|| AddonError::NotUp("it has no address (it is not running)".into()))
    }

    async fn run_service(
        &self,
        k: &Known,
        adopted: Option<paas_runtime::Instance>,
    ) -> Result<(), AddonError> {
        if adopted.is_none() {
            self.prepare_data_dir(k, false)?;
        }
        let ip = self.address(&k.row.name).await?;
        let memory_mb = k.row.memory_mb;
        let spec = Spec {
            name: k.row.name.clone(),
            kind: k.kind,
            version: k.row.version.clone(),
            uid: k.row.uid,
            password: k.password.clone(),
            ip,
            data_dir: self.data_dir(&k.row.name),
            limits: Limits {
                memory_bytes: Some(memory_mb * 1024 * 1024),
                cpu_percent: Some(CPU_PERCENT),
                pids: Some(PIDS),
                disk_bytes: Some(64 * 1024 * 1024),
            },
        };
        // Never two servers on one data dir: an old one stops first (the lock is let go
        // before waiting for it, up to 30 s).
        let old = self.inner.running.lock().await.remove(&k.row.name);
        if let Some(old) = old {
            old.end(Order::Stop).await;
        }
        let s = Service::spawn(Arc::clone(&self.inner.s.runtime), spec, adopted);
        self.inner
            .running
            .lock()
            .await
            .insert(k.row.name.clone(), s);
        Ok(())
    }

    async fn state_of(&self, name: &str) -> AddonState {
        self.inner
            .running
            .lock()
            .await
            .get(name)
            .map_or(AddonState::Stopped, |s| s.status().state)
    }

    async fn wait_up(&self, name: &str, within: Duration) -> Result<(), AddonError> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let status = self
                .inner
                .running
                .lock()
                .await
                .get(name)
                .map(Service::status);
            let Some(st) = status else {
                return Err(AddonError::NotUp("it is not running".into()));
            };
            match st.state {
                AddonState::Up => return Ok(()),
                AddonState::Crashed | AddonState::Stopped => {
                    let tail: Vec<String> = st.recent.iter().rev().take(5).rev().cloned().collect();
                    return Err(AddonError::NotUp(format!(
                        "{}; its last output: {}",
                        st.last_error.unwrap_or_else(|| "it stopped".into()),
                        tail.join(" | ")
                    )));
                }
                AddonState::Starting => {}
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(AddonError::NotUp(format!(
                    "no answer within {} s",
                    within.as_secs()
                )));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// After a Redis restore: the entry script turns the AOF on, which rewrites it from the
    /// loaded snapshot; the restore is done when that rewrite is.
    async fn wait_aof_rewritten(&self, k: &Known, ip: Ipv4Addr) -> Result<(), AddonError> {
        let deadline = tokio::time::Instant::now() + CREATE_WITHIN;
        loop {
            let (program, mut args) = k.kind.client(&k.row.name, &k.row.version, ip);
            args.extend(["info".to_string(), "persistence".to_string()]);
            let ran = k.tool(&program, args, Duration::from_secs(5)).run().await?;
            let info = ran.stdout.replace('\r', "");
            let has = |l: &str| info.lines().any(|x| x == l);
            if has("aof_enabled:1")
                && has("aof_rewrite_in_progress:0")
                && has("aof_rewrite_scheduled:0")
            {
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(AddonError::Failed(
                    "the restored data was not written to the append-only file in time".into(),
                ));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Stops the service and deletes it: container, address, row, data. Backups stay.
    async fn remove(&self, k: &Known) -> Result<(), AddonError> {
        let name = k.row.name.clone();
        let stopping = self.inner.running.lock().await.remove(&name);
        if let Some(s) = stopping {
            s.end(Order::Stop).await;
        }
        self.inner
            .s
            .addresses
            .release(&format!("{SERVICE_PREFIX}{name}"))
            .await;
        let id = k.row.id;
        self.inner
            .s
            .store
            .tx(move |tx| store::addons::delete(tx, id))
            .await?;
        let base = self.inner.s.data.join(&name);
        if disk_image::is_mounted(&base.join("data")) {
            disk_image::unmount_path(&base.join("data"));
        }
        if base.exists() {
            tokio::task::spawn_blocking(move || std::fs::remove_dir_all(&base))
                .await
                .map_err(|e| AddonError::Failed(format!("removing data: {e}")))?
                .map_err(io("removing the add-on's data"))?;
        }
        self.apply_links().await
    }

    async fn link_locked(&self, name: &str, app: &str) -> Result<paas_api::AddonLink, AddonError> {
        let k = self.known(name).await?;
        let env = self.inner.s.apps.env(app.to_string(), false).await?;
        let (n, a) = (name.to_string(), app.to_string());
        let var = self
            .inner
            .s
            .store
            .tx(move |tx| {
                let app_row = crate::apps::find(tx, &a)?;
                let links = store::addons::links_of_app(tx, app_row.id)?;
                if let Some(l) = links.iter().find(|l| l.addon == n) {
                    return Err(AddonError::AlreadyLinked {
                        addon: n,
                        app: a,
                        env_var: l.env_var.clone(),
                    });
                }
                let taken =
                    |v: &str| links.iter().any(|l| l.env_var == v) || env.vars.contains_key(v);
                let default = k.kind.default_env_var();
                let own = format!("{}_URL", n.to_uppercase().replace('-', "_"));
                let var = if !taken(default) {
                    default.to_string()
                } else if !taken(&own) {
                    own
                } else {
                    return Err(AddonError::EnvTaken {
                        app: a,
                        env_var: own,
                    });
                };
                store::addons::insert_link(tx, k.row.id, app_row.id, &var, store::now())?;
                Ok(var)
            })
            .await?;
        let ip = self.held_address(name).await?;
        let url = k.kind.url(name, &k.password, ip);
        let done = async {
            self.apply_links().await?;
            let mut patch = BTreeMap::new();
            patch.insert(var.clone(), Some(url));
            Ok::<_, AddonError>(self.inner.s.apps.patch_env(app.to_string(), patch).await?)
        }
        .await;
        // Once the var is set the link stands; a rollout that fails leaves the app's running
        // instances as they were (the next restart or deploy picks the var up).
        if let Ok(Some(r)) = done.as_ref().map(|c| c.release.clone()) {
            if let Err(e) = self.roll(app, r.version).await {
                tracing::warn!(addon = %name, %app, error = %e, "linked, but the app's rolling restart failed");
            }
        }
        let done = done.map(drop);
        if let Err(e) = done {
            let (id, a) = (k.row.id, app.to_string());
            let _ = self
                .inner
                .s
                .store
                .tx(move |tx| {
                    if let Some(app_row) = store::apps::find(tx, &a)? {
                        store::addons::delete_link(tx, id, app_row.id)?;
                    }
                    Ok::<_, StoreError>(())
                })
                .await;
            let _ = self.apply_links().await;
            return Err(e);
        }
        tracing::info!(addon = %name, %app, env_var = %var, "add-on linked");
        Ok(paas_api::AddonLink {
            app: app.to_string(),
            env_var: var,
        })
    }

    async fn unlink_locked(&self, name: &str, app: &str) -> Result<(), AddonError> {
        let (n, a) = (name.to_string(), app.to_string());
        let var = self
            .inner
            .s
            .store
            .tx(move |tx| {
                let app_row = crate::apps::find(tx, &a)?;
                let addon =
                    store::addons::find(tx, &n)?.ok_or_else(|| AddonError::NotFound(n.clone()))?;
                let link = store::addons::links_of_app(tx, app_row.id)?
                    .into_iter()
                    .find(|l| l.addon == n)
                    .ok_or(AddonError::NotLinked { addon: n, app: a })?;
                store::addons::delete_link(tx, addon.id, app_row.id)?;
                Ok::<_, AddonError>(link.env_var)
            })
            .await?;
        let mut patch = BTreeMap::new();
        patch.insert(var.clone(), None);
        let changed = self.inner.s.apps.patch_env(app.to_string(), patch).await;
        if let Ok(Some(r)) = changed.as_ref().map(|c| c.release.clone()) {
            if let Err(e) = self.roll(app, r.version).await {
                tracing::warn!(addon = %name, %app, error = %e, "unlinked, but the app's rolling restart failed");
            }
        }
        // Instances started before the rollout held the URL; they are gone now. The link's
        // row is gone whatever happened above, so its element goes too.
        self.apply_links().await?;
        changed?;
        tracing::info!(addon = %name, %app, env_var = %var, "add-on unlinked");
        Ok(())
    }

    /// Every linked app's config var holds the service's URL as it is now: a service whose
    /// address changed (restored on a host with another subnet) gets its apps updated.
    async fn refresh_urls(&self) -> Result<(), AddonError> {
        let links = self.inner.s.store.tx(store::addons::links).await?;
        for l in links {
            let k = self.known(&l.addon).await?;
            let Ok(ip) = self.held_address(&l.addon).await else {
                continue;
            };
            let url = k.kind.url(&l.addon, &k.password, ip);
            let env = self.inner.s.apps.env(l.app.clone(), true).await?;
            if env.vars.get(&l.env_var) == Some(&url) {
                continue;
            }
            tracing::info!(addon = %l.addon, app = %l.app, env_var = %l.env_var, "the add-on's address changed; updating the app's config");
            let mut patch = BTreeMap::new();
            patch.insert(l.env_var.clone(), Some(url));
            let changed = self.inner.s.apps.patch_env(l.app.clone(), patch).await?;
            if let Some(r) = changed.release {
                self.roll(&l.app, r.version).await?;
            }
        }
        Ok(())
    }

    /// A rolling restart onto the release with the new config (nothing to do before the
    /// first deploy).
    async fn roll(&self, app: &str, version: u32) -> Result<(), AddonError> {
        match self
            .inner
            .s
            .supervisor
            .config_changed(app.to_string(), version)
            .await
        {
            Ok(()) | Err(SupervisorError::NotDeployed(_)) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Makes the network policy's `links` hold exactly the links on record: every element
    /// applied is remembered, and what is no longer on record is taken out.
    async fn apply_links(&self) -> Result<(), AddonError> {
        let mut applied = self.inner.applied.lock().await;
        let links = self.inner.s.store.tx(store::addons::links).await?;
        let kinds: HashMap<String, Kind> = self
            .known_all()
            .await?
            .into_iter()
            .map(|k| (k.row.name.clone(), k.kind))
            .collect();
        let mut want = Vec::new();
        for l in &links {
            let (Some(kind), Ok(group)) = (kinds.get(&l.addon), u32::try_from(l.app_id)) else {
                continue;
            };
            let Ok(ip) = self.held_address(&l.addon).await else {
                continue;
            };
            want.push((group, ip, kind.port()));
        }
        let had = applied.clone();
        let net = self.inner.s.runtime.network();
        for w in want.iter().filter(|w| !had.contains(w)) {
            net.link(w.0, w.1, w.2)
                .await
                .map_err(|e| AddonError::Failed(format!("network policy: {e}")))?;
        }
        for h in had.iter().filter(|h| !want.contains(h)) {
            net.unlink(h.0, h.1, h.2)
                .await
                .map_err(|e| AddonError::Failed(format!("network policy: {e}")))?;
        }
        *applied = want;
        Ok(())
    }

    async fn view(
        &self,
        k: &Known,
        links: &[store::addons::LinkRow],
        detail: bool,
    ) -> Result<paas_api::Addon, AddonError> {
        let ip = self
            .inner
            .s
            .addresses
            .held(&format!("{SERVICE_PREFIX}{}", k.row.name))
            .await?;
        let status = self
            .inner
            .running
            .lock()
            .await
            .get(&k.row.name)
            .map(Service::status);
        let (every, keep) = (
            k.row.backup_every,
            k.row.backup_keep.and_then(|k| u32::try_from(k).ok()),
        );
        Ok(paas_api::Addon {
            name: k.row.name.clone(),
            kind: k.kind.as_str().into(),
            version: k.row.version.clone(),
            state: status.as_ref().map_or(AddonState::Stopped, |s| s.state),
            address: ip.map_or_else(|| "-".into(), |ip| format!("{ip}:{}", k.kind.port())),
            links: links
                .iter()
                .filter(|l| l.addon == k.row.name)
                .map(|l| paas_api::AddonLink {
                    app: l.app.clone(),
                    env_var: l.env_var.clone(),
                })
                .collect(),
            memory_mb: k.row.memory_mb,
            disk_mb: k.row.disk_mb,
            disk_used_mb: disk_image::usage(&self.data_dir(&k.row.name))
                .filter(|_| disk_image::is_mounted(&self.data_dir(&k.row.name)))
                .map(|(used, _)| used / (1024 * 1024)),
            restarts: status.as_ref().map_or(0, |s| s.restarts),
            last_error: status.as_ref().and_then(|s| s.last_error.clone()),
            backup_schedule: match (every, keep) {
                (Some(e), Some(keep)) => Some(BackupSchedule {
                    every_secs: u64::try_from(e).unwrap_or(0),
                    keep,
                }),
                _ => None,
            },
            recent_output: if detail {
                status
                    .map(|s| s.recent.into_iter().collect())
                    .unwrap_or_default()
            } else {
                Vec::new()
            },
            created_at: crate::apps::rfc3339(k.row.created_at),
        })
    }
}

fn refused_unless_ok(ran: &Ran, backup: &str) -> Result<(), AddonError> {
    if ran.ok() {
        return Ok(());
    }
    let why = if ran.stderr.trim().is_empty() {
        ran.stdout.trim()
    } else {
        ran.stderr.trim()
    };
    let last: Vec<&str> = why.lines().rev().take(3).collect();
    Err(AddonError::RestoreRefused(format!(
        "backup '{backup}' could not be restored, nothing was changed: {}",
        last.into_iter().rev().collect::<Vec<_>>().join(" | ")
    )))
}

fn client_package(kind: Kind) -> &'static str {
    match kind {
        Kind::Postgres => "postgresql-client",
        Kind::Redis => "redis-tools",
    }
}

/// `APP-KIND`, then `APP-KIND-2`...: the first name no add-on has.
fn free_name(tx: &store::Tx<'_>, app: &str, kind: Kind) -> Result<String, StoreError> {
    let base = format!("{app}-{}", kind.as_str());
    let mut n = 1;
    loop {
        let name = if n == 1 {
            base.clone()
        } else {
            format!("{base}-{n}")
        };
        if store::addons::find(tx, &name)?.is_none() {
            return Ok(name);
        }
        n += 1;
    }
}

fn backup_view(addon: &str, b: &backups::BackupFile) -> paas_api::Backup {
    paas_api::Backup {
        name: b.name.clone(),
        addon: addon.to_string(),
        kind: b.kind.as_str().into(),
        bytes: b.bytes,
        scheduled: b.scheduled,
        created_at: b.created.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
    }
}

use std::os::unix::fs::OpenOptionsExt;

/// Whether the service answers: `pg_isready` accepts connections, or Redis says PONG
/// (not LOADING).
pub(crate) async fn probe(spec: &Spec) -> bool {
    let (program, args, env, package) = match spec.kind {
        Kind::Postgres => (
            kind::pg_bin(&spec.version, "pg_isready"),
            vec![
                "-q".to_string(),
                "-h".into(),
                spec.ip.to_string(),
                "-p".into(),
                spec.kind.port().to_string(),
                "-t".into(),
                "3".into(),
                // Without a user it asks the passwd file for the uid's name, which has none.
                "-U".into(),
                "postgres".into(),
                "-d".into(),
                spec.kind.database(&spec.name),
            ],
            Vec::new(),
            "postgresql-client",
        ),
        Kind::Redis => {
            let (program, mut args) = spec.kind.client(&spec.name, &spec.version, spec.ip);
            args.push("ping".into());
            (
                program,
                args,
                spec.kind.client_env(&spec.password),
                "redis-tools",
            )
        }
    };
    let ran = Tool {
        program: &program,
        args,
        env,
        uid: spec.uid,
        timeout: Duration::from_secs(5),
        package,
        stdin: None,
        stdout: None,
    }
    .run()
    .await;
    match (spec.kind, ran) {
        (Kind::Postgres, Ok(r)) => r.ok(),
        (Kind::Redis, Ok(r)) => r.ok() && r.stdout.trim() == "PONG",
        (_, Err(e)) => {
            tracing::debug!(addon = %spec.name, error = %e, "probe could not run");
            false
        }
    }
}

/// Copies `from` to a new file `to` (refused if anything has that name, symlinks included),
/// owned by `uid`, 0600, synced.
fn copy_private(from: &Path, to: &Path, uid: u32) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut out = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(to)?;
    let copied = std::io::copy(&mut std::fs::File::open(from)?, &mut out)
        .and_then(|_| std::os::unix::fs::fchown(&out, Some(uid), Some(uid)))
        .and_then(|()| out.sync_all());
    if copied.is_err() {
        let _ = std::fs::remove_file(to);
    }
    copied
}
