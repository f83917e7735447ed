//! Queries on `resources`: the limits `paas resources` sets per app and process type
//! (`''` for every type). NULL means "not set here"; what that falls back to is the app
//! service's rule, not this module's.

use rusqlite::{params, OptionalExtension};

use super::{StoreError, Tx};

/// One row: the values set for one process type (`''`: every type).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ResourceRow {
    pub process_type: String,
    pub memory_mb: Option<u64>,
    pub cpu_percent: Option<u32>,
    pub pids: Option<u64>,
    pub disk_mb: Option<u64>,
}

impl ResourceRow {
    /// Nothing set: the row says nothing and need not exist.
    pub fn is_empty(&self) -> bool {
        self.memory_mb.is_none()
            && self.cpu_percent.is_none()
            && self.pids.is_none()
            && self.disk_mb.is_none()
    }
}

fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<ResourceRow> {
    Ok(ResourceRow {
        process_type: r.get(0)?,
        memory_mb: r.get(1)?,
        cpu_percent: r.get(2)?,
        pids: r.get(3)?,
        disk_mb: r.get(4)?,
    })
}

const COLUMNS: &str = "process_type, memory_mb, cpu_percent, pids, disk_mb";

/// Every row of the app, ordered by process type (`''` first).
pub fn list(tx: &Tx<'_>, app_id: i64) -> Result<Vec<ResourceRow>, StoreError> {
    let mut stmt = tx.prepare(&format!(
        "SELECT {COLUMNS} FROM resources WHERE app_id = ?1 ORDER BY process_type"
    ))?;
    let rows = stmt.query_map([app_id], row)?.collect::<Result<_, _>>()?;
    Ok(rows)
}

pub fn get(
    tx: &Tx<'_>,
    app_id: i64,
    process_type: &str,
) -> Result<Option<ResourceRow>, StoreError> {
    Ok(tx
        .query_row(
            &format!("SELECT {COLUMNS} FROM resources WHERE app_id = ?1 AND process_type = ?2"),
            params![app_id, process_type],
            row,
        )
        .optional()?)
}

/// Writes the row; an empty one is deleted instead, so "all defaults" leaves no trace.
pub fn put(tx: &Tx<'_>, app_id: i64, r: &ResourceRow) -> Result<(), StoreError> {
    if r.is_empty() {
        tx.execute(
            "DELETE FROM resources WHERE app_id = ?1 AND process_type = ?2",
            params![app_id, r.process_type],
        )?;
        return Ok(());
    }
    tx.execute(
        "INSERT INTO resources (app_id, process_type, memory_mb, cpu_percent, pids, disk_mb)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)
         ON CONFLICT (app_id, process_type) DO UPDATE SET
           memory_mb = excluded.memory_mb, cpu_percent = excluded.cpu_percent,
           pids = excluded.pids, disk_mb = excluded.disk_mb",
        params![
            app_id,
            r.process_type,
            r.memory_mb,
            r.cpu_percent,
            r.pids,
            r.disk_mb
        ],
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use rusqlite::Connection;

    use super::*;
    use crate::store::{apps, migrations};

    #[test]
    fn rows_round_trip_and_an_empty_row_is_removed() {
        let mut c = Connection::open_in_memory().expect("open");
        migrations::migrate(&mut c).expect("migrate");
        let tx = c.transaction().expect("tx");
        let app = apps::insert(&tx, "a", "host", None, 0, 1_900_000_000).expect("app");
        let web = ResourceRow {
            process_type: "web".into(),
            memory_mb: Some(64),
            pids: Some(64),
            ..ResourceRow::default()
        };
        let all = ResourceRow {
            process_type: String::new(),
            cpu_percent: Some(50),
            ..ResourceRow::default()
        };
        put(&tx, app.id, &web).expect("put");
        put(&tx, app.id, &all).expect("put");
        assert_eq!(list(&tx, app.id).expect("list"), [all.clone(), web.clone()]);
        let changed = ResourceRow {
            memory_mb: None,
            disk_mb: Some(32),
            ..web.clone()
        };
        put(&tx, app.id, &changed).expect("update");
        assert_eq!(get(&tx, app.id, "web").expect("get"), Some(changed));
        put(
            &tx,
            app.id,
            &ResourceRow {
                process_type: "web".into(),
                ..ResourceRow::default()
            },
        )
        .expect("clear");
        assert_eq!(get(&tx, app.id, "web").expect("get"), None);
        assert_eq!(list(&tx, app.id).expect("list"), [all]);
    }
}
