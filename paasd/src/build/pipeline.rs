//! The build pipeline: one running build after its upload landed. Owns the order of the
//! phases (app.json, prepare, detect, compile, process types, slug, then `release.rs`'s steps), the
//! deployment record as it goes, and where the output goes (client, build log file, app log
//! stream). Must not decide what a buildpack may do (the step container does) or touch SQL.

use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::{lchown, OpenOptionsExt, PermissionsExt};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use paas_api::{self as api, DeployEvent, DeployPhase, DeploymentStatus, PhaseTiming};
use tokio::sync::mpsc;

use super::buildpacks::{self, Buildpack};
use super::gitpacks;
use super::step::{self, Mounts, Outcome, Step, StepNet};
use super::{make_dir, mount_cache, own_cache, procfile, timing, Failure, Inner, Scratch};
use crate::apps::BuildContext;
use crate::config::MiB;
use crate::store::{self, deployments::DeploymentRow};
use paas_runtime::cgroups::Limits;

/// One running build: everything after the upload.
pub(super) struct Build {
    pub(super) inner: Arc<Inner>,
    pub(super) app: String,
    pub(super) ctx: BuildContext,
    pub(super) row: DeploymentRow,
    pub(super) scratch: Scratch,
    /// The app's build cache image, mounted while the build runs.
    pub(super) cache_disk: Option<crate::disk_image::Disk>,
    pub(super) events: mpsc::Sender<DeployEvent>,
    /// The deployment's log file (`logs/APP/deploy-ID.log`): the output outlives the client.
    pub(super) log: Option<fs::File>,
    pub(super) deadline: Instant,
    /// The app's deploy claim, released just before the last event goes out.
    pub(super) claim: Option<crate::locks::Claim>,
}

impl Build {
    pub(super) async fn run(mut self, phases: Vec<PhaseTiming>) {
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
        // A client that saw the end has seen the final record, no build dir is left, and
        // the app is free for its next deploy (clients stop reading at the last event).
        if let Some(d) = self.cache_disk.take() {
            let _ = tokio::task::spawn_blocking(move || d.unmount()).await;
        }
        std::mem::replace(&mut self.scratch, Scratch(PathBuf::new(), None))
            .remove()
            .await;
        drop(self.claim.take());
        self.emit(event).await;
    }

    async fn build(&mut self) -> Result<api::Release, Failure> {
        let app_json = self.read_app_json().await?;
        let mounts = self.prepare().await?;
        let chosen = self.detect(&mounts).await?;
        self.compile(&mounts, &chosen).await?;
        let process_types = self.process_types(&mounts, &chosen).await?;
        let slug_id = self.slug(&mounts).await?;
        let (release, config) = self.release(slug_id, process_types, &app_json).await?;
        let live = self.rollout(release.version).await?;
        self.postdeploy(&app_json, slug_id, &config, live.version)
            .await;
        Ok(live)
    }

    /// Env dir, cache dir and the buildpack copies.
    async fn prepare(&mut self) -> Result<Mounts, Failure> {
        let root = self.scratch.0.clone();
        let mounts = Mounts {
            app: root.join("app"),
            cache: self.inner.paths.cache(&self.app),
            env: root.join("env"),
            buildpacks: root.join("buildpacks"),
        };
        let uid = self.ctx.identity.uid;
        let (dir, size) = (mounts.cache.clone(), MiB(self.ctx.limits.disk_mb).bytes());
        self.cache_disk = tokio::task::spawn_blocking(move || mount_cache(&dir, size, uid))
            .await
            .map_err(Failure::internal)?
            .map_err(Failure::internal)?;
        if self.scratch.1.is_none() {
            self.line(
                "-----> No disk quota for this build: mkfs.ext4 is missing (install e2fsprogs)"
                    .into(),
            )
            .await;
        }
        let config = self.ctx.config.clone();
        let m = mounts.clone();
        let dropped = tokio::task::spawn_blocking(move || -> io::Result<bool> {
            let dropped = own_cache(&m.cache, uid)?;
            make_dir(&m.buildpacks, 0o755, uid)?;
            make_dir(&m.env, 0o700, uid)?;
            for (k, v) in &config {
                let p = m.env.join(k);
                let mut f = fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o400)
                    .open(&p)?;
                f.write_all(v.as_bytes())?;
                lchown(&p, Some(uid), Some(uid))?;
            }
            fs::set_permissions(&m.env, fs::Permissions::from_mode(0o500))?;
            Ok(dropped)
        })
        .await
        .map_err(Failure::internal)?
        .map_err(Failure::internal)?;
        if dropped {
            self.line("-----> The build cache belonged to another uid; starting without it".into())
                .await;
        }
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
            user: crate::launch::user(self.ctx.identity.uid),
            addresses: self.inner.addresses.clone(),
        }
    }

    /// Builds and release phases get the same memory, CPU and pids limits.
    pub(super) fn limits(&self) -> Limits {
        // `[build]` under the app's own build limits (`paas resources APP build`).
        let c = self.ctx.limits;
        Limits {
            memory_bytes: Some(MiB(c.memory_mb).bytes()),
            cpu_percent: Some(c.cpu_percent),
            pids: Some(c.pids),
            disk_bytes: Some(MiB(c.disk_mb).bytes()),
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

    /// Picks the buildpacks: the app's own list (`paas buildpacks set`, else app.json
    /// `buildpacks`, else `.buildpacks`, else `BUILDPACK_URL` in `.env`; each must detect),
    /// else the first built-in that detects. Clones git URLs, copies them into the build.
    async fn detect(&mut self, mounts: &Mounts) -> Result<Vec<(Buildpack, String)>, Failure> {
        let t = Instant::now();
        let selection = buildpacks::select(&self.ctx.buildpacks, &mounts.app)
            .map_err(|e| Failure::new("buildpack_not_found", e.to_string()))?;
        let configured = selection.is_some();
        let from = selection
            .as_ref()
            .map(|s| format!(" (from {})", s.origin.describe()))
            .unwrap_or_default();
        let candidates: Vec<Buildpack> = match selection {
            Some(sel) => {
                if sel.origin != buildpacks::Origin::Config {
                    self.line(format!(
                        "-----> Buildpacks from {}: {}",
                        sel.origin.describe(),
                        sel.references.join(", ")
                    ))
                    .await;
                }
                let mut out = Vec::new();
                for r in &sel.references {
                    out.push(self.resolve_buildpack(r, &from).await?);
                }
                out
            }
            None => buildpacks::builtins(&self.inner.buildpacks_dir)
                .map_err(|m| Failure::new("buildpack_not_found", m))?,
        };
        self.line("-----> Detecting buildpack".into()).await;
        let mut chosen = Vec::new();
        for (i, bp) in candidates.into_iter().enumerate() {
            let dir_name = format!("{i}-{}", dir_name(&bp));
            let dest = mounts.buildpacks.join(&dir_name);
            let src = bp.clone();
            let uid = self.ctx.identity.uid;
            tokio::task::spawn_blocking(move || buildpacks::copy_into(&src, &dest, uid))
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
                            "buildpack '{}'{from} does not apply to this app (bin/detect: {})",
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
                "no buildpack detected this app: add a package.json, requirements.txt, go.mod \
                 (or .godir), public/ (or .static) or a Procfile, or choose one with `paas \
                 buildpacks set APP NAME` or a .buildpacks file",
            ));
        }
        self.row.buildpacks = chosen.iter().map(|(b, _)| b.name.clone()).collect();
        self.phase(DeployPhase::Detect, t).await;
        Ok(chosen)
    }

    /// One reference of the app's list: a built-in or directory as it is, a git URL cloned
    /// (or found in the clone cache) first.
    async fn resolve_buildpack(
        &mut self,
        reference: &str,
        from: &str,
    ) -> Result<Buildpack, Failure> {
        let not_found = |m: String| Failure::new("buildpack_not_found", format!("{m}{from}"));
        let kind = buildpacks::classify(reference).map_err(not_found)?;
        buildpacks::outside_state(&kind, &self.inner.paths.root).map_err(not_found)?;
        let buildpacks::Reference::Git(git) = kind else {
            return buildpacks::resolve(reference, &self.inner.buildpacks_dir).map_err(not_found);
        };
        let fetched = gitpacks::fetch(
            &git,
            &self.inner.paths.buildpacks(),
            &self.inner.paths.builds(),
            gitpacks::CLONE_TIMEOUT.min(self.deadline.saturating_duration_since(Instant::now())),
        )
        .await
        .map_err(|e| Failure::new("buildpack_fetch_failed", format!("{e}{from}")))?;
        let short = &fetched.commit[..fetched.commit.len().min(12)];
        if fetched.cached {
            self.line(format!(
                "-----> Using cached buildpack {git} (commit {short}; remove {} to fetch it again)",
                fetched.entry.display()
            ))
            .await;
        } else {
            self.line(format!("-----> Cloned buildpack {git} (commit {short})"))
                .await;
        }
        buildpacks::check_dir(reference, fetched.dir).map_err(not_found)
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
                StepNet::Egress,
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
                            "the build ran out of memory and was killed (limit {} MB: build.memory_mb in paasd.toml, or `paas resources {} build --memory MB`)",
                            self.ctx.limits.memory_mb,
                            self.app
                        ),
                    ))
                }
                other => {
                    let full = [self.scratch.1.as_ref(), self.cache_disk.as_ref()]
                        .into_iter()
                        .flatten()
                        .any(crate::disk_image::Disk::full);
                    if full {
                        let (mb, app) = (MiB(self.ctx.limits.disk_mb), &self.app);
                        return Err(Failure::new(
                            "build_disk_full",
                            format!(
                                "the {} buildpack failed to compile this app ({}) after the build filled its disk ({mb}: build.disk_mb in paasd.toml, or `paas resources {app} build --disk MB`)",
                                bp.name,
                                describe(&other)
                            ),
                        ));
                    }
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
                StepNet::None,
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
        if let Some(text) = crate::app_files::read(&mounts.app, "Procfile")
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

    pub(super) fn timed_out(&self) -> Failure {
        Failure::new(
            "build_timeout",
            format!(
                "the build took longer than {} s and was stopped (build.timeout_secs in paasd.toml)",
                self.inner.cfg.timeout_secs
            ),
        )
    }

    pub(super) async fn phase(&mut self, phase: DeployPhase, since: Instant) {
        let t = timing(phase, since.elapsed());
        self.row.phases.push(t);
        self.save().await;
        self.emit(DeployEvent::Phase { phase, ms: t.ms }).await;
    }

    pub(super) async fn save(&self) {
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
        let dir = self.inner.paths.app_logs(&self.app);
        let path = dir.join(format!("deploy-{}.log", self.row.id));
        self.log = fs::create_dir_all(&dir)
            .and_then(|()| fs::OpenOptions::new().create(true).append(true).open(&path))
            .map_err(|e| tracing::warn!(path = %path.display(), error = %e, "no build log file"))
            .ok();
    }

    pub(super) async fn line(&mut self, line: String) {
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
    pub(super) fn platform(&self, msg: String) {
        self.inner.logs.platform(&self.app, self.row.version, msg);
    }

    /// Sends to the client if it is still there; a gone client never stops the build.
    pub(super) async fn emit(&self, ev: DeployEvent) {
        if !self.events.is_closed() {
            let _ = self.events.send(ev).await;
        }
    }
}

/// A buildpack's dir name inside the build: the built-in name, the directory's last part or
/// the git repository's name.
fn dir_name(bp: &Buildpack) -> String {
    bp.label()
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
