//! Issue 6, on a VPS: paasd's systemd readiness notifications, the unit file, and install.sh
//! end to end. install.sh runs against a staged copy of the repository whose `bin/` holds the
//! debug binaries, with every location (prefix, config, state, socket, log, user, bridge,
//! subnet, cgroup parent, router port) in a temp dir or unique to this test process, so it
//! neither touches a real install nor collides with tests running in parallel.

#![forbid(unsafe_code)]

use std::io::{Read, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use paas_tests::sshd::{git, Sshd};
use paas_tests::{bin, bin_dir, have_root, node_app, repo_root, Daemon, Run};

/// A paasd the test spawned itself; stopped with SIGTERM (SIGKILL after 10 s) on drop.
struct Spawned(Child);

impl Drop for Spawned {
    fn drop(&mut self) {
        let pid = Pid::from_raw(self.0.id() as i32);
        let _ = kill(pid, Signal::SIGTERM);
        let end = Instant::now() + Duration::from_secs(10);
        while Instant::now() < end && matches!(self.0.try_wait(), Ok(None)) {
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn recv_text(sock: &UnixDatagram) -> String {
    let mut buf = [0u8; 4096];
    let n = sock
        .recv(&mut buf)
        .expect("a notification from paasd within 30 s");
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

/// A notification and the local addresses of the sockets that came with it (`FDSTORE=1`);
/// the received descriptors are closed.
fn recv_with_fds(sock: &UnixDatagram) -> (String, Vec<String>) {
    use nix::sys::socket::{getsockname, recvmsg, ControlMessageOwned, MsgFlags, SockaddrStorage};
    use std::os::fd::AsRawFd;
    let mut buf = [0u8; 4096];
    let (n, raw) = {
        let mut iov = [std::io::IoSliceMut::new(&mut buf)];
        let mut space = nix::cmsg_space!([std::os::fd::RawFd; 4]);
        let msg = recvmsg::<()>(
            sock.as_raw_fd(),
            &mut iov,
            Some(&mut space),
            MsgFlags::MSG_CMSG_CLOEXEC,
        )
        .expect("a notification from paasd within 30 s");
        let mut raw = Vec::new();
        for c in msg.cmsgs().expect("control messages") {
            if let ControlMessageOwned::ScmRights(fds) = c {
                raw.extend(fds);
            }
        }
        (msg.bytes, raw)
    };
    let addrs = raw
        .into_iter()
        .map(|fd| {
            let addr = getsockname::<SockaddrStorage>(fd)
                .map_or_else(|e| e.to_string(), |a| a.to_string());
            let _ = nix::unistd::close(fd);
            addr
        })
        .collect();
    (String::from_utf8_lossy(&buf[..n]).into_owned(), addrs)
}

#[test]
fn paasd_tells_systemd_when_it_is_ready_and_when_it_stops() {
    if !have_root("paasd_tells_systemd_when_it_is_ready_and_when_it_stops") {
        return;
    }
    // The harness daemon provides dirs, bridge, subnet and cleanup; we run its command line
    // ourselves, as systemd would, with NOTIFY_SOCKET set.
    let mut d = Daemon::start();
    d.stop();
    let dir = tempfile::tempdir().expect("temp dir");
    let notify = dir.path().join("notify.sock");
    let sock = UnixDatagram::bind(&notify).expect("bind the notify socket");
    sock.set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    let log = std::fs::OpenOptions::new()
        .append(true)
        .open(&d.log)
        .expect("daemon log");
    let mut child = Spawned(
        d.command()
            .env("NOTIFY_SOCKET", &notify)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn paasd"),
    );

    // First the listening sockets, for systemd's fd store (the next paasd gets them back),
    // each with its name; then READY=1.
    let mut stored = Vec::new();
    let ready = loop {
        let (text, addrs) = recv_with_fds(&sock);
        if !text.lines().any(|l| l == "FDSTORE=1") {
            assert!(addrs.is_empty(), "{text:?} came with descriptors {addrs:?}");
            break text;
        }
        let name = text
            .lines()
            .find_map(|l| l.strip_prefix("FDNAME="))
            .unwrap_or("")
            .to_string();
        assert_eq!(addrs.len(), 1, "{text:?}: one socket each: {addrs:?}");
        stored.push((name, addrs[0].clone()));
    };
    let names: Vec<&str> = stored.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["api", "http", "https"], "{stored:?}");
    // Bound under a temporary name in the socket's directory, then renamed into place.
    assert!(
        stored[0].1.starts_with(&d.dir().display().to_string()),
        "{stored:?}"
    );
    let lines: Vec<&str> = ready.lines().collect();
    assert!(lines.contains(&"READY=1"), "first notification: {ready:?}");
    let socket = d.socket().display().to_string();
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("STATUS=") && l.contains(&socket)),
        "READY=1 comes with a STATUS naming the API socket: {ready:?}"
    );
    // READY=1 means both listeners accept connections: the API and the router answer now,
    // without retries.
    let health = d
        .api_health()
        .expect("the API answers once READY=1 is sent");
    assert_eq!(health["status"], "ok", "{health}");
    let router = health["router"]
        .as_str()
        .expect("router address")
        .to_string();
    assert!(
        ready.contains(&router),
        "STATUS names the router: {ready:?}"
    );
    std::net::TcpStream::connect(&router).expect("the router accepts once READY=1 is sent");
    assert_eq!(
        stored[1].1, router,
        "the stored http socket is the router's"
    );

    let pid = Pid::from_raw(child.0.id() as i32);
    kill(pid, Signal::SIGTERM).expect("SIGTERM");
    let stopping = recv_text(&sock);
    assert!(
        stopping.lines().any(|l| l == "STOPPING=1"),
        "after SIGTERM: {stopping:?}"
    );
    let end = Instant::now() + Duration::from_secs(40);
    let status = loop {
        if let Some(s) = child.0.try_wait().expect("wait") {
            break s;
        }
        assert!(Instant::now() < end, "paasd did not exit after SIGTERM");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "paasd exit: {status}\n{}", d.log_text());
}

/// Runs `systemd-analyze verify` on a unit file; returns (success, everything it printed).
fn systemd_verify(unit: &Path) -> (bool, String) {
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(unit)
        .output()
        .expect("systemd-analyze (package systemd) must be installed: scripts/test.sh ensures it");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[test]
fn unit_file_passes_systemd_analyze_verify() {
    let unit = std::fs::read_to_string(repo_root().join("systemd/paasd.service")).expect("unit");
    for line in [
        "Type=notify",
        "ExecStart=/usr/local/bin/paasd",
        "KillMode=process",
        "Delegate=yes",
        "RuntimeDirectory=paas",
        "StateDirectory=paas",
        "ConfigurationDirectory=paas",
        "Restart=on-failure",
        "DelegateSubgroup=daemon",
        "FileDescriptorStoreMax=8",
        "FileDescriptorStorePreserve=restart",
    ] {
        assert!(
            unit.lines().any(|l| l == line),
            "the unit lacks {line:?}:\n{unit}"
        );
    }
    // verify checks that ExecStart exists: point it at the binary the tests use. Unknown keys
    // and other warnings only print, so the output must be empty too.
    let dir = tempfile::tempdir().expect("temp dir");
    let copy = dir.path().join("paasd.service");
    // DelegateSubgroup= is systemd 254+: install.sh leaves it out for an older systemd, as
    // this host's may be (the rendered unit is verified below too).
    let version = Command::new("systemctl")
        .arg("--version")
        .output()
        .ok()
        .and_then(|o| {
            String::from_utf8_lossy(&o.stdout)
                .split_whitespace()
                .nth(1)
                .and_then(|v| v.parse::<u32>().ok())
        })
        .unwrap_or(0);
    let unit_here: String = unit
        .lines()
        .filter(|l| {
            version >= 254
                || !(l.starts_with("DelegateSubgroup=")
                    || l.starts_with("FileDescriptorStorePreserve="))
        })
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(
        &copy,
        unit_here.replace(
            "ExecStart=/usr/local/bin/paasd",
            &format!("ExecStart={}", bin("paasd").display()),
        ),
    )
    .expect("write unit");
    let (ok, text) = systemd_verify(&copy);
    assert!(
        ok && text.trim().is_empty(),
        "systemd-analyze verify:\n{text}"
    );

    // The unit install.sh would install for a non-default prefix and locations.
    let prefix = dir.path().join("prefix");
    std::fs::create_dir_all(prefix.join("bin")).expect("prefix");
    std::fs::copy(bin("paasd"), prefix.join("bin/paasd")).expect("copy paasd");
    let state = dir.path().join("state dir");
    let rendered = Run::of(
        Command::new("bash")
            .arg(repo_root().join("install.sh"))
            .arg("--unit")
            .env("PREFIX", &prefix)
            .env("PAAS_STATE", &state)
            .env("PAAS_HTTP", "127.0.0.1:8080"),
    );
    let text = rendered.ok().to_string();
    let exec = format!(
        "ExecStart={}/bin/paasd --state-dir \"{}\" --http 127.0.0.1:8080 --buildpacks-dir {}/share/paas/buildpacks",
        prefix.display(),
        state.display(),
        prefix.display()
    );
    assert!(text.lines().any(|l| l == exec), "want {exec:?} in:\n{text}");
    let copy = dir.path().join("rendered.service");
    std::fs::write(&copy, &text).expect("write");
    let (ok, out) = systemd_verify(&copy);
    assert!(
        ok && out.trim().is_empty(),
        "systemd-analyze verify:\n{out}"
    );
}

/// A free TCP port on loopback (released again; the race with other tests is negligible).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
}

/// Mount points of every mounted cgroup hierarchy (v1 controllers, name=systemd, v2).
fn cgroup_mounts() -> Vec<PathBuf> {
    mountinfo()
        .into_iter()
        .filter(|(_, fstype)| fstype == "cgroup" || fstype == "cgroup2")
        .map(|(m, _)| m)
        .collect()
}

/// (mount point, file system type) of every mount this process sees.
fn mountinfo() -> Vec<(PathBuf, String)> {
    let text = std::fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
    text.lines()
        .filter_map(|l| {
            let (left, right) = l.split_once(" - ")?;
            let mount = left.split(' ').nth(4)?.replace("\\040", " ");
            Some((PathBuf::from(mount), right.split(' ').next()?.to_string()))
        })
        .collect()
}

fn alive(pid: i32) -> bool {
    std::fs::read_link(format!("/proc/{pid}/exe"))
        .is_ok_and(|e| e.to_string_lossy().contains("paasd"))
}

fn exists(cmd: &mut Command) -> bool {
    cmd.stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// A stand-in for `systemctl` when systemd is not PID 1 (CI): records every call in
/// `$FAKE_SYSTEMD/calls` and emulates the verbs install.sh uses for one unit, running its
/// ExecStart in the background (MainPID in `$FAKE_SYSTEMD/pid`) and, like Type=notify, returning
/// from start only once the API socket is there.
const FAKE_SYSTEMCTL: &str = r#"#!/bin/bash
set -u
d=$FAKE_SYSTEMD
echo "$*" >> "$d/calls"
unit=$PAAS_UNIT_DIR/paasd.service
main() { local p; p=$(cat "$d/pid" 2>/dev/null) && [ -d "/proc/$p" ] && echo "$p"; }
stop() {
  local p; p=$(main) || return 0
  kill -TERM "$p"
  for _ in $(seq 1 400); do [ -d "/proc/$p" ] || break; sleep 0.1; done
  rm -f "$d/pid"
}
start() {
  main >/dev/null && return 0
  local exec; exec=$(sed -n 's/^ExecStart=//p' "$unit")
  eval "set -- $exec"
  setsid -f bash -c 'echo $$ > "$0"; exec "$@"' "$d/pid" "$@" >> "$d/paasd.log" 2>&1 < /dev/null
  for _ in $(seq 1 300); do [ -S "$PAAS_SOCKET" ] && main >/dev/null && return 0; sleep 0.1; done
  echo "fake systemctl: paasd did not come up" >&2; return 1
}
[ "$1" = -q ] && shift
case "$1" in
  daemon-reload|reset-failed) ;;
  is-enabled) [ -f "$d/enabled" ] ;;
  enable) touch "$d/enabled" ;;
  is-active) main >/dev/null ;;
  show) main || echo 0 ;;
  start) start ;;
  restart) stop; start ;;
  stop) stop ;;
  disable) rm -f "$d/enabled"; [ "${2:-}" = --now ] && stop; true ;;
  *) echo "fake systemctl: unsupported: $*" >&2; exit 1 ;;
esac
"#;

/// How install.sh is to run paasd.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// `PAAS_SYSTEMD=no`: setsid in the background.
    Background,
    /// `PAAS_SYSTEMD=yes` with [`FAKE_SYSTEMCTL`] first on PATH.
    FakeSystemd,
}

/// One install.sh installation in a temp dir; `--uninstall --purge` on drop unless the test
/// did it, then removes by hand whatever a broken uninstall may have left.
struct Install {
    dir: tempfile::TempDir,
    mode: Mode,
    user: String,
    bridge: String,
    subnet: String,
    cgroup_parent: String,
    port: u16,
    /// Every paasd pid seen, killed on drop if still running.
    pids: Vec<i32>,
    purged: bool,
}

impl Install {
    fn new(mode: Mode) -> Install {
        let dir = tempfile::Builder::new()
            .prefix("paas-install-")
            .tempdir()
            .expect("temp dir");
        let pid = std::process::id();
        // Unique per test process and per mode (the two install tests run in parallel); the
        // harness's daemons use `pt...` bridges and 10.213.N.0/24.
        let n = u32::from(mode == Mode::FakeSystemd);
        let inst = Install {
            mode,
            user: format!("paasi{}{n}", pid % 10000),
            bridge: format!("pi{:x}x{n}", pid & 0xfffff),
            subnet: format!("10.{}.{}.0/24", 214 + n, pid % 250),
            cgroup_parent: format!("paas-install-{pid}-{n}"),
            port: free_port(),
            pids: Vec::new(),
            purged: false,
            dir,
        };
        inst.forget_leftover_user();
        inst.stage();
        if mode == Mode::FakeSystemd {
            let fake = inst.path("fake-systemd");
            std::fs::create_dir_all(fake.join("bin")).expect("fake systemd dir");
            std::fs::create_dir_all(inst.path("units")).expect("unit dir");
            let ctl = fake.join("bin/systemctl");
            std::fs::write(&ctl, FAKE_SYSTEMCTL).expect("fake systemctl");
            std::fs::set_permissions(&ctl, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        }
        inst
    }

    /// The systemctl calls recorded so far (FakeSystemd), and forgets them.
    fn systemctl_calls(&self) -> Vec<String> {
        let f = self.path("fake-systemd/calls");
        let calls = std::fs::read_to_string(&f).unwrap_or_default();
        let _ = std::fs::remove_file(&f);
        calls.lines().map(str::to_string).collect()
    }

    fn unit(&self) -> PathBuf {
        self.path("units/paasd.service")
    }

    fn path(&self, p: &str) -> PathBuf {
        self.dir.path().join(p)
    }

    fn stage_dir(&self) -> PathBuf {
        self.path("src")
    }

    fn prefix(&self) -> PathBuf {
        self.path("prefix")
    }

    fn state(&self) -> PathBuf {
        self.path("state")
    }

    fn socket(&self) -> PathBuf {
        self.path("run/paasd.sock")
    }

    fn home(&self) -> PathBuf {
        self.path("home")
    }

    /// A user of this name left by an earlier, killed run of this test (its home was in a
    /// `paas-install-` temp dir) is removed; any other user of that name stops the test.
    fn forget_leftover_user(&self) {
        let Ok(Some(u)) = nix::unistd::User::from_name(&self.user) else {
            return;
        };
        assert!(
            u.dir.to_string_lossy().contains("/paas-install-"),
            "user {} exists and is not a leftover of this test",
            self.user
        );
        let _ = Command::new("userdel").arg(&self.user).status();
        let _ = Command::new("groupdel").arg(&self.user).status();
    }

    /// The parts of the repository install.sh uses, with the debug binaries as `bin/`.
    fn stage(&self) {
        let src = self.stage_dir();
        std::fs::create_dir_all(src.join("bin")).expect("stage dir");
        let root = repo_root();
        for part in ["install.sh", "scripts", "buildpacks", "examples", "systemd"] {
            let ok = Command::new("cp")
                .arg("-a")
                .arg(root.join(part))
                .arg(&src)
                .status()
                .is_ok_and(|s| s.success());
            assert!(ok, "staging {part}");
        }
        for b in ["paasd", "paas"] {
            std::fs::copy(bin(b), src.join("bin").join(b)).expect("stage binary");
        }
        // The git-push shell exists once its branch is merged; stage it when it is built.
        let shell = bin_dir().join("paas-git-shell");
        if shell.exists() {
            std::fs::copy(&shell, src.join("bin/paas-git-shell")).expect("stage binary");
        }
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new("bash");
        c.arg(self.stage_dir().join("install.sh"))
            .args(args)
            .env("PREFIX", self.prefix())
            .env("PAAS_ETC", self.path("etc"))
            .env("PAAS_STATE", self.state())
            .env("PAAS_SOCKET", self.socket())
            .env("PAAS_HTTP", format!("127.0.0.1:{}", self.port))
            .env("PAAS_HTTPS", "127.0.0.1:0")
            .env("PAAS_USER", &self.user)
            .env("PAAS_HOME", self.home())
            .env("PAAS_BRIDGE", &self.bridge)
            .env("PAAS_SUBNET", &self.subnet)
            .env("PAAS_CGROUP_PARENT", &self.cgroup_parent)
            .env("PAAS_LOG", self.path("log/paasd.log"))
            .env("PAAS_UNIT_DIR", self.path("units"));
        match self.mode {
            Mode::Background => c.env("PAAS_SYSTEMD", "no"),
            Mode::FakeSystemd => {
                let path = std::env::var("PATH").unwrap_or_default();
                let fake = self.path("fake-systemd");
                c.env("PAAS_SYSTEMD", "yes")
                    .env("FAKE_SYSTEMD", &fake)
                    .env("PATH", format!("{}:{path}", fake.join("bin").display()))
            }
        };
        c
    }

    fn run(&mut self, args: &[&str]) -> Run {
        self.run_env(args, &[])
    }

    fn run_env(&mut self, args: &[&str], env: &[(&str, &Path)]) -> Run {
        let started = Instant::now();
        let mut c = self.command(args);
        for (k, v) in env {
            c.env(k, v);
        }
        let run = Run::of(&mut c);
        eprintln!(
            "install.sh {} -> {} in {:.1?}\n--- stdout ---\n{}--- stderr ---\n{}",
            args.join(" "),
            run.status,
            started.elapsed(),
            run.stdout,
            run.stderr
        );
        if let Some(pid) = self.paasd_pid() {
            if !self.pids.contains(&pid) {
                self.pids.push(pid);
            }
        }
        run
    }

    /// The paasd holding the state dir (it writes its pid into its lock file), if running.
    fn paasd_pid(&self) -> Option<i32> {
        let pid: i32 = std::fs::read_to_string(self.state().join("paasd.lock"))
            .ok()?
            .trim()
            .parse()
            .ok()?;
        alive(pid).then_some(pid)
    }

    fn paas(&self, args: &[&str]) -> Run {
        Run::of(
            Command::new(self.prefix().join("bin/paas"))
                .arg("--socket")
                .arg(self.socket())
                .args(args),
        )
    }

    /// `GET /` (HTTP/1.0: no chunked body) through the installed router with `Host: host`.
    fn get(&self, host: &str) -> Option<(u16, String)> {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", self.port)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
        write!(s, "GET / HTTP/1.0\r\nHost: {host}\r\n\r\n").ok()?;
        let mut out = String::new();
        s.read_to_string(&mut out).ok()?;
        let (head, body) = out.split_once("\r\n\r\n")?;
        let status = head.split_whitespace().nth(1)?.parse().ok()?;
        Some((status, body.to_string()))
    }

    /// Container cgroups under this install's cgroup parent, in every hierarchy.
    fn cgroups(&self) -> Vec<PathBuf> {
        cgroup_mounts()
            .into_iter()
            .map(|m| m.join(&self.cgroup_parent))
            .filter(|p| p.exists())
            .collect()
    }

    fn mounts_under_state(&self) -> Vec<PathBuf> {
        mountinfo()
            .into_iter()
            .map(|(m, _)| m)
            .filter(|m| m.starts_with(self.state()))
            .collect()
    }

    fn uninstall(&mut self) -> Run {
        let run = self.run(&["--uninstall", "--purge"]);
        self.purged = true;
        run
    }
}

impl Drop for Install {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let log = std::fs::read_to_string(self.path("log/paasd.log")).unwrap_or_default();
            eprintln!("--- paasd log ---\n{log}");
        }
        if !self.purged {
            let _ = self.uninstall();
        }
        // Whatever a broken uninstall left behind.
        for pid in &self.pids {
            if alive(*pid) {
                let _ = kill(Pid::from_raw(*pid), Signal::SIGKILL);
            }
        }
        for m in self.mounts_under_state().iter().rev() {
            let _ = Command::new("umount").arg("-l").arg(m).status();
        }
        for cg in self.cgroups() {
            let _ = Command::new("find")
                .arg(&cg)
                .args(["-depth", "-type", "d", "-exec", "rmdir", "{}", ";"])
                .stderr(Stdio::null())
                .status();
        }
        let _ = Command::new("ip")
            .args(["link", "del", &self.bridge])
            .stderr(Stdio::null())
            .status();
        let _ = Command::new("nft")
            .args(["delete", "table", "inet", &format!("paas_{}", self.bridge)])
            .stderr(Stdio::null())
            .status();
        if nix::unistd::User::from_name(&self.user).is_ok_and(|u| u.is_some()) {
            let _ = Command::new("userdel").arg(&self.user).status();
        }
        if nix::unistd::Group::from_name(&self.user).is_ok_and(|g| g.is_some()) {
            let _ = Command::new("groupdel").arg(&self.user).status();
        }
    }
}

fn mtime(p: &Path) -> SystemTime {
    std::fs::metadata(p)
        .and_then(|m| m.modified())
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// What `install.sh --uninstall --purge` must have removed.
fn assert_nothing_left(inst: &Install, gone: &Run) {
    gone.ok();
    assert!(
        gone.stdout.contains("paas uninstalled (purged"),
        "{gone:#?}"
    );
    for b in ["paasd", "paas", "paas-git-shell"] {
        assert!(
            !inst.prefix().join("bin").join(b).exists(),
            "{b} is still installed"
        );
    }
    assert!(
        !inst.prefix().join("share/paas").exists(),
        "buildpacks are left"
    );
    assert!(
        !exists(Command::new("ip").args(["link", "show", &inst.bridge])),
        "bridge {} is left",
        inst.bridge
    );
    assert!(
        !exists(Command::new("nft").args([
            "list",
            "table",
            "inet",
            &format!("paas_{}", inst.bridge)
        ])),
        "nftables table paas_{} is left",
        inst.bridge
    );
    assert_eq!(
        inst.mounts_under_state(),
        Vec::<PathBuf>::new(),
        "mounts left"
    );
    assert_eq!(inst.cgroups(), Vec::<PathBuf>::new(), "cgroups left");
    assert!(
        nix::unistd::User::from_name(&inst.user)
            .expect("getpwnam")
            .is_none(),
        "user {} is left",
        inst.user
    );
    assert!(
        nix::unistd::Group::from_name(&inst.user)
            .expect("getgrnam")
            .is_none(),
        "group {} is left",
        inst.user
    );
    for p in ["state", "etc", "log/paasd.log", "home", "run/paasd.sock"] {
        assert!(!inst.path(p).exists(), "{p} is left");
    }
    for pid in &inst.pids {
        assert!(!alive(*pid), "paasd {pid} still runs");
    }
}

/// The demo app's answer through the router, waiting up to 60 s for it.
fn demo_answer(inst: &Install) -> String {
    let end = Instant::now() + Duration::from_secs(60);
    loop {
        match inst.get("hello.paas.localhost") {
            Some((200, body)) => return body,
            other => assert!(
                Instant::now() < end,
                "the demo app does not answer through the router: {other:?}"
            ),
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn install_twice_then_uninstall_purge_leaves_nothing() {
    if !have_root("install_twice_then_uninstall_purge_leaves_nothing") {
        return;
    }
    let mut inst = Install::new(Mode::Background);
    let prefix = inst.prefix();
    let git_shell = bin_dir().join("paas-git-shell").exists();
    // Once the workspace builds the git-push shell, install.sh must install it.
    let declared = std::fs::read_to_string(repo_root().join("paas-cli/Cargo.toml"))
        .is_ok_and(|t| t.contains("name = \"paas-git-shell\""));
    assert!(
        git_shell || !declared,
        "paas-git-shell is declared but not built: run `cargo build --workspace`"
    );

    // First run: everything is new.
    let first = inst.run(&[]);
    first.ok();
    assert!(
        first.stdout.contains("Hello from procfile-hello v1"),
        "install.sh shows the demo app's answer: {first:#?}"
    );
    assert!(first.stdout.contains("change(s):"), "{first:#?}");
    assert!(
        first
            .stderr
            .contains("PAAS_SYSTEMD=no: running paasd in the background"),
        "install.sh says how paasd runs: {first:#?}"
    );
    for next in [
        "paas keys add NAME ~/.ssh/id_ed25519.pub".to_string(),
        format!("git remote add paas {}@", inst.user),
        "git push paas main".to_string(),
        "base_domain".to_string(),
    ] {
        assert!(first.stdout.contains(&next), "next steps lack {next:?}");
    }
    let body = demo_answer(&inst);
    assert!(body.starts_with("Hello from procfile-hello v1"), "{body:?}");
    // The forwarding setting from before paas, for --uninstall to put back.
    let forwarding = std::fs::read_to_string(inst.state().join("ip_forward.before"))
        .expect("install.sh records net.ipv4.ip_forward");
    assert!(matches!(forwarding.trim(), "0" | "1"), "{forwarding:?}");

    // What it installed.
    let mut bins = vec!["paasd", "paas"];
    if git_shell {
        bins.push("paas-git-shell");
    }
    for b in &bins {
        let m = std::fs::metadata(prefix.join("bin").join(b)).expect("installed binary");
        assert_eq!(m.permissions().mode() & 0o777, 0o755, "{b}");
    }
    assert!(prefix
        .join("share/paas/buildpacks/nodejs/bin/compile")
        .exists());
    assert!(!prefix.join("share/paas/buildpacks/test").exists());
    let config = std::fs::read_to_string(inst.path("etc/paasd.toml")).expect("config template");
    for line in [
        "# [git]",
        "# user = \"paas\"",
        "# authorized_keys = \"/home/paas/.ssh/authorized_keys\"",
        "# create_on_push = true",
        "# branches = [\"main\", \"master\"]",
    ] {
        // Keys as paasd reads them, perhaps followed by a comment.
        assert!(
            config
                .lines()
                .any(|l| l == line || l.starts_with(&format!("{line} "))),
            "config lacks {line:?}"
        );
    }
    let user = nix::unistd::User::from_name(&inst.user)
        .expect("getpwnam")
        .expect("the git user exists");
    assert_eq!(user.shell, Path::new("/bin/sh"));
    assert_eq!(user.dir, inst.home());
    let group = nix::unistd::Group::from_name(&inst.user)
        .expect("getgrnam")
        .expect("the git group exists");
    assert_eq!(user.gid, group.gid);
    for (p, mode) in [
        (inst.home().join(".ssh"), 0o700),
        (inst.home().join(".ssh/authorized_keys"), 0o600),
    ] {
        let m = std::fs::metadata(&p).expect("exists");
        assert_eq!(m.permissions().mode() & 0o777, mode, "{}", p.display());
        assert_eq!(m.uid(), user.uid.as_raw(), "{}", p.display());
    }
    let sock = std::fs::metadata(inst.socket()).expect("API socket");
    assert_eq!(sock.permissions().mode() & 0o777, 0o660);
    assert_eq!(
        sock.gid(),
        group.gid.as_raw(),
        "the socket belongs to the git group"
    );
    let pid = inst.paasd_pid().expect("paasd runs");
    assert_eq!(
        std::fs::read_link(format!("/proc/{pid}/exe")).expect("exe"),
        prefix.join("bin/paasd")
    );
    let info = inst.paas(&["info", "hello", "--json"]).json();
    let releases = inst.paas(&["releases", "hello", "--json"]).json();
    assert_eq!(info["status"], "deployed", "{info}");
    assert!(
        !inst.cgroups().is_empty(),
        "the demo app runs in cgroups under {}",
        inst.cgroup_parent
    );
    // Modification times of everything install.sh writes.
    let config_file = inst.path("etc/paasd.toml");
    let stamps = || -> Vec<SystemTime> {
        bins.iter()
            .map(|b| mtime(&prefix.join("bin").join(b)))
            .chain([
                mtime(&config_file),
                mtime(&prefix.join("share/paas/buildpacks")),
            ])
            .collect()
    };
    let before = stamps();

    // Second run: nothing to do, and it says so.
    let second = inst.run(&[]);
    second.ok();
    assert!(
        second
            .stdout
            .contains("install.sh: nothing changed; paas is installed and running"),
        "{second:#?}"
    );
    assert!(!second.stdout.contains("change(s):"), "{second:#?}");
    assert_eq!(inst.paasd_pid(), Some(pid), "paasd was not restarted");
    assert_eq!(
        inst.paas(&["releases", "hello", "--json"]).json(),
        releases,
        "the demo app was not redeployed"
    );
    assert_eq!(before, stamps(), "no file was rewritten");
    assert!(demo_answer(&inst).starts_with("Hello from procfile-hello v1"));

    if git_shell {
        push_as_the_installed_git_user(&inst);
    }

    // A new paasd binary (here: one more byte at the end of the ELF file) is installed and
    // replaces the running daemon; the app comes back on the same release.
    let staged = inst.stage_dir().join("bin/paasd");
    std::fs::OpenOptions::new()
        .append(true)
        .open(&staged)
        .and_then(|mut f| f.write_all(b"\0"))
        .expect("change the staged paasd");
    let third = inst.run(&[]);
    third.ok();
    let changes: Vec<&str> = third
        .stdout
        .lines()
        .filter_map(|l| l.strip_prefix("  - "))
        .collect();
    assert_eq!(changes.len(), 3, "{third:#?}");
    assert_eq!(
        changes[0],
        format!("installed {}", prefix.join("bin/paasd").display())
    );
    assert!(changes[1].starts_with(&format!("stopped the old paasd (pid {pid})")));
    assert!(changes[2].starts_with("started paasd in the background"));
    let new_pid = inst.paasd_pid().expect("paasd runs again");
    assert_ne!(new_pid, pid, "paasd was restarted with the new binary");
    assert!(!alive(pid), "the old paasd is gone");
    assert_eq!(
        inst.paas(&["releases", "hello", "--json"]).json(),
        releases,
        "a restart does not redeploy"
    );
    assert!(demo_answer(&inst).starts_with("Hello from procfile-hello v1"));

    // The default demo needs no registry (install.sh on a host with restricted egress). A demo
    // that does, with its registry unreachable, fails; install.sh still completes, says so
    // and prints the next steps.
    let offline = inst.path("offline-demo");
    std::fs::create_dir_all(&offline).expect("demo dir");
    std::fs::write(
        offline.join("package.json"),
        r#"{"name":"offline","version":"1.0.0","scripts":{"start":"node -e 0"},"dependencies":{"paas-no-such-package-anywhere":"1.0.0"}}"#,
    )
    .expect("package.json");
    std::fs::write(
        offline.join(".npmrc"),
        "registry=http://127.0.0.1:9/\nfetch-retries=0\n",
    )
    .expect(".npmrc");
    let blocked = inst.run_env(
        &[],
        &[
            ("DEMO_APP", Path::new("offline")),
            ("DEMO_SOURCE", &offline),
        ],
    );
    blocked.ok();
    assert!(
        blocked.stderr.contains(&format!(
            "install.sh: paas is installed and running, but the demo app offline from {} failed",
            offline.display()
        )),
        "{blocked:#?}"
    );
    for next in ["paas keys add NAME", "git push paas main", "base_domain"] {
        assert!(blocked.stdout.contains(next), "next steps lack {next:?}");
    }
    assert!(
        demo_answer(&inst).starts_with("Hello from procfile-hello v1"),
        "the first demo keeps serving"
    );

    // Instances and their cgroups outlive a paasd that dies (by design, so that a restart
    // keeps apps up): kill it hard, so the uninstall has to clean up after it.
    kill(Pid::from_raw(new_pid), Signal::SIGKILL).expect("SIGKILL paasd");
    let end = Instant::now() + Duration::from_secs(10);
    while alive(new_pid) {
        assert!(Instant::now() < end, "paasd survived SIGKILL");
        std::thread::sleep(Duration::from_millis(20));
    }
    let left = inst.cgroups();
    assert!(!left.is_empty(), "the instance's cgroups outlive paasd");
    // Container mounts live in the containers' own mount namespaces; a mount in the host's
    // namespace below the state dir (two stacked plus one nested here) must be undone before
    // --purge deletes the state dir, and nothing must be deleted through it.
    let outside = tempfile::tempdir().expect("temp dir");
    std::fs::write(outside.path().join("keep"), "x").expect("file");
    let m = inst.state().join("instances/leftover/rootfs");
    std::fs::create_dir_all(&m).expect("mount point");
    for (what, src) in [
        ("bind", outside.path().to_path_buf()),
        ("tmpfs", PathBuf::from("tmpfs")),
    ] {
        let mut c = Command::new("mount");
        if what == "bind" {
            c.arg("--bind").arg(&src).arg(&m);
        } else {
            c.args(["-t", "tmpfs", "tmpfs"]).arg(&m);
        }
        assert!(exists(&mut c), "mount {what}");
    }
    std::fs::create_dir_all(m.join("proc")).expect("nested mount point");
    assert!(exists(
        Command::new("mount")
            .args(["-t", "tmpfs", "tmpfs"])
            .arg(m.join("proc"))
    ));
    assert_eq!(inst.mounts_under_state().len(), 3);
    eprintln!(
        "left behind by the killed paasd: cgroups {left:?}, mounts {:?}",
        inst.mounts_under_state()
    );

    let gone = inst.uninstall();
    assert_nothing_left(&inst, &gone);
    if forwarding.trim() == "0" {
        // Put back, unless another paasd (a parallel test's) still needs it: then said so.
        let restored = gone.stdout.contains("restored net.ipv4.ip_forward=0");
        assert!(
            restored || gone.stderr.contains("note: left net.ipv4.ip_forward=1"),
            "{gone:#?}"
        );
        if restored {
            let now = std::fs::read_to_string("/proc/sys/net/ipv4/ip_forward").expect("sysctl");
            assert_eq!(now.trim(), "0");
        }
    }
    assert!(
        outside.path().join("keep").exists(),
        "--purge deleted through a mount"
    );
    // A second uninstall finds nothing to do and succeeds.
    inst.uninstall().ok();
}

#[test]
fn install_under_systemd_installs_the_unit_and_restarts_only_on_change() {
    if !have_root("install_under_systemd_installs_the_unit_and_restarts_only_on_change") {
        return;
    }
    // systemd is not PID 1 here: install.sh drives a recording stand-in for systemctl.
    let mut inst = Install::new(Mode::FakeSystemd);
    let first = inst.run(&[]);
    first.ok();
    let calls = inst.systemctl_calls();
    for want in [
        "daemon-reload",
        "enable -q paasd.service",
        "start paasd.service",
    ] {
        assert!(
            calls.iter().any(|c| c == want),
            "no `systemctl {want}` in {calls:?}"
        );
    }
    assert!(
        first
            .stdout
            .contains(&format!("installed {}", inst.unit().display())),
        "{first:#?}"
    );
    assert!(first
        .stdout
        .contains("started paasd (systemd unit paasd.service)"));
    assert!(demo_answer(&inst).starts_with("Hello from procfile-hello v1"));
    // The installed unit runs the installed paasd on this install's locations, and is valid.
    let unit = std::fs::read_to_string(inst.unit()).expect("installed unit");
    let exec = unit
        .lines()
        .find(|l| l.starts_with("ExecStart="))
        .expect("ExecStart");
    for part in [
        format!("ExecStart={}/bin/paasd ", inst.prefix().display()),
        format!("--config {}/paasd.toml", inst.path("etc").display()),
        format!("--state-dir {}", inst.state().display()),
        format!("--socket {}", inst.socket().display()),
        format!("--http 127.0.0.1:{}", inst.port),
        format!("--bridge {}", inst.bridge),
        format!("--cgroup-parent {}", inst.cgroup_parent),
    ] {
        assert!(exec.contains(&part), "{exec:?} lacks {part:?}");
    }
    assert!(unit.contains("KillMode=process") && unit.contains("Type=notify"));
    let (ok, out) = systemd_verify(&inst.unit());
    assert!(
        ok && out.trim().is_empty(),
        "systemd-analyze verify:\n{out}"
    );
    let pid = inst.paasd_pid().expect("paasd runs");

    // Second run: nothing to do, and systemd is asked nothing but questions.
    let second = inst.run(&[]);
    second.ok();
    assert!(
        second.stdout.contains("install.sh: nothing changed"),
        "{second:#?}"
    );
    let calls = inst.systemctl_calls();
    assert!(
        calls
            .iter()
            // --version: install.sh asks which unit keys this systemd knows.
            .all(|c| c.starts_with("is-")
                || c.starts_with("-q is-")
                || c.starts_with("show ")
                || c == "--version"),
        "a second run changes no service state: {calls:?}"
    );
    assert_eq!(inst.paasd_pid(), Some(pid));

    // A changed binary: `systemctl restart`, a new paasd, the app back without a redeploy.
    std::fs::OpenOptions::new()
        .append(true)
        .open(inst.stage_dir().join("bin/paasd"))
        .and_then(|mut f| f.write_all(b"\0"))
        .expect("change the staged paasd");
    let third = inst.run(&[]);
    third.ok();
    assert!(
        third.stdout.contains("restarted paasd (systemd)"),
        "{third:#?}"
    );
    let calls = inst.systemctl_calls();
    assert!(
        calls.iter().any(|c| c == "restart paasd.service"),
        "{calls:?}"
    );
    assert!(!calls.iter().any(|c| c == "daemon-reload"), "{calls:?}");
    let new_pid = inst.paasd_pid().expect("paasd runs again");
    assert_ne!(new_pid, pid);
    assert!(demo_answer(&inst).starts_with("Hello from procfile-hello v1"));

    let gone = inst.uninstall();
    let calls = inst.systemctl_calls();
    assert!(
        calls.iter().any(|c| c == "disable --now paasd.service"),
        "{calls:?}"
    );
    assert!(!inst.unit().exists(), "the unit is left");
    assert_nothing_left(&inst, &gone);
}

/// The VPS path for real: `paas keys add` on the installed daemon writes the installed git
/// user's `~/.ssh/authorized_keys`; an sshd configured like the system's (that user,
/// `.ssh/authorized_keys`) runs the installed `paas-git-shell` as that unprivileged user,
/// which reaches the API through the socket's group and pushes into a repo it owns.
fn push_as_the_installed_git_user(inst: &Install) {
    // The temp dir stands in for / here: the git user must reach the socket, state and
    // binaries below it, as it reaches /run, /var/lib and /usr/local on a server.
    std::fs::set_permissions(inst.dir.path(), std::fs::Permissions::from_mode(0o711))
        .expect("chmod temp dir");
    let sshd = Sshd::start_for_user(&inst.user);
    inst.paas(&[
        "keys",
        "add",
        "tester",
        &sshd.client_pub().display().to_string(),
    ])
    .ok();
    let keys = std::fs::read_to_string(inst.home().join(".ssh/authorized_keys")).expect("keys");
    let shell = inst.prefix().join("bin/paas-git-shell");
    assert!(
        keys.contains(&format!("command=\"'{}' --socket", shell.display()))
            && keys.contains("paas-key:tester"),
        "{keys}"
    );
    let app = node_app("v7");
    let work = tempfile::tempdir().expect("dir");
    for f in ["package.json", "package-lock.json", "server.js"] {
        std::fs::copy(app.path().join(f), work.path().join(f)).expect("copy");
    }
    for args in [
        &["init", "-q"][..],
        &["add", "-A"],
        &["commit", "-q", "-m", "v7"],
    ] {
        let r = Run::of(&mut git(work.path(), args));
        assert!(r.status.success(), "{r:#?}");
    }
    let mut push = git(work.path(), &["push", &sshd.remote("pushed"), "main"]);
    push.env("GIT_SSH_COMMAND", sshd.ssh_command());
    let r = Run::of(&mut push);
    assert!(r.status.success(), "push as {} failed: {r:#?}", inst.user);
    println!(
        "git push as {}: {} lines of remote output",
        inst.user,
        r.stderr
            .lines()
            .filter(|l| l.starts_with("remote:"))
            .count()
    );
    assert!(
        r.stderr.contains("remote: Released v2 of pushed"),
        "{}",
        r.stderr
    );
    assert_eq!(
        inst.get("pushed.paas.localhost"),
        Some((200, "Hello from node-hello v7 on web.1\n".to_string()))
    );
    let user = nix::unistd::User::from_name(&inst.user)
        .expect("getpwnam")
        .expect("git user");
    let repo = std::fs::metadata(inst.state().join("git/pushed.git/HEAD")).expect("repo");
    assert_eq!(
        repo.uid(),
        user.uid.as_raw(),
        "the repo belongs to the git user"
    );

    // The git user reaches the socket (its group), but may only push through it.
    let r = Run::of(
        Command::new("runuser")
            .args(["-u", &inst.user, "--"])
            .arg(inst.prefix().join("bin/paas"))
            .arg("--socket")
            .arg(inst.socket())
            .args(["env", "pushed"]),
    );
    r.fails(1, "the git user may only push");

    // A link the git user plants where paasd writes its keys is not followed.
    let victim = inst.path("victim");
    std::fs::write(&victim, "keep\n").expect("victim");
    let planted = inst.home().join(".ssh/.authorized_keys.paas-new");
    std::os::unix::fs::symlink(&victim, &planted).expect("plant a link");
    inst.paas(&["keys", "remove", "tester"]).ok();
    assert_eq!(std::fs::read_to_string(&victim).expect("victim"), "keep\n");
    let keys = std::fs::read_to_string(inst.home().join(".ssh/authorized_keys")).expect("keys");
    assert!(!keys.contains("paas-key:tester"), "{keys}");
}
