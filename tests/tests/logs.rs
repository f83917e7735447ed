//! Issue 6: the app log stream through the real daemon and the real `paas logs`: build
//! output and deploy events land in the stream, filters, `--json`, errors a person can act
//! on, logs surviving a paasd restart, `--follow` seeing a build as it runs, followers ending
//! with their client / the app / paasd, and rotation keeping a noisy app under its cap.
//! (App output arrives with the supervisor.) Needs root (skips loudly otherwise; never
//! skips under CI).

#![forbid(unsafe_code)]

use std::io::BufRead;
use std::path::Path;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use paas_api::{LogEvent, LogSource};
use paas_tests::{have_root, repo_root, Background, Daemon};

fn daemon(test: &str, config: &str) -> Option<Daemon> {
    if !have_root(test) {
        return None;
    }
    Some(Daemon::start_with_config(config))
}

/// A buildpack that detects anything and runs `compile` (bash) as its compile step.
fn buildpack(dir: &Path, compile: &str) -> String {
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).expect("mkdir");
    for (name, body) in [
        ("detect", "echo Logpack"),
        ("compile", compile),
        (
            "release",
            "printf -- '---\\ndefault_process_types:\\n  worker: sleep 1000\\n'",
        ),
    ] {
        paas_tests::write_script(&bin.join(name), body);
    }
    dir.display().to_string()
}

/// A one-file source for those buildpacks (kept while the guard lives).
fn source_dir() -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().expect("tmp");
    std::fs::write(dir.path().join("app.txt"), "hello\n").expect("write");
    let path = dir.path().display().to_string();
    (dir, path)
}

/// Lines of a background `paas` as they are printed, read on a thread of their own.
fn lines_of(bg: &mut Background) -> mpsc::Receiver<String> {
    let stdout = bg.child.stdout.take().expect("stdout");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// Collects lines until one contains `needle`; panics with what was seen after `within`.
fn wait_for(rx: &mpsc::Receiver<String>, needle: &str, within: Duration) -> Vec<String> {
    let deadline = Instant::now() + within;
    let mut seen = Vec::new();
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        match rx.recv_timeout(left) {
            Ok(line) => {
                let found = line.contains(needle);
                seen.push(line);
                if found {
                    return seen;
                }
            }
            Err(_) => break,
        }
    }
    panic!("no line with {needle:?} within {within:?}; saw {seen:#?}");
}

/// paasd's log without colours.
fn plain_log(d: &Daemon) -> String {
    let text = d.log_text();
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // `ESC [ ... m`
            for c in chars.by_ref() {
                if c == 'm' {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Waits until paasd has answered a `/logs` request of `app` (the follower is subscribed
/// then: its subscription is queued before any later line).
fn wait_for_follower(d: &Daemon, app: &str) {
    let needle = format!("path=/api/v1/apps/{app}/logs status=200");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !plain_log(d).contains(&needle) {
        assert!(Instant::now() < deadline, "no logs request in paasd's log");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn disk_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .filter_map(|e| e.metadata().ok())
                .filter(|m| m.is_file())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}

#[test]
fn a_deploy_lands_in_the_stream_and_survives_a_restart() {
    let Some(mut d) = daemon("a_deploy_lands_in_the_stream_and_survives_a_restart", "") else {
        return;
    };
    let example = repo_root().join("examples/procfile-hello");
    d.paas(&["create", "hello"]).ok();
    d.paas(&[
        "deploy",
        "hello",
        "--source",
        &example.display().to_string(),
    ])
    .ok();

    // Build output, tagged `build`, the release once it exists.
    let build = d.paas(&["logs", "hello", "--source", "build"]);
    let out = build.ok();
    assert!(
        out.lines()
            .all(|l| l.contains(" build: ") || l.contains(" build v2: ")),
        "{out}"
    );
    assert!(
        out.contains(" build: -----> Procfile app detected"),
        "{out}"
    );
    assert!(
        out.contains(" build v2: -----> Released v2 of hello"),
        "{out}"
    );
    let first = out.lines().next().expect("a line");
    assert_eq!(&first[23..25], "Z ", "UTC with milliseconds: {first}");

    // Deploy events, tagged `paasd`.
    let platform = d.paas(&["logs", "hello", "--source", "platform"]);
    let out = platform.ok().to_string();
    assert!(out.contains(" paasd: Deploy 1 started by root"), "{out}");
    assert!(
        out.contains(" paasd v2: Release v2 created by root (deploy 1)"),
        "{out}"
    );

    // Filters.
    let two = d.paas(&["logs", "hello", "--tail", "2"]);
    assert_eq!(two.ok().lines().count(), 2, "{two:#?}");
    let v2 = d.paas(&["logs", "hello", "--release", "v2"]);
    assert!(v2.ok().lines().all(|l| l.contains(" v2: ")), "{v2:#?}");
    assert!(v2.stdout.contains("Released v2"), "{v2:#?}");
    let ps = d.paas(&["logs", "hello", "--ps", "paasd"]);
    assert!(ps.ok().lines().all(|l| l.contains(" paasd")), "{ps:#?}");
    let recent = d.paas(&["logs", "hello", "--since", "10m", "--source", "platform"]);
    assert_eq!(
        recent.ok(),
        out,
        "everything happened in the last 10 minutes"
    );
    let future = d.paas(&["logs", "hello", "--since", "2099-01-01T00:00:00Z"]);
    assert_eq!(future.ok(), "");

    // --json: NDJSON events as paasd sent them.
    let json = d.paas(&["logs", "hello", "--json", "--source", "build"]);
    let events: Vec<LogEvent> = json
        .ok()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    assert!(events.len() > 3, "{events:?}");
    for ev in &events {
        match ev {
            LogEvent::Line(l) => {
                assert_eq!((l.source, l.process.as_str()), (LogSource::Build, "build"));
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    // Mistakes: said plainly, nothing printed on stdout.
    let bad = d.paas(&["logs", "hello", "--since", "yesterday"]);
    bad.fails(
        1,
        "since: 'yesterday' is neither a duration nor a time; give a duration like 2h",
    );
    assert_eq!(bad.stdout, "");
    d.paas(&["logs", "hello", "--source", "stdout"])
        .fails(1, "give app, router, build, platform or cron");
    d.paas(&["logs", "nope"])
        .fails(1, "app 'nope' does not exist");

    // A paasd restart keeps everything.
    d.stop();
    d.restart();
    let again = d.paas(&["logs", "hello", "--source", "platform"]);
    // Everything from before, then the instance stopped with paasd and started again.
    assert!(again.ok().starts_with(out.as_str()), "{again:#?}");
    let platform = d.state_dir().join("logs/hello/platform");
    assert!(platform.is_dir(), "{}", platform.display());

    // Destroying the app removes its logs.
    d.paas(&["destroy", "hello", "--confirm", "hello"]).ok();
    assert!(!d.state_dir().join("logs/hello").exists());
    d.paas(&["create", "hello"]).ok();
    assert_eq!(
        d.paas(&["logs", "hello"]).ok(),
        "",
        "a new app starts empty"
    );
}

#[test]
fn follow_shows_a_build_while_it_runs_and_ends_with_its_client() {
    let Some(d) = daemon(
        "follow_shows_a_build_while_it_runs_and_ends_with_its_client",
        "",
    ) else {
        return;
    };
    let bps = tempfile::tempdir().expect("tmp");
    let bp = buildpack(
        bps.path(),
        "echo '-----> step one'\nsleep 4\necho '-----> step two'",
    );
    d.paas(&["create", "slow"]).ok();
    d.paas(&["buildpacks", "set", "slow", &bp]).ok();
    let (_src, src) = source_dir();

    let mut follower = d.spawn_paas(&["logs", "slow", "--follow", "--tail", "0"]);
    let lines = lines_of(&mut follower);
    wait_for_follower(&d, "slow");
    // A second follower at the same time, in JSON, to measure how late lines arrive.
    let mut timed = d.spawn_paas(&["logs", "slow", "-f", "-n", "0", "--json"]);
    let timed_lines = lines_of(&mut timed);
    let stamp = std::thread::spawn(move || {
        let mut delays = Vec::new();
        while let Ok(l) = timed_lines.recv() {
            let arrived = std::time::SystemTime::now();
            let Ok(LogEvent::Line(line)) = serde_json::from_str::<LogEvent>(&l) else {
                panic!("not a line event: {l}");
            };
            let ts = humantime::parse_rfc3339(&line.ts).expect("timestamp");
            delays.push(arrived.duration_since(ts).unwrap_or_default());
            if line.line.contains("Release v2 created") {
                break;
            }
        }
        delays
    });
    while plain_log(&d)
        .matches("path=/api/v1/apps/slow/logs status=200")
        .count()
        < 2
    {
        std::thread::sleep(Duration::from_millis(20));
    }
    let started = Instant::now();
    let mut deploy = d.spawn_paas(&["deploy", "slow", "--source", &src]);
    let seen = wait_for(&lines, "step one", Duration::from_secs(60));
    let first_at = started.elapsed();
    assert!(
        deploy.running(),
        "the follower saw the build's first step only after the deploy ended: {seen:#?}"
    );
    assert!(
        seen[0].contains("paasd: Deploy 1 started by root"),
        "{seen:#?}"
    );
    let rest = wait_for(&lines, "Release v2 created", Duration::from_secs(60));
    assert!(
        rest.iter().any(|l| l.contains("build: -----> step two")),
        "{rest:#?}"
    );
    deploy.finish().ok();
    println!("the follower printed the build's first step {first_at:?} after the deploy began");
    let mut delays = stamp.join().expect("timed follower");
    drop(timed);
    delays.sort();
    assert!(delays.len() >= 5, "{delays:?}");
    println!(
        "append to `paas logs -f --json` stdout over {} lines: median {:?}, max {:?}",
        delays.len(),
        delays[delays.len() / 2],
        delays[delays.len() - 1]
    );

    // The client goes away: paasd drops its follower promptly.
    let before = plain_log(&d).matches("log follower ended").count();
    drop(follower);
    let deadline = Instant::now() + Duration::from_secs(10);
    while plain_log(&d).matches("log follower ended").count() == before {
        assert!(
            Instant::now() < deadline,
            "the follower outlived its client"
        );
        std::thread::sleep(Duration::from_millis(20));
    }

    // Several followers at once; destroying the app ends them.
    let mut a = d.spawn_paas(&["logs", "slow", "-f", "--source", "platform"]);
    let mut b = d.spawn_paas(&["logs", "slow", "-f", "--json", "-n", "1"]);
    let (a_lines, b_lines) = (lines_of(&mut a), lines_of(&mut b));
    wait_for(&a_lines, "Release v2 created", Duration::from_secs(10));
    let b_first = wait_for(&b_lines, "Release v2 created", Duration::from_secs(10));
    assert_eq!(b_first.len(), 1, "--tail 1: {b_first:#?}");
    d.paas(&["destroy", "slow", "--confirm", "slow"]).ok();
    for (name, bg) in [("a", a), ("b", b)] {
        let run = bg.finish();
        assert!(run.status.success(), "{name}: {run:#?}");
        assert!(
            run.stderr.contains("the log stream ended"),
            "{name}: {run:#?}"
        );
    }
}

#[test]
fn stopping_paasd_ends_followers_instead_of_waiting_for_them() {
    let Some(mut d) = daemon(
        "stopping_paasd_ends_followers_instead_of_waiting_for_them",
        "",
    ) else {
        return;
    };
    d.paas(&["create", "quiet"]).ok();
    let follower = d.spawn_paas(&["logs", "quiet", "-f"]);
    wait_for_follower(&d, "quiet");
    let status = d.stop();
    assert!(status.success(), "{status}");
    let log = plain_log(&d);
    assert!(log.contains("all connections closed"), "{log}");
    assert!(!log.contains("drain timeout"), "{log}");
    let run = follower.finish();
    assert!(run.status.success(), "{run:#?}");
}

#[test]
fn rotation_keeps_an_app_printing_100k_lines_under_the_cap() {
    // Build output is kept with the platform lines, under their own cap.
    let Some(d) = daemon(
        "rotation_keeps_an_app_printing_100k_lines_under_the_cap",
        "[logs]\nplatform_mb_per_app = 1\n",
    ) else {
        return;
    };
    let bps = tempfile::tempdir().expect("tmp");
    let bp = buildpack(
        bps.path(),
        "seq 1 100000 | sed 's/^/noisy build output line /'",
    );
    d.paas(&["create", "noisy"]).ok();
    d.paas(&["buildpacks", "set", "noisy", &bp]).ok();
    let (_src, src) = source_dir();
    let t = Instant::now();
    d.paas(&["deploy", "noisy", "--source", &src]).ok();
    println!("deploy printing 100k lines took {:?}", t.elapsed());
    let stream = d.state_dir().join("logs/noisy/platform");
    // Let the writer catch up with the last lines (it flushes after every batch).
    // The last build lines are the slug and rollout steps after the 100k.
    let last = d.paas(&["logs", "noisy", "--source", "build", "--tail", "15"]);
    let used = disk_bytes(&stream);
    let deploy_log = disk_bytes(&d.state_dir().join("logs/noisy"));
    println!(
        "platform set on disk after 100k build lines: {used} bytes (cap {}), deploy log {deploy_log} bytes",
        1 << 20
    );
    assert!(used <= 1 << 20, "{used} bytes on disk, cap 1 MiB");
    assert!(used > 1 << 19, "rotation keeps most of the cap: {used}");
    assert!(
        last.ok().contains("noisy build output line 100000"),
        "{last:#?}"
    );
    let all = d.paas(&["logs", "noisy", "--tail", "100000"]);
    let n = all.ok().lines().count();
    assert!(n > 1000 && n < 100_000, "{n} lines kept");
    let platform = d.paas(&["logs", "noisy", "--source", "platform"]);
    assert!(
        platform.ok().contains("Release v2 created"),
        "{platform:#?}"
    );
}
