//! Issue 14 (isolation), what an app's floods look like to its owner, through the real
//! paasd, real containers and the real `paas`: a fork bomb against the pids limit is
//! reported once per episode, and neither paasd nor a neighbour notices; a process that
//! floods stdout is cut to its log rate and told so, without pushing the deploy's platform
//! and build lines out of `paas logs`; passwords inside URL-shaped config values are
//! redacted. Needs root (skips loudly otherwise; never skips under CI).

#![forbid(unsafe_code)]

use std::time::{Duration, Instant, SystemTime};

use paas_tests::{have_root, Daemon};

fn daemon(test: &str, config: &str) -> Option<Daemon> {
    if !have_root(test) {
        return None;
    }
    Some(Daemon::start_with_config(config))
}

/// An app of `files` (name, contents) deployed with the Procfile buildpack.
fn deploy(d: &Daemon, app: &str, files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tmp");
    for (name, body) in files {
        std::fs::write(dir.path().join(name), body).expect("write");
    }
    d.paas(&["create", app]).ok();
    d.deploy_dir(app, dir.path());
    dir
}

/// `paas logs APP ARGS...` until a line contains `needle`; all of its output then.
fn wait_for_log(d: &Daemon, app: &str, args: &[&str], needle: &str, max: Duration) -> String {
    let deadline = Instant::now() + max;
    let mut cmd = vec!["logs", app];
    cmd.extend_from_slice(args);
    loop {
        let out = d.paas(&cmd).ok().to_string();
        if out.contains(needle) {
            return out;
        }
        assert!(
            Instant::now() < deadline,
            "no {needle:?} in `paas {}` within {max:?}:\n{out}",
            cmd.join(" ")
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The time of a `paas logs` line (`2026-11-23T10:00:00.123Z ...`).
fn ts(line: &str) -> SystemTime {
    let stamp = line.split_whitespace().next().unwrap_or("");
    humantime::parse_rfc3339(stamp).unwrap_or_else(|e| panic!("{e}: {line}"))
}

/// The refused forks a report line counts: "fork failed 37 times", "... once", "... 3 more
/// times", "1,234".
fn forks_told(line: &str) -> u64 {
    let Some(rest) = line.split("fork failed ").nth(1) else {
        return 0;
    };
    if rest.starts_with("once") {
        return 1;
    }
    rest.split_whitespace()
        .next()
        .unwrap_or("")
        .replace(',', "")
        .parse()
        .unwrap_or_else(|e| panic!("{e}: {line}"))
}

/// Forks until the pids limit refuses, counts the refusals, says so, then idles: a bounded
/// fork bomb whose damage is known exactly.
const BOMB: &str = "\
import os, time
refused = 0
for i in range(200):
    try:
        if os.fork() == 0:
            time.sleep(600)
            os._exit(0)
    except OSError:
        refused += 1
print(f'forks refused: {refused}', flush=True)
time.sleep(600)
";

/// A neighbour that says it is alive twice a second.
const CALM: &str = "\
import time
n = 0
while True:
    n += 1
    print(f'calm tick {n}', flush=True)
    time.sleep(0.5)
";

#[test]
fn a_fork_bomb_is_reported_once_and_hurts_nobody_else() {
    let Some(d) = daemon(
        "a_fork_bomb_is_reported_once_and_hurts_nobody_else",
        "[instances]\npids = 32\nbackoff_initial_ms = 60000\n",
    ) else {
        return;
    };
    let _calm = deploy(
        &d,
        "calm",
        &[("Procfile", "worker: python3 calm.py\n"), ("calm.py", CALM)],
    );
    wait_for_log(&d, "calm", &[], "calm tick 2", Duration::from_secs(30));

    let _bomb = deploy(
        &d,
        "bomb",
        &[("Procfile", "worker: python3 bomb.py\n"), ("bomb.py", BOMB)],
    );
    let app = wait_for_log(
        &d,
        "bomb",
        &["--source", "app"],
        "forks refused: ",
        Duration::from_secs(30),
    );
    let said = app
        .lines()
        .find(|l| l.contains("forks refused: "))
        .expect("the app's line");
    let refused: u64 = said
        .rsplit(' ')
        .next()
        .and_then(|n| n.parse().ok())
        .expect("a count");
    assert!(refused > 150, "the limit of 32 held: {said}");

    let platform = wait_for_log(
        &d,
        "bomb",
        &["--source", "platform"],
        "worker.1 hit its process limit (32): fork failed ",
        Duration::from_secs(10),
    );
    let first = platform
        .lines()
        .find(|l| l.contains("hit its process limit"))
        .expect("the report");
    println!("app: {said}\nreport: {first}");
    println!(
        "report {:?} after the app's own line",
        ts(first).duration_since(ts(said)).unwrap_or_default()
    );
    // The episode ends once the counter stops growing; give it a few reads, then the lines
    // about it must add up to exactly what the kernel refused, in one episode.
    std::thread::sleep(Duration::from_secs(4));
    let platform = d
        .paas(&["logs", "bomb", "--source", "platform"])
        .ok()
        .to_string();
    let reports: Vec<&str> = platform
        .lines()
        .filter(|l| l.contains("fork failed"))
        .collect();
    assert_eq!(
        reports
            .iter()
            .filter(|l| l.contains(" hit its process limit"))
            .count(),
        1,
        "one episode, one first line: {reports:#?}"
    );
    assert!(reports.len() <= 2, "start and perhaps end: {reports:#?}");
    assert_eq!(
        reports.iter().map(|l| forks_told(l)).sum::<u64>(),
        refused,
        "{reports:#?}"
    );

    // The neighbour kept running and printing, and paasd answers as before.
    let before = d
        .paas(&["logs", "calm", "--source", "app", "-n", "1"])
        .ok()
        .to_string();
    std::thread::sleep(Duration::from_secs(2));
    let after = d
        .paas(&["logs", "calm", "--source", "app", "-n", "1"])
        .ok()
        .to_string();
    assert_ne!(before, after, "calm stopped printing");
    let t = Instant::now();
    let apps = d.paas(&["apps"]).ok().to_string();
    println!("`paas apps` during the bomb: {:?}", t.elapsed());
    assert!(apps.contains("calm") && apps.contains("bomb"), "{apps}");
    for app in ["calm", "bomb"] {
        let ps = d.ps(app);
        assert_eq!(ps.len(), 1, "{ps:#?}");
        assert_eq!(ps[0]["state"], "up", "{ps:#?}");
        assert_eq!(ps[0]["restarts"], 0, "{ps:#?}");
    }

    // A one-off hitting its own limit is told on its stderr.
    let run = d.paas(&[
        "run",
        "bomb",
        "--pids",
        "16",
        "--",
        "perl -e 'my $f = 0; for (1..40) { my $p = fork; if (!defined $p) { $f++ } elsif (!$p) { sleep 30; exit 0 } } print \"refused $f\\n\"'",
    ]);
    let out = run.ok().to_string();
    let refused: u64 = out
        .trim()
        .strip_prefix("refused ")
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{run:#?}"));
    assert!(refused > 20, "{run:#?}");
    let notes: Vec<&str> = run
        .stderr
        .lines()
        .filter(|l| l.starts_with("paas: the command "))
        .collect();
    assert!(
        notes.first().is_some_and(
            |l| l.starts_with("paas: the command hit its process limit (16): fork failed ")
        ),
        "{run:#?}"
    );
    assert_eq!(
        notes.iter().map(|l| forks_told(l)).sum::<u64>(),
        refused,
        "{run:#?}"
    );
}

/// Prints 20,000 lines a second (ten times the default log rate) until stopped.
const FLOOD: &str = "\
import sys, time
n = 0
while True:
    start = time.time()
    sys.stdout.write(''.join(f'flood line {n + i} ' + 'x' * 60 + '\\n' for i in range(2000)))
    sys.stdout.flush()
    n += 2000
    time.sleep(max(0.0, 0.1 - (time.time() - start)))
";

/// "worker.1: 12,345 log lines dropped in the last 10 s (...)": (12345, 10).
fn drop_report(line: &str) -> (u64, u64) {
    let (before, rest) = line
        .split_once(" log lines dropped")
        .unwrap_or_else(|| panic!("{line}"));
    let count = before.rsplit(' ').next().unwrap_or("").replace(',', "");
    let secs = rest
        .split("in the last ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .unwrap_or("");
    (
        count.parse().unwrap_or_else(|e| panic!("{e}: {line}")),
        secs.parse().unwrap_or_else(|e| panic!("{e}: {line}")),
    )
}

#[test]
fn a_log_flood_is_cut_to_its_rate_and_keeps_the_deploy_lines() {
    let Some(d) = daemon(
        "a_log_flood_is_cut_to_its_rate_and_keeps_the_deploy_lines",
        "[logs]\nmax_mb_per_app = 1\nsegment_mb = 1\n",
    ) else {
        return;
    };
    let started = Instant::now();
    let _flood = deploy(
        &d,
        "flood",
        &[
            ("Procfile", "worker: python3 flood.py\n"),
            ("flood.py", FLOOD),
        ],
    );
    let report = "log lines dropped in the last ";
    let platform = wait_for_log(
        &d,
        "flood",
        &["--source", "platform"],
        report,
        Duration::from_secs(40),
    );
    let line = platform
        .lines()
        .find(|l| l.contains(report))
        .expect("the report");
    println!("{line}");
    assert!(
        line.contains(" paasd v2: worker.1: ")
            && line.ends_with("(app writes faster than 2,000 lines/s, the log limit per process)"),
        "{line}"
    );
    let (dropped, secs) = drop_report(line);
    println!(
        "dropped {dropped} lines in {secs} s: the app wrote about {} lines/s, 2,000 kept",
        dropped / secs + 2000
    );
    // The app writes 20,000 lines/s, 2,000 pass: about 18,000 a second are dropped.
    assert!((10..=13).contains(&secs), "{line}");
    assert!(dropped > 10_000 * secs, "{line}");

    // The flood writes on until its stream has rotated: its oldest lines are gone.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let app = d
            .paas(&["logs", "flood", "--source", "app", "-n", "100000"])
            .ok()
            .to_string();
        if !app.contains("flood line 0 ") {
            break;
        }
        assert!(Instant::now() < deadline, "the app's stream never rotated");
        std::thread::sleep(Duration::from_secs(1));
    }
    let stream = d.state_dir().join("logs/flood/stream");
    let on_disk: u64 = std::fs::read_dir(&stream)
        .expect("stream dir")
        .flatten()
        .filter_map(|e| e.metadata().ok())
        .map(|m| m.len())
        .sum();
    assert!(on_disk <= 1 << 20, "{on_disk} bytes over the 1 MiB cap");

    // The deploy's lines from before the flood are all still there, in time order before it.
    let all = d.paas(&["logs", "flood", "-n", "100000"]).ok().to_string();
    let lines: Vec<&str> = all.lines().collect();
    let at = |needle: &str| {
        lines
            .iter()
            .position(|l| l.contains(needle))
            .unwrap_or_else(|| panic!("no {needle:?} in `paas logs` ({} lines)", lines.len()))
    };
    let first_flood = at("app[worker.1] v2: flood line ");
    for needle in [
        "paasd: Deploy 1 started by root",
        "build: -----> Procfile app detected",
        "paasd v2: Release v2 created by root (deploy 1)",
        "paasd v2: worker.1 started: python3 flood.py",
    ] {
        assert!(at(needle) < first_flood, "{needle} after the flood");
    }
    // Merged in the order they were written: the drop reports sit among the flood's lines.
    let first_report = at(report);
    assert!(
        first_report > first_flood && first_report < lines.len() - 1,
        "{first_report} of {}",
        lines.len()
    );
    // The report is rate limited: one line per 10 s at most.
    let reports = lines.iter().filter(|l| l.contains(report)).count() as u64;
    let elapsed = started.elapsed().as_secs();
    println!("{reports} drop reports in {elapsed} s");
    assert!(
        reports >= 1 && reports <= elapsed / 10 + 1,
        "{reports} in {elapsed} s"
    );
}

#[test]
fn passwords_inside_urls_are_redacted_unless_revealed() {
    let Some(d) = daemon("passwords_inside_urls_are_redacted_unless_revealed", "") else {
        return;
    };
    d.paas(&["create", "cfg"]).ok();
    let set = d.paas(&[
        "env",
        "set",
        "cfg",
        "DATABASE_URL=postgres://app:hunter2@db.internal:5432/app",
        "REDIS_URL=redis://:s3cret@[::1]:6379/0",
        "BROKER=amqp://guest:p%40ss@rabbit/vhost",
        "PROFILE=https://example.com/users/@alice",
        "REPLICA=postgres://reader@db2/app",
    ]);
    set.ok();
    let secrets = ["hunter2", "s3cret", "p%40ss"];
    let human = d.paas(&["env", "cfg"]);
    let out = human.ok();
    for line in [
        "DATABASE_URL=postgres://app:[REDACTED]@db.internal:5432/app\n",
        "REDIS_URL=redis://:[REDACTED]@[::1]:6379/0\n",
        "BROKER=amqp://guest:[REDACTED]@rabbit/vhost\n",
        "PROFILE=https://example.com/users/@alice\n",
        "REPLICA=postgres://reader@db2/app\n",
    ] {
        assert!(out.contains(line), "no {line:?} in {human:#?}");
    }
    assert!(
        human
            .stderr
            .contains("3 value(s) hidden as [REDACTED]; add --reveal to show them"),
        "{human:#?}"
    );
    let json = d.paas(&["env", "cfg", "--json"]).json();
    assert_eq!(
        json["redacted"],
        serde_json::json!(["BROKER", "DATABASE_URL", "REDIS_URL"])
    );
    for run in [&set, &human] {
        for s in secrets {
            assert!(
                !run.stdout.contains(s) && !run.stderr.contains(s),
                "{s}: {run:#?}"
            );
        }
    }
    assert!(!json.to_string().contains("hunter2"), "{json}");

    // --reveal and `env get` show the values as they are.
    let revealed = d.paas(&["env", "cfg", "--reveal"]);
    assert!(
        revealed
            .ok()
            .contains("DATABASE_URL=postgres://app:hunter2@db.internal:5432/app\n"),
        "{revealed:#?}"
    );
    assert_eq!(
        d.paas(&["env", "get", "cfg", "REDIS_URL"]).ok(),
        "redis://:s3cret@[::1]:6379/0\n"
    );
    // Nor did paasd write them to its own log.
    let log = d.log_text();
    for s in secrets {
        assert!(!log.contains(s), "{s} in paasd's log");
    }
}
