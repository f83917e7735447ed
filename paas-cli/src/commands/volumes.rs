//! `paas volumes ...`: an app's persistent volumes (`/apps/{app}/volumes`). Must not judge
//! names, paths or sizes (the daemon does).

use anyhow::Result;
use paas_api::{AddVolume, Method, Volume};

use super::{app_path, seg, typed, Ctx};
use crate::args::UsageError;
use crate::cli::{VolumeAddArgs, VolumeRemoveArgs};
use crate::output;

/// `GET /apps/{app}/volumes`.
pub async fn list(ctx: &Ctx, app: &str) -> Result<()> {
    let value = ctx.get(&app_path(app, "/volumes")?).await?;
    if ctx.json {
        return output::json(&value);
    }
    let vols: Vec<Volume> = typed(value)?;
    if vols.is_empty() {
        output::status("no volumes");
        return Ok(());
    }
    let rows: Vec<Vec<String>> = vols
        .iter()
        .map(|v| {
            vec![
                v.name.clone(),
                v.path.clone(),
                format!("{} MB", v.size_mb),
                v.used_mb.map_or("-".into(), |u| format!("{u} MB")),
            ]
        })
        .collect();
    output::out(&output::table(&["NAME", "PATH", "SIZE", "USED"], &rows))
}

/// `POST /apps/{app}/volumes`.
pub async fn add(ctx: &Ctx, args: VolumeAddArgs) -> Result<()> {
    let body = AddVolume {
        name: args.name.clone(),
        path: args.path.clone(),
        size_mb: args.size,
    };
    let value = ctx
        .request(Method::POST, &app_path(&args.app, "/volumes")?, Some(&body))
        .await?;
    if ctx.json {
        return output::json(&value);
    }
    let v: Volume = typed(value)?;
    output::status(&format!(
        "Added {} to {} at {} ({} MB); the app restarted to mount it",
        v.name, v.app, v.path, v.size_mb
    ));
    Ok(())
}

/// `DELETE /apps/{app}/volumes/{name}`, only when `--confirm` repeats the volume's name.
pub async fn remove(ctx: &Ctx, args: VolumeRemoveArgs) -> Result<()> {
    if args.confirm.as_deref() != Some(args.name.as_str()) {
        return Err(UsageError(format!(
            "removing volume '{}' deletes its data. Re-run with `--confirm {}`",
            args.name, args.name
        ))
        .into());
    }
    let rest = format!("/volumes/{}", seg(&args.name, "volume name")?);
    ctx.call(Method::DELETE, &app_path(&args.app, &rest)?)
        .await?;
    output::status(&format!("Removed {} from {}", args.name, args.app));
    Ok(())
}
