//! `paas domains ...`: an app's domains (`/apps/{app}/domains`). Must not judge domain
//! syntax (the daemon does).

use anyhow::Result;
use paas_api::{AddDomain, Domain, Method};

use super::{app_path, seg, typed, Ctx};
use crate::cli::DomainArgs;
use crate::output;

/// `GET /apps/{app}/domains`.
pub async fn list(ctx: &Ctx, name: &str) -> Result<()> {
    let value = ctx.get(&app_path(name, "/domains")?).await?;
    if ctx.json {
        return output::json(&value);
    }
    let domains: Vec<Domain> = typed(value)?;
    if domains.is_empty() {
        output::status("no domains");
        return Ok(());
    }
    let mut text = String::new();
    for d in &domains {
        text.push_str(&d.domain);
        text.push('\n');
    }
    output::out(&text)
}

/// `POST /apps/{app}/domains`.
pub async fn add(ctx: &Ctx, args: DomainArgs) -> Result<()> {
    let body = AddDomain {
        domain: args.domain,
    };
    let value = ctx
        .request(
            Method::POST,
            &app_path(&args.name, "/domains")?,
            Some(&body),
        )
        .await?;
    output::status(&format!("Adding {} to {}... done", body.domain, args.name));
    if ctx.json {
        output::json(&value)?;
    }
    Ok(())
}

/// `DELETE /apps/{app}/domains/{domain}`.
pub async fn remove(ctx: &Ctx, args: DomainArgs) -> Result<()> {
    let rest = format!("/domains/{}", seg(&args.domain, "domain")?);
    ctx.call(Method::DELETE, &app_path(&args.name, &rest)?)
        .await?;
    output::status(&format!(
        "Removing {} from {}... done",
        args.domain, args.name
    ));
    Ok(())
}
