//! `paas volumes ...`: an app's persistent volumes (`/apps/{app}/volumes`). Must not judge
//! names, paths or sizes (the daemon does).

use anyhow::Result;
use paas_api::{AddVolume, Method, RestoreBackup, Volume, VolumeBackup};

use super::{app_path, seg, typed, Ctx};
use crate::args::UsageError;
use crate::cli::{VolumeAddArgs, VolumeNameArgs, VolumeRemoveArgs, VolumeRestoreArgs};
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

fn volume_path(app: &str, name: &str, rest: &str) -> Result<String> {
    app_path(
        app,
        &format!("/volumes/{}{rest}", seg(name, "volume name")?),
    )
}

/// `POST /apps/{app}/volumes/{name}/backups`.
pub async fn backup(ctx: &Ctx, args: VolumeNameArgs) -> Result<()> {
    let value = ctx
        .request::<()>(
            Method::POST,
            &volume_path(&args.app, &args.name, "/backups")?,
            None,
        )
        .await?;
    if ctx.json {
        return output::json(&value);
    }
    let b: VolumeBackup = typed(value)?;
    output::status(&format!(
        "Backed up volume {} of {}: {} ({})",
        b.volume,
        b.app,
        b.name,
        output::bytes(b.bytes)
    ));
    output::line(&b.name)
}

/// `GET /apps/{app}/volumes/{name}/backups`.
pub async fn backups(ctx: &Ctx, args: VolumeNameArgs) -> Result<()> {
    let value = ctx
        .get(&volume_path(&args.app, &args.name, "/backups")?)
        .await?;
    if ctx.json {
        return output::json(&value);
    }
    let all: Vec<VolumeBackup> = typed(value)?;
    if all.is_empty() {
        output::status("no backups");
        return Ok(());
    }
    let rows: Vec<Vec<String>> = all
        .iter()
        .map(|b| vec![b.name.clone(), b.created_at.clone(), output::bytes(b.bytes)])
        .collect();
    output::out(&output::table(&["BACKUP", "CREATED", "SIZE"], &rows))
}

/// `POST /apps/{app}/volumes/{name}/restore`.
pub async fn restore(ctx: &Ctx, args: VolumeRestoreArgs) -> Result<()> {
    let body = RestoreBackup {
        backup: args.backup.clone(),
    };
    ctx.client
        .call(
            Method::POST,
            &volume_path(&args.app, &args.name, "/restore")?,
            Some(&body),
        )
        .await?;
    output::status(&format!(
        "Restored volume {} of {} from {}; the app restarted",
        args.name, args.app, args.backup
    ));
    Ok(())
}
