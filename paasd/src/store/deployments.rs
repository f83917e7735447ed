//! Queries on `deployments`: one row per deploy attempt, written when the upload is unpacked
//! and updated as phases finish.

use paas_api::{DeploymentStatus, PhaseTiming};
use rusqlite::{params, OptionalExtension};

use super::{StoreError, Tx};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeploymentRow {
    pub id: i64,
    pub app_id: i64,
    pub status: DeploymentStatus,
    pub version: Option<u32>,
    pub source_sha256: String,
    pub source_bytes: u64,
    pub buildpacks: Vec<String>,
    pub user: String,
    pub started_at: i64,
    pub finished_at: Option<i64>,
    pub phases: Vec<PhaseTiming>,
    pub slug_id: Option<i64>,
    pub error: Option<String>,
}

const COLUMNS: &str = "id, app_id, status, version, source_sha256, source_bytes, buildpacks, \
                       user, started_at, finished_at, phases, slug_id, error";

fn status_str(s: DeploymentStatus) -> &'static str {
    match s {
        DeploymentStatus::Building => "building",
        DeploymentStatus::Succeeded => "succeeded",
        DeploymentStatus::Failed => "failed",
    }
}

fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<DeploymentRow> {
    let bad = |col: usize, what: String| {
        rusqlite::Error::FromSqlConversionFailure(
            col,
            rusqlite::types::Type::Text,
            Box::new(StoreError::Corrupt(what)),
        )
    };
    let status: String = r.get(2)?;
    let buildpacks: String = r.get(6)?;
    let phases: String = r.get(10)?;
    Ok(DeploymentRow {
        id: r.get(0)?,
        app_id: r.get(1)?,
        status: match status.as_str() {
            "building" => DeploymentStatus::Building,
            "succeeded" => DeploymentStatus::Succeeded,
            "failed" => DeploymentStatus::Failed,
            other => return Err(bad(2, format!("deployment status '{other}'"))),
        },
        version: r.get(3)?,
        source_sha256: r.get(4)?,
        source_bytes: r.get(5)?,
        buildpacks: serde_json::from_str(&buildpacks)
            .map_err(|e| bad(6, format!("deployment buildpacks: {e}")))?,
        user: r.get(7)?,
        started_at: r.get(8)?,
        finished_at: r.get(9)?,
        phases: serde_json::from_str(&phases)
            .map_err(|e| bad(10, format!("deployment phases: {e}")))?,
        slug_id: r.get(11)?,
        error: r.get(12)?,
    })
}

/// A new deploy in state `building`, with the phases already measured (receive, extract).
pub fn insert(
    tx: &Tx<'_>,
    app_id: i64,
    source_sha256: &str,
    source_bytes: u64,
    user: &str,
    phases: &[PhaseTiming],
    now: i64,
) -> Result<DeploymentRow, StoreError> {
    tx.execute(
        "INSERT INTO deployments (app_id, status, source_sha256, source_bytes, user, started_at, phases)
         VALUES (?1, 'building', ?2, ?3, ?4, ?5, ?6)",
        params![app_id, source_sha256, source_bytes, user, now, json(phases)?],
    )?;
    get(tx, tx.last_insert_rowid())?
        .ok_or_else(|| StoreError::Corrupt("deployment vanished after insert".into()))
}

/// Writes back the fields a running deploy changes.
pub fn update(tx: &Tx<'_>, d: &DeploymentRow) -> Result<(), StoreError> {
    tx.execute(
        "UPDATE deployments SET status = ?2, version = ?3, buildpacks = ?4, finished_at = ?5,
                phases = ?6, slug_id = ?7, error = ?8 WHERE id = ?1",
        params![
            d.id,
            status_str(d.status),
            d.version,
            json(&d.buildpacks)?,
            d.finished_at,
            json(&d.phases)?,
            d.slug_id,
            d.error
        ],
    )?;
    Ok(())
}

pub fn get(tx: &Tx<'_>, id: i64) -> Result<Option<DeploymentRow>, StoreError> {
    Ok(tx
        .query_row(
            &format!("SELECT {COLUMNS} FROM deployments WHERE id = ?1"),
            [id],
            row,
        )
        .optional()?)
}

/// The app's deployments, newest first.
pub fn list(tx: &Tx<'_>, app_id: i64) -> Result<Vec<DeploymentRow>, StoreError> {
    let mut stmt = tx.prepare(&format!(
        "SELECT {COLUMNS} FROM deployments WHERE app_id = ?1 ORDER BY id DESC"
    ))?;
    let rows = stmt
        .query_map([app_id], row)?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(rows)
}

/// Deploys a crashed paasd left in `building`: they can never finish.
pub fn fail_unfinished(tx: &Tx<'_>, now: i64) -> Result<usize, StoreError> {
    Ok(tx.execute(
        "UPDATE deployments SET status = 'failed', finished_at = ?1,
                error = 'paasd stopped while this deploy was running'
         WHERE status = 'building'",
        [now],
    )?)
}

fn json<T: serde::Serialize + ?Sized>(v: &T) -> Result<String, StoreError> {
    serde_json::to_string(v).map_err(|e| StoreError::Corrupt(e.to_string()))
}
