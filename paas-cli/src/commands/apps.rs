//! `paas apps ...`, `create`, `info`, `destroy`: the app lifecycle endpoints (`/apps`,
//! `/apps/{app}`). Must not touch env, domains, scale or releases endpoints.

use anyhow::Result;
use paas_api::{App, CreateApp, Method, API_PREFIX};

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

/// `GET /apps/{app}`.
pub async fn info(ctx: &Ctx, name: &str) -> Result<()> {
    let value = ctx.get(&app_path(name, "")?).await?;
    if ctx.json {
        return output::json(&value);
    }
    let app: App = typed(value)?;
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
            "created",
            format!("{} ({})", app.created_at, output::ago(&app.created_at)),
        ),
        ("formation", or_none(output::formation(&app.formation))),
        ("domains", or_none(app.domains.join(", "))),
        ("urls", or_none(app.urls.join(", "))),
    ]))
}

/// `DELETE /apps/{app}`, only when `--confirm` repeats the name.
pub async fn destroy(ctx: &Ctx, args: DestroyArgs) -> Result<()> {
    check_confirm(&args.name, args.confirm.as_deref())?;
    ctx.call(Method::DELETE, &app_path(&args.name, "")?).await?;
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

    #[test]
    fn confirm_must_repeat_the_name() {
        assert!(check_confirm("x", Some("x")).is_ok());
        assert!(check_confirm("x", Some("y")).is_err());
        assert!(check_confirm("x", Some("X")).is_err());
        let missing = check_confirm("x", None).expect_err("refused");
        assert!(missing.0.contains("--confirm x"));
    }
}
