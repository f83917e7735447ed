//! The signal that the router's table must be rebuilt. Whoever changes what the router should
//! know calls [`RouteSignal::changed`]: the app service (apps, domains) and the supervisor
//! (instances becoming ready or leaving). It returns once a table that includes the change is
//! published, so an API call that answers after it routes by the new state. The supervisor's
//! publisher task is the only consumer ([`RouteSignal::next_request`], [`RouteSignal::published`]).
//! Must not build tables or know what is in them.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use tokio::sync::{watch, Notify};

/// Cheap to clone; clones share the signal.
#[derive(Clone, Debug)]
pub struct RouteSignal {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    /// Generation of the newest request.
    requested: AtomicU64,
    wakeup: Notify,
    /// Generation of the newest published table.
    published: watch::Sender<u64>,
}

impl Default for RouteSignal {
    fn default() -> RouteSignal {
        RouteSignal::new()
    }
}

impl RouteSignal {
    pub fn new() -> RouteSignal {
        RouteSignal {
            inner: Arc::new(Inner {
                requested: AtomicU64::new(0),
                wakeup: Notify::new(),
                published: watch::channel(0).0,
            }),
        }
    }

    /// Asks for a rebuild without waiting; returns the generation that will include it.
    pub fn request(&self) -> u64 {
        let g = self.inner.requested.fetch_add(1, Ordering::SeqCst) + 1;
        self.inner.wakeup.notify_one();
        g
    }

    /// Asks for a rebuild and waits until the router has it.
    pub async fn changed(&self) {
        let g = self.request();
        let mut rx = self.inner.published.subscribe();
        let _ = rx.wait_for(|p| *p >= g).await;
    }

    /// For the publisher: waits for a request, returns the generation it will satisfy.
    pub async fn next_request(&self) -> u64 {
        self.inner.wakeup.notified().await;
        self.inner.requested.load(Ordering::SeqCst)
    }

    /// For the publisher: a table covering every request up to `generation` is live.
    pub fn published(&self, generation: u64) {
        self.inner.published.send_replace(generation);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn changed_returns_once_a_covering_table_is_published() {
        let signal = RouteSignal::new();
        let s = signal.clone();
        let waiter = tokio::spawn(async move { s.changed().await });
        let g = tokio::time::timeout(Duration::from_secs(5), signal.next_request())
            .await
            .expect("a request arrives");
        assert_eq!(g, 1);
        assert!(!waiter.is_finished());
        signal.published(g);
        tokio::time::timeout(Duration::from_secs(5), waiter)
            .await
            .expect("the waiter returns")
            .expect("join");
    }

    #[tokio::test]
    async fn requests_made_while_publishing_are_not_lost() {
        let signal = RouteSignal::new();
        signal.request();
        let g = signal.next_request().await;
        // A change lands while the table for `g` is being built...
        let later = signal.request();
        signal.published(g);
        // ...so the publisher is woken again and covers it.
        let g2 = tokio::time::timeout(Duration::from_secs(5), signal.next_request())
            .await
            .expect("woken again");
        assert!(g2 >= later);
    }
}
