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
    let pass = crate::sealed::passphrase(args.passphrase_file.as_deref())?;
    let opened = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&file)
        .with_context(|| format!("creating {}", file.display()))?;
    let mut out = match &pass {
        Some(p) => Out::Sealed(crate::sealed::Sealer::new(opened, p)?),
        None => Out::Plain(opened),
    };
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
        out.finish()?;
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
    if pass.is_some() {
        output::status(&format!(
            "Wrote {} ({} before encryption), encrypted with the passphrase: without it the \
             archive cannot be restored.",
            file.display(),
            output::bytes(n)
        ));
    } else {
        output::status(&format!(
            "Wrote {} ({}). It holds the key that decrypts every config var: keep it secret \
             (or encrypt it: --passphrase-file).",
            file.display(),
            output::bytes(n)
        ));
    }
    output::line(&file.display().to_string())
}

/// Where the archive goes: the file, or the file through the passphrase's encryption.
enum Out {
    Plain(std::fs::File),
    Sealed(crate::sealed::Sealer<std::fs::File>),
}

impl Out {
    fn write_all(&mut self, data: &[u8]) -> Result<()> {
        match self {
            Out::Plain(f) => f.write_all(data)?,
            Out::Sealed(s) => s.write_all(data)?,
        }
        Ok(())
    }

    fn finish(self) -> Result<()> {
        let f = match self {
            Out::Plain(f) => f,
            Out::Sealed(s) => s.finish()?,
        };
        f.sync_all()?;
        Ok(())
    }
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
    // An encrypted archive is opened into a private temp file first (0600, removed on exit).
    let opened;
    let path = if crate::sealed::is_sealed(&args.file)
        .with_context(|| format!("reading {}", args.file.display()))?
    {
        let Some(pass) = crate::sealed::passphrase(args.passphrase_file.as_deref())? else {
            return Err(crate::args::UsageError(format!(
                "{} is encrypted: give its passphrase with --passphrase-file FILE or $PAAS_BACKUP_PASSPHRASE",
                args.file.display()
            ))
            .into());
        };
        let input = std::fs::File::open(&args.file)?;
        let tmp = tempfile::Builder::new()
            .prefix("paas-restore-")
            .suffix(".tar.gz")
            .tempfile()?;
        crate::sealed::open(
            std::io::BufReader::new(input),
            std::io::BufWriter::new(tmp.as_file()),
            &pass,
        )?;
        opened = tmp;
        opened.path().to_path_buf()
    } else {
        args.file.clone()
    };
    let source = Source::open(&path, &mut |w| output::status(&w))?;
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
