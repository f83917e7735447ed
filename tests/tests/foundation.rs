//! Issue 2: the real paasd on a temp socket and state dir, driven by the real `paas` CLI and
//! the paas-api client. Checks what a user sees: output, exit codes, error messages, and
//! that bad input leaves the database untouched.

#![forbid(unsafe_code)]

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use paas_api::{Method, StatusCode};
use paas_tests::{bin, db_snapshot, Daemon, Run};

type Case = (
    Method,
    &'static str,
    Vec<u8>,
    StatusCode,
    &'static str,
    &'static str,
);

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

#[test]
fn app_lifecycle_through_the_cli() {
    let d = Daemon::start();
    let created = d.paas(&["create", "hello"]);
    assert!(
        created.stdout.contains("http://hello.paas.localhost"),
        "{created:#?}"
    );
    assert!(
        created.stderr.contains("Creating hello... done"),
        "{created:#?}"
    );
    d.paas(&["apps:create", "other"]).ok();

    let list = d.paas(&["apps", "--json"]).json();
    let names: Vec<&str> = list
        .as_array()
        .expect("array")
        .iter()
        .map(|a| a["name"].as_str().expect("name"))
        .collect();
    assert_eq!(names, ["hello", "other"]);
    let table = d.paas(&["apps", "list"]);
    assert!(
        table
            .ok()
            .lines()
            .any(|l| l.starts_with("hello") && l.contains("v1")),
        "{table:#?}"
    );

    let info = d.paas(&["apps", "info", "hello", "--json"]).json();
    assert_eq!(info["name"], "hello");
    assert_eq!(info["status"], "created");
    assert_eq!(info["release"], 1, "every app starts with v1");
    assert_eq!(info["stack"], "host");

    // Destroy wants the name repeated; nothing is sent otherwise.
    d.paas(&["apps", "destroy", "hello"])
        .fails(2, "--confirm hello");
    d.paas(&["apps", "destroy", "hello", "--confirm", "other"])
        .fails(2, "--confirm hello");
    d.paas(&["apps", "info", "hello"]).ok();
    let gone = d.paas(&["apps", "destroy", "hello", "--confirm", "hello"]);
    assert!(
        gone.stderr.contains("Destroying hello... done"),
        "{gone:#?}"
    );
    d.paas(&["apps", "info", "hello"])
        .fails(1, "app 'hello' does not exist");
    d.paas(&["env", "hello"])
        .fails(1, "app 'hello' does not exist");

    // The name is free again and starts from v1 with no leftovers.
    d.paas(&["create", "hello"]).ok();
    let info = d.paas(&["info", "hello", "--json"]).json();
    assert_eq!(info["release"], 1);
    assert_eq!(
        d.paas(&["env", "hello", "--json"]).json()["vars"],
        serde_json::json!({})
    );
}

#[test]
fn config_vars_releases_redaction_and_reveal() {
    let d = Daemon::start();
    d.paas(&["create", "web"]).ok();
    let set = d.paas(&[
        "env",
        "set",
        "web",
        "DATABASE_URL=postgres://u@h/db?a=b",
        "DB_PASSWORD=hunter2",
        "api_token=t0k",
    ]);
    assert!(set.stderr.contains("done, v2"), "{set:#?}");

    let env = d.paas(&["env", "web", "--json"]).json();
    assert_eq!(
        env["vars"]["DATABASE_URL"], "postgres://u@h/db?a=b",
        "value split at the first '='"
    );
    assert_eq!(env["vars"]["DB_PASSWORD"], "[REDACTED]");
    assert_eq!(env["vars"]["api_token"], "[REDACTED]");
    let human = d.paas(&["env", "web"]);
    assert!(!human.stdout.contains("hunter2"), "{human:#?}");
    let revealed = d.paas(&["env", "web", "--reveal", "--json"]).json();
    assert_eq!(revealed["vars"]["DB_PASSWORD"], "hunter2");
    assert_eq!(revealed["redacted"], serde_json::json!([]));

    let unset = d.paas(&["env", "unset", "web", "api_token"]);
    assert!(unset.stderr.contains("done, v3"), "{unset:#?}");
    // Setting the same value again changes nothing and makes no release.
    let same = d.paas(&["env", "set", "web", "DB_PASSWORD=hunter2"]);
    assert!(same.stderr.contains("no change"), "{same:#?}");
    d.paas(&["env", "set", "web", "DB_PASSWORD=changed"]).ok();

    let releases = d.paas(&["releases", "web", "--json"]).json();
    let versions: Vec<u64> = releases
        .as_array()
        .expect("array")
        .iter()
        .map(|r| r["version"].as_u64().expect("version"))
        .collect();
    assert_eq!(versions, [4, 3, 2, 1], "newest first, one per change");
    assert_eq!(releases[1]["description"], "Remove api_token config var");
    assert_eq!(releases[3]["description"], "Initial release");
    assert_eq!(
        releases[0]["config_keys"],
        serde_json::json!(["DATABASE_URL", "DB_PASSWORD"])
    );
    let table = d.paas(&["releases", "web"]);
    assert!(table.ok().contains("v4"), "{table:#?}");

    // No plaintext value in any file of the state dir (database, WAL, ...) or the .dump.
    let mut on_disk = Vec::new();
    for entry in std::fs::read_dir(d.state_dir()).expect("state dir") {
        let path = entry.expect("entry").path();
        if path.is_file() {
            on_disk.extend(std::fs::read(&path).expect("read"));
        }
    }
    assert!(on_disk.len() > 4096, "read no database");
    for secret in ["hunter2", "changed", "postgres://u@h", "t0k"] {
        assert!(
            !on_disk
                .windows(secret.len())
                .any(|w| w == secret.as_bytes()),
            "{secret} stored in plaintext"
        );
    }
    match std::process::Command::new("sqlite3")
        .arg(d.db())
        .arg(".dump")
        .output()
    {
        Ok(out) => {
            assert!(out.status.success(), "sqlite3 .dump failed");
            let dump = String::from_utf8_lossy(&out.stdout);
            assert!(
                dump.contains("CREATE TABLE config_vars"),
                "dump looks empty"
            );
            for secret in ["hunter2", "changed", "postgres://u@h"] {
                assert!(!dump.contains(secret), "{secret} visible in .dump");
            }
        }
        Err(e) => assert!(
            std::env::var_os("CI").is_none(),
            "sqlite3 missing in CI: {e}"
        ),
    }
    let key = std::fs::metadata(d.state_dir().join("secret.key")).expect("key file");
    assert_eq!(key.permissions().mode() & 0o777, 0o600);
    assert_eq!(key.len(), 32);
}

#[test]
fn domains_belong_to_one_app() {
    let d = Daemon::start();
    d.paas(&["create", "a"]).ok();
    d.paas(&["create", "b"]).ok();
    d.paas(&["domains", "add", "a", "WWW.Example.COM."]).ok();
    assert_eq!(
        d.paas(&["domains", "a"]).ok().trim(),
        "www.example.com",
        "normalised"
    );
    d.paas(&["domains", "add", "b", "www.example.com"])
        .fails(1, "already attached to app 'a'");
    // Another app's default URL cannot be taken as a custom domain.
    d.paas(&["domains", "add", "a", "b.paas.localhost"])
        .fails(1, "already attached to app 'b'");
    for bad in [
        "localhost",
        "-x.com",
        "a..b",
        "1.2.3.4",
        "exa mple.com",
        "x_y.com",
    ] {
        d.paas(&["domains", "add", "a", "--", bad])
            .fails(1, "invalid domain");
    }
    d.paas(&["domains", "remove", "b", "www.example.com"])
        .fails(1, "not attached to app 'b'");
    d.paas(&["domains", "remove", "a", "www.example.com"]).ok();
    d.paas(&["domains:add", "b", "www.example.com"]).ok();
    let info = d.paas(&["info", "b", "--json"]).json();
    assert_eq!(info["domains"], serde_json::json!(["www.example.com"]));
    assert_eq!(
        info["urls"],
        serde_json::json!(["http://b.paas.localhost", "http://www.example.com"])
    );
    // Destroying an app frees its domains.
    d.paas(&["destroy", "b", "--confirm", "b"]).ok();
    d.paas(&["domains", "add", "a", "www.example.com"]).ok();
}

#[test]
fn scale_stores_the_formation() {
    let d = Daemon::start();
    d.paas(&["create", "s"]).ok();
    let out = d.paas(&["scale", "s", "web=2", "worker=1"]);
    assert!(out.stderr.contains("web=2 worker=1"), "{out:#?}");
    d.paas(&["scale", "s", "--instances", "3"]).ok();
    let info = d.paas(&["info", "s", "--json"]).json();
    assert_eq!(
        info["formation"],
        serde_json::json!({"web": 3, "worker": 1})
    );
    d.paas(&["scale", "s", "web=-1"])
        .fails(1, "between 0 and 100, got -1");
    d.paas(&["scale", "s", "web=1000000"])
        .fails(1, "between 0 and 100, got 1000000");
    d.paas(&["scale", "s", "web=abc"]).fails(2, "");
    d.paas(&["scale", "s", "bad.type=1"])
        .fails(1, "invalid process type");
    let info = d.paas(&["info", "s", "--json"]).json();
    assert_eq!(
        info["formation"],
        serde_json::json!({"web": 3, "worker": 1}),
        "unchanged"
    );
    // Scaling is not a release (Heroku semantics).
    assert_eq!(info["release"], 1);
}

#[test]
fn state_survives_a_daemon_restart() {
    let mut d = Daemon::start();
    d.paas(&["create", "keep"]).ok();
    d.paas(&["env", "set", "keep", "SECRET_KEY=s3cr3t"]).ok();
    d.paas(&["domains", "add", "keep", "keep.example.org"]).ok();
    d.paas(&["scale", "keep", "web=2"]).ok();
    let before = d.paas(&["info", "keep", "--json"]).json();

    let status = d.stop();
    assert!(status.success(), "SIGTERM must exit 0, got {status}");
    assert!(!d.socket().exists(), "socket removed on shutdown");
    d.paas(&["apps"]).fails(3, "does not exist");

    d.restart();
    assert_eq!(d.paas(&["info", "keep", "--json"]).json(), before);
    let env = d.paas(&["env", "keep", "--reveal", "--json"]).json();
    assert_eq!(
        env["vars"]["SECRET_KEY"], "s3cr3t",
        "decrypts with the persisted key"
    );
    let releases = d.paas(&["releases", "keep", "--json"]).json();
    assert_eq!(releases[0]["version"], 2);
}

#[test]
fn a_second_daemon_is_refused_and_a_stale_socket_replaced() {
    let mut d = Daemon::start();
    // Same socket and state dir: refused, and the first keeps serving.
    let second = Run::of(&mut d.command());
    assert!(!second.status.success());
    assert!(second.stderr.contains("another paasd"), "{second:#?}");
    d.paas(&["apps"]).ok();

    // Kill -9 leaves a stale socket behind; the next start replaces it.
    let pid = nix::unistd::Pid::from_raw(
        std::fs::read_to_string(d.state_dir().join("paasd.lock"))
            .expect("lock file has the pid")
            .trim()
            .parse()
            .expect("pid"),
    );
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL).expect("kill");
    d.stop(); // reaps the killed child
    assert!(d.socket().exists(), "stale socket left by SIGKILL");
    d.paas(&["apps"]).fails(3, "not running");
    d.restart();
    d.paas(&["apps"]).ok();

    // A regular file where the socket should be is never deleted.
    d.stop();
    std::fs::write(d.socket(), "not a socket").expect("write");
    let refused = Run::of(&mut d.command());
    assert!(!refused.status.success());
    assert!(refused.stderr.contains("is not a socket"), "{refused:#?}");
    assert_eq!(
        std::fs::read_to_string(d.socket()).expect("kept"),
        "not a socket"
    );
}

#[test]
fn bad_input_is_refused_with_a_clear_message_and_changes_nothing() {
    let d = Daemon::start();
    d.paas(&["create", "base"]).ok();
    d.paas(&["env", "set", "base", "A=1"]).ok();
    d.paas(&["domains", "add", "base", "taken.example.com"])
        .ok();
    let before = db_snapshot(&d.db());

    // Through the CLI: exit 1, the server's message on stderr.
    let long = "a".repeat(64);
    for name in ["MyApp", long.as_str(), "..", "-x", "a_b"] {
        d.paas(&["create", "--", name]).fails(1, "invalid app name");
    }
    d.paas(&["create", ""]).fails(1, "invalid app name ''");
    d.paas(&["create", "base"])
        .fails(1, "app 'base' already exists");
    d.paas(&["info", "nope"])
        .fails(1, "app 'nope' does not exist");
    d.paas(&["env", "set", "nope", "A=1"])
        .fails(1, "app 'nope' does not exist");
    d.paas(&["env", "set", "base", "1ABC=x"])
        .fails(1, "invalid config var name '1ABC'");
    d.paas(&["env", "set", "base", "OK=1", "BAD-KEY=2"])
        .fails(1, "invalid config var name 'BAD-KEY'");
    d.paas(&["env", "set", "base", "noequals"])
        .fails(2, "KEY=VALUE");
    d.paas(&["domains", "add", "base", "not a domain"])
        .fails(1, "invalid domain");
    d.paas(&["domains", "add", "nope", "x.example.com"])
        .fails(1, "does not exist");
    d.paas(&["scale", "base", "web=-5"])
        .fails(1, "between 0 and 100");

    // Through the raw API: status code and error code for what the CLI cannot send.
    let rt = rt();
    let c = d.client();
    let send = |method: Method, path: &str, body: Vec<u8>| {
        rt.block_on(async {
            let resp = c
                .send(method, path, Some(body.into()), "application/json")
                .await
                .expect("request");
            let status = resp.status();
            let bytes = http_body_util::BodyExt::collect(resp.into_body())
                .await
                .expect("body")
                .to_bytes();
            let v: serde_json::Value = serde_json::from_slice(&bytes).expect("error body is JSON");
            (
                status,
                v["error"]["code"].as_str().unwrap_or("").to_string(),
                v["error"]["message"].as_str().unwrap_or("").to_string(),
            )
        })
    };
    // (method, path, body, expected status, expected error code, text the message must contain)
    let cases: Vec<Case> = vec![
        (
            Method::POST,
            "/api/v1/apps",
            b"{\"name\":".to_vec(),
            StatusCode::BAD_REQUEST,
            "invalid_json",
            "not valid JSON",
        ),
        (
            Method::POST,
            "/api/v1/apps",
            b"".to_vec(),
            StatusCode::BAD_REQUEST,
            "invalid_json",
            "empty",
        ),
        (
            Method::POST,
            "/api/v1/apps",
            b"{\"nam\":\"x\"}".to_vec(),
            StatusCode::BAD_REQUEST,
            "invalid_json",
            "unknown field",
        ),
        (
            Method::POST,
            "/api/v1/apps",
            b"{\"name\":\"UP\"}".to_vec(),
            StatusCode::BAD_REQUEST,
            "invalid_name",
            "invalid app name",
        ),
        (
            Method::POST,
            "/api/v1/apps",
            format!("{{\"name\":\"{}\"}}", "a".repeat(2 * 1024 * 1024)).into_bytes(),
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
            "limit",
        ),
        (
            Method::POST,
            "/api/v1/apps",
            format!("{}{}", "[".repeat(10_000), "]".repeat(10_000)).into_bytes(),
            StatusCode::BAD_REQUEST,
            "invalid_json",
            "nested deeper",
        ),
        (
            Method::POST,
            "/api/v1/apps",
            b"{\"name\":\"x\",\"stack\":\"nope\"}".to_vec(),
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "unknown stack",
        ),
        (
            Method::PATCH,
            "/api/v1/apps/base/env",
            b"{\"A=B\":\"x\"}".to_vec(),
            StatusCode::BAD_REQUEST,
            "invalid_config_var",
            "'A=B'",
        ),
        (
            Method::PATCH,
            "/api/v1/apps/base/env",
            b"{\"A\":\"x\\u0000y\"}".to_vec(),
            StatusCode::BAD_REQUEST,
            "invalid_config_var",
            "NUL",
        ),
        (
            Method::PATCH,
            "/api/v1/apps/base/env",
            b"{}".to_vec(),
            StatusCode::BAD_REQUEST,
            "invalid_config_var",
            "no config vars",
        ),
        (
            Method::PATCH,
            "/api/v1/apps/base/env",
            b"[\"A\"]".to_vec(),
            StatusCode::BAD_REQUEST,
            "invalid_json",
            "wrong shape",
        ),
        (
            Method::POST,
            "/api/v1/apps/base/scale",
            b"{\"web\":-1}".to_vec(),
            StatusCode::BAD_REQUEST,
            "invalid_formation",
            "got -1",
        ),
        (
            Method::POST,
            "/api/v1/apps/base/scale",
            b"{\"web\":1e12}".to_vec(),
            StatusCode::BAD_REQUEST,
            "invalid_formation",
            "whole number",
        ),
        (
            Method::POST,
            "/api/v1/apps/base/scale",
            b"{\"web\":99999999999}".to_vec(),
            StatusCode::BAD_REQUEST,
            "invalid_formation",
            "between 0 and 100",
        ),
        (
            Method::POST,
            "/api/v1/apps/base/scale",
            b"{\"web\":1,\"instances\":2}".to_vec(),
            StatusCode::BAD_REQUEST,
            "invalid_formation",
            "not both",
        ),
        (
            Method::POST,
            "/api/v1/apps/base/domains",
            b"{\"domain\":\"taken.example.com\"}".to_vec(),
            StatusCode::CONFLICT,
            "domain_taken",
            "already attached",
        ),
        (
            Method::POST,
            "/api/v1/apps/base/domains",
            b"{\"domain\":\"a/b\"}".to_vec(),
            StatusCode::BAD_REQUEST,
            "invalid_domain",
            "invalid domain",
        ),
        (
            Method::GET,
            "/api/v1/apps/..",
            vec![],
            StatusCode::BAD_REQUEST,
            "invalid_name",
            "invalid app name",
        ),
        (
            Method::GET,
            "/api/v1/apps/a%2F..",
            vec![],
            StatusCode::BAD_REQUEST,
            "invalid_name",
            "invalid app name",
        ),
        (
            Method::GET,
            "/api/v1/apps/ghost/releases",
            vec![],
            StatusCode::NOT_FOUND,
            "app_not_found",
            "does not exist",
        ),
        (
            Method::GET,
            "/api/v1/nothing",
            vec![],
            StatusCode::NOT_FOUND,
            "not_found",
            "no such endpoint",
        ),
        (
            Method::PUT,
            "/api/v1/apps",
            vec![],
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            "GET, POST",
        ),
    ];
    for (method, path, body, status, code, needle) in cases {
        let (got_status, got_code, message) = send(method.clone(), path, body);
        assert_eq!(
            (got_status, got_code.as_str()),
            (status, code),
            "{method} {path}: {message}"
        );
        assert!(
            message.contains(needle),
            "{method} {path}: {message:?} lacks {needle:?}"
        );
    }

    assert_eq!(
        db_snapshot(&d.db()),
        before,
        "a refused request changed the database"
    );
    d.paas(&["apps"]).ok();
}

#[test]
fn fifty_concurrent_clients_with_one_holding_a_connection() {
    let d = Daemon::start();
    d.paas(&["create", "busy"]).ok();
    // One client sends half a request and then sits on the connection.
    let mut holder = std::os::unix::net::UnixStream::connect(d.socket()).expect("connect");
    holder
        .write_all(b"GET /api/v1/apps HTTP/1.1\r\nHost: x\r\n")
        .expect("partial write");

    let rt = rt();
    let client = d.client();
    let answers = rt.block_on(async {
        let tasks: Vec<_> = (0..50)
            .map(|i| {
                let c = client.clone();
                tokio::spawn(async move {
                    if i % 2 == 0 {
                        c.get::<Vec<paas_api::App>>("/api/v1/apps")
                            .await
                            .map(|a| a.len())
                    } else {
                        c.get::<paas_api::App>("/api/v1/apps/busy").await.map(|_| 1)
                    }
                })
            })
            .collect();
        let mut ok = 0;
        for t in tasks {
            let r = tokio::time::timeout(Duration::from_secs(30), t)
                .await
                .expect("a client got no answer within 30 s")
                .expect("task");
            assert_eq!(r.expect("answer"), 1);
            ok += 1;
        }
        ok
    });
    assert_eq!(answers, 50);

    // The held connection still completes its request when it finally sends the rest.
    holder
        .write_all(b"Connection: close\r\n\r\n")
        .expect("rest");
    let mut resp = String::new();
    std::io::Read::read_to_string(&mut holder, &mut resp).expect("read");
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    assert!(resp.contains("\"busy\""), "{resp}");
}

#[test]
fn unreachable_daemon_is_explained() {
    let dir = tempfile::tempdir().expect("tempdir");
    let missing = dir.path().join("none.sock");
    let out = Run::of(
        std::process::Command::new(bin("paas"))
            .arg("--socket")
            .arg(&missing)
            .arg("apps"),
    );
    out.fails(3, "is paasd running?");
    let via_env = Run::of(
        std::process::Command::new(bin("paas"))
            .env("PAAS_SOCKET", &missing)
            .args(["apps", "--json"]),
    );
    via_env.fails(3, missing.to_str().expect("utf-8 path"));
}

#[test]
fn oversized_chunked_body_gets_413_not_a_broken_pipe() {
    let d = Daemon::start();
    let mut s = std::os::unix::net::UnixStream::connect(d.socket()).expect("connect");
    s.write_all(
        b"POST /api/v1/apps HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
          Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n",
    )
    .expect("head");
    let chunk = vec![b' '; 64 * 1024];
    for _ in 0..40 {
        // 2.5 MiB in all, past the 1 MiB limit; the server must keep reading, then answer.
        s.write_all(format!("{:x}\r\n", chunk.len()).as_bytes())
            .expect("size");
        s.write_all(&chunk).expect("chunk");
        s.write_all(b"\r\n").expect("crlf");
    }
    s.write_all(b"0\r\n\r\n").expect("end");
    let mut resp = String::new();
    std::io::Read::read_to_string(&mut s, &mut resp).expect("read");
    assert!(resp.starts_with("HTTP/1.1 413"), "{resp}");
    assert!(resp.contains("body_too_large"), "{resp}");
    assert_eq!(d.paas(&["apps", "--json"]).json(), serde_json::json!([]));
}

#[test]
fn sigterm_finishes_the_request_in_flight() {
    let mut d = Daemon::start();
    d.paas(&["create", "inflight"]).ok();
    // A request whose body is still arriving when SIGTERM lands.
    let body = br#"{"name":"late"}"#;
    let mut s = std::os::unix::net::UnixStream::connect(d.socket()).expect("connect");
    s.write_all(
        format!(
            "POST /api/v1/apps HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        )
        .as_bytes(),
    )
    .expect("head");
    s.write_all(&body[..5]).expect("first bytes");
    std::thread::sleep(Duration::from_millis(200));
    let pid = d.pid();
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).expect("SIGTERM");
    std::thread::sleep(Duration::from_millis(300));
    // New connections are refused while the old one drains...
    assert!(
        std::os::unix::net::UnixStream::connect(d.socket()).is_err(),
        "still accepting after SIGTERM"
    );
    // ...and the one in flight completes.
    s.write_all(&body[5..]).expect("rest");
    let mut resp = String::new();
    std::io::Read::read_to_string(&mut s, &mut resp).expect("read");
    assert!(resp.starts_with("HTTP/1.1 201"), "{resp}");
    assert!(d.stop().success());
    d.restart();
    d.paas(&["info", "late"]).ok();
}
