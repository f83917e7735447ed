//! `paas releases ...`: an app's release history (`/apps/{app}/releases`). Read-only; must
//! not create or roll back releases.

use anyhow::Result;
use paas_api::Release;

use super::{app_path, typed, Ctx};
use crate::output;

/// `GET /apps/{app}/releases`, shown in the daemon's order (newest first).
pub async fn list(ctx: &Ctx, name: &str) -> Result<()> {
    let value = ctx.get(&app_path(name, "/releases")?).await?;
    if ctx.json {
        return output::json(&value);
    }
    let releases: Vec<Release> = typed(value)?;
    if releases.is_empty() {
        output::status("no releases");
        return Ok(());
    }
    let rows: Vec<Vec<String>> = releases
        .iter()
        .map(|r| {
            vec![
                format!("v{}", r.version),
                r.status.to_string(),
                output::ago(&r.created_at),
                r.description.clone(),
            ]
        })
        .collect();
    output::out(&output::table(
        &["VERSION", "STATUS", "CREATED", "DESCRIPTION"],
        &rows,
    ))
}
