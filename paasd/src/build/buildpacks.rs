//! Which buildpacks a build may use and where they come from: the built-ins (a fixed
//! detection order), the app's choice (in the order `paas buildpacks set`, app.json
//! `buildpacks`, `.buildpacks`, `BUILDPACK_URL` in `.env`), and what each reference names (a
//! built-in, a directory on the server, a git URL). Each build gets its own writable copy,
//! so a buildpack can leave an `export` file for the next one. Must not run them, and must
//! not fetch anything (`gitpacks.rs` clones git URLs).

use std::fs;
use std::io;
use std::os::unix::fs::{lchown, symlink};
use std::path::{Path, PathBuf};

use crate::app_files;

/// Built-ins, in the order detection tries them.
pub const BUILTIN_ORDER: &[&str] = &["nodejs", "python", "go", "static", "procfile"];

/// The most buildpacks one app may chain (also `paas buildpacks set`'s limit).
pub const MAX_CHAINED: usize = 8;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Buildpack {
    /// What the user sees: the built-in name, or the directory or URL as configured.
    pub name: String,
    pub source: PathBuf,
}

impl Buildpack {
    /// A short name for its dir in the build: the built-in's name, the directory's last part,
    /// or a git URL's repository name.
    pub fn label(&self) -> String {
        let from_name = match classify(&self.name) {
            Ok(Reference::Git(g)) => Some(g.repo_name()),
            _ => None,
        };
        from_name
            .or_else(|| {
                self.source
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
            })
            .unwrap_or_else(|| "buildpack".into())
    }
}

/// Where an app's buildpack list came from. The first that has one decides.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// `paas buildpacks set` (the app's config).
    Config,
    /// `buildpacks` in app.json (`[{"url": "..."}]`).
    AppJson,
    /// `.buildpacks`: one per line, all of them run in order (heroku-buildpack-multi, dokku).
    BuildpacksFile,
    /// `BUILDPACK_URL=...` in `.env` (dokku).
    DotEnv,
}

impl Origin {
    pub fn describe(self) -> &'static str {
        match self {
            Origin::Config => "paas buildpacks set",
            Origin::AppJson => "app.json",
            Origin::BuildpacksFile => ".buildpacks",
            Origin::DotEnv => "BUILDPACK_URL in .env",
        }
    }
}

/// The app's own buildpack list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Selection {
    pub origin: Origin,
    pub references: Vec<String>,
}

/// An app file that names buildpacks and cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum SelectError {
    #[error("{file}: {reason}")]
    Invalid { file: &'static str, reason: String },
    #[error("cannot read {file}: {source}")]
    Read {
        file: &'static str,
        source: io::Error,
    },
}

/// The app's buildpacks, by the selection order: `configured` (from `paas buildpacks set`),
/// then app.json `buildpacks`, `.buildpacks`, `BUILDPACK_URL` in `.env`. `None`: detect among
/// the built-ins.
pub fn select(configured: &[String], app_dir: &Path) -> Result<Option<Selection>, SelectError> {
    if !configured.is_empty() {
        return Ok(Some(Selection {
            origin: Origin::Config,
            references: configured.to_vec(),
        }));
    }
    if let Some(json) = app_files::app_json(app_dir) {
        let refs = app_json_buildpacks(&json).map_err(|reason| SelectError::Invalid {
            file: "app.json",
            reason,
        })?;
        if !refs.is_empty() {
            return Ok(Some(Selection {
                origin: Origin::AppJson,
                references: refs,
            }));
        }
    }
    let read = |file: &'static str| {
        app_files::read(app_dir, file).map_err(|source| SelectError::Read { file, source })
    };
    if let Some(text) = read(".buildpacks")? {
        let refs = parse_buildpacks_file(&text).map_err(|reason| SelectError::Invalid {
            file: ".buildpacks",
            reason,
        })?;
        if !refs.is_empty() {
            return Ok(Some(Selection {
                origin: Origin::BuildpacksFile,
                references: refs,
            }));
        }
    }
    if let Some(text) = read(".env")? {
        if let Some(url) = env_file_value(&text, "BUILDPACK_URL") {
            check_reference(&url).map_err(|reason| SelectError::Invalid {
                file: ".env",
                reason,
            })?;
            return Ok(Some(Selection {
                origin: Origin::DotEnv,
                references: vec![url],
            }));
        }
    }
    Ok(None)
}

/// app.json's `buildpacks`: `[{"url": "..."}, ...]`; absent or empty is no choice.
pub fn app_json_buildpacks(json: &serde_json::Value) -> Result<Vec<String>, String> {
    let Some(list) = json.get("buildpacks") else {
        return Ok(Vec::new());
    };
    let list = list
        .as_array()
        .ok_or("buildpacks must be a list like [{\"url\": \"heroku/nodejs\"}]")?;
    let mut out = Vec::new();
    for (i, bp) in list.iter().enumerate() {
        let url = bp
            .get("url")
            .and_then(|u| u.as_str())
            .ok_or_else(|| format!("buildpacks[{i}] has no \"url\" string"))?;
        check_reference(url).map_err(|e| format!("buildpacks[{i}]: {e}"))?;
        out.push(url.to_string());
    }
    limit(out)
}

/// `.buildpacks`: one reference per line; blank lines and `#` comment lines are skipped.
pub fn parse_buildpacks_file(text: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        check_reference(line).map_err(|e| format!("line {}: {e}", n + 1))?;
        out.push(line.to_string());
    }
    limit(out)
}

fn limit(refs: Vec<String>) -> Result<Vec<String>, String> {
    if refs.len() > MAX_CHAINED {
        return Err(format!(
            "{} buildpacks listed; at most {MAX_CHAINED} can be chained",
            refs.len()
        ));
    }
    Ok(refs)
}

/// The value of `key` in a dotenv file (`KEY=value`, `export KEY=value`, quoted or not);
/// `None` when it is absent or empty.
pub fn env_file_value(text: &str, key: &str) -> Option<String> {
    let mut found = None;
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with('#') {
            continue;
        }
        let line = line.strip_prefix("export ").unwrap_or(line).trim_start();
        let Some((k, v)) = line.split_once('=') else {
            continue;
        };
        if k.trim() != key {
            continue;
        }
        let v = v.trim();
        let v = ['"', '\'']
            .iter()
            .find_map(|q| v.strip_prefix(*q).and_then(|r| r.strip_suffix(*q)))
            .unwrap_or(v);
        // The last assignment wins, as in a shell.
        found = (!v.is_empty()).then(|| v.to_string());
    }
    found
}

/// One reference as an app file or the API may give it: no spaces, no control characters.
fn check_reference(r: &str) -> Result<(), String> {
    if r.is_empty() || r.len() > 1024 || r.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err(format!(
            "'{}' is not a buildpack: give a built-in name, an absolute directory or a git URL, one per entry",
            r.escape_default()
        ));
    }
    Ok(())
}

/// What a reference names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reference {
    Builtin(String),
    Dir(PathBuf),
    Git(GitUrl),
}

/// A git URL, pinned by `#ref` (branch, tag or commit) or not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GitUrl {
    pub url: String,
    pub rev: Option<String>,
}

impl GitUrl {
    /// The repository's name: the URL's last path part without `.git`.
    pub fn repo_name(&self) -> String {
        let last = self
            .url
            .trim_end_matches('/')
            .rsplit(['/', ':'])
            .next()
            .unwrap_or("");
        let name = last.strip_suffix(".git").unwrap_or(last);
        if name.is_empty() {
            "buildpack".into()
        } else {
            name.into()
        }
    }
}

impl std::fmt::Display for GitUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.rev {
            Some(r) => write!(f, "{}#{r}", self.url),
            None => f.write_str(&self.url),
        }
    }
}

/// Heroku's shorthands for its official buildpacks that have a built-in counterpart.
const HEROKU_SHORTHANDS: &[(&str, &str)] = &[
    ("heroku/nodejs", "nodejs"),
    ("heroku/python", "python"),
    ("heroku/go", "go"),
];

/// Tells a built-in name, a directory and a git URL apart (nothing is checked on disk).
/// Git URLs: `https://`, `http://`, `ssh://`, `git://`, `file://`, `user@host:path`, and
/// absolute paths ending in `.git` (a bare repo on the server).
pub fn classify(reference: &str) -> Result<Reference, String> {
    if let Some((_, b)) = HEROKU_SHORTHANDS.iter().find(|(h, _)| *h == reference) {
        return Ok(Reference::Builtin((*b).to_string()));
    }
    if BUILTIN_ORDER.contains(&reference) {
        return Ok(Reference::Builtin(reference.to_string()));
    }
    let (url, rev) = match reference.rsplit_once('#') {
        Some((u, r)) => (u, Some(r)),
        None => (reference, None),
    };
    let schemes = ["https://", "http://", "ssh://", "git://", "file://"];
    let is_git = schemes.iter().any(|s| url.starts_with(s))
        || is_scp_like(url)
        || (url.starts_with('/') && url.trim_end_matches('/').ends_with(".git"));
    if is_git {
        if let Some(r) = rev {
            check_rev(r).map_err(|e| format!("buildpack '{reference}': {e}"))?;
        }
        return Ok(Reference::Git(GitUrl {
            url: url.to_string(),
            rev: rev.map(str::to_string),
        }));
    }
    if reference.starts_with('/') {
        return Ok(Reference::Dir(PathBuf::from(reference)));
    }
    if reference.contains("://") {
        return Err(format!(
            "buildpack '{reference}': only https, http, ssh, git and file URLs can be cloned"
        ));
    }
    Err(format!(
        "unknown buildpack '{reference}': use a built-in ({}), an absolute directory on the server or a git URL",
        BUILTIN_ORDER.join(", ")
    ))
}

/// `git@github.com:owner/repo.git`: user, host, colon, path.
fn is_scp_like(url: &str) -> bool {
    let Some((user_host, path)) = url.split_once(':') else {
        return false;
    };
    let Some((user, host)) = user_host.split_once('@') else {
        return false;
    };
    let word = |s: &str, extra: &[char]| {
        !s.is_empty()
            && !s.starts_with('-')
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || extra.contains(&c))
    };
    word(user, &['.', '_', '-'][..]) && word(host, &['.', '-'][..]) && !path.is_empty()
}

/// A branch, tag or commit: what git accepts as a ref name, never an option.
fn check_rev(rev: &str) -> Result<(), String> {
    let ok = !rev.is_empty()
        && rev.len() <= 200
        && !rev.starts_with('-')
        && !rev.contains("..")
        && rev
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._/-+".contains(c));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "'#{rev}' is not a branch, tag or commit (letters, digits and . _ / - + only)"
        ))
    }
}

/// Resolves a built-in name or an absolute directory on the server (git URLs are cloned
/// first by `gitpacks.rs`, then checked with [`check_dir`]).
pub fn resolve(reference: &str, builtins: &Path) -> Result<Buildpack, String> {
    let source = match classify(reference)? {
        Reference::Builtin(name) => builtins.join(name),
        Reference::Dir(dir) => dir,
        Reference::Git(g) => {
            return Err(format!(
                "buildpack '{reference}' is a git URL ({}): it must be cloned first",
                g.url
            ))
        }
    };
    check_dir(reference, source)
}

/// A buildpack directory has `bin/detect`, `bin/compile` and `bin/release`.
pub fn check_dir(reference: &str, source: PathBuf) -> Result<Buildpack, String> {
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

/// Refuses a directory or local git repo inside paasd's state dir (other apps' sources,
/// slugs and repos live there): an app file must not be able to read them.
pub fn outside_state(reference: &Reference, state: &Path) -> Result<(), String> {
    let path = match reference {
        Reference::Dir(d) => d.clone(),
        Reference::Git(g) if g.url.starts_with('/') => PathBuf::from(&g.url),
        Reference::Git(g) => match g.url.strip_prefix("file://") {
            Some(p) => PathBuf::from(p),
            None => return Ok(()),
        },
        Reference::Builtin(_) => return Ok(()),
    };
    let real = fs::canonicalize(&path).unwrap_or(path);
    let state = fs::canonicalize(state).unwrap_or_else(|_| state.to_path_buf());
    if real.starts_with(&state) {
        return Err(format!(
            "buildpack {}: paasd's state dir holds apps' sources and slugs; buildpacks may not come from it",
            real.display()
        ));
    }
    Ok(())
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
pub fn copy_into(bp: &Buildpack, dest: &Path, uid: u32) -> io::Result<()> {
    copy_tree(&bp.source, dest, uid)
}

fn copy_tree(from: &Path, to: &Path, uid: u32) -> io::Result<()> {
    let meta = fs::symlink_metadata(from)?;
    let ft = meta.file_type();
    if ft.is_symlink() {
        symlink(fs::read_link(from)?, to)?;
    } else if ft.is_dir() {
        fs::create_dir(to)?;
        fs::set_permissions(to, meta.permissions())?;
        for e in fs::read_dir(from)? {
            let e = e?;
            copy_tree(&e.path(), &to.join(e.file_name()), uid)?;
        }
    } else if ft.is_file() {
        fs::copy(from, to)?;
    } else {
        return Ok(());
    }
    lchown(to, Some(uid), Some(uid))
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
            .contains("must be cloned first"));
        assert_eq!(
            resolve("heroku/nodejs", d.path())
                .expect("shorthand")
                .source,
            d.path().join("nodejs")
        );
        let abs = d.path().join("nodejs");
        assert_eq!(
            resolve(abs.to_str().expect("utf8"), Path::new("/nonexistent"))
                .expect("dir")
                .source,
            abs
        );
        assert_eq!(builtins(d.path()).expect("found").len(), 1);
    }

    #[test]
    fn buildpacks_files_skip_blanks_and_comments() {
        let text = "# build the UI first\n\nnodejs\n  /srv/packs/extra  \n# then\nhttps://example.com/p.git#v1\n";
        assert_eq!(
            parse_buildpacks_file(text).expect("parses"),
            vec!["nodejs", "/srv/packs/extra", "https://example.com/p.git#v1"]
        );
        assert_eq!(
            parse_buildpacks_file("# only\n\n").expect("empty"),
            Vec::<String>::new()
        );
        let e = parse_buildpacks_file("nodejs\na b\n").expect_err("space");
        assert!(e.starts_with("line 2:"), "{e}");
        let nine = "nodejs\n".repeat(9);
        assert!(parse_buildpacks_file(&nine)
            .expect_err("too many")
            .contains("at most 8"));
    }

    #[test]
    fn dotenv_buildpack_url() {
        let v = |t: &str| env_file_value(t, "BUILDPACK_URL");
        assert_eq!(
            v("BUILDPACK_URL=https://x/y.git\n").as_deref(),
            Some("https://x/y.git")
        );
        assert_eq!(
            v("# c\nexport BUILDPACK_URL=\"https://x/y.git#v2\"\nOTHER=1\n").as_deref(),
            Some("https://x/y.git#v2")
        );
        assert_eq!(v("BUILDPACK_URL='/srv/p'").as_deref(), Some("/srv/p"));
        assert_eq!(v("BUILDPACK_URL=\n"), None);
        assert_eq!(v("#BUILDPACK_URL=x\nNOT_BUILDPACK_URL=y\n"), None);
    }

    #[test]
    fn app_json_lists_urls() {
        let j = serde_json::json!({"buildpacks": [{"url": "heroku/nodejs"}, {"url": "https://x/y.git"}]});
        assert_eq!(
            app_json_buildpacks(&j).expect("ok"),
            vec!["heroku/nodejs", "https://x/y.git"]
        );
        assert!(app_json_buildpacks(&serde_json::json!({}))
            .expect("none")
            .is_empty());
        let e = app_json_buildpacks(&serde_json::json!({"buildpacks": [{"name": "x"}]}))
            .expect_err("no url");
        assert!(e.contains("buildpacks[0]"), "{e}");
        assert!(app_json_buildpacks(&serde_json::json!({"buildpacks": "nodejs"})).is_err());
    }

    #[test]
    fn references_are_classified() {
        let git = |url: &str, rev: Option<&str>| {
            Reference::Git(GitUrl {
                url: url.into(),
                rev: rev.map(str::to_string),
            })
        };
        for (r, want) in [
            ("go", Reference::Builtin("go".into())),
            ("heroku/python", Reference::Builtin("python".into())),
            ("/srv/packs/x", Reference::Dir("/srv/packs/x".into())),
            ("/srv/packs/x.git", git("/srv/packs/x.git", None)),
            ("file:///tmp/p.git#v1", git("file:///tmp/p.git", Some("v1"))),
            (
                "https://h/o/p.git#main",
                git("https://h/o/p.git", Some("main")),
            ),
            (
                "git@github.com:o/p.git",
                git("git@github.com:o/p.git", None),
            ),
            ("ssh://git@h/o/p", git("ssh://git@h/o/p", None)),
        ] {
            assert_eq!(classify(r).expect(r), want, "{r}");
        }
        for (r, why) in [
            ("ruby", "unknown buildpack"),
            ("ftp://h/p", "only https"),
            ("https://h/p.git#--upload-pack=x", "not a branch"),
            ("https://h/p.git#a..b", "not a branch"),
            ("-oProxy@h:x", "unknown buildpack"),
        ] {
            let e = classify(r).expect_err(r);
            assert!(e.contains(why), "{r}: {e}");
        }
        let g = GitUrl {
            url: "https://h/o/heroku-buildpack-x.git".into(),
            rev: Some("v1".into()),
        };
        assert_eq!(g.repo_name(), "heroku-buildpack-x");
        assert_eq!(g.to_string(), "https://h/o/heroku-buildpack-x.git#v1");
    }

    #[test]
    fn selection_order() {
        let d = tempfile::tempdir().expect("tmp");
        let w = |f: &str, t: &str| fs::write(d.path().join(f), t).expect("write");
        assert_eq!(select(&[], d.path()).expect("ok"), None);
        w(".env", "BUILDPACK_URL=go\n");
        let got = |c: &[String]| select(c, d.path()).expect("ok").expect("some");
        assert_eq!(got(&[]).origin, Origin::DotEnv);
        w(".buildpacks", "nodejs\npython\n");
        assert_eq!(got(&[]).origin, Origin::BuildpacksFile);
        assert_eq!(got(&[]).references, vec!["nodejs", "python"]);
        w("app.json", r#"{"buildpacks": [{"url": "static"}]}"#);
        assert_eq!(got(&[]).references, vec!["static"]);
        let configured = got(&["procfile".to_string()]);
        assert_eq!(
            (configured.origin, configured.references),
            (Origin::Config, vec!["procfile".to_string()])
        );
        w("app.json", r#"{"buildpacks": [{"url": "a b"}]}"#);
        let e = select(&[], d.path()).expect_err("bad");
        assert!(e.to_string().starts_with("app.json: buildpacks[0]"), "{e}");
    }

    #[test]
    fn the_state_dir_is_not_a_buildpack_source() {
        let state = tempfile::tempdir().expect("tmp");
        let inside = state.path().join("git/other.git");
        let r = classify(inside.to_str().expect("utf8")).expect("git");
        assert!(outside_state(&r, state.path()).is_err());
        let r = classify(&format!("file://{}", inside.display())).expect("git");
        assert!(outside_state(&r, state.path()).is_err());
        let r = classify("/srv/packs/x").expect("dir");
        assert!(outside_state(&r, state.path()).is_ok());
    }
}
