//! Git-URL buildpacks: cloned on the server (`git clone --depth 1`, no prompts, a timeout),
//! pinned by `#ref`, and kept under `STATE/buildpacks/NAME-KEY/` (KEY: a hash of URL and
//! ref), so a later build of any app reuses the clone instead of cloning again. A clone is
//! made as root in a scratch dir under `STATE/builds/` and renamed into place whole; an entry
//! is never changed after that. Refreshing is removing the entry (the build output names it).
//! Must not run the buildpack or decide which buildpacks a build uses.

use std::io;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use super::buildpacks::GitUrl;

/// How long one clone may take.
pub const CLONE_TIMEOUT: Duration = Duration::from_secs(120);

/// The file in an entry that says what it holds.
const ORIGIN_FILE: &str = "origin";
/// The buildpack tree in an entry (without `.git`).
const TREE: &str = "buildpack";

/// A buildpack tree ready to copy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fetched {
    /// `ENTRY/buildpack`.
    pub dir: PathBuf,
    /// The entry (what to remove to fetch again).
    pub entry: PathBuf,
    pub commit: String,
    /// True when an earlier build cloned it.
    pub cached: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error(
        "buildpack {url}: git clone did not finish within {secs} s. Check that this server \
         reaches it (git ls-remote {bare}) and deploy again, or vendor the buildpack and name \
         its directory"
    )]
    Timeout {
        url: String,
        bare: String,
        secs: u64,
    },
    #[error(
        "buildpack {url}: cannot clone it: {detail}. Check the URL{pin} and that this server \
         can reach it without a password (git ls-remote {bare})"
    )]
    Clone {
        url: String,
        bare: String,
        pin: String,
        detail: String,
    },
    #[error("buildpack {url}: cannot run git on the server ({source}); install git")]
    NoGit { url: String, source: io::Error },
    #[error("buildpack {url}: {context}: {source}")]
    Io {
        url: String,
        context: String,
        source: io::Error,
    },
}

/// `STATE/buildpacks/NAME-KEY`: where `git` is (or will be) kept.
pub fn entry_dir(cache_root: &Path, git: &GitUrl) -> PathBuf {
    let mut h = Sha256::new();
    h.update(git.url.as_bytes());
    h.update([0]);
    h.update(git.rev.as_deref().unwrap_or("").as_bytes());
    let key: String = h
        .finalize()
        .iter()
        .take(8)
        .map(|b| format!("{b:02x}"))
        .collect();
    let name: String = git
        .repo_name()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .take(60)
        .collect();
    cache_root.join(format!("{name}-{key}"))
}

/// The cached clone of `git`, or a fresh one. `scratch_root` must be on the same file system
/// as `cache_root` (both are under the state dir).
pub async fn fetch(
    git: &GitUrl,
    cache_root: &Path,
    scratch_root: &Path,
    timeout: Duration,
) -> Result<Fetched, FetchError> {
    let entry = entry_dir(cache_root, git);
    if let Some(commit) = cached_commit(&entry).await {
        return Ok(Fetched {
            dir: entry.join(TREE),
            entry,
            commit,
            cached: true,
        });
    }
    let io_err = |context: &str| {
        let (url, context) = (git.to_string(), context.to_string());
        move |source| FetchError::Io {
            url,
            context,
            source,
        }
    };
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let scratch = scratch_root.join(format!(
        ".buildpack-clone-{}-{}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    ));
    tokio::fs::create_dir_all(&scratch)
        .await
        .map_err(io_err("making a scratch dir"))?;
    let mut guard = ScratchDir(scratch.clone());
    let tree = scratch.join(TREE);
    let deadline = Instant::now() + timeout;
    clone(git, &tree, deadline).await?;
    let commit = git_out(git, Some(&tree), &["rev-parse", "HEAD"], deadline).await?;
    tokio::fs::remove_dir_all(tree.join(".git"))
        .await
        .map_err(io_err("removing .git from the clone"))?;
    let origin = format!(
        "url={}\nref={}\ncommit={commit}\nfetched={}\n",
        git.url,
        git.rev.as_deref().unwrap_or(""),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0)
    );
    tokio::fs::write(scratch.join(ORIGIN_FILE), origin)
        .await
        .map_err(io_err("writing the origin file"))?;
    tokio::fs::create_dir_all(cache_root)
        .await
        .map_err(io_err("making the buildpack cache dir"))?;
    if let Err(e) = tokio::fs::rename(&scratch, &entry).await {
        // Another build cloned the same URL and ref meanwhile: use theirs.
        let theirs = cached_commit(&entry).await;
        drop(guard);
        let commit = theirs.ok_or_else(|| io_err("moving the clone into the cache")(e))?;
        return Ok(Fetched {
            dir: entry.join(TREE),
            entry,
            commit,
            cached: true,
        });
    }
    guard.keep();
    Ok(Fetched {
        dir: entry.join(TREE),
        entry,
        commit,
        cached: false,
    })
}

/// The commit of a complete entry, `None` when there is none.
async fn cached_commit(entry: &Path) -> Option<String> {
    if !tokio::fs::metadata(entry.join(TREE)).await.ok()?.is_dir() {
        return None;
    }
    let text = tokio::fs::read_to_string(entry.join(ORIGIN_FILE))
        .await
        .ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("commit="))
        .map(str::to_string)
}

/// A shallow clone of the branch or tag; for a commit, a full clone and a checkout.
async fn clone(git: &GitUrl, tree: &Path, deadline: Instant) -> Result<(), FetchError> {
    let dest = tree.to_string_lossy().into_owned();
    let mut args = vec!["clone", "--quiet", "--depth", "1"];
    if let Some(rev) = &git.rev {
        args.extend(["--branch", rev.as_str()]);
    }
    args.extend(["--", git.url.as_str(), dest.as_str()]);
    let shallow = git_out(git, None, &args, deadline).await;
    let Some(rev) = &git.rev else {
        return shallow.map(drop);
    };
    let first_error = match shallow {
        Ok(_) => return Ok(()),
        Err(e @ FetchError::Timeout { .. }) => return Err(e),
        Err(e) => e,
    };
    if !(4..=64).contains(&rev.len()) || !rev.chars().all(|c| c.is_ascii_hexdigit()) {
        return Err(first_error);
    }
    // `--branch` takes no commit: clone everything, then check the commit out.
    let _ = tokio::fs::remove_dir_all(tree).await;
    git_out(
        git,
        None,
        &[
            "clone",
            "--quiet",
            "--no-checkout",
            "--",
            git.url.as_str(),
            dest.as_str(),
        ],
        deadline,
    )
    .await?;
    git_out(
        git,
        Some(tree),
        &["checkout", "--quiet", "--detach", rev.as_str(), "--"],
        deadline,
    )
    .await
    .map(drop)
}

/// Runs git (in `dir` if given) with no prompts and no inherited git settings; its stdout,
/// trimmed, or the error that names the URL.
async fn git_out(
    git: &GitUrl,
    dir: Option<&Path>,
    args: &[&str],
    deadline: Instant,
) -> Result<String, FetchError> {
    let mut cmd = tokio::process::Command::new("git");
    cmd.args(args)
        .env_clear()
        .envs(paas_api::git_env::UNTRUSTED_REMOTE.iter().copied())
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    if let Some(home) = std::env::var_os("HOME") {
        cmd.env("HOME", home);
    }
    if let Some(d) = dir {
        cmd.current_dir(d);
    }
    let child = cmd.spawn().map_err(|source| FetchError::NoGit {
        url: git.to_string(),
        source,
    })?;
    let left = deadline.saturating_duration_since(Instant::now());
    let out = match tokio::time::timeout(left, child.wait_with_output()).await {
        Ok(r) => r.map_err(|source| FetchError::Io {
            url: git.to_string(),
            context: "waiting for git".into(),
            source,
        })?,
        Err(_) => {
            return Err(FetchError::Timeout {
                url: git.to_string(),
                bare: git.url.clone(),
                secs: CLONE_TIMEOUT.as_secs(),
            })
        }
    };
    if out.status.success() {
        return Ok(String::from_utf8_lossy(&out.stdout).trim().to_string());
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    let detail: Vec<&str> = stderr
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .rev()
        .take(3)
        .collect();
    let detail: Vec<&str> = detail.into_iter().rev().collect();
    Err(FetchError::Clone {
        url: git.to_string(),
        bare: git.url.clone(),
        pin: git
            .rev
            .as_ref()
            .map(|r| format!(" and that '{r}' is a branch, tag or commit of it"))
            .unwrap_or_default(),
        detail: if detail.is_empty() {
            format!("git {} exited with {}", args[0], out.status)
        } else {
            detail.join("; ")
        },
    })
}

/// A scratch clone, removed unless it was renamed into the cache.
struct ScratchDir(PathBuf);

impl ScratchDir {
    fn keep(&mut self) {
        self.0 = PathBuf::new();
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        if !self.0.as_os_str().is_empty() {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_are_keyed_by_url_and_ref() {
        let root = Path::new("/s/buildpacks");
        let g = |url: &str, rev: Option<&str>| GitUrl {
            url: url.into(),
            rev: rev.map(str::to_string),
        };
        let a = entry_dir(root, &g("https://h/o/pack.git", Some("v1")));
        let b = entry_dir(root, &g("https://h/o/pack.git", Some("v2")));
        let c = entry_dir(root, &g("https://h/o/pack.git", None));
        assert!(a.starts_with(root) && a != b && b != c);
        assert_eq!(a, entry_dir(root, &g("https://h/o/pack.git", Some("v1"))));
        let name = a.file_name().and_then(|n| n.to_str()).unwrap_or("");
        assert!(
            name.starts_with("pack-") && name.len() == "pack-".len() + 16,
            "{name}"
        );
    }

    #[tokio::test]
    async fn a_local_repo_is_cloned_once_and_a_bad_ref_says_so() {
        if std::process::Command::new("git")
            .arg("--version")
            .output()
            .is_err()
        {
            return;
        }
        let d = tempfile::tempdir().expect("tmp");
        let work = d.path().join("work");
        std::fs::create_dir_all(work.join("bin")).expect("mkdir");
        std::fs::write(work.join("bin/detect"), "#!/bin/sh\n").expect("write");
        let git = |dir: &Path, args: &[&str]| {
            let ok = std::process::Command::new("git")
                .current_dir(dir)
                .args([
                    "-c",
                    "user.name=t",
                    "-c",
                    "user.email=t@t",
                    "-c",
                    "init.defaultBranch=main",
                ])
                .args(args)
                .env("GIT_CONFIG_NOSYSTEM", "1")
                .output()
                .expect("git");
            assert!(ok.status.success(), "{ok:?}");
        };
        git(&work, &["init", "-q"]);
        git(&work, &["add", "-A"]);
        git(&work, &["commit", "-q", "-m", "one"]);
        git(&work, &["tag", "v1"]);
        let url = GitUrl {
            url: work.display().to_string(),
            rev: Some("v1".into()),
        };
        let (cache, scratch) = (d.path().join("cache"), d.path().join("scratch"));
        let first = fetch(&url, &cache, &scratch, CLONE_TIMEOUT)
            .await
            .expect("clone");
        assert!(!first.cached && first.dir.join("bin/detect").is_file());
        assert!(!first.dir.join(".git").exists());
        let again = fetch(&url, &cache, &scratch, CLONE_TIMEOUT)
            .await
            .expect("cached");
        assert!(again.cached && again.commit == first.commit);
        let bad = GitUrl {
            rev: Some("nope".into()),
            ..url
        };
        let e = fetch(&bad, &cache, &scratch, CLONE_TIMEOUT)
            .await
            .expect_err("bad ref")
            .to_string();
        assert!(
            e.contains("#nope") && e.contains("'nope' is a branch, tag or commit"),
            "{e}"
        );
        assert_eq!(
            std::fs::read_dir(&scratch).map(|r| r.count()).unwrap_or(0),
            0,
            "no scratch left"
        );
    }
}
