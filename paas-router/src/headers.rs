//! Header rewriting at the proxy hop: the request's one Host, hop-by-hop removal,
//! `X-Forwarded-*`, `X-Real-IP`, `Forwarded`, `X-Request-Id`.
//!
//! Owns which headers cross the hop, what the router adds and which client claims it
//! believes (only a trusted proxy's). It must not look at bodies or routes, nor accept or
//! read connections; everything here is a pure function of a header map, the request target
//! and the connection's [`Peer`].

use std::hash::{BuildHasher, RandomState};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::OnceLock;

use bytes::Bytes;
use hyper::header::{self, HeaderMap, HeaderName, HeaderValue};
use hyper::Uri;
use std::net::IpAddr;

use super::trust::{is_trusted, IpNet};

pub(crate) static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
pub(crate) static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
pub(crate) static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
static X_FORWARDED_PORT: HeaderName = HeaderName::from_static("x-forwarded-port");
static X_REAL_IP: HeaderName = HeaderName::from_static("x-real-ip");
static FORWARDED: HeaderName = HeaderName::from_static("forwarded");
static HTTP: HeaderValue = HeaderValue::from_static("http");
static HTTPS: HeaderValue = HeaderValue::from_static("https");
pub(crate) static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
static KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
static PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");

const MAX_REQUEST_ID: usize = 128;

/// Removes the headers that describe one connection rather than the message (RFC 9110
/// §7.6.1), including any the `Connection` header names. `Host` is never removed, even if
/// named: the upstream needs it, and a client must not be able to strip it. Our own
/// forwarding headers are set after this runs, so naming them achieves nothing either.
pub(crate) fn strip_hop_by_hop(headers: &mut HeaderMap) {
    // Most messages have none of them: one pass over the names (comparisons of a tag for the
    // standard ones) is much cheaper than hashing nine names to look each up.
    if !headers.keys().any(is_hop_by_hop) {
        return;
    }
    if headers.contains_key(header::CONNECTION) {
        let named = headers_named(headers.get_all(header::CONNECTION).iter());
        headers.remove(header::CONNECTION);
        for name in named {
            if name != header::HOST {
                headers.remove(&name);
            }
        }
    }
    for name in always_hop_by_hop() {
        headers.remove(name);
    }
}

/// Removed by [`strip_hop_by_hop`] whatever `Connection` names.
fn always_hop_by_hop() -> [&'static HeaderName; 8] {
    [
        &KEEP_ALIVE,
        &PROXY_CONNECTION,
        &header::TE,
        &header::TRAILER,
        &header::TRANSFER_ENCODING,
        &header::UPGRADE,
        &header::PROXY_AUTHENTICATE,
        &header::PROXY_AUTHORIZATION,
    ]
}

fn is_hop_by_hop(name: &HeaderName) -> bool {
    name == header::CONNECTION || always_hop_by_hop().contains(&name)
}

/// The protocol an HTTP/1.1 request asks to switch to (`Upgrade: websocket` with `upgrade`
/// among its `Connection` tokens), before [`strip_hop_by_hop`] removes both.
pub(crate) fn upgrade_of(headers: &HeaderMap) -> Option<HeaderValue> {
    let asked =
        headers_named(headers.get_all(header::CONNECTION).iter()).contains(&header::UPGRADE);
    asked
        .then(|| headers.get(header::UPGRADE).cloned())
        .flatten()
}

/// Puts back the two hop-by-hop headers an upgrade needs on its next hop.
pub(crate) fn set_upgrade(headers: &mut HeaderMap, protocol: HeaderValue) {
    headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    headers.insert(header::UPGRADE, protocol);
}

fn headers_named<'a>(values: impl Iterator<Item = &'a HeaderValue>) -> Vec<HeaderName> {
    values
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|t| HeaderName::from_bytes(t.trim().as_bytes()).ok())
        .collect()
}

/// The TCP peer of one client connection, worked out once per connection.
#[derive(Debug, Clone)]
pub(crate) struct Peer {
    /// The canonical address text: `X-Real-IP` and the `X-Forwarded-For` entry.
    ip: HeaderValue,
    /// The RFC 7239 node: `192.0.2.1`, or `"[2001:db8::1]"` (IPv6 in quotes and brackets).
    node: Bytes,
    /// In a configured trusted-proxy network: its forwarding headers are believed.
    trusted: bool,
    /// The router's listening port (`X-Forwarded-Port`).
    port: HeaderValue,
    /// The connection is TLS (`X-Forwarded-Proto: https`).
    pub(crate) tls: bool,
    /// The TCP peer's address (for the per-source caps of `limits`).
    pub(crate) addr: IpAddr,
}

impl Peer {
    pub(crate) fn new(ip: IpAddr, trusted: &[IpNet], port: u16, tls: bool) -> Peer {
        let ip = ip.to_canonical();
        let text = ip.to_string();
        let node = match ip {
            IpAddr::V4(_) => Bytes::from(text.clone()),
            IpAddr::V6(_) => Bytes::from(format!("\"[{text}]\"")),
        };
        Peer {
            // An address's text is always a valid header value.
            ip: HeaderValue::from_str(&text)
                .unwrap_or_else(|_| HeaderValue::from_static("unknown")),
            node,
            trusted: is_trusted(trusted, ip),
            port: HeaderValue::from(port),
            tls,
            addr: ip,
        }
    }
}

impl Peer {
    fn proto(&self) -> &'static HeaderValue {
        if self.tls {
            &HTTPS
        } else {
            &HTTP
        }
    }
}

/// Sets what the upstream should know about the original request. From an untrusted peer
/// (the router is the edge) the client's claims are replaced: `X-Forwarded-For` and
/// `X-Real-IP` are the peer's address, `X-Forwarded-Proto: http`, `X-Forwarded-Host` the
/// Host, `X-Forwarded-Port` our port, and `Forwarded: for=..;host=..;proto=http`. From a
/// trusted proxy, `X-Forwarded-For` and `Forwarded` are appended to, and its `X-Real-IP`,
/// `X-Forwarded-Proto`, `-Host` and `-Port` are kept (ours fill in the missing ones).
pub(crate) fn add_forwarded(headers: &mut HeaderMap, peer: &Peer, host: &HeaderValue) {
    let forwarded = forwarded_element(peer, host);
    if peer.trusted {
        let xff = append_list(headers, &X_FORWARDED_FOR, &peer.ip);
        headers.insert(X_FORWARDED_FOR.clone(), xff);
        let fwd = append_list(headers, &FORWARDED, &forwarded);
        headers.insert(FORWARDED.clone(), fwd);
        for (name, ours) in [
            (&X_REAL_IP, &peer.ip),
            (&X_FORWARDED_PROTO, peer.proto()),
            (&X_FORWARDED_HOST, host),
            (&X_FORWARDED_PORT, &peer.port),
        ] {
            if !headers.contains_key(name) {
                headers.insert(name.clone(), ours.clone());
            }
        }
    } else {
        headers.insert(X_FORWARDED_FOR.clone(), peer.ip.clone());
        headers.insert(X_REAL_IP.clone(), peer.ip.clone());
        headers.insert(FORWARDED.clone(), forwarded);
        headers.insert(X_FORWARDED_PROTO.clone(), peer.proto().clone());
        headers.insert(X_FORWARDED_HOST.clone(), host.clone());
        headers.insert(X_FORWARDED_PORT.clone(), peer.port.clone());
    }
}

/// `for=NODE;host=HOST;proto=http`, the host quoted when it is not a token (a port or an
/// IPv6 literal).
fn forwarded_element(peer: &Peer, host: &HeaderValue) -> HeaderValue {
    let host = host.as_bytes();
    let quote = !host.iter().all(|b| is_tchar(*b));
    let proto: &[u8] = if peer.tls {
        b";proto=https"
    } else {
        b";proto=http"
    };
    let quoting = if quote {
        2 + host.iter().filter(|b| matches!(b, b'"' | b'\\')).count()
    } else {
        0
    };
    // Exactly the size written (see `upstream::encode_head`).
    let size = "for=".len() + peer.node.len() + ";host=".len() + host.len() + quoting + proto.len();
    let mut out = Vec::with_capacity(size);
    out.extend_from_slice(b"for=");
    out.extend_from_slice(&peer.node);
    out.extend_from_slice(b";host=");
    if quote {
        out.push(b'"');
        for b in host {
            if matches!(b, b'"' | b'\\') {
                out.push(b'\\');
            }
            out.push(*b);
        }
        out.push(b'"');
    } else {
        out.extend_from_slice(host);
    }
    out.extend_from_slice(proto);
    debug_assert_eq!(out.len(), size);
    // Built from a valid header value and visible ASCII.
    HeaderValue::from_maybe_shared(Bytes::from(out))
        .unwrap_or_else(|_| HeaderValue::from_static("for=unknown;proto=http"))
}

/// RFC 9110 token characters.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// Every value of a comma-separated list header, joined, with `last` appended.
fn append_list(headers: &HeaderMap, name: &HeaderName, last: &HeaderValue) -> HeaderValue {
    if !headers.contains_key(name) {
        return last.clone();
    }
    let mut joined = Vec::with_capacity(64);
    for v in headers.get_all(name) {
        joined.extend_from_slice(v.as_bytes());
        joined.extend_from_slice(b", ");
    }
    joined.extend_from_slice(last.as_bytes());
    HeaderValue::from_maybe_shared(Bytes::from(joined)).unwrap_or_else(|_| last.clone())
}

/// Why a request's Host cannot be used; the router answers 400 and sends it nowhere.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BadHost {
    /// No Host header and no absolute-form target.
    Missing,
    /// More than one Host header: the app and the router could disagree on which counts.
    Duplicate,
    /// Absolute-form target whose authority is not the Host header.
    Disagrees,
    /// Not `host[:port]`.
    Malformed,
}

/// The one Host of a request: the Host header, or the authority of an absolute-form target
/// (inserted as Host when the header is missing). Everything ambiguous is refused.
pub(crate) fn request_host(headers: &mut HeaderMap, uri: &Uri) -> Result<HeaderValue, BadHost> {
    let mut all = headers.get_all(header::HOST).iter();
    let first = all.next().cloned();
    if all.next().is_some() {
        return Err(BadHost::Duplicate);
    }
    let authority = uri.authority().map(|a| a.as_str());
    let host = match (first, authority) {
        (Some(h), None) => h,
        (Some(h), Some(a)) => {
            if !h.as_bytes().eq_ignore_ascii_case(a.as_bytes()) {
                return Err(BadHost::Disagrees);
            }
            h
        }
        (None, Some(a)) => {
            let h = HeaderValue::from_str(a).map_err(|_| BadHost::Malformed)?;
            headers.insert(header::HOST, h.clone());
            h
        }
        (None, None) => return Err(BadHost::Missing),
    };
    if is_valid_host(host.as_bytes()) {
        Ok(host)
    } else {
        Err(BadHost::Malformed)
    }
}

/// `name[:port]` or `[v6]` with an optional port: a DNS-ish name (letters, digits, `-._~`),
/// an IPv4 address or a bracketed IPv6 literal, and at most 5 port digits.
pub(crate) fn is_valid_host(v: &[u8]) -> bool {
    let (name_ok, port) = if let Some(rest) = v.strip_prefix(b"[") {
        let Some(end) = rest.iter().position(|b| *b == b']') else {
            return false;
        };
        let literal = &rest[..end];
        let ok = !literal.is_empty()
            && literal
                .iter()
                .all(|b| b.is_ascii_hexdigit() || matches!(b, b':' | b'.'));
        match &rest[end + 1..] {
            [] => (ok, None),
            [b':', port @ ..] => (ok, Some(port)),
            _ => return false,
        }
    } else {
        let (name, port) = match v.iter().rposition(|b| *b == b':') {
            Some(i) => (&v[..i], Some(&v[i + 1..])),
            None => (v, None),
        };
        let ok = !name.is_empty()
            && name
                .iter()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'));
        (ok, port)
    };
    name_ok && port.is_none_or(|p| p.len() <= 5 && p.iter().all(u8::is_ascii_digit))
}

/// The client's `X-Request-Id` if it is a sane token, else a fresh one.
pub(crate) fn request_id(headers: &HeaderMap) -> HeaderValue {
    match headers.get(&X_REQUEST_ID) {
        Some(v) if is_sane_request_id(v.as_bytes()) => v.clone(),
        _ => generate_request_id(),
    }
}

/// 1 to 128 characters from the set people use for ids (UUIDs, base64, ULIDs, dotted or
/// colon-separated trace ids); anything else could be a log-injection attempt.
pub(crate) fn is_sane_request_id(v: &[u8]) -> bool {
    !v.is_empty()
        && v.len() <= MAX_REQUEST_ID
        && v.iter().all(|b| {
            b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'+' | b'/' | b'=' | b':')
        })
}

/// A UUID-v4-shaped id (what Heroku's router sends) from a per-process random seed and a
/// counter: unique within the process and unguessable enough for correlation, without a
/// syscall or a lock per request.
pub(crate) fn generate_request_id() -> HeaderValue {
    static SEED: OnceLock<(u64, u64)> = OnceLock::new();
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let (s1, s2) = *SEED.get_or_init(|| {
        let r = RandomState::new();
        (
            r.hash_one(std::process::id()),
            r.hash_one(std::time::SystemTime::now()),
        )
    });
    let n = COUNTER.fetch_add(1, Relaxed);
    let hi = splitmix64(s1 ^ n);
    let lo = splitmix64(s2.wrapping_add(n));
    let bits = (u128::from(hi) << 64 | u128::from(lo)) & !(0xf000u128 << 64) & !(0xc << 60)
        | (0x4000u128 << 64)
        | (0x8u128 << 60);
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = [0u8; 36];
    let mut pos = 0;
    // A byte (two digits) at a time: shifting the u128 once per digit was ~350 instructions
    // per request.
    for (i, b) in bits.to_be_bytes().into_iter().enumerate() {
        if matches!(i, 4 | 6 | 8 | 10) {
            out[pos] = b'-';
            pos += 1;
        }
        out[pos] = HEX[usize::from(b >> 4)];
        out[pos + 1] = HEX[usize::from(b & 0xf)];
        pos += 2;
    }
    // Hex digits and dashes are always a valid header value.
    HeaderValue::from_bytes(&out).unwrap_or_else(|_| HeaderValue::from_static("-"))
}

fn splitmix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                HeaderName::from_bytes(k.as_bytes()).expect("name"),
                HeaderValue::from_str(v).expect("value"),
            );
        }
        h
    }

    #[test]
    fn router_headers_hop_by_hop_removed() {
        let mut h = map(&[
            ("host", "a.test"),
            ("connection", "keep-alive, X-Secret"),
            ("connection", "host"),
            ("keep-alive", "timeout=5"),
            ("x-secret", "1"),
            ("te", "trailers"),
            ("transfer-encoding", "chunked"),
            ("upgrade", "websocket"),
            ("proxy-authorization", "Basic x"),
            ("x-kept", "yes"),
            ("content-length", "3"),
        ]);
        strip_hop_by_hop(&mut h);
        let mut names: Vec<_> = h.keys().map(|k| k.as_str()).collect();
        names.sort();
        assert_eq!(names, ["content-length", "host", "x-kept"]);
    }

    const SPOOFED: &[(&str, &str)] = &[
        ("x-forwarded-for", "1.1.1.1"),
        ("x-forwarded-for", "2.2.2.2, 3.3.3.3"),
        ("x-forwarded-proto", "https"),
        ("x-forwarded-host", "spoofed"),
        ("x-forwarded-port", "443"),
        ("x-real-ip", "6.6.6.6"),
        ("forwarded", "for=6.6.6.6;proto=https"),
    ];

    fn peer(ip: &str, trusted: &[&str]) -> Peer {
        let nets: Vec<IpNet> = trusted.iter().map(|n| n.parse().expect(n)).collect();
        Peer::new(ip.parse().expect("ip"), &nets, 8080, false)
    }

    fn one<'a>(h: &'a HeaderMap, name: &str) -> &'a str {
        assert_eq!(h.get_all(name).iter().count(), 1, "{name}: {h:?}");
        h[name].to_str().expect("ascii")
    }

    #[test]
    fn router_headers_untrusted_peer_claims_are_replaced() {
        let host = HeaderValue::from_static("web.paas.test:8080");
        let untrusted = peer("10.0.0.9", &["127.0.0.1/32"]);
        for pairs in [&[][..], SPOOFED] {
            let mut h = map(pairs);
            add_forwarded(&mut h, &untrusted, &host);
            assert_eq!(one(&h, "x-forwarded-for"), "10.0.0.9");
            assert_eq!(one(&h, "x-real-ip"), "10.0.0.9");
            assert_eq!(one(&h, "x-forwarded-proto"), "http");
            assert_eq!(one(&h, "x-forwarded-host"), "web.paas.test:8080");
            assert_eq!(one(&h, "x-forwarded-port"), "8080");
            assert_eq!(
                one(&h, "forwarded"),
                "for=10.0.0.9;host=\"web.paas.test:8080\";proto=http"
            );
        }
    }

    #[test]
    fn router_headers_forwarded_syntax() {
        let mut h = map(&[]);
        add_forwarded(
            &mut h,
            &peer("2001:db8::1", &[]),
            &HeaderValue::from_static("web.paas.test"),
        );
        assert_eq!(
            one(&h, "forwarded"),
            "for=\"[2001:db8::1]\";host=web.paas.test;proto=http"
        );
        assert_eq!(one(&h, "x-real-ip"), "2001:db8::1");
        // An IPv4-mapped peer (a dual-stack listener) is its IPv4 address.
        let mut h = map(&[]);
        add_forwarded(
            &mut h,
            &peer("::ffff:192.0.2.7", &["192.0.2.0/24"]),
            &HeaderValue::from_static("[::1]:80"),
        );
        assert_eq!(
            one(&h, "forwarded"),
            "for=192.0.2.7;host=\"[::1]:80\";proto=http"
        );
        assert_eq!(one(&h, "x-forwarded-for"), "192.0.2.7");
    }

    #[test]
    fn router_headers_trusted_proxy_claims_are_kept_and_appended() {
        let host = HeaderValue::from_static("web.paas.test");
        let proxy = peer("10.1.2.3", &["127.0.0.1/32", "10.0.0.0/8"]);
        let mut h = map(SPOOFED);
        add_forwarded(&mut h, &proxy, &host);
        assert_eq!(
            one(&h, "x-forwarded-for"),
            "1.1.1.1, 2.2.2.2, 3.3.3.3, 10.1.2.3"
        );
        assert_eq!(one(&h, "x-real-ip"), "6.6.6.6");
        assert_eq!(one(&h, "x-forwarded-proto"), "https");
        assert_eq!(one(&h, "x-forwarded-host"), "spoofed");
        assert_eq!(one(&h, "x-forwarded-port"), "443");
        assert_eq!(
            one(&h, "forwarded"),
            "for=6.6.6.6;proto=https, for=10.1.2.3;host=web.paas.test;proto=http"
        );
        // A trusted proxy that sent nothing gets what an untrusted client would.
        let mut h = map(&[]);
        add_forwarded(&mut h, &proxy, &host);
        assert_eq!(one(&h, "x-forwarded-for"), "10.1.2.3");
        assert_eq!(one(&h, "x-real-ip"), "10.1.2.3");
        assert_eq!(one(&h, "x-forwarded-proto"), "http");
        assert_eq!(one(&h, "x-forwarded-host"), "web.paas.test");
        assert_eq!(one(&h, "x-forwarded-port"), "8080");
        assert_eq!(
            one(&h, "forwarded"),
            "for=10.1.2.3;host=web.paas.test;proto=http"
        );
    }

    #[test]
    fn router_headers_one_valid_host() {
        let origin: Uri = "/x".parse().expect("uri");
        let absolute: Uri = "http://web.paas.test/x".parse().expect("uri");
        let mut h = map(&[("host", "web.paas.test")]);
        assert_eq!(
            request_host(&mut h, &origin),
            Ok(HeaderValue::from_static("web.paas.test"))
        );
        let mut h = map(&[("host", "web.paas.test"), ("host", "other.paas.test")]);
        assert_eq!(request_host(&mut h, &origin), Err(BadHost::Duplicate));
        let mut h = map(&[("host", "web.paas.test"), ("host", "web.paas.test")]);
        assert_eq!(request_host(&mut h, &origin), Err(BadHost::Duplicate));
        let mut h = map(&[]);
        assert_eq!(request_host(&mut h, &origin), Err(BadHost::Missing));
        // Absolute form: the authority is the Host, and a different Host header is refused.
        let mut h = map(&[]);
        assert_eq!(
            request_host(&mut h, &absolute),
            Ok(HeaderValue::from_static("web.paas.test"))
        );
        assert_eq!(h["host"], "web.paas.test");
        let mut h = map(&[("host", "WEB.paas.test")]);
        assert!(request_host(&mut h, &absolute).is_ok());
        let mut h = map(&[("host", "other.paas.test")]);
        assert_eq!(request_host(&mut h, &absolute), Err(BadHost::Disagrees));
        for bad in [
            "", "a b", "a,b", "a/b", "user@a", "a:80:80", "a:123456", "a:x", ":80", "[::1", "[]",
            "[::1]x", "[g::1]",
        ] {
            let mut h = HeaderMap::new();
            h.insert("host", HeaderValue::from_str(bad).expect("value"));
            assert_eq!(
                request_host(&mut h, &origin),
                Err(BadHost::Malformed),
                "{bad:?}"
            );
        }
        for good in [
            "a",
            "web.paas.test.",
            "web.paas.test:8080",
            "a:",
            "127.0.0.1:80",
            "[::1]",
            "[::1]:8080",
            "xn--bcher-kva.example",
            "my_host",
        ] {
            assert!(is_valid_host(good.as_bytes()), "{good}");
        }
    }

    #[test]
    fn router_headers_request_id_kept_or_generated() {
        let kept = request_id(&map(&[("x-request-id", "abc-123_DEF.4:5+6/7=")]));
        assert_eq!(kept, "abc-123_DEF.4:5+6/7=");
        let long = "a".repeat(129);
        for bad in ["", "has space", "semi;colon", "quote\"", long.as_str()] {
            let h = if bad.is_empty() {
                map(&[])
            } else {
                map(&[("x-request-id", bad)])
            };
            let got = request_id(&h);
            assert_ne!(got, bad);
            assert!(is_uuid_v4(got.as_bytes()), "{got:?}");
        }
        assert!(is_sane_request_id("a".repeat(128).as_bytes()));
        let a = generate_request_id();
        let b = generate_request_id();
        assert_ne!(a, b);
    }

    fn is_uuid_v4(v: &[u8]) -> bool {
        v.len() == 36
            && v.iter().enumerate().all(|(i, c)| match i {
                8 | 13 | 18 | 23 => *c == b'-',
                _ => c.is_ascii_hexdigit() && !c.is_ascii_uppercase(),
            })
            && v[14] == b'4'
            && matches!(v[19], b'8' | b'9' | b'a' | b'b')
    }
}
