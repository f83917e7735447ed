//! `paas buildpacks ...`: the buildpacks an app is built with (`/apps/{app}` to show them,
//! `PUT /apps/{app}/buildpacks` to change them). Must not judge buildpack names, paths or
//! URLs: the daemon does, and its message reaches the user unchanged.

use anyhow::Result;
use paas_api::{App, Method, SetBuildpacks};
use serde_json::{json, Value};

use super::{app_path, typed, Ctx};
use crate::cli::BuildpacksSetArgs;
use crate::output;

/// `GET /apps/{app}`, printing only its buildpacks (`{"buildpacks": [...]}` with `--json`).
pub async fn list(ctx: &Ctx, name: &str) -> Result<()> {
    let value = ctx.get(&app_path(name, "")?).await?;
    if ctx.json {
        let buildpacks = value
            .get("buildpacks")
            .cloned()
            .unwrap_or_else(|| json!([]));
        return output::json(&json!({ "buildpacks": buildpacks }));
    }
    let app: App = typed(value)?;
    print_buildpacks(&app.buildpacks)
}

/// `PUT /apps/{app}/buildpacks` with the given list.
pub async fn set(ctx: &Ctx, args: BuildpacksSetArgs) -> Result<()> {
    put(ctx, &args.name, args.buildpacks).await
}

/// `PUT /apps/{app}/buildpacks` with an empty list: back to detection.
pub async fn clear(ctx: &Ctx, name: &str) -> Result<()> {
    put(ctx, name, Vec::new()).await
}

async fn put(ctx: &Ctx, name: &str, buildpacks: Vec<String>) -> Result<()> {
    let clearing = buildpacks.is_empty();
    let value: Value = ctx
        .request(
            Method::PUT,
            &app_path(name, "/buildpacks")?,
            Some(&SetBuildpacks { buildpacks }),
        )
        .await?;
    let app: App = typed(value.clone())?;
    output::status(&if clearing {
        format!("Clearing buildpacks of {name}... done, the next deploy detects one")
    } else {
        format!("Setting buildpacks of {name}... done, used from the next deploy")
    });
    if ctx.json {
        return output::json(&value);
    }
    print_buildpacks(&app.buildpacks)
}

fn print_buildpacks(buildpacks: &[String]) -> Result<()> {
    if buildpacks.is_empty() {
        output::status("no buildpacks set; one is detected at each deploy");
        return Ok(());
    }
    let mut text = String::new();
    for bp in buildpacks {
        text.push_str(bp);
        text.push('\n');
    }
    output::out(&text)
}
