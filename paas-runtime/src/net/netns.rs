//! Reaching a namespace from paasd: [`open`] hands the host side a handle on the network
//! namespace of a pid, and [`Worker`] runs [`inside::configure`] in it for
//! [`super::Network::attach`]. A netlink socket acts on the namespace it was created in, so
//! the worker is a dedicated OS thread that `setns`es. Must never run on a tokio worker or
//! blocking-pool thread: those are reused, and would stay in the instance's namespace for
//! whatever task they run next.

use std::fs::File;
use std::os::unix::fs::MetadataExt;

use nix::sched::{setns, CloneFlags};
use tokio::sync::oneshot;

use super::inside::{self, Eth0};
use super::NetError;

/// Opens the network namespace of `pid`, refusing the host's own (configuring "eth0" and a
/// default route there would rewire the host). The host side moves the veth peer into exactly
/// this namespace even if `pid` exits and is reused in between.
pub fn open(pid: i32) -> Result<File, NetError> {
    let ns_err = |what: &str, source: std::io::Error| NetError::Namespace {
        pid,
        what: what.to_string(),
        source,
    };
    let path = format!("/proc/{pid}/ns/net");
    let ns = File::open(&path).map_err(|e| ns_err("opening /proc/PID/ns/net", e))?;
    let theirs = ns
        .metadata()
        .map_err(|e| ns_err("stat of its namespace", e))?;
    let ours = std::fs::metadata("/proc/self/ns/net")
        .map_err(|e| ns_err("stat of paasd's namespace", e))?;
    if (theirs.dev(), theirs.ino()) == (ours.dev(), ours.ino()) {
        return Err(ns_err(
            "checking it is a container's",
            std::io::Error::other("it is the host's network namespace"),
        ));
    }
    Ok(ns)
}

/// A worker thread that has entered the namespace of `pid`, waiting for `eth0` to appear
/// (paasd creates the veth from the host side meanwhile).
pub struct Worker {
    /// The namespace, as the worker opened it.
    pub ns: oneshot::Receiver<Result<File, NetError>>,
    go: oneshot::Sender<()>,
    done: oneshot::Receiver<Result<(), NetError>>,
    pid: i32,
}

impl Worker {
    pub fn spawn(pid: i32, eth0: Eth0) -> Result<Worker, NetError> {
        let (ns_tx, ns_rx) = oneshot::channel();
        let (go_tx, go_rx) = oneshot::channel();
        let (done_tx, done_rx) = oneshot::channel();
        std::thread::Builder::new()
            .name(format!("paas-netns-{pid}"))
            .spawn(move || {
                let r = run(pid, &eth0, ns_tx, go_rx);
                // The receiver is gone only if attach was abandoned; nobody is left to tell.
                let _ = done_tx.send(r);
            })
            .map_err(|e| NetError::Worker(format!("spawning the thread for pid {pid}: {e}")))?;
        Ok(Worker {
            ns: ns_rx,
            go: go_tx,
            done: done_rx,
            pid,
        })
    }

    /// Tells the worker `eth0` exists and waits for it to finish configuring.
    pub async fn configure(self) -> Result<(), NetError> {
        // A worker that already gave up has dropped `go`; its reason arrives on `done`.
        let _ = self.go.send(());
        self.done
            .await
            .map_err(|_| NetError::Worker(format!("the thread for pid {} died", self.pid)))?
    }
}

fn run(
    pid: i32,
    eth0: &Eth0,
    ns_tx: oneshot::Sender<Result<File, NetError>>,
    go: oneshot::Receiver<()>,
) -> Result<(), NetError> {
    let entered = open(pid).and_then(|ns| {
        let for_host = ns.try_clone().map_err(|source| NetError::Namespace {
            pid,
            what: "duplicating its fd".into(),
            source,
        })?;
        setns(&ns, CloneFlags::CLONE_NEWNET).map_err(|e| NetError::Namespace {
            pid,
            what: "setns".into(),
            source: e.into(),
        })?;
        Ok(for_host)
    });
    match entered {
        Ok(for_host) => {
            if ns_tx.send(Ok(for_host)).is_err() {
                return Ok(());
            }
        }
        Err(e) => {
            let _ = ns_tx.send(Err(e));
            return Ok(());
        }
    }
    match go.blocking_recv() {
        Ok(()) => inside::configure(Some(eth0)),
        Err(_) => Ok(()),
    }
}
