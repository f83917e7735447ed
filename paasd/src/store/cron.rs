//! Queries on `cron_runs`: the last run of each cron entry of an app, keyed by schedule and
//! command (the entries themselves live in the slug's app.json).

use rusqlite::params;

use super::{StoreError, Tx};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CronRunRow {
    pub schedule: String,
    pub command: String,
    pub release: u32,
    pub started_at: i64,
    pub finished_at: Option<i64>,
    pub exit_code: Option<i32>,
    /// `running`, `exited`, `signaled`, `oom`, `failed` (did not start) or `lost`.
    pub outcome: String,
}

pub fn list(tx: &Tx<'_>, app_id: i64) -> Result<Vec<CronRunRow>, StoreError> {
    let mut stmt = tx.prepare(
        "SELECT schedule, command, release, started_at, finished_at, exit_code, outcome
         FROM cron_runs WHERE app_id = ?1 ORDER BY schedule, command",
    )?;
    let rows = stmt
        .query_map([app_id], |r| {
            Ok(CronRunRow {
                schedule: r.get(0)?,
                command: r.get(1)?,
                release: r.get(2)?,
                started_at: r.get(3)?,
                finished_at: r.get(4)?,
                exit_code: r.get(5)?,
                outcome: r.get(6)?,
            })
        })?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(rows)
}

/// Records a run (its start, then its end: the row is replaced each time).
pub fn put(tx: &Tx<'_>, app_id: i64, run: &CronRunRow) -> Result<(), StoreError> {
    tx.execute(
        "INSERT INTO cron_runs (app_id, schedule, command, release, started_at, finished_at,
                                exit_code, outcome)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
         ON CONFLICT (app_id, schedule, command) DO UPDATE SET
             release = excluded.release, started_at = excluded.started_at,
             finished_at = excluded.finished_at, exit_code = excluded.exit_code,
             outcome = excluded.outcome",
        params![
            app_id,
            run.schedule,
            run.command,
            run.release,
            run.started_at,
            run.finished_at,
            run.exit_code,
            run.outcome
        ],
    )?;
    Ok(())
}

/// Runs marked `running` by a paasd that stopped: their containers died with it.
pub fn lose_running(tx: &Tx<'_>) -> Result<usize, StoreError> {
    Ok(tx.execute(
        "UPDATE cron_runs SET outcome = 'lost' WHERE outcome = 'running'",
        [],
    )?)
}
