//! TLS termination: the server configuration (TLS 1.2 and 1.3 only, rustls's default
//! cipher suites over aws-lc-rs, ALPN `h2` then `http/1.1`, resumption by tickets and by session
//! id) and the SNI resolver over the certificates paasd publishes ([`Certs`]).
//!
//! Owns the choice of certificate for a handshake: an exact name first, then a wildcard one
//! level up (`*.example.com` covers `a.example.com`, not `example.com` nor `a.b.example.com`),
//! and, for an ACME TLS-ALPN-01 validation (ALPN `acme-tls/1`), only the challenge
//! certificate of that name. Must not read files, parse certificates beyond what rustls
//! needs, or know where certificates come from.

use std::collections::HashMap;
use std::sync::Arc;

use arc_swap::ArcSwap;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert, ServerSessionMemoryCache};
use rustls::sign::CertifiedKey;
use rustls::ServerConfig;

/// ALPN protocol of ACME's TLS-ALPN-01 challenge (RFC 8737).
pub const ACME_TLS_ALPN: &[u8] = b"acme-tls/1";

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("the certificate file holds no PEM certificate")]
    NoCertificate,
    #[error("the certificate is not valid PEM: {0}")]
    CertificatePem(String),
    #[error("the key file holds no PEM private key (PKCS#8, PKCS#1 or SEC1): {0}")]
    KeyPem(String),
    #[error(
        "the private key cannot sign (an RSA, ECDSA P-256/P-384 or Ed25519 key is needed): {0}"
    )]
    UnsupportedKey(String),
    #[error("the private key does not belong to the certificate")]
    KeyMismatch,
    #[error("TLS setup: {0}")]
    Setup(String),
}

/// One certificate chain and its key, ready for handshakes. It keeps the PEM it was made
/// from, so that a set can be handed to another process ([`Certs::spec`]).
#[derive(Debug, Clone)]
pub struct Certificate(Arc<CertifiedKey>, Arc<Pem>);

/// The PEM text a [`Certificate`] was loaded from.
#[derive(Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Pem {
    pub chain: String,
    pub key: String,
}

impl std::fmt::Debug for Pem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pem").field("key", &"(hidden)").finish()
    }
}

impl Certificate {
    /// From PEM: the chain (leaf first) and its private key, which must match the leaf.
    pub fn from_pem(chain: &[u8], key: &[u8]) -> Result<Certificate, TlsError> {
        Certificate::load(chain, key, true)
    }

    /// A TLS-ALPN-01 challenge certificate (RFC 8737): its critical acmeIdentifier
    /// extension is one webpki does not parse, so the key is not matched against it (the
    /// ACME client made both moments ago).
    pub fn challenge_from_pem(cert: &[u8], key: &[u8]) -> Result<Certificate, TlsError> {
        Certificate::load(cert, key, false)
    }

    fn load(chain: &[u8], key: &[u8], match_key: bool) -> Result<Certificate, TlsError> {
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(chain)
            .collect::<Result<_, _>>()
            .map_err(|e| TlsError::CertificatePem(e.to_string()))?;
        if certs.is_empty() {
            return Err(TlsError::NoCertificate);
        }
        let key_der =
            PrivateKeyDer::from_pem_slice(key).map_err(|e| TlsError::KeyPem(e.to_string()))?;
        let signer = provider()
            .key_provider
            .load_private_key(key_der)
            .map_err(|e| TlsError::UnsupportedKey(e.to_string()))?;
        let ck = CertifiedKey::new(certs, signer);
        if match_key {
            ck.keys_match().map_err(|_| TlsError::KeyMismatch)?;
        }
        let pem = Pem {
            chain: String::from_utf8_lossy(chain).into_owned(),
            key: String::from_utf8_lossy(key).into_owned(),
        };
        Ok(Certificate(Arc::new(ck), Arc::new(pem)))
    }
}

/// The certificates to serve, by name; published whole with [`super::Router::publish_certs`].
#[derive(Debug, Clone, Default)]
pub struct Certs {
    exact: HashMap<String, Certificate>,
    /// Keyed by the part after `*.`.
    wildcard: HashMap<String, Certificate>,
    /// TLS-ALPN-01 validation certificates, by the name being validated.
    challenges: HashMap<String, Certificate>,
}

impl Certs {
    pub fn new() -> Certs {
        Certs::default()
    }

    /// Serves `cert` for `name` (`*.example.com` for a wildcard). A later add for the same
    /// name replaces the earlier one.
    pub fn add(&mut self, name: &str, cert: Certificate) {
        let name = name.trim_end_matches('.').to_ascii_lowercase();
        match name.strip_prefix("*.") {
            Some(parent) => self.wildcard.insert(parent.to_string(), cert),
            None => self.exact.insert(name, cert),
        };
    }

    /// Answers a TLS-ALPN-01 validation of `name` with `cert` (a self-signed certificate with
    /// the acmeIdentifier extension, made by the ACME client).
    pub fn add_challenge(&mut self, name: &str, cert: Certificate) {
        self.challenges
            .insert(name.trim_end_matches('.').to_ascii_lowercase(), cert);
    }

    /// The certificate a client asking for `name` gets, if any.
    pub fn find(&self, name: &str) -> Option<&Certificate> {
        let name = name.trim_end_matches('.');
        let lower;
        let name = if name.bytes().any(|b| b.is_ascii_uppercase()) {
            lower = name.to_ascii_lowercase();
            lower.as_str()
        } else {
            name
        };
        self.exact.get(name).or_else(|| {
            let (_, parent) = name.split_once('.')?;
            // A wildcard covers one label: not the parent itself, not deeper names.
            self.wildcard.get(parent)
        })
    }

    pub fn is_empty(&self) -> bool {
        self.exact.is_empty() && self.wildcard.is_empty() && self.challenges.is_empty()
    }

    /// The set as PEM text by name, to cross a process boundary.
    pub fn spec(&self) -> CertsSpec {
        let list = |m: &HashMap<String, Certificate>, prefix: &str| {
            let mut v: Vec<(String, Pem)> = m
                .iter()
                .map(|(n, c)| (format!("{prefix}{n}"), (*c.1).clone()))
                .collect();
            v.sort_by(|a, b| a.0.cmp(&b.0));
            v
        };
        let mut certs = list(&self.exact, "");
        certs.extend(list(&self.wildcard, "*."));
        CertsSpec {
            certs,
            challenges: list(&self.challenges, ""),
        }
    }

    /// Loads a [`CertsSpec`]; an entry that does not load is left out and returned with its
    /// error (the rest still serve).
    pub fn from_spec(spec: &CertsSpec) -> (Certs, Vec<(String, TlsError)>) {
        let mut certs = Certs::new();
        let mut errors = Vec::new();
        for (name, pem) in &spec.certs {
            match Certificate::from_pem(pem.chain.as_bytes(), pem.key.as_bytes()) {
                Ok(c) => certs.add(name, c),
                Err(e) => errors.push((name.clone(), e)),
            }
        }
        for (name, pem) in &spec.challenges {
            match Certificate::challenge_from_pem(pem.chain.as_bytes(), pem.key.as_bytes()) {
                Ok(c) => certs.add_challenge(name, c),
                Err(e) => errors.push((name.clone(), e)),
            }
        }
        (certs, errors)
    }
}

/// [`Certs`] as PEM text by name (see [`Certs::spec`]).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CertsSpec {
    /// `*.example.com` for a wildcard.
    pub certs: Vec<(String, Pem)>,
    /// TLS-ALPN-01 validation certificates.
    pub challenges: Vec<(String, Pem)>,
}

/// rustls's view of the published [`Certs`].
#[derive(Debug, Default)]
pub(crate) struct Resolver {
    certs: ArcSwap<Certs>,
}

impl Resolver {
    pub fn publish(&self, certs: Certs) {
        self.certs.store(Arc::new(certs));
    }

    /// Whether a plain-HTTP request for `host` (no port) could be sent to HTTPS.
    pub fn covers(&self, host: &str) -> bool {
        self.certs.load().find(host).is_some()
    }
}

impl ResolvesServerCert for Resolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let name = hello.server_name()?;
        let certs = self.certs.load();
        let acme = hello
            .alpn()
            .is_some_and(|mut protocols| protocols.any(|p| p == ACME_TLS_ALPN));
        if acme {
            return certs
                .challenges
                .get(&name.to_ascii_lowercase())
                .map(|c| Arc::clone(&c.0));
        }
        certs.find(name).map(|c| Arc::clone(&c.0))
    }
}

/// aws-lc-rs, rustls's default (its ring provider is deprecated: no post-quantum key
/// exchange), and the one paasd's ACME client uses: one crypto library in the process.
fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// The server configuration over `resolver`.
pub(crate) fn server_config(resolver: Arc<Resolver>) -> Result<Arc<ServerConfig>, TlsError> {
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| TlsError::Setup(e.to_string()))?
        .with_no_client_auth()
        .with_cert_resolver(resolver);
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec(), ACME_TLS_ALPN.to_vec()];
    // Resumption: stateless tickets (keys rotate every 6 hours) and, for TLS 1.2 clients
    // without ticket support, a bounded cache of session ids.
    config.ticketer =
        rustls::crypto::aws_lc_rs::Ticketer::new().map_err(|e| TlsError::Setup(e.to_string()))?;
    config.session_storage = ServerSessionMemoryCache::new(4096);
    Ok(Arc::new(config))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn self_signed(names: &[&str]) -> (String, String) {
        let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
        let key = rcgen::KeyPair::generate().expect("key");
        let cert = rcgen::CertificateParams::new(names)
            .expect("params")
            .self_signed(&key)
            .expect("cert");
        (cert.pem(), key.serialize_pem())
    }

    #[test]
    fn names_match_exactly_then_one_wildcard_level() {
        let (a, ak) = self_signed(&["a.example.com"]);
        let (w, wk) = self_signed(&["*.example.com"]);
        let mut certs = Certs::new();
        certs.add(
            "a.example.com",
            Certificate::from_pem(a.as_bytes(), ak.as_bytes()).expect("a"),
        );
        certs.add(
            "*.Example.com.",
            Certificate::from_pem(w.as_bytes(), wk.as_bytes()).expect("w"),
        );
        let leaf = |n: &str| certs.find(n).map(|c| c.0.cert[0].clone());
        let a_leaf = leaf("a.example.com").expect("exact");
        assert_eq!(leaf("A.EXAMPLE.COM."), Some(a_leaf.clone()));
        let w_leaf = leaf("b.example.com").expect("wildcard");
        assert_ne!(a_leaf, w_leaf);
        assert_eq!(
            leaf("example.com"),
            None,
            "a wildcard does not cover its parent"
        );
        assert_eq!(leaf("x.b.example.com"), None, "nor two levels down");
        assert_eq!(leaf("other.test"), None);
    }

    #[test]
    fn a_key_of_another_certificate_and_garbage_are_refused() {
        let (a, _) = self_signed(&["a.test"]);
        let (_, other_key) = self_signed(&["b.test"]);
        assert!(matches!(
            Certificate::from_pem(a.as_bytes(), other_key.as_bytes()),
            Err(TlsError::KeyMismatch)
        ));
        assert!(matches!(
            Certificate::from_pem(b"not pem", other_key.as_bytes()),
            Err(TlsError::NoCertificate)
        ));
        assert!(matches!(
            Certificate::from_pem(a.as_bytes(), b"nope"),
            Err(TlsError::KeyPem(_))
        ));
    }
}
