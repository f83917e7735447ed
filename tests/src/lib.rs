//! Test harness for the integration tests: boots the real `paasd` binary on a temporary
//! socket and state dir, runs the real `paas` binary against it, and cleans up through RAII
//! guards even when a test panics. Binaries come from the workspace target dir, so run
//! `cargo build --workspace` first (the README test command does).

#![forbid(unsafe_code)]

pub mod load;
pub mod pebble;
pub mod sshd;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

use paas_api::Client;

/// The directory holding `paasd` and `paas`: `$PAAS_BIN_DIR`, else next to the test binary.
/// Writes an executable bash script (`set -euo pipefail`, then `body`) to `path`: buildpack
/// steps and other fixtures.
pub fn write_script(path: &Path, body: &str) {
    std::fs::write(
        path,
        format!("#!/usr/bin/env bash\nset -euo pipefail\n{body}\n"),
    )
    .expect("write script");
    std::fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(0o755))
        .expect("chmod script");
}

/// The workspace root (examples/, buildpacks/).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

/// A gzipped tarball of `files` (path, contents, mode); directories are implied.
pub fn tarball(files: &[(&str, &str, u32)]) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    {
        let mut b = tar::Builder::new(&mut gz);
        for (path, contents, mode) in files {
            let mut h = tar::Header::new_gnu();
            h.set_size(contents.len() as u64);
            h.set_mode(*mode);
            h.set_mtime(0);
            h.set_uid(0);
            h.set_gid(0);
            h.set_cksum();
            b.append_data(&mut h, path, contents.as_bytes())
                .expect("append");
        }
        b.finish().expect("finish");
    }
    gz.finish().expect("gzip")
}

/// Appends one tar entry written header by header, so hostile names and types survive (the
/// tar crate's builder refuses them).
pub fn raw_entry(out: &mut Vec<u8>, name: &str, kind: u8, link: &str, data: &[u8]) {
    let mut h = [0u8; 512];
    h[..name.len()].copy_from_slice(name.as_bytes());
    h[100..108].copy_from_slice(b"0000644\0");
    h[108..116].copy_from_slice(b"0000000\0");
    h[116..124].copy_from_slice(b"0000000\0");
    h[124..136].copy_from_slice(format!("{:011o}\0", data.len()).as_bytes());
    h[136..148].copy_from_slice(b"00000000000\0");
    h[156] = kind;
    h[157..157 + link.len()].copy_from_slice(link.as_bytes());
    h[257..263].copy_from_slice(b"ustar\0");
    h[263..265].copy_from_slice(b"00");
    h[148..156].copy_from_slice(b"        ");
    let sum: u32 = h.iter().map(|b| u32::from(*b)).sum();
    h[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
    out.extend_from_slice(&h);
    out.extend_from_slice(data);
    out.resize(out.len().div_ceil(512) * 512, 0);
}

/// Gzips the raw entries `entries` appends, with the end-of-archive blocks.
pub fn gz_raw(entries: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
    let mut t = Vec::new();
    entries(&mut t);
    t.extend_from_slice(&[0u8; 1024]);
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut e, &t).expect("gz");
    e.finish().expect("gz")
}

pub fn bin_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("PAAS_BIN_DIR") {
        return PathBuf::from(d);
    }
    let exe = std::env::current_exe().expect("test binary path");
    // target/<profile>/deps/<test>-<hash> -> target/<profile>
    exe.parent()
        .and_then(Path::parent)
        .expect("target dir")
        .to_path_buf()
}

pub fn bin(name: &str) -> PathBuf {
    let p = bin_dir().join(name);
    assert!(
        p.exists(),
        "{} not found: run `cargo build --workspace` before the integration tests",
        p.display()
    );
    p
}

/// True when the test may use root-only facilities. Off root, prints a loud skip notice;
/// under CI (`CI` set) a missing root is a failure, never a skip.
pub fn have_root(test: &str) -> bool {
    if nix::unistd::geteuid().is_root() {
        return true;
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "{test}: CI runs as root; refusing to skip"
    );
    eprintln!("\n!!! SKIPPED {test}: needs root (run the suite with sudo) !!!\n");
    false
}

/// Where paasd may create cgroups on v1 (per controller) and v2 (the root).
pub const CGROUP_ROOTS: &[&str] = &[
    "/sys/fs/cgroup",
    "/sys/fs/cgroup/memory",
    "/sys/fs/cgroup/pids",
    "/sys/fs/cgroup/cpu",
    "/sys/fs/cgroup/cpuacct",
    "/sys/fs/cgroup/freezer",
    "/sys/fs/cgroup/unified",
];

/// A running paasd on its own temp dir, bridge and subnet. Stopped, and everything it made
/// (cgroups, bridge, NAT table, leftover containers, the dir) removed on drop.
pub struct Daemon {
    child: Option<Child>,
    dir: tempfile::TempDir,
    pub log: PathBuf,
    /// Unique within this test process: picks the bridge and subnet.
    seq: u32,
    first_uid: u32,
    /// The router's plain-HTTP and HTTPS ports (0: any free one).
    http_port: u16,
    https_port: u16,
    /// Listening sockets this test keeps across paasd restarts, as systemd's socket units do.
    held: Option<Held>,
    /// Runs this paasd binary instead of the built one (an upgrade).
    binary: Option<PathBuf>,
}

/// The API socket and the router's listeners, bound by the test and handed to every paasd it
/// starts (`LISTEN_FDS`), so connections made while paasd restarts wait in their queues.
struct Held {
    api: std::os::unix::net::UnixListener,
    http: std::net::TcpListener,
    https: std::net::TcpListener,
}

static SEQ: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

impl Daemon {
    /// Starts a fresh daemon in a new temp dir and waits until its socket answers.
    pub fn start() -> Daemon {
        Daemon::start_with_config("")
    }

    /// Like [`Daemon::start`] with `toml` as its config file (e.g. a `[stacks]` table).
    pub fn start_with_config(toml: &str) -> Daemon {
        Daemon::start_on(toml, 0)
    }

    /// Like [`Daemon::start_with_config`], with the router on `http_port` (an ACME server
    /// validates on a port it was told). Unless `toml` has an `[acme]` table, automatic
    /// certificates are off: a test daemon must not ask a real CA for anything.
    pub fn start_on(toml: &str, http_port: u16) -> Daemon {
        Daemon::start_on_ports(toml, http_port, 0)
    }

    /// [`Daemon::start_on`] with the HTTPS port fixed too (TLS-ALPN-01 validates there).
    pub fn start_on_ports(toml: &str, http_port: u16, https_port: u16) -> Daemon {
        let mut d = Daemon::unstarted(toml, http_port, https_port);
        d.restart();
        d
    }

    /// Like [`Daemon::start_with_config`], with `other`'s app uid range (a platform restore
    /// takes only apps whose uids are in the range of the paasd it restores into, as on
    /// a real host, where both have the same config).
    pub fn start_with_uids_of(toml: &str, other: &Daemon) -> Daemon {
        let mut d = Daemon::unstarted(toml, 0, 0);
        d.first_uid = other.first_uid;
        d.restart();
        d
    }

    fn unstarted(toml: &str, http_port: u16, https_port: u16) -> Daemon {
        let dir = tempfile::Builder::new()
            .prefix("paas-test-")
            .tempdir()
            .expect("temp dir");
        // An empty config file isolates the test from /etc/paas/paasd.toml.
        let toml = if toml.contains("[acme]") {
            toml.to_string()
        } else {
            format!("{toml}\n[acme]\nenabled = false\n")
        };
        std::fs::write(dir.path().join("paasd.toml"), toml).expect("config");
        // Offset by the pid: test binaries running side by side (other suites, other
        // checkouts) must not share a subnet, or one's router reaches the other's apps.
        let seq = (SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            + std::process::id() * 17)
            % 250;
        Daemon {
            child: None,
            log: dir.path().join("paasd.log"),
            dir,
            seq,
            // Daemons side by side get uid ranges of their own, as they get subnets.
            first_uid: 1_900_000_000 + seq * 1000,
            http_port,
            https_port,
            held: None,
            binary: None,
        }
    }

    /// Like [`Daemon::start_with_config`], but the test binds the API socket and the router's
    /// ports and hands them to each paasd it starts, the way systemd's socket units do.
    pub fn start_holding_sockets(toml: &str) -> Daemon {
        let mut d = Daemon::start_with_config(toml);
        d.stop_all();
        let _ = std::fs::remove_file(d.socket());
        let api = std::os::unix::net::UnixListener::bind(d.socket()).expect("bind the API socket");
        let tcp = || {
            let s = deep_listener();
            let port = s.local_addr().expect("addr").port();
            (s, port)
        };
        let (http, http_port) = tcp();
        let (https, https_port) = tcp();
        d.http_port = http_port;
        d.https_port = https_port;
        d.held = Some(Held { api, http, https });
        d.restart();
        d
    }

    /// Runs `binary` from the next [`Daemon::restart`] on.
    pub fn use_binary(&mut self, binary: PathBuf) {
        self.binary = Some(binary);
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn socket(&self) -> PathBuf {
        self.dir.path().join("paasd.sock")
    }

    pub fn state_dir(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    /// Picks this daemon's subnet: 10.213.<seq>.0/24.
    pub fn seq(&self) -> u32 {
        self.seq
    }

    /// This daemon's bridge: `pt<pid>x<seq>`, at most 15 bytes.
    pub fn bridge(&self) -> String {
        format!("pt{:x}x{:x}", std::process::id() & 0xfffff, self.seq)
    }

    /// Veths (host side) currently attached to this daemon's bridge.
    pub fn veths(&self) -> Vec<String> {
        std::fs::read_dir(format!("/sys/class/net/{}/brif", self.bridge()))
            .map(|rd| {
                rd.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Removes the bridge and NAT table paasd set up (it keeps them across restarts, as a
    /// production daemon must, so tests clean up after it).
    fn remove_network(&self) {
        let bridge = self.bridge();
        let _ = Command::new("ip")
            .args(["link", "del", &bridge])
            .stderr(Stdio::null())
            .status();
        let _ = Command::new("nft")
            .args(["delete", "table", "inet", &format!("paas_{bridge}")])
            .stderr(Stdio::null())
            .status();
    }

    /// This daemon's own cgroup subtree (named after its unique temp dir).
    pub fn cgroup_parent(&self) -> String {
        self.dir
            .path()
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "paas-test".into())
    }

    /// Container cgroups under this daemon's parent, in every hierarchy that has it.
    pub fn cgroups(&self) -> Vec<PathBuf> {
        let parent = self.cgroup_parent();
        let mut out = Vec::new();
        for root in CGROUP_ROOTS {
            if let Ok(rd) = std::fs::read_dir(Path::new(root).join(&parent)) {
                out.extend(rd.flatten().map(|e| e.path()).filter(|p| p.is_dir()));
            }
        }
        out
    }

    /// Kills what is left in this daemon's cgroups and removes them and the parent.
    fn remove_cgroups(&self) {
        let parent = self.cgroup_parent();
        // A daemon killed between freezing a cgroup and thawing it (v1 kill path) leaves its
        // processes frozen: SIGKILL is only delivered once they run again.
        for cg in self.cgroups() {
            let state = cg.join("freezer.state");
            if state.exists() {
                let _ = std::fs::write(&state, "THAWED");
            }
        }
        for cg in self.cgroups() {
            let procs = std::fs::read_to_string(cg.join("cgroup.procs")).unwrap_or_default();
            for pid in procs.lines().filter_map(|l| l.trim().parse().ok()) {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
        }
        for _ in 0..50 {
            let left: Vec<PathBuf> = self.cgroups();
            for cg in &left {
                let _ = std::fs::remove_dir(cg);
            }
            if self.cgroups().is_empty() {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        for root in CGROUP_ROOTS {
            let _ = std::fs::remove_dir(Path::new(root).join(&parent));
        }
    }

    /// Mount points under this daemon's dir (add-on data disks, volumes), deepest first.
    pub fn mounts(&self) -> Vec<PathBuf> {
        let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        let mut out: Vec<PathBuf> = info
            .lines()
            .filter_map(|l| l.split(' ').nth(4))
            .map(PathBuf::from)
            .filter(|p| p.starts_with(self.dir.path()))
            .collect();
        out.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
        out
    }

    /// What a killed daemon left mounted: unmounted, so the temp dir can go (and the loop
    /// devices with it).
    fn unmount_all(&self) {
        for m in self.mounts() {
            let _ = Command::new("umount").arg("-l").arg(&m).status();
        }
    }

    pub fn db(&self) -> PathBuf {
        self.state_dir().join("paas.db")
    }

    /// The command line this daemon runs with (for tests that start a second one).
    pub fn command(&self) -> Command {
        let mut c = Command::new(self.binary.clone().unwrap_or_else(|| bin("paasd")));
        c.arg("--config")
            .arg(self.dir.path().join("paasd.toml"))
            .arg("--socket")
            .arg(self.socket())
            .arg("--state-dir")
            .arg(self.state_dir())
            .arg("--http")
            .arg(format!("127.0.0.1:{}", self.http_port))
            .arg("--https")
            .arg(format!("127.0.0.1:{}", self.https_port))
            .arg("--cgroup-parent")
            .arg(self.cgroup_parent())
            .arg("--bridge")
            .arg(self.bridge())
            .arg("--subnet")
            .arg(format!("10.213.{}.0/24", self.seq))
            .arg("--first-uid")
            .arg(self.first_uid.to_string())
            .arg("--buildpacks-dir")
            .arg(repo_root().join("buildpacks"))
            .env("PAASD_LOG", "debug");
        c
    }

    /// The uid the edge serves as: the last of the `[users]` range (`--first-uid`, and the
    /// default count of 100,000).
    pub fn edge_uid(&self) -> u32 {
        self.first_uid + 100_000 - 1
    }

    /// Starts (again) on the same dirs; panics with the daemon's log if it does not come up.
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "daemon already running");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("log file");
        let mut cmd = match &self.held {
            None => self.command(),
            Some(held) => held.wrap(self.command()),
        };
        let child = cmd
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn paasd");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            // A held socket accepts connections before paasd serves them: ask it something.
            let up = if self.held.is_some() {
                self.api_health().is_some()
            } else {
                std::os::unix::net::UnixStream::connect(self.socket()).is_ok()
            };
            if up {
                return;
            }
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                panic!("paasd exited early ({status}); log:\n{}", self.log_text());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!(
            "paasd did not listen within 20 s; log:\n{}",
            self.log_text()
        );
    }

    pub fn pid(&self) -> nix::unistd::Pid {
        let child = self.child.as_ref().expect("daemon not running");
        nix::unistd::Pid::from_raw(child.id() as i32)
    }

    /// SIGTERM: a restart (paasd exits, its apps keep running); waits for the exit status.
    pub fn stop(&mut self) -> ExitStatus {
        self.signal_and_wait(nix::sys::signal::Signal::SIGTERM)
    }

    /// SIGINT: paasd stops and so do its apps (SIGTERM is a restart: they keep running).
    pub fn stop_all(&mut self) -> ExitStatus {
        self.signal_and_wait(nix::sys::signal::Signal::SIGINT)
    }

    fn signal_and_wait(&mut self, signal: nix::sys::signal::Signal) -> ExitStatus {
        let mut child = self.child.take().expect("daemon not running");
        let pid = nix::unistd::Pid::from_raw(child.id() as i32);
        let _ = nix::sys::signal::kill(pid, signal);
        let deadline = Instant::now() + Duration::from_secs(40);
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("paasd ignored {signal} for 40 s; log:\n{}", self.log_text());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGKILL, as a crash would, and reaps it.
    pub fn crash(&mut self) {
        let mut child = self.child.take().expect("daemon not running");
        let _ = child.kill();
        let _ = child.wait();
    }

    /// Container monitors this daemon recorded (one per running instance).
    /// The helpers monitoring this daemon's containers (not its spare, which has none yet).
    pub fn helper_pids(&self) -> Vec<nix::unistd::Pid> {
        self.all_helpers()
            .into_iter()
            .filter(|pid| {
                std::fs::read_to_string(format!("/proc/{pid}/comm"))
                    .is_ok_and(|c| c.trim() == "paas-helper")
            })
            .collect()
    }

    /// Every helper of this daemon, its spare included: paasd re-executes itself as
    /// `paasd __runtime-helper STATE_DIR`, which is how the next paasd finds leftovers too.
    pub fn all_helpers(&self) -> Vec<nix::unistd::Pid> {
        self.processes_of("__runtime-helper")
    }

    /// The edge processes of this daemon (`paasd __edge STATE_DIR`): the router's process,
    /// which outlives paasd's restarts. One, except while an upgrade replaces it.
    pub fn edge_pids(&self) -> Vec<nix::unistd::Pid> {
        self.processes_of("__edge")
    }

    /// Processes whose argv is `paasd MODE STATE_DIR` for this daemon's state dir.
    fn processes_of(&self, mode: &str) -> Vec<nix::unistd::Pid> {
        let Ok(owner) = std::fs::canonicalize(self.state_dir()) else {
            return Vec::new();
        };
        let want = [mode.as_bytes(), owner.as_os_str().as_encoded_bytes()];
        std::fs::read_dir("/proc")
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
            .filter(|pid| {
                std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| {
                    c.split(|b| *b == 0)
                        .skip(1)
                        .take(2)
                        .eq(want.iter().copied())
                })
            })
            .map(nix::unistd::Pid::from_raw)
            .collect()
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn client(&self) -> Client {
        Client::new(self.socket())
    }

    /// Starts `paas run --json` in the background and returns it with the container's
    /// address, read from the live `started` event. The reader must be kept: `paas run` is
    /// attached, and a client that stops reading takes its container down.
    pub fn run_with_ip(&self, app: &str, argv: &[&str]) -> Attached {
        use std::io::BufRead;
        let mut args = vec!["--json", "run", app, "--"];
        args.extend_from_slice(argv);
        let mut child = self.spawn_paas(&args);
        let stdout = child.child.stdout.take().expect("stdout");
        let mut first = String::new();
        let mut reader = std::io::BufReader::new(stdout);
        reader.read_line(&mut first).expect("started event");
        let ev: serde_json::Value = serde_json::from_str(&first).expect("json event");
        assert_eq!(ev["type"], "started", "{first}");
        let ip = ev["ip"].as_str().expect("ip").to_string();
        (child, ip, reader)
    }

    /// `POST /apps/{app}/deploy` with `tarball` as the body, straight to the API (hostile
    /// archives the CLI would never make). Returns the status and either the NDJSON events
    /// (200) or the error body.
    pub fn deploy_raw(&self, app: &str, tarball: Vec<u8>) -> (u16, Vec<serde_json::Value>) {
        use http_body_util::BodyExt;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async {
            let resp = self
                .client()
                .send(
                    paas_api::Method::POST,
                    &format!("/api/v1/apps/{app}/deploy"),
                    Some(bytes::Bytes::from(tarball)),
                    "application/gzip",
                )
                .await
                .expect("deploy request");
            let status = resp.status().as_u16();
            let body = resp
                .into_body()
                .collect()
                .await
                .expect("deploy body")
                .to_bytes();
            let values = body
                .split(|b| *b == b'\n')
                .filter(|l| !l.is_empty())
                .map(|l| serde_json::from_slice(l).expect("JSON line"))
                .collect();
            (status, values)
        })
    }

    /// The real `paas` CLI aimed at this daemon, not yet run.
    pub fn paas_command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(bin("paas"));
        c.arg("--socket").arg(self.socket()).args(args);
        c
    }

    /// Runs the real `paas` CLI against this daemon.
    pub fn paas(&self, args: &[&str]) -> Run {
        Run::of(&mut self.paas_command(args))
    }

    /// `paas deploy APP --source DIR`, which must succeed; its stdout and stderr together.
    pub fn deploy_dir(&self, app: &str, dir: &Path) -> String {
        let r = self.paas(&["deploy", app, "--source", &dir.display().to_string()]);
        assert!(
            r.status.success(),
            "deploy failed: {r:#?}\nlog:\n{}",
            self.log_text()
        );
        format!("{}{}", r.stdout, r.stderr)
    }

    /// The host uid the app runs as (`paas info APP --json`).
    pub fn uid(&self, app: &str) -> u32 {
        let info = self.paas(&["--json", "info", app]).json();
        info["uid"]
            .as_u64()
            .and_then(|u| u32::try_from(u).ok())
            .unwrap_or_else(|| panic!("no uid in {info}"))
    }

    /// The instances `paas ps APP --json` lists.
    pub fn ps(&self, app: &str) -> Vec<serde_json::Value> {
        self.paas(&["--json", "ps", app]).json()["instances"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// Starts the CLI in the background (stdout and stderr captured) for tests that act
    /// while it runs.
    pub fn spawn_paas(&self, args: &[&str]) -> Background {
        let cmdline = format!("paas {}", args.join(" "));
        let child = self
            .paas_command(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn paas");
        Background { child, cmdline }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            // Gracefully first, apps included: paasd removes its cgroup parent on the way out.
            let pid = nix::unistd::Pid::from_raw(c.id() as i32);
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT);
            let end = Instant::now() + Duration::from_secs(10);
            while Instant::now() < end && matches!(c.try_wait(), Ok(None)) {
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
        // Containers outlive a killed daemon by design; a failed test must not leave them.
        for pid in self.all_helpers().into_iter().chain(self.edge_pids()) {
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
        }
        self.remove_cgroups();
        self.remove_network();
        self.unmount_all();
        if std::thread::panicking() {
            eprintln!("--- paasd log ---\n{}", self.log_text());
        }
    }
}

impl Held {
    /// `cmd` started the way systemd starts a socket-activated service: the sockets as fds
    /// 3, 4 and 5, `LISTEN_FDS=3` and `LISTEN_PID` its own pid (set by a shell that then
    /// execs paasd, keeping the pid).
    fn wrap(&self, cmd: Command) -> Command {
        use command_fds::{CommandFdExt, FdMapping};
        let mut w = Command::new("/bin/sh");
        w.arg("-c")
            .arg("LISTEN_PID=$$ LISTEN_FDS=3 exec \"$0\" \"$@\"")
            .arg(cmd.get_program())
            .args(cmd.get_args());
        for (k, v) in cmd.get_envs() {
            if let Some(v) = v {
                w.env(k, v);
            }
        }
        let fd =
            |f: std::os::fd::BorrowedFd<'_>| f.try_clone_to_owned().expect("dup a held socket");
        use std::os::fd::AsFd;
        w.fd_mappings(vec![
            FdMapping {
                parent_fd: fd(self.api.as_fd()),
                child_fd: 3,
            },
            FdMapping {
                parent_fd: fd(self.http.as_fd()),
                child_fd: 4,
            },
            FdMapping {
                parent_fd: fd(self.https.as_fd()),
                child_fd: 5,
            },
        ])
        .expect("map the held sockets");
        w
    }
}

/// A listening TCP socket on a free loopback port with a deep backlog (std's is 128).
fn deep_listener() -> std::net::TcpListener {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a router port");
    // listen(2) again only changes the backlog.
    nix::sys::socket::listen(&l, nix::sys::socket::Backlog::new(4096).expect("backlog"))
        .expect("listen");
    l
}

/// The outcome of a CLI run, with helpers that print everything on failure.
#[derive(Debug)]
pub struct Run {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
    pub cmdline: String,
}

impl Run {
    pub fn of(cmd: &mut Command) -> Run {
        let cmdline = format!("{cmd:?}");
        let Output {
            status,
            stdout,
            stderr,
        } = cmd.stdin(Stdio::null()).output().expect("spawn paas");
        Run {
            status,
            stdout: String::from_utf8_lossy(&stdout).into_owned(),
            stderr: String::from_utf8_lossy(&stderr).into_owned(),
            cmdline,
        }
    }

    pub fn code(&self) -> i32 {
        self.status.code().unwrap_or(-1)
    }

    /// Asserts exit 0 and returns stdout.
    pub fn ok(&self) -> &str {
        assert!(self.status.success(), "expected success: {self:#?}");
        &self.stdout
    }

    /// Asserts the exit code and that stderr mentions `needle`.
    pub fn fails(&self, code: i32, needle: &str) -> &Self {
        assert_eq!(self.code(), code, "wrong exit code: {self:#?}");
        assert!(
            self.stderr.contains(needle),
            "stderr lacks {needle:?}: {self:#?}"
        );
        self
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(self.ok())
            .unwrap_or_else(|e| panic!("stdout not JSON ({e}): {self:#?}"))
    }
}

/// A CLI run in the background; killed on drop if still running.
pub struct Background {
    pub child: Child,
    cmdline: String,
}

impl Background {
    pub fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Waits for the end and collects what it printed.
    pub fn finish(mut self) -> Run {
        let child = std::mem::replace(
            &mut self.child,
            Command::new("true").spawn().expect("placeholder process"),
        );
        let out = child.wait_with_output().expect("wait for paas");
        let _ = self.child.wait();
        Run {
            status: out.status,
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            cmdline: self.cmdline.clone(),
        }
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Every row of every table, in a stable order: equal snapshots mean nothing changed on disk.
pub fn db_snapshot(db: &Path) -> String {
    let conn =
        rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .expect("open db read-only");
    let mut tables: Vec<String> = conn
        .prepare("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
        .expect("tables")
        .query_map([], |r| r.get(0))
        .expect("query")
        .collect::<Result<_, _>>()
        .expect("rows");
    tables.sort();
    let mut out = String::new();
    for t in tables {
        let mut stmt = conn
            .prepare(&format!("SELECT * FROM \"{t}\" ORDER BY rowid"))
            .or_else(|_| conn.prepare(&format!("SELECT * FROM \"{t}\" ORDER BY 1")))
            .expect("select");
        let n = stmt.column_count();
        let rows = stmt
            .query_map([], |r| {
                (0..n)
                    .map(|i| {
                        r.get::<_, rusqlite::types::Value>(i)
                            .map(|v| format!("{v:?}"))
                    })
                    .collect::<Result<Vec<_>, _>>()
            })
            .expect("rows");
        out.push_str(&format!("== {t}\n"));
        for row in rows {
            out.push_str(&row.expect("row").join(" | "));
            out.push('\n');
        }
    }
    out
}

/// A `paas run` in the background, the container's address, and its output reader.
pub type Attached = (
    Background,
    String,
    std::io::BufReader<std::process::ChildStdout>,
);

/// `GET /` over plain HTTP/1.0; None when nothing answers.
pub fn http_get(addr: &str) -> Option<String> {
    use std::io::{Read, Write};
    let mut s =
        std::net::TcpStream::connect_timeout(&addr.parse().ok()?, Duration::from_secs(1)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    s.write_all(b"GET / HTTP/1.0\r\nHost: x\r\n\r\n").ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    Some(out)
}

impl Daemon {
    /// The router's address (paasd listens on a free loopback port in tests).
    pub fn router(&self) -> std::net::SocketAddr {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(a) = self
                .api_health()
                .and_then(|v| v.get("router").and_then(|r| r.as_str()).map(str::to_string))
                .and_then(|a| a.parse().ok())
            {
                return a;
            }
            assert!(Instant::now() < deadline, "paasd reports no router address");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Where the router serves HTTPS.
    pub fn router_tls(&self) -> std::net::SocketAddr {
        self.api_health()
            .and_then(|v| {
                v.get("router_tls")
                    .and_then(|r| r.as_str())
                    .map(str::to_string)
            })
            .and_then(|a| a.parse().ok())
            .expect("paasd reports no HTTPS address")
    }

    /// `GET /api/v1/health` over the socket.
    pub fn api_health(&self) -> Option<serde_json::Value> {
        use std::io::{Read, Write};
        let mut s = std::os::unix::net::UnixStream::connect(self.socket()).ok()?;
        s.write_all(b"GET /api/v1/health HTTP/1.0\r\n\r\n").ok()?;
        let mut out = String::new();
        s.read_to_string(&mut out).ok()?;
        serde_json::from_str(out.split_once("\r\n\r\n")?.1).ok()
    }

    /// `GET path` through the router with `Host: host`: (status, headers, body).
    pub fn http(&self, host: &str, path: &str) -> (u16, String, String) {
        self.http_request("GET", host, path, "")
    }

    /// `method path` with `body` through the router with `Host: host`: (status, headers,
    /// body).
    pub fn http_request(
        &self,
        method: &str,
        host: &str,
        path: &str,
        body: &str,
    ) -> (u16, String, String) {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(self.router()).expect("connect to the router");
        s.set_read_timeout(Some(Duration::from_secs(30)))
            .expect("timeout");
        write!(
            s,
            "{method} {path} HTTP/1.1\r\nHost: {host}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
        .expect("send");
        let mut out = Vec::new();
        s.read_to_end(&mut out).expect("read the answer");
        let text = String::from_utf8_lossy(&out).into_owned();
        let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
        let body = if head
            .to_ascii_lowercase()
            .contains("transfer-encoding: chunked")
        {
            dechunk(body)
        } else {
            body.to_string()
        };
        let status = head
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        (status, head.to_string(), body)
    }
}

/// A copy of `examples/node-hello` whose answer names its version (`GREETING`, default
/// `version`) and the instance (`DYNO`), to tell releases and instances apart.
pub fn node_app(version: &str) -> tempfile::TempDir {
    let dir = tempfile::Builder::new()
        .prefix("paas-app-")
        .tempdir()
        .expect("temp dir");
    let src = repo_root().join("examples/node-hello");
    for f in ["package.json", "package-lock.json", "server.js"] {
        std::fs::copy(src.join(f), dir.path().join(f)).expect("copy the example");
    }
    let server = std::fs::read_to_string(dir.path().join("server.js")).expect("read");
    let server = server
        .replace(
            "const VERSION = 'v1';",
            &format!("const VERSION = process.env.GREETING || '{version}';"),
        )
        .replace(
            "body = `Hello from ${NAME} ${VERSION} (up ${ms(Date.now() - started)})\\n`;",
            "body = `Hello from ${NAME} ${VERSION} on ${process.env.DYNO}\\n`;",
        );
    assert!(
        server.contains("process.env.DYNO"),
        "server.js changed; update node_app()"
    );
    std::fs::write(dir.path().join("server.js"), server).expect("write");
    dir
}

/// The payload of a chunked body.
fn dechunk(mut rest: &str) -> String {
    let mut out = String::new();
    while let Some((size, after)) = rest.split_once("\r\n") {
        let n = usize::from_str_radix(size.split(';').next().unwrap_or("").trim(), 16).unwrap_or(0);
        if n == 0 || after.len() < n {
            break;
        }
        out.push_str(&after[..n]);
        rest = after[n..].trim_start_matches("\r\n");
    }
    out
}
