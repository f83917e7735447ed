//! One build step (a buildpack's detect, compile or release) in a container of its own, with
//! the build's dirs mounted, its output relayed line by line, and the build's deadline
//! enforced. Owns turning an exit into a verdict (ok, failed, OOM, timed out); must not know
//! what the step means.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use paas_runtime::{
    cgroups::Limits, proto::Bind, FromHelper, Networking, RunSpec, Runtime, RuntimeError, Stream,
};

/// Why a step could not run at all (its command failing is an [`Outcome`], not this).
#[derive(Debug, thiserror::Error)]
pub enum StepError {
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    #[error("an address for the build: {0}")]
    Address(#[from] crate::addresses::AddressError),
}

/// The host dirs a build mounts into every step.
#[derive(Debug, Clone)]
pub struct Mounts {
    /// `/app`: the source, turned into the slug in place.
    pub app: PathBuf,
    /// `/cache`: kept between builds of the app.
    pub cache: PathBuf,
    /// `/env`: one file per config var, read-only.
    pub env: PathBuf,
    /// `/buildpacks`: the build's own copies of its buildpacks.
    pub buildpacks: PathBuf,
}

impl Mounts {
    fn binds(&self) -> Vec<Bind> {
        let b = |source: &PathBuf, dest: &str, writable: bool| Bind {
            source: source.clone(),
            dest: dest.into(),
            writable,
        };
        vec![
            b(&self.app, "/app", true),
            b(&self.cache, "/cache", true),
            b(&self.env, "/env", false),
            b(&self.buildpacks, "/buildpacks", true),
        ]
    }
}

/// How a step ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Exited(i32),
    Signaled(i32),
    OutOfMemory,
    TimedOut,
}

#[derive(Debug)]
pub struct Ran {
    pub outcome: Outcome,
    /// Stdout lines, when asked to keep them (detect, release).
    pub stdout: Vec<String>,
}

pub struct Step {
    pub runtime: Arc<Runtime>,
    pub id_prefix: String,
    pub stack: String,
    pub mounts: Mounts,
    pub env: Vec<(String, String)>,
    pub limits: Limits,
    pub deadline: Instant,
    pub user: paas_runtime::User,
    /// Where a step that needs the network gets its address.
    pub addresses: crate::addresses::Addresses,
}

/// What a build step may reach.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StepNet {
    /// Its own namespace on the bridge, a member of no app: the outside world through NAT
    /// (package registries), nothing of the host's and no instance.
    Egress,
    /// Its own namespace with loopback only.
    None,
}

impl Step {
    /// Runs `argv`; every output line goes to `out` unless `keep_stdout` (then stdout is
    /// returned instead and only stderr is relayed).
    pub async fn run(
        &self,
        argv: Vec<String>,
        net: StepNet,
        keep_stdout: bool,
        out: &mut (dyn FnMut(String) + Send),
    ) -> Result<Ran, StepError> {
        let id = self.runtime.new_id(&self.id_prefix);
        let lease = match net {
            StepNet::Egress => Some(self.addresses.allocate(&id, None).await?),
            StepNet::None => None,
        };
        let ran = self
            .run_in(&id, argv, lease.as_ref(), keep_stdout, out)
            .await;
        if let Some(lease) = lease {
            self.addresses.release(&lease.instance).await;
        }
        ran
    }

    async fn run_in(
        &self,
        id: &str,
        argv: Vec<String>,
        lease: Option<&crate::addresses::Lease>,
        keep_stdout: bool,
        out: &mut (dyn FnMut(String) + Send),
    ) -> Result<Ran, StepError> {
        let mut instance = self
            .runtime
            .run(RunSpec {
                id: id.to_string(),
                argv,
                env: self.env.clone(),
                net: lease.map_or(Networking::Loopback, |l| l.networking()),
                limits: self.limits,
                stack: self.stack.to_string(),
                layers: Vec::new(),
                binds: self.mounts.binds(),
                user: self.user,
                // Dies with paasd: nobody would take it back.
                attach: None,
            })
            .await?;
        let mut stdout = Vec::new();
        let mut outcome = None;
        let sleep = tokio::time::sleep_until(self.deadline.into());
        tokio::pin!(sleep);
        let mut timed_out = false;
        loop {
            let msg = tokio::select! {
                m = instance.container.next() => m,
                () = &mut sleep, if !timed_out => {
                    timed_out = true;
                    let _ = instance.container.signal(libc::SIGKILL).await;
                    continue;
                }
            };
            let Some(msg) = msg else { break };
            match msg {
                FromHelper::Output { stream, line, .. } => {
                    if keep_stdout && stream == Stream::Stdout {
                        if stdout.len() < 10_000 {
                            stdout.push(line);
                        }
                    } else {
                        out(line);
                    }
                }
                FromHelper::Exited { code, signal } => {
                    outcome = Some(match (code, signal) {
                        (Some(c), _) => Outcome::Exited(c),
                        (None, Some(s)) => Outcome::Signaled(s),
                        (None, None) => Outcome::Signaled(0),
                    });
                }
                _ => {}
            }
        }
        let oom = instance.oom_killed();
        // A fork bomb in a build (or a build tool spawning past the limit) is said once, in
        // the build's output, where the person deploying sees it.
        if let Some(n) = instance.fork_failures().filter(|n| *n > 0) {
            out(format!(
                " !     this build step hit its process limit ({}, build.pids in paasd.toml): fork failed {n} times",
                self.limits.pids.unwrap_or(0)
            ));
        }
        instance.finish(outcome.is_none()).await;
        let outcome = if timed_out {
            Outcome::TimedOut
        } else if oom && outcome != Some(Outcome::Exited(0)) {
            Outcome::OutOfMemory
        } else {
            outcome.unwrap_or(Outcome::Signaled(libc::SIGKILL))
        };
        Ok(Ran { outcome, stdout })
    }
}
