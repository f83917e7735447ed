//! Builds (DESIGN section 8): an uploaded source tarball becomes a slug and a release.
//! The service ([`Builds`]) and its shared state live here; each job has its own file:
//! `intake.rs` (checks, claim, upload, deployment record), `manifest.rs` (the source's
//! app.json: warnings, config vars, formation), `pipeline.rs` (detect, compile, process
//! types, slug: the order of the phases), `release.rs` (release, predeploy and release
//! phase, rollout, postdeploy, slug clean-up), `destroy.rs` (destroying an app). Must not speak HTTP, hold SQL,
//! or mount anything (the runtime does).

pub mod buildpacks;
mod destroy;
pub mod gitpacks;
mod intake;
mod manifest;
mod pipeline;
pub mod procfile;
mod release;
pub mod step;

use std::fs;
use std::io;
use std::os::unix::fs::{lchown, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use paas_api::{DeployPhase, PhaseTiming};

use crate::apps::{AppError, Apps};
use crate::config::{BuildConfig, MiB, StatePaths};
use crate::disk_image;
use crate::locks::{AppLocks, Busy};
use crate::oneoff::OneOffs;
use crate::slugs::Slugs;
use crate::store::{self, Store, StoreError};
use crate::tarball::ExtractError;
use paas_runtime::Runtime;

#[derive(Debug, thiserror::Error)]
pub enum DeployError {
    #[error(transparent)]
    App(#[from] AppError),
    #[error("a deploy of '{app}' (by {user}) has been running for {secs} s; wait for it to finish (see `paas releases {app}`)")]
    Busy {
        app: String,
        user: String,
        secs: u64,
    },
    #[error("only {free_mb} MB are free under {dir} and deploys need at least {floor} (build.min_free_disk_mb); free some space first")]
    DiskLow {
        dir: PathBuf,
        free_mb: u64,
        floor: MiB,
    },
    /// The archive itself is unacceptable.
    #[error(transparent)]
    Source(ExtractError),
    #[error("the upload is larger than {limit} (build.max_upload_mb)")]
    UploadTooBig { limit: MiB },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{context}: {source}")]
    Io { context: String, source: io::Error },
    #[error("the build's disk: {0}")]
    Disk(#[from] disk_image::DiskError),
}

impl From<Busy> for DeployError {
    fn from(b: Busy) -> DeployError {
        DeployError::Busy {
            app: b.app,
            user: b.who,
            secs: b.secs,
        }
    }
}

fn io_err(context: impl Into<String>) -> impl FnOnce(io::Error) -> DeployError {
    let context = context.into();
    move |source| DeployError::Io { context, source }
}

#[derive(Clone)]
pub struct Builds {
    inner: Arc<Inner>,
}

struct Inner {
    apps: Apps,
    store: Store,
    runtime: Arc<Runtime>,
    oneoffs: OneOffs,
    locks: AppLocks,
    cfg: BuildConfig,
    buildpacks_dir: PathBuf,
    paths: StatePaths,
    slugs: Slugs,
    /// Rolls a built release out.
    supervisor: crate::supervisor::Supervisor,
    /// The app log stream: build output (source `build`) and deploy events go there too.
    logs: crate::logs::Logs,
    addresses: crate::addresses::Addresses,
}

/// A build's scratch dir (on its disk image, when the host can make one), removed when the
/// build ends however it ends. A finished build calls [`Scratch::remove`] (a blocking
/// thread: a `node_modules` tree takes a while and must not stall an async worker); the
/// `Drop` is for the paths that end early (a refused upload leaves an empty dir) and must
/// leave nothing behind either.
struct Scratch(PathBuf, Option<disk_image::Disk>);

impl Scratch {
    async fn remove(mut self) {
        let dir = std::mem::take(&mut self.0);
        let disk = self.1.take();
        let removed = tokio::task::spawn_blocking(move || {
            // Unmounting drops everything on the image at once; then only the mount point
            // is left to remove.
            if let Some(d) = disk {
                d.unmount();
            }
            remove_tree(&dir, "a build dir")
        })
        .await;
        if let Err(e) = removed {
            tracing::warn!(error = %e, "removing a build dir failed");
        }
    }

    /// Makes the dir, on a disk image of `size` bytes when the host can make one.
    fn create(dir: PathBuf, size: u64) -> Result<Scratch, DeployError> {
        std::fs::create_dir_all(&dir).map_err(io_err("creating the build dir"))?;
        let mut s = Scratch(dir, None);
        let image = s.0.with_extension("img");
        match disk_image::mount(&image, &s.0, size, 0, false) {
            Ok(Some(d)) => s.1 = Some(d),
            Ok(None) => tracing::warn!(
                "mkfs.ext4 not found: this build has no disk quota (install e2fsprogs)"
            ),
            Err(e) => return Err(e.into()),
        }
        Ok(s)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if let Some(d) = self.1.take() {
            d.unmount();
        }
        if !self.0.as_os_str().is_empty() {
            remove_tree(&self.0, "a build dir");
        }
    }
}

/// Removes a tree; a missing one is fine, a failure is logged (never fatal: it only costs
/// disk). Blocking: call it from a blocking thread or a `Drop` that runs on one.
fn remove_tree(dir: &Path, what: &str) {
    if let Err(e) = fs::remove_dir_all(dir) {
        if e.kind() != io::ErrorKind::NotFound {
            tracing::warn!(dir = %dir.display(), error = %e, "could not remove {what}");
        }
    }
}

/// Why a build failed, for the user: a stable code and a message that says what to do.
#[derive(Debug)]
struct Failure {
    code: &'static str,
    message: String,
}

impl Failure {
    fn new(code: &'static str, message: impl Into<String>) -> Failure {
        Failure {
            code,
            message: message.into(),
        }
    }
    fn internal(e: impl std::fmt::Display) -> Failure {
        tracing::error!(error = %e, "build failed inside paasd");
        Failure::new("internal", format!("paasd failed during the build: {e}"))
    }
}

/// The services a build talks to.
pub struct Services {
    pub apps: Apps,
    pub store: Store,
    pub runtime: Arc<Runtime>,
    /// Release phases run as one-offs.
    pub oneoffs: OneOffs,
    /// The per-app lock, shared with the supervisor.
    pub locks: AppLocks,
    pub slugs: Slugs,
    /// Rolls a built release out.
    pub supervisor: crate::supervisor::Supervisor,
    /// Build output and deploy events go into the app's log stream.
    pub logs: crate::logs::Logs,
    /// Build steps that fetch dependencies get an address on the bridge.
    pub addresses: crate::addresses::Addresses,
}

impl Builds {
    pub fn new(
        services: Services,
        cfg: BuildConfig,
        buildpacks_dir: PathBuf,
        paths: StatePaths,
    ) -> Builds {
        let Services {
            apps,
            store,
            runtime,
            oneoffs,
            locks,
            slugs,
            supervisor,
            logs,
            addresses,
        } = services;
        Builds {
            inner: Arc::new(Inner {
                slugs,
                supervisor,
                apps,
                store,
                runtime,
                oneoffs,
                locks,
                cfg,
                buildpacks_dir,
                paths,
                logs,
                addresses,
            }),
        }
    }

    /// The most an upload may be, compressed.
    pub fn upload_limit(&self) -> u64 {
        self.inner.cfg.max_upload_mb.bytes()
    }

    /// At start-up: build dirs and `building` deployments of a previous paasd are dead.
    pub async fn recover(&self) -> Result<(), StoreError> {
        let dir = self.inner.paths.builds();
        let caches = self.inner.paths.cache("");
        let removed = tokio::task::spawn_blocking(move || {
            disk_image::unmount_leftovers(&[dir.clone(), caches]);
            remove_tree(&dir, "leftover build dirs")
        })
        .await;
        if let Err(e) = removed {
            tracing::warn!(error = %e, "removing leftover build dirs failed");
        }
        let n = self
            .inner
            .store
            .tx(|tx| store::deployments::fail_unfinished(tx, store::now()))
            .await?;
        if n > 0 {
            tracing::warn!(
                count = n,
                "marked deploys interrupted by a paasd stop as failed"
            );
        }
        Ok(())
    }
}

fn timing(phase: DeployPhase, d: Duration) -> PhaseTiming {
    PhaseTiming {
        phase,
        ms: d.as_millis() as u64,
    }
}

/// Creates `dir` with `mode`, owned by `uid` (and the group of the same number).
fn make_dir(dir: &Path, mode: u32, uid: u32) -> io::Result<()> {
    fs::create_dir_all(dir)?;
    fs::set_permissions(dir, fs::Permissions::from_mode(mode))?;
    lchown(dir, Some(uid), Some(uid))
}

/// The app's build cache, owned by its uid. A cache another uid owns (written before apps
/// had uids of their own) could not be written by this build: its contents are dropped, as
/// a cache's may be. Returns whether they were.
fn own_cache(dir: &Path, uid: u32) -> io::Result<bool> {
    use std::os::unix::fs::MetadataExt;
    let dropped = match fs::symlink_metadata(dir) {
        Ok(m) if m.uid() != uid => {
            empty_dir(dir)?;
            true
        }
        Ok(_) => false,
        Err(e) if e.kind() == io::ErrorKind::NotFound => false,
        Err(e) => return Err(e),
    };
    make_dir(dir, 0o700, uid)?;
    Ok(dropped)
}

/// Removes what is in `dir`, keeping `dir` (it may be a mount point).
fn empty_dir(dir: &Path) -> io::Result<()> {
    for e in fs::read_dir(dir)? {
        let p = e?.path();
        if fs::symlink_metadata(&p)?.is_dir() {
            fs::remove_dir_all(&p)?;
        } else {
            fs::remove_file(&p)?;
        }
    }
    Ok(())
}

/// Mounts the app's build cache image over its cache dir (made on first use, `size`
/// bytes, owned by `uid`). A cache dir from before the images is dropped first: its files
/// would be hidden under the mount, taking space nobody could reach.
fn mount_cache(dir: &Path, size: u64, uid: u32) -> Result<Option<disk_image::Disk>, DeployError> {
    fs::create_dir_all(dir).map_err(io_err("creating the build cache dir"))?;
    let image = dir.with_extension("img");
    if !image.exists() {
        empty_dir(dir).map_err(io_err("dropping a build cache from before disk images"))?;
    }
    let disk = disk_image::mount(&image, dir, size, uid, true)?;
    if disk.is_some() {
        // mkfs's lost+found is no business of a buildpack's.
        let _ = fs::remove_dir(dir.join("lost+found"));
    }
    Ok(disk)
}
