//! paasd's side of one container: starts the helper (`/proc/self/exe __runtime-helper`) with a
//! socketpair as its stdin, sends the [`Spec`], and turns the helper's JSON lines into typed
//! events. Must not fork or touch namespaces itself: paasd is multi-threaded.

use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};

use super::helper::HELPER_ARG;
use super::proto::{FromHelper, Spec, ToHelper};
use super::RuntimeError;

pub struct Container {
    /// The helper as our child; `None` when adopted from an earlier paasd (it is not ours
    /// to reap: the connection closing is its end).
    helper: Option<tokio::process::Child>,
    lines: Lines<BufReader<OwnedReadHalf>>,
    writer: OwnedWriteHalf,
    /// Host pid of the container's first process (PID 1 inside), once started.
    pub pid: i32,
    /// Pid of the helper that monitors it.
    pub helper_pid: u32,
    /// Dropped while armed (an abandoned start, a dropped request), the container is killed;
    /// [`Container::detach`] disarms it so that it outlives paasd.
    armed: bool,
}

/// What an adopted container's monitor said when a new paasd attached.
#[derive(Debug, Clone)]
pub struct Hello {
    pub id: String,
    pub tag: String,
    /// Output lines the monitor dropped while no paasd listened.
    pub dropped: u64,
    /// False when the command ended while no paasd listened (its `Exited` follows).
    pub running: bool,
}

const KILL_LINE: &[u8] = b"{\"signal\":{\"signal\":9}}\n";

impl Drop for Container {
    fn drop(&mut self) {
        if self.armed {
            // Best effort, without blocking: the monitor kills the container and exits.
            let _ = self.writer.try_write(KILL_LINE);
            if let Some(h) = self.helper.as_mut() {
                let _ = h.start_kill();
            }
        }
    }
}

/// A helper process that has not been given its spec yet. Started first thing, it execs
/// and loads while paasd prepares the instance; it waits for the spec on its stdin, and exits
/// (killed, or at EOF) if dropped before [`Container::create`].
pub struct Helper {
    /// Taken by [`Container::create`]; killed if the helper is dropped unused.
    child: Option<tokio::process::Child>,
    ours: std::os::unix::net::UnixStream,
}

impl Drop for Helper {
    fn drop(&mut self) {
        if let Some(c) = self.child.as_mut() {
            let _ = c.start_kill();
        }
    }
}

impl Helper {
    /// `owner` (the state dir) goes into its argv: what the next paasd finds leftovers by.
    pub fn spawn(owner: &Path) -> Result<Helper, RuntimeError> {
        let (ours, theirs) =
            std::os::unix::net::UnixStream::pair().map_err(RuntimeError::Helper)?;
        let child = tokio::process::Command::new("/proc/self/exe")
            .arg(HELPER_ARG)
            .arg(owner)
            .stdin(Stdio::from(OwnedFd::from(theirs)))
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            // Not `kill_on_drop`: an instance's helper must survive paasd. An unused
            // `Helper` and an armed `Container` kill it when dropped instead.
            .spawn()
            .map_err(RuntimeError::Helper)?;
        super::timing::mark("helper spawned");
        Ok(Helper {
            child: Some(child),
            ours,
        })
    }
}

/// At most one helper started ahead of need ("spare"), so that a start does not wait for the
/// exec and load of paasd (~1.3 ms on a small VM) nor for the container's first fork and
/// network namespace (~0.5 ms: see `helper::Early`), but takes a helper that has them and is
/// waiting for its spec. Taken by [`Spare::take`], started again in the background, at the
/// lowest CPU priority, by [`Spare::refill`] once the container that took it runs. A spare
/// holds two processes and their pid and network namespaces, nothing on disk: dropped
/// (shutdown, [`Spare::set_enabled`]) it is killed and its child dies with it (parent-death
/// signal), and if paasd dies it exits by itself at EOF on its stdin.
#[derive(Clone)]
pub struct Spare {
    owner: Arc<PathBuf>,
    slot: Arc<Mutex<Option<Helper>>>,
    disabled: Arc<AtomicBool>,
}

impl Spare {
    /// Spares for the runtime of the state dir `owner` (see [`Helper::spawn`]).
    pub fn new(owner: PathBuf) -> Spare {
        Spare {
            owner: Arc::new(owner),
            slot: Arc::default(),
            disabled: Arc::default(),
        }
    }

    /// The spare helper if there is a live one, else a new one.
    pub fn take(&self) -> Result<Helper, RuntimeError> {
        let spare = self.slot.lock().ok().and_then(|mut slot| slot.take());
        if let Some(mut helper) = spare {
            // Something killed it meanwhile: not usable. Otherwise back to normal priority
            // before it forks the container (which inherits it).
            let usable = helper.child.as_mut().is_some_and(|c| {
                matches!(c.try_wait(), Ok(None)) && c.id().is_some_and(|pid| set_nice(pid, 0))
            });
            if usable {
                super::timing::mark("spare taken");
                return Ok(helper);
            }
        }
        Helper::spawn(&self.owner)
    }

    /// Starts a new spare in the background unless there is one (or spares are disabled).
    /// Once exec'd it loads at the lowest CPU priority, so that it does not compete with the
    /// container just started. Needs a tokio runtime.
    pub fn refill(&self) {
        if self.disabled.load(Ordering::Relaxed)
            || self.slot.lock().map_or(true, |slot| slot.is_some())
        {
            return;
        }
        let slot = Arc::clone(&self.slot);
        let owner = Arc::clone(&self.owner);
        let runtime = tokio::runtime::Handle::current();
        // A thread of its own: spawning blocks until the exec. The thread lowers its own
        // priority first (nice is per thread on Linux), so that the exec's kernel work, and
        // then the new process that inherits it, yields the CPU to the containers running.
        // Safe to starve: std spawns with posix_spawn (a vfork), whose child only sets up
        // its fds and execs, holding none of paasd's locks.
        let spawned = std::thread::Builder::new()
            .name("paas-spare".into())
            .spawn(move || {
                let _runtime = runtime.enter();
                set_nice(nix::unistd::gettid().as_raw() as u32, 19);
                match Helper::spawn(&owner) {
                    Ok(helper) => {
                        if let Ok(mut slot) = slot.lock() {
                            // A concurrent refill won: ours is dropped, which kills it.
                            slot.get_or_insert(helper);
                        }
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "could not start a spare container helper")
                    }
                }
            });
        if let Err(e) = spawned {
            tracing::warn!(error = %e, "could not start a spare container helper");
        }
    }

    /// Spares are on by default; off, every start execs its own helper.
    pub fn set_enabled(&self, on: bool) {
        self.disabled.store(!on, Ordering::Relaxed);
        if !on {
            self.clear();
        }
    }

    /// Kills the spare, if any.
    pub fn clear(&self) {
        let spare = self.slot.lock().ok().and_then(|mut slot| slot.take());
        drop(spare);
    }
}

/// Sets the nice value of the thread `tid` (a process's main thread has its pid); false if
/// the kernel refused.
fn set_nice(tid: u32, nice: i32) -> bool {
    // SAFETY: setpriority only reads its integer arguments.
    unsafe { libc::setpriority(libc::PRIO_PROCESS, tid, nice) == 0 }
}

impl Container {
    /// Gives the helper its spec; the container goes on at once (its cgroup must exist).
    pub async fn create(mut helper: Helper, spec: &Spec) -> Result<Container, RuntimeError> {
        let Some(mut child) = helper.child.take() else {
            return Err(RuntimeError::Protocol("helper already used".into()));
        };
        let helper_pid = child.id().unwrap_or(0);
        let ours = helper.ours.try_clone().map_err(RuntimeError::Helper)?;
        drop(helper);
        ours.set_nonblocking(true).map_err(RuntimeError::Helper)?;
        let stream = tokio::net::UnixStream::from_std(ours).map_err(RuntimeError::Helper)?;
        let (r, mut writer) = stream.into_split();
        let mut line = serde_json::to_vec(spec).map_err(RuntimeError::Encode)?;
        line.push(b'\n');
        if let Err(e) = writer.write_all(&line).await {
            let _ = child.kill().await;
            return Err(RuntimeError::Helper(e));
        }
        Ok(Container {
            helper: Some(child),
            lines: BufReader::new(r).lines(),
            writer,
            pid: 0,
            helper_pid,
            armed: true,
        })
    }

    /// Attaches to the monitor of a container an earlier paasd started (`stream`: connected
    /// to its attach socket, peer `helper_pid`); the monitor answers with its [`Hello`].
    pub async fn adopt(
        stream: tokio::net::UnixStream,
        helper_pid: u32,
    ) -> Result<(Container, Hello), RuntimeError> {
        let (r, writer) = stream.into_split();
        let mut c = Container {
            helper: None,
            lines: BufReader::new(r).lines(),
            writer,
            pid: 0,
            helper_pid,
            // Until the caller decides to keep it, it is not killed by accident either.
            armed: false,
        };
        let first = tokio::time::timeout(std::time::Duration::from_secs(2), c.next()).await;
        match first {
            Ok(Some(FromHelper::Adopted {
                pid,
                id,
                tag,
                dropped,
                running,
            })) => {
                c.pid = pid;
                c.armed = true;
                Ok((
                    c,
                    Hello {
                        id,
                        tag,
                        dropped,
                        running,
                    },
                ))
            }
            Ok(other) => Err(RuntimeError::Protocol(format!(
                "monitor {helper_pid} said {other:?} on attach"
            ))),
            Err(_) => Err(RuntimeError::Protocol(format!(
                "monitor {helper_pid} did not answer on attach"
            ))),
        }
    }

    /// Lets go of the container without stopping it: its monitor keeps it running and
    /// keeps its output until the next paasd attaches.
    pub fn detach(mut self) {
        self.armed = false;
    }

    /// Returns once the container runs its command.
    pub async fn start(&mut self) -> Result<(), RuntimeError> {
        match self.next().await {
            Some(FromHelper::Created { pid }) => {
                super::timing::mark("got created");
                self.pid = pid;
            }
            other => return Err(self.setup_failed(other).await),
        }
        self.expect_started().await
    }

    async fn expect_started(&mut self) -> Result<(), RuntimeError> {
        match self.next().await {
            Some(FromHelper::Started) => Ok(()),
            other => Err(self.setup_failed(other).await),
        }
    }

    async fn setup_failed(&mut self, got: Option<FromHelper>) -> RuntimeError {
        self.armed = false;
        if let Some(h) = self.helper.as_mut() {
            let _ = h.wait().await;
        }
        match got {
            Some(FromHelper::Failed { stage, error }) => RuntimeError::Setup { stage, error },
            Some(other) => RuntimeError::Protocol(format!("unexpected {other:?}")),
            None => RuntimeError::Protocol("helper exited without a word".into()),
        }
    }

    /// The next event: output lines, then one `Exited`. `None` once the helper is gone.
    pub async fn next(&mut self) -> Option<FromHelper> {
        loop {
            match self.lines.next_line().await {
                Ok(Some(l)) => match serde_json::from_str(&l) {
                    Ok(msg) => return Some(msg),
                    Err(e) => tracing::warn!(error = %e, "unreadable line from container helper"),
                },
                _ => return None,
            }
        }
    }

    pub async fn signal(&mut self, signal: i32) -> Result<(), RuntimeError> {
        self.send(&ToHelper::Signal { signal }).await
    }

    async fn send(&mut self, msg: &ToHelper) -> Result<(), RuntimeError> {
        let mut line = serde_json::to_vec(msg).map_err(RuntimeError::Encode)?;
        line.push(b'\n');
        self.writer
            .write_all(&line)
            .await
            .map_err(RuntimeError::Helper)
    }

    /// Reaps the helper after `Exited` (or kills it when abandoning the container). An
    /// adopted one is not our child: its connection closing is its end.
    pub async fn finish(mut self, kill: bool) {
        self.armed = false;
        if kill {
            let _ = self
                .send(&ToHelper::Signal {
                    signal: libc::SIGKILL,
                })
                .await;
        }
        match self.helper.as_mut() {
            Some(h) => {
                if kill {
                    let _ = h.start_kill();
                }
                let _ = h.wait().await;
            }
            None => while self.next().await.is_some() {},
        }
    }
}
