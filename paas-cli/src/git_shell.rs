//! `paas-git-shell`: what sshd runs for every `git push` key (the forced command in the git
//! user's authorized_keys), and the pre-receive hook of every app repo.
//!
//! - `paas-git-shell [--socket S] KEYNAME`: reads `SSH_ORIGINAL_COMMAND`, accepts only
//!   `git-receive-pack 'APP'` (push) and `git-upload-pack 'APP'` (clone/fetch), asks paasd
//!   for the app's repo (paasd creates the app on a first push) and runs git on it.
//! - `paas-git-shell [--socket S] hook APP --branch B...`: the pre-receive hook. A push of a
//!   deploy branch is archived (with its git submodules, `submodules.rs`) and deployed
//!   through the API, exactly like `paas deploy`, with the build and rollout output going
//!   back to the pusher (`remote: ...`). A failed deploy fails the hook, so git refuses the
//!   ref update and `git push` exits non-zero.
//!
//! Must not deploy by itself or touch paasd's state: everything goes through the API, and
//! the deploy runs in paasd (a pusher who disconnects does not stop it).

use std::io::BufRead;
use std::path::PathBuf;
use std::process::{Command, ExitCode};

use anyhow::{anyhow, bail, Context as _, Result};
use paas_api::{Client, GitAccess, GitRepo, GitService, Method, API_PREFIX};

use crate::commands::{seg, Ctx};
use crate::output;
use crate::source::Source;

/// How long the shell waits for paasd to hand out a repo.
const ACCESS_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);
/// Set for the hook (git passes its environment on): which key pushed.
const KEY_ENV: &str = "PAAS_GIT_KEY";

/// `paas-git-shell`'s `main`.
pub fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match crate::block_on(run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            output::status(&format!("paas: {e:#}"));
            ExitCode::from(crate::EXIT_FAILURE)
        }
    }
}

/// What the command line asks for.
#[derive(Debug, PartialEq, Eq)]
enum Mode {
    Shell { key: String },
    Hook { app: String, branches: Vec<String> },
}

fn parse_args(mut args: Vec<String>) -> Result<(PathBuf, Mode)> {
    let mut socket = std::env::var_os("PAAS_SOCKET")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(paas_api::DEFAULT_SOCKET));
    if args.first().map(String::as_str) == Some("--socket") {
        if args.len() < 2 {
            bail!("--socket needs a path");
        }
        socket = PathBuf::from(args.remove(1));
        args.remove(0);
    }
    let mode = match args.as_slice() {
        [key] => Mode::Shell { key: key.clone() },
        [hook, app, rest @ ..] if hook == "hook" => {
            let mut branches = Vec::new();
            let mut it = rest.iter();
            while let Some(flag) = it.next() {
                match (flag.as_str(), it.next()) {
                    ("--branch", Some(b)) => branches.push(b.clone()),
                    _ => bail!("unexpected hook argument '{flag}'"),
                }
            }
            Mode::Hook {
                app: app.clone(),
                branches,
            }
        }
        _ => bail!(
            "usage: paas-git-shell [--socket PATH] KEYNAME (as an SSH forced command), \
             or paas-git-shell [--socket PATH] hook APP --branch NAME..."
        ),
    };
    Ok((socket, mode))
}

async fn run(args: Vec<String>) -> Result<()> {
    let (socket, mode) = parse_args(args)?;
    let ctx = Ctx {
        client: Client::new(socket.clone()),
        json: false,
    };
    match mode {
        Mode::Shell { key } => shell(&ctx, &socket, &key).await,
        Mode::Hook { app, branches } => hook(&ctx, &app, &branches).await,
    }
}

/// The SSH session: check the command, get the repo, hand over to git.
async fn shell(ctx: &Ctx, socket: &std::path::Path, key: &str) -> Result<()> {
    let original = match std::env::var("SSH_ORIGINAL_COMMAND") {
        Ok(c) => c,
        Err(std::env::VarError::NotPresent) => String::new(),
        Err(std::env::VarError::NotUnicode(_)) => {
            bail!("that command is not allowed: this account only takes `git push` of an app")
        }
    };
    let (service, app) = parse_command(&original, key)?;
    let access = GitAccess {
        service,
        key: key.to_string(),
    };
    // A wedged paasd must fail the push, not hold the pusher's terminal forever.
    let value = tokio::time::timeout(
        ACCESS_TIMEOUT,
        ctx.request(
            Method::POST,
            &format!("{API_PREFIX}/git/{}", seg(&app, "app name")?),
            Some(&access),
        ),
    )
    .await
    .map_err(|_| {
        anyhow!(
            "paasd did not answer within {} s; try again later",
            ACCESS_TIMEOUT.as_secs()
        )
    })??;
    let repo: GitRepo = crate::commands::typed(value)?;
    if repo.created {
        output::status(&format!("-----> Created app {}", repo.app));
    }
    let sub = match service {
        GitService::ReceivePack => "receive-pack",
        GitService::UploadPack => "upload-pack",
    };
    use std::os::unix::process::CommandExt;
    // Only what git needs passes on: a client may send environment variables sshd accepts
    // (AcceptEnv), and GIT_* ones would reconfigure git.
    let mut git = Command::new("git");
    git.env_clear()
        .arg(sub)
        .arg(&repo.path)
        .env(
            "PATH",
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        )
        .env(KEY_ENV, key)
        .env("PAAS_SOCKET", socket);
    for var in ["HOME", "LANG", "USER", "LOGNAME"] {
        if let Some(v) = std::env::var_os(var) {
            git.env(var, v);
        }
    }
    // Protocol v2 negotiation; only its plain form.
    if let Ok(p) = std::env::var("GIT_PROTOCOL") {
        if p.strip_prefix("version=")
            .is_some_and(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()))
        {
            git.env("GIT_PROTOCOL", p);
        }
    }
    // exec: git now owns the SSH channel; nothing of ours may write to it any more.
    let err = git.exec();
    Err(anyhow!("cannot run git {sub}: {err}"))
}

/// `git-receive-pack 'myapp'` (what `git push paas@host:myapp` sends) -> the service and the
/// app. `myapp.git`, `/myapp` and `'/myapp.git'` name the same app. Anything else is refused.
fn parse_command(original: &str, key: &str) -> Result<(GitService, String)> {
    let original = original.trim();
    if original.is_empty() {
        bail!(
            "hi {key}! You are authenticated, but this account only takes git pushes: \
             `git remote add paas paas@HOST:APP` then `git push paas main`"
        );
    }
    let (verb, arg) = original.split_once(' ').unwrap_or((original, ""));
    let service = match verb {
        "git-receive-pack" => GitService::ReceivePack,
        "git-upload-pack" => GitService::UploadPack,
        _ => bail!(
            "'{}' is not allowed: this account only takes `git push` (and clone/fetch) of an app, \
             e.g. `git push paas@HOST:myapp main`",
            shorten(original)
        ),
    };
    let arg = arg.trim();
    let unquoted = match arg.strip_prefix('\'').and_then(|a| a.strip_suffix('\'')) {
        Some(inner) if !inner.contains('\'') => inner,
        Some(_) => bail!("'{}' is not an app name", shorten(arg)),
        None => arg,
    };
    let app = unquoted.trim_start_matches('/');
    let app = app.strip_suffix(".git").unwrap_or(app);
    if app.is_empty() {
        bail!("say which app: `git push paas@HOST:myapp main`");
    }
    // paasd judges the name itself (and says what is wrong with it); this only keeps
    // paths from looking like something else.
    if app.contains('/') || app.starts_with('.') {
        bail!(
            "'{}' is not an app name: use the app's name, e.g. paas@HOST:myapp",
            shorten(unquoted)
        );
    }
    Ok((service, app.to_string()))
}

fn shorten(s: &str) -> String {
    let mut out: String = s.chars().filter(|c| !c.is_control()).take(80).collect();
    if s.chars().count() > 80 {
        out.push_str("...");
    }
    out
}

/// One ref update the push asks for.
#[derive(Debug, PartialEq, Eq)]
struct Update {
    new: String,
    name: String,
}

fn parse_updates(input: impl BufRead) -> Result<Vec<Update>> {
    let mut out = Vec::new();
    for line in input.lines() {
        let line = line.context("reading the pushed refs")?;
        let mut f = line.split_whitespace();
        match (f.next(), f.next(), f.next()) {
            (Some(_old), Some(new), Some(name)) => out.push(Update {
                new: new.into(),
                name: name.into(),
            }),
            _ if line.trim().is_empty() => {}
            _ => bail!("git sent an update line this hook does not understand: {line}"),
        }
    }
    Ok(out)
}

/// Which commit to deploy, or why the push is refused.
fn choose(updates: &[Update], branches: &[String]) -> Result<Option<(String, String)>> {
    let mut deploy = None;
    for u in updates {
        let branch = u.name.strip_prefix("refs/heads/");
        match branch {
            Some(b) if branches.iter().any(|x| x == b) => {
                if is_zero(&u.new) {
                    bail!("deleting branch {b} is refused: it is what this app deploys");
                }
                if deploy.is_some() {
                    bail!(
                        "push one deploy branch at a time ({})",
                        branches.join(" or ")
                    );
                }
                deploy = Some((b.to_string(), u.new.clone()));
            }
            _ => bail!(
                "pushing {} is refused: this app deploys {} only (try `git push paas HEAD:{}`)",
                u.name,
                branches.join(" or "),
                branches.first().map(String::as_str).unwrap_or("main")
            ),
        }
    }
    Ok(deploy)
}

/// The all-zero object id git uses for "no object" (a created or deleted ref), any hash.
fn is_zero(id: &str) -> bool {
    !id.is_empty() && id.bytes().all(|b| b == b'0')
}

/// The pre-receive hook: deploy the pushed commit, or refuse the push.
async fn hook(ctx: &Ctx, app: &str, branches: &[String]) -> Result<()> {
    let updates = parse_updates(std::io::stdin().lock())?;
    let Some((branch, commit)) = choose(&updates, branches)? else {
        return Ok(());
    };
    let short = &commit[..commit.len().min(7)];
    // git refuses a branch pointing at anything but a commit, but only after this hook: a
    // tag or tree pushed as main must not be deployed first.
    let kind = Command::new("git")
        .args(["cat-file", "-t", &commit])
        .output()
        .context("running git cat-file")?;
    if String::from_utf8_lossy(&kind.stdout).trim() != "commit" {
        bail!("{branch} must point at a commit; {short} is not one");
    }
    output::status(&format!("-----> Deploying {app} from {branch} ({short})"));
    // The archive is spooled to a temp file: the upload code sends files and directories,
    // and git archive's gzip is as good as ours.
    let dir = tempfile::Builder::new()
        .prefix("paas-push-")
        .tempdir()
        .context("making a temp dir for the archive")?;
    let tarball = dir.path().join("source.tar.gz");
    if crate::submodules::has_gitmodules(None, &commit) {
        // Submodules are fetched from their URLs and go into the archive too.
        let n = crate::submodules::archive(&commit, &tarball, &mut |l| output::status(&l))?;
        output::status(&format!("-----> Included {n} submodule(s)"));
    } else {
        let out = Command::new("git")
            .args(["archive", "--format=tar.gz", "-o"])
            .arg(&tarball)
            .arg(&commit)
            .output()
            .context("running git archive")?;
        if !out.status.success() {
            bail!(
                "git archive {short} failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
    }
    let source = Source::open(&tarball, &mut |w| output::status(&w))?;
    let key = std::env::var(KEY_ENV).unwrap_or_else(|_| "unknown key".into());
    let who = format!("{key} (git push {short})");
    crate::commands::deploy::deploy_source(ctx, app, source, Some(&who)).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_the_ways_git_names_a_repo() {
        for (cmd, app) in [
            ("git-receive-pack 'myapp'", "myapp"),
            ("git-receive-pack 'myapp.git'", "myapp"),
            ("git-receive-pack '/myapp.git'", "myapp"),
            ("git-upload-pack 'myapp'", "myapp"),
        ] {
            let (_, got) = parse_command(cmd, "k").expect(cmd);
            assert_eq!(got, app, "{cmd}");
        }
        assert_eq!(
            parse_command("git-upload-pack 'a'", "k").expect("ok").0,
            GitService::UploadPack
        );
    }

    #[test]
    fn refuses_everything_else() {
        for (cmd, why) in [
            ("", "only takes git pushes"),
            ("bash", "'bash' is not allowed"),
            ("git-upload-archive 'a'", "not allowed"),
            ("git-receive-pack '../../etc'", "not an app name"),
            ("git-receive-pack 'a/b'", "not an app name"),
            ("git-receive-pack 'a'\\''b'", "not an app name"),
            ("git-receive-pack ''", "say which app"),
        ] {
            let e = parse_command(cmd, "k").expect_err(cmd).to_string();
            assert!(e.contains(why), "{cmd}: {e}");
        }
    }

    #[test]
    fn hook_args() {
        let (socket, mode) = parse_args(
            [
                "--socket", "/s", "hook", "a", "--branch", "main", "--branch", "master",
            ]
            .map(String::from)
            .to_vec(),
        )
        .expect("valid");
        assert_eq!(socket, PathBuf::from("/s"));
        assert_eq!(
            mode,
            Mode::Hook {
                app: "a".into(),
                branches: vec!["main".into(), "master".into()]
            }
        );
        let (_, mode) = parse_args(vec!["alice".into()]).expect("valid");
        assert_eq!(
            mode,
            Mode::Shell {
                key: "alice".into()
            }
        );
    }

    #[test]
    fn only_deploy_branches_pass() {
        let b = ["main".to_string(), "master".to_string()];
        const ZERO: &str = "0000000000000000000000000000000000000000";
        assert!(is_zero(ZERO) && !is_zero("") && !is_zero("00a0"));
        let up = |name: &str, new: &str| Update {
            new: new.into(),
            name: name.into(),
        };
        assert_eq!(
            choose(&[up("refs/heads/main", "abc")], &b).expect("ok"),
            Some(("main".into(), "abc".into()))
        );
        let e = choose(&[up("refs/heads/feature", "abc")], &b).expect_err("other branch");
        assert!(e.to_string().contains("deploys main or master only"), "{e}");
        assert!(choose(&[up("refs/tags/v1", "abc")], &b).is_err());
        assert!(choose(&[up("refs/heads/main", ZERO)], &b).is_err());
        assert!(choose(
            &[up("refs/heads/main", "a"), up("refs/heads/master", "b")],
            &b
        )
        .is_err());
        let lines = parse_updates(&b"0000 1111 refs/heads/main\n"[..]).expect("parse");
        assert_eq!(lines, vec![up("refs/heads/main", "1111")]);
    }
}
