//! Issue 4: the built-in buildpacks on the bundled examples, built by the real paasd in real
//! build containers through `paas deploy`, then run from their slugs. Needs root and the
//! registries (npm, PyPI) that `scripts/test.sh` can reach; skips loudly otherwise.

use paas_tests::{have_root, repo_root, Daemon};

/// Deploys `examples/NAME` as app NAME; returns the deploy's stderr (the build log).
fn deploy_example(d: &Daemon, name: &str, source: &std::path::Path) -> String {
    d.paas(&["create", name]).ok();
    let run = d.paas(&["deploy", name, "--source", &source.display().to_string()]);
    assert!(
        run.ok().contains(&format!("Released v2 of {name}")),
        "{run:#?}"
    );
    run.stderr.clone()
}

/// Starts the release's web process in a one-off container and fetches `/` from inside.
fn fetch_root(d: &Daemon, app: &str) -> String {
    let releases = d.paas(&["releases", app, "--json"]).json();
    let web = releases[0]["process_types"]["web"]
        .as_str()
        .unwrap_or_else(|| panic!("no web process: {releases}"))
        .to_string();
    let script = format!(
        r#"( {web} ) >/tmp/web.log 2>&1 &
for i in $(seq 1 150); do
  if out=$(/usr/bin/python3 -c 'import urllib.request; print(urllib.request.urlopen("http://127.0.0.1:5000/", timeout=2).read().decode())' 2>/dev/null); then
    echo "$out"; exit 0
  fi
  sleep 0.1
done
cat /tmp/web.log; exit 1"#
    );
    let run = d.paas(&["run", app, "--", &script]);
    run.ok().to_string()
}

fn example(name: &str) -> std::path::PathBuf {
    repo_root().join("examples").join(name)
}

#[test]
fn nodejs_example_builds_runs_and_reuses_its_cache() {
    if !have_root("nodejs_example_builds_runs_and_reuses_its_cache") {
        return;
    }
    let d = Daemon::start();
    let log = deploy_example(&d, "node-hello", &example("node-hello"));
    assert!(log.contains("-----> nodejs app detected"), "{log}");
    assert!(log.contains("-----> Installing dependencies"), "{log}");
    assert!(fetch_root(&d, "node-hello").contains("Hello from node-hello v1"));

    // The same dependencies again: no download, the cache is reused (the buildpack's
    // documented line). The changed code ships.
    let src = tempfile::tempdir().expect("tmp");
    copy_dir(&example("node-hello"), src.path());
    let server = src.path().join("server.js");
    let code = std::fs::read_to_string(&server).expect("server.js");
    std::fs::write(&server, code.replace("v1", "v2")).expect("write");
    let run = d.paas(&[
        "deploy",
        "node-hello",
        "--source",
        &src.path().display().to_string(),
    ]);
    assert!(run.ok().contains("Released v3"), "{run:#?}");
    assert!(
        run.stderr
            .contains("-----> Reusing cached node_modules (dependencies unchanged)"),
        "{run:#?}"
    );
    assert!(
        !run.stderr.contains("-----> Installing dependencies"),
        "{run:#?}"
    );
    assert!(fetch_root(&d, "node-hello").contains("Hello from node-hello v2"));
}

#[test]
fn python_example_builds_a_venv_and_reuses_it() {
    if !have_root("python_example_builds_a_venv_and_reuses_it") {
        return;
    }
    let d = Daemon::start();
    let log = deploy_example(&d, "python-hello", &example("python-hello"));
    assert!(log.contains("-----> python app detected"), "{log}");
    assert!(fetch_root(&d, "python-hello").contains("Hello from python-hello v1"));
    let run = d.paas(&[
        "deploy",
        "python-hello",
        "--source",
        &example("python-hello").display().to_string(),
    ]);
    assert!(
        run.ok().contains("Released v3") && run.stderr.contains("Reusing cached virtualenv"),
        "{run:#?}"
    );
}

#[test]
fn go_static_and_procfile_examples_build_and_run() {
    if !have_root("go_static_and_procfile_examples_build_and_run") {
        return;
    }
    let d = Daemon::start();
    for (name, detected) in [
        ("go-hello", "go"),
        ("static-hello", "static"),
        ("procfile-hello", "procfile"),
    ] {
        let log = deploy_example(&d, name, &example(name));
        assert!(
            log.contains(&format!("-----> {detected} app detected")),
            "{name}: {log}"
        );
        let body = fetch_root(&d, name);
        assert!(
            body.contains(&format!("Hello from {name} v1")),
            "{name}: {body}"
        );
    }
    // A broken Go app fails the deploy with the compiler's words; the release stays.
    let src = tempfile::tempdir().expect("tmp");
    copy_dir(&example("go-hello"), src.path());
    std::fs::write(
        src.path().join("main.go"),
        "package main\nfunc main() { nope }\n",
    )
    .expect("write");
    let run = d.paas(&[
        "deploy",
        "go-hello",
        "--source",
        &src.path().display().to_string(),
    ]);
    run.fails(1, "go buildpack failed to compile");
    assert!(run.stderr.contains("undefined: nope"), "{run:#?}");
    assert_eq!(
        d.paas(&["apps", "info", "go-hello", "--json"]).json()["release"],
        2
    );
}

fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    let status = std::process::Command::new("cp")
        .arg("-a")
        .arg(format!("{}/.", from.display()))
        .arg(to)
        .status()
        .expect("cp");
    assert!(status.success());
}
