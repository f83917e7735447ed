//! Issue 13, the app contract: every container runs our init as PID 1, so an app without a
//! SIGTERM handler stops at once instead of waiting out the grace period, orphans and fork
//! bombs leave no zombies, and a rollout finishes as soon as the old instances have exited;
//! an app without `web` runs one `worker`. Real paasd, real containers, real HTTP through the
//! router. Needs root (skips loudly otherwise; never skips under CI).

#![forbid(unsafe_code)]

use std::time::{Duration, Instant};

use paas_tests::{have_root, load, node_app, repo_root, Daemon};

const BASE: &str = "paas.localhost";

fn platform_log(d: &Daemon, app: &str) -> String {
    d.paas(&["logs", app, "--source", "platform", "-n", "1000"])
        .ok()
        .to_string()
}

/// Polls `f` until it returns `Some`, or panics with `what` after `max`.
fn eventually<T>(what: &str, max: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + max;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "{what}: not within {max:?}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// node-hello without its SIGTERM handler, started by a Procfile `web: node server.js`: what
/// most sample servers look like. bash execs a lone command, so without an init node itself
/// was the container's PID 1, and the kernel dropped every SIGTERM sent to it.
fn node_app_without_sigterm_handler() -> tempfile::TempDir {
    let dir = node_app("v1");
    let path = dir.path().join("server.js");
    let server = std::fs::read_to_string(&path).expect("read server.js");
    let start = server
        .find("for (const signal of ['SIGTERM', 'SIGINT'])")
        .expect("server.js has its signal handlers; update this test");
    std::fs::write(&path, &server[..start]).expect("write server.js");
    std::fs::write(dir.path().join("Procfile"), "web: node server.js\n").expect("Procfile");
    dir
}

#[test]
fn an_app_without_a_sigterm_handler_restarts_at_once_without_dropping_a_request() {
    if !have_root("restart without a SIGTERM handler") {
        return;
    }
    // The default grace period (30 s): without an init the old instance sat it out.
    let d = Daemon::start();
    let app = node_app_without_sigterm_handler();
    d.paas(&["create", "noterm"]).ok();
    d.deploy_dir("noterm", app.path());
    let host = format!("noterm.{BASE}");
    let before = d.ps("noterm");
    assert_eq!(before.len(), 1, "{before:#?}");

    let l = load::start(d.router(), &host, 20, Duration::from_secs(120));
    l.wait_for_more(200, Duration::from_secs(10));
    let t = Instant::now();
    let r = d.paas(&["restart", "noterm"]);
    let took = t.elapsed();
    l.wait_for_more(200, Duration::from_secs(10));
    let c = l.stop();
    println!(
        "restart of an app without a SIGTERM handler: {took:?}; {} ok, {} failed",
        c.ok, c.failed
    );
    assert!(r.status.success(), "{r:#?}");
    assert_eq!(c.failed, 0, "failed requests: {:?}", c.errors);
    let platform = platform_log(&d, "noterm");
    // The old instance ended on the SIGTERM our init passed on, not on the SIGKILL after the
    // grace period.
    let stopped = platform
        .lines()
        .find(|l| l.contains("web.1 stopped") && l.contains("after SIGTERM"))
        .unwrap_or_else(|| panic!("no stop report in the platform log:\n{platform}"));
    assert!(stopped.contains("exited on SIGTERM"), "{stopped}");
    assert!(!platform.contains("did not exit within"), "{platform}");
    assert!(
        took < Duration::from_secs(30),
        "the restart waited out the grace period: {took:?}"
    );
    let after = d.ps("noterm");
    assert_eq!(after.len(), 1, "{after:#?}");
    // The replacement started while the old one held its address, so it has another one.
    assert_ne!(
        after[0]["address"], before[0]["address"],
        "a new instance serves"
    );
}

/// A web app that can make orphans and a fork bomb and count zombies in its container. It
/// runs as the command of `exec`: before our init it was the container's PID 1 itself, and
/// like most servers it never reaps children it did not start.
const ZOMBIE_APP: &str = r#"
import os, subprocess, sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

BOMB = '''
import os
n = 0
while n < 2000:
    try:
        pid = os.fork()
    except OSError:
        break
    if pid == 0:
        os._exit(0)
    n += 1
print(n, flush=True)
os._exit(0)
'''

def zombies():
    n = 0
    for p in os.listdir('/proc'):
        if p.isdigit():
            try:
                with open(f'/proc/{p}/stat') as f:
                    if f.read().rsplit(')', 1)[1].split()[0] == 'Z':
                        n += 1
            except OSError:
                pass
    return n

class H(BaseHTTPRequestHandler):
    def do_GET(self):
        if self.path == '/orphans':
            # Each inner shell starts a sleep and exits: the sleeps are orphans.
            subprocess.run(['sh', '-c', 'for i in 1 2 3 4 5; do sh -c "sleep 0.2 & exit 0"; done'])
            body = 'spawned'
        elif self.path == '/bomb':
            out = subprocess.run([sys.executable, '-c', BOMB], capture_output=True, text=True)
            body = 'forked ' + out.stdout.strip()
        elif self.path == '/zombies':
            body = str(zombies())
        else:
            body = 'ok'
        data = body.encode()
        self.send_response(200)
        self.send_header('Content-Length', str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *a):
        pass

ThreadingHTTPServer(('0.0.0.0', int(os.environ['PORT'])), H).serve_forever()
"#;

#[test]
fn orphans_and_a_fork_bomb_leave_no_zombies() {
    if !have_root("zombies") {
        return;
    }
    let d = Daemon::start();
    let app = tempfile::tempdir().expect("tempdir");
    std::fs::write(app.path().join("Procfile"), "web: exec python3 server.py\n").expect("write");
    std::fs::write(app.path().join("server.py"), ZOMBIE_APP).expect("write");
    d.paas(&["create", "zomb"]).ok();
    d.deploy_dir("zomb", app.path());
    let host = format!("zomb.{BASE}");
    let get = |path: &str| {
        let (status, _, body) = d.http(&host, path);
        assert_eq!(status, 200, "{path}: {body}");
        body
    };
    assert_eq!(get("/zombies"), "0");

    // Double fork: the orphaned sleeps exit after 0.2 s; only PID 1 can reap them.
    assert_eq!(get("/orphans"), "spawned");
    eventually("orphans reaped", Duration::from_secs(10), || {
        (get("/zombies") == "0").then_some(())
    });

    // A fork bomb stopped by the pids limit (512): its children exit at once and their
    // parent exits without waiting for them.
    let forked = get("/bomb");
    let n: u32 = forked
        .strip_prefix("forked ")
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("bomb answer: {forked}"));
    println!("the fork bomb forked {n} times before the pids limit");
    assert!(n >= 100, "the bomb ran: {n}");
    let left = eventually("bomb zombies reaped", Duration::from_secs(20), || {
        let z = get("/zombies");
        (z == "0").then_some(z)
    });
    assert_eq!(left, "0");
    // The instance is still the same and still serves.
    let list = d.ps("zomb");
    assert_eq!(list[0]["restarts"], 0, "{list:#?}");
}

#[test]
fn a_worker_only_app_starts_one_worker() {
    if !have_root("worker-only app") {
        return;
    }
    let d = Daemon::start();
    d.paas(&["create", "wo"]).ok();
    let src = repo_root().join("examples/worker-only");
    let out = d.deploy_dir("wo", &src);
    assert!(out.contains("worker"), "{out}");
    let list = eventually("a worker runs", Duration::from_secs(30), || {
        let list = d.ps("wo");
        list.iter()
            .any(|i| i["name"] == "worker.1" && i["state"] == "up")
            .then_some(list)
    });
    assert_eq!(list.len(), 1, "only the worker: {list:#?}");
    let logs = eventually("the worker logs", Duration::from_secs(20), || {
        let text = d.paas(&["logs", "wo", "--ps", "worker.1"]).ok().to_string();
        text.contains("worker-only v1 tick").then_some(text)
    });
    assert!(logs.contains("app[worker.1]"), "{logs}");
    // `paas scale` names its process types; scaling it works like any type.
    let formation = d.paas(&["scale", "wo"]).ok().to_string();
    assert!(formation.contains("worker"), "{formation}");
    d.paas(&["scale", "wo", "worker=0"]).ok();
    eventually("the worker stopped", Duration::from_secs(30), || {
        d.ps("wo").is_empty().then_some(())
    });
    // An explicit count stays: a redeploy does not bring the default back.
    d.deploy_dir("wo", &src);
    std::thread::sleep(Duration::from_secs(1));
    assert!(d.ps("wo").is_empty(), "{:#?}", d.ps("wo"));
}
