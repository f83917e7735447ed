//! The built-in `host` stack: a skeleton directory (the overlay's bottom layer) plus read-only
//! binds of the host's /usr, /bin, /lib*. The /etc files programs need (certificates, loader
//! config, alternatives) are copied into the skeleton each time paasd starts: a few hundred
//! KB once, instead of ~40 mount calls on every container start. Owns which host paths a
//! container may see; must not mount anything itself (the helper does, inside the container).

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use super::proto::Bind;
use super::RuntimeError;

/// Top-level host paths shown read-only. On merged-/usr hosts most are symlinks into /usr,
/// which the skeleton reproduces instead of binding.
const ROOT_DIRS: &[&str] = &["usr", "bin", "sbin", "lib", "lib32", "lib64", "libx32"];

/// /etc entries programs expect; the rest of the host's /etc (shadow, ssh keys...) stays out.
const ETC: &[&str] = &[
    "alternatives",
    "bash.bashrc",
    "ca-certificates",
    "ca-certificates.conf",
    "debian_version",
    "gai.conf",
    "host.conf",
    "inputrc",
    "ld.so.cache",
    "ld.so.conf",
    "ld.so.conf.d",
    "localtime",
    "mime.types",
    "nsswitch.conf",
    "os-release",
    "profile",
    "protocols",
    "services",
    "ssl",
    "timezone",
];

const SKELETON_DIRS: &[&str] = &[
    "app", "dev", "etc", "home", "proc", "run", "sys", "tmp", "var", "var/tmp", "root",
];

/// A root filesystem containers run on: the built-in `host` stack, or a rootfs directory
/// (debootstrap output, an unpacked image) named in the config.
pub enum Stack {
    Host(HostStack),
    Rootfs(RootfsStack),
}

impl Stack {
    /// The overlay's bottom layer.
    pub fn lower(&self) -> &Path {
        match self {
            Stack::Host(h) => h.skeleton(),
            Stack::Rootfs(r) => &r.root,
        }
    }

    pub fn binds(&self) -> &[Bind] {
        match self {
            Stack::Host(h) => h.binds(),
            Stack::Rootfs(r) => &r.binds,
        }
    }
}

/// A foreign root filesystem. It gets the host's CA certificates bound in read-only, so
/// builds trust what the host trusts (a TLS-intercepting proxy, a private CA).
pub struct RootfsStack {
    root: PathBuf,
    binds: Vec<Bind>,
}

impl RootfsStack {
    pub fn open(root: &Path) -> Result<RootfsStack, RuntimeError> {
        let meta = std::fs::metadata(root).map_err(|source| RuntimeError::Io {
            path: root.to_path_buf(),
            source,
        })?;
        let looks_like_root = meta.is_dir()
            && ["bin", "usr/bin"]
                .iter()
                .any(|d| root.join(d).join("sh").exists() || root.join(d).is_dir());
        if !looks_like_root {
            return Err(RuntimeError::Setup {
                stage: "stack".into(),
                error: format!(
                    "{} is not a root filesystem (no bin/ or usr/bin/)",
                    root.display()
                ),
            });
        }
        let binds = ["/etc/ssl/certs", "/usr/share/ca-certificates"]
            .iter()
            .filter(|p| Path::new(p).is_dir())
            .map(|p| Bind {
                source: PathBuf::from(p),
                dest: p.to_string(),
                writable: false,
            })
            .collect();
        Ok(RootfsStack {
            root: root.to_path_buf(),
            binds,
        })
    }
}

pub struct HostStack {
    skeleton: PathBuf,
    binds: Vec<Bind>,
}

impl HostStack {
    /// Creates (idempotently) `STATE/stacks/host` and computes the binds for this host.
    pub fn prepare(state_dir: &Path) -> Result<HostStack, RuntimeError> {
        let skeleton = state_dir.join("stacks/host");
        let io = |p: &Path| {
            let p = p.to_path_buf();
            move |source| RuntimeError::Io { path: p, source }
        };
        std::fs::create_dir_all(&skeleton).map_err(io(&skeleton))?;
        std::fs::set_permissions(&skeleton, std::fs::Permissions::from_mode(0o755))
            .map_err(io(&skeleton))?;
        for d in SKELETON_DIRS {
            let p = skeleton.join(d);
            std::fs::create_dir_all(&p).map_err(io(&p))?;
            let mode = if matches!(*d, "tmp" | "var/tmp") {
                0o1777
            } else {
                0o755
            };
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).map_err(io(&p))?;
        }
        let mut binds = Vec::new();
        for d in ROOT_DIRS {
            let host = Path::new("/").join(d);
            let Ok(meta) = std::fs::symlink_metadata(&host) else {
                continue;
            };
            let here = skeleton.join(d);
            if meta.file_type().is_symlink() {
                let to = std::fs::read_link(&host).map_err(io(&host))?;
                if std::fs::read_link(&here).ok().as_deref() != Some(to.as_path()) {
                    let _ = std::fs::remove_file(&here);
                    std::os::unix::fs::symlink(&to, &here).map_err(io(&here))?;
                }
            } else if meta.is_dir() {
                std::fs::create_dir_all(&here).map_err(io(&here))?;
                binds.push(Bind {
                    source: host,
                    dest: format!("/{d}"),
                    writable: false,
                });
            }
        }
        for e in ETC {
            let host = Path::new("/etc").join(e);
            if host.exists() {
                copy_tree(&host, &skeleton.join("etc").join(e))?;
            }
        }
        Ok(HostStack { skeleton, binds })
    }

    pub fn skeleton(&self) -> &Path {
        &self.skeleton
    }

    pub fn binds(&self) -> &[Bind] {
        &self.binds
    }
}

/// Replaces `dst` with a copy of `src` (files, directories, symlinks as links).
fn copy_tree(src: &Path, dst: &Path) -> Result<(), RuntimeError> {
    let io = |p: &Path| {
        let p = p.to_path_buf();
        move |source| RuntimeError::Io { path: p, source }
    };
    let meta = std::fs::symlink_metadata(src).map_err(io(src))?;
    if let Ok(old) = std::fs::symlink_metadata(dst) {
        if old.is_dir() && !old.file_type().is_symlink() {
            std::fs::remove_dir_all(dst).map_err(io(dst))?;
        } else {
            std::fs::remove_file(dst).map_err(io(dst))?;
        }
    }
    if meta.file_type().is_symlink() {
        let to = std::fs::read_link(src).map_err(io(src))?;
        std::os::unix::fs::symlink(to, dst).map_err(io(dst))?;
    } else if meta.is_dir() {
        std::fs::create_dir(dst).map_err(io(dst))?;
        for entry in std::fs::read_dir(src).map_err(io(src))? {
            let entry = entry.map_err(io(src))?;
            copy_tree(&entry.path(), &dst.join(entry.file_name()))?;
        }
        std::fs::set_permissions(
            dst,
            std::fs::Permissions::from_mode(meta.permissions().mode() & 0o755),
        )
        .map_err(io(dst))?;
    } else if meta.is_file() {
        std::fs::copy(src, dst).map_err(io(dst))?;
        // Only world-readable content belongs in a stack; never widen a private file.
        std::fs::set_permissions(
            dst,
            std::fs::Permissions::from_mode(meta.permissions().mode() & 0o755),
        )
        .map_err(io(dst))?;
    }
    Ok(())
}
