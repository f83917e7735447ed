//! Tests of the instance network on real kernel objects (root only; loud skip otherwise, and a
//! failure when `CI` is set). Every bridge, veth, nft table, process and sysctl change made
//! here is undone by a guard, also when an assertion fails; names carry the test process's
//! pid so leftovers of a killed run are recognised and removed by the next one. Traffic goes
//! only to namespaces made here and to our own bridge address.

use std::collections::BTreeSet;
use std::future::Future;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use futures_util::TryStreamExt;

use super::*;

/// The tests share host-wide state (link counts, ip_forward): one at a time.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn root_or_skip(test: &str) -> bool {
    if nix::unistd::geteuid().is_root() {
        return true;
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "{test} needs root (bridges, veths, namespaces) and CI is set: run the tests as root"
    );
    // Straight to stderr, not eprintln!: the harness would capture that and show nothing.
    let _ = writeln!(
        std::io::stderr(),
        "\n!!!!!!!! SKIPPED {test}: needs root (real bridges, veths, namespaces) !!!!!!!!\n"
    );
    false
}

/// The second octet of every test subnet here. paasd's default is 10.88.0.0/16 and the
/// integration harness's daemons use 10.213.x.0/24, so these tests never share a subnet (and
/// thus a route) with a paasd running on the same machine.
const SECOND: u8 = 214;

/// This test process's block of eight /24s in 10.214.0.0/16: one that no route on the host
/// uses yet, held with an exclusive lock file for the process's lifetime, so two test runs at
/// once (or a run beside anything else routing there) never pick the same subnets.
fn block() -> u8 {
    static BLOCK: std::sync::OnceLock<(u8, nix::fcntl::Flock<std::fs::File>)> =
        std::sync::OnceLock::new();
    BLOCK
        .get_or_init(|| {
            let routes = std::fs::read_to_string("/proc/net/route").unwrap_or_default();
            // Destinations are little-endian hex: 10.214.X.0 is 00XXD60A.
            let routed = |third: u8| {
                routes
                    .lines()
                    .skip(1)
                    .filter_map(|l| l.split_whitespace().nth(1))
                    .filter_map(|d| u32::from_str_radix(d, 16).ok())
                    .any(|d| d.to_le_bytes()[..3] == [10, SECOND, third])
            };
            for base in (8..=240u8).step_by(8) {
                if (base..base + 8).any(routed) {
                    continue;
                }
                let path =
                    std::env::temp_dir().join(format!("paas-net-test-10.{SECOND}.{base}.lock"));
                let Ok(f) = std::fs::OpenOptions::new()
                    .create(true)
                    .truncate(false)
                    .write(true)
                    .open(&path)
                else {
                    continue;
                };
                // Held until the process exits; the kernel drops it even after a kill.
                if let Ok(held) =
                    nix::fcntl::Flock::lock(f, nix::fcntl::FlockArg::LockExclusiveNonblock)
                {
                    return (base, held);
                }
            }
            panic!("no free block of test subnets in 10.{SECOND}.0.0/16");
        })
        .0
}

/// Address `.host` in this process's test subnet number `k` (0..8).
fn tip(k: u8, host: u8) -> Ipv4Addr {
    Ipv4Addr::new(10, SECOND, block() + k, host)
}

/// Test subnet number `k` as `a.b.c.0/24`.
fn cidr(k: u8) -> String {
    format!("{}/24", tip(k, 0))
}

/// Our network on `bridge` with this process's test subnet number `k`.
async fn test_net(bridge: &str, k: u8) -> Network {
    Network::setup(NetConfig {
        bridge: bridge.to_string(),
        subnet: tip(k, 0),
        prefix: 24,
        policy: Default::default(),
    })
    .await
    .expect("setup")
}

/// `<kind><pid><tag>`: unique per test and process, ≤ 15 characters with a 2-digit suffix.
fn name(kind: &str, tag: char) -> String {
    format!("{kind}{}{tag}", std::process::id())
}

fn exists(link: &str) -> bool {
    Path::new("/sys/class/net").join(link).exists()
}

fn all_host_links() -> BTreeSet<String> {
    std::fs::read_dir("/sys/class/net")
        .expect("read /sys/class/net")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect()
}

/// The host's links this test process could have made: every name it hands out carries its
/// pid ([`name`]). Links of anything else running on the host (a paasd with instances coming
/// and going) must not make a test here pass or fail.
fn host_links() -> BTreeSet<String> {
    let pid = std::process::id();
    let (bridges, veths) = (format!("pt{pid}"), format!("vt{pid}"));
    all_host_links()
        .into_iter()
        .filter(|n| n.starts_with(&bridges) || n.starts_with(&veths))
        .collect()
}

/// Interfaces in the network namespace of `pid`, from its /proc/PID/net/dev.
fn ns_links(pid: i32) -> BTreeSet<String> {
    std::fs::read_to_string(format!("/proc/{pid}/net/dev"))
        .expect("net/dev")
        .lines()
        .skip(2)
        .filter_map(|l| l.split(':').next())
        .map(|n| n.trim().to_string())
        .collect()
}

fn nft_tables() -> String {
    Command::new("nft")
        .args(["list", "tables"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default()
}

/// Runs `fut` on a runtime of its own on a fresh thread: usable from `Drop` and after the
/// test's runtime is gone.
fn on_fresh_runtime<T: Send + 'static>(fut: impl Future<Output = T> + Send + 'static) -> Option<T> {
    std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .ok()
            .map(|rt| rt.block_on(fut))
    })
    .join()
    .ok()
    .flatten()
}

async fn delete_links(names: Vec<String>) {
    let Ok((conn, handle, _)) = rtnetlink::new_connection() else {
        return;
    };
    tokio::spawn(conn);
    for n in names {
        if let Ok(Some(l)) = handle.link().get().match_name(n).execute().try_next().await {
            let _ = handle.link().del(l.header.index).execute().await;
        }
    }
}

fn delete_table(bridge: &str) {
    let _ = Command::new("nft")
        .args(["delete", "table", "inet", &nft::table_name(bridge)])
        .stderr(Stdio::null())
        .status();
}

/// Removes links and tables named like ours by test processes that no longer exist.
fn remove_stale() {
    let stale: Vec<String> = all_host_links()
        .into_iter()
        .filter(|n| of_dead_test(n))
        .collect();
    on_fresh_runtime(delete_links(stale));
    for line in nft_tables().lines() {
        if let Some(bridge) = line.trim().strip_prefix("table inet paas_") {
            if of_dead_test(bridge) {
                delete_table(bridge);
            }
        }
    }
}

/// True for names exactly of the shape [`name`] gives (`pt<pid><tag>`, `vt<pid><tag><n>`)
/// whose pid is gone: nothing else on the host can match.
fn of_dead_test(n: &str) -> bool {
    let Some(rest) = n.strip_prefix("pt").or_else(|| n.strip_prefix("vt")) else {
        return false;
    };
    let pid: String = rest.chars().take_while(char::is_ascii_digit).collect();
    let mut tail = rest[pid.len()..].chars();
    let tag_ok = tail.next().is_some_and(|t| TAGS.contains(t));
    let suffix: String = tail.collect();
    let suffix_ok = if n.starts_with("pt") {
        suffix.is_empty()
    } else {
        !suffix.is_empty() && suffix.chars().all(|c| c.is_ascii_digit())
    };
    if pid.len() < 2 || !tag_ok || !suffix_ok {
        return false;
    }
    // A "pid" above pid_max is a leftover a test made on purpose; it encodes the test
    // process that made it, which alone may treat it as dead while it runs.
    match pid
        .parse::<u32>()
        .ok()
        .and_then(|p| p.checked_sub(FAKE_DEAD))
    {
        Some(owner) => {
            owner == std::process::id() || !Path::new("/proc").join(owner.to_string()).exists()
        }
        None => !Path::new("/proc").join(&pid).exists(),
    }
}

/// Above the kernel's largest pid_max (4,194,304): `FAKE_DEAD + our pid` is never a live
/// process, so it names a "leftover of a killed run" unique to this test process.
const FAKE_DEAD: u32 = 5_000_000;

/// The tags the tests below use in [`name`].
const TAGS: &str = "sabl";

/// Undoes what a test did to the host, in any case.
struct HostGuard {
    bridge: String,
    veths: Vec<String>,
    ip_forward: Option<String>,
}

impl HostGuard {
    fn new(bridge: &str) -> HostGuard {
        remove_stale();
        HostGuard {
            bridge: bridge.to_string(),
            veths: Vec::new(),
            ip_forward: std::fs::read_to_string(IP_FORWARD).ok(),
        }
    }
}

impl Drop for HostGuard {
    fn drop(&mut self) {
        let mut links = std::mem::take(&mut self.veths);
        links.push(self.bridge.clone());
        on_fresh_runtime(delete_links(links));
        delete_table(&self.bridge);
        if let Some(v) = &self.ip_forward {
            let _ = std::fs::write(IP_FORWARD, v.trim());
        }
    }
}

/// A process alone in a new network namespace: `unshare --net sleep`, killed on drop.
struct NsProc(Child);

impl NsProc {
    fn spawn() -> NsProc {
        // Without --fork, unshare execs sleep: the child's pid is the namespace's process.
        let child = Command::new("unshare")
            .args(["--net", "sleep", "300"])
            .stdin(Stdio::null())
            .spawn()
            .expect("spawn unshare (util-linux)");
        let p = NsProc(child);
        let ours = std::fs::metadata("/proc/self/ns/net")
            .expect("own netns")
            .ino();
        let deadline = Instant::now() + Duration::from_secs(5);
        while std::fs::metadata(format!("/proc/{}/ns/net", p.pid()))
            .map(|m| m.ino())
            .ok()
            == Some(ours)
        {
            assert!(
                Instant::now() < deadline,
                "unshare did not make a namespace"
            );
            std::thread::sleep(Duration::from_millis(2));
        }
        p
    }

    fn pid(&self) -> i32 {
        self.0.id() as i32
    }

    fn nsenter(&self) -> Command {
        let mut c = Command::new("nsenter");
        c.arg(format!("--net=/proc/{}/ns/net", self.pid()));
        c
    }
}

impl Drop for NsProc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn python() -> &'static str {
    if Path::new("/usr/bin/python3").exists() {
        "/usr/bin/python3"
    } else {
        "python3"
    }
}

/// An HTTP server inside the namespace on `addr:5000`, started the way an app would be.
fn http_server_inside(ns: &NsProc, addr: Ipv4Addr, dir: &Path) -> KillOnDrop {
    let child = ns
        .nsenter()
        .args([python(), "-m", "http.server", "5000", "--bind"])
        .arg(addr.to_string())
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn nsenter python3");
    KillOnDrop(child)
}

/// GETs / from `addr:5000` until it answers (the server needs a moment to start).
fn http_get(addr: Ipv4Addr) -> String {
    let to = SocketAddr::from((addr, 5000));
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let attempt = (|| -> std::io::Result<String> {
            let mut s = TcpStream::connect_timeout(&to, Duration::from_secs(1))?;
            s.set_read_timeout(Some(Duration::from_secs(3)))?;
            s.write_all(b"GET / HTTP/1.0\r\nHost: test\r\n\r\n")?;
            let mut out = String::new();
            s.read_to_string(&mut out)?;
            Ok(out)
        })();
        match attempt {
            Ok(answer) if !answer.is_empty() => return answer,
            _ if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            other => panic!("no HTTP answer from {to}: {other:?}"),
        }
    }
}

/// From inside the namespace: connects to a listener on the gateway address (the bridge) and
/// binds 127.0.0.1 (which exists only once `lo` is up). Returns what the script printed.
/// Tries a host service listening on the gateway address from inside: the policy refuses
/// it (`refused`), while the namespace's own loopback works (`lo-up`).
fn reach_gateway_from_inside(ns: &NsProc, gateway: Ipv4Addr) -> String {
    let listener = TcpListener::bind((gateway, 0)).expect("listen on the gateway address");
    let port = listener.local_addr().expect("addr").port();
    listener.set_nonblocking(true).expect("nonblocking");
    let server = std::thread::spawn(move || {
        let deadline = Instant::now() + Duration::from_secs(3);
        while Instant::now() < deadline {
            match listener.accept() {
                Ok((mut s, _)) => {
                    let _ = s.write_all(b"pong");
                    return;
                }
                Err(_) => std::thread::sleep(Duration::from_millis(5)),
            }
        }
    });
    let script = "import socket, sys\n\
                  try:\n\
                  \x20   s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=2)\n\
                  \x20   print(s.recv(4).decode())\n\
                  except ConnectionRefusedError:\n\
                  \x20   print('refused')\n\
                  l = socket.socket(); l.bind(('127.0.0.1', 0)); l.listen()\n\
                  socket.create_connection(l.getsockname(), timeout=5)\n\
                  print('lo-up')\n";
    let out = ns
        .nsenter()
        .args([
            python(),
            "-c",
            script,
            &gateway.to_string(),
            &port.to_string(),
        ])
        .output()
        .expect("run python3 in the namespace");
    let _ = server.join();
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The default route of the namespace of `pid`, as /proc/PID/net/route shows it.
fn default_route(pid: i32) -> Option<(String, Ipv4Addr)> {
    let table = std::fs::read_to_string(format!("/proc/{pid}/net/route")).ok()?;
    table.lines().skip(1).find_map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        // Addresses are the raw network-order bytes printed as a native-endian u32.
        let gw = u32::from_str_radix(f.get(2)?, 16).ok()?;
        (f.get(1) == Some(&"00000000"))
            .then(|| (f[0].to_string(), Ipv4Addr::from(gw.to_ne_bytes())))
    })
}

/// Threads of this process serving netlink sockets (ours are named `paas-net...`).
fn netlink_threads() -> usize {
    std::fs::read_dir("/proc/self/task")
        .expect("tasks")
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
        .filter(|comm| comm.starts_with("paas-net"))
        .count()
}

/// Waits briefly for `f` to hold (threads take a moment to exit after their last message).
fn eventually(what: &str, f: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(3);
    while !f() {
        assert!(Instant::now() < deadline, "{what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn median(v: &mut [Duration]) -> Duration {
    v.sort();
    v[v.len() / 2]
}

#[test]
fn interface_names_are_checked() {
    for ok in ["paas0", "vp1a2b3c4d5e6f7", "a", "x-y_z.1"] {
        assert!(check_ifname(ok).is_ok(), "{ok}");
    }
    for bad in [
        "",
        "sixteen-chars-xx",
        ".",
        "..",
        "a b",
        "a/b",
        "eth0:1",
        "é",
    ] {
        assert!(
            matches!(check_ifname(bad), Err(NetError::Name { .. })),
            "{bad}"
        );
    }
}

#[test]
fn bridge_mac_is_stable_local_unicast() {
    let m = bridge_mac("paas0");
    assert_eq!(m, bridge_mac("paas0"));
    assert_ne!(m, bridge_mac("paas1"));
    assert_eq!(m[0] & 0b11, 0b10, "locally administered, unicast");
}

#[tokio::test]
async fn app_groups_change_over_netlink_and_expel_is_idempotent() {
    if !root_or_skip("app_groups_change_over_netlink_and_expel_is_idempotent") {
        return;
    }
    let _serial = SERIAL.lock().await;
    let bridge = name("pt", 'g');
    let _guard = HostGuard::new(&bridge);
    let net = test_net(&bridge, 6).await;
    if !net.nat() {
        eprintln!("skipped: no nft");
        return;
    }
    let list = |what: &str| {
        let out = Command::new("nft")
            .args([
                "list",
                what,
                "inet",
                &format!("paas_{bridge}"),
                if what == "map" { "app_of" } else { "members" },
            ])
            .output()
            .expect("nft list");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let ip = tip(6, 9);
    let t = Instant::now();
    net.admit(ip, 7).await.expect("admit");
    eprintln!("admit: {:?}", t.elapsed());
    assert!(
        list("map").contains(&format!("{ip} : 0x00000007")),
        "{}",
        list("map")
    );
    assert!(
        list("set").contains(&format!("{ip} . 0x00000007")),
        "{}",
        list("set")
    );
    // Again: no error, still one element.
    net.admit(ip, 7).await.expect("admit twice");
    let t = Instant::now();
    net.expel(ip, 7).await.expect("expel");
    eprintln!("expel: {:?}", t.elapsed());
    assert!(!list("map").contains(&ip.to_string()), "{}", list("map"));
    assert!(!list("set").contains(&ip.to_string()), "{}", list("set"));
    net.expel(ip, 7).await.expect("expel twice");
    // A change the kernel refuses comes back as an error, not silence: another app's
    // number for an address that is still a member (the map's value differs).
    net.admit(ip, 7).await.expect("admit");
    assert!(
        net.admit(ip, 8).await.is_err(),
        "an address is in one group at a time"
    );
    net.expel(ip, 7).await.expect("expel");
    net.teardown().await.expect("teardown");
}

#[tokio::test]
async fn setup_is_idempotent_converges_and_teardown_removes_everything() {
    if !root_or_skip("setup_is_idempotent_converges_and_teardown_removes_everything") {
        return;
    }
    let _serial = SERIAL.lock().await;
    let bridge = name("pt", 's');
    let _guard = HostGuard::new(&bridge);
    let cfg = |third: u8| NetConfig {
        bridge: bridge.clone(),
        subnet: tip(third, 0),
        prefix: 24,
        policy: Default::default(),
    };

    let t = Instant::now();
    let net = Network::setup(cfg(1)).await.expect("setup");
    eprintln!("setup (bridge + address + nft): {:?}", t.elapsed());
    let t = Instant::now();
    let again = Network::setup(cfg(1)).await.expect("setup again");
    eprintln!("setup again (all present): {:?}", t.elapsed());
    drop(again);

    assert_eq!(net.gateway(), tip(1, 1));
    assert!(
        net.nat(),
        "NAT is off: is nft installed (apt-get install nftables)?"
    );
    assert!(exists(&bridge));
    let flags = std::fs::read_to_string(format!("/sys/class/net/{bridge}/flags")).expect("flags");
    let flags = u32::from_str_radix(flags.trim().trim_start_matches("0x"), 16).expect("hex");
    assert_eq!(flags & 1, 1, "bridge is up");
    let mac = std::fs::read_to_string(format!("/sys/class/net/{bridge}/address")).expect("mac");
    let want: Vec<String> = bridge_mac(&bridge)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(mac.trim(), want.join(":"));
    assert_eq!(
        std::fs::read_to_string(IP_FORWARD)
            .expect("ip_forward")
            .trim(),
        "1"
    );
    // The gateway address is ours: we can bind it.
    TcpListener::bind((tip(1, 1), 0)).expect("gateway address is local");
    let table = nft::table_name(&bridge);
    assert!(nft_tables().contains(&format!("table inet {table}")));
    let rules = Command::new("nft")
        .args(["list", "table", "inet", &table])
        .output()
        .expect("nft list table");
    let rules = String::from_utf8_lossy(&rules.stdout);
    assert!(
        rules.contains(&format!(
            "ip saddr {} oifname != \"{bridge}\" masquerade",
            cidr(1)
        )),
        "{rules}"
    );
    assert_eq!(
        net.attached().await.expect("attached"),
        Vec::<String>::new()
    );

    // Another subnet on the same bridge replaces the address and the NAT rule.
    drop(net);
    let net = Network::setup(cfg(2))
        .await
        .expect("setup with a new subnet");
    TcpListener::bind((tip(2, 1), 0)).expect("new gateway address");
    assert!(
        TcpListener::bind((tip(1, 1), 0)).is_err(),
        "the old gateway address is gone"
    );
    let rules = Command::new("nft")
        .args(["list", "table", "inet", &table])
        .output()
        .expect("nft list table");
    let rules = String::from_utf8_lossy(&rules.stdout);
    assert!(
        rules.contains(&cidr(2)) && !rules.contains(&cidr(1)),
        "{rules}"
    );

    let t = Instant::now();
    net.teardown().await.expect("teardown");
    eprintln!("teardown: {:?}", t.elapsed());
    assert!(!exists(&bridge), "bridge removed");
    assert!(!nft_tables().contains(&table), "nft table removed");
    net.teardown().await.expect("teardown twice");
}

#[tokio::test]
async fn attach_connects_two_namespaces_and_detach_removes_their_veths() {
    if !root_or_skip("attach_connects_two_namespaces_and_detach_removes_their_veths") {
        return;
    }
    let _serial = SERIAL.lock().await;
    let bridge = name("pt", 'a');
    let mut guard = HostGuard::new(&bridge);
    let (va, vb) = (name("vt", 'a') + "1", name("vt", 'a') + "2");
    guard.veths = vec![va.clone(), vb.clone()];
    let net = test_net(&bridge, 3).await;
    let (a, b) = (NsProc::spawn(), NsProc::spawn());
    let (ip_a, ip_b) = (tip(3, 2), tip(3, 3));

    let t = Instant::now();
    net.attach(a.pid(), ip_a, &va).await.expect("attach a");
    eprintln!("attach: {:?}", t.elapsed());
    net.attach(b.pid(), ip_b, &vb).await.expect("attach b");

    for (ns, addr) in [(&a, ip_a), (&b, ip_b)] {
        assert_eq!(
            ns_links(ns.pid()),
            ["eth0", "lo"].map(String::from).into(),
            "inside {}",
            ns.pid()
        );
        assert_eq!(
            default_route(ns.pid()),
            Some(("eth0".to_string(), net.gateway()))
        );
        let inside = reach_gateway_from_inside(ns, net.gateway());
        // The host is not reachable on the gateway address (the nft policy), loopback is.
        assert!(
            inside.contains("refused") && !inside.contains("pong") && inside.contains("lo-up"),
            "{inside}"
        );
        let dir = tempfile::tempdir().expect("tempdir");
        let _server = http_server_inside(ns, addr, dir.path());
        let answer = http_get(addr);
        assert!(answer.starts_with("HTTP/1.0 200"), "{answer}");
    }
    let mut attached = net.attached().await.expect("attached");
    attached.sort();
    assert_eq!(attached, [va.clone(), vb.clone()]);

    let t = Instant::now();
    net.detach(&va).await.expect("detach a");
    eprintln!("detach: {:?}", t.elapsed());
    assert!(!exists(&va), "host veth of a removed");
    assert!(!ns_links(a.pid()).contains("eth0"), "its peer went with it");
    assert_eq!(
        net.attached().await.expect("attached"),
        std::slice::from_ref(&vb)
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let _server = http_server_inside(&b, ip_b, dir.path());
    assert!(http_get(ip_b).starts_with("HTTP/1.0 200"), "b unaffected");
    net.detach(&vb).await.expect("detach b");
    net.detach(&vb)
        .await
        .expect("detach of a missing link is fine");
    assert!(!exists(&vb));
    assert!(net.attached().await.expect("attached").is_empty());

    net.teardown().await.expect("teardown");
    assert!(!exists(&bridge));
}

#[tokio::test]
async fn bad_requests_are_refused_and_leave_nothing_behind() {
    if !root_or_skip("bad_requests_are_refused_and_leave_nothing_behind") {
        return;
    }
    let _serial = SERIAL.lock().await;
    let bridge = name("pt", 'b');
    let mut guard = HostGuard::new(&bridge);
    let v = |i: u8| format!("{}{i}", name("vt", 'b'));
    guard.veths = (1..=6).map(v).collect();

    for (bad, what) in [
        (("x/y", tip(4, 0), 24), "bridge name"),
        (("ptx", tip(4, 1), 24), "host bits"),
        (("ptx", tip(4, 0), 31), "prefix"),
    ] {
        let r = Network::setup(NetConfig {
            bridge: bad.0.to_string(),
            subnet: bad.1,
            prefix: bad.2,
            policy: Default::default(),
        })
        .await;
        assert!(r.is_err(), "{what}");
    }

    let net = test_net(&bridge, 4).await;
    let ns = NsProc::spawn();
    let before = host_links();

    // Our own pid is in the host namespace: wiring it would rewire the host.
    let e = net
        .attach(std::process::id() as i32, tip(4, 2), &v(1))
        .await
        .expect_err("host namespace");
    assert!(matches!(e, NetError::Namespace { .. }), "{e}");
    assert!(e.to_string().contains("host's network namespace"), "{e}");

    let e = net
        .attach(i32::MAX, tip(4, 2), &v(2))
        .await
        .expect_err("no such pid");
    assert!(matches!(e, NetError::Namespace { .. }), "{e}");

    for addr in [tip(4, 0), tip(4, 1), tip(4, 255), tip(5, 2)] {
        let addr_s = addr.to_string();
        let e = net.attach(ns.pid(), addr, &v(3)).await.expect_err(&addr_s);
        assert!(matches!(e, NetError::Address { .. }), "{addr}: {e}");
    }
    let e = net
        .attach(ns.pid(), tip(4, 2), "vt-much-too-long")
        .await
        .expect_err("long name");
    assert!(matches!(e, NetError::Name { .. }), "{e}");

    // A second eth0 in one namespace: the kernel refuses the pair as a whole.
    net.attach(ns.pid(), tip(4, 2), &v(4))
        .await
        .expect("first attach");
    let e = net
        .attach(ns.pid(), tip(4, 3), &v(5))
        .await
        .expect_err("second eth0");
    assert_eq!(e.errno(), Some(libc::EEXIST), "{e}");
    assert!(e.to_string().contains(&v(5)), "error names the link: {e}");
    assert!(!exists(&v(5)));
    // A host link name that is taken: nothing is created in the namespace either.
    let ns2 = NsProc::spawn();
    let e = net
        .attach(ns2.pid(), tip(4, 3), &bridge)
        .await
        .expect_err("taken host name");
    assert_eq!(e.errno(), Some(libc::EEXIST), "{e}");
    assert_eq!(ns_links(ns2.pid()), ["lo".to_string()].into());

    // detach only deletes veths of ours.
    for not_ours in ["lo", bridge.as_str()] {
        let e = net.detach(not_ours).await.expect_err(not_ours);
        assert!(matches!(e, NetError::NotOurs { .. }), "{not_ours}: {e}");
        assert!(exists(not_ours));
    }
    net.detach(&v(4)).await.expect("detach");
    assert_eq!(host_links(), before, "nothing left behind");

    // nft's own complaint reaches the error.
    let e = nft::apply("paas_test", "this is not an nft script\n")
        .await
        .expect_err("bad script");
    assert!(
        matches!(&e, NetError::Nft { detail, .. } if detail.contains("nft -f failed")),
        "{e}"
    );
    net.teardown().await.expect("teardown");
}

#[tokio::test]
async fn fifty_attach_detach_cycles_leak_no_links() {
    if !root_or_skip("fifty_attach_detach_cycles_leak_no_links") {
        return;
    }
    let _serial = SERIAL.lock().await;
    let bridge = name("pt", 'l');
    let mut guard = HostGuard::new(&bridge);
    let names: Vec<String> = (0..50).map(|i| format!("{}{i}", name("vt", 'l'))).collect();
    guard.veths = names.clone();
    let threads_before = netlink_threads();
    let net = test_net(&bridge, 5).await;
    let ns = NsProc::spawn();
    let host_before = host_links();
    let ns_before = ns_links(ns.pid());

    let (mut attach, mut detach) = (Vec::new(), Vec::new());
    for (i, host_if) in names.iter().enumerate() {
        let addr = tip(5, 2 + i as u8);
        let t = Instant::now();
        net.attach(ns.pid(), addr, host_if)
            .await
            .unwrap_or_else(|e| panic!("attach #{i}: {e}"));
        attach.push(t.elapsed());
        if i == 0 || i == names.len() - 1 {
            let dir = tempfile::tempdir().expect("tempdir");
            let _server = http_server_inside(&ns, addr, dir.path());
            assert!(http_get(addr).starts_with("HTTP/1.0 200"), "cycle {i}");
        }
        let t = Instant::now();
        net.detach(host_if)
            .await
            .unwrap_or_else(|e| panic!("detach #{i}: {e}"));
        detach.push(t.elapsed());
    }

    assert_eq!(host_links(), host_before, "host links after 50 cycles");
    assert_eq!(
        ns_links(ns.pid()),
        ns_before,
        "namespace links after 50 cycles"
    );
    let (max_a, max_d) = (
        attach.iter().max().copied().unwrap_or_default(),
        detach.iter().max().copied().unwrap_or_default(),
    );
    eprintln!(
        "50 cycles: attach median {:?} max {max_a:?}; detach median {:?} max {max_d:?}",
        median(&mut attach),
        median(&mut detach)
    );
    eventually("namespace worker threads ended", || {
        netlink_threads() == threads_before + 1
    });
    net.teardown().await.expect("teardown");
    drop(net);
    eventually("the netlink thread ended with its Network", || {
        netlink_threads() == threads_before
    });
}

#[test]
fn only_names_of_dead_test_processes_count_as_leftovers() {
    let alive = std::process::id();
    for (n, want) in [
        ("pt9999999s", true),
        ("vt9999999a7", true),
        ("vt9999999a", false),
        ("pt9999999x", false),
        ("pt9999999s1", false),
        ("pt1s", false),
        ("paas0", false),
        ("eth0", false),
    ] {
        assert_eq!(of_dead_test(n), want, "{n}");
    }
    assert!(!of_dead_test(&format!("pt{alive}s")), "ours is alive");
    // A planted leftover counts as dead for the process that planted it, and for nobody else
    // while that process lives (pid 1 is always alive).
    assert!(of_dead_test(&format!("pt{}s", FAKE_DEAD + alive)));
    assert!(!of_dead_test(&format!("pt{}s", FAKE_DEAD + 1)));
}

#[tokio::test]
async fn leftovers_of_a_killed_run_are_removed() {
    if !root_or_skip("leftovers_of_a_killed_run_are_removed") {
        return;
    }
    let _serial = SERIAL.lock().await;
    // A pid above the kernel's pid_max: as if its test process had been killed. It encodes
    // ours, so a test run beside this one leaves it alone.
    let stale = &format!("pt{}s", FAKE_DEAD + std::process::id());
    let ip_forward = std::fs::read_to_string(IP_FORWARD).ok();
    let net = test_net(stale, 6).await;
    let mut guard = HostGuard::new(&name("pt", 's'));
    // Restore what was there before the "stale" setup, not what it left.
    guard.ip_forward = ip_forward;
    assert!(!exists(stale), "stale bridge removed");
    assert!(
        !nft_tables().contains(&nft::table_name(stale)),
        "stale table removed"
    );
    drop(net);
}
