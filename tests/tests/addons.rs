//! Issue 17: add-on services on our own runtime, with real PostgreSQL and Redis from the
//! host's Debian packages. Rows and keys written through the router survive redeploys,
//! `paas restart`, paasd restarts (the service is taken back, not restarted) and a full
//! stop; only linked apps reach a service; backups restore what was lost; bad input gets a
//! clear refusal.

#![forbid(unsafe_code)]

use std::time::{Duration, Instant};

use paas_tests::{have_root, repo_root, Daemon};
use serde_json::Value;

const BASE: &str = "paas.localhost";

fn host(app: &str) -> String {
    format!("{app}.{BASE}")
}

fn installed(what: &str) -> bool {
    let found = match what {
        "postgres" => std::fs::read_dir("/usr/lib/postgresql")
            .map(|rd| {
                rd.flatten()
                    .any(|e| e.path().join("bin/postgres").is_file())
            })
            .unwrap_or(false),
        _ => std::path::Path::new("/usr/bin/redis-server").is_file(),
    };
    if !found {
        eprintln!("skipping: {what} is not installed (scripts/test.sh installs it)");
    }
    found
}

fn addon(d: &Daemon, name: &str) -> Value {
    d.paas(&["--json", "addons", "info", name]).json()
}

/// The service's container's main process (its host pid), by its cgroup.
fn service_pids(d: &Daemon, name: &str) -> Vec<String> {
    d.cgroups()
        .iter()
        .filter(|cg| {
            cg.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with(&format!("addon-{name}-")))
        })
        .filter_map(|cg| std::fs::read_to_string(cg.join("cgroup.procs")).ok())
        .filter_map(|procs| procs.lines().next().map(str::to_string))
        // On cgroup v1 the same cgroup shows up in every hierarchy.
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect()
}

fn notes(d: &Daemon, app: &str) -> String {
    let (status, _, body) = d.http(&host(app), "/notes");
    assert_eq!(status, 200, "GET /notes: {body}\n{}", d.log_text());
    body
}

fn wait_for(what: &str, within: Duration, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !ok() {
        assert!(Instant::now() < deadline, "{what} within {within:?}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn a_postgres_addon_keeps_its_rows_through_redeploys_restarts_and_paasd_restarts() {
    if !have_root("addons_pg") || !installed("postgres") {
        return;
    }
    let mut d = Daemon::start();
    d.paas(&["apps", "create", "notes"]).ok();
    let began = Instant::now();
    let name = d
        .paas(&["addons", "create", "notes", "postgres"])
        .ok()
        .trim()
        .to_string();
    eprintln!("postgres add-on created in {:?}", began.elapsed());
    assert_eq!(name, "notes-postgres");
    let info = addon(&d, &name);
    assert_eq!(info["state"], "up", "{info}");
    assert_eq!(info["links"][0]["app"], "notes");
    assert_eq!(info["links"][0]["env_var"], "DATABASE_URL");
    let env = d.paas(&["--json", "env", "notes", "--reveal"]).json();
    let url = env["vars"]["DATABASE_URL"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(
        url.starts_with("postgres://postgres:") && url.ends_with("/notes_postgres"),
        "{url}"
    );

    // The release phase migrates; the app writes and reads through the router.
    let out = d.deploy_dir("notes", &repo_root().join("examples/python-postgres"));
    assert!(out.contains("migrated to 1"), "{out}");
    let (status, _, body) = d.http_request("POST", &host("notes"), "/notes", "first note");
    assert_eq!(status, 201, "{body}");
    assert!(notes(&d, "notes").contains("first note"));
    let q = d.paas(&["addons", "psql", &name, "-c", "SELECT body FROM notes"]);
    assert!(q.ok().contains("first note"), "{q:?}");

    // Redeploy: the migration has nothing to do, the row is there.
    let out = d.deploy_dir("notes", &repo_root().join("examples/python-postgres"));
    assert!(out.contains("schema up to date"), "{out}");
    assert!(notes(&d, "notes").contains("first note"));
    d.paas(&["restart", "notes"]).ok();
    assert!(notes(&d, "notes").contains("first note"));

    // A paasd restart takes the running service back: same process, same rows.
    let before = service_pids(&d, &name);
    assert_eq!(before.len(), 1, "{before:?}");
    d.stop();
    d.restart();
    assert_eq!(
        service_pids(&d, &name),
        before,
        "the service was not restarted"
    );
    wait_for("the add-on up again", Duration::from_secs(30), || {
        addon(&d, &name)["state"] == "up"
    });
    assert!(notes(&d, "notes").contains("first note"));
    let (status, _, _) = d.http_request("POST", &host("notes"), "/notes", "second note");
    assert_eq!(status, 201);

    // A full stop stops the database cleanly; the next start brings it up on its data.
    d.stop_all();
    assert!(service_pids(&d, &name).is_empty());
    d.restart();
    wait_for(
        "the add-on up after a full stop",
        Duration::from_secs(60),
        || addon(&d, &name)["state"] == "up",
    );
    wait_for("the app answering", Duration::from_secs(60), || {
        d.http(&host("notes"), "/notes").0 == 200
    });
    let body = notes(&d, "notes");
    assert!(
        body.contains("first note") && body.contains("second note"),
        "{body}"
    );
}
