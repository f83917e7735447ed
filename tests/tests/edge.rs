//! The edge (issue 15) against a real paasd: HTTPS with a certificate added by `paas certs
//! add` (SNI, HTTP/2, X-Forwarded-Proto, the redirect from plain HTTP, HSTS), the refusals of
//! bad certificates, and WebSockets through the router on ws:// and wss:// to the bundled
//! `examples/ws-echo` app.

#![forbid(unsafe_code)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use paas_tests::{have_root, repo_root, Daemon};

const BASE: &str = "paas.localhost";

fn daemon(test: &str) -> Option<Daemon> {
    if !have_root(test) {
        return None;
    }
    Some(Daemon::start())
}

/// A CA and the files of a leaf it signs, in `dir`.
struct Ca {
    issuer: rcgen::CertifiedIssuer<'static, rcgen::KeyPair>,
}

impl Ca {
    fn new(dir: &Path) -> Ca {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "paas edge test CA");
        let ca = Ca {
            issuer: rcgen::CertifiedIssuer::self_signed(
                params,
                rcgen::KeyPair::generate().expect("key"),
            )
            .expect("ca"),
        };
        std::fs::write(dir.join("ca.pem"), ca.issuer.pem()).expect("ca.pem");
        ca
    }

    /// Writes `NAME.pem` (leaf then CA) and `NAME.key` for `names`, valid from `from` to `to`
    /// days from now, and returns their paths.
    fn leaf(
        &self,
        dir: &Path,
        file: &str,
        names: &[&str],
        days: (i64, i64),
    ) -> (std::path::PathBuf, std::path::PathBuf) {
        let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
        let mut params = rcgen::CertificateParams::new(names).expect("params");
        let now = time::OffsetDateTime::now_utc();
        params.not_before = now + time::Duration::days(days.0);
        params.not_after = now + time::Duration::days(days.1);
        let key = rcgen::KeyPair::generate().expect("key");
        let cert = params.signed_by(&key, &self.issuer).expect("leaf");
        let (pem, keyfile) = (
            dir.join(format!("{file}.pem")),
            dir.join(format!("{file}.key")),
        );
        std::fs::write(&pem, format!("{}{}", cert.pem(), self.issuer.pem())).expect("pem");
        std::fs::write(&keyfile, key.serialize_pem()).expect("key");
        (pem, keyfile)
    }
}

/// `curl` over HTTPS to `host` (resolved to the router), trusting `ca`: (exit status ok,
/// HTTP version, body).
fn curl_https(
    d: &Daemon,
    ca: &Path,
    host: &str,
    path: &str,
    extra: &[&str],
) -> (bool, String, String) {
    let tls = d.router_tls();
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "20", "--cacert"])
        .arg(ca)
        .arg("--resolve")
        .arg(format!("{host}:{}:127.0.0.1", tls.port()))
        .args(extra)
        .args(["-w", "\n%{http_version} %{http_code}"])
        .arg(format!("https://{host}:{}{path}", tls.port()))
        .output()
        .expect("run curl");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, tail) = text.rsplit_once('\n').unwrap_or(("", &text));
    (
        out.status.success(),
        tail.to_string(),
        format!("{body}{}", String::from_utf8_lossy(&out.stderr)),
    )
}

fn deploy_ws_echo(d: &Daemon, app: &str) {
    d.paas(&["create", app]).ok();
    d.deploy_dir(app, &repo_root().join("examples/ws-echo"));
}

#[test]
fn https_serves_an_added_certificate_over_h2_and_plain_http_is_redirected() {
    let Some(d) = daemon("https_serves_an_added_certificate_over_h2_and_plain_http_is_redirected")
    else {
        return;
    };
    deploy_ws_echo(&d, "edge");
    let host = format!("edge.{BASE}");
    let dir = tempfile::tempdir().expect("tmp");
    let ca = Ca::new(dir.path());
    let ca_pem = dir.path().join("ca.pem");

    // Before any certificate: plain HTTP serves, and the TLS handshake fails.
    assert_eq!(d.http(&host, "/").0, 200);
    let (ok, _, _) = curl_https(&d, &ca_pem, &host, "/", &[]);
    assert!(!ok, "no certificate yet");

    // Refused certificates, each with a reason, and nothing stored.
    let (other, other_key) = ca.leaf(dir.path(), "other", &["other.example.com"], (-1, 30));
    d.paas(&[
        "certs",
        "add",
        "edge",
        other.to_str().expect("p"),
        other_key.to_str().expect("p"),
    ])
    .fails(1, "covers none of app 'edge''s domains");
    let (expired, expired_key) = ca.leaf(dir.path(), "expired", &[&host], (-30, -1));
    d.paas(&[
        "certs",
        "add",
        "edge",
        expired.to_str().expect("p"),
        expired_key.to_str().expect("p"),
    ])
    .fails(1, "the certificate expired on");
    let (good, good_key) = ca.leaf(dir.path(), "good", &[&host], (-1, 90));
    d.paas(&[
        "certs",
        "add",
        "edge",
        good.to_str().expect("p"),
        other_key.to_str().expect("p"),
    ])
    .fails(1, "the private key does not belong to the certificate");
    d.paas(&[
        "certs",
        "add",
        "edge",
        good.to_str().expect("p"),
        good.to_str().expect("p"),
    ])
    .fails(1, "private key");
    let listed = d.paas(&["--json", "certs", "edge"]).json();
    assert_eq!(
        listed["certs"].as_array().map(Vec::len),
        Some(0),
        "{listed}"
    );

    // A good one: served at once, over HTTP/2, and the app sees https.
    d.paas(&[
        "certs",
        "add",
        "edge",
        good.to_str().expect("p"),
        good_key.to_str().expect("p"),
    ])
    .ok();
    let listed = d.paas(&["--json", "certs", "edge"]).json();
    assert_eq!(listed["certs"][0]["domain"], host.as_str(), "{listed}");
    assert_eq!(
        listed["certs"][0]["issuer"], "paas edge test CA",
        "{listed}"
    );
    assert_eq!(listed["https"]["redirect"], true);
    let (ok, version, body) = curl_https(&d, &ca_pem, &host, "/headers", &["--http2"]);
    assert!(ok, "{body}");
    assert_eq!(version, "2 200", "{body}");
    let headers: serde_json::Value = serde_json::from_str(body.trim()).expect("headers JSON");
    assert_eq!(headers["x-forwarded-proto"], "https", "{headers}");
    assert_eq!(
        headers["x-forwarded-port"],
        d.router_tls().port().to_string().as_str()
    );
    let (ok, version, _) = curl_https(&d, &ca_pem, &host, "/", &["--http1.1", "--tlsv1.3"]);
    assert!(ok);
    assert_eq!(version, "1.1 200");

    // Plain HTTP now goes to HTTPS, keeping the path; opting out serves it again.
    let (status, head, _) = d.http(&host, "/some/where?x=1");
    assert_eq!(status, 308, "{head}");
    let location = format!(
        "location: https://{host}:{}/some/where?x=1",
        d.router_tls().port()
    );
    assert!(head.to_ascii_lowercase().contains(&location), "{head}");
    d.paas(&["certs", "edge", "--redirect", "off", "--hsts", "on"])
        .ok();
    assert_eq!(d.http(&host, "/").0, 200);
    let (ok, _, body) = curl_https(&d, &ca_pem, &host, "/", &["-D", "-"]);
    assert!(ok, "{body}");
    assert!(
        body.to_ascii_lowercase()
            .contains("strict-transport-security: max-age=31536000"),
        "{body}"
    );

    // Custom certificates are renewed by adding a new one, not by ACME.
    d.paas(&["certs", "edge", "--renew"])
        .fails(1, "has no certificate from ACME to renew");
    // Removed: the handshake fails again, plain HTTP still serves.
    d.paas(&["certs", "remove", "edge", &host]).ok();
    let (ok, _, _) = curl_https(&d, &ca_pem, &host, "/", &[]);
    assert!(!ok, "the certificate is gone");
    d.paas(&["certs", "remove", "edge", &host])
        .fails(1, "has no certificate for");

    // A wildcard for the base domain, installed once, serves every APP.<base>.
    let (other_wild, other_wild_key) =
        ca.leaf(dir.path(), "otherwild", &["*.example.com"], (-1, 90));
    d.paas(&[
        "certs",
        "add-base",
        other_wild.to_str().expect("p"),
        other_wild_key.to_str().expect("p"),
    ])
    .fails(1, "a platform certificate must cover *.paas.localhost");
    let wildcard = format!("*.{BASE}");
    let (wild, wild_key) = ca.leaf(dir.path(), "wild", &[&wildcard], (-1, 90));
    d.paas(&[
        "certs",
        "add-base",
        wild.to_str().expect("p"),
        wild_key.to_str().expect("p"),
    ])
    .ok();
    let (ok, version, body) = curl_https(&d, &ca_pem, &host, "/", &[]);
    assert!(ok, "{body}");
    assert!(version.ends_with(" 200"), "{version}");
    let listed = d.paas(&["--json", "certs", "edge"]).json();
    assert_eq!(listed["certs"][0]["domain"], wildcard.as_str(), "{listed}");
    let base = d.paas(&["--json", "certs", "base"]).json();
    assert_eq!(base[0]["domain"], wildcard.as_str(), "{base}");
    d.paas(&["certs", "remove-base", &wildcard]).ok();
    let (ok, _, _) = curl_https(&d, &ca_pem, &host, "/", &[]);
    assert!(!ok, "the platform certificate is gone");
    d.paas(&["certs", "remove-base", &wildcard])
        .fails(1, "there is no platform certificate");
}

/// A WebSocket client over any stream: 200 round trips of growing messages.
fn echo_round_trips<S: Read + Write>(stream: S, url: &str, prefix: &str) {
    let (mut ws, resp) = tungstenite::client(url, stream).expect("websocket handshake");
    assert_eq!(resp.status(), 101);
    for i in 0..200 {
        let msg = format!("message {i} {}", "x".repeat(i * 37));
        ws.send(tungstenite::Message::text(msg.clone()))
            .expect("send");
        let got = loop {
            match ws.read().expect("read") {
                tungstenite::Message::Text(t) => break t.to_string(),
                tungstenite::Message::Ping(_) | tungstenite::Message::Pong(_) => continue,
                other => panic!("unexpected {other:?}"),
            }
        };
        assert_eq!(got, format!("{prefix}{msg}"));
    }
    ws.close(None).expect("close");
    // Until the server's close comes back.
    while ws.read().is_ok() {}
}

#[test]
fn websockets_echo_through_the_router_on_ws_and_wss() {
    let Some(d) = daemon("websockets_echo_through_the_router_on_ws_and_wss") else {
        return;
    };
    deploy_ws_echo(&d, "sock");
    let host = format!("sock.{BASE}");
    let dir = tempfile::tempdir().expect("tmp");
    let ca = Ca::new(dir.path());
    let (pem, key) = ca.leaf(dir.path(), "sock", &[&host], (-1, 90));
    d.paas(&[
        "certs",
        "add",
        "sock",
        pem.to_str().expect("p"),
        key.to_str().expect("p"),
    ])
    .ok();
    // The redirect is for browsers' plain HTTP; a ws:// client keeps plain HTTP here.
    d.paas(&["certs", "sock", "--redirect", "off"]).ok();

    let plain = TcpStream::connect(d.router()).expect("connect");
    plain
        .set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    echo_round_trips(plain, &format!("ws://{host}/ws?prefix=ws:"), "ws:");

    let tcp = TcpStream::connect(d.router_tls()).expect("connect tls");
    tcp.set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.issuer.der().clone()).expect("root");
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("versions")
    .with_root_certificates(roots)
    .with_no_client_auth();
    let name = rustls::pki_types::ServerName::try_from(host.clone()).expect("name");
    let conn = rustls::ClientConnection::new(Arc::new(config), name).expect("tls client");
    let tls = rustls::StreamOwned::new(conn, tcp);
    echo_round_trips(tls, &format!("wss://{host}/ws?prefix=wss:"), "wss:");

    // A wildcard domain routes every subdomain without a route of its own.
    d.paas(&["domains", "add", "sock", "*.sock-example.test"])
        .ok();
    let (status, _, body) = d.http("any.sock-example.test", "/");
    assert_eq!(status, 200, "{body}");
    assert!(body.starts_with("ws-echo"), "{body}");
    assert_eq!(
        d.http("sock-example.test", "/").0,
        404,
        "not the parent itself"
    );

    // Counted by the router; the access log has the upgraded connections.
    let logs = d
        .paas(&["logs", "sock", "--source", "router"])
        .ok()
        .to_string();
    assert!(
        logs.contains("path=\"/ws?prefix=ws:\" status=101"),
        "{logs}"
    );
    assert!(
        logs.contains("path=\"/ws?prefix=wss:\" status=101"),
        "{logs}"
    );
}

/// `paas certs APP --json` until `done` says yes about it (at most 60 s).
fn certs_until(
    d: &Daemon,
    app: &str,
    what: &str,
    done: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let list = d.paas(&["--json", "certs", app]).json();
        if done(&list) {
            return list;
        }
        assert!(std::time::Instant::now() < deadline, "{what}: {list:#}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn cert_for<'a>(list: &'a serde_json::Value, domain: &str) -> Option<&'a serde_json::Value> {
    list["certs"]
        .as_array()?
        .iter()
        .find(|c| c["domain"] == domain)
}

/// The DNS names of the certificate the router serves for `host`.
fn served_names(d: &Daemon, host: &str) -> String {
    let tls = d.router_tls();
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "openssl s_client -connect 127.0.0.1:{} -servername {host} </dev/null 2>/dev/null \
             | openssl x509 -noout -ext subjectAltName",
            tls.port()
        ))
        .output()
        .expect("openssl");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn acme_issues_for_a_new_app_and_its_custom_domain_without_a_command() {
    let test = "acme_issues_for_a_new_app_and_its_custom_domain_without_a_command";
    if !have_root(test) || !paas_tests::pebble::Pebble::available(test) {
        return;
    }
    let http_port = paas_tests::pebble::free_port();
    let pebble = paas_tests::pebble::Pebble::start(http_port, paas_tests::pebble::free_port());
    let config = format!(
        "[acme]\ndirectory_url = \"{}\"\nca_file = \"{}\"\nemail = \"ops@example.com\"\n",
        pebble.directory_url(),
        pebble.ca_path().display()
    );
    let d = Daemon::start_on(&config, http_port);
    deploy_ws_echo(&d, "auto");
    let host = format!("auto.{BASE}");
    let list = certs_until(&d, "auto", "an ACME certificate for the app", |l| {
        cert_for(l, &format!("auto.{BASE}")).is_some_and(|c| c["not_after"].is_string())
    });
    let cert = cert_for(&list, &host).expect("listed");
    assert_eq!(cert["source"], "acme", "{list:#}");
    assert!(cert["last_error"].is_null(), "{list:#}");
    let dir = tempfile::tempdir().expect("tmp");
    let root = dir.path().join("pebble-root.pem");
    std::fs::write(&root, pebble.issuing_root_pem()).expect("root");
    // TLS 1.3, trusted through pebble's root, and the name is exactly the host.
    let (ok, version, body) = curl_https(&d, &root, &host, "/", &["--tlsv1.3"]);
    assert!(ok, "{body}\n{}", pebble.log());
    assert!(version.ends_with(" 200"), "{version}");
    let names = served_names(&d, &host);
    assert!(names.contains(&format!("DNS:{host}")), "{names}");
    assert!(!names.contains(','), "one name only: {names}");

    // A custom domain gets its own.
    d.paas(&["domains", "add", "auto", "www.auto-example.test"])
        .ok();
    certs_until(
        &d,
        "auto",
        "an ACME certificate for the custom domain",
        |l| cert_for(l, "www.auto-example.test").is_some_and(|c| c["not_after"].is_string()),
    );
    let (ok, _, body) = curl_https(&d, &root, "www.auto-example.test", "/", &[]);
    assert!(ok, "{body}");
    assert!(served_names(&d, "www.auto-example.test").contains("DNS:www.auto-example.test"));
    // Plain HTTP goes to HTTPS now that a certificate covers the host.
    assert_eq!(d.http(&host, "/").0, 308);
    // Renewal on request: a new certificate is served.
    let before = served_serial(&d, &host);
    d.paas(&["certs", "auto", "--renew"]).ok();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while served_serial(&d, &host) == before {
        assert!(
            std::time::Instant::now() < deadline,
            "not renewed: {before}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn an_unreachable_acme_server_is_shown_and_the_app_keeps_serving_http() {
    let Some(_) = have_root("an_unreachable_acme_server_is_shown_and_the_app_keeps_serving_http")
        .then_some(())
    else {
        return;
    };
    let closed = paas_tests::pebble::free_port();
    let config = format!("[acme]\ndirectory_url = \"https://127.0.0.1:{closed}/dir\"\n");
    let d = Daemon::start_on(&config, 0);
    deploy_ws_echo(&d, "noca");
    let host = format!("noca.{BASE}");
    let list = certs_until(&d, "noca", "the failure recorded", |l| {
        cert_for(l, &host).is_some_and(|c| c["last_error"].is_string())
    });
    let error = cert_for(&list, &host).expect("listed")["last_error"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(error.contains("unreachable"), "{error}");
    let text = d.paas(&["certs", "noca"]).ok().to_string();
    assert!(text.contains("last error:"), "{text}");
    // No certificate: plain HTTP serves as before.
    assert_eq!(d.http(&host, "/").0, 200);
}

/// The serial of the certificate the router serves for `host`.
fn served_serial(d: &Daemon, host: &str) -> String {
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "openssl s_client -connect 127.0.0.1:{} -servername {host} </dev/null 2>/dev/null \
             | openssl x509 -noout -serial",
            d.router_tls().port()
        ))
        .output()
        .expect("openssl");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[test]
fn a_short_lived_certificate_is_renewed_under_load_without_a_failed_request() {
    let test = "a_short_lived_certificate_is_renewed_under_load_without_a_failed_request";
    if !have_root(test) || !paas_tests::pebble::Pebble::available(test) {
        return;
    }
    let http_port = paas_tests::pebble::free_port();
    // Valid for 30 s: due for renewal 20 s after issuance.
    let pebble = paas_tests::pebble::Pebble::start_with_validity(
        http_port,
        paas_tests::pebble::free_port(),
        Some(30),
    );
    let config = format!(
        "[acme]\ndirectory_url = \"{}\"\nca_file = \"{}\"\n",
        pebble.directory_url(),
        pebble.ca_path().display()
    );
    let d = Daemon::start_on(&config, http_port);
    deploy_ws_echo(&d, "renew");
    let host = format!("renew.{BASE}");
    certs_until(&d, "renew", "the first certificate", |l| {
        cert_for(l, &host).is_some_and(|c| c["not_after"].is_string())
    });
    let first = served_serial(&d, &host);
    assert!(first.starts_with("serial="), "{first}");
    let dir = tempfile::tempdir().expect("tmp");
    let root = dir.path().join("root.pem");
    std::fs::write(&root, pebble.issuing_root_pem()).expect("root");

    // HTTPS requests (new connections, so new handshakes) while the certificate changes.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (ok, failed) = (
        Arc::new(std::sync::atomic::AtomicUsize::new(0)),
        Arc::new(std::sync::Mutex::new(Vec::new())),
    );
    let tls_port = d.router_tls().port();
    let load = {
        let (stop, ok, failed, root, host) = (
            stop.clone(),
            ok.clone(),
            failed.clone(),
            root.clone(),
            host.clone(),
        );
        std::thread::spawn(move || {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let out = Command::new("curl")
                    .args([
                        "-sS",
                        "--max-time",
                        "10",
                        "-o",
                        "/dev/null",
                        "-w",
                        "%{http_code}",
                    ])
                    .arg("--cacert")
                    .arg(&root)
                    .arg("--resolve")
                    .arg(format!("{host}:{tls_port}:127.0.0.1"))
                    .arg(format!("https://{host}:{tls_port}/"))
                    .output()
                    .expect("curl");
                let code = String::from_utf8_lossy(&out.stdout).to_string();
                if out.status.success() && code == "200" {
                    ok.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                } else {
                    failed
                        .lock()
                        .expect("failed")
                        .push(format!("{code} {}", String::from_utf8_lossy(&out.stderr)));
                }
            }
        })
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let second = loop {
        let now = served_serial(&d, &host);
        if now != first && now.starts_with("serial=") {
            break now;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "not renewed: still {now}"
        );
        std::thread::sleep(Duration::from_millis(500));
    };
    // A little more load on the new certificate, then stop.
    std::thread::sleep(Duration::from_secs(2));
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    load.join().expect("load thread");
    let failed = failed.lock().expect("failed").clone();
    let ok = ok.load(std::sync::atomic::Ordering::Relaxed);
    println!(
        "renewed {first} -> {second}: {ok} requests answered, {} failed",
        failed.len()
    );
    assert!(failed.is_empty(), "{failed:?}");
    assert!(ok > 10, "too little load to tell: {ok}");
}

#[test]
fn a_websocket_to_an_old_instance_lasts_until_the_drain_timeout_of_a_rollout() {
    let test = "a_websocket_to_an_old_instance_lasts_until_the_drain_timeout_of_a_rollout";
    if !have_root(test) {
        return;
    }
    let d = Daemon::start_with_config("[instances]\ndrain_secs = 4\n");
    deploy_ws_echo(&d, "roll");
    let host = format!("roll.{BASE}");
    let plain = TcpStream::connect(d.router()).expect("connect");
    plain
        .set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    let (mut ws, _) =
        tungstenite::client(format!("ws://{host}/ws"), plain).expect("websocket handshake");
    // A config change rolls the app: new instance, switch, then the old one drains.
    let started = std::time::Instant::now();
    let rollout = d.spawn_paas(&["env", "set", "roll", "ROLLED=1"]);
    let mut echoes = 0;
    let closed_after = loop {
        let msg = format!("ping {echoes}");
        let answered = ws
            .send(tungstenite::Message::text(msg.clone()))
            .and_then(|()| ws.read());
        match answered {
            Ok(tungstenite::Message::Text(t)) if t.as_str() == msg => echoes += 1,
            Ok(tungstenite::Message::Close(_)) | Err(_) => break started.elapsed(),
            Ok(other) => panic!("unexpected {other:?}"),
        }
        assert!(
            started.elapsed() < Duration::from_secs(40),
            "the old instance's websocket outlived the drain by far"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    rollout.finish().ok();
    // It kept echoing through the switch and at least the drain timeout, then the old
    // instance stopped and the connection closed.
    assert!(
        closed_after >= Duration::from_secs(4),
        "closed after {closed_after:?}, {echoes} echoes"
    );
    assert!(echoes >= 30, "{echoes} echoes in {closed_after:?}");
    // New connections reach the new release.
    let plain = TcpStream::connect(d.router()).expect("connect");
    echo_round_trips(plain, &format!("ws://{host}/ws?prefix=new:"), "new:");
}

#[test]
fn tls_alpn_01_gets_a_certificate_with_port_80_out_of_the_picture() {
    let test = "tls_alpn_01_gets_a_certificate_with_port_80_out_of_the_picture";
    if !have_root(test) || !paas_tests::pebble::Pebble::available(test) {
        return;
    }
    // Pebble validates HTTP-01 on a port nothing listens on, TLS-ALPN-01 on our HTTPS port.
    let https_port = paas_tests::pebble::free_port();
    let pebble = paas_tests::pebble::Pebble::start(paas_tests::pebble::free_port(), https_port);
    let config = format!(
        "[acme]\ndirectory_url = \"{}\"\nca_file = \"{}\"\nchallenge = \"tls-alpn-01\"\n",
        pebble.directory_url(),
        pebble.ca_path().display()
    );
    let d = Daemon::start_on_ports(&config, 0, https_port);
    assert_eq!(d.router_tls().port(), https_port);
    deploy_ws_echo(&d, "alpn");
    let host = format!("alpn.{BASE}");
    let list = certs_until(&d, "alpn", "a certificate over TLS-ALPN-01", |l| {
        cert_for(l, &host)
            .is_some_and(|c| c["not_after"].is_string() || c["last_error"].is_string())
    });
    let cert = cert_for(&list, &host).expect("listed");
    assert!(cert["last_error"].is_null(), "{list:#}\n{}", pebble.log());
    let dir = tempfile::tempdir().expect("tmp");
    let root = dir.path().join("root.pem");
    std::fs::write(&root, pebble.issuing_root_pem()).expect("root");
    let (ok, version, body) = curl_https(&d, &root, &host, "/", &[]);
    assert!(ok, "{body}");
    assert!(version.ends_with(" 200"), "{version}");
    // The challenge certificate is gone: a client offering acme-tls/1 gets no certificate.
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "openssl s_client -connect 127.0.0.1:{https_port} -servername {host} -alpn acme-tls/1 </dev/null 2>&1"
        ))
        .output()
        .expect("openssl");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        !text.contains("acmeIdentifier") && !text.contains("BEGIN CERTIFICATE"),
        "{text}"
    );
}
