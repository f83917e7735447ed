//! The API socket's lifecycle: refuse to start when another paasd answers on it, replace a
//! stale one, create it with its final owner and mode before it becomes visible (bind to a
//! temporary name, chmod/chown, rename), and remove it on exit only if it is still ours.

use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum SocketError {
    #[error("another paasd is already listening on {}", .0.display())]
    InUse(PathBuf),
    #[error("{} exists and is not a socket; refusing to replace it", .0.display())]
    NotASocket(PathBuf),
    #[error("socket {}: {source}", .path.display())]
    Io { path: PathBuf, source: io::Error },
}

/// Removes the socket path on drop if the path still names the socket we bound.
pub struct SocketGuard {
    path: PathBuf,
    ino: u64,
    kept: bool,
}

impl SocketGuard {
    /// Leaves the socket file in place: paasd is restarting, and the socket lives on in
    /// systemd's fd store for the next paasd.
    pub fn keep(mut self) {
        self.kept = true;
    }
}

impl Drop for SocketGuard {
    fn drop(&mut self) {
        if !self.kept && std::fs::metadata(&self.path).is_ok_and(|m| m.ino() == self.ino) {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// Binds the socket; the listener goes to the accept loop (closing it stops new connections
/// at once), the guard stays with the daemon until exit.
pub fn bind(path: &Path, group: &str) -> Result<(UnixListener, SocketGuard), SocketError> {
    let io_err = |p: &Path| {
        let p = p.to_path_buf();
        move |source| SocketError::Io { path: p, source }
    };
    if let Some(dir) = path.parent().filter(|d| !d.exists()) {
        // Group members must be able to traverse to the socket; only chmod what we created.
        std::fs::create_dir_all(dir).map_err(io_err(dir))?;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755))
            .map_err(io_err(dir))?;
    }
    match std::fs::symlink_metadata(path) {
        Ok(m) if !m.file_type().is_socket() => {
            return Err(SocketError::NotASocket(path.to_path_buf()))
        }
        Ok(_) => match UnixStream::connect(path) {
            Ok(_) => return Err(SocketError::InUse(path.to_path_buf())),
            Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
                tracing::info!(path = %path.display(), "removing stale socket");
                std::fs::remove_file(path).map_err(io_err(path))?;
            }
            Err(e) => return Err(io_err(path)(e)),
        },
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(io_err(path)(e)),
    }

    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "paasd.sock".into());
    let tmp = path.with_file_name(format!(".{name}.{}.tmp", std::process::id()));
    let _ = std::fs::remove_file(&tmp);
    let listener = UnixListener::bind(&tmp).map_err(io_err(&tmp))?;
    let finish = || -> io::Result<u64> {
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o660))?;
        match nix::unistd::Group::from_name(group) {
            Ok(Some(g)) => {
                if let Err(e) = nix::unistd::chown(&tmp, None, Some(g.gid)) {
                    tracing::warn!(group, error = %e, "cannot give the API socket to its group");
                }
            }
            _ => tracing::warn!(
                group,
                "group does not exist; the API socket is usable by root only"
            ),
        }
        std::fs::rename(&tmp, path)?;
        Ok(std::fs::metadata(path)?.ino())
    };
    match finish() {
        Ok(ino) => {
            listener.set_nonblocking(true).map_err(io_err(path))?;
            Ok((
                listener,
                SocketGuard {
                    path: path.to_path_buf(),
                    ino,
                    kept: false,
                },
            ))
        }
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            Err(io_err(path)(e))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn live_is_refused_stale_is_replaced_files_are_kept() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("s.sock");
        let live = bind(&path, "no-such-group-xyz").expect("bind");
        let mode = std::fs::metadata(&path).expect("meta").permissions().mode() & 0o777;
        assert_eq!(mode, 0o660);
        assert!(matches!(
            bind(&path, "no-such-group-xyz"),
            Err(SocketError::InUse(_))
        ));
        drop(live);
        assert!(!path.exists(), "socket removed on drop");

        // A crashed daemon leaves the path behind: std's listener does not unlink on drop.
        drop(UnixListener::bind(&path).expect("stale"));
        assert!(path.exists());
        let again = bind(&path, "no-such-group-xyz").expect("stale socket replaced");
        drop(again);

        std::fs::write(&path, b"precious").expect("write");
        assert!(matches!(
            bind(&path, "no-such-group-xyz"),
            Err(SocketError::NotASocket(_))
        ));
        assert_eq!(std::fs::read(&path).expect("read"), b"precious");
    }
}
