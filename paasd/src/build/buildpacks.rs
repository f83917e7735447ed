//! Which buildpacks a build may use and where they come from: the built-ins (a fixed
//! detection order) and directories an admin named. Each build gets its own writable copy,
//! so a buildpack can leave an `export` file for the next one. Must not run them.

use std::fs;
use std::io;
use std::os::unix::fs::{lchown, symlink};
use std::path::{Path, PathBuf};

use paas_runtime::{APP_GID, APP_UID};

/// Built-ins, in the order detection tries them.
pub const BUILTIN_ORDER: &[&str] = &["nodejs", "python", "go", "static", "procfile"];

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Buildpack {
    /// What the user sees: the built-in name, or the directory as configured.
    pub name: String,
    pub source: PathBuf,
}

/// Resolves a configured reference: a built-in name or an absolute directory on the server.
pub fn resolve(reference: &str, builtins: &Path) -> Result<Buildpack, String> {
    let source = if reference.starts_with('/') {
        PathBuf::from(reference)
    } else if reference.contains("://") || reference.starts_with("git@") {
        return Err(format!(
            "buildpack '{reference}': git URLs are not supported yet; clone it on the server and give its directory"
        ));
    } else if BUILTIN_ORDER.contains(&reference) {
        builtins.join(reference)
    } else {
        return Err(format!(
            "unknown buildpack '{reference}': use a built-in ({}) or an absolute directory",
            BUILTIN_ORDER.join(", ")
        ));
    };
    for step in ["detect", "compile", "release"] {
        let p = source.join("bin").join(step);
        if !p.is_file() {
            return Err(format!(
                "buildpack '{reference}' has no bin/{step} (looked at {})",
                p.display()
            ));
        }
    }
    Ok(Buildpack {
        name: reference.to_string(),
        source,
    })
}

/// The built-ins present on this server, in detection order.
pub fn builtins(dir: &Path) -> Result<Vec<Buildpack>, String> {
    let found: Vec<Buildpack> = BUILTIN_ORDER
        .iter()
        .filter_map(|n| resolve(n, dir).ok())
        .collect();
    if found.is_empty() {
        return Err(format!(
            "no built-in buildpacks found in {} (set buildpacks_dir in paasd.toml)",
            dir.display()
        ));
    }
    Ok(found)
}

/// Copies `bp` into `dest` (`<build>/buildpacks/<n>`), owned by the app user. Symlinks are
/// copied as symlinks, never followed.
pub fn copy_into(bp: &Buildpack, dest: &Path) -> io::Result<()> {
    copy_tree(&bp.source, dest)
}

fn copy_tree(from: &Path, to: &Path) -> io::Result<()> {
    let meta = fs::symlink_metadata(from)?;
    let ft = meta.file_type();
    if ft.is_symlink() {
        symlink(fs::read_link(from)?, to)?;
    } else if ft.is_dir() {
        fs::create_dir(to)?;
        fs::set_permissions(to, meta.permissions())?;
        for e in fs::read_dir(from)? {
            let e = e?;
            copy_tree(&e.path(), &to.join(e.file_name()))?;
        }
    } else if ft.is_file() {
        fs::copy(from, to)?;
    } else {
        return Ok(());
    }
    lchown(to, Some(APP_UID), Some(APP_GID))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_resolve_or_say_why_not() {
        let d = tempfile::tempdir().expect("tmp");
        let bin = d.path().join("nodejs/bin");
        fs::create_dir_all(&bin).expect("mkdir");
        for s in ["detect", "compile", "release"] {
            fs::write(bin.join(s), "#!/bin/sh\n").expect("write");
        }
        assert_eq!(
            resolve("nodejs", d.path()).expect("builtin").source,
            d.path().join("nodejs")
        );
        assert!(resolve("python", d.path())
            .expect_err("must fail")
            .contains("no bin/detect"));
        assert!(resolve("ruby", d.path())
            .expect_err("must fail")
            .contains("unknown buildpack"));
        assert!(resolve("https://x/y.git", d.path())
            .expect_err("must fail")
            .contains("git URLs"));
        let abs = d.path().join("nodejs");
        assert_eq!(
            resolve(abs.to_str().expect("utf8"), Path::new("/nonexistent"))
                .expect("dir")
                .source,
            abs
        );
        assert_eq!(builtins(d.path()).expect("found").len(), 1);
    }
}
