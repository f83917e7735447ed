//! Issue 6: `git push` over SSH. A real sshd on a loopback port, a key added with
//! `paas keys add`, real `git push` of examples/node-hello through the forced command
//! (`paas-git-shell`) and the repo's pre-receive hook into a real paasd; the app answers
//! through the router. Needs root (skips loudly otherwise; never skips under CI).

#![forbid(unsafe_code)]

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use paas_tests::sshd::{git, Sshd};
use paas_tests::{have_root, load, node_app, Daemon, Run};
use serde_json::Value;

const BASE: &str = "paas.localhost";

/// A daemon that writes its keys where the test's sshd reads them, plus that sshd.
fn setup(test: &str) -> Option<(Daemon, Sshd)> {
    setup_with(test, "")
}

/// Like [`setup`] with more `[git]` keys.
fn setup_with(test: &str, git_keys: &str) -> Option<(Daemon, Sshd)> {
    if !have_root(test) {
        return None;
    }
    let sshd = Sshd::start();
    let d = Daemon::start_with_config(&format!(
        "[git]\nuser = \"root\"\nauthorized_keys = \"{}\"\n{git_keys}",
        sshd.authorized_keys().display()
    ));
    let out = d
        .paas(&[
            "keys",
            "add",
            "tester",
            &sshd.client_pub().display().to_string(),
        ])
        .ok()
        .to_string();
    let _ = out;
    Some((d, sshd))
}

/// A fresh git repo holding `src`'s files, committed on main.
fn repo_of(src: &Path) -> tempfile::TempDir {
    let dir = tempfile::Builder::new()
        .prefix("paas-push-")
        .tempdir()
        .expect("dir");
    for e in std::fs::read_dir(src).expect("read src").flatten() {
        if e.path().is_file() {
            std::fs::copy(e.path(), dir.path().join(e.file_name())).expect("copy");
        }
    }
    run_ok(git(dir.path(), &["init", "-q"]));
    commit_all(dir.path(), "first");
    dir
}

fn commit_all(dir: &Path, msg: &str) {
    run_ok(git(dir, &["add", "-A"]));
    run_ok(git(dir, &["commit", "-q", "-m", msg]));
}

fn run_ok(mut c: Command) -> Run {
    let r = Run::of(&mut c);
    assert!(r.status.success(), "{r:#?}");
    r
}

/// `git push` of `refspec` to `app` over the test's sshd.
fn push(sshd: &Sshd, dir: &Path, app: &str, refspec: &str) -> Run {
    let mut c = git(dir, &["push", &sshd.remote(app), refspec]);
    c.env("GIT_SSH_COMMAND", sshd.ssh_command());
    Run::of(&mut c)
}

fn releases(d: &Daemon, app: &str) -> Vec<Value> {
    d.paas(&["--json", "releases", app])
        .json()
        .as_array()
        .cloned()
        .unwrap_or_default()
}

#[test]
fn git_push_deploys_and_a_second_push_rolls_out_without_a_failed_request() {
    let Some((d, sshd)) = setup("git push") else {
        return;
    };
    // The key is listed with ssh-keygen's fingerprint.
    let fp = Run::of(Command::new("ssh-keygen").arg("-lf").arg(sshd.client_pub()))
        .ok()
        .split_whitespace()
        .nth(1)
        .expect("fingerprint")
        .to_string();
    let keys = d.paas(&["keys"]).ok().to_string();
    assert!(
        keys.contains("tester") && keys.contains(&fp),
        "{keys} lacks {fp}"
    );

    let app = node_app("v1");
    let repo = repo_of(app.path());
    let r = push(&sshd, repo.path(), "gp", "main");
    assert!(
        r.status.success(),
        "first push failed: {r:#?}\n{}",
        d.log_text()
    );
    // The pusher sees paasd's output live, prefixed by git.
    for want in [
        "-----> Created app gp",
        "remote: -----> Deploying gp from main",
        "remote: -----> Node.js",
        "remote: Released v",
    ] {
        assert!(
            r.stderr.contains(want),
            "push output lacks {want:?}:\n{}",
            r.stderr
        );
    }
    // Once: paasd's own closing build line is not repeated by the hook.
    assert_eq!(
        r.stderr.matches("Released v").count(),
        1,
        "push output:\n{}",
        r.stderr
    );
    let host = format!("gp.{BASE}");
    let (status, _, body) = d.http(&host, "/");
    assert_eq!(
        (status, body.as_str()),
        (200, "Hello from node-hello v1 on web.1\n")
    );
    let deploys = d.paas(&["--json", "releases", "gp"]).json();
    assert_eq!(deploys[0]["status"], "succeeded", "{deploys:#}");

    // A change, pushed under load: zero failed requests, the answers switch to v2.
    let server = repo.path().join("server.js");
    let text = std::fs::read_to_string(&server).expect("read");
    std::fs::write(&server, text.replace("|| 'v1'", "|| 'v2'")).expect("write");
    commit_all(repo.path(), "v2");
    let l = load::start(d.router(), &host, 20, Duration::from_secs(180));
    l.wait_for_more(100, Duration::from_secs(10));
    let r = push(&sshd, repo.path(), "gp", "main");
    l.wait_for_more(100, Duration::from_secs(10));
    let c = l.stop();
    println!("during the second push: {} ok, {} failed", c.ok, c.failed);
    assert!(r.status.success(), "second push failed: {r:#?}");
    assert!(!r.stderr.contains("Created app"), "{}", r.stderr);
    assert_eq!(c.failed, 0, "{:?}", c.errors);
    assert!(
        c.bodies.contains_key("Hello from node-hello v1 on web.1\n")
            && c.bodies.contains_key("Hello from node-hello v2 on web.1\n"),
        "{:?}",
        c.bodies
    );
    assert_eq!(d.http(&host, "/").2, "Hello from node-hello v2 on web.1\n");

    // The deployment record names the key and the commit.
    let history = d.client();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("rt");
    let deployments: Value = rt
        .block_on(history.get("/api/v1/apps/gp/deploy"))
        .expect("deployments");
    let user = deployments[0]["user"].as_str().unwrap_or("").to_string();
    assert!(user.starts_with("tester (git push "), "{deployments:#}");

    // The repo can be cloned back through the same forced command.
    let clone = tempfile::tempdir().expect("dir");
    let mut c = git(clone.path(), &["clone", "-q", &sshd.remote("gp"), "out"]);
    c.env("GIT_SSH_COMMAND", sshd.ssh_command());
    run_ok(c);
    let cloned = std::fs::read_to_string(clone.path().join("out/server.js")).expect("cloned");
    assert!(cloned.contains("|| 'v2'"));

    // Destroying the app removes its repo too.
    let repo_dir = d.state_dir().join("git/gp.git");
    assert!(repo_dir.join("HEAD").exists());
    d.paas(&["destroy", "gp", "--confirm", "gp"]).ok();
    assert!(!repo_dir.exists(), "repo left after destroy");
}

#[test]
fn a_failing_push_is_rejected_and_the_old_release_keeps_serving() {
    let Some((d, sshd)) = setup("git push failure") else {
        return;
    };
    let app = node_app("v1");
    let repo = repo_of(app.path());
    let r = push(&sshd, repo.path(), "bad", "main");
    assert!(r.status.success(), "{r:#?}");
    let before = releases(&d, "bad");

    // A broken package.json fails the build; git says the hook declined.
    std::fs::write(repo.path().join("package.json"), "{ not json").expect("write");
    commit_all(repo.path(), "broken");
    let r = push(&sshd, repo.path(), "bad", "main");
    assert_ne!(r.code(), 0, "{r:#?}");
    assert!(
        r.stderr.contains("package.json"),
        "build error shown: {}",
        r.stderr
    );
    assert!(
        r.stderr.contains("pre-receive hook declined"),
        "{}",
        r.stderr
    );
    let (status, _, body) = d.http(&format!("bad.{BASE}"), "/");
    assert_eq!(
        (status, body.as_str()),
        (200, "Hello from node-hello v1 on web.1\n")
    );
    let list = releases(&d, "bad");
    assert_eq!(list, before, "no release from the failed build");

    // A malformed app.json (issue 13) fails the push with the parser's line and column.
    std::fs::copy(
        app.path().join("package.json"),
        repo.path().join("package.json"),
    )
    .expect("restore package.json");
    std::fs::write(
        repo.path().join("app.json"),
        "{\n  \"name\": \"bad\",\n  \"formation\": {\"web\": {\"quantity\": }}\n}\n",
    )
    .expect("write app.json");
    commit_all(repo.path(), "malformed app.json");
    let r = push(&sshd, repo.path(), "bad", "main");
    assert_ne!(r.code(), 0, "{r:#?}");
    assert!(
        r.stderr.contains("app.json line 3, column"),
        "app.json error with line and column: {}",
        r.stderr
    );
    assert!(
        r.stderr.contains("pre-receive hook declined"),
        "{}",
        r.stderr
    );
    assert_eq!(
        releases(&d, "bad"),
        before,
        "no release from the malformed app.json"
    );

    // Other branches are refused with a message; nothing is deployed.
    run_ok(git(repo.path(), &["checkout", "-q", "-b", "feature"]));
    let r = push(&sshd, repo.path(), "bad", "feature");
    assert_ne!(r.code(), 0, "{r:#?}");
    assert!(
        r.stderr.contains("deploys main or master only"),
        "{}",
        r.stderr
    );

    // An unknown app with a bad name never gets a repo.
    let r = push(&sshd, repo.path(), "Bad_Name", "main");
    assert_ne!(r.code(), 0);
    assert!(
        r.stderr.contains("invalid app name") || r.stderr.contains("app name"),
        "{}",
        r.stderr
    );
    assert!(!d.state_dir().join("git/Bad_Name.git").exists());
}

#[test]
fn pushes_to_one_app_are_serialised_and_a_dropped_pusher_does_not_stop_the_deploy() {
    let Some((d, sshd)) = setup("git push concurrency") else {
        return;
    };
    // A build that takes a while (npm run build), so a second push arrives during it.
    let app = node_app("v1");
    let pkg = app.path().join("package.json");
    let text = std::fs::read_to_string(&pkg).expect("read");
    let slow = text.replacen(
        "\"scripts\": {",
        "\"scripts\": {\n    \"build\": \"echo slow build starts && sleep 8 && echo slow build done\",",
        1,
    );
    assert_ne!(slow, text, "package.json has no scripts; update the test");
    std::fs::write(&pkg, slow).expect("write");
    let repo = repo_of(app.path());
    let other = repo_of(node_app("v9").path());

    let mut first = git(repo.path(), &["push", &sshd.remote("ser"), "main"]);
    first
        .env("GIT_SSH_COMMAND", sshd.ssh_command())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut first = first.spawn().expect("push");
    wait_until(Duration::from_secs(60), "the first build running", || {
        d.paas(&["logs", "ser", "--source", "build"])
            .stdout
            .contains("slow build starts")
    });
    // The second push is refused with a message while the first builds.
    let r = push(&sshd, other.path(), "ser", "main");
    assert_ne!(r.code(), 0, "{r:#?}");
    assert!(r.stderr.contains("wait for it to finish"), "{}", r.stderr);

    // The first pusher goes away half-way; the deploy still finishes in paasd.
    let _ = first.kill();
    let _ = first.wait();
    wait_until(Duration::from_secs(120), "the deploy finished", || {
        releases(&d, "ser")
            .first()
            .is_some_and(|r| r["version"] == 2 && r["status"] == "succeeded")
    });
    let (status, _, body) = d.http(&format!("ser.{BASE}"), "/");
    assert_eq!(
        (status, body.as_str()),
        (200, "Hello from node-hello v1 on web.1\n")
    );
    let build = d
        .paas(&["logs", "ser", "--source", "build"])
        .ok()
        .to_string();
    assert!(
        build.contains("slow build done"),
        "the build log kept it: {build}"
    );
}

#[test]
fn the_forced_command_refuses_anything_but_git_and_removed_keys() {
    let Some((d, sshd)) = setup("git shell") else {
        return;
    };
    let shell = |cmd: &str| Run::of(&mut sshd.ssh(cmd));
    let r = shell("bash");
    assert_ne!(r.code(), 0);
    assert!(r.stderr.contains("'bash' is not allowed"), "{r:#?}");
    let r = shell("git-receive-pack '../../etc'");
    assert_ne!(r.code(), 0);
    assert!(r.stderr.contains("is not an app name"), "{r:#?}");
    let r = shell("git-receive-pack 'Bad_Name'");
    assert_ne!(r.code(), 0);
    assert!(r.stderr.contains("invalid app name"), "{r:#?}");
    let r = shell("");
    assert_ne!(r.code(), 0);
    assert!(r.stderr.contains("only takes git pushes"), "{r:#?}");
    // git's own options never pass for an app name.
    for sneaky in [
        "git-upload-pack '--upload-pack=touch /tmp/x'",
        "git-receive-pack '-x'",
    ] {
        let r = shell(sneaky);
        assert_ne!(r.code(), 0, "{sneaky}");
        assert!(
            r.stderr.contains("invalid app name") || r.stderr.contains("is not an app name"),
            "{sneaky}: {r:#?}"
        );
    }
    // Fetching an app that does not exist is refused without creating it.
    let r = shell("git-upload-pack 'ghost'");
    assert_ne!(r.code(), 0);
    assert!(r.stderr.contains("app 'ghost' does not exist"), "{r:#?}");
    d.paas(&["info", "ghost"]).fails(1, "does not exist");
    assert!(!d.state_dir().join("git").join("etc.git").exists());

    // The admin's own line in authorized_keys survives paasd's rewrites.
    let keys_file = sshd.authorized_keys();
    let text = std::fs::read_to_string(&keys_file).expect("keys");
    assert!(
        text.contains("command=") && text.contains("no-pty"),
        "{text}"
    );
    std::fs::write(
        &keys_file,
        format!("ssh-ed25519 AAAAadmin admin@box\n{text}"),
    )
    .expect("write");

    // A removed key cannot even log in.
    d.paas(&["keys", "remove", "tester"]).ok();
    let text = std::fs::read_to_string(&keys_file).expect("keys");
    assert!(!text.contains("paas-key:tester"), "{text}");
    assert!(text.contains("admin@box"), "{text}");
    let r = shell("git-receive-pack 'x'");
    assert_eq!(r.code(), 255, "{r:#?}");
    assert!(r.stderr.contains("Permission denied"), "{r:#?}");
    d.paas(&["keys", "remove", "tester"])
        .fails(1, "no key named 'tester'");

    // Bad keys are refused with a reason.
    let bad = sshd.dir().join("bad.pub");
    std::fs::write(&bad, "ssh-ed25519 !!!").expect("write");
    d.paas(&["keys", "add", "x", &bad.display().to_string()])
        .fails(1, "not valid base64");
    d.paas(&[
        "keys",
        "add",
        "bad name",
        &sshd.client_pub().display().to_string(),
    ])
    .fails(1, "invalid key name");
}

fn wait_until(max: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + max;
    while !cond() {
        assert!(Instant::now() < deadline, "{what}: not within {max:?}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn pushing_to_an_unknown_app_is_refused_when_create_on_push_is_off() {
    let Some((d, sshd)) = setup_with("git push no create", "create_on_push = false\n") else {
        return;
    };
    let repo = repo_of(node_app("v1").path());
    let r = push(&sshd, repo.path(), "nope", "main");
    assert_ne!(r.code(), 0, "{r:#?}");
    assert!(
        r.stderr.contains("app 'nope' does not exist") && r.stderr.contains("paas create nope"),
        "{}",
        r.stderr
    );
    d.paas(&["info", "nope"]).fails(1, "does not exist");
    // Once the app exists, the push deploys it.
    d.paas(&["create", "nope"]).ok();
    let r = push(&sshd, repo.path(), "nope", "main");
    assert!(r.status.success(), "{r:#?}");
    assert_eq!(d.http(&format!("nope.{BASE}"), "/").0, 200);
}

#[test]
fn git_push_includes_submodules_and_an_unreachable_one_fails_the_push() {
    let Some((d, sshd)) = setup("git push submodules") else {
        return;
    };
    // The submodule: a bare repo on this machine.
    let sub = tempfile::Builder::new()
        .prefix("paas-sub-")
        .tempdir()
        .expect("dir");
    let work = sub.path().join("work");
    std::fs::create_dir_all(&work).expect("mkdir");
    std::fs::write(work.join("greeting.txt"), "from the submodule\n").expect("write");
    run_ok(git(&work, &["init", "-q"]));
    commit_all(&work, "lib");
    let bare = sub.path().join("lib.git");
    run_ok(git(
        sub.path(),
        &["clone", "-q", "--bare", "work", &bare.display().to_string()],
    ));

    let app = node_app("v1");
    let repo = repo_of(app.path());
    run_ok(git(
        repo.path(),
        &[
            "-c",
            "protocol.file.allow=always",
            "submodule",
            "add",
            "-q",
            &bare.display().to_string(),
            "vendor/lib",
        ],
    ));
    commit_all(repo.path(), "with a submodule");
    let r = push(&sshd, repo.path(), "subm", "main");
    assert!(r.status.success(), "{r:#?}\n{}", d.log_text());
    assert!(
        r.stderr
            .contains("remote: -----> Fetching submodule vendor/lib"),
        "{}",
        r.stderr
    );
    let run = d.paas(&["run", "subm", "--", "cat", "vendor/lib/greeting.txt"]);
    assert_eq!(run.ok(), "from the submodule\n");
    let before = releases(&d, "subm");

    // A submodule URL the server cannot reach fails the push, naming the submodule and URL.
    let gone = "/nonexistent/paas-no-such-lib.git";
    run_ok(git(
        repo.path(),
        &[
            "config",
            "-f",
            ".gitmodules",
            "submodule.vendor/lib.url",
            gone,
        ],
    ));
    commit_all(repo.path(), "moved submodule");
    let r = push(&sshd, repo.path(), "subm", "main");
    assert_ne!(r.code(), 0, "{r:#?}");
    assert!(
        r.stderr
            .contains(&format!("submodule 'vendor/lib' ({gone})"))
            && r.stderr.contains("pre-receive hook declined"),
        "{}",
        r.stderr
    );
    assert_eq!(releases(&d, "subm"), before, "nothing deployed");
    assert_eq!(
        d.http(&format!("subm.{BASE}"), "/").2,
        "Hello from node-hello v1 on web.1\n"
    );
}
