//! `paas ps`, `paas restart` and `paas rollback`: what runs (`/apps/{app}/ps`) and the two
//! ways to replace it without a deploy (`/apps/{app}/restart`, `/apps/{app}/rollback`).
//! Must not decide anything about instances: paasd does.

use anyhow::Result;
use paas_api::{InstanceList, Method, Release, RollbackRequest};

use super::{app_path, typed, with_logs_hint, Ctx};
use crate::args::parse_version;
use crate::cli::RollbackArgs;
use crate::output;

const COLUMNS: [&str; 8] = [
    "INSTANCE",
    "STATE",
    "RELEASE",
    "UPTIME",
    "RESTARTS",
    "ADDRESS",
    "HEALTH",
    "LAST ERROR",
];

/// `GET /apps/{app}/ps`: one row per instance.
pub async fn ps(ctx: &Ctx, name: &str) -> Result<()> {
    let value = ctx.get(&app_path(name, "/ps")?).await?;
    if ctx.json {
        return output::json(&value);
    }
    let list: InstanceList = typed(value)?;
    if list.instances.is_empty() {
        output::status(&format!("{name} has no instances running"));
        return Ok(());
    }
    let rows: Vec<Vec<String>> = list
        .instances
        .iter()
        .map(|i| {
            vec![
                i.name.clone(),
                snake(&i.state),
                format!("v{}", i.release),
                i.uptime_secs
                    .map(|s| output::duration_ms(s * 1000))
                    .unwrap_or_else(|| "-".into()),
                i.restarts.to_string(),
                i.address.clone().unwrap_or_else(|| "-".into()),
                snake(&i.health),
                i.last_error.clone().unwrap_or_else(|| "-".into()),
            ]
        })
        .collect();
    output::out(&output::table(&COLUMNS, &rows))
}

/// `POST /apps/{app}/restart`.
pub async fn restart(ctx: &Ctx, name: &str) -> Result<()> {
    // An app that does not exist is said so before "Restarting..." suggests otherwise.
    ctx.get(&app_path(name, "")?).await?;
    output::status(&format!("Restarting {name}..."));
    let value = ctx
        .request::<()>(Method::POST, &app_path(name, "/restart")?, None)
        .await
        .map_err(|e| with_logs_hint(name, e))?;
    if ctx.json {
        return output::json(&value);
    }
    let r: Release = typed(value)?;
    output::status(&format!("Restarted {name} (v{})", r.version));
    Ok(())
}

/// `POST /apps/{app}/rollback`.
pub async fn rollback(ctx: &Ctx, args: RollbackArgs) -> Result<()> {
    let release = match &args.to {
        Some(v) => Some(format!("v{}", parse_version(v)?)),
        None => None,
    };
    ctx.get(&app_path(&args.name, "")?).await?;
    output::status(&format!("Rolling back {}...", args.name));
    let value = ctx
        .request(
            Method::POST,
            &app_path(&args.name, "/rollback")?,
            Some(&RollbackRequest { release }),
        )
        .await
        .map_err(|e| with_logs_hint(&args.name, e))?;
    if ctx.json {
        return output::json(&value);
    }
    let r: Release = typed(value)?;
    output::line(&format!(
        "{}: now v{} ({})",
        args.name, r.version, r.description
    ))
}

/// `up`, `crashed`...: the wire names.
fn snake(v: &impl serde::Serialize) -> String {
    serde_json::to_value(v)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}
