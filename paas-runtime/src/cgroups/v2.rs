//! The cgroup v2 backend (unified hierarchy, the production target): `<root>/<parent>/<name>`.
//! It enables memory, cpu and pids in `<root>` and `<parent>` `cgroup.subtree_control`
//! (never disabling anything), writes limits and reads counters in `<parent>/<name>`, and
//! removes only directories it created. It must not touch sibling cgroups or move processes
//! other than the pids it is given.

use std::fs;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::sys::statfs::{statfs, CGROUP2_SUPER_MAGIC};

use super::{
    cpu_quota_us, create_new_dir, ensure_dir, io_error, keyed_u64, kill_until_empty,
    pids_events_max, read_optional, read_text, read_u64, refuse_self, remove_cgroup_dir,
    sigkill_all, union_pids, write_text, CgroupError, Limits, Stats, CPU_PERIOD_US, KILL_TIMEOUT,
};

/// Controllers every paas cgroup gets.
const CONTROLLERS: [&str; 3] = ["memory", "cpu", "pids"];

/// True if `root` is on a cgroup2 file system (false for a fake tree in a temp dir).
pub(super) fn is_cgroup2(root: &Path) -> Result<bool, CgroupError> {
    let st = statfs(root).map_err(|e| io_error("statfs", root, e.into()))?;
    Ok(st.filesystem_type() == CGROUP2_SUPER_MAGIC)
}

/// Fails unless `<root>/cgroup.controllers` offers memory, cpu and pids.
pub(super) fn check_controllers(root: &Path) -> Result<(), CgroupError> {
    let path = root.join("cgroup.controllers");
    let text = read_text(&path)?;
    let available: Vec<&str> = text.split_whitespace().collect();
    match CONTROLLERS.iter().find(|c| !available.contains(c)) {
        Some(controller) => Err(CgroupError::ControllerUnavailable { controller, path }),
        None => Ok(()),
    }
}

/// The v2 manager for one parent name.
#[derive(Debug)]
pub struct Hierarchy {
    root: PathBuf,
    parent: String,
    /// A plain directory tree standing in for cgroupfs (unit tests).
    emulated: bool,
}

impl Hierarchy {
    /// `parent` must already be validated.
    pub(super) fn new(root: &Path, parent: &str, emulated: bool) -> Hierarchy {
        Hierarchy {
            root: root.to_path_buf(),
            parent: parent.to_string(),
            emulated,
        }
    }

    pub(super) fn parent_dir(&self) -> PathBuf {
        self.root.join(&self.parent)
    }

    /// `name` and `limits` are already validated.
    pub(super) fn create(&self, name: &str, limits: &Limits) -> Result<Group, CgroupError> {
        check_controllers(&self.root)?;
        // Down from the root to the parent (e.g. `system.slice/paasd.service/apps` in the
        // subtree systemd delegated): only missing ones are added, so levels systemd already
        // set up are not written to.
        enable_controllers(&self.root)?;
        let mut level = self.root.clone();
        let parts: Vec<&str> = self.parent.split('/').collect();
        for part in &parts[..parts.len().saturating_sub(1)] {
            level.push(part);
            enable_controllers(&level)?;
        }
        let parent = self.parent_dir();
        ensure_dir(&parent)?;
        enable_controllers(&parent)?;
        // memory.swap.max exists in every non-root cgroup with memory enabled, unless the
        // kernel has no swap accounting; the parent tells without a write that could fail.
        let swap_control = parent.join("memory.swap.max").exists();
        let group = Group {
            dir: parent.join(name),
            emulated: self.emulated,
        };
        create_new_dir(&group.dir)?;
        if let Err(e) = group.apply(limits, swap_control) {
            if let Err(cleanup) = group.remove() {
                tracing::warn!(error = %cleanup, "cgroup cleanup after a failed create");
            }
            return Err(e);
        }
        Ok(group)
    }

    pub(super) fn open(&self, name: &str) -> Option<Group> {
        let dir = self.parent_dir().join(name);
        dir.is_dir().then_some(Group {
            dir,
            emulated: self.emulated,
        })
    }

    pub(super) fn remove_parent(&self) -> Result<(), CgroupError> {
        remove_dir(&self.parent_dir(), self.emulated)
    }
}

/// Adds the missing ones of [`CONTROLLERS`] to `<dir>/cgroup.subtree_control`.
fn enable_controllers(dir: &Path) -> Result<(), CgroupError> {
    let path = dir.join("cgroup.subtree_control");
    let current = read_optional(&path)?.unwrap_or_default();
    let enabled: Vec<&str> = current.split_whitespace().collect();
    let missing: Vec<String> = CONTROLLERS
        .iter()
        .filter(|c| !enabled.contains(c))
        .map(|c| format!("+{c}"))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    write_text(&path, &missing.join(" "))
}

/// Removes a cgroup directory. On a fake tree the interface files are regular files that
/// `rmdir` would trip over, so they go first (cgroupfs drops them by itself).
fn remove_dir(dir: &Path, emulated: bool) -> Result<(), CgroupError> {
    if emulated {
        let entries = match fs::read_dir(dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(io_error("list", dir, e)),
        };
        for entry in entries {
            let entry = entry.map_err(|e| io_error("list", dir, e))?;
            let path = entry.path();
            let file_type = entry.file_type().map_err(|e| io_error("stat", &path, e))?;
            if file_type.is_file() {
                fs::remove_file(&path).map_err(|e| io_error("remove", &path, e))?;
            }
        }
    }
    remove_cgroup_dir(dir)
}

/// One cgroup: `<root>/<parent>/<name>`.
#[derive(Debug)]
pub struct Group {
    dir: PathBuf,
    emulated: bool,
}

impl Group {
    pub(super) fn dir(&self) -> &Path {
        &self.dir
    }

    fn apply(&self, limits: &Limits, swap_control: bool) -> Result<(), CgroupError> {
        if let Some(bytes) = limits.memory_bytes {
            write_text(&self.dir.join("memory.max"), &bytes.to_string())?;
            if swap_control {
                write_text(&self.dir.join("memory.swap.max"), "0")?;
            }
        }
        if let Some(percent) = limits.cpu_percent {
            let value = format!("{} {CPU_PERIOD_US}", cpu_quota_us(percent));
            write_text(&self.dir.join("cpu.max"), &value)?;
        }
        if let Some(max) = limits.pids {
            write_text(&self.dir.join("pids.max"), &max.to_string())?;
        }
        Ok(())
    }

    pub(super) fn stats(&self) -> Result<Stats, CgroupError> {
        let cpu_stat = self.dir.join("cpu.stat");
        let usage_usec =
            keyed_u64(&cpu_stat, &read_text(&cpu_stat)?, "usage_usec")?.ok_or_else(|| {
                CgroupError::Parse {
                    path: cpu_stat.clone(),
                    reason: "no usage_usec line".into(),
                }
            })?;
        let peak_path = self.dir.join("memory.peak");
        let memory_peak = match read_optional(&peak_path)? {
            Some(text) => super::parse_u64(&peak_path, &text)?,
            None => 0,
        };
        let events = self.dir.join("memory.events");
        Ok(Stats {
            cpu_usage_ns: usage_usec.saturating_mul(1000),
            memory_current: read_u64(&self.dir.join("memory.current"))?,
            memory_peak,
            pids_current: read_u64(&self.dir.join("pids.current"))?,
            oom_kills: keyed_u64(&events, &read_text(&events)?, "oom_kill")?.unwrap_or(0),
        })
    }

    /// `max` of `pids.events`: how often this cgroup's `pids.max` refused a fork (counted
    /// in its descendants too, which a container cgroup has none of).
    pub(super) fn fork_failures(&self) -> Result<u64, CgroupError> {
        pids_events_max(&self.dir.join("pids.events"))
    }

    /// `cgroup.kill` (5.14+) when present; otherwise freeze, SIGKILL each pid, thaw. Then
    /// SIGKILL in a loop until `cgroup.procs` is empty.
    pub(super) fn kill_all(&self) -> Result<(), CgroupError> {
        self.kill_all_within(KILL_TIMEOUT)
    }

    fn kill_all_within(&self, timeout: Duration) -> Result<(), CgroupError> {
        let procs = [self.dir.join("cgroup.procs")];
        let pids = union_pids(&procs, true)?;
        if pids.is_empty() {
            return Ok(());
        }
        refuse_self(&pids, &self.dir)?;
        let kill_file = self.dir.join("cgroup.kill");
        let freeze = self.dir.join("cgroup.freeze");
        if kill_file.exists() {
            write_text(&kill_file, "1")?;
        } else if freeze.exists() {
            write_text(&freeze, "1")?;
            // A frozen task still dies of SIGKILL on v2; thaw in any case.
            let killed = union_pids(&procs, true).and_then(|p| sigkill_all(&p, &self.dir));
            let thawed = write_text(&freeze, "0");
            killed?;
            thawed?;
        }
        kill_until_empty(&procs, &self.dir, timeout)
    }

    pub(super) fn remove(&self) -> Result<(), CgroupError> {
        remove_dir(&self.dir, self.emulated)
    }
}

#[cfg(test)]
mod tests {
    use std::fs;
    use std::path::Path;
    use std::time::Duration;

    use super::super::{Cgroup, CgroupError, Cgroups, Inner, Limits};

    fn read(path: &Path) -> String {
        fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
    }

    /// A fake cgroup2 root: the files the kernel shows at the top of the hierarchy.
    fn fake_root() -> tempfile::TempDir {
        let dir = tempfile::tempdir().expect("tempdir");
        fs::write(
            dir.path().join("cgroup.controllers"),
            "cpuset cpu io memory hugetlb pids rdma misc\n",
        )
        .expect("controllers");
        fs::write(dir.path().join("cgroup.subtree_control"), "").expect("subtree_control");
        fs::write(dir.path().join("cgroup.procs"), "1\n").expect("procs");
        dir
    }

    fn all_limits() -> Limits {
        Limits {
            memory_bytes: Some(64 * 1024 * 1024),
            cpu_percent: Some(20),
            pids: Some(32),
            disk_bytes: None,
        }
    }

    #[test]
    fn fake_tree_is_emulated_and_kind_is_v2() {
        let root = fake_root();
        let cg = Cgroups::v2_at(root.path(), "paas").expect("v2_at");
        assert_eq!(cg.kind(), "v2");
        match &cg {
            Cgroups::V2(h) => assert!(h.emulated),
            Cgroups::V1(_) => panic!("expected v2"),
        }
        assert!(matches!(
            Cgroups::v2_at(root.path(), "../etc"),
            Err(CgroupError::InvalidName { .. })
        ));
    }

    #[test]
    fn create_enables_controllers_and_writes_limits() {
        let root = fake_root();
        let r = root.path();
        // The kernel would show memory.swap.max in the parent once memory is enabled.
        fs::create_dir(r.join("paas")).expect("parent");
        fs::write(r.join("paas/memory.swap.max"), "max\n").expect("swap.max");
        let cgs = Cgroups::v2_at(r, "paas").expect("v2_at");
        let cg = cgs.create("web.1", &all_limits()).expect("create");
        assert_eq!(cg.name(), "web.1");
        assert_eq!(
            read(&r.join("cgroup.subtree_control")),
            "+memory +cpu +pids"
        );
        assert_eq!(
            read(&r.join("paas/cgroup.subtree_control")),
            "+memory +cpu +pids"
        );
        let dir = r.join("paas/web.1");
        assert_eq!(cg.dirs(), vec![dir.clone()]);
        assert_eq!(read(&dir.join("memory.max")), "67108864");
        assert_eq!(read(&dir.join("memory.swap.max")), "0");
        assert_eq!(read(&dir.join("cpu.max")), "20000 100000");
        assert_eq!(read(&dir.join("pids.max")), "32");
        assert_eq!(cg.procs_files(), vec![dir.join("cgroup.procs")]);
        assert_eq!(cg.self_join_files(), vec![dir.join("cgroup.procs")]);
        assert_eq!(
            cgs.self_join_files("web.1").expect("files"),
            vec![dir.join("cgroup.procs")]
        );
        // Never touches the root's own processes.
        assert_eq!(read(&r.join("cgroup.procs")), "1\n");
    }

    #[test]
    fn create_without_swap_accounting_or_limits() {
        let root = fake_root();
        let r = root.path();
        let cgs = Cgroups::v2_at(r, "paas").expect("v2_at");
        let cg = cgs
            .create(
                "a",
                &Limits {
                    memory_bytes: Some(1 << 20),
                    ..Limits::default()
                },
            )
            .expect("create");
        let dir = r.join("paas/a");
        assert_eq!(read(&dir.join("memory.max")), "1048576");
        assert!(!dir.join("memory.swap.max").exists(), "no swap accounting");
        assert!(!dir.join("cpu.max").exists());
        cg.destroy().expect("destroy");

        let cg = cgs.create("b", &Limits::default()).expect("create");
        let names: Vec<String> = fs::read_dir(r.join("paas/b"))
            .expect("dir")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        assert!(names.is_empty(), "no limit files written: {names:?}");
        cg.destroy().expect("destroy");
    }

    #[test]
    fn enabled_controllers_are_not_rewritten() {
        let root = fake_root();
        let r = root.path();
        fs::write(r.join("cgroup.subtree_control"), "cpu io memory pids\n").expect("write");
        fs::create_dir(r.join("paas")).expect("parent");
        fs::write(r.join("paas/cgroup.subtree_control"), "memory\n").expect("write");
        let cgs = Cgroups::v2_at(r, "paas").expect("v2_at");
        cgs.create("x", &Limits::default()).expect("create");
        assert_eq!(
            read(&r.join("cgroup.subtree_control")),
            "cpu io memory pids\n"
        );
        assert_eq!(read(&r.join("paas/cgroup.subtree_control")), "+cpu +pids");
    }

    #[test]
    fn missing_controller_fails_before_creating_anything() {
        let root = fake_root();
        let r = root.path();
        fs::write(r.join("cgroup.controllers"), "cpu io memory\n").expect("write");
        let cgs = Cgroups::v2_at(r, "paas").expect("v2_at");
        match cgs.create("x", &all_limits()) {
            Err(CgroupError::ControllerUnavailable { controller, .. }) => {
                assert_eq!(controller, "pids")
            }
            other => panic!("expected ControllerUnavailable, got {other:?}"),
        }
        assert!(!r.join("paas").exists());
        assert_eq!(read(&r.join("cgroup.subtree_control")), "");
    }

    #[test]
    fn invalid_names_and_limits_write_nothing() {
        let root = fake_root();
        let r = root.path();
        let cgs = Cgroups::v2_at(r, "paas").expect("v2_at");
        for bad in ["..", ".", "a/b", "", "x y"] {
            assert!(matches!(
                cgs.create(bad, &Limits::default()),
                Err(CgroupError::InvalidName { .. })
            ));
            assert!(cgs.open(bad).is_none());
        }
        let zero_cpu = Limits {
            cpu_percent: Some(0),
            ..Limits::default()
        };
        assert!(matches!(
            cgs.create("ok", &zero_cpu),
            Err(CgroupError::InvalidLimit(_))
        ));
        assert!(!r.join("paas").exists());
        assert_eq!(read(&r.join("cgroup.subtree_control")), "");
    }

    #[test]
    fn create_twice_is_refused_and_keeps_the_first() {
        let root = fake_root();
        let r = root.path();
        let cgs = Cgroups::v2_at(r, "paas").expect("v2_at");
        let _first = cgs.create("web.1", &all_limits()).expect("create");
        assert!(matches!(
            cgs.create("web.1", &Limits::default()),
            Err(CgroupError::Exists { .. })
        ));
        assert_eq!(read(&r.join("paas/web.1/memory.max")), "67108864");
    }

    #[test]
    fn stats_parse_kernel_formats() {
        let root = fake_root();
        let r = root.path();
        let cgs = Cgroups::v2_at(r, "paas").expect("v2_at");
        let cg = cgs.create("web.1", &all_limits()).expect("create");
        let dir = r.join("paas/web.1");
        fs::write(
            dir.join("cpu.stat"),
            "usage_usec 1234567\nuser_usec 1000000\nsystem_usec 234567\n\
             nr_periods 10\nnr_throttled 2\nthrottled_usec 5000\n",
        )
        .expect("write");
        fs::write(dir.join("memory.current"), "1048576\n").expect("write");
        fs::write(dir.join("pids.current"), "3\n").expect("write");
        fs::write(
            dir.join("memory.events"),
            "low 0\nhigh 0\nmax 12\noom 1\noom_kill 0\noom_group_kill 0\n",
        )
        .expect("write");
        let s = cg.stats().expect("stats");
        assert_eq!(s.cpu_usage_ns, 1_234_567_000);
        assert_eq!(s.memory_current, 1_048_576);
        assert_eq!(s.memory_peak, 0, "no memory.peak before 5.19");
        assert_eq!(s.pids_current, 3);
        assert_eq!(s.oom_kills, 0);
        assert!(!cg.oom_killed().expect("oom"));

        fs::write(dir.join("memory.peak"), "2097152\n").expect("write");
        fs::write(
            dir.join("memory.events"),
            "low 0\nhigh 0\nmax 40\noom 2\noom_kill 2\noom_group_kill 0\n",
        )
        .expect("write");
        let s = cg.stats().expect("stats");
        assert_eq!(s.memory_peak, 2_097_152);
        assert_eq!(s.oom_kills, 2);
        assert!(cg.oom_killed().expect("oom"));

        fs::write(dir.join("memory.current"), "lots\n").expect("write");
        match cg.stats() {
            Err(CgroupError::Parse { path, .. }) => assert_eq!(path, dir.join("memory.current")),
            other => panic!("expected a parse error, got {other:?}"),
        }
        fs::write(dir.join("memory.current"), "1\n").expect("write");
        fs::write(dir.join("cpu.stat"), "nr_periods 10\n").expect("write");
        assert!(matches!(cg.stats(), Err(CgroupError::Parse { .. })));
    }

    #[test]
    fn fork_failures_read_the_max_counter_of_pids_events() {
        let root = fake_root();
        let r = root.path();
        let cgs = Cgroups::v2_at(r, "paas").expect("v2_at");
        let cg = cgs.create("web.1", &all_limits()).expect("create");
        let events = r.join("paas/web.1/pids.events");
        // Before the kernel made the file (or on one without it): nothing refused.
        let _ = fs::remove_file(&events);
        assert_eq!(cg.fork_failures().expect("absent file"), 0);
        fs::write(&events, "max 0\n").expect("write");
        assert_eq!(cg.fork_failures().expect("zero"), 0);
        // 6.14+ may add lines after `max`; only `max` counts.
        fs::write(&events, "max 37\nmax.imposed 0\n").expect("write");
        assert_eq!(cg.fork_failures().expect("37"), 37);
        fs::write(&events, "max lots\n").expect("write");
        assert!(matches!(cg.fork_failures(), Err(CgroupError::Parse { .. })));
    }

    #[test]
    fn add_pid_and_pids() {
        let root = fake_root();
        let r = root.path();
        let cgs = Cgroups::v2_at(r, "paas").expect("v2_at");
        let cg = cgs.create("web.1", &Limits::default()).expect("create");
        cg.add_pid(4242).expect("add");
        let procs = r.join("paas/web.1/cgroup.procs");
        assert_eq!(read(&procs), "4242");
        assert_eq!(cg.pids().expect("pids"), vec![4242]);
        assert!(matches!(cg.add_pid(0), Err(CgroupError::InvalidPid(0))));
        assert!(matches!(cg.add_pid(-1), Err(CgroupError::InvalidPid(-1))));
        fs::write(&procs, "7\n3\n").expect("write");
        assert_eq!(cg.pids().expect("pids"), vec![3, 7]);
        // Our own pid inside: refuse rather than kill ourselves.
        fs::write(&procs, format!("{}\n", std::process::id())).expect("write");
        assert!(matches!(
            cg.kill_all(),
            Err(CgroupError::ContainsSelf { .. })
        ));
        fs::write(&procs, "").expect("write");
        cg.destroy().expect("destroy");
    }

    #[test]
    fn kill_all_on_empty_cgroup() {
        let root = fake_root();
        let r = root.path();
        let cgs = Cgroups::v2_at(r, "paas").expect("v2_at");
        let cg = cgs.create("web.1", &Limits::default()).expect("create");
        let dir = r.join("paas/web.1");
        fs::write(dir.join("cgroup.procs"), "").expect("write");
        cg.kill_all().expect("kill_all without cgroup.kill");
        fs::write(dir.join("cgroup.kill"), "").expect("write");
        cg.kill_all().expect("kill_all with cgroup.kill");
        assert_eq!(
            read(&dir.join("cgroup.kill")),
            "",
            "nothing to kill, not written"
        );
    }

    fn within(cg: &Cgroup, timeout: Duration) -> Result<(), CgroupError> {
        match &cg.inner {
            Inner::V2(g) => g.kill_all_within(timeout),
            Inner::V1(_) => panic!("expected v2"),
        }
    }

    #[test]
    fn kill_all_kills_a_real_process_listed_in_a_fake_tree() {
        let root = fake_root();
        let r = root.path();
        let cgs = Cgroups::v2_at(r, "paas").expect("v2_at");
        let cg = cgs.create("web.1", &Limits::default()).expect("create");
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .expect("spawn sleep");
        let pid = i32::try_from(child.id()).expect("pid");
        cg.add_pid(pid).expect("add");
        let dir = r.join("paas/web.1");
        fs::write(dir.join("cgroup.freeze"), "0").expect("write");
        // The fake procs file never empties by itself: kill_all must time out, having
        // frozen, killed and thawed.
        let err = within(&cg, Duration::from_millis(300)).expect_err("fake procs never empties");
        assert!(matches!(err, CgroupError::NotEmpty { ref pids, .. } if pids == &[pid]));
        assert_eq!(read(&dir.join("cgroup.freeze")), "0", "thawed again");
        let status = child.wait().expect("wait");
        assert!(status.code().is_none(), "killed by a signal: {status:?}");
        fs::write(dir.join("cgroup.procs"), "").expect("write");
        cg.destroy().expect("destroy");
    }

    #[test]
    fn open_list_destroy_remove_parent() {
        let root = fake_root();
        let r = root.path();
        let cgs = Cgroups::v2_at(r, "paas").expect("v2_at");
        assert_eq!(
            cgs.list().expect("list"),
            Vec::<String>::new(),
            "no parent yet"
        );
        assert!(cgs.open("web.1").is_none());
        cgs.create("web.1", &all_limits()).expect("create");
        cgs.create("worker.1", &Limits::default()).expect("create");
        // Interface files in the parent are not children.
        assert_eq!(cgs.list().expect("list"), vec!["web.1", "worker.1"]);
        let cg = cgs.open("web.1").expect("open");
        assert_eq!(cg.name(), "web.1");
        assert!(cgs.remove_parent().is_err(), "children left");
        cg.destroy().expect("destroy");
        assert!(!r.join("paas/web.1").exists());
        assert!(cgs.open("web.1").is_none());
        cgs.open("worker.1")
            .expect("open")
            .destroy()
            .expect("destroy");
        assert_eq!(cgs.list().expect("list"), Vec::<String>::new());
        cgs.remove_parent().expect("remove_parent");
        assert!(!r.join("paas").exists());
        cgs.remove_parent().expect("absent parent is fine");
        assert!(r.join("cgroup.controllers").exists(), "root untouched");
    }

    #[test]
    fn a_delegated_parent_enables_controllers_down_its_path_and_removes_only_itself() {
        let root = fake_root();
        let r = root.path();
        // What systemd set up: the slice and the unit with its `daemon` subgroup.
        let unit = r.join("system.slice/paasd.service");
        fs::create_dir_all(unit.join("daemon")).expect("unit");
        fs::write(r.join("cgroup.subtree_control"), "cpu memory pids\n").expect("root");
        fs::write(
            r.join("system.slice/cgroup.subtree_control"),
            "cpu memory pids\n",
        )
        .expect("slice");
        fs::write(unit.join("cgroup.subtree_control"), "").expect("unit");
        let cgs = Cgroups::v2_at(r, "system.slice/paasd.service/apps").expect("v2_at");
        cgs.create("web.1", &all_limits()).expect("create");
        assert!(unit.join("apps/web.1").is_dir());
        assert_eq!(
            read(&unit.join("cgroup.subtree_control")),
            "+memory +cpu +pids",
            "the unit hands the controllers down to apps"
        );
        assert_eq!(
            read(&r.join("system.slice/cgroup.subtree_control")),
            "cpu memory pids\n",
            "levels that have them are not written"
        );
        cgs.open("web.1").expect("open").destroy().expect("destroy");
        cgs.remove_parent().expect("remove_parent");
        assert!(!unit.join("apps").exists());
        assert!(
            unit.join("daemon").is_dir(),
            "the daemon's own cgroup stays"
        );
        assert!(Cgroups::v2_at(r, "system.slice/../etc").is_err());
        assert!(Cgroups::v2_at(r, "/abs").is_err());
    }
}
