//! Issue 13: app.json is read the way Heroku and dokku read it. Each test deploys a small
//! Procfile app (python3's http.server, nothing to install) with one part of app.json and
//! fails if that part were ignored: a malformed file fails the deploy with its line and
//! column, unknown keys warn once, `env` sets defaults and secrets once and refuses a
//! deploy missing a required var, `formation` starts the named quantities, predeploy and
//! postdeploy scripts run at their moments, and `cron` entries run in their minute. Real
//! paasd, real containers. Needs root (skips loudly otherwise; never skips under CI).

#![forbid(unsafe_code)]

use std::path::Path;
use std::time::{Duration, Instant};

use paas_tests::{have_root, Daemon, Run};
use serde_json::Value;

const BASE: &str = "paas.localhost";

/// Answers `GET /` with `$GREETING on $DYNO`; `worker` just stays up.
const SERVER: &str = r#"import os
from http.server import BaseHTTPRequestHandler, HTTPServer

class H(BaseHTTPRequestHandler):
    def do_GET(self):
        body = ("%s on %s\n" % (os.environ.get("GREETING", "hello"), os.environ.get("DYNO"))).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass

HTTPServer(("0.0.0.0", int(os.environ.get("PORT", "5000"))), H).serve_forever()
"#;

fn daemon(test: &str) -> Option<Daemon> {
    if !have_root(test) {
        return None;
    }
    Some(Daemon::start())
}

/// A Procfile app with `app_json` as its app.json (none when empty).
fn app(app_json: &str) -> tempfile::TempDir {
    let dir = tempfile::Builder::new()
        .prefix("paas-appjson-")
        .tempdir()
        .expect("temp dir");
    write(dir.path(), app_json);
    std::fs::write(dir.path().join("server.py"), SERVER).expect("server.py");
    std::fs::write(
        dir.path().join("Procfile"),
        "web: python3 server.py\nworker: python3 -c 'import time; time.sleep(100000)'\n",
    )
    .expect("Procfile");
    dir
}

fn write(dir: &Path, app_json: &str) {
    let path = dir.join("app.json");
    if app_json.is_empty() {
        let _ = std::fs::remove_file(path);
    } else {
        std::fs::write(path, app_json).expect("app.json");
    }
}

fn deploy(d: &Daemon, name: &str, dir: &Path) -> Run {
    d.paas(&["deploy", name, "--source", &dir.display().to_string()])
}

/// Deploys and asserts success; returns everything it printed.
fn deploy_ok(d: &Daemon, name: &str, dir: &Path) -> String {
    let r = deploy(d, name, dir);
    assert!(
        r.status.success(),
        "deploy failed: {r:#?}\nlog:\n{}",
        d.log_text()
    );
    format!("{}{}", r.stdout, r.stderr)
}

/// Deploys and asserts failure; returns everything it printed.
fn deploy_fails(d: &Daemon, name: &str, dir: &Path) -> String {
    let r = deploy(d, name, dir);
    assert_eq!(r.code(), 1, "the deploy must fail: {r:#?}");
    format!("{}{}", r.stdout, r.stderr)
}

fn body(d: &Daemon, name: &str) -> String {
    let (status, head, body) = d.http(&format!("{name}.{BASE}"), "/");
    assert_eq!(status, 200, "{head}\n{body}");
    body
}

fn env_get(d: &Daemon, name: &str, key: &str) -> String {
    d.paas(&["env", "get", name, key]).ok().trim().to_string()
}

fn count(list: &[Value], ptype: &str) -> usize {
    list.iter()
        .filter(|i| i["process_type"] == ptype && i["state"] == "up")
        .count()
}

#[test]
fn a_malformed_app_json_fails_the_deploy_with_line_and_column() {
    let Some(d) = daemon("malformed") else { return };
    d.paas(&["create", "bad"]).ok();
    let dir = app("{\n  \"name\": \"bad\",\n  \"env\": {\n    \"A\": 1\n  }\n}\n");
    let out = deploy_fails(&d, "bad", dir.path());
    assert!(
        out.contains("app.json line 4, column 10: "),
        "line and column of the bad value: {out}"
    );
    assert!(out.contains("a string (the value) or an object"), "{out}");
    assert!(
        !out.contains("Detecting buildpack"),
        "app.json is checked before any buildpack runs: {out}"
    );

    write(
        dir.path(),
        "{\n  \"name\": \"bad\"\n  \"formation\": {}\n}\n",
    );
    let out = deploy_fails(&d, "bad", dir.path());
    assert!(out.contains("app.json line 3, column 3: expected"), "{out}");
    let deploys = d.paas(&["--json", "releases", "bad"]).json();
    assert_eq!(
        deploys.as_array().map(Vec::len),
        Some(1),
        "no release made: {deploys}"
    );
}

#[test]
fn unknown_keys_warn_once_each_and_comments_are_accepted() {
    let Some(d) = daemon("unknown") else { return };
    d.paas(&["create", "unk"]).ok();
    let dir = app(r#"{
  // dokku and JSONC style comments are fine
  "name": "unk",
  "foo": {"bar": 1},
  "scripts": {"dokku": {"prebuild": "x"}},
  "addons": ["heroku-postgresql"],
  "formation": {"web": {"quantity": 1, "size": "standard-2x"}}
}"#);
    let out = deploy_ok(&d, "unk", dir.path());
    for want in [
        " !     app.json: unknown key \"foo\" is ignored",
        " !     app.json: unknown key \"scripts.dokku.prebuild\" is ignored",
        " !     app.json: \"addons\" is not supported here",
        " !     app.json: \"formation.web.size\" is not supported here",
    ] {
        assert_eq!(
            out.matches(want).count(),
            1,
            "exactly one {want:?} line in:\n{out}"
        );
    }
    assert!(!out.contains("\"name\""), "known keys do not warn: {out}");
    assert_eq!(body(&d, "unk"), "hello on web.1\n");
}

#[test]
fn a_required_env_var_missing_fails_the_deploy_naming_it() {
    let Some(d) = daemon("required") else { return };
    d.paas(&["create", "req"]).ok();
    let dir = app(r#"{"env": {
        "DATABASE_URL": {"description": "where the data lives"},
        "OPTIONAL": {"required": false},
        "GREETING": {"value": "from app.json"}
    }}"#);
    let out = deploy_fails(&d, "req", dir.path());
    assert!(
        out.contains("app.json requires config var DATABASE_URL (where the data lives)"),
        "{out}"
    );
    assert!(
        out.contains("`paas config:set req DATABASE_URL=...`"),
        "says how to set it: {out}"
    );
    assert!(
        !out.contains("OPTIONAL"),
        "optional keys are not asked for: {out}"
    );
    assert!(
        !out.contains("Detecting buildpack"),
        "fails before the build: {out}"
    );

    d.paas(&["config:set", "req", "DATABASE_URL=postgres://db/x"])
        .ok();
    deploy_ok(&d, "req", dir.path());
    assert_eq!(env_get(&d, "req", "GREETING"), "from app.json");
    assert_eq!(body(&d, "req"), "from app.json on web.1\n");
}

#[test]
fn a_generated_secret_is_made_once_and_defaults_never_override() {
    let Some(d) = daemon("secret") else { return };
    d.paas(&["create", "sec"]).ok();
    let dir = app(r#"{"env": {
        "SECRET_KEY_BASE": {"description": "signs cookies", "generator": "secret"},
        "GREETING": "hi"
    }}"#);
    let out = deploy_ok(&d, "sec", dir.path());
    assert!(
        out.contains(
            "app.json: setting config vars GREETING (default), SECRET_KEY_BASE (generated secret)"
        ),
        "{out}"
    );
    let secret = env_get(&d, "sec", "SECRET_KEY_BASE");
    assert_eq!(secret.len(), 64, "{secret}");
    assert!(secret.bytes().all(|b| b.is_ascii_hexdigit()), "{secret}");
    assert!(!out.contains(&secret), "the value is never printed");
    assert_eq!(body(&d, "sec"), "hi on web.1\n");

    // A value set by hand wins over the default, and the secret is kept.
    d.paas(&["config:set", "sec", "GREETING=mine"]).ok();
    let out = deploy_ok(&d, "sec", dir.path());
    assert!(!out.contains("setting config vars"), "{out}");
    assert_eq!(env_get(&d, "sec", "SECRET_KEY_BASE"), secret);
    assert_eq!(env_get(&d, "sec", "GREETING"), "mine");
    assert_eq!(body(&d, "sec"), "mine on web.1\n");
}

#[test]
fn formation_starts_the_named_quantities_until_scaled() {
    let Some(d) = daemon("formation") else { return };
    d.paas(&["create", "form"]).ok();
    let dir = app(r#"{"formation": {"web": {"quantity": 2}, "worker": {"quantity": 1}}}"#);
    deploy_ok(&d, "form", dir.path());
    let list = d.ps("form");
    assert_eq!(
        (count(&list, "web"), count(&list, "worker")),
        (2, 1),
        "{list:#?}"
    );
    let info = d.paas(&["--json", "apps", "info", "form"]).json();
    assert_eq!(info["formation"]["web"], 2, "{info}");

    // An explicit scale wins over app.json from then on.
    d.paas(&["scale", "form", "web=1"]).ok();
    deploy_ok(&d, "form", dir.path());
    let list = d.ps("form");
    assert_eq!(
        (count(&list, "web"), count(&list, "worker")),
        (1, 1),
        "{list:#?}"
    );
}

#[test]
fn a_failing_predeploy_keeps_the_old_release_serving() {
    let Some(d) = daemon("predeploy") else { return };
    d.paas(&["create", "pre"]).ok();
    let dir = app(r#"{"env": {"GREETING": {"value": "v1", "sync": true}},
        "scripts": {"dokku": {"predeploy": "test -f /app/server.py && echo predeploy-in-$GREETING"}}}"#);
    let out = deploy_ok(&d, "pre", dir.path());
    assert!(
        out.contains("predeploy-in-v1"),
        "predeploy runs on the new slug with the config: {out}"
    );
    assert_eq!(body(&d, "pre"), "v1 on web.1\n");

    write(
        dir.path(),
        r#"{"env": {"GREETING": {"value": "v2", "sync": true}},
        "scripts": {"dokku": {"predeploy": "echo predeploy-$((40+2)); exit 3"}}}"#,
    );
    let out = deploy_fails(&d, "pre", dir.path());
    assert!(out.contains("predeploy-42"), "its output is shown: {out}");
    assert!(
        out.contains(
            "the predeploy script failed (exit status 3); the previous release keeps running"
        ),
        "{out}"
    );
    assert_eq!(
        body(&d, "pre"),
        "v1 on web.1\n",
        "the old release serves on"
    );
    let releases = d.paas(&["--json", "releases", "pre"]).json();
    assert_eq!(releases[0]["status"], "failed", "{releases}");
}

#[test]
fn a_failing_postdeploy_is_reported_and_the_release_serves() {
    let Some(d) = daemon("postdeploy") else {
        return;
    };
    d.paas(&["create", "post"]).ok();
    let dir = app(r#"{"scripts": {
        "postdeploy": {"command": "echo first-deploy-$((1+1))"},
        "dokku": {"postdeploy": "echo post-$((2+2)); exit 4"}
    }}"#);
    let out = deploy_ok(&d, "post", dir.path());
    assert!(
        out.contains("first-deploy-2"),
        "Heroku's postdeploy ran: {out}"
    );
    assert!(out.contains("post-4"), "dokku's postdeploy ran: {out}");
    assert!(
        out.contains("the postdeploy script failed (exit status 4); v2 stays live"),
        "{out}"
    );
    assert_eq!(body(&d, "post"), "hello on web.1\n");
    let logs = d
        .paas(&["logs", "post", "--source", "platform"])
        .ok()
        .to_string();
    assert!(
        logs.contains("the postdeploy script failed (exit status 4)"),
        "in the platform log too: {logs}"
    );

    // Heroku's scripts.postdeploy is for the first deploy only.
    let out = deploy_ok(&d, "post", dir.path());
    assert!(!out.contains("first-deploy-2"), "{out}");
    assert!(out.contains("Skipping scripts.postdeploy"), "{out}");
    assert!(out.contains("post-4"), "dokku's runs every time: {out}");
}

#[test]
fn cron_entries_run_in_their_minute_and_log_as_cron() {
    let Some(d) = daemon("cron") else { return };
    d.paas(&["create", "tick"]).ok();
    let dir = app(r#"{"cron": [
        {"command": "echo cron-tick-$((40+2)) $GREETING", "schedule": "* * * * *"},
        {"command": "echo never", "schedule": "0 0 31 2 *"}
    ], "env": {"GREETING": "configured"}}"#);
    deploy_ok(&d, "tick", dir.path());
    let list = d.paas(&["--json", "cron", "tick"]).json();
    assert_eq!(list["entries"][0]["schedule"], "* * * * *", "{list}");
    assert_eq!(list["entries"][0]["process"], "cron.1", "{list}");
    assert_eq!(list["entries"][1]["next_run_at"], Value::Null, "{list}");

    // A once-a-minute entry runs within ~60 s (plus the container start).
    let deadline = Instant::now() + Duration::from_secs(80);
    let logs = loop {
        let logs = d
            .paas(&["logs", "tick", "--source", "cron"])
            .ok()
            .to_string();
        if logs.contains("cron-tick-42 configured") {
            break logs;
        }
        assert!(
            Instant::now() < deadline,
            "no cron output within 80 s: {logs}\nlog:\n{}",
            d.log_text()
        );
        std::thread::sleep(Duration::from_secs(1));
    };
    assert!(logs.contains("cron[cron.1]"), "{logs}");
    // The run is recorded once it ended.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let list = d.paas(&["--json", "cron", "tick"]).json();
        let run = &list["entries"][0]["last_run"];
        if run["outcome"] == "exited" {
            assert_eq!(run["exit_code"], 0, "{list}");
            assert!(list["entries"][1]["last_run"].is_null(), "{list}");
            break;
        }
        assert!(Instant::now() < deadline, "run not recorded: {list}");
        std::thread::sleep(Duration::from_millis(200));
    }
    let table = d.paas(&["cron:list", "tick"]).ok().to_string();
    assert!(
        table.contains("* * * * *") && table.contains("exit 0"),
        "{table}"
    );
}

#[test]
fn the_node_appjson_example_deploys_as_its_app_json_says() {
    let Some(d) = daemon("example") else { return };
    d.paas(&["create", "ex"]).ok();
    let src = paas_tests::repo_root().join("examples/node-appjson");
    let out = deploy_ok(&d, "ex", &src);
    for want in [
        "app.json: setting config vars GREETING (default), SESSION_SECRET (generated secret)",
        "predeploy: migrating",
        "postdeploy (first deploy only): loading seed data",
        "postdeploy: postdeploy.1 deployed; would tell nobody",
    ] {
        assert!(out.contains(want), "{want:?} missing in:\n{out}");
    }
    assert!(!out.contains(" !     "), "no warnings, no failures: {out}");
    let list = d.ps("ex");
    assert_eq!(
        (count(&list, "web"), count(&list, "worker")),
        (2, 1),
        "{list:#?}"
    );
    let b = body(&d, "ex");
    assert!(
        b.starts_with("Hello from node-appjson v1 (web.") && b.ends_with("secret set: true)\n"),
        "{b}"
    );
    let cron = d.paas(&["cron", "ex"]).ok().to_string();
    assert!(
        cron.contains("*/5 * * * *") && cron.contains("node tasks.js report"),
        "{cron}"
    );
}
