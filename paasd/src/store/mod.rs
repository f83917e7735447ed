//! SQLite state. The only module that knows SQL: migrations, typed queries, and the
//! [`Store`] handle that runs them in a transaction on a blocking thread. Must not hold
//! business rules (validation, release semantics): callers compose queries in [`Store::tx`].

mod migrations;

pub mod addons;
pub mod addresses;
pub mod apps;
pub mod certs;
pub mod checks;
pub mod config_vars;
pub mod cron;
pub mod deployments;
pub mod domains;
pub mod formation;
pub mod keys;
pub mod releases;
pub mod resources;
pub mod slugs;
pub mod volumes;

use std::path::Path;
use std::sync::{Arc, Mutex};

use rusqlite::{Connection, Transaction};

pub use rusqlite::Transaction as Tx;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("database {path}: {source}")]
    Open {
        path: String,
        source: rusqlite::Error,
    },
    #[error("database schema version {found} is newer than this paasd understands ({known}); upgrade paasd")]
    TooNew { found: i64, known: i64 },
    #[error("database worker stopped: {0}")]
    Worker(String),
    #[error("stored row is invalid: {0}")]
    Corrupt(String),
}

/// What a database file from a backup holds, checked before it replaces anything: SQLite's
/// integrity check passes, its schema is not newer than ours, and some sealed config vars
/// (app id, key, blob) to try the backup's key on.
#[derive(Debug)]
pub struct SnapshotInfo {
    /// (name, uid)
    pub apps: Vec<(String, Option<u32>)>,
    pub sealed: Vec<(i64, String, Vec<u8>)>,
    /// (app, name, path, size_mb)
    pub volumes: Vec<(String, String, String, i64)>,
    /// (name, kind, version, uid)
    pub addons: Vec<(String, String, String, i64)>,
}

pub fn check_snapshot(path: &Path) -> Result<SnapshotInfo, StoreError> {
    let conn = Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
        .map_err(|source| StoreError::Open {
            path: path.display().to_string(),
            source,
        })?;
    let ok: String = conn.query_row("PRAGMA integrity_check", [], |r| r.get(0))?;
    if ok != "ok" {
        return Err(StoreError::Corrupt(format!("integrity check: {ok}")));
    }
    let found: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    let known = migrations::known();
    if found > known {
        return Err(StoreError::TooNew { found, known });
    }
    let apps = conn
        .prepare("SELECT name, uid FROM apps ORDER BY name")?
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<Result<Vec<_>, _>>()?;
    // Tables a backup from before add-ons and volumes does not have are empty.
    let has = |t: &str| -> Result<bool, StoreError> {
        Ok(conn.query_row(
            "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = ?1",
            [t],
            |r| r.get::<_, i64>(0),
        )? > 0)
    };
    let volumes = if has("volumes")? {
        conn.prepare(
            "SELECT apps.name, volumes.name, volumes.path, volumes.size_mb FROM volumes
             JOIN apps ON apps.id = volumes.app_id",
        )?
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?
        .collect::<Result<Vec<_>, _>>()?
    } else {
        Vec::new()
    };
    let addons = if has("addons")? {
        conn.prepare("SELECT name, kind, version, uid FROM addons")?
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?
            .collect::<Result<Vec<_>, _>>()?
    } else {
        Vec::new()
    };
    let sealed = conn
        .prepare("SELECT app_id, key, value FROM config_vars LIMIT 20")?
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(SnapshotInfo {
        apps,
        sealed,
        volumes,
        addons,
    })
}

impl StoreError {
    /// True for UNIQUE/PRIMARY KEY violations, which callers turn into 409s.
    pub fn is_unique_violation(&self) -> bool {
        matches!(
            self,
            StoreError::Sqlite(rusqlite::Error::SqliteFailure(e, _))
                if e.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE
                    || e.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY
        )
    }
}

/// Shared handle on the database. One connection: SQLite serialises writers anyway,
/// and a single writer keeps "read then write" sequences free of races.
#[derive(Clone)]
pub struct Store {
    conn: Arc<Mutex<Connection>>,
}

impl Store {
    /// Opens (creating if needed) the database in WAL mode with foreign keys on, and migrates it.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        let open_err = |source| StoreError::Open {
            path: path.display().to_string(),
            source,
        };
        let mut conn = Connection::open(path).map_err(open_err)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        migrations::migrate(&mut conn)?;
        Ok(Store {
            conn: Arc::new(Mutex::new(conn)),
        })
    }

    /// A consistent copy of the whole database at `dest` while paasd serves (SQLite's online
    /// backup API: pages are copied in steps; a write meanwhile restarts the copy).
    pub async fn snapshot(&self, dest: &Path) -> Result<(), StoreError> {
        let (conn, dest) = (Arc::clone(&self.conn), dest.to_path_buf());
        tokio::task::spawn_blocking(move || {
            let guard = conn.lock().unwrap_or_else(|p| p.into_inner());
            guard.backup(rusqlite::MAIN_DB, &dest, None)?;
            Ok(())
        })
        .await
        .map_err(|e| StoreError::Worker(e.to_string()))?
    }

    /// Replaces the whole database with the one at `src` (checked with [`check_snapshot`]),
    /// through the same backup API into the live connection, then migrates it to this
    /// paasd's schema.
    pub async fn restore_from(&self, src: &Path) -> Result<(), StoreError> {
        let (conn, src) = (Arc::clone(&self.conn), src.to_path_buf());
        tokio::task::spawn_blocking(move || {
            let mut guard = conn.lock().unwrap_or_else(|p| p.into_inner());
            guard.restore(
                rusqlite::MAIN_DB,
                &src,
                None::<fn(rusqlite::backup::Progress)>,
            )?;
            migrations::migrate(&mut guard)?;
            Ok(())
        })
        .await
        .map_err(|e| StoreError::Worker(e.to_string()))?
    }

    /// Runs `f` inside one transaction on a blocking thread; commits when it returns `Ok`.
    pub async fn tx<T, E, F>(&self, f: F) -> Result<T, E>
    where
        T: Send + 'static,
        E: From<StoreError> + Send + 'static,
        F: FnOnce(&Transaction<'_>) -> Result<T, E> + Send + 'static,
    {
        let conn = Arc::clone(&self.conn);
        tokio::task::spawn_blocking(move || {
            // A panic in another transaction poisons the lock but leaves SQLite consistent
            // (its transaction was rolled back on drop), so the connection is still usable.
            let mut guard = conn.lock().unwrap_or_else(|p| p.into_inner());
            let tx = guard.transaction().map_err(StoreError::from)?;
            let out = f(&tx)?;
            tx.commit().map_err(StoreError::from)?;
            Ok(out)
        })
        .await
        .map_err(|e| E::from(StoreError::Worker(e.to_string())))?
    }
}

/// Seconds since the epoch, the unit every timestamp column uses.
pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}
