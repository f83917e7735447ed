//! Releases and deployment history as the app service sees them: making a release (config
//! snapshot sealed, what it runs recorded), reading releases and deploys back as API views,
//! and the app's buildpack list. Must not build or run anything.

use std::collections::BTreeMap;

use paas_api as api;
use paas_api::ReleaseStatus;

use super::{buildpacks_of, find, rfc3339, validate, AppError, Apps};
use crate::store::{
    self, apps::AppRow, deployments::DeploymentRow, releases::ReleaseRow, releases::Runs,
    StoreError, Tx,
};

/// What a build needs to know about its app, read in one transaction.
#[derive(Debug, Clone)]
pub struct BuildContext {
    pub app_id: i64,
    pub identity: super::Identity,
    /// `[build]` under the app's own `build` limits (`paas resources APP build`).
    pub limits: super::Limits,
    pub stack: String,
    pub buildpacks: Vec<String>,
    pub config: BTreeMap<String, String>,
    /// A release built by a deploy has gone live before (Heroku's `scripts.postdeploy` runs
    /// only after the first one that did).
    pub deployed_before: bool,
}

/// Config vars a deploy sets from app.json `env`, decided against the config at its start.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EnvDefaults {
    /// Set only when the app still has no value (a `paas config:set` meanwhile wins).
    pub if_absent: BTreeMap<String, String>,
    /// Set whatever the app has (`"sync": true`).
    pub overwrite: BTreeMap<String, String>,
}

impl EnvDefaults {
    pub fn is_empty(&self) -> bool {
        self.if_absent.is_empty() && self.overwrite.is_empty()
    }
}

/// A new random secret for app.json's `"generator": "secret"`: 64 hex characters.
pub fn generate_secret() -> String {
    crate::secrets::random_hex()
}

/// What `paas run` (and later the supervisor) starts from: the current release.
#[derive(Debug, Clone)]
pub struct RunTarget {
    pub identity: super::Identity,
    pub stack: String,
    pub slug_id: Option<i64>,
    pub process_types: BTreeMap<String, String>,
    pub config: BTreeMap<String, String>,
}

impl Apps {
    /// The app's current release as something to run (the config is the app's current one:
    /// every config change makes a release, so they agree).
    pub async fn run_target(&self, name: String) -> Result<RunTarget, AppError> {
        let this = self.clone();
        self.store
            .tx(move |tx| {
                let app = find(tx, &name)?;
                let runs = store::releases::current(tx, app.id)?
                    .map(|r| r.runs)
                    .unwrap_or_default();
                Ok(RunTarget {
                    identity: super::Identity::of(&app)?,
                    stack: app.stack.clone(),
                    slug_id: runs.slug_id,
                    process_types: runs.process_types,
                    config: this.load_vars(tx, &app)?,
                })
            })
            .await
    }

    pub(super) fn insert_release(
        &self,
        tx: &Tx<'_>,
        app: &AppRow,
        description: &str,
        config: &BTreeMap<String, String>,
        status: ReleaseStatus,
        runs: &Runs,
    ) -> Result<ReleaseRow, AppError> {
        let version = store::releases::next_version(tx, app.id)?;
        let json = serde_json::to_vec(config)
            .map_err(|e| StoreError::Corrupt(format!("config snapshot: {e}")))?;
        let sealed = self
            .secrets
            .seal(&release_context(app.id, version), &json)?;
        let keys: Vec<String> = config.keys().cloned().collect();
        Ok(store::releases::insert(
            tx,
            app.id,
            version,
            &store::releases::NewRelease {
                description,
                status,
                config: &sealed,
                config_keys: &keys,
                runs,
            },
            store::now(),
        )?)
    }

    pub(super) fn release_view(
        &self,
        tx: &Tx<'_>,
        r: &ReleaseRow,
    ) -> Result<api::Release, AppError> {
        let deployment = match r.runs.deployment_id {
            Some(id) => store::deployments::get(tx, id)?
                .map(|d| deployment_view(tx, &d))
                .transpose()?,
            None => None,
        };
        Ok(api::Release {
            version: r.version,
            description: r.description.clone(),
            status: r.status,
            created_at: rfc3339(r.created_at),
            config_keys: r.config_keys.clone(),
            process_types: r.runs.process_types.clone(),
            deployment,
            rollout: r.rollout.clone(),
        })
    }

    /// Releases, newest first.
    pub async fn releases(&self, name: String) -> Result<Vec<api::Release>, AppError> {
        let this = self.clone();
        self.store
            .tx(move |tx| {
                let app = find(tx, &name)?;
                store::releases::list(tx, app.id)?
                    .iter()
                    .map(|r| this.release_view(tx, r))
                    .collect()
            })
            .await
    }

    /// One release by version.
    pub async fn release(&self, name: String, version: u32) -> Result<api::Release, AppError> {
        let this = self.clone();
        self.store
            .tx(move |tx| {
                let app = find(tx, &name)?;
                let r = release_row(tx, &app, version)?;
                this.release_view(tx, &r)
            })
            .await
    }

    /// Deploy attempts, newest first.
    pub async fn deployments(&self, name: String) -> Result<Vec<api::Deployment>, AppError> {
        self.store
            .tx(move |tx| {
                let app = find(tx, &name)?;
                store::deployments::list(tx, app.id)?
                    .iter()
                    .map(|d| deployment_view(tx, d))
                    .collect()
            })
            .await
    }

    /// Replaces the app's buildpack list (empty: detect at each build).
    pub async fn set_buildpacks(
        &self,
        name: String,
        buildpacks: Vec<String>,
    ) -> Result<api::App, AppError> {
        for bp in &buildpacks {
            validate::buildpack(bp).map_err(AppError::InvalidRequest)?;
        }
        if buildpacks.len() > 8 {
            return Err(AppError::InvalidRequest(
                "at most 8 buildpacks can be chained".into(),
            ));
        }
        let this = self.clone();
        self.store
            .tx(move |tx| {
                let app = find(tx, &name)?;
                let joined = (!buildpacks.is_empty()).then(|| buildpacks.join("\n"));
                store::apps::set_buildpack(tx, app.id, joined.as_deref())?;
                let app = find(tx, &name)?;
                tracing::info!(app = %app.name, ?buildpacks, "buildpacks set");
                this.app_view(tx, &app)
            })
            .await
    }

    /// The app as a build sees it: stack, buildpacks and current config (decrypted).
    pub async fn build_context(&self, name: String) -> Result<BuildContext, AppError> {
        let this = self.clone();
        self.store
            .tx(move |tx| {
                let app = find(tx, &name)?;
                let deployed_before = store::releases::list(tx, app.id)?
                    .iter()
                    .any(|r| r.runs.slug_id.is_some() && r.status == ReleaseStatus::Succeeded);
                Ok(BuildContext {
                    identity: super::Identity::of(&app)?,
                    limits: this.app_resources(tx, app.id)?.build_limits(),
                    app_id: app.id,
                    stack: app.stack.clone(),
                    buildpacks: buildpacks_of(&app),
                    config: this.load_vars(tx, &app)?,
                    deployed_before,
                })
            })
            .await
    }

    /// Makes the release a build produced, with the config as it is now (a config change
    /// during the build is not lost) plus app.json's `env` (set as config vars in the same
    /// transaction: sealed like any other, one release for both). `status` is `Pending` when
    /// a release phase must run first. Returns the release and its config.
    pub async fn release_build(
        &self,
        name: String,
        description: String,
        runs: Runs,
        status: ReleaseStatus,
        env: EnvDefaults,
    ) -> Result<(api::Release, BTreeMap<String, String>), AppError> {
        for (k, v) in env.if_absent.iter().chain(&env.overwrite) {
            validate::env_key(k).map_err(AppError::InvalidEnv)?;
            validate::env_value(k, v).map_err(AppError::InvalidEnv)?;
        }
        let this = self.clone();
        self.store
            .tx(move |tx| {
                let app = find(tx, &name)?;
                let mut config = this.load_vars(tx, &app)?;
                if !env.is_empty() {
                    for (k, v) in env.if_absent {
                        config.entry(k).or_insert(v);
                    }
                    config.extend(env.overwrite);
                    this.put_vars(tx, &app, &config)?;
                }
                let r = this.insert_release(tx, &app, &description, &config, status, &runs)?;
                tracing::info!(app = %app.name, version = r.version, "release made from a build");
                Ok((this.release_view(tx, &r)?, config))
            })
            .await
    }

    /// Settles a pending release once its release phase ran.
    pub async fn settle_release(
        &self,
        name: String,
        version: u32,
        status: ReleaseStatus,
    ) -> Result<api::Release, AppError> {
        let this = self.clone();
        self.store
            .tx(move |tx| {
                let app = find(tx, &name)?;
                store::releases::set_status(tx, app.id, version, status)?;
                let r = release_row(tx, &app, version)?;
                this.release_view(tx, &r)
            })
            .await
    }
}

fn release_row(tx: &Tx<'_>, app: &AppRow, version: u32) -> Result<ReleaseRow, AppError> {
    store::releases::get(tx, app.id, version)?.ok_or_else(|| AppError::ReleaseNotFound {
        app: app.name.clone(),
        version,
    })
}

/// Binds a release's sealed config to its app and version.
pub(super) fn release_context(app_id: i64, version: u32) -> String {
    format!("release:{app_id}:{version}")
}

pub fn deployment_view(tx: &Tx<'_>, d: &DeploymentRow) -> Result<api::Deployment, AppError> {
    let slug = match d.slug_id {
        Some(id) => store::slugs::get(tx, id)?,
        None => None,
    };
    Ok(api::Deployment {
        id: d.id as u64,
        status: d.status,
        version: d.version,
        source_sha256: d.source_sha256.clone(),
        source_bytes: d.source_bytes,
        buildpacks: d.buildpacks.clone(),
        user: d.user.clone(),
        started_at: rfc3339(d.started_at),
        finished_at: d.finished_at.map(rfc3339),
        phases: d.phases.clone(),
        slug_sha256: slug.as_ref().map(|s| s.sha256.clone()),
        slug_bytes: slug.as_ref().map(|s| s.bytes),
        error: d.error.clone(),
    })
}
