//! Queries on `slugs`: one row per built slug; `removed` once garbage collection deleted its
//! files (the row stays so old releases can say why they cannot be rolled back to).

use rusqlite::{params, OptionalExtension};

use super::{StoreError, Tx};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlugRow {
    pub id: i64,
    pub app_id: i64,
    pub sha256: String,
    pub bytes: u64,
    pub created_at: i64,
    pub removed: bool,
}

const COLUMNS: &str = "id, app_id, sha256, bytes, created_at, removed";

fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<SlugRow> {
    Ok(SlugRow {
        id: r.get(0)?,
        app_id: r.get(1)?,
        sha256: r.get(2)?,
        bytes: r.get(3)?,
        created_at: r.get(4)?,
        removed: r.get(5)?,
    })
}

pub fn insert(
    tx: &Tx<'_>,
    app_id: i64,
    sha256: &str,
    bytes: u64,
    now: i64,
) -> Result<SlugRow, StoreError> {
    tx.execute(
        "INSERT INTO slugs (app_id, sha256, bytes, created_at) VALUES (?1, ?2, ?3, ?4)",
        params![app_id, sha256, bytes, now],
    )?;
    Ok(SlugRow {
        id: tx.last_insert_rowid(),
        app_id,
        sha256: sha256.to_string(),
        bytes,
        created_at: now,
        removed: false,
    })
}

pub fn get(tx: &Tx<'_>, id: i64) -> Result<Option<SlugRow>, StoreError> {
    Ok(tx
        .query_row(
            &format!("SELECT {COLUMNS} FROM slugs WHERE id = ?1"),
            [id],
            row,
        )
        .optional()?)
}

/// Slugs of the app whose files still exist.
pub fn live(tx: &Tx<'_>, app_id: i64) -> Result<Vec<SlugRow>, StoreError> {
    let mut stmt = tx.prepare(&format!(
        "SELECT {COLUMNS} FROM slugs WHERE app_id = ?1 AND removed = 0 ORDER BY id"
    ))?;
    let rows = stmt
        .query_map([app_id], row)?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(rows)
}

pub fn mark_removed(tx: &Tx<'_>, id: i64) -> Result<(), StoreError> {
    tx.execute("UPDATE slugs SET removed = 1 WHERE id = ?1", [id])?;
    Ok(())
}
