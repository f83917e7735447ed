//! Builds (DESIGN section 8): an uploaded source tarball becomes a slug and a release.
//! [`Builds::deploy`] checks the app, the disk and the per-app lock, unpacks the upload as it
//! streams in, records the deployment, and hands the rest (detect, compile, slug, release,
//! release phase) to a task of its own that outlives the client's connection. Owns the order
//! of those phases and the deployment record; must not speak HTTP, hold SQL, or mount
//! anything (the runtime does).

pub mod buildpacks;
pub mod extract;
pub mod procfile;
pub mod slug;
pub mod step;
pub mod upload;

use std::collections::HashMap;
use std::fs;
use std::io::{self, Read, Write};
use std::os::unix::fs::{lchown, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use paas_api::{
    self as api, DeployEvent, DeployPhase, DeploymentStatus, PhaseTiming, ReleaseStatus, RunEvent,
};
use tokio::sync::mpsc;

use crate::apps::{AppError, Apps, BuildContext};
use crate::config::BuildConfig;
use crate::store::{self, deployments::DeploymentRow, releases::Runs, Store, StoreError};
use buildpacks::Buildpack;
use paas_runtime::{cgroups::Limits, Networking, Runtime, APP_GID, APP_UID};
use step::{Mounts, Outcome, Step};

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
    #[error("only {free_mb} MB are free under {dir} and deploys need at least {floor_mb} MB (build.min_free_disk_mb); free some space first")]
    DiskLow {
        dir: PathBuf,
        free_mb: u64,
        floor_mb: u64,
    },
    /// The archive itself is unacceptable.
    #[error(transparent)]
    Source(extract::ExtractError),
    #[error("the upload is larger than {limit_mb} MB (build.max_upload_mb)")]
    UploadTooBig { limit_mb: u64 },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{context}: {source}")]
    Io { context: String, source: io::Error },
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
    cfg: BuildConfig,
    buildpacks_dir: PathBuf,
    state_dir: PathBuf,
    slugs: slug::Slugs,
    /// Rolls a built release out.
    supervisor: crate::supervisor::Supervisor,
    /// The app log stream: build output (source `build`) and deploy events go there too.
    logs: crate::logs::Logs,
    /// Apps with a deploy in progress: who started it and when.
    busy: Mutex<HashMap<String, (String, Instant)>>,
}

/// Holds an app's deploy lock; dropping it lets the next deploy in.
struct Lock {
    inner: Arc<Inner>,
    app: String,
}

impl Drop for Lock {
    fn drop(&mut self) {
        self.inner
            .busy
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&self.app);
    }
}

/// A build's scratch dir, removed when the build ends however it ends.
struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        if let Err(e) = fs::remove_dir_all(&self.0) {
            if e.kind() != io::ErrorKind::NotFound {
                tracing::warn!(dir = %self.0.display(), error = %e, "could not remove a build dir");
            }
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
    /// Rolls a built release out.
    pub supervisor: crate::supervisor::Supervisor,
    /// Build output and deploy events go into the app's log stream.
    pub logs: crate::logs::Logs,
}

impl Builds {
    pub fn new(
        services: Services,
        cfg: BuildConfig,
        buildpacks_dir: PathBuf,
        state_dir: PathBuf,
    ) -> Builds {
        let Services {
            apps,
            store,
            runtime,
            supervisor,
            logs,
        } = services;
        Builds {
            inner: Arc::new(Inner {
                slugs: slug::Slugs::new(&state_dir),
                supervisor,
                apps,
                store,
                runtime,
                cfg,
                buildpacks_dir,
                state_dir,
                logs,
                busy: Mutex::new(HashMap::new()),
            }),
        }
    }

    pub fn slugs(&self) -> &slug::Slugs {
        &self.inner.slugs
    }

    /// The most an upload may be, compressed.
    pub fn upload_limit(&self) -> u64 {
        self.inner.cfg.max_upload_mb.saturating_mul(1 << 20)
    }

    /// At start-up: build dirs and `building` deployments of a previous paasd are dead.
    pub async fn recover(&self) -> Result<(), StoreError> {
        let dir = self.inner.state_dir.join("builds");
        if dir.exists() {
            if let Err(e) = fs::remove_dir_all(&dir) {
                tracing::warn!(dir = %dir.display(), error = %e, "could not remove leftover build dirs");
            }
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

    /// Destroys an app: its instances drain and stop, its rows go, the router forgets its
    /// hosts, then its slugs, build cache, git repo and log stream. Refused while a deploy of
    /// it runs (the deploy lock is held throughout, so none can start meanwhile).
    pub async fn destroy_app(&self, app: String) -> Result<(), DeployError> {
        self.inner.apps.info(app.clone()).await?;
        let _lock = self.lock(&app, "destroy")?;
        self.inner.supervisor.stop_app(&app).await;
        self.inner.apps.destroy(app.clone()).await?;
        self.inner.supervisor.routes_changed().await;
        self.forget(&app);
        self.inner.logs.remove_app(&app).await;
        Ok(())
    }

    /// Removes an app's slugs, build cache and git repo (the app was destroyed).
    fn forget(&self, app: &str) {
        self.inner.slugs.remove_app(app);
        crate::git::repos::remove(&crate::git::repos::path(&self.inner.state_dir, app));
        let cache = self.inner.state_dir.join("cache").join(app);
        if let Err(e) = fs::remove_dir_all(&cache) {
            if e.kind() != io::ErrorKind::NotFound {
                tracing::warn!(dir = %cache.display(), error = %e, "could not remove a build cache");
            }
        }
    }

    /// Receives and unpacks the upload arriving on `upload`, records the deployment and
    /// starts the build. Errors before the build starts come back here (the caller answers
    /// with them); from then on everything is reported as events, and the build goes on
    /// even if nobody reads them.
    pub async fn deploy(
        &self,
        app: String,
        user: String,
        upload: mpsc::Receiver<upload::Chunk>,
    ) -> Result<mpsc::Receiver<DeployEvent>, DeployError> {
        let started = Instant::now();
        let inner = &self.inner;
        let ctx = inner.apps.build_context(app.clone()).await?;
        self.check_disk()?;
        let lock = self.lock(&app, &user)?;
        let scratch = Scratch(
            inner
                .state_dir
                .join("builds")
                .join(format!("{app}-{}", inner.runtime.new_id("b"))),
        );
        let app_dir = scratch.0.join("app");
        make_dir(&app_dir, 0o755, true).map_err(io_err("creating the build dir"))?;

        let limits = extract::Limits {
            max_bytes: inner.cfg.max_source_mb.saturating_mul(1 << 20),
            max_entries: inner.cfg.max_source_files,
            max_path: inner.cfg.max_path_bytes,
        };
        let upload_limit = self.upload_limit();
        let dest = app_dir.clone();
        let unpacked = tokio::task::spawn_blocking(move || {
            let mut reader = upload::ChannelReader::new(upload, upload_limit);
            let r = extract::extract_gz(
                &mut reader,
                &dest,
                extract::Kind::Source {
                    owner: (APP_UID, APP_GID),
                },
                limits,
            );
            let r = r.and_then(|summary| {
                let received = reader
                    .finish()
                    .map_err(|e| extract::ExtractError::Format(e.to_string()))?;
                Ok((summary, received))
            });
            (r, reader.ended_at, reader.over_limit)
        })
        .await
        .map_err(|e| DeployError::Io {
            context: "unpacking task".into(),
            source: io::Error::other(e.to_string()),
        })?;
        let done = Instant::now();
        let (summary, received) = match unpacked.0 {
            _ if unpacked.2 => {
                return Err(DeployError::UploadTooBig {
                    limit_mb: inner.cfg.max_upload_mb,
                })
            }
            Ok(ok) => ok,
            Err(e) => return Err(DeployError::Source(e)),
        };
        let ended = unpacked.1.unwrap_or(done);
        let phases = vec![
            timing(DeployPhase::Receive, ended - started),
            timing(DeployPhase::Extract, done.saturating_duration_since(ended)),
        ];
        let row = {
            let (sha, bytes, user, phases) = (
                received.sha256.clone(),
                received.bytes,
                user.clone(),
                phases.clone(),
            );
            let app_id = ctx.app_id;
            inner
                .store
                .tx(move |tx| {
                    store::deployments::insert(
                        tx,
                        app_id,
                        &sha,
                        bytes,
                        &user,
                        &phases,
                        store::now(),
                    )
                })
                .await?
        };
        tracing::info!(%app, deployment = row.id, files = summary.files, bytes = summary.bytes, "source unpacked; building");
        let (tx, rx) = mpsc::channel(256);
        let build = Build {
            inner: Arc::clone(&self.inner),
            app,
            ctx,
            row,
            scratch,
            events: tx,
            log: None,
            deadline: Instant::now() + Duration::from_secs(inner.cfg.timeout_secs),
        };
        tokio::spawn(async move {
            build.run(phases).await;
            drop(lock);
        });
        Ok(rx)
    }

    fn lock(&self, app: &str, user: &str) -> Result<Lock, DeployError> {
        let mut busy = self.inner.busy.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((who, since)) = busy.get(app) {
            return Err(DeployError::Busy {
                app: app.to_string(),
                user: who.clone(),
                secs: since.elapsed().as_secs(),
            });
        }
        busy.insert(app.to_string(), (user.to_string(), Instant::now()));
        Ok(Lock {
            inner: Arc::clone(&self.inner),
            app: app.to_string(),
        })
    }

    fn check_disk(&self) -> Result<(), DeployError> {
        let dir = &self.inner.state_dir;
        let st = nix::sys::statvfs::statvfs(dir).map_err(|e| DeployError::Io {
            context: format!("checking free space under {}", dir.display()),
            source: e.into(),
        })?;
        let free = st.blocks_available() as u64 * st.fragment_size() as u64;
        let free_mb = free >> 20;
        if free_mb < self.inner.cfg.min_free_disk_mb {
            return Err(DeployError::DiskLow {
                dir: dir.clone(),
                free_mb,
                floor_mb: self.inner.cfg.min_free_disk_mb,
            });
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

/// Creates `dir` with `mode`, owned by the app user when `app_owned`.
fn make_dir(dir: &Path, mode: u32, app_owned: bool) -> io::Result<()> {
    fs::create_dir_all(dir)?;
    fs::set_permissions(dir, fs::Permissions::from_mode(mode))?;
    if app_owned {
        lchown(dir, Some(APP_UID), Some(APP_GID))?;
    }
    Ok(())
}

/// One running build: everything after the upload.
struct Build {
    inner: Arc<Inner>,
    app: String,
    ctx: BuildContext,
    row: DeploymentRow,
    scratch: Scratch,
    events: mpsc::Sender<DeployEvent>,
    /// The deployment's log file (`logs/APP/deploy-ID.log`): the output outlives the client.
    log: Option<fs::File>,
    deadline: Instant,
}

impl Build {
    async fn run(mut self, phases: Vec<PhaseTiming>) {
        self.open_log();
        self.platform(format!(
            "Deploy {} started by {}",
            self.row.id, self.row.user
        ));
        self.emit(DeployEvent::Started {
            id: self.row.id as u64,
        })
        .await;
        for p in phases {
            self.emit(DeployEvent::Phase {
                phase: p.phase,
                ms: p.ms,
            })
            .await;
        }
        let result = self.build().await;
        self.row.finished_at = Some(store::now());
        let event = match result {
            Ok(release) => {
                self.row.status = DeploymentStatus::Succeeded;
                self.line(format!(
                    "-----> Released v{} of {}",
                    release.version, self.app
                ))
                .await;
                self.platform(format!(
                    "Release v{} created by {} (deploy {})",
                    release.version, self.row.user, self.row.id
                ));
                DeployEvent::Done {
                    release: Box::new(release),
                }
            }
            Err(f) => {
                self.row.status = DeploymentStatus::Failed;
                self.row.error = Some(f.message.clone());
                self.line(format!(" !     {}", f.message)).await;
                self.platform(format!("Deploy {} failed: {}", self.row.id, f.message));
                DeployEvent::Error {
                    code: f.code.to_string(),
                    message: f.message,
                }
            }
        };
        self.save().await;
        tracing::info!(app = %self.app, deployment = self.row.id, status = %self.row.status, "deploy finished");
        // Sent last, so a client that saw the end also sees the final record.
        self.emit(event).await;
    }

    async fn build(&mut self) -> Result<api::Release, Failure> {
        let mounts = self.prepare().await?;
        let chosen = self.detect(&mounts).await?;
        self.compile(&mounts, &chosen).await?;
        let process_types = self.process_types(&mounts, &chosen).await?;
        let slug_id = self.slug(&mounts).await?;
        let release = self.release(slug_id, process_types).await?;
        self.rollout(release.version).await
    }

    /// Starts the release's instances, switches traffic to them and stops the old ones;
    /// the rollout's lines and phase timings become part of the deploy.
    async fn rollout(&mut self, version: u32) -> Result<api::Release, Failure> {
        let (tx, mut rx) = mpsc::unbounded_channel();
        let supervisor = self.inner.supervisor.clone();
        let app = self.app.clone();
        // Its own task: a rollout, once begun, finishes whatever happens to this one.
        let task = tokio::spawn(async move { supervisor.rollout(&app, version, Some(tx)).await });
        while let Some(line) = rx.recv().await {
            self.line(line).await;
        }
        let phases = task
            .await
            .map_err(Failure::internal)?
            .map_err(|e| Failure::new("rollout_failed", e.to_string()))?;
        for p in phases {
            self.row.phases.push(p);
            self.emit(DeployEvent::Phase {
                phase: p.phase,
                ms: p.ms,
            })
            .await;
        }
        self.save().await;
        self.inner
            .apps
            .release(self.app.clone(), version)
            .await
            .map_err(Failure::internal)
    }

    /// Env dir, cache dir and the buildpack copies.
    async fn prepare(&mut self) -> Result<Mounts, Failure> {
        let root = self.scratch.0.clone();
        let mounts = Mounts {
            app: root.join("app"),
            cache: self.inner.state_dir.join("cache").join(&self.app),
            env: root.join("env"),
            buildpacks: root.join("buildpacks"),
        };
        let config = self.ctx.config.clone();
        let m = mounts.clone();
        tokio::task::spawn_blocking(move || -> io::Result<()> {
            make_dir(&m.cache, 0o700, true)?;
            make_dir(&m.buildpacks, 0o755, true)?;
            make_dir(&m.env, 0o700, true)?;
            for (k, v) in &config {
                let p = m.env.join(k);
                let mut f = fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o400)
                    .open(&p)?;
                f.write_all(v.as_bytes())?;
                lchown(&p, Some(APP_UID), Some(APP_GID))?;
            }
            fs::set_permissions(&m.env, fs::Permissions::from_mode(0o500))
        })
        .await
        .map_err(Failure::internal)?
        .map_err(Failure::internal)?;
        Ok(mounts)
    }

    fn step(&self, mounts: &Mounts) -> Step {
        Step {
            runtime: Arc::clone(&self.inner.runtime),
            id_prefix: format!("{}-build", self.app),
            stack: self.ctx.stack.clone(),
            mounts: mounts.clone(),
            env: self.build_env(),
            limits: self.limits(),
            deadline: self.deadline,
        }
    }

    /// Builds and release phases get the same memory, CPU and pids limits.
    fn limits(&self) -> Limits {
        let c = &self.inner.cfg;
        Limits {
            memory_bytes: Some(c.memory_mb << 20),
            cpu_percent: Some(c.cpu_percent),
            pids: Some(c.pids),
        }
    }

    fn build_env(&self) -> Vec<(String, String)> {
        let ca = "/etc/ssl/certs/ca-certificates.crt";
        [
            ("PATH", "/app/bin:/usr/local/bin:/usr/bin:/bin"),
            ("HOME", "/app"),
            ("LANG", "C.UTF-8"),
            ("STACK", self.ctx.stack.as_str()),
            ("SSL_CERT_FILE", ca),
            ("NODE_EXTRA_CA_CERTS", ca),
            ("PIP_CERT", ca),
            ("REQUESTS_CA_BUNDLE", ca),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    }

    /// Picks the buildpacks: the app's configured ones (each must detect), else the first
    /// built-in that detects. Copies them into the build.
    async fn detect(&mut self, mounts: &Mounts) -> Result<Vec<(Buildpack, String)>, Failure> {
        let t = Instant::now();
        let configured = !self.ctx.buildpacks.is_empty();
        let candidates: Vec<Buildpack> = if configured {
            self.ctx
                .buildpacks
                .iter()
                .map(|r| buildpacks::resolve(r, &self.inner.buildpacks_dir))
                .collect::<Result<_, _>>()
                .map_err(|m| Failure::new("buildpack_not_found", m))?
        } else {
            buildpacks::builtins(&self.inner.buildpacks_dir)
                .map_err(|m| Failure::new("buildpack_not_found", m))?
        };
        self.line("-----> Detecting buildpack".into()).await;
        let mut chosen = Vec::new();
        for (i, bp) in candidates.into_iter().enumerate() {
            let dir_name = format!("{i}-{}", dir_name(&bp));
            let dest = mounts.buildpacks.join(&dir_name);
            let src = bp.clone();
            tokio::task::spawn_blocking(move || buildpacks::copy_into(&src, &dest))
                .await
                .map_err(Failure::internal)?
                .map_err(|e| {
                    Failure::new(
                        "buildpack_not_found",
                        format!("copying buildpack '{}': {e}", bp.name),
                    )
                })?;
            let ran = self.query(mounts, &dir_name, "detect").await?;
            match ran.outcome {
                Outcome::Exited(0) => {
                    let shown = ran
                        .stdout
                        .first()
                        .map(|s| s.trim().to_string())
                        .filter(|s| !s.is_empty());
                    self.line(format!(
                        "-----> {} app detected",
                        shown.unwrap_or_else(|| bp.name.clone())
                    ))
                    .await;
                    chosen.push((bp, dir_name));
                    if !configured {
                        break;
                    }
                }
                Outcome::TimedOut => return Err(self.timed_out()),
                other if configured => {
                    return Err(Failure::new(
                        "detect_failed",
                        format!(
                            "buildpack '{}' does not apply to this app (bin/detect: {})",
                            bp.name,
                            describe(&other)
                        ),
                    ))
                }
                _ => {}
            }
        }
        if chosen.is_empty() {
            return Err(Failure::new(
                "no_buildpack",
                "no buildpack detected this app: add a package.json, requirements.txt, go.mod, \
                 public/ or a Procfile, or choose one with `paas buildpacks set APP NAME`",
            ));
        }
        self.row.buildpacks = chosen.iter().map(|(b, _)| b.name.clone()).collect();
        self.phase(DeployPhase::Detect, t).await;
        Ok(chosen)
    }

    async fn compile(
        &mut self,
        mounts: &Mounts,
        chosen: &[(Buildpack, String)],
    ) -> Result<(), Failure> {
        let t = Instant::now();
        for (bp, dir) in chosen {
            // Earlier buildpacks' `export` files shape the environment of later ones.
            let script = "for f in /buildpacks/*/export; do [ -f \"$f\" ] && . \"$f\"; done; \
                          exec \"/buildpacks/$1/bin/compile\" /app /cache /env";
            let (tx, mut rx) = mpsc::unbounded_channel();
            let step = self.step(mounts);
            let mut relay = |l| {
                let _ = tx.send(l);
            };
            let run = step.run(
                vec![
                    "bash".into(),
                    "-c".into(),
                    script.into(),
                    "compile".into(),
                    dir.clone(),
                ],
                Networking::Host,
                false,
                &mut relay,
            );
            // Output is relayed while the step runs, not after.
            tokio::pin!(run);
            let ran = loop {
                tokio::select! {
                    r = &mut run => break r,
                    Some(l) = rx.recv() => self.line(l).await,
                }
            };
            while let Ok(l) = rx.try_recv() {
                self.line(l).await;
            }
            let ran = ran.map_err(Failure::internal)?;
            match ran.outcome {
                Outcome::Exited(0) => {}
                Outcome::TimedOut => return Err(self.timed_out()),
                Outcome::OutOfMemory => {
                    return Err(Failure::new(
                        "build_oom",
                        format!(
                            "the build ran out of memory and was killed (limit {} MB, build.memory_mb in paasd.toml)",
                            self.inner.cfg.memory_mb
                        ),
                    ))
                }
                other => {
                    return Err(Failure::new(
                        "build_failed",
                        format!("the {} buildpack failed to compile this app ({})", bp.name, describe(&other)),
                    ))
                }
            }
        }
        self.phase(DeployPhase::Compile, t).await;
        Ok(())
    }

    /// Runs a buildpack's `bin/detect` or `bin/release` (quick, no network) and returns its
    /// stdout; stderr goes to the build log.
    async fn query(
        &mut self,
        mounts: &Mounts,
        dir: &str,
        which: &str,
    ) -> Result<step::Ran, Failure> {
        let mut relayed = Vec::new();
        let ran = self
            .step(mounts)
            .run(
                vec![format!("/buildpacks/{dir}/bin/{which}"), "/app".into()],
                Networking::Loopback,
                true,
                &mut |l| relayed.push(l),
            )
            .await
            .map_err(Failure::internal)?;
        for l in relayed {
            self.line(l).await;
        }
        Ok(ran)
    }

    /// Buildpacks' defaults, then the Procfile over them.
    async fn process_types(
        &mut self,
        mounts: &Mounts,
        chosen: &[(Buildpack, String)],
    ) -> Result<procfile::ProcessTypes, Failure> {
        let mut types = procfile::ProcessTypes::new();
        for (bp, dir) in chosen {
            let ran = self.query(mounts, dir, "release").await?;
            match ran.outcome {
                Outcome::Exited(0) => {}
                Outcome::TimedOut => return Err(self.timed_out()),
                other => {
                    return Err(Failure::new(
                        "build_failed",
                        format!(
                            "bin/release of the {} buildpack failed ({})",
                            bp.name,
                            describe(&other)
                        ),
                    ))
                }
            }
            let defaults = procfile::parse_release_yaml(&ran.stdout.join("\n"))
                .map_err(|m| Failure::new("build_failed", format!("{} buildpack: {m}", bp.name)))?;
            types.extend(defaults);
        }
        if let Some(text) = read_app_file(&mounts.app, "Procfile")
            .map_err(|e| Failure::new("invalid_procfile", e.to_string()))?
        {
            let declared =
                procfile::parse_procfile(&text).map_err(|m| Failure::new("invalid_procfile", m))?;
            types.extend(declared);
        }
        if types.is_empty() {
            self.line(
                " !     No process types: add a Procfile (e.g. `web: ./server`) to run this app"
                    .into(),
            )
            .await;
        } else {
            let list: Vec<String> = types.keys().cloned().collect();
            self.line(format!("-----> Process types: {}", list.join(", ")))
                .await;
        }
        Ok(types)
    }

    async fn slug(&mut self, mounts: &Mounts) -> Result<i64, Failure> {
        let t = Instant::now();
        self.line("-----> Compressing slug".into()).await;
        let slugs = self.inner.slugs.clone();
        let (app, dir) = (self.app.clone(), mounts.app.clone());
        let packed = tokio::task::spawn_blocking(move || slugs.pack(&app, &dir))
            .await
            .map_err(Failure::internal)?
            .map_err(Failure::internal)?;
        let (sha, bytes, app_id) = (packed.sha256.clone(), packed.bytes, self.ctx.app_id);
        let row = self
            .inner
            .store
            .tx(move |tx| store::slugs::insert(tx, app_id, &sha, bytes, store::now()))
            .await
            .map_err(Failure::internal)?;
        let slugs = self.inner.slugs.clone();
        let (app, dir, id) = (self.app.clone(), mounts.app.clone(), row.id);
        tokio::task::spawn_blocking(move || slugs.store(&app, id, &packed, &dir))
            .await
            .map_err(Failure::internal)?
            .map_err(Failure::internal)?;
        self.row.slug_id = Some(row.id);
        self.line(format!(
            "       Done: {:.1} MB, sha256 {}",
            row.bytes as f64 / 1048576.0,
            &row.sha256[..12]
        ))
        .await;
        self.phase(DeployPhase::Slug, t).await;
        Ok(row.id)
    }

    /// Makes vN; runs the release phase first when the app declares one.
    async fn release(
        &mut self,
        slug_id: i64,
        process_types: procfile::ProcessTypes,
    ) -> Result<api::Release, Failure> {
        let release_cmd = process_types.get("release").cloned();
        let runs = Runs {
            slug_id: Some(slug_id),
            process_types,
            deployment_id: Some(self.row.id),
        };
        let description = format!(
            "Deploy {}",
            &self.row.source_sha256[..8.min(self.row.source_sha256.len())]
        );
        // Pending until its rollout settles it.
        let status = ReleaseStatus::Pending;
        let (release, config) = self
            .inner
            .apps
            .release_build(self.app.clone(), description, runs, status)
            .await
            .map_err(|e| match e {
                AppError::NotFound(_) => Failure::new("app_not_found", e.to_string()),
                other => Failure::internal(other),
            })?;
        self.row.version = Some(release.version);
        self.save().await;
        let Some(command) = release_cmd else {
            self.gc().await;
            return Ok(release);
        };
        let t = Instant::now();
        self.line(format!("-----> Running release command: {command}"))
            .await;
        let verdict = self.release_phase(slug_id, &config, &command).await;
        self.phase(DeployPhase::ReleasePhase, t).await;
        if verdict.is_err() {
            self.inner
                .apps
                .settle_release(self.app.clone(), release.version, ReleaseStatus::Failed)
                .await
                .map_err(Failure::internal)?;
        }
        verdict?;
        self.gc().await;
        Ok(release)
    }

    async fn release_phase(
        &mut self,
        slug_id: i64,
        config: &std::collections::BTreeMap<String, String>,
        command: &str,
    ) -> Result<(), Failure> {
        let limits = self.limits();
        let oneoff = crate::oneoff::OneOff {
            prefix: format!("{}-release", self.app),
            stack: self.ctx.stack.clone(),
            layers: vec![self.inner.slugs.layer(&self.app, slug_id)],
            env: crate::oneoff::process_env(config, "release.1"),
            command: command.to_string(),
            limits,
        };
        let failed = |m: String| {
            Failure::new(
                "release_phase_failed",
                format!("the release command failed ({m}); the previous release keeps running"),
            )
        };
        let mut events = crate::oneoff::spawn(&self.inner.store, &self.inner.runtime, oneoff)
            .await
            .map_err(|e| failed(e.to_string()))?;
        let deadline = tokio::time::sleep_until(self.deadline.into());
        tokio::pin!(deadline);
        loop {
            let ev = tokio::select! {
                ev = events.recv() => ev,
                // Dropping the receiver kills the one-off (it is attached).
                () = &mut deadline => return Err(self.timed_out()),
            };
            match ev {
                Some(RunEvent::Output { line, .. }) => self.line(line).await,
                Some(RunEvent::Exited { code: Some(0), .. }) => return Ok(()),
                Some(RunEvent::Exited { code, signal, oom }) => {
                    return Err(failed(if oom {
                        "out of memory".into()
                    } else if let Some(c) = code {
                        format!("exit status {c}")
                    } else {
                        format!("killed by signal {}", signal.unwrap_or(0))
                    }))
                }
                Some(RunEvent::Error { message }) => return Err(failed(message)),
                Some(RunEvent::Started { .. }) => {}
                None => return Err(failed("it ended without an exit status".into())),
            }
        }
    }

    /// Removes slugs no recent release needs.
    async fn gc(&self) {
        let (app_id, keep) = (self.ctx.app_id, self.inner.cfg.keep_releases.max(1));
        let r = self
            .inner
            .store
            .tx(move |tx| {
                let used = store::releases::slugs_in_use(tx, app_id, keep)?;
                let mut gone = Vec::new();
                for s in store::slugs::live(tx, app_id)? {
                    if !used.contains(&s.id) {
                        store::slugs::mark_removed(tx, s.id)?;
                        gone.push(s.id);
                    }
                }
                Ok::<_, StoreError>(gone)
            })
            .await;
        match r {
            Ok(gone) => {
                for id in gone {
                    tracing::info!(app = %self.app, slug = id, "removing an old slug");
                    self.inner.slugs.remove(&self.app, id);
                }
            }
            Err(e) => tracing::warn!(error = %e, "slug garbage collection failed"),
        }
    }

    fn timed_out(&self) -> Failure {
        Failure::new(
            "build_timeout",
            format!(
                "the build took longer than {} s and was stopped (build.timeout_secs in paasd.toml)",
                self.inner.cfg.timeout_secs
            ),
        )
    }

    async fn phase(&mut self, phase: DeployPhase, since: Instant) {
        let t = timing(phase, since.elapsed());
        self.row.phases.push(t);
        self.save().await;
        self.emit(DeployEvent::Phase { phase, ms: t.ms }).await;
    }

    async fn save(&self) {
        let row = self.row.clone();
        if let Err(e) = self
            .inner
            .store
            .tx(move |tx| store::deployments::update(tx, &row))
            .await
        {
            tracing::error!(error = %e, deployment = self.row.id, "could not save the deployment record");
        }
    }

    fn open_log(&mut self) {
        let dir = self.inner.state_dir.join("logs").join(&self.app);
        let path = dir.join(format!("deploy-{}.log", self.row.id));
        self.log = fs::create_dir_all(&dir)
            .and_then(|()| fs::OpenOptions::new().create(true).append(true).open(&path))
            .map_err(|e| tracing::warn!(path = %path.display(), error = %e, "no build log file"))
            .ok();
    }

    async fn line(&mut self, line: String) {
        if let Some(f) = self.log.as_mut() {
            let _ = writeln!(f, "{line}");
        }
        self.inner.logs.append(
            &self.app,
            api::LogLine {
                ts: crate::logs::now(),
                source: api::LogSource::Build,
                process: crate::logs::BUILD_PROCESS.into(),
                release: self.row.version,
                line: line.clone(),
            },
        );
        self.emit(DeployEvent::Output { line }).await;
    }

    /// A deploy event in the app's log stream (tagged with the release once it exists).
    fn platform(&self, msg: String) {
        self.inner.logs.platform(&self.app, self.row.version, msg);
    }

    /// Sends to the client if it is still there; a gone client never stops the build.
    async fn emit(&self, ev: DeployEvent) {
        if !self.events.is_closed() {
            let _ = self.events.send(ev).await;
        }
    }
}

/// A buildpack's dir name inside the build: the built-in name or the directory's last part.
fn dir_name(bp: &Buildpack) -> String {
    bp.source
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "buildpack".into())
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

fn describe(o: &Outcome) -> String {
    match o {
        Outcome::Exited(c) => format!("exit status {c}"),
        Outcome::Signaled(s) => format!("killed by signal {s}"),
        Outcome::OutOfMemory => "out of memory".into(),
        Outcome::TimedOut => "timed out".into(),
    }
}

/// Reads a small top-level file of the built app without following a symlink (the tree is
/// the app's; its Procfile may point anywhere on the host).
fn read_app_file(app_dir: &Path, name: &str) -> io::Result<Option<String>> {
    let f = match fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(app_dir.join(name))
    {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) => {
            return Err(io::Error::other(format!(
                "{name} is a symlink; make it a regular file"
            )))
        }
        Err(e) => return Err(e),
    };
    if !f.metadata()?.is_file() {
        return Err(io::Error::other(format!("{name} is not a regular file")));
    }
    let mut text = String::new();
    f.take(256 * 1024).read_to_string(&mut text)?;
    Ok(Some(text))
}
