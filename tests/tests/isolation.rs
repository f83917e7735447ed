//! Issue 14's escape suite, from inside an instance, a one-off and a build of a real paasd:
//! every reach an attacker would try is refused within 2 s (the host on the gateway and on
//! its other addresses, its loopback and abstract sockets from a build, IPv6 link-local,
//! the metadata address, another app's instance, another paasd install), while the way out
//! to "the internet" (a server in a network namespace of the test's own, through NAT) and
//! the app's own sibling instances work. Plus: apps run as uids of their own (per-user
//! limits are not shared), and the writable layer is capped by its disk quota.

#![forbid(unsafe_code)]

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpListener};
use std::os::unix::net::UnixListener;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use paas_tests::{write_script, Daemon};
use serde_json::Value;

/// Connects to each `name,host,port` target (host `@name`: an abstract Unix socket) and
/// prints a JSON object name -> "ok ..." / "refused" / "timeout" / "error ...".
const PROBE: &str = r#"import json, socket, sys, time
def probe(targets):
    out = {}
    for t in targets:
        name, host, port = t.split(",")
        began = time.monotonic()
        try:
            if host.startswith("@"):
                s = socket.socket(socket.AF_UNIX)
                s.settimeout(2)
                s.connect("\0" + host[1:])
            elif ":" in host:
                # getaddrinfo turns "fe80::1%eth0" into an address with its scope id.
                fam, kind, proto, _, addr = socket.getaddrinfo(host, int(port), socket.AF_INET6, socket.SOCK_STREAM)[0]
                s = socket.socket(fam, kind, proto)
                s.settimeout(2)
                s.connect(addr)
            else:
                s = socket.socket(socket.AF_INET)
                s.settimeout(2)
                s.connect((host, int(port)))
            try:
                data = s.recv(64).decode(errors="replace").strip()
            except OSError:
                data = ""
            out[name] = "ok " + data
        except ConnectionRefusedError:
            out[name] = "refused"
        except socket.timeout:
            out[name] = "timeout"
        except OSError as e:
            out[name] = "error " + str(e)
        out[name + ".secs"] = round(time.monotonic() - began, 2)
    return out
if __name__ == "__main__":
    print("PROBE " + json.dumps(probe(sys.argv[1:])))
"#;

/// The app: `/probe?t=...` runs the probe from inside the instance, `/inotify?n=` holds that
/// many inotify instances, anything else says who answers.
const WEB: &str = r#"import ctypes, http.server, json, os, urllib.parse
import probe
held = []
libc = ctypes.CDLL(None, use_errno=True)
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        u = urllib.parse.urlparse(self.path)
        q = urllib.parse.parse_qs(u.query)
        if u.path == "/probe":
            body = json.dumps(probe.probe(q.get("t", [])))
        elif u.path == "/inotify":
            n = int(q.get("n", ["1"])[0])
            got, err = 0, ""
            for _ in range(n):
                fd = libc.inotify_init()
                if fd < 0:
                    err = os.strerror(ctypes.get_errno())
                    break
                held.append(fd)
                got += 1
            body = json.dumps({"got": got, "error": err})
        else:
            body = "app " + os.environ.get("DYNO", "")
        b = body.encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(b)))
        self.end_headers()
        self.wfile.write(b)
    def log_message(self, *a):
        pass
http.server.ThreadingHTTPServer(("0.0.0.0", int(os.environ["PORT"])), H).serve_forever()
"#;

fn write(dir: &Path, name: &str, body: &str) {
    std::fs::write(dir.join(name), body).expect("write app file");
}

/// A Procfile app of the probe and the web server above.
fn app_dir(extra: &[(&str, &str)]) -> tempfile::TempDir {
    let d = tempfile::tempdir().expect("tempdir");
    write(d.path(), "probe.py", PROBE);
    write(d.path(), "web.py", WEB);
    write(d.path(), "Procfile", "web: python3 web.py\n");
    for (n, b) in extra {
        write(d.path(), n, b);
    }
    d
}

fn ip_cmd(args: &[&str]) -> bool {
    Command::new("ip")
        .args(args)
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

/// "The internet": a network namespace of the test's own behind a veth, with a TCP server
/// that answers with the address it sees, reachable from the host as any outside network
/// is (a route), and standing in for the metadata service at 169.254.169.254 too. Removed
/// on drop.
struct Outside {
    ns: String,
    host_if: String,
    host_ip: Ipv4Addr,
    ip: Ipv4Addr,
    server: Option<std::process::Child>,
}

const OUTSIDE_PORT: u16 = 8080;

impl Outside {
    fn new(tag: u32) -> Outside {
        let k = (std::process::id() * 7 + tag) % 60;
        let (host_ip, ip) = (
            // 10.218/16: no daemon (10.213), runtime test (10.214) or bench (10.215-217) uses it.
            Ipv4Addr::new(10, 218, k as u8, 1),
            Ipv4Addr::new(10, 218, k as u8, 2),
        );
        let mut o = Outside {
            ns: format!("pout{}x{tag}", std::process::id()),
            host_if: format!("po{:x}x{tag}", std::process::id() & 0xfffff),
            host_ip,
            ip,
            server: None,
        };
        let (ns, hif) = (o.ns.clone(), o.host_if.clone());
        o.cleanup();
        assert!(ip_cmd(&["netns", "add", &ns]), "ip netns add");
        assert!(ip_cmd(&[
            "link", "add", &hif, "type", "veth", "peer", "name", "eth0", "netns", &ns
        ]));
        assert!(ip_cmd(&[
            "addr",
            "add",
            &format!("{host_ip}/30"),
            "dev",
            &hif
        ]));
        assert!(ip_cmd(&["link", "set", &hif, "up"]));
        for args in [
            vec!["addr", "add", &format!("{ip}/30") as &str, "dev", "eth0"],
            vec!["addr", "add", "169.254.169.254/32", "dev", "lo"],
            vec!["link", "set", "eth0", "up"],
            vec!["link", "set", "lo", "up"],
        ] {
            let mut full = vec!["-n", &ns];
            full.extend(args);
            assert!(ip_cmd(&full), "{full:?}");
        }
        let via = host_ip.to_string();
        assert!(ip_cmd(&["-n", &ns, "route", "add", "default", "via", &via]));
        let (via_ns, metadata) = (ip.to_string(), "169.254.169.254/32");
        assert!(ip_cmd(&["route", "add", metadata, "via", &via_ns]));
        let server = "import socketserver\n\
                      class H(socketserver.BaseRequestHandler):\n\
                      \x20   def handle(self):\n\
                      \x20       self.request.sendall(('outside saw ' + self.client_address[0] + '\\n').encode())\n\
                      socketserver.ThreadingTCPServer.allow_reuse_address = True\n\
                      socketserver.ThreadingTCPServer(('0.0.0.0', 8080), H).serve_forever()\n";
        o.server = Some(
            Command::new("ip")
                .args(["netns", "exec", &ns, "python3", "-c", server])
                .spawn()
                .expect("outside server"),
        );
        // The host reaches it, the metadata address included: the control for the refusals.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match read_from((Ipv4Addr::new(169, 254, 169, 254), OUTSIDE_PORT)) {
                Ok(s) if s.starts_with("outside saw") => break,
                r if Instant::now() > deadline => panic!("outside server never answered: {r:?}"),
                _ => std::thread::sleep(Duration::from_millis(50)),
            }
        }
        o
    }

    fn cleanup(&mut self) {
        if let Some(mut s) = self.server.take() {
            let _ = s.kill();
            let _ = s.wait();
        }
        let _ = Command::new("ip")
            .args(["route", "del", "169.254.169.254/32"])
            .stderr(std::process::Stdio::null())
            .status();
        let _ = Command::new("ip")
            .args(["link", "del", &self.host_if])
            .stderr(std::process::Stdio::null())
            .status();
        let _ = Command::new("ip")
            .args(["netns", "del", &self.ns])
            .stderr(std::process::Stdio::null())
            .status();
    }
}

impl Drop for Outside {
    fn drop(&mut self) {
        self.cleanup();
    }
}

fn read_from(addr: (Ipv4Addr, u16)) -> std::io::Result<String> {
    let mut s = std::net::TcpStream::connect_timeout(&addr.into(), Duration::from_secs(2))?;
    s.set_read_timeout(Some(Duration::from_secs(2)))?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    Ok(out)
}

/// A host service on every address (v4 and v6) and an abstract Unix socket, each answering
/// "host"; served until the test ends.
struct HostServices {
    port: u16,
    port6: Option<u16>,
    abstract_name: String,
}

fn host_services() -> HostServices {
    fn serve(l: TcpListener) {
        std::thread::spawn(move || {
            for mut c in l.incoming().flatten() {
                let _ = c.write_all(b"host\n");
            }
        });
    }
    let v4 = TcpListener::bind("0.0.0.0:0").expect("host service");
    let port = v4.local_addr().expect("addr").port();
    serve(v4);
    let port6 = TcpListener::bind("[::]:0").ok().map(|l| {
        let p = l.local_addr().expect("addr").port();
        serve(l);
        p
    });
    let abstract_name = format!("paas-iso-{}", std::process::id());
    let addr =
        <std::os::unix::net::SocketAddr as std::os::linux::net::SocketAddrExt>::from_abstract_name(
            abstract_name.as_bytes(),
        )
        .expect("abstract name");
    let ul = UnixListener::bind_addr(&addr).expect("abstract socket");
    std::thread::spawn(move || {
        for mut c in ul.incoming().flatten() {
            let _ = c.write_all(b"host\n");
        }
    });
    HostServices {
        port,
        port6,
        abstract_name,
    }
}

/// The IPv6 link-local address the bridge would have (EUI-64 of its MAC), scoped to the
/// instance's eth0.
fn bridge_link_local(bridge: &str) -> String {
    let mac =
        std::fs::read_to_string(format!("/sys/class/net/{bridge}/address")).expect("bridge MAC");
    let b: Vec<u8> = mac
        .trim()
        .split(':')
        .map(|x| u8::from_str_radix(x, 16).expect("hex"))
        .collect();
    format!(
        "fe80::{:02x}{:02x}:{:02x}ff:fe{:02x}:{:02x}{:02x}%eth0",
        b[0] ^ 2,
        b[1],
        b[2],
        b[3],
        b[4],
        b[5]
    )
}

/// Creates `app` with a buildpack of the test's own (always detects; `compile` is its
/// compile script; its release declares a `worker`). The buildpack's dir lives as long as the
/// returned guard.
fn app_with_buildpack(d: &Daemon, app: &str, compile: &str) -> tempfile::TempDir {
    let bps = tempfile::tempdir().expect("tempdir");
    let bin = bps.path().join("testpack/bin");
    std::fs::create_dir_all(&bin).expect("mkdir");
    write_script(&bin.join("detect"), "echo testpack");
    write_script(&bin.join("compile"), compile);
    write_script(
        &bin.join("release"),
        "printf -- '---\\ndefault_process_types:\\n  worker: sleep 1000\\n'",
    );
    d.paas(&["create", app]).ok();
    let dir = bps.path().join("testpack").display().to_string();
    d.paas(&["buildpacks", "set", app, &dir]).ok();
    bps
}

fn gateway(d: &Daemon) -> Ipv4Addr {
    Ipv4Addr::new(10, 213, d.seq() as u8, 1)
}

fn addresses(d: &Daemon, app: &str) -> Vec<String> {
    d.ps(app)
        .iter()
        .filter_map(|i| i["address"].as_str().map(str::to_string))
        .collect()
}

fn probe_results(text: &str) -> BTreeMap<String, Value> {
    let line = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("PROBE "))
        .or_else(|| text.trim().strip_prefix('{').map(|_| text.trim()))
        .unwrap_or_else(|| panic!("no probe output in {text}"));
    serde_json::from_str(line).unwrap_or_else(|e| panic!("probe output {line}: {e}"))
}

/// Every `refused` target was refused (or timed out) within 2 s; every `allowed` one answered.
fn check(from: &str, got: &BTreeMap<String, Value>, refused: &[&str], allowed: &[(&str, &str)]) {
    eprintln!("from {from}: {got:?}");
    for name in refused {
        let r = got[*name].as_str().unwrap_or_default();
        assert!(
            r == "refused" || r == "timeout" || r.starts_with("error"),
            "{from}: {name} must be unreachable, got {r:?} (all: {got:?})"
        );
        let secs = got[&format!("{name}.secs")].as_f64().unwrap_or(99.0);
        assert!(secs <= 2.5, "{from}: {name} took {secs} s to fail");
    }
    for (name, answer) in allowed {
        let r = got[*name].as_str().unwrap_or_default();
        assert!(
            r.starts_with("ok") && r.contains(answer),
            "{from}: {name} must answer {answer:?}, got {r:?} (all: {got:?})"
        );
    }
}

#[test]
fn instances_one_offs_and_builds_reach_only_the_world_and_their_siblings() {
    let d = Daemon::start();
    let other = Daemon::start();
    let outside = Outside::new(1);
    let host = host_services();

    // The victims: another app on this paasd, and an app on a second paasd install.
    let victim_dir = app_dir(&[]);
    d.paas(&["create", "victim"]).ok();
    d.deploy_dir("victim", victim_dir.path());
    other.paas(&["create", "neighbour"]).ok();
    other.deploy_dir("neighbour", victim_dir.path());
    let victim = addresses(&d, "victim")[0].clone();
    let neighbour = addresses(&other, "neighbour")[0].clone();
    let (gw, other_gw) = (gateway(&d), gateway(&other));
    let split = |a: &str| {
        let (h, p) = a.rsplit_once(':').expect("ip:port");
        (h.to_string(), p.to_string())
    };
    let (vh, vp) = split(&victim);
    let (nh, np) = split(&neighbour);
    let mut targets = vec![
        format!("gateway,{gw},{}", host.port),
        format!("host_other_address,{},{}", outside.host_ip, host.port),
        format!("other_install_gateway,{other_gw},{}", host.port),
        format!("metadata,169.254.169.254,{OUTSIDE_PORT}"),
        format!("other_app,{vh},{vp}"),
        format!("other_install_app,{nh},{np}"),
        format!("outside,{},{OUTSIDE_PORT}", outside.ip),
    ];
    if let Some(p6) = host.port6 {
        targets.push(format!(
            "host_ipv6_link_local,{},{p6}",
            bridge_link_local(&d.bridge())
        ));
    }
    let refused_everywhere = [
        "gateway",
        "host_other_address",
        "other_install_gateway",
        "metadata",
        "other_app",
        "other_install_app",
    ];
    let nat = format!("outside saw {}", outside.host_ip);

    // The build probes too: its compile step runs the probe (plus loopback and the host's
    // abstract socket, which a build in the host's namespace used to reach).
    let mut build_targets = targets.clone();
    build_targets.push(format!("host_loopback,127.0.0.1,{}", host.port));
    build_targets.push(format!("host_abstract_socket,@{},0", host.abstract_name));
    let app = app_dir(&[("targets.txt", &build_targets.join(" "))]);
    let _pack = app_with_buildpack(
        &d,
        "prober",
        "cd \"$1\" && python3 probe.py $(cat targets.txt)",
    );
    d.paas(&["scale", "prober", "web=2"]).ok();
    let out = d.deploy_dir("prober", app.path());
    let build = probe_results(&out);
    let mut build_refused = refused_everywhere.to_vec();
    build_refused.extend(["host_loopback", "host_abstract_socket"]);
    if host.port6.is_some() {
        build_refused.push("host_ipv6_link_local");
    }
    check("the build", &build, &build_refused, &[("outside", &nat)]);

    // From an instance, which also reaches its sibling.
    let mine = addresses(&d, "prober");
    assert_eq!(mine.len(), 2, "two web instances: {mine:?}");
    let (sh, sp) = split(&mine[1]);
    let mut instance_targets = targets.clone();
    instance_targets.push(format!("sibling,{sh},{sp}"));
    let query: Vec<String> = instance_targets.iter().map(|t| format!("t={t}")).collect();
    // Ask the first instance directly (as the router would) so the sibling is the other one.
    let (fh, fp) = split(&mine[0]);
    let text = http_get(&fh, &fp, &format!("/probe?{}", query.join("&")));
    let from_instance = probe_results(&text);
    let mut refused = refused_everywhere.to_vec();
    if host.port6.is_some() {
        refused.push("host_ipv6_link_local");
    }
    check(
        "an instance",
        &from_instance,
        &refused,
        &[("outside", &nat), ("sibling", "")],
    );

    // From a one-off of the app: the same, siblings included.
    let mut args = vec!["run", "prober", "--", "python3", "/app/probe.py"];
    let owned: Vec<String> = instance_targets.clone();
    args.extend(owned.iter().map(String::as_str));
    let run = d.paas(&args);
    let from_run = probe_results(&format!("{}{}", run.stdout, run.stderr));
    check(
        "a one-off",
        &from_run,
        &refused,
        &[("outside", &nat), ("sibling", "")],
    );
}

fn http_get(host: &str, port: &str, path: &str) -> String {
    let mut s = std::net::TcpStream::connect(format!("{host}:{port}")).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(60)))
        .expect("timeout");
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .expect("send");
    let mut out = String::new();
    s.read_to_string(&mut out).expect("read");
    out.split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or(out)
}

/// Processes of `app`'s instances, as the host sees them: (pid, uid).
fn instance_uids(d: &Daemon, app: &str) -> Vec<u32> {
    let mut uids = Vec::new();
    for cg in d.cgroups() {
        if !cg.to_string_lossy().contains(&format!("{app}-web")) {
            continue;
        }
        let procs = std::fs::read_to_string(cg.join("cgroup.procs")).unwrap_or_default();
        for pid in procs.lines() {
            let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
            if let Some(uid) = status
                .lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|l| l.split_whitespace().next())
                .and_then(|u| u.parse().ok())
            {
                uids.push(uid);
            }
        }
    }
    uids
}

#[test]
fn apps_run_as_their_own_uids_and_share_no_per_user_limits() {
    let d = Daemon::start();
    let dir = app_dir(&[]);
    for app in ["alpha", "beta"] {
        d.paas(&["create", app]).ok();
        d.deploy_dir(app, dir.path());
    }
    let (a, b) = (d.uid("alpha"), d.uid("beta"));
    assert_ne!(a, b, "two apps, two uids");
    let (ua, ub) = (instance_uids(&d, "alpha"), instance_uids(&d, "beta"));
    assert!(
        !ua.is_empty() && ua.iter().all(|u| *u == a),
        "alpha runs as {a}: {ua:?}"
    );
    assert!(
        !ub.is_empty() && ub.iter().all(|u| *u == b),
        "beta runs as {b}: {ub:?}"
    );

    // alpha takes every inotify instance one user may have ...
    let limit: u32 = std::fs::read_to_string("/proc/sys/fs/inotify/max_user_instances")
        .expect("sysctl")
        .trim()
        .parse()
        .expect("number");
    let (ah, ap) = {
        let addr = addresses(&d, "alpha")[0].clone();
        let (h, p) = addr.rsplit_once(':').expect("ip:port");
        (h.to_string(), p.to_string())
    };
    let took: Value =
        serde_json::from_str(&http_get(&ah, &ap, &format!("/inotify?n={}", limit + 1)))
            .expect("json");
    assert!(
        took["error"]
            .as_str()
            .unwrap_or_default()
            .contains("Too many open files"),
        "alpha hit its own per-user limit: {took}"
    );
    // ... and beta, as another user, still gets its own.
    let (bh, bp) = {
        let addr = addresses(&d, "beta")[0].clone();
        let (h, p) = addr.rsplit_once(':').expect("ip:port");
        (h.to_string(), p.to_string())
    };
    let got: Value = serde_json::from_str(&http_get(&bh, &bp, "/inotify?n=8")).expect("json");
    assert_eq!(got["got"], 8, "beta is not limited by alpha: {got}");

    // alpha cannot signal beta's processes: their pids are not even names in its namespace.
    let victim = instance_pids(&d, "beta");
    assert!(!victim.is_empty());
    let r = d.paas(&[
        "run",
        "alpha",
        &format!("kill -0 {} 2>&1; echo status=$?", victim[0]),
    ]);
    assert!(r.stdout.contains("status=1"), "{r:#?}");
    assert!(
        std::path::Path::new(&format!("/proc/{}", victim[0])).exists(),
        "beta's process lives on"
    );
}

/// Host pids of `app`'s web instances' processes.
fn instance_pids(d: &Daemon, app: &str) -> Vec<u32> {
    d.cgroups()
        .iter()
        .filter(|cg| cg.to_string_lossy().contains(&format!("{app}-web")))
        .flat_map(|cg| {
            std::fs::read_to_string(cg.join("cgroup.procs"))
                .unwrap_or_default()
                .lines()
                .filter_map(|l| l.parse().ok())
                .collect::<Vec<u32>>()
        })
        .collect()
}

#[test]
fn names_resolve_inside_containers_when_they_resolve_on_the_host() {
    use std::net::ToSocketAddrs;
    // The way out is through the host's own resolvers: whatever they answer on the host, an
    // instance must get too (a machine without DNS at all has nothing to compare).
    let name = "deb.debian.org";
    if (name, 80)
        .to_socket_addrs()
        .map(|mut a| a.next().is_none())
        .unwrap_or(true)
    {
        eprintln!("skipped: the host itself cannot resolve {name}");
        return;
    }
    let d = Daemon::start();
    d.paas(&["create", "resolver"]).ok();
    let r = d.paas(&[
        "run",
        "resolver",
        "--",
        "python3",
        "-c",
        &format!("import socket; print('resolved', socket.gethostbyname('{name}'))"),
    ]);
    assert!(r.stdout.contains("resolved "), "{r:#?}");
}

/// Bytes a tree takes on disk (allocated blocks: a sparse image counts what is written).
fn disk_usage(p: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let Ok(meta) = std::fs::symlink_metadata(p) else {
        return 0;
    };
    let mut n = meta.blocks() * 512;
    if meta.is_dir() {
        for e in std::fs::read_dir(p).into_iter().flatten().flatten() {
            n += disk_usage(&e.path());
        }
    }
    n
}

#[test]
fn writes_beyond_the_disk_quota_fail_with_enospc_and_are_reported() {
    let d = Daemon::start_with_config("[instances]\ndisk_mb = 32\n");
    let dir = tempfile::tempdir().expect("tempdir");
    // Writes 64 MB into /app and /tmp; the quota is 32 MB for both together.
    write(
        dir.path(),
        "Procfile",
        "worker: (dd if=/dev/zero of=/app/fill bs=1M count=40 2>&1; dd if=/dev/zero of=/tmp/fill bs=1M count=24 2>&1) | tail -n 3; echo DONE; sleep 1000\n",
    );
    d.paas(&["create", "filler"]).ok();
    // The state dir's own usage, not the file system's free space: other tests write to
    // the same disk meanwhile.
    let before = disk_usage(&d.state_dir());
    d.deploy_dir("filler", dir.path());
    let deadline = Instant::now() + Duration::from_secs(60);
    let logs = loop {
        let logs = d.paas(&["logs", "filler"]).stdout.clone();
        if logs.contains("filled its disk") && logs.contains("DONE") {
            break logs;
        }
        assert!(Instant::now() < deadline, "no disk report in:\n{logs}");
        std::thread::sleep(Duration::from_millis(500));
    };
    assert!(logs.contains("No space left on device"), "{logs}");
    assert!(logs.contains("worker.1 filled its disk (32 MB)"), "{logs}");
    let grew = disk_usage(&d.state_dir()).saturating_sub(before);
    assert!(
        grew <= 32 << 20,
        "the state dir grew by {} MB for a 32 MB quota",
        grew >> 20
    );
}

/// Mount points under `dir` (`/proc/self/mountinfo`, field 5).
fn mounts_under(dir: &Path) -> Vec<String> {
    let dir = dir.display().to_string();
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .filter(|p| p.starts_with(&dir))
        .map(str::to_string)
        .collect()
}

#[test]
fn a_build_writing_beyond_its_disk_quota_fails_with_enospc_and_leaves_nothing_mounted() {
    // [build] disk_mb stays at its 4 GB default; the app sets its own builds' quota.
    let d = Daemon::start();
    // The cache takes 8 MB (it has an image of its own), then /app is filled past 48 MB.
    let _pack = app_with_buildpack(
        &d,
        "hog",
        "dd if=/dev/zero of=\"$2/blob\" bs=1M count=8 status=none\n\
         echo cache-written\n\
         [ -f \"$1/fill\" ] || exit 0\n\
         dd if=/dev/zero of=\"$1/big\" bs=1M count=80",
    );
    let set = d.paas(&["resources", "hog", "build", "--disk", "48"]);
    assert!(set.status.success(), "{set:#?}");
    let shown = d.paas(&["--json", "resources", "hog"]).json();
    assert_eq!(
        shown["process_types"]["build"]["disk_mb"]["value"], 48,
        "{shown}"
    );
    let src = tempfile::tempdir().expect("tempdir");
    write(src.path(), "Procfile", "worker: sleep 1000\n");
    // A build within its quota works, and its cache lives in an image of its own.
    let out = d.deploy_dir("hog", src.path());
    assert!(out.contains("cache-written"), "{out}");
    let image = d.state_dir().join("cache/hog.img");
    let meta = std::fs::metadata(&image).expect("the cache image");
    assert_eq!(meta.len(), 48 << 20, "the image is the quota's size");
    let used = std::os::unix::fs::MetadataExt::blocks(&meta) * 512;
    assert!(used < 24 << 20, "sparse: {} MB of it on disk", used >> 20);

    // One past it fails, says why, and the host paid at most the quota.
    write(src.path(), "fill", "1");
    let before = disk_usage(&d.state_dir());
    let r = d.paas(&[
        "deploy",
        "hog",
        "--source",
        &src.path().display().to_string(),
    ]);
    let text = format!("{}{}", r.stdout, r.stderr);
    assert!(!r.status.success(), "{text}");
    assert!(text.contains("No space left on device"), "{text}");
    assert!(text.contains("the build filled its disk (48 MB"), "{text}");
    let grew = disk_usage(&d.state_dir()).saturating_sub(before);
    assert!(
        grew <= 48 << 20,
        "the state dir grew by {} MB for a 48 MB quota",
        grew >> 20
    );
    // Nothing of the build is mounted or left (the cache image stays, unmounted).
    assert_eq!(mounts_under(&d.state_dir()), Vec::<String>::new());
    let builds: Vec<_> = std::fs::read_dir(d.state_dir().join("builds"))
        .map(|r| r.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(
        builds
            .iter()
            .all(|n| !n.to_string_lossy().starts_with("hog-")),
        "{builds:?}"
    );
    // The app still runs its previous release.
    assert_eq!(d.ps("hog").len(), 1);
}

#[test]
fn a_build_hitting_its_process_limit_says_so_in_the_build_output() {
    let d = Daemon::start_with_config("[build]\npids = 32\n");
    let _pack = app_with_buildpack(
        &d,
        "forker",
        "python3 -c '\nimport os, time\nrefused = 0\nfor i in range(100):\n    try:\n        if os.fork() == 0:\n            time.sleep(2)\n            os._exit(0)\n    except OSError:\n        refused += 1\nprint(\"refused\", refused)\n'",
    );
    let src = tempfile::tempdir().expect("tempdir");
    write(src.path(), "Procfile", "worker: sleep 1000\n");
    let out = d.deploy_dir("forker", src.path());
    let refused: u64 = out
        .lines()
        .find_map(|l| l.trim().strip_prefix("refused "))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("no count in {out}"));
    assert!(refused > 0, "{out}");
    assert!(
        out.contains(&format!(
            "this build step hit its process limit (32, build.pids in paasd.toml): fork failed {refused} times"
        )),
        "{out}"
    );
}
