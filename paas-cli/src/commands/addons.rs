//! `paas addons ...`: add-on services (`/addons`, `/addons/{name}/...`). Must not decide
//! names, config vars or what a query may be (the daemon does).

use anyhow::Result;
use paas_api::{
    Addon, AddonQuery, AddonQueryOutput, Backup, BackupSchedule, CreateAddon, LinkAddon, Method,
    RestoreBackup, API_PREFIX,
};

use super::run::ExitWith;
use super::{seg, typed, Ctx};
use crate::cli::{
    AddonCreateArgs, AddonDestroyArgs, AddonLinkArgs, AddonRestoreArgs, AddonScheduleArgs,
};
use crate::output;

fn addon_path(name: &str, rest: &str) -> Result<String> {
    Ok(format!(
        "{API_PREFIX}/addons/{}{rest}",
        seg(name, "add-on name")?
    ))
}

/// `GET /addons` or `GET /apps/{app}/addons`.
pub async fn list(ctx: &Ctx, app: Option<&str>) -> Result<()> {
    let path = match app {
        Some(a) => format!("{API_PREFIX}/addons?app={}", seg(a, "app name")?),
        None => format!("{API_PREFIX}/addons"),
    };
    let value = ctx.get(&path).await?;
    if ctx.json {
        return output::json(&value);
    }
    let addons: Vec<Addon> = typed(value)?;
    if addons.is_empty() {
        output::status("no add-ons");
        return Ok(());
    }
    let rows: Vec<Vec<String>> = addons
        .iter()
        .map(|a| {
            vec![
                a.name.clone(),
                format!("{} {}", a.kind, a.version),
                state(a),
                a.links
                    .iter()
                    .map(|l| format!("{} ({})", l.app, l.env_var))
                    .collect::<Vec<_>>()
                    .join(", "),
            ]
        })
        .collect();
    output::out(&output::table(
        &["NAME", "TYPE", "STATE", "LINKED TO"],
        &rows,
    ))
}

fn state(a: &Addon) -> String {
    serde_json::to_value(a.state)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

/// `POST /addons`.
pub async fn create(ctx: &Ctx, args: AddonCreateArgs) -> Result<()> {
    let body = CreateAddon {
        app: args.app.clone(),
        kind: args.kind.clone(),
        name: args.name,
        version: args.version,
        memory_mb: args.memory,
        disk_mb: args.disk,
    };
    output::status(&format!(
        "Creating {} for {} (starts it, links it, restarts the app)...",
        args.kind, args.app
    ));
    let value = ctx
        .request(Method::POST, &format!("{API_PREFIX}/addons"), Some(&body))
        .await?;
    if ctx.json {
        return output::json(&value);
    }
    let a: Addon = typed(value)?;
    let vars: Vec<String> = a.links.iter().map(|l| l.env_var.clone()).collect();
    output::status(&format!(
        "Created {} ({} {}); {} has it as {}",
        a.name,
        a.kind,
        a.version,
        args.app,
        vars.join(", ")
    ));
    output::line(&a.name)
}

/// `GET /addons/{name}`.
pub async fn info(ctx: &Ctx, name: &str) -> Result<()> {
    let value = ctx.get(&addon_path(name, "")?).await?;
    if ctx.json {
        return output::json(&value);
    }
    let a: Addon = typed(value)?;
    let mut pairs = vec![
        ("Name", a.name.clone()),
        ("Type", format!("{} {}", a.kind, a.version)),
        ("State", state(&a)),
        ("Address", a.address.clone()),
        ("Memory", format!("{} MB", a.memory_mb)),
        (
            "Disk",
            match a.disk_used_mb {
                Some(u) => format!("{u} of {} MB used", a.disk_mb),
                None => format!("{} MB", a.disk_mb),
            },
        ),
        ("Restarts", a.restarts.to_string()),
        (
            "Linked to",
            a.links
                .iter()
                .map(|l| format!("{} ({})", l.app, l.env_var))
                .collect::<Vec<_>>()
                .join(", "),
        ),
        (
            "Backups",
            a.backup_schedule.map_or("manual".to_string(), |s| {
                format!(
                    "every {}, keeping {}",
                    humantime::format_duration(std::time::Duration::from_secs(s.every_secs)),
                    s.keep
                )
            }),
        ),
        ("Created", a.created_at.clone()),
    ];
    if let Some(e) = &a.last_error {
        pairs.push(("Last error", e.clone()));
    }
    let mut text = output::key_values(&pairs);
    if !a.recent_output.is_empty() {
        text.push_str("\nRecent output:\n");
        for l in &a.recent_output {
            text.push_str("  ");
            text.push_str(l);
            text.push('\n');
        }
    }
    output::out(&text)
}

/// `DELETE /addons/{name}?confirm=NAME`.
pub async fn destroy(ctx: &Ctx, args: AddonDestroyArgs) -> Result<()> {
    let mut path = addon_path(&args.name, "")?;
    if let Some(c) = &args.confirm {
        path.push_str(&format!("?confirm={}", seg(c, "confirmation")?));
    }
    ctx.call(Method::DELETE, &path).await?;
    output::status(&format!("Destroyed {} (its backups are kept)", args.name));
    Ok(())
}

/// `POST /addons/{name}/links`.
pub async fn link(ctx: &Ctx, args: AddonLinkArgs) -> Result<()> {
    let body = LinkAddon {
        app: args.app.clone(),
    };
    let value = ctx
        .request(
            Method::POST,
            &addon_path(&args.name, "/links")?,
            Some(&body),
        )
        .await?;
    if ctx.json {
        return output::json(&value);
    }
    let l: paas_api::AddonLink = typed(value)?;
    output::status(&format!(
        "Linked {} to {} as {} (restarted)",
        args.name, l.app, l.env_var
    ));
    Ok(())
}

/// `DELETE /addons/{name}/links/{app}`.
pub async fn unlink(ctx: &Ctx, args: AddonLinkArgs) -> Result<()> {
    let rest = format!("/links/{}", seg(&args.app, "app name")?);
    ctx.call(Method::DELETE, &addon_path(&args.name, &rest)?)
        .await?;
    output::status(&format!(
        "Unlinked {} from {} (restarted)",
        args.name, args.app
    ));
    Ok(())
}

/// `POST /addons/{name}/query`: prints what the client printed; exits with its status.
pub async fn query(ctx: &Ctx, name: &str, args: Vec<String>) -> Result<()> {
    let value = ctx
        .request(
            Method::POST,
            &addon_path(name, "/query")?,
            Some(&AddonQuery { args }),
        )
        .await?;
    if ctx.json {
        return output::json(&value);
    }
    let out: AddonQueryOutput = typed(value)?;
    output::out(&out.stdout)?;
    if !out.stderr.is_empty() {
        eprint!("{}", out.stderr);
    }
    match out.exit_code {
        Some(0) => Ok(()),
        Some(c) => Err(ExitWith(u8::try_from(c).unwrap_or(1).max(1)).into()),
        None => Err(ExitWith(1).into()),
    }
}

/// `POST /addons/{name}/backups`.
pub async fn backup(ctx: &Ctx, name: &str) -> Result<()> {
    output::status(&format!("Backing up {name}..."));
    let value = ctx
        .request::<()>(Method::POST, &addon_path(name, "/backups")?, None)
        .await?;
    if ctx.json {
        return output::json(&value);
    }
    let b: Backup = typed(value)?;
    output::status(&format!(
        "Backed up {name}: {} ({})",
        b.name,
        output::bytes(b.bytes)
    ));
    output::line(&b.name)
}

/// `GET /addons/{name}/backups`.
pub async fn backups(ctx: &Ctx, name: &str) -> Result<()> {
    let value = ctx.get(&addon_path(name, "/backups")?).await?;
    if ctx.json {
        return output::json(&value);
    }
    let all: Vec<Backup> = typed(value)?;
    if all.is_empty() {
        output::status("no backups");
        return Ok(());
    }
    let rows: Vec<Vec<String>> = all
        .iter()
        .map(|b| {
            vec![
                b.name.clone(),
                b.created_at.clone(),
                output::bytes(b.bytes),
                if b.scheduled { "scheduled" } else { "manual" }.to_string(),
            ]
        })
        .collect();
    output::out(&output::table(
        &["BACKUP", "CREATED", "SIZE", "MADE"],
        &rows,
    ))
}

/// `POST /addons/{name}/restore`.
pub async fn restore(ctx: &Ctx, args: AddonRestoreArgs) -> Result<()> {
    output::status(&format!("Restoring {} from {}...", args.name, args.backup));
    let body = RestoreBackup {
        backup: args.backup.clone(),
    };
    let value = ctx
        .request(
            Method::POST,
            &addon_path(&args.name, "/restore")?,
            Some(&body),
        )
        .await?;
    if ctx.json {
        return output::json(&value);
    }
    output::status(&format!("Restored {} from {}", args.name, args.backup));
    Ok(())
}

/// `PUT` or `DELETE /addons/{name}/backup-schedule`.
pub async fn schedule(ctx: &Ctx, args: AddonScheduleArgs) -> Result<()> {
    let path = addon_path(&args.name, "/backup-schedule")?;
    let value = match args.every {
        Some(every) if !args.off => {
            let body = BackupSchedule {
                every_secs: every.as_secs(),
                keep: args.keep,
            };
            ctx.request(Method::PUT, &path, Some(&body)).await?
        }
        _ => ctx.request::<()>(Method::DELETE, &path, None).await?,
    };
    if ctx.json {
        return output::json(&value);
    }
    match args.every {
        Some(every) if !args.off => output::status(&format!(
            "{} is backed up every {}, keeping the newest {}",
            args.name,
            humantime::format_duration(every),
            args.keep
        )),
        _ => output::status(&format!("{}: scheduled backups off", args.name)),
    }
    Ok(())
}
