//! Queries on `domains`: custom host names, each owned by exactly one app.

use rusqlite::{params, OptionalExtension};

use super::{StoreError, Tx};

#[derive(Debug, Clone)]
pub struct DomainRow {
    pub domain: String,
    pub app: String,
    pub created_at: i64,
}

pub fn insert(tx: &Tx<'_>, app_id: i64, domain: &str, now: i64) -> Result<(), StoreError> {
    tx.execute(
        "INSERT INTO domains (domain, app_id, created_at) VALUES (?1, ?2, ?3)",
        params![domain, app_id, now],
    )?;
    Ok(())
}

/// The name of the app that owns `domain`, if any.
pub fn owner(tx: &Tx<'_>, domain: &str) -> Result<Option<String>, StoreError> {
    Ok(tx
        .query_row(
            "SELECT apps.name FROM domains JOIN apps ON apps.id = domains.app_id
             WHERE domains.domain = ?1",
            [domain],
            |r| r.get(0),
        )
        .optional()?)
}

pub fn list_for_app(tx: &Tx<'_>, app_id: i64) -> Result<Vec<DomainRow>, StoreError> {
    let mut stmt = tx.prepare(
        "SELECT domains.domain, apps.name, domains.created_at FROM domains
         JOIN apps ON apps.id = domains.app_id WHERE app_id = ?1 ORDER BY domain",
    )?;
    let rows = stmt
        .query_map([app_id], |r| {
            Ok(DomainRow {
                domain: r.get(0)?,
                app: r.get(1)?,
                created_at: r.get(2)?,
            })
        })?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(rows)
}

/// Removes `domain` from the app; false when the app did not have it.
pub fn delete(tx: &Tx<'_>, app_id: i64, domain: &str) -> Result<bool, StoreError> {
    let n = tx.execute(
        "DELETE FROM domains WHERE app_id = ?1 AND domain = ?2",
        params![app_id, domain],
    )?;
    Ok(n > 0)
}
