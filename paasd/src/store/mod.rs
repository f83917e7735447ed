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
