//! Builds a container's root filesystem from inside its new mount namespace: overlay of the
//! spec's layers, read-only host binds (the `host` stack), /proc (with
//! runc-style masked and read-only paths), read-only /sys, a minimal /dev, tmpfs /tmp and
//! /run, then `pivot_root`. Runs only in the helper's child, after `unshare(CLONE_NEWNS)`;
//! everything it mounts dies with the namespace, so the host never sees these mounts.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sys::stat::{makedev, mknod, Mode, SFlag};

use super::proto::{Base, Disk, Rootfs};

type StageError = (String, String);

fn err(stage: impl Into<String>, e: impl std::fmt::Display) -> StageError {
    (stage.into(), e.to_string())
}

/// Paths under /proc hidden behind /dev/null (files) or an empty read-only tmpfs (dirs).
const MASKED: &[&str] = &[
    "/proc/acpi",
    "/proc/asound",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
];
const READ_ONLY: &[&str] = &[
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

/// `before_sys` runs right before /sys is mounted: sysfs shows the network namespace of
/// whoever mounts it, and the container may enter its own only then.
pub fn setup(
    r: &Rootfs,
    before_sys: impl FnOnce() -> Result<(), StageError>,
) -> Result<(), StageError> {
    // paasd runs with umask 077; mount points made here (e.g. /etc/ssl for a bind) must be
    // traversable by the app user.
    nix::sys::stat::umask(Mode::from_bits_truncate(0o022));
    // Nothing we mount may propagate back to the host.
    mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REC | MsFlags::MS_PRIVATE,
        None::<&str>,
    )
    .map_err(|e| err("make mounts private", e))?;
    mount_disk(&r.disk)?;
    make_base(&r.disk.base(), &r.base)?;
    let t = &r.disk.root();
    std::fs::create_dir(t).map_err(|e| err(format!("mkdir {}", t.display()), e))?;
    mount_overlay(r)?;
    for b in &r.binds {
        bind(&b.source, &inside(t, &b.dest), b.writable)?;
    }
    mount_proc(t)?;
    mount_dev(t)?;
    // /tmp is part of the writable layer, so it counts against the disk size.
    bind(&r.disk.tmp(), &inside(t, "/tmp"), true)?;
    tmpfs(
        &inside(t, "/run"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
        "mode=755,size=16m",
    )?;
    before_sys()?;
    mount_sys(t)?;
    for p in MASKED {
        mask(&inside(t, p))?;
    }
    for p in READ_ONLY {
        let p = inside(t, p);
        if p.exists() {
            bind(&p, &p, false)?;
        }
    }
    pivot(t)
}

/// `dest` (absolute inside the container) as a host path under `target`.
fn inside(target: &Path, dest: &str) -> PathBuf {
    target.join(dest.trim_start_matches('/'))
}

/// The tmpfs every write goes to, and in it the overlay's upper and work dirs and /tmp.
fn mount_disk(d: &Disk) -> Result<(), StageError> {
    let data = match d.size_bytes {
        Some(n) => format!("mode=755,size={n}"),
        None => "mode=755".to_string(),
    };
    tmpfs(&d.mount, MsFlags::MS_NOSUID | MsFlags::MS_NODEV, &data)?;
    std::fs::create_dir(d.upper()).map_err(|e| err(format!("mkdir {}", d.upper().display()), e))?;
    for (dir, mode) in [(d.work(), 0o700), (d.tmp(), 0o1777)] {
        std::fs::create_dir(&dir).map_err(|e| err(format!("mkdir {}", dir.display()), e))?;
        // The umask (022) would clear the sticky bit; set the mode exactly.
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(mode))
            .map_err(|e| err(format!("chmod {}", dir.display()), e))?;
    }
    Ok(())
}

/// The instance's own layer on its disk (modes come from the umask, 022).
fn make_base(dir: &Path, b: &Base) -> Result<(), StageError> {
    let mkdir =
        |p: &Path| std::fs::create_dir(p).map_err(|e| err(format!("mkdir {}", p.display()), e));
    let (app, etc) = (dir.join("app"), dir.join("etc"));
    for d in [dir, &app, &etc] {
        mkdir(d)?;
    }
    nix::unistd::chown(
        &app,
        Some(nix::unistd::Uid::from_raw(b.app_uid)),
        Some(nix::unistd::Gid::from_raw(b.app_gid)),
    )
    .map_err(|e| err(format!("chown {}", app.display()), e))?;
    for (name, contents) in &b.etc {
        if name.contains('/') || name.starts_with('.') {
            return Err(err("base", format!("bad /etc file name {name:?}")));
        }
        let p = etc.join(name);
        std::fs::write(&p, contents).map_err(|e| err(format!("write {}", p.display()), e))?;
    }
    Ok(())
}

fn mount_overlay(r: &Rootfs) -> Result<(), StageError> {
    let (upper, work, base, target) = (r.disk.upper(), r.disk.work(), r.disk.base(), r.disk.root());
    let all = [&base]
        .into_iter()
        .chain(&r.lower)
        .chain([&upper, &work, &target]);
    for p in all {
        let s = p.to_string_lossy();
        if s.contains([',', ':']) {
            return Err(err("overlay", format!("path {s} contains ',' or ':'")));
        }
    }
    let lower: Vec<String> = [&base]
        .into_iter()
        .chain(&r.lower)
        .map(|p| p.display().to_string())
        .collect();
    let opts = format!(
        "lowerdir={},upperdir={},workdir={}",
        lower.join(":"),
        upper.display(),
        work.display()
    );
    mount(
        Some("overlay"),
        &target,
        Some("overlay"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
        Some(opts.as_str()),
    )
    .map_err(|e| err("mount overlay rootfs", e))
}

/// Bind-mounts `src` on `dst` (read-only unless `writable`; never setuid), creating the mount
/// point to match its type.
fn bind(src: &Path, dst: &Path, writable: bool) -> Result<(), StageError> {
    let meta = std::fs::metadata(src).map_err(|e| err(format!("bind {}", src.display()), e))?;
    if meta.is_dir() {
        std::fs::create_dir_all(dst).map_err(|e| err(format!("mkdir {}", dst.display()), e))?;
    } else if !dst.exists() {
        if let Some(d) = dst.parent() {
            std::fs::create_dir_all(d).map_err(|e| err(format!("mkdir {}", d.display()), e))?;
        }
        std::fs::write(dst, b"").map_err(|e| err(format!("create {}", dst.display()), e))?;
    }
    let stage = || format!("bind {}", src.display());
    mount(
        Some(src),
        dst,
        None::<&str>,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        None::<&str>,
    )
    .map_err(|e| err(stage(), e))?;
    let mut flags = MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_NOSUID | MsFlags::MS_NODEV;
    if !writable {
        flags |= MsFlags::MS_RDONLY;
    }
    mount(None::<&str>, dst, None::<&str>, flags, None::<&str>).map_err(|e| err(stage(), e))
}

fn tmpfs(dst: &Path, flags: MsFlags, data: &str) -> Result<(), StageError> {
    std::fs::create_dir_all(dst).map_err(|e| err(format!("mkdir {}", dst.display()), e))?;
    mount(Some("tmpfs"), dst, Some("tmpfs"), flags, Some(data))
        .map_err(|e| err(format!("mount tmpfs on {}", dst.display()), e))
}

fn mount_proc(t: &Path) -> Result<(), StageError> {
    let dst = inside(t, "/proc");
    std::fs::create_dir_all(&dst).map_err(|e| err("mkdir /proc", e))?;
    mount(
        Some("proc"),
        &dst,
        Some("proc"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        None::<&str>,
    )
    .map_err(|e| err("mount /proc", e))
}

fn mount_sys(t: &Path) -> Result<(), StageError> {
    let dst = inside(t, "/sys");
    std::fs::create_dir_all(&dst).map_err(|e| err("mkdir /sys", e))?;
    let flags = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC | MsFlags::MS_RDONLY;
    match mount(Some("sysfs"), &dst, Some("sysfs"), flags, None::<&str>) {
        Ok(()) => Ok(()),
        // Sharing the host's network namespace (builds) forbids a new sysfs: bind it read-only.
        Err(nix::errno::Errno::EPERM | nix::errno::Errno::EBUSY) => {
            bind(Path::new("/sys"), &dst, false)
        }
        Err(e) => Err(err("mount /sys", e)),
    }
}

fn mount_dev(t: &Path) -> Result<(), StageError> {
    let dev = inside(t, "/dev");
    tmpfs(
        &dev,
        MsFlags::MS_NOSUID | MsFlags::MS_STRICTATIME,
        "mode=755,size=65536k",
    )?;
    let rw = Mode::from_bits_truncate(0o666);
    for (name, major, minor) in [
        ("null", 1, 3),
        ("zero", 1, 5),
        ("full", 1, 7),
        ("random", 1, 8),
        ("urandom", 1, 9),
        ("tty", 5, 0),
    ] {
        let p = dev.join(name);
        mknod(&p, SFlag::S_IFCHR, rw, makedev(major, minor))
            .map_err(|e| err(format!("mknod /dev/{name}"), e))?;
        // mknod honours the umask; the nodes must be usable by the app user.
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o666))
            .map_err(|e| err(format!("chmod /dev/{name}"), e))?;
    }
    let pts = dev.join("pts");
    std::fs::create_dir_all(&pts).map_err(|e| err("mkdir /dev/pts", e))?;
    mount(
        Some("devpts"),
        &pts,
        Some("devpts"),
        MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC,
        Some("newinstance,ptmxmode=0666,mode=0620"),
    )
    .map_err(|e| err("mount /dev/pts", e))?;
    tmpfs(
        &dev.join("shm"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        "mode=1777,size=65536k",
    )?;
    for (link, to) in [
        ("ptmx", "pts/ptmx"),
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
    ] {
        std::os::unix::fs::symlink(to, dev.join(link))
            .map_err(|e| err(format!("symlink /dev/{link}"), e))?;
    }
    Ok(())
}

/// Hides a /proc or /sys path: /dev/null over files, an empty read-only tmpfs over dirs.
fn mask(p: &Path) -> Result<(), StageError> {
    let Ok(meta) = std::fs::metadata(p) else {
        return Ok(());
    };
    let r = if meta.is_dir() {
        mount(
            Some("tmpfs"),
            p,
            Some("tmpfs"),
            MsFlags::MS_RDONLY | MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
            Some("size=0"),
        )
    } else {
        mount(
            Some("/dev/null"),
            p,
            None::<&str>,
            MsFlags::MS_BIND,
            None::<&str>,
        )
    };
    r.map_err(|e| err(format!("mask {}", p.display()), e))
}

/// Makes `t` the root: pivot_root(".", ".") then detach the old root stacked beneath it.
fn pivot(t: &Path) -> Result<(), StageError> {
    nix::unistd::chdir(t).map_err(|e| err("chdir to rootfs", e))?;
    nix::unistd::pivot_root(".", ".").map_err(|e| err("pivot_root", e))?;
    umount2(".", MntFlags::MNT_DETACH).map_err(|e| err("detach old root", e))?;
    nix::unistd::chdir("/").map_err(|e| err("chdir /", e))
}
