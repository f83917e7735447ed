//! Issue 15: certificates from a real ACME server. paasd's ACME client
//! (`paasd::certs::acme::issue`) against pebble on loopback, with a small HTTP server of the
//! test's own answering `/.well-known/acme-challenge/{token}` from the client's
//! `Http01Tokens` (the router's job in paasd). Needs the `pebble` package (skips loudly
//! without it; never under CI); root is not needed.

#![forbid(unsafe_code)]

use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use paas_tests::pebble::Pebble;
use paasd::certs::acme::{issue, AcmeError, AcmeSettings, Http01Tokens};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

const PREFIX: &str = "/.well-known/acme-challenge/";

/// What the token server answers.
#[derive(Clone)]
enum Answer {
    /// The key authorization from the map, 404 for unknown tokens.
    Tokens(Http01Tokens),
    /// 404 for everything.
    NotFound,
    /// Reads the request and never answers.
    Never,
}

/// A minimal HTTP/1.1 server on 127.0.0.1: its port and the paths it was asked for.
async fn token_server(answer: Answer) -> (u16, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let asked = Arc::new(Mutex::new(Vec::new()));
    let seen = asked.clone();
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            let answer = answer.clone();
            let seen = seen.clone();
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 16 * 1024 {
                    match conn.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let head = String::from_utf8_lossy(&head);
                let path = head.split(' ').nth(1).unwrap_or("").to_string();
                seen.lock().expect("lock").push(path.clone());
                if let Answer::Never = answer {
                    std::future::pending::<()>().await;
                }
                let found = match (&answer, path.strip_prefix(PREFIX)) {
                    (Answer::Tokens(tokens), Some(token)) => tokens.get(token),
                    _ => None,
                };
                let response = match found {
                    Some(body) => format!(
                        "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n\
                         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
                        body.len()
                    ),
                    None => "HTTP/1.1 404 Not Found\r\nContent-Length: 9\r\n\
                             Connection: close\r\n\r\nnot found"
                        .to_string(),
                };
                let _ = conn.write_all(response.as_bytes()).await;
                let _ = conn.shutdown().await;
            });
        }
    });
    (port, asked)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

fn settings(pebble: &Pebble) -> AcmeSettings {
    AcmeSettings {
        directory_url: pebble.directory_url(),
        contact_email: Some("ops@paas.test".into()),
        extra_root_pem: Some(pebble.ca_pem()),
        validation_timeout: Duration::from_secs(30),
        tls_alpn: None,
        served: None,
    }
}

fn openssl(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run openssl");
    assert!(
        out.status.success(),
        "openssl {}: {}{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Checks the chain in `chain_pem` and its key with openssl: the leaf verifies up to
/// `root_pem` through the chain's intermediates, its SANs are exactly `names`, and `key_pem`
/// is its P-256 key.
fn check_certificate(chain_pem: &str, key_pem: &str, root_pem: &str, names: &[&str]) {
    let dir = tempfile::tempdir().expect("tmp");
    let d = dir.path();
    let end = "-----END CERTIFICATE-----";
    let certs: Vec<String> = chain_pem
        .split_inclusive(end)
        .filter(|c| c.contains(end))
        .map(|c| format!("{}\n", c.trim()))
        .collect();
    assert!(
        certs.len() >= 2,
        "leaf and intermediate expected:\n{chain_pem}"
    );
    std::fs::write(d.join("leaf.pem"), &certs[0]).expect("write");
    std::fs::write(d.join("intermediates.pem"), certs[1..].concat()).expect("write");
    std::fs::write(d.join("root.pem"), root_pem).expect("write");
    std::fs::write(d.join("key.pem"), key_pem).expect("write");

    let verified = openssl(
        d,
        &[
            "verify",
            "-CAfile",
            "root.pem",
            "-untrusted",
            "intermediates.pem",
            "-purpose",
            "sslserver",
            "leaf.pem",
        ],
    );
    assert_eq!(verified.trim(), "leaf.pem: OK");

    let san = openssl(
        d,
        &[
            "x509",
            "-in",
            "leaf.pem",
            "-noout",
            "-ext",
            "subjectAltName",
        ],
    );
    let mut found: Vec<&str> = san
        .lines()
        .skip(1)
        .flat_map(|l| l.split(','))
        .map(str::trim)
        .collect();
    found.sort_unstable();
    let mut wanted: Vec<String> = names.iter().map(|n| format!("DNS:{n}")).collect();
    wanted.sort_unstable();
    assert_eq!(found, wanted, "{san}");

    let cert_key = openssl(d, &["x509", "-in", "leaf.pem", "-noout", "-pubkey"]);
    let our_key = openssl(d, &["pkey", "-in", "key.pem", "-pubout"]);
    assert_eq!(cert_key, our_key, "the key is not the certificate's");
    let text = openssl(d, &["pkey", "-in", "key.pem", "-noout", "-text"]);
    assert!(text.contains("prime256v1"), "not a P-256 key:\n{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pebble_issues_a_certificate_over_http_01() {
    if !Pebble::available("pebble_issues_a_certificate_over_http_01") {
        return;
    }
    let tokens = Http01Tokens::new();
    let (port, asked) = token_server(Answer::Tokens(tokens.clone())).await;
    let pebble = Pebble::start(port, free_port());
    let settings = settings(&pebble);
    let domains = vec!["app.paas.test".to_string()];

    let started = Instant::now();
    let issued = issue(&settings, None, &domains, &tokens)
        .await
        .unwrap_or_else(|e| panic!("issue: {e}\n{}", pebble.log()));
    let first = started.elapsed();

    check_certificate(
        &issued.cert_chain_pem,
        &issued.key_pem,
        &pebble.issuing_root_pem(),
        &["app.paas.test"],
    );
    assert!(issued.not_after > SystemTime::now() + Duration::from_secs(86_400));
    assert!(tokens.is_empty(), "tokens left behind");
    let asked = asked.lock().expect("lock").clone();
    assert!(
        !asked.is_empty() && asked.iter().all(|p| p.starts_with(PREFIX)),
        "pebble asked for {asked:?}"
    );

    // The stored account is used again, for a certificate with two names.
    let started = Instant::now();
    let domains = vec!["app.paas.test".to_string(), "www.app.paas.test".to_string()];
    let again = issue(&settings, Some(&issued.account), &domains, &tokens)
        .await
        .unwrap_or_else(|e| panic!("issue with the stored account: {e}\n{}", pebble.log()));
    let second = started.elapsed();
    assert_eq!(again.account, issued.account);
    check_certificate(
        &again.cert_chain_pem,
        &again.key_pem,
        &pebble.issuing_root_pem(),
        &["app.paas.test", "www.app.paas.test"],
    );
    assert_ne!(again.key_pem, issued.key_pem, "a fresh key per certificate");
    assert!(tokens.is_empty(), "tokens left behind");
    eprintln!(
        "issuance against pebble: {} ms with a new account, {} ms for two names with the stored one",
        first.as_millis(),
        second.as_millis()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_challenge_names_the_domain_and_leaves_no_tokens() {
    if !Pebble::available("a_failed_challenge_names_the_domain_and_leaves_no_tokens") {
        return;
    }
    let tokens = Http01Tokens::new();
    let (port, asked) = token_server(Answer::NotFound).await;
    let pebble = Pebble::start(port, free_port());

    let started = Instant::now();
    let e = issue(
        &settings(&pebble),
        None,
        &["app.paas.test".to_string()],
        &tokens,
    )
    .await
    .expect_err("a 404 cannot validate");
    let took = started.elapsed();
    let text = e.to_string();
    assert!(
        matches!(&e, AcmeError::ChallengeFailed { domain, .. } if domain == "app.paas.test"),
        "{e:?}"
    );
    assert!(
        text.starts_with("the challenge for app.paas.test failed: "),
        "{text}"
    );
    assert!(text.contains("404"), "the server's detail: {text}");
    assert!(tokens.is_empty(), "tokens left behind");
    assert!(
        !asked.lock().expect("lock").is_empty(),
        "pebble never asked"
    );
    eprintln!("failed issuance took {} ms: {text}", took.as_millis());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_directory_with_an_untrusted_certificate_is_refused_as_unreachable() {
    if !Pebble::available("a_directory_with_an_untrusted_certificate_is_refused_as_unreachable") {
        return;
    }
    let pebble = Pebble::start(free_port(), free_port());
    let mut settings = settings(&pebble);
    settings.extra_root_pem = None;
    let e = issue(
        &settings,
        None,
        &["app.paas.test".to_string()],
        &Http01Tokens::new(),
    )
    .await
    .expect_err("pebble's CA is not trusted");
    let text = e.to_string();
    assert!(matches!(e, AcmeError::Unreachable { .. }), "{e:?}");
    assert!(
        text.starts_with(&format!(
            "the ACME server at {} is unreachable: ",
            pebble.directory_url()
        )),
        "{text}"
    );
    assert!(text.to_lowercase().contains("certificate"), "{text}");
    eprintln!("{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_validation_that_takes_too_long_ends_at_the_bound_and_leaves_no_tokens() {
    let test = "a_validation_that_takes_too_long_ends_at_the_bound_and_leaves_no_tokens";
    if !Pebble::available(test) {
        return;
    }
    let tokens = Http01Tokens::new();
    let (port, asked) = token_server(Answer::Never).await;
    let pebble = Pebble::start(port, free_port());
    let mut settings = settings(&pebble);
    settings.validation_timeout = Duration::from_secs(2);

    let started = Instant::now();
    let e = issue(&settings, None, &["app.paas.test".to_string()], &tokens)
        .await
        .expect_err("nobody answers the challenge");
    let took = started.elapsed();
    assert!(matches!(e, AcmeError::Timeout { .. }), "{e:?}");
    assert_eq!(
        e.to_string(),
        format!(
            "the ACME server at {} did not validate app.paas.test (is port 80 of this host \
             reachable for them?) within 2 s",
            pebble.directory_url()
        )
    );
    assert!(took < Duration::from_secs(5), "took {took:?}");
    assert!(tokens.is_empty(), "tokens left behind");
    assert!(
        !asked.lock().expect("lock").is_empty(),
        "pebble never asked"
    );
}
