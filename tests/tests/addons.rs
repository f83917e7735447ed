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
    // Its data lives on a disk of its own (an ext4 image of --disk, 1 GB by default).
    assert_eq!(info["disk_mb"], 1024);
    assert!(
        info["disk_used_mb"]
            .as_u64()
            .is_some_and(|u| u > 0 && u < 1024),
        "{info}"
    );
    assert_eq!(d.mounts().len(), 1, "{:?}", d.mounts());
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
    assert!(d.mounts().is_empty(), "a full stop unmounts the data disk");
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

#[test]
fn a_redis_addon_keeps_its_keys_through_redeploys_and_paasd_restarts() {
    if !have_root("addons_redis") || !installed("redis") {
        return;
    }
    let mut d = Daemon::start();
    d.paas(&["apps", "create", "hits"]).ok();
    let name = d
        .paas(&["addons", "create", "hits", "redis", "--as", "hits-cache"])
        .ok()
        .trim()
        .to_string();
    assert_eq!(name, "hits-cache");
    let env = d.paas(&["--json", "env", "hits", "--reveal"]).json();
    assert!(
        env["vars"]["REDIS_URL"]
            .as_str()
            .is_some_and(|u| u.starts_with("redis://:") && u.ends_with(":6379")),
        "{env}"
    );
    d.deploy_dir("hits", &repo_root().join("examples/python-redis"));
    let h = host("hits");
    assert_eq!(d.http_request("PUT", &h, "/keys/greeting", "hello").0, 204);
    assert_eq!(d.http_request("POST", &h, "/counter", "").2.trim(), "1");
    assert_eq!(d.http_request("POST", &h, "/counter", "").2.trim(), "2");
    assert_eq!(
        d.paas(&["addons", "redis-cli", &name, "GET", "greeting"])
            .ok()
            .trim(),
        "hello"
    );

    d.deploy_dir("hits", &repo_root().join("examples/python-redis"));
    assert_eq!(d.http(&h, "/keys/greeting").2, "hello");
    let before = service_pids(&d, &name);
    d.stop();
    d.restart();
    assert_eq!(
        service_pids(&d, &name),
        before,
        "the service was not restarted"
    );
    assert_eq!(d.http_request("POST", &h, "/counter", "").2.trim(), "3");

    // A full stop: Redis saves on SIGTERM and replays its append-only file.
    d.stop_all();
    d.restart();
    wait_for(
        "the add-on up after a full stop",
        Duration::from_secs(60),
        || addon(&d, &name)["state"] == "up",
    );
    wait_for("the app answering", Duration::from_secs(60), || {
        d.http(&h, "/health").0 == 200
    });
    assert_eq!(d.http(&h, "/keys/greeting").2, "hello");
    assert_eq!(d.http_request("POST", &h, "/counter", "").2.trim(), "4");
}

/// What a one-off of `app` gets connecting to `addr`: "ok", "refused" or "timeout".
fn reach(d: &Daemon, app: &str, addr: &str) -> String {
    let (ip, port) = addr.split_once(':').expect("ip:port");
    let script = format!(
        "import socket\ns = socket.socket()\ns.settimeout(3)\ntry:\n    s.connect(({ip:?}, {port}))\n    print('ok')\nexcept ConnectionRefusedError:\n    print('refused')\nexcept OSError as e:\n    print('timeout' if 'timed out' in str(e) else 'error ' + str(e))\n"
    );
    d.paas(&["run", app, "--", "python3", "-c", &script])
        .ok()
        .trim()
        .to_string()
}

#[test]
fn only_linked_apps_reach_a_service_and_link_sets_the_url_with_a_new_release() {
    if !have_root("addons_links") || !installed("postgres") {
        return;
    }
    let d = Daemon::start();
    for app in ["owner", "other"] {
        d.paas(&["apps", "create", app]).ok();
    }
    d.paas(&["addons", "create", "owner", "postgres", "--as", "shared-db"])
        .ok();
    let addr = addon(&d, "shared-db")["address"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert_eq!(reach(&d, "owner", &addr), "ok");
    // "refused", not "timeout": a reset at once (the probe waits 3 s at most).
    assert_eq!(
        reach(&d, "other", &addr),
        "refused",
        "an app without the link"
    );

    let before = d.paas(&["--json", "releases", "other"]).json();
    d.paas(&["addons", "link", "shared-db", "other"]).ok();
    let after = d.paas(&["--json", "releases", "other"]).json();
    assert_eq!(
        after.as_array().map(Vec::len),
        before.as_array().map(|r| r.len() + 1),
        "linking made a release"
    );
    assert_eq!(reach(&d, "other", &addr), "ok");
    let env = d.paas(&["--json", "env", "other"]).json();
    assert!(env["vars"]["DATABASE_URL"].is_string(), "{env}");
    // A second postgres for the same app gets its own variable.
    d.paas(&["addons", "create", "other", "postgres", "--as", "other-db"])
        .ok();
    let env = d.paas(&["--json", "env", "other"]).json();
    assert!(env["vars"]["OTHER_DB_URL"].is_string(), "{env}");
    let q = d.paas(&["--json", "addons", "info", "shared-db"]).json();
    let mut apps: Vec<&str> = q["links"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|l| l["app"].as_str())
        .collect();
    apps.sort_unstable();
    assert_eq!(apps, ["other", "owner"]);

    d.paas(&["addons", "unlink", "shared-db", "other"]).ok();
    assert_eq!(reach(&d, "other", &addr), "refused", "after unlink");
    let env = d.paas(&["--json", "env", "other"]).json();
    assert!(env["vars"].get("DATABASE_URL").is_none(), "{env}");

    // Destroying an app takes its links out of the policy with it.
    d.paas(&["destroy", "owner", "--confirm", "owner"]).ok();
    let q = d.paas(&["--json", "addons", "info", "shared-db"]).json();
    assert_eq!(q["links"].as_array().map(Vec::len), Some(0), "{q}");
}

#[test]
fn backups_restore_what_was_lost_and_a_schedule_keeps_the_newest() {
    if !have_root("addons_backups") || !installed("postgres") || !installed("redis") {
        return;
    }
    let d = Daemon::start();
    d.paas(&["apps", "create", "bk"]).ok();
    d.paas(&["addons", "create", "bk", "postgres", "--as", "bk-db"])
        .ok();
    let sql = |s: &str| d.paas(&["addons", "psql", "bk-db", "-c", s]);
    sql("CREATE TABLE t (v text); INSERT INTO t VALUES ('kept row')").ok();
    let backup = d
        .paas(&["addons", "backup", "bk-db"])
        .ok()
        .trim()
        .to_string();
    let listed = d.paas(&["--json", "addons", "backups", "bk-db"]).json();
    assert_eq!(listed[0]["name"], backup.as_str(), "{listed}");
    assert!(listed[0]["bytes"].as_u64().unwrap_or(0) > 0);

    // Destroy asks first; then the data is gone, the backups are not.
    d.paas(&["addons", "destroy", "bk-db"])
        .fails(1, "--confirm bk-db");
    d.paas(&["addons", "destroy", "bk-db", "--confirm", "bk-db"])
        .ok();
    d.paas(&["addons", "info", "bk-db"]).fails(1, "not found");
    assert!(!d.state_dir().join("addons/bk-db").exists());
    d.paas(&["addons", "create", "bk", "postgres", "--as", "bk-db"])
        .ok();
    sql("SELECT * FROM t").fails(1, "relation \"t\" does not exist");
    d.paas(&["addons", "restore", "bk-db", &backup]).ok();
    assert!(sql("SELECT v FROM t").ok().contains("kept row"));

    // A corrupt archive is refused and changes nothing.
    let dir = d.state_dir().join("backups/addons/bk-db");
    std::fs::write(dir.join("20200101T000000Z.dump"), b"PGDMP garbage").expect("write");
    d.paas(&["addons", "restore", "bk-db", "20200101T000000Z"])
        .fails(1, "nothing was changed");
    assert!(sql("SELECT v FROM t").ok().contains("kept row"));
    d.paas(&["addons", "restore", "bk-db", "nope"])
        .fails(1, "not found");

    // Redis: a snapshot, a flush, the snapshot back.
    d.paas(&["addons", "create", "bk", "redis", "--as", "bk-cache"])
        .ok();
    let cli = |args: &[&str]| {
        let mut a = vec!["addons", "redis-cli", "bk-cache"];
        a.extend_from_slice(args);
        d.paas(&a)
    };
    cli(&["SET", "k", "snap"]).ok();
    let rdb = d
        .paas(&["addons", "backup", "bk-cache"])
        .ok()
        .trim()
        .to_string();
    cli(&["FLUSHALL"]).ok();
    assert_eq!(cli(&["GET", "k"]).ok().trim(), "");
    d.paas(&["addons", "restore", "bk-cache", &rdb]).ok();
    assert_eq!(cli(&["GET", "k"]).ok().trim(), "snap");
    d.paas(&["addons", "restore", "bk-cache", &format!("bk-db/{backup}")])
        .fails(1, "is a postgres backup; 'bk-cache' is redis");
    d.paas(&["addons", "restore", "bk-cache", "../../x"])
        .fails(1, "not found");

    // A schedule: a backup within its interval, the oldest pruned beyond --keep.
    d.paas(&[
        "addons",
        "backup-schedule",
        "bk-db",
        "--every",
        "5s",
        "--keep",
        "2",
    ])
    .ok();
    let auto = || {
        d.paas(&["--json", "addons", "backups", "bk-db"])
            .json()
            .as_array()
            .into_iter()
            .flatten()
            .filter(|b| b["scheduled"] == true)
            .count()
    };
    wait_for("a first scheduled backup", Duration::from_secs(10), || {
        auto() >= 1
    });
    wait_for("a second one", Duration::from_secs(15), || auto() >= 2);
    let first_two = d.paas(&["--json", "addons", "backups", "bk-db"]).json();
    // Two more intervals, then the schedule off: what is left settles (a backup and its
    // pruning run together) at the newest two.
    std::thread::sleep(Duration::from_secs(12));
    d.paas(&["addons", "backup-schedule", "bk-db", "--off"])
        .ok();
    wait_for("pruned to --keep", Duration::from_secs(15), || auto() == 2);
    let now = d.paas(&["--json", "addons", "backups", "bk-db"]).json();
    assert_ne!(first_two, now, "newer ones replaced the oldest");
    let manual = now
        .as_array()
        .into_iter()
        .flatten()
        .filter(|b| b["scheduled"] == false)
        .count();
    assert_eq!(manual, 2, "manual backups are never pruned: {now}");
    let info = addon(&d, "bk-db");
    assert!(
        info["backup_schedule"].is_null(),
        "the schedule is off: {info}"
    );
}

#[test]
fn bad_addon_requests_get_clear_refusals() {
    if !have_root("addons_bad") || !installed("postgres") {
        return;
    }
    let d = Daemon::start();
    d.paas(&["apps", "create", "bad"]).ok();
    d.paas(&["addons", "create", "bad", "mysql"])
        .fails(1, "unknown add-on type 'mysql': choose postgres or redis");
    d.paas(&["addons", "create", "nosuchapp", "postgres"])
        .fails(1, "app 'nosuchapp' does not exist");
    d.paas(&["addons", "create", "bad", "postgres", "--version", "7"])
        .fails(1, "postgres 7 is not installed on this host; available:");
    d.paas(&["addons", "create", "bad", "postgres", "--as", "Bad_Name"])
        .fails(1, "name");
    d.paas(&["addons", "create", "bad", "postgres", "--memory", "1"])
        .fails(1, "memory must be between");
    d.paas(&["addons", "create", "bad", "postgres", "--as", "bad-db"])
        .ok();
    d.paas(&["addons", "create", "bad", "postgres", "--as", "bad-db"])
        .fails(1, "an add-on named 'bad-db' already exists");
    d.paas(&["addons", "link", "bad-db", "bad"])
        .fails(1, "already linked to 'bad'");
    d.paas(&["addons", "link", "bad-db", "ghost"])
        .fails(1, "app 'ghost' does not exist");
    d.paas(&["addons", "unlink", "nope", "bad"])
        .fails(1, "add-on 'nope' not found");
    d.paas(&["addons", "psql", "bad-db", "-c", "\\! id"])
        .fails(1, "meta-commands");
    d.paas(&["addons", "psql", "bad-db", "-c", "SELEC 1"])
        .fails(1, "syntax error");
    d.paas(&["addons", "backup-schedule", "bad-db", "--every", "1s"])
        .fails(1, "at least 5s");
    // Nothing of the refused requests is left: one add-on, one link.
    let all = d.paas(&["--json", "addons"]).json();
    assert_eq!(all.as_array().map(Vec::len), Some(1), "{all}");
    let env = d.paas(&["--json", "env", "bad"]).json();
    assert_eq!(env["vars"].as_object().map(|v| v.len()), Some(1), "{env}");
    // Bad JSON straight to the API.
    let mut c = std::os::unix::net::UnixStream::connect(d.socket()).expect("connect");
    use std::io::{Read, Write};
    let body = "{\"app\": \"bad\", \"kind\": \"postgres\", \"extra\": 1}";
    write!(
        c,
        "POST /api/v1/addons HTTP/1.0\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .expect("send");
    let mut out = String::new();
    c.read_to_string(&mut out).expect("read");
    assert!(
        out.starts_with("HTTP/1.0 400") && out.contains("extra"),
        "{out}"
    );
}

#[test]
fn a_volume_is_mounted_into_every_instance_and_one_off_and_outlives_releases() {
    if !have_root("volumes") {
        return;
    }
    let mut d = Daemon::start();
    d.paas(&["apps", "create", "files"]).ok();
    // Refusals first: nothing of them remains.
    d.paas(&["volumes", "add", "files", "etc", "/etc"])
        .fails(1, "outside the allowed places");
    d.paas(&["volumes", "add", "files", "up", "/app/uploads"])
        .fails(1, "outside the allowed places");
    d.paas(&["volumes", "add", "files", "up", "/data/../etc"])
        .fails(1, "normalized");
    d.paas(&["volumes", "add", "files", "up", "/data/up", "--size", "1"])
        .fails(1, "between 16 and");
    d.paas(&["volumes", "add", "ghost", "up", "/data/up"])
        .fails(1, "does not exist");
    d.paas(&["volumes", "add", "files", "up", "/data/up", "--size", "32"])
        .ok();
    d.paas(&["volumes", "add", "files", "inner", "/data/up/inner"])
        .fails(1, "volumes may not nest");
    d.paas(&["volumes", "add", "files", "outer", "/data"])
        .fails(1, "volumes may not nest");
    d.paas(&["volumes", "add", "files", "up", "/data/other"])
        .fails(1, "already has a volume named 'up'");
    d.paas(&["volumes", "add", "files", "up2", "/data/up"])
        .fails(1, "already has a volume at /data/up");
    let listed = d.paas(&["--json", "volumes", "files"]).json();
    assert_eq!(listed.as_array().map(Vec::len), Some(1), "{listed}");
    assert_eq!(listed[0]["size_mb"], 32);

    // A one-off writes as the app's uid; an instance serves what it wrote.
    let uid = d.uid("files");
    let out = d.paas(&[
        "run",
        "files",
        "--",
        "sh",
        "-c",
        "echo kept > /data/up/f && stat -c %u /data/up/f",
    ]);
    assert_eq!(out.ok().trim(), uid.to_string());
    let app = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        app.path().join("Procfile"),
        "web: python3 -m http.server $PORT --bind 0.0.0.0 --directory /data/up\n",
    )
    .expect("Procfile");
    d.deploy_dir("files", app.path());
    assert_eq!(d.http(&host("files"), "/f").2, "kept\n");

    // Over its size: the writer gets ENOSPC, the host loses nothing more.
    let full = d.paas(&[
        "run",
        "files",
        "--",
        "sh",
        "-c",
        "head -c 64000000 /dev/zero > /data/up/big",
    ]);
    assert_ne!(full.code(), 0, "{full:?}");
    assert!(full.stderr.contains("No space left on device"), "{full:?}");
    let img = std::fs::metadata(d.state_dir().join("volumes/files/up.img")).expect("image");
    use std::os::unix::fs::MetadataExt;
    assert!(
        img.blocks() * 512 <= 33 * 1024 * 1024,
        "the image stays within its size"
    );
    d.paas(&["run", "files", "--", "rm", "/data/up/big"]).ok();

    // A tarball backup; the files changed; the backup back (symlinks stay links).
    d.paas(&[
        "run",
        "files",
        "--",
        "sh",
        "-c",
        "mkdir -p /data/up/d && ln -s /etc/passwd /data/up/d/link",
    ])
    .ok();
    let b = d
        .paas(&["volumes", "backup", "files", "up"])
        .ok()
        .trim()
        .to_string();
    d.paas(&[
        "run",
        "files",
        "--",
        "sh",
        "-c",
        "echo changed > /data/up/f && rm -r /data/up/d",
    ])
    .ok();
    d.paas(&["volumes", "restore", "files", "up", &b]).ok();
    assert_eq!(d.http(&host("files"), "/f").2, "kept\n");
    let link = d.paas(&["run", "files", "--", "readlink", "/data/up/d/link"]);
    assert_eq!(link.ok().trim(), "/etc/passwd");
    let listed = d
        .paas(&["--json", "volumes", "backups", "files", "up"])
        .json();
    assert_eq!(listed[0]["name"], b.as_str(), "{listed}");
    // A corrupt backup is refused and changes nothing.
    let bdir = d.state_dir().join("backups/volumes/files/up");
    std::fs::write(bdir.join("20200101T000000.000Z.tar.gz"), b"not a tarball").expect("write");
    d.paas(&["volumes", "restore", "files", "up", "20200101T000000.000Z"])
        .fails(1, "nothing was changed");
    assert_eq!(d.http(&host("files"), "/f").2, "kept\n");
    d.paas(&["volumes", "restore", "files", "up", "nope"])
        .fails(1, "has no backup 'nope'");

    // Redeploy, a paasd restart, a full stop: the file stays.
    d.deploy_dir("files", app.path());
    assert_eq!(d.http(&host("files"), "/f").2, "kept\n");
    d.stop();
    d.restart();
    assert_eq!(d.http(&host("files"), "/f").2, "kept\n");
    d.stop_all();
    assert!(
        d.mounts().is_empty(),
        "a full stop unmounts: {:?}",
        d.mounts()
    );
    d.restart();
    wait_for("the app serving again", Duration::from_secs(60), || {
        d.http(&host("files"), "/f").0 == 200
    });
    assert_eq!(d.http(&host("files"), "/f").2, "kept\n");

    // Destroying the app asks first.
    d.paas(&["destroy", "files", "--confirm", "files"])
        .fails(1, "--delete-volumes");
    assert_eq!(
        d.http(&host("files"), "/f").2,
        "kept\n",
        "nothing was destroyed"
    );
    d.paas(&["volumes", "remove", "files", "up"])
        .fails(2, "--confirm up");
    d.paas(&["destroy", "files", "--confirm", "files", "--delete-volumes"])
        .ok();
    assert!(!d.state_dir().join("volumes/files").exists());
    assert!(d.mounts().is_empty(), "{:?}", d.mounts());
}

#[test]
fn a_platform_backup_restores_into_a_fresh_paasd_with_apps_config_data_and_bodies() {
    if !have_root("platform_backup") || !installed("postgres") {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    // Git as root, authorized_keys in the test's dir: `paas keys add` works without a git user.
    let git_config = |n: &str| {
        format!(
            "[git]\nuser = \"root\"\nauthorized_keys = \"{}\"\n",
            dir.path().join(format!("authorized_keys.{n}")).display()
        )
    };
    let one = Daemon::start_with_config(&git_config("one"));
    let key = dir.path().join("id");
    let made = std::process::Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(&key)
        .status()
        .expect("ssh-keygen");
    assert!(made.success());
    one.paas(&["keys", "add", "tester", &format!("{}.pub", key.display())])
        .ok();
    one.paas(&["apps", "create", "keep"]).ok();
    one.paas(&["addons", "create", "keep", "postgres"]).ok();
    // A repo as a first push makes it (the git shell's call); the push deploys the example.
    let asked = std::process::Command::new("curl")
        .args(["-sf", "--unix-socket"])
        .arg(one.socket())
        .args([
            "-X",
            "POST",
            "-d",
            r#"{"service":"receive-pack","key":"tester"}"#,
        ])
        .arg("http://paasd/api/v1/git/keep")
        .output()
        .expect("curl");
    assert!(asked.status.success(), "{asked:?}");
    let work = dir.path().join("work");
    let git = |args: &[&str]| {
        let out = std::process::Command::new("git")
            .arg("-C")
            .arg(&work)
            .args([
                "-c",
                "user.name=t",
                "-c",
                "user.email=t@t",
                "-c",
                "core.hooksPath=/dev/null",
            ])
            .args(args)
            .output()
            .expect("git");
        assert!(out.status.success(), "git {args:?}: {out:?}");
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    std::fs::create_dir_all(&work).expect("mkdir");
    git(&["init", "-q", "-b", "main"]);
    for e in std::fs::read_dir(repo_root().join("examples/python-postgres"))
        .expect("example")
        .flatten()
    {
        std::fs::copy(e.path(), work.join(e.file_name())).expect("copy");
    }
    git(&["add", "-A"]);
    git(&["commit", "-q", "-m", "first"]);
    let repo_one = one.state_dir().join("git/keep.git");
    git(&["push", "-q", &repo_one.display().to_string(), "main"]);
    let head = git(&["rev-parse", "HEAD"]);
    one.paas(&["env", "set", "keep", "GREETING=hello there"])
        .ok();
    one.paas(&["domains", "add", "keep", "keep.example.com"])
        .ok();
    one.paas(&["volumes", "add", "keep", "v", "/data/v", "--size", "32"])
        .ok();
    for note in ["alpha", "beta"] {
        assert_eq!(
            one.http_request("POST", &host("keep"), "/notes", note).0,
            201
        );
    }
    one.paas(&[
        "run",
        "keep",
        "--",
        "sh",
        "-c",
        "echo on-volume > /data/v/f",
    ])
    .ok();
    let body_one = notes(&one, "keep");

    let file = dir.path().join("platform.tar.gz");
    let made = one.paas(&["backup", "create", &file.display().to_string()]);
    made.ok();
    assert!(made.stderr.contains("keep it secret"), "{made:?}");
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::metadata(&file).expect("the archive");
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    assert!(meta.len() > 1000);
    assert!(
        !one.state_dir()
            .join("backups/platform")
            .read_dir()
            .is_ok_and(|mut d| d.next().is_some()),
        "no copy of the archive stays on the server"
    );
    one.paas(&["backup", "create", &file.display().to_string()])
        .fails(1, "File exists");
    // The same, encrypted with a passphrase on the way into the file.
    let pass = dir.path().join("pass");
    std::fs::write(&pass, "a long passphrase\n").expect("write");
    let sealed = dir.path().join("sealed.bak");
    let made = one.paas(&[
        "backup",
        "create",
        &sealed.display().to_string(),
        "--passphrase-file",
        &pass.display().to_string(),
    ]);
    made.ok();
    assert!(
        made.stderr.contains("encrypted with the passphrase"),
        "{made:?}"
    );
    assert_eq!(&std::fs::read(&sealed).expect("read")[..8], b"PAASBAK1");

    let two = Daemon::start_with_uids_of(&git_config("two"), &one);
    // A corrupt archive (truncated) and one whose key does not match are refused; nothing
    // changes.
    let bytes = std::fs::read(&file).expect("read");
    let cut = dir.path().join("cut.tar.gz");
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).expect("write");
    restore(&two, &cut, None).fails(1, "");
    let wrong_key = dir.path().join("wrong-key.tar.gz");
    rewrite_member(&file, &wrong_key, "secret.key", &[7u8; 32]);
    restore(&two, &wrong_key, None).fails(1, "secret.key does not open the config vars");
    assert_eq!(app_count(&two), 0, "nothing was restored");

    restore(&two, &sealed, None).fails(2, "is encrypted");
    let wrong = dir.path().join("wrong");
    std::fs::write(&wrong, "not the passphrase\n").expect("write");
    restore(&two, &sealed, Some(&wrong)).fails(1, "the passphrase is wrong");
    // A database whose rows would put a volume over the host's /etc is refused whole.
    let db = dir.path().join("paas.db");
    std::fs::write(&db, member(&file, "paas.db")).expect("write db");
    let edited = std::process::Command::new("sqlite3")
        .arg(&db)
        .arg("UPDATE volumes SET path = '/etc'")
        .status()
        .expect("sqlite3");
    assert!(edited.success());
    let hostile = dir.path().join("hostile.tar.gz");
    rewrite_member(&file, &hostile, "paas.db", &std::fs::read(&db).expect("db"));
    restore(&two, &hostile, None).fails(1, "invalid name, path or size");
    assert_eq!(app_count(&two), 0, "nothing was restored");

    let began = Instant::now();
    let done = restore(&two, &sealed, Some(&pass)).json();
    eprintln!("restore took {:?}: {done}", began.elapsed());
    assert_eq!(done["apps"][0], "keep");
    assert_eq!(done["addons"][0], "keep-postgres");
    wait_for("the restored app serving", Duration::from_secs(120), || {
        two.http(&host("keep"), "/notes").0 == 200
    });
    assert_eq!(notes(&two, "keep"), body_one, "the same rows");
    let env = two.paas(&["--json", "env", "keep", "--reveal"]).json();
    assert_eq!(
        env["vars"]["GREETING"], "hello there",
        "config vars decrypt"
    );
    assert!(two
        .paas(&["domains", "keep"])
        .ok()
        .contains("keep.example.com"));
    assert_eq!(
        two.paas(&["run", "keep", "--", "cat", "/data/v/f"])
            .ok()
            .trim(),
        "on-volume"
    );
    // SSH keys: in the database and in two's authorized_keys.
    assert!(two.paas(&["keys"]).ok().contains("tester"));
    let pubkey = std::fs::read_to_string(format!("{}.pub", key.display())).expect("pub");
    let blob = pubkey.split_whitespace().nth(1).expect("blob");
    let ak = std::fs::read_to_string(dir.path().join("authorized_keys.two")).expect("ak two");
    assert!(ak.contains(blob), "{ak}");
    // The git repo: the same commit, and this install's hooks, not the archive's config.
    let repo_two = two.state_dir().join("git/keep.git");
    let rev = std::process::Command::new("git")
        .arg("--git-dir")
        .arg(&repo_two)
        .args(["rev-parse", "main"])
        .output()
        .expect("git");
    assert_eq!(String::from_utf8_lossy(&rev.stdout).trim(), head);
    let cfg = std::fs::read_to_string(repo_two.join("config")).expect("config");
    assert!(
        cfg.contains(&two.state_dir().join("git/.hooks").display().to_string()),
        "{cfg}"
    );
    // A second restore into what is no longer a fresh install is refused.
    restore(&two, &file, None).fails(1, "needs a fresh install");
}

/// `paas --json backup restore FILE [--passphrase-file PASS]` on `d`.
fn restore(d: &Daemon, file: &std::path::Path, pass: Option<&std::path::Path>) -> paas_tests::Run {
    let (file, pass) = (
        file.display().to_string(),
        pass.map(|p| p.display().to_string()),
    );
    let mut args = vec!["--json", "backup", "restore", &file];
    if let Some(p) = &pass {
        args.extend(["--passphrase-file", p.as_str()]);
    }
    d.paas(&args)
}

fn app_count(d: &Daemon) -> usize {
    d.paas(&["--json", "apps"])
        .json()
        .as_array()
        .map_or(0, Vec::len)
}

/// The contents of member `name` of the gzipped tar `from`.
fn member(from: &std::path::Path, name: &str) -> Vec<u8> {
    let input = flate2::read::GzDecoder::new(std::fs::File::open(from).expect("open"));
    let mut archive = tar::Archive::new(input);
    for entry in archive.entries().expect("entries") {
        let mut entry = entry.expect("entry");
        if entry.path().expect("path") == std::path::Path::new(name) {
            let mut buf = Vec::new();
            std::io::Read::read_to_end(&mut entry, &mut buf).expect("read member");
            return buf;
        }
    }
    panic!("no member {name}");
}

/// Copies the gzipped tar `from` to `to` with member `name`'s contents replaced.
fn rewrite_member(from: &std::path::Path, to: &std::path::Path, name: &str, data: &[u8]) {
    let input = flate2::read::GzDecoder::new(std::fs::File::open(from).expect("open"));
    let mut archive = tar::Archive::new(input);
    let out = flate2::write::GzEncoder::new(
        std::fs::File::create(to).expect("create"),
        flate2::Compression::fast(),
    );
    let mut builder = tar::Builder::new(out);
    for entry in archive.entries().expect("entries") {
        let mut entry = entry.expect("entry");
        let mut header = entry.header().clone();
        let path = entry.path().expect("path").into_owned();
        if path == std::path::Path::new(name) {
            header.set_size(data.len() as u64);
            header.set_cksum();
            builder
                .append_data(&mut header, &path, data)
                .expect("append");
        } else if header.entry_type().is_symlink() || header.entry_type().is_hard_link() {
            let target = entry
                .link_name()
                .expect("link")
                .expect("target")
                .into_owned();
            builder
                .append_link(&mut header, &path, &target)
                .expect("append link");
        } else {
            // append_data writes long names as GNU extensions (the raw header alone would
            // truncate them).
            let mut buf = Vec::new();
            std::io::Read::read_to_end(&mut entry, &mut buf).expect("read member");
            builder
                .append_data(&mut header, &path, buf.as_slice())
                .expect("append");
        }
    }
    builder
        .into_inner()
        .expect("finish")
        .finish()
        .expect("gzip");
}
