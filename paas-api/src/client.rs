//! The Unix-socket client: one HTTP/1.1 request per call over `tokio::net::UnixStream`.
//! Owns turning transport and API failures into [`ClientError`]s a person can act on;
//! must not know any endpoint's meaning (callers pass method, path and body).

use std::io;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::header::{HeaderMap, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::types::ErrorBody;

/// What [`Client::send_body`] accepts and what a caller needs to build a body of its own.
pub use hyper::body::{Body, Frame, Incoming, SizeHint};
pub use hyper::header;

/// The longest an upload waits for `100 Continue` before sending its body anyway (RFC 9110
/// §10.1.1: a client should not wait indefinitely).
pub const CONTINUE_WAIT: std::time::Duration = std::time::Duration::from_secs(1);

/// Where the daemon listens when nothing else is said.
pub const DEFAULT_SOCKET: &str = "/run/paas/paasd.sock";

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot reach paasd: {} does not exist (is paasd running? start it with `systemctl start paasd`, or pass --socket / PAAS_SOCKET)", .0.display())]
    NoSocket(PathBuf),
    #[error("cannot reach paasd: {} refused the connection (paasd is not running; start it with `systemctl start paasd`)", .0.display())]
    Refused(PathBuf),
    #[error("cannot reach paasd: permission denied on {} (run as root or as a member of group 'paas')", .0.display())]
    PermissionDenied(PathBuf),
    #[error("cannot reach paasd at {}: {source}", .path.display())]
    Connect { path: PathBuf, source: io::Error },
    #[error("talking to paasd failed: {0}")]
    Http(#[from] hyper::Error),
    #[error("could not encode the request: {0}")]
    Encode(serde_json::Error),
    #[error("paasd sent a response this client does not understand (HTTP {status}): {source}")]
    Decode {
        status: StatusCode,
        source: serde_json::Error,
    },
    /// The daemon answered with an error body.
    #[error("{message}")]
    Api {
        status: StatusCode,
        code: String,
        message: String,
    },
}

impl ClientError {
    /// The API error code, when the daemon answered with one.
    pub fn code(&self) -> Option<&str> {
        match self {
            ClientError::Api { code, .. } => Some(code),
            _ => None,
        }
    }

    /// True when the daemon could not be reached at all.
    pub fn is_unreachable(&self) -> bool {
        matches!(
            self,
            ClientError::NoSocket(_)
                | ClientError::Refused(_)
                | ClientError::PermissionDenied(_)
                | ClientError::Connect { .. }
        )
    }
}

/// A handle on one daemon socket. Cheap to clone; connects per request.
#[derive(Debug, Clone)]
pub struct Client {
    socket: PathBuf,
}

impl Client {
    pub fn new(socket: impl Into<PathBuf>) -> Self {
        Client {
            socket: socket.into(),
        }
    }

    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// Sends a request with an optional JSON body and decodes a JSON answer.
    pub async fn json<B: Serialize, T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
    ) -> Result<T, ClientError> {
        let bytes = match body {
            Some(b) => Some(Bytes::from(
                serde_json::to_vec(b).map_err(ClientError::Encode)?,
            )),
            None => None,
        };
        let resp = self.send(method, path, bytes, "application/json").await?;
        let status = resp.status();
        let body = resp.into_body().collect().await?.to_bytes();
        decode(status, &body)
    }

    pub async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        self.json::<(), T>(Method::GET, path, None).await
    }

    /// Sends a request whose successful answer has no body of interest (e.g. 204).
    pub async fn call<B: Serialize>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
    ) -> Result<StatusCode, ClientError> {
        let bytes = match body {
            Some(b) => Some(Bytes::from(
                serde_json::to_vec(b).map_err(ClientError::Encode)?,
            )),
            None => None,
        };
        let resp = self.send(method, path, bytes, "application/json").await?;
        let status = resp.status();
        let body = resp.into_body().collect().await?.to_bytes();
        if status.is_success() {
            Ok(status)
        } else {
            Err(api_error(status, &body))
        }
    }

    /// Sends raw bytes and hands back the live response (for streaming endpoints and tests).
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<Bytes>,
        content_type: &str,
    ) -> Result<Response<Incoming>, ClientError> {
        let mut headers = HeaderMap::new();
        if body.is_some() {
            headers.insert(header::CONTENT_TYPE, self.header_value(content_type)?);
        }
        self.send_body(method, path, headers, Full::new(body.unwrap_or_default()))
            .await
    }

    /// Sends any request body (e.g. a stream of chunks the caller produces while the request
    /// is under way) with the given headers, and hands back the live response. A body without
    /// an exact size goes out chunked. When the body fails, the request fails with
    /// [`ClientError::Http`]; the caller knows better than hyper why its body failed.
    pub async fn send_body<B>(
        &self,
        method: Method,
        path: &str,
        headers: HeaderMap,
        body: B,
    ) -> Result<Response<Incoming>, ClientError>
    where
        B: Body + Send + 'static,
        B::Data: Send,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        self.request(method, path, headers, body, None).await
    }

    /// [`Client::send_body`] for an upload: the request says `Expect: 100-continue` and its
    /// body waits for paasd's `100 Continue` (sent once paasd starts reading it), or at most
    /// [`CONTINUE_WAIT`]. A request paasd refuses before reading (a missing app, no access)
    /// then gets its refusal, instead of a broken pipe that can race the refusal and win.
    pub async fn send_upload<B>(
        &self,
        method: Method,
        path: &str,
        mut headers: HeaderMap,
        body: B,
    ) -> Result<Response<Incoming>, ClientError>
    where
        B: Body + Send + Unpin + 'static,
        B::Data: Send,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        headers.insert(header::EXPECT, HeaderValue::from_static("100-continue"));
        let (tx, rx) = tokio::sync::oneshot::channel();
        let gated = Gated {
            gate: Some(Box::pin(async move {
                let _ = tokio::time::timeout(CONTINUE_WAIT, rx).await;
            })),
            inner: body,
        };
        self.request(method, path, headers, gated, Some(tx)).await
    }

    async fn request<B>(
        &self,
        method: Method,
        path: &str,
        headers: HeaderMap,
        body: B,
        on_continue: Option<tokio::sync::oneshot::Sender<()>>,
    ) -> Result<Response<Incoming>, ClientError>
    where
        B: Body + Send + 'static,
        B::Data: Send,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let stream = tokio::net::UnixStream::connect(&self.socket)
            .await
            .map_err(|e| self.connect_error(e))?;
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        // The connection task ends by itself when the response body is dropped or finished.
        tokio::spawn(async move {
            let _ = conn.await;
        });
        let mut req = Request::builder()
            .method(method)
            .uri(path)
            .header(header::HOST, "paasd");
        if let Some(h) = req.headers_mut() {
            h.extend(headers);
        }
        let mut req = req.body(body).map_err(|e| self.invalid_request(e))?;
        if let Some(tx) = on_continue {
            let tx = std::sync::Mutex::new(Some(tx));
            hyper::ext::on_informational(&mut req, move |res| {
                if res.status() == StatusCode::CONTINUE {
                    if let Some(tx) = tx.lock().ok().and_then(|mut t| t.take()) {
                        let _ = tx.send(());
                    }
                }
            });
        }
        Ok(sender.send_request(req).await?)
    }

    fn header_value(&self, value: &str) -> Result<HeaderValue, ClientError> {
        HeaderValue::from_str(value).map_err(|e| self.invalid_request(e))
    }

    fn invalid_request(
        &self,
        e: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> ClientError {
        ClientError::Connect {
            path: self.socket.clone(),
            source: io::Error::new(io::ErrorKind::InvalidInput, e),
        }
    }

    fn connect_error(&self, e: io::Error) -> ClientError {
        let path = self.socket.clone();
        match e.kind() {
            io::ErrorKind::NotFound => ClientError::NoSocket(path),
            io::ErrorKind::ConnectionRefused if is_socket(&path) => ClientError::Refused(path),
            io::ErrorKind::PermissionDenied => ClientError::PermissionDenied(path),
            _ => ClientError::Connect { path, source: e },
        }
    }
}

fn is_socket(path: &Path) -> bool {
    use std::os::unix::fs::FileTypeExt;
    std::fs::metadata(path).is_ok_and(|m| m.file_type().is_socket())
}

/// Decodes a JSON answer, or the error body of a non-2xx one.
pub fn decode<T: DeserializeOwned>(status: StatusCode, body: &[u8]) -> Result<T, ClientError> {
    if !status.is_success() {
        return Err(api_error(status, body));
    }
    serde_json::from_slice(body).map_err(|source| ClientError::Decode { status, source })
}

/// Turns a non-2xx answer into [`ClientError::Api`], tolerating bodies that are not ours.
pub fn api_error(status: StatusCode, body: &[u8]) -> ClientError {
    match serde_json::from_slice::<ErrorBody>(body) {
        Ok(e) => ClientError::Api {
            status,
            code: e.error.code,
            message: e.error.message,
        },
        Err(_) => ClientError::Api {
            status,
            code: "unexpected_response".into(),
            message: format!(
                "paasd answered HTTP {status}: {}",
                String::from_utf8_lossy(body).trim()
            ),
        },
    }
}

/// Percent-encodes one path segment (app names and domains are already safe; this guards the rest).
pub fn segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// A request body that yields nothing until its gate opens.
struct Gated<B> {
    gate: Option<std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>>,
    inner: B,
}

impl<B: Body + Unpin> Body for Gated<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<Frame<B::Data>, B::Error>>> {
        if let Some(gate) = self.gate.as_mut() {
            std::task::ready!(gate.as_mut().poll(cx));
            self.gate = None;
        }
        std::pin::Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
