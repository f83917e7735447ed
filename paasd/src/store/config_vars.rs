//! Queries on `config_vars`. Values arrive and leave sealed; this module never sees plaintext.

use rusqlite::params;

use super::{StoreError, Tx};

/// All (key, sealed value) pairs of an app, sorted by key.
pub fn list(tx: &Tx<'_>, app_id: i64) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
    let mut stmt =
        tx.prepare("SELECT key, value FROM config_vars WHERE app_id = ?1 ORDER BY key")?;
    let rows = stmt
        .query_map([app_id], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(rows)
}

pub fn put(tx: &Tx<'_>, app_id: i64, key: &str, sealed: &[u8]) -> Result<(), StoreError> {
    tx.execute(
        "INSERT INTO config_vars (app_id, key, value) VALUES (?1, ?2, ?3)
         ON CONFLICT (app_id, key) DO UPDATE SET value = excluded.value",
        params![app_id, key, sealed],
    )?;
    Ok(())
}

pub fn delete(tx: &Tx<'_>, app_id: i64, key: &str) -> Result<(), StoreError> {
    tx.execute(
        "DELETE FROM config_vars WHERE app_id = ?1 AND key = ?2",
        params![app_id, key],
    )?;
    Ok(())
}
