//! Issue 16: paasd restarts, crashes and upgrades without a failed request. Instances outlive
//! paasd (their monitors keep them running and keep their output) and the next paasd adopts
//! them; the router runs in the edge process (`paasd __edge`), which outlives paasd too and
//! holds every client connection, so a restart or a SIGKILL of paasd touches none of them and
//! an upgrade hands the listening sockets to a new edge while the old one finishes its
//! requests. Real paasd, real containers, real HTTP through the router. Needs root.

#![forbid(unsafe_code)]

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use paas_tests::{have_root, load, Daemon};

const BASE: &str = "paas.localhost";

const SERVER: &str = r#"
import os, signal, sys, threading, time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

NAME = os.environ.get("APP_NAME", "?")

class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        if self.path.startswith("/slow"):
            time.sleep(2)
        body = f"{NAME}\n".encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass

def ticks():
    n = 0
    while True:
        n += 1
        print(f"tick {n}", flush=True)
        time.sleep(0.2)

if os.environ.get("IGNORE_TERM"):
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
else:
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
threading.Thread(target=ticks, daemon=True).start()
server = ThreadingHTTPServer(("0.0.0.0", int(os.environ["PORT"])), Handler)
server.daemon_threads = True
server.serve_forever()
"#;

fn deploy(d: &Daemon, app: &str, ignore_term: bool) {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(dir.path().join("Procfile"), "web: python3 server.py\n").expect("Procfile");
    std::fs::write(dir.path().join("server.py"), SERVER).expect("server.py");
    d.paas(&["create", app]).ok();
    let mut env = vec![
        "env".to_string(),
        "set".into(),
        app.into(),
        format!("APP_NAME={app}"),
    ];
    if ignore_term {
        env.push("IGNORE_TERM=1".into());
    }
    let env: Vec<&str> = env.iter().map(String::as_str).collect();
    d.paas(&env).ok();
    let out = d.deploy_dir(app, dir.path());
    assert!(out.contains("Routing to"), "{out}");
}

/// A copy of the paasd binary with bytes appended: another file, as an install would put
/// there, so its edge replaces the running one.
fn upgraded_binary(d: &Daemon) -> std::path::PathBuf {
    let upgraded = d.dir().join("paasd-upgraded");
    let mut bytes = std::fs::read(paas_tests::bin("paasd")).expect("read paasd");
    bytes.extend_from_slice(b"\n# upgraded\n");
    std::fs::write(&upgraded, bytes).expect("write the upgrade");
    std::fs::set_permissions(
        &upgraded,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .expect("chmod");
    upgraded
}

/// `GET path` with `Host: host` straight to the router's address (paasd may be away): the
/// status code, 0 if no response came.
fn status_of(router: std::net::SocketAddr, host: &str, path: &str) -> u16 {
    use std::io::{Read, Write};
    let Ok(mut s) = std::net::TcpStream::connect_timeout(&router, Duration::from_secs(5)) else {
        return 0;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(20)));
    let req = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    let mut out = String::new();
    if s.write_all(req.as_bytes()).is_err() || s.read_to_string(&mut out).is_err() {
        return 0;
    }
    out.split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

/// Every process of the daemon's containers: its helpers and all their descendants.
fn container_pids(d: &Daemon) -> BTreeSet<i32> {
    let parents: Vec<(i32, i32)> = std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let pid: i32 = e.file_name().to_str()?.parse().ok()?;
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            let after = stat.rsplit_once(')')?.1;
            let ppid: i32 = after.split_whitespace().nth(1)?.parse().ok()?;
            Some((pid, ppid))
        })
        .collect();
    let mut set: BTreeSet<i32> = d.helper_pids().iter().map(|p| p.as_raw()).collect();
    loop {
        let more: Vec<i32> = parents
            .iter()
            .filter(|(pid, ppid)| set.contains(ppid) && !set.contains(pid))
            .map(|(pid, _)| *pid)
            .collect();
        if more.is_empty() {
            return set;
        }
        set.extend(more);
    }
}

/// Each app's `paas ps` as (name, state, started_at).
fn instances(d: &Daemon, apps: &[&str]) -> Vec<(String, String, String)> {
    apps.iter()
        .flat_map(|app| {
            d.ps(app).into_iter().map(move |i| {
                (
                    format!("{app}/{}", i["name"].as_str().unwrap_or("")),
                    i["state"].as_str().unwrap_or("").to_string(),
                    i["started_at"].as_str().unwrap_or("").to_string(),
                )
            })
        })
        .collect()
}

#[test]
fn restarts_crashes_and_upgrades_fail_no_request_and_keep_the_instances() {
    if !have_root("restarts") {
        return;
    }
    let mut d = Daemon::start_holding_sockets("");
    let apps = ["calm", "steady", "stubborn"];
    deploy(&d, "calm", false);
    deploy(&d, "steady", false);
    // Ignores SIGTERM: a stop would wait its whole grace period for it.
    deploy(&d, "stubborn", true);
    let pids = container_pids(&d);
    let before = instances(&d, &apps);
    let mut edge = d.edge_pids();
    assert_eq!(edge.len(), 1, "one edge serves: {edge:?}");
    assert_eq!(before.len(), 3, "{before:?}");
    assert!(before.iter().all(|(_, s, _)| s == "up"), "{before:?}");
    assert!(pids.len() >= 9, "helpers, inits and servers: {pids:?}");

    let upgraded = upgraded_binary(&d);

    for phase in [
        "SIGTERM + start",
        "SIGKILL + start",
        "upgrade (SIGTERM + new binary)",
    ] {
        let loads: Vec<load::Load> = apps
            .iter()
            .zip([17, 17, 16])
            .map(|(app, conns)| {
                load::start_retrying(
                    d.router(),
                    &format!("{app}.{BASE}"),
                    conns,
                    Duration::from_secs(120),
                )
            })
            .collect();
        for l in &loads {
            l.wait_for_more(50, Duration::from_secs(20));
        }
        let down = Instant::now();
        match phase {
            "SIGTERM + start" => assert!(d.stop().success()),
            "SIGKILL + start" => d.crash(),
            _ => {
                assert!(d.stop().success());
                d.use_binary(upgraded.clone());
            }
        }
        d.restart();
        let gap = down.elapsed();
        for l in &loads {
            l.wait_for_more(200, Duration::from_secs(30));
        }
        let counts: Vec<load::Counts> = loads.into_iter().map(load::Load::stop).collect();
        let ok: u64 = counts.iter().map(|c| c.ok).sum();
        let failed: u64 = counts.iter().map(|c| c.failed).sum();
        let retried: u64 = counts.iter().map(|c| c.retried).sum();
        println!(
            "{phase}: paasd back in {:.2} s; {ok} requests ok, {failed} failed, {retried} \
             retried on a kept-alive connection paasd closed",
            gap.as_secs_f64()
        );
        for (app, c) in apps.iter().zip(&counts) {
            // The client connections belong to the edge, which none of these touches.
            assert_eq!(c.failed, 0, "{phase}: {app}: {:?}", c.errors);
            assert!(c.ok > 200, "{phase}: {app}: {c:?}");
            assert_eq!(
                c.bodies.keys().collect::<Vec<_>>(),
                [&format!("{app}\n")],
                "{phase}: {app}"
            );
        }
        assert_eq!(container_pids(&d), pids, "{phase}: the same processes run");
        if phase.starts_with("upgrade") {
            // The new binary's edge took over; the old one finished its requests and left.
            let deadline = Instant::now() + Duration::from_secs(10);
            while d.edge_pids().len() > 1 && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
            let now = d.edge_pids();
            assert_eq!(now.len(), 1, "{phase}: {now:?}");
            assert_ne!(now, edge, "{phase}: the edge of the new binary serves");
            edge = now;
        } else {
            assert_eq!(d.edge_pids(), edge, "{phase}: the same edge serves on");
        }
        assert_eq!(
            instances(&d, &apps),
            before,
            "{phase}: adopted, not restarted"
        );
    }
    let log = d.log_text();
    assert!(log.contains("adopted the instances"), "{log}");

    // The output went on while paasd was away: the monitors kept it.
    let logs = d
        .paas(&["logs", "calm", "--source", "app", "-n", "100000"])
        .ok()
        .to_string();
    let ticks: Vec<u64> = logs
        .lines()
        .filter_map(|l| {
            l.rsplit_once("tick ")
                .and_then(|(_, n)| n.trim().parse().ok())
        })
        .collect();
    assert!(ticks.len() > 20, "{logs}");
    let gaps: Vec<(u64, u64)> = ticks
        .windows(2)
        .filter(|w| w[1] != w[0] + 1)
        .map(|w| (w[0], w[1]))
        .collect();
    assert!(gaps.is_empty(), "output lost across restarts: {gaps:?}");

    // SIGINT stops everything: no container, no cgroup, no edge is left.
    assert!(d.stop_all().success());
    assert!(d.helper_pids().is_empty(), "{:?}", d.helper_pids());
    assert!(d.edge_pids().is_empty(), "{:?}", d.edge_pids());
    assert!(d.cgroups().is_empty(), "{:?}", d.cgroups());
}

/// An upgrade replaces the edge. The access lines of the requests the old edge served while
/// no paasd listened, and of the ones it finishes during its drain, still reach the app's
/// log: the retiring edge hands them to the new paasd on the connection that retired it.
#[test]
fn a_replaced_edge_hands_over_the_access_lines_of_its_last_requests() {
    if !have_root("restarts") {
        return;
    }
    let mut d = Daemon::start_holding_sockets("");
    deploy(&d, "relay", false);
    let host = format!("relay.{BASE}");
    let router = d.router();
    let old = d.edge_pids();
    assert_eq!(old.len(), 1, "{old:?}");
    let upgraded = upgraded_binary(&d);

    assert!(d.stop().success());
    // paasd is away: the edge serves on and keeps these lines.
    for i in 0..10 {
        let path = format!("/while-away-{i}");
        assert_eq!(status_of(router, &host, &path), 200, "{path}");
    }
    // In flight across the upgrade: the old edge finishes it, during its drain or before.
    let slow = {
        let host = host.clone();
        std::thread::spawn(move || status_of(router, &host, "/slow-across-the-upgrade"))
    };
    std::thread::sleep(Duration::from_millis(300));
    d.use_binary(upgraded);
    d.restart();
    assert_eq!(slow.join().expect("slow request"), 200);
    let deadline = Instant::now() + Duration::from_secs(15);
    while d.edge_pids().iter().any(|p| old.contains(p)) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let now = d.edge_pids();
    assert!(
        now.len() == 1 && !old.contains(&now[0]),
        "the new binary's edge alone serves: {now:?} (was {old:?})"
    );

    let wanted: Vec<String> = (0..10)
        .map(|i| format!("path=\"/while-away-{i}\""))
        .chain(["path=\"/slow-across-the-upgrade\"".to_string()])
        .collect();
    let deadline = Instant::now() + Duration::from_secs(10);
    let (log, missing) = loop {
        let log = d
            .paas(&["logs", "relay", "--source", "router", "-n", "1000"])
            .ok()
            .to_string();
        let missing: Vec<&String> = wanted
            .iter()
            .filter(|w| !log.contains(w.as_str()))
            .collect();
        if missing.is_empty() || Instant::now() > deadline {
            break (log, missing.into_iter().cloned().collect::<Vec<_>>());
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(missing.is_empty(), "access lines lost: {missing:?}\n{log}");
    assert!(d.stop_all().success());
    assert!(d.edge_pids().is_empty(), "{:?}", d.edge_pids());
}

/// Without anything holding the sockets (no systemd fd store): the next paasd takes the
/// router's sockets from the edge that kept serving, and if the edge itself dies, paasd starts
/// another on the same sockets.
#[test]
fn the_edge_keeps_serving_without_a_socket_holder_and_is_restarted_if_it_dies() {
    if !have_root("restarts_edge") {
        return;
    }
    let mut d = Daemon::start();
    deploy(&d, "calm", false);
    let router = d.router();
    let edge = d.edge_pids();
    assert_eq!(edge.len(), 1, "{edge:?}");
    // The process that parses untrusted HTTP and holds the keys runs as a uid of its own
    // (not nobody's, which other host processes share), with no capability and no way to
    // regain one.
    let status = std::fs::read_to_string(format!("/proc/{}/status", edge[0])).expect("status");
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .map(|v| v.split_whitespace().collect::<Vec<_>>().join(" "))
            .unwrap_or_default()
    };
    let uid = d.edge_uid();
    assert_eq!(
        field("Uid:"),
        format!("{uid} {uid} {uid} {uid}"),
        "{status}"
    );
    assert_eq!(
        field("Gid:"),
        format!("{uid} {uid} {uid} {uid}"),
        "{status}"
    );
    assert_eq!(field("Groups:"), "", "{status}");
    assert_eq!(field("CapEff:"), "0000000000000000", "{status}");
    assert_eq!(field("CapPrm:"), "0000000000000000", "{status}");
    assert_eq!(field("CapInh:"), "0000000000000000", "{status}");
    assert_eq!(field("CapAmb:"), "0000000000000000", "{status}");
    assert_eq!(field("CapBnd:"), "0000000000000000", "{status}");
    assert_eq!(field("NoNewPrivs:"), "1", "{status}");

    let l = load::start_retrying(router, &format!("calm.{BASE}"), 10, Duration::from_secs(60));
    l.wait_for_more(50, Duration::from_secs(20));
    d.crash();
    // paasd is gone: the edge answers on its own.
    l.wait_for_more(100, Duration::from_secs(10));
    d.restart();
    assert_eq!(
        d.router(),
        router,
        "the same port: the edge handed its socket over"
    );
    assert_eq!(d.edge_pids(), edge, "the same edge serves on");
    l.wait_for_more(100, Duration::from_secs(10));
    let c = l.stop();
    println!(
        "paasd SIGKILL + start, no socket holder: {} ok, {} failed",
        c.ok, c.failed
    );
    assert_eq!(c.failed, 0, "{:?}", c.errors);
    assert!(d.log_text().contains("took over the running edge"));

    // The edge dies: paasd starts a new one on the sockets it holds.
    nix::sys::signal::kill(edge[0], nix::sys::signal::Signal::SIGKILL).expect("kill the edge");
    // The listening socket stays open in paasd, so this waits in its queue for the new edge.
    let (status, _, body) = d.http(&format!("calm.{BASE}"), "/");
    assert_eq!((status, body.as_str()), (200, "calm\n"));
    let now = d.edge_pids();
    assert_eq!(now.len(), 1, "{now:?}");
    assert_ne!(now, edge);
    assert!(d
        .log_text()
        .contains("the edge went away; starting a new one"));

    assert!(d.stop_all().success());
    assert!(d.edge_pids().is_empty(), "{:?}", d.edge_pids());
    let left: Vec<_> = std::fs::read_dir(d.state_dir().join("edge"))
        .map(|r| r.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "no control socket is left: {left:?}");
}

/// Whatever listens in the monitors dir must prove it is one of this state dir's helpers
/// (SO_PEERCRED: root and the helper's argv) before paasd believes what it says.
#[test]
fn a_socket_that_is_not_a_monitor_is_not_adopted() {
    if !have_root("restarts_foreign") {
        return;
    }
    let mut d = Daemon::start();
    d.stop();
    let socket = d.state_dir().join("monitors/impostor");
    // Says what a monitor would say, but is a python process.
    let hello = r#"{"adopted":{"pid":1,"id":"x-web.1-1-1","tag":"{}","dropped":0,"running":true}}"#;
    let script = format!(
        "import socket, os\ns = socket.socket(socket.AF_UNIX)\ns.bind({:?})\ns.listen(1)\n\
         print('ready', flush=True)\nwhile True:\n    c, _ = s.accept()\n    try:\n        c.sendall(b'{hello}\\n')\n    except OSError:\n        pass\n    c.close()\n",
        socket.display().to_string()
    );
    let mut imp = std::process::Command::new("python3")
        .args(["-c", &script])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("python3");
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(imp.stdout.take().expect("stdout")),
        &mut line,
    )
    .expect("ready");
    d.restart();
    let log = d.log_text();
    let alive = imp.try_wait().expect("wait").is_none();
    let _ = imp.kill();
    let _ = imp.wait();
    assert!(
        log.contains("not adopting a leftover monitor")
            && log.contains("is not a helper of this state dir"),
        "{log}"
    );
    assert!(!socket.exists(), "the impostor's socket is removed");
    assert!(alive, "a process that is not paasd's is never killed");
}
