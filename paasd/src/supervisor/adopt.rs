//! paasd's start after a restart, an upgrade or a crash: the instances an earlier paasd left
//! running are taken back instead of started again. Each adopted container is held against
//! desired state (its app's current release and formation); what matches is an instance
//! again and passes its readiness check before it is routed, the rest is drained and
//! stopped. Must not start instances: `apply_formation` fills the gaps afterwards.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use super::instance::{self, Handle, Launch, Progress, Tag};
use super::rollout;
use super::Ctx;
use crate::apps::Runnable;
use paas_runtime::Adopted;

/// Adopts `adopted` (from `Runtime::recover`); returns once the ones kept are ready (or
/// failed, or their checks' budget ran out) and routed, with how many were kept. Every
/// address on record that no adopted container holds is freed.
pub async fn adopt(ctx: &Arc<Ctx>, adopted: Vec<Adopted>) -> usize {
    let mut tagged: Vec<(Tag, Adopted)> = Vec::new();
    for a in adopted {
        match serde_json::from_str::<Tag>(&a.tag) {
            Ok(tag) => tagged.push((tag, a)),
            Err(e) => {
                tracing::warn!(id = %a.instance.id, error = %e, "an adopted container has an unreadable tag; killing it");
                a.instance.finish(true).await;
            }
        }
    }
    let keys: HashSet<String> = tagged.iter().map(|(t, _)| t.key.clone()).collect();
    if let Err(e) = ctx.addresses.release_all_except(&keys).await {
        tracing::error!(error = %e, "could not free the addresses of containers gone with the last paasd");
    }
    // Desired state per app: its current release.
    let mut current: BTreeMap<String, Option<Runnable>> = BTreeMap::new();
    for (tag, _) in &tagged {
        if !current.contains_key(&tag.app) {
            let r = ctx
                .apps
                .runnable(tag.app.clone(), None)
                .await
                .ok()
                .flatten();
            current.insert(tag.app.clone(), r);
        }
    }
    let mut seen: HashSet<(String, String, u32)> = HashSet::new();
    let mut kept = Vec::new();
    for (tag, a) in tagged {
        let r = current.get(&tag.app).and_then(Option::as_ref);
        let keep = r.is_some_and(|r| {
            r.version == tag.release
                && tag.index >= 1
                && tag.index <= r.formation.get(&tag.process_type).copied().unwrap_or(0)
        }) && seen.insert((tag.app.clone(), tag.process_type.clone(), tag.index));
        if let Err(e) = ctx.addresses.adopt(&tag.key, tag.ip, tag.group).await {
            tracing::error!(key = %tag.key, error = %e, "could not restore an adopted instance's network membership");
        }
        let launch = match r.filter(|_| keep) {
            Some(r) => rollout::prepare(ctx, r, &tag.process_type, tag.index).0,
            None => leftover_launch(&a),
        };
        let h = Arc::new(Handle::new(
            &tag.app,
            &tag.process_type,
            tag.index,
            tag.release,
            tag.key.clone(),
            tag.ip,
            tag.group,
        ));
        if keep {
            kept.push(Arc::clone(&h));
        } else {
            ctx.event(
                &tag.app,
                Some(tag.release),
                format!(
                    "{}.{} of v{} is not wanted any more (found running after a paasd restart); stopping it",
                    tag.process_type, tag.index, tag.release
                ),
            );
            h.request_stop();
        }
        ctx.app_state(&tag.app)
            .instances
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(Arc::clone(&h));
        tokio::spawn(instance::run(Arc::clone(ctx), h, launch, Some(a)));
    }
    // Routed once they answer again, before the router accepts anything.
    for h in &kept {
        let mut progress = h.progress();
        let settled = progress.wait_for(|p| matches!(p, Progress::Ready | Progress::Failed(_)));
        if tokio::time::timeout(ADOPT_READY, settled).await.is_err() {
            tracing::warn!(app = %h.app, instance = %h.name(), "an adopted instance was not ready in time; routing the others");
        }
    }
    ctx.publish_now().await;
    kept.len()
}

/// How long a start waits for an adopted instance's readiness before the router accepts.
const ADOPT_READY: Duration = Duration::from_secs(10);

/// What a container that is only stopped runs: nothing is ever restarted from it.
fn leftover_launch(a: &Adopted) -> Launch {
    Launch {
        stack: String::new(),
        layers: Vec::new(),
        env: Vec::new(),
        command: a.instance.id.clone(),
        limits: Default::default(),
        checks: Vec::new(),
        user: paas_runtime::User { uid: 0, gid: 0 },
    }
}
