//! Moving an app from what runs to what should run, without dropping a request: a rollout
//! starts the new release's instances, waits for their readiness, switches the route table
//! in one swap, then drains and stops the old ones. If the new instances never get ready
//! they are stopped and the old ones keep serving, untouched. Scaling starts or drains the
//! difference. Must not touch containers directly: instance tasks do.

use std::sync::Arc;
use std::time::{Duration, Instant};

use paas_api::{DeployPhase, PhaseTiming, ReleaseStatus};
use tokio::sync::mpsc::UnboundedSender;

use super::health;
use super::instance::{self, Handle, Launch, Progress};
use super::{Ctx, SupervisorError};
use crate::apps::Runnable;
use crate::config::MiB;
use paas_runtime::cgroups::Limits;

fn say(progress: &Option<UnboundedSender<String>>, line: String) {
    if let Some(p) = progress {
        let _ = p.send(line);
    }
}

fn timing(phase: DeployPhase, d: Duration) -> PhaseTiming {
    PhaseTiming {
        phase,
        ms: d.as_millis() as u64,
    }
}

/// Rolls release `version` of `app` out. On success the release is `succeeded` and every
/// old instance is gone; on failure it is `failed` and the old instances never noticed.
pub async fn rollout(
    ctx: &Arc<Ctx>,
    app: &str,
    version: u32,
    progress: Option<UnboundedSender<String>>,
) -> Result<Vec<PhaseTiming>, SupervisorError> {
    if ctx.shutting_down() {
        return Err(SupervisorError::ShuttingDown);
    }
    let state = ctx.app_state(app);
    let _turn = ctx.locks.turn(app).await;
    let r = ctx
        .apps
        .runnable(app.to_string(), Some(version))
        .await?
        .ok_or_else(|| SupervisorError::NotDeployed(app.to_string()))?;
    let old: Vec<Arc<Handle>> = state
        .list()
        .into_iter()
        .filter(|h| !h.is_leaving())
        .collect();
    let t0 = Instant::now();
    let wanted: Vec<(String, u32)> = r
        .formation
        .iter()
        .filter(|(_, n)| **n > 0)
        .map(|(t, n)| (t.clone(), *n))
        .collect();
    let summary: Vec<String> = wanted.iter().map(|(t, n)| format!("{t}={n}")).collect();
    say(
        &progress,
        format!(
            "-----> Starting v{version}: {}",
            if summary.is_empty() {
                "no instances (formation is 0)".to_string()
            } else {
                summary.join(" ")
            }
        ),
    );
    ctx.event(app, Some(version), format!("rolling out v{version}"));
    let mut new = Vec::new();
    for (ptype, n) in &wanted {
        for index in 1..=*n {
            new.push(start(ctx, &state, &r, ptype, index).await?);
        }
    }
    let started = wait_all(&new, |p| !matches!(p, Progress::Starting), None).await;
    let start_ms = t0.elapsed();
    let budget = new.iter().map(|(_, b)| *b).max().unwrap_or_default() + Duration::from_secs(10);
    let ready = match started {
        Err(e) => Err(e),
        Ok(()) => {
            wait_all(
                &new,
                |p| matches!(p, Progress::Ready | Progress::Failed(_)),
                Some(budget),
            )
            .await
        }
    };
    let ready_ms = t0.elapsed() - start_ms;
    let new: Vec<Arc<Handle>> = new.into_iter().map(|(h, _)| h).collect();
    if let Err(reason) = ready {
        say(&progress, format!(" !     {reason}"));
        say(
            &progress,
            format!(" !     Stopping v{version}; the instances that were serving keep serving"),
        );
        stop_all(ctx, new).await;
        let phases = vec![
            timing(DeployPhase::Start, start_ms),
            timing(DeployPhase::Ready, ready_ms),
        ];
        settle(ctx, app, version, ReleaseStatus::Failed, &phases).await;
        ctx.event(
            app,
            Some(version),
            format!("rollout of v{version} failed: {reason}"),
        );
        return Err(SupervisorError::RolloutFailed(format!(
            "v{version} did not get ready: {reason}; the previous release keeps serving"
        )));
    }
    if !new.is_empty() {
        say(
            &progress,
            format!(
                "       {} instance(s) ready in {:.1} s",
                new.len(),
                (start_ms + ready_ms).as_secs_f32()
            ),
        );
    }
    // The switch: one table without the old instances.
    let t_switch = Instant::now();
    for h in &old {
        h.set_leaving();
    }
    ctx.publish_now().await;
    let switch_ms = t_switch.elapsed();
    say(&progress, format!("-----> Routing to v{version}"));
    let t_drain = Instant::now();
    if !old.is_empty() {
        say(
            &progress,
            format!("-----> Draining and stopping {} old instance(s)", old.len()),
        );
    }
    stop_all(ctx, old).await;
    let drain_ms = t_drain.elapsed();
    let phases = vec![
        timing(DeployPhase::Start, start_ms),
        timing(DeployPhase::Ready, ready_ms),
        timing(DeployPhase::Switch, switch_ms),
        timing(DeployPhase::Drain, drain_ms),
    ];
    settle(ctx, app, version, ReleaseStatus::Succeeded, &phases).await;
    ctx.event(app, Some(version), format!("v{version} is live"));
    Ok(phases)
}

async fn settle(ctx: &Ctx, app: &str, version: u32, status: ReleaseStatus, phases: &[PhaseTiming]) {
    if let Err(e) = ctx
        .apps
        .settle_release(app.to_string(), version, status)
        .await
    {
        tracing::error!(%app, version, error = %e, "could not settle a release");
    }
    if let Err(e) = ctx
        .apps
        .record_rollout(app.to_string(), version, phases.to_vec())
        .await
    {
        tracing::error!(%app, version, error = %e, "could not record a rollout");
    }
}

/// Makes the running instances match the current release's formation: starts missing ones
/// (and waits for their readiness), drains and stops extra ones (highest numbers first).
pub async fn apply_formation(ctx: &Arc<Ctx>, app: &str) -> Result<(), SupervisorError> {
    let state = ctx.app_state(app);
    let _turn = ctx.locks.turn(app).await;
    let Some(r) = ctx.apps.runnable(app.to_string(), None).await? else {
        return Ok(());
    };
    let live: Vec<Arc<Handle>> = state
        .list()
        .into_iter()
        .filter(|h| !h.is_leaving())
        .collect();
    let mut types: Vec<String> = r.formation.keys().cloned().collect();
    types.extend(live.iter().map(|h| h.process_type.clone()));
    types.sort();
    types.dedup();
    let mut new = Vec::new();
    let mut extra = Vec::new();
    for t in types {
        let want = r.formation.get(&t).copied().unwrap_or(0) as usize;
        let mut mine: Vec<&Arc<Handle>> = live.iter().filter(|h| h.process_type == t).collect();
        mine.sort_by_key(|h| h.index);
        if mine.len() > want {
            extra.extend(mine[want..].iter().map(|h| Arc::clone(h)));
        }
        let mut index = 1;
        for _ in mine.len()..want {
            while mine.iter().any(|h| h.index == index) {
                index += 1;
            }
            new.push(start(ctx, &state, &r, &t, index).await?);
            index += 1;
        }
    }
    if !new.is_empty() {
        ctx.event(
            app,
            Some(r.version),
            format!("scaling up: starting {} instance(s)", new.len()),
        );
        let budget =
            new.iter().map(|(_, b)| *b).max().unwrap_or_default() + Duration::from_secs(10);
        // A new instance that does not get ready keeps being restarted with backoff; the
        // formation stands either way.
        if let Err(e) = wait_all(
            &new,
            |p| matches!(p, Progress::Ready | Progress::Failed(_)),
            Some(budget),
        )
        .await
        {
            ctx.event(app, Some(r.version), e);
        }
    }
    if !extra.is_empty() {
        ctx.event(
            app,
            Some(r.version),
            format!(
                "scaling down: draining and stopping {} instance(s)",
                extra.len()
            ),
        );
        for h in &extra {
            h.set_leaving();
        }
        ctx.publish_now().await;
        stop_all(ctx, extra).await;
    }
    Ok(())
}

/// Starts one instance of `r`; returns it with the longest its readiness may take.
async fn start(
    ctx: &Arc<Ctx>,
    state: &Arc<super::AppState>,
    r: &Runnable,
    process_type: &str,
    index: u32,
) -> Result<(Arc<Handle>, Duration), SupervisorError> {
    let name = format!("{process_type}.{index}");
    let key = ctx.runtime.new_id(&format!("{}-{name}", r.app));
    let ip = ctx
        .addresses
        .allocate(&key, Some(r.identity.group))
        .await?
        .ip;
    let (launch, budget) = prepare(ctx, r, process_type, index);
    let h = Arc::new(Handle::new(
        &r.app,
        process_type,
        index,
        r.version,
        key,
        ip,
        r.identity.group,
    ));
    state
        .instances
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .push(Arc::clone(&h));
    tokio::spawn(instance::run(Arc::clone(ctx), Arc::clone(&h), launch, None));
    Ok((h, budget))
}

/// What an instance `process_type.index` of `r` runs, and the longest its readiness may
/// take. Notes about its checks go to the app's log.
pub(super) fn prepare(
    ctx: &Ctx,
    r: &Runnable,
    process_type: &str,
    index: u32,
) -> (Launch, Duration) {
    let name = format!("{process_type}.{index}");
    let layer = ctx.slugs.layer(&r.app, r.slug_id);
    let app_json = crate::app_files::app_json(&layer.join("app"));
    let (_, configured) = health::configured(
        process_type,
        r.checks.get(process_type).map(String::as_str),
        app_json.as_ref(),
    );
    let (checks, notes) = health::resolve(process_type, &configured);
    for n in notes {
        ctx.event(&r.app, Some(r.version), n);
    }
    let budget = checks
        .iter()
        .filter(|c| c.kind == health::Kind::Readiness)
        .map(health::Check::budget)
        .sum();
    let launch = Launch {
        stack: r.stack.clone(),
        layers: vec![layer],
        env: crate::launch::process_env(&r.config, &name),
        command: r
            .process_types
            .get(process_type)
            .cloned()
            .unwrap_or_default(),
        limits: limits(r, process_type),
        checks,
        user: crate::launch::user(r.identity.uid),
    };
    (launch, budget)
}

/// The runtime limits of an instance of `process_type`: the app's effective ones (`paas
/// resources` over `[instances]`), as the app service resolved them when the rollout began.
fn limits(r: &Runnable, process_type: &str) -> Limits {
    let l = r.resources.limits(process_type);
    Limits {
        memory_bytes: Some(MiB(l.memory_mb).bytes()),
        cpu_percent: Some(l.cpu_percent),
        pids: Some(l.pids),
        disk_bytes: Some(MiB(l.disk_mb).bytes()),
    }
}

/// Waits until every instance's progress satisfies `done`; the first failure (or the
/// deadline) is the error.
pub(super) async fn wait_all(
    list: &[(Arc<Handle>, Duration)],
    done: impl Fn(&Progress) -> bool + Copy,
    budget: Option<Duration>,
) -> Result<(), String> {
    let deadline = budget.map(|b| tokio::time::Instant::now() + b);
    for (h, _) in list {
        let mut rx = h.progress();
        let wait = rx.wait_for(|p| done(p) || matches!(p, Progress::Failed(_)));
        let got = match deadline {
            Some(d) => match tokio::time::timeout_at(d, wait).await {
                Ok(r) => r.map(|p| p.clone()),
                Err(_) => {
                    return Err(format!(
                        "{} was not ready within {} s",
                        h.name(),
                        budget.unwrap_or_default().as_secs()
                    ))
                }
            },
            None => wait.await.map(|p| p.clone()),
        };
        match got {
            Ok(Progress::Failed(reason)) => return Err(reason),
            Ok(_) => {}
            Err(_) => return Err(format!("{} went away", h.name())),
        }
    }
    Ok(())
}

/// Drains and stops every instance in `list`, all at once, and waits until they are gone.
pub async fn stop_all(ctx: &Arc<Ctx>, list: Vec<Arc<Handle>>) {
    if list.is_empty() {
        return;
    }
    for h in &list {
        h.set_leaving();
    }
    ctx.publish_now().await;
    for h in &list {
        h.request_stop();
    }
    // Gone = removed from the app's list by its task.
    loop {
        let left = list.iter().any(|h| {
            ctx.existing(&h.app).is_some_and(|s| {
                s.instances
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .iter()
                    .any(|x| Arc::ptr_eq(x, h))
            })
        });
        if !left {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
