//! Issue 4: the built-in buildpacks on the bundled examples, built by the real paasd in real
//! build containers through `paas deploy`, then run from their slugs. Needs root and the
//! registries (npm, PyPI) that `scripts/test.sh` can reach; skips loudly otherwise.

#![forbid(unsafe_code)]

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

/// Runs the release's web process in a container on the bridge and fetches `/` from the host
/// at the container's `IP:5000` (the router arrives with the next issue).
fn fetch_root(d: &Daemon, app: &str) -> String {
    let releases = d.paas(&["releases", app, "--json"]).json();
    let web = releases[0]["process_types"]["web"]
        .as_str()
        .unwrap_or_else(|| panic!("no web process: {releases}"))
        .to_string();
    let (bg, ip, reader) = d.run_with_ip(app, &[&web]);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let mut answer = None;
    while answer.is_none() && std::time::Instant::now() < deadline {
        answer = paas_tests::http_get(&format!("{ip}:5000"));
        if answer.is_none() {
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    }
    // The run is attached: closing the client ends the container.
    drop(reader);
    let Some(answer) = answer else {
        let mut bg = bg;
        let _ = bg.child.kill();
        let out = bg.finish();
        panic!("{app}: no HTTP answer from {ip}:5000; the process said: {out:#?}");
    };
    drop(bg);
    assert!(answer.starts_with("HTTP/1."), "{answer}");
    assert!(answer.contains(" 200 "), "{answer}");
    answer
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

#[test]
fn broken_node_and_python_apps_fail_with_the_tools_own_words() {
    if !have_root("broken_node_and_python_apps_fail_with_the_tools_own_words") {
        return;
    }
    let d = Daemon::start();
    // package.json that is not JSON.
    let node = tempfile::tempdir().expect("tmp");
    copy_dir(&example("node-hello"), node.path());
    std::fs::write(
        node.path().join("package.json"),
        "{ \"name\": \"x\", oops }\n",
    )
    .expect("write");
    d.paas(&["create", "badnode"]).ok();
    let run = d.paas(&[
        "deploy",
        "badnode",
        "--source",
        &node.path().display().to_string(),
    ]);
    run.fails(1, "package.json is not valid JSON");
    // A requirement PyPI does not have: pip's own message reaches the user.
    let py = tempfile::tempdir().expect("tmp");
    copy_dir(&example("python-hello"), py.path());
    std::fs::write(
        py.path().join("requirements.txt"),
        "paas-no-such-package-4f2a==1.0\n",
    )
    .expect("write");
    d.paas(&["create", "badpy"]).ok();
    let run = d.paas(&[
        "deploy",
        "badpy",
        "--source",
        &py.path().display().to_string(),
    ]);
    run.fails(1, "python buildpack failed to compile");
    assert!(
        run.stderr
            .contains("No matching distribution found for paas-no-such-package-4f2a"),
        "{run:#?}"
    );
    // No release was created for either: v1 (the initial one) is all they have.
    for app in ["badnode", "badpy"] {
        let releases = d.paas(&["releases", app, "--json"]).json();
        assert_eq!(
            releases.as_array().map(Vec::len),
            Some(1),
            "{app}: {releases}"
        );
        assert_eq!(
            d.paas(&["apps", "info", app, "--json"]).json()["status"],
            "created"
        );
    }
}
