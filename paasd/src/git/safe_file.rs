//! Reading and replacing a file in a directory a less trusted user owns (the git user's
//! `~/.ssh`), as root, without following anything that user may have planted: the directory
//! is opened `O_NOFOLLOW`, the file read `O_NOFOLLOW`, the new content written to a fresh
//! `O_EXCL` name, owned and moded through its descriptor, and renamed over the old one
//! inside that same directory handle. Must not be used for paths whose parents the user
//! controls (only the last directory component is protected).

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::OwnedFd;
use std::path::Path;

use nix::fcntl::{openat, renameat, OFlag, AT_FDCWD};
use nix::sys::stat::Mode;
use nix::unistd::{unlinkat, UnlinkatFlags};

fn dir_fd(dir: &Path) -> io::Result<OwnedFd> {
    openat(
        AT_FDCWD,
        dir,
        OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC | OFlag::O_RDONLY,
        Mode::empty(),
    )
    .map_err(|e| refuse_link(e, dir))
}

fn refuse_link(e: nix::errno::Errno, path: &Path) -> io::Error {
    if e == nix::errno::Errno::ELOOP || e == nix::errno::Errno::ENOTDIR {
        io::Error::other(format!(
            "{} is a symbolic link or not what paasd expects there; refusing to follow it",
            path.display()
        ))
    } else {
        io::Error::from(e)
    }
}

/// The file's text, or `None` when it does not exist. A symlink is an error.
pub fn read(dir: &Path, name: &str) -> io::Result<Option<String>> {
    let d = dir_fd(dir)?;
    match openat(
        &d,
        name,
        OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::empty(),
    ) {
        Ok(fd) => {
            let mut text = String::new();
            File::from(fd).take(16 << 20).read_to_string(&mut text)?;
            Ok(Some(text))
        }
        Err(nix::errno::Errno::ENOENT) => Ok(None),
        Err(e) => Err(refuse_link(e, &dir.join(name))),
    }
}

/// Replaces `dir/name` with `content`, mode `mode`, owned by `uid:gid`, atomically.
pub fn replace(
    dir: &Path,
    name: &str,
    content: &[u8],
    mode: u32,
    uid: u32,
    gid: u32,
) -> io::Result<()> {
    let d = dir_fd(dir)?;
    let tmp = format!(".{name}.paas-new");
    // Whatever sits under the temp name (a leftover, or a planted link) goes; unlink removes
    // a link itself, never its target.
    match unlinkat(&d, tmp.as_str(), UnlinkatFlags::NoRemoveDir) {
        Ok(()) | Err(nix::errno::Errno::ENOENT) => {}
        Err(e) => return Err(e.into()),
    }
    let fd = openat(
        &d,
        tmp.as_str(),
        OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::from_bits_truncate(0o600),
    )?;
    let mut f = File::from(fd);
    f.write_all(content)?;
    f.set_permissions(std::os::unix::fs::PermissionsExt::from_mode(mode))?;
    std::os::unix::fs::fchown(&f, Some(uid), Some(gid))?;
    f.sync_all()?;
    drop(f);
    renameat(&d, tmp.as_str(), &d, name)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_and_refuses_links() {
        let dir = tempfile::tempdir().expect("dir");
        let me = (
            nix::unistd::getuid().as_raw(),
            nix::unistd::getgid().as_raw(),
        );
        assert_eq!(read(dir.path(), "k").expect("read"), None);
        replace(dir.path(), "k", b"one\n", 0o600, me.0, me.1).expect("write");
        assert_eq!(
            read(dir.path(), "k").expect("read").as_deref(),
            Some("one\n")
        );

        // A link planted under the temp name is removed, not written through.
        let victim = dir.path().join("victim");
        std::fs::write(&victim, "keep").expect("victim");
        std::os::unix::fs::symlink(&victim, dir.path().join(".k.paas-new")).expect("link");
        replace(dir.path(), "k", b"two\n", 0o600, me.0, me.1).expect("write");
        assert_eq!(std::fs::read_to_string(&victim).expect("victim"), "keep");
        assert_eq!(
            read(dir.path(), "k").expect("read").as_deref(),
            Some("two\n")
        );

        // The file itself, or the directory, as a link: refused.
        std::fs::remove_file(dir.path().join("k")).expect("rm");
        std::os::unix::fs::symlink(&victim, dir.path().join("k")).expect("link");
        assert!(read(dir.path(), "k").is_err());
        let linked = dir.path().join("linked-dir");
        std::os::unix::fs::symlink(dir.path(), &linked).expect("dir link");
        assert!(replace(&linked, "x", b"", 0o600, me.0, me.1).is_err());
        assert!(!dir.path().join("x").exists());
    }
}
