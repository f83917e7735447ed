//! Issue 16: paasd killed with SIGKILL at random points of a deploy, a scale and a config
//! change. After each restart every app runs its last good release at its formation and
//! serves, the containers of the last paasd are adopted or stopped, and nothing leaks: one
//! helper, one cgroup, one veth and one monitor socket per running instance, no release left
//! pending. Real paasd, real builds, real containers. Needs root.

#![forbid(unsafe_code)]

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use paas_tests::{have_root, Daemon};

const BASE: &str = "paas.localhost";
const TRIALS: u32 = 50;

const SERVER: &str = r#"
import os
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        body = f"{os.environ.get('GREETING', 'hello')}\n".encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass

ThreadingHTTPServer(("0.0.0.0", int(os.environ["PORT"])), Handler).serve_forever()
"#;

/// A small deterministic generator (the seed is printed, so a failure can be replayed).
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % n.max(1)
    }
}

/// What must hold once paasd has settled; `Err` says what does not (yet).
fn settled(d: &Daemon, apps: &[&str]) -> Result<usize, String> {
    let mut total = 0;
    for app in apps {
        let info = d.paas(&["info", app, "--json"]).json();
        let current = info["release"].as_u64().ok_or("no current release")?;
        let mut formation: BTreeMap<String, u64> = info["formation"]
            .as_object()
            .map(|m| {
                m.iter()
                    .map(|(k, v)| (k.clone(), v.as_u64().unwrap_or(0)))
                    .collect()
            })
            .unwrap_or_default();
        if formation.is_empty() {
            formation.insert("web".into(), 1);
        }
        let releases = d.paas(&["releases", app, "--json"]).json();
        let statuses: Vec<(u64, String)> = releases
            .as_array()
            .into_iter()
            .flatten()
            .map(|r| {
                (
                    r["version"].as_u64().unwrap_or(0),
                    r["status"].as_str().unwrap_or("").to_string(),
                )
            })
            .collect();
        if statuses.iter().any(|(_, s)| s == "pending") {
            return Err(format!("{app}: a release is pending: {statuses:?}"));
        }
        if !statuses
            .iter()
            .any(|(v, s)| *v == current && s == "succeeded")
        {
            return Err(format!("{app}: v{current} is not succeeded: {statuses:?}"));
        }
        let ps = d.ps(app);
        let mut counts: BTreeMap<String, u64> = BTreeMap::new();
        for i in &ps {
            if i["state"] != "up" || i["release"].as_u64() != Some(current) {
                return Err(format!("{app}: not all up on v{current}: {ps:#?}"));
            }
            *counts
                .entry(i["process_type"].as_str().unwrap_or("").to_string())
                .or_default() += 1;
        }
        formation.retain(|_, n| *n > 0);
        if counts != formation {
            return Err(format!(
                "{app}: running {counts:?}, formation {formation:?}"
            ));
        }
        let (status, _, body) = d.http(&format!("{app}.{BASE}"), "/");
        if status != 200 {
            return Err(format!("{app}: {status} {body}"));
        }
        total += ps.len();
    }
    // Nothing more than the instances: one monitor, cgroup, veth and socket each.
    let helpers = d.helper_pids().len();
    let mut cgroups: Vec<String> = d
        .cgroups()
        .iter()
        .filter_map(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .collect();
    cgroups.sort();
    cgroups.dedup();
    let veths = d.veths().len();
    let sockets = std::fs::read_dir(d.state_dir().join("monitors"))
        .map(|rd| rd.count())
        .unwrap_or(0);
    if (helpers, cgroups.len(), veths, sockets) != (total, total, total, total) {
        return Err(format!(
            "{total} instances but {helpers} helpers, cgroups {cgroups:?}, {veths} veths, \
             {sockets} monitor sockets"
        ));
    }
    // And one edge: a killed paasd's edge serves on and is taken over, never doubled.
    let edges = d.edge_pids();
    let edge_sockets = std::fs::read_dir(d.state_dir().join("edge"))
        .map(|rd| rd.count())
        .unwrap_or(0);
    if (edges.len(), edge_sockets) != (1, 1) {
        return Err(format!("edges {edges:?}, {edge_sockets} edge sockets"));
    }
    Ok(total)
}

fn wait_settled(d: &Daemon, apps: &[&str], what: &str) -> usize {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match settled(d, apps) {
            Ok(n) => return n,
            Err(e) if Instant::now() > deadline => panic!("{what}: {e}"),
            Err(_) => std::thread::sleep(Duration::from_millis(200)),
        }
    }
}

#[test]
fn sigkill_at_random_points_leaves_every_app_on_its_last_good_release_and_nothing_behind() {
    if !have_root("crashes") {
        return;
    }
    let mut d = Daemon::start();
    let src = tempfile::tempdir().expect("temp dir");
    std::fs::write(src.path().join("Procfile"), "web: python3 server.py\n").expect("Procfile");
    std::fs::write(src.path().join("server.py"), SERVER).expect("server.py");
    let apps = ["alpha", "beta"];
    for app in apps {
        d.paas(&["create", app]).ok();
        d.deploy_dir(app, src.path());
    }
    wait_settled(&d, &apps, "before the first trial");
    let seed = std::process::id() as u64 ^ 0x9e37_79b9_7f4a_7c15;
    println!("seed {seed}");
    let mut rng = Rng(seed);
    let mut counts = BTreeMap::<&str, u32>::new();
    for trial in 0..TRIALS {
        let app = apps[rng.below(2) as usize];
        let (op, args, window_ms): (&str, Vec<String>, u64) = match trial % 3 {
            0 => (
                "deploy",
                vec![
                    "deploy".into(),
                    app.into(),
                    "--source".into(),
                    src.path().display().to_string(),
                ],
                4000,
            ),
            1 => (
                "scale",
                vec![
                    "scale".into(),
                    app.into(),
                    format!("web={}", 1 + rng.below(3)),
                ],
                1500,
            ),
            _ => (
                "env set",
                vec![
                    "env".into(),
                    "set".into(),
                    app.into(),
                    format!("GREETING=trial{trial}"),
                ],
                1500,
            ),
        };
        *counts.entry(op).or_default() += 1;
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let cli = d.spawn_paas(&args);
        std::thread::sleep(Duration::from_millis(rng.below(window_ms)));
        d.crash();
        drop(cli.finish());
        d.restart();
        wait_settled(&d, &apps, &format!("trial {trial} ({op} {app})"));
    }
    let log = d.log_text();
    let adopted = log.matches("kept running while paasd restarted").count();
    let unwanted = log.matches("is not wanted any more").count();
    let pending = log.matches("rolling out").count();
    println!(
        "{TRIALS} SIGKILLs during {counts:?}: every app settled on its last good release; \
         {adopted} instances adopted, {unwanted} found running but not wanted (stopped), \
         {pending} rollouts begun"
    );
    assert!(
        adopted > TRIALS as usize,
        "instances are adopted, not restarted: {adopted}"
    );

    // A full stop leaves nothing: no helper, cgroup, veth, socket or mount.
    // The kernel removes a veth when its namespace goes, a moment after its last process.
    assert!(d.stop_all().success());
    let deadline = Instant::now() + Duration::from_secs(10);
    while !(d.helper_pids().is_empty() && d.cgroups().is_empty() && d.veths().is_empty())
        && Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(d.helper_pids().is_empty(), "{:?}", d.helper_pids());
    assert!(d.cgroups().is_empty(), "{:?}", d.cgroups());
    assert!(d.veths().is_empty(), "{:?}", d.veths());
    assert!(d.edge_pids().is_empty(), "{:?}", d.edge_pids());
    let mounts: Vec<String> = std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains(&d.dir().to_string_lossy().into_owned()))
        .map(str::to_string)
        .collect();
    assert!(mounts.is_empty(), "{mounts:?}");
}
