//! Issue 16's real-VPS tier: a throwaway Debian VM (QEMU software emulation, systemd as PID 1,
//! pure cgroup v2; `tests/vm/image.sh` builds its image from Debian's packages and caches it)
//! gets this checkout's release binaries and runs install.sh as a person would on a VPS, then
//! snapshots the VM (`vm.sh save`); every later scenario starts from that snapshot (`vm.sh
//! restore`, 2-3 s instead of a 35-50 s boot): an app's limits on real v2, `systemctl restart
//! paasd` and an upgrade under load with no failed request and the same app process, a SIGKILL
//! of paasd (same app process, same edge), a reboot that brings the app back, and
//! `--uninstall --purge` leaving nothing. The unit (Type=notify, app cgroups under
//! paasd.service) is checked after the install.
//! Alone: `cargo build --release && cargo test -p paas-tests --test vm -- --nocapture`.
//! Debian 12 with hybrid cgroups, by hand: `PAAS_VM_SUITE=bookworm
//! PAAS_VM_CACHE=/var/cache/paas-vm-bookworm PAAS_VM_APPEND=systemd.unified_cgroup_hierarchy=0`.

#![forbid(unsafe_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Instant;

use paas_tests::{have_root, repo_root};

/// The three binaries install.sh takes from ./bin, built in release mode (debug ones crawl
/// under emulation).
const BINARIES: [&str; 3] = ["paasd", "paas", "paas-git-shell"];

fn vm_sh() -> PathBuf {
    repo_root().join("tests/vm/vm.sh")
}

/// A booted VM, stopped (and its disk overlay thrown away) on drop.
struct Vm {
    name: String,
}

impl Vm {
    fn boot(name: &str) -> Vm {
        let t = Instant::now();
        let out = Command::new(vm_sh())
            .args(["boot", name])
            .stdin(Stdio::null())
            .output()
            .expect("run tests/vm/vm.sh");
        let vm = Vm {
            name: name.to_string(),
        };
        assert!(
            out.status.success(),
            "boot failed:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        println!("vm: booted in {:.0} s", t.elapsed().as_secs_f64());
        vm
    }

    fn run(&self, args: &[&str], stdin: Option<&[u8]>) -> Output {
        let mut c = Command::new(vm_sh());
        c.args(args)
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = c.spawn().expect("run tests/vm/vm.sh");
        if let (Some(data), Some(mut pipe)) = (stdin, child.stdin.take()) {
            use std::io::Write;
            pipe.write_all(data).expect("write to the guest");
        }
        child.wait_with_output().expect("vm.sh output")
    }

    /// Runs `script` with bash in the guest; returns (exit code, stdout + stderr).
    fn sh(&self, script: &str) -> (i32, String) {
        let t = Instant::now();
        let out = self.run(&["ssh", &self.name, "bash -s"], Some(script.as_bytes()));
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let first = script.lines().find(|l| !l.trim().is_empty()).unwrap_or("");
        println!("vm: {:.1} s: {first}", t.elapsed().as_secs_f64());
        (out.status.code().unwrap_or(-1), text)
    }

    /// [`Vm::sh`] that must succeed.
    fn ok(&self, script: &str) -> String {
        let (code, text) = self.sh(script);
        assert_eq!(code, 0, "in the VM:\n{script}\n--- output ---\n{text}");
        text
    }

    fn copy(&self, local: &Path, remote: &str) {
        let out = self.run(
            &["copy", &self.name, &local.display().to_string(), remote],
            None,
        );
        assert!(out.status.success(), "copy: {out:?}");
    }

    /// Snapshots the running VM (memory, devices, disk) as `tag`.
    fn save(&self, tag: &str) {
        let t = Instant::now();
        let out = self.run(&["save", &self.name, tag], None);
        assert!(out.status.success(), "save: {out:?}");
        println!("vm: saved '{tag}' in {:.1} s", t.elapsed().as_secs_f64());
    }

    /// Back to snapshot `tag`: the next scenario starts where `save` left the VM.
    fn restore(&self, tag: &str) {
        let t = Instant::now();
        let out = self.run(&["restore", &self.name, tag], None);
        assert!(out.status.success(), "restore: {out:?}");
        println!("vm: restored '{tag}' in {:.1} s", t.elapsed().as_secs_f64());
    }

    fn reboot(&self) {
        let t = Instant::now();
        let out = self.run(&["reboot", &self.name], None);
        assert!(out.status.success(), "reboot: {out:?}");
        println!("vm: rebooted in {:.0} s", t.elapsed().as_secs_f64());
    }
}

impl Drop for Vm {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let (_, journal) = self.sh("journalctl -u paasd --no-pager | tail -n 80");
            eprintln!("--- journal of paasd in the VM ---\n{journal}");
        }
        let _ = self.run(&["stop", &self.name], None);
    }
}

/// A keep-alive load against the demo app, run in the guest: `threads` connections until
/// /root/load.stop exists, then one line of counts. A request whose kept-alive connection was
/// closed before any byte of an answer is sent again once, as HTTP clients do.
const LOAD: &str = r#"
import http.client, os, sys, threading, time, json
threads = int(sys.argv[1])
counts = {"ok": 0, "failed": 0, "retried": 0, "errors": []}
lock = threading.Lock()
def one(conn):
    conn.request("GET", "/", headers={"Host": "hello.paas.localhost"})
    r = conn.getresponse()
    body = r.read()
    return r.status, body
def worker():
    conn = None
    while not os.path.exists("/root/load.stop"):
        fresh = conn is None
        if conn is None:
            conn = http.client.HTTPConnection("127.0.0.1", 80, timeout=60)
        try:
            try:
                status, _ = one(conn)
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                if fresh:
                    raise
                with lock:
                    counts["retried"] += 1
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", 80, timeout=60)
                status, _ = one(conn)
            with lock:
                if status == 200:
                    counts["ok"] += 1
                else:
                    counts["failed"] += 1
                    counts["errors"].append(f"status {status}")
        except Exception as e:
            with lock:
                counts["failed"] += 1
                counts["errors"].append(repr(e))
            conn = None
ts = [threading.Thread(target=worker) for _ in range(threads)]
for t in ts: t.start()
for t in ts: t.join()
counts["errors"] = counts["errors"][:10]
print(json.dumps(counts))
"#;

/// The guest's python3 server pid of the demo app (the one the router reaches).
const APP_PID: &str = "pgrep -f 'python3 server.py' | head -n 1";

#[test]
fn a_debian_vm_installs_restarts_upgrades_reboots_and_uninstalls() {
    if !have_root("vm") {
        return;
    }
    let release = repo_root().join("target/release");
    for b in BINARIES {
        assert!(
            release.join(b).is_file(),
            "{}/{b} is missing: the VM tier runs release binaries (`cargo build --release`, as \
             scripts/test.sh does)",
            release.display()
        );
    }
    // What install.sh needs from a checkout, plus ./bin.
    let stage = tempfile::tempdir().expect("temp dir");
    let bundle = stage.path().join("paas.tar.gz");
    let bin = stage.path().join("bin");
    std::fs::create_dir(&bin).expect("bin");
    for b in BINARIES {
        std::fs::copy(release.join(b), bin.join(b)).expect("copy a binary");
    }
    let tar = Command::new("tar")
        .arg("-czf")
        .arg(&bundle)
        .arg("-C")
        .arg(repo_root())
        .args([
            "install.sh",
            "scripts",
            "systemd",
            "buildpacks",
            "examples/procfile-hello",
        ])
        .arg("-C")
        .arg(stage.path())
        .arg("bin")
        .status()
        .expect("tar");
    assert!(tar.success());

    let vm = Vm::boot(&format!("paas-test-{}", std::process::id()));
    vm.copy(&bundle, "/root/paas.tar.gz");
    vm.ok("mkdir -p /root/paas && tar -xzf /root/paas.tar.gz -C /root/paas");

    // 1. install.sh with the systemd unit (Type=notify); the demo answers.
    let t = Instant::now();
    let install = vm.ok("cd /root/paas && ./install.sh 2>&1");
    println!("vm: install.sh took {:.0} s", t.elapsed().as_secs_f64());
    assert!(install.contains("Next steps"), "{install}");
    assert!(
        !install.contains("demo app hello from"),
        "the demo failed:\n{install}"
    );
    let facts = vm.ok(&format!(
        "systemctl show paasd -p Type --value
         systemctl is-active paasd
         main=$(systemctl show paasd -p MainPID --value)
         echo \"paasd: $(cat /proc/$main/cgroup)\"
         app=$({APP_PID})
         echo \"app: $(cat /proc/$app/cgroup)\"
         systemctl status paasd --no-pager -n 0 | grep -c 'server.py' || true
         cat /etc/systemd/network/00-paas-paas0.network
         curl -s -H 'Host: hello.paas.localhost' http://127.0.0.1/
         echo \"systemd $(systemctl --version | awk 'NR == 1 {{ print $2 }}')\""
    ));
    // systemd 254 brought DelegateSubgroup=; before it (Debian 12's 252) paasd stays in its
    // unit's cgroup and the apps go under /paas (PAAS_VM_SUITE=bookworm runs that case).
    let systemd: u32 = facts
        .lines()
        .find_map(|l| l.strip_prefix("systemd "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    let delegated = systemd >= 254;
    // Booted with PAAS_VM_APPEND=systemd.unified_cgroup_hierarchy=0 (systemd < 256 only):
    // v1 controllers beside systemd's own tracking hierarchy.
    let hybrid = facts.contains(":name=systemd:");
    let lines: Vec<&str> = facts.lines().collect();
    assert_eq!(lines.first(), Some(&"notify"), "{facts}");
    assert_eq!(lines.get(1), Some(&"active"), "{facts}");
    // Where the apps are inside the unit, `systemctl status paasd` counts their processes.
    let unit_lists_the_app = || {
        assert!(
            lines
                .iter()
                .any(|l| l.trim().parse::<u32>().is_ok_and(|n| n >= 1)),
            "`systemctl status paasd` lists the app's process:\n{facts}"
        );
    };
    if hybrid {
        println!("vm: a hybrid cgroup host (v1 controllers), systemd {systemd}");
        for c in ["memory", "pids"] {
            assert!(
                facts.contains(&format!(":{c}:/system.slice/paasd.service\n")),
                "paasd runs in its unit's cgroup in the {c} hierarchy:\n{facts}"
            );
            assert!(
                facts.contains(&format!(
                    ":{c}:/system.slice/paasd.service/apps/hello-web.1-"
                )),
                "the app's {c} cgroup is under paasd.service:\n{facts}"
            );
        }
        unit_lists_the_app();
    } else if delegated {
        assert!(
            facts.contains("paasd: 0::/system.slice/paasd.service/daemon"),
            "paasd runs in its unit's daemon subgroup:\n{facts}"
        );
        assert!(
            facts.contains("app: 0::/system.slice/paasd.service/apps/hello-web.1-"),
            "the app's cgroup is under paasd.service:\n{facts}"
        );
        unit_lists_the_app();
    } else {
        assert!(
            facts.contains("paasd: 0::/system.slice/paasd.service\n"),
            "{facts}"
        );
        assert!(facts.contains("app: 0::/paas/hello-web.1-"), "{facts}");
    }
    assert!(facts.contains("Hello from procfile-hello"), "{facts}");
    // The image's networkd matches every Ethernet-type link (Type=ether), veths and bridges
    // included; install.sh keeps it off paasd's.
    assert!(facts.contains("Unmanaged=yes"), "{facts}");
    // Every scenario below starts from this snapshot: installed, the demo serving.
    vm.save("installed");

    // 2. An app's limits on real cgroup v2: the instance's files, and the OOM killer for a
    // one-off that asks for more than its memory limit.
    let files = if hybrid {
        // The same limits in v1's files, each in its own hierarchy.
        "at() { echo /sys/fs/cgroup/$1$(grep -E \":(|[^:]*,)$2(,[^:]*)?:\" /proc/$app/cgroup | cut -d: -f3); }
         echo \"memory.max $(cat $(at memory memory)/memory.limit_in_bytes)\"
         echo \"pids.max $(cat $(at pids pids)/pids.max)\"
         cpu=$(at cpu,cpuacct cpu)
         echo \"cpu.max $(cat $cpu/cpu.cfs_quota_us) $(cat $cpu/cpu.cfs_period_us)\""
    } else {
        "cg=/sys/fs/cgroup$(cut -d: -f3 /proc/$app/cgroup)
         echo \"memory.max $(cat $cg/memory.max)\"
         echo \"pids.max $(cat $cg/pids.max)\"
         echo \"cpu.max $(cat $cg/cpu.max)\""
    };
    let limits = vm.ok(&format!(
        "app=$({APP_PID})
         {files}
         paas run hello -- python3 -c 'b = bytearray(900 * 1024 * 1024); print(len(b))' 2>&1; echo \"exit $?\""
    ));
    assert!(limits.contains("memory.max 536870912"), "{limits}");
    assert!(limits.contains("pids.max 512"), "{limits}");
    assert!(limits.contains("cpu.max 100000 100000"), "{limits}");
    assert!(
        limits.to_lowercase().contains("out of memory") && !limits.contains("exit 0"),
        "the one-off is OOM-killed:\n{limits}"
    );
    // The pids limit refuses forks past it, and the CPU quota holds a busy loop near its share
    // (guest CPU time over guest wall time, so emulation's slowness does not matter).
    let enforced = vm.ok(
        r#"paas run hello --pids 16 -- bash -c 'for i in $(seq 40); do sleep 2 & done; wait' 2>&1
           echo "pids exit $?"
           paas run hello --cpu 20 -- python3 -c $'import time\nt = time.time(); c = time.process_time()\nwhile time.time() - t < 4: pass\nprint("cpu share", round((time.process_time() - c) * 100 / (time.time() - t)))' 2>&1"#,
    );
    assert!(
        enforced.contains("hit its process limit (16)"),
        "forks past pids.max are refused and reported:\n{enforced}"
    );
    let share: u32 = enforced
        .lines()
        .find_map(|l| l.strip_prefix("cpu share "))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("no cpu share in:\n{enforced}"));
    println!("vm: a busy loop under --cpu 20 got {share}% of a CPU");
    assert!(
        (10..=30).contains(&share),
        "cpu.max holds: {share}%\n{enforced}"
    );

    vm.restore("installed");
    // 3. `systemctl restart paasd` and an upgrade (install.sh with a changed paasd) under
    // load: no failed request, the same app process.
    vm.copy_bytes(LOAD.as_bytes(), "/root/load.py");
    let before = vm.ok(APP_PID);
    vm.ok(
        "rm -f /root/load.stop; nohup python3 /root/load.py 8 > /root/load.out 2>&1 &
           sleep 5; test -s /root/load.out && { cat /root/load.out; exit 1; } || true",
    );
    vm.ok("systemctl restart paasd && systemctl is-active paasd && sleep 3");
    vm.ok("cd /root/paas && printf '\\n# upgraded\\n' >> bin/paasd && ./install.sh 2>&1 | grep 'restarted paasd' && sleep 3");
    let load = vm.ok("touch /root/load.stop; for i in $(seq 120); do test -s /root/load.out && break; sleep 1; done; cat /root/load.out");
    let after = vm.ok(APP_PID);
    println!("vm: restart + upgrade under load: {}", load.trim());
    let counts: serde_json::Value =
        serde_json::from_str(load.trim().lines().last().unwrap_or("")).expect("load counts");
    assert_eq!(counts["failed"], 0, "{counts}");
    assert!(counts["ok"].as_u64().unwrap_or(0) > 50, "{counts}");
    assert_eq!(
        before.trim(),
        after.trim(),
        "the app process was adopted, not restarted"
    );
    let journal = vm.ok("journalctl -u paasd --no-pager -o cat");
    assert!(
        journal.contains("SIGTERM received: restarting; the apps keep running"),
        "`systemctl restart` is told apart from a stop (its job is a restart):\n{journal}"
    );
    assert!(
        journal
            .matches("using an inherited listening socket")
            .count()
            >= 4,
        "the next paasd gets the router's sockets from the fd store, twice:\n{journal}"
    );

    vm.restore("installed");
    // 4. SIGKILL: systemd restarts paasd (Restart=on-failure), which adopts the app and
    // takes over the edge, which served on meanwhile.
    let crashed = vm.ok(&format!(
        "edge=$(pgrep -f '__edge /var/lib/paas')
         kill -KILL $(systemctl show paasd -p MainPID --value)
         for i in $(seq 60); do sleep 1; paas apps >/dev/null 2>&1 && break; done
         for i in $(seq 60); do curl -sf -H 'Host: hello.paas.localhost' http://127.0.0.1/ >/dev/null && break; sleep 1; done
         {APP_PID}
         paas ps hello
         echo \"edges: $edge / $(pgrep -f '__edge /var/lib/paas' | tr '\\n' ' ')\""
    ));
    assert!(
        crashed.starts_with(before.trim()),
        "the same app process after a crash of paasd:\n{crashed}"
    );
    let edges = crashed
        .lines()
        .find_map(|l| l.strip_prefix("edges: "))
        .unwrap_or_default();
    let (was, now) = edges.split_once(" / ").unwrap_or_default();
    assert!(
        !was.trim().is_empty() && was.trim() == now.trim(),
        "the same edge serves before and after the crash: {edges}\n{crashed}"
    );

    vm.restore("installed");
    // 5. A reboot brings the app back (a new process: the machine restarted).
    vm.reboot();
    let back = vm.ok(
        "for i in $(seq 120); do curl -sf -H 'Host: hello.paas.localhost' http://127.0.0.1/ && exit 0; sleep 1; done; exit 1",
    );
    assert!(back.contains("Hello from procfile-hello"), "{back}");

    vm.restore("installed");
    // 6. `--uninstall --purge` leaves nothing, and paasd knew it was a stop.
    let stopped = vm.ok(
        "cd /root/paas && ./install.sh --uninstall --purge 2>&1 && journalctl -u paasd --no-pager -o cat -n 200",
    );
    assert!(
        stopped.contains("systemd stops paasd; stopping the apps too"),
        "{stopped}"
    );
    let left = vm.sh(
        "pgrep -a paasd; pgrep -af __runtime-helper; pgrep -af __edge; ls -d /var/lib/paas /etc/paas /run/paas \
         /etc/systemd/system/paasd.service /etc/systemd/network/00-paas-paas0.network /sys/fs/cgroup/paas /sys/fs/cgroup/system.slice/paasd.service \
         /usr/local/bin/paasd /sys/fs/cgroup/*/paas /sys/fs/cgroup/*/system.slice/paasd.service/apps 2>/dev/null; ip link show paas0 2>/dev/null; \
         nft list table inet paas_paas0 2>/dev/null; id paas 2>/dev/null; true",
    );
    assert_eq!(
        left.1.trim(),
        "",
        "left behind after --uninstall --purge:\n{}",
        left.1
    );
}

impl Vm {
    /// Writes `data` to `remote` in the guest.
    fn copy_bytes(&self, data: &[u8], remote: &str) {
        let out = self.run(&["ssh", &self.name, &format!("cat > {remote}")], Some(data));
        assert!(out.status.success(), "write {remote}: {out:?}");
    }
}
