//! `paas stacks ...`: the stacks apps can run on (`GET /stacks`) and importing a root
//! filesystem tarball as a new one (`PUT /stacks/{name}`, streamed). Must not unpack or check
//! the tarball beyond its gzip magic: paasd does, and its message reaches the user.

use anyhow::Result;
use paas_api::client::segment;
use paas_api::{Method, StackImported, StackList, API_PREFIX};

use super::{typed, Ctx};
use crate::args::UsageError;
use crate::cli::StackImportArgs;
use crate::output;
use crate::source::Source;

/// `GET /stacks`, one name per line.
pub async fn list(ctx: &Ctx) -> Result<()> {
    let value = ctx.get(&format!("{API_PREFIX}/stacks")).await?;
    if ctx.json {
        return output::json(&value);
    }
    let list: StackList = typed(value)?;
    for name in &list.stacks {
        output::line(name)?;
    }
    Ok(())
}

/// Streams the tarball to `PUT /stacks/{name}`.
pub async fn import(ctx: &Ctx, args: StackImportArgs) -> Result<()> {
    let source = Source::open(&args.tarball, &mut |w| output::status(&w))?;
    if matches!(source, Source::Dir { .. }) {
        return Err(UsageError(format!(
            "'{}' is a directory; give a gzipped tarball of a root filesystem (e.g. `tar czf rootfs.tgz -C DIR .`)",
            args.tarball.display()
        ))
        .into());
    }
    output::status(&format!("-----> Uploading {}", args.tarball.display()));
    let path = format!("{API_PREFIX}/stacks/{}", segment(&args.name));
    let imported: StackImported = ctx.upload(Method::PUT, &path, source).await?;
    if ctx.json {
        return output::json(&serde_json::to_value(&imported)?);
    }
    output::line(&format!(
        "Imported stack {} ({} files, {})",
        imported.name,
        imported.files,
        output::bytes(imported.bytes)
    ))
}
