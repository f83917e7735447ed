//! Queries on the `apps` table.

use rusqlite::{params, OptionalExtension, Row};

use super::{StoreError, Tx};

#[derive(Debug, Clone)]
pub struct AppRow {
    pub id: i64,
    pub name: String,
    pub stack: String,
    pub buildpack: Option<String>,
    pub created_at: i64,
}

const COLUMNS: &str = "id, name, stack, buildpack, created_at";

fn row(r: &Row<'_>) -> rusqlite::Result<AppRow> {
    Ok(AppRow {
        id: r.get(0)?,
        name: r.get(1)?,
        stack: r.get(2)?,
        buildpack: r.get(3)?,
        created_at: r.get(4)?,
    })
}

pub fn insert(
    tx: &Tx<'_>,
    name: &str,
    stack: &str,
    buildpack: Option<&str>,
    now: i64,
) -> Result<AppRow, StoreError> {
    tx.execute(
        "INSERT INTO apps (name, stack, buildpack, created_at) VALUES (?1, ?2, ?3, ?4)",
        params![name, stack, buildpack, now],
    )?;
    Ok(AppRow {
        id: tx.last_insert_rowid(),
        name: name.to_string(),
        stack: stack.to_string(),
        buildpack: buildpack.map(str::to_string),
        created_at: now,
    })
}

pub fn find(tx: &Tx<'_>, name: &str) -> Result<Option<AppRow>, StoreError> {
    Ok(tx
        .query_row(
            &format!("SELECT {COLUMNS} FROM apps WHERE name = ?1"),
            [name],
            row,
        )
        .optional()?)
}

pub fn list(tx: &Tx<'_>) -> Result<Vec<AppRow>, StoreError> {
    let mut stmt = tx.prepare(&format!("SELECT {COLUMNS} FROM apps ORDER BY name"))?;
    let rows = stmt.query_map([], row)?.collect::<Result<Vec<_>, _>>()?;
    Ok(rows)
}

/// Deletes the app and, by cascade, its config, domains, formation and releases.
pub fn delete(tx: &Tx<'_>, id: i64) -> Result<(), StoreError> {
    tx.execute("DELETE FROM apps WHERE id = ?1", [id])?;
    Ok(())
}

/// Stores the app's buildpack list (one per line), or none.
pub fn set_buildpack(tx: &Tx<'_>, id: i64, buildpack: Option<&str>) -> Result<(), StoreError> {
    tx.execute(
        "UPDATE apps SET buildpack = ?2 WHERE id = ?1",
        params![id, buildpack],
    )?;
    Ok(())
}
