//! Containers, made directly on the kernel: namespaces, overlay rootfs, pivot_root, privilege
//! drop, seccomp (cgroups and networking join here). The only crate with `unsafe` (every other
//! crate has `#![forbid(unsafe_code)]`). Owns the cleanup of what a crashed paasd left (its
//! helpers, found by the state dir in their argv, and its cgroups); a container start writes
//! nothing on the state disk. Must not know about apps or releases: callers hand it argv, env
//! and a name.

pub mod cgroups;
pub mod container;
pub mod fdpass;
pub mod heap;
pub mod helper;
pub mod init;
pub mod listen_fds;
pub mod net;
pub mod proto;
mod rootfs;
mod security;
pub mod stack;
pub mod timing;

use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

pub use container::{Container, Hello};
pub use proto::{FromHelper, NetMode, Stream};

#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("{}: {source}", .path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("starting the container helper: {0}")]
    Helper(std::io::Error),
    #[error("encoding the container spec: {0}")]
    Encode(serde_json::Error),
    /// The container could not be set up; `error` is meant for the user (e.g. "exec x: not found").
    #[error("{stage}: {error}")]
    Setup { stage: String, error: String },
    #[error("container helper protocol: {0}")]
    Protocol(String),
    #[error(transparent)]
    Cgroup(#[from] cgroups::CgroupError),
    #[error(transparent)]
    Net(#[from] net::NetError),
}

/// The unprivileged identity a container's processes run as (`app` in its generated
/// /etc/passwd). Each app has its own (paasd hands them out), so apps share no per-user
/// kernel limits and cannot signal or trace each other.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct User {
    pub uid: u32,
    pub gid: u32,
}

/// How an instance reaches the network.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Networking {
    /// The host's namespace (builds fetch dependencies).
    Host,
    /// Its own namespace with loopback only.
    Loopback,
    /// Its own namespace, `eth0` on the bridge with this address (allocated by the caller).
    Bridge(std::net::Ipv4Addr),
}

/// What to run; the runtime adds the rootfs, identity and isolation.
#[derive(Debug, Clone)]
pub struct RunSpec {
    /// From [`Runtime::new_id`]; also the hostname and the cgroup name.
    pub id: String,
    pub argv: Vec<String>,
    pub env: Vec<(String, String)>,
    pub net: Networking,
    pub limits: cgroups::Limits,
    /// A name from [`Runtime::stacks`].
    pub stack: String,
    /// Read-only layers above the stack, topmost first (a release's slug: a tree with `app/`).
    pub layers: Vec<PathBuf>,
    /// Host dirs mounted inside after the stack's own binds (a build's /app, /cache, /env).
    pub binds: Vec<proto::Bind>,
    /// Who the processes run as; never root.
    pub user: User,
    /// Set for a container that outlives paasd (an app instance): the next paasd gets it back
    /// from [`Runtime::recover`] with this tag. `None`: it dies with paasd (builds, one-offs).
    pub attach: Option<String>,
}

/// How paasd leaves its containers when it stops.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shutdown {
    /// Everything stops and every cgroup goes (`systemctl stop`, uninstall).
    StopAll,
    /// Containers started with [`RunSpec::attach`] keep running for the next paasd (a
    /// restart or an upgrade); everything else stops.
    Detach,
}

/// A container an earlier paasd started, attached again by [`Runtime::recover`].
pub struct Adopted {
    pub instance: Instance,
    /// [`RunSpec::attach`] as given.
    pub tag: String,
    /// Output lines its monitor dropped while no paasd listened.
    pub dropped: u64,
    /// False when its command ended meanwhile: the next event is its `Exited`.
    pub running: bool,
}

/// Helpers whose containers outlive paasd, by helper pid: their cgroup names.
type Attached = Arc<std::sync::Mutex<std::collections::HashMap<u32, String>>>;

pub struct Runtime {
    /// The state dir, canonical: the helpers of this paasd carry it in their argv.
    owner: PathBuf,
    /// Where every container mounts its writable layer, each in its own mount namespace (so
    /// one empty dir serves them all, and a start makes nothing on the state disk).
    disk: PathBuf,
    /// Stacks by name; imported stacks are added while paasd runs.
    stacks: std::sync::RwLock<std::collections::BTreeMap<String, Arc<stack::Stack>>>,
    cgroups: cgroups::Cgroups,
    network: net::Network,
    seq: AtomicU64,
    spare: container::Spare,
    /// Where monitors of containers that outlive paasd listen (root's alone).
    monitors: PathBuf,
    attached: Attached,
}

/// A started container plus the cgroup it owns; [`Instance::finish`] reaps the one and
/// removes the other.
pub struct Instance {
    pub id: String,
    pub container: Container,
    cgroup: Option<cgroups::Cgroup>,
    /// Set when it outlives paasd: where it is registered until it ends.
    attached: Option<Attached>,
}

impl Runtime {
    /// Prepares the host stack, finds the cgroup layout, and removes what a previous paasd
    /// left behind. `cgroup_parent` is the cgroup subtree this paasd owns.
    /// `rootfs_stacks` names extra stacks by their root directory; `host` always exists.
    pub fn new(
        state_dir: &Path,
        cgroup_parent: &str,
        network: net::Network,
        rootfs_stacks: &std::collections::BTreeMap<String, PathBuf>,
    ) -> Result<Runtime, RuntimeError> {
        let disk = state_dir.join("disk");
        std::fs::create_dir_all(&disk).map_err(|source| RuntimeError::Io {
            path: disk.clone(),
            source,
        })?;
        let owner = std::fs::canonicalize(state_dir).map_err(|source| RuntimeError::Io {
            path: state_dir.to_path_buf(),
            source,
        })?;
        let monitors = state_dir.join("monitors");
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&monitors)
            .and_then(|()| {
                std::fs::set_permissions(&monitors, std::fs::Permissions::from_mode(0o700))
            })
            .map_err(|source| RuntimeError::Io {
                path: monitors.clone(),
                source,
            })?;
        let rt = Runtime {
            spare: container::Spare::new(owner.clone()),
            cgroups: cgroups::Cgroups::detect(cgroup_parent)?,
            owner,
            disk,
            stacks: {
                let mut m = std::collections::BTreeMap::new();
                m.insert(
                    "host".to_string(),
                    Arc::new(stack::Stack::Host(stack::HostStack::prepare(state_dir)?)),
                );
                for (name, root) in rootfs_stacks {
                    m.insert(
                        name.clone(),
                        Arc::new(stack::Stack::Rootfs(stack::RootfsStack::open(root)?)),
                    );
                }
                std::sync::RwLock::new(m)
            },
            network,
            seq: AtomicU64::new(0),
            monitors,
            attached: Arc::default(),
        };
        reap_legacy_helpers(state_dir);
        Ok(rt)
    }

    /// At start, once: attaches to every container an earlier paasd on this state dir left
    /// running for it (a monitor answering on its attach socket, whose peer is a helper of
    /// this state dir and whose container is in the cgroup it names), and removes everything
    /// else it left: other helpers (builds, one-offs, spares: their containers die with them),
    /// their cgroups, stale sockets. The caller keeps or finishes what it gets.
    pub async fn recover(&self) -> Vec<Adopted> {
        let mut adopted = Vec::new();
        let entries: Vec<PathBuf> = std::fs::read_dir(&self.monitors)
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path())
            .collect();
        for path in entries {
            match self.adopt(&path).await {
                Ok(a) => adopted.push(a),
                Err(e) => {
                    tracing::info!(socket = %path.display(), error = %e, "not adopting a leftover monitor");
                    let _ = std::fs::remove_file(&path);
                }
            }
        }
        let keep: std::collections::HashMap<u32, String> = adopted
            .iter()
            .map(|a| (a.instance.container.helper_pid, a.instance.id.clone()))
            .collect();
        self.reap_except(&keep);
        adopted
    }

    async fn adopt(&self, path: &Path) -> Result<Adopted, RuntimeError> {
        let io = |source| RuntimeError::Io {
            path: path.to_path_buf(),
            source,
        };
        let stream = std::os::unix::net::UnixStream::connect(path).map_err(io)?;
        let cred =
            nix::sys::socket::getsockopt(&stream, nix::sys::socket::sockopt::PeerCredentials)
                .map_err(|e| io(e.into()))?;
        let helper_pid = u32::try_from(cred.pid()).unwrap_or(0);
        if cred.uid() != 0 || !is_helper(cred.pid(), Some(&self.owner)) {
            return Err(RuntimeError::Protocol(format!(
                "the peer (pid {}, uid {}) is not a helper of this state dir",
                cred.pid(),
                cred.uid()
            )));
        }
        stream.set_nonblocking(true).map_err(io)?;
        let stream = tokio::net::UnixStream::from_std(stream).map_err(io)?;
        let (container, hello) = Container::adopt(stream, helper_pid).await?;
        let cgroup = self.cgroups.open(&hello.id);
        if hello.running && !in_cgroup(container.pid, &hello.id) {
            let pid = container.pid;
            container.finish(true).await;
            return Err(RuntimeError::Protocol(format!(
                "pid {pid} is not in cgroup {}",
                hello.id
            )));
        }
        self.attached
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(helper_pid, hello.id.clone());
        tracing::info!(id = %hello.id, pid = container.pid, helper_pid, running = hello.running, "adopted a container");
        Ok(Adopted {
            instance: Instance {
                id: hello.id,
                container,
                cgroup,
                attached: Some(Arc::clone(&self.attached)),
            },
            tag: hello.tag,
            dropped: hello.dropped,
            running: hello.running,
        })
    }

    /// Kills every helper of this state dir but `keep`'s (their containers die with them:
    /// the container's parent-death signal is SIGKILL) and removes every cgroup but theirs.
    fn reap_except(&self, keep: &std::collections::HashMap<u32, String>) {
        let kept = |pid: i32| keep.contains_key(&u32::try_from(pid).unwrap_or(0));
        for pid in helpers_of(&self.owner) {
            // A container's init is a fork of its helper (same argv): it goes with its monitor.
            if kept(pid) || parent_of(pid).is_some_and(kept) {
                continue;
            }
            tracing::info!(pid, "killing leftover container helper");
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        for name in self.cgroups.list().unwrap_or_default() {
            if keep.values().any(|id| *id == name) {
                continue;
            }
            if let Some(cg) = self.cgroups.open(&name) {
                tracing::info!(cgroup = %name, "removing leftover cgroup");
                if let Err(e) = cg.destroy() {
                    tracing::warn!(cgroup = %name, error = %e, "could not remove leftover cgroup");
                }
            }
        }
    }

    /// "v1" or "v2": which cgroup backend this host got.
    pub fn cgroup_kind(&self) -> &'static str {
        self.cgroups.kind()
    }

    /// Whether a helper process is kept started ahead of the next container (on by default;
    /// see [`container::Spare`]). Benchmarks compare both.
    pub fn set_spare_helper(&self, on: bool) {
        self.spare.set_enabled(on);
    }

    /// Called when paasd stops: the spare helper goes, and containers still running (a `paas
    /// run` whose client is still attached, a build) are killed and their cgroups removed.
    /// With [`Shutdown::StopAll`] that is every container, then our cgroup parent; with
    /// [`Shutdown::Detach`] the attachable ones the caller detached stay.
    pub fn shutdown(&self, mode: Shutdown) {
        self.spare.clear();
        let keep = match mode {
            Shutdown::StopAll => Default::default(),
            Shutdown::Detach => self
                .attached
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone(),
        };
        self.reap_except(&keep);
        if mode == Shutdown::StopAll {
            if let Err(e) = self.cgroups.remove_parent() {
                tracing::warn!(error = %e, "could not remove the cgroup parent");
            }
        }
    }

    /// Names of the stacks containers can run on.
    pub fn stacks(&self) -> Vec<String> {
        self.stacks
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .keys()
            .cloned()
            .collect()
    }

    /// Adds a root filesystem directory as stack `name` (an imported tarball). Checks that it
    /// looks like a root filesystem; an existing name is never replaced.
    pub fn add_stack(&self, name: &str, root: &Path) -> Result<(), RuntimeError> {
        let stack = Arc::new(stack::Stack::Rootfs(stack::RootfsStack::open(root)?));
        let mut stacks = self.stacks.write().unwrap_or_else(|p| p.into_inner());
        if stacks.contains_key(name) {
            return Err(RuntimeError::Setup {
                stage: "stack".into(),
                error: format!("stack '{name}' already exists"),
            });
        }
        stacks.insert(name.to_string(), stack);
        Ok(())
    }

    /// The instance network (its subnet is where callers allocate addresses).
    pub fn network(&self) -> &net::Network {
        &self.network
    }

    /// A fresh instance id: `<prefix>-<paasd pid>-<n>`, unique across paasd restarts.
    pub fn new_id(&self, prefix: &str) -> String {
        let n = self.seq.fetch_add(1, Ordering::Relaxed);
        format!("{prefix}-{}-{n}", std::process::id())
    }

    pub async fn run(&self, spec: RunSpec) -> Result<Instance, RuntimeError> {
        timing::mark("run");
        let n = self.seq.fetch_add(1, Ordering::Relaxed);
        // 15 bytes at most: "vp" + pid + sequence, in hex.
        let host_if = format!("vp{:x}x{n:x}", std::process::id() & 0xffff);
        let id = spec.id;
        let stack = self
            .stacks
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&spec.stack)
            .cloned()
            .ok_or_else(|| RuntimeError::Setup {
                stage: "stack".into(),
                error: format!("unknown stack '{}'", spec.stack),
            })?;
        // The spare helper, or a new one that execs and loads while the instance is prepared.
        let helper = self.spare.take()?;
        // Removes the cgroup once made on every early return, and if this future is dropped
        // halfway.
        let mut scratch = Scratch { cgroup: None };
        let procs = self.cgroups.self_join_files(&id)?;
        let hostname: String = id.chars().take(63).collect();
        let full = proto::Spec {
            hostname: hostname.clone(),
            argv: spec.argv,
            env: spec.env,
            cwd: "/app".into(),
            uid: spec.user.uid,
            gid: spec.user.gid,
            rootfs: proto::Rootfs {
                // The instance's own files (`base`) over the slug over the stack.
                lower: spec
                    .layers
                    .iter()
                    .cloned()
                    .chain([stack.lower().to_path_buf()])
                    .collect(),
                disk: proto::Disk {
                    mount: self.disk.clone(),
                    size_bytes: spec.limits.disk_bytes,
                },
                base: proto::Base {
                    app_uid: spec.user.uid,
                    app_gid: spec.user.gid,
                    etc: etc_files(&hostname, spec.user),
                },
                binds: stack.binds().iter().chain(&spec.binds).cloned().collect(),
            },
            cgroup_procs: procs,
            net: match spec.net {
                Networking::Host => NetMode::Host,
                Networking::Loopback => NetMode::Private,
                // The helper makes the veth pair and configures eth0 itself.
                Networking::Bridge(ip) => NetMode::Veth(self.network.veth(ip, &host_if)?),
            },
            attach: spec.attach.map(|tag| proto::Attach {
                // Short: a socket path has at most 107 bytes.
                socket: self
                    .monitors
                    .join(format!("{:x}-{n:x}", std::process::id())),
                id: id.clone(),
                tag,
            }),
        };
        let attachable = full.attach.is_some();
        // The helper goes on at once with its spec, so the cgroup comes first: about 0.15
        // ms, against a round trip to the helper and back (create, then start) of 0.3 ms.
        scratch.cgroup = Some(self.cgroups.create(&id, &spec.limits)?);
        timing::mark("cgroup made");
        let mut container = Container::create(helper, &full).await?;
        container.start().await?;
        timing::mark("started");
        self.spare.refill();
        let cgroup = scratch.keep();
        let attached = attachable.then(|| {
            self.attached
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(container.helper_pid, id.clone());
            Arc::clone(&self.attached)
        });
        Ok(Instance {
            id,
            container,
            cgroup,
            attached,
        })
    }
}

/// The cgroup of a container being set up, removed on drop unless kept.
struct Scratch {
    cgroup: Option<cgroups::Cgroup>,
}

impl Scratch {
    fn keep(mut self) -> Option<cgroups::Cgroup> {
        self.cgroup.take()
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if let Some(cg) = self.cgroup.take() {
            if let Err(e) = cg.destroy() {
                tracing::warn!(error = %e, "could not remove the cgroup of a failed start");
            }
        }
    }
}

impl Instance {
    /// True when the kernel's OOM killer killed a process of this container.
    pub fn oom_killed(&self) -> bool {
        self.cgroup
            .as_ref()
            .and_then(|c| c.oom_killed().ok())
            .unwrap_or(false)
    }

    /// Bytes used and the size of the writable layer, as the container's root reports them
    /// (overlayfs answers statfs with its upper filesystem: the instance's tmpfs).
    pub fn disk_usage(&self) -> Option<(u64, u64)> {
        let st = nix::sys::statvfs::statvfs(format!("/proc/{}/root/", self.container.pid).as_str())
            .ok()?;
        let frag = st.fragment_size();
        let size = st.blocks() * frag;
        Some((size.saturating_sub(st.blocks_free() * frag), size))
    }

    /// Forks the container's pids limit has refused so far (see
    /// [`cgroups::Cgroup::fork_failures`]); `None` when the counter cannot be read.
    pub fn fork_failures(&self) -> Option<u64> {
        self.cgroup.as_ref().and_then(|c| c.fork_failures().ok())
    }

    pub fn stats(&self) -> Option<cgroups::Stats> {
        self.cgroup.as_ref().and_then(|c| c.stats().ok())
    }

    /// Lets the container run on without paasd (see [`Shutdown::Detach`]); its cgroup stays.
    pub fn detach(self) {
        self.container.detach();
    }

    /// Reaps the helper, kills what is left in the cgroup and removes it.
    /// The container's mounts lived only in its own mount namespace and went with it.
    pub async fn finish(mut self, kill: bool) {
        let helper_pid = self.container.helper_pid;
        self.container.finish(kill).await;
        if let Some(a) = self.attached.take() {
            a.lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&helper_pid);
        }
        timing::mark("helper reaped");
        let cgroup = self.cgroup.take();
        let _ = tokio::task::spawn_blocking(move || {
            if let Some(cg) = cgroup {
                let name = cg.name().to_string();
                if let Err(e) = cg.destroy() {
                    tracing::warn!(cgroup = %name, error = %e, "could not remove container cgroup");
                }
            }
            timing::mark("cgroup removed");
        })
        .await;
    }
}

/// Kills the helpers recorded the way paasd did before 2026-12-06 (STATE/instances/ID/
/// helper.pid), and removes those dirs.
fn reap_legacy_helpers(state_dir: &Path) {
    let legacy = state_dir.join("instances");
    for e in std::fs::read_dir(&legacy).into_iter().flatten().flatten() {
        if let Some(pid) = std::fs::read_to_string(e.path().join("helper.pid"))
            .ok()
            .and_then(|s| s.trim().parse::<i32>().ok())
        {
            if is_helper(pid, None) {
                tracing::info!(pid, "killing leftover container helper");
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
        }
    }
    if let Err(e) = std::fs::remove_dir_all(&legacy) {
        if e.kind() != std::io::ErrorKind::NotFound {
            tracing::warn!(dir = %legacy.display(), error = %e, "could not remove old instance dirs");
        }
    }
}

/// The helpers whose argv names `owner` (paasd re-executes itself as
/// `paasd __runtime-helper OWNER`).
fn helpers_of(owner: &Path) -> Vec<i32> {
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| *pid != std::process::id() as i32 && is_helper(*pid, Some(owner)))
        .collect()
}

/// True if `pid` runs a helper (of `owner`, if given): guards against a recycled pid.
fn is_helper(pid: i32, owner: Option<&Path>) -> bool {
    let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
        return false;
    };
    let mut args = cmdline.split(|b| *b == 0).skip(1);
    args.next() == Some(helper::HELPER_ARG.as_bytes())
        && owner.is_none_or(|o| args.next() == Some(o.as_os_str().as_encoded_bytes()))
}

/// The parent pid of `pid`, from /proc.
fn parent_of(pid: i32) -> Option<i32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces and parentheses: fields start after the last ')'.
    stat.rsplit_once(')')?
        .1
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// True if `pid` is in the cgroup named `id` (its last path component, in any hierarchy).
fn in_cgroup(pid: i32, id: &str) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/cgroup")).is_ok_and(|s| {
        s.lines()
            .any(|l| l.rsplit('/').next().is_some_and(|last| last == id))
    })
}

/// The /etc files every container gets, by name under /etc.
fn etc_files(hostname: &str, user: User) -> Vec<(String, String)> {
    let User { uid, gid } = user;
    [
        ("hostname", format!("{hostname}\n")),
        (
            "hosts",
            format!("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost\n127.0.1.1\t{hostname}\n"),
        ),
        ("resolv.conf", resolv_conf()),
        (
            "passwd",
            format!(
                "root:x:0:0:root:/root:/bin/sh\napp:x:{uid}:{gid}:app:/app:/bin/bash\n\
                 nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n"
            ),
        ),
        (
            "group",
            format!("root:x:0:\napp:x:{gid}:\nnogroup:x:65534:\n"),
        ),
    ]
    .into_iter()
    .map(|(name, contents)| (name.to_string(), contents))
    .collect()
}

/// The host's resolver config as a container can use it: a loopback nameserver (systemd-
/// resolved's 127.0.0.53, a local dnsmasq) is unreachable from the container's namespace,
/// so the upstream list systemd-resolved keeps is used instead when there is one.
fn resolv_conf() -> String {
    let host = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
    if !nameservers_are_loopback(&host) {
        return host;
    }
    match std::fs::read_to_string("/run/systemd/resolve/resolv.conf") {
        Ok(upstream) if !upstream.trim().is_empty() && !nameservers_are_loopback(&upstream) => {
            upstream
        }
        _ => {
            tracing::warn!("the host resolves names on loopback only; containers get no DNS");
            host
        }
    }
}

/// The IPv4 resolvers containers are told to use: the network policy lets instances query
/// them on port 53 even when one is an address of the host itself.
pub fn container_nameservers() -> Vec<std::net::Ipv4Addr> {
    nameservers(&resolv_conf())
        .filter_map(|s| s.parse().ok())
        .collect()
}

fn nameservers(conf: &str) -> impl Iterator<Item = &str> {
    conf.lines()
        .filter_map(|l| l.trim().strip_prefix("nameserver"))
        .map(str::trim)
}

fn nameservers_are_loopback(conf: &str) -> bool {
    let servers: Vec<&str> = nameservers(conf).collect();
    !servers.is_empty() && servers.iter().all(|s| s.starts_with("127.") || *s == "::1")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_resolvers_are_detected() {
        assert!(nameservers_are_loopback(
            "nameserver 127.0.0.53\noptions edns0\n"
        ));
        assert!(nameservers_are_loopback("nameserver ::1\n"));
        assert!(!nameservers_are_loopback(
            "nameserver 10.0.0.2\nnameserver 127.0.0.1\n"
        ));
        assert!(!nameservers_are_loopback("# empty\n"));
    }
}
