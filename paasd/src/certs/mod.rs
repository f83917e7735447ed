//! Certificates for the router's HTTPS: the ones people add (`paas certs add`, checked
//! before anything is stored), ACME issuance ([`acme`]), each app's HTTPS choices (redirect,
//! HSTS) and publishing the whole set to the router. It hands the router certificates and
//! challenge answers; it never serves HTTP itself, and SQL stays in `store::certs`.
//!
//! A certificate is stored once per name it serves for the app (the app's default domain
//! and custom domains it covers), with its private key sealed like config vars.

pub mod acme;
pub mod renew;
pub mod x509;

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use paas_api as api;

use crate::routing::RouteSignal;
use crate::secrets::{SecretBox, SecretError};
use crate::store::{self, certs::CertRow, Store, StoreError, Tx};

#[derive(Debug, thiserror::Error)]
pub enum CertError {
    #[error("app '{0}' does not exist (see `paas apps`)")]
    AppNotFound(String),
    /// A certificate or key refused before anything was stored.
    #[error("{0}")]
    Invalid(String),
    #[error("app '{app}' has no certificate for '{domain}' (see `paas certs {app}`)")]
    NotFound { app: String, domain: String },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("a stored private key could not be opened: {0}")]
    Secret(#[from] SecretError),
}

/// Hands the router (its edge process) the whole set to serve.
pub type PublishCerts = Arc<dyn Fn(&paas_router::tls::Certs) + Send + Sync>;

/// The certificate service (cheap to clone).
#[derive(Clone)]
pub struct Certs {
    store: Store,
    secrets: SecretBox,
    router: PublishCerts,
    routes: RouteSignal,
    base_domain: String,
    /// Wakes the ACME pass (`renew`).
    wake: Arc<tokio::sync::Notify>,
    /// The stored certificates as last published, so that a TLS-ALPN-01 answer coming or
    /// going republishes without a database read.
    stored: Arc<std::sync::Mutex<paas_router::tls::Certs>>,
    /// TLS-ALPN-01 answers under way (set once ACME runs with that challenge).
    alpn: Arc<std::sync::OnceLock<acme::TlsAlpnCerts>>,
}

fn now_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

fn secs(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

fn key_context(domain: &str) -> String {
    format!("cert-key:{domain}")
}

fn rfc3339(secs: i64) -> String {
    chrono::DateTime::from_timestamp(secs, 0)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .unwrap_or_default()
}

impl Certs {
    pub fn new(
        store: Store,
        secrets: SecretBox,
        router: PublishCerts,
        routes: RouteSignal,
        base_domain: &str,
    ) -> Certs {
        Certs {
            store,
            secrets,
            router,
            routes,
            base_domain: base_domain.trim_matches('.').to_ascii_lowercase(),
            wake: Arc::default(),
            stored: Arc::default(),
            alpn: Arc::default(),
        }
    }

    /// `GET /apps/{app}/certs`.
    pub async fn list(&self, app: String) -> Result<api::CertList, CertError> {
        self.store
            .tx(move |tx| {
                let row = find(tx, &app)?;
                list(tx, row.id)
            })
            .await
    }

    /// `POST /apps/{app}/certs`: checks the chain, the key and the names, then serves the
    /// certificate for every name of the app it covers.
    pub async fn add(&self, app: String, body: api::AddCert) -> Result<api::CertList, CertError> {
        let leaf = checked(&body)?;
        let secrets = self.secrets.clone();
        let base = self.base_domain.clone();
        let list = self
            .store
            .tx(move |tx| {
                let row = find(tx, &app)?;
                let hosts = hosts_of(tx, &row, &base)?;
                let covered: Vec<&String> = hosts
                    .iter()
                    .filter(|h| leaf.names.iter().any(|n| x509::covers(n, h)))
                    .collect();
                if covered.is_empty() {
                    return Err(CertError::Invalid(format!(
                        "the certificate is for {} and covers none of app '{app}''s domains ({}); add the domain first (`paas domains add {app} DOMAIN`)",
                        leaf.names.join(", "),
                        hosts.join(", ")
                    )));
                }
                for host in covered {
                    let sealed = secrets.seal(&key_context(host), body.key_pem.as_bytes())?;
                    store::certs::put(tx, Some(row.id), &custom_row(host, &body, &leaf, sealed))?;
                }
                list(tx, row.id)
            })
            .await?;
        self.publish().await?;
        Ok(list)
    }

    /// `POST /apps/{app}/certs/renew`: the app's ACME certificates are issued again at the
    /// next pass, which this starts.
    pub async fn renew(&self, app: String) -> Result<api::CertList, CertError> {
        let list = self
            .store
            .tx(move |tx| {
                let row = find(tx, &app)?;
                if store::certs::ask_renewal(tx, row.id)? == 0 {
                    return Err(CertError::Invalid(format!(
                        "app '{app}' has no certificate from ACME to renew (custom ones are renewed by adding a new one)"
                    )));
                }
                list(tx, row.id)
            })
            .await?;
        self.kick();
        Ok(list)
    }

    /// `GET /certs`: the platform-wide certificates.
    pub async fn list_platform(&self) -> Result<Vec<api::CertInfo>, CertError> {
        self.store
            .tx(|tx| {
                Ok(store::certs::list_platform(tx)?
                    .into_iter()
                    .map(info)
                    .collect())
            })
            .await
    }

    /// `POST /certs`: a wildcard certificate for the base domain, served for every
    /// `APP.<base>` that has no certificate of its own (and sparing ACME those names).
    pub async fn add_platform(&self, body: api::AddCert) -> Result<Vec<api::CertInfo>, CertError> {
        let leaf = checked(&body)?;
        let wildcard = format!("*.{}", self.base_domain);
        if self.base_domain.is_empty() || !leaf.names.iter().any(|n| n == &wildcard) {
            return Err(CertError::Invalid(format!(
                "a platform certificate must cover {wildcard} (this one is for {}); certificates for single apps go with `paas certs add APP`",
                leaf.names.join(", ")
            )));
        }
        let sealed = self
            .secrets
            .seal(&key_context(&wildcard), body.key_pem.as_bytes())?;
        let row = custom_row(&wildcard, &body, &leaf, sealed);
        let list = self
            .store
            .tx(move |tx| {
                store::certs::put(tx, None, &row)?;
                Ok::<_, CertError>(
                    store::certs::list_platform(tx)?
                        .into_iter()
                        .map(info)
                        .collect(),
                )
            })
            .await?;
        self.publish().await?;
        Ok(list)
    }

    /// `DELETE /certs/{domain}`.
    pub async fn remove_platform(&self, domain: String) -> Result<(), CertError> {
        let domain = domain.trim_end_matches('.').to_ascii_lowercase();
        self.store
            .tx(move |tx| {
                if !store::certs::delete_platform(tx, &domain)? {
                    return Err(CertError::Invalid(format!(
                        "there is no platform certificate for '{domain}' (see `paas certs base`)"
                    )));
                }
                Ok(())
            })
            .await?;
        self.publish().await
    }

    /// `DELETE /apps/{app}/certs/{domain}`.
    pub async fn remove(&self, app: String, domain: String) -> Result<(), CertError> {
        let domain = domain.trim_end_matches('.').to_ascii_lowercase();
        self.store
            .tx(move |tx| {
                let row = find(tx, &app)?;
                if !store::certs::delete(tx, row.id, &domain)? {
                    return Err(CertError::NotFound { app, domain });
                }
                Ok(())
            })
            .await?;
        self.publish().await
    }

    /// `PATCH /apps/{app}/certs/settings`.
    pub async fn set_https(
        &self,
        app: String,
        patch: api::HttpsPatch,
    ) -> Result<api::HttpsSettings, CertError> {
        let settings = self
            .store
            .tx(move |tx| {
                let row = find(tx, &app)?;
                let now = https_of(tx, row.id)?;
                let next = api::HttpsSettings {
                    redirect: patch.redirect.unwrap_or(now.redirect),
                    hsts: patch.hsts.unwrap_or(now.hsts),
                };
                store::certs::set_https(tx, row.id, next.redirect, next.hsts)?;
                Ok::<_, CertError>(next)
            })
            .await?;
        self.routes.changed().await;
        Ok(settings)
    }

    /// Hands the router every stored certificate (at start and after each change). A row
    /// whose key cannot be opened or whose PEM no longer loads is skipped and logged: one
    /// bad row must not take HTTPS away from every other app.
    pub async fn publish(&self) -> Result<(), CertError> {
        let rows = self.store.tx(store::certs::all).await?;
        let mut certs = paas_router::tls::Certs::new();
        for row in rows {
            let (Some(chain), Some(sealed)) = (&row.chain_pem, &row.key_sealed) else {
                continue;
            };
            let key = match self.secrets.open(&key_context(&row.domain), sealed) {
                Ok(k) => k,
                Err(e) => {
                    tracing::error!(domain = %row.domain, error = %e, "cannot open a certificate key");
                    continue;
                }
            };
            match paas_router::tls::Certificate::from_pem(chain.as_bytes(), &key) {
                Ok(c) => certs.add(&row.domain, c),
                Err(e) => {
                    tracing::error!(domain = %row.domain, error = %e, "a stored certificate does not load")
                }
            }
        }
        *self.stored.lock().unwrap_or_else(|p| p.into_inner()) = certs;
        self.publish_with_challenges();
        Ok(())
    }

    /// The TLS-ALPN-01 answers, for ACME; each change republishes the router's set.
    pub fn tls_alpn_answers(&self) -> acme::TlsAlpnCerts {
        let certs = self.clone();
        self.alpn
            .get_or_init(|| {
                acme::TlsAlpnCerts::new(Arc::new(move || certs.publish_with_challenges()))
            })
            .clone()
    }

    /// The stored certificates plus the challenge certificates of validations under way.
    fn publish_with_challenges(&self) {
        let mut certs = self
            .stored
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        for (name, cert, key) in self.alpn.get().map(|a| a.all()).unwrap_or_default() {
            match paas_router::tls::Certificate::challenge_from_pem(cert.as_bytes(), key.as_bytes())
            {
                Ok(c) => certs.add_challenge(&name, c),
                Err(e) => {
                    tracing::error!(domain = %name, error = %e, "a TLS-ALPN-01 certificate does not load")
                }
            }
        }
        (self.router)(&certs);
    }
}

/// The row of an added certificate for `domain` (its key sealed already).
fn custom_row(domain: &str, body: &api::AddCert, leaf: &x509::Leaf, sealed: Vec<u8>) -> CertRow {
    CertRow {
        domain: domain.to_string(),
        app: None,
        source: "custom".into(),
        chain_pem: Some(body.cert_pem.clone()),
        key_sealed: Some(sealed),
        names: leaf.names.join(" "),
        issuer: Some(leaf.issuer.clone()),
        not_after: Some(secs(leaf.not_after)),
        last_error: None,
        retry_at: None,
        failures: 0,
        renew: false,
        updated_at: now_secs(),
    }
}

/// The checks every added certificate passes: a readable chain, each certificate signed by
/// the next, a key that signs for the leaf, and a leaf valid now.
fn checked(body: &api::AddCert) -> Result<x509::Leaf, CertError> {
    let leaf = x509::inspect(&body.cert_pem).map_err(|e| CertError::Invalid(e.to_string()))?;
    paas_router::tls::Certificate::from_pem(body.cert_pem.as_bytes(), body.key_pem.as_bytes())
        .map_err(|e| CertError::Invalid(e.to_string()))?;
    let now = SystemTime::now();
    if leaf.not_after <= now {
        return Err(CertError::Invalid(format!(
            "the certificate expired on {}; renew it with its issuer first",
            rfc3339(secs(leaf.not_after))
        )));
    }
    if leaf.not_before > now {
        return Err(CertError::Invalid(format!(
            "the certificate is not valid before {}",
            rfc3339(secs(leaf.not_before))
        )));
    }
    Ok(leaf)
}

fn find(tx: &Tx<'_>, name: &str) -> Result<store::apps::AppRow, CertError> {
    store::apps::find(tx, name)?.ok_or_else(|| CertError::AppNotFound(name.to_string()))
}

/// The names the app is served at: its default domain and its custom domains.
fn hosts_of(
    tx: &Tx<'_>,
    app: &store::apps::AppRow,
    base_domain: &str,
) -> Result<Vec<String>, StoreError> {
    let mut hosts = Vec::new();
    if !base_domain.is_empty() {
        hosts.push(format!("{}.{base_domain}", app.name));
    }
    hosts.extend(
        store::domains::list_for_app(tx, app.id)?
            .into_iter()
            .map(|d| d.domain),
    );
    Ok(hosts)
}

/// The app's HTTPS choices, with the defaults where it made none.
pub fn https_of(tx: &Tx<'_>, app_id: i64) -> Result<api::HttpsSettings, StoreError> {
    let (redirect, hsts) = store::certs::https(tx, app_id)?.unwrap_or((true, false));
    Ok(api::HttpsSettings { redirect, hsts })
}

fn info(r: CertRow) -> api::CertInfo {
    api::CertInfo {
        source: match r.source.as_str() {
            "acme" => api::CertSource::Acme,
            _ => api::CertSource::Custom,
        },
        issuer: r.issuer,
        not_after: r.not_after.map(rfc3339),
        names: r.names.split_whitespace().map(str::to_string).collect(),
        last_error: r.last_error,
        domain: r.domain,
    }
}

/// The app's own rows, then a platform wildcard that serves one of its names.
fn list(tx: &Tx<'_>, app_id: i64) -> Result<api::CertList, CertError> {
    let own = store::certs::list_for_app(tx, app_id)?;
    let app = store::apps::list(tx)?.into_iter().find(|a| a.id == app_id);
    let platform: Vec<CertRow> = store::certs::list_platform(tx)?
        .into_iter()
        .filter(|p| {
            app.as_ref().is_some_and(|a| {
                let host = |d: &str| x509::covers(&p.domain, d);
                host(&format!("{}.{}", a.name, p.domain.trim_start_matches("*.")))
                    && !own.iter().any(|o| host(&o.domain))
            })
        })
        .collect();
    Ok(api::CertList {
        certs: own.into_iter().chain(platform).map(info).collect(),
        https: https_of(tx, app_id)?,
    })
}
