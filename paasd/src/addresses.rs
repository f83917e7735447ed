//! The one owner of instance addresses on the bridge: allocate (lowest free host after the
//! gateway, persisted so a restart knows what is taken), hand the runtime what to attach, and
//! release. Instances and one-offs both go through it. Owns the choice of address; the
//! arithmetic is the runtime's `Subnet`, the rows are `store::addresses`. An address of an
//! app's instance is also a member of the app's group in the network policy while it is
//! held (instances of one app reach each other, nothing else does); an address goes back to
//! the pool only once it is out of every group, so a new holder never inherits access.
//! Must not make links or namespaces (the runtime does).

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::sync::{Arc, Mutex};

use crate::store::{self, Store, StoreError, Tx};
use paas_runtime::net::Subnet;
use paas_runtime::Networking;

/// Keys of add-on services' addresses: held from the service's creation to its destruction
/// (its URL names the address), whatever runs.
pub const SERVICE_PREFIX: &str = "addon:";

#[derive(Debug, thiserror::Error)]
pub enum AddressError {
    #[error("no free address left in {0}")]
    Exhausted(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("network policy: {0}")]
    Policy(#[from] paas_runtime::net::NetError),
}

/// An address held by one instance until [`Addresses::release`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    pub instance: String,
    pub ip: Ipv4Addr,
    /// The app group the address is a member of (`None`: a build, a member of nothing).
    pub group: Option<u32>,
}

impl Lease {
    /// What the runtime attaches for this lease: a veth on the bridge with this address.
    pub fn networking(&self) -> Networking {
        Networking::Bridge(self.ip)
    }
}

#[derive(Clone)]
pub struct Addresses {
    store: Store,
    subnet: Subnet,
    /// Where group membership is applied; `None` in unit tests of the allocator.
    runtime: Option<Arc<paas_runtime::Runtime>>,
    /// Addresses held as group members, by instance.
    members: Arc<Mutex<HashMap<String, (Ipv4Addr, u32)>>>,
}

impl Addresses {
    pub fn new(store: Store, subnet: Subnet) -> Addresses {
        Addresses {
            store,
            subnet,
            runtime: None,
            members: Arc::default(),
        }
    }

    /// Applies group membership in `runtime`'s network policy.
    pub fn with_policy(mut self, runtime: Arc<paas_runtime::Runtime>) -> Addresses {
        self.runtime = Some(runtime);
        self
    }

    /// An address for `instance` (a retried start gets the one it holds), a member of
    /// `group` before it is returned.
    pub async fn allocate(
        &self,
        instance: &str,
        group: Option<u32>,
    ) -> Result<Lease, AddressError> {
        let (key, subnet) = (instance.to_string(), self.subnet);
        let ip = self.store.tx(move |tx| allocate(tx, &key, &subnet)).await?;
        if let (Some(rt), Some(g)) = (&self.runtime, group) {
            if let Err(e) = rt.network().admit(ip, g).await {
                self.release(instance).await;
                return Err(e.into());
            }
            self.members
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(instance.to_string(), (ip, g));
        }
        Ok(Lease {
            instance: instance.to_string(),
            ip,
            group,
        })
    }

    /// The address `key` holds, if any; takes none.
    pub async fn held(&self, key: &str) -> Result<Option<Ipv4Addr>, AddressError> {
        let key = key.to_string();
        Ok(self
            .store
            .tx(move |tx| store::addresses::held(tx, &key))
            .await?)
    }

    /// Gives `instance`'s address back, out of its group first. A failure only leaks one
    /// address until the next start (which frees them all), so it is logged, not returned;
    /// an address still in a group is never handed to anyone else.
    pub async fn release(&self, instance: &str) {
        let member = self
            .members
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(instance);
        if let (Some(rt), Some((ip, group))) = (&self.runtime, member) {
            if let Err(e) = rt.network().expel(ip, group).await {
                tracing::error!(%instance, %ip, error = %e, "could not take an address out of its app's group; it stays taken until paasd restarts");
                return;
            }
        }
        let key = instance.to_string();
        let r = self
            .store
            .tx(move |tx| store::addresses::release(tx, &key))
            .await;
        if let Err(e) = r {
            tracing::warn!(%instance, error = %e, "could not release an instance address");
        }
    }

    /// At start: every address on record but those of the instances adopted from the last
    /// paasd (`keep`, by instance key) and those of add-on services is free again.
    pub async fn release_all_except(
        &self,
        keep: &std::collections::HashSet<String>,
    ) -> Result<usize, AddressError> {
        let keep = keep.clone();
        let n = self
            .store
            .tx(move |tx| {
                let rows = store::addresses::list(tx)?;
                let mut n = 0;
                let free = |r: &&store::addresses::AddressRow| {
                    !keep.contains(&r.instance) && !r.instance.starts_with(SERVICE_PREFIX)
                };
                for row in rows.iter().filter(free) {
                    store::addresses::release(tx, &row.instance)?;
                    n += 1;
                }
                Ok::<_, StoreError>(n)
            })
            .await?;
        Ok(n)
    }

    /// An adopted instance keeps the address it holds: back in its group (the policy table
    /// was rewritten at start) and on record.
    pub async fn adopt(
        &self,
        instance: &str,
        ip: Ipv4Addr,
        group: u32,
    ) -> Result<(), AddressError> {
        let (key, subnet) = (instance.to_string(), self.subnet);
        let held = self.store.tx(move |tx| allocate(tx, &key, &subnet)).await?;
        if held != ip {
            tracing::warn!(%instance, %ip, %held, "an adopted instance's address was not on record");
        }
        if let Some(rt) = &self.runtime {
            rt.network().admit(ip, group).await?;
            self.members
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(instance.to_string(), (ip, group));
        }
        Ok(())
    }
}

/// The address of `instance` in `subnet`, inside the caller's transaction: the one it already
/// holds there, else the lowest free host address after the gateway.
fn allocate(tx: &Tx<'_>, instance: &str, subnet: &Subnet) -> Result<Ipv4Addr, AddressError> {
    if let Some(ip) = store::addresses::held(tx, instance)? {
        if subnet.is_assignable(ip) {
            return Ok(ip);
        }
        // Held in a subnet the host no longer uses: useless now, give it up.
        store::addresses::release(tx, instance)?;
    }
    let used = store::addresses::used(tx)?;
    let ip = subnet
        .first_free(&used)
        .ok_or_else(|| AddressError::Exhausted(subnet.to_string()))?;
    store::addresses::insert(tx, instance, ip)?;
    Ok(ip)
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    fn ip(s: &str) -> Ipv4Addr {
        s.parse().expect("test address")
    }

    fn net(a: &str, prefix: u8) -> Subnet {
        Subnet::new(ip(a), prefix).expect("subnet")
    }

    async fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(&dir.path().join("paas.db")).expect("open");
        (dir, store)
    }

    #[tokio::test]
    async fn allocations_are_distinct_lowest_first_and_skip_reserved() {
        let (_d, store) = store().await;
        let a = Addresses::new(store, net("10.213.0.0", 24));
        let mut got = Vec::new();
        for i in 0..20 {
            got.push(
                a.allocate(&format!("web.{i}"), None)
                    .await
                    .expect("allocate")
                    .ip,
            );
        }
        assert_eq!(got[0], ip("10.213.0.2"), "network and gateway are skipped");
        assert_eq!(got[19], ip("10.213.0.21"));
        assert_eq!(got.iter().collect::<HashSet<_>>().len(), 20, "{got:?}");
        // Asking again for an instance that holds one is not a second allocation.
        let again = a.allocate("web.3", None).await.expect("again");
        assert_eq!(again.ip, got[3]);
        assert_eq!(again.networking(), Networking::Bridge(got[3]));
        assert_eq!(again.group, None);
    }

    #[tokio::test]
    async fn released_addresses_are_reused_lowest_first() {
        let (_d, store) = store().await;
        let a = Addresses::new(store.clone(), net("10.213.0.0", 24));
        for i in 0..5 {
            a.allocate(&format!("a.{i}"), None).await.expect("allocate");
        }
        a.release("a.1").await;
        a.release("a.3").await;
        a.release("a.3").await;
        for (who, want) in [
            ("b.1", "10.213.0.3"),
            ("b.2", "10.213.0.5"),
            ("b.3", "10.213.0.7"),
        ] {
            assert_eq!(a.allocate(who, None).await.expect("allocate").ip, ip(want));
        }
        let rows = store.tx(store::addresses::list).await.expect("list");
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

    #[tokio::test]
    async fn a_full_subnet_is_an_error_until_something_is_released() {
        let (_d, store) = store().await;
        // A /29 has 6 hosts; one is the gateway.
        let a = Addresses::new(store, net("10.213.0.8", 29));
        for i in 0..5 {
            a.allocate(&format!("w.{i}"), None).await.expect("allocate");
        }
        let err = a.allocate("w.5", None).await.expect_err("full");
        assert!(
            matches!(&err, AddressError::Exhausted(s) if s == "10.213.0.8/29"),
            "{err:?}"
        );
        assert_eq!(err.to_string(), "no free address left in 10.213.0.8/29");
        a.release("w.2").await;
        assert_eq!(
            a.allocate("w.5", None).await.expect("after").ip,
            ip("10.213.0.12")
        );
    }

    #[tokio::test]
    async fn holdings_in_another_subnet_are_replaced() {
        let (_d, store) = store().await;
        let old = Addresses::new(store.clone(), net("10.99.0.0", 24));
        let new = Addresses::new(store.clone(), net("10.213.0.0", 24));
        assert_eq!(
            old.allocate("x", None).await.expect("old").ip,
            ip("10.99.0.2")
        );
        assert_eq!(
            new.allocate("x", None).await.expect("new").ip,
            ip("10.213.0.2")
        );
        assert_eq!(
            store.tx(store::addresses::list).await.expect("list").len(),
            1
        );
    }

    #[tokio::test]
    async fn allocations_survive_a_restart_and_release_all_frees_them() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("paas.db");
        let subnet = net("10.213.0.0", 24);
        let a = Addresses::new(Store::open(&path).expect("open"), subnet);
        let first = a.allocate("web.1", None).await.expect("a").ip;
        a.allocate("web.2", None).await.expect("b");
        drop(a);

        let a = Addresses::new(Store::open(&path).expect("reopen"), subnet);
        let third = a.allocate("web.3", None).await.expect("c").ip;
        assert_eq!(third, ip("10.213.0.4"), "the first two are still taken");
        assert_eq!(a.allocate("web.1", None).await.expect("again").ip, first);
        assert_eq!(
            a.release_all_except(&Default::default())
                .await
                .expect("release all"),
            3
        );
        assert_eq!(
            a.allocate("web.9", None).await.expect("fresh").ip,
            ip("10.213.0.2")
        );
    }
}
