//! Slugs on disk: `slugs/APP/ID.tar.gz` (the artifact, with its checksum) and `slugs/APP/ID/`
//! (the unpacked tree with `app/` inside, used read-only as an overlay layer by every
//! container of a release). Owns their paths, packing and removal; must not decide which
//! slugs are still needed (the store says so).

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::tarball::upload::hex;

#[derive(Debug, Clone)]
pub struct Slugs {
    root: PathBuf,
}

/// A packed slug before it has an id.
#[derive(Debug)]
pub struct Packed {
    pub tarball: PathBuf,
    pub sha256: String,
    pub bytes: u64,
}

impl Slugs {
    /// Slugs live under `root` (`STATE/slugs`, from `StatePaths::slugs`).
    pub fn new(root: &Path) -> Slugs {
        Slugs {
            root: root.to_path_buf(),
        }
    }

    pub fn app_dir(&self, app: &str) -> PathBuf {
        self.root.join(app)
    }

    /// The overlay layer of a slug: a directory holding `app/`.
    pub fn layer(&self, app: &str, id: i64) -> PathBuf {
        self.app_dir(app).join(id.to_string())
    }

    pub fn tarball(&self, app: &str, id: i64) -> PathBuf {
        self.app_dir(app).join(format!("{id}.tar.gz"))
    }

    /// Packs `app_dir` (the build's /app) as `app/...` into a temporary tarball beside the
    /// app's slugs. Symlinks are stored as symlinks.
    pub fn pack(&self, app: &str, app_dir: &Path) -> io::Result<Packed> {
        let dir = self.app_dir(app);
        fs::create_dir_all(&dir)?;
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let path = dir.join(format!(".packing-{}-{nanos}.tar.gz", std::process::id()));
        let file = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)?;
        let result = (|| {
            let hashing = Hashing {
                inner: io::BufWriter::new(file),
                hasher: Sha256::new(),
                bytes: 0,
            };
            let gz = flate2::write::GzEncoder::new(hashing, flate2::Compression::fast());
            let mut tar = tar::Builder::new(gz);
            tar.follow_symlinks(false);
            tar.append_dir_all("app", app_dir)?;
            let mut hashing = tar.into_inner()?.finish()?;
            hashing.inner.flush()?;
            hashing.inner.get_ref().sync_all()?;
            Ok(Packed {
                tarball: path.clone(),
                sha256: hex(&hashing.hasher.finalize()),
                bytes: hashing.bytes,
            })
        })();
        if result.is_err() {
            let _ = fs::remove_file(&path);
        }
        result
    }

    /// Gives a packed slug its id: the tarball and the build's /app move into place.
    pub fn store(&self, app: &str, id: i64, packed: &Packed, app_dir: &Path) -> io::Result<()> {
        fs::rename(&packed.tarball, self.tarball(app, id))?;
        let layer = self.layer(app, id);
        fs::create_dir(&layer)?;
        fs::set_permissions(&layer, std::os::unix::fs::PermissionsExt::from_mode(0o755))?;
        match fs::rename(app_dir, layer.join("app")) {
            // The build ran on a disk image of its own: the tree is copied over instead,
            // under a temporary name so that a half copy is never a slug's `app/`.
            Err(e) if e.raw_os_error() == Some(libc::EXDEV) => {
                let partial = layer.join(".app-copying");
                copy_tree(app_dir, &partial)?;
                fs::rename(partial, layer.join("app"))
            }
            r => r,
        }
    }

    /// Removes a slug's files; missing files are fine.
    pub fn remove(&self, app: &str, id: i64) {
        for r in [
            fs::remove_file(self.tarball(app, id)),
            fs::remove_dir_all(self.layer(app, id)),
        ] {
            if let Err(e) = r {
                if e.kind() != io::ErrorKind::NotFound {
                    tracing::warn!(app, id, error = %e, "could not remove a slug");
                }
            }
        }
    }

    /// Gives every file of the app's slugs to `uid` (and the group of the same number): an app
    /// made before uids were per app keeps running its releases, rollbacks included, as its
    /// new uid.
    pub fn reown(&self, app: &str, uid: u32) -> io::Result<()> {
        fn walk(p: &Path, uid: u32) -> io::Result<()> {
            std::os::unix::fs::lchown(p, Some(uid), Some(uid))?;
            if std::fs::symlink_metadata(p)?.is_dir() {
                for e in std::fs::read_dir(p)? {
                    walk(&e?.path(), uid)?;
                }
            }
            Ok(())
        }
        match std::fs::read_dir(self.app_dir(app)) {
            Ok(entries) => {
                for e in entries {
                    let e = e?;
                    // Slug dirs hold `app/`; the root of a slug stays root's.
                    let app_dir = e.path().join("app");
                    if app_dir.is_dir() {
                        walk(&app_dir, uid)?;
                    }
                }
                Ok(())
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Removes every slug of an app (it was destroyed).
    pub fn remove_app(&self, app: &str) {
        if let Err(e) = fs::remove_dir_all(self.app_dir(app)) {
            if e.kind() != io::ErrorKind::NotFound {
                tracing::warn!(app, error = %e, "could not remove the app's slugs");
            }
        }
    }
}

struct Hashing<W> {
    inner: W,
    hasher: Sha256,
    bytes: u64,
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Copies a tree with its modes, owners and symlinks (as links). Other file types (a
/// socket or fifo a build left) are not part of a slug.
fn copy_tree(from: &Path, to: &Path) -> io::Result<()> {
    use std::os::unix::fs::MetadataExt;
    let meta = fs::symlink_metadata(from)?;
    let ft = meta.file_type();
    if ft.is_symlink() {
        std::os::unix::fs::symlink(fs::read_link(from)?, to)?;
    } else if ft.is_dir() {
        fs::create_dir(to)?;
        for e in fs::read_dir(from)? {
            let e = e?;
            copy_tree(&e.path(), &to.join(e.file_name()))?;
        }
        fs::set_permissions(to, meta.permissions())?;
    } else if ft.is_file() {
        fs::copy(from, to)?;
    } else {
        return Ok(());
    }
    std::os::unix::fs::lchown(to, Some(meta.uid()), Some(meta.gid()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pack_and_store_round_trip() {
        let state = tempfile::tempdir().expect("tmp");
        let app = state.path().join("build-app");
        fs::create_dir_all(app.join("bin")).expect("mkdir");
        fs::write(app.join("bin/web"), "#!/bin/sh\necho hi\n").expect("write");
        std::os::unix::fs::symlink("/etc/passwd", app.join("link")).expect("symlink");
        let slugs = Slugs::new(&state.path().join("slugs"));
        let packed = slugs.pack("demo", &app).expect("pack");
        let bytes = fs::read(&packed.tarball).expect("read");
        assert_eq!(packed.bytes, bytes.len() as u64);
        assert_eq!(packed.sha256, hex(&Sha256::digest(&bytes)));
        slugs.store("demo", 7, &packed, &app).expect("store");
        assert!(slugs.tarball("demo", 7).is_file());
        assert_eq!(
            fs::read_to_string(slugs.layer("demo", 7).join("app/bin/web")).expect("moved"),
            "#!/bin/sh\necho hi\n"
        );
        // The symlink was stored, not followed.
        let mut names = Vec::new();
        let mut ar = tar::Archive::new(flate2::read::GzDecoder::new(&bytes[..]));
        for e in ar.entries().expect("entries") {
            let e = e.expect("entry");
            names.push((
                e.path().expect("path").display().to_string(),
                e.header().entry_type(),
            ));
        }
        assert!(
            names.contains(&("app/link".into(), tar::EntryType::Symlink)),
            "{names:?}"
        );
        slugs.remove("demo", 7);
        assert!(!slugs.layer("demo", 7).exists());
    }
}
