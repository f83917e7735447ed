//! ACME (RFC 8555) issuance over HTTP-01, on the `instant-acme` crate: account (created or
//! restored), order, one HTTP-01 challenge per name, validation polling with a bounded wait,
//! finalization with a fresh ECDSA P-256 key, and the chain. It owns the conversation with
//! the ACME server and the challenge answers in [`Http01Tokens`] while an issuance runs
//! (removed again when it ends, however it ends).
//!
//! Must not: store anything (the caller keeps [`Issued`], account credentials included, and
//! seals what is secret), serve HTTP (the router answers `/.well-known/acme-challenge/` from
//! [`Http01Tokens`]), or decide when to issue or renew.

use std::collections::HashMap;
use std::error::Error as _;
use std::future::Future;
use std::pin::Pin;
use std::str::FromStr;
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use hyper::header::RETRY_AFTER;
use hyper::{Request, StatusCode};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::rt::TokioExecutor;
use instant_acme::{
    Account, AccountCredentials, AuthorizationStatus, BodyWrapper, BytesResponse, ChallengeType,
    Error as LibError, HttpClient, Identifier, NewAccount, NewOrder, Order, OrderStatus, Problem,
    RetryPolicy,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;

/// How long one request to the ACME server may take (connect, TLS, answer).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// The first poll of an order comes this long after the challenges are ready, each next one
/// half again as long after the previous (0.25 s, 0.4 s, 0.6 s, ... 9.6 s, 14 s).
const FIRST_POLL: Duration = Duration::from_millis(250);
const POLL_BACKOFF: f32 = 1.5;

/// The HTTP-01 answers of the issuances under way: token → key authorization. Cheap to clone;
/// clones share the map. The router answers `GET /.well-known/acme-challenge/{token}` on port
/// 80 with [`Http01Tokens::get`]; only [`issue`] adds and removes entries.
#[derive(Clone, Debug, Default)]
pub struct Http01Tokens {
    inner: Arc<RwLock<HashMap<String, String>>>,
    changed: Arc<RwLock<Option<TokensChanged>>>,
}

/// Called with the whole map after each change (paasd hands it to its edge process).
#[derive(Clone)]
pub struct TokensChanged(pub Arc<TokensFn>);

/// What [`TokensChanged`] calls.
pub type TokensFn = dyn Fn(&HashMap<String, String>) + Send + Sync;

impl std::fmt::Debug for TokensChanged {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokensChanged")
    }
}

impl Http01Tokens {
    pub fn new() -> Http01Tokens {
        Http01Tokens::default()
    }

    /// The key authorization to answer for `token`, if an issuance published it.
    pub fn get(&self, token: &str) -> Option<String> {
        self.read().get(token).cloned()
    }

    pub fn is_empty(&self) -> bool {
        self.read().is_empty()
    }

    pub fn len(&self) -> usize {
        self.read().len()
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<String, String>> {
        // A panic elsewhere while holding the lock leaves a map that is still consistent.
        self.inner.read().unwrap_or_else(PoisonError::into_inner)
    }

    /// `f` gets the whole map after every change from now on.
    pub fn on_change(&self, f: TokensChanged) {
        *self.changed.write().unwrap_or_else(PoisonError::into_inner) = Some(f);
    }

    fn insert(&self, token: String, key_authorization: String) {
        self.change(|m| {
            m.insert(token, key_authorization);
        });
    }

    fn remove(&self, token: &str) {
        self.change(|m| {
            m.remove(token);
        });
    }

    fn change(&self, edit: impl FnOnce(&mut HashMap<String, String>)) {
        let mut map = self.inner.write().unwrap_or_else(PoisonError::into_inner);
        edit(&mut map);
        let changed = self
            .changed
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        if let Some(f) = changed {
            // Under the write lock: two changes reach `f` in the order they were made.
            (f.0)(&map);
        }
    }
}

/// The TLS-ALPN-01 answers of the issuances under way: name → self-signed certificate and
/// key (PEM) with the acmeIdentifier extension, served to a client that offers ALPN
/// `acme-tls/1`. `changed` is called after every change (the certificate service then
/// republishes the router's certificates). Cheap to clone; clones share the map.
#[derive(Clone)]
pub struct TlsAlpnCerts {
    inner: Arc<RwLock<HashMap<String, (String, String)>>>,
    changed: Arc<dyn Fn() + Send + Sync>,
}

impl std::fmt::Debug for TlsAlpnCerts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsAlpnCerts")
            .field("names", &self.names())
            .finish()
    }
}

impl TlsAlpnCerts {
    pub fn new(changed: Arc<dyn Fn() + Send + Sync>) -> TlsAlpnCerts {
        TlsAlpnCerts {
            inner: Arc::default(),
            changed,
        }
    }

    /// Every (name, certificate PEM, key PEM) being answered for now.
    pub fn all(&self) -> Vec<(String, String, String)> {
        self.inner
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .map(|(n, (c, k))| (n.clone(), c.clone(), k.clone()))
            .collect()
    }

    fn names(&self) -> Vec<String> {
        self.all().into_iter().map(|(n, _, _)| n).collect()
    }

    fn insert(&self, name: &str, cert: String, key: String) {
        self.inner
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(name.to_string(), (cert, key));
        (self.changed)();
    }

    fn remove(&self, name: &str) {
        self.inner
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(name);
        (self.changed)();
    }
}

/// The challenge certificate of RFC 8737: self-signed for `name`, with the SHA-256 digest of
/// the key authorization in a critical acmeIdentifier extension.
fn tls_alpn_certificate(name: &str, digest: &[u8]) -> Result<(String, String), String> {
    let key = rcgen::KeyPair::generate().map_err(|e| e.to_string())?;
    let mut params =
        rcgen::CertificateParams::new(vec![name.to_string()]).map_err(|e| e.to_string())?;
    params.custom_extensions = vec![rcgen::CustomExtension::new_acme_identifier(digest)];
    let cert = params.self_signed(&key).map_err(|e| e.to_string())?;
    Ok((cert.pem(), key.serialize_pem()))
}

/// The TLS-ALPN-01 certificates one issuance published; removed on drop.
struct PublishedAlpn<'a> {
    certs: Option<&'a TlsAlpnCerts>,
    names: Vec<String>,
}

impl Drop for PublishedAlpn<'_> {
    fn drop(&mut self) {
        if let Some(certs) = self.certs {
            for name in &self.names {
                certs.remove(name);
            }
        }
    }
}

/// The tokens one issuance published; removed from the map on drop, so also on an error or
/// when the issuing future is dropped.
struct Published<'a> {
    tokens: &'a Http01Tokens,
    published: Vec<String>,
}

impl<'a> Published<'a> {
    fn new(tokens: &'a Http01Tokens) -> Published<'a> {
        Published {
            tokens,
            published: Vec::new(),
        }
    }

    fn add(&mut self, token: &str, key_authorization: &str) {
        self.tokens
            .insert(token.to_string(), key_authorization.to_string());
        self.published.push(token.to_string());
    }
}

impl Drop for Published<'_> {
    fn drop(&mut self) {
        for token in &self.published {
            self.tokens.remove(token);
        }
    }
}

/// Where and as whom to ask for certificates.
#[derive(Clone, Debug)]
pub struct AcmeSettings {
    /// The ACME directory, e.g. Let's Encrypt's `https://acme-v02.api.letsencrypt.org/directory`.
    pub directory_url: String,
    /// Registered as `mailto:` contact with a new account (expiry notices).
    pub contact_email: Option<String>,
    /// PEM certificates trusted for the ACME server's own HTTPS besides the host's CA store
    /// (pebble's test CA).
    pub extra_root_pem: Option<Vec<u8>>,
    /// How long the server may take to validate the challenges, and then to issue.
    pub validation_timeout: Duration,
    /// With these, challenges are answered by TLS-ALPN-01 on the HTTPS port instead of
    /// HTTP-01 on port 80 (a host whose port 80 is closed).
    pub tls_alpn: Option<TlsAlpnCerts>,
    /// Resolves once the router serves what was published so far (an HTTP-01 token, a
    /// TLS-ALPN-01 certificate): the router lives in another process (the edge), and the
    /// server must not be told to validate before it can. `None`: publishing is immediate.
    pub served: Option<Served>,
}

/// See [`AcmeSettings::served`].
#[derive(Clone)]
pub struct Served(
    pub  Arc<
        dyn Fn() -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>> + Send + Sync,
    >,
);

impl std::fmt::Debug for Served {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Served")
    }
}

impl AcmeSettings {
    /// `directory_url`, no contact, the host's CAs only, a 60 s validation bound.
    pub fn new(directory_url: impl Into<String>) -> AcmeSettings {
        AcmeSettings {
            directory_url: directory_url.into(),
            contact_email: None,
            extra_root_pem: None,
            validation_timeout: Duration::from_secs(60),
            tls_alpn: None,
            served: None,
        }
    }
}

/// An issued certificate and the account that got it.
#[derive(Clone)]
pub struct Issued {
    /// Leaf first, then the intermediates, as the server sent them.
    pub cert_chain_pem: String,
    /// The certificate's ECDSA P-256 key, PKCS#8 PEM. Secret.
    pub key_pem: String,
    /// The leaf's notAfter.
    pub not_after: SystemTime,
    /// The account's credentials (JSON with its private key: secret) to pass to the next
    /// [`issue`]: the stored ones unchanged, or a new account's.
    pub account: String,
}

impl std::fmt::Debug for Issued {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Issued")
            .field("cert_chain_pem", &self.cert_chain_pem)
            .field("key_pem", &"[REDACTED]")
            .field("not_after", &self.not_after)
            .field("account", &"[REDACTED]")
            .finish()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AcmeError {
    #[error("no domain to ask a certificate for")]
    NoDomains,
    #[error("the ACME server at {url} is unreachable: {reason}")]
    Unreachable { url: String, reason: String },
    #[error("the challenge for {domain} failed: {detail}")]
    ChallengeFailed { domain: String, detail: String },
    #[error("rate limited by the ACME server at {url}; retry {}: {detail}", retry_text(*.retry_after))]
    RateLimited {
        url: String,
        detail: String,
        /// From the answer's `Retry-After` header, when it had one.
        retry_after: Option<SystemTime>,
    },
    #[error("the ACME server at {url} offers no {kind} challenge for {domain} ([acme] challenge picks HTTP-01 or TLS-ALPN-01)")]
    NoHttp01 {
        url: String,
        domain: String,
        kind: &'static str,
    },
    #[error("the ACME server at {url} holds the authorization for {domain} as {status}; it cannot be validated again")]
    Authorization {
        url: String,
        domain: String,
        status: String,
    },
    #[error("the ACME server at {url} did not {what} within {} s", .timeout.as_secs())]
    Timeout {
        url: String,
        what: String,
        timeout: Duration,
    },
    #[error("the ACME server at {url} refused to {step}: {problem}")]
    Refused {
        url: String,
        step: &'static str,
        problem: String,
    },
    #[error("unexpected answer from the ACME server at {url} while trying to {step}: {reason}")]
    Protocol {
        url: String,
        step: &'static str,
        reason: String,
    },
    #[error(
        "the stored ACME account cannot be read ({reason}); delete it to register a new account"
    )]
    BadAccount { reason: String },
    #[error("the extra root certificate for the ACME server is not usable: {reason}")]
    BadExtraRoot { reason: String },
    #[error("cannot set up TLS for the ACME server at {url}: {reason}")]
    Tls { url: String, reason: String },
    #[error("the certificate from the ACME server at {url} cannot be read: {reason}")]
    BadCertificate { url: String, reason: String },
}

fn retry_text(at: Option<SystemTime>) -> String {
    match at {
        None => "later".to_string(),
        Some(at) => {
            let wait = at
                .duration_since(SystemTime::now())
                .unwrap_or(Duration::ZERO);
            format!(
                "after {} (in {} s)",
                humantime::format_rfc3339_seconds(at),
                wait.as_secs()
            )
        }
    }
}

/// Gets one certificate for `domains` (the first is the subject; all are SANs) from the ACME
/// server of `settings`, answering HTTP-01 through `tokens`. `account` is the credentials
/// JSON an earlier [`Issued::account`] returned; without it (or when it belongs to another
/// directory, or the server no longer knows it) a new account is registered.
pub async fn issue(
    settings: &AcmeSettings,
    account: Option<&str>,
    domains: &[String],
    tokens: &Http01Tokens,
) -> Result<Issued, AcmeError> {
    if domains.is_empty() {
        return Err(AcmeError::NoDomains);
    }
    let names = domains.join(", ");
    let http = Http::new(settings)?;
    let identifiers: Vec<Identifier> = domains.iter().cloned().map(Identifier::Dns).collect();
    let new_order = NewOrder::new(&identifiers);

    let stored = account.filter(|json| stored_for(json, &settings.directory_url));
    let (mut order, account) = match stored {
        Some(json) => {
            let acct = restore_account(&http, json).await?;
            match acct.new_order(&new_order).await {
                Ok(order) => (order, json.to_string()),
                Err(LibError::Api(p)) if is(&p, "accountDoesNotExist") => {
                    tracing::info!(
                        "ACME: {} no longer knows the stored account; registering a new one",
                        settings.directory_url
                    );
                    order_with_new_account(&http, settings, &new_order).await?
                }
                Err(e) => return Err(http.error(e, "place an order")),
            }
        }
        None => order_with_new_account(&http, settings, &new_order).await?,
    };

    let mut published = Published::new(tokens);
    let mut published_alpn = PublishedAlpn {
        certs: settings.tls_alpn.as_ref(),
        names: Vec::new(),
    };
    let mut authorizations = order.authorizations();
    while let Some(next) = authorizations.next().await {
        let mut authz = next.map_err(|e| http.error(e, "fetch an authorization"))?;
        let domain = authz.identifier().to_string();
        match authz.status {
            AuthorizationStatus::Pending => {}
            AuthorizationStatus::Valid => continue,
            status => {
                return Err(AcmeError::Authorization {
                    url: http.url.clone(),
                    domain,
                    status: format!("{status:?}").to_lowercase(),
                })
            }
        }
        let kind = match settings.tls_alpn {
            Some(_) => ChallengeType::TlsAlpn01,
            None => ChallengeType::Http01,
        };
        let mut challenge = authz
            .challenge(kind.clone())
            .ok_or_else(|| AcmeError::NoHttp01 {
                url: http.url.clone(),
                domain: domain.clone(),
                kind: match settings.tls_alpn {
                    Some(_) => "TLS-ALPN-01",
                    None => "HTTP-01",
                },
            })?;
        match (&settings.tls_alpn, kind) {
            (Some(certs), ChallengeType::TlsAlpn01) => {
                let digest = challenge.key_authorization().digest();
                let (cert, key) =
                    tls_alpn_certificate(&domain, digest.as_ref()).map_err(|reason| {
                        AcmeError::BadCertificate {
                            url: http.url.clone(),
                            reason: format!("cannot make the TLS-ALPN-01 certificate: {reason}"),
                        }
                    })?;
                certs.insert(&domain, cert, key);
                published_alpn.names.push(domain.clone());
            }
            _ => published.add(&challenge.token, challenge.key_authorization().as_str()),
        }
        if let Some(served) = &settings.served {
            (served.0)().await;
        }
        challenge.set_ready().await.map_err(|e| match e {
            LibError::Api(p) if !is(&p, "rateLimited") => AcmeError::ChallengeFailed {
                domain: domain.clone(),
                detail: describe(&p),
            },
            e => http.error(e, "start a challenge"),
        })?;
    }

    let policy = RetryPolicy::new()
        .initial_delay(FIRST_POLL)
        .backoff(POLL_BACKOFF)
        .timeout(settings.validation_timeout);
    let failure = match order.poll_ready(&policy).await {
        Ok(OrderStatus::Ready) => None,
        Ok(status) => Some(AcmeError::Refused {
            url: http.url.clone(),
            step: "validate the order",
            problem: format!("the order is {status:?}").to_lowercase(),
        }),
        Err(LibError::Timeout(_)) => {
            return Err(AcmeError::Timeout {
                url: http.url.clone(),
                what: format!("validate {names} (is port 80 of this host reachable for them?)"),
                timeout: settings.validation_timeout,
            })
        }
        Err(LibError::Api(p)) if !is(&p, "rateLimited") => Some(AcmeError::Refused {
            url: http.url.clone(),
            step: "validate the order",
            problem: describe(&p),
        }),
        Err(e) => return Err(http.error(e, "poll the order")),
    };
    if let Some(fallback) = failure {
        // The challenge's own problem says what went wrong; the order's is generic.
        return Err(failed_challenge(&mut order).await.unwrap_or(fallback));
    }
    drop(published);
    drop(published_alpn);

    let key_pem = order
        .finalize()
        .await
        .map_err(|e| http.error(e, "finalize the order"))?;
    let cert_chain_pem = match order.poll_certificate(&policy).await {
        Ok(chain) => chain,
        Err(LibError::Timeout(_)) => {
            return Err(AcmeError::Timeout {
                url: http.url.clone(),
                what: format!("issue the certificate for {names}"),
                timeout: settings.validation_timeout,
            })
        }
        Err(e) => return Err(http.error(e, "download the certificate")),
    };
    let not_after =
        leaf_not_after(&cert_chain_pem).map_err(|reason| AcmeError::BadCertificate {
            url: http.url.clone(),
            reason,
        })?;
    tracing::info!(
        "ACME: certificate for {names} issued, valid until {}",
        humantime::format_rfc3339_seconds(not_after)
    );
    Ok(Issued {
        cert_chain_pem,
        key_pem,
        not_after,
        account,
    })
}

/// Whether the stored credentials belong to `directory_url` (credentials of an older
/// instant-acme without the field are taken as belonging).
fn stored_for(json: &str, directory_url: &str) -> bool {
    match serde_json::from_str::<serde_json::Value>(json) {
        Ok(value) => match value.get("directory").and_then(|d| d.as_str()) {
            Some(directory) if directory != directory_url => {
                tracing::info!(
                    "ACME: the stored account belongs to {directory}, not {directory_url}; \
                     registering a new one"
                );
                false
            }
            _ => true,
        },
        // Let restore_account name the problem.
        Err(_) => true,
    }
}

async fn restore_account(http: &Http, json: &str) -> Result<Account, AcmeError> {
    let credentials: AccountCredentials =
        serde_json::from_str(json).map_err(|e| AcmeError::BadAccount {
            reason: e.to_string(),
        })?;
    Account::builder_with_http(Box::new(http.clone()))
        .from_credentials(credentials)
        .await
        .map_err(|e| match e {
            LibError::KeyRejected | LibError::Crypto => AcmeError::BadAccount {
                reason: e.to_string(),
            },
            e => http.error(e, "read the directory"),
        })
}

/// Registers a new account and places `new_order` with it: the order and the account's
/// credentials to store.
async fn order_with_new_account(
    http: &Http,
    settings: &AcmeSettings,
    new_order: &NewOrder<'_>,
) -> Result<(Order, String), AcmeError> {
    let (acct, json) = create_account(http, settings).await?;
    let order = acct
        .new_order(new_order)
        .await
        .map_err(|e| http.error(e, "place an order"))?;
    Ok((order, json))
}

async fn create_account(
    http: &Http,
    settings: &AcmeSettings,
) -> Result<(Account, String), AcmeError> {
    let contact = settings
        .contact_email
        .as_ref()
        .map(|email| format!("mailto:{email}"));
    let contacts: Vec<&str> = contact.iter().map(String::as_str).collect();
    let (account, credentials) = Account::builder_with_http(Box::new(http.clone()))
        .create(
            &NewAccount {
                contact: &contacts,
                terms_of_service_agreed: true,
                only_return_existing: false,
            },
            settings.directory_url.clone(),
            None,
        )
        .await
        .map_err(|e| http.error(e, "register an account"))?;
    let json = serde_json::to_string(&credentials).map_err(|e| AcmeError::Protocol {
        url: http.url.clone(),
        step: "register an account",
        reason: format!("the credentials cannot be serialized: {e}"),
    })?;
    tracing::info!(
        "ACME: registered account {} at {}",
        account.id(),
        settings.directory_url
    );
    Ok((account, json))
}

/// The first failed challenge of an invalid order, with the server's problem detail.
async fn failed_challenge(order: &mut Order) -> Option<AcmeError> {
    let mut authorizations = order.authorizations();
    while let Some(next) = authorizations.next().await {
        let Ok(mut authz) = next else { continue };
        if authz.refresh().await.is_err() || authz.status == AuthorizationStatus::Valid {
            continue;
        }
        let domain = authz.identifier().to_string();
        if let Some(problem) = authz.challenges.iter().find_map(|c| c.error.as_ref()) {
            return Some(AcmeError::ChallengeFailed {
                domain,
                detail: describe(problem),
            });
        }
    }
    None
}

/// Whether `problem` is `urn:ietf:params:acme:error:{kind}`.
fn is(problem: &Problem, kind: &str) -> bool {
    problem
        .r#type
        .as_deref()
        .and_then(|t| t.strip_prefix("urn:ietf:params:acme:error:"))
        == Some(kind)
}

/// A problem document as a person reads it: the detail, the type's short name, and the
/// subproblems per identifier.
fn describe(problem: &Problem) -> String {
    let kind = problem
        .r#type
        .as_deref()
        .map(|t| t.strip_prefix("urn:ietf:params:acme:error:").unwrap_or(t));
    let mut text = match (problem.detail.as_deref(), kind) {
        (Some(detail), Some(kind)) => format!("{detail} ({kind})"),
        (Some(detail), None) => detail.to_string(),
        (None, Some(kind)) => kind.to_string(),
        (None, None) => "no detail given".to_string(),
    };
    for sub in &problem.subproblems {
        text.push_str(&format!("; {sub}"));
    }
    text
}

/// The leaf's (the first certificate's) notAfter.
fn leaf_not_after(chain_pem: &str) -> Result<SystemTime, String> {
    let (_, pem) = x509_parser::pem::parse_x509_pem(chain_pem.as_bytes())
        .map_err(|e| format!("no PEM block: {e}"))?;
    if pem.label != "CERTIFICATE" {
        return Err(format!("the first PEM block is a {}", pem.label));
    }
    let cert = pem
        .parse_x509()
        .map_err(|e| format!("not an X.509 certificate: {e}"))?;
    let secs = u64::try_from(cert.validity().not_after.timestamp())
        .map_err(|_| "its notAfter is before 1970".to_string())?;
    Ok(UNIX_EPOCH + Duration::from_secs(secs))
}

/// instant-acme's HTTP client: rustls (aws-lc-rs) over hyper with the host's CAs plus the extra
/// root, bounded connect and request times, transport errors kept apart from the server's
/// answers, and the `Retry-After` of the last refusal kept for the rate-limit message.
#[derive(Clone)]
struct Http {
    client: HyperClient<HttpsConnector<HttpConnector>, BodyWrapper<Bytes>>,
    url: String,
    retry_after: Arc<Mutex<Option<SystemTime>>>,
}

/// A request that never got an answer (connect, TLS, timeout).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct Transport(String);

impl Http {
    fn new(settings: &AcmeSettings) -> Result<Http, AcmeError> {
        let url = settings.directory_url.clone();
        let tls = |reason: String| AcmeError::Tls {
            url: url.clone(),
            reason,
        };
        let mut extra = Vec::new();
        if let Some(pem) = &settings.extra_root_pem {
            for cert in CertificateDer::pem_slice_iter(pem) {
                extra.push(cert.map_err(|e| AcmeError::BadExtraRoot {
                    reason: e.to_string(),
                })?);
            }
            if extra.is_empty() {
                return Err(AcmeError::BadExtraRoot {
                    reason: "no PEM certificate in it".to_string(),
                });
            }
        }
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let verifier =
            rustls_platform_verifier::Verifier::new_with_extra_roots(extra, provider.clone())
                .map_err(|e| tls(e.to_string()))?;
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| tls(e.to_string()))?
            .dangerous() // not dangerous: the platform verifier does full WebPKI checks
            .with_custom_certificate_verifier(Arc::new(verifier))
            .with_no_client_auth();
        let mut tcp = HttpConnector::new();
        tcp.enforce_http(false);
        tcp.set_connect_timeout(Some(CONNECT_TIMEOUT));
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(config)
            .https_only()
            .enable_http1()
            .wrap_connector(tcp);
        Ok(Http {
            client: HyperClient::builder(TokioExecutor::new()).build(connector),
            url,
            retry_after: Arc::default(),
        })
    }

    /// What an instant-acme error means to a person, for `step` ("place an order").
    fn error(&self, e: LibError, step: &'static str) -> AcmeError {
        let url = self.url.clone();
        match e {
            LibError::Api(p) if is(&p, "rateLimited") => AcmeError::RateLimited {
                url,
                detail: describe(&p),
                retry_after: *self
                    .retry_after
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner),
            },
            LibError::Api(p) => AcmeError::Refused {
                url,
                step,
                problem: describe(&p),
            },
            LibError::Other(inner) if inner.is::<Transport>() => AcmeError::Unreachable {
                url,
                reason: inner.to_string(),
            },
            LibError::Timeout(_) => AcmeError::Timeout {
                url,
                what: step.to_string(),
                timeout: REQUEST_TIMEOUT,
            },
            e => AcmeError::Protocol {
                url,
                step,
                reason: e.to_string(),
            },
        }
    }
}

impl HttpClient for Http {
    fn request(
        &self,
        req: Request<BodyWrapper<Bytes>>,
    ) -> Pin<Box<dyn Future<Output = Result<BytesResponse, LibError>> + Send>> {
        let uri = req.uri().to_string();
        let answer = tokio::time::timeout(REQUEST_TIMEOUT, self.client.request(req));
        let retry_after = self.retry_after.clone();
        Box::pin(async move {
            let rsp = match answer.await {
                Ok(Ok(rsp)) => rsp,
                // hyper's own "client error (Connect)" says less than its cause.
                Ok(Err(e)) => {
                    let reason = e.source().map_or_else(|| e.to_string(), chain);
                    return Err(LibError::Other(Box::new(Transport(reason))));
                }
                Err(_) => {
                    return Err(LibError::Other(Box::new(Transport(format!(
                        "no answer from {uri} within {} s",
                        REQUEST_TIMEOUT.as_secs()
                    )))))
                }
            };
            if matches!(
                rsp.status(),
                StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE
            ) {
                let at = rsp
                    .headers()
                    .get(RETRY_AFTER)
                    .and_then(|v| v.to_str().ok())
                    .and_then(parse_retry_after);
                *retry_after.lock().unwrap_or_else(PoisonError::into_inner) = at;
            }
            Ok(BytesResponse::from(rsp))
        })
    }
}

/// `Retry-After`: seconds or an HTTP date (RFC 9110 §10.2.3).
fn parse_retry_after(value: &str) -> Option<SystemTime> {
    let value = value.trim();
    match u64::from_str(value) {
        Ok(secs) => SystemTime::now().checked_add(Duration::from_secs(secs)),
        Err(_) => httpdate::parse_http_date(value).ok(),
    }
}

/// An error and its sources, without the repeats hyper's layers add.
fn chain(e: &dyn std::error::Error) -> String {
    let mut parts: Vec<String> = vec![e.to_string()];
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        source = s.source();
    }
    parts.join(": ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problem(kind: &str, detail: &str) -> Problem {
        serde_json::from_value(serde_json::json!({
            "type": format!("urn:ietf:params:acme:error:{kind}"),
            "detail": detail,
            "status": 429,
        }))
        .expect("problem")
    }

    fn http() -> Http {
        Http::new(&AcmeSettings::new("https://acme.example/directory")).expect("client")
    }

    #[test]
    fn published_tokens_are_removed_when_the_issuance_ends() {
        let tokens = Http01Tokens::new();
        let shared = tokens.clone();
        {
            let mut published = Published::new(&tokens);
            published.add("t1", "t1.thumb");
            published.add("t2", "t2.thumb");
            assert_eq!(shared.get("t1").as_deref(), Some("t1.thumb"));
            assert_eq!(shared.len(), 2);
        }
        assert!(shared.is_empty());
        assert_eq!(shared.get("t1"), None);
    }

    #[tokio::test]
    async fn a_rate_limit_names_the_retry_time_and_the_detail() {
        let http = http();
        *http.retry_after.lock().expect("lock") = parse_retry_after("3600");
        let e = http.error(
            LibError::Api(problem(
                "rateLimited",
                "too many certificates already issued",
            )),
            "place an order",
        );
        let text = e.to_string();
        assert!(matches!(
            e,
            AcmeError::RateLimited {
                retry_after: Some(_),
                ..
            }
        ));
        assert!(
            text.starts_with(
                "rate limited by the ACME server at https://acme.example/directory; retry after 20"
            ),
            "{text}"
        );
        assert!(
            text.contains("(in 3599 s)") || text.contains("(in 3600 s)"),
            "{text}"
        );
        assert!(
            text.ends_with("too many certificates already issued (rateLimited)"),
            "{text}"
        );

        let http = self::http();
        let e = http.error(LibError::Api(problem("rateLimited", "slow down")), "x");
        assert!(e.to_string().contains("; retry later: slow down"), "{e}");
    }

    #[tokio::test]
    async fn an_unreachable_server_is_named_with_the_cause() {
        // Nothing listens on port 1.
        let settings = AcmeSettings::new("https://127.0.0.1:1/dir");
        let e = issue(&settings, None, &["a.test".into()], &Http01Tokens::new())
            .await
            .expect_err("no server");
        let text = e.to_string();
        assert!(matches!(e, AcmeError::Unreachable { .. }), "{e:?}");
        assert!(
            text.starts_with("the ACME server at https://127.0.0.1:1/dir is unreachable: "),
            "{text}"
        );
        assert!(text.contains("onnection refused"), "{text}");
    }

    #[test]
    fn retry_after_takes_seconds_and_http_dates() {
        let at = parse_retry_after("Fri, 31 Dec 2100 23:59:59 GMT").expect("date");
        assert_eq!(
            humantime::format_rfc3339_seconds(at).to_string(),
            "2100-12-31T23:59:59Z"
        );
        assert!(parse_retry_after(" 120 ").is_some());
        assert_eq!(parse_retry_after("soon"), None);
    }

    #[test]
    fn stored_credentials_of_another_directory_are_not_used() {
        let json = r#"{"id":"x","key_pkcs8":"AA","directory":"https://staging/dir"}"#;
        assert!(!stored_for(json, "https://prod/dir"));
        assert!(stored_for(json, "https://staging/dir"));
        assert!(stored_for(
            r#"{"id":"x","key_pkcs8":"AA"}"#,
            "https://prod/dir"
        ));
    }

    #[tokio::test]
    async fn unreadable_credentials_say_what_to_do() {
        let settings = AcmeSettings::new("https://127.0.0.1:1/dir");
        let e = issue(
            &settings,
            Some("{not json"),
            &["a.test".into()],
            &Http01Tokens::new(),
        )
        .await
        .expect_err("bad account");
        assert!(matches!(e, AcmeError::BadAccount { .. }), "{e:?}");
        assert!(
            e.to_string()
                .ends_with("delete it to register a new account"),
            "{e}"
        );
    }

    #[test]
    fn a_problem_reads_as_detail_kind_and_subproblems() {
        let p: Problem = serde_json::from_value(serde_json::json!({
            "type": "urn:ietf:params:acme:error:rejectedIdentifier",
            "detail": "Error creating new order",
            "subproblems": [{
                "type": "urn:ietf:params:acme:error:rejectedIdentifier",
                "detail": "bad name",
                "identifier": {"type": "dns", "value": "x..test"}
            }]
        }))
        .expect("problem");
        let text = describe(&p);
        assert!(
            text.starts_with("Error creating new order (rejectedIdentifier); "),
            "{text}"
        );
        assert!(text.contains("bad name"), "{text}");
        assert_eq!(
            describe(&serde_json::from_str("{}").expect("empty")),
            "no detail given"
        );
    }

    #[test]
    fn an_extra_root_that_is_no_certificate_is_refused() {
        let mut settings = AcmeSettings::new("https://acme.example/directory");
        settings.extra_root_pem = Some(b"not a pem".to_vec());
        assert!(matches!(
            Http::new(&settings),
            Err(AcmeError::BadExtraRoot { .. })
        ));
    }
}
