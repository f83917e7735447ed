//! Issue 14: per-app resource limits. `paas resources APP [TYPE] --memory --cpu --pids
//! --disk` stores limits that the next rollout gives the instances: the test reads them back
//! from the kernel (the instance's own cgroup files), not from paasd's answer. It also checks
//! that a type's values win over the every-type ones field by field, that `paas info` shows
//! them, that bad values are refused with a message and change nothing, that the OOM line
//! names the effective limit, and that `--reset` brings the defaults back. Real paasd, real
//! containers. Needs root (skips loudly otherwise; never skips under CI).

#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::time::{Duration, Instant};

use paas_tests::{db_snapshot, have_root, Daemon};

const MIB: u64 = 1 << 20;

/// A Procfile app: `web` answers HTTP (python3's http.server, nothing to install); `hog`
/// holds 200 MB it has written to, more than the limit the test gives it.
fn app() -> tempfile::TempDir {
    let dir = tempfile::Builder::new()
        .prefix("paas-resources-")
        .tempdir()
        .expect("temp dir");
    std::fs::write(
        dir.path().join("Procfile"),
        "web: python3 -m http.server \"$PORT\"\n\
         hog: python3 -c 'import time; x = b\"x\" * (200 << 20); time.sleep(100000)'\n",
    )
    .expect("Procfile");
    dir
}

/// The cgroup directories of the one live instance named `instance` (`APP-web.1-...`), in
/// every hierarchy (one on v2, one per controller on v1). Waits until a rollout has left
/// exactly one such instance, and, when `not` is given, one other than that.
fn instance_cgroups(d: &Daemon, app: &str, instance: &str, not: Option<&str>) -> Vec<PathBuf> {
    let prefix = format!("{app}-{instance}-");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let dirs: Vec<PathBuf> = d
            .cgroups()
            .into_iter()
            .filter(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with(&prefix))
            })
            .collect();
        let mut names: Vec<String> = dirs
            .iter()
            .filter_map(|p| p.file_name()?.to_str().map(str::to_owned))
            .collect();
        names.sort();
        names.dedup();
        if names.len() == 1 && not != Some(names[0].as_str()) {
            return dirs;
        }
        assert!(
            Instant::now() < deadline,
            "want one cgroup {prefix}* (not {not:?}), have {names:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The first of `files` found in `dirs`, as a number (`max` as None).
fn read_limit(dirs: &[PathBuf], files: &[&str]) -> Option<u64> {
    for dir in dirs {
        for f in files {
            if let Ok(text) = std::fs::read_to_string(dir.join(f)) {
                let first = text.split_whitespace().next().unwrap_or("");
                return first.parse().ok();
            }
        }
    }
    panic!("none of {files:?} in {dirs:?}");
}

/// What the kernel holds for one instance: memory bytes, pids max, CPU quota (µs per 100 ms).
fn kernel_limits(dirs: &[PathBuf]) -> (Option<u64>, Option<u64>, Option<u64>) {
    (
        read_limit(dirs, &["memory.limit_in_bytes", "memory.max"]),
        read_limit(dirs, &["pids.max"]),
        read_limit(dirs, &["cpu.cfs_quota_us", "cpu.max"]),
    )
}

fn name_of(dirs: &[PathBuf]) -> String {
    dirs[0]
        .file_name()
        .and_then(|n| n.to_str())
        .expect("cgroup name")
        .to_owned()
}

/// The `TYPE LIMIT VALUE FROM` rows of `paas resources APP`, as words per row.
fn table(d: &Daemon, app: &str) -> Vec<String> {
    d.paas(&["resources", app])
        .ok()
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect()
}

#[test]
fn limits_reach_the_instance_s_cgroup_at_the_next_rollout_and_reset_restores_the_defaults() {
    if !have_root("resources") {
        return;
    }
    let d = Daemon::start();
    d.paas(&["create", "lim"]).ok();
    let dir = app();
    d.deploy_dir("lim", dir.path());

    // The defaults of [instances]: 512 MB, 100% of a CPU, 512 pids.
    let first = instance_cgroups(&d, "lim", "web.1", None);
    assert_eq!(
        kernel_limits(&first),
        (Some(512 * MIB), Some(512), Some(100_000)),
        "defaults in {first:?}"
    );
    let rows = table(&d, "lim");
    assert!(
        rows.contains(&"web memory 512 MB default".to_owned()),
        "{rows:#?}"
    );

    // Refused values change nothing and say what is allowed.
    let before = db_snapshot(&d.db());
    d.paas(&["resources", "lim", "web", "--memory", "8"])
        .fails(1, "memory must be at least 16 MB");
    d.paas(&["resources", "lim", "--pids", "-5"])
        .fails(1, "pids must be at least 16");
    d.paas(&["resources", "lim", "--cpu", "100000"])
        .fails(1, "cpu must be at most");
    d.paas(&["resources", "lim", "--disk", "lots"])
        .fails(2, "invalid --disk 'lots'");
    d.paas(&["resources", "lim", "wbe", "--memory", "64"])
        .fails(1, "unknown process type 'wbe'");
    d.paas(&["resources", "nope", "--memory", "64"])
        .fails(1, "app 'nope' does not exist");
    assert_eq!(
        before,
        db_snapshot(&d.db()),
        "a refused change wrote nothing"
    );

    // web's own values, and a CPU quota for every type: web gets both, field by field.
    let set = d.paas(&["resources", "lim", "web", "--memory", "64", "--pids", "64"]);
    set.ok();
    assert!(
        set.stderr.contains("paas restart lim"),
        "says how it applies: {set:#?}"
    );
    d.paas(&["resources", "lim", "--cpu", "50"]).ok();
    // Nothing restarted: the running instance keeps its limits until the next rollout.
    assert_eq!(
        name_of(&instance_cgroups(&d, "lim", "web.1", None)),
        name_of(&first),
        "setting limits restarts nothing"
    );
    assert_eq!(kernel_limits(&first).0, Some(512 * MIB));
    let rows = table(&d, "lim");
    for want in [
        "web memory 64 MB process type",
        "web pids 64 process type",
        "web cpu 50% app",
        "web disk 256 MB default",
        "(every type) cpu 50% app",
        "(every type) memory 512 MB default",
    ] {
        assert!(rows.contains(&want.to_owned()), "{want}: {rows:#?}");
    }

    d.paas(&["restart", "lim"]).ok();
    let second = instance_cgroups(&d, "lim", "web.1", Some(&name_of(&first)));
    assert_eq!(
        kernel_limits(&second),
        (Some(64 * MIB), Some(64), Some(50_000)),
        "the restarted instance runs under the app's limits ({second:?})"
    );
    let (status, _, body) = d.http("lim.paas.localhost", "/");
    assert_eq!(status, 200, "web serves within 64 MB: {body}");
    let info = d.paas(&["info", "lim"]);
    assert!(
        info.ok()
            .contains("web: 64 MB memory, 50% CPU, 64 pids, 256 MB disk"),
        "{info:#?}"
    );

    // An instance beyond its limit is OOM-killed and the platform line names that limit.
    d.paas(&["resources", "lim", "hog", "--memory", "32"]).ok();
    d.paas(&["scale", "lim", "hog=1"]).ok();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let logs = d.paas(&["logs", "lim", "--source", "platform"]);
        if logs
            .ok()
            .contains("hog.1 was killed: out of memory (its limit is 32 MB)")
        {
            break;
        }
        assert!(Instant::now() < deadline, "no OOM line: {logs:#?}");
        std::thread::sleep(Duration::from_millis(250));
    }
    d.paas(&["scale", "lim", "hog=0"]).ok();

    // Back to the defaults: `--reset` for web, `default` for the every-type CPU.
    d.paas(&["resources", "lim", "web", "--reset"]).ok();
    d.paas(&["resources", "lim", "--cpu", "default"]).ok();
    d.paas(&["resources", "lim", "hog", "--reset"]).ok();
    d.paas(&["restart", "lim"]).ok();
    let third = instance_cgroups(&d, "lim", "web.1", Some(&name_of(&second)));
    assert_eq!(
        kernel_limits(&third),
        (Some(512 * MIB), Some(512), Some(100_000)),
        "defaults again ({third:?})"
    );
    assert!(
        table(&d, "lim")
            .iter()
            .filter(|r| !r.starts_with("TYPE"))
            .all(|r| r.ends_with(" default")),
        "every limit from the default again"
    );
    let rows = db_snapshot(&d.db());
    let resources = rows
        .split("== resources\n")
        .nth(1)
        .and_then(|rest| rest.split("== ").next())
        .unwrap_or("");
    assert_eq!(resources, "", "reset rows are gone: {rows}");
}
