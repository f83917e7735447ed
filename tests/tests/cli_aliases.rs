//! Issue 12 ("House"): Heroku and dokku command names against the real paasd (`config`,
//! `config:set/unset/get`, `ps:scale/restart/report`, `apps:info`, `releases:rollback`,
//! `logs --tail`), and the mends a new user ran into: scaling an unknown process type, the
//! running formation in `info`, an empty `env`, an app's own default domain, `restart` of
//! a missing app, a doubled "Released vN", and where to look after a failed start.

#![forbid(unsafe_code)]

use std::time::{Duration, Instant};

use paas_tests::{db_snapshot, have_root, Daemon, Run};

fn both(r: &Run) -> String {
    format!("{}{}", r.stdout, r.stderr)
}

#[test]
fn config_aliases_set_get_and_unset_config_vars() {
    let d = Daemon::start();
    d.paas(&["create", "cfg"]).ok();

    // No vars: said on stderr, nothing on stdout, exit 0; --json still the daemon's answer.
    let empty = d.paas(&["config", "cfg"]);
    assert_eq!(empty.ok(), "", "{empty:#?}");
    assert!(
        empty.stderr.contains("cfg has no config vars"),
        "{empty:#?}"
    );
    let json = d.paas(&["--json", "env", "cfg"]).json();
    assert_eq!(json["vars"], serde_json::json!({}), "{json:#}");

    let set = d.paas(&["config:set", "cfg", "A=1", "DB_PASSWORD=s3c=r t"]);
    set.ok();
    assert!(
        set.stderr
            .contains("Setting A, DB_PASSWORD on cfg... done, v2"),
        "{set:#?}"
    );
    // config:get prints the raw value (secrets unredacted), newline-terminated, nothing else.
    assert_eq!(
        d.paas(&["config:get", "cfg", "DB_PASSWORD"]).ok(),
        "s3c=r t\n"
    );
    assert_eq!(d.paas(&["config:get", "cfg", "A"]).ok(), "1\n");
    assert_eq!(d.paas(&["env", "get", "cfg", "A"]).ok(), "1\n");
    let missing = d.paas(&["config:get", "cfg", "NOPE"]);
    missing.fails(1, "NOPE is not set on cfg");
    assert_eq!(missing.stdout, "");
    d.paas(&["config:get", "nosuch", "A"])
        .fails(1, "app 'nosuch' does not exist");

    let listed = d.paas(&["config", "cfg"]);
    assert!(
        listed.ok().contains("A=1\n") && listed.ok().contains("DB_PASSWORD=[REDACTED]\n"),
        "{listed:#?}"
    );
    d.paas(&["config:unset", "cfg", "A"]).ok();
    d.paas(&["config:get", "cfg", "A"])
        .fails(1, "A is not set on cfg");
    let releases = d.paas(&["--json", "releases", "cfg"]).json();
    assert_eq!(releases[0]["version"], 3, "{releases:#}");

    // An unknown verb of a known topic names the ones it has; nothing is sent.
    let before = db_snapshot(&d.db());
    d.paas(&["config:foo", "cfg"])
        .fails(2, "config:set, config:unset, config:get");
    d.paas(&["ps:nosuch", "cfg"])
        .fails(2, "ps:report, ps:scale, ps:restart");
    d.paas(&["apps:nope"])
        .fails(2, "apps:list, apps:create, apps:info, apps:destroy");
    assert_eq!(before, db_snapshot(&d.db()));

    let info = d.paas(&["apps:info", "cfg"]);
    assert!(
        info.ok().contains("name") && info.ok().contains("cfg"),
        "{info:#?}"
    );
}

#[test]
fn ps_aliases_restart_and_domains_of_an_undeployed_app() {
    let d = Daemon::start();
    d.paas(&["create", "s"]).ok();

    // Before the first build any valid process type may be scaled (see ARCHITECTURE).
    let scaled = d.paas(&["ps:scale", "s", "web=2"]);
    assert!(scaled.stderr.contains("now web=2"), "{scaled:#?}");
    d.paas(&["ps:scale", "s", "worker=1"]).ok();
    let info = d.paas(&["info", "s", "--json"]).json();
    assert_eq!(
        info["formation"],
        serde_json::json!({"web": 2, "worker": 1})
    );
    // Nothing runs: info says so per type.
    let human = d.paas(&["info", "s"]);
    assert!(
        human
            .ok()
            .contains("web: 2 wanted, 0 up; worker: 1 wanted, 0 up"),
        "{human:#?}"
    );
    let report = d.paas(&["ps:report", "s"]);
    assert_eq!(report.ok(), "");
    assert!(
        report.stderr.contains("s has no instances running"),
        "{report:#?}"
    );

    let before = db_snapshot(&d.db());
    // The app's own default domain, in any case and with a trailing dot.
    for own in ["s.paas.localhost", "S.Paas.LOCALHOST."] {
        d.paas(&["domains:add", "s", own])
            .fails(1, "is the default domain of 's'");
    }
    for spaced in ["my domain", "www.exa mple.com"] {
        d.paas(&["domains", "add", "s", spaced])
            .fails(1, "contains a space");
    }
    // A missing app is said before anything suggests it is being restarted.
    for args in [
        &["restart", "nosuch"][..],
        &["ps:restart", "nosuch"],
        &["releases:rollback", "nosuch", "v1"],
    ] {
        let r = d.paas(args);
        r.fails(1, "app 'nosuch' does not exist");
        assert!(
            !r.stderr.contains("Restarting") && !r.stderr.contains("Rolling back"),
            "{r:#?}"
        );
    }
    assert_eq!(before, db_snapshot(&d.db()), "nothing was written");
    d.paas(&["domains:add", "s", "www.example.com"]).ok();

    // `logs --tail N` (the older spelling) counts and ends; `--tail` alone follows (Heroku).
    d.paas(&["logs", "s", "--tail", "5"]).ok();
    d.paas(&["logs", "s", "-n", "5"]).ok();
    let mut follow = d.spawn_paas(&["logs", "s", "--tail"]);
    std::thread::sleep(Duration::from_millis(1500));
    assert!(follow.running(), "logs --tail follows");
    drop(follow);
}

const PROCFILE: &str = "web: python3 -m http.server $PORT\nworker: sleep 1000\n";

fn deploy(d: &Daemon, app: &str, procfile: &str) -> Run {
    let dir = tempfile::tempdir().expect("dir");
    std::fs::write(dir.path().join("Procfile"), procfile).expect("procfile");
    d.paas(&["deploy", app, "--source", &dir.path().display().to_string()])
}

#[test]
fn scale_knows_the_release_s_process_types_and_info_shows_what_runs() {
    if !have_root("scale_knows_the_release_s_process_types") {
        return;
    }
    let d = Daemon::start();
    d.paas(&["create", "pt"]).ok();
    // A type scaled before the first build and not in the Procfile.
    d.paas(&["scale", "pt", "old=1"]).ok();
    let first = deploy(&d, "pt", PROCFILE);
    assert!(first.status.success(), "{first:#?}\n{}", d.log_text());
    // "Released v2" once, not also as paasd's own build line.
    assert_eq!(both(&first).matches("Released v2").count(), 1, "{first:#?}");

    let info = d.paas(&["info", "pt", "--json"]).json();
    assert_eq!(
        info["formation"],
        serde_json::json!({"web": 1, "worker": 0}),
        "the release's types, web=1 by default"
    );
    d.paas(&["ps:scale", "pt", "nosuch=1"]).fails(
        1,
        "unknown process type 'nosuch': v2 of pt runs web, worker",
    );
    d.paas(&["scale", "pt", "web=2", "release=1"])
        .fails(1, "unknown process type 'release'");
    d.paas(&["scale", "pt", "old=1"])
        .fails(1, "unknown process type 'old'");
    // What was stored before the build can still be cleared.
    d.paas(&["scale", "pt", "old=0"]).ok();
    let info = d.paas(&["info", "pt", "--json"]).json();
    assert_eq!(
        info["formation"],
        serde_json::json!({"web": 1, "worker": 0})
    );

    d.paas(&["ps:scale", "pt", "worker=1"]).ok();
    let deadline = Instant::now() + Duration::from_secs(60);
    let shown = loop {
        let shown = d.paas(&["info", "pt"]).ok().to_string();
        if shown.contains("web: 1 wanted, 1 up; worker: 1 wanted, 1 up") {
            break shown;
        }
        assert!(Instant::now() < deadline, "{shown}");
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(shown.contains("formation"), "{shown}");
    let ps = d.paas(&["ps:report", "pt"]);
    assert!(
        ps.ok().contains("web.1") && ps.ok().contains("worker.1"),
        "{ps:#?}"
    );
    let restarted = d.paas(&["ps:restart", "pt"]);
    assert!(restarted.stderr.contains("Restarted pt"), "{restarted:#?}");

    // A start that fails points at the instance's logs.
    let failed = deploy(&d, "pt", "web: exit 3\nworker: sleep 1000\n");
    assert_eq!(failed.code(), 1, "{failed:#?}");
    assert!(
        failed.stderr.contains("web.1 exited with code 3")
            && failed
                .stderr
                .trim_end()
                .ends_with("paas logs pt --ps web.1"),
        "{failed:#?}"
    );
    // releases:rollback makes a new release (v4) with v2's build (v3 is the failed deploy).
    let back = d.paas(&["releases:rollback", "pt", "v2"]);
    assert!(back.ok().contains("pt: now v4"), "{back:#?}");
}
