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
    /// The host uid (and gid) the app's processes run as; `None` only for an app made before
    /// uids were per app, until paasd's start gives it one.
    pub uid: Option<u32>,
}

const COLUMNS: &str = "id, name, stack, buildpack, created_at, uid";

fn row(r: &Row<'_>) -> rusqlite::Result<AppRow> {
    Ok(AppRow {
        id: r.get(0)?,
        name: r.get(1)?,
        stack: r.get(2)?,
        buildpack: r.get(3)?,
        created_at: r.get(4)?,
        uid: r.get(5)?,
    })
}

pub fn insert(
    tx: &Tx<'_>,
    name: &str,
    stack: &str,
    buildpack: Option<&str>,
    now: i64,
    uid: u32,
) -> Result<AppRow, StoreError> {
    tx.execute(
        "INSERT INTO apps (name, stack, buildpack, created_at, uid) VALUES (?1, ?2, ?3, ?4, ?5)",
        params![name, stack, buildpack, now, uid],
    )?;
    Ok(AppRow {
        id: tx.last_insert_rowid(),
        name: name.to_string(),
        stack: stack.to_string(),
        buildpack: buildpack.map(str::to_string),
        created_at: now,
        uid: Some(uid),
    })
}

/// The next never-used uid of `first..first + count`, or `None` when all were handed out.
pub fn take_uid(tx: &Tx<'_>, first: u32, count: u32) -> Result<Option<u32>, StoreError> {
    let offset: i64 = tx.query_row("SELECT next_offset FROM uid_next", [], |r| r.get(0))?;
    if offset < 0 || offset >= i64::from(count) {
        return Ok(None);
    }
    tx.execute("UPDATE uid_next SET next_offset = next_offset + 1", [])?;
    Ok(u32::try_from(offset).ok().map(|o| first + o))
}

pub fn set_uid(tx: &Tx<'_>, id: i64, uid: u32) -> Result<(), StoreError> {
    tx.execute("UPDATE apps SET uid = ?2 WHERE id = ?1", params![id, uid])?;
    Ok(())
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
