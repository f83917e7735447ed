//! The published form of a route table: what the request path reads, without locks.
//!
//! Owns binding a [`RouteTable`] to the router's live state at publish time: each upstream to
//! the [`Backend`] of its address (the same one every table with that address gets, so
//! in-flight counts and warm connections survive swaps) and each app to its stats. It must not
//! do I/O, and nothing in it changes after publish except counters.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Weak};

use super::pool::Backend;
use super::stats::StatsCell;
use super::table::{pick_least_loaded, RouteTable, Upstream};

pub(crate) struct Snapshot {
    table: RouteTable,
    apps: Vec<Arc<AppRoute>>,
}

pub(crate) struct AppRoute {
    pub name: String,
    pub https: super::table::Https,
    pub upstreams: Vec<Upstream>,
    /// Parallel to `upstreams`.
    pub backends: Vec<Arc<Backend>>,
    pub stats: Arc<StatsCell>,
    next: AtomicUsize,
}

/// The router's long-lived state that tables are bound to. Backends are held weakly: one
/// lives as long as a published table or a request in flight uses it, and then its idle
/// connections close with it. An address that comes back later (reused by a new instance)
/// starts with a clean pool.
#[derive(Default)]
pub(crate) struct Registry {
    pub backends: HashMap<SocketAddr, Weak<Backend>>,
    pub stats: HashMap<String, Arc<StatsCell>>,
}

impl Snapshot {
    pub fn bind(table: RouteTable, reg: &mut Registry) -> Snapshot {
        let apps = table
            .apps()
            .iter()
            .map(|entry| {
                let backends = entry
                    .upstreams
                    .iter()
                    .map(
                        |u| match reg.backends.get(&u.addr).and_then(Weak::upgrade) {
                            Some(b) => b,
                            None => {
                                let b = Arc::new(Backend::new(u.addr));
                                reg.backends.insert(u.addr, Arc::downgrade(&b));
                                b
                            }
                        },
                    )
                    .collect();
                let stats = reg.stats.entry(entry.name.clone()).or_default().clone();
                Arc::new(AppRoute {
                    name: entry.name.clone(),
                    https: entry.https,
                    upstreams: entry.upstreams.clone(),
                    backends,
                    stats,
                    next: AtomicUsize::new(0),
                })
            })
            .collect();
        reg.backends.retain(|_, b| b.strong_count() > 0);
        // Stats go with the app: one that is no longer routed was deleted.
        reg.stats.retain(|name, _| table.has_app(name));
        Snapshot { table, apps }
    }

    pub fn route(&self, host: &str) -> Option<&Arc<AppRoute>> {
        self.table.lookup(host).and_then(|i| self.apps.get(i))
    }
}

impl AppRoute {
    /// The upstream for the next attempt: least connections, round-robin among equals,
    /// preferring ones this request has not tried yet.
    pub fn pick(&self, tried: &[usize]) -> Option<usize> {
        let n = self.backends.len();
        if n == 0 {
            return None;
        }
        let start = self.next.fetch_add(1, Ordering::Relaxed) % n;
        let load = |i: usize| self.backends[i].inflight();
        pick_least_loaded(n, start, load, |i| tried.contains(&i))
            .or_else(|| pick_least_loaded(n, start, load, |_| false))
    }
}
