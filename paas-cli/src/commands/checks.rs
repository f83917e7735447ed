//! `paas checks`: health checks per process type (`/apps/{app}/checks`). Must not judge a
//! check's fields: paasd refuses bad ones with its own message.

use anyhow::Result;
use paas_api::{CheckList, HealthCheck, Method};

use super::{app_path, seg, typed, Ctx};
use crate::cli::{ChecksClearArgs, ChecksSetArgs};
use crate::output;

pub async fn list(ctx: &Ctx, name: &str) -> Result<()> {
    let value = ctx.get(&app_path(name, "/checks")?).await?;
    show(ctx, value)
}

pub async fn set(ctx: &Ctx, a: ChecksSetArgs) -> Result<()> {
    let check = HealthCheck {
        kind: a.kind,
        path: a.path,
        port: a.port,
        timeout: a.timeout,
        attempts: a.attempts,
        wait: a.wait,
        initial_delay: a.initial_delay,
        content: a.content,
        ..HealthCheck::default()
    };
    let path = app_path(
        &a.name,
        &format!("/checks/{}", seg(&a.process_type, "process type")?),
    )?;
    let value = ctx.request(Method::PUT, &path, Some(&check)).await?;
    output::status(&format!(
        "Health check of {} {} set; it applies from the next deploy or restart",
        a.name, a.process_type
    ));
    show(ctx, value)
}

pub async fn clear(ctx: &Ctx, a: ChecksClearArgs) -> Result<()> {
    let path = app_path(
        &a.name,
        &format!("/checks/{}", seg(&a.process_type, "process type")?),
    )?;
    let value = ctx.request::<()>(Method::DELETE, &path, None).await?;
    show(ctx, value)
}

fn show(ctx: &Ctx, value: serde_json::Value) -> Result<()> {
    if ctx.json {
        return output::json(&value);
    }
    let list: CheckList = typed(value)?;
    let mut rows = Vec::new();
    for (ptype, c) in &list.checks {
        if c.checks.is_empty() {
            let what = if ptype == "web" {
                "readiness: TCP connect to :5000 within 60 s; liveness: TCP every 10 s"
            } else {
                "none"
            };
            rows.push(vec![ptype.clone(), c.origin.clone(), what.to_owned()]);
        }
        for h in &c.checks {
            let probe = match &h.path {
                Some(p) => format!("GET {p}"),
                None => "TCP connect".to_owned(),
            };
            let mut parts = vec![format!(
                "{}: {probe} on :{}",
                h.kind.as_deref().unwrap_or("readiness"),
                h.port.unwrap_or(5000)
            )];
            for (k, v) in [
                ("timeout", h.timeout.map(|n| format!("{n}s"))),
                ("attempts", h.attempts.map(|n| n.to_string())),
                ("wait", h.wait.map(|n| format!("{n}s"))),
                ("initialDelay", h.initial_delay.map(|n| format!("{n}s"))),
                ("content", h.content.clone()),
            ] {
                if let Some(v) = v {
                    parts.push(format!("{k}={v}"));
                }
            }
            rows.push(vec![ptype.clone(), c.origin.clone(), parts.join(" ")]);
        }
    }
    output::out(&output::table(&["TYPE", "FROM", "CHECK"], &rows))
}
