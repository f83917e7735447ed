//! `paas backup create|restore`: the platform archive (`POST /platform/backup`, streamed
//! down; `POST /platform/restore`, streamed up). Must not read or check the archive (paasd
//! makes and checks it).

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;

use anyhow::{Context as _, Result};
use http_body_util::BodyExt;
use paas_api::client;
use paas_api::{Method, RestoredPlatform, API_PREFIX};

use super::Ctx;
use crate::cli::{BackupCreateArgs, BackupRestoreArgs};
use crate::output;
use crate::source::Source;

/// Streams the archive into FILE (created 0600, never overwritten; removed if it fails).
pub async fn create(ctx: &Ctx, args: BackupCreateArgs) -> Result<()> {
    let file = args.file.unwrap_or_else(|| {
        std::path::PathBuf::from(format!("paas-backup-{}.tar.gz", chrono_like_stamp()))
    });
    let mut out = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&file)
        .with_context(|| format!("creating {}", file.display()))?;
    output::status("Backing up the platform (database, key, slugs, repos, volumes, add-ons)...");
    let written = async {
        let resp = ctx
            .client
            .send(
                Method::POST,
                &format!("{API_PREFIX}/platform/backup"),
                None,
                "application/json",
            )
            .await?;
        let status = resp.status();
        let mut body = resp.into_body();
        if !status.is_success() {
            let bytes = body.collect().await?.to_bytes();
            return Err(anyhow::Error::from(client::api_error(status, &bytes)));
        }
        let mut n = 0u64;
        while let Some(frame) = body.frame().await {
            if let Ok(data) = frame?.into_data() {
                out.write_all(&data)?;
                n += data.len() as u64;
            }
        }
        out.sync_all()?;
        Ok(n)
    }
    .await;
    let n = match written {
        Ok(n) if n > 0 => n,
        Ok(_) => {
            let _ = std::fs::remove_file(&file);
            anyhow::bail!("paasd sent an empty archive; see its log");
        }
        Err(e) => {
            let _ = std::fs::remove_file(&file);
            return Err(e);
        }
    };
    output::status(&format!(
        "Wrote {} ({}). It holds the key that decrypts every config var: keep it secret.",
        file.display(),
        output::bytes(n)
    ));
    output::line(&file.display().to_string())
}

/// A UTC timestamp for the default file name, without a date crate.
fn chrono_like_stamp() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    secs.to_string()
}

/// Streams FILE to `POST /platform/restore`.
pub async fn restore(ctx: &Ctx, args: BackupRestoreArgs) -> Result<()> {
    let source = Source::open(&args.file, &mut |w| output::status(&w))?;
    output::status(&format!("-----> Restoring from {}", args.file.display()));
    let done: RestoredPlatform = ctx
        .upload(
            Method::POST,
            &format!("{API_PREFIX}/platform/restore"),
            source,
        )
        .await?;
    if ctx.json {
        return output::json(&serde_json::to_value(&done)?);
    }
    output::status(&format!(
        "Restored {} apps ({}), {} add-ons, {} volumes, {} git repos; the apps are starting",
        done.apps.len(),
        done.apps.join(", "),
        done.addons.len(),
        done.volumes,
        done.repos
    ));
    Ok(())
}
