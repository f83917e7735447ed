//! `paas apps ...`, `create`, `info`, `destroy`: the app lifecycle endpoints (`/apps`,
//! `/apps/{app}`). Must not touch env, domains, scale or releases endpoints.

use anyhow::Result;
use std::collections::BTreeMap;

use paas_api::{App, CreateApp, InstanceInfo, InstanceList, Method, API_PREFIX};

use super::{app_path, typed, Ctx};
use crate::args::UsageError;
use crate::cli::{CreateArgs, DestroyArgs};
use crate::output;

/// `GET /apps`.
pub async fn list(ctx: &Ctx) -> Result<()> {
    let value = ctx.get(&format!("{API_PREFIX}/apps")).await?;
    if ctx.json {
        return output::json(&value);
    }
    let apps: Vec<App> = typed(value)?;
    if apps.is_empty() {
        output::status("no apps");
        return Ok(());
    }
    let rows: Vec<Vec<String>> = apps
        .iter()
        .map(|a| {
            vec![
                a.name.clone(),
                a.status.to_string(),
                output::version(a.release),
                output::ago(&a.created_at),
            ]
        })
        .collect();
    output::out(&output::table(
        &["NAME", "STATUS", "RELEASE", "CREATED"],
        &rows,
    ))
}

/// `POST /apps`.
pub async fn create(ctx: &Ctx, args: CreateArgs) -> Result<()> {
    let body = CreateApp {
        name: args.name,
        stack: args.stack,
        buildpack: args.buildpack,
    };
    let value = ctx
        .request(Method::POST, &format!("{API_PREFIX}/apps"), Some(&body))
        .await?;
    output::status(&format!("Creating {}... done", body.name));
    if ctx.json {
        return output::json(&value);
    }
    let app: App = typed(value)?;
    for url in &app.urls {
        output::line(url)?;
    }
    Ok(())
}

/// `GET /apps/{app}`, plus `GET /apps/{app}/ps` for what runs of the formation (`--json`
/// prints the app alone, as paasd answers it; `paas ps --json` has the instances).
pub async fn info(ctx: &Ctx, name: &str) -> Result<()> {
    let value = ctx.get(&app_path(name, "")?).await?;
    if ctx.json {
        return output::json(&value);
    }
    let app: App = typed(value)?;
    // What runs is a courtesy here: without it the desired counts are still worth showing.
    let instances = match ctx.get(&app_path(name, "/ps")?).await {
        Ok(v) => typed::<InstanceList>(v).ok(),
        Err(_) => None,
    };
    let or_none = |s: String| if s.is_empty() { "none".to_owned() } else { s };
    output::out(&output::key_values(&[
        ("name", app.name.clone()),
        ("status", app.status.to_string()),
        ("stack", app.stack.clone()),
        (
            "buildpacks",
            if app.buildpacks.is_empty() {
                "(detected at build)".to_owned()
            } else {
                app.buildpacks.join(", ")
            },
        ),
        ("release", output::version(app.release)),
        (
            "uid",
            app.uid.map_or_else(|| "-".to_owned(), |u| u.to_string()),
        ),
        (
            "created",
            format!("{} ({})", app.created_at, output::ago(&app.created_at)),
        ),
        (
            "formation",
            or_none(match &instances {
                Some(list) => running_formation(&app.formation, &list.instances),
                None => output::formation(&app.formation),
            }),
        ),
        ("domains", or_none(app.domains.join(", "))),
        ("urls", or_none(app.urls.join(", "))),
        (
            "resources",
            app.resources
                .as_ref()
                .map_or_else(|| "-".to_owned(), super::resources::summary),
        ),
    ]))
}

/// `web: 2 wanted, 1 up (1 starting); worker: 1 wanted, 1 up`: per process type (desired or
/// running), the desired count, how many are up and how many are in other states.
fn running_formation(desired: &BTreeMap<String, u32>, instances: &[InstanceInfo]) -> String {
    let mut types: BTreeMap<&str, (u32, BTreeMap<String, u32>)> = desired
        .iter()
        .map(|(t, n)| (t.as_str(), (*n, BTreeMap::new())))
        .collect();
    for i in instances {
        let (_, states) = types
            .entry(i.process_type.as_str())
            .or_insert((0, BTreeMap::new()));
        let state = serde_json::to_value(i.state)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default();
        *states.entry(state).or_insert(0) += 1;
    }
    types
        .iter()
        .map(|(t, (wanted, states))| {
            let up = states.get("up").copied().unwrap_or(0);
            let others: Vec<String> = states
                .iter()
                .filter(|(s, _)| *s != "up")
                .map(|(s, n)| format!("{n} {s}"))
                .collect();
            let mut text = format!("{t}: {wanted} wanted, {up} up");
            if !others.is_empty() {
                text.push_str(&format!(" ({})", others.join(", ")));
            }
            text
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// `DELETE /apps/{app}`, only when `--confirm` repeats the name.
pub async fn destroy(ctx: &Ctx, args: DestroyArgs) -> Result<()> {
    check_confirm(&args.name, args.confirm.as_deref())?;
    let query = if args.delete_volumes {
        "?delete_volumes=true"
    } else {
        ""
    };
    ctx.call(Method::DELETE, &app_path(&args.name, query)?)
        .await?;
    output::status(&format!("Destroying {}... done", args.name));
    Ok(())
}

/// Refuses locally unless `confirm` is exactly the app name.
fn check_confirm(name: &str, confirm: Option<&str>) -> Result<(), UsageError> {
    match confirm {
        Some(c) if c == name => Ok(()),
        Some(c) => Err(UsageError(format!(
            "--confirm '{c}' does not match the app name '{name}'; nothing was destroyed. \
             Re-run with `--confirm {name}`"
        ))),
        None => Err(UsageError(format!(
            "destroying '{name}' deletes the app and everything it owns and cannot be undone. \
             Re-run with `--confirm {name}`"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn instance(name: &str, state: paas_api::InstanceState) -> InstanceInfo {
        InstanceInfo {
            name: name.to_owned(),
            process_type: name.split('.').next().unwrap_or_default().to_owned(),
            state,
            release: 2,
            address: None,
            started_at: None,
            uptime_secs: None,
            restarts: 0,
            health: paas_api::HealthState::Unknown,
            last_error: None,
        }
    }

    #[test]
    fn formation_shows_what_runs_next_to_what_is_wanted() {
        use paas_api::InstanceState::{Crashed, Starting, Up};
        let desired = BTreeMap::from([("web".to_owned(), 2), ("worker".to_owned(), 1)]);
        let running = [
            instance("web.1", Up),
            instance("web.2", Starting),
            instance("worker.1", Crashed),
            instance("clock.1", Up),
        ];
        assert_eq!(
            running_formation(&desired, &running),
            "clock: 0 wanted, 1 up; web: 2 wanted, 1 up (1 starting); worker: 1 wanted, 0 up (1 crashed)"
        );
        assert_eq!(
            running_formation(&BTreeMap::from([("web".to_owned(), 0)]), &[]),
            "web: 0 wanted, 0 up"
        );
        assert_eq!(running_formation(&BTreeMap::new(), &[]), "");
    }

    #[test]
    fn confirm_must_repeat_the_name() {
        assert!(check_confirm("x", Some("x")).is_ok());
        assert!(check_confirm("x", Some("y")).is_err());
        assert!(check_confirm("x", Some("X")).is_err());
        let missing = check_confirm("x", None).expect_err("refused");
        assert!(missing.0.contains("--confirm x"));
    }
}
