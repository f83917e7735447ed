//! The release step of a build: make release vN from the slug (pending until it settles),
//! run the app's `release:` command as a one-off on it, roll it out through the supervisor,
//! and remove slugs no recent release needs. Must not start containers itself (one-offs and
//! the supervisor do).

use std::time::Instant;

use paas_api::{self as api, DeployEvent, DeployPhase, ReleaseStatus, RunEvent};
use tokio::sync::mpsc;

use super::pipeline::Build;
use super::{procfile, Failure};
use crate::apps::AppError;
use crate::store::{self, releases::Runs, StoreError};

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

    /// Makes vN; runs the release phase first when the app declares one.
    pub(super) async fn release(
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
            env: crate::launch::process_env(config, "release.1"),
            command: command.to_string(),
            limits,
        };
        let failed = |m: String| {
            Failure::new(
                "release_phase_failed",
                format!("the release command failed ({m}); the previous release keeps running"),
            )
        };
        let mut events = self
            .inner
            .oneoffs
            .spawn(oneoff)
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
