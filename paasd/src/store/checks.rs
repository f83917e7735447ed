//! Queries on `checks`: health checks set through the API, per process type, stored as the
//! JSON the supervisor parses (it owns their meaning).

use std::collections::BTreeMap;

use rusqlite::params;

use super::{StoreError, Tx};

/// Process type -> check spec (JSON).
pub fn get(tx: &Tx<'_>, app_id: i64) -> Result<BTreeMap<String, String>, StoreError> {
    let mut stmt = tx
        .prepare("SELECT process_type, spec FROM checks WHERE app_id = ?1 ORDER BY process_type")?;
    let rows = stmt
        .query_map([app_id], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<Result<BTreeMap<_, _>, _>>()?;
    Ok(rows)
}

pub fn set(tx: &Tx<'_>, app_id: i64, process_type: &str, spec: &str) -> Result<(), StoreError> {
    tx.execute(
        "INSERT INTO checks (app_id, process_type, spec) VALUES (?1, ?2, ?3)
         ON CONFLICT (app_id, process_type) DO UPDATE SET spec = excluded.spec",
        params![app_id, process_type, spec],
    )?;
    Ok(())
}

pub fn remove(tx: &Tx<'_>, app_id: i64, process_type: &str) -> Result<bool, StoreError> {
    Ok(tx.execute(
        "DELETE FROM checks WHERE app_id = ?1 AND process_type = ?2",
        params![app_id, process_type],
    )? > 0)
}
