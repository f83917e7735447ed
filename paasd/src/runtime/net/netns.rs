//! The part of `attach` that happens inside a container's network namespace: `lo` up, address
//! on `eth0`, default route. A netlink socket acts on the namespace it was created in, so this
//! runs on a dedicated OS thread that `setns`es and then opens its own socket. Must never run
//! on a tokio worker or blocking-pool thread: those are reused, and would stay in the
//! container's namespace for whatever task they run next.

use std::fs::File;
use std::net::{IpAddr, Ipv4Addr};
use std::os::unix::fs::MetadataExt;

use futures_util::TryStreamExt;
use nix::sched::{setns, CloneFlags};
use rtnetlink::{LinkUnspec, RouteMessageBuilder};
use tokio::sync::oneshot;

use super::{nl_error, NetError};

/// What to configure inside.
pub struct Inside {
    pub pid: i32,
    pub ip: Ipv4Addr,
    pub prefix: u8,
    pub gateway: Ipv4Addr,
}

/// A worker thread that has entered the namespace of `pid` and holds a netlink socket there,
/// waiting for `eth0` to appear (paasd creates the veth from the host side meanwhile).
pub struct Worker {
    /// The namespace, as the worker opened it: the host side moves the veth peer into exactly
    /// this namespace even if `pid` exits and is reused in between.
    pub ns: oneshot::Receiver<Result<File, NetError>>,
    go: oneshot::Sender<()>,
    done: oneshot::Receiver<Result<(), NetError>>,
    pid: i32,
}

impl Worker {
    pub fn spawn(inside: Inside) -> Result<Worker, NetError> {
        let (ns_tx, ns_rx) = oneshot::channel();
        let (go_tx, go_rx) = oneshot::channel();
        let (done_tx, done_rx) = oneshot::channel();
        let pid = inside.pid;
        std::thread::Builder::new()
            .name(format!("paas-netns-{pid}"))
            .spawn(move || {
                let r = run(inside, ns_tx, go_rx);
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
    inside: Inside,
    ns_tx: oneshot::Sender<Result<File, NetError>>,
    go: oneshot::Receiver<()>,
) -> Result<(), NetError> {
    match enter(inside.pid) {
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
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .map_err(|e| NetError::Worker(format!("runtime for pid {}: {e}", inside.pid)))?;
    rt.block_on(async {
        // Created after setns, so this socket talks to the container's namespace.
        let (conn, handle, _) = rtnetlink::new_connection().map_err(|source| NetError::Socket {
            place: format!("in the network namespace of pid {}", inside.pid),
            source,
        })?;
        let conn = tokio::spawn(conn);
        crate::runtime::timing::mark("netns socket");
        // Opening the socket overlapped with the host creating the veth; now wait for it.
        let r = match go.await {
            Ok(()) => configure(&handle, &inside).await,
            Err(_) => Ok(()),
        };
        conn.abort();
        r
    })
}

/// Opens the namespace of `pid`, refuses the host's own, and moves this thread into it.
/// Returns a handle on the namespace for the host side.
fn enter(pid: i32) -> Result<File, NetError> {
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
        // Configuring "eth0" and a default route here would rewire the host.
        return Err(ns_err(
            "checking it is a container's",
            std::io::Error::other("it is the host's network namespace"),
        ));
    }
    let for_host = ns
        .try_clone()
        .map_err(|e| ns_err("duplicating its fd", e))?;
    setns(&ns, CloneFlags::CLONE_NEWNET).map_err(|e| ns_err("setns", e.into()))?;
    Ok(for_host)
}

async fn configure(handle: &rtnetlink::Handle, inside: &Inside) -> Result<(), NetError> {
    let here = |what: &str| format!("{what} in the network namespace of pid {}", inside.pid);
    let eth0 = handle
        .link()
        .get()
        .match_name("eth0")
        .execute()
        .try_next()
        .await
        .map_err(nl_error("finding", here("eth0")))?
        .ok_or_else(|| NetError::Netlink {
            op: "finding",
            target: here("eth0"),
            source: std::io::Error::from_raw_os_error(libc::ENODEV),
        })?;
    let eth0 = eth0.header.index;
    // The peer could not be created up (the kernel refuses to open a veth end before its
    // other end is registered: ENOTCONN), so it comes up here, together with its address.
    // Once both are done the prefix route exists, which the default route needs.
    let addr = handle
        .address()
        .add(eth0, IpAddr::V4(inside.ip), inside.prefix)
        .execute();
    let up = handle
        .link()
        .set(LinkUnspec::new_with_index(eth0).up().build())
        .execute();
    let lo = handle
        .link()
        .set(LinkUnspec::new_with_name("lo").up().build())
        .execute();
    let (addr, up, lo) = tokio::join!(addr, up, lo);
    crate::runtime::timing::mark("netns addr+up");
    addr.map_err(nl_error(
        "adding address",
        here(&format!("{}/{} on eth0", inside.ip, inside.prefix)),
    ))?;
    up.map_err(nl_error("bringing up", here("eth0")))?;
    lo.map_err(nl_error("bringing up", here("lo")))?;
    let route = RouteMessageBuilder::<Ipv4Addr>::new()
        .gateway(inside.gateway)
        .output_interface(eth0)
        .build();
    handle.route().add(route).execute().await.map_err(nl_error(
        "adding default route",
        here(&format!("via {} on eth0", inside.gateway)),
    ))?;
    Ok(())
}
