//! Queries on `volumes`: an app's persistent volumes (name, mount path, size). Rows only;
//! where their images live and how they are mounted is `volumes.rs`.

use rusqlite::params;

use super::{StoreError, Tx};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolumeRow {
    pub app: String,
    pub name: String,
    /// Absolute path inside the app's containers.
    pub path: String,
    pub size_mb: u64,
    pub created_at: i64,
}

const SELECT: &str = "SELECT apps.name, volumes.name, volumes.path, volumes.size_mb,
     volumes.created_at FROM volumes JOIN apps ON apps.id = volumes.app_id";

fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<VolumeRow> {
    Ok(VolumeRow {
        app: r.get(0)?,
        name: r.get(1)?,
        path: r.get(2)?,
        size_mb: r.get(3)?,
        created_at: r.get(4)?,
    })
}

pub fn list(tx: &Tx<'_>) -> Result<Vec<VolumeRow>, StoreError> {
    let mut stmt = tx.prepare(&format!("{SELECT} ORDER BY apps.name, volumes.name"))?;
    let rows = stmt.query_map([], row)?.collect::<Result<Vec<_>, _>>()?;
    Ok(rows)
}

pub fn of_app(tx: &Tx<'_>, app_id: i64) -> Result<Vec<VolumeRow>, StoreError> {
    let mut stmt = tx.prepare(&format!(
        "{SELECT} WHERE volumes.app_id = ?1 ORDER BY volumes.name"
    ))?;
    let rows = stmt
        .query_map([app_id], row)?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(rows)
}

pub fn insert(
    tx: &Tx<'_>,
    app_id: i64,
    name: &str,
    path: &str,
    size_mb: u64,
    now: i64,
) -> Result<(), StoreError> {
    tx.execute(
        "INSERT INTO volumes (app_id, name, path, size_mb, created_at) VALUES (?1, ?2, ?3, ?4, ?5)",
        params![app_id, name, path, size_mb, now],
    )?;
    Ok(())
}

/// False when the app had no such volume.
pub fn delete(tx: &Tx<'_>, app_id: i64, name: &str) -> Result<bool, StoreError> {
    let n = tx.execute(
        "DELETE FROM volumes WHERE app_id = ?1 AND name = ?2",
        params![app_id, name],
    )?;
    Ok(n > 0)
}
