//! The release step of a build: make release vN from the slug (pending until it settles,
//! with app.json's config vars and formation), run app.json's `scripts.dokku.predeploy` and
//! the app's `release:` command as one-offs on it, roll it out through the supervisor, run
//! the post-deploy scripts (dokku's every time, Heroku's after the first deploy only), and
//! remove slugs no recent release needs. Must not start containers itself (one-offs and the
//! supervisor do).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use paas_api::{self as api, DeployEvent, DeployPhase, ReleaseStatus, RunEvent};
use tokio::sync::mpsc;

use super::manifest::FromAppJson;
use super::pipeline::Build;
use super::{procfile, Failure};
use crate::apps::AppError;
use crate::store::{self, releases::Runs, StoreError};

/// How a script run as a one-off ended, when not with status 0.
enum ScriptError {
    /// The build's deadline passed first.
    TimedOut,
    /// It failed, or could not start: why, for a person.
    Failed(String),
}

impl Build {
    /// Starts the release's instances, switches traffic to them and stops the old ones;
    /// the rollout's lines and phase timings become part of the deploy.
    pub(super) async fn rollout(&mut self, version: u32) -> Result<api::Release, Failure> {
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

    /// Makes vN; runs app.json's predeploy script and the release phase first when the app
    /// declares them. Returns the release and its config.
    pub(super) async fn release(
        &mut self,
        slug_id: i64,
        process_types: procfile::ProcessTypes,
        from: &FromAppJson,
    ) -> Result<(api::Release, BTreeMap<String, String>), Failure> {
        let release_cmd = process_types.get("release").cloned();
        let mut formation = BTreeMap::new();
        for (t, n) in from.manifest.quantities() {
            if t != "release" && process_types.contains_key(&t) {
                formation.insert(t, n);
            } else {
                self.line(format!(
                    " !     app.json: formation.{t}: this release has no process type {t}; ignored"
                ))
                .await;
            }
        }
        let runs = Runs {
            slug_id: Some(slug_id),
            process_types,
            deployment_id: Some(self.row.id),
            formation,
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
            .release_build(
                self.app.clone(),
                description,
                runs,
                status,
                from.env.clone(),
            )
            .await
            .map_err(|e| match e {
                AppError::NotFound(_) => Failure::new("app_not_found", e.to_string()),
                AppError::InvalidEnv(m) => {
                    Failure::new("invalid_app_json", format!("app.json env: {m}"))
                }
                other => Failure::internal(other),
            })?;
        self.row.version = Some(release.version);
        self.save().await;
        // dokku runs predeploy before the release command; both before anything goes live.
        let mut scripts = Vec::new();
        if let Some(c) = from.manifest.predeploy() {
            scripts.push(("predeploy", "predeploy script", c.to_string()));
        }
        if let Some(c) = release_cmd {
            scripts.push(("release", "release command", c));
        }
        if scripts.is_empty() {
            self.gc().await;
            return Ok((release, config));
        }
        let t = Instant::now();
        let mut verdict = Ok(());
        for (name, what, command) in scripts {
            self.line(format!("-----> Running {what}: {command}")).await;
            let deadline = self.deadline;
            verdict = match self
                .script(slug_id, &config, name, &command, deadline)
                .await
            {
                Ok(()) => Ok(()),
                Err(ScriptError::TimedOut) => Err(self.timed_out()),
                Err(ScriptError::Failed(m)) => Err(Failure::new(
                    if name == "release" {
                        "release_phase_failed"
                    } else {
                        "predeploy_failed"
                    },
                    format!("the {what} failed ({m}); the previous release keeps running"),
                )),
            };
            if verdict.is_err() {
                break;
            }
        }
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
        Ok((release, config))
    }

    /// After vN went live: Heroku's `scripts.postdeploy` when this is the app's first deploy
    /// that went live, then dokku's `scripts.dokku.postdeploy`. A failure is reported (deploy
    /// output, platform log) and nothing is rolled back: the release is already serving.
    pub(super) async fn postdeploy(
        &mut self,
        from: &FromAppJson,
        slug_id: i64,
        config: &BTreeMap<String, String>,
        version: u32,
    ) {
        let mut scripts = Vec::new();
        if let Some(c) = from.manifest.first_deploy() {
            if self.ctx.deployed_before {
                self.line(format!(
                    "-----> Skipping scripts.postdeploy ({c}): it runs after the first deploy only"
                ))
                .await;
            } else {
                scripts.push((
                    "first-deploy",
                    "postdeploy script (first deploy)",
                    c.to_string(),
                ));
            }
        }
        if let Some(c) = from.manifest.postdeploy() {
            scripts.push(("postdeploy", "postdeploy script", c.to_string()));
        }
        for (name, what, command) in scripts {
            self.line(format!("-----> Running {what}: {command}")).await;
            let deadline = Instant::now() + Duration::from_secs(self.inner.cfg.timeout_secs);
            let why = match self.script(slug_id, config, name, &command, deadline).await {
                Ok(()) => continue,
                Err(ScriptError::TimedOut) => format!(
                    "took longer than {} s and was stopped",
                    self.inner.cfg.timeout_secs
                ),
                Err(ScriptError::Failed(m)) => m,
            };
            let msg = format!(
                "the {what} failed ({why}); v{version} stays live (a post-deploy failure is not rolled back)"
            );
            self.line(format!(" !     {msg}")).await;
            self.platform(msg);
        }
    }

    /// Runs `command` as a one-off on the new slug with `config`, its output part of the
    /// deploy's; the `release:` phase, predeploy and postdeploy scripts all run this way.
    async fn script(
        &mut self,
        slug_id: i64,
        config: &BTreeMap<String, String>,
        name: &str,
        command: &str,
        deadline: Instant,
    ) -> Result<(), ScriptError> {
        let limits = self.limits();
        let oneoff = crate::oneoff::OneOff {
            app: self.app.clone(),
            prefix: format!("{}-{name}", self.app),
            stack: self.ctx.stack.clone(),
            layers: vec![self.inner.slugs.layer(&self.app, slug_id)],
            env: crate::launch::process_env(config, &format!("{name}.1")),
            command: command.to_string(),
            limits,
            identity: self.ctx.identity,
        };
        let mut events = self
            .inner
            .oneoffs
            .spawn(oneoff)
            .await
            .map_err(|e| ScriptError::Failed(e.to_string()))?;
        let deadline = tokio::time::sleep_until(deadline.into());
        tokio::pin!(deadline);
        loop {
            let ev = tokio::select! {
                ev = events.recv() => ev,
                // Dropping the receiver kills the one-off (it is attached).
                () = &mut deadline => return Err(ScriptError::TimedOut),
            };
            let failed = |m: String| Err(ScriptError::Failed(m));
            match ev {
                Some(RunEvent::Output { line, .. }) => self.line(line).await,
                Some(RunEvent::Exited { code: Some(0), .. }) => return Ok(()),
                Some(RunEvent::Exited { code, signal, oom }) => {
                    return failed(if oom {
                        "out of memory".into()
                    } else if let Some(c) = code {
                        format!("exit status {c}")
                    } else {
                        format!("killed by signal {}", signal.unwrap_or(0))
                    })
                }
                Some(RunEvent::Error { message }) => return failed(message),
                Some(RunEvent::Started { .. }) => {}
                None => return failed("it ended without an exit status".into()),
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
                let (slugs, app) = (self.inner.slugs.clone(), self.app.clone());
                let removed = tokio::task::spawn_blocking(move || {
                    for id in gone {
                        tracing::info!(%app, slug = id, "removing an old slug");
                        slugs.remove(&app, id);
                    }
                })
                .await;
                if let Err(e) = removed {
                    tracing::warn!(error = %e, "removing old slugs failed");
                }
            }
            Err(e) => tracing::warn!(error = %e, "slug garbage collection failed"),
        }
    }
}
