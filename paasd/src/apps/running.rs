//! What the supervisor asks of the app service: a release as something to run (its slug,
//! process types and its own config snapshot), the formation, domains and health-check
//! overrides, rollbacks, and recording how a rollout went. Must not start anything.

use std::collections::BTreeMap;

use paas_api as api;
use paas_api::{PhaseTiming, ReleaseStatus};

use super::{find, AppError, Apps};
use crate::store::{self, releases::ReleaseRow, StoreError};

/// One release of one app, ready to be run.
#[derive(Debug, Clone)]
pub struct Runnable {
    pub app: String,
    pub identity: super::Identity,
    pub stack: String,
    pub version: u32,
    pub slug_id: i64,
    pub process_types: BTreeMap<String, String>,
    /// The release's own config snapshot (not the app's current vars: a rollback runs the
    /// config of the release it goes back to).
    pub config: BTreeMap<String, String>,
    /// Desired instances per process type of this release.
    pub formation: BTreeMap<String, u32>,
    /// Checks set with `paas checks set`: process type -> spec (JSON).
    pub checks: BTreeMap<String, String>,
    /// The app's limits as they are now (not the release's: `paas resources` changes no
    /// release, and its values apply to whatever starts next).
    pub resources: super::AppResources,
}

/// An app as the router sees it.
#[derive(Debug, Clone)]
pub struct RouteInfo {
    pub app: String,
    pub domains: Vec<String>,
    pub https: paas_api::HttpsSettings,
}

/// Instances a process type runs when nobody scaled it: one `web`, no others (Heroku); an
/// app without a `web` type runs one `worker` (dokku), so a worker-only app starts at all.
pub fn default_quantity<'a>(
    process_type: &str,
    mut all_types: impl Iterator<Item = &'a String>,
) -> u32 {
    match process_type {
        "web" => 1,
        "worker" => u32::from(!all_types.any(|t| t == "web")),
        _ => 0,
    }
}

impl Apps {
    /// Release `version` (the current one when `None`) as something to run; `None` when the
    /// app has nothing built to run.
    pub async fn runnable(
        &self,
        name: String,
        version: Option<u32>,
    ) -> Result<Option<Runnable>, AppError> {
        let this = self.clone();
        self.store
            .tx(move |tx| {
                let app = find(tx, &name)?;
                let row = match version {
                    Some(v) => Some(store::releases::get(tx, app.id, v)?.ok_or(
                        AppError::ReleaseNotFound {
                            app: app.name.clone(),
                            version: v,
                        },
                    )?),
                    None => store::releases::current(tx, app.id)?,
                };
                let Some(row) = row else { return Ok(None) };
                let Some(slug_id) = row.runs.slug_id else {
                    return Ok(None);
                };
                let scaled = store::formation::get(tx, app.id)?;
                let formation = row
                    .runs
                    .process_types
                    .keys()
                    .filter(|t| *t != "release")
                    .map(|t| (t.clone(), super::quantity(&scaled, &row, t)))
                    .collect();
                Ok(Some(Runnable {
                    identity: super::Identity::of(&app)?,
                    app: app.name.clone(),
                    stack: app.stack.clone(),
                    version: row.version,
                    slug_id,
                    process_types: row.runs.process_types.clone(),
                    config: this.open_release_config(app.id, &row)?,
                    formation,
                    checks: store::checks::get(tx, app.id)?,
                    resources: this.app_resources(tx, app.id)?,
                }))
            })
            .await
    }

    /// Every app with its custom domains, for the route table.
    pub async fn route_info(&self) -> Result<Vec<RouteInfo>, AppError> {
        self.store
            .tx(move |tx| {
                store::apps::list(tx)?
                    .into_iter()
                    .map(|a| {
                        Ok(RouteInfo {
                            domains: store::domains::list_for_app(tx, a.id)?
                                .into_iter()
                                .map(|d| d.domain)
                                .collect(),
                            https: crate::certs::https_of(tx, a.id)?,
                            app: a.name,
                        })
                    })
                    .collect()
            })
            .await
    }

    /// Names of apps that have a release to run.
    pub async fn names(&self) -> Result<Vec<String>, AppError> {
        self.store
            .tx(|tx| Ok(store::apps::list(tx)?.into_iter().map(|a| a.name).collect()))
            .await
    }

    /// `paas rollback APP [--to vN]`: a new release with vN's slug, process types and config
    /// (the app's config vars go back to vN's too, as on Heroku). Without a target, the
    /// newest succeeded release before the current one. The new release is pending until
    /// its rollout settles it.
    pub async fn rollback(&self, name: String, to: Option<u32>) -> Result<api::Release, AppError> {
        let this = self.clone();
        self.store
            .tx(move |tx| {
                let app = find(tx, &name)?;
                let current = store::releases::current(tx, app.id)?;
                let target = match to {
                    Some(v) => store::releases::get(tx, app.id, v)?.ok_or(
                        AppError::ReleaseNotFound {
                            app: app.name.clone(),
                            version: v,
                        },
                    )?,
                    None => {
                        let cur = current.as_ref().map_or(0, |r| r.version);
                        store::releases::list(tx, app.id)?
                            .into_iter()
                            .find(|r| r.version < cur && r.status == ReleaseStatus::Succeeded)
                            .ok_or_else(|| {
                                AppError::InvalidRequest(format!(
                                    "app '{}' has no earlier release to roll back to",
                                    app.name
                                ))
                            })?
                    }
                };
                if target.runs.slug_id.is_none() {
                    return Err(AppError::InvalidRequest(format!(
                        "v{} has no build to run; roll back to a release made by a deploy",
                        target.version
                    )));
                }
                if target.status == ReleaseStatus::Failed {
                    return Err(AppError::InvalidRequest(format!(
                        "v{} failed; roll back to a release that succeeded",
                        target.version
                    )));
                }
                let config = this.open_release_config(app.id, &target)?;
                this.put_vars(tx, &app, &config)?;
                let r = this.insert_release(
                    tx,
                    &app,
                    &format!("Rollback to v{}", target.version),
                    &config,
                    ReleaseStatus::Pending,
                    &target.runs,
                )?;
                tracing::info!(app = %app.name, version = r.version, to = target.version, "rollback release made");
                this.release_view(tx, &r)
            })
            .await
    }

    /// Stores how a release's rollout went.
    pub async fn record_rollout(
        &self,
        name: String,
        version: u32,
        phases: Vec<PhaseTiming>,
    ) -> Result<(), AppError> {
        self.store
            .tx(move |tx| {
                let app = find(tx, &name)?;
                store::releases::set_rollout(tx, app.id, version, &phases)?;
                Ok(())
            })
            .await
    }

    /// Sets (Some) or removes (None) the check of a process type.
    pub async fn set_check(
        &self,
        name: String,
        process_type: String,
        spec: Option<String>,
    ) -> Result<(), AppError> {
        super::validate::process_type(&process_type).map_err(AppError::InvalidRequest)?;
        self.store
            .tx(move |tx| {
                let app = find(tx, &name)?;
                match spec {
                    Some(s) => store::checks::set(tx, app.id, &process_type, &s)?,
                    None => {
                        store::checks::remove(tx, app.id, &process_type)?;
                    }
                }
                Ok(())
            })
            .await
    }

    /// Checks set with `paas checks set`: process type -> spec (JSON).
    pub async fn checks(&self, name: String) -> Result<BTreeMap<String, String>, AppError> {
        self.store
            .tx(move |tx| {
                let app = find(tx, &name)?;
                Ok(store::checks::get(tx, app.id)?)
            })
            .await
    }

    fn open_release_config(
        &self,
        app_id: i64,
        row: &ReleaseRow,
    ) -> Result<BTreeMap<String, String>, AppError> {
        let plain = self.secrets.open(
            &super::releases::release_context(app_id, row.version),
            &row.config,
        )?;
        Ok(serde_json::from_slice(&plain)
            .map_err(|e| StoreError::Corrupt(format!("release config: {e}")))?)
    }
}

#[cfg(test)]
mod tests {
    use super::default_quantity;

    fn types(t: &[&str]) -> Vec<String> {
        t.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn one_web_by_default_or_one_worker_when_there_is_no_web() {
        let with_web = types(&["web", "worker", "clock"]);
        let q = |t: &str, all: &Vec<String>| default_quantity(t, all.iter());
        assert_eq!(q("web", &with_web), 1);
        assert_eq!(q("worker", &with_web), 0);
        assert_eq!(q("clock", &with_web), 0);
        let worker_only = types(&["worker", "clock"]);
        assert_eq!(q("worker", &worker_only), 1);
        assert_eq!(q("clock", &worker_only), 0);
    }
}
