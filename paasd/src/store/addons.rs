//! Queries on `addons` and `addon_links`: add-on services and the apps they are linked to.
//! Rows only; what a kind means and how a service runs is `addons/`.

use rusqlite::{params, OptionalExtension};

use super::{StoreError, Tx};

#[derive(Debug, Clone)]
pub struct AddonRow {
    pub id: i64,
    pub name: String,
    /// `postgres` or `redis` (the table's CHECK keeps it so).
    pub kind: String,
    pub version: String,
    pub uid: u32,
    /// Sealed with the key file, like config vars.
    pub password: Vec<u8>,
    pub memory_mb: u64,
    pub disk_mb: u64,
    pub created_at: i64,
    /// Seconds between scheduled backups, and how many to keep; `None`: no schedule.
    pub backup_every: Option<i64>,
    pub backup_keep: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkRow {
    pub addon: String,
    pub app: String,
    pub app_id: i64,
    pub env_var: String,
    pub created_at: i64,
}

const COLUMNS: &str =
    "id, name, kind, version, uid, password, memory_mb, disk_mb, created_at, backup_every, backup_keep";

fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<AddonRow> {
    Ok(AddonRow {
        id: r.get(0)?,
        name: r.get(1)?,
        kind: r.get(2)?,
        version: r.get(3)?,
        uid: r.get(4)?,
        password: r.get(5)?,
        memory_mb: r.get(6)?,
        disk_mb: r.get(7)?,
        created_at: r.get(8)?,
        backup_every: r.get(9)?,
        backup_keep: r.get(10)?,
    })
}

pub struct NewAddon<'a> {
    pub name: &'a str,
    pub kind: &'a str,
    pub version: &'a str,
    pub uid: u32,
    pub password: &'a [u8],
    pub memory_mb: u64,
    pub disk_mb: u64,
    pub now: i64,
}

pub fn insert(tx: &Tx<'_>, a: &NewAddon<'_>) -> Result<AddonRow, StoreError> {
    tx.execute(
        "INSERT INTO addons (name, kind, version, uid, password, memory_mb, disk_mb, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        params![
            a.name,
            a.kind,
            a.version,
            a.uid,
            a.password,
            a.memory_mb,
            a.disk_mb,
            a.now
        ],
    )?;
    let id = tx.last_insert_rowid();
    Ok(AddonRow {
        id,
        name: a.name.to_string(),
        kind: a.kind.to_string(),
        version: a.version.to_string(),
        uid: a.uid,
        password: a.password.to_vec(),
        memory_mb: a.memory_mb,
        disk_mb: a.disk_mb,
        created_at: a.now,
        backup_every: None,
        backup_keep: None,
    })
}

pub fn find(tx: &Tx<'_>, name: &str) -> Result<Option<AddonRow>, StoreError> {
    Ok(tx
        .query_row(
            &format!("SELECT {COLUMNS} FROM addons WHERE name = ?1"),
            [name],
            row,
        )
        .optional()?)
}

pub fn list(tx: &Tx<'_>) -> Result<Vec<AddonRow>, StoreError> {
    let mut stmt = tx.prepare(&format!("SELECT {COLUMNS} FROM addons ORDER BY name"))?;
    let rows = stmt.query_map([], row)?.collect::<Result<Vec<_>, _>>()?;
    Ok(rows)
}

pub fn delete(tx: &Tx<'_>, id: i64) -> Result<(), StoreError> {
    tx.execute("DELETE FROM addons WHERE id = ?1", [id])?;
    Ok(())
}

pub fn set_schedule(
    tx: &Tx<'_>,
    id: i64,
    every: Option<i64>,
    keep: Option<i64>,
) -> Result<(), StoreError> {
    tx.execute(
        "UPDATE addons SET backup_every = ?2, backup_keep = ?3 WHERE id = ?1",
        params![id, every, keep],
    )?;
    Ok(())
}

const LINK_SELECT: &str = "SELECT addons.name, apps.name, apps.id, addon_links.env_var,
     addon_links.created_at FROM addon_links
     JOIN addons ON addons.id = addon_links.addon_id JOIN apps ON apps.id = addon_links.app_id";

fn link_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<LinkRow> {
    Ok(LinkRow {
        addon: r.get(0)?,
        app: r.get(1)?,
        app_id: r.get(2)?,
        env_var: r.get(3)?,
        created_at: r.get(4)?,
    })
}

/// Every link, by add-on then app.
pub fn links(tx: &Tx<'_>) -> Result<Vec<LinkRow>, StoreError> {
    let mut stmt = tx.prepare(&format!(
        "{LINK_SELECT} ORDER BY addons.name, addon_links.created_at, apps.name"
    ))?;
    let rows = stmt
        .query_map([], link_row)?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(rows)
}

pub fn links_of_app(tx: &Tx<'_>, app_id: i64) -> Result<Vec<LinkRow>, StoreError> {
    let mut stmt = tx.prepare(&format!(
        "{LINK_SELECT} WHERE addon_links.app_id = ?1 ORDER BY addons.name"
    ))?;
    let rows = stmt
        .query_map([app_id], link_row)?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(rows)
}

pub fn insert_link(
    tx: &Tx<'_>,
    addon_id: i64,
    app_id: i64,
    env_var: &str,
    now: i64,
) -> Result<(), StoreError> {
    tx.execute(
        "INSERT INTO addon_links (addon_id, app_id, env_var, created_at) VALUES (?1, ?2, ?3, ?4)",
        params![addon_id, app_id, env_var, now],
    )?;
    Ok(())
}

/// False when there was no such link.
pub fn delete_link(tx: &Tx<'_>, addon_id: i64, app_id: i64) -> Result<bool, StoreError> {
    let n = tx.execute(
        "DELETE FROM addon_links WHERE addon_id = ?1 AND app_id = ?2",
        params![addon_id, app_id],
    )?;
    Ok(n > 0)
}
