//! Disk quotas as sparse ext4 images, loop-mounted. A build's: `[build] disk_mb`, over the
//! build's scratch dir (the source that becomes the slug, the buildpack copies) and another,
//! kept between builds, over the app's build cache. Kept ones (add-on data, app volumes):
//! with a journal, mounted until removed, across paasd restarts. Writes beyond one fail with
//! ENOSPC inside its users, and the host loses at most its size (the image is sparse: only
//! what is written takes space). ext4 images rather than project quotas, which need mount
//! options on the state dir's file system (`prjquota` on xfs, the `quota` feature on ext4);
//! rather than tmpfs, because what is written there is kept and its size would count
//! against memory. Making one and mounting it costs ~15 ms (`bench/disk.sh`: a 256 MB tmpfs
//! 0.24 ms, plain dirs 0.48 ms), nothing next to a build, but three times a container start:
//! instances' writable layers are tmpfs. Owns making, mounting and unmounting images and
//! finding the mounts a crashed paasd left; must not know what is put there.

use std::io;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

#[derive(Debug, thiserror::Error)]
pub enum DiskError {
    #[error("{what} {}: {source}", .path.display())]
    Io {
        what: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    #[error("{command} failed: {detail}")]
    Command { command: String, detail: String },
}

/// A mounted image; unmounted (and the image removed unless it is kept) on drop.
#[derive(Debug)]
pub struct Disk {
    mount: PathBuf,
    image: PathBuf,
    /// The cache's image outlives the build; a scratch dir's does not.
    keep_image: bool,
    mounted: bool,
}

/// Mounts `image` (made first if missing: `size` bytes, root dir owned by `uid`) over
/// `mount`, which must exist. `Ok(None)`: the host has no `mkfs.ext4` (install e2fsprogs);
/// the caller decides what a build without a quota means.
pub fn mount(
    image: &Path,
    mount: &Path,
    size: u64,
    uid: u32,
    keep_image: bool,
) -> Result<Option<Disk>, DiskError> {
    if !make_and_mount(image, mount, size, uid, false)? {
        return Ok(None);
    }
    Ok(Some(Disk {
        mount: mount.to_path_buf(),
        image: image.to_path_buf(),
        keep_image,
        mounted: true,
    }))
}

/// A sparse file of `size` bytes formatted as ext4, with a journal only when what it holds
/// must survive a crash (a build's need not), no reserved blocks, inode tables initialised
/// lazily. False when `mkfs.ext4` is missing.
fn make(image: &Path, size: u64, uid: u32, journal: bool) -> Result<bool, DiskError> {
    let io_err = |what| {
        let path = image.to_path_buf();
        move |source| DiskError::Io { what, path, source }
    };
    let f = std::fs::File::create(image).map_err(io_err("creating the image"))?;
    f.set_len(size).map_err(io_err("sizing the image"))?;
    drop(f);
    let made = Command::new("mkfs.ext4")
        .args(["-q", "-F", "-m", "0"])
        .args(if journal {
            &[][..]
        } else {
            &["-O", "^has_journal"][..]
        })
        .arg("-E")
        .arg(format!(
            "lazy_itable_init=1,lazy_journal_init=1,root_owner={uid}:{uid}"
        ))
        .arg(image)
        .stdin(Stdio::null())
        .output();
    match made {
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            let _ = std::fs::remove_file(image);
            Ok(false)
        }
        Err(e) => {
            let _ = std::fs::remove_file(image);
            Err(DiskError::Command {
                command: "mkfs.ext4".into(),
                detail: e.to_string(),
            })
        }
        Ok(out) if !out.status.success() => {
            let _ = std::fs::remove_file(image);
            Err(DiskError::Command {
                command: "mkfs.ext4".into(),
                detail: String::from_utf8_lossy(&out.stderr).trim().to_string(),
            })
        }
        Ok(_) => Ok(true),
    }
}

/// Mounts a kept image (made first with a journal if missing, grown when `size` is larger)
/// over `mount` unless it is mounted there already (by an earlier paasd: kept mounts outlive
/// it, as the containers using them do). `Ok(false)`: the host has no `mkfs.ext4`.
pub fn mount_kept(image: &Path, mount: &Path, size: u64, uid: u32) -> Result<bool, DiskError> {
    if is_mounted(mount) {
        return Ok(true);
    }
    make_and_mount(image, mount, size, uid, true)
}

/// Makes `image` unless it exists (grown to `size` if it is smaller), and mounts it over
/// `mount`. False when `mkfs.ext4` is missing.
fn make_and_mount(
    image: &Path,
    mount: &Path,
    size: u64,
    uid: u32,
    journal: bool,
) -> Result<bool, DiskError> {
    if !image.exists() {
        if !make(image, size, uid, journal)? {
            return Ok(false);
        }
    } else {
        grow(image, size)?;
    }
    run(Command::new("mount")
        .args(["-t", "ext4", "-o", "loop,nosuid,nodev,noatime"])
        .arg(image)
        .arg(mount))?;
    Ok(true)
}

/// Whether something is mounted exactly at `path`.
pub fn is_mounted(path: &Path) -> bool {
    std::fs::read_to_string("/proc/self/mountinfo")
        .is_ok_and(|info| mount_points(&info).iter().any(|p| p == path))
}

/// Bytes used and the size of the file system mounted at `path`.
pub fn usage(path: &Path) -> Option<(u64, u64)> {
    let st = nix::sys::statvfs::statvfs(path).ok()?;
    let frag = st.fragment_size();
    let total = st.blocks() * frag;
    Some((total.saturating_sub(st.blocks_free() * frag), total))
}

/// A kept image made under a smaller `[build] disk_mb` is grown to the new size (ext4
/// grows unmounted with resize2fs); a larger one is left as it is.
fn grow(image: &Path, size: u64) -> Result<(), DiskError> {
    let now = std::fs::metadata(image)
        .map_err(|source| DiskError::Io {
            what: "reading",
            path: image.to_path_buf(),
            source,
        })?
        .len();
    if now >= size {
        return Ok(());
    }
    std::fs::OpenOptions::new()
        .write(true)
        .open(image)
        .and_then(|f| f.set_len(size))
        .map_err(|source| DiskError::Io {
            what: "growing",
            path: image.to_path_buf(),
            source,
        })?;
    run(Command::new("resize2fs").arg("-f").arg(image))
}

fn run(cmd: &mut Command) -> Result<(), DiskError> {
    let shown = format!("{cmd:?}");
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|e| DiskError::Command {
            command: shown.clone(),
            detail: e.to_string(),
        })?;
    if !out.status.success() {
        return Err(DiskError::Command {
            command: shown,
            detail: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(())
}

impl Disk {
    /// Less than a megabyte is left: "the build filled its disk".
    pub fn full(&self) -> bool {
        nix::sys::statvfs::statvfs(&self.mount)
            .is_ok_and(|st| st.blocks_available() * st.fragment_size() < 1 << 20)
    }

    /// Unmounts (blocking). The loop device goes with it (`mount -o loop` sets autoclear).
    pub fn unmount(mut self) {
        self.release();
    }

    fn release(&mut self) {
        if self.mounted {
            self.mounted = false;
            unmount_path(&self.mount);
        }
        if !self.keep_image {
            if let Err(e) = std::fs::remove_file(&self.image) {
                if e.kind() != io::ErrorKind::NotFound {
                    tracing::warn!(image = %self.image.display(), error = %e, "could not remove a build disk image");
                }
            }
        }
    }
}

impl Drop for Disk {
    fn drop(&mut self) {
        self.release();
    }
}

/// Lazily: a process of the build still holding a file must not keep the mount (and the
/// state dir) busy; the file system goes when its last user does.
pub fn unmount_path(p: &Path) {
    if let Err(e) = run(Command::new("umount").arg("-l").arg(p)) {
        tracing::warn!(mount = %p.display(), error = %e, "could not unmount a disk image");
    }
}

/// Unmounts every mount under one of `roots` (what a crashed paasd left mounted).
pub fn unmount_leftovers(roots: &[PathBuf]) {
    let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return;
    };
    for point in mount_points(&info) {
        if roots.iter().any(|r| point.starts_with(r) && point != *r) {
            tracing::info!(mount = %point.display(), "unmounting a build disk left by a previous paasd");
            unmount_path(&point);
        }
    }
}

/// Mount points of `/proc/self/mountinfo` (field 5; spaces and the like octal-escaped).
fn mount_points(info: &str) -> Vec<PathBuf> {
    info.lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(|p| PathBuf::from(unescape(p)))
        .collect()
}

fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 3 < b.len() && b[i + 1..i + 4].iter().all(u8::is_ascii_digit) {
            let oct = std::str::from_utf8(&b[i + 1..i + 4])
                .ok()
                .and_then(|o| u8::from_str_radix(o, 8).ok());
            if let Some(c) = oct {
                out.push(c);
                i += 4;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_points_are_unescaped() {
        let info = "36 25 0:31 / /var/lib/paas/builds/a\\040b rw,relatime - ext4 /dev/loop3 rw\n\
                    37 25 0:32 / /proc rw - proc proc rw\n";
        assert_eq!(
            mount_points(info),
            [
                PathBuf::from("/var/lib/paas/builds/a b"),
                PathBuf::from("/proc")
            ]
        );
    }
}
