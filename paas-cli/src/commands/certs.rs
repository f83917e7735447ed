//! `paas certs ...`: an app's HTTPS certificates and choices (`/apps/{app}/certs`). Reads
//! the PEM files it is given and prints what the daemon answers; must not judge
//! certificates (the daemon checks chain, key, names and dates).

use anyhow::{Context, Result};
use paas_api::{
    AddCert, CertInfo, CertList, CertSource, HttpsPatch, HttpsSettings, Method, API_PREFIX,
};

use super::{app_path, seg, typed, Ctx};
use crate::cli::{CertAddArgs, CertFiles, DomainArgs};
use crate::output;

fn on_off(b: bool) -> &'static str {
    if b {
        "on"
    } else {
        "off"
    }
}

fn lines(certs: &[CertInfo]) -> String {
    let mut text = String::new();
    if certs.is_empty() {
        text.push_str("no certificates\n");
    }
    for c in certs {
        let source = match c.source {
            CertSource::Custom => "custom",
            CertSource::Acme => "acme",
        };
        text.push_str(&format!(
            "{}  {source}  issuer: {}  expires: {}",
            c.domain,
            c.issuer.as_deref().unwrap_or("-"),
            c.not_after.as_deref().unwrap_or("-"),
        ));
        if let Some(e) = &c.last_error {
            text.push_str(&format!("  last error: {e}"));
        }
        text.push('\n');
    }
    text
}

fn read_pair(cert: &std::path::Path, key: &std::path::Path) -> Result<AddCert> {
    let read = |p: &std::path::Path| {
        std::fs::read_to_string(p).with_context(|| format!("cannot read {}", p.display()))
    };
    Ok(AddCert {
        cert_pem: read(cert)?,
        key_pem: read(key)?,
    })
}

fn print(list: &CertList) -> Result<()> {
    let mut text = lines(&list.certs);
    text.push_str(&format!(
        "redirect to https: {}  hsts: {}\n",
        on_off(list.https.redirect),
        on_off(list.https.hsts)
    ));
    output::out(&text)
}

/// `GET /apps/{app}/certs`.
pub async fn list(ctx: &Ctx, name: &str) -> Result<()> {
    let value = ctx.get(&app_path(name, "/certs")?).await?;
    if ctx.json {
        return output::json(&value);
    }
    print(&typed(value)?)
}

/// `POST /apps/{app}/certs`.
pub async fn add(ctx: &Ctx, args: CertAddArgs) -> Result<()> {
    let body = read_pair(&args.cert, &args.key)?;
    let value = ctx
        .request(Method::POST, &app_path(&args.name, "/certs")?, Some(&body))
        .await?;
    if ctx.json {
        return output::json(&value);
    }
    output::status(&format!("Adding a certificate to {}... done", args.name));
    print(&typed(value)?)
}

/// `GET /certs`.
pub async fn list_base(ctx: &Ctx) -> Result<()> {
    let value = ctx.get(&format!("{API_PREFIX}/certs")).await?;
    if ctx.json {
        return output::json(&value);
    }
    let certs: Vec<CertInfo> = typed(value)?;
    output::out(&lines(&certs))
}

/// `POST /certs`.
pub async fn add_base(ctx: &Ctx, args: CertFiles) -> Result<()> {
    let body = read_pair(&args.cert, &args.key)?;
    let value = ctx
        .request(Method::POST, &format!("{API_PREFIX}/certs"), Some(&body))
        .await?;
    if ctx.json {
        return output::json(&value);
    }
    output::status("Adding a platform certificate... done");
    let certs: Vec<CertInfo> = typed(value)?;
    output::out(&lines(&certs))
}

/// `DELETE /certs/{domain}`.
pub async fn remove_base(ctx: &Ctx, domain: &str) -> Result<()> {
    ctx.call(
        Method::DELETE,
        &format!("{API_PREFIX}/certs/{}", seg(domain, "domain")?),
    )
    .await?;
    output::status(&format!(
        "Removing the platform certificate {domain}... done"
    ));
    Ok(())
}

/// `POST /apps/{app}/certs/renew`.
pub async fn renew(ctx: &Ctx, name: &str) -> Result<()> {
    let value = ctx
        .request(Method::POST, &app_path(name, "/certs/renew")?, None::<&()>)
        .await?;
    if ctx.json {
        return output::json(&value);
    }
    output::status(&format!(
        "Renewing {name}'s certificates... asked (paas certs {name} shows the new expiry)"
    ));
    Ok(())
}

/// `DELETE /apps/{app}/certs/{domain}`.
pub async fn remove(ctx: &Ctx, args: DomainArgs) -> Result<()> {
    let rest = format!("/certs/{}", seg(&args.domain, "domain")?);
    ctx.call(Method::DELETE, &app_path(&args.name, &rest)?)
        .await?;
    output::status(&format!(
        "Removing the certificate of {} from {}... done",
        args.domain, args.name
    ));
    Ok(())
}

/// `PATCH /apps/{app}/certs/settings`.
pub async fn settings(
    ctx: &Ctx,
    name: &str,
    redirect: Option<bool>,
    hsts: Option<bool>,
) -> Result<()> {
    let body = HttpsPatch { redirect, hsts };
    let value = ctx
        .request(
            Method::PATCH,
            &app_path(name, "/certs/settings")?,
            Some(&body),
        )
        .await?;
    if ctx.json {
        return output::json(&value);
    }
    let s: HttpsSettings = typed(value)?;
    output::status(&format!(
        "{name}: redirect to https {}, hsts {}",
        on_off(s.redirect),
        on_off(s.hsts)
    ));
    Ok(())
}
