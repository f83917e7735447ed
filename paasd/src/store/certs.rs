//! Queries on `certs` (a certificate per name an app serves over HTTPS) and `app_https`
//! (each app's redirect and HSTS choice). Keys arrive and leave sealed: this module never
//! sees a private key in the clear.

use rusqlite::{params, OptionalExtension};

use super::{StoreError, Tx};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertRow {
    pub domain: String,
    /// The owning app's name (None: platform-wide).
    pub app: Option<String>,
    /// `custom` or `acme`.
    pub source: String,
    pub chain_pem: Option<String>,
    pub key_sealed: Option<Vec<u8>>,
    /// The names the certificate covers, space-separated.
    pub names: String,
    pub issuer: Option<String>,
    /// Unix seconds.
    pub not_after: Option<i64>,
    pub last_error: Option<String>,
    pub retry_at: Option<i64>,
    /// Failed attempts since the last success (the retry backoff).
    pub failures: u32,
    /// Renewal asked for (`paas certs APP --renew`), whatever the expiry.
    pub renew: bool,
    /// When the certificate was added or issued (Unix seconds).
    pub updated_at: i64,
}

const COLUMNS: &str = "certs.domain, apps.name, certs.source, certs.chain_pem, certs.key_sealed, \
     certs.names, certs.issuer, certs.not_after, certs.last_error, certs.retry_at, certs.failures, \
     certs.renew, certs.updated_at";

fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<CertRow> {
    Ok(CertRow {
        domain: r.get(0)?,
        app: r.get(1)?,
        source: r.get(2)?,
        chain_pem: r.get(3)?,
        key_sealed: r.get(4)?,
        names: r.get(5)?,
        issuer: r.get(6)?,
        not_after: r.get(7)?,
        last_error: r.get(8)?,
        retry_at: r.get(9)?,
        failures: r.get(10)?,
        renew: r.get(11)?,
        updated_at: r.get(12)?,
    })
}

/// The platform-wide rows (no app: a wildcard for the base domain).
pub fn list_platform(tx: &Tx<'_>) -> Result<Vec<CertRow>, StoreError> {
    let mut stmt = tx.prepare(&format!(
        "SELECT {COLUMNS} FROM certs LEFT JOIN apps ON apps.id = certs.app_id
         WHERE certs.app_id IS NULL ORDER BY certs.domain"
    ))?;
    let rows = stmt.query_map([], row)?.collect::<Result<_, _>>()?;
    Ok(rows)
}

pub fn delete_platform(tx: &Tx<'_>, domain: &str) -> Result<bool, StoreError> {
    let n = tx.execute(
        "DELETE FROM certs WHERE app_id IS NULL AND domain = ?1",
        [domain],
    )?;
    Ok(n > 0)
}

pub fn list_for_app(tx: &Tx<'_>, app_id: i64) -> Result<Vec<CertRow>, StoreError> {
    let mut stmt = tx.prepare(&format!(
        "SELECT {COLUMNS} FROM certs LEFT JOIN apps ON apps.id = certs.app_id
         WHERE certs.app_id = ?1 ORDER BY certs.domain"
    ))?;
    let rows = stmt.query_map([app_id], row)?.collect::<Result<_, _>>()?;
    Ok(rows)
}

/// Every row, for publishing to the router.
pub fn all(tx: &Tx<'_>) -> Result<Vec<CertRow>, StoreError> {
    let mut stmt = tx.prepare(&format!(
        "SELECT {COLUMNS} FROM certs LEFT JOIN apps ON apps.id = certs.app_id ORDER BY certs.domain"
    ))?;
    let rows = stmt.query_map([], row)?.collect::<Result<_, _>>()?;
    Ok(rows)
}

/// The app that has a certificate row for `domain`, if any row exists.
pub fn owner(tx: &Tx<'_>, domain: &str) -> Result<Option<Option<i64>>, StoreError> {
    Ok(tx
        .query_row(
            "SELECT app_id FROM certs WHERE domain = ?1",
            [domain],
            |r| r.get(0),
        )
        .optional()?)
}

/// Inserts or replaces the row of `domain` for `app_id`.
pub fn put(tx: &Tx<'_>, app_id: Option<i64>, c: &CertRow) -> Result<(), StoreError> {
    tx.execute(
        "INSERT INTO certs (domain, app_id, source, chain_pem, key_sealed, names, issuer,
                            not_after, last_error, retry_at, failures, renew, updated_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)
         ON CONFLICT (domain) DO UPDATE SET
           app_id = excluded.app_id, source = excluded.source, chain_pem = excluded.chain_pem,
           key_sealed = excluded.key_sealed, names = excluded.names, issuer = excluded.issuer,
           not_after = excluded.not_after, last_error = excluded.last_error,
           retry_at = excluded.retry_at, failures = excluded.failures, renew = excluded.renew,
           updated_at = excluded.updated_at",
        params![
            c.domain,
            app_id,
            c.source,
            c.chain_pem,
            c.key_sealed,
            c.names,
            c.issuer,
            c.not_after,
            c.last_error,
            c.retry_at,
            c.failures,
            c.renew,
            c.updated_at
        ],
    )?;
    Ok(())
}

/// Marks the app's ACME certificates for renewal now (and forgets their backoff); returns
/// how many there are.
pub fn ask_renewal(tx: &Tx<'_>, app_id: i64) -> Result<usize, StoreError> {
    Ok(tx.execute(
        "UPDATE certs SET renew = 1, retry_at = NULL, failures = 0
         WHERE app_id = ?1 AND source = 'acme'",
        [app_id],
    )?)
}

/// Removes the app's row for `domain`; false if there was none.
pub fn delete(tx: &Tx<'_>, app_id: i64, domain: &str) -> Result<bool, StoreError> {
    let n = tx.execute(
        "DELETE FROM certs WHERE app_id = ?1 AND domain = ?2",
        params![app_id, domain],
    )?;
    Ok(n > 0)
}

/// The sealed ACME account of `directory_url`, if one was registered.
pub fn account(tx: &Tx<'_>, directory_url: &str) -> Result<Option<Vec<u8>>, StoreError> {
    Ok(tx
        .query_row(
            "SELECT sealed FROM acme_accounts WHERE directory_url = ?1",
            [directory_url],
            |r| r.get(0),
        )
        .optional()?)
}

pub fn set_account(tx: &Tx<'_>, directory_url: &str, sealed: &[u8]) -> Result<(), StoreError> {
    tx.execute(
        "INSERT INTO acme_accounts (directory_url, sealed) VALUES (?1, ?2)
         ON CONFLICT (directory_url) DO UPDATE SET sealed = excluded.sealed",
        params![directory_url, sealed],
    )?;
    Ok(())
}

/// (redirect, hsts) of the app; None: no choice made (the defaults apply).
pub fn https(tx: &Tx<'_>, app_id: i64) -> Result<Option<(bool, bool)>, StoreError> {
    Ok(tx
        .query_row(
            "SELECT redirect, hsts FROM app_https WHERE app_id = ?1",
            [app_id],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?)
}

pub fn set_https(tx: &Tx<'_>, app_id: i64, redirect: bool, hsts: bool) -> Result<(), StoreError> {
    tx.execute(
        "INSERT INTO app_https (app_id, redirect, hsts) VALUES (?1, ?2, ?3)
         ON CONFLICT (app_id) DO UPDATE SET redirect = excluded.redirect, hsts = excluded.hsts",
        params![app_id, redirect, hsts],
    )?;
    Ok(())
}
