//! Queries on `formation`: desired instance count per process type.

use std::collections::BTreeMap;

use rusqlite::params;

use super::{StoreError, Tx};

pub fn get(tx: &Tx<'_>, app_id: i64) -> Result<BTreeMap<String, u32>, StoreError> {
    let mut stmt = tx.prepare(
        "SELECT process_type, quantity FROM formation WHERE app_id = ?1 ORDER BY process_type",
    )?;
    let rows = stmt
        .query_map([app_id], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, u32>(1)?))
        })?
        .collect::<Result<BTreeMap<_, _>, _>>()?;
    Ok(rows)
}

pub fn set(tx: &Tx<'_>, app_id: i64, process_type: &str, quantity: u32) -> Result<(), StoreError> {
    tx.execute(
        "INSERT INTO formation (app_id, process_type, quantity) VALUES (?1, ?2, ?3)
         ON CONFLICT (app_id, process_type) DO UPDATE SET quantity = excluded.quantity",
        params![app_id, process_type, quantity],
    )?;
    Ok(())
}
