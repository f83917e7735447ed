//! A deploy's intake: everything before the build may start. Checks the app, the free disk
//! and the app's claim before reading a byte, receives the upload through the one tarball
//! path, records the deployment and starts the build task. Errors here are answers to the
//! client (4xx/5xx); from the build on, everything is an event. Must not run buildpacks.

use std::io;

use std::sync::Arc;
use std::time::{Duration, Instant};

use paas_api::{DeployEvent, DeployPhase};
use tokio::sync::mpsc;

use super::pipeline::Build;
use super::{io_err, timing, Builds, DeployError, Scratch};
use crate::config::MiB;
use crate::store;
use crate::tarball::{self, TarballError};

impl Builds {
    /// Receives and unpacks the upload arriving on `upload`, records the deployment and
    /// starts the build. Errors before the build starts come back here (the caller answers
    /// with them); from then on everything is reported as events, and the build goes on
    /// even if nobody reads them.
    pub async fn deploy(
        &self,
        app: String,
        user: String,
        upload: mpsc::Receiver<tarball::Chunk>,
    ) -> Result<mpsc::Receiver<DeployEvent>, DeployError> {
        let started = Instant::now();
        let inner = &self.inner;
        let ctx = inner.apps.build_context(app.clone()).await?;
        self.check_disk()?;
        let claim = inner.locks.claim(&app, &user)?;
        let dir = inner
            .paths
            .builds()
            .join(format!("{app}-{}", inner.runtime.new_id("b")));
        let scratch = {
            let size = MiB(ctx.limits.disk_mb).bytes();
            tokio::task::spawn_blocking(move || Scratch::create(dir, size))
                .await
                .map_err(|e| io_err("making the build dir")(io::Error::other(e.to_string())))??
        };

        let landed = tarball::receive(
            upload,
            tarball::Intake {
                dest: scratch.0.join("app"),
                mode: 0o755,
                owner: Some((ctx.identity.uid, ctx.identity.uid)),
                kind: tarball::Kind::Source {
                    owner: (ctx.identity.uid, ctx.identity.uid),
                },
                max_upload: self.upload_limit(),
                limits: tarball::Limits {
                    max_bytes: inner.cfg.max_source_mb.bytes(),
                    max_entries: inner.cfg.max_source_files,
                    max_path: inner.cfg.max_path_bytes,
                },
            },
        )
        .await
        .map_err(|e| match e {
            TarballError::UploadTooLarge { .. } => DeployError::UploadTooBig {
                limit: inner.cfg.max_upload_mb,
            },
            TarballError::Archive(a) => DeployError::Source(a),
            TarballError::Exists(_) | TarballError::Io { .. } => DeployError::Io {
                context: "receiving the upload".into(),
                source: std::io::Error::other(e.to_string()),
            },
        })?;
        let done = Instant::now();
        let ended = landed.ended_at.unwrap_or(done);
        let phases = vec![
            timing(DeployPhase::Receive, ended - started),
            timing(DeployPhase::Extract, done.saturating_duration_since(ended)),
        ];
        let row = {
            let (sha, bytes, user, phases) = (
                landed.received.sha256.clone(),
                landed.received.bytes,
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
        tracing::info!(%app, deployment = row.id, files = landed.summary.files, bytes = landed.summary.bytes, "source unpacked; building");
        let (tx, rx) = mpsc::channel(256);
        let build = Build {
            inner: Arc::clone(&self.inner),
            app,
            ctx,
            row,
            scratch,
            cache_disk: None,
            events: tx,
            log: None,
            deadline: Instant::now() + Duration::from_secs(inner.cfg.timeout_secs),
            claim: Some(claim),
        };
        tokio::spawn(build.run(phases));
        Ok(rx)
    }

    fn check_disk(&self) -> Result<(), DeployError> {
        let dir = &self.inner.paths.root;
        let st = nix::sys::statvfs::statvfs(dir).map_err(|e| DeployError::Io {
            context: format!("checking free space under {}", dir.display()),
            source: e.into(),
        })?;
        let free = st.blocks_available() as u64 * st.fragment_size() as u64;
        let floor = self.inner.cfg.min_free_disk_mb;
        if free < floor.bytes() {
            return Err(DeployError::DiskLow {
                dir: dir.clone(),
                free_mb: free >> 20,
                floor,
            });
        }
        Ok(())
    }
}
