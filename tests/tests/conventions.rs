//! Issue 13: Heroku/dokku conventions, against the real paasd and real build containers.
//! Buildpack selection (`paas buildpacks set` > app.json > `.buildpacks` > `BUILDPACK_URL`
//! in `.env` > detection), `.buildpacks` running every listed buildpack in order, git-URL
//! buildpacks cloned from a local bare repo once and then cached, dokku's `.static`, Go's
//! `.godir` (GOPATH mode) and `GOVERSION`, python's `runtime.txt` / `.python-version`, and
//! node's `engines.node`. Needs root (skips loudly otherwise; never skips under CI).

#![forbid(unsafe_code)]

use std::path::Path;
use std::process::Command;

use paas_tests::sshd::git;
use paas_tests::{have_root, node_app, tarball, Daemon, Run};
use serde_json::Value;

const BASE: &str = "paas.localhost";

fn daemon(test: &str) -> Option<Daemon> {
    have_root(test).then(Daemon::start)
}

/// A buildpack in `dir/name` whose detect prints `name`, whose compile runs `compile` and
/// whose release declares `console: cat order.txt` (no instance runs by default).
fn pack(dir: &Path, name: &str, compile: &str) -> String {
    let bin = dir.join(name).join("bin");
    std::fs::create_dir_all(&bin).expect("mkdir");
    for (step, body) in [
        ("detect", format!("echo {name}")),
        ("compile", compile.to_string()),
        (
            "release",
            "printf -- '---\\ndefault_process_types:\\n  console: cat order.txt\\n'".into(),
        ),
    ] {
        paas_tests::write_script(&bin.join(step), body.as_ref());
    }
    dir.join(name).display().to_string()
}

/// A pack that says it ran and appends its name to `order.txt` in the app.
fn appending_pack(dir: &Path, name: &str) -> String {
    pack(
        dir,
        name,
        &format!(
            "echo \"-----> {name} ran\"; echo {name} >> \"$1/order.txt\"; \
             echo \"       order so far: $(paste -sd, \"$1/order.txt\")\""
        ),
    )
}

/// Deploys `files` (path, contents) to `app` through the API: (status, output, the error
/// message if the stream ended with one, the last event).
fn deploy(d: &Daemon, app: &str, files: &[(&str, &str)]) -> (String, Option<String>, Value) {
    let with_modes: Vec<(&str, &str, u32)> = files.iter().map(|(p, c)| (*p, *c, 0o644)).collect();
    let (status, events) = d.deploy_raw(app, tarball(&with_modes));
    assert_eq!(status, 200, "{events:?}");
    let out = events
        .iter()
        .filter(|e| e["type"] == "output")
        .map(|e| e["line"].as_str().unwrap_or("").to_string())
        .collect::<Vec<_>>()
        .join("\n");
    let last = events.last().cloned().unwrap_or(Value::Null);
    let error = (last["type"] == "error").then(|| last["message"].as_str().unwrap_or("").into());
    (out, error, last)
}

fn deploy_ok(d: &Daemon, app: &str, files: &[(&str, &str)]) -> (String, Value) {
    let (out, error, last) = deploy(d, app, files);
    assert_eq!(error, None, "deploy of {app} failed; output:\n{out}");
    (out, last)
}

fn deploy_fails(d: &Daemon, app: &str, files: &[(&str, &str)]) -> (String, String) {
    let (out, error, _) = deploy(d, app, files);
    let error = error.unwrap_or_else(|| panic!("deploy of {app} succeeded; output:\n{out}"));
    (out, error)
}

fn ran(out: &str, name: &str) -> bool {
    out.contains(&format!("-----> {name} ran"))
}

#[test]
fn a_buildpacks_file_runs_every_listed_buildpack_in_order() {
    let Some(d) = daemon("a_buildpacks_file_runs_every_listed_buildpack_in_order") else {
        return;
    };
    let packs = tempfile::tempdir().expect("tmp");
    let first = appending_pack(packs.path(), "first");
    let second = appending_pack(packs.path(), "second");
    d.paas(&["create", "multi"]).ok();
    let list = format!("# the UI first\n\n{first}\n   \n# then the API\n{second}\n");
    let (out, done) = deploy_ok(
        &d,
        "multi",
        &[(".buildpacks", list.as_str()), ("x.txt", "x")],
    );
    assert!(
        out.contains(&format!(
            "-----> Buildpacks from .buildpacks: {first}, {second}"
        )),
        "{out}"
    );
    let (a, b) = (out.find("first ran"), out.find("second ran"));
    assert!(a.is_some() && b.is_some() && a < b, "order: {out}");
    assert!(out.contains("order so far: first,second"), "{out}");
    assert_eq!(
        done["release"]["deployment"]["buildpacks"],
        serde_json::json!([first, second])
    );
    // The slug holds what both did, in order.
    let run = d.paas(&["run", "multi", "--", "cat", "order.txt"]);
    assert_eq!(run.ok(), "first\nsecond\n");
}

#[test]
fn the_selection_order_is_config_app_json_buildpacks_file_dotenv() {
    let Some(d) = daemon("the_selection_order_is_config_app_json_buildpacks_file_dotenv") else {
        return;
    };
    let packs = tempfile::tempdir().expect("tmp");
    let first = appending_pack(packs.path(), "first");
    let second = appending_pack(packs.path(), "second");
    d.paas(&["create", "order"]).ok();
    let app_json = format!("{{\"buildpacks\": [{{\"url\": \"{first}\"}}]}}");
    let dotenv_second = format!("PORT_HINT=1\nexport BUILDPACK_URL=\"{second}\"\n");
    let dotenv_first = format!("BUILDPACK_URL={first}\n");

    // app.json beats .buildpacks and .env.
    let (out, _) = deploy_ok(
        &d,
        "order",
        &[
            ("app.json", app_json.as_str()),
            (".buildpacks", second.as_str()),
            (".env", dotenv_second.as_str()),
        ],
    );
    assert!(out.contains("Buildpacks from app.json"), "{out}");
    assert!(ran(&out, "first") && !ran(&out, "second"), "{out}");

    // .buildpacks beats .env.
    let (out, _) = deploy_ok(
        &d,
        "order",
        &[
            (".buildpacks", second.as_str()),
            (".env", dotenv_first.as_str()),
        ],
    );
    assert!(ran(&out, "second") && !ran(&out, "first"), "{out}");

    // BUILDPACK_URL in .env (dokku) is used when nothing else names one.
    let (out, _) = deploy_ok(&d, "order", &[(".env", dotenv_first.as_str())]);
    assert!(
        out.contains("Buildpacks from BUILDPACK_URL in .env"),
        "{out}"
    );
    assert!(ran(&out, "first") && !ran(&out, "second"), "{out}");

    // `paas buildpacks set` beats every file.
    d.paas(&["buildpacks", "set", "order", &second]).ok();
    let (out, _) = deploy_ok(
        &d,
        "order",
        &[
            ("app.json", app_json.as_str()),
            (".env", dotenv_first.as_str()),
        ],
    );
    assert!(ran(&out, "second") && !ran(&out, "first"), "{out}");
    assert!(!out.contains("Buildpacks from"), "{out}");

    // A listed buildpack that does not exist names itself and the file.
    let fresh = "fresh";
    d.paas(&["create", fresh]).ok();
    let (_, error) = deploy_fails(&d, fresh, &[(".buildpacks", "/nonexistent/pack\n")]);
    assert!(
        error.contains("/nonexistent/pack") && error.contains("(from .buildpacks)"),
        "{error}"
    );
}

/// A git repo at `dir/work` holding a buildpack whose compile says "gitpack VERSION ran",
/// tagged `v1`; returns the path of its bare clone `dir/pack.git`.
fn git_pack(dir: &Path) -> std::path::PathBuf {
    let work = dir.join("work");
    pack(
        dir,
        "work",
        "echo \"-----> gitpack v1 ran\"; echo gitpack >> \"$1/order.txt\"",
    );
    run_ok(git(&work, &["init", "-q"]));
    run_ok(git(&work, &["add", "-A"]));
    run_ok(git(&work, &["commit", "-q", "-m", "v1"]));
    run_ok(git(&work, &["tag", "v1"]));
    // Later commits on the branch must not reach a build pinned to v1.
    std::fs::write(
        work.join("bin/compile"),
        "#!/usr/bin/env bash\necho \"-----> gitpack v2 ran\"\n",
    )
    .expect("write");
    run_ok(git(&work, &["commit", "-q", "-am", "v2"]));
    let bare = dir.join("pack.git");
    run_ok(git(
        dir,
        &["clone", "-q", "--bare", "work", &bare.display().to_string()],
    ));
    bare
}

fn run_ok(mut c: Command) -> Run {
    let r = Run::of(&mut c);
    assert!(r.status.success(), "{r:#?}");
    r
}

#[test]
fn a_git_url_buildpack_is_cloned_once_then_used_from_the_cache() {
    let Some(d) = daemon("a_git_url_buildpack_is_cloned_once_then_used_from_the_cache") else {
        return;
    };
    let dir = tempfile::tempdir().expect("tmp");
    let bare = git_pack(dir.path());
    let url = format!("file://{}#v1", bare.display());
    d.paas(&["create", "gitbp"]).ok();
    let (out, _) = deploy_ok(&d, "gitbp", &[(".buildpacks", url.as_str())]);
    assert!(
        out.contains(&format!("-----> Cloned buildpack {url}")),
        "{out}"
    );
    assert!(ran(&out, "gitpack v1"), "pinned to the tag: {out}");
    let cache = d.state_dir().join("buildpacks");
    let entries: Vec<_> = std::fs::read_dir(&cache)
        .expect("the clone cache")
        .flatten()
        .collect();
    assert_eq!(entries.len(), 1, "{entries:?}");
    assert!(entries[0].path().join("buildpack/bin/compile").is_file());
    assert!(!entries[0].path().join("buildpack/.git").exists());

    // The repo is gone: a second deploy (another app too) does not clone again.
    let moved = dir.path().join("moved.git");
    std::fs::rename(&bare, &moved).expect("move the repo away");
    d.paas(&["create", "gitbp2"]).ok();
    for app in ["gitbp", "gitbp2"] {
        let (out, _) = deploy_ok(&d, app, &[(".buildpacks", url.as_str())]);
        assert!(
            out.contains(&format!("-----> Using cached buildpack {url}")),
            "{out}"
        );
        assert!(!out.contains("Cloned buildpack"), "{out}");
        assert!(ran(&out, "gitpack v1"), "{out}");
    }

    // A plain path to a bare repo, unpinned: the branch's newest commit.
    let plain = moved.display().to_string();
    let (out, _) = deploy_ok(&d, "gitbp", &[(".buildpacks", plain.as_str())]);
    assert!(
        out.contains(&format!("-----> Cloned buildpack {plain}")),
        "{out}"
    );
    assert!(ran(&out, "gitpack v2"), "{out}");

    // A ref the repo does not have, and a repo that is not there: the deploy fails and says
    // which URL and what to check; nothing is cached for them.
    let (_, error) = deploy_fails(
        &d,
        "gitbp",
        &[(".buildpacks", format!("{plain}#nope").as_str())],
    );
    assert!(
        error.contains(&format!("buildpack {plain}#nope"))
            && error.contains("'nope' is a branch, tag or commit")
            && error.contains("git ls-remote"),
        "{error}"
    );
    let (_, error) = deploy_fails(
        &d,
        "gitbp",
        &[(".env", "BUILDPACK_URL=file:///nonexistent/paas-pack.git\n")],
    );
    assert!(
        error.contains("buildpack file:///nonexistent/paas-pack.git")
            && error.contains("(from BUILDPACK_URL in .env)"),
        "{error}"
    );
    assert_eq!(std::fs::read_dir(&cache).expect("cache").count(), 2);
    let builds = std::fs::read_dir(d.state_dir().join("builds"))
        .map(|r| r.count())
        .unwrap_or(0);
    assert_eq!(builds, 0, "no scratch clone left");

    // paasd's own state dir is never a buildpack source.
    let inside = d.state_dir().join("git/other.git");
    let (_, error) = deploy_fails(
        &d,
        "gitbp",
        &[(".buildpacks", inside.display().to_string().as_str())],
    );
    assert!(error.contains("state dir"), "{error}");
}

#[test]
fn a_dot_static_file_serves_the_app_root() {
    let Some(d) = daemon("a_dot_static_file_serves_the_app_root") else {
        return;
    };
    d.paas(&["create", "site"]).ok();
    let (out, _) = deploy_ok(
        &d,
        "site",
        &[
            (".static", ""),
            ("index.html", "hello from a .static site\n"),
            ("about/index.html", "about\n"),
        ],
    );
    assert!(out.contains("-----> static app detected"), "{out}");
    let host = format!("site.{BASE}");
    let (status, _, body) = d.http(&host, "/");
    assert_eq!(
        (status, body.as_str()),
        (200, "hello from a .static site\n")
    );
    assert_eq!(d.http(&host, "/about/").2, "about\n");
    assert_eq!(d.http(&host, "/.static").0, 404, "hidden files stay hidden");

    // dokku's NGINX_ROOT picks a directory of the app instead.
    d.paas(&["create", "built"]).ok();
    d.paas(&["env", "set", "built", "NGINX_ROOT=_site"]).ok();
    deploy_ok(
        &d,
        "built",
        &[
            (".static", ""),
            ("index.html", "the source\n"),
            ("_site/index.html", "the built site\n"),
        ],
    );
    assert_eq!(d.http(&format!("built.{BASE}"), "/").2, "the built site\n");
}

const GO_MAIN: &str = r#"package main

import (
	"fmt"
	"net/http"
	"os"

	"example.com/gohello/greet"
)

func main() {
	http.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintln(w, greet.Hello())
	})
	if err := http.ListenAndServe(":"+os.Getenv("PORT"), nil); err != nil {
		panic(err)
	}
}
"#;

const GO_GREET: &str =
    "package greet\n\nfunc Hello() string { return \"hello from GOPATH mode\" }\n";

#[test]
fn a_godir_app_builds_in_gopath_mode_and_goversion_is_checked() {
    let Some(d) = daemon("a_godir_app_builds_in_gopath_mode_and_goversion_is_checked") else {
        return;
    };
    d.paas(&["create", "gopath"]).ok();
    let files = [
        (".godir", "# the import path\nexample.com/gohello\n"),
        ("main.go", GO_MAIN),
        ("greet/greet.go", GO_GREET),
    ];
    // GOVERSION newer than the stack's go fails before anything is built.
    d.paas(&["env", "set", "gopath", "GOVERSION=go1.99"]).ok();
    let (out, error) = deploy_fails(&d, "gopath", &files);
    assert!(error.contains("go buildpack failed"), "{error}");
    assert!(
        out.contains("The GOVERSION config var asks for go1.99 but the stack has go"),
        "{out}"
    );
    d.paas(&["env", "unset", "gopath", "GOVERSION"]).ok();

    let (out, _) = deploy_ok(&d, "gopath", &files);
    assert!(out.contains("-----> go app detected"), "{out}");
    assert!(
        out.contains("GOPATH mode (GO111MODULE=off), import path example.com/gohello (.godir)"),
        "{out}"
    );
    let (status, _, body) = d.http(&format!("gopath.{BASE}"), "/");
    assert_eq!((status, body.as_str()), (200, "hello from GOPATH mode\n"));
    let releases = d.paas(&["releases", "gopath", "--json"]).json();
    assert_eq!(releases[0]["process_types"]["web"], "/app/bin/gohello");
}

/// A web server that exits on SIGTERM (as PID 1 it would otherwise ignore it).
const PY_SERVER: &str = "import http.server, os, signal, sys\n\
signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))\n\
http.server.ThreadingHTTPServer(('0.0.0.0', int(os.environ['PORT'])), \
http.server.SimpleHTTPRequestHandler).serve_forever()\n";

#[test]
fn python_version_files_are_read_and_another_minor_fails() {
    let Some(d) = daemon("python_version_files_are_read_and_another_minor_fails") else {
        return;
    };
    d.paas(&["create", "py"]).ok();
    let app = |file: &'static str, text: String| {
        vec![
            ("requirements.txt", String::new()),
            ("Procfile", "web: python3 server.py\n".to_string()),
            ("server.py", PY_SERVER.to_string()),
            (file, text),
        ]
    };
    let run = |v: Vec<(&'static str, String)>| {
        let refs: Vec<(&str, &str)> = v.iter().map(|(p, c)| (*p, c.as_str())).collect();
        deploy(&d, "py", &refs)
    };

    // Comment and blank lines are skipped (`system`: whatever the stack has). The stack's
    // python is what the build says it uses.
    let (out, error, _) = run(app(".python-version", "# pyenv local\n\nsystem\n".into()));
    assert_eq!(error, None, "{out}");
    let stack = out
        .lines()
        .find_map(|l| l.trim().strip_prefix("Using the stack's python "))
        .unwrap_or_else(|| panic!("no python version in:\n{out}"))
        .to_string();
    let v: Vec<u32> = stack.split('.').filter_map(|p| p.parse().ok()).collect();
    let (major, minor, patch) = (v[0], v[1], v[2]);

    // major.minor with comments: builds, no warning.
    let (out, error, _) = run(app(
        ".python-version",
        format!("# pyenv local\n\n{major}.{minor}\n"),
    ));
    assert_eq!(error, None, "{out}");
    assert!(!out.contains("asks for python"), "{out}");
    // Another patch of the same line: a warning, and the build goes on.
    let (out, error, _) = run(app(
        "runtime.txt",
        format!(
            "# pinned for prod\n\npython-{major}.{minor}.{}\n",
            patch + 1
        ),
    ));
    assert_eq!(error, None, "{out}");
    assert!(
        out.contains(&format!(
            "runtime.txt asks for python {major}.{minor}.{}; building with the stack's python {stack}",
            patch + 1
        )),
        "{out}"
    );
    assert_eq!(d.http(&format!("py.{BASE}"), "/").0, 200);

    // Another minor: the deploy fails and says which file, what it asked, what there is.
    for (file, text, asked) in [
        (
            "runtime.txt",
            format!("python-{major}.{}.0\n", minor + 1),
            format!("{major}.{}.0", minor + 1),
        ),
        (
            ".python-version",
            format!("# keep in sync with CI\n{major}.{}\n", minor - 1),
            format!("{major}.{}", minor - 1),
        ),
    ] {
        let (out, error, _) = run(app(file, text));
        let error = error.unwrap_or_else(|| panic!("{file}: built anyway:\n{out}"));
        assert!(error.contains("python buildpack failed"), "{error}");
        let want = format!("{file} asks for python {asked}, but the stack has python {stack}");
        assert!(out.contains(&want), "{want}:\n{out}");
    }
}

#[test]
fn node_engines_the_stack_does_not_satisfy_fail_the_build() {
    let Some(d) = daemon("node_engines_the_stack_does_not_satisfy_fail_the_build") else {
        return;
    };
    let app = node_app("v1");
    let pkg_path = app.path().join("package.json");
    let pkg: Value =
        serde_json::from_str(&std::fs::read_to_string(&pkg_path).expect("read")).expect("json");
    let node_major = String::from_utf8_lossy(
        &Command::new("node")
            .args(["-p", "process.versions.node.split('.')[0]"])
            .output()
            .expect("node")
            .stdout,
    )
    .trim()
    .to_string();
    let with_engines = |range: &str| {
        let mut p = pkg.clone();
        p["engines"] = serde_json::json!({ "node": range });
        serde_json::to_string_pretty(&p).expect("json")
    };
    d.paas(&["create", "eng"]).ok();
    let deploy_with = |range: &str| {
        std::fs::write(&pkg_path, with_engines(range)).expect("write");
        d.paas(&[
            "deploy",
            "eng",
            "--source",
            &app.path().display().to_string(),
        ])
    };
    let run = deploy_with(">=99");
    run.fails(1, "nodejs buildpack failed");
    assert!(
        run.stderr
            .contains("package.json engines.node asks for '>=99', but the stack has node v"),
        "{run:#?}"
    );
    // A range the stack's node satisfies builds.
    let run = deploy_with(&format!("^{node_major} || >=99"));
    assert!(run.ok().contains("Released v2"), "{run:#?}");
}
