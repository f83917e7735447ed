//! `paas env ...`: config vars (`/apps/{app}/env`). Owns building the `EnvPatch`; must not
//! judge key names (the daemon does, and its message reaches the user unchanged).

use anyhow::Result;
use paas_api::{EnvChanged, EnvPatch, EnvVars, Method};

use super::{app_path, required, typed, with_logs_hint, Ctx};
use crate::args::parse_key_values;
use crate::cli::{EnvGetArgs, EnvListArgs, EnvSetArgs, EnvUnsetArgs};
use crate::output;

/// `GET /apps/{app}/env[?reveal=true]`.
pub async fn list(ctx: &Ctx, args: EnvListArgs) -> Result<()> {
    let name = required(args.name)?;
    let query = if args.reveal {
        "/env?reveal=true"
    } else {
        "/env"
    };
    let value = ctx.get(&app_path(&name, query)?).await?;
    if ctx.json {
        return output::json(&value);
    }
    let env: EnvVars = typed(value)?;
    if env.vars.is_empty() {
        output::status(&format!("{name} has no config vars"));
        return Ok(());
    }
    let mut text = String::new();
    for (key, value) in &env.vars {
        text.push_str(&format!("{key}={value}\n"));
    }
    output::out(&text)?;
    if !env.redacted.is_empty() {
        output::status(&format!(
            "{} value(s) hidden as {}; add --reveal to show them",
            env.redacted.len(),
            paas_api::REDACTED
        ));
    }
    Ok(())
}

/// `GET /apps/{app}/env?reveal=true`, printing one value as it is (plus a newline) for
/// scripts: `$(paas config:get APP K)`. A var that is not set is an error, not an empty line.
pub async fn get(ctx: &Ctx, args: EnvGetArgs) -> Result<()> {
    let value = ctx.get(&app_path(&args.name, "/env?reveal=true")?).await?;
    let env: EnvVars = typed(value)?;
    let Some(v) = env.vars.get(&args.key) else {
        anyhow::bail!(
            "{} is not set on {} (see `paas env {}`)",
            args.key,
            args.name,
            args.name
        );
    };
    if ctx.json {
        return output::json(&serde_json::json!({ &args.key: v }));
    }
    output::out(&format!("{v}\n"))
}

/// `PATCH /apps/{app}/env` with each `K=V` as `"K": "V"`.
pub async fn set(ctx: &Ctx, args: EnvSetArgs) -> Result<()> {
    let vars = parse_key_values(&args.pairs)?;
    let keys: Vec<String> = vars.keys().cloned().collect();
    let patch: EnvPatch = vars.into_iter().map(|(k, v)| (k, Some(v))).collect();
    patch_env(ctx, &args.name, &patch, "Setting", &keys).await
}

/// `PATCH /apps/{app}/env` with each `K` as `"K": null`.
pub async fn unset(ctx: &Ctx, args: EnvUnsetArgs) -> Result<()> {
    let patch: EnvPatch = args.keys.into_iter().map(|k| (k, None)).collect();
    let keys: Vec<String> = patch.keys().cloned().collect();
    patch_env(ctx, &args.name, &patch, "Unsetting", &keys).await
}

async fn patch_env(
    ctx: &Ctx,
    name: &str,
    patch: &EnvPatch,
    verb: &str,
    keys: &[String],
) -> Result<()> {
    let value = ctx
        .request(Method::PATCH, &app_path(name, "/env")?, Some(patch))
        .await
        .map_err(|e| with_logs_hint(name, e))?;
    let changed: EnvChanged = typed(value.clone())?;
    let outcome = match &changed.release {
        Some(r) => format!("done, v{}", r.version),
        None => "done, no change".to_owned(),
    };
    output::status(&format!(
        "{verb} {} on {name}... {outcome}",
        keys.join(", ")
    ));
    if ctx.json {
        output::json(&value)?;
    }
    Ok(())
}
