//! Issue 4: deploys through the real API and real build containers. Uploads of hostile
//! archives, a build with an app-configured buildpack (detect, compile, release, cache,
//! release phase), failures that leave the previous release alone, the per-app lock, and the
//! build limits. Needs root (skips loudly otherwise; never skips under CI).

#![forbid(unsafe_code)]

use std::path::Path;
use std::time::Duration;

use paas_tests::{gz_raw as gz, have_root, raw_entry, tarball, Daemon};
use serde_json::Value;

/// A test buildpack: detect says "Testpack"; compile installs `bin/hello` and proves the
/// cache persists; release declares `console` (no instance runs by default: these tests are
/// about builds; `serving.rs` runs web processes). `compile_extra` runs at the end of compile.
fn testpack(dir: &Path, compile_extra: &str) -> String {
    let bin = dir.join("testpack/bin");
    std::fs::create_dir_all(&bin).expect("mkdir");
    let write = |name: &str, body: &str| {
        let p = bin.join(name);
        std::fs::write(
            &p,
            format!("#!/usr/bin/env bash\nset -euo pipefail\n{body}"),
        )
        .expect("write");
        std::fs::set_permissions(&p, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .expect("chmod");
    };
    write("detect", "[ -f \"$1/app.txt\" ] && echo Testpack\n");
    write(
        "compile",
        &format!(
            r#"build="$1" cache="$2" env="$3"
echo "-----> Compiling as $(id -u) in $build"
if [ -f "$cache/marker" ]; then echo "       cache: hit"; else echo "       cache: miss"; date > "$cache/marker"; fi
mkdir -p "$build/bin"
printf '#!/bin/sh\necho "hello from the slug: %s"\n' "$(cat "$build/app.txt")" > "$build/bin/hello"
chmod +x "$build/bin/hello"
if [ -f "$env/GREETING" ]; then echo "       env: GREETING=$(cat "$env/GREETING")"; fi
{compile_extra}
"#
        ),
    );
    write(
        "release",
        "printf -- '---\\ndefault_process_types:\\n  console: hello\\n'\n",
    );
    dir.join("testpack").display().to_string()
}

fn daemon(test: &str, config: &str) -> Option<Daemon> {
    if !have_root(test) {
        return None;
    }
    Some(Daemon::start_with_config(config))
}

fn events_of(kind: &str, events: &[Value]) -> Vec<Value> {
    events
        .iter()
        .filter(|e| e["type"] == kind)
        .cloned()
        .collect()
}

fn output(events: &[Value]) -> String {
    events_of("output", events)
        .iter()
        .map(|e| e["line"].as_str().unwrap_or("").to_string())
        .collect::<Vec<_>>()
        .join("\n")
}

fn set_buildpack(d: &Daemon, app: &str, bp: &str) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("rt");
    let app_json: Value = rt
        .block_on(d.client().json(
            paas_api::Method::PUT,
            &format!("/api/v1/apps/{app}/buildpacks"),
            Some(&serde_json::json!({ "buildpacks": [bp] })),
        ))
        .expect("set buildpacks");
    assert_eq!(app_json["buildpacks"][0], bp);
}

fn sha256(bytes: &[u8]) -> String {
    let dir = tempfile::tempdir().expect("tmp");
    let p = dir.path().join("f");
    std::fs::write(&p, bytes).expect("write");
    let out = std::process::Command::new("sha256sum")
        .arg(&p)
        .output()
        .expect("sha256sum");
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap_or("")
        .to_string()
}

#[test]
fn a_configured_buildpack_builds_releases_and_runs_the_slug() {
    let Some(d) = daemon(
        "a_configured_buildpack_builds_releases_and_runs_the_slug",
        "",
    ) else {
        return;
    };
    let bps = tempfile::tempdir().expect("tmp");
    let bp = testpack(bps.path(), "");
    d.paas(&["create", "built"]).ok();
    set_buildpack(&d, "built", &bp);
    d.paas(&["env", "set", "built", "GREETING=hi there"]).ok();
    let source = tarball(&[
        ("app.txt", "v1", 0o644),
        (
            "Procfile",
            "worker: sleep 1000\nrelease: echo migrating from $DYNO && test -x /app/bin/hello\n",
            0o644,
        ),
    ]);
    let (status, events) = d.deploy_raw("built", source.clone());
    assert_eq!(status, 200, "{events:?}");
    let out = output(&events);
    assert!(out.contains("-----> Testpack app detected"), "{out}");
    // The build runs as the app's own uid, the one `paas info` shows.
    let uid = d.uid("built");
    assert!(uid >= 1_900_000_000, "{uid} is in the [users] range");
    assert!(
        out.contains(&format!("-----> Compiling as {uid} in /app")),
        "{out}"
    );
    assert!(out.contains("cache: miss"), "{out}");
    assert!(out.contains("env: GREETING=hi there"), "{out}");
    assert!(out.contains("migrating from release.1"), "{out}");
    let done = events.last().expect("events");
    assert_eq!(done["type"], "done", "{events:?}");
    assert_eq!(done["release"]["version"], 3, "{done}");
    assert_eq!(done["release"]["status"], "succeeded");
    let types = &done["release"]["process_types"];
    assert_eq!(
        types["console"], "hello",
        "the buildpack's default: {types}"
    );
    assert_eq!(types["worker"], "sleep 1000", "the Procfile's: {types}");
    let phases: Vec<String> = events_of("phase", &events)
        .iter()
        .map(|e| e["phase"].as_str().unwrap_or("").to_string())
        .collect();
    assert_eq!(
        phases,
        [
            "receive",
            "extract",
            "detect",
            "compile",
            "slug",
            "release_phase",
            "start",
            "ready",
            "switch",
            "drain"
        ],
        "{events:?}"
    );

    // The record: checksum of what was sent, buildpack, phases, slug.
    let history = d.paas(&["apps", "info", "built", "--json"]).json();
    assert_eq!(history["status"], "deployed");
    assert_eq!(history["release"], 3);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("rt");
    let deploys: Vec<Value> = rt
        .block_on(d.client().get("/api/v1/apps/built/deploy"))
        .expect("history");
    assert_eq!(deploys.len(), 1);
    let dep = &deploys[0];
    assert_eq!(dep["status"], "succeeded");
    assert_eq!(dep["version"], 3);
    assert_eq!(dep["source_sha256"], sha256(&source));
    assert_eq!(dep["source_bytes"], source.len());
    assert_eq!(dep["buildpacks"][0], bp.as_str());
    assert_eq!(dep["user"], "root");
    assert_eq!(
        dep["phases"].as_array().map(Vec::len),
        Some(10),
        "build phases then start, ready, switch, drain: {dep}"
    );
    let slug_sha = dep["slug_sha256"].as_str().expect("slug checksum");
    let slugs = d.state_dir().join("slugs/built");
    let tarballs: Vec<_> = std::fs::read_dir(&slugs)
        .expect("slugs")
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with(".tar.gz"))
        .collect();
    assert_eq!(tarballs.len(), 1);
    assert_eq!(
        sha256(&std::fs::read(tarballs[0].path()).expect("slug")),
        slug_sha
    );
    let log = std::fs::read_to_string(
        d.state_dir()
            .join(format!("logs/built/deploy-{}.log", dep["id"])),
    )
    .expect("build log on disk");
    assert!(log.contains("Testpack app detected"), "{log}");
    // Nothing of the build is left behind.
    let builds = std::fs::read_dir(d.state_dir().join("builds"))
        .map(|r| r.count())
        .unwrap_or(0);
    assert_eq!(builds, 0, "build scratch dirs left");

    // `paas run` runs on the new release: the slug's bin/hello is on PATH.
    let run = d.paas(&["run", "built", "--", "hello"]);
    assert_eq!(run.ok().trim(), "hello from the slug: v1");

    // A second build of the app finds its cache.
    let (status, events) = d.deploy_raw("built", tarball(&[("app.txt", "v2", 0o644)]));
    assert_eq!(status, 200);
    assert!(
        output(&events).contains("cache: hit"),
        "{}",
        output(&events)
    );
    assert_eq!(events.last().expect("events")["release"]["version"], 4);
    let run = d.paas(&["run", "built", "--", "hello"]);
    assert_eq!(run.ok().trim(), "hello from the slug: v2");
}

#[test]
fn failed_builds_and_release_phases_keep_the_previous_release() {
    let Some(d) = daemon(
        "failed_builds_and_release_phases_keep_the_previous_release",
        "",
    ) else {
        return;
    };
    let bps = tempfile::tempdir().expect("tmp");
    let bp = testpack(
        bps.path(),
        r#"if grep -q broken "$build/app.txt"; then echo "       syntax error in app.txt" >&2; exit 3; fi"#,
    );
    d.paas(&["create", "keeps"]).ok();
    set_buildpack(&d, "keeps", &bp);
    let (status, events) = d.deploy_raw("keeps", tarball(&[("app.txt", "good", 0o644)]));
    assert_eq!(
        (status, events.last().expect("ev")["type"].as_str()),
        (200, Some("done"))
    );

    // A compile failure: the build's own message, the failing step, and no release.
    let (status, events) = d.deploy_raw("keeps", tarball(&[("app.txt", "broken", 0o644)]));
    assert_eq!(status, 200);
    let last = events.last().expect("events");
    assert_eq!(last["type"], "error", "{events:?}");
    assert_eq!(last["code"], "build_failed");
    let msg = last["message"].as_str().unwrap_or("");
    assert!(
        msg.contains("failed to compile") && msg.contains("exit status 3"),
        "{msg}"
    );
    assert!(output(&events).contains("syntax error in app.txt"));
    let info = d.paas(&["apps", "info", "keeps", "--json"]).json();
    assert_eq!(info["release"], 2, "the good release still current");

    // A failing release phase: the release is made but marked failed; v2 stays current.
    let (status, events) = d.deploy_raw(
        "keeps",
        tarball(&[
            ("app.txt", "fine", 0o644),
            ("Procfile", "release: echo nope; exit 7\n", 0o644),
        ]),
    );
    assert_eq!(status, 200);
    let last = events.last().expect("events");
    assert_eq!(last["code"], "release_phase_failed", "{events:?}");
    assert!(last["message"]
        .as_str()
        .unwrap_or("")
        .contains("exit status 7"));
    assert!(output(&events).contains("nope"));
    let releases = d.paas(&["releases", "keeps", "--json"]).json();
    assert_eq!(releases[0]["version"], 3);
    assert_eq!(releases[0]["status"], "failed");
    assert_eq!(
        d.paas(&["apps", "info", "keeps", "--json"]).json()["release"],
        2
    );
    let run = d.paas(&["run", "keeps", "--", "hello"]);
    assert_eq!(run.ok().trim(), "hello from the slug: good");

    // No buildpack at all detects an empty app.
    let (_, events) = d.deploy_raw("keeps", tarball(&[("README", "x", 0o644)]));
    let last = events.last().expect("events");
    assert_eq!(last["code"], "detect_failed", "{events:?}");
}

#[test]
fn hostile_uploads_are_refused_and_change_nothing() {
    let Some(d) = daemon(
        "hostile_uploads_are_refused_and_change_nothing",
        "[build]\nmax_source_mb = 2\nmax_upload_mb = 1\nmax_source_files = 50\n",
    ) else {
        return;
    };
    d.paas(&["create", "target"]).ok();
    let before = paas_tests::db_snapshot(&d.db());
    let outside = d.dir().join("evil");
    let cases: Vec<(&str, Vec<u8>, u16, &str)> = vec![
        (
            "traversal",
            gz(|t| raw_entry(t, "../../evil", b'0', "", b"x")),
            400,
            "'../../evil'",
        ),
        (
            "absolute",
            gz(|t| raw_entry(t, &outside.display().to_string(), b'0', "", b"x")),
            400,
            "absolute",
        ),
        (
            "escaping symlink",
            gz(|t| raw_entry(t, "link", b'2', "/etc/passwd", b"")),
            400,
            "'link'",
        ),
        (
            "../../etc/x",
            gz(|t| raw_entry(t, "../../etc/x", b'0', "", b"x")),
            400,
            "'../../etc/x'",
        ),
        (
            "/etc/x",
            gz(|t| raw_entry(t, "/etc/x", b'0', "", b"x")),
            400,
            "absolute",
        ),
        (
            "a symlink to / and a file through it",
            gz(|t| {
                raw_entry(t, "root", b'2', "/", b"");
                raw_entry(t, "root/etc/x", b'0', "", b"x");
            }),
            400,
            "'root'",
        ),
        (
            "10 GB sparse file",
            gz(|t| {
                let mut h = Vec::new();
                raw_entry(&mut h, "sparse", b'S', "", b"");
                // GNU header: real size 10 GiB at offset 483 (12 octal digits).
                h[483..495].copy_from_slice(format!("{:012o}", 10u64 << 30).as_bytes());
                h[148..156].copy_from_slice(b"        ");
                let sum: u32 = h[..512].iter().map(|b| u32::from(*b)).sum();
                h[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
                t.extend_from_slice(&h);
            }),
            400,
            "sparse",
        ),
        (
            "write through a symlink",
            gz(|t| {
                raw_entry(t, "sub", b'2', ".", b"");
                raw_entry(t, "sub/x", b'0', "", b"x");
            }),
            400,
            "'sub/x'",
        ),
        (
            "hard link out",
            gz(|t| raw_entry(t, "h", b'1', "/etc/shadow", b"")),
            400,
            "'h'",
        ),
        (
            "device",
            gz(|t| raw_entry(t, "dev", b'3', "", b"")),
            400,
            "device files",
        ),
        (
            "fifo",
            gz(|t| raw_entry(t, "pipe", b'6', "", b"")),
            400,
            "'pipe'",
        ),
        (
            "bomb",
            gz(|t| raw_entry(t, "zeros", b'0', "", &vec![0u8; 3 << 20])),
            413,
            "more than 2097152 bytes",
        ),
        (
            "too many files",
            gz(|t| {
                for i in 0..60 {
                    raw_entry(t, &format!("f{i}"), b'0', "", b"");
                }
            }),
            413,
            "more than 50 entries",
        ),
        (
            "not gzip",
            b"just some text".to_vec(),
            400,
            "not a readable gzipped tar",
        ),
        (
            "upload too big",
            // 3 MB that gzip cannot shrink: the upload limit (1 MB) hits before the unpacked one.
            gz(|t| {
                let mut x: u64 = 0x9e3779b97f4a7c15;
                let noise: Vec<u8> = (0..3 << 20)
                    .map(|_| {
                        x ^= x << 13;
                        x ^= x >> 7;
                        x ^= x << 17;
                        x as u8
                    })
                    .collect();
                raw_entry(t, "noise", b'0', "", &noise)
            }),
            413,
            "larger than 1 MB",
        ),
    ];
    for (what, body, want, needle) in cases {
        let (status, values) = d.deploy_raw("target", body);
        let msg = values
            .first()
            .and_then(|v| v["error"]["message"].as_str())
            .unwrap_or("")
            .to_string();
        assert_eq!(status, want, "{what}: {values:?}");
        assert!(
            msg.contains(needle),
            "{what}: message {msg:?} lacks {needle:?}"
        );
    }
    assert!(
        !outside.exists() && !d.dir().join("../evil").exists(),
        "a file escaped"
    );
    assert_eq!(
        paas_tests::db_snapshot(&d.db()),
        before,
        "a refused upload changed the database"
    );
    let builds = std::fs::read_dir(d.state_dir().join("builds"))
        .map(|r| r.count())
        .unwrap_or(0);
    assert_eq!(builds, 0, "scratch dirs left");
    // A missing app and an invalid name are refused before any byte is read.
    let (status, v) = d.deploy_raw("nope", tarball(&[("a", "b", 0o644)]));
    assert_eq!(status, 404, "{v:?}");
    let (status, _) = d.deploy_raw("Bad_Name", tarball(&[("a", "b", 0o644)]));
    assert_eq!(status, 400);
}

#[test]
fn one_deploy_at_a_time_per_app_and_builds_have_limits() {
    let Some(d) = daemon(
        "one_deploy_at_a_time_per_app_and_builds_have_limits",
        "[build]\nmemory_mb = 64\ntimeout_secs = 8\n",
    ) else {
        return;
    };
    let bps = tempfile::tempdir().expect("tmp");
    let bp = testpack(
        bps.path(),
        r#"case "$(cat "$build/app.txt")" in
  slow) echo "       sleeping"; sleep 4 ;;
  hog) echo "       allocating"; python3 -c 'b = bytearray(256 << 20); print(len(b))' ;;
  forever) sleep 60 ;;
esac"#,
    );
    d.paas(&["create", "limited"]).ok();
    set_buildpack(&d, "limited", &bp);

    // A second deploy while the first builds is refused with who and how long.
    let first = {
        let socket = d.socket();
        let body = tarball(&[("app.txt", "slow", 0o644)]);
        std::thread::spawn(move || {
            let c = paas_api::Client::new(socket);
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("rt");
            rt.block_on(async {
                let resp = c
                    .send(
                        paas_api::Method::POST,
                        "/api/v1/apps/limited/deploy",
                        Some(body.into()),
                        "application/gzip",
                    )
                    .await
                    .expect("send");
                let b = http_body_util::BodyExt::collect(resp.into_body())
                    .await
                    .expect("body")
                    .to_bytes();
                String::from_utf8_lossy(&b).into_owned()
            })
        })
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("rt");
    let mut waited = 0;
    loop {
        let deploys: Vec<Value> = rt
            .block_on(d.client().get("/api/v1/apps/limited/deploy"))
            .expect("list");
        if deploys.first().is_some_and(|x| x["status"] == "building") {
            break;
        }
        waited += 1;
        assert!(waited < 200, "the first deploy never started");
        std::thread::sleep(Duration::from_millis(25));
    }
    let (status, v) = d.deploy_raw("limited", tarball(&[("app.txt", "other", 0o644)]));
    assert_eq!(status, 409, "{v:?}");
    let msg = v[0]["error"]["message"].as_str().unwrap_or("");
    assert!(msg.contains("already") || msg.contains("running"), "{msg}");
    let first = first.join().expect("first deploy");
    assert!(first.contains("\"type\":\"done\""), "{first}");

    // Memory: the kernel's OOM killer ends the build and the message says so.
    let (_, events) = d.deploy_raw("limited", tarball(&[("app.txt", "hog", 0o644)]));
    let last = events.last().expect("events");
    assert_eq!(last["code"], "build_oom", "{events:?}");
    assert!(last["message"].as_str().unwrap_or("").contains("64 MB"));

    // Time: the build is stopped at the deadline.
    let (_, events) = d.deploy_raw("limited", tarball(&[("app.txt", "forever", 0o644)]));
    let last = events.last().expect("events");
    assert_eq!(last["code"], "build_timeout", "{events:?}");
    assert!(last["message"].as_str().unwrap_or("").contains("8 s"));
    assert_eq!(
        d.paas(&["apps", "info", "limited", "--json"]).json()["release"],
        2
    );
}

#[test]
fn low_disk_refuses_deploys_and_old_slugs_are_collected() {
    let Some(d) = daemon(
        "low_disk_refuses_deploys_and_old_slugs_are_collected",
        "[build]\nkeep_releases = 2\n",
    ) else {
        return;
    };
    let bps = tempfile::tempdir().expect("tmp");
    let bp = testpack(bps.path(), "");
    d.paas(&["create", "gc"]).ok();
    set_buildpack(&d, "gc", &bp);
    for i in 0..4 {
        let (status, events) = d.deploy_raw("gc", tarball(&[("app.txt", &format!("n{i}"), 0o644)]));
        assert_eq!(status, 200);
        assert_eq!(events.last().expect("ev")["type"], "done", "{events:?}");
    }
    let dirs: Vec<String> = std::fs::read_dir(d.state_dir().join("slugs/gc"))
        .expect("slugs")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| !n.ends_with(".tar.gz"))
        .collect();
    assert_eq!(dirs.len(), 2, "only the newest two slugs remain: {dirs:?}");
    assert_eq!(
        d.paas(&["run", "gc", "--", "hello"]).ok().trim(),
        "hello from the slug: n3"
    );
    // Destroying the app takes its slugs and build cache with it.
    assert!(d.state_dir().join("cache/gc").is_dir());
    d.paas(&["apps", "destroy", "gc", "--confirm", "gc"]).ok();
    assert!(!d.state_dir().join("slugs/gc").exists(), "slugs left");
    assert!(!d.state_dir().join("cache/gc").exists(), "cache left");
    drop(d);

    let Some(d) = daemon(
        "low_disk_refuses_deploys_and_old_slugs_are_collected",
        "[build]\nmin_free_disk_mb = 1000000000\n",
    ) else {
        return;
    };
    d.paas(&["create", "full"]).ok();
    let (status, v) = d.deploy_raw("full", tarball(&[("app.txt", "x", 0o644)]));
    assert_eq!(status, 507, "{v:?}");
    assert!(v[0]["error"]["message"]
        .as_str()
        .unwrap_or("")
        .contains("min_free_disk_mb"));
}

#[test]
fn paas_deploy_packs_a_directory_and_shows_the_build() {
    let Some(d) = daemon("paas_deploy_packs_a_directory_and_shows_the_build", "") else {
        return;
    };
    let bps = tempfile::tempdir().expect("tmp");
    let bp = testpack(
        bps.path(),
        r#"if [ -e "$build/secret.key" ] || [ -e "$build/.git" ]; then echo "ignored files were uploaded" >&2; exit 9; fi
if grep -q broken "$build/app.txt"; then echo "       cannot build a broken app" >&2; exit 4; fi"#,
    );
    d.paas(&["create", "clidemo"]).ok();
    d.paas(&["buildpacks", "set", "clidemo", &bp]).ok();
    assert_eq!(d.paas(&["buildpacks", "clidemo"]).ok().trim(), bp);

    let src = tempfile::tempdir().expect("src");
    std::fs::write(src.path().join("app.txt"), "from the cli").expect("write");
    std::fs::write(src.path().join(".gitignore"), "secret.key\n").expect("write");
    std::fs::write(src.path().join("secret.key"), "do not ship").expect("write");
    std::fs::create_dir(src.path().join(".git")).expect("git dir");
    std::fs::write(src.path().join(".git/HEAD"), "ref: refs/heads/main\n").expect("write");
    let dir = src.path().display().to_string();

    let run = d.paas(&["deploy", "clidemo", "--source", &dir]);
    assert!(run.ok().contains("Released v2 of clidemo"), "{run:#?}");
    assert!(
        run.stderr.contains("-----> Testpack app detected"),
        "{run:#?}"
    );
    assert!(run.stderr.contains("compile:"), "phases shown: {run:#?}");
    assert_eq!(
        d.paas(&["run", "clidemo", "--", "hello"]).ok().trim(),
        "hello from the slug: from the cli"
    );

    let info = d.paas(&["releases", "info", "clidemo", "v2"]);
    let text = info.ok();
    for needle in ["compile", "slug", "total", "root", "console"] {
        assert!(
            text.contains(needle),
            "releases info lacks {needle}: {text}"
        );
    }

    // A failing build: exit 1, the build's own words and paasd's verdict on stderr.
    std::fs::write(src.path().join("app.txt"), "broken").expect("write");
    let run = d.paas(&["deploy", "clidemo", "--source", &dir]);
    run.fails(1, "failed to compile");
    assert!(run.stderr.contains("cannot build a broken app"), "{run:#?}");
    assert_eq!(
        d.paas(&["apps", "info", "clidemo", "--json"]).json()["release"],
        2
    );
    let listing = d.paas(&["releases", "clidemo"]);
    assert!(
        listing.ok().contains("failed"),
        "failed deploy listed: {listing:#?}"
    );

    // Usage errors never reach paasd.
    d.paas(&["deploy", "clidemo", "--source", "/nonexistent/dir"])
        .fails(2, "/nonexistent/dir");
    let notgz = src.path().join("x.tar.gz");
    std::fs::write(&notgz, "plain").expect("write");
    d.paas(&[
        "deploy",
        "clidemo",
        "--source",
        &notgz.display().to_string(),
    ])
    .fails(2, "not a gzipped tarball");
    d.paas(&["deploy", "ghost", "--source", &dir])
        .fails(1, "does not exist");
}

#[test]
fn a_million_empty_files_stop_at_the_entry_limit() {
    // A lower limit than the default (200,000) keeps the test quick (file creation costs
    // ~0.6 ms on this disk); the point is that unpacking stops at the limit, not after a
    // million files.
    let Some(d) = daemon(
        "a_million_empty_files_stop_at_the_entry_limit",
        "[build]\nmax_source_files = 2000\n",
    ) else {
        return;
    };
    d.paas(&["create", "many"]).ok();
    // 1,000,000 header-only entries (~500 MB of tar, ~15 MB gzipped), made from one header
    // whose name and checksum are patched in place.
    let mut header = Vec::new();
    raw_entry(&mut header, "f0000000", b'0', "", b"");
    let base: u32 = header.iter().map(|b| u32::from(*b)).sum::<u32>()
        - header[148..156].iter().map(|b| u32::from(*b)).sum::<u32>()
        + 8 * u32::from(b' ')
        - header[..8].iter().map(|b| u32::from(*b)).sum::<u32>();
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    for i in 0..1_000_000u32 {
        let name = format!("f{i:07}");
        header[..8].copy_from_slice(name.as_bytes());
        let sum = base + name.bytes().map(u32::from).sum::<u32>();
        header[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
        std::io::Write::write_all(&mut e, &header).expect("gz");
    }
    std::io::Write::write_all(&mut e, &[0u8; 1024]).expect("gz");
    let body = e.finish().expect("gz");
    let (status, v) = d.deploy_raw("many", body);
    assert_eq!(status, 413, "{v:?}");
    let msg = v[0]["error"]["message"].as_str().unwrap_or("");
    assert!(msg.contains("more than 2000 entries"), "{msg}");
    assert_eq!(
        std::fs::read_dir(d.state_dir().join("builds"))
            .map(|r| r.count())
            .unwrap_or(0),
        0
    );
}

#[test]
fn buildpacks_chain_through_export_files() {
    let Some(d) = daemon("buildpacks_chain_through_export_files", "") else {
        return;
    };
    let dir = tempfile::tempdir().expect("tmp");
    let make = |name: &str, compile: &str| {
        let bin = dir.path().join(name).join("bin");
        std::fs::create_dir_all(&bin).expect("mkdir");
        for (step, body) in [
            ("detect", format!("echo {name}")),
            ("compile", compile.to_string()),
            ("release", "echo '--- {}'".to_string()),
        ] {
            paas_tests::write_script(&bin.join(step), body.as_ref());
        }
        dir.path().join(name).display().to_string()
    };
    // The first leaves an export file next to itself; the second sees its variable. (The
    // process type is one that runs nothing by default: a lone `worker` would start.)
    let first = make(
        "first",
        r#"echo "export CHAINED_FROM=first-buildpack" > "$(dirname "$0")/../export""#,
    );
    let second = make(
        "second",
        r#"echo "       second sees CHAINED_FROM=${CHAINED_FROM:-unset}"; echo "clock: echo $CHAINED_FROM" > "$1/Procfile""#,
    );
    d.paas(&["create", "chain"]).ok();
    d.paas(&["buildpacks", "set", "chain", &first, &second])
        .ok();
    let (status, events) = d.deploy_raw("chain", tarball(&[("x", "y", 0o644)]));
    assert_eq!(status, 200);
    let out = output(&events);
    assert!(out.contains("-----> first app detected"), "{out}");
    assert!(out.contains("-----> second app detected"), "{out}");
    assert!(
        out.contains("second sees CHAINED_FROM=first-buildpack"),
        "{out}"
    );
    let done = events.last().expect("events");
    assert_eq!(
        done["release"]["process_types"]["clock"],
        "echo first-buildpack"
    );
    assert_eq!(
        done["release"]["deployment"]["buildpacks"]
            .as_array()
            .map(Vec::len),
        Some(2)
    );
}
