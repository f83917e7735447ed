//! Issue 14 (isolation), the router's part: a client cannot hand an app spoofed or ambiguous
//! headers. A request with two Host headers is refused before any app sees it; a client's
//! `X-Real-IP`, `Forwarded`, `X-Forwarded-For`, `-Proto` and `-Port` are replaced by the
//! router's, unless the client is a configured trusted proxy, whose values are kept or
//! appended to. Real paasd, a real container echoing what it received, raw TCP to the
//! router. Needs root (skips loudly otherwise; never skips under CI).

#![forbid(unsafe_code)]

use std::collections::HashMap;
use std::io::{Read, Write};
use std::time::Duration;

use paas_tests::{have_root, Daemon};
use serde_json::Value;

const HOST: &str = "echo.paas.localhost";

/// Answers every request with JSON: the headers it got and every path asked so far.
const SERVER: &str = r#"
import json, os
from http.server import BaseHTTPRequestHandler, HTTPServer

paths = []

class Echo(BaseHTTPRequestHandler):
    def do_GET(self):
        paths.append(self.path)
        body = json.dumps({"headers": [[k.lower(), v] for k, v in self.headers.items()],
                           "paths": paths}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass

HTTPServer(("0.0.0.0", int(os.environ.get("PORT", "5000"))), Echo).serve_forever()
"#;

fn echo_app(config: &str, test: &str) -> Option<Daemon> {
    if !have_root(test) {
        return None;
    }
    let d = Daemon::start_with_config(config);
    let dir = tempfile::tempdir().expect("dir");
    std::fs::write(dir.path().join("server.py"), SERVER).expect("server.py");
    std::fs::write(dir.path().join("Procfile"), "web: exec python3 server.py\n").expect("procfile");
    d.paas(&["create", "echo"]).ok();
    d.deploy_dir("echo", dir.path());
    Some(d)
}

/// Writes `request` as is to the router; (status, body).
fn raw(d: &Daemon, request: &str) -> (u16, String) {
    let mut s = std::net::TcpStream::connect(d.router()).expect("connect to the router");
    s.set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    s.write_all(request.as_bytes()).expect("send");
    let mut out = Vec::new();
    s.read_to_end(&mut out).expect("read the answer");
    let text = String::from_utf8_lossy(&out).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, body.to_string())
}

/// What the app received for `GET path` with these extra header lines: its headers (each
/// name with all its values) and every path it has been asked.
fn echo(d: &Daemon, path: &str, extra: &str) -> (HashMap<String, Vec<String>>, Vec<String>) {
    let (status, body) = raw(
        d,
        &format!("GET {path} HTTP/1.1\r\nHost: {HOST}\r\n{extra}Connection: close\r\n\r\n"),
    );
    assert_eq!(status, 200, "{body}");
    let v: Value = serde_json::from_str(&body).expect("the app's JSON");
    let mut headers: HashMap<String, Vec<String>> = HashMap::new();
    for pair in v["headers"].as_array().expect("headers") {
        headers
            .entry(pair[0].as_str().unwrap_or_default().to_string())
            .or_default()
            .push(pair[1].as_str().unwrap_or_default().to_string());
    }
    let paths = v["paths"]
        .as_array()
        .expect("paths")
        .iter()
        .map(|p| p.as_str().unwrap_or_default().to_string())
        .collect();
    (headers, paths)
}

fn one<'a>(h: &'a HashMap<String, Vec<String>>, name: &str) -> &'a str {
    match h.get(name).map(Vec::as_slice) {
        Some([v]) => v,
        other => panic!("{name}: want exactly one value, got {other:?}; all: {h:#?}"),
    }
}

const SPOOFED: &str = "X-Forwarded-For: 203.0.113.9\r\n\
    X-Forwarded-Proto: https\r\n\
    X-Forwarded-Port: 443\r\n\
    X-Real-IP: 203.0.113.9\r\n\
    Forwarded: for=203.0.113.9;proto=https\r\n";

#[test]
fn the_router_refuses_ambiguous_hosts_and_replaces_spoofed_forwarding_headers() {
    let Some(d) = echo_app("", "edge headers") else {
        return;
    };
    let port = d.router().port().to_string();

    for (request, says) in [
        (
            format!("GET /dup HTTP/1.1\r\nHost: {HOST}\r\nHost: other.example\r\nConnection: close\r\n\r\n"),
            "more than one Host header",
        ),
        (
            format!("GET /same HTTP/1.1\r\nHost: {HOST}\r\nHost: {HOST}\r\nConnection: close\r\n\r\n"),
            "more than one Host header",
        ),
        (
            format!("GET http://{HOST}/abs HTTP/1.1\r\nHost: other.example\r\nConnection: close\r\n\r\n"),
            "disagrees",
        ),
        (
            format!("GET /comma HTTP/1.1\r\nHost: {HOST}, other.example\r\nConnection: close\r\n\r\n"),
            "malformed",
        ),
    ] {
        let (status, body) = raw(&d, &request);
        assert_eq!(status, 400, "{request:?}: {body}");
        assert!(body.contains(says), "{request:?}: {body}");
    }

    let (h, paths) = echo(&d, "/spoof", SPOOFED);
    assert_eq!(paths, ["/spoof"], "a refused request reached the app");
    assert_eq!(one(&h, "x-forwarded-for"), "127.0.0.1");
    assert_eq!(one(&h, "x-real-ip"), "127.0.0.1");
    assert_eq!(one(&h, "x-forwarded-proto"), "http");
    assert_eq!(one(&h, "x-forwarded-port"), port);
    assert_eq!(one(&h, "x-forwarded-host"), HOST);
    assert_eq!(
        one(&h, "forwarded"),
        format!("for=127.0.0.1;host={HOST};proto=http")
    );
    assert_eq!(one(&h, "host"), HOST);
}

#[test]
fn a_trusted_proxys_forwarding_headers_are_kept_and_appended() {
    let Some(d) = echo_app(
        "[router]\ntrusted_proxies = [\"127.0.0.1/32\", \"fd00::/8\"]\n",
        "edge headers, trusted",
    ) else {
        return;
    };
    let (h, _) = echo(&d, "/via-proxy", SPOOFED);
    assert_eq!(one(&h, "x-forwarded-for"), "203.0.113.9, 127.0.0.1");
    assert_eq!(one(&h, "x-real-ip"), "203.0.113.9");
    assert_eq!(one(&h, "x-forwarded-proto"), "https");
    assert_eq!(one(&h, "x-forwarded-port"), "443");
    assert_eq!(
        one(&h, "forwarded"),
        format!("for=203.0.113.9;proto=https, for=127.0.0.1;host={HOST};proto=http")
    );
    // Duplicate Host is refused from a trusted proxy too.
    let (status, body) = raw(
        &d,
        &format!("GET / HTTP/1.1\r\nHost: {HOST}\r\nHost: x\r\nConnection: close\r\n\r\n"),
    );
    assert_eq!(status, 400, "{body}");
}
