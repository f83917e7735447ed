//! `paas keys ...`: the SSH keys allowed to `git push` (`/keys`). Reads the key file; must
//! not judge the key (the daemon parses and fingerprints it).

use std::io::Read;

use anyhow::{Context as _, Result};
use paas_api::{AddKey, Method, SshKey, API_PREFIX};

use super::{seg, typed, Ctx};
use crate::args::UsageError;
use crate::cli::KeyAddArgs;
use crate::output;

/// `GET /keys`.
pub async fn list(ctx: &Ctx) -> Result<()> {
    let value = ctx.get(&format!("{API_PREFIX}/keys")).await?;
    if ctx.json {
        return output::json(&value);
    }
    let keys: Vec<SshKey> = typed(value)?;
    if keys.is_empty() {
        output::status("no keys; add one with `paas keys add NAME ~/.ssh/id_ed25519.pub`");
        return Ok(());
    }
    let rows: Vec<Vec<String>> = keys
        .iter()
        .map(|k| {
            vec![
                k.name.clone(),
                k.key_type.clone(),
                k.fingerprint.clone(),
                k.created_at.clone(),
            ]
        })
        .collect();
    output::out(&output::table(
        &["NAME", "TYPE", "FINGERPRINT", "ADDED"],
        &rows,
    ))
}

/// `POST /keys`.
pub async fn add(ctx: &Ctx, args: KeyAddArgs) -> Result<()> {
    let public_key = if args.file.as_os_str() == "-" {
        let mut s = String::new();
        std::io::stdin()
            .take(64 * 1024)
            .read_to_string(&mut s)
            .context("reading the public key from standard input")?;
        s
    } else {
        match std::fs::read(&args.file) {
            Ok(bytes) if bytes.len() > 64 * 1024 => {
                return Err(UsageError(format!(
                    "{} is too large to be a public key",
                    args.file.display()
                ))
                .into())
            }
            Ok(bytes) => String::from_utf8(bytes)
                .map_err(|_| UsageError(format!("{} is not a text file", args.file.display())))?,
            Err(e) => {
                return Err(UsageError(format!(
                    "cannot read the public key file {}: {e}",
                    args.file.display()
                ))
                .into())
            }
        }
    };
    let body = AddKey {
        name: args.name,
        public_key,
    };
    let value = ctx
        .request(Method::POST, &format!("{API_PREFIX}/keys"), Some(&body))
        .await?;
    if ctx.json {
        return output::json(&value);
    }
    let key: SshKey = typed(value)?;
    output::status(&format!(
        "Added key {} ({} {})",
        key.name, key.key_type, key.fingerprint
    ));
    Ok(())
}

/// `DELETE /keys/{name}`.
pub async fn remove(ctx: &Ctx, name: &str) -> Result<()> {
    ctx.call(
        Method::DELETE,
        &format!("{API_PREFIX}/keys/{}", seg(name, "key name")?),
    )
    .await?;
    output::status(&format!("Removed key {name}"));
    Ok(())
}
