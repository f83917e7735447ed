//! The per-app lock, with one owner: every operation that changes what an app is or runs
//! goes through here. Two ways to hold it:
//! - a **claim** (`try`, never waits): deploys and destroy, which take minutes and must refuse
//!   a second one at once (409 naming who holds it) rather than queue behind it;
//! - a **turn** (waits): rollouts, scaling, restarts and stops, which are short and simply
//!   go one after another.
//!
//! A deploy holds its claim from upload to the end of its rollout and takes a turn for the
//! rollout itself; destroy holds the claim and takes a turn to stop the instances. Must not
//! know what the operations do.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use tokio::sync::OwnedMutexGuard;

/// Someone else holds the app's claim.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("'{app}' is busy: {who} started {secs} s ago")]
pub struct Busy {
    pub app: String,
    pub who: String,
    pub secs: u64,
}

#[derive(Default)]
struct AppLock {
    /// Who holds the claim, and since when.
    claim: Mutex<Option<(String, Instant)>>,
    /// Turns are taken in order.
    turn: Arc<tokio::sync::Mutex<()>>,
}

/// All apps' locks (cheap to clone; clones share them).
#[derive(Clone, Default)]
pub struct AppLocks {
    apps: Arc<Mutex<HashMap<String, Arc<AppLock>>>>,
}

/// Holds an app's claim; dropping it lets the next deploy or destroy in.
pub struct Claim {
    lock: Arc<AppLock>,
}

impl Drop for Claim {
    fn drop(&mut self) {
        *self.lock.claim.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }
}

/// Holds an app's turn; dropping it lets the next operation run.
pub struct Turn {
    _guard: OwnedMutexGuard<()>,
}

impl AppLocks {
    pub fn new() -> AppLocks {
        AppLocks::default()
    }

    fn get(&self, app: &str) -> Arc<AppLock> {
        let mut apps = self.apps.lock().unwrap_or_else(|p| p.into_inner());
        Arc::clone(apps.entry(app.to_string()).or_default())
    }

    /// Claims `app` for `who`, or says who has it.
    pub fn claim(&self, app: &str, who: &str) -> Result<Claim, Busy> {
        let lock = self.get(app);
        {
            let mut claim = lock.claim.lock().unwrap_or_else(|p| p.into_inner());
            if let Some((holder, since)) = claim.as_ref() {
                return Err(Busy {
                    app: app.to_string(),
                    who: holder.clone(),
                    secs: since.elapsed().as_secs(),
                });
            }
            *claim = Some((who.to_string(), Instant::now()));
        }
        Ok(Claim { lock })
    }

    /// Waits for `app`'s turn.
    pub async fn turn(&self, app: &str) -> Turn {
        let lock = self.get(app);
        Turn {
            _guard: Arc::clone(&lock.turn).lock_owned().await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_second_claim_is_refused_with_its_holder_until_the_first_ends() {
        let locks = AppLocks::new();
        let first = locks.claim("web", "alice").expect("first");
        let busy = locks.claim("web", "bob").err().expect("refused");
        assert_eq!((busy.app.as_str(), busy.who.as_str()), ("web", "alice"));
        assert!(locks.claim("other", "bob").is_ok(), "apps are independent");
        drop(first);
        assert!(locks.claim("web", "bob").is_ok());
    }

    #[tokio::test]
    async fn turns_run_one_after_another_and_a_claim_does_not_block_them() {
        let locks = AppLocks::new();
        let _claim = locks.claim("web", "deploy").expect("claim");
        let first = locks.turn("web").await;
        let l2 = locks.clone();
        let second = tokio::spawn(async move {
            let _t = l2.turn("web").await;
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!second.is_finished(), "waits for the first turn");
        drop(first);
        tokio::time::timeout(Duration::from_secs(5), second)
            .await
            .expect("second turn runs")
            .expect("join");
    }
}
