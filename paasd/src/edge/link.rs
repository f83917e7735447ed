//! paasd's side of the edge: finding the edge the last paasd left serving, taking it over or
//! replacing it (an upgrade, changed router settings), starting a new one when there is none
//! or it died, and mirroring to it everything the router must know (the route table,
//! certificates, ACME answers). Access lines come back through the sink it was given.
//!
//! Must not decide routes or certificates: it carries what the supervisor and the
//! certificate service publish, and keeps the latest of each to replay to a new edge.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot, watch};

use super::process::{dir, EDGE_ARG};
use super::wire::{self, Access, Answer, Command, FromEdge, Hello, Options, Query, ToEdge};

/// How long a retired edge may finish the requests it has in flight.
pub const DRAIN: Duration = Duration::from_secs(5);

/// Receives the access lines the edge reports.
pub type Sink = Arc<dyn Fn(Access) + Send + Sync>;

#[derive(Debug, thiserror::Error)]
pub enum EdgeError {
    #[error("edge: {what}: {source}")]
    Io {
        what: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("the edge process did not come up within 10 s")]
    NoStart,
}

fn io(what: &'static str) -> impl FnOnce(std::io::Error) -> EdgeError {
    move |source| EdgeError::Io { what, source }
}

/// The router's listening sockets, as paasd holds them (an edge gets duplicates).
#[derive(Debug)]
pub struct Listeners {
    pub http: std::net::TcpListener,
    pub https: Option<std::net::TcpListener>,
}

impl Listeners {
    fn addrs(&self) -> Vec<SocketAddr> {
        std::iter::once(&self.http)
            .chain(self.https.as_ref())
            .filter_map(|l| l.local_addr().ok())
            .collect()
    }
}

/// An edge found running at start, its handshake under way.
pub struct Found {
    stream: UnixStream,
    hello: Hello,
}

impl Found {
    pub fn pid(&self) -> u32 {
        self.hello.pid
    }

    /// Whether it serves `want` on HTTP (see [`matches`]).
    pub fn serves(&self, want: SocketAddr) -> bool {
        self.hello
            .listeners
            .first()
            .is_some_and(|a| matches(*a, want))
    }

    /// Its listening sockets (it keeps serving on them too).
    pub fn take_listeners(&mut self) -> std::io::Result<Listeners> {
        wire::write_line(&self.stream, &Command::GiveListeners)?;
        let (marker, fds) = paas_runtime::fdpass::recv(&self.stream)?;
        self.hello = wire::read_line(&self.stream)?;
        let mut fds = fds.into_iter().map(std::net::TcpListener::from);
        match (marker, fds.next()) {
            (wire::LISTENERS, Some(http)) => Ok(Listeners {
                http,
                https: fds.next(),
            }),
            _ => Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                "the edge sent no listening socket",
            )),
        }
    }
}

/// Whether a socket bound to `bound` is what the config's `want` asks for: an unspecified
/// IP or port in `want` matches any.
pub fn matches(bound: SocketAddr, want: SocketAddr) -> bool {
    (want.ip().is_unspecified() || want.ip() == bound.ip())
        && (want.port() == 0 || want.port() == bound.port())
}

/// Every edge of this state dir that answers (blocking). Sockets nobody answers on are
/// removed; a listener that is not one of our edges is left alone and logged.
pub fn discover(state_dir: &Path) -> Vec<Found> {
    let Ok(entries) = std::fs::read_dir(dir(state_dir)) else {
        return Vec::new();
    };
    let owner = std::fs::canonicalize(state_dir).unwrap_or_else(|_| state_dir.to_path_buf());
    let mut found = Vec::new();
    for e in entries.flatten() {
        let path = e.path();
        let stream = match UnixStream::connect(&path) {
            Ok(s) => s,
            // Nobody listens: a killed edge's file. Anything else (a full backlog) may be a
            // live edge, whose file must stay.
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                let _ = std::fs::remove_file(&path);
                continue;
            }
            Err(e) => {
                tracing::warn!(socket = %path.display(), error = %e, "an edge socket does not answer");
                continue;
            }
        };
        let peer =
            nix::sys::socket::getsockopt(&stream, nix::sys::socket::sockopt::PeerCredentials);
        let ours = peer.is_ok_and(|c| c.uid() == 0 && is_edge_of(c.pid(), &owner));
        if !ours {
            tracing::warn!(socket = %path.display(), "not adopting an edge socket: its process is not an edge of this state dir");
            continue;
        }
        let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
        match wire::read_line::<Hello>(&stream) {
            Ok(hello) => found.push(Found { stream, hello }),
            Err(e) => {
                tracing::warn!(socket = %path.display(), error = %e, "an edge did not say hello")
            }
        }
    }
    found
}

/// `/proc/PID/cmdline` is `paasd __edge STATE_DIR` for this state dir.
fn is_edge_of(pid: i32, owner: &Path) -> bool {
    std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| {
        c.split(|b| *b == 0)
            .skip(1)
            .take(2)
            .eq([EDGE_ARG.as_bytes(), owner.as_os_str().as_encoded_bytes()])
    })
}

/// The link to the edge (cheap to clone).
#[derive(Clone)]
pub struct Edge {
    inner: Arc<Inner>,
}

struct Inner {
    state_dir: PathBuf,
    options: Options,
    listeners: Listeners,
    sink: Sink,
    latest: Mutex<Latest>,
    pending: Mutex<HashMap<u64, oneshot::Sender<Answer>>>,
    next_id: AtomicU64,
    /// No new edge is started once paasd stops.
    stopping: AtomicBool,
    /// A full stop (not a restart): an edge attached from now on is stopped at once.
    full_stop: AtomicBool,
    /// The edge currently attached: its pid (0: none).
    attached: watch::Sender<u32>,
    /// Edges (pids) to retire once ours serves.
    to_retire: Mutex<Vec<u32>>,
}

#[derive(Default)]
struct Latest {
    table: Option<paas_router::TableSpec>,
    certs: Option<paas_router::tls::CertsSpec>,
    acme: BTreeMap<String, String>,
    /// Tables go out only from [`Edge::go_live`] on: an edge the last paasd left keeps its
    /// table until this paasd has adopted the instances.
    live: bool,
    conn: Option<mpsc::UnboundedSender<ToEdge>>,
}

impl Inner {
    /// One line from edge `pid`: access lines go to the sink, a count of dropped ones to the
    /// log; a reply is handed back.
    fn take_in(&self, pid: u32, line: &str) -> Option<(u64, Answer)> {
        match serde_json::from_str::<FromEdge>(line) {
            Ok(FromEdge::Access(batch)) => {
                for a in batch {
                    (self.sink)(a);
                }
            }
            Ok(FromEdge::Dropped(n)) => {
                tracing::warn!(
                    pid,
                    lines = n,
                    "edge: access lines dropped while no paasd listened"
                );
            }
            Ok(FromEdge::Reply { id, answer }) => return Some((id, answer)),
            Err(e) => tracing::warn!(pid, error = %e, "edge: a line that does not parse"),
        }
        None
    }
}

impl Edge {
    /// Takes over a suitable edge among `found` (same executable, same settings, same
    /// sockets) at once; the others are retired once [`Edge::go_live`] has one serving.
    pub async fn start(
        state_dir: PathBuf,
        options: Options,
        listeners: Listeners,
        found: Vec<Found>,
        sink: Sink,
    ) -> Edge {
        let (attached, _) = watch::channel(0);
        let edge = Edge {
            inner: Arc::new(Inner {
                state_dir,
                options,
                listeners,
                sink,
                latest: Mutex::new(Latest::default()),
                pending: Mutex::new(HashMap::new()),
                next_id: AtomicU64::new(1),
                stopping: AtomicBool::new(false),
                full_stop: AtomicBool::new(false),
                attached,
                to_retire: Mutex::new(Vec::new()),
            }),
        };
        let own = wire::ExeId::of(None).ok();
        let addrs = edge.inner.listeners.addrs();
        let mut keep = None;
        let mut others = Vec::new();
        for f in found {
            let suitable = keep.is_none()
                && Some(f.hello.exe) == own
                && f.hello.options.as_ref() == Some(&edge.inner.options)
                && f.hello.listeners == addrs;
            if suitable {
                keep = Some(f);
            } else {
                tracing::info!(pid = f.hello.pid, "an edge of another binary or other settings is running; it is replaced once this paasd serves");
                others.push(f);
            }
        }
        let mut retire: Vec<u32> = others.iter().map(Found::pid).collect();
        // Connections are opened afresh when they are used: the ones of the handshake may
        // have been idle a long time by then.
        drop(others);
        if let Some(f) = keep {
            let pid = f.hello.pid;
            drop(f);
            match edge.attach_to(pid).await {
                Ok(()) => tracing::info!(
                    pid,
                    "took over the running edge: client connections were never interrupted"
                ),
                Err(e) => {
                    tracing::warn!(pid, error = %e, "could not take over the running edge; it is replaced");
                    retire.push(pid);
                }
            }
        }
        *edge
            .inner
            .to_retire
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = retire;
        edge
    }

    /// A fresh control connection to the edge `pid`, past its hello.
    fn connect(state_dir: &Path, pid: u32) -> std::io::Result<UnixStream> {
        let stream = UnixStream::connect(dir(state_dir).join(format!("{pid}.sock")))?;
        stream.set_read_timeout(Some(Duration::from_secs(10)))?;
        let _hello: Hello = wire::read_line(&stream)?;
        Ok(stream)
    }

    /// Takes over the running edge `pid`.
    async fn attach_to(&self, pid: u32) -> std::io::Result<()> {
        let state_dir = self.inner.state_dir.clone();
        let stream = tokio::task::spawn_blocking(move || {
            let stream = Edge::connect(&state_dir, pid)?;
            wire::write_line(&stream, &Command::Attach)?;
            Ok::<_, std::io::Error>(stream)
        })
        .await
        .map_err(std::io::Error::other)??;
        self.run(stream, pid);
        Ok(())
    }

    /// From now on the route table goes to the edge; if none is attached, one is started
    /// (and the edges it replaces retire: they stop accepting and finish in flight).
    pub async fn go_live(&self) {
        {
            let mut l = self.latest();
            l.live = true;
            if let (Some(conn), Some(t)) = (&l.conn, &l.table) {
                let _ = conn.send(ToEdge::Table(t.clone()));
            }
        }
        if *self.inner.attached.borrow() == 0 {
            if let Err(e) = self.spawn().await {
                // The watch below tries again; the replaced edges serve meanwhile.
                tracing::error!(error = %e, "could not start the edge");
            }
        }
        if self.pid().is_some() {
            self.retire_replaced();
        }
        // A supervisor that restarts the edge if it dies.
        let edge = self.clone();
        tokio::spawn(async move { edge.watch().await });
    }

    pub fn publish(&self, table: paas_router::RouteTable) {
        let spec = table.spec();
        let mut l = self.latest();
        if l.live {
            if let Some(c) = &l.conn {
                let _ = c.send(ToEdge::Table(spec.clone()));
            }
        }
        l.table = Some(spec);
    }

    pub fn publish_certs(&self, certs: &paas_router::tls::Certs) {
        let spec = certs.spec();
        let mut l = self.latest();
        if let Some(c) = &l.conn {
            let _ = c.send(ToEdge::Certs(spec.clone()));
        }
        l.certs = Some(spec);
    }

    pub fn set_acme(&self, answers: BTreeMap<String, String>) {
        let mut l = self.latest();
        if let Some(c) = &l.conn {
            let _ = c.send(ToEdge::Acme(answers.clone()));
        }
        l.acme = answers;
    }

    /// Resolves once the edge has applied everything published before the call (it handles
    /// its control connection in order, so its answer to a query comes after them), or
    /// after the query's timeout when no edge answers.
    pub async fn applied(&self) {
        let _ = self.ask(Query::Connections).await;
    }

    /// Requests in flight to `addr` (0 when no edge answers: nothing can be waited for).
    pub async fn inflight(&self, addr: SocketAddr) -> usize {
        match self.ask(Query::Inflight(addr)).await {
            Some(Answer::Inflight(n)) => n,
            _ => 0,
        }
    }

    /// The edge's client connection counters and cap.
    pub async fn connections(&self) -> Option<(paas_router::ConnStats, usize)> {
        match self.ask(Query::Connections).await {
            Some(Answer::Connections { stats, max }) => Some((stats, max)),
            _ => None,
        }
    }

    /// paasd's own copies of the router's listening sockets.
    pub fn listeners(&self) -> &Listeners {
        &self.inner.listeners
    }

    /// The attached edge's pid, if one is.
    pub fn pid(&self) -> Option<u32> {
        Some(*self.inner.attached.borrow()).filter(|p| *p != 0)
    }

    /// A restart: the edge serves on without paasd with the table it has (instances let go
    /// meanwhile must not leave it); nothing new is started.
    pub fn detach(&self) {
        self.inner.stopping.store(true, Ordering::SeqCst);
        self.latest().live = false;
    }

    /// A full stop: the edge stops accepting, finishes what is in flight (at most
    /// [`DRAIN`]) and exits; so do edges still retiring.
    pub async fn stop(&self) {
        self.inner.stopping.store(true, Ordering::SeqCst);
        self.inner.full_stop.store(true, Ordering::SeqCst);
        let sent = self.latest().conn.as_ref().is_some_and(|c| {
            c.send(ToEdge::Stop {
                drain_ms: millis(DRAIN),
            })
            .is_ok()
        });
        if sent {
            let pid = self.pid();
            let mut rx = self.inner.attached.subscribe();
            let _ = tokio::time::timeout(DRAIN + Duration::from_secs(3), rx.wait_for(|p| *p == 0))
                .await;
            // The edge runs unprivileged and cannot remove its file in our root-only dir.
            if let Some(pid) = pid {
                self.forget_when_gone(pid).await;
            }
        }
    }

    fn latest(&self) -> std::sync::MutexGuard<'_, Latest> {
        self.inner
            .latest
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    async fn ask(&self, query: Query) -> Option<Answer> {
        let id = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        self.inner
            .pending
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(id, tx);
        let sent = self
            .latest()
            .conn
            .as_ref()
            .is_some_and(|c| c.send(ToEdge::Query { id, query }).is_ok());
        let answer = if sent {
            tokio::time::timeout(Duration::from_secs(5), rx)
                .await
                .ok()
                .and_then(Result::ok)
        } else {
            None
        };
        self.inner
            .pending
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&id);
        answer
    }

    /// Starts `paasd __edge`, hands it the sockets and attaches.
    async fn spawn(&self) -> Result<(), EdgeError> {
        let owner = std::fs::canonicalize(&self.inner.state_dir)
            .unwrap_or_else(|_| self.inner.state_dir.clone());
        let mut child = {
            use std::os::unix::process::CommandExt;
            std::process::Command::new("/proc/self/exe")
                .arg(EDGE_ARG)
                .arg(&owner)
                .env_remove("LISTEN_FDS")
                .env_remove("LISTEN_PID")
                .env_remove("LISTEN_FDNAMES")
                .env_remove("NOTIFY_SOCKET")
                .stdin(std::process::Stdio::null())
                .stdout(std::process::Stdio::null())
                // A terminal's Ctrl-C meant for paasd must not reach the edge.
                .process_group(0)
                .spawn()
                .map_err(io("starting paasd __edge"))?
        };
        let pid = child.id();
        match self.hand_over(pid).await {
            Ok(stream) => {
                // Reaped when it exits (it outlives us after a restart: then init reaps it).
                std::thread::spawn(move || {
                    let _ = child.wait();
                });
                tracing::info!(pid, "edge started: it serves the router's sockets");
                self.run(stream, pid);
                if self.inner.full_stop.load(Ordering::SeqCst) {
                    // A full stop came while it started.
                    Box::pin(self.stop()).await;
                }
                Ok(())
            }
            Err(e) => {
                // Never half-started: an edge we could not attach must not serve on its own.
                let _ = child.kill();
                let _ = child.wait();
                let _ =
                    std::fs::remove_file(dir(&self.inner.state_dir).join(format!("{pid}.sock")));
                Err(e)
            }
        }
    }

    /// Gives the new edge `pid` its sockets and first state, and attaches.
    async fn hand_over(&self, pid: u32) -> Result<UnixStream, EdgeError> {
        let path = dir(&self.inner.state_dir).join(format!("{pid}.sock"));
        let deadline = Instant::now() + Duration::from_secs(10);
        let stream = loop {
            match UnixStream::connect(&path) {
                Ok(s) => break s,
                Err(_) if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                Err(_) => return Err(EdgeError::NoStart),
            }
        };
        let inner = Arc::clone(&self.inner);
        tokio::task::spawn_blocking(move || -> std::io::Result<UnixStream> {
            // Init carries every certificate and the edge reads it a byte at a time.
            stream.set_read_timeout(Some(Duration::from_secs(60)))?;
            let _hello: Hello = wire::read_line(&stream)?;
            let https = inner.listeners.https.as_ref();
            let init = {
                let l = inner.latest.lock().unwrap_or_else(PoisonError::into_inner);
                Command::Init {
                    options: Box::new(inner.options.clone()),
                    https: https.is_some(),
                    table: l.table.clone().filter(|_| l.live).unwrap_or_default(),
                    certs: l.certs.clone().unwrap_or_default(),
                    acme: l.acme.clone(),
                }
            };
            wire::write_line(&stream, &init)?;
            let fds: Vec<_> = std::iter::once(inner.listeners.http.as_fd())
                .chain(https.map(AsFd::as_fd))
                .collect();
            paas_runtime::fdpass::send(&stream, wire::LISTENERS, &fds)?;
            let _hello: Hello = wire::read_line(&stream)?;
            wire::write_line(&stream, &Command::Attach)?;
            Ok(stream)
        })
        .await
        .map_err(|e| EdgeError::Io {
            what: "handing the sockets to the edge",
            source: std::io::Error::other(e),
        })?
        .map_err(io("handing the sockets to the edge"))
    }

    /// The attached connection: replays the latest state, then carries messages both ways
    /// until the edge goes away.
    fn run(&self, stream: UnixStream, pid: u32) {
        let inner = Arc::clone(&self.inner);
        let setup = stream
            .set_read_timeout(None)
            .and_then(|()| stream.set_nonblocking(true))
            .and_then(|()| tokio::net::UnixStream::from_std(stream));
        let stream = match setup {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(pid, error = %e, "edge: cannot use the control connection");
                return;
            }
        };
        let (tx, mut rx) = mpsc::unbounded_channel::<ToEdge>();
        {
            let mut l = self.latest();
            if let Some(c) = &l.certs {
                let _ = tx.send(ToEdge::Certs(c.clone()));
            }
            let _ = tx.send(ToEdge::Acme(l.acme.clone()));
            if let (true, Some(t)) = (l.live, &l.table) {
                let _ = tx.send(ToEdge::Table(t.clone()));
            }
            l.conn = Some(tx);
        }
        let _ = inner.attached.send_replace(pid);
        let (read, mut write) = stream.into_split();
        tokio::spawn(async move {
            while let Some(m) = rx.recv().await {
                let Ok(mut line) = serde_json::to_vec(&m) else {
                    continue;
                };
                line.push(b'\n');
                if write.write_all(&line).await.is_err() {
                    break;
                }
            }
        });
        tokio::spawn(async move {
            let mut lines = tokio::io::BufReader::new(read).lines();
            loop {
                let line = match lines.next_line().await {
                    Ok(Some(l)) => l,
                    Ok(None) => {
                        tracing::debug!(pid, "edge: control connection closed");
                        break;
                    }
                    Err(e) => {
                        if !inner.stopping.load(Ordering::SeqCst) {
                            tracing::warn!(pid, error = %e, "edge: control connection failed");
                        }
                        break;
                    }
                };
                if let Some((id, answer)) = inner.take_in(pid, &line) {
                    let waiter = inner
                        .pending
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .remove(&id);
                    if let Some(w) = waiter {
                        let _ = w.send(answer);
                    }
                }
            }
            inner
                .latest
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .conn = None;
            // Questions the edge will never answer get "no answer" now, not at their timeout.
            inner
                .pending
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clear();
            let _ = inner.attached.send_replace(0);
        });
    }

    /// Restarts the edge whenever the attached one goes away while paasd runs. One whose
    /// connection broke but which still runs is taken over again, or killed if it will not
    /// answer: two edges must never serve side by side with different tables.
    async fn watch(self) {
        let mut rx = self.inner.attached.subscribe();
        let mut last = *rx.borrow();
        let mut backoff = Duration::from_secs(1);
        loop {
            if rx.wait_for(|p| *p == 0).await.is_err() {
                return;
            }
            if self.inner.stopping.load(Ordering::SeqCst) {
                return;
            }
            if last != 0 && self.edge_alive(last) {
                match self.attach_to(last).await {
                    Ok(()) => {
                        tracing::warn!(
                            pid = last,
                            "the edge's control connection broke; took it over again"
                        );
                        continue;
                    }
                    Err(e) => {
                        tracing::error!(pid = last, error = %e, "the edge does not answer; killing it");
                        kill(last);
                    }
                }
            } else {
                tracing::error!("the edge went away; starting a new one");
            }
            if last != 0 {
                // A killed edge leaves its socket file.
                let _ =
                    std::fs::remove_file(dir(&self.inner.state_dir).join(format!("{last}.sock")));
            }
            tokio::time::sleep(backoff).await;
            if self.inner.stopping.load(Ordering::SeqCst) {
                return;
            }
            if let Err(e) = self.spawn().await {
                tracing::error!(error = %e, "could not start a new edge; trying again");
                backoff = (backoff * 2).min(Duration::from_secs(30));
                last = 0;
                continue;
            }
            backoff = Duration::from_secs(1);
            self.retire_replaced();
            last = *rx.borrow();
        }
    }

    /// The access lines a retiring edge sends until its drain is over: those of the
    /// requests it finishes, and those it kept while no paasd listened (an upgrade).
    async fn collect_access(&self, stream: tokio::net::UnixStream, pid: u32) {
        let mut lines = tokio::io::BufReader::new(stream).lines();
        let deadline = tokio::time::Instant::now() + DRAIN + Duration::from_secs(5);
        loop {
            let line = match tokio::time::timeout_at(deadline, lines.next_line()).await {
                Ok(Ok(Some(line))) => line,
                Ok(Ok(None)) => {
                    tracing::info!(pid, "the replaced edge is done");
                    return;
                }
                Ok(Err(e)) => {
                    tracing::debug!(pid, error = %e, "a retiring edge's connection failed");
                    return;
                }
                Err(_) => {
                    tracing::warn!(
                        pid,
                        "a retiring edge still reports after its drain; no longer read"
                    );
                    return;
                }
            };
            // It is asked nothing: a reply would be stray.
            let _ = self.inner.take_in(pid, &line);
        }
    }

    /// Removes edge `pid`'s socket file once the process is gone (at most the drain and a
    /// few seconds later).
    async fn forget_when_gone(&self, pid: u32) {
        let deadline = Instant::now() + DRAIN + Duration::from_secs(5);
        while self.edge_alive(pid) && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        if !self.edge_alive(pid) {
            let _ = std::fs::remove_file(dir(&self.inner.state_dir).join(format!("{pid}.sock")));
        }
    }

    /// Whether `pid` is still an edge of this state dir.
    fn edge_alive(&self, pid: u32) -> bool {
        let owner = std::fs::canonicalize(&self.inner.state_dir)
            .unwrap_or_else(|_| self.inner.state_dir.clone());
        i32::try_from(pid).is_ok_and(|p| is_edge_of(p, &owner))
    }

    fn retire_replaced(&self) {
        let old: Vec<u32> = std::mem::take(
            &mut *self
                .inner
                .to_retire
                .lock()
                .unwrap_or_else(PoisonError::into_inner),
        );
        for pid in old {
            // Blocking, briefly: the edge answers at once, then drains on its own.
            let retired = Edge::connect(&self.inner.state_dir, pid).and_then(|s| {
                wire::write_line(
                    &s,
                    &Command::Retire {
                        drain_ms: millis(DRAIN),
                    },
                )?;
                s.set_nonblocking(true)?;
                tokio::net::UnixStream::from_std(s)
            });
            match retired {
                Ok(stream) => {
                    tracing::info!(
                        pid,
                        "the replaced edge stops accepting and finishes what is in flight"
                    );
                    let edge = self.clone();
                    tokio::spawn(async move {
                        edge.collect_access(stream, pid).await;
                        edge.forget_when_gone(pid).await;
                    });
                }
                Err(e) if self.edge_alive(pid) => {
                    // It must not serve on beside ours with an old table.
                    tracing::warn!(pid, error = %e, "could not retire an edge; killing it");
                    kill(pid);
                    let _ = std::fs::remove_file(
                        dir(&self.inner.state_dir).join(format!("{pid}.sock")),
                    );
                }
                Err(_) => {}
            }
        }
    }
}

fn kill(pid: u32) {
    if let Ok(p) = i32::try_from(pid) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(p),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}
