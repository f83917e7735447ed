//! Queries on `addresses`: which instance holds which IPv4 address on the bridge. Only
//! persistence: which address to pick is the address owner's (`crate::addresses`), which runs
//! these inside one [`Store::tx`] so "find the lowest free, take it" is one transaction and two
//! instances never get the same address.
//!
//! [`Store::tx`]: super::Store::tx

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

use rusqlite::{params, OptionalExtension};

use super::{StoreError, Tx};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddressRow {
    pub ip: Ipv4Addr,
    pub instance: String,
    pub allocated_at: i64,
}

fn parse_ip(s: &str) -> Result<Ipv4Addr, StoreError> {
    s.parse()
        .map_err(|_| StoreError::Corrupt(format!("addresses.ip {s:?} is not an IPv4 address")))
}

/// The address `instance` holds, if any.
pub fn held(tx: &Tx<'_>, instance: &str) -> Result<Option<Ipv4Addr>, StoreError> {
    let held: Option<String> = tx
        .query_row(
            "SELECT ip FROM addresses WHERE instance = ?1",
            [instance],
            |r| r.get(0),
        )
        .optional()?;
    held.as_deref().map(parse_ip).transpose()
}

/// Every address held by anyone.
pub fn used(tx: &Tx<'_>) -> Result<BTreeSet<Ipv4Addr>, StoreError> {
    Ok(all(tx)?.into_iter().map(|r| r.ip).collect())
}

/// Records that `instance` holds `ip` (the caller chose a free one in the same transaction).
pub fn insert(tx: &Tx<'_>, instance: &str, ip: Ipv4Addr) -> Result<(), StoreError> {
    tx.execute(
        "INSERT INTO addresses (ip, instance, allocated_at) VALUES (?1, ?2, ?3)",
        params![ip.to_string(), instance, super::now()],
    )?;
    Ok(())
}

/// Frees the address of `instance`; false when it held none.
pub fn release(tx: &Tx<'_>, instance: &str) -> Result<bool, StoreError> {
    Ok(tx.execute("DELETE FROM addresses WHERE instance = ?1", [instance])? > 0)
}

/// Every allocation, by address.
pub fn list(tx: &Tx<'_>) -> Result<Vec<AddressRow>, StoreError> {
    let mut rows = all(tx)?;
    rows.sort_by_key(|r| r.ip);
    Ok(rows)
}

fn all(tx: &Tx<'_>) -> Result<Vec<AddressRow>, StoreError> {
    let mut stmt = tx.prepare("SELECT ip, instance, allocated_at FROM addresses")?;
    let raw = stmt
        .query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, i64>(2)?,
            ))
        })?
        .collect::<Result<Vec<_>, _>>()?;
    raw.into_iter()
        .map(|(ip, instance, allocated_at)| {
            Ok(AddressRow {
                ip: parse_ip(&ip)?,
                instance,
                allocated_at,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use rusqlite::Connection;

    use super::*;
    use crate::store::migrations;

    fn db() -> Connection {
        let mut c = Connection::open_in_memory().expect("open");
        migrations::migrate(&mut c).expect("migrate");
        c
    }

    fn ip(s: &str) -> Ipv4Addr {
        s.parse().expect("test address")
    }

    #[test]
    fn rows_round_trip_and_an_address_is_held_once() {
        let mut c = db();
        let tx = c.transaction().expect("tx");
        insert(&tx, "web.1", ip("10.1.0.3")).expect("insert");
        insert(&tx, "web.2", ip("10.1.0.2")).expect("insert");
        assert!(
            insert(&tx, "web.3", ip("10.1.0.2")).is_err(),
            "ip is unique"
        );
        assert_eq!(held(&tx, "web.1").expect("held"), Some(ip("10.1.0.3")));
        assert_eq!(held(&tx, "nobody").expect("held"), None);
        assert_eq!(
            used(&tx).expect("used").into_iter().collect::<Vec<_>>(),
            [ip("10.1.0.2"), ip("10.1.0.3")]
        );
        let rows = list(&tx).expect("list");
        assert_eq!(rows[0].instance, "web.2", "by address");
        assert!(release(&tx, "web.1").expect("release"));
        assert!(!release(&tx, "web.1").expect("release twice"));
    }

    #[test]
    fn corrupt_rows_are_reported() {
        let mut c = db();
        let tx = c.transaction().expect("tx");
        tx.execute(
            "INSERT INTO addresses (ip, instance, allocated_at) VALUES ('nope', 'z', 0)",
            [],
        )
        .expect("insert");
        assert!(matches!(list(&tx), Err(StoreError::Corrupt(_))));
        assert!(matches!(held(&tx, "z"), Err(StoreError::Corrupt(_))));
    }
}
