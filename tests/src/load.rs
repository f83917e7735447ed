//! A small HTTP/1.1 load generator for the rollout tests: N keep-alive connections sending
//! `GET /` with a Host header as fast as the answers come, counting every outcome. Any error
//! (refused, reset, EOF mid-answer, timeout, non-2xx) is a failed request: a user would
//! have seen it.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(Debug, Default, Clone)]
pub struct Counts {
    pub ok: u64,
    pub failed: u64,
    /// Bodies of 2xx answers with their counts, in order of first appearance.
    pub bodies: BTreeMap<String, u64>,
    pub first_seen: Vec<String>,
    /// Statuses that were not 2xx, and error texts (first few).
    pub errors: Vec<String>,
    /// Requests sent again on a new connection because the kept-alive one they went out on
    /// was closed before any byte of an answer (what browsers and HTTP clients do; RFC 9112
    /// 9.3.1). Only counted, never a failure by itself: the retry's outcome counts.
    pub retried: u64,
    /// Failures (counted in `failed` too) where the connection broke after the request went
    /// out: a server that dies mid-request (SIGKILL) cuts every request it holds.
    pub cut: u64,
}

impl Counts {
    fn merge(&mut self, o: Counts) {
        self.ok += o.ok;
        self.failed += o.failed;
        self.retried += o.retried;
        self.cut += o.cut;
        for (b, n) in o.bodies {
            *self.bodies.entry(b).or_default() += n;
        }
        for b in o.first_seen {
            if !self.first_seen.contains(&b) {
                self.first_seen.push(b);
            }
        }
        for e in o.errors {
            if self.errors.len() < 20 {
                self.errors.push(e);
            }
        }
    }
}

pub struct Load {
    stop: Arc<AtomicBool>,
    threads: Vec<std::thread::JoinHandle<Counts>>,
    live: Arc<Mutex<Counts>>,
}

/// Starts `conns` connections to `addr` asking for `host`. Bounded: every connection stops
/// after `max` even if [`Load::stop`] is never called.
pub fn start(addr: SocketAddr, host: &str, conns: usize, max: Duration) -> Load {
    start_with(addr, host, conns, max, false)
}

/// [`start`], but a request whose kept-alive connection was closed before any byte of the
/// answer is sent again once on a new connection, as HTTP clients do (counted in
/// [`Counts::retried`]). For a server that restarts: its idle connections close with it.
pub fn start_retrying(addr: SocketAddr, host: &str, conns: usize, max: Duration) -> Load {
    start_with(addr, host, conns, max, true)
}

fn start_with(addr: SocketAddr, host: &str, conns: usize, max: Duration, retry: bool) -> Load {
    let stop = Arc::new(AtomicBool::new(false));
    let live = Arc::new(Mutex::new(Counts::default()));
    let deadline = Instant::now() + max;
    let threads = (0..conns)
        .map(|_| {
            let (stop, host, live) = (Arc::clone(&stop), host.to_string(), Arc::clone(&live));
            std::thread::spawn(move || {
                let mut c = Counts::default();
                let mut conn: Option<BufReader<TcpStream>> = None;
                while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                    let reused = conn.is_some();
                    let mut r = one(&mut conn, addr, &host);
                    if retry && reused && matches!(&r, Err(e) if e.starts_with(STALE)) {
                        c.retried += 1;
                        conn = None;
                        r = one(&mut conn, addr, &host);
                    }
                    let mut l = live.lock().unwrap_or_else(|p| p.into_inner());
                    match r {
                        Ok((200..=299, body)) => {
                            c.ok += 1;
                            l.ok += 1;
                            if !c.bodies.contains_key(&body) {
                                c.first_seen.push(body.clone());
                            }
                            *c.bodies.entry(body.clone()).or_default() += 1;
                            *l.bodies.entry(body).or_default() += 1;
                        }
                        Ok((status, body)) => {
                            c.failed += 1;
                            l.failed += 1;
                            if c.errors.len() < 5 {
                                c.errors.push(format!("status {status}: {}", body.trim()));
                            }
                        }
                        Err(e) => {
                            c.failed += 1;
                            l.failed += 1;
                            if e.starts_with(STALE) || e.starts_with("read:") {
                                c.cut += 1;
                            }
                            conn = None;
                            if c.errors.len() < 5 {
                                c.errors.push(e);
                            }
                        }
                    }
                }
                c
            })
        })
        .collect();
    Load {
        stop,
        threads,
        live,
    }
}

impl Load {
    /// Counts so far (all connections).
    pub fn so_far(&self) -> Counts {
        self.live.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Waits until `n` more 2xx answers arrived than at the call (or `max` passed).
    pub fn wait_for_more(&self, n: u64, max: Duration) {
        let start = self.so_far().ok;
        let deadline = Instant::now() + max;
        while self.so_far().ok < start + n && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn stop(self) -> Counts {
        self.stop.store(true, Ordering::Relaxed);
        let mut all = Counts::default();
        for t in self.threads {
            if let Ok(c) = t.join() {
                all.merge(c);
            }
        }
        all
    }
}

/// How errors start that mean a kept-alive connection was closed before its answer began.
const STALE: &str = "stale: ";

/// One request on the kept-alive connection (made when there is none).
fn one(
    conn: &mut Option<BufReader<TcpStream>>,
    addr: SocketAddr,
    host: &str,
) -> Result<(u16, String), String> {
    if conn.is_none() {
        let s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
            .map_err(|e| format!("connect: {e}"))?;
        s.set_read_timeout(Some(Duration::from_secs(30)))
            .map_err(|e| e.to_string())?;
        s.set_nodelay(true).map_err(|e| e.to_string())?;
        *conn = Some(BufReader::new(s));
    }
    let Some(r) = conn.as_mut() else {
        return Err("no connection".into());
    };
    let req = format!("GET / HTTP/1.1\r\nHost: {host}\r\nUser-Agent: paas-load\r\n\r\n");
    r.get_mut()
        .write_all(req.as_bytes())
        .map_err(|e| format!("{STALE}send: {e}"))?;
    let mut status_line = String::new();
    match r.read_line(&mut status_line) {
        Ok(0) => return Err(format!("{STALE}connection closed before the answer")),
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {
            return Err(format!("{STALE}reset before the answer"))
        }
        Err(e) => return Err(format!("read: {e}")),
    }
    let status: u16 = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("bad status line {status_line:?}"))?;
    let (mut len, mut chunked, mut close) = (None, false, false);
    loop {
        let mut h = String::new();
        if r.read_line(&mut h).map_err(|e| format!("read: {e}"))? == 0 {
            return Err("connection closed in the headers".into());
        }
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        let (k, v) = h.split_once(':').unwrap_or((h, ""));
        let (k, v) = (k.to_ascii_lowercase(), v.trim().to_ascii_lowercase());
        match k.as_str() {
            "content-length" => len = v.parse::<usize>().ok(),
            "transfer-encoding" => chunked = v.contains("chunked"),
            "connection" => close = v.contains("close"),
            _ => {}
        }
    }
    let mut body = Vec::new();
    if chunked {
        loop {
            let mut size = String::new();
            r.read_line(&mut size).map_err(|e| format!("read: {e}"))?;
            let n = usize::from_str_radix(size.trim().split(';').next().unwrap_or(""), 16)
                .map_err(|_| format!("bad chunk size {size:?}"))?;
            let mut chunk = vec![0; n + 2];
            r.read_exact(&mut chunk).map_err(|e| format!("read: {e}"))?;
            if n == 0 {
                break;
            }
            body.extend_from_slice(&chunk[..n]);
        }
    } else if let Some(n) = len {
        body.resize(n, 0);
        r.read_exact(&mut body).map_err(|e| format!("read: {e}"))?;
    } else {
        r.read_to_end(&mut body).map_err(|e| format!("read: {e}"))?;
        close = true;
    }
    if close {
        *conn = None;
    }
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}

/// Raises this process's soft RLIMIT_NOFILE to its hard limit (an abuse test holds
/// thousands of sockets) and returns it.
pub fn raise_nofile() -> u64 {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).expect("getrlimit");
    if soft < hard {
        setrlimit(Resource::RLIMIT_NOFILE, hard, hard).expect("setrlimit");
    }
    hard.max(soft)
}

/// `n` connections to `addr` that never send a byte, from source addresses 127.0.0.`first`,
/// `first + 1`, ... (`per_source` each, so a per-address cap does not refuse them all).
/// Connections the server refuses or evicts are closed by it later; they are still returned.
pub fn idle_connections(
    addr: SocketAddr,
    n: usize,
    first: u8,
    per_source: usize,
) -> Vec<TcpStream> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let mut out = Vec::with_capacity(n);
        for i in 0..n {
            let octet = usize::from(first) + i / per_source.max(1);
            let octet = u8::try_from(octet.min(254)).unwrap_or(254);
            let source = SocketAddr::from(([127, 0, 0, octet], 0));
            let s = tokio::net::TcpSocket::new_v4().expect("socket");
            s.bind(source).expect("bind a loopback source");
            let s = tokio::time::timeout(Duration::from_secs(10), s.connect(addr))
                .await
                .expect("connect in time")
                .expect("connect");
            let s = s.into_std().expect("std stream");
            // tokio's sockets are non-blocking; these are used with blocking std calls.
            s.set_nonblocking(false).expect("blocking");
            out.push(s);
        }
        out
    })
}

/// How many of `streams` the server has closed (EOF, reset, or an answer such as a 503,
/// which it closes after), looking without waiting.
pub fn closed_by_peer(streams: &[TcpStream]) -> usize {
    let mut closed = 0;
    for s in streams {
        if s.set_nonblocking(true).is_err() {
            closed += 1;
            continue;
        }
        let mut b = [0u8; 1];
        match s.peek(&mut b) {
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            _ => closed += 1,
        }
        let _ = s.set_nonblocking(false);
    }
    closed
}

/// `VmRSS` of a process, in KiB.
pub fn rss_kib(pid: i32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

/// Open descriptors of a process.
pub fn fd_count(pid: i32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count())
}

/// `q`-quantile of `xs` (sorted in place); zero when empty.
pub fn quantile(xs: &mut [Duration], q: f64) -> Duration {
    if xs.is_empty() {
        return Duration::ZERO;
    }
    xs.sort();
    let i = ((q * xs.len() as f64).ceil() as usize).clamp(1, xs.len()) - 1;
    xs[i]
}

/// `n` keep-alive connections that each made one `GET /` for `host` (answered 200) and then
/// stay open and idle, from sources 127.0.0.`first`... (`per_source` each). Their server
/// side holds a connection's full buffers, unlike a connection that never sent anything.
pub fn spent_connections(
    addr: SocketAddr,
    host: &str,
    n: usize,
    first: u8,
    per_source: usize,
) -> Vec<TcpStream> {
    let mut out = idle_connections(addr, n, first, per_source);
    let req = format!("GET / HTTP/1.1\r\nHost: {host}\r\nUser-Agent: paas-spent\r\n\r\n");
    // One at a time: the app is a small one, and this is about what the router holds.
    for s in &mut out {
        s.write_all(req.as_bytes()).expect("send");
        s.set_read_timeout(Some(Duration::from_secs(30)))
            .expect("timeout");
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            let n = s.read(&mut buf).expect("read the answer");
            assert!(
                n > 0,
                "closed before the answer: {:?}",
                String::from_utf8_lossy(&got)
            );
            got.extend_from_slice(&buf[..n]);
            let text = String::from_utf8_lossy(&got);
            let Some((head, body)) = text.split_once("\r\n\r\n") else {
                continue;
            };
            assert!(head.starts_with("HTTP/1.1 200"), "{head}");
            let len = head
                .lines()
                .find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.eq_ignore_ascii_case("content-length")
                        .then(|| v.trim().parse::<usize>().ok())
                        .flatten()
                })
                .expect("a Content-Length");
            if body.len() >= len {
                break;
            }
        }
    }
    out
}
