//! Cron runs as the app service records them: the last run of each app.json `cron` entry
//! (release, start, end, exit). Must not schedule or run anything (the `cron` service does).

use super::{find, rfc3339, AppError, Apps};
use crate::store::{self, cron::CronRunRow};

/// The last run of one cron entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CronRun {
    pub schedule: String,
    pub command: String,
    pub release: u32,
    /// RFC 3339.
    pub started_at: String,
    pub finished_at: Option<String>,
    pub exit_code: Option<i32>,
    pub outcome: String,
}

impl Apps {
    /// Records a cron run's start (`outcome` `running`) or end.
    #[allow(clippy::too_many_arguments)]
    pub async fn record_cron(
        &self,
        name: String,
        schedule: String,
        command: String,
        release: u32,
        started_at: i64,
        finished_at: Option<i64>,
        exit_code: Option<i32>,
        outcome: &'static str,
    ) -> Result<(), AppError> {
        self.store
            .tx(move |tx| {
                let app = find(tx, &name)?;
                store::cron::put(
                    tx,
                    app.id,
                    &CronRunRow {
                        schedule,
                        command,
                        release,
                        started_at,
                        finished_at,
                        exit_code,
                        outcome: outcome.to_string(),
                    },
                )?;
                Ok(())
            })
            .await
    }

    /// The last run of every entry that ever ran.
    pub async fn cron_runs(&self, name: String) -> Result<Vec<CronRun>, AppError> {
        self.store
            .tx(move |tx| {
                let app = find(tx, &name)?;
                Ok(store::cron::list(tx, app.id)?
                    .into_iter()
                    .map(|r| CronRun {
                        schedule: r.schedule,
                        command: r.command,
                        release: r.release,
                        started_at: rfc3339(r.started_at),
                        finished_at: r.finished_at.map(rfc3339),
                        exit_code: r.exit_code,
                        outcome: r.outcome,
                    })
                    .collect())
            })
            .await
    }

    /// At start: runs a stopped paasd left `running` died with it.
    pub async fn lose_running_cron(&self) -> Result<usize, AppError> {
        Ok(self.store.tx(store::cron::lose_running).await?)
    }
}
