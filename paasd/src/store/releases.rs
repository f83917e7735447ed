//! Queries on `releases`. Releases are immutable once written except for their status.
//! The config snapshot arrives sealed.

use paas_api::ReleaseStatus;
use rusqlite::{params, OptionalExtension, Row};

use super::{StoreError, Tx};

#[derive(Debug, Clone)]
pub struct ReleaseRow {
    pub version: u32,
    pub description: String,
    pub status: ReleaseStatus,
    /// Sealed JSON object of the config vars at this release.
    pub config: Vec<u8>,
    pub config_keys: Vec<String>,
    pub created_at: i64,
    pub runs: Runs,
    /// How its rollout went: start, ready, switch and drain durations (empty until then).
    pub rollout: Vec<paas_api::PhaseTiming>,
}

/// What a release runs: carried over unchanged by config-only releases.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Runs {
    pub slug_id: Option<i64>,
    pub process_types: std::collections::BTreeMap<String, String>,
    pub deployment_id: Option<i64>,
    /// Instances per process type from the slug's app.json `formation` (what a type runs
    /// when it was never scaled with `paas scale`).
    pub formation: std::collections::BTreeMap<String, u32>,
}

pub struct NewRelease<'a> {
    pub description: &'a str,
    pub status: ReleaseStatus,
    pub config: &'a [u8],
    pub config_keys: &'a [String],
    pub runs: &'a Runs,
}

const COLUMNS: &str = "version, description, status, config, config_keys, created_at, slug_id, \
                       process_types, deployment_id, rollout, formation";

fn status_str(s: ReleaseStatus) -> &'static str {
    match s {
        ReleaseStatus::Pending => "pending",
        ReleaseStatus::Succeeded => "succeeded",
        ReleaseStatus::Failed => "failed",
    }
}

fn row(r: &Row<'_>) -> rusqlite::Result<ReleaseRow> {
    let status: String = r.get(2)?;
    let keys: String = r.get(4)?;
    let bad = |what: String| {
        rusqlite::Error::FromSqlConversionFailure(
            2,
            rusqlite::types::Type::Text,
            Box::new(StoreError::Corrupt(what)),
        )
    };
    Ok(ReleaseRow {
        version: r.get(0)?,
        description: r.get(1)?,
        status: match status.as_str() {
            "pending" => ReleaseStatus::Pending,
            "succeeded" => ReleaseStatus::Succeeded,
            "failed" => ReleaseStatus::Failed,
            other => return Err(bad(format!("release status '{other}'"))),
        },
        config: r.get(3)?,
        config_keys: serde_json::from_str(&keys)
            .map_err(|e| bad(format!("release config_keys: {e}")))?,
        created_at: r.get(5)?,
        runs: Runs {
            slug_id: r.get(6)?,
            process_types: {
                let t: String = r.get(7)?;
                serde_json::from_str(&t).map_err(|e| bad(format!("release process_types: {e}")))?
            },
            deployment_id: r.get(8)?,
            formation: {
                let t: String = r.get(10)?;
                serde_json::from_str(&t).map_err(|e| bad(format!("release formation: {e}")))?
            },
        },
        rollout: {
            let t: String = r.get(9)?;
            serde_json::from_str(&t).map_err(|e| bad(format!("release rollout: {e}")))?
        },
    })
}

/// The version the next release of this app gets.
pub fn next_version(tx: &Tx<'_>, app_id: i64) -> Result<u32, StoreError> {
    Ok(tx.query_row(
        "SELECT COALESCE(MAX(version), 0) + 1 FROM releases WHERE app_id = ?1",
        [app_id],
        |r| r.get(0),
    )?)
}

pub fn insert(
    tx: &Tx<'_>,
    app_id: i64,
    version: u32,
    new: &NewRelease<'_>,
    now: i64,
) -> Result<ReleaseRow, StoreError> {
    let keys = serde_json::to_string(new.config_keys)
        .map_err(|e| StoreError::Corrupt(format!("config keys: {e}")))?;
    let types = serde_json::to_string(&new.runs.process_types)
        .map_err(|e| StoreError::Corrupt(format!("process types: {e}")))?;
    let formation = serde_json::to_string(&new.runs.formation)
        .map_err(|e| StoreError::Corrupt(format!("formation: {e}")))?;
    tx.execute(
        "INSERT INTO releases (app_id, version, description, status, config, config_keys, created_at,
                               slug_id, process_types, deployment_id, formation)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
        params![
            app_id,
            version,
            new.description,
            status_str(new.status),
            new.config,
            keys,
            now,
            new.runs.slug_id,
            types,
            new.runs.deployment_id,
            formation
        ],
    )?;
    Ok(ReleaseRow {
        version,
        description: new.description.to_string(),
        status: new.status,
        config: new.config.to_vec(),
        config_keys: new.config_keys.to_vec(),
        created_at: now,
        runs: new.runs.clone(),
        rollout: Vec::new(),
    })
}

/// All releases of an app, newest first.
pub fn list(tx: &Tx<'_>, app_id: i64) -> Result<Vec<ReleaseRow>, StoreError> {
    let mut stmt = tx.prepare(&format!(
        "SELECT {COLUMNS} FROM releases WHERE app_id = ?1 ORDER BY version DESC"
    ))?;
    let rows = stmt
        .query_map([app_id], row)?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(rows)
}

/// The newest succeeded release, the one that is (or will be) running.
pub fn current(tx: &Tx<'_>, app_id: i64) -> Result<Option<ReleaseRow>, StoreError> {
    Ok(tx
        .query_row(
            &format!(
                "SELECT {COLUMNS} FROM releases WHERE app_id = ?1 AND status = 'succeeded'
                 ORDER BY version DESC LIMIT 1"
            ),
            [app_id],
            row,
        )
        .optional()?)
}

/// One release by version.
pub fn get(tx: &Tx<'_>, app_id: i64, version: u32) -> Result<Option<ReleaseRow>, StoreError> {
    Ok(tx
        .query_row(
            &format!("SELECT {COLUMNS} FROM releases WHERE app_id = ?1 AND version = ?2"),
            params![app_id, version],
            row,
        )
        .optional()?)
}

/// Releases may change only their status (a release phase decides it after the fact).
pub fn set_status(
    tx: &Tx<'_>,
    app_id: i64,
    version: u32,
    status: ReleaseStatus,
) -> Result<(), StoreError> {
    tx.execute(
        "UPDATE releases SET status = ?3 WHERE app_id = ?1 AND version = ?2",
        params![app_id, version, status_str(status)],
    )?;
    Ok(())
}

/// Records how a release's rollout went.
pub fn set_rollout(
    tx: &Tx<'_>,
    app_id: i64,
    version: u32,
    phases: &[paas_api::PhaseTiming],
) -> Result<(), StoreError> {
    let json = serde_json::to_string(phases)
        .map_err(|e| StoreError::Corrupt(format!("rollout phases: {e}")))?;
    tx.execute(
        "UPDATE releases SET rollout = ?3 WHERE app_id = ?1 AND version = ?2",
        params![app_id, version, json],
    )?;
    Ok(())
}

/// Releases left `pending` by a paasd that stopped mid-rollout (or mid release phase) never
/// ran: they are failed, so the newest succeeded release is the one that runs.
pub fn fail_pending(tx: &Tx<'_>) -> Result<usize, StoreError> {
    Ok(tx.execute(
        "UPDATE releases SET status = 'failed' WHERE status = 'pending'",
        [],
    )?)
}

/// Slugs that the newest `keep` releases, and the current release, run: garbage collection
/// must leave these alone.
pub fn slugs_in_use(tx: &Tx<'_>, app_id: i64, keep: u32) -> Result<Vec<i64>, StoreError> {
    let mut stmt = tx.prepare(
        "SELECT DISTINCT slug_id FROM (
             SELECT slug_id FROM (SELECT slug_id FROM releases WHERE app_id = ?1
                                  ORDER BY version DESC LIMIT ?2)
             UNION
             SELECT slug_id FROM (SELECT slug_id FROM releases WHERE app_id = ?1
                                  AND status = 'succeeded' ORDER BY version DESC LIMIT 1)
         ) WHERE slug_id IS NOT NULL",
    )?;
    let ids = stmt
        .query_map(params![app_id, keep], |r| r.get(0))?
        .collect::<Result<Vec<i64>, _>>()?;
    Ok(ids)
}
