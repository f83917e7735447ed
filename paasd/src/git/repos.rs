//! The bare repos people push to: `STATE/git/APP.git`, owned by the git user, each with a
//! `pre-receive` hook that hands the pushed commit to paasd. Creates, refreshes and removes
//! them; must not deploy anything (the hook calls the API like any client).

use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Where an app's repo lives.
pub fn path(state_dir: &Path, app: &str) -> PathBuf {
    state_dir.join("git").join(format!("{app}.git"))
}

/// Who owns the repos (the git user's ids).
#[derive(Debug, Clone, Copy)]
pub struct Owner {
    pub uid: u32,
    pub gid: u32,
}

/// The hook text: runs the git shell's hook mode with this daemon's socket and branches.
/// `shell` and `socket` are already shell-quoted.
pub fn hook(shell: &str, socket: &str, app: &str, branches: &[String]) -> String {
    let mut args = format!("--socket {socket} hook {app}");
    for b in branches {
        args.push_str(&format!(" --branch '{b}'"));
    }
    format!(
        "#!/bin/sh\n# Written by paasd: a push of a deploy branch deploys '{app}'. Rewritten on every push.\nexec {shell} {args}\n"
    )
}

/// Creates the repo if needed and (re)writes its hook; everything ends up owned by `owner`.
pub fn ensure(repo: &Path, hook_text: &str, owner: Owner) -> io::Result<()> {
    let parent = repo
        .parent()
        .ok_or_else(|| io::Error::other("repo path has no parent"))?;
    if !parent.exists() {
        fs::create_dir_all(parent)?;
        // The git user must reach its repos; it may not list them.
        fs::set_permissions(parent, fs::Permissions::from_mode(0o711))?;
    }
    if !repo.join("HEAD").exists() {
        // Built next to its final name, so a half-made repo is never pushed to.
        let tmp = repo.with_extension("git.new");
        let _ = fs::remove_dir_all(&tmp);
        let out = Command::new("git")
            .args(["init", "--bare", "--quiet", "--initial-branch=main"])
            .arg(&tmp)
            .output()?;
        if !out.status.success() {
            return Err(io::Error::other(format!(
                "git init failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        // The samples are noise in a repo nobody browses.
        if let Ok(entries) = fs::read_dir(tmp.join("hooks")) {
            for e in entries.flatten() {
                let _ = fs::remove_file(e.path());
            }
        }
        chown_tree(&tmp, owner)?;
        fs::rename(&tmp, repo)?;
    }
    let hook_path = repo.join("hooks").join("pre-receive");
    if fs::read_to_string(&hook_path).ok().as_deref() != Some(hook_text) {
        let tmp = hook_path.with_extension("new");
        fs::write(&tmp, hook_text)?;
        fs::set_permissions(&tmp, fs::Permissions::from_mode(0o755))?;
        std::os::unix::fs::chown(&tmp, Some(owner.uid), Some(owner.gid))?;
        fs::rename(&tmp, &hook_path)?;
    }
    Ok(())
}

/// Removes an app's repo (the app was destroyed). Absent is fine.
pub fn remove(repo: &Path) {
    if let Err(e) = fs::remove_dir_all(repo) {
        if e.kind() != io::ErrorKind::NotFound {
            tracing::warn!(dir = %repo.display(), error = %e, "could not remove a git repo");
        }
    }
}

fn chown_tree(dir: &Path, owner: Owner) -> io::Result<()> {
    std::os::unix::fs::lchown(dir, Some(owner.uid), Some(owner.gid))?;
    if fs::symlink_metadata(dir)?.is_dir() {
        for e in fs::read_dir(dir)? {
            chown_tree(&e?.path(), owner)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hook_quotes_and_lists_branches() {
        let h = hook(
            "'/usr/local/bin/paas-git-shell'",
            "'/run/paas/paasd.sock'",
            "myapp",
            &["main".into(), "master".into()],
        );
        assert!(h.starts_with("#!/bin/sh\n"));
        assert!(h.ends_with(
            "exec '/usr/local/bin/paas-git-shell' --socket '/run/paas/paasd.sock' hook myapp --branch 'main' --branch 'master'\n"
        ));
    }

    #[test]
    fn ensure_makes_a_bare_repo_with_the_hook_and_rewrites_it() {
        let dir = tempfile::tempdir().expect("dir");
        let repo = path(dir.path(), "a");
        let me = Owner {
            uid: nix::unistd::getuid().as_raw(),
            gid: nix::unistd::getgid().as_raw(),
        };
        ensure(&repo, "#!/bin/sh\nexit 0\n", me).expect("create");
        assert!(repo.join("HEAD").is_file());
        let hook = repo.join("hooks/pre-receive");
        assert_eq!(
            fs::read_to_string(&hook).expect("hook"),
            "#!/bin/sh\nexit 0\n"
        );
        assert_eq!(
            fs::metadata(&hook).expect("meta").permissions().mode() & 0o777,
            0o755
        );
        ensure(&repo, "#!/bin/sh\nexit 1\n", me).expect("again");
        assert_eq!(
            fs::read_to_string(&hook).expect("hook"),
            "#!/bin/sh\nexit 1\n"
        );
        remove(&repo);
        assert!(!repo.exists());
    }
}
