//! The bare repos people push to: `STATE/git/APP.git`, owned by the git user, all sharing
//! one root-owned `pre-receive` hook (`STATE/git/.hooks`, via `core.hooksPath`) that hands
//! the pushed commit to paasd. Creates and removes repos and writes the hook; must not deploy
//! anything (the hook calls the API like any client), and must never write into a directory
//! the git user owns once the repo is theirs (so nothing they plant there is followed).

use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Where an app's repo lives.
pub fn path(state_dir: &Path, app: &str) -> PathBuf {
    root(state_dir).join(format!("{app}.git"))
}

fn root(state_dir: &Path) -> PathBuf {
    crate::config::StatePaths::new(state_dir).git()
}

/// The hooks every repo runs. App names cannot start with a dot, so no repo is called this.
pub fn hooks_dir(state_dir: &Path) -> PathBuf {
    root(state_dir).join(".hooks")
}

/// Who owns the repos (the git user's ids).
#[derive(Debug, Clone, Copy)]
pub struct Owner {
    pub uid: u32,
    pub gid: u32,
}

/// The hook text: git runs it inside the repo (`APP.git`), so the app is the directory's
/// name. `shell` and `socket` are already shell-quoted.
pub fn hook(shell: &str, socket: &str, branches: &[String]) -> String {
    let mut args = format!("--socket {socket} hook \"$app\"");
    for b in branches {
        args.push_str(&format!(" --branch '{b}'"));
    }
    format!(
        "#!/bin/sh\n# Written by paasd at start for every app repo (core.hooksPath): a push of a deploy\n# branch deploys the app the repo belongs to.\napp=$(basename \"$PWD\" .git)\nexec {shell} {args}\n"
    )
}

/// Makes `STATE/git` (root's, 0711: the git user reaches its repos but cannot list or add
/// any) and writes the shared hook (root's, 0755).
pub fn write_hook(state_dir: &Path, text: &str) -> io::Result<()> {
    let root = root(state_dir);
    fs::create_dir_all(&root)?;
    fs::set_permissions(&root, fs::Permissions::from_mode(0o711))?;
    let hooks = hooks_dir(state_dir);
    fs::create_dir_all(&hooks)?;
    fs::set_permissions(&hooks, fs::Permissions::from_mode(0o755))?;
    let path = hooks.join("pre-receive");
    if fs::read_to_string(&path).ok().as_deref() != Some(text) {
        let tmp = hooks.join("pre-receive.new");
        fs::write(&tmp, text)?;
        fs::set_permissions(&tmp, fs::Permissions::from_mode(0o755))?;
        fs::rename(&tmp, &path)?;
    }
    Ok(())
}

/// What every new repo is configured with.
pub struct Settings<'a> {
    pub hooks_dir: &'a Path,
    /// `receive.maxInputSize`: the largest pack a push may send.
    pub max_input_bytes: u64,
}

/// Creates the repo unless it exists. Built as root in a fresh directory next to its final
/// name, configured, handed to `owner`, then renamed into place, so a half-made repo is never
/// pushed to; two first pushes racing end with one repo.
pub fn ensure(repo: &Path, settings: &Settings<'_>, owner: Owner) -> io::Result<()> {
    if repo.join("HEAD").exists() {
        return Ok(());
    }
    let parent = repo
        .parent()
        .ok_or_else(|| io::Error::other("repo path has no parent"))?;
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let tmp = parent.join(format!(".new-{}-{nanos}", std::process::id()));
    let built = build(&tmp, settings, owner);
    if let Err(e) = built {
        let _ = fs::remove_dir_all(&tmp);
        return Err(e);
    }
    if repo.exists() && !repo.join("HEAD").exists() {
        // A repo without HEAD is a wreck (removed while in use); it holds nothing to keep.
        fs::remove_dir_all(repo)?;
    }
    match fs::rename(&tmp, repo) {
        Ok(()) => Ok(()),
        // Another push made it meanwhile: theirs stays.
        Err(_) if repo.join("HEAD").exists() => {
            let _ = fs::remove_dir_all(&tmp);
            Ok(())
        }
        Err(e) => {
            let _ = fs::remove_dir_all(&tmp);
            Err(e)
        }
    }
}

fn build(tmp: &Path, settings: &Settings<'_>, owner: Owner) -> io::Result<()> {
    git(&[
        "init",
        "--bare",
        "--quiet",
        "--initial-branch=main",
        &tmp.to_string_lossy(),
    ])?;
    let config = tmp.join("config");
    let config = config.to_string_lossy();
    for (key, value) in [
        (
            "core.hooksPath",
            settings.hooks_dir.to_string_lossy().into_owned(),
        ),
        // The deploy branch can't be deleted, objects are checked, and a push has a size cap.
        ("receive.denyDeletes", "true".into()),
        ("receive.fsckObjects", "true".into()),
        ("receive.maxInputSize", settings.max_input_bytes.to_string()),
    ] {
        git(&["config", "--file", &config, key, &value])?;
    }
    // The samples are noise in a repo nobody browses; the shared hook replaces them.
    let _ = fs::remove_dir_all(tmp.join("hooks"));
    // Pushed .gitattributes must not make `git archive` expand `$Format:...$` placeholders
    // (pretty formats over the history, with their own history of bugs); export-ignore stays,
    // it only leaves files out of the slug.
    fs::create_dir_all(tmp.join("info"))?;
    fs::write(tmp.join("info/attributes"), "* -export-subst\n")?;
    chown_tree(tmp, owner)
}

fn git(args: &[&str]) -> io::Result<()> {
    let out = Command::new("git").args(args).output()?;
    if out.status.success() {
        Ok(())
    } else {
        Err(io::Error::other(format!(
            "git {} failed: {}",
            args.first().copied().unwrap_or(""),
            String::from_utf8_lossy(&out.stderr).trim()
        )))
    }
}

/// Brings back a repo from a platform backup: a fresh repo of ours (its config, hooks path
/// and owner from this install, never the archive's: a repo's config can run programs) with
/// the backup's objects and refs: regular files and dirs only, and a HEAD that names a
/// branch.
pub fn restore(
    staged: &Path,
    repo: &Path,
    settings: &Settings<'_>,
    owner: Owner,
) -> io::Result<()> {
    let head = fs::read_to_string(staged.join("HEAD")).unwrap_or_default();
    let head = head.trim();
    let valid = head.strip_prefix("ref: refs/heads/").is_some_and(|b| {
        !b.is_empty() && !b.contains("..") && b.bytes().all(|c| c.is_ascii_graphic())
    });
    if !valid {
        return Err(io::Error::other(format!(
            "{}: HEAD is not a branch",
            staged.display()
        )));
    }
    let parent = repo
        .parent()
        .ok_or_else(|| io::Error::other("repo path has no parent"))?;
    let tmp = parent.join(format!(".restore-{}", std::process::id()));
    let _ = fs::remove_dir_all(&tmp);
    let made = build(&tmp, settings, owner).and_then(|()| {
        copy_plain(&staged.join("objects"), &tmp.join("objects"))?;
        copy_plain(&staged.join("refs"), &tmp.join("refs"))?;
        if fs::symlink_metadata(staged.join("packed-refs")).is_ok_and(|m| m.is_file()) {
            fs::copy(staged.join("packed-refs"), tmp.join("packed-refs"))?;
        }
        fs::write(tmp.join("HEAD"), format!("{head}\n"))?;
        chown_tree(&tmp, owner)?;
        fs::rename(&tmp, repo)
    });
    if made.is_err() {
        let _ = fs::remove_dir_all(&tmp);
    }
    made
}

/// Copies dirs and regular files under `from` into `to`; anything else is skipped.
fn copy_plain(from: &Path, to: &Path) -> io::Result<()> {
    let Ok(meta) = fs::symlink_metadata(from) else {
        return Ok(());
    };
    if meta.is_dir() {
        fs::create_dir_all(to)?;
        for e in fs::read_dir(from)? {
            let e = e?;
            copy_plain(&e.path(), &to.join(e.file_name()))?;
        }
    } else if meta.is_file() {
        fs::copy(from, to)?;
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
            &["main".into(), "master".into()],
        );
        assert!(h.starts_with("#!/bin/sh\n"));
        assert!(h.contains("app=$(basename \"$PWD\" .git)\n"));
        assert!(h.ends_with(
            "exec '/usr/local/bin/paas-git-shell' --socket '/run/paas/paasd.sock' hook \"$app\" --branch 'main' --branch 'master'\n"
        ));
    }

    #[test]
    fn ensure_makes_a_configured_bare_repo_once() {
        let dir = tempfile::tempdir().expect("dir");
        let repo = path(dir.path(), "a");
        write_hook(dir.path(), "#!/bin/sh\nexit 0\n").expect("hook");
        let me = Owner {
            uid: nix::unistd::getuid().as_raw(),
            gid: nix::unistd::getgid().as_raw(),
        };
        let hooks = hooks_dir(dir.path());
        let s = Settings {
            hooks_dir: &hooks,
            max_input_bytes: 1 << 20,
        };
        ensure(&repo, &s, me).expect("create");
        assert!(repo.join("HEAD").is_file());
        assert!(!repo.join("hooks").exists(), "no per-repo hooks");
        let config = fs::read_to_string(repo.join("config")).expect("config");
        assert!(
            config.contains(&format!("hooksPath = {}", hooks.display())),
            "{config}"
        );
        assert!(config.contains("maxInputSize = 1048576"), "{config}");
        ensure(&repo, &s, me).expect("again is fine");
        let left: Vec<_> = fs::read_dir(root(dir.path()))
            .expect("ls")
            .flatten()
            .map(|e| e.file_name())
            .collect();
        assert_eq!(left.len(), 2, "only .hooks and a.git: {left:?}");
        remove(&repo);
        assert!(!repo.exists());
    }
}
