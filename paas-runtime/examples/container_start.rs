//! Benchmark driver for bench/container.sh: starts `/bin/true` in a full container (helper,
//! namespaces, veth on a bridge, overlay rootfs, host stack binds, cgroup with limits,
//! privilege drop, seccomp) N times (after 3 unrecorded) through `paas_runtime` and prints
//! one line per start, in ms: spawn to the exit being seen, spawn to everything removed
//! (cgroup, scratch dir, helper).
//! With `no-spare`, the runtime keeps no helper started ahead (every start execs its own).
//! Afterwards, N policy membership changes (admit, expel) are timed on their own and printed
//! on stderr.
//! Usage: container_start STATE_DIR [N] [spare|no-spare]

#![forbid(unsafe_code)]

use std::time::Instant;

use paas_runtime::cgroups::Limits;
use paas_runtime::net::{NetConfig, Network};
use paas_runtime::{helper, FromHelper, Networking, RunSpec, Runtime};

fn main() -> anyhow::Result<()> {
    // Like paasd, this binary is its own container helper.
    if std::env::args_os()
        .nth(1)
        .is_some_and(|a| a == helper::HELPER_ARG)
    {
        std::process::exit(helper::main());
    }
    let args: Vec<String> = std::env::args().collect();
    let state = args
        .get(1)
        .map(std::path::PathBuf::from)
        .ok_or_else(|| anyhow::anyhow!("usage: container_start STATE_DIR [N]"))?;
    let n: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(50);
    let spare = match args.get(3).map(String::as_str) {
        None | Some("spare") => true,
        Some("no-spare") => false,
        Some(other) => anyhow::bail!("unknown mode {other:?}: spare or no-spare"),
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        // A bridge and subnet of the benchmark's own, removed at the end.
        let tag = std::process::id() & 0xffff;
        let network = Network::setup(NetConfig {
            bridge: format!("pb{tag:x}"),
            subnet: std::net::Ipv4Addr::new(10, 214, 0, 0),
            prefix: 24,
            policy: Default::default(),
        })
        .await?;
        let ip = network
            .subnet()
            .host(2)
            .ok_or_else(|| anyhow::anyhow!("subnet"))?;
        let runtime = Runtime::new(
            &state,
            &format!("paas-bench-{tag}"),
            network,
            &Default::default(),
        )?;
        runtime.set_spare_helper(spare);
        // Measured in a block of its own so that a failure half-way still removes the
        // benchmark's cgroups, bridge and NAT table below.
        let measured = async {
            let mut times = Vec::with_capacity(n);
            let mut cleaned = Vec::with_capacity(n);
            for i in 0..n + 3 {
                let t = Instant::now();
                let mut inst = runtime
                    .run(RunSpec {
                        id: runtime.new_id("bench"),
                        argv: vec!["/bin/true".into()],
                        env: vec![("PATH".into(), "/usr/bin:/bin".into())],
                        net: Networking::Bridge(ip),
                        stack: "host".into(),
                        layers: Vec::new(),
                        binds: Vec::new(),
                        attach: None,
                        // An app uid from the default [users] range.
                        user: paas_runtime::User {
                            uid: 1_900_000_000,
                            gid: 1_900_000_000,
                        },
                        // The same limits a `paas run` gets by default.
                        limits: Limits {
                            memory_bytes: Some(512 << 20),
                            cpu_percent: Some(100),
                            pids: Some(512),
                            // And the writable layer an instance gets by default ([instances] disk_mb).
                            disk_bytes: Some(256 << 20),
                        },
                    })
                    .await?;
                let mut ok = false;
                let mut exited_at = None;
                while let Some(ev) = inst.container.next().await {
                    if let FromHelper::Exited { code, .. } = ev {
                        ok = code == Some(0);
                        exited_at = Some(t.elapsed());
                        paas_runtime::timing::mark("exit seen");
                    }
                }
                inst.finish(false).await;
                paas_runtime::timing::mark("cleaned");
                let all_removed = t.elapsed();
                anyhow::ensure!(ok, "/bin/true did not exit 0");
                if i >= 3 {
                    let exited = exited_at.unwrap_or(all_removed);
                    times.push(exited.as_secs_f64() * 1000.0);
                    cleaned.push(all_removed.as_secs_f64() * 1000.0);
                }
            }
            // What paasd does around each instance besides the runtime's work: the address
            // joins its app's group in the policy before the start and leaves it after the
            // stop. Measured on its own: an expel's commit waits for an RCU grace period,
            // whose work would otherwise land on the next start.
            let (mut admits, mut expels) = (Vec::with_capacity(n), Vec::with_capacity(n));
            // PAAS_BENCH_MEMBERSHIP=N: how many (default 0: bench/container.sh measures it in
            // a run of its own, so that its RCU work lands on no container start).
            let cycles: usize = std::env::var("PAAS_BENCH_MEMBERSHIP")
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            for _ in 0..cycles {
                let t = Instant::now();
                runtime.network().admit(ip, 7).await?;
                admits.push(t.elapsed().as_secs_f64() * 1000.0);
                let t = Instant::now();
                runtime.network().expel(ip, 7).await?;
                expels.push(t.elapsed().as_secs_f64() * 1000.0);
            }
            admits.sort_by(f64::total_cmp);
            expels.sort_by(f64::total_cmp);
            if let (Some(a), Some(x)) = (admits.get(cycles / 2), expels.get(cycles / 2)) {
                eprintln!("policy membership over nfnetlink: admit median {a:.3} ms, expel median {x:.3} ms");
            }
            anyhow::Ok((times, cleaned))
        }
        .await;
        runtime.shutdown(paas_runtime::Shutdown::StopAll);
        runtime.network().teardown().await?;
        let (times, cleaned) = measured?;
        for (exited, cleaned) in times.iter().zip(&cleaned) {
            println!("{exited:.3} {cleaned:.3}");
        }
        anyhow::Ok(())
    })
}
