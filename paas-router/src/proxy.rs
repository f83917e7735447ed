//! Forwarding one request: route it, rewrite its headers, send it to an upstream, retry what
//! is safe to retry, and turn failures into the right page.
//!
//! Retry rule: an attempt may be repeated on another upstream only if the upstream cannot
//! have seen it (connect failed, or its head did not get out whole), or if it failed
//! before any response byte and is replayable (idempotent method, empty body). Nothing is
//! retried once response headers arrived, nor after a response timeout (the upstream may
//! still be working on it).
//!
//! WebSockets over HTTP/2 (RFC 8441: an extended CONNECT with `:protocol websocket`) reach
//! the instance as an HTTP/1.1 Upgrade (a GET with `Upgrade: websocket` and a
//! `Sec-WebSocket-Key` of ours); its 101 becomes the client's 200, and the h2 stream is the
//! tunnel. Instances keep speaking plain HTTP/1.1 WebSockets. This module must not hold locks, and it touches the route table
//! only through the snapshot it loaded (plus one reload when retrying).

use std::sync::Arc;
use std::time::Instant;

use hyper::body::Body;
use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::upgrade::OnUpgrade;
use hyper::{Method, Request, Response, StatusCode, Uri, Version};
use tokio::net::TcpStream;

use super::body::{ClientBody, Finish, ProxyBody};
use super::conn::Busy;
use super::h1;
use super::headers::{self, Peer, X_REQUEST_ID};
use super::pages::Page;
use super::pool::{Conn, ConnectError};
use super::snapshot::AppRoute;
use super::tunnel::ClientSide;
use super::upstream::{self, UpstreamBody, UpstreamError};
use super::Router;

/// Why the last attempt failed, for choosing between 502 and 504 and for the log.
enum Failure {
    None,
    Connect(ConnectError),
    Upstream(UpstreamError),
    Timeout,
}

impl Failure {
    fn page<'a>(&self, app: &'a str) -> Page<'a> {
        match self {
            Failure::Timeout | Failure::Connect(ConnectError::Timeout { .. }) => {
                Page::GatewayTimeout(app)
            }
            _ => Page::BadGateway(app),
        }
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::None => f.write_str("no upstream left to try"),
            Failure::Connect(e) => e.fmt(f),
            Failure::Upstream(e) => write!(f, "upstream failed before responding: {e}"),
            Failure::Timeout => f.write_str("no response headers within the response timeout"),
        }
    }
}

pub(crate) async fn forward(
    router: Arc<Router>,
    req: Request<ClientBody>,
    client: Arc<Peer>,
    busy: Busy,
) -> Response<ProxyBody> {
    let start = Instant::now();
    let mut timer = busy.response_timer();
    let (mut parts, body) = req.into_parts();
    let request_id = headers::request_id(&parts.headers);
    let mut finish = Finish::new(
        router.clone(),
        start,
        &parts.method,
        &parts.uri,
        request_id.clone(),
        busy,
    );
    let html = wants_html(&parts.headers);

    if !client.tls {
        let token = parts
            .uri
            .path()
            .strip_prefix("/.well-known/acme-challenge/");
        if let Some(answer) = token.and_then(|t| router.acme_answer(t)) {
            return acme_answer(finish, answer, request_id);
        }
    }
    let host_value = match headers::request_host(&mut parts.headers, &parts.uri) {
        Ok(h) => h,
        Err(bad) => return page(finish, Page::BadHost(bad), html, request_id),
    };
    // A valid Host is visible ASCII.
    let host = host_value.to_str().unwrap_or_default();
    let Some(mut route) = router.route(host) else {
        return page(finish, Page::UnknownHost(host), html, request_id);
    };
    finish.app = Some(route.clone());
    if !client.tls && route.https.redirect {
        if let Some(port) = router.https_port_for(host) {
            return to_https(finish, host, port, &parts.uri, request_id);
        }
    }
    let hsts = client.tls && route.https.hsts;
    if route.backends.is_empty() {
        return page(finish, Page::NoInstances(&route.name), html, request_id);
    }

    // An HTTP/1.1 upgrade (WebSockets): the client's side of the switch, and the protocol,
    // put back once the other hop-by-hop headers are gone. Or a WebSocket over HTTP/2.
    let over_h2 = is_websocket_over_h2(&parts);
    let upgrade = if over_h2 {
        parts
            .extensions
            .remove::<OnUpgrade>()
            .map(|u| (HeaderValue::from_static("websocket"), ClientSide::Hyper(u)))
    } else {
        headers::upgrade_of(&parts.headers)
            .filter(|_| parts.version == Version::HTTP_11)
            .and_then(|p| Some((p, client_side(&mut parts.extensions)?)))
    };
    if over_h2 && upgrade.is_some() {
        match router.admission.admit_tunnel(client.addr) {
            Ok(permit) => finish.tunnel_permit = Some(permit),
            Err(why) => {
                tracing::debug!(app = %route.name, "a WebSocket over HTTP/2 refused: {why:?}");
                return page(finish, Page::TooManyConnections, html, request_id);
            }
        }
    }
    headers::strip_hop_by_hop(&mut parts.headers);
    if let Some((protocol, _)) = &upgrade {
        headers::set_upgrade(&mut parts.headers, protocol.clone());
    }
    if over_h2 {
        // RFC 8441 section 5: the HTTP/1.1 handshake's GET, with the key h2 does without.
        parts.method = Method::GET;
        parts
            .headers
            .insert(header::SEC_WEBSOCKET_KEY, websocket_key());
        parts
            .headers
            .entry(header::SEC_WEBSOCKET_VERSION)
            .or_insert(HeaderValue::from_static("13"));
    }
    headers::add_forwarded(&mut parts.headers, &client, &host_value);
    parts
        .headers
        .insert(X_REQUEST_ID.clone(), request_id.clone());
    if parts.uri.scheme().is_some() {
        // Absolute-form from the client; upstreams expect origin-form.
        parts.uri = parts
            .uri
            .path_and_query()
            .map_or_else(|| Uri::from_static("/"), |pq| Uri::from(pq.clone()));
    }
    let empty = body.is_end_stream();
    let framing = upstream::frame_request(&mut parts.headers, empty);
    // Encoded once: a retry sends the same bytes.
    let head = upstream::encode_head(&parts.method, &parts.uri, &parts.headers);
    let replayable = empty && parts.method.is_idempotent();
    let head_request = parts.method == Method::HEAD;
    let mut body = if empty {
        UpstreamBody::Empty
    } else {
        UpstreamBody::Client(body)
    };
    // The head's values are slices of hyper's read buffer: let it go while we wait.
    super::spares::give_back(std::mem::take(&mut parts.headers));
    drop(parts);

    let mut tried: Vec<usize> = Vec::new();
    let mut last = Failure::None;
    for attempt in 0..=router.opts.max_retries {
        if attempt > 0 {
            // A rollout may have swapped the table since this request started, and the
            // upstreams that just failed may be the ones it retired: follow the new table.
            if let Some(now) = router.route(host) {
                if !Arc::ptr_eq(&now, &route) {
                    route = now;
                    tried.clear();
                    finish.app = Some(route.clone());
                }
            }
        }
        let Some(idx) = route.pick(&tried) else { break };
        let backend = &route.backends[idx];
        let guard = backend.enter();
        let Conn { mut io, reused } = match backend.checkout(&router.pool).await {
            Ok(conn) => conn,
            Err(e) => {
                tracing::debug!(app = %route.name, addr = %backend.addr(), "attempt {attempt}: {e}");
                tried.push(idx);
                last = Failure::Connect(e);
                continue;
            }
        };
        let outcome = {
            let exchange = std::pin::pin!(upstream::exchange(
                &mut io,
                &head,
                &mut body,
                framing,
                head_request,
                upgrade.is_some(),
            ));
            timer.within(router.opts.response_timeout, exchange).await
        };
        match outcome {
            Some(Ok(resp)) => {
                let answer = Answer {
                    finish,
                    route,
                    idx,
                    guard,
                    request_id,
                    hsts,
                };
                return match (resp.status, upgrade) {
                    (StatusCode::SWITCHING_PROTOCOLS, Some((_, client))) => {
                        switch(answer, resp, io, client, &router, over_h2)
                    }
                    // Any 2xx to an extended CONNECT tells an h2 client its WebSocket is
                    // open; an instance that did not switch has not opened one.
                    (status, _) if over_h2 && status.is_success() => {
                        let Answer {
                            mut finish,
                            route,
                            idx,
                            request_id,
                            ..
                        } = answer;
                        tracing::debug!(app = %route.name, %status, "a WebSocket over HTTP/2 was not switched");
                        finish.upstream = Some(idx);
                        finish.app = Some(route.clone());
                        page(finish, Page::BadGateway(&route.name), html, request_id)
                    }
                    (_, _) => respond(answer, resp, io),
                };
            }
            Some(Err(failed)) => {
                if reused {
                    backend.clear_idle();
                }
                tracing::debug!(app = %route.name, addr = %backend.addr(), reused, "attempt {attempt}: {}", failed.error);
                tried.push(idx);
                last = Failure::Upstream(failed.error);
                // Another upstream may have it only if this one cannot have acted on it.
                if !(failed.unsent || (replayable && !failed.answered)) {
                    break;
                }
            }
            None => {
                // Dropping the exchange dropped that connection; it is not pooled again.
                last = Failure::Timeout;
                break;
            }
        }
    }
    let rid = request_id.to_str().unwrap_or_default();
    tracing::warn!(app = %route.name, request_id = rid, "{last}");
    let route = finish.app.clone().unwrap_or(route);
    page(finish, last.page(&route.name), html, request_id)
}

/// What a response from an upstream is settled with.
struct Answer {
    finish: Finish,
    route: Arc<AppRoute>,
    idx: usize,
    guard: super::pool::InflightGuard,
    request_id: HeaderValue,
    /// Add `Strict-Transport-Security` (an HTTPS request of an app that wants it).
    hsts: bool,
}

static STRICT_TRANSPORT_SECURITY: HeaderValue = HeaderValue::from_static("max-age=31536000");

fn respond(answer: Answer, mut resp: upstream::Response, io: TcpStream) -> Response<ProxyBody> {
    let Answer {
        mut finish,
        route,
        idx,
        guard,
        request_id,
        hsts,
    } = answer;
    let mut parts = resp.take_parts();
    headers::strip_hop_by_hop(&mut parts.headers);
    // The version is hop-by-hop too: an HTTP/1.0 app (Python's http.server) must not make
    // hyper close the client's keep-alive connection after every response. A client that
    // spoke HTTP/1.0 still gets 1.0 (hyper answers in the request's version).
    parts.version = Version::HTTP_11;
    if !parts.headers.contains_key(&X_REQUEST_ID) {
        parts.headers.insert(X_REQUEST_ID.clone(), request_id);
    }
    if hsts {
        parts.headers.insert(
            header::STRICT_TRANSPORT_SECURITY,
            STRICT_TRANSPORT_SECURITY.clone(),
        );
    }
    finish.status = parts.status.as_u16();
    finish.app = Some(route);
    finish.upstream = Some(idx);
    finish.inflight = Some(guard);
    Response::from_parts(parts, ProxyBody::upstream(resp.into_body(io), finish))
}

/// The upstream agreed to switch protocols: the client gets the 101, and a task of its own
/// joins the two upgraded connections (`tunnel`). It holds the request's bookkeeping, so the
/// instance counts as busy (a rollout's drain waits for it, up to the drain timeout) and the
/// client connection stays admitted until the tunnel closes.
fn switch(
    answer: Answer,
    mut resp: upstream::Response,
    io: TcpStream,
    client: ClientSide,
    router: &Router,
    over_h2: bool,
) -> Response<ProxyBody> {
    let Answer {
        mut finish,
        route,
        idx,
        guard,
        request_id,
        hsts: _,
    } = answer;
    let mut parts = resp.take_parts();
    let protocol = parts.headers.get(header::UPGRADE).cloned();
    headers::strip_hop_by_hop(&mut parts.headers);
    if over_h2 {
        // The extended CONNECT succeeded: a 200, and no HTTP/1.1 handshake header (the key
        // was ours, so is its answer).
        parts.status = StatusCode::OK;
        parts.headers.remove(header::SEC_WEBSOCKET_ACCEPT);
        parts.headers.remove(header::CONTENT_LENGTH);
    } else if let Some(protocol) = protocol {
        headers::set_upgrade(&mut parts.headers, protocol);
    }
    if !parts.headers.contains_key(&X_REQUEST_ID) {
        parts.headers.insert(X_REQUEST_ID.clone(), request_id);
    }
    finish.app = Some(route);
    finish.upstream = Some(idx);
    finish.inflight = Some(guard);
    finish.upgrade_opened(parts.status.as_u16());
    tokio::spawn(super::tunnel::run(
        client,
        io,
        resp.into_leftover(),
        finish,
        router.opts.upgrade_idle_timeout,
    ));
    Response::from_parts(parts, ProxyBody::empty())
}

/// The client's side of an HTTP/1.1 upgrade, from whichever server side read the request.
fn client_side(extensions: &mut hyper::http::Extensions) -> Option<ClientSide> {
    if let Some(ours) = extensions.remove::<h1::OnUpgrade>() {
        return Some(ClientSide::H1(ours));
    }
    extensions.remove::<OnUpgrade>().map(ClientSide::Hyper)
}

/// An HTTP/2 extended CONNECT for a WebSocket (RFC 8441).
fn is_websocket_over_h2(parts: &hyper::http::request::Parts) -> bool {
    parts.method == Method::CONNECT
        && parts.version == Version::HTTP_2
        && parts
            .extensions
            .get::<hyper::ext::Protocol>()
            .is_some_and(|p| p.as_str().eq_ignore_ascii_case("websocket"))
}

/// A fresh `Sec-WebSocket-Key`: 16 random bytes, base64 (RFC 6455 section 4.1). It only has
/// to differ between handshakes; the std hasher's random keys are enough for that.
fn websocket_key() -> HeaderValue {
    use base64::Engine;
    use std::hash::{BuildHasher, Hasher};
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let mut bytes = [0u8; 16];
    for (i, chunk) in bytes.chunks_mut(8).enumerate() {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u64(n);
        h.write_usize(i);
        chunk.copy_from_slice(&h.finish().to_le_bytes());
    }
    let key = base64::engine::general_purpose::STANDARD.encode(bytes);
    HeaderValue::from_str(&key)
        .unwrap_or_else(|_| HeaderValue::from_static("dGhlIHNhbXBsZSBub25jZQ=="))
}

/// 308 to the same URL over HTTPS (the method and body are kept, unlike with 301).
fn to_https(
    mut finish: Finish,
    host: &str,
    port: u16,
    uri: &Uri,
    request_id: HeaderValue,
) -> Response<ProxyBody> {
    let name = host.rsplit_once(':').map_or(host, |(n, p)| {
        // Only a port: an IPv6 literal's colons sit inside its brackets.
        if p.bytes().all(|b| b.is_ascii_digit()) && !n.is_empty() {
            n
        } else {
            host
        }
    });
    let target = match port {
        443 => format!("https://{name}"),
        p => format!("https://{name}:{p}"),
    };
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    finish.status = StatusCode::PERMANENT_REDIRECT.as_u16();
    let mut resp = Response::new(ProxyBody::page(bytes::Bytes::new(), finish));
    *resp.status_mut() = StatusCode::PERMANENT_REDIRECT;
    let h = resp.headers_mut();
    // A valid Host and a valid request target make a valid header value.
    if let Ok(location) = HeaderValue::from_str(&format!("{target}{path}")) {
        h.insert(header::LOCATION, location);
    }
    h.insert(X_REQUEST_ID.clone(), request_id);
    resp
}

fn acme_answer(mut finish: Finish, answer: String, request_id: HeaderValue) -> Response<ProxyBody> {
    finish.status = 200;
    let mut resp = Response::new(ProxyBody::page(bytes::Bytes::from(answer), finish));
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    h.insert(X_REQUEST_ID.clone(), request_id);
    resp
}

fn page(
    mut finish: Finish,
    page: Page<'_>,
    html: bool,
    request_id: HeaderValue,
) -> Response<ProxyBody> {
    let (body, content_type) = page.render(html, &request_id);
    finish.status = page.status().as_u16();
    let mut resp = Response::new(ProxyBody::page(body, finish));
    *resp.status_mut() = page.status();
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, content_type);
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(X_REQUEST_ID.clone(), request_id);
    resp
}

fn wants_html(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|a| a.to_str().ok())
        .is_some_and(|a| a.contains("text/html"))
}
