//! Header rewriting at the proxy hop: hop-by-hop removal, `X-Forwarded-*`, `X-Request-Id`.
//!
//! Owns which headers cross the hop and what the router adds. It must not look at bodies,
//! routes or connections; everything here is a pure function of a header map.

use std::hash::{BuildHasher, RandomState};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::OnceLock;

use hyper::header::{self, HeaderMap, HeaderName, HeaderValue};

pub(crate) static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
pub(crate) static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
pub(crate) static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
pub(crate) static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
static KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
static PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");

const MAX_REQUEST_ID: usize = 128;

/// Removes the headers that describe one connection rather than the message (RFC 9110
/// §7.6.1), including any the `Connection` header names. `Host` is never removed, even if
/// named: the upstream needs it, and a client must not be able to strip it. Our own
/// forwarding headers are set after this runs, so naming them achieves nothing either.
pub(crate) fn strip_hop_by_hop(headers: &mut HeaderMap) {
    // `Connection` is rare from HTTP/1.1 clients and in upstream responses, so the common path
    // is a few failed lookups and no allocation.
    if headers.contains_key(header::CONNECTION) {
        let named = headers_named(headers.get_all(header::CONNECTION).iter());
        headers.remove(header::CONNECTION);
        for name in named {
            if name != header::HOST {
                headers.remove(&name);
            }
        }
    }
    for name in [
        &KEEP_ALIVE,
        &PROXY_CONNECTION,
        &header::TE,
        &header::TRAILER,
        &header::TRANSFER_ENCODING,
        &header::UPGRADE,
        &header::PROXY_AUTHENTICATE,
        &header::PROXY_AUTHORIZATION,
    ] {
        headers.remove(name);
    }
}

fn headers_named<'a>(values: impl Iterator<Item = &'a HeaderValue>) -> Vec<HeaderName> {
    values
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|t| HeaderName::from_bytes(t.trim().as_bytes()).ok())
        .collect()
}

/// Sets what the upstream should know about the original request: the client address
/// appended to `X-Forwarded-For`, `X-Forwarded-Proto: http` and `X-Forwarded-Host`. Proto and
/// Host are overwritten: the router is the edge, so a client's claim about them is not news.
pub(crate) fn add_forwarded(headers: &mut HeaderMap, client_ip: &HeaderValue, host: &HeaderValue) {
    let xff = match headers.get(&X_FORWARDED_FOR) {
        None => client_ip.clone(),
        Some(_) => {
            let mut joined = Vec::with_capacity(64);
            for v in headers.get_all(&X_FORWARDED_FOR) {
                joined.extend_from_slice(v.as_bytes());
                joined.extend_from_slice(b", ");
            }
            joined.extend_from_slice(client_ip.as_bytes());
            HeaderValue::from_bytes(&joined).unwrap_or_else(|_| client_ip.clone())
        }
    };
    headers.insert(X_FORWARDED_FOR.clone(), xff);
    headers.insert(X_FORWARDED_PROTO.clone(), HeaderValue::from_static("http"));
    headers.insert(X_FORWARDED_HOST.clone(), host.clone());
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
    let mut out = [0u8; 36];
    let mut pos = 0;
    for i in (0..32).rev() {
        if matches!(pos, 8 | 13 | 18 | 23) {
            out[pos] = b'-';
            pos += 1;
        }
        out[pos] = b"0123456789abcdef"[((bits >> (i * 4)) & 0xf) as usize];
        pos += 1;
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

    #[test]
    fn router_headers_forwarded_appended_and_overwritten() {
        let ip = HeaderValue::from_static("10.0.0.9");
        let host = HeaderValue::from_static("web.paas.test:8080");
        let mut h = map(&[]);
        add_forwarded(&mut h, &ip, &host);
        assert_eq!(h[&X_FORWARDED_FOR], "10.0.0.9");
        assert_eq!(h[&X_FORWARDED_PROTO], "http");
        assert_eq!(h[&X_FORWARDED_HOST], "web.paas.test:8080");

        let mut h = map(&[
            ("x-forwarded-for", "1.1.1.1"),
            ("x-forwarded-for", "2.2.2.2, 3.3.3.3"),
            ("x-forwarded-proto", "https"),
            ("x-forwarded-host", "spoofed"),
        ]);
        add_forwarded(&mut h, &ip, &host);
        assert_eq!(h[&X_FORWARDED_FOR], "1.1.1.1, 2.2.2.2, 3.3.3.3, 10.0.0.9");
        assert_eq!(h.get_all(&X_FORWARDED_FOR).iter().count(), 1);
        assert_eq!(h[&X_FORWARDED_PROTO], "http");
        assert_eq!(h[&X_FORWARDED_HOST], "web.paas.test:8080");
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
