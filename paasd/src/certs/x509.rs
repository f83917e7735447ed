//! What paasd needs to know about a PEM certificate chain before it serves it: the names the
//! leaf covers, its validity window and issuer, and that each certificate is signed by the
//! next. Pure functions of the PEM text; must not touch the store or the router.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::GeneralName;
use x509_parser::pem::Pem;

/// The leaf of a chain, as the checks and `paas certs` need it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Leaf {
    /// DNS names (lowercase), from the subject alternative names, else the subject CN.
    pub names: Vec<String>,
    pub issuer: String,
    pub not_before: SystemTime,
    pub not_after: SystemTime,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ChainError {
    #[error("the certificate file holds no PEM certificate")]
    Empty,
    #[error("certificate {index} of the file is not a valid X.509 certificate: {detail}")]
    Unreadable { index: usize, detail: String },
    #[error("certificate {index} of the file is not signed by certificate {next} (the chain must go leaf first, each certificate followed by its issuer)")]
    Broken { index: usize, next: usize },
}

/// Reads the chain (leaf first) and checks that each certificate is signed by the next.
pub fn inspect(chain_pem: &str) -> Result<Leaf, ChainError> {
    let pems: Vec<Pem> = Pem::iter_from_buffer(chain_pem.as_bytes())
        .enumerate()
        .map(|(index, p)| {
            p.map_err(|e| ChainError::Unreadable {
                index: index + 1,
                detail: e.to_string(),
            })
        })
        .collect::<Result<_, _>>()?;
    let pems: Vec<Pem> = pems
        .into_iter()
        .filter(|p| p.label == "CERTIFICATE")
        .collect();
    if pems.is_empty() {
        return Err(ChainError::Empty);
    }
    let certs: Vec<X509Certificate<'_>> = pems
        .iter()
        .enumerate()
        .map(|(index, p)| {
            p.parse_x509().map_err(|e| ChainError::Unreadable {
                index: index + 1,
                detail: e.to_string(),
            })
        })
        .collect::<Result<_, _>>()?;
    for (i, pair) in certs.windows(2).enumerate() {
        if pair[0]
            .verify_signature(Some(pair[1].public_key()))
            .is_err()
        {
            return Err(ChainError::Broken {
                index: i + 1,
                next: i + 2,
            });
        }
    }
    let leaf = &certs[0];
    let mut names: Vec<String> = leaf
        .subject_alternative_name()
        .ok()
        .flatten()
        .map(|san| {
            san.value
                .general_names
                .iter()
                .filter_map(|n| match n {
                    GeneralName::DNSName(d) => Some(d.to_ascii_lowercase()),
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default();
    if names.is_empty() {
        names = leaf
            .subject()
            .iter_common_name()
            .filter_map(|cn| cn.as_str().ok())
            .map(str::to_ascii_lowercase)
            .collect();
    }
    let issuer = leaf
        .issuer()
        .iter_common_name()
        .chain(leaf.issuer().iter_organization())
        .find_map(|a| a.as_str().ok())
        .unwrap_or("unknown")
        .to_string();
    let time = |t: i64| UNIX_EPOCH + Duration::from_secs(t.max(0) as u64);
    Ok(Leaf {
        names,
        issuer,
        not_before: time(leaf.validity().not_before.timestamp()),
        not_after: time(leaf.validity().not_after.timestamp()),
    })
}

/// Whether a certificate for `pattern` (a name or `*.parent`) is valid for `host`: a
/// wildcard covers exactly one label.
pub fn covers(pattern: &str, host: &str) -> bool {
    let (pattern, host) = (pattern.to_ascii_lowercase(), host.to_ascii_lowercase());
    if pattern == host {
        return true;
    }
    match (pattern.strip_prefix("*."), host.split_once('.')) {
        (Some(parent), Some((label, rest))) => !label.is_empty() && rest == parent,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards_cover_one_label() {
        assert!(covers("a.example.com", "A.example.com"));
        assert!(covers("*.example.com", "a.example.com"));
        assert!(!covers("*.example.com", "example.com"));
        assert!(!covers("*.example.com", "a.b.example.com"));
        assert!(covers("*.example.com", "*.example.com"));
        assert!(!covers("a.example.com", "b.example.com"));
    }

    #[test]
    fn garbage_and_empty_files_are_named() {
        assert_eq!(inspect("no pem here"), Err(ChainError::Empty));
        let bad = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
        assert!(matches!(
            inspect(bad),
            Err(ChainError::Unreadable { index: 1, .. })
        ));
    }
}
