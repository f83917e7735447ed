//! Resource control for containers: one [`Cgroups`] manager over two backends, chosen at
//! start-up from `/proc/self/mountinfo` ([`v1`] for hybrid hosts, [`v2`] for the unified
//! hierarchy). It owns only the subtree `<parent>/<name>` it creates in each hierarchy: it
//! creates those directories, writes limits, moves pids in, reads statistics, kills what is
//! inside and removes them. It must not touch any other cgroup (names are validated to one
//! path component), must not spawn or wait for processes (the container helper does), and
//! must not kill anything it did not read from its own `cgroup.procs` files.

pub mod v1;
pub mod v2;

use std::collections::BTreeSet;
use std::fs;
use std::io::{self, ErrorKind};
use std::path::{Path, PathBuf};
use std::thread;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

/// CFS period used for every CPU quota, in microseconds.
pub const CPU_PERIOD_US: u64 = 100_000;
/// How long [`Cgroup::kill_all`] waits for a cgroup to become empty.
pub const KILL_TIMEOUT: Duration = Duration::from_secs(5);
/// How long `rmdir` is retried while the kernel still says `EBUSY`.
const RMDIR_TIMEOUT: Duration = Duration::from_secs(2);
const POLL: Duration = Duration::from_millis(10);
const MAX_NAME: usize = 128;

#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    #[error("cannot {op} {}: {source}", .path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    #[error("cannot write {value:?} to {}: {source}", .path.display())]
    Write {
        path: PathBuf,
        value: String,
        source: io::Error,
    },
    #[error("unexpected content in {}: {reason}", .path.display())]
    Parse { path: PathBuf, reason: String },
    #[error("invalid cgroup name {name:?}: {reason}")]
    InvalidName { name: String, reason: &'static str },
    #[error("invalid limit: {0}")]
    InvalidLimit(String),
    #[error("{0} is not a process id")]
    InvalidPid(i32),
    #[error("cgroup {} already exists (a leftover? destroy it first)", .path.display())]
    Exists { path: PathBuf },
    #[error("unsupported cgroup layout: {0}")]
    Unsupported(String),
    #[error("controller {controller} is not available in {}", .path.display())]
    ControllerUnavailable {
        controller: &'static str,
        path: PathBuf,
    },
    #[error("cannot kill pid {pid} of {}: {source}", .path.display())]
    Kill {
        pid: i32,
        path: PathBuf,
        source: Errno,
    },
    #[error("refusing to kill the processes of {}: it contains this process (pid {pid})", .path.display())]
    ContainsSelf { pid: i32, path: PathBuf },
    #[error("{} still holds pids {pids:?} after {waited:?}", .path.display())]
    NotEmpty {
        path: PathBuf,
        pids: Vec<i32>,
        waited: Duration,
    },
}

/// What a container may use. `None` leaves the kernel default (unlimited).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Limits {
    /// Memory in bytes; swap is turned off whenever this is set.
    pub memory_bytes: Option<u64>,
    /// CPU time in percent of one CPU: 100 = one full CPU, 250 = two and a half.
    pub cpu_percent: Option<u32>,
    /// Maximum number of tasks (processes and threads).
    pub pids: Option<u64>,
    /// Not a cgroup limit, but one the runtime applies with the others: the size of the
    /// container's writable layer (see `RunSpec`). Writes beyond it fail with ENOSPC.
    pub disk_bytes: Option<u64>,
}

impl Limits {
    /// Rejects limits no container could run under, before anything is written.
    pub fn validate(&self) -> Result<(), CgroupError> {
        if self.memory_bytes == Some(0) {
            return Err(CgroupError::InvalidLimit(
                "memory must be above 0 bytes".into(),
            ));
        }
        if self.cpu_percent == Some(0) {
            return Err(CgroupError::InvalidLimit("cpu must be at least 1%".into()));
        }
        if self.pids == Some(0) {
            return Err(CgroupError::InvalidLimit("pids must be at least 1".into()));
        }
        Ok(())
    }
}

/// CFS quota in microseconds per [`CPU_PERIOD_US`] for `percent` of one CPU.
pub fn cpu_quota_us(percent: u32) -> u64 {
    u64::from(percent) * CPU_PERIOD_US / 100
}

/// Counters of one cgroup. Fields a backend cannot read (no `memory.peak`) are 0.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    pub cpu_usage_ns: u64,
    pub memory_current: u64,
    pub memory_peak: u64,
    pub pids_current: u64,
    pub oom_kills: u64,
}

/// Where the cgroup hierarchies are, as read from `/proc/self/mountinfo`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Layout {
    /// memory, cpu and pids are v1 controllers (legacy or hybrid host).
    V1(v1::Mounts),
    /// None of them is bound to v1 and a cgroup2 file system is mounted at `root`.
    V2 { root: PathBuf },
    /// Anything else (no cgroups, or the controllers split between v1 and v2).
    Unsupported(String),
}

/// Pure: decides the layout from the text of a `mountinfo` file. Malformed lines are skipped.
pub fn parse_mountinfo(text: &str) -> Layout {
    let mut unified: Vec<PathBuf> = Vec::new();
    // (controller, mount point), first mount of each controller wins.
    let mut v1: Vec<(String, PathBuf)> = Vec::new();
    for line in text.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        // Six fixed fields, optional fields, then "-" and three more.
        let Some(sep) = fields.iter().skip(6).position(|f| *f == "-").map(|i| i + 6) else {
            continue;
        };
        if fields.len() < sep + 4 {
            continue;
        }
        let mount_point = PathBuf::from(unescape_mount_field(fields[4]));
        match fields[sep + 1] {
            "cgroup2" => unified.push(mount_point),
            "cgroup" => {
                for opt in fields[sep + 3].split(',') {
                    if !v1.iter().any(|(c, _)| c == opt) {
                        v1.push((opt.to_string(), mount_point.clone()));
                    }
                }
            }
            _ => {}
        }
    }
    let find = |c: &str| {
        v1.iter()
            .find(|(name, _)| name == c)
            .map(|(_, p)| p.clone())
    };
    let (memory, cpu, pids) = (find("memory"), find("cpu"), find("pids"));
    match (memory, cpu, pids) {
        (Some(memory), Some(cpu), Some(pids)) => Layout::V1(v1::Mounts {
            memory,
            cpu,
            cpuacct: find("cpuacct"),
            pids,
            freezer: find("freezer"),
        }),
        (None, None, None) => {
            let standard = Path::new("/sys/fs/cgroup");
            match unified
                .iter()
                .find(|p| p.as_path() == standard)
                .or(unified.first())
            {
                Some(root) => Layout::V2 { root: root.clone() },
                None => Layout::Unsupported(
                    "no cgroup2 file system and no v1 memory, cpu and pids hierarchies are mounted"
                        .into(),
                ),
            }
        }
        (memory, cpu, pids) => {
            let missing: Vec<&str> = [("memory", memory), ("cpu", cpu), ("pids", pids)]
                .into_iter()
                .filter(|(_, p)| p.is_none())
                .map(|(c, _)| c)
                .collect();
            Layout::Unsupported(format!(
                "some of memory, cpu and pids are v1 controllers but {} {} not mounted as v1; \
                 mixed layouts are not supported",
                missing.join(", "),
                if missing.len() == 1 { "is" } else { "are" }
            ))
        }
    }
}

/// mountinfo escapes space, tab, newline and backslash as `\ooo`.
fn unescape_mount_field(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let digits = bytes.get(i + 1..i + 4).unwrap_or_default();
        if bytes[i] == b'\\'
            && digits.len() == 3
            && digits.iter().all(|d| (b'0'..=b'7').contains(d))
        {
            let value = digits
                .iter()
                .fold(0u32, |acc, d| acc * 8 + u32::from(d - b'0'));
            if let Ok(v) = u8::try_from(value) {
                out.push(v);
                i += 4;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A cgroup (or parent) name: one path component of `[A-Za-z0-9_.-]`, not `.` or `..`.
pub fn validate_name(name: &str) -> Result<(), CgroupError> {
    let reason = if name.is_empty() {
        Some("it is empty")
    } else if name.len() > MAX_NAME {
        Some("it is longer than 128 bytes")
    } else if name == "." || name == ".." {
        Some("it would leave the cgroup tree")
    } else if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
    {
        Some("use only letters, digits, '_', '.' and '-'")
    } else {
        None
    };
    match reason {
        Some(reason) => Err(CgroupError::InvalidName {
            name: name.escape_debug().to_string(),
            reason,
        }),
        None => Ok(()),
    }
}

/// A parent is one name (`paas`) or a path of names below the hierarchy's root
/// (`system.slice/paasd.service/apps`), each a valid cgroup name.
fn validate_parent(parent: &str) -> Result<(), CgroupError> {
    parent.split('/').try_for_each(validate_name)
}

/// The parent to use when systemd delegated this process a subtree: with
/// `DelegateSubgroup=daemon` (systemd 254 and later) a service's main process starts in
/// `<unit>/daemon`, and `<unit>/apps` beside it keeps the no-internal-processes rule, so the
/// unit's accounting (`systemctl status`) and limits cover the apps. `None` elsewhere: not a
/// pure cgroup v2 host, not a service, or an older systemd that put us in the unit itself
/// (a restart of such a unit fails while its cgroup has children with controllers, so the
/// apps must not go there). `proc_self_cgroup` is the text of /proc/self/cgroup.
pub fn delegated_parent(proc_self_cgroup: &str) -> Option<String> {
    let mut lines = proc_self_cgroup.lines().filter(|l| !l.trim().is_empty());
    let path = lines.next()?.strip_prefix("0::/")?;
    if lines.next().is_some() {
        return None;
    }
    let unit = path.strip_suffix("/daemon")?;
    let last = unit.rsplit('/').next()?;
    if !last.ends_with(".service") || validate_parent(unit).is_err() {
        return None;
    }
    Some(format!("{unit}/apps"))
}

/// [`delegated_parent`] for a legacy or hybrid host (cgroup v1 controllers), where systemd
/// delegated this *service* (`under_systemd`: `INVOCATION_ID` is set) its cgroup in every
/// controller hierarchy: `<unit>/apps`, when the memory, cpu and pids hierarchies and
/// systemd's own tracking hierarchy all put us in the same `.service` cgroup (or its `daemon`
/// subgroup). v1 has no no-internal-processes rule, so the apps may sit below the unit that
/// runs paasd itself, and a restart of the unit still succeeds. `None` otherwise.
pub fn delegated_parent_v1(proc_self_cgroup: &str, under_systemd: bool) -> Option<String> {
    if !under_systemd {
        return None;
    }
    let mut tracked = None;
    let mut by_controller: Vec<(&str, &str)> = Vec::new();
    for line in proc_self_cgroup.lines().filter(|l| !l.trim().is_empty()) {
        let mut parts = line.splitn(3, ':');
        let (_, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
        let path = path.strip_prefix('/')?;
        if controllers == "name=systemd" {
            tracked = Some(path);
        }
        for c in controllers.split(',') {
            by_controller.push((c, path));
        }
    }
    let tracked = tracked?;
    let unit = tracked.strip_suffix("/daemon").unwrap_or(tracked);
    let last = unit.rsplit('/').next()?;
    if !last.ends_with(".service") || validate_parent(unit).is_err() {
        return None;
    }
    let in_unit = |c: &str| {
        by_controller
            .iter()
            .any(|(name, path)| *name == c && (*path == unit || *path == tracked))
    };
    ["memory", "cpu", "pids"]
        .iter()
        .all(|c| in_unit(c))
        .then(|| format!("{unit}/apps"))
}

/// The cgroup manager for one parent subtree (e.g. `paas`), on one backend.
#[derive(Debug)]
pub enum Cgroups {
    V1(v1::Hierarchy),
    V2(v2::Hierarchy),
}

impl Cgroups {
    /// Detects the host layout from `/proc/self/mountinfo`: pure cgroup2 -> V2 (its
    /// `cgroup.controllers` must offer memory, cpu and pids); v1 memory+cpu+pids -> V1.
    /// `parent` is the subtree name paasd owns (e.g. "paas").
    pub fn detect(parent: &str) -> Result<Cgroups, CgroupError> {
        validate_parent(parent)?;
        let mountinfo = Path::new("/proc/self/mountinfo");
        let text = read_text(mountinfo)?;
        match parse_mountinfo(&text) {
            Layout::V1(mounts) => Ok(Cgroups::V1(v1::Hierarchy::new(mounts, parent))),
            Layout::V2 { root } => {
                v2::check_controllers(&root)?;
                Ok(Cgroups::V2(v2::Hierarchy::new(&root, parent, false)))
            }
            Layout::Unsupported(why) => Err(CgroupError::Unsupported(why)),
        }
    }

    /// A v2 manager on the tree at `root`, for unit tests on a fake tree in a temp dir.
    /// When `root` is not a cgroup2 file system, interface files are plain files and
    /// removing a cgroup directory also removes the regular files in it (cgroupfs does that
    /// by itself).
    pub fn v2_at(root: &Path, parent: &str) -> Result<Cgroups, CgroupError> {
        validate_parent(parent)?;
        let emulated = !v2::is_cgroup2(root)?;
        Ok(Cgroups::V2(v2::Hierarchy::new(root, parent, emulated)))
    }

    /// "v1" or "v2".
    pub fn kind(&self) -> &'static str {
        match self {
            Cgroups::V1(_) => "v1",
            Cgroups::V2(_) => "v2",
        }
    }

    /// Creates `<parent>/<name>` (in every needed v1 hierarchy) and applies `limits`.
    /// Fails with [`CgroupError::Exists`] if it is already there; on any failure removes
    /// the directories it created.
    pub fn create(&self, name: &str, limits: &Limits) -> Result<Cgroup, CgroupError> {
        validate_name(name)?;
        limits.validate()?;
        let inner = match self {
            Cgroups::V1(h) => Inner::V1(h.create(name, limits)?),
            Cgroups::V2(h) => Inner::V2(h.create(name, limits)?),
        };
        Ok(Cgroup {
            name: name.to_string(),
            inner,
        })
    }

    /// What [`Cgroup::self_join_files`] will be for the cgroup `name`, before it is created
    /// (the container helper gets them while paasd creates the cgroup).
    pub fn self_join_files(&self, name: &str) -> Result<Vec<PathBuf>, CgroupError> {
        validate_name(name)?;
        Ok(match self {
            Cgroups::V1(h) => h
                .parent_dirs()
                .iter()
                .map(|d| d.join(name).join("tasks"))
                .collect(),
            Cgroups::V2(h) => vec![h.parent_dir().join(name).join("cgroup.procs")],
        })
    }

    /// Re-opens an existing cgroup by name (after a daemon restart); None if absent or the
    /// name is invalid. On v1, a cgroup present in only some hierarchies (a crash during
    /// create) is still returned so it can be destroyed.
    pub fn open(&self, name: &str) -> Option<Cgroup> {
        validate_name(name).ok()?;
        let inner = match self {
            Cgroups::V1(h) => Inner::V1(h.open(name)?),
            Cgroups::V2(h) => Inner::V2(h.open(name)?),
        };
        Some(Cgroup {
            name: name.to_string(),
            inner,
        })
    }

    /// Names of the child cgroups under `<parent>` (leftovers after a crash), sorted.
    pub fn list(&self) -> Result<Vec<String>, CgroupError> {
        let parents = match self {
            Cgroups::V1(h) => h.parent_dirs(),
            Cgroups::V2(h) => vec![h.parent_dir()],
        };
        let mut names = BTreeSet::new();
        for dir in parents {
            let entries = match fs::read_dir(&dir) {
                Ok(entries) => entries,
                Err(e) if e.kind() == ErrorKind::NotFound => continue,
                Err(e) => return Err(io_error("list", &dir, e)),
            };
            for entry in entries {
                let entry = entry.map_err(|e| io_error("list", &dir, e))?;
                let is_dir = entry
                    .file_type()
                    .map_err(|e| io_error("stat", &entry.path(), e))?
                    .is_dir();
                if let (true, Some(name)) = (is_dir, entry.file_name().to_str()) {
                    if validate_name(name).is_ok() {
                        names.insert(name.to_string());
                    }
                }
            }
        }
        Ok(names.into_iter().collect())
    }

    /// Removes the `<parent>` directories themselves; fails if a child cgroup is left.
    /// Absent directories are fine. Controllers enabled above `<parent>` stay enabled.
    pub fn remove_parent(&self) -> Result<(), CgroupError> {
        match self {
            Cgroups::V1(h) => h
                .parent_dirs()
                .iter()
                .try_for_each(|d| remove_cgroup_dir(d)),
            Cgroups::V2(h) => h.remove_parent(),
        }
    }
}

/// One container's cgroup: a name and the directories it spans.
#[derive(Debug)]
pub struct Cgroup {
    name: String,
    inner: Inner,
}

#[derive(Debug)]
enum Inner {
    V1(v1::Group),
    V2(v2::Group),
}

impl Cgroup {
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The directories this cgroup spans (one per v1 hierarchy, one on v2).
    pub fn dirs(&self) -> Vec<PathBuf> {
        match &self.inner {
            Inner::V1(g) => g.dirs().to_vec(),
            Inner::V2(g) => vec![g.dir().to_path_buf()],
        }
    }

    /// The `cgroup.procs` files a process must be written into to join.
    pub fn procs_files(&self) -> Vec<PathBuf> {
        self.dirs().iter().map(|d| d.join("cgroup.procs")).collect()
    }

    /// The files a *single-threaded* process writes `0` into to move itself in (the container
    /// helper's child does, before it runs anything). On v1 that is `tasks`: the kernel moves
    /// one thread without taking its global threadgroup lock, whose write side waits for an
    /// RCU grace period (2-4 ms per hierarchy, and v1 has five). Moving the only thread moves
    /// the whole process. On v2 `cgroup.threads` is for threaded cgroups only: `cgroup.procs`.
    pub fn self_join_files(&self) -> Vec<PathBuf> {
        let file = match self.inner {
            Inner::V1(_) => "tasks",
            Inner::V2(_) => "cgroup.procs",
        };
        self.dirs().iter().map(|d| d.join(file)).collect()
    }

    /// Moves `pid` (its whole thread group) into the cgroup.
    pub fn add_pid(&self, pid: i32) -> Result<(), CgroupError> {
        if pid <= 0 {
            return Err(CgroupError::InvalidPid(pid));
        }
        self.procs_files()
            .iter()
            .try_for_each(|f| write_text(f, &pid.to_string()))
    }

    /// Process ids in the cgroup (union over hierarchies), sorted.
    pub fn pids(&self) -> Result<Vec<i32>, CgroupError> {
        union_pids(&self.procs_files(), false)
    }

    pub fn stats(&self) -> Result<Stats, CgroupError> {
        match &self.inner {
            Inner::V1(g) => g.stats(),
            Inner::V2(g) => g.stats(),
        }
    }

    /// True once the kernel has OOM-killed a process of this cgroup.
    pub fn oom_killed(&self) -> Result<bool, CgroupError> {
        Ok(self.stats()?.oom_kills > 0)
    }

    /// How many forks (and thread creations) the cgroup's pids limit has refused so far: the
    /// `max` counter of `pids.events`, on v1 and v2 alike. It only grows; callers report the
    /// difference between two reads. 0 when the kernel has no such file.
    pub fn fork_failures(&self) -> Result<u64, CgroupError> {
        match &self.inner {
            Inner::V1(g) => g.fork_failures(),
            Inner::V2(g) => g.fork_failures(),
        }
    }

    /// Kills every process in the cgroup and waits (at most [`KILL_TIMEOUT`]) until it is
    /// empty. Refuses if the calling process is inside.
    pub fn kill_all(&self) -> Result<(), CgroupError> {
        match &self.inner {
            Inner::V1(g) => g.kill_all(),
            Inner::V2(g) => g.kill_all(),
        }
    }

    /// `kill_all`, then removes every directory of this cgroup (only `<parent>/<name>`).
    pub fn destroy(self) -> Result<(), CgroupError> {
        self.kill_all()?;
        match &self.inner {
            Inner::V1(g) => g.dirs().iter().try_for_each(|d| remove_cgroup_dir(d)),
            Inner::V2(g) => g.remove(),
        }
    }
}

// ---- helpers shared by both backends -------------------------------------------------

pub(crate) fn io_error(op: &'static str, path: &Path, source: io::Error) -> CgroupError {
    CgroupError::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}

pub(crate) fn read_text(path: &Path) -> Result<String, CgroupError> {
    fs::read_to_string(path).map_err(|e| io_error("read", path, e))
}

/// Like [`read_text`] but `None` when the file does not exist.
pub(crate) fn read_optional(path: &Path) -> Result<Option<String>, CgroupError> {
    match fs::read_to_string(path) {
        Ok(text) => Ok(Some(text)),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_error("read", path, e)),
    }
}

pub(crate) fn write_text(path: &Path, value: &str) -> Result<(), CgroupError> {
    fs::write(path, value).map_err(|source| CgroupError::Write {
        path: path.to_path_buf(),
        value: value.to_string(),
        source,
    })
}

pub(crate) fn parse_u64(path: &Path, text: &str) -> Result<u64, CgroupError> {
    let t = text.trim();
    t.parse().map_err(|_| CgroupError::Parse {
        path: path.to_path_buf(),
        reason: format!("expected a number, found {:?}", truncate(t)),
    })
}

pub(crate) fn read_u64(path: &Path) -> Result<u64, CgroupError> {
    parse_u64(path, &read_text(path)?)
}

/// The value of `key` in a flat-keyed file (`key value` per line), if present.
pub(crate) fn keyed_u64(path: &Path, text: &str, key: &str) -> Result<Option<u64>, CgroupError> {
    for line in text.lines() {
        let mut parts = line.split_whitespace();
        if parts.next() == Some(key) {
            let value = parts.next().unwrap_or("");
            return parse_u64(path, value).map(Some);
        }
    }
    Ok(None)
}

/// The `max` line of a `pids.events` file (`max 37`); an absent file (kernels before 4.3)
/// or line reads as 0, so an old kernel reports nothing rather than failing.
pub(crate) fn pids_events_max(path: &Path) -> Result<u64, CgroupError> {
    match read_optional(path)? {
        Some(text) => Ok(keyed_u64(path, &text, "max")?.unwrap_or(0)),
        None => Ok(0),
    }
}

fn truncate(s: &str) -> String {
    s.chars().take(40).collect()
}

/// Parses a `cgroup.procs` file: one positive pid per line.
pub(crate) fn parse_pids(path: &Path, text: &str) -> Result<Vec<i32>, CgroupError> {
    text.split_whitespace()
        .map(|t| match t.parse::<i32>() {
            Ok(pid) if pid > 0 => Ok(pid),
            _ => Err(CgroupError::Parse {
                path: path.to_path_buf(),
                reason: format!("{:?} is not a pid", truncate(t)),
            }),
        })
        .collect()
}

/// Sorted union of the pids in `files`; with `skip_missing`, absent files count as empty.
pub(crate) fn union_pids(files: &[PathBuf], skip_missing: bool) -> Result<Vec<i32>, CgroupError> {
    let mut all = BTreeSet::new();
    for f in files {
        let text = if skip_missing {
            match read_optional(f)? {
                Some(t) => t,
                None => continue,
            }
        } else {
            read_text(f)?
        };
        all.extend(parse_pids(f, &text)?);
    }
    Ok(all.into_iter().collect())
}

/// Fails if the calling process is one of `pids` (freezing or killing it would be fatal).
pub(crate) fn refuse_self(pids: &[i32], path: &Path) -> Result<(), CgroupError> {
    let me = i32::try_from(std::process::id()).unwrap_or(i32::MAX);
    if pids.contains(&me) {
        return Err(CgroupError::ContainsSelf {
            pid: me,
            path: path.to_path_buf(),
        });
    }
    Ok(())
}

/// SIGKILLs each pid (all > 0, read from our own procs files); gone processes are fine.
pub(crate) fn sigkill_all(pids: &[i32], path: &Path) -> Result<(), CgroupError> {
    refuse_self(pids, path)?;
    for &pid in pids {
        if pid <= 0 {
            continue;
        }
        match kill(Pid::from_raw(pid), Signal::SIGKILL) {
            Ok(()) | Err(Errno::ESRCH) => {}
            Err(source) => {
                return Err(CgroupError::Kill {
                    pid,
                    path: path.to_path_buf(),
                    source,
                })
            }
        }
    }
    Ok(())
}

/// SIGKILLs whatever is listed in `files` until they are all empty, for at most `timeout`
/// ([`KILL_TIMEOUT`] outside tests). `path` names the cgroup in errors.
pub(crate) fn kill_until_empty(
    files: &[PathBuf],
    path: &Path,
    timeout: Duration,
) -> Result<(), CgroupError> {
    let start = Instant::now();
    loop {
        let pids = union_pids(files, true)?;
        if pids.is_empty() {
            return Ok(());
        }
        if start.elapsed() >= timeout {
            return Err(CgroupError::NotEmpty {
                path: path.to_path_buf(),
                pids,
                waited: start.elapsed(),
            });
        }
        sigkill_all(&pids, path)?;
        thread::sleep(POLL);
    }
}

/// Creates `dir`, which must not exist yet.
pub(crate) fn create_new_dir(dir: &Path) -> Result<(), CgroupError> {
    match fs::create_dir(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == ErrorKind::AlreadyExists => Err(CgroupError::Exists {
            path: dir.to_path_buf(),
        }),
        Err(e) => Err(io_error("create", dir, e)),
    }
}

/// Creates `dir` unless it exists.
pub(crate) fn ensure_dir(dir: &Path) -> Result<(), CgroupError> {
    match fs::create_dir(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == ErrorKind::AlreadyExists && dir.is_dir() => Ok(()),
        Err(e) => Err(io_error("create", dir, e)),
    }
}

/// `rmdir` on a cgroup directory, retried while the kernel answers `EBUSY` (it can for a
/// moment after the last process exits). An absent directory is fine.
pub(crate) fn remove_cgroup_dir(dir: &Path) -> Result<(), CgroupError> {
    let start = Instant::now();
    loop {
        match fs::remove_dir(dir) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) && start.elapsed() < RMDIR_TIMEOUT => {
                thread::sleep(POLL)
            }
            Err(e) => return Err(io_error("remove", dir, e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// This host's (hybrid) mountinfo, cpu and cpuacct separate.
    const HYBRID: &str = "\
22 1 254:1 / / rw,relatime shared:1 - ext4 /dev/vda1 rw
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
34 31 0:31 / /sys/fs/cgroup/cpuset rw,relatime - cgroup cgroup rw,cpuset
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
36 31 0:33 / /sys/fs/cgroup/devices rw,relatime - cgroup cgroup rw,devices
37 31 0:34 / /sys/fs/cgroup/freezer rw,relatime - cgroup cgroup rw,freezer
38 31 0:35 / /sys/fs/cgroup/blkio rw,relatime - cgroup cgroup rw,blkio
39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";

    /// systemd hybrid with cpu,cpuacct co-mounted and optional fields present.
    const HYBRID_COMOUNTED: &str = "\
25 30 0:23 / /sys/fs/cgroup ro,nosuid,nodev,noexec shared:9 - tmpfs tmpfs ro,mode=755
26 25 0:24 / /sys/fs/cgroup/unified rw,nosuid,nodev,noexec,relatime shared:10 - cgroup2 cgroup2 rw,nsdelegate
27 25 0:25 / /sys/fs/cgroup/systemd rw,nosuid,nodev,noexec,relatime shared:11 - cgroup cgroup rw,xattr,name=systemd
30 25 0:28 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid,nodev,noexec,relatime shared:14 - cgroup cgroup rw,cpu,cpuacct
31 25 0:29 / /sys/fs/cgroup/memory rw,nosuid,nodev,noexec,relatime shared:15 - cgroup cgroup rw,memory
32 25 0:30 / /sys/fs/cgroup/pids rw,nosuid,nodev,noexec,relatime shared:16 - cgroup cgroup rw,pids
33 25 0:31 / /sys/fs/cgroup/memory rw,nosuid,nodev,noexec,relatime shared:17 - cgroup cgroup rw,memory
";

    const PURE_V2: &str = "\
24 30 0:22 / /sys rw,nosuid,nodev,noexec,relatime shared:7 - sysfs sysfs rw
28 24 0:24 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:9 - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot
";

    #[test]
    fn mountinfo_hybrid_separate_cpuacct() {
        let Layout::V1(m) = parse_mountinfo(HYBRID) else {
            panic!("expected v1: {:?}", parse_mountinfo(HYBRID));
        };
        assert_eq!(m.memory, Path::new("/sys/fs/cgroup/memory"));
        assert_eq!(m.cpu, Path::new("/sys/fs/cgroup/cpu"));
        assert_eq!(
            m.cpuacct.as_deref(),
            Some(Path::new("/sys/fs/cgroup/cpuacct"))
        );
        assert_eq!(m.pids, Path::new("/sys/fs/cgroup/pids"));
        assert_eq!(
            m.freezer.as_deref(),
            Some(Path::new("/sys/fs/cgroup/freezer"))
        );
    }

    #[test]
    fn mountinfo_hybrid_comounted_cpu_cpuacct() {
        let Layout::V1(m) = parse_mountinfo(HYBRID_COMOUNTED) else {
            panic!("expected v1");
        };
        assert_eq!(m.cpu, Path::new("/sys/fs/cgroup/cpu,cpuacct"));
        assert_eq!(
            m.cpuacct.as_deref(),
            Some(Path::new("/sys/fs/cgroup/cpu,cpuacct"))
        );
        assert_eq!(
            m.memory,
            Path::new("/sys/fs/cgroup/memory"),
            "first mount wins"
        );
        assert_eq!(m.freezer, None);
        // cpu and cpuacct share one directory: it is created and joined once.
        let h = v1::Hierarchy::new(m, "paas");
        assert_eq!(h.parent_dirs().len(), 3, "{:?}", h.parent_dirs());
    }

    #[test]
    fn mountinfo_pure_v2() {
        assert_eq!(
            parse_mountinfo(PURE_V2),
            Layout::V2 {
                root: PathBuf::from("/sys/fs/cgroup")
            }
        );
    }

    #[test]
    fn mountinfo_escaped_mount_point() {
        let text = "28 24 0:24 / /mnt/my\\040cgroups rw - cgroup2 cgroup2 rw\n";
        assert_eq!(
            parse_mountinfo(text),
            Layout::V2 {
                root: PathBuf::from("/mnt/my cgroups")
            }
        );
    }

    #[test]
    fn mountinfo_unsupported() {
        assert!(matches!(parse_mountinfo(""), Layout::Unsupported(_)));
        assert!(matches!(
            parse_mountinfo("garbage\n1 2 3\n- - -\n"),
            Layout::Unsupported(_)
        ));
        // memory on v1 but no pids hierarchy anywhere in v1.
        let split = "\
35 31 0:32 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory
32 31 0:29 / /sys/fs/cgroup/cpu rw - cgroup cgroup rw,cpu
41 31 0:38 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw
";
        match parse_mountinfo(split) {
            Layout::Unsupported(why) => assert!(why.contains("pids is not"), "{why}"),
            other => panic!("expected unsupported, got {other:?}"),
        }
    }

    #[test]
    fn names() {
        for ok in ["paas", "web.1", "my-app_web.12", "A", "paas-test-1234"] {
            assert!(validate_name(ok).is_ok(), "{ok}");
        }
        let long = "a".repeat(129);
        for bad in [
            "",
            ".",
            "..",
            "a/b",
            "../x",
            "/abs",
            "a b",
            "é",
            "a\nb",
            long.as_str(),
        ] {
            assert!(
                matches!(validate_name(bad), Err(CgroupError::InvalidName { .. })),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn limits() {
        assert_eq!(cpu_quota_us(20), 20_000);
        assert_eq!(cpu_quota_us(100), 100_000);
        assert_eq!(cpu_quota_us(250), 250_000);
        assert!(Limits::default().validate().is_ok());
        for bad in [
            Limits {
                memory_bytes: Some(0),
                ..Limits::default()
            },
            Limits {
                cpu_percent: Some(0),
                ..Limits::default()
            },
            Limits {
                pids: Some(0),
                ..Limits::default()
            },
        ] {
            assert!(matches!(bad.validate(), Err(CgroupError::InvalidLimit(_))));
        }
    }

    #[test]
    fn keyed_and_pids_parsing() {
        let p = Path::new("f");
        let text = "oom_kill_disable 0\nunder_oom 0\noom_kill 3\n";
        assert_eq!(keyed_u64(p, text, "oom_kill").expect("parse"), Some(3));
        assert_eq!(keyed_u64(p, text, "missing").expect("parse"), None);
        assert!(keyed_u64(p, "oom_kill x\n", "oom_kill").is_err());
        assert_eq!(parse_pids(p, "12\n34\n").expect("pids"), vec![12, 34]);
        assert_eq!(parse_pids(p, "").expect("pids"), Vec::<i32>::new());
        assert!(
            parse_pids(p, "0\n").is_err(),
            "pid 0 would signal a process group"
        );
        assert!(parse_pids(p, "-1\n").is_err());
        assert!(parse_pids(p, "abc\n").is_err());
    }

    #[test]
    fn a_delegated_subgroup_gives_the_apps_a_sibling() {
        assert_eq!(
            delegated_parent("0::/system.slice/paasd.service/daemon\n").as_deref(),
            Some("system.slice/paasd.service/apps")
        );
        // systemd before 254 puts the process in the unit itself: not ours to nest in.
        assert_eq!(delegated_parent("0::/system.slice/paasd.service\n"), None);
        // Not a service, or a hybrid host (v1 lines beside the unified one).
        assert_eq!(
            delegated_parent("0::/user.slice/session-1.scope/daemon\n"),
            None
        );
        assert_eq!(
            delegated_parent(
                "12:pids:/system.slice/paasd.service\n0::/system.slice/paasd.service/daemon\n"
            ),
            None
        );
        assert_eq!(delegated_parent("0::/\n"), None);
        assert_eq!(delegated_parent(""), None);
    }

    #[test]
    fn a_unit_parent_is_used_only_in_hierarchies_where_systemd_made_the_unit() {
        let tmp = tempfile::tempdir().expect("temp dir");
        let mount = |n: &str| tmp.path().join(n);
        // systemd made the unit's cgroup in memory, cpu and pids; not in freezer.
        for n in ["memory", "cpu", "pids"] {
            std::fs::create_dir_all(mount(n).join("system.slice/paasd.service")).expect("mkdir");
        }
        std::fs::create_dir_all(mount("freezer")).expect("mkdir");
        let m = v1::Mounts {
            memory: mount("memory"),
            cpu: mount("cpu"),
            cpuacct: None,
            pids: mount("pids"),
            freezer: Some(mount("freezer")),
        };
        let h = v1::Hierarchy::new(m.clone(), "system.slice/paasd.service/apps");
        assert_eq!(
            h.parent_dirs(),
            vec![
                mount("memory").join("system.slice/paasd.service/apps"),
                mount("cpu").join("system.slice/paasd.service/apps"),
                mount("pids").join("system.slice/paasd.service/apps"),
                mount("freezer").join("paas"),
            ]
        );
        // A plain parent is ours everywhere.
        let plain = v1::Hierarchy::new(m, "paas-test");
        assert!(plain.parent_dirs().iter().all(|d| d.ends_with("paas-test")));
    }

    /// Debian 12 booted with `systemd.unified_cgroup_hierarchy=0` (hybrid), paasd.service.
    const HYBRID_CGROUP: &str = "13:misc:/\n12:pids:/system.slice/paasd.service\n\
        11:memory:/system.slice/paasd.service\n10:cpu,cpuacct:/system.slice/paasd.service\n\
        9:devices:/system.slice/paasd.service\n3:cpuset:/\n\
        1:name=systemd:/system.slice/paasd.service\n0::/system.slice/paasd.service\n";

    #[test]
    fn a_hybrid_host_puts_the_apps_below_the_service_in_every_v1_hierarchy() {
        assert_eq!(
            delegated_parent_v1(HYBRID_CGROUP, true).as_deref(),
            Some("system.slice/paasd.service/apps")
        );
        // Not a systemd service: the same lines say nothing about delegation.
        assert_eq!(delegated_parent_v1(HYBRID_CGROUP, false), None);
        // A controller hierarchy where systemd did not put us (no delegation there).
        let partial = HYBRID_CGROUP.replace("11:memory:/system.slice/paasd.service", "11:memory:/");
        assert_eq!(delegated_parent_v1(&partial, true), None);
        // Not a service (a login session), or the CI machine's own layout.
        let session =
            HYBRID_CGROUP.replace("system.slice/paasd.service", "user.slice/session-1.scope");
        assert_eq!(delegated_parent_v1(&session, true), None);
        assert_eq!(
            delegated_parent_v1(
                "9:name=systemd:/\n4:memory:/process_api/5781\n1:cpu:/\n0::/\n",
                true
            ),
            None
        );
        // Pure v2 has no v1 lines.
        assert_eq!(
            delegated_parent_v1("0::/system.slice/paasd.service/daemon\n", true),
            None
        );
    }
}
