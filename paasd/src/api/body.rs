//! Reading request bodies safely: a byte limit enforced before and during reading, a JSON
//! nesting limit checked before serde sees the bytes, and errors that say which limit hit.

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::{Request, StatusCode};
use serde::de::DeserializeOwned;

use super::error::ApiError;

#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_body_bytes: usize,
    pub max_json_depth: usize,
}

fn too_large(max: usize) -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "body_too_large",
        format!("request body is larger than the limit of {max} bytes"),
    )
}

/// Collects the body, refusing more than `max_body_bytes` (declared or actual).
pub async fn read_limited(req: Request<Incoming>, limits: Limits) -> Result<Bytes, ApiError> {
    let max = limits.max_body_bytes;
    let declared = req
        .headers()
        .get(hyper::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let mut body = req.into_body();
    if declared.is_some_and(|n| n > max as u64) {
        drain(body, 0).await;
        return Err(too_large(max));
    }
    let mut buf = bytes::BytesMut::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| {
            ApiError::bad_request("bad_body", format!("could not read the request body: {e}"))
        })?;
        if let Ok(data) = frame.into_data() {
            if buf.len() + data.len() > max {
                drain(body, buf.len() + data.len()).await;
                return Err(too_large(max));
            }
            buf.extend_from_slice(&data);
        }
    }
    Ok(buf.freeze())
}

/// Reads and discards what is left of a refused body, so a client still sending it gets our
/// answer instead of a broken pipe. Bounded: past `DRAIN_MAX_BYTES` or `DRAIN_TIMEOUT` the
/// connection is simply closed.
async fn drain(mut body: Incoming, already: usize) {
    const DRAIN_MAX_BYTES: usize = 64 * 1024 * 1024;
    const DRAIN_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);
    let mut seen = already;
    let _ = tokio::time::timeout(DRAIN_TIMEOUT, async {
        while let Some(Ok(frame)) = body.frame().await {
            seen += frame.data_ref().map_or(0, Bytes::len);
            if seen > DRAIN_MAX_BYTES {
                break;
            }
        }
    })
    .await;
}

/// Reads and parses a JSON body into `T`.
pub async fn read_json<T: DeserializeOwned>(
    req: Request<Incoming>,
    limits: Limits,
) -> Result<T, ApiError> {
    let bytes = read_limited(req, limits).await?;
    parse_json(&bytes, limits.max_json_depth)
}

pub fn parse_json<T: DeserializeOwned>(bytes: &[u8], max_depth: usize) -> Result<T, ApiError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::bad_request(
            "invalid_json",
            "request body is empty; this endpoint expects a JSON object",
        ));
    }
    if json_depth(bytes) > max_depth {
        return Err(ApiError::bad_request(
            "invalid_json",
            format!("JSON is nested deeper than {max_depth} levels"),
        ));
    }
    serde_json::from_slice(bytes).map_err(|e| {
        let what = if e.is_data() {
            "request body has the wrong shape"
        } else {
            "request body is not valid JSON"
        };
        ApiError::bad_request("invalid_json", format!("{what}: {e}"))
    })
}

/// Maximum bracket nesting, ignoring brackets inside strings. Linear, no allocation.
fn json_depth(bytes: &[u8]) -> usize {
    let (mut depth, mut max, mut in_str, mut escaped) = (0usize, 0usize, false, false);
    for &b in bytes {
        if in_str {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_str = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_str = true,
            b'[' | b'{' => {
                depth += 1;
                max = max.max(depth);
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    max
}

/// Streams a request body into `tx` chunk by chunk (an upload the receiver consumes as it
/// arrives). When the receiver stops early (it refused the upload), the rest is drained like a
/// refused JSON body, so the client gets the answer.
pub fn stream_into(
    mut body: Incoming,
    tx: tokio::sync::mpsc::Sender<crate::tarball::Chunk>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut seen = 0usize;
        loop {
            match body.frame().await {
                Some(Ok(frame)) => {
                    let Ok(data) = frame.into_data() else {
                        continue;
                    };
                    seen += data.len();
                    if tx.send(Ok(data)).await.is_err() {
                        drain(body, seen).await;
                        return;
                    }
                }
                Some(Err(e)) => {
                    let _ = tx
                        .send(Err(std::io::Error::other(format!(
                            "the upload was interrupted: {e}"
                        ))))
                        .await;
                    return;
                }
                None => return,
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn depth_ignores_strings() {
        assert_eq!(json_depth(br#"{"a": "[[[[{{{"}"#), 1);
        assert_eq!(json_depth(br#"{"a": "\"[["}"#), 1);
        assert_eq!(json_depth(b"[[[]]]"), 3);
    }

    #[test]
    fn parse_errors_are_specific() {
        let e = parse_json::<serde_json::Value>(b"{\"a\":", 16).expect_err("bad");
        assert!(e.message.contains("not valid JSON"), "{}", e.message);
        let deep = "[".repeat(100) + &"]".repeat(100);
        let e = parse_json::<serde_json::Value>(deep.as_bytes(), 16).expect_err("deep");
        assert!(e.message.contains("deeper than 16"), "{}", e.message);
        let e = parse_json::<paas_api::CreateApp>(b"[1]", 16).expect_err("shape");
        assert!(e.message.contains("wrong shape"), "{}", e.message);
        assert!(parse_json::<serde_json::Value>(b"  ", 16).is_err());
    }
}
