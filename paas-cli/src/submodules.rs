//! Git submodules on `git push`: when the pushed commit has a `.gitmodules`, the hook's
//! archive also holds every submodule's tree at the commit the superproject records, fetched
//! from the URL in `.gitmodules` (with a timeout, never prompting) into a scratch repo, as
//! Heroku does. A submodule that cannot be fetched fails the push with its path and URL.
//! Must not write into the app's repo (its objects are only read) and must not talk to paasd.

use std::collections::HashSet;
use std::fs::File;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context as _, Result};

/// How long fetching one submodule may take.
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(120);
/// Submodules inside submodules, at most this deep.
const MAX_DEPTH: usize = 4;

/// One `[submodule "name"]` section of `.gitmodules`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Submodule {
    pub name: String,
    pub path: String,
    pub url: String,
}

/// Parses `git config -z --list` output of a `.gitmodules` (`key\nvalue\0` records) into its
/// submodules, sorted by path; sections without a path or a URL are left out.
pub fn parse_gitmodules(list: &str) -> Vec<Submodule> {
    let mut out: Vec<Submodule> = Vec::new();
    for record in list.split('\0') {
        let Some((key, value)) = record.split_once('\n') else {
            continue;
        };
        let Some(rest) = key.strip_prefix("submodule.") else {
            continue;
        };
        let Some((name, field)) = rest.rsplit_once('.') else {
            continue;
        };
        let i = match out.iter().position(|s| s.name == name) {
            Some(i) => i,
            None => {
                out.push(Submodule {
                    name: name.to_string(),
                    path: String::new(),
                    url: String::new(),
                });
                out.len() - 1
            }
        };
        match field {
            "path" => out[i].path = value.trim().trim_end_matches('/').to_string(),
            "url" => out[i].url = value.trim().to_string(),
            _ => {}
        }
    }
    out.retain(|s| !s.path.is_empty() && !s.url.is_empty());
    out.sort_by(|a, b| a.path.cmp(&b.path));
    out
}

/// A submodule path must stay inside the tree.
fn safe_path(p: &str) -> bool {
    !p.starts_with('/')
        && !p.starts_with('-')
        && p.split('/')
            .all(|c| !c.is_empty() && c != "." && c != ".." && c != ".git")
}

/// The commit a tree records for `path` (a gitlink), if it is one.
fn gitlink(list_output: &str) -> Option<String> {
    // `160000 commit SHA\tPATH`
    let (meta, _) = list_output.split_once('\t')?;
    let mut f = meta.split_whitespace();
    match (f.next(), f.next(), f.next()) {
        (Some("160000"), Some("commit"), Some(sha)) => Some(sha.to_string()),
        _ => None,
    }
}

/// Does `commit` (in `repo`, or the hook's repo) have a `.gitmodules`?
pub fn has_gitmodules(repo: Option<&Path>, commit: &str) -> bool {
    git_in(repo)
        .args(["cat-file", "-e", &format!("{commit}:.gitmodules")])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Writes `commit`'s tree and its submodules' trees as one gzipped tarball to `out`; returns
/// how many submodules went in. `say` gets progress lines.
pub fn archive(commit: &str, out: &Path, say: &mut dyn FnMut(String)) -> Result<usize> {
    let scratch = tempfile::Builder::new()
        .prefix("paas-submodules-")
        .tempdir()
        .context("making a temp dir for submodules")?;
    let file = File::create(out).with_context(|| format!("creating {}", out.display()))?;
    let gz = flate2::write::GzEncoder::new(file, flate2::Compression::default());
    let mut b = tar::Builder::new(gz);
    let mut seen = HashSet::new();
    let mut count = 0;
    add_tree(
        &mut b,
        &mut seen,
        None,
        commit,
        "",
        scratch.path(),
        0,
        &mut count,
        say,
    )?;
    b.into_inner()
        .and_then(|gz| gz.finish())
        .and_then(|mut f| f.flush())
        .context("writing the archive")?;
    Ok(count)
}

/// `commit` of `repo` (None: the hook's repo) under `prefix`, then its submodules.
#[allow(clippy::too_many_arguments)]
fn add_tree<W: Write>(
    b: &mut tar::Builder<W>,
    seen: &mut HashSet<PathBuf>,
    repo: Option<&Path>,
    commit: &str,
    prefix: &str,
    scratch: &Path,
    depth: usize,
    count: &mut usize,
    say: &mut dyn FnMut(String),
) -> Result<()> {
    let mut archive = git_in(repo);
    archive.args(["archive", "--format=tar"]);
    if !prefix.is_empty() {
        archive.arg(format!("--prefix={prefix}/"));
    }
    let mut child = archive
        .arg(commit)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("running git archive")?;
    let stdout = child
        .stdout
        .take()
        .ok_or_else(|| anyhow!("git archive: no stdout"))?;
    let copied = append_tar(b, seen, stdout);
    let done = child
        .wait_with_output()
        .context("waiting for git archive")?;
    if !done.status.success() {
        bail!(
            "git archive of {} failed: {}",
            if prefix.is_empty() {
                "the commit"
            } else {
                prefix
            },
            String::from_utf8_lossy(&done.stderr).trim()
        );
    }
    copied.context("copying git archive's output")?;
    if !has_gitmodules(repo, commit) {
        return Ok(());
    }
    if depth >= MAX_DEPTH {
        say(format!(
            " !     {prefix}: submodules nested more than {MAX_DEPTH} deep are left out"
        ));
        return Ok(());
    }
    let list = git_in(repo)
        .args([
            "config",
            "-z",
            "--list",
            "--blob",
            &format!("{commit}:.gitmodules"),
        ])
        .output()
        .context("reading .gitmodules")?;
    if !list.status.success() {
        bail!(
            "{}.gitmodules cannot be read: {}",
            if prefix.is_empty() {
                String::new()
            } else {
                format!("{prefix}/")
            },
            String::from_utf8_lossy(&list.stderr).trim()
        );
    }
    for sub in parse_gitmodules(&String::from_utf8_lossy(&list.stdout)) {
        let full = if prefix.is_empty() {
            sub.path.clone()
        } else {
            format!("{prefix}/{}", sub.path)
        };
        if !safe_path(&sub.path) {
            bail!(
                "submodule '{}': path '{}' leaves the tree; fix .gitmodules",
                sub.name,
                sub.path
            );
        }
        let listed = git_in(repo)
            .args(["ls-tree", commit, "--", &sub.path])
            .output()
            .context("running git ls-tree")?;
        let Some(sha) = gitlink(&String::from_utf8_lossy(&listed.stdout)) else {
            say(format!(
                " !     .gitmodules names {} but the commit has no submodule there; skipped",
                sub.path
            ));
            continue;
        };
        if sub.url.starts_with("./") || sub.url.starts_with("../") {
            bail!(
                "submodule '{full}' has the relative URL '{}', which cannot be resolved on the \
                 server: put an absolute URL in .gitmodules (git submodule set-url {} URL) and push again",
                sub.url,
                sub.path
            );
        }
        say(format!(
            "-----> Fetching submodule {full} ({}, {})",
            sub.url,
            &sha[..sha.len().min(7)]
        ));
        let dir = scratch.join(format!("sub-{}", *count));
        fetch(&sub.url, &sha, &dir).map_err(|e| {
            anyhow!(
                "submodule '{full}' ({}): {e:#}. Make {} reachable from the server without a \
                 password, or remove the submodule, and push again",
                sub.url,
                sub.url
            )
        })?;
        *count += 1;
        add_tree(
            b,
            seen,
            Some(&dir),
            &sha,
            &full,
            scratch,
            depth + 1,
            count,
            say,
        )?;
    }
    Ok(())
}

/// Copies a tar stream into `b`; a directory that is already there is not added twice (a
/// submodule's path is an empty directory in its superproject's archive).
fn append_tar<W: Write>(
    b: &mut tar::Builder<W>,
    seen: &mut HashSet<PathBuf>,
    input: impl Read,
) -> io::Result<()> {
    let mut ar = tar::Archive::new(input);
    for entry in ar.entries()? {
        let mut e = entry?;
        let kind = e.header().entry_type();
        if matches!(
            kind,
            tar::EntryType::XGlobalHeader | tar::EntryType::XHeader
        ) {
            continue;
        }
        let path = e.path()?.into_owned();
        let mut h = e.header().clone();
        if kind.is_dir() {
            if seen.insert(path.clone()) {
                b.append_data(&mut h, &path, io::empty())?;
            }
        } else if kind.is_symlink() || kind.is_hard_link() {
            let target = e
                .link_name()?
                .map(|t| t.into_owned())
                .ok_or_else(|| io::Error::other("a link without a target"))?;
            b.append_link(&mut h, &path, &target)?;
        } else {
            b.append_data(&mut h, &path, &mut e)?;
        }
    }
    Ok(())
}

/// Fetches `sha` from `url` into a new bare repo `dir`: shallow by commit first, else every
/// branch and tag (servers that refuse fetching a commit by its id).
fn fetch(url: &str, sha: &str, dir: &Path) -> Result<()> {
    let deadline = Instant::now() + FETCH_TIMEOUT;
    std::fs::create_dir_all(dir).context("making a scratch repo")?;
    run(
        clean_git(dir).args(["init", "--bare", "--quiet"]),
        deadline,
        dir,
    )?;
    let shallow = run(
        clean_git(dir).args(["fetch", "--quiet", "--depth", "1", "--", url, sha]),
        deadline,
        dir,
    );
    if shallow.is_err() {
        run(
            clean_git(dir).args([
                "fetch",
                "--quiet",
                "--",
                url,
                "+refs/heads/*:refs/remotes/origin/*",
                "+refs/tags/*:refs/tags/*",
            ]),
            deadline,
            dir,
        )?;
    }
    run(
        clean_git(dir).args(["cat-file", "-e", &format!("{sha}^{{commit}}")]),
        deadline,
        dir,
    )
    .map_err(|_| anyhow!("commit {sha} is not in that repository (was it pushed there?)"))
}

/// git in the hook's repo (the hook's environment: it points at the pushed objects), or in
/// `repo`.
fn git_in(repo: Option<&Path>) -> Command {
    match repo {
        None => Command::new("git"),
        Some(d) => clean_git(d),
    }
}

/// git in a scratch repo: none of the hook's GIT_* settings, no prompts, batch ssh, and
/// only the usual transports.
fn clean_git(dir: &Path) -> Command {
    let mut c = Command::new("git");
    c.env_clear()
        .current_dir(dir)
        .env("GIT_DIR", dir)
        .envs(paas_api::git_env::UNTRUSTED_REMOTE.iter().copied());
    if let Some(home) = std::env::var_os("HOME") {
        c.env("HOME", home);
    }
    c
}

/// Runs `c` until `deadline` (then kills it); its stderr's last lines on failure.
fn run(c: &mut Command, deadline: Instant, scratch: &Path) -> Result<()> {
    let err_path = scratch.join(".paas-stderr");
    let err_file = File::create(&err_path).context("making a stderr file")?;
    let mut child = c
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(err_file)
        .spawn()
        .context("running git")?;
    let status = loop {
        if let Some(s) = child.try_wait().context("waiting for git")? {
            break s;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            bail!("git did not finish within {} s", FETCH_TIMEOUT.as_secs());
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    if status.success() {
        return Ok(());
    }
    let text = std::fs::read_to_string(&err_path).unwrap_or_default();
    let last: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    let tail = last[last.len().saturating_sub(2)..].join("; ");
    bail!(
        "{}",
        if tail.is_empty() {
            format!("git exited with {status}")
        } else {
            tail
        }
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gitmodules_sections() {
        let list = "submodule.lib.path\nvendor/lib/\0submodule.lib.url\n/srv/lib.git\0\
                    submodule.a.b.url\nhttps://h/a.git\0submodule.a.b.path\nab\0\
                    submodule.nourl.path\nx\0core.bare\nfalse\0";
        assert_eq!(
            parse_gitmodules(list),
            vec![
                Submodule {
                    name: "a.b".into(),
                    path: "ab".into(),
                    url: "https://h/a.git".into()
                },
                Submodule {
                    name: "lib".into(),
                    path: "vendor/lib".into(),
                    url: "/srv/lib.git".into()
                },
            ]
        );
    }

    #[test]
    fn paths_and_gitlinks() {
        assert!(safe_path("vendor/lib") && safe_path("a"));
        for bad in ["/etc", "../x", "a/../b", "a//b", ".git", "-x", ""] {
            assert!(!safe_path(bad), "{bad}");
        }
        assert_eq!(
            gitlink("160000 commit 0123abcd\tvendor/lib\n").as_deref(),
            Some("0123abcd")
        );
        assert_eq!(gitlink("100644 blob 0123abcd\tvendor/lib\n"), None);
        assert_eq!(gitlink(""), None);
    }
}
