//! The edge process: `paasd __edge STATE_DIR`, re-executed from paasd's own binary. It holds
//! the router's listening sockets and serves every client connection, so that a paasd that
//! restarts, crashes or is upgraded cuts none of them. paasd controls it over
//! `STATE/edge/PID.sock` (root only): route tables, certificates and ACME answers in; access
//! lines and answers out. With no paasd attached it keeps serving the last table it got and
//! buffers (bounded) its access lines for the next one.
//!
//! Must not read the store, the config file or the key: everything it knows, paasd sent.

use std::collections::{BTreeMap, VecDeque};
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
use tokio::sync::{mpsc, watch, Notify};

use super::wire::{self, Access, Answer, Command, FromEdge, Hello, Options, Query, ToEdge};

/// The argv[1] that makes paasd an edge.
pub const EDGE_ARG: &str = "__edge";

/// Access lines kept while no paasd is attached (about 150 bytes each).
const BUFFERED_LINES: usize = 50_000;
/// Sent in batches of at most this many lines.
const BATCH: usize = 512;

/// The control sockets' directory.
pub fn dir(state_dir: &Path) -> PathBuf {
    state_dir.join("edge")
}

/// Runs the edge until it is told to stop; the exit code.
pub fn main(state_dir: &Path) -> i32 {
    // `ps` and `top` show what it is (exec'd as /proc/self/exe it would be "exe").
    let _ = nix::sys::prctl::set_name(c"paas-edge");
    // Per thread, inherited by threads made later: set before the runtime makes any. It does
    // not stop the uid change below; it stops any exec from gaining privileges again.
    if let Err(e) = nix::sys::prctl::set_no_new_privs() {
        tracing::warn!(error = %e, "edge: could not set no_new_privs");
    }
    // Also per thread, so also here: an empty bounding set means nothing the edge could ever
    // execute regains a capability. It takes none from the edge now (it binds and reads
    // files as root until `drop_privileges`).
    if nix::unistd::Uid::effective().is_root() {
        if let Err(e) = caps::clear(None, caps::CapSet::Bounding) {
            tracing::warn!(error = %e, "edge: could not empty the capability bounding set");
        }
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("paas-edge")
        // Where each worker hands its free heap pages back after a burst (crate::memory).
        .on_thread_park(paas_runtime::heap::collect_if_asked)
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(error = %e, "edge: cannot start the async runtime");
            return 1;
        }
    };
    let code = match runtime.block_on(serve(state_dir)) {
        Ok(()) => 0,
        Err(e) => {
            tracing::error!(error = %e, "edge: stopped");
            1
        }
    };
    // A handshake thread blocked on an idle peer must not hold the exit.
    runtime.shutdown_timeout(Duration::from_millis(200));
    code
}

struct Edge {
    pid: u32,
    /// Our control socket's path: removed before a stop closes the control connection, so
    /// that a paasd that saw us go finds nothing left.
    socket: PathBuf,
    exe: wire::ExeId,
    /// Set once, by the first `Init`.
    serving: OnceLock<Serving>,
    access: Mutex<Buffered>,
    wake: Notify,
    /// Bumped by every attach: a controller's tasks end when it is no longer current.
    generation: AtomicU64,
    /// Resolves the accept loops: stop accepting, finish what is in flight.
    stop_accepting: watch::Sender<bool>,
}

struct Serving {
    router: Arc<paas_router::Router>,
    options: Options,
    /// Duplicates of the listening sockets, for `GiveListeners`.
    http: std::net::TcpListener,
    https: Option<std::net::TcpListener>,
    acme: Arc<Mutex<BTreeMap<String, String>>>,
    /// The accept loops; they end after a stop once their connections finished.
    done: Mutex<Vec<tokio::task::JoinHandle<()>>>,
}

#[derive(Default)]
struct Buffered {
    lines: VecDeque<Access>,
    dropped: u64,
}

async fn serve(state_dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    let dir = dir(state_dir);
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&dir)?;
    let pid = std::process::id();
    let path = dir.join(format!("{pid}.sock"));
    let _ = std::fs::remove_file(&path);
    let control = tokio::net::UnixListener::bind(&path)?;
    let (stop_accepting, _) = watch::channel(false);
    let edge = Arc::new(Edge {
        pid,
        socket: path.clone(),
        exe: wire::ExeId::of(None)?,
        serving: OnceLock::new(),
        access: Mutex::new(Buffered::default()),
        wake: Notify::new(),
        generation: AtomicU64::new(0),
        stop_accepting,
    });
    tracing::info!(pid, socket = %path.display(), "edge: waiting for paasd");
    let (exit_tx, mut exit_rx) = mpsc::channel::<()>(1);
    // SIGTERM (`systemctl kill`, a shutdown): drain like a stop, then exit.
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    loop {
        tokio::select! {
            _ = term.recv() => {
                tracing::info!("edge: SIGTERM; finishing what is in flight");
                stop(&edge, Duration::from_secs(5)).await;
                break;
            }
            accepted = control.accept() => {
                let (stream, _) = match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        tracing::warn!(error = %e, "edge: control accept");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                // The directory is root's alone; a peer that is not root got in some other way.
                if stream.peer_cred().map(|c| c.uid()).ok() != Some(0) {
                    continue;
                }
                let edge = Arc::clone(&edge);
                let exit = exit_tx.clone();
                tokio::spawn(async move {
                    match controller(edge, stream, exit).await {
                        // A starting paasd reads our hello and hangs up (it looks before it
                        // decides): not worth a warning. A hang-up in the middle of an `Init`
                        // or after `Attach` is.
                        Err(e) if e.get_ref().is_some_and(|i| i.is::<OnlyLooked>()) => {
                            tracing::debug!("edge: a control connection closed after our hello");
                        }
                        Err(e) => tracing::warn!(error = %e, "edge: a control connection ended"),
                        Ok(()) => {}
                    }
                });
            }
            _ = exit_rx.recv() => break,
        }
    }
    let _ = std::fs::remove_file(&path);
    Ok(())
}

/// One control connection: the handshake (blocking, descriptors may cross), then JSON lines.
async fn controller(
    edge: Arc<Edge>,
    stream: tokio::net::UnixStream,
    exit: mpsc::Sender<()>,
) -> std::io::Result<()> {
    let std_stream = stream.into_std()?;
    // No read timeout: the peer is root (checked), and paasd may hold a connection a while
    // between our hello and its command.
    std_stream.set_nonblocking(false)?;
    let shake = {
        let edge = Arc::clone(&edge);
        tokio::task::spawn_blocking(move || handshake(&edge, std_stream))
    };
    let (std_stream, next) = shake.await.map_err(std::io::Error::other)??;
    match next {
        After::Attach => {}
        After::Retire(drain) => {
            // The requests it finishes (and the ones it served while no paasd listened) are
            // the apps' requests still: their access lines go to the paasd that retired it,
            // on this connection, which closes when the drain is over.
            std_stream.set_nonblocking(true)?;
            let (_, write) = tokio::net::UnixStream::from_std(std_stream)?.into_split();
            report_until(&edge, write, stop(&edge, drain)).await;
            let _ = std::fs::remove_file(&edge.socket);
            let _ = exit.send(()).await;
            return Ok(());
        }
    }
    std_stream.set_read_timeout(None)?;
    std_stream.set_nonblocking(true)?;
    let stream = tokio::net::UnixStream::from_std(std_stream)?;
    let generation = edge.generation.fetch_add(1, Ordering::SeqCst) + 1;
    tracing::info!(generation, "edge: paasd attached");
    let (read, mut write) = stream.into_split();
    let (replies_tx, mut replies) = mpsc::unbounded_channel::<FromEdge>();
    // Writer: answers first, then access lines in batches.
    let writer = {
        let edge = Arc::clone(&edge);
        tokio::spawn(async move {
            loop {
                while let Ok(m) = replies.try_recv() {
                    if send(&mut write, &m).await.is_err() {
                        return;
                    }
                }
                let Ok(more) = send_batch(&edge, &mut write).await else {
                    return;
                };
                if edge.generation.load(Ordering::SeqCst) != generation {
                    return;
                }
                if !more {
                    tokio::select! {
                        m = replies.recv() => match m {
                            Some(m) => {
                                if send(&mut write, &m).await.is_err() {
                                    return;
                                }
                            }
                            None => return,
                        },
                        () = lines_come(&edge) => {}
                    }
                }
            }
        })
    };
    let mut lines = tokio::io::BufReader::new(read).lines();
    let result = loop {
        let line = match lines.next_line().await {
            Ok(Some(l)) => l,
            Ok(None) => break Ok(()),
            Err(e) => break Err(e),
        };
        if edge.generation.load(Ordering::SeqCst) != generation {
            break Ok(());
        }
        let msg: ToEdge = match serde_json::from_str(&line) {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!(error = %e, "edge: a control line that does not parse");
                continue;
            }
        };
        match msg {
            ToEdge::Table(spec) => {
                if let Some(s) = edge.serving.get() {
                    s.router.publish(paas_router::RouteTable::from_spec(&spec));
                }
            }
            ToEdge::Certs(spec) => {
                if let Some(s) = edge.serving.get() {
                    let (certs, errors) = paas_router::tls::Certs::from_spec(&spec);
                    for (name, e) in errors {
                        tracing::error!(domain = %name, error = %e, "edge: a certificate does not load");
                    }
                    s.router.publish_certs(certs);
                }
            }
            ToEdge::Acme(map) => {
                if let Some(s) = edge.serving.get() {
                    *s.acme.lock().unwrap_or_else(PoisonError::into_inner) = map;
                }
            }
            ToEdge::Query { id, query } => {
                let answer = match (query, edge.serving.get()) {
                    (Query::Inflight(addr), Some(s)) => Answer::Inflight(s.router.inflight(addr)),
                    (Query::Inflight(_), None) => Answer::Inflight(0),
                    (Query::Connections, s) => Answer::Connections {
                        stats: s.map(|s| s.router.connections()).unwrap_or_default(),
                        max: s.map_or(0, |s| s.router.max_connections()),
                    },
                };
                let _ = replies_tx.send(FromEdge::Reply { id, answer });
            }
            ToEdge::Stop { drain_ms } => {
                stop(&edge, Duration::from_millis(drain_ms)).await;
                // (Unprivileged, this fails; paasd removes it once we are gone.)
                let _ = std::fs::remove_file(&edge.socket);
                // What the requests logged on their way out goes to paasd before we exit.
                edge.wake.notify_one();
                drop(replies_tx);
                let _ = tokio::time::timeout(Duration::from_secs(2), writer).await;
                let _ = exit.send(()).await;
                return Ok(());
            }
        }
    };
    if edge.generation.load(Ordering::SeqCst) == generation {
        tracing::info!("edge: paasd went away; serving on with the last table");
    }
    writer.abort();
    result
}

enum After {
    Attach,
    Retire(Duration),
}

/// A control connection that hung up after our hello without telling us anything but
/// `GiveListeners`.
#[derive(Debug, thiserror::Error)]
#[error("paasd hung up after looking")]
struct OnlyLooked;

fn handshake(edge: &Arc<Edge>, stream: UnixStream) -> std::io::Result<(UnixStream, After)> {
    let mut told = false;
    loop {
        let hello = Hello {
            pid: edge.pid,
            exe: edge.exe,
            options: edge.serving.get().map(|s| s.options.clone()),
            listeners: edge
                .serving
                .get()
                .map(|s| {
                    std::iter::once(&s.http)
                        .chain(s.https.as_ref())
                        .filter_map(|l| l.local_addr().ok())
                        .collect()
                })
                .unwrap_or_default(),
        };
        wire::write_line(&stream, &hello)?;
        let command = match wire::read_line::<Command>(&stream) {
            // Only looking, or only taking the listeners: a starting paasd does that.
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof && !told => {
                return Err(std::io::Error::other(OnlyLooked));
            }
            r => r?,
        };
        told |= !matches!(command, Command::GiveListeners);
        match command {
            Command::Attach => return Ok((stream, After::Attach)),
            Command::Retire { drain_ms } => {
                return Ok((stream, After::Retire(Duration::from_millis(drain_ms))))
            }
            Command::GiveListeners => {
                let fds: Vec<_> = edge
                    .serving
                    .get()
                    .map(|s| {
                        std::iter::once(s.http.as_fd())
                            .chain(s.https.as_ref().map(AsFd::as_fd))
                            .collect()
                    })
                    .unwrap_or_default();
                paas_runtime::fdpass::send(&stream, wire::LISTENERS, &fds)?;
            }
            Command::Init {
                options,
                https,
                table,
                certs,
                acme,
            } => {
                let (marker, fds) = paas_runtime::fdpass::recv(&stream)?;
                if marker != wire::LISTENERS || fds.len() != 1 + usize::from(https) {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::InvalidData,
                        "Init without its listening sockets",
                    ));
                }
                if edge.serving.get().is_some() {
                    tracing::warn!("edge: a second Init ignored");
                    continue;
                }
                let mut fds = fds.into_iter();
                let http = fds.next().map(std::net::TcpListener::from);
                let https = fds.next().map(std::net::TcpListener::from);
                let Some(http) = http else { continue };
                let first = First { table, certs, acme };
                let serving = start(edge, *options, http, https, first)?;
                let _ = edge.serving.set(serving);
            }
        }
    }
}

/// What a new edge serves from its first connection on.
struct First {
    table: paas_router::TableSpec,
    certs: paas_router::tls::CertsSpec,
    acme: BTreeMap<String, String>,
}

/// Starts serving on the sockets paasd handed over.
fn start(
    edge: &Arc<Edge>,
    options: Options,
    http: std::net::TcpListener,
    https: Option<std::net::TcpListener>,
    first: First,
) -> std::io::Result<Serving> {
    let sink: paas_router::AccessSink = {
        let edge = Arc::downgrade(edge);
        Arc::new(move |a: &paas_router::AccessLine<'_>| {
            // Requests for unknown hosts belong to no app's stream.
            if a.app.is_empty() {
                return;
            }
            if let Some(edge) = edge.upgrade() {
                edge.push(Access::of(a));
            }
        })
    };
    let router = paas_router::Router::new(options.router_options(), sink);
    // Before the first accept: a connection queued meanwhile must find its app.
    router.publish(paas_router::RouteTable::from_spec(&first.table));
    let (certs, errors) = paas_router::tls::Certs::from_spec(&first.certs);
    for (name, e) in errors {
        tracing::error!(domain = %name, error = %e, "edge: a certificate does not load");
    }
    router.publish_certs(certs);
    let acme = Arc::new(Mutex::new(first.acme));
    {
        let acme = Arc::clone(&acme);
        router.answer_acme_with(Arc::new(move |token: &str| {
            acme.lock()
                .unwrap_or_else(PoisonError::into_inner)
                .get(token)
                .cloned()
        }));
    }
    let until_stopped = || {
        let mut rx = edge.stop_accepting.subscribe();
        async move {
            let _ = rx.wait_for(|stop| *stop).await;
        }
    };
    let tokio_listener = |l: &std::net::TcpListener| -> std::io::Result<tokio::net::TcpListener> {
        let own = l.try_clone()?;
        own.set_nonblocking(true)?;
        tokio::net::TcpListener::from_std(own)
    };
    // Before the first accept; if it fails, nothing is served (paasd retries a new edge).
    let uid = options.uid;
    if let Err(e) = drop_privileges(uid) {
        tracing::error!(error = %e, "edge: could not drop privileges; refusing to serve");
        return Err(std::io::Error::other(e));
    }
    tracing::info!(uid, "edge: running without privileges");
    let mut done = vec![tokio::spawn(
        Arc::clone(&router).serve(tokio_listener(&http)?, until_stopped()),
    )];
    if let Some(l) = &https {
        let (router, listener, stopped) =
            (Arc::clone(&router), tokio_listener(l)?, until_stopped());
        done.push(tokio::spawn(async move {
            if let Err(e) = router.serve_tls(listener, stopped).await {
                tracing::error!(error = %e, "edge: cannot serve HTTPS");
            }
        }));
    }
    // Memory freed after a flood of connections goes back to the kernel.
    {
        let router = Arc::clone(&router);
        tokio::spawn(crate::memory::watch(move || router.connections().open));
    }
    tracing::info!(
        http = ?http.local_addr().ok(),
        https = ?https.as_ref().and_then(|l| l.local_addr().ok()),
        max_connections = router.max_connections(),
        "edge: serving"
    );
    Ok(Serving {
        router,
        options,
        http,
        https,
        acme,
        done: Mutex::new(done),
    })
}

/// Why the edge did not become unprivileged. It then serves nothing: a root process
/// parsing untrusted HTTP is what the edge exists to avoid.
#[derive(Debug, thiserror::Error)]
enum DropError {
    #[error("{what}: {source}")]
    Call {
        what: &'static str,
        #[source]
        source: nix::Error,
    },
    #[error("after the drop it still has {0}")]
    Kept(String),
}

/// From its first accept the edge needs no privilege: the sockets are open (the control one
/// was bound as root, which is what a connecting paasd's peer check sees), and connecting
/// to instances needs none. It serves as `uid` and the group of that number: the last of
/// the `[users]` range, which no app gets and no host account has (`app_users`), so no other
/// process can signal it. It is the process that parses untrusted HTTP and TLS and holds the
/// certificates' keys, so it drops root and every capability (a uid change from 0 clears
/// them); `main` already set no_new_privs and emptied the bounding set, before any thread
/// existed (both are per thread). Changing credentials also makes it non-dumpable: no other
/// process of that uid can ptrace it. The result is checked, not assumed: a call that
/// "succeeds" without effect (a uid of -1 means "unchanged") must not leave it root.
fn drop_privileges(uid: u32) -> Result<(), DropError> {
    use nix::unistd::{setgroups, setresgid, setresuid, Gid, Uid};
    if !Uid::effective().is_root() {
        return Ok(());
    }
    let call = |what| move |source| DropError::Call { what, source };
    let (u, g) = (Uid::from_raw(uid), Gid::from_raw(uid));
    setgroups(&[]).map_err(call("setgroups"))?;
    // glibc applies these to every thread of the process.
    setresgid(g, g, g).map_err(call("setresgid"))?;
    setresuid(u, u, u).map_err(call("setresuid"))?;
    match still_held(uid) {
        None => Ok(()),
        Some(kept) => Err(DropError::Kept(kept)),
    }
}

/// What this thread holds beyond running as `uid` and its group, with no supplementary
/// group and no capability in any set; None if nothing.
fn still_held(uid: u32) -> Option<String> {
    let mut kept = Vec::new();
    let uids = nix::unistd::getresuid().map(|r| [r.real, r.effective, r.saved].map(|u| u.as_raw()));
    let gids = nix::unistd::getresgid().map(|r| [r.real, r.effective, r.saved].map(|g| g.as_raw()));
    for (what, ids) in [("uids", uids), ("gids", gids)] {
        match ids {
            Ok(ids) if ids == [uid; 3] => {}
            Ok([real, effective, saved]) => kept.push(format!("{what} {real}/{effective}/{saved}")),
            Err(e) => kept.push(format!("unreadable {what} ({e})")),
        }
    }
    match nix::unistd::getgroups() {
        Ok(groups) if groups.is_empty() => {}
        Ok(groups) => kept.push(format!("{} supplementary groups", groups.len())),
        Err(e) => kept.push(format!("unreadable groups ({e})")),
    }
    for (name, set) in [
        ("effective", caps::CapSet::Effective),
        ("permitted", caps::CapSet::Permitted),
        ("inheritable", caps::CapSet::Inheritable),
        ("ambient", caps::CapSet::Ambient),
        ("bounding", caps::CapSet::Bounding),
    ] {
        match caps::read(None, set) {
            Ok(held) if held.is_empty() => {}
            Ok(held) => kept.push(format!("{} {name} capabilities", held.len())),
            Err(e) => kept.push(format!("unreadable {name} capabilities ({e})")),
        }
    }
    (!kept.is_empty()).then(|| kept.join(", "))
}

impl Edge {
    fn push(&self, line: Access) {
        let mut b = self.access.lock().unwrap_or_else(PoisonError::into_inner);
        if b.lines.len() >= BUFFERED_LINES {
            b.lines.pop_front();
            b.dropped += 1;
        }
        b.lines.push_back(line);
        let wake = b.lines.len() == 1 || b.lines.len() == BATCH;
        drop(b);
        if wake {
            self.wake.notify_one();
        }
    }

    fn take_batch(&self) -> (Vec<Access>, u64) {
        let mut b = self.access.lock().unwrap_or_else(PoisonError::into_inner);
        let n = b.lines.len().min(BATCH);
        let batch = b.lines.drain(..n).collect();
        (batch, std::mem::take(&mut b.dropped))
    }
}

/// One message to paasd, as a JSON line.
async fn send<W: tokio::io::AsyncWrite + Unpin>(
    write: &mut W,
    m: &FromEdge,
) -> std::io::Result<()> {
    let Ok(mut line) = serde_json::to_vec(m) else {
        tracing::warn!("edge: a message to paasd that does not serialize; skipped");
        return Ok(());
    };
    line.push(b'\n');
    write.write_all(&line).await
}

/// Sends the next batch of access lines (after the count of any dropped); whether a full
/// batch went, so more may wait.
async fn send_batch<W: tokio::io::AsyncWrite + Unpin>(
    edge: &Edge,
    write: &mut W,
) -> std::io::Result<bool> {
    let (batch, dropped) = edge.take_batch();
    if dropped > 0 {
        send(write, &FromEdge::Dropped(dropped)).await?;
    }
    let more = batch.len() == BATCH;
    if !batch.is_empty() {
        send(write, &FromEdge::Access(batch)).await?;
    }
    Ok(more)
}

/// Resolves when access lines are there to send, or every 250 ms.
async fn lines_come(edge: &Edge) {
    tokio::select! {
        () = edge.wake.notified() => {
            // Lines come in bursts: gather a few milliseconds' worth.
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        () = tokio::time::sleep(Duration::from_millis(250)) => {}
    }
}

/// Sends the buffered access lines, and those that come, until `until` is done; then the
/// rest. Gives up when paasd hangs up (what is left of the lines is lost then).
async fn report_until<W: tokio::io::AsyncWrite + Unpin>(
    edge: &Edge,
    mut write: W,
    until: impl std::future::Future<Output = ()>,
) {
    let mut until = std::pin::pin!(until);
    let mut over = false;
    loop {
        loop {
            match send_batch(edge, &mut write).await {
                Ok(true) => {}
                Ok(false) => break,
                Err(_) => return,
            }
        }
        if over {
            let _ = write.shutdown().await;
            return;
        }
        tokio::select! {
            () = &mut until => over = true,
            () = lines_come(edge) => {}
        }
    }
}

/// Stops accepting, then waits (at most `drain`) for the connections to finish.
async fn stop(edge: &Edge, drain: Duration) {
    let _ = edge.stop_accepting.send_replace(true);
    let Some(s) = edge.serving.get() else { return };
    let tasks: Vec<_> = std::mem::take(&mut *s.done.lock().unwrap_or_else(PoisonError::into_inner));
    let all = async {
        for t in tasks {
            let _ = t.await;
        }
    };
    if tokio::time::timeout(drain, all).await.is_err() {
        tracing::info!("edge: connections still open after the drain; closing them");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The check that makes the edge refuse to serve, on a process that kept root (the
    /// tests run as root, as the README's command and CI do).
    #[test]
    fn a_process_still_root_is_told_what_it_kept() {
        assert!(nix::unistd::Uid::effective().is_root(), "tests run as root");
        let kept = still_held(1_900_099_999).expect("root holds more than that uid");
        assert!(kept.starts_with("uids 0/0/0, gids 0/0/0"), "{kept}");
        assert!(kept.contains("effective capabilities"), "{kept}");
        assert!(kept.contains("bounding capabilities"), "{kept}");
    }
}
