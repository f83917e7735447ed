//! Queries on `addresses`: which instance holds which IPv4 address on the bridge. The address
//! arithmetic (which addresses exist, gateway, lowest free) is `runtime::net::Subnet`'s; this
//! file only persists the choice. Callers run allocate/release inside [`Store::tx`] so "find
//! the lowest free, take it" is one transaction and two instances never get the same address.
//!
//! [`Store::tx`]: super::Store::tx

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

use rusqlite::{params, OptionalExtension};

use super::{StoreError, Tx};
use paas_runtime::net::Subnet;

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

/// The address of `instance` in `subnet/prefix`: the one it already holds there (so a retried
/// start gets the same one), else the lowest free host address after the gateway.
pub fn allocate(
    tx: &Tx<'_>,
    instance: &str,
    subnet: Ipv4Addr,
    prefix: u8,
) -> Result<Ipv4Addr, StoreError> {
    let subnet = Subnet::new(subnet, prefix)?;
    let held: Option<String> = tx
        .query_row(
            "SELECT ip FROM addresses WHERE instance = ?1",
            [instance],
            |r| r.get(0),
        )
        .optional()?;
    if let Some(held) = held {
        let ip = parse_ip(&held)?;
        if subnet.is_assignable(ip) {
            return Ok(ip);
        }
        // Held in a subnet the host no longer uses: useless now, give it up.
        release(tx, instance)?;
    }
    let used = all(tx)?.into_iter().map(|r| r.ip).collect::<BTreeSet<_>>();
    let ip = subnet
        .first_free(&used)
        .ok_or_else(|| StoreError::AddressesExhausted(subnet.to_string()))?;
    tx.execute(
        "INSERT INTO addresses (ip, instance, allocated_at) VALUES (?1, ?2, ?3)",
        params![ip.to_string(), instance, super::now()],
    )?;
    Ok(ip)
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
    use std::collections::HashSet;

    use rusqlite::Connection;

    use super::*;
    use crate::store::{migrations, Store};

    fn db() -> Connection {
        let mut c = Connection::open_in_memory().expect("open");
        migrations::migrate(&mut c).expect("migrate");
        c
    }

    fn ip(s: &str) -> Ipv4Addr {
        s.parse().expect("test address")
    }

    const NET: &str = "10.213.0.0";

    #[test]
    fn allocations_are_distinct_lowest_first_and_skip_reserved() {
        let mut c = db();
        let tx = c.transaction().expect("tx");
        let got: Vec<Ipv4Addr> = (0..20)
            .map(|i| allocate(&tx, &format!("web.{i}"), ip(NET), 24).expect("allocate"))
            .collect();
        assert_eq!(got[0], ip("10.213.0.2"), "network and gateway are skipped");
        assert_eq!(got[19], ip("10.213.0.21"));
        assert_eq!(got.iter().collect::<HashSet<_>>().len(), 20, "{got:?}");
        // Asking again for an instance that holds one is not a second allocation.
        assert_eq!(allocate(&tx, "web.3", ip(NET), 24).expect("again"), got[3]);
        assert_eq!(list(&tx).expect("list").len(), 20);
    }

    #[test]
    fn released_addresses_are_reused_lowest_first() {
        let mut c = db();
        let tx = c.transaction().expect("tx");
        for i in 0..5 {
            allocate(&tx, &format!("a.{i}"), ip(NET), 24).expect("allocate");
        }
        assert!(release(&tx, "a.1").expect("release"));
        assert!(release(&tx, "a.3").expect("release"));
        assert!(!release(&tx, "a.3").expect("release twice"));
        assert_eq!(
            allocate(&tx, "b.1", ip(NET), 24).expect("b.1"),
            ip("10.213.0.3")
        );
        assert_eq!(
            allocate(&tx, "b.2", ip(NET), 24).expect("b.2"),
            ip("10.213.0.5")
        );
        assert_eq!(
            allocate(&tx, "b.3", ip(NET), 24).expect("b.3"),
            ip("10.213.0.7")
        );
        let rows = list(&tx).expect("list");
        let owners: Vec<(String, &str)> = rows
            .iter()
            .map(|r| (r.ip.to_string(), r.instance.as_str()))
            .collect();
        assert_eq!(
            owners,
            [
                ("10.213.0.2".to_string(), "a.0"),
                ("10.213.0.3".to_string(), "b.1"),
                ("10.213.0.4".to_string(), "a.2"),
                ("10.213.0.5".to_string(), "b.2"),
                ("10.213.0.6".to_string(), "a.4"),
                ("10.213.0.7".to_string(), "b.3"),
            ]
        );
    }

    #[test]
    fn a_full_subnet_is_an_error_until_something_is_released() {
        let mut c = db();
        let tx = c.transaction().expect("tx");
        // A /29 has 6 hosts; one is the gateway.
        for i in 0..5 {
            allocate(&tx, &format!("w.{i}"), ip("10.213.0.8"), 29).expect("allocate");
        }
        let err = allocate(&tx, "w.5", ip("10.213.0.8"), 29).expect_err("full");
        assert!(
            matches!(&err, StoreError::AddressesExhausted(s) if s == "10.213.0.8/29"),
            "{err:?}"
        );
        assert_eq!(err.to_string(), "no free address left in 10.213.0.8/29");
        release(&tx, "w.2").expect("release");
        assert_eq!(
            allocate(&tx, "w.5", ip("10.213.0.8"), 29).expect("after release"),
            ip("10.213.0.12")
        );
    }

    #[test]
    fn bad_subnets_are_refused_and_foreign_holdings_replaced() {
        let mut c = db();
        let tx = c.transaction().expect("tx");
        assert!(matches!(
            allocate(&tx, "x", ip("10.213.0.1"), 24),
            Err(StoreError::Subnet(_))
        ));
        assert!(matches!(
            allocate(&tx, "x", ip("10.213.0.0"), 31),
            Err(StoreError::Subnet(_))
        ));
        let old = allocate(&tx, "x", ip("10.99.0.0"), 24).expect("old subnet");
        let new = allocate(&tx, "x", ip(NET), 24).expect("new subnet");
        assert_eq!((old, new), (ip("10.99.0.2"), ip("10.213.0.2")));
        assert_eq!(list(&tx).expect("list").len(), 1);
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
    }

    #[tokio::test]
    async fn allocations_survive_a_restart() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("paas.db");
        let alloc = |store: Store, name: &'static str| async move {
            store
                .tx(move |tx| allocate(tx, name, ip(NET), 24))
                .await
                .expect("allocate")
        };
        let store = Store::open(&path).expect("open");
        let a = alloc(store.clone(), "web.1").await;
        let b = alloc(store.clone(), "web.2").await;
        drop(store);

        let store = Store::open(&path).expect("reopen");
        let c = alloc(store.clone(), "web.3").await;
        assert_eq!(
            alloc(store.clone(), "web.1").await,
            a,
            "kept across restart"
        );
        assert_eq!(
            [a, b, c].iter().collect::<HashSet<_>>().len(),
            3,
            "{a} {b} {c}"
        );
        let rows = store.tx(list).await.expect("list");
        assert_eq!(
            rows.iter().map(|r| r.instance.as_str()).collect::<Vec<_>>(),
            ["web.1", "web.2", "web.3"]
        );
    }
}
