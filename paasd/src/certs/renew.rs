//! When ACME certificates are issued and renewed: every name an app is served at (its
//! default domain and custom domains; not wildcards, which HTTP-01 cannot prove) gets one
//! unless a custom certificate covers it, and gets a new one once a third of its lifetime
//! is left. A failure is kept on the name's row for `paas certs` and retried with backoff
//! (1 minute, doubling, at most a day; later if the server said when). Passes run one at a
//! time: at start, after [`Certs::kick`] (an app or domain was added) and every minute.
//! Must not serve challenges (the router does, from [`Http01Tokens`]) nor talk ACME itself
//! (`acme::issue` does).

use std::time::{Duration, SystemTime};

use super::acme::{self, AcmeError, AcmeSettings, Http01Tokens};
use super::{now_secs, secs, CertError, Certs};
use crate::store::{self, certs::CertRow};

/// How often a pass runs when nothing kicks it.
const PERIOD: Duration = Duration::from_secs(60);
const FIRST_RETRY_SECS: i64 = 60;
const MAX_RETRY_SECS: i64 = 86_400;

fn account_context(directory_url: &str) -> String {
    format!("acme-account:{directory_url}")
}

/// When the name needs an ACME issuance (Unix seconds; now or earlier: due), None never
/// (a custom certificate).
fn due_at(row: Option<&CertRow>) -> Option<i64> {
    let Some(r) = row else { return Some(0) };
    if r.source != "acme" {
        return None;
    }
    if r.renew {
        return Some(r.retry_at.unwrap_or(0));
    }
    let renew = match (r.chain_pem.as_ref(), r.not_after) {
        (Some(_), Some(not_after)) => {
            let lifetime = (not_after - r.updated_at).max(0);
            not_after - lifetime / 3
        }
        _ => 0,
    };
    Some(renew.max(r.retry_at.unwrap_or(0)))
}

fn due(row: Option<&CertRow>, now: i64) -> bool {
    due_at(row).is_some_and(|t| t <= now)
}

/// Top-level names no public CA issues for (RFC 2606, RFC 6761, mDNS): with Let's
/// Encrypt, names under them (the default base domain `paas.localhost`) are not even asked.
const RESERVED: &[&str] = &["localhost", "test", "example", "invalid", "local"];

fn never_issued_by(directory_url: &str, host: &str) -> bool {
    let public = directory_url.contains(".api.letsencrypt.org/");
    let tld = host.rsplit('.').next().unwrap_or(host);
    public && RESERVED.contains(&tld)
}

/// Seconds until the next attempt after `failures` failures in a row.
fn backoff(failures: u32) -> i64 {
    let exp = failures.saturating_sub(1).min(20);
    (FIRST_RETRY_SECS << exp).min(MAX_RETRY_SECS)
}

impl Certs {
    /// Asks for a pass soon (an app or a domain was added).
    pub fn kick(&self) {
        self.wake.notify_one();
    }

    /// Issues and renews from now on, in a task of its own.
    pub fn start_acme(&self, settings: AcmeSettings, tokens: Http01Tokens) {
        let certs = self.clone();
        tokio::spawn(async move {
            loop {
                let next = match certs.acme_pass(&settings, &tokens).await {
                    Ok(next) => next,
                    Err(e) => {
                        tracing::warn!(error = %e, "certificate pass failed");
                        None
                    }
                };
                // The next renewal or retry may come before the next period.
                let wait = next.map_or(PERIOD, |at| {
                    Duration::from_secs((at - now_secs()).clamp(1, PERIOD.as_secs() as i64) as u64)
                });
                tokio::select! {
                    () = certs.wake.notified() => {}
                    () = tokio::time::sleep(wait) => {}
                }
            }
        });
    }

    /// One pass over every app name: issue what is due, one name at a time. Returns when
    /// the next one will be due (Unix seconds), if any is known.
    pub async fn acme_pass(
        &self,
        settings: &AcmeSettings,
        tokens: &Http01Tokens,
    ) -> Result<Option<i64>, CertError> {
        let base = self.base_domain.clone();
        let url = settings.directory_url.clone();
        let (due_rows, account, next) = self
            .store
            .tx(move |tx| {
                let now = now_secs();
                let rows: std::collections::HashMap<String, CertRow> = store::certs::all(tx)?
                    .into_iter()
                    .map(|r| (r.domain.clone(), r))
                    .collect();
                let mut due_rows = Vec::new();
                let mut next: Option<i64> = None;
                for app in store::apps::list(tx)? {
                    for host in super::hosts_of(tx, &app, &base)? {
                        if host.starts_with("*.") || never_issued_by(&url, &host) {
                            continue;
                        }
                        let row = rows.get(&host);
                        // A custom wildcard covering the name is as good as its own.
                        let covered = rows.values().any(|r| {
                            r.source == "custom"
                                && r.domain.starts_with("*.")
                                && super::x509::covers(&r.domain, &host)
                        });
                        if covered {
                            continue;
                        }
                        if due(row, now) {
                            due_rows.push((app.id, host, row.cloned()));
                        } else if let Some(at) = due_at(row) {
                            next = Some(next.map_or(at, |n| n.min(at)));
                        }
                    }
                }
                Ok::<_, CertError>((due_rows, store::certs::account(tx, &url)?, next))
            })
            .await?;
        if due_rows.is_empty() {
            return Ok(next);
        }
        let mut account = match account {
            Some(sealed) => Some(
                String::from_utf8_lossy(
                    &self
                        .secrets
                        .open(&account_context(&settings.directory_url), &sealed)?,
                )
                .into_owned(),
            ),
            None => None,
        };
        for (app_id, host, previous) in due_rows {
            let outcome = acme::issue(
                settings,
                account.as_deref(),
                std::slice::from_ref(&host),
                tokens,
            )
            .await;
            let issued = self
                .record(app_id, &host, previous, outcome, settings)
                .await?;
            if let Some(new_account) = issued {
                account = Some(new_account);
            }
        }
        self.publish().await?;
        // What was just issued or failed has its own next time: ask again soon.
        Ok(Some(now_secs() + 1))
    }

    /// Stores an issuance's outcome; returns the account to use from now on.
    async fn record(
        &self,
        app_id: i64,
        host: &str,
        previous: Option<CertRow>,
        outcome: Result<acme::Issued, AcmeError>,
        settings: &AcmeSettings,
    ) -> Result<Option<String>, CertError> {
        let now = now_secs();
        let host = host.to_string();
        match outcome {
            Ok(issued) => {
                let leaf = super::x509::inspect(&issued.cert_chain_pem).ok();
                let key = self
                    .secrets
                    .seal(&super::key_context(&host), issued.key_pem.as_bytes())?;
                let account = self.secrets.seal(
                    &account_context(&settings.directory_url),
                    issued.account.as_bytes(),
                )?;
                let row = CertRow {
                    domain: host.clone(),
                    app: None,
                    source: "acme".into(),
                    chain_pem: Some(issued.cert_chain_pem.clone()),
                    key_sealed: Some(key),
                    names: leaf.as_ref().map_or(host.clone(), |l| l.names.join(" ")),
                    issuer: leaf.as_ref().map(|l| l.issuer.clone()),
                    not_after: Some(secs(issued.not_after)),
                    last_error: None,
                    retry_at: None,
                    failures: 0,
                    renew: false,
                    updated_at: now,
                };
                let url = settings.directory_url.clone();
                self.store
                    .tx(move |tx| {
                        store::certs::put(tx, Some(app_id), &row)?;
                        store::certs::set_account(tx, &url, &account)
                    })
                    .await?;
                tracing::info!(domain = %host, "certificate issued");
                Ok(Some(issued.account))
            }
            Err(e) => {
                let failures = previous.as_ref().map_or(0, |r| r.failures) + 1;
                let mut wait = backoff(failures);
                if let AcmeError::RateLimited {
                    retry_after: Some(at),
                    ..
                } = &e
                {
                    let server = at
                        .duration_since(SystemTime::now())
                        .map_or(0, |d| d.as_secs() as i64);
                    wait = wait.max(server);
                }
                tracing::warn!(domain = %host, error = %e, retry_in_secs = wait, "certificate issuance failed");
                // The previous certificate, if any, keeps being served.
                let row = CertRow {
                    last_error: Some(e.to_string()),
                    retry_at: Some(now + wait),
                    failures,
                    ..previous.unwrap_or(CertRow {
                        domain: host.clone(),
                        app: None,
                        source: "acme".into(),
                        chain_pem: None,
                        key_sealed: None,
                        names: String::new(),
                        issuer: None,
                        not_after: None,
                        last_error: None,
                        retry_at: None,
                        failures: 0,
                        renew: false,
                        updated_at: now,
                    })
                };
                self.store
                    .tx(move |tx| store::certs::put(tx, Some(app_id), &row))
                    .await?;
                Ok(None)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(source: &str, issued: i64, not_after: Option<i64>, retry_at: Option<i64>) -> CertRow {
        CertRow {
            domain: "a.test".into(),
            app: None,
            source: source.into(),
            chain_pem: not_after.map(|_| "pem".into()),
            key_sealed: None,
            names: String::new(),
            issuer: None,
            not_after,
            last_error: None,
            retry_at,
            failures: 0,
            renew: false,
            updated_at: issued,
        }
    }

    #[test]
    fn a_third_of_the_lifetime_left_is_due_custom_never_is() {
        // Issued at 0, valid 90 days: due from day 60.
        let day = 86_400;
        let r = row("acme", 0, Some(90 * day), None);
        assert!(!due(Some(&r), 59 * day));
        assert!(due(Some(&r), 60 * day));
        assert!(due(None, 0), "no certificate yet");
        assert!(!due(Some(&row("custom", 0, Some(day), None)), 2 * day));
        let waiting = row("acme", 0, None, Some(100));
        assert!(!due(Some(&waiting), 99));
        assert!(due(Some(&waiting), 100));
    }

    #[test]
    fn reserved_names_are_not_sent_to_lets_encrypt() {
        let le = "https://acme-v02.api.letsencrypt.org/directory";
        assert!(never_issued_by(le, "hello.paas.localhost"));
        assert!(never_issued_by(le, "a.example"));
        assert!(!never_issued_by(le, "hello.example.com"));
        assert!(!never_issued_by(
            "https://127.0.0.1:14000/dir",
            "hello.paas.localhost"
        ));
    }

    #[test]
    fn backoff_doubles_from_a_minute_to_a_day() {
        assert_eq!(backoff(1), 60);
        assert_eq!(backoff(2), 120);
        assert_eq!(backoff(5), 960);
        assert_eq!(backoff(40), 86_400);
    }
}
