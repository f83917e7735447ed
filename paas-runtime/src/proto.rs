//! The typed protocol between paasd and its container helper: the [`Spec`] paasd sends (one
//! JSON line), the [`FromHelper`] events the helper answers with and the [`ToHelper`] commands
//! paasd may send later, all as JSON lines over the socketpair that is the helper's stdin.
//! Pure data: no I/O here.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

pub use super::net::Veth;

/// Everything the helper needs to build and start one container.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Spec {
    pub hostname: String,
    /// `argv[0]` is looked up on the spec's `PATH` inside the container when it has no `/`.
    pub argv: Vec<String>,
    pub env: Vec<(String, String)>,
    pub cwd: String,
    pub uid: u32,
    pub gid: u32,
    pub rootfs: Rootfs,
    /// Files the container's first process writes `0` into, joining its cgroup before it runs
    /// (see `Cgroup::self_join_files`); they exist once the container may start.
    pub cgroup_procs: Vec<PathBuf>,
    pub net: NetMode,
    /// When true the container waits for [`ToHelper::Start`] before it joins its cgroup and
    /// builds its root filesystem (paasd makes both ready meanwhile); otherwise it goes on at
    /// once, and both must be ready before the spec is sent.
    pub wait_for_start: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Rootfs {
    /// Overlay lower layers, topmost first (e.g. slug, then the stack).
    pub lower: Vec<PathBuf>,
    /// The container's writable layer: the overlay's upper and work dirs and /tmp live on a
    /// tmpfs mounted here inside the container's mount namespace.
    pub disk: Disk,
    /// Where the merged tree is mounted before `pivot_root`.
    pub target: PathBuf,
    /// Host paths made visible inside (the `host` stack's /usr, certificates, a build's
    /// source and cache dirs...), in mount order.
    pub binds: Vec<Bind>,
}

/// Where every write of a container goes. A tmpfs: its pages are charged to the memory
/// cgroup of whoever writes them (the container), its size caps the writes (ENOSPC beyond),
/// and it goes with the mount namespace, so nothing a container writes reaches the host's
/// disk and nothing outlives it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Disk {
    pub mount: PathBuf,
    /// `None`: the kernel's default (half the host's memory; the memory limit still holds).
    pub size_bytes: Option<u64>,
}

impl Disk {
    pub fn upper(&self) -> PathBuf {
        self.mount.join("upper")
    }
    pub fn work(&self) -> PathBuf {
        self.mount.join("work")
    }
    pub fn tmp(&self) -> PathBuf {
        self.mount.join("tmp")
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Bind {
    pub source: PathBuf,
    /// Absolute path inside the container.
    pub dest: String,
    /// Read-only unless set (builds write their source dir and cache).
    #[serde(default)]
    pub writable: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum NetMode {
    /// The host's network namespace (builds, which fetch dependencies).
    Host,
    /// A new network namespace with only `lo`, which the helper brings up.
    Private,
    /// A new network namespace connected to the bridge: the helper makes the veth pair (from
    /// the host's namespace, while the container builds its rootfs) and brings up `lo`, and
    /// `eth0` with its address and route.
    Veth(Veth),
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Stream {
    Stdout,
    Stderr,
}

/// Helper -> paasd.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum FromHelper {
    /// Namespaces exist and the process is in its cgroup; `pid` is its host pid.
    Created { pid: i32 },
    /// The command was exec'd.
    Started,
    /// One line of output (without its newline; invalid UTF-8 replaced), stamped by the
    /// monitor when it read it: milliseconds since the Unix epoch.
    Output {
        stream: Stream,
        line: String,
        #[serde(default)]
        ts_ms: u64,
    },
    /// The container's first process ended; every other process of it is gone with it.
    Exited {
        code: Option<i32>,
        signal: Option<i32>,
    },
    /// Setting the container up failed at `stage`; nothing was exec'd.
    Failed { stage: String, error: String },
}

/// paasd -> helper.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ToHelper {
    Start,
    Signal { signal: i32 },
}

/// Lines longer than this are split, so one chatty process cannot exhaust memory.
pub const MAX_LINE: usize = 16 * 1024;
