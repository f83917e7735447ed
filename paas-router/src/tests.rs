//! The router over real TCP on 127.0.0.1: small hyper upstreams on ephemeral ports, the
//! Router on another, and hyper clients asserting what a user would see.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper::header::{HeaderMap, HeaderValue};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{oneshot, Semaphore};
use tokio::task::JoinHandle;

use super::*;

const WAIT: Duration = Duration::from_secs(10);

// ---------- upstreams ----------

/// A hyper server answering its name, recording what it received. With `hold`, every
/// request waits for a permit first.
struct TestUpstream {
    addr: SocketAddr,
    name: &'static str,
    hits: Arc<AtomicUsize>,
    seen: Arc<Mutex<Vec<HeaderMap>>>,
    hold: Option<Arc<Semaphore>>,
    tasks: Arc<Mutex<Vec<JoinHandle<()>>>>,
}

impl TestUpstream {
    async fn start(name: &'static str) -> TestUpstream {
        Self::start_with(name, false).await
    }

    async fn start_with(name: &'static str, hold: bool) -> TestUpstream {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind upstream");
        let addr = listener.local_addr().expect("upstream addr");
        let hits = Arc::new(AtomicUsize::new(0));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let hold = hold.then(|| Arc::new(Semaphore::new(0)));
        let tasks: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::default();
        let (h, s, g, t) = (hits.clone(), seen.clone(), hold.clone(), tasks.clone());
        let accept = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let (h, s, g) = (h.clone(), s.clone(), g.clone());
                let service =
                    hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                        let (h, s, g) = (h.clone(), s.clone(), g.clone());
                        async move {
                            s.lock().expect("seen").push(req.headers().clone());
                            h.fetch_add(1, Ordering::SeqCst);
                            let _ = req.into_body().collect().await;
                            let _permit = match &g {
                                Some(sem) => Some(sem.acquire().await.expect("semaphore")),
                                None => None,
                            };
                            let mut resp = Response::new(Full::new(Bytes::from(name)));
                            let h = resp.headers_mut();
                            h.insert("connection", HeaderValue::from_static("x-up"));
                            h.insert("x-up", HeaderValue::from_static("hop"));
                            h.insert("keep-alive", HeaderValue::from_static("timeout=30"));
                            h.insert("x-served-by", HeaderValue::from_static(name));
                            Ok::<_, std::convert::Infallible>(resp)
                        }
                    });
                let conn = tokio::spawn(async move {
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
                t.lock().expect("tasks").push(conn);
            }
        });
        tasks.lock().expect("tasks").push(accept);
        TestUpstream {
            addr,
            name,
            hits,
            seen,
            hold,
            tasks,
        }
    }

    fn upstream(&self, release: u32) -> Upstream {
        Upstream {
            addr: self.addr,
            instance: format!("web.{}", self.name),
            release,
        }
    }

    fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }

    /// Connections accepted so far.
    fn connections(&self) -> usize {
        self.tasks.lock().expect("tasks").len().saturating_sub(1)
    }

    /// Connections still open (the first task is the accept loop).
    fn open_connections(&self) -> usize {
        let tasks = self.tasks.lock().expect("tasks");
        tasks.iter().skip(1).filter(|t| !t.is_finished()).count()
    }

    fn release(&self) {
        if let Some(sem) = &self.hold {
            sem.add_permits(10_000);
        }
    }

    /// Like a killed process: listener and every connection closed at once.
    fn kill(&self) {
        for t in self.tasks.lock().expect("tasks").drain(..) {
            t.abort();
        }
    }
}

impl Drop for TestUpstream {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A raw TCP upstream on loopback: `serve` handles each accepted connection in a task of its
/// own. It counts connections and stops accepting when dropped.
struct RawUpstream {
    addr: SocketAddr,
    connections: Arc<AtomicUsize>,
    task: JoinHandle<()>,
}

impl RawUpstream {
    async fn start<F, Fut>(serve: F) -> RawUpstream
    where
        F: Fn(TcpStream) -> Fut + Send + Sync + 'static,
        Fut: std::future::Future<Output = ()> + Send + 'static,
    {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let connections = Arc::new(AtomicUsize::new(0));
        let c = connections.clone();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                c.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(serve(stream));
            }
        });
        RawUpstream {
            addr,
            connections,
            task,
        }
    }

    fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }

    fn upstream(&self, instance: &str) -> Upstream {
        Upstream {
            addr: self.addr,
            instance: instance.into(),
            release: 1,
        }
    }
}

impl Drop for RawUpstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A raw upstream that answers the first request of every connection and then closes the
/// connection when the second one arrives, without answering: the keep-alive race.
struct FlakyUpstream {
    raw: RawUpstream,
    requests: Arc<AtomicUsize>,
}

impl FlakyUpstream {
    async fn start() -> FlakyUpstream {
        let requests = Arc::new(AtomicUsize::new(0));
        let r = requests.clone();
        let raw = RawUpstream::start(move |mut stream| {
            let r = r.clone();
            async move {
                let mut buf = Vec::new();
                if read_decoded(&mut stream, &mut buf).await.is_none() {
                    return;
                }
                r.fetch_add(1, Ordering::SeqCst);
                let resp = b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nflaky";
                if stream.write_all(resp).await.is_err() {
                    return;
                }
                if read_decoded(&mut stream, &mut buf).await.is_some() {
                    r.fetch_add(1, Ordering::SeqCst);
                }
                // Dropped without an answer.
            }
        })
        .await;
        FlakyUpstream { raw, requests }
    }
}

/// An address nothing listens on.
async fn refused_addr() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    l.local_addr().expect("addr")
}

// ---------- the router and clients ----------

/// An access line as a test keeps it.
#[derive(Debug, Clone)]
struct Line {
    app: String,
    method: String,
    path: String,
    status: u16,
    bytes: u64,
    instance: Option<String>,
    release: Option<u32>,
    request_id: String,
}

impl From<&AccessLine<'_>> for Line {
    fn from(l: &AccessLine<'_>) -> Line {
        Line {
            app: l.app.to_owned(),
            method: l.method.to_owned(),
            path: l.path.to_owned(),
            status: l.status,
            bytes: l.bytes,
            instance: l.instance.map(str::to_owned),
            release: l.release,
            request_id: l.request_id.to_owned(),
        }
    }
}

struct Harness {
    router: Arc<Router>,
    addr: SocketAddr,
    lines: Arc<Mutex<Vec<Line>>>,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
}

impl Harness {
    async fn start(opts: RouterOptions) -> Harness {
        let lines: Arc<Mutex<Vec<Line>>> = Arc::default();
        let l = lines.clone();
        let sink: AccessSink =
            Arc::new(move |line: &AccessLine<'_>| l.lock().expect("lines").push(line.into()));
        let router = Router::new(opts, sink);
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind router");
        let addr = listener.local_addr().expect("router addr");
        let (stop, rx) = oneshot::channel();
        let task = tokio::spawn(router.clone().serve(listener, async {
            let _ = rx.await;
        }));
        Harness {
            router,
            addr,
            lines,
            stop: Some(stop),
            task,
        }
    }

    async fn client(&self) -> Client {
        Client::connect(self.addr).await
    }

    fn lines(&self) -> Vec<Line> {
        self.lines.lock().expect("lines").clone()
    }
}

fn table(apps: &[(&str, &[&str], Vec<Upstream>)]) -> RouteTable {
    let mut t = RouteTable::new("paas.test");
    for (app, domains, ups) in apps {
        let domains: Vec<String> = domains.iter().map(|d| d.to_string()).collect();
        t.add_app(app, &domains, ups.clone());
    }
    t
}

struct Got {
    status: StatusCode,
    headers: HeaderMap,
    body: String,
}

/// One keep-alive client connection.
struct Client {
    tx: SendRequest<Full<Bytes>>,
}

impl Client {
    async fn connect(addr: SocketAddr) -> Client {
        let stream = TcpStream::connect(addr).await.expect("connect router");
        let (tx, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .expect("handshake");
        tokio::spawn(conn);
        Client { tx }
    }

    async fn get(&mut self, host: &str) -> Got {
        self.send("GET", host, &[], "").await.expect("request")
    }

    async fn get_checked(&mut self, host: &str) -> Result<Got, hyper::Error> {
        self.send("GET", host, &[], "").await
    }

    async fn send(
        &mut self,
        method: &str,
        host: &str,
        headers: &[(&str, &str)],
        body: &'static str,
    ) -> Result<Got, hyper::Error> {
        let mut req = Request::builder()
            .method(method)
            .uri("/some/path?q=1")
            .header("host", host);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let req = req.body(Full::new(Bytes::from(body))).expect("request");
        self.tx.ready().await?;
        let resp = self.tx.send_request(req).await?;
        let (parts, body) = resp.into_parts();
        let body = body.collect().await?.to_bytes();
        Ok(Got {
            status: parts.status,
            headers: parts.headers,
            body: String::from_utf8_lossy(&body).into_owned(),
        })
    }
}

async fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn header<'a>(h: &'a HeaderMap, name: &str) -> Option<&'a str> {
    h.get(name).and_then(|v| v.to_str().ok())
}

// ---------- tests ----------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn router_routes_by_host_and_custom_domain() {
    let (a, b) = (
        TestUpstream::start("a1").await,
        TestUpstream::start("b1").await,
    );
    let h = Harness::start(RouterOptions::default()).await;
    h.router.publish(table(&[
        ("a", &[], vec![a.upstream(1)]),
        ("b", &["www.B.example"], vec![b.upstream(2)]),
    ]));
    let mut c = h.client().await;
    for (host, want) in [
        ("a.paas.test", "a1"),
        ("A.Paas.Test:8080", "a1"),
        ("a.paas.test.", "a1"),
        ("b.paas.test", "b1"),
        ("www.b.example", "b1"),
        ("WWW.B.EXAMPLE:80", "b1"),
    ] {
        let got = c.get(host).await;
        assert_eq!(
            (got.status, got.body.as_str()),
            (StatusCode::OK, want),
            "{host}"
        );
    }
    // The upstream got the Host header as the client sent it.
    let seen = b.seen.lock().expect("seen").clone();
    assert_eq!(header(&seen[2], "host"), Some("WWW.B.EXAMPLE:80"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn router_unknown_host_is_404_and_no_instances_is_503() {
    let h = Harness::start(RouterOptions::default()).await;
    h.router.publish(table(&[("idle", &[], vec![])]));
    let mut c = h.client().await;

    let got = c.get("nope.paas.test").await;
    assert_eq!(got.status, StatusCode::NOT_FOUND);
    assert!(
        got.body.contains("No app is served at host nope.paas.test"),
        "{}",
        got.body
    );
    let rid = header(&got.headers, "x-request-id")
        .expect("request id")
        .to_string();
    assert!(got.body.contains(&rid));

    // A Host that cannot be a name is refused before routing and never echoed.
    let html = c
        .send("GET", "<b>.paas.test", &[("accept", "text/html")], "")
        .await
        .expect("request");
    assert_eq!(html.status, StatusCode::BAD_REQUEST);
    assert!(html.body.contains("malformed"), "{}", html.body);
    assert!(!html.body.contains("<b>"), "{}", html.body);
    assert_eq!(
        header(&html.headers, "content-type"),
        Some("text/html; charset=utf-8")
    );

    let got = c.get("idle.paas.test").await;
    assert_eq!(got.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(
        got.body.contains("App idle has no web instance ready"),
        "{}",
        got.body
    );

    wait_for("access lines", || h.lines().len() == 3).await;
    let lines = h.lines();
    assert_eq!((lines[0].app.as_str(), lines[0].status), ("", 404));
    assert_eq!(lines[0].request_id, rid);
    assert_eq!(lines[0].path, "/some/path?q=1");
    assert_eq!((lines[2].app.as_str(), lines[2].status), ("idle", 503));
    assert_eq!(lines[2].instance, None);
    let stats = h.router.stats("idle").expect("stats of a routed app");
    assert_eq!((stats.requests, stats.status), (1, [0, 0, 0, 0, 1]));
    assert!(h.router.stats("nope").is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn router_forwards_headers_and_request_ids() {
    let up = TestUpstream::start("u1").await;
    let h = Harness::start(RouterOptions::default()).await;
    h.router
        .publish(table(&[("web", &[], vec![up.upstream(7)])]));
    let mut c = h.client().await;

    let got = c
        .send(
            "GET",
            "web.paas.test:8080",
            &[
                ("x-forwarded-for", "203.0.113.9"),
                ("x-forwarded-proto", "https"),
                ("connection", "keep-alive, x-secret"),
                ("x-secret", "1"),
                ("keep-alive", "timeout=5"),
                ("x-kept", "yes"),
            ],
            "",
        )
        .await
        .expect("request");
    assert_eq!(got.status, StatusCode::OK);
    let seen = up.seen.lock().expect("seen")[0].clone();
    assert_eq!(header(&seen, "host"), Some("web.paas.test:8080"));
    // The router is the edge: a client's forwarding claims are replaced, not extended.
    assert_eq!(header(&seen, "x-forwarded-for"), Some("127.0.0.1"));
    assert_eq!(header(&seen, "x-real-ip"), Some("127.0.0.1"));
    assert_eq!(
        header(&seen, "x-forwarded-port"),
        Some(h.addr.port().to_string().as_str())
    );
    assert_eq!(
        header(&seen, "forwarded"),
        Some("for=127.0.0.1;host=\"web.paas.test:8080\";proto=http")
    );
    assert_eq!(header(&seen, "x-forwarded-proto"), Some("http"));
    assert_eq!(
        header(&seen, "x-forwarded-host"),
        Some("web.paas.test:8080")
    );
    assert_eq!(header(&seen, "x-kept"), Some("yes"));
    for gone in ["x-secret", "keep-alive"] {
        assert!(seen.get(gone).is_none(), "{gone} reached the upstream");
    }
    let rid = header(&seen, "x-request-id")
        .expect("generated id")
        .to_string();
    assert_eq!(rid.len(), 36, "{rid}");
    assert_eq!(header(&got.headers, "x-request-id"), Some(rid.as_str()));
    // Hop-by-hop headers of the upstream's response stay on its hop.
    assert_eq!(header(&got.headers, "x-served-by"), Some("u1"));
    assert!(got.headers.get("x-up").is_none());
    assert!(got.headers.get("keep-alive").is_none());

    // A sane id is kept; a long or odd one is replaced.
    let got = c
        .send(
            "GET",
            "web.paas.test",
            &[("x-request-id", "trace-42.a:b")],
            "",
        )
        .await
        .expect("request");
    assert_eq!(header(&got.headers, "x-request-id"), Some("trace-42.a:b"));
    let long = "x".repeat(129);
    for bad in [long.as_str(), "a b", "a;b"] {
        let got = c
            .send("GET", "web.paas.test", &[("x-request-id", bad)], "")
            .await
            .expect("request");
        let id = header(&got.headers, "x-request-id").expect("id");
        assert_ne!(id, bad);
        assert_eq!(id.len(), 36);
    }
    let seen = up.seen.lock().expect("seen").clone();
    assert_eq!(header(&seen[1], "x-request-id"), Some("trace-42.a:b"));
    assert_ne!(header(&seen[2], "x-request-id"), Some(long.as_str()));

    // A HEAD answer has no body to poll; it still finishes its bookkeeping.
    let got = c
        .send("HEAD", "web.paas.test", &[], "")
        .await
        .expect("head");
    assert_eq!((got.status, got.body.as_str()), (StatusCode::OK, ""));

    wait_for("access lines", || h.lines().len() == 6).await;
    let lines = h.lines();
    let first = &lines[0];
    assert_eq!(
        (
            first.app.as_str(),
            first.method.as_str(),
            first.status,
            first.bytes
        ),
        ("web", "GET", 200, 2)
    );
    assert_eq!(
        (first.instance.as_deref(), first.release),
        (Some("web.u1"), Some(7))
    );
    assert_eq!(first.request_id, rid);
    assert_eq!(lines[5].method, "HEAD");
    // All six went over one pooled upstream connection.
    assert_eq!(up.connections(), 1);
    assert_eq!(h.router.inflight(up.addr), 0);
    let stats = h.router.stats("web").expect("stats");
    assert_eq!((stats.requests, stats.status[1], stats.bytes), (6, 6, 10));
    assert!(stats.p50 <= stats.p99 && stats.p99 > Duration::ZERO);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn router_round_robin_when_idle() {
    let ups = [
        TestUpstream::start("r1").await,
        TestUpstream::start("r2").await,
        TestUpstream::start("r3").await,
    ];
    let h = Harness::start(RouterOptions::default()).await;
    h.router.publish(table(&[(
        "web",
        &[],
        ups.iter().map(|u| u.upstream(1)).collect(),
    )]));
    let mut c = h.client().await;
    let mut seen: HashMap<String, usize> = HashMap::new();
    let mut order = Vec::new();
    for _ in 0..30 {
        let got = c.get("web.paas.test").await;
        assert_eq!(got.status, StatusCode::OK);
        order.push(got.body.clone());
        *seen.entry(got.body).or_default() += 1;
    }
    assert_eq!(seen.len(), 3, "{seen:?}");
    assert!(seen.values().all(|n| *n == 10), "{seen:?}");
    // Strict rotation, not just an even count.
    assert!(
        order
            .windows(3)
            .all(|w| w[0] != w[1] && w[1] != w[2] && w[0] != w[2]),
        "{order:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn router_least_connections_spreads_and_avoids_busy() {
    // Three upstreams that hold every request: one at a time, each new request must go to
    // the one with the fewest in flight.
    let ups = [
        TestUpstream::start_with("h1", true).await,
        TestUpstream::start_with("h2", true).await,
        TestUpstream::start_with("h3", true).await,
    ];
    let h = Harness::start(RouterOptions::default()).await;
    h.router.publish(table(&[(
        "web",
        &[],
        ups.iter().map(|u| u.upstream(1)).collect(),
    )]));
    let total = |ups: &[TestUpstream]| ups.iter().map(TestUpstream::hits).sum::<usize>();
    let mut pending = Vec::new();
    for i in 1..=9 {
        let addr = h.addr;
        pending.push(tokio::spawn(async move {
            Client::connect(addr).await.get("web.paas.test").await
        }));
        wait_for("the request to reach an upstream", || total(&ups) == i).await;
    }
    for u in &ups {
        assert_eq!((u.name, u.hits()), (u.name, 3));
        assert_eq!(h.router.inflight(u.addr), 3);
    }
    for u in &ups {
        u.release();
    }
    for p in pending {
        assert_eq!(p.await.expect("task").status, StatusCode::OK);
    }
    wait_for("in-flight counts to drop", || {
        ups.iter().all(|u| h.router.inflight(u.addr) == 0)
    })
    .await;

    // One busy upstream among idle ones gets nothing more while the others are free.
    let busy = TestUpstream::start_with("busy", true).await;
    let free = [
        TestUpstream::start("f1").await,
        TestUpstream::start("f2").await,
    ];
    h.router.publish(table(&[(
        "web",
        &[],
        vec![busy.upstream(1), free[0].upstream(1), free[1].upstream(1)],
    )]));
    let mut held = Vec::new();
    let mut c = h.client().await;
    for _ in 0..20 {
        if busy.hits() == 0 {
            // Until the busy one has its request, use fresh connections: a held one would
            // block a keep-alive client.
            let addr = h.addr;
            let t =
                tokio::spawn(async move { Client::connect(addr).await.get("web.paas.test").await });
            let before = free[0].hits() + free[1].hits();
            wait_for("a pick", || {
                busy.hits() == 1 || free[0].hits() + free[1].hits() > before
            })
            .await;
            if busy.hits() == 1 {
                held.push(t);
            } else {
                assert_eq!(t.await.expect("task").status, StatusCode::OK);
            }
        } else {
            let got = c.get("web.paas.test").await;
            assert_eq!(got.status, StatusCode::OK);
            assert_ne!(got.body, "busy");
        }
    }
    assert_eq!(busy.hits(), 1);
    assert_eq!(h.router.inflight(busy.addr), 1);
    busy.release();
    for t in held {
        assert_eq!(t.await.expect("task").body, "busy");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn router_swap_under_load_drops_nothing() {
    let a = [
        TestUpstream::start("a1").await,
        TestUpstream::start("a2").await,
    ];
    let b = [
        TestUpstream::start("b1").await,
        TestUpstream::start("b2").await,
    ];
    let h = Harness::start(RouterOptions::default()).await;
    h.router.publish(table(&[(
        "web",
        &[],
        a.iter().map(|u| u.upstream(1)).collect(),
    )]));

    let stop = Arc::new(AtomicBool::new(false));
    // (sent at, first letter of the answering upstream)
    let answers: Arc<Mutex<Vec<(Instant, char)>>> = Arc::default();
    let failures: Arc<Mutex<Vec<String>>> = Arc::default();
    let mut clients = Vec::new();
    for _ in 0..50 {
        let (stop, answers, failures, addr) =
            (stop.clone(), answers.clone(), failures.clone(), h.addr);
        clients.push(tokio::spawn(async move {
            let mut c = Client::connect(addr).await;
            while !stop.load(Ordering::Relaxed) {
                let sent = Instant::now();
                match c.send("GET", "web.paas.test", &[], "").await {
                    Ok(got) if got.status == StatusCode::OK => {
                        let first = got.body.chars().next().unwrap_or('?');
                        answers.lock().expect("answers").push((sent, first));
                    }
                    Ok(got) => failures
                        .lock()
                        .expect("failures")
                        .push(format!("{}: {}", got.status, got.body)),
                    Err(e) => {
                        failures
                            .lock()
                            .expect("failures")
                            .push(format!("client: {e}"));
                        c = Client::connect(addr).await;
                    }
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(600)).await;
    h.router.publish(table(&[(
        "web",
        &[],
        b.iter().map(|u| u.upstream(2)).collect(),
    )]));
    // What the supervisor does: out of the table first, wait for the drain, then stop.
    wait_for("A to drain", || {
        a.iter().all(|u| h.router.inflight(u.addr) == 0)
    })
    .await;
    let killed_at = Instant::now();
    for u in &a {
        u.kill();
    }
    let a_hits: usize = a.iter().map(TestUpstream::hits).sum();
    tokio::time::sleep(Duration::from_millis(1200)).await;
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.await.expect("client task");
    }

    let failures = failures.lock().expect("failures").clone();
    assert!(
        failures.is_empty(),
        "{} failed: {:?}",
        failures.len(),
        &failures[..failures.len().min(5)]
    );
    let answers = answers.lock().expect("answers").clone();
    let from = |c: char| answers.iter().filter(|(_, f)| *f == c).count();
    assert!(
        from('a') > 0 && from('b') > 0,
        "a: {}, b: {}",
        from('a'),
        from('b')
    );
    // Every request A took was answered, so the drain waited for all of them...
    assert_eq!(from('a'), a_hits);
    // ...and nothing sent after the drain went to A.
    let late_a = answers
        .iter()
        .filter(|(t, f)| *f == 'a' && *t > killed_at)
        .count();
    assert_eq!(late_a, 0, "requests sent after the drain reached A");
    assert!(answers.iter().any(|(t, f)| *f == 'b' && *t > killed_at));
    assert!(b.iter().all(|u| u.hits() > 0));
    // One access line per request, under load and across the swap.
    wait_for("every access line", || {
        h.lines.lock().expect("lines").len() >= answers.len()
    })
    .await;
    assert_eq!(h.lines.lock().expect("lines").len(), answers.len());
    let stats = h.router.stats("web").expect("stats");
    assert_eq!(stats.requests as usize, answers.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn router_retries_refused_and_closed_upstreams() {
    let good = TestUpstream::start("good").await;
    let flaky = FlakyUpstream::start().await;
    let refused = refused_addr().await;
    let h = Harness::start(RouterOptions::default()).await;
    let dead = Upstream {
        addr: refused,
        instance: "web.9".into(),
        release: 1,
    };
    let flaky_up = Upstream {
        addr: flaky.raw.addr,
        instance: "web.8".into(),
        release: 1,
    };
    h.router.publish(table(&[
        ("mixed", &[], vec![dead.clone(), good.upstream(1)]),
        ("flaky", &[], vec![flaky_up]),
        ("dead", &[], vec![dead]),
    ]));
    let mut c = h.client().await;

    // A refused connect sent nothing: any request, POST with a body included, goes elsewhere.
    for method in ["GET", "POST", "GET", "POST", "DELETE", "PUT"] {
        let got = c
            .send(method, "mixed.paas.test", &[], "payload")
            .await
            .expect("request");
        assert_eq!(
            (got.status, got.body.as_str()),
            (StatusCode::OK, "good"),
            "{method}"
        );
    }

    // A pooled connection the upstream closes as we reuse it: GETs are replayed on a new one.
    for i in 0..6 {
        let got = c.get("flaky.paas.test").await;
        assert_eq!(
            (got.status, got.body.as_str()),
            (StatusCode::OK, "flaky"),
            "GET {i}"
        );
    }
    assert!(flaky.raw.connections() >= 3);

    // A POST that reached the upstream is never sent twice: the client gets a 502.
    let posted = flaky.requests.load(Ordering::SeqCst);
    let mut statuses = Vec::new();
    for _ in 0..2 {
        let got = c
            .send("POST", "flaky.paas.test", &[], "once")
            .await
            .expect("request");
        statuses.push(got.status);
    }
    statuses.sort();
    assert_eq!(statuses, [StatusCode::OK, StatusCode::BAD_GATEWAY]);
    assert_eq!(flaky.requests.load(Ordering::SeqCst), posted + 2);

    // Nothing answers at all: 502 after the bounded retries.
    let got = c.get("dead.paas.test").await;
    assert_eq!(got.status, StatusCode::BAD_GATEWAY);
    assert!(got.body.contains("App dead did not answer"), "{}", got.body);
    let stats = h.router.stats("dead").expect("stats");
    assert_eq!(stats.status[4], 1);
    assert_eq!(h.router.inflight(refused), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn router_response_timeout_is_504() {
    let slow = TestUpstream::start_with("slow", true).await;
    let h = Harness::start(RouterOptions {
        response_timeout: Duration::from_millis(200),
        ..RouterOptions::default()
    })
    .await;
    h.router
        .publish(table(&[("web", &[], vec![slow.upstream(1)])]));
    let mut c = h.client().await;
    let got = c.get("web.paas.test").await;
    assert_eq!(got.status, StatusCode::GATEWAY_TIMEOUT);
    assert!(got.body.contains("did not answer in time"), "{}", got.body);
    // Not retried: the upstream may still be working on it.
    assert_eq!(slow.hits(), 1);
    wait_for("the in-flight count", || h.router.inflight(slow.addr) == 0).await;
    slow.release();
}

/// A connection keeps one timer for its requests' response timeouts and moves its deadline
/// (`conn::ResponseTimer`): each request still gets the whole timeout from its own start,
/// both right after a fast one (the deadline moved later) and after the timer went off idle.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_request_of_a_kept_alive_connection_gets_the_whole_response_timeout() {
    const TIMEOUT: Duration = Duration::from_millis(300);
    let fast = TestUpstream::start("fast").await;
    let slow = TestUpstream::start_with("slow", true).await;
    let h = Harness::start(RouterOptions {
        response_timeout: TIMEOUT,
        ..RouterOptions::default()
    })
    .await;
    h.router.publish(table(&[
        ("web", &[], vec![fast.upstream(1)]),
        ("slow", &[], vec![slow.upstream(1)]),
    ]));
    let mut c = h.client().await;
    for round in 0..2 {
        assert_eq!(c.get("web.paas.test").await.status, StatusCode::OK);
        if round == 1 {
            // Idle past the last deadline: the timer has gone off with nothing waiting.
            tokio::time::sleep(TIMEOUT * 2).await;
            assert_eq!(c.get("web.paas.test").await.status, StatusCode::OK);
        }
        let started = std::time::Instant::now();
        let got = c.get("slow.paas.test").await;
        assert_eq!(got.status, StatusCode::GATEWAY_TIMEOUT, "round {round}");
        assert!(
            started.elapsed() >= TIMEOUT,
            "round {round}: a 504 after {:?}, before the timeout",
            started.elapsed()
        );
    }
    assert_eq!(slow.hits(), 2);
    slow.release();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_that_leave_mid_request_release_their_connections() {
    let up = TestUpstream::start_with("a", true).await;
    let h = Harness::start(RouterOptions::default()).await;
    h.router
        .publish(table(&[("web", &[], vec![up.upstream(1)])]));
    let mut clients = Vec::new();
    for _ in 0..20 {
        let mut s = TcpStream::connect(h.addr).await.expect("connect");
        s.write_all(b"GET / HTTP/1.1\r\nHost: web.paas.test\r\n\r\n")
            .await
            .expect("write");
        clients.push(s);
    }
    wait_for("20 requests upstream", || up.hits() == 20).await;
    assert_eq!(h.router.connections().open, 20);
    // Every client gives up while its request waits for the instance; then it answers.
    drop(clients);
    tokio::time::sleep(Duration::from_millis(50)).await;
    up.release();
    wait_for("no client connection left open", || {
        h.router.connections().open == 0
    })
    .await;
    wait_for("a 499 line each", || {
        h.lines().iter().filter(|l| l.status == 499).count() == 20
    })
    .await;
    assert_eq!(h.router.inflight(up.addr), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn router_shutdown_lets_requests_finish() {
    let slow = TestUpstream::start_with("slow", true).await;
    let mut h = Harness::start(RouterOptions::default()).await;
    h.router
        .publish(table(&[("web", &[], vec![slow.upstream(1)])]));
    let addr = h.addr;
    let inflight =
        tokio::spawn(async move { Client::connect(addr).await.get("web.paas.test").await });
    wait_for("the request upstream", || slow.hits() == 1).await;
    let _ = h.stop.take().map(|s| s.send(()));
    // Stopped accepting...
    wait_for("the listener to close", || {
        std::net::TcpStream::connect(addr).is_err()
    })
    .await;
    assert!(!h.task.is_finished());
    // ...but the request in flight completes.
    slow.release();
    let got = inflight.await.expect("task");
    assert_eq!((got.status, got.body.as_str()), (StatusCode::OK, "slow"));
    tokio::time::timeout(WAIT, &mut h.task)
        .await
        .expect("serve returns")
        .expect("serve task");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn router_shutdown_is_not_held_by_silent_or_idle_connections() {
    let up = TestUpstream::start("u").await;
    let mut h = Harness::start(RouterOptions {
        client_header_timeout: Duration::from_secs(300),
        client_idle_timeout: Duration::from_secs(300),
        ..RouterOptions::default()
    })
    .await;
    h.router
        .publish(table(&[("web", &[], vec![up.upstream(1)])]));
    let _silent = TcpStream::connect(h.addr).await.expect("connect");
    let mut idle = h.client().await;
    assert_eq!(idle.get("web.paas.test").await.status, StatusCode::OK);
    wait_for("both admitted", || h.router.connections().open == 2).await;
    let _ = h.stop.take().map(|s| s.send(()));
    // Far sooner than either timeout.
    tokio::time::timeout(WAIT, &mut h.task)
        .await
        .expect("serve returns")
        .expect("serve task");
    wait_for("both closed", || h.router.connections().open == 0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn router_keeps_counters_across_swaps() {
    let up = TestUpstream::start_with("u", true).await;
    let h = Harness::start(RouterOptions::default()).await;
    h.router
        .publish(table(&[("web", &[], vec![up.upstream(1)])]));
    let addr = h.addr;
    let held = tokio::spawn(async move { Client::connect(addr).await.get("web.paas.test").await });
    wait_for("the request upstream", || up.hits() == 1).await;
    // Same address in the next table (another release): the in-flight count carries over.
    h.router
        .publish(table(&[("web", &[], vec![up.upstream(2)])]));
    assert_eq!(h.router.inflight(up.addr), 1);
    // Out of the table: still counted until the response is done.
    h.router.publish(table(&[("web", &[], vec![])]));
    assert_eq!(h.router.inflight(up.addr), 1);
    up.release();
    assert_eq!(held.await.expect("task").status, StatusCode::OK);
    wait_for("the drain", || h.router.inflight(up.addr) == 0).await;
    let stats = h.router.stats("web").expect("stats");
    assert_eq!(stats.requests, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn router_keeps_every_connection_of_a_burst_until_the_idle_timeout() {
    const BURST: usize = 300;
    let up = TestUpstream::start_with("u", true).await;
    let h = Harness::start(RouterOptions {
        max_connections_per_ip: 1_000,
        idle_timeout: Duration::from_millis(1_500),
        ..RouterOptions::default()
    })
    .await;
    h.router
        .publish(table(&[("web", &[], vec![up.upstream(1)])]));
    let mut clients = Vec::new();
    for _ in 0..BURST {
        clients.push(h.client().await);
    }
    let wave = |clients: Vec<Client>| {
        futures_join(clients.into_iter().map(|mut c| {
            tokio::spawn(async move {
                let got = c.get("web.paas.test").await;
                (c, got.status)
            })
        }))
    };
    let first = tokio::spawn(wave(clients));
    wait_for("the whole burst to be at the upstream at once", || {
        up.hits() == BURST
    })
    .await;
    up.release();
    let clients: Vec<Client> = first
        .await
        .expect("first wave")
        .into_iter()
        .map(|(c, status)| {
            assert_eq!(status, StatusCode::OK);
            c
        })
        .collect();
    assert_eq!(up.connections(), BURST);
    // Nothing was closed on the way back to the pool (a cap of 256 closed 44 here) ...
    wait_for("the responses' connections to be back in the pool", || {
        up.open_connections() == BURST
    })
    .await;
    // ... so the next burst opens none.
    for (_, status) in wave(clients).await {
        assert_eq!(status, StatusCode::OK);
    }
    assert_eq!(up.connections(), BURST, "no new upstream connection");
    // The idle timeout gives them all back.
    wait_for("the idle connections to close", || {
        up.open_connections() == 0
    })
    .await;
}

/// Awaits every task, in order, and returns their outputs.
async fn futures_join<T: Send + 'static>(
    tasks: impl Iterator<Item = tokio::task::JoinHandle<T>>,
) -> Vec<T> {
    let mut out = Vec::new();
    for t in tasks.collect::<Vec<_>>() {
        out.push(t.await.expect("task"));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn router_closes_idle_upstream_connections() {
    let up = TestUpstream::start("u").await;
    let h = Harness::start(RouterOptions {
        idle_timeout: Duration::from_millis(200),
        ..RouterOptions::default()
    })
    .await;
    h.router
        .publish(table(&[("web", &[], vec![up.upstream(1)])]));
    let mut c = h.client().await;
    assert_eq!(c.get("web.paas.test").await.status, StatusCode::OK);
    assert_eq!(up.open_connections(), 1);
    // No more requests: the periodic sweep, not a later checkout, closes it.
    wait_for("the idle connection to close", || {
        up.open_connections() == 0
    })
    .await;
    // And the next request simply opens a new one.
    assert_eq!(c.get("web.paas.test").await.body, "u");
    assert_eq!(up.connections(), 2);
}

/// Sends raw bytes on a fresh connection and returns the whole response (the router closes
/// after a 400 it answers itself only if asked, so the request says `Connection: close`).
async fn raw(addr: SocketAddr, request: &str) -> String {
    let mut s = TcpStream::connect(addr).await.expect("connect router");
    s.write_all(request.as_bytes()).await.expect("write");
    let mut out = Vec::new();
    tokio::time::timeout(WAIT, s.read_to_end(&mut out))
        .await
        .expect("response in time")
        .expect("read");
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn router_refuses_ambiguous_or_malformed_host() {
    let up = TestUpstream::start("u1").await;
    let h = Harness::start(RouterOptions::default()).await;
    h.router
        .publish(table(&[("web", &[], vec![up.upstream(1)])]));
    for (request, says) in [
        (
            "GET / HTTP/1.1\r\nHost: web.paas.test\r\nHost: other.paas.test\r\nConnection: close\r\n\r\n",
            "more than one Host header",
        ),
        (
            "GET / HTTP/1.1\r\nHost: web.paas.test\r\nHost: web.paas.test\r\nConnection: close\r\n\r\n",
            "more than one Host header",
        ),
        (
            "GET http://web.paas.test/ HTTP/1.1\r\nHost: other.paas.test\r\nConnection: close\r\n\r\n",
            "disagrees",
        ),
        (
            "GET / HTTP/1.1\r\nHost: web.paas.test, other\r\nConnection: close\r\n\r\n",
            "malformed",
        ),
        ("GET / HTTP/1.0\r\n\r\n", "no Host header"),
    ] {
        let resp = raw(h.addr, request).await;
        let status = resp.split(' ').nth(1);
        assert_eq!(status, Some("400"), "{request:?}: {resp}");
        assert!(resp.contains(says), "{request:?}: {resp}");
    }
    assert_eq!(up.hits(), 0, "an ambiguous request reached the app");
    // The absolute form agreeing with Host, and without Host, is served.
    for request in [
        "GET http://web.paas.test/ HTTP/1.1\r\nHost: web.paas.test\r\nConnection: close\r\n\r\n",
        "GET http://web.paas.test/ HTTP/1.0\r\n\r\n",
    ] {
        let resp = raw(h.addr, request).await;
        let status = resp.split(' ').nth(1);
        assert_eq!(status, Some("200"), "{request:?}: {resp}");
    }
    assert_eq!(up.hits(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn router_believes_only_trusted_proxies() {
    let up = TestUpstream::start("u1").await;
    let h = Harness::start(RouterOptions {
        trusted_proxies: vec!["127.0.0.0/8".parse().expect("cidr")],
        ..RouterOptions::default()
    })
    .await;
    h.router
        .publish(table(&[("web", &[], vec![up.upstream(1)])]));
    let mut c = h.client().await;
    let got = c
        .send(
            "GET",
            "web.paas.test",
            &[
                ("x-forwarded-for", "203.0.113.9"),
                ("x-forwarded-proto", "https"),
                ("x-forwarded-port", "443"),
                ("x-real-ip", "203.0.113.9"),
                ("forwarded", "for=203.0.113.9;proto=https"),
            ],
            "",
        )
        .await
        .expect("request");
    assert_eq!(got.status, StatusCode::OK);
    let seen = up.seen.lock().expect("seen")[0].clone();
    assert_eq!(
        header(&seen, "x-forwarded-for"),
        Some("203.0.113.9, 127.0.0.1")
    );
    assert_eq!(header(&seen, "x-real-ip"), Some("203.0.113.9"));
    assert_eq!(header(&seen, "x-forwarded-proto"), Some("https"));
    assert_eq!(header(&seen, "x-forwarded-port"), Some("443"));
    assert_eq!(
        header(&seen, "forwarded"),
        Some("for=203.0.113.9;proto=https, for=127.0.0.1;host=web.paas.test;proto=http")
    );
}

// ---------- connection caps and client timeouts ----------

/// A connection from `source` (any 127.0.0.0/8 address) to `addr`.
async fn connect_from(source: &str, addr: SocketAddr) -> TcpStream {
    let s = tokio::net::TcpSocket::new_v4().expect("socket");
    s.bind(format!("{source}:0").parse().expect("source"))
        .expect("bind source");
    s.connect(addr).await.expect("connect router")
}

/// What the router does with a connection we do not write to: `Some(bytes)` once it closed
/// it (with whatever it sent first), `None` if it is still open after `within`.
async fn closed_within(s: &mut TcpStream, within: Duration) -> Option<String> {
    let mut out = Vec::new();
    match tokio::time::timeout(within, s.read_to_end(&mut out)).await {
        Ok(_) => Some(String::from_utf8_lossy(&out).into_owned()),
        Err(_) => None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn router_caps_connections_per_source_and_in_total() {
    let up = TestUpstream::start_with("u", true).await;
    let h = Harness::start(RouterOptions {
        max_connections: 5,
        max_connections_per_ip: 2,
        ..RouterOptions::default()
    })
    .await;
    h.router
        .publish(table(&[("web", &[], vec![up.upstream(1)])]));
    // Each held connection has a request in flight (the upstream holds it): busy, so never
    // evicted.
    let in_flight = |mut s: TcpStream| async move {
        s.write_all(b"GET / HTTP/1.1\r\nHost: web.paas.test\r\nConnection: close\r\n\r\n")
            .await
            .expect("send");
        s
    };
    let mut held = Vec::new();
    for _ in 0..2 {
        held.push(in_flight(connect_from("127.0.0.2", h.addr).await).await);
    }
    wait_for("two requests upstream", || up.hits() == 2).await;
    // A third from the same source: a 503 and closed, without reaching an app.
    let mut third = connect_from("127.0.0.2", h.addr).await;
    let got = closed_within(&mut third, WAIT)
        .await
        .expect("closed at once");
    assert!(got.starts_with("HTTP/1.1 503"), "{got}");
    assert_eq!(h.router.connections().refused_per_ip, 1);
    // Other sources are still admitted, up to the global cap.
    for src in ["127.0.0.3", "127.0.0.3", "127.0.0.4"] {
        held.push(in_flight(connect_from(src, h.addr).await).await);
    }
    wait_for("five requests upstream", || up.hits() == 5).await;
    let mut sixth = connect_from("127.0.0.5", h.addr).await;
    let got = closed_within(&mut sixth, WAIT)
        .await
        .expect("closed at once");
    assert!(got.starts_with("HTTP/1.1 503"), "{got}");
    let s = h.router.connections();
    assert_eq!(
        (s.refused_total, s.accepted, s.peak, s.evicted),
        (1, 5, 5, 0)
    );
    assert_eq!(up.hits(), 5, "the refused ones reached no app");
    // The held ones are answered, and closing them frees their slots.
    up.release();
    for s in &mut held {
        let got = closed_within(s, WAIT).await.expect("answer");
        assert!(got.starts_with("HTTP/1.1 200"), "{got}");
    }
    held.clear();
    wait_for("all closed", || h.router.connections().open == 0).await;
    let mut again = Client::connect(h.addr).await;
    assert_eq!(again.get("web.paas.test").await.status, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn router_at_its_cap_evicts_idle_connections_for_newcomers() {
    let up = TestUpstream::start("u").await;
    let h = Harness::start(RouterOptions {
        max_connections: 4,
        max_connections_per_ip: 8,
        ..RouterOptions::default()
    })
    .await;
    h.router
        .publish(table(&[("web", &[], vec![up.upstream(1)])]));
    // A keep-alive client that made a request and now waits (idle, not silent)...
    let mut keeper = h.client().await;
    assert_eq!(keeper.get("web.paas.test").await.status, StatusCode::OK);
    // ...and three connections that never send a byte, from a flood's address.
    let mut silent = Vec::new();
    for _ in 0..3 {
        silent.push(connect_from("127.0.0.9", h.addr).await);
    }
    wait_for("four open", || h.router.connections().open == 4).await;
    // Newcomers at the cap are served; the silent ones make room, oldest first.
    let mut users = Vec::new();
    for n in 1..=3u64 {
        let mut c = h.client().await;
        assert_eq!(c.get("web.paas.test").await.status, StatusCode::OK);
        users.push(c);
        let s = h.router.connections();
        assert_eq!((s.evicted, s.refused_total), (n, 0));
    }
    for mut s in silent {
        assert!(closed_within(&mut s, WAIT).await.is_some());
    }
    // No silent one left: the users went idle under pressure and queued themselves, so the
    // oldest of them makes room for the next newcomer. The keeper went idle before there
    // was pressure, so it is not a candidate and keeps its connection.
    let mut c = h.client().await;
    assert_eq!(c.get("web.paas.test").await.status, StatusCode::OK);
    assert_eq!(h.router.connections().evicted, 4);
    assert_eq!(keeper.get("web.paas.test").await.status, StatusCode::OK);
    assert!(users[0].get_checked("web.paas.test").await.is_err());
}

#[test]
fn router_holds_its_connections_under_the_descriptor_budget() {
    let sink: AccessSink = Arc::new(|_| {});
    let r = Router::new(
        RouterOptions {
            nofile: Some(20_000),
            ..RouterOptions::default()
        },
        sink.clone(),
    );
    assert_eq!(r.max_connections(), 9_000);
    let r = Router::new(
        RouterOptions {
            nofile: Some(1 << 20),
            ..RouterOptions::default()
        },
        sink.clone(),
    );
    assert_eq!(r.max_connections(), 10_000, "the configured cap is lower");
    let r = Router::new(RouterOptions::default(), sink);
    assert_eq!(r.max_connections(), 10_000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn router_closes_slow_heads_and_silent_connections_at_the_header_timeout() {
    let up = TestUpstream::start("u").await;
    let h = Harness::start(RouterOptions {
        client_header_timeout: Duration::from_millis(300),
        client_idle_timeout: Duration::from_secs(30),
        ..RouterOptions::default()
    })
    .await;
    h.router
        .publish(table(&[("web", &[], vec![up.upstream(1)])]));
    // Never sends a byte.
    let mut silent = TcpStream::connect(h.addr).await.expect("connect");
    // Sends its head a byte every 50 ms: each byte is progress, none buys time.
    let mut slow = TcpStream::connect(h.addr).await.expect("connect");
    let start = Instant::now();
    let head = b"GET / HTTP/1.1\r\nHost: web.paas.test\r\nX-Pad: aaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n";
    let mut closed = None;
    for b in head.iter().cycle().take(200) {
        if slow.write_all(&[*b]).await.is_err() {
            closed = Some(start.elapsed());
            break;
        }
        if closed_within(&mut slow, Duration::from_millis(50))
            .await
            .is_some()
        {
            closed = Some(start.elapsed());
            break;
        }
    }
    let closed = closed.expect("the slow head was cut");
    assert!(closed < Duration::from_secs(3), "cut after {closed:?}");
    assert!(closed >= Duration::from_millis(300), "cut after {closed:?}");
    assert!(closed_within(&mut silent, WAIT).await.is_some());
    assert_eq!(h.router.connections().header_timeouts, 2);
    assert_eq!(up.hits(), 0);
    // A normal request is unaffected.
    let mut c = h.client().await;
    assert_eq!(c.get("web.paas.test").await.status, StatusCode::OK);
    wait_for("the closed ones released", || {
        h.router.connections().open == 1
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn router_closes_idle_keep_alive_connections_but_not_slow_responses() {
    let slow = TestUpstream::start_with("slow", true).await;
    let h = Harness::start(RouterOptions {
        client_header_timeout: Duration::from_millis(200),
        client_idle_timeout: Duration::from_millis(400),
        ..RouterOptions::default()
    })
    .await;
    h.router
        .publish(table(&[("web", &[], vec![slow.upstream(1)])]));
    let mut s = TcpStream::connect(h.addr).await.expect("connect");
    s.write_all(b"GET / HTTP/1.1\r\nHost: web.paas.test\r\n\r\n")
        .await
        .expect("send");
    // The upstream takes far longer than both timeouts: the request is not cut.
    wait_for("the request upstream", || slow.hits() == 1).await;
    tokio::time::sleep(Duration::from_millis(900)).await;
    assert_eq!(h.router.connections().open, 1);
    slow.release();
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(WAIT, s.read(&mut buf))
        .await
        .expect("answer in time")
        .expect("read");
    let got = String::from_utf8_lossy(&buf[..n]).into_owned();
    assert!(got.starts_with("HTTP/1.1 200"), "{got}");
    // Then idle: kept past the header timeout, closed at the idle timeout.
    let answered = Instant::now();
    let rest = closed_within(&mut s, WAIT).await.expect("closed when idle");
    let idle = answered.elapsed();
    assert!(rest.is_empty() || rest.ends_with("slow"), "{rest}");
    assert!(idle >= Duration::from_millis(350), "closed after {idle:?}");
    let c = h.router.connections();
    assert_eq!((c.idle_timeouts, c.header_timeouts), (1, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn router_keeps_client_connections_alive_behind_an_http_1_0_upstream() {
    // An upstream like Python's http.server: HTTP/1.0 answers, closing after each.
    let server = RawUpstream::start(|mut s| async move {
        let mut buf = Vec::new();
        if read_decoded(&mut s, &mut buf).await.is_some() {
            let _ = s
                .write_all(b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok")
                .await;
        }
    })
    .await;
    let h = Harness::start(RouterOptions::default()).await;
    h.router
        .publish(table(&[("web", &[], vec![server.upstream("web.1")])]));
    let mut c = h.client().await;
    for _ in 0..3 {
        let got = c.get("web.paas.test").await;
        assert_eq!((got.status, got.body.as_str()), (StatusCode::OK, "ok"));
    }
    assert_eq!(
        h.router.connections().accepted,
        1,
        "one client connection for all"
    );
    // An HTTP/1.0 client is still answered in 1.0.
    let got = raw(h.addr, "GET / HTTP/1.0\r\nHost: web.paas.test\r\n\r\n").await;
    assert!(got.starts_with("HTTP/1.0 200"), "{got}");
}

// ---------- the wire towards instances ----------

/// What a scripted upstream answers to one request (head, decoded body): the raw response,
/// and whether to close the connection after it.
type Script = fn(&str, &[u8]) -> (Vec<u8>, bool);

/// The requests a scripted upstream received: head (lowercased) and decoded body.
type Received = Arc<Mutex<Vec<(String, Vec<u8>)>>>;

/// A raw upstream that reads each request (its head, and its body by Content-Length or
/// chunked), keeps it, and writes back what its script makes of it.
struct Scripted {
    raw: RawUpstream,
    got: Received,
}

impl Scripted {
    async fn start(script: Script) -> Scripted {
        let got: Received = Arc::default();
        let g = got.clone();
        let raw = RawUpstream::start(move |mut s| {
            let g = g.clone();
            async move {
                let mut buf = Vec::new();
                while let Some((head, body)) = read_decoded(&mut s, &mut buf).await {
                    let (resp, close) = script(&head, &body);
                    g.lock().expect("got").push((head, body));
                    if s.write_all(&resp).await.is_err() || close {
                        return;
                    }
                }
            }
        })
        .await;
        Scripted { raw, got }
    }

    fn got(&self) -> Vec<(String, Vec<u8>)> {
        self.got.lock().expect("got").clone()
    }

    fn connections(&self) -> usize {
        self.raw.connections()
    }
}

/// Reads one request: its head (lowercased) and its body, decoded.
async fn read_decoded(s: &mut TcpStream, buf: &mut Vec<u8>) -> Option<(String, Vec<u8>)> {
    async fn more(s: &mut TcpStream, buf: &mut Vec<u8>) -> Option<()> {
        let mut chunk = [0u8; 16384];
        let n = s.read(&mut chunk).await.ok().filter(|n| *n > 0)?;
        buf.extend_from_slice(&chunk[..n]);
        Some(())
    }
    let end = loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break end;
        }
        more(s, buf).await?;
    };
    let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
    buf.drain(..end + 4);
    let mut body = Vec::new();
    if head.contains("transfer-encoding: chunked") {
        loop {
            let line = loop {
                if let Some(i) = buf.windows(2).position(|w| w == b"\r\n") {
                    break i;
                }
                more(s, buf).await?;
            };
            let size = usize::from_str_radix(std::str::from_utf8(&buf[..line]).ok()?, 16).ok()?;
            buf.drain(..line + 2);
            while buf.len() < size + 2 {
                more(s, buf).await?;
            }
            body.extend_from_slice(&buf[..size]);
            buf.drain(..size + 2);
            if size == 0 {
                return Some((head, body));
            }
        }
    }
    let len: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    while buf.len() < len {
        more(s, buf).await?;
    }
    body.extend(buf.drain(..len));
    Some((head, body))
}

async fn router_to(up: &Scripted) -> Harness {
    let h = Harness::start(RouterOptions::default()).await;
    h.router
        .publish(table(&[("web", &[], vec![up.raw.upstream("web.1")])]));
    h
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_cross_both_ways_in_every_framing_on_one_upstream_connection() {
    // Echoes the request body back in three chunks with a trailer; HEAD gets a length and no
    // body; /none gets a 204; /early gets 100 and 103 before its 200.
    let up = Scripted::start(|head, body| {
        let r = if head.starts_with("head ") {
            b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n".to_vec()
        } else if head.starts_with("get /none") {
            b"HTTP/1.1 204 No Content\r\n\r\n".to_vec()
        } else if head.starts_with("get /early") {
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\n\
              HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nfinal"
                .to_vec()
        } else {
            let third = body.len() / 3;
            let mut r = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
            for part in [&body[..third], &body[third..2 * third], &body[2 * third..]] {
                r.extend_from_slice(format!("{:x};ext=1\r\n", part.len()).as_bytes());
                r.extend_from_slice(part);
                r.extend_from_slice(b"\r\n");
            }
            r.extend_from_slice(b"0\r\nX-Trailer: t\r\n\r\n");
            r
        };
        (r, false)
    })
    .await;
    let h = router_to(&up).await;
    let mut c = h.client().await;
    let got = c
        .send("POST", "web.paas.test", &[], "hello, upstream!")
        .await
        .expect("post");
    assert_eq!(
        (got.status, got.body.as_str()),
        (StatusCode::OK, "hello, upstream!")
    );
    // A chunked upload (no length) goes on chunked.
    let chunked = raw(
        h.addr,
        "POST /up HTTP/1.1\r\nHost: web.paas.test\r\nTransfer-Encoding: chunked\r\n\
         Connection: close\r\n\r\n4\r\nwiki\r\n5\r\npedia\r\n0\r\n\r\n",
    )
    .await;
    assert!(chunked.starts_with("HTTP/1.1 200"), "{chunked}");
    // Echoed back in three chunks, re-chunked by hyper towards the client.
    assert!(
        ["\r\nwik\r\n", "\r\nipe\r\n", "\r\ndia\r\n"]
            .iter()
            .all(|p| chunked.contains(p)),
        "{chunked}"
    );
    let got = c
        .send("HEAD", "web.paas.test", &[], "")
        .await
        .expect("head");
    assert_eq!(got.status, StatusCode::OK);
    assert_eq!(header(&got.headers, "content-length"), Some("5"));
    assert_eq!(got.body, "");
    let mut none = Client::connect(h.addr).await;
    for (path, status, body) in [
        ("/none", StatusCode::NO_CONTENT, ""),
        ("/early", StatusCode::OK, "final"),
        ("/none", StatusCode::NO_CONTENT, ""),
    ] {
        let req = Request::builder()
            .uri(path)
            .header("host", "web.paas.test")
            .body(Full::new(Bytes::new()))
            .expect("request");
        none.tx.ready().await.expect("ready");
        let resp = none.tx.send_request(req).await.expect("response");
        assert_eq!(resp.status(), status, "{path}");
        let b = resp.into_body().collect().await.expect("body").to_bytes();
        assert_eq!(&b[..], body.as_bytes(), "{path}");
    }
    let got = up.got();
    assert_eq!(got.len(), 6, "{got:?}");
    assert!(got[0].0.contains("content-length: 16"), "{}", got[0].0);
    assert_eq!(got[0].1, b"hello, upstream!");
    assert!(
        got[1].0.contains("transfer-encoding: chunked"),
        "{}",
        got[1].0
    );
    assert!(!got[1].0.contains("content-length"), "{}", got[1].0);
    assert_eq!(got[1].1, b"wikipedia");
    // Only the chunked upload's connection closed (its client said so, and one request was
    // on it); the rest reused one upstream connection, body framing and all.
    assert!(
        up.connections() <= 2,
        "{} upstream connections",
        up.connections()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_response_without_a_length_ends_with_its_connection_and_bad_ones_are_502() {
    let up = Scripted::start(|head, _| match head.split(' ').nth(1).unwrap_or("") {
        "/close" => (b"HTTP/1.1 200 OK\r\n\r\nuntil the end".to_vec(), true),
        "/garbage" => (b"SSH-2.0-OpenSSH_9.2\r\n\r\n".to_vec(), true),
        "/two-lengths" => (
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nabc".to_vec(),
            true,
        ),
        "/huge-head" => {
            let mut r = b"HTTP/1.1 200 OK\r\n".to_vec();
            for i in 0..2000 {
                r.extend_from_slice(format!("X-H{i}: {}\r\n", "v".repeat(40)).as_bytes());
            }
            r.extend_from_slice(b"Content-Length: 0\r\n\r\n");
            (r, true)
        }
        "/short" => (
            b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhalf".to_vec(),
            true,
        ),
        _ => (
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok".to_vec(),
            false,
        ),
    })
    .await;
    let h = router_to(&up).await;
    let get = |path: &'static str| {
        let addr = h.addr;
        async move {
            raw(
                addr,
                &format!("GET {path} HTTP/1.1\r\nHost: web.paas.test\r\nConnection: close\r\n\r\n"),
            )
            .await
        }
    };
    let close = get("/close").await;
    assert!(close.starts_with("HTTP/1.1 200"), "{close}");
    assert!(close.contains("\r\nuntil the end\r\n0\r\n\r\n"), "{close}");
    for path in ["/garbage", "/two-lengths", "/huge-head"] {
        let r = get(path).await;
        assert!(r.starts_with("HTTP/1.1 502"), "{path}: {r}");
        assert!(r.contains("x-request-id"), "{path}: {r}");
    }
    // A body cut short: the client sees the connection end before the promised length, never
    // a shorter response passed off as complete.
    // (hyper closes the client's connection when a body fails, before or after flushing what
    // it had.)
    let short = get("/short").await;
    assert!(
        short.is_empty()
            || (short.contains("content-length: 10") && short.ends_with("\r\n\r\nhalf")),
        "{short}"
    );
    // None of them was retried (the instance saw each), and the log says what happened.
    assert_eq!(up.got().len(), 5);
    wait_for("access lines", || h.lines().len() >= 5).await;
    let statuses: Vec<u16> = h.lines().iter().map(|l| l.status).collect();
    assert_eq!(
        statuses.iter().filter(|s| **s == 502).count(),
        3,
        "{statuses:?}"
    );
    // And the app still answers normally.
    let ok = get("/").await;
    assert!(ok.starts_with("HTTP/1.1 200") && ok.ends_with("ok"), "{ok}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_early_answer_to_an_upload_reaches_the_client() {
    // Answers 413 as soon as it has a head, without reading the 4 MiB body.
    let server = RawUpstream::start(|mut s| async move {
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
            match s.read(&mut chunk).await {
                Ok(n) if n > 0 => buf.extend_from_slice(&chunk[..n]),
                _ => return,
            }
        }
        let _ = s
            .write_all(b"HTTP/1.1 413 Payload Too Large\r\nContent-Length: 8\r\nConnection: close\r\n\r\ntoo big\n")
            .await;
        // Keep the socket (unread) open for a while, as a busy server would.
        tokio::time::sleep(Duration::from_secs(3)).await;
    })
    .await;
    let h = Harness::start(RouterOptions::default()).await;
    h.router
        .publish(table(&[("web", &[], vec![server.upstream("web.1")])]));
    let mut s = TcpStream::connect(h.addr).await.expect("connect");
    let body = vec![b'x'; 4 << 20];
    let head = format!(
        "PUT /upload HTTP/1.1\r\nHost: web.paas.test\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).await.expect("head");
    let (mut rd, mut wr) = s.into_split();
    // The client keeps sending while it waits; it may be cut off once answered.
    let upload = tokio::spawn(async move {
        let _ = wr.write_all(&body).await;
        wr
    });
    let mut out = Vec::new();
    let mut chunk = [0u8; 4096];
    let r = tokio::time::timeout(WAIT, async {
        while !String::from_utf8_lossy(&out).contains("too big") {
            match rd.read(&mut chunk).await {
                Ok(n) if n > 0 => out.extend_from_slice(&chunk[..n]),
                _ => break,
            }
        }
    })
    .await;
    assert!(r.is_ok(), "no answer in time");
    let text = String::from_utf8_lossy(&out);
    assert!(text.starts_with("HTTP/1.1 413"), "{text}");
    upload.abort();
}

// ---------- upgraded connections ----------

/// A raw upstream that switches every request asking `Upgrade: echo` to a byte echo (each
/// chunk sent back with `prefix` in front) and answers anything else with a plain 200. It
/// keeps the heads it received.
struct EchoUpstream {
    raw: RawUpstream,
    heads: Arc<Mutex<Vec<String>>>,
}

impl EchoUpstream {
    async fn start(prefix: &'static str) -> EchoUpstream {
        let heads: Arc<Mutex<Vec<String>>> = Arc::default();
        let seen = heads.clone();
        let raw = RawUpstream::start(move |mut stream| {
            let seen = seen.clone();
            async move {
            let mut buf = Vec::new();
            let Some((head, _)) = read_decoded(&mut stream, &mut buf).await else {
                return;
            };
            seen.lock().expect("heads").push(head.clone());
            if !head.contains("\r\nupgrade: echo") {
                let _ = stream
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nno")
                    .await;
                return;
            }
            let switch = b"HTTP/1.1 101 Switching Protocols\r\nconnection: upgrade\r\nupgrade: echo\r\n\r\n";
            if stream.write_all(switch).await.is_err() {
                return;
            }
            loop {
                let mut chunk = [0u8; 4096];
                let n = match stream.read(&mut chunk).await {
                    Ok(n) if n > 0 => n,
                    _ => return,
                };
                let mut out = prefix.as_bytes().to_vec();
                out.extend_from_slice(&chunk[..n]);
                if stream.write_all(&out).await.is_err() {
                    return;
                }
            }
            }
        })
        .await;
        EchoUpstream { raw, heads }
    }

    fn upstream(&self, instance: &str) -> Upstream {
        self.raw.upstream(instance)
    }
}

/// Opens a connection to the router, asks to switch to the echo protocol and returns the
/// socket once the response head is read, with that head.
async fn upgraded(router: SocketAddr, host: &str) -> (TcpStream, String) {
    let mut s = TcpStream::connect(router).await.expect("connect router");
    let req = format!(
        "GET /ws HTTP/1.1\r\nHost: {host}\r\nConnection: keep-alive, Upgrade\r\nUpgrade: echo\r\nX-Real-IP: 6.6.6.6\r\n\r\n"
    );
    s.write_all(req.as_bytes()).await.expect("send upgrade");
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut b = [0u8; 1];
        let n = tokio::time::timeout(WAIT, s.read(&mut b))
            .await
            .expect("response head in time")
            .expect("read head");
        assert!(n == 1, "connection closed before the response head");
        head.push(b[0]);
    }
    (s, String::from_utf8_lossy(&head).to_ascii_lowercase())
}

async fn round_trip(s: &mut TcpStream, msg: &str, want: &str) {
    s.write_all(msg.as_bytes()).await.expect("write");
    let mut got = vec![0u8; want.len()];
    tokio::time::timeout(WAIT, s.read_exact(&mut got))
        .await
        .expect("echo in time")
        .expect("read echo");
    assert_eq!(String::from_utf8_lossy(&got), want);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upgraded_connections_are_tunnelled_counted_and_logged() {
    let up = EchoUpstream::start("").await;
    let h = Harness::start(RouterOptions::default()).await;
    h.router
        .publish(table(&[("ws", &[], vec![up.upstream("web.1")])]));
    let (mut s, head) = upgraded(h.addr, "ws.paas.test").await;
    assert!(head.starts_with("http/1.1 101"), "{head}");
    assert!(head.contains("\r\nupgrade: echo\r\n"), "{head}");
    assert!(head.contains("\r\nconnection: upgrade\r\n"), "{head}");
    assert!(head.contains("\r\nx-request-id: "), "{head}");
    // The instance was asked to switch, with the router's forwarding headers.
    let sent = up.heads.lock().expect("heads")[0].clone();
    assert!(sent.contains("\r\nupgrade: echo"), "{sent}");
    assert!(sent.contains("\r\nconnection: upgrade"), "{sent}");
    assert!(sent.contains("\r\nx-real-ip: 127.0.0.1"), "{sent}");
    assert!(!sent.contains("6.6.6.6"), "{sent}");
    for i in 0..200 {
        let msg = format!("message {i}");
        round_trip(&mut s, &msg, &msg).await;
    }
    let stats = h.router.stats("ws").expect("stats");
    assert_eq!((stats.upgrades, stats.upgrades_open), (1, 1));
    assert_eq!(stats.status[0], 1, "the 101 counts as a 1xx response");
    // The other requests of the router are unaffected meanwhile.
    let mut c = h.client().await;
    assert_eq!(c.get("ws.paas.test").await.body, "no");
    drop(s);
    wait_for("the tunnel to close", || {
        h.router.stats("ws").is_some_and(|s| s.upgrades_open == 0)
    })
    .await;
    let line = h
        .lines()
        .into_iter()
        .find(|l| l.status == 101)
        .expect("an access line for the upgraded connection");
    assert_eq!((line.method.as_str(), line.path.as_str()), ("GET", "/ws"));
    assert_eq!(
        line.bytes,
        (0..200)
            .map(|i| format!("message {i}").len() as u64)
            .sum::<u64>()
    );
    assert_eq!(line.instance.as_deref(), Some("web.1"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_upgraded_connection_is_closed_and_an_upstream_refusal_is_a_plain_response() {
    let up = EchoUpstream::start("> ").await;
    let h = Harness::start(RouterOptions {
        upgrade_idle_timeout: Duration::from_millis(300),
        ..RouterOptions::default()
    })
    .await;
    h.router
        .publish(table(&[("ws", &[], vec![up.upstream("web.1")])]));
    let (mut s, head) = upgraded(h.addr, "ws.paas.test").await;
    assert!(head.starts_with("http/1.1 101"), "{head}");
    // Traffic keeps it open past the idle timeout...
    for _ in 0..6 {
        round_trip(&mut s, "ping", "> ping").await;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // ...silence closes it.
    let mut b = [0u8; 16];
    let n = tokio::time::timeout(WAIT, s.read(&mut b))
        .await
        .expect("closed in time")
        .unwrap_or(0);
    assert_eq!(n, 0, "the idle tunnel was closed");
    wait_for("the tunnel to be settled", || {
        h.router.stats("ws").is_some_and(|s| s.upgrades_open == 0)
    })
    .await;
    // A client asking to upgrade where the app does not switch gets the app's answer.
    let mut s = TcpStream::connect(h.addr).await.expect("connect");
    s.write_all(
        b"GET / HTTP/1.1\r\nHost: ws.paas.test\r\nConnection: upgrade\r\nUpgrade: other\r\n\r\n",
    )
    .await
    .expect("send");
    let mut got = Vec::new();
    while !String::from_utf8_lossy(&got).ends_with("no") {
        let mut chunk = [0u8; 1024];
        let n = tokio::time::timeout(WAIT, s.read(&mut chunk))
            .await
            .expect("answer in time")
            .expect("read");
        assert!(n > 0, "closed early: {}", String::from_utf8_lossy(&got));
        got.extend_from_slice(&chunk[..n]);
    }
    let got = String::from_utf8_lossy(&got);
    assert!(got.starts_with("HTTP/1.1 200"), "{got}");
    assert_eq!(h.router.stats("ws").map(|s| s.upgrades), Some(1));
}

// ---------- TLS ----------

/// A test CA and leaf certificates it signs.
struct TestCa {
    issuer: rcgen::CertifiedIssuer<'static, rcgen::KeyPair>,
}

impl TestCa {
    fn new() -> TestCa {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("ca params");
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "paas test CA");
        let key = rcgen::KeyPair::generate().expect("ca key");
        TestCa {
            issuer: rcgen::CertifiedIssuer::self_signed(params, key).expect("ca"),
        }
    }

    /// A certificate for `names` (an ECDSA P-256 key) as served: chain PEM and key PEM.
    fn leaf(&self, names: &[&str]) -> tls::Certificate {
        let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
        let key = rcgen::KeyPair::generate().expect("leaf key");
        let cert = rcgen::CertificateParams::new(names)
            .expect("leaf params")
            .signed_by(&key, &self.issuer)
            .expect("leaf");
        let chain = format!("{}{}", cert.pem(), self.issuer.pem());
        tls::Certificate::from_pem(chain.as_bytes(), key.serialize_pem().as_bytes())
            .expect("certificate")
    }

    fn client_config(&self, alpn: &[&[u8]]) -> Arc<rustls::ClientConfig> {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.issuer.der().clone()).expect("root");
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let mut config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Arc::new(config)
    }
}

impl Harness {
    /// Also serves TLS on a listener of its own; returns its address.
    async fn with_tls(&self) -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind tls");
        let addr = listener.local_addr().expect("tls addr");
        let router = self.router.clone();
        tokio::spawn(async move {
            router
                .serve_tls(listener, std::future::pending())
                .await
                .expect("tls config");
        });
        addr
    }
}

async fn tls_connect(
    addr: SocketAddr,
    ca: &TestCa,
    name: &str,
    alpn: &[&[u8]],
) -> std::io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(addr).await?;
    let connector = tokio_rustls::TlsConnector::from(ca.client_config(alpn));
    let server_name = rustls::pki_types::ServerName::try_from(name.to_string()).expect("name");
    connector.connect(server_name, tcp).await
}

/// An HTTP/2 client on a TLS stream that negotiated `h2`.
async fn h2_client(
    stream: tokio_rustls::client::TlsStream<TcpStream>,
) -> hyper::client::conn::http2::SendRequest<Full<Bytes>> {
    let (tx, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        TokioIo::new(stream),
    )
    .await
    .expect("h2 handshake");
    tokio::spawn(conn);
    tx
}

/// `GET /` for `host` over TLS, offering only HTTP/1.1.
async fn tls_get_http1(
    addr: SocketAddr,
    ca: &TestCa,
    host: &str,
) -> Response<hyper::body::Incoming> {
    let stream = tls_connect(addr, ca, host, &[b"http/1.1"])
        .await
        .expect("handshake");
    let (mut tx, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .expect("http1 handshake");
    tokio::spawn(conn);
    let req = Request::builder()
        .uri("/")
        .header("host", host)
        .body(Full::new(Bytes::new()))
        .expect("request");
    tx.send_request(req).await.expect("http1 response")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_picks_the_certificate_by_sni_and_speaks_h2_and_http1_with_proto_https() {
    let up = TestUpstream::start("tls").await;
    let h = Harness::start(RouterOptions::default()).await;
    h.router.publish(table(&[(
        "web",
        &["shop.example.com", "*.example.com"],
        vec![up.upstream(1)],
    )]));
    let ca = TestCa::new();
    let mut certs = tls::Certs::new();
    certs.add("web.paas.test", ca.leaf(&["web.paas.test"]));
    certs.add("*.example.com", ca.leaf(&["*.example.com"]));
    // The set as paasd hands it to its edge process: PEM text, loaded again there.
    let spec = certs.spec();
    assert_eq!(spec.certs.len(), 2);
    let (certs, errors) = tls::Certs::from_spec(&spec);
    assert!(errors.is_empty(), "{errors:?}");
    assert_eq!(certs.spec(), spec);
    h.router.publish_certs(certs);
    let tls_addr = h.with_tls().await;

    // HTTP/2 when offered, for the app's own name and for a name only the wildcard covers.
    for host in ["web.paas.test", "shop.example.com"] {
        let stream = tls_connect(tls_addr, &ca, host, &[b"h2", b"http/1.1"])
            .await
            .expect("handshake");
        assert_eq!(stream.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
        let mut tx = h2_client(stream).await;
        let req = Request::builder()
            .uri(format!("https://{host}/path"))
            .body(Full::new(Bytes::new()))
            .expect("request");
        let resp = tx.send_request(req).await.expect("h2 response");
        assert_eq!(resp.status(), StatusCode::OK);
        assert_eq!(resp.version(), hyper::Version::HTTP_2);
        let body = resp.into_body().collect().await.expect("body").to_bytes();
        assert_eq!(&body[..], b"tls");
    }
    let seen = up
        .seen
        .lock()
        .expect("seen")
        .last()
        .cloned()
        .expect("a request");
    assert_eq!(seen["x-forwarded-proto"], "https");
    assert_eq!(
        seen["x-forwarded-port"],
        tls_addr.port().to_string().as_str()
    );
    assert_eq!(seen["host"], "shop.example.com");
    let fwd = seen["forwarded"].to_str().expect("forwarded");
    assert!(fwd.ends_with(";proto=https"), "{fwd}");

    // HTTP/1.1 when h2 is not offered.
    let resp = tls_get_http1(tls_addr, &ca, "web.paas.test").await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.version(), hyper::Version::HTTP_11);

    // No certificate for the name: the handshake fails; the deeper name is not covered.
    for name in ["other.paas.test", "a.b.example.com"] {
        assert!(
            tls_connect(tls_addr, &ca, name, &[b"h2"]).await.is_err(),
            "{name} has no certificate"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_http_goes_to_https_once_a_certificate_covers_the_host() {
    let up = TestUpstream::start("app").await;
    let h = Harness::start(RouterOptions::default()).await;
    let mut t = table(&[
        ("web", &[], vec![up.upstream(1)]),
        ("plain", &[], vec![up.upstream(1)]),
        ("optout", &[], vec![up.upstream(1)]),
    ]);
    t.set_https(
        "web",
        Https {
            redirect: true,
            hsts: true,
        },
    );
    t.set_https(
        "optout",
        Https {
            redirect: false,
            hsts: false,
        },
    );
    h.router.publish(t);
    let ca = TestCa::new();
    let mut c = h.client().await;
    // No TLS listener yet: nothing to redirect to.
    assert_eq!(c.get("web.paas.test").await.status, StatusCode::OK);
    let mut certs = tls::Certs::new();
    certs.add("web.paas.test", ca.leaf(&["web.paas.test"]));
    certs.add("optout.paas.test", ca.leaf(&["optout.paas.test"]));
    h.router.publish_certs(certs);
    let tls_addr = h.with_tls().await;
    wait_for("the TLS listener", || {
        h.router.tls_port.load(std::sync::atomic::Ordering::Relaxed) != 0
    })
    .await;

    let got = c.get("web.paas.test:8080").await;
    assert_eq!(got.status, StatusCode::PERMANENT_REDIRECT);
    assert_eq!(
        got.headers["location"],
        format!("https://web.paas.test:{}/some/path?q=1", tls_addr.port()).as_str()
    );
    // No certificate for the host, or the app opted out: served over plain HTTP.
    assert_eq!(c.get("plain.paas.test").await.status, StatusCode::OK);
    assert_eq!(c.get("optout.paas.test").await.status, StatusCode::OK);
    assert!(!c
        .get("optout.paas.test")
        .await
        .headers
        .contains_key("strict-transport-security"));

    // ACME HTTP-01: answered on plain HTTP for any host, before redirects and routing.
    let answers: Arc<Mutex<HashMap<String, String>>> = Arc::default();
    answers
        .lock()
        .expect("answers")
        .insert("tok123".into(), "tok123.thumbprint".into());
    let a = answers.clone();
    h.router.answer_acme_with(Arc::new(move |t: &str| {
        a.lock().expect("answers").get(t).cloned()
    }));
    let got = raw(
        h.addr,
        "GET /.well-known/acme-challenge/tok123 HTTP/1.1\r\nHost: web.paas.test\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(got.starts_with("HTTP/1.1 200"), "{got}");
    assert!(got.ends_with("tok123.thumbprint"), "{got}");
    let got = raw(
        h.addr,
        "GET /.well-known/acme-challenge/tok123 HTTP/1.1\r\nHost: not-an-app.test\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(got.ends_with("tok123.thumbprint"), "{got}");
    answers.lock().expect("answers").remove("tok123");
    let got = raw(
        h.addr,
        "GET /.well-known/acme-challenge/tok123 HTTP/1.1\r\nHost: not-an-app.test\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(got.starts_with("HTTP/1.1 404"), "{got}");

    // Over HTTPS the app that asked for it gets HSTS.
    let resp = tls_get_http1(tls_addr, &ca, "web.paas.test").await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(
        resp.headers()["strict-transport-security"],
        "max-age=31536000"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acme_tls_alpn_gets_the_challenge_certificate_and_nothing_else() {
    let h = Harness::start(RouterOptions::default()).await;
    let ca = TestCa::new();
    let mut certs = tls::Certs::new();
    certs.add("web.paas.test", ca.leaf(&["web.paas.test"]));
    certs.add_challenge("new.paas.test", ca.leaf(&["new.paas.test"]));
    h.router.publish_certs(certs);
    let tls_addr = h.with_tls().await;
    let s = tls_connect(tls_addr, &ca, "new.paas.test", &[tls::ACME_TLS_ALPN])
        .await
        .expect("the validation handshake");
    assert_eq!(s.get_ref().1.alpn_protocol(), Some(tls::ACME_TLS_ALPN));
    // The challenge certificate is only for validations; the app's is not offered to them.
    assert!(
        tls_connect(tls_addr, &ca, "web.paas.test", &[tls::ACME_TLS_ALPN])
            .await
            .is_err()
    );
    assert!(tls_connect(tls_addr, &ca, "new.paas.test", &[b"h2"])
        .await
        .is_err());
}

/// A real WebSocket server (tungstenite) on threads: answers each text message with
/// `echo:` + it, and records the request line and headers of each handshake it accepted.
struct WsUpstream {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<String>>>,
}

impl WsUpstream {
    // tungstenite's handshake callback returns its HTTP response as the error type.
    #[allow(clippy::result_large_err)]
    fn start() -> WsUpstream {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind ws upstream");
        let addr = listener.local_addr().expect("addr");
        let seen: Arc<Mutex<Vec<String>>> = Arc::default();
        let record = Arc::clone(&seen);
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let record = Arc::clone(&record);
                std::thread::spawn(move || {
                    let note =
                        |req: &tungstenite::handshake::server::Request,
                         resp: tungstenite::handshake::server::Response| {
                            let mut line = format!("{} {}", req.method(), req.uri());
                            for (k, v) in req.headers() {
                                line.push_str(&format!("\n{k}: {}", v.to_str().unwrap_or("?")));
                            }
                            record.lock().expect("seen").push(line);
                            Ok(resp)
                        };
                    let Ok(mut ws) = tungstenite::accept_hdr(stream, note) else {
                        return;
                    };
                    while let Ok(msg) = ws.read() {
                        match msg {
                            tungstenite::Message::Text(t) => {
                                let reply = format!("echo:{}", t.as_str());
                                if ws.send(tungstenite::Message::text(reply)).is_err() {
                                    return;
                                }
                            }
                            tungstenite::Message::Close(_) => return,
                            _ => {}
                        }
                    }
                });
            }
        });
        WsUpstream { addr, seen }
    }
}

/// App `ws` on a WebSocket echo app, behind a router (with `opts`) whose TLS listener
/// serves `ws.paas.test`, and an HTTP/2 connection to it.
struct WsOverH2 {
    up: WsUpstream,
    h: Harness,
    ca: TestCa,
    tls_addr: SocketAddr,
    tx: hyper::client::conn::http2::SendRequest<Full<Bytes>>,
}

impl WsOverH2 {
    async fn start(opts: RouterOptions) -> WsOverH2 {
        let up = WsUpstream::start();
        let h = Harness::start(opts).await;
        h.router
            .publish(table(&[("ws", &[], vec![ws_upstream(&up)])]));
        let ca = TestCa::new();
        let mut certs = tls::Certs::new();
        certs.add("ws.paas.test", ca.leaf(&["ws.paas.test"]));
        h.router.publish_certs(certs);
        let tls_addr = h.with_tls().await;
        let stream = tls_connect(tls_addr, &ca, "ws.paas.test", &[b"h2"])
            .await
            .expect("handshake");
        let tx = h2_client(stream).await;
        WsOverH2 {
            up,
            h,
            ca,
            tls_addr,
            tx,
        }
    }
}

fn ws_upstream(up: &WsUpstream) -> Upstream {
    Upstream {
        addr: up.addr,
        instance: "web.1".into(),
        release: 1,
    }
}

/// An extended CONNECT (RFC 8441) opening a WebSocket at `uri`.
fn extended_connect(uri: &str) -> Request<Full<Bytes>> {
    let mut req = Request::builder()
        .method(hyper::Method::CONNECT)
        .uri(uri)
        .header("sec-websocket-version", "13")
        .body(Full::new(Bytes::new()))
        .expect("request");
    req.extensions_mut()
        .insert(hyper::ext::Protocol::from_static("websocket"));
    req
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_websocket_over_http2_reaches_an_http1_websocket_app() {
    // RFC 8441: the router's SETTINGS allow extended CONNECT (the client refuses to send
    // `:protocol` otherwise); the WebSocket is a CONNECT stream on the h2 connection.
    let WsOverH2 {
        up,
        h,
        ca,
        tls_addr,
        mut tx,
    } = WsOverH2::start(RouterOptions::default()).await;
    let resp = tx
        .send_request(extended_connect("https://ws.paas.test/chat?room=1"))
        .await
        .expect("extended CONNECT");
    assert_eq!(resp.status(), StatusCode::OK, "{:?}", resp.headers());
    assert!(
        !resp.headers().contains_key("sec-websocket-accept"),
        "{:?}",
        resp.headers()
    );
    let upgraded = hyper::upgrade::on(resp).await.expect("the CONNECT stream");

    // WebSocket frames over that stream, with tungstenite on a plain socket bridged to it.
    let bridge = TcpListener::bind("127.0.0.1:0").await.expect("bridge");
    let bridge_addr = bridge.local_addr().expect("addr");
    tokio::spawn(async move {
        let (mut local, _) = bridge.accept().await.expect("bridge accept");
        let mut upgraded = TokioIo::new(upgraded);
        let _ = tokio::io::copy_bidirectional(&mut local, &mut upgraded).await;
    });
    let talk = tokio::task::spawn_blocking(move || {
        let socket = std::net::TcpStream::connect(bridge_addr).expect("bridge connect");
        socket
            .set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        let mut ws = tungstenite::WebSocket::from_raw_socket(
            socket,
            tungstenite::protocol::Role::Client,
            None,
        );
        for i in 0..100 {
            let msg = format!("message {i} {}", "x".repeat(i * 41));
            ws.send(tungstenite::Message::text(msg.clone()))
                .expect("send");
            match ws.read().expect("read") {
                tungstenite::Message::Text(t) => assert_eq!(t.as_str(), format!("echo:{msg}")),
                other => panic!("unexpected {other:?}"),
            }
        }
        ws.close(None).expect("close");
        while ws.read().is_ok() {}
    });
    talk.await.expect("the WebSocket conversation");

    // The app saw a plain HTTP/1.1 WebSocket handshake, with a key of the router's.
    let seen = up.seen.lock().expect("seen")[0].clone();
    assert!(seen.starts_with("GET /chat?room=1"), "{seen}");
    assert!(seen.contains("\nupgrade: websocket"), "{seen}");
    assert!(seen.contains("\nconnection: upgrade"), "{seen}");
    assert!(seen.contains("\nsec-websocket-key: "), "{seen}");
    assert!(seen.contains("\nx-forwarded-proto: https"), "{seen}");
    let stats = h.router.stats("ws").expect("stats");
    assert_eq!(stats.upgrades, 1);
    // Logged and counted as the client saw it: its CONNECT, answered 200.
    wait_for("the WebSocket's access line", || {
        h.lines().iter().any(|l| l.path == "/chat?room=1")
    })
    .await;
    let line = h
        .lines()
        .into_iter()
        .find(|l| l.path == "/chat?room=1")
        .expect("the access line");
    assert_eq!((line.method.as_str(), line.status), ("CONNECT", 200));
    let stats = h.router.stats("ws").expect("stats");
    assert_eq!((stats.status[0], stats.status[1]), (0, 1), "as a 2xx");

    // An app that answers the handshake with a 200 rather than switching: a 2xx would tell
    // the client its WebSocket is open, so it gets a 502.
    let plain = Scripted::start(|_, _| {
        (
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi".to_vec(),
            false,
        )
    })
    .await;
    h.router.publish(table(&[
        ("ws", &[], vec![ws_upstream(&up)]),
        ("plain", &[], vec![plain.raw.upstream("web.1")]),
    ]));
    let mut certs = tls::Certs::new();
    certs.add("plain.paas.test", ca.leaf(&["plain.paas.test"]));
    h.router.publish_certs(certs);
    let stream = tls_connect(tls_addr, &ca, "plain.paas.test", &[b"h2"])
        .await
        .expect("handshake");
    let mut tx = h2_client(stream).await;
    let resp = tx
        .send_request(extended_connect("https://plain.paas.test/ws"))
        .await
        .expect("extended CONNECT");
    assert_eq!(resp.status(), StatusCode::BAD_GATEWAY);
    assert_eq!(plain.got().len(), 1, "the app was asked");
}

/// Reads from `s` until `want` has arrived (or the connection ends), with the test's deadline.
async fn read_until(s: &mut TcpStream, want: &str) -> String {
    let mut out = Vec::new();
    let mut chunk = [0u8; 4096];
    let deadline = Instant::now() + WAIT;
    while !String::from_utf8_lossy(&out).contains(want) {
        let left = deadline.saturating_duration_since(Instant::now());
        let n = tokio::time::timeout(left, s.read(&mut chunk))
            .await
            .expect("in time")
            .expect("read");
        if n == 0 {
            break;
        }
        out.extend_from_slice(&chunk[..n]);
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_http1_side_pipelines_honours_expect_and_refuses_ambiguous_framing() {
    // Echoes each request's body with a length.
    let up = Scripted::start(|_, body| {
        let mut r = format!(
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n",
            body.len() + 5
        )
        .into_bytes();
        r.extend_from_slice(b"echo:");
        r.extend_from_slice(body);
        (r, false)
    })
    .await;
    let h = router_to(&up).await;

    // Three requests in one write: three answers, in order, on the one connection.
    let mut s = TcpStream::connect(h.addr).await.expect("connect");
    s.write_all(
        b"POST /1 HTTP/1.1\r\nHost: web.paas.test\r\nContent-Length: 3\r\n\r\none\
          GET /2 HTTP/1.1\r\nHost: web.paas.test\r\n\r\n\
          POST /3 HTTP/1.1\r\nHost: web.paas.test\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nthree\r\n0\r\n\r\n",
    )
    .await
    .expect("write");
    let got = read_until(&mut s, "echo:three").await;
    let one = got.find("echo:one").expect(&got);
    let two = got
        .find("echo:\r\n")
        .or_else(|| got.find("echo:HTTP"))
        .expect(&got);
    let three = got.find("echo:three").expect(&got);
    assert!(one < two && two < three, "{got}");
    assert_eq!(got.matches("HTTP/1.1 200 OK").count(), 3, "{got}");

    // Expect: 100-continue: the interim answer comes when the body is wanted, then the
    // response, and the connection stays usable.
    s.write_all(
        b"PUT /4 HTTP/1.1\r\nHost: web.paas.test\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n",
    )
    .await
    .expect("write");
    let interim = read_until(&mut s, "\r\n\r\n").await;
    assert_eq!(interim, "HTTP/1.1 100 Continue\r\n\r\n");
    s.write_all(b"four").await.expect("write body");
    let got = read_until(&mut s, "echo:four").await;
    assert!(got.starts_with("HTTP/1.1 200 OK"), "{got}");
    let seen = up.got().len();
    assert_eq!(seen, 4);
    assert_eq!(h.router.connections().accepted, 1);

    // Framing the router and an instance could read differently is refused before any
    // instance sees it, with a reason, and the connection closes.
    for (request, status, reason) in [
        (
            "POST / HTTP/1.1\r\nHost: web.paas.test\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
            "400 Bad Request",
            "both Transfer-Encoding and Content-Length",
        ),
        (
            "POST / HTTP/1.1\r\nHost: web.paas.test\r\nContent-Length: 4\r\nContent-Length: 5\r\n\r\nabcde",
            "400 Bad Request",
            "conflicting Content-Length",
        ),
        (
            "POST / HTTP/1.1\r\nHost: web.paas.test\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
            "501 Not Implemented",
            "no transfer coding but chunked",
        ),
        (
            "POST / HTTP/1.0\r\nHost: web.paas.test\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
            "400 Bad Request",
            "HTTP/1.0",
        ),
    ] {
        let got = raw(h.addr, request).await;
        assert!(got.starts_with(&format!("HTTP/1.1 {status}")), "{got}");
        assert!(got.contains(reason), "{got}");
        assert!(got.contains("connection: close"), "{got}");
    }
    let big = format!(
        "GET / HTTP/1.1\r\nHost: web.paas.test\r\nX-Big: {}\r\n\r\n",
        "a".repeat(70 * 1024)
    );
    let got = raw(h.addr, &big).await;
    assert!(
        got.starts_with("HTTP/1.1 431 Request Header Fields Too Large"),
        "{}",
        &got[..got.len().min(200)]
    );
    // A broken chunked body ends the request and its connection; the instance never gets a
    // request that looks whole.
    let got = raw(
        h.addr,
        "POST /bad HTTP/1.1\r\nHost: web.paas.test\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcdef\r\n0\r\n\r\n",
    )
    .await;
    assert!(!got.contains("echo:abc"), "{got}");
    assert_eq!(
        up.got().len(),
        seen,
        "no refused request reached the instance"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websockets_over_http2_count_against_the_per_source_cap() {
    let WsOverH2 { up, h, mut tx, .. } = WsOverH2::start(RouterOptions {
        max_connections_per_ip: 2,
        ..RouterOptions::default()
    })
    .await;
    let connect = || extended_connect("https://ws.paas.test/chat");
    // The connection is one of the source's two; its first WebSocket the second.
    let first = tx.send_request(connect()).await.expect("CONNECT");
    assert_eq!(first.status(), StatusCode::OK);
    let first = hyper::upgrade::on(first).await.expect("the first tunnel");
    wait_for("two open", || h.router.connections().open == 2).await;
    let second = tx.send_request(connect()).await.expect("CONNECT");
    assert_eq!(second.status(), StatusCode::SERVICE_UNAVAILABLE);
    let body = second.into_body().collect().await.expect("body").to_bytes();
    assert!(
        String::from_utf8_lossy(&body).contains("each WebSocket counts as one"),
        "{body:?}"
    );
    assert_eq!(
        up.seen.lock().expect("seen").len(),
        1,
        "refused before the app"
    );
    // Closing the first gives its place back.
    drop(first);
    wait_for("the tunnel's place back", || {
        h.router.connections().open == 1
    })
    .await;
    let third = tx.send_request(connect()).await.expect("CONNECT");
    assert_eq!(third.status(), StatusCode::OK);
}
