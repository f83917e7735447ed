//! Queries on `ssh_keys`: the public keys allowed to `git push`, by name. Parsing and
//! validating a key is the git module's job, not this one's.

use rusqlite::{params, OptionalExtension};

use super::{StoreError, Tx};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyRow {
    pub name: String,
    pub key_type: String,
    /// The base64 key blob as it appears in an authorized_keys line.
    pub blob: String,
    pub fingerprint: String,
    pub created_at: i64,
}

pub fn insert(tx: &Tx<'_>, k: &KeyRow) -> Result<(), StoreError> {
    tx.execute(
        "INSERT INTO ssh_keys (name, key_type, blob, fingerprint, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5)",
        params![k.name, k.key_type, k.blob, k.fingerprint, k.created_at],
    )?;
    Ok(())
}

pub fn by_name(tx: &Tx<'_>, name: &str) -> Result<Option<KeyRow>, StoreError> {
    Ok(tx
        .query_row(
            &format!("SELECT {COLUMNS} FROM ssh_keys WHERE name = ?1"),
            [name],
            row,
        )
        .optional()?)
}

pub fn by_blob(tx: &Tx<'_>, blob: &str) -> Result<Option<KeyRow>, StoreError> {
    Ok(tx
        .query_row(
            &format!("SELECT {COLUMNS} FROM ssh_keys WHERE blob = ?1"),
            [blob],
            row,
        )
        .optional()?)
}

pub fn list(tx: &Tx<'_>) -> Result<Vec<KeyRow>, StoreError> {
    let mut stmt = tx.prepare(&format!("SELECT {COLUMNS} FROM ssh_keys ORDER BY name"))?;
    let rows = stmt.query_map([], row)?.collect::<Result<Vec<_>, _>>()?;
    Ok(rows)
}

/// False when there was no such key.
pub fn delete(tx: &Tx<'_>, name: &str) -> Result<bool, StoreError> {
    Ok(tx.execute("DELETE FROM ssh_keys WHERE name = ?1", [name])? > 0)
}

const COLUMNS: &str = "name, key_type, blob, fingerprint, created_at";

fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<KeyRow> {
    Ok(KeyRow {
        name: r.get(0)?,
        key_type: r.get(1)?,
        blob: r.get(2)?,
        fingerprint: r.get(3)?,
        created_at: r.get(4)?,
    })
}
