//! Issue 5: releases serve traffic through the router, scale, roll out without dropping a
//! request, refuse releases that never get healthy, and restart crashing instances with
//! backoff. Real paasd, real containers, real HTTP through the router. Needs root (skips
//! loudly otherwise; never skips under CI).

#![forbid(unsafe_code)]

use std::time::{Duration, Instant};

use paas_tests::{have_root, load, node_app, Daemon};
use serde_json::Value;

const BASE: &str = "paas.localhost";

fn daemon(test: &str, config: &str) -> Option<Daemon> {
    if !have_root(test) {
        return None;
    }
    Some(Daemon::start_with_config(config))
}

/// Waits until `cond` holds on `paas ps` (or panics with what it saw).
fn wait_ps(d: &Daemon, app: &str, what: &str, max: Duration, cond: impl Fn(&[Value]) -> bool) {
    let deadline = Instant::now() + max;
    loop {
        let list = d.ps(app);
        if cond(&list) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: not within {max:?}; ps: {list:#?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn the_router_serves_apps_by_host_and_says_404_and_503() {
    let Some(d) = daemon("router", "") else {
        return;
    };
    let app = node_app("v1");
    d.paas(&["create", "web1"]).ok();
    let out = d.deploy_dir("web1", app.path());
    assert!(out.contains("Routing to v2"), "{out}");

    let (status, head, body) = d.http(&format!("web1.{BASE}"), "/");
    assert_eq!(status, 200, "{head}\n{body}");
    assert_eq!(body, "Hello from node-hello v1 on web.1\n");
    assert!(
        head.to_ascii_lowercase().contains("x-request-id"),
        "a request id comes back: {head}"
    );
    // Case and port in Host do not matter.
    assert_eq!(d.http(&format!("WEB1.{BASE}:80"), "/").0, 200);

    d.paas(&["domains", "add", "web1", "www.example.test"]).ok();
    let (status, _, body) = d.http("www.example.test", "/");
    assert_eq!(
        (status, body.as_str()),
        (200, "Hello from node-hello v1 on web.1\n")
    );

    let (status, _, body) = d.http("nobody.example.test", "/");
    assert_eq!(status, 404);
    assert!(
        body.contains("nobody.example.test"),
        "404 names the host: {body}"
    );

    d.paas(&["scale", "web1", "web=0"]).ok();
    assert!(d.ps("web1").is_empty(), "scaled to 0: nothing runs");
    let (status, _, body) = d.http(&format!("web1.{BASE}"), "/");
    assert_eq!(status, 503, "{body}");
    assert!(
        body.to_lowercase().contains("web1"),
        "503 names the app: {body}"
    );

    // ps shows what runs; releases info shows the rollout phases.
    d.paas(&["scale", "web1", "web=1"]).ok();
    let list = d.ps("web1");
    assert_eq!(list.len(), 1, "{list:#?}");
    assert_eq!(list[0]["state"], "up");
    assert_eq!(list[0]["health"], "passing");
    assert_eq!(list[0]["release"], 2);
    let info = d.paas(&["releases", "info", "web1", "v2"]).ok().to_string();
    for phase in ["start", "ready", "switch", "drain"] {
        assert!(info.contains(phase), "releases info lacks {phase}: {info}");
    }
    d.paas(&["apps", "destroy", "web1", "--confirm", "web1"])
        .ok();
    assert_eq!(d.http(&format!("web1.{BASE}"), "/").0, 404);
    assert!(d.helper_pids().is_empty(), "destroy stops every instance");
}

#[test]
fn scaling_spreads_requests_and_drains_what_goes() {
    let Some(d) = daemon("scale", "") else { return };
    let app = node_app("v1");
    d.paas(&["create", "sc"]).ok();
    d.deploy_dir("sc", app.path());
    d.paas(&["scale", "sc", "web=3"]).ok();
    let list = d.ps("sc");
    let mut addrs: Vec<String> = list
        .iter()
        .map(|i| i["address"].as_str().unwrap_or("").to_string())
        .collect();
    addrs.sort();
    addrs.dedup();
    assert_eq!(addrs.len(), 3, "three distinct addresses: {list:#?}");
    assert!(list.iter().all(|i| i["state"] == "up"), "{list:#?}");

    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..30 {
        let (status, _, body) = d.http(&format!("sc.{BASE}"), "/");
        assert_eq!(status, 200, "{body}");
        seen.insert(body);
    }
    assert_eq!(seen.len(), 3, "all three instances get requests: {seen:?}");

    d.paas(&["scale", "sc", "web=1"]).ok();
    let list = d.ps("sc");
    assert_eq!(list.len(), 1, "two drained and gone: {list:#?}");
    assert_eq!(list[0]["name"], "web.1");
    assert_eq!(d.helper_pids().len(), 1, "one container left");
    for _ in 0..5 {
        assert_eq!(
            d.http(&format!("sc.{BASE}"), "/").2,
            "Hello from node-hello v1 on web.1\n"
        );
    }
}

#[test]
fn no_request_fails_while_deploying_configuring_rolling_back_scaling_and_restarting() {
    let Some(d) = daemon("zero-downtime", "") else {
        return;
    };
    let v1 = node_app("v1");
    let v2 = node_app("v2");
    d.paas(&["create", "zd"]).ok();
    d.deploy_dir("zd", v1.path());
    let host = format!("zd.{BASE}");
    let router = d.router();
    let step = |what: &str, run: &dyn Fn(), expect_after: &str| {
        let l = load::start(router, &host, 50, Duration::from_secs(240));
        l.wait_for_more(200, Duration::from_secs(10));
        run();
        l.wait_for_more(200, Duration::from_secs(10));
        let c = l.stop();
        println!(
            "{what}: {} ok, {} failed; bodies: {:?}",
            c.ok, c.failed, c.bodies
        );
        assert_eq!(c.failed, 0, "{what}: failed requests: {:?}", c.errors);
        assert!(c.ok > 400, "{what}: the load ran ({} ok)", c.ok);
        let (status, _, now) = d.http(&host, "/");
        assert!(
            status == 200 && now.starts_with(expect_after),
            "{what}: answers are now from {expect_after:?}, got {status} {now:?}; seen {:?}",
            c.first_seen
        );
        assert!(
            c.bodies.keys().any(|b| b.starts_with(expect_after)),
            "{what}: the load saw the new answers too: {:?}",
            c.bodies
        );
    };
    step(
        "deploy v2",
        &|| {
            d.deploy_dir("zd", v2.path());
        },
        "Hello from node-hello v2",
    );
    step(
        "env set",
        &|| {
            d.paas(&["env", "set", "zd", "GREETING=v3"]).ok();
        },
        "Hello from node-hello v3",
    );
    step(
        "rollback",
        &|| {
            d.paas(&["rollback", "zd"]).ok();
        },
        "Hello from node-hello v2",
    );
    step(
        "scale 1->3->1",
        &|| {
            d.paas(&["scale", "zd", "web=3"]).ok();
            d.paas(&["scale", "zd", "web=1"]).ok();
        },
        "Hello from node-hello v2 on web.1",
    );
    step(
        "restart",
        &|| {
            d.paas(&["restart", "zd"]).ok();
        },
        "Hello from node-hello v2 on web.1",
    );
    let releases = d.paas(&["--json", "releases", "zd"]).json();
    let statuses: Vec<(u64, String)> = releases
        .as_array()
        .expect("list")
        .iter()
        .map(|r| {
            (
                r["version"].as_u64().unwrap_or(0),
                r["status"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    assert_eq!(statuses[0], (5, "succeeded".to_string()), "{statuses:?}");
}

#[test]
fn a_release_that_never_gets_healthy_fails_and_the_old_one_keeps_serving() {
    let Some(d) = daemon("unhealthy", "") else {
        return;
    };
    let good = node_app("v1");
    d.paas(&["create", "uh"]).ok();
    d.deploy_dir("uh", good.path());
    d.paas(&[
        "checks",
        "set",
        "uh",
        "web",
        "--path",
        "/health",
        // Enough attempts for node to be listening on a loaded machine, so the last
        // error is the app's 500 and not a refused connect.
        "--attempts",
        "15",
        "--wait",
        "1",
        "--timeout",
        "2",
    ])
    .ok();
    let checks = d.paas(&["checks", "uh"]).ok().to_string();
    assert!(checks.contains("GET /health"), "{checks}");

    let bad = node_app("v2");
    let server = bad.path().join("server.js");
    let text = std::fs::read_to_string(&server).expect("read");
    std::fs::write(
        &server,
        text.replace("body = 'ok\\n';", "status = 500; body = 'broken\\n';"),
    )
    .expect("write");
    let l = load::start(
        d.router(),
        &format!("uh.{BASE}"),
        20,
        Duration::from_secs(120),
    );
    l.wait_for_more(100, Duration::from_secs(10));
    let r = d.paas(&[
        "deploy",
        "uh",
        "--source",
        &bad.path().display().to_string(),
    ]);
    l.wait_for_more(100, Duration::from_secs(10));
    let c = l.stop();
    println!("during the failed deploy: {} ok, {} failed", c.ok, c.failed);
    r.fails(1, "did not pass its readiness check");
    assert!(
        r.stderr.contains("GET /health on :5000: status 500"),
        "the check's last error is shown: {}",
        r.stderr
    );
    assert_eq!(c.failed, 0, "{:?}", c.errors);
    assert_eq!(
        c.bodies.keys().collect::<Vec<_>>(),
        vec!["Hello from node-hello v1 on web.1\n"],
        "only the old release answered"
    );
    let list = d.ps("uh");
    assert_eq!(list.len(), 1, "the new instances are gone: {list:#?}");
    assert_eq!(list[0]["release"], 2);
    let releases = d.paas(&["--json", "releases", "uh"]).json();
    assert_eq!(releases[0]["version"], 3);
    assert_eq!(releases[0]["status"], "failed");
}

#[test]
fn a_crashing_instance_backs_off_then_shows_crashed() {
    let Some(d) = daemon(
        "crash",
        "[instances]\nbackoff_initial_ms = 300\ncrash_limit = 3\n",
    ) else {
        return;
    };
    // Serves for a moment (so the deploy succeeds), then exits 3.
    let dir = tempfile::tempdir().expect("dir");
    std::fs::write(
        dir.path().join("Procfile"),
        "web: python3 -c \"import socket,time; s=socket.socket(); s.bind(('0.0.0.0',5000)); s.listen(); print('up', flush=True); time.sleep(1.5); raise SystemExit(3)\"\n",
    )
    .expect("procfile");
    d.paas(&["create", "cr"]).ok();
    d.deploy_dir("cr", dir.path());
    wait_ps(&d, "cr", "crashed", Duration::from_secs(60), |l| {
        l.first().is_some_and(|i| i["state"] == "crashed")
    });
    let list = d.ps("cr");
    assert_eq!(list[0]["restarts"], 3, "{list:#?}");
    assert!(
        list[0]["last_error"]
            .as_str()
            .unwrap_or("")
            .contains("exited with code 3"),
        "{list:#?}"
    );
    // The backoff doubles: 0.3 s, 0.6 s, 1.2 s.
    let platform = d
        .paas(&["logs", "cr", "--source", "platform"])
        .ok()
        .to_string();
    let delays: Vec<&str> = platform
        .lines()
        .filter_map(|l| l.split("restarting in ").nth(1))
        .collect();
    println!("{platform}");
    assert_eq!(delays, ["0.3 s", "0.6 s", "1.2 s"], "{platform}");
    assert!(platform.contains("not restarted"), "{platform}");
    // The router has nobody to send requests to.
    assert_eq!(d.http(&format!("cr.{BASE}"), "/").0, 503);
    // A restart tries again.
    let r = d.paas(&["restart", "cr"]);
    assert!(r.status.success(), "{r:#?}");
    wait_ps(&d, "cr", "restarted", Duration::from_secs(10), |l| {
        l.first().is_some_and(|i| i["restarts"] == 0)
    });
}

#[test]
fn app_output_reaches_followers_fast_and_platform_events_and_rotation_work() {
    let Some(d) = daemon(
        "logs-run",
        // Rotation is the subject here, not the line rate: 100k lines at once pass.
        "[instances]\nmemory_mb = 64\nbackoff_initial_ms = 60000\n[logs]\nmax_mb_per_app = 1\nsegment_mb = 1\nlines_per_sec = 1000000\n",
    ) else {
        return;
    };
    let app = node_app("v1");
    d.paas(&["create", "lg"]).ok();
    d.deploy_dir("lg", app.path());

    // A follower sees the app's own line for a request.
    let mut follow = d
        .paas_command(&["logs", "lg", "--follow", "--source", "app", "--tail", "0"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("paas logs --follow");
    let (tx, rx) = std::sync::mpsc::channel::<(Instant, String)>();
    let out = follow.stdout.take().expect("stdout");
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(out).lines().map_while(Result::ok) {
            if tx.send((Instant::now(), line)).is_err() {
                return;
            }
        }
    });
    std::thread::sleep(Duration::from_millis(500));
    let mut latencies = Vec::new();
    for n in 0..5 {
        let mark = format!("/mark-{n}");
        let sent = Instant::now();
        assert_eq!(d.http(&format!("lg.{BASE}"), &mark).0, 404);
        let answered = sent.elapsed();
        let (at, line) = loop {
            let (at, line) = rx
                .recv_timeout(Duration::from_secs(10))
                .expect("the follower sees the app's line");
            if line.contains(&mark) {
                break (at, line);
            }
        };
        assert!(line.contains("app[web.1]"), "{line}");
        latencies.push((at - sent).saturating_sub(answered));
    }
    let _ = follow.kill();
    let _ = follow.wait();
    println!("app line -> follower, after the response: {latencies:?}");

    // Router access lines and platform events are in the stream. Access lines come from the
    // edge process in batches, on their own path: the last one may land a moment after the
    // app's own line for the same request.
    let deadline = Instant::now() + Duration::from_secs(5);
    let router = loop {
        let router = d
            .paas(&["logs", "lg", "--source", "router"])
            .ok()
            .to_string();
        if router.contains("path=\"/mark-4\"") || Instant::now() > deadline {
            break router;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(
        router.contains("path=\"/mark-4\"")
            && router.contains("status=404")
            && router.contains("web.1"),
        "{router}"
    );
    let platform = d
        .paas(&["logs", "lg", "--source", "platform"])
        .ok()
        .to_string();
    assert!(platform.contains("web.1 started"), "{platform}");
    assert!(platform.contains("v2 is live"), "{platform}");

    // OOM kills are reported as such.
    let hog = tempfile::tempdir().expect("dir");
    std::fs::write(
        hog.path().join("Procfile"),
        "hog: python3 -c \"x = bytearray(300 * 1024 * 1024); import time; time.sleep(60)\"\n",
    )
    .expect("procfile");
    d.paas(&["create", "hog"]).ok();
    d.deploy_dir("hog", hog.path());
    d.paas(&["scale", "hog", "hog=1"]).ok();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let p = d
            .paas(&["logs", "hog", "--source", "platform"])
            .ok()
            .to_string();
        if p.contains("hog.1 was killed: out of memory (its limit is 64 MB)") {
            break;
        }
        assert!(Instant::now() < deadline, "no OOM event: {p}");
        std::thread::sleep(Duration::from_millis(300));
    }

    // A worker printing 100k lines: the stream stays under its cap and keeps the newest.
    let dir = tempfile::tempdir().expect("dir");
    std::fs::write(
        dir.path().join("Procfile"),
        "chatty: python3 -c \"[print('line', i, 'x' * 40) for i in range(100000)]; import time; time.sleep(600)\"\n",
    )
    .expect("procfile");
    d.paas(&["create", "ps2"]).ok();
    d.deploy_dir("ps2", dir.path());
    d.paas(&["scale", "ps2", "chatty=1"]).ok();
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut last = String::new();
    loop {
        std::thread::sleep(Duration::from_secs(1));
        let tail = d
            .paas(&["logs", "ps2", "--ps", "chatty", "--tail", "1"])
            .ok()
            .to_string();
        if tail == last && tail.contains("line 99") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the lines did not arrive: {tail}"
        );
        last = tail;
    }
    println!("last line kept: {last}");
    let stream = d.state_dir().join("logs/ps2/stream");
    let bytes: u64 = std::fs::read_dir(&stream)
        .expect("stream dir")
        .flatten()
        .filter_map(|e| e.metadata().ok())
        .map(|m| m.len())
        .sum();
    println!("ps2's log stream after 100k lines: {bytes} bytes on disk (cap 1 MiB)");
    assert!(bytes <= 1 << 20, "{bytes} bytes over the 1 MiB cap");
    assert!(bytes > 256 << 10, "the newest lines are kept: {bytes}");
}

#[test]
fn an_instance_failing_its_liveness_check_is_replaced_without_failing_a_request() {
    let Some(d) = daemon("liveness", "[instances]\nbackoff_initial_ms = 200\n") else {
        return;
    };
    // Healthy until somebody GETs /sick; from then on /health answers 500 (`/` still works).
    let app = node_app("v1");
    let server = app.path().join("server.js");
    let text = std::fs::read_to_string(&server).expect("read");
    let sick = text
        .replace(
            "} else if (url.pathname === '/health') {\n    body = 'ok\\n';",
            "} else if (url.pathname === '/sick') {\n    global.sick = true;\n    body = 'sick now\\n';\n  } else if (url.pathname === '/health') {\n    if (global.sick) { status = 500; body = 'sick\\n'; } else { body = 'ok\\n'; }",
        );
    assert!(sick.contains("global.sick = true"), "server.js changed");
    std::fs::write(&server, sick).expect("write");
    d.paas(&["create", "lv"]).ok();
    d.paas(&[
        "checks",
        "set",
        "lv",
        "web",
        "--type",
        "liveness",
        "--path",
        "/health",
        "--attempts",
        "2",
        "--wait",
        "1",
        "--timeout",
        "1",
    ])
    .ok();
    d.deploy_dir("lv", app.path());
    d.paas(&["scale", "lv", "web=2"]).ok();
    wait_ps(&d, "lv", "two up", Duration::from_secs(60), |l| {
        l.len() == 2 && l.iter().all(|i| i["state"] == "up")
    });
    let host = format!("lv.{BASE}");
    let l = load::start(d.router(), &host, 10, Duration::from_secs(120));
    l.wait_for_more(100, Duration::from_secs(10));
    let (status, _, body) = d.http(&host, "/sick");
    assert_eq!((status, body.as_str()), (200, "sick now\n"));
    wait_ps(
        &d,
        "lv",
        "the sick one replaced",
        Duration::from_secs(60),
        |l| {
            l.len() == 2
                && l.iter().all(|i| i["state"] == "up")
                && l.iter().any(|i| i["restarts"] == 1)
        },
    );
    l.wait_for_more(100, Duration::from_secs(10));
    let c = l.stop();
    println!("during the replacement: {} ok, {} failed", c.ok, c.failed);
    assert_eq!(c.failed, 0, "{:?}", c.errors);
    let list = d.ps("lv");
    let replaced = list
        .iter()
        .find(|i| i["restarts"] == 1)
        .expect("one was replaced");
    let why = replaced["last_error"].as_str().unwrap_or("");
    assert!(
        why.contains("failed its health check") && why.contains("status 500"),
        "{list:#?}"
    );
    let platform = d
        .paas(&["logs", "lv", "--source", "platform"])
        .ok()
        .to_string();
    assert!(
        platform.contains("failed its health check") && platform.contains("replaced"),
        "{platform}"
    );
    // The replacement is healthy again.
    assert_eq!(d.http(&host, "/health").0, 200);
}
