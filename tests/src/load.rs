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
}

impl Counts {
    fn merge(&mut self, o: Counts) {
        self.ok += o.ok;
        self.failed += o.failed;
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
                    let r = one(&mut conn, addr, &host);
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
        .map_err(|e| format!("send: {e}"))?;
    let mut status_line = String::new();
    if r.read_line(&mut status_line)
        .map_err(|e| format!("read: {e}"))?
        == 0
    {
        return Err("connection closed before the answer".into());
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
