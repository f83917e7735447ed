//! Issue 3: containers made by paasd's own runtime, checked from inside with `paas run`
//! against real kernel objects. Needs root (skips loudly otherwise; never skips under CI).

#![forbid(unsafe_code)]

use std::path::Path;
use std::time::{Duration, Instant};

use paas_tests::{have_root, Daemon};

/// Tests that load the CPUs (OOM, fork bomb) or measure CPU share take turns, so the share
/// measured under a quota is the quota's doing, not a neighbour test's.
static HEAVY: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn heavy() -> std::sync::MutexGuard<'static, ()> {
    HEAVY.lock().unwrap_or_else(|p| p.into_inner())
}

/// A daemon with one app, or None when not root.
fn daemon_with_app(test: &str, app: &str) -> Option<Daemon> {
    if !have_root(test) {
        return None;
    }
    let d = Daemon::start();
    d.paas(&["create", app]).ok();
    Some(d)
}

/// Mount lines on the host that mention `dir`: a container's mounts must never show up here.
fn host_mounts_under(dir: &Path) -> Vec<String> {
    let needle = dir.to_string_lossy().into_owned();
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains(&needle))
        .map(str::to_string)
        .collect()
}

/// Live (not zombie) container helpers whose parent is `parent`.
fn helpers_of(parent: i32) -> Vec<i32> {
    let Ok(rd) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    rd.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            // "pid (comm) state ppid ...": comm may hold spaces, so split after its ')'.
            let rest = stat.rsplit_once(") ").map_or("", |(_, r)| r);
            let mut f = rest.split(' ');
            let (state, ppid) = (f.next(), f.next().and_then(|p| p.parse::<i32>().ok()));
            state != Some("Z") && ppid == Some(parent) && is_helper(*pid)
        })
        .collect()
}

fn is_helper(pid: i32) -> bool {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .is_ok_and(|c| c.split(|b| *b == 0).any(|a| a == b"__runtime-helper"))
}

/// What container starts left in the state dir: entries of `disk` (every container's mount
/// point for its writable layer, written to only inside its own mount namespace) and of
/// `instances` (per-instance dirs, which paasd no longer makes).
fn instance_dirs(d: &Daemon) -> Vec<String> {
    ["disk", "instances"]
        .iter()
        .flat_map(|sub| {
            std::fs::read_dir(d.state_dir().join(sub))
                .into_iter()
                .flatten()
                .flatten()
                .map(move |e| format!("{sub}/{}", e.file_name().to_string_lossy()))
        })
        .collect()
}

#[test]
fn a_container_is_isolated_and_unprivileged() {
    let Some(d) = daemon_with_app("a_container_is_isolated_and_unprivileged", "iso") else {
        return;
    };
    let run = |cmd: &str| d.paas(&["run", "iso", cmd]);

    let host = nix::unistd::gethostname().expect("hostname");
    let name = run("hostname");
    assert_ne!(name.ok().trim(), host.to_string_lossy(), "own hostname");
    assert!(name.stdout.trim().starts_with("iso-run"), "{name:#?}");

    // PID 1 is our init (issue 13); the command is its child (bash execs a lone simple
    // command, so `cat` itself is PID 2).
    let pid1 = d.paas(&["run", "iso", "--", "cat", "/proc/1/comm"]);
    assert_eq!(pid1.ok().trim(), "paas-init", "{pid1:#?}");
    let own = d.paas(&["run", "iso", "--", "cat", "/proc/self/stat"]);
    let own_fields: Vec<&str> = own
        .ok()
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    assert_eq!(own.stdout.split_whitespace().next(), Some("2"), "{own:#?}");
    assert_eq!(
        own_fields.get(1),
        Some(&"1"),
        "parent is the init: {own:#?}"
    );

    // Only the container's own processes are visible.
    let procs = run("ls /proc | grep -cE '^[0-9]+$'");
    let n: u32 = procs.ok().trim().parse().expect("count");
    assert!(n <= 4, "saw {n} processes: {procs:#?}");
    let host_pid = std::process::id();
    run(&format!(
        "test ! -e /proc/{host_pid}/cmdline || cat /proc/{host_pid}/cmdline | grep -v paas"
    ))
    .ok();

    let usr = run("touch /usr/paas-test");
    assert_ne!(usr.code(), 0, "{usr:#?}");
    assert!(usr.stderr.contains("Read-only file system"), "{usr:#?}");
    assert!(!Path::new("/usr/paas-test").exists());
    assert_eq!(run("echo hi > /tmp/x && cat /tmp/x").ok().trim(), "hi");
    assert_eq!(
        run("echo hi > /app/x && cat /app/x").ok().trim(),
        "hi",
        "/app is the app's"
    );
    // The app's own uid, from the [users] range, never root or another app's.
    let uid = d.uid("iso");
    assert!(uid >= 1_900_000_000, "{uid}");
    assert_eq!(run("id -u").ok().trim(), uid.to_string());

    let status = run("cat /proc/self/status");
    let field = |k: &str| {
        status
            .stdout
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{k}:")))
            .map(|v| v.trim().to_string())
            .unwrap_or_else(|| panic!("no {k} in {status:#?}"))
    };
    assert_eq!(field("CapEff"), "0000000000000000");
    assert_eq!(field("CapBnd"), "0000000000000000");
    assert_eq!(field("NoNewPrivs"), "1");
    assert_eq!(field("Seccomp"), "2");

    for (cmd, why) in [
        ("mount -t tmpfs none /mnt", "mount"),
        ("unshare -U true", "new user namespace"),
        ("unshare -m true", "new mount namespace"),
        (
            "cat /proc/kcore | head -c1 | wc -c | grep -qx 0",
            "masked kcore",
        ),
    ] {
        let r = run(cmd);
        if why == "masked kcore" {
            r.ok();
        } else {
            assert_ne!(r.code(), 0, "{why} should fail: {r:#?}");
        }
    }
    // Its own session, no controlling terminal (so no /dev/tty of whoever started paasd), and
    // no signal ignored on entry.
    let stat = run("cat /proc/1/stat");
    let fields: Vec<&str> = stat
        .ok()
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    assert_eq!(fields.get(3), Some(&"1"), "session of PID 1: {stat:#?}");
    assert_eq!(fields.get(4), Some(&"0"), "controlling tty: {stat:#?}");
    // Signals 1-31 only: 32 and 33 belong to glibc, which sets them up itself.
    let ign = run("grep SigIgn /proc/self/status");
    let mask = u64::from_str_radix(ign.ok().split_whitespace().nth(1).unwrap_or(""), 16)
        .unwrap_or_else(|_| panic!("{ign:#?}"));
    assert_eq!(
        mask & 0x7fff_ffff,
        0,
        "ignored signals leak into apps: {mask:#x}"
    );
    // io_uring is refused (EPERM) by the filter.
    let uring = run(
        "python3 -c 'import ctypes; l = ctypes.CDLL(None, use_errno=True); \
         r = l.syscall(425, 1, 0); print(r, ctypes.get_errno())'",
    );
    assert_eq!(uring.ok().trim(), "-1 1", "io_uring_setup: {uring:#?}");
    // Neither this daemon's socket nor the system one is reachable from inside.
    let sock = d.socket();
    let r = run(&format!(
        "test -e {} || test -e /run/paas/paasd.sock",
        sock.display()
    ));
    assert_eq!(r.code(), 1, "API socket visible inside: {r:#?}");
    let r = run("test -r /etc/shadow");
    assert_eq!(r.code(), 1, "host /etc/shadow visible: {r:#?}");

    assert!(instance_dirs(&d).is_empty(), "{:?}", instance_dirs(&d));
    assert!(
        host_mounts_under(d.dir()).is_empty(),
        "{:?}",
        host_mounts_under(d.dir())
    );
}

#[test]
fn output_streams_and_exit_status_reach_the_user() {
    let Some(d) = daemon_with_app("output_streams_and_exit_status_reach_the_user", "io") else {
        return;
    };
    d.paas(&["env", "set", "io", "GREETING=hello world"]).ok();
    let r = d.paas(&[
        "run",
        "io",
        "echo \"$GREETING\" from $DYNO; echo oops >&2; exit 7",
    ]);
    assert_eq!(r.code(), 7, "{r:#?}");
    assert_eq!(r.stdout, "hello world from run.1\n");
    assert_eq!(r.stderr, "oops\n");
    // argv form keeps each argument whole.
    let r = d.paas(&["run", "io", "--", "printf", "[%s]", "a b", "$HOME", "it's"]);
    // Output travels as lines: a last line without a newline gets one.
    assert_eq!(r.ok(), "[a b][$HOME][it's]\n");
    // A missing program is the command's failure (bash's 127), a missing app the platform's.
    d.paas(&["run", "io", "no-such-program"])
        .fails(127, "no-such-program: command not found");
    d.paas(&["run", "ghost", "true"])
        .fails(1, "app 'ghost' does not exist");
    d.paas(&["run", "io", " "]).fails(1, "give a command");
    // Long output arrives whole and in order.
    let r = d.paas(&["run", "io", "seq 1 20000"]);
    let lines: Vec<&str> = r.ok().lines().collect();
    assert_eq!(lines.len(), 20000);
    assert_eq!(lines[19999], "20000");
    assert!(instance_dirs(&d).is_empty());
}

#[test]
fn containers_left_by_a_killed_daemon_are_reaped_on_start() {
    let Some(mut d) = daemon_with_app(
        "containers_left_by_a_killed_daemon_are_reaped_on_start",
        "orphan",
    ) else {
        return;
    };
    let marker = format!("{}", 40000 + std::process::id() % 20000);
    let cli = d.spawn_paas(&["run", "orphan", "--", "sleep", &marker]);
    let sleeping = || find_process(&["sleep", &marker]);
    wait_until(Duration::from_secs(20), || sleeping().is_some()).expect("container never started");
    // Nothing on the state disk records it: its helper carries the state dir in its argv.
    assert!(instance_dirs(&d).is_empty(), "{:?}", instance_dirs(&d));
    let helpers: Vec<i32> = d.helper_pids().iter().map(|p| p.as_raw()).collect();
    assert_eq!(
        helpers.len(),
        1,
        "one helper names the state dir and has a container"
    );

    nix::sys::signal::kill(d.pid(), nix::sys::signal::Signal::SIGKILL).expect("kill paasd");
    d.stop();
    drop(cli.finish());
    // The container outlives a crashed daemon (it has its own monitor)...
    assert!(sleeping().is_some(), "container died with paasd");
    // ...and the next paasd reaps it and its scratch dir.
    d.restart();
    wait_until(Duration::from_secs(10), || sleeping().is_none())
        .expect("leftover container still running after restart");
    let alive = |pid: &i32| {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        is_helper(*pid) && !stat.contains(") Z ")
    };
    wait_until(Duration::from_secs(10), || !helpers.iter().any(alive))
        .unwrap_or_else(|| panic!("leftover helpers {helpers:?} outlived the restart"));
    assert!(instance_dirs(&d).is_empty(), "{:?}", instance_dirs(&d));
    assert!(host_mounts_under(d.dir()).is_empty());
}

fn wait_until(limit: Duration, mut f: impl FnMut() -> bool) -> Option<()> {
    let end = Instant::now() + limit;
    while Instant::now() < end {
        if f() {
            return Some(());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    None
}

/// The pid of a process whose argv is exactly `argv`.
fn find_process(argv: &[&str]) -> Option<i32> {
    let want: Vec<u8> = argv.join("\0").into_bytes();
    std::fs::read_dir("/proc").ok()?.flatten().find_map(|e| {
        let pid: i32 = e.file_name().to_str()?.parse().ok()?;
        let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
        (cmd.strip_suffix(b"\0").unwrap_or(&cmd) == want.as_slice()).then_some(pid)
    })
}

#[test]
fn memory_limit_oom_kills_only_that_container() {
    let Some(d) = daemon_with_app("memory_limit_oom_kills_only_that_container", "mem") else {
        return;
    };
    let _turn = heavy();
    // A neighbour with the same limit that must live through the other's OOM kill.
    let neighbour = d.spawn_paas(&[
        "run",
        "mem",
        "--memory",
        "64",
        "--",
        "sh",
        "-c",
        "sleep 2; echo alive",
    ]);
    let r = d.paas(&[
        "run",
        "mem",
        "--memory",
        "64",
        "--",
        "dd",
        "if=/dev/zero",
        "of=/dev/null",
        "bs=200M",
        "count=1",
    ]);
    r.fails(137, "ran out of memory");
    let n = neighbour.finish();
    assert!(n.status.success(), "neighbour died: {n:#?}");
    assert_eq!(n.stdout, "alive\n");
    assert!(d.cgroups().is_empty(), "{:?}", d.cgroups());
}

#[test]
fn pids_limit_contains_a_fork_bomb() {
    let Some(d) = daemon_with_app("pids_limit_contains_a_fork_bomb", "bomb") else {
        return;
    };
    let _turn = heavy();
    // Every level waits for its children, so the tree stays at the limit until `timeout`.
    let bomb = d.spawn_paas(&[
        "run",
        "bomb",
        "--pids",
        "32",
        "--",
        "timeout",
        "4",
        "bash",
        "-c",
        ":(){ :|:& wait; };:",
    ]);
    // While it runs: never more than 32 tasks in its cgroup, and the host still answers.
    let mut bomb = bomb;
    let (mut peak, mut samples) = (0u64, 0u32);
    let end = Instant::now() + Duration::from_secs(60);
    while bomb.running() && Instant::now() < end {
        for cg in d.cgroups() {
            if let Ok(s) = std::fs::read_to_string(cg.join("pids.current")) {
                samples += 1;
                peak = peak.max(s.trim().parse().unwrap_or(0));
            }
        }
        if peak >= 32 && samples % 20 == 0 {
            d.paas(&["apps"]).ok();
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let r = bomb.finish();
    assert!(samples > 0, "never saw the bomb's cgroup: {r:#?}");
    assert!(peak <= 32, "pids.current reached {peak}");
    assert!(
        peak >= 16,
        "the bomb never forked much (peak {peak}): {r:#?}"
    );
    d.paas(&["apps"]).ok();
    assert_eq!(r.status.code(), Some(124), "timeout ends the bomb: {r:#?}");
    assert!(d.cgroups().is_empty(), "{:?}", d.cgroups());
}

#[test]
fn cpu_quota_holds_a_busy_loop_near_its_share() {
    let Some(d) = daemon_with_app("cpu_quota_holds_a_busy_loop_near_its_share", "cpu") else {
        return;
    };
    let _turn = heavy();
    // bash's `times` prints the CPU time of its finished children: user then system.
    let r = d.paas(&[
        "run",
        "cpu",
        "--cpu",
        "20",
        "timeout 3 sh -c 'while :; do :; done'; times",
    ]);
    let children = r.ok().lines().nth(1).unwrap_or_else(|| panic!("{r:#?}"));
    let secs: f64 = children
        .split_whitespace()
        .map(|t| {
            let (m, s) = t.trim_end_matches('s').split_once('m').expect("NmN.NNNs");
            m.parse::<f64>().expect("minutes") * 60.0 + s.parse::<f64>().expect("seconds")
        })
        .sum();
    let share = secs / 3.0;
    println!(
        "busy loop under a 20% quota used {:.1}% of a CPU over 3 s",
        share * 100.0
    );
    assert!(
        (0.15..=0.25).contains(&share),
        "used {:.1}% of a CPU",
        share * 100.0
    );
}

#[test]
fn cgroups_and_scratch_dirs_go_away_with_the_daemon() {
    let Some(mut d) = daemon_with_app("cgroups_and_scratch_dirs_go_away_with_the_daemon", "gone")
    else {
        return;
    };
    for _ in 0..5 {
        d.paas(&["run", "gone", "true"]).ok();
    }
    assert!(d.cgroups().is_empty());
    assert!(instance_dirs(&d).is_empty());
    // One helper waits, started ahead, for the next container; it goes with the daemon.
    // It is started from a thread at the lowest CPU priority once the last container runs,
    // so under load (CI runs tests side by side) it may appear a moment later; and the last
    // container's own helper tears down after its exit is reported, so for a moment there
    // may be two. What must hold is one, once that settles.
    let deadline = Instant::now() + Duration::from_secs(10);
    let spare = loop {
        let spare = helpers_of(d.pid().as_raw());
        if spare.len() == 1 || Instant::now() > deadline {
            break spare;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(spare.len(), 1, "spare helpers: {spare:?}");
    // A container still running when paasd stops goes with it. (SIGINT: a full stop, which
    // removes the cgroup parent too; SIGTERM is a restart that keeps it for the instances.)
    let (bg, _ip, reader) = d.run_with_ip("gone", &["sleep", "100"]);
    assert!(
        !d.cgroups().is_empty(),
        "the running container has its cgroup"
    );
    assert!(d.stop_all().success());
    drop((bg, reader));
    let deadline = Instant::now() + Duration::from_secs(5);
    while spare.iter().any(|pid| {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        is_helper(*pid) && !stat.contains(") Z ")
    }) {
        assert!(
            Instant::now() < deadline,
            "spare helper {spare:?} outlived paasd"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(instance_dirs(&d).is_empty(), "{:?}", instance_dirs(&d));
    assert!(
        find_process(&["sleep", "100"]).is_none(),
        "the container outlived paasd"
    );
    let parent = d.cgroup_parent();
    for root in [
        "/sys/fs/cgroup/memory",
        "/sys/fs/cgroup/pids",
        "/sys/fs/cgroup/cpu",
        "/sys/fs/cgroup/cpuacct",
        "/sys/fs/cgroup/freezer",
        "/sys/fs/cgroup",
    ] {
        assert!(
            !Path::new(root).join(&parent).exists(),
            "{root}/{parent} left behind"
        );
    }
}

#[test]
fn the_host_reaches_containers_on_their_own_addresses() {
    let Some(d) = daemon_with_app("the_host_reaches_containers_on_their_own_addresses", "web")
    else {
        return;
    };
    let server = ["timeout", "15", "python3", "-m", "http.server", "5000"];
    let (a, ip_a, out_a) = d.run_with_ip("web", &server);
    let (b, ip_b, out_b) = d.run_with_ip("web", &server);
    assert_ne!(ip_a, ip_b, "two containers got the same address");
    let subnet_prefix = format!("10.213.{}.", d.seq());
    for ip in [&ip_a, &ip_b] {
        assert!(
            ip.starts_with(&subnet_prefix),
            "{ip} outside this daemon's subnet"
        );
        let mut answer = None;
        wait_until(Duration::from_secs(10), || {
            answer = paas_tests::http_get(&format!("{ip}:5000"));
            answer.is_some()
        });
        let answer = answer.unwrap_or_else(|| panic!("no HTTP answer from {ip}:5000"));
        assert!(answer.starts_with("HTTP/1.0 200"), "{answer}");
        assert!(answer.contains("Directory listing"), "{answer}");
    }
    assert_eq!(d.veths().len(), 2, "{:?}", d.veths());
    drop((out_a, out_b));
    a.finish();
    b.finish();
}

#[test]
fn two_hundred_start_stop_cycles_leave_nothing_behind() {
    let Some(d) = daemon_with_app("two_hundred_start_stop_cycles_leave_nothing_behind", "cyc")
    else {
        return;
    };
    let mounts_before = host_mounts_under(d.dir()).len();
    for i in 0..200 {
        let r = d.paas(&["run", "cyc", "--", "true"]);
        assert!(r.status.success(), "cycle {i}: {r:#?}");
    }
    // A dead container's network namespace (and its veth) is freed by the kernel shortly after.
    wait_until(Duration::from_secs(20), || d.veths().is_empty())
        .unwrap_or_else(|| panic!("veths left: {:?}", d.veths()));
    assert_eq!(
        host_mounts_under(d.dir()).len(),
        mounts_before,
        "mounts left"
    );
    assert!(d.cgroups().is_empty(), "cgroups left: {:?}", d.cgroups());
    assert!(
        instance_dirs(&d).is_empty(),
        "scratch dirs left: {:?}",
        instance_dirs(&d)
    );
    let addresses = paas_tests::db_snapshot(&d.db());
    let rows = addresses
        .split("== addresses\n")
        .nth(1)
        .map(|rest| rest.split("== ").next().unwrap_or("").trim().to_string())
        .expect("addresses table");
    assert!(rows.is_empty(), "addresses still allocated: {rows}");
}

/// A minimal root filesystem made of a few host binaries and the libraries they load.
fn tiny_rootfs(root: &Path) {
    let copy = |src: &Path| {
        let dst = root.join(src.strip_prefix("/").expect("absolute"));
        std::fs::create_dir_all(dst.parent().expect("parent")).expect("mkdir");
        std::fs::copy(src, &dst).unwrap_or_else(|e| panic!("copy {}: {e}", src.display()));
    };
    // Mirror the host's /usr merge so library paths resolve the same way.
    for d in ["bin", "sbin", "lib", "lib64"] {
        if let Ok(to) = std::fs::read_link(Path::new("/").join(d)) {
            std::fs::create_dir_all(root.join(&to)).expect("mkdir");
            std::os::unix::fs::symlink(&to, root.join(d)).expect("symlink");
        }
    }
    for bin in ["bash", "cat", "ls", "id"] {
        let path = Path::new("/usr/bin").join(bin);
        copy(&path);
        let ldd = std::process::Command::new("ldd")
            .arg(&path)
            .output()
            .expect("ldd");
        for line in String::from_utf8_lossy(&ldd.stdout).lines() {
            let lib = match line.split_once("=>") {
                Some((_, rest)) => rest.split_whitespace().next(),
                None => line.split_whitespace().next(),
            };
            if let Some(lib) = lib.filter(|l| l.starts_with('/')) {
                copy(Path::new(lib));
            }
        }
    }
    std::fs::create_dir_all(root.join("etc")).expect("etc");
    std::fs::write(root.join("etc/stack-marker"), "tiny\n").expect("marker");
    let data = root.join("data");
    std::fs::create_dir_all(&data).expect("data");
    std::fs::set_permissions(&data, std::os::unix::fs::PermissionsExt::from_mode(0o1777))
        .expect("chmod data");
}

#[test]
fn apps_run_on_a_configured_rootfs_stack() {
    if !have_root("apps_run_on_a_configured_rootfs_stack") {
        return;
    }
    let rootfs = tempfile::tempdir().expect("rootfs dir");
    tiny_rootfs(rootfs.path());
    let d = Daemon::start_with_config(&format!(
        "[stacks]\ntiny = \"{}\"\n",
        rootfs.path().display()
    ));
    d.paas(&["create", "odd", "--stack", "nope"])
        .fails(1, "unknown stack 'nope' (available: host, tiny)");
    d.paas(&["create", "mini", "--stack", "tiny"]).ok();
    assert_eq!(d.paas(&["info", "mini", "--json"]).json()["stack"], "tiny");
    let r = d.paas(&["run", "mini", "cat /etc/stack-marker; ls /usr/bin; id -u"]);
    let out = r.ok();
    assert!(out.starts_with("tiny\n"), "{r:#?}");
    let uid = d.uid("mini").to_string();
    let bins: Vec<&str> = out
        .lines()
        .skip(1)
        .take_while(|l| !l.starts_with(&uid))
        .collect();
    assert_eq!(
        bins,
        ["bash", "cat", "id", "ls"],
        "the host's /usr must not show: {r:#?}"
    );
    assert!(out.ends_with(&format!("{uid}\n")), "{r:#?}");
    // The host's CA certificates come along, read-only.
    if Path::new("/etc/ssl/certs").is_dir() {
        let r = d.paas(&[
            "run",
            "mini",
            "ls /etc/ssl/certs; echo x > /etc/ssl/certs/y",
        ]);
        assert!(!r.stdout.trim().is_empty(), "{r:#?}");
        assert!(r.stderr.contains("Read-only file system"), "{r:#?}");
    }
    // The rootfs is a lower layer: writes land in the instance and vanish with it.
    let r = d.paas(&["run", "mini", "echo hi > /data/new && cat /data/new"]);
    assert_eq!(r.ok(), "hi\n");
    assert!(
        !rootfs.path().join("data/new").exists(),
        "write reached the stack"
    );
    d.paas(&["run", "mini", "cat /data/new"])
        .fails(1, "No such file");
}

#[test]
fn a_client_that_goes_away_takes_its_container_with_it() {
    let Some(d) = daemon_with_app(
        "a_client_that_goes_away_takes_its_container_with_it",
        "gone",
    ) else {
        return;
    };
    let marker = format!("{}", 20000 + std::process::id() % 20000);
    let cli = d.spawn_paas(&["run", "gone", "--", "sleep", &marker]);
    wait_until(Duration::from_secs(20), || {
        find_process(&["sleep", &marker]).is_some()
    })
    .expect("container never started");
    drop(cli); // kills the CLI: the connection closes
    wait_until(Duration::from_secs(20), || {
        find_process(&["sleep", &marker]).is_none()
    })
    .expect("the container outlived its client");
    wait_until(Duration::from_secs(10), || instance_dirs(&d).is_empty())
        .unwrap_or_else(|| panic!("scratch dirs left: {:?}", instance_dirs(&d)));
    // The monitor removes the cgroup after it has reaped the container, a moment after its
    // last process is gone (CI once looked in between).
    wait_until(Duration::from_secs(10), || d.cgroups().is_empty())
        .unwrap_or_else(|| panic!("cgroups left: {:?}", d.cgroups()));
}

#[test]
fn a_rootfs_tarball_imports_as_a_stack_that_survives_restarts() {
    if !have_root("a_rootfs_tarball_imports_as_a_stack_that_survives_restarts") {
        return;
    }
    let work = tempfile::tempdir().expect("tmp");
    let rootfs = work.path().join("rootfs");
    tiny_rootfs(&rootfs);
    // Absolute symlinks are normal in a root filesystem; they resolve inside the container.
    std::os::unix::fs::symlink("/etc/stack-marker", rootfs.join("etc/marker-link")).expect("link");
    let tgz = work.path().join("tiny.tar.gz");
    let tar = std::process::Command::new("tar")
        .arg("czf")
        .arg(&tgz)
        .arg("-C")
        .arg(&rootfs)
        .arg(".")
        .status()
        .expect("tar");
    assert!(tar.success());
    let mut d = Daemon::start();
    let tgz_s = tgz.display().to_string();
    let r = d.paas(&["stacks", "import", "tiny", &tgz_s]);
    assert!(r.ok().contains("Imported stack tiny"), "{r:#?}");
    assert_eq!(d.paas(&["stacks"]).ok(), "host\ntiny\n");
    d.paas(&["stacks", "import", "tiny", &tgz_s])
        .fails(1, "already exists");
    d.paas(&["stacks", "import", "host", &tgz_s])
        .fails(1, "already exists");
    d.paas(&["stacks", "import", "Bad/Name", &tgz_s])
        .fails(1, "stack name");

    // Not a root filesystem: refused, and nothing of it stays.
    let junk = work.path().join("junk.tar.gz");
    std::fs::write(
        &junk,
        paas_tests::tarball(&[("README", "no bin here", 0o644)]),
    )
    .expect("w");
    d.paas(&["stacks", "import", "junk", &junk.display().to_string()])
        .fails(1, "not a root filesystem");
    // A hostile one: refused, naming the entry.
    let evil = work.path().join("evil.tar.gz");
    let hostile = paas_tests::gz_raw(|t| paas_tests::raw_entry(t, "../../escape", b'0', "", b""));
    std::fs::write(&evil, hostile).expect("w");
    d.paas(&["stacks", "import", "evil", &evil.display().to_string()])
        .fails(1, "'../../escape'");
    let left: Vec<String> = std::fs::read_dir(d.state_dir().join("stacks"))
        .expect("stacks dir")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    let mut left = left;
    left.sort();
    assert_eq!(left, ["host", "tiny"], "failed imports left files");

    let check = |d: &Daemon| {
        let r = d.paas(&[
            "run",
            "mini",
            "cat /etc/stack-marker /etc/marker-link; ls /usr/bin",
        ]);
        assert_eq!(r.ok(), "tiny\ntiny\nbash\ncat\nid\nls\n", "{r:#?}");
    };
    d.paas(&["create", "mini", "--stack", "tiny"]).ok();
    check(&d);
    d.stop();
    d.restart();
    assert_eq!(d.paas(&["stacks"]).ok(), "host\ntiny\n");
    check(&d);
}
