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
    /// Set for containers that outlive paasd (app instances): the monitor listens here for
    /// the next paasd once this one is gone, and buffers output meanwhile.
    #[serde(default)]
    pub attach: Option<Attach>,
}

/// How a later paasd finds and re-attaches to a container's monitor.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Attach {
    /// A Unix socket path in a root-only directory; the newest connection is the monitor's
    /// paasd.
    pub socket: PathBuf,
    /// The runtime's name of the container (its cgroup).
    pub id: String,
    /// Opaque to the runtime: what the caller needs to know the container again.
    pub tag: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Rootfs {
    /// Overlay lower layers under the instance's own files, topmost first (e.g. slug, then
    /// the stack).
    pub lower: Vec<PathBuf>,
    /// The container's writable layer, which also holds the instance's own files and the
    /// mount point of the merged tree.
    pub disk: Disk,
    /// The instance's own files, the topmost read-only layer.
    pub base: Base,
    /// Host paths made visible inside (the `host` stack's /usr, certificates, a build's
    /// source and cache dirs...), in mount order.
    pub binds: Vec<Bind>,
}

/// Where every write of a container goes. A tmpfs: its pages are charged to the memory
/// cgroup of whoever writes them (the container), its size caps the writes (ENOSPC beyond),
/// and it goes with the mount namespace, so nothing a container writes reaches the host's
/// disk and nothing outlives it.
///
/// It is mounted over the instance dir (inside the container's mount namespace only), and
/// everything else the rootfs needs is made on it by the container's first process: the
/// overlay's upper and work dirs, /tmp, the [`Base`] layer and the merged tree's mount point.
/// So the host's disk sees one `mkdir` per container start, and a busy state disk does not
/// hold starts up.
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
    pub fn base(&self) -> PathBuf {
        self.mount.join("base")
    }
    /// Where the merged tree is mounted before `pivot_root`.
    pub fn root(&self) -> PathBuf {
        self.mount.join("root")
    }
}

/// The topmost read-only layer, made per instance: an empty `/app` owned by the app user (a
/// directory's owner comes from the topmost layer that has it) and the generated /etc files.
/// Writes to either copy them up into the writable layer as usual.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Base {
    pub app_uid: u32,
    pub app_gid: u32,
    /// File name under /etc and contents.
    pub etc: Vec<(String, String)>,
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
    /// The first line on a re-attached connection: the container (`pid`, its host pid; the
    /// spec's `tag`), how many output lines were dropped while no paasd listened, and
    /// whether the command is still running. The buffered lines (and `Exited`) follow.
    Adopted {
        pid: i32,
        id: String,
        tag: String,
        dropped: u64,
        running: bool,
    },
}

/// paasd -> helper.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ToHelper {
    Signal { signal: i32 },
}

/// Lines longer than this are split, so one chatty process cannot exhaust memory.
pub const MAX_LINE: usize = 16 * 1024;
