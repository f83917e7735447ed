//! The routes table: method + path -> a call on a service, and the result -> a response.
//! Holds no business logic; anything beyond decoding input and encoding output belongs in
//! the services.

use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::{HeaderValue, ALLOW, CONTENT_TYPE};
use hyper::{Method, Request, Response, StatusCode};
use serde::Serialize;

use super::body::read_json;
use super::error::ApiError;
use super::State;
use crate::apps::validate;

/// Every response body: whole (JSON) or streamed (run output).
pub type Body = http_body_util::combinators::BoxBody<Bytes, std::convert::Infallible>;

fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into()).boxed()
}

/// Entry point of every request: never fails, errors become JSON error responses.
pub async fn handle(
    state: Arc<State>,
    req: Request<Incoming>,
    peer_uid: Option<u32>,
) -> Response<Body> {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let started = std::time::Instant::now();
    let resp = match dispatch(&state, req, peer_uid).await {
        Ok(r) => r,
        Err(e) => error_response(&e),
    };
    tracing::debug!(%method, %path, status = resp.status().as_u16(), elapsed_ms = started.elapsed().as_millis() as u64, "api request");
    resp
}

async fn dispatch(
    state: &State,
    req: Request<Incoming>,
    peer_uid: Option<u32>,
) -> Result<Response<Body>, ApiError> {
    let Some(rest) = req.uri().path().strip_prefix(paas_api::API_PREFIX) else {
        return Err(not_found(&req));
    };
    let segs: Vec<String> = rest
        .split('/')
        .filter(|s| !s.is_empty())
        .map(percent_decode)
        .collect::<Result<_, _>>()?;
    let segs: Vec<&str> = segs.iter().map(String::as_str).collect();
    super::access::check(state.git.push_uid(), peer_uid, req.method(), &segs)?;
    let reveal = query_flag(req.uri().query(), "reveal");
    let limits = state.limits;
    let apps = &state.apps;
    let m = req.method().clone();

    match (segs.as_slice(), &m) {
        (["health"], &Method::GET) => ok(&paas_api::DaemonHealth {
            status: "ok".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            uptime_secs: state.started.elapsed().as_secs(),
            router: state.router_addr.map(|a| a.to_string()),
            router_tls: state.router_tls_addr.map(|a| a.to_string()),
            connections: state.edge.connections().await.map(|(c, max)| {
                paas_api::RouterConnections {
                    open: c.open,
                    peak: c.peak,
                    max: max as u64,
                    accepted: c.accepted,
                    refused_total: c.refused_total,
                    refused_per_ip: c.refused_per_ip,
                    evicted: c.evicted,
                    header_timeouts: c.header_timeouts,
                    idle_timeouts: c.idle_timeouts,
                }
            }),
        }),
        (["health"], _) => Err(not_allowed("GET")),

        (["apps"], &Method::GET) => ok(&apps.list().await?),
        (["apps"], &Method::POST) => {
            let body: paas_api::CreateApp = read_json(req, limits).await?;
            let app = apps.create(body).await?;
            // Its default domain wants a certificate.
            state.certs.kick();
            created(&app)
        }
        (["apps"], _) => Err(not_allowed("GET, POST")),

        (["certs"], &Method::GET) => ok(&state.certs.list_platform().await?),
        (["certs"], &Method::POST) => {
            let body: paas_api::AddCert = read_json(req, limits).await?;
            created(&state.certs.add_platform(body).await?)
        }
        (["certs"], _) => Err(not_allowed("GET, POST")),
        (["certs", domain], &Method::DELETE) => {
            state.certs.remove_platform(domain.to_string()).await?;
            no_content()
        }
        (["certs", _], _) => Err(not_allowed("DELETE")),

        (["stacks"], &Method::GET) => ok(&paas_api::StackList {
            stacks: state.stacks.list(),
        }),
        (["stacks"], _) => Err(not_allowed("GET")),
        (["stacks", name], &Method::PUT) => {
            let (tx, rx) = tokio::sync::mpsc::channel(16);
            let name = name.to_string();
            let pump = super::body::stream_into(req.into_body(), tx);
            match state.stacks.import(name, rx).await {
                Ok(imported) => created(&imported),
                Err(e) => {
                    let _ = pump.await;
                    Err(e.into())
                }
            }
        }
        (["stacks", _], _) => Err(not_allowed("PUT")),

        (["keys"], &Method::GET) => ok(&state.git.keys().await?),
        (["keys"], &Method::POST) => {
            let body: paas_api::AddKey = read_json(req, limits).await?;
            created(&state.git.add_key(body).await?)
        }
        (["keys"], _) => Err(not_allowed("GET, POST")),
        (["keys", name], &Method::DELETE) => {
            state.git.remove_key(name.to_string()).await?;
            no_content()
        }
        (["keys", _], _) => Err(not_allowed("DELETE")),

        (["git", app], &Method::POST) => {
            let app = app_param(app)?;
            let body: paas_api::GitAccess = read_json(req, limits).await?;
            ok(&state.git.access(app, body).await?)
        }
        (["git", _], _) => Err(not_allowed("POST")),

        (["platform", "backup"], &Method::POST) => {
            let archive = state.platform.create().await?;
            Ok(file_response(&archive).await?)
        }
        (["platform", "backup"], _) => Err(not_allowed("POST")),
        (["platform", "restore"], &Method::POST) => {
            let (tx, rx) = tokio::sync::mpsc::channel(16);
            let pump = super::body::stream_into(req.into_body(), tx);
            match state.platform.restore(rx).await {
                Ok(done) => ok(&done),
                Err(e) => {
                    let _ = pump.await;
                    Err(e.into())
                }
            }
        }
        (["platform", "restore"], _) => Err(not_allowed("POST")),

        (["addons"], &Method::GET) => {
            let app = query_value(req.uri().query(), "app");
            ok(&state.addons.list(app).await?)
        }
        (["addons"], &Method::POST) => {
            let body: paas_api::CreateAddon = read_json(req, limits).await?;
            created(&state.addons.create(body).await?)
        }
        (["addons"], _) => Err(not_allowed("GET, POST")),
        (["addons", name, tail @ ..], _) => {
            let name = name.to_string();
            let addons = &state.addons;
            match (tail, &m) {
                ([], &Method::GET) => ok(&addons.info(name).await?),
                ([], &Method::DELETE) => {
                    let confirm = query_value(req.uri().query(), "confirm");
                    addons.destroy(name, confirm).await?;
                    no_content()
                }
                ([], _) => Err(not_allowed("GET, DELETE")),
                (["links"], &Method::POST) => {
                    let body: paas_api::LinkAddon = read_json(req, limits).await?;
                    created(&addons.link(name, body.app).await?)
                }
                (["links"], _) => Err(not_allowed("POST")),
                (["links", app], &Method::DELETE) => {
                    addons.unlink(name, app.to_string()).await?;
                    no_content()
                }
                (["links", _], _) => Err(not_allowed("DELETE")),
                (["query"], &Method::POST) => {
                    let body: paas_api::AddonQuery = read_json(req, limits).await?;
                    ok(&addons.query(name, body).await?)
                }
                (["query"], _) => Err(not_allowed("POST")),
                (["backups"], &Method::GET) => ok(&addons.backups(name).await?),
                (["backups"], &Method::POST) => created(&addons.backup(name, false).await?),
                (["backups"], _) => Err(not_allowed("GET, POST")),
                (["restore"], &Method::POST) => {
                    let body: paas_api::RestoreBackup = read_json(req, limits).await?;
                    ok(&addons.restore(name, body.backup).await?)
                }
                (["restore"], _) => Err(not_allowed("POST")),
                (["backup-schedule"], &Method::PUT) => {
                    let body: paas_api::BackupSchedule = read_json(req, limits).await?;
                    ok(&addons.set_schedule(name, Some(body)).await?)
                }
                (["backup-schedule"], &Method::DELETE) => {
                    ok(&addons.set_schedule(name, None).await?)
                }
                (["backup-schedule"], _) => Err(not_allowed("PUT, DELETE")),
                _ => Err(not_found(&req)),
            }
        }

        (["apps", app, tail @ ..], _) => {
            let app = app_param(app)?;
            match (tail, &m) {
                ([], &Method::GET) => ok(&apps.info(app).await?),
                ([], &Method::DELETE) => {
                    let delete_volumes = query_flag(req.uri().query(), "delete_volumes");
                    state
                        .volumes
                        .check_destroy(app.clone(), delete_volumes)
                        .await?;
                    state.builds.destroy_app(app.clone()).await?;
                    state.volumes.app_destroyed(&app).await;
                    // Its links went with it; so do their network policy elements.
                    state.addons.app_destroyed().await;
                    no_content()
                }
                ([], _) => Err(not_allowed("GET, DELETE")),

                (["env"], &Method::GET) => ok(&apps.env(app, reveal).await?),
                (["env"], &Method::PATCH) => {
                    let body = read_json(req, limits).await?;
                    let changed = apps.patch_env(app.clone(), body).await?;
                    roll_config(state, app, changed).await
                }
                (["env"], &Method::PUT) => {
                    let body = read_json(req, limits).await?;
                    let changed = apps.replace_env(app.clone(), body).await?;
                    roll_config(state, app, changed).await
                }
                (["env"], _) => Err(not_allowed("GET, PUT, PATCH")),

                (["domains"], &Method::GET) => ok(&apps.domains(app).await?),
                (["domains"], &Method::POST) => {
                    let body: paas_api::AddDomain = read_json(req, limits).await?;
                    let domain = apps.add_domain(app, body.domain).await?;
                    state.certs.kick();
                    created(&domain)
                }
                (["domains"], _) => Err(not_allowed("GET, POST")),
                (["domains", domain], &Method::DELETE) => {
                    apps.remove_domain(app, domain.to_string()).await?;
                    // The domain's certificate went with it.
                    state.certs.publish().await?;
                    no_content()
                }
                (["domains", _], _) => Err(not_allowed("DELETE")),

                (["certs"], &Method::GET) => ok(&state.certs.list(app).await?),
                (["certs"], &Method::POST) => {
                    let body: paas_api::AddCert = read_json(req, limits).await?;
                    created(&state.certs.add(app, body).await?)
                }
                (["certs"], _) => Err(not_allowed("GET, POST")),
                (["certs", "renew"], &Method::POST) => ok(&state.certs.renew(app).await?),
                (["certs", "settings"], &Method::PATCH) => {
                    let body: paas_api::HttpsPatch = read_json(req, limits).await?;
                    ok(&state.certs.set_https(app, body).await?)
                }
                (["certs", domain], &Method::DELETE) => {
                    state.certs.remove(app, domain.to_string()).await?;
                    no_content()
                }
                (["certs", _], _) => Err(not_allowed("DELETE")),

                (["scale"], &Method::POST) => {
                    let body = read_json(req, limits).await?;
                    ok(&state.supervisor.scale(app, body).await?)
                }
                (["scale"], _) => Err(not_allowed("POST")),

                (["ps"] | ["health"], &Method::GET) => ok(&state.supervisor.ps(app).await?),
                (["ps"] | ["health"], _) => Err(not_allowed("GET")),

                (["volumes"], &Method::GET) => ok(&state.volumes.list(app).await?),
                (["volumes"], &Method::POST) => {
                    let body: paas_api::AddVolume = read_json(req, limits).await?;
                    let v = state.volumes.add(app.clone(), body).await?;
                    restart_if_deployed(state, app).await?;
                    created(&v)
                }
                (["volumes"], _) => Err(not_allowed("GET, POST")),
                (["volumes", name], &Method::DELETE) => {
                    state.volumes.remove(app.clone(), name.to_string()).await?;
                    restart_if_deployed(state, app).await?;
                    no_content()
                }
                (["volumes", _], _) => Err(not_allowed("DELETE")),
                (["volumes", name, "backups"], &Method::GET) => {
                    ok(&state.volumes.backups(app, name.to_string()).await?)
                }
                (["volumes", name, "backups"], &Method::POST) => {
                    created(&state.volumes.backup(app, name.to_string()).await?)
                }
                (["volumes", _, "backups"], _) => Err(not_allowed("GET, POST")),
                (["volumes", name, "restore"], &Method::POST) => {
                    let body: paas_api::RestoreBackup = read_json(req, limits).await?;
                    state
                        .volumes
                        .restore(app.clone(), name.to_string(), body.backup)
                        .await?;
                    restart_if_deployed(state, app).await?;
                    no_content()
                }
                (["volumes", _, "restore"], _) => Err(not_allowed("POST")),

                (["restart"], &Method::POST) => ok(&state.supervisor.restart(app).await?),
                (["restart"], _) => Err(not_allowed("POST")),

                (["rollback"], &Method::POST) => {
                    let body: paas_api::RollbackRequest = read_json(req, limits).await?;
                    let to = body.release.as_deref().map(version_param).transpose()?;
                    ok(&state.supervisor.rollback(app, to).await?)
                }
                (["rollback"], _) => Err(not_allowed("POST")),

                (["checks"], &Method::GET) => ok(&state.supervisor.checks(app).await?),
                (["checks"], _) => Err(not_allowed("GET")),
                (["checks", ptype], &Method::PUT) => {
                    let ptype = ptype.to_string();
                    let body: paas_api::HealthCheck = read_json(req, limits).await?;
                    ok(&state.supervisor.set_check(app, ptype, Some(body)).await?)
                }
                (["checks", ptype], &Method::DELETE) => {
                    let ptype = ptype.to_string();
                    ok(&state.supervisor.set_check(app, ptype, None).await?)
                }
                (["checks", _], _) => Err(not_allowed("PUT, DELETE")),

                (["resources"], &Method::GET) => ok(&apps.resources(app).await?),
                (["resources"], &Method::PATCH) => {
                    let body = read_json(req, limits).await?;
                    ok(&apps.set_resources(app, None, body).await?)
                }
                (["resources"], _) => Err(not_allowed("GET, PATCH")),
                (["resources", ptype], &Method::PATCH) => {
                    let ptype = Some(ptype.to_string());
                    let body = read_json(req, limits).await?;
                    ok(&apps.set_resources(app, ptype, body).await?)
                }
                (["resources", _], _) => Err(not_allowed("PATCH")),

                (["cron"], &Method::GET) => ok(&state.cron.list(app).await?),
                (["cron"], _) => Err(not_allowed("GET")),

                (["releases"], &Method::GET) => ok(&apps.releases(app).await?),
                (["releases"], _) => Err(not_allowed("GET")),
                (["releases", version], &Method::GET) => {
                    let version = version_param(version)?;
                    ok(&apps.release(app, version).await?)
                }
                (["releases", _], _) => Err(not_allowed("GET")),

                (["buildpacks"], &Method::PUT) => {
                    let body: paas_api::SetBuildpacks = read_json(req, limits).await?;
                    ok(&apps.set_buildpacks(app, body.buildpacks).await?)
                }
                (["buildpacks"], _) => Err(not_allowed("PUT")),

                (["deploy"], &Method::GET) => ok(&apps.deployments(app).await?),
                (["deploy"], &Method::POST) => {
                    let user = requester(
                        &req,
                        peer_uid,
                        super::access::may_name_user(state.git.push_uid(), peer_uid),
                    )
                    .await;
                    let (tx, rx) = tokio::sync::mpsc::channel(16);
                    let pump = super::body::stream_into(req.into_body(), tx);
                    match state.builds.deploy(app, user, rx).await {
                        Ok(events) => Ok(ndjson(events)),
                        Err(e) => {
                            // Let the client finish sending (bounded) so it reads the answer.
                            let _ = pump.await;
                            Err(e.into())
                        }
                    }
                }
                (["deploy"], _) => Err(not_allowed("GET, POST")),

                (["run"], &Method::POST) => {
                    let body: paas_api::RunRequest = read_json(req, limits).await?;
                    let events = state.oneoffs.run(app, body).await?;
                    Ok(ndjson(events))
                }
                (["run"], _) => Err(not_allowed("POST")),

                (["logs"], &Method::GET) => super::logs::get(state, app, req.uri().query()).await,
                (["logs"], _) => Err(not_allowed("GET")),

                _ => Err(not_found(&req)),
            }
        }
        _ => Err(not_found(&req)),
    }
}

/// A config change made a release: it is rolled out before the answer, so `paas env set`
/// returns once the new config serves (or says why it could not).
/// A volume change reaches running instances through a rolling restart (nothing runs before
/// the first deploy).
async fn restart_if_deployed(state: &State, app: String) -> Result<(), ApiError> {
    match state.supervisor.restart(app).await {
        Ok(_) | Err(crate::supervisor::SupervisorError::NotDeployed(_)) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

async fn roll_config(
    state: &State,
    app: String,
    changed: paas_api::EnvChanged,
) -> Result<Response<Body>, ApiError> {
    if let Some(r) = &changed.release {
        state.supervisor.config_changed(app, r.version).await?;
    }
    ok(&changed)
}

/// App names in paths are validated like in bodies, so `..` or `%2F` never reach a service.
fn app_param(s: &str) -> Result<String, ApiError> {
    validate::app_name(s).map_err(|m| ApiError::bad_request("invalid_name", m))?;
    Ok(s.to_string())
}

/// `3` or `v3`.
fn version_param(s: &str) -> Result<u32, ApiError> {
    s.strip_prefix('v')
        .unwrap_or(s)
        .parse::<u32>()
        .ok()
        .filter(|v| *v > 0)
        .ok_or_else(|| {
            ApiError::bad_request(
                "invalid_version",
                format!("'{s}' is not a release version (e.g. v3)"),
            )
        })
}

/// Who asked, for the record: the Unix user on the socket, plus the name a trusted front end
/// (the git hook) passes in `X-Paas-User`. The uid is looked up on a blocking thread: NSS may
/// read files or ask a directory service.
async fn requester(req: &Request<Incoming>, peer_uid: Option<u32>, may_name: bool) -> String {
    let unix = match peer_uid {
        Some(uid) => tokio::task::spawn_blocking(move || {
            nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid))
                .ok()
                .flatten()
                .map(|u| u.name)
        })
        .await
        .ok()
        .flatten()
        .unwrap_or_else(|| format!("uid {uid}")),
        None => "unknown".into(),
    };
    let via = may_name
        .then(|| req.headers().get("x-paas-user"))
        .flatten()
        .and_then(|v| v.to_str().ok())
        .map(|s| {
            s.chars()
                .filter(|c| !c.is_control())
                .take(64)
                .collect::<String>()
        })
        .filter(|s| !s.is_empty());
    match via {
        Some(name) => format!("{name} ({unix})"),
        None => unix,
    }
}

fn json_response(status: StatusCode, value: &impl Serialize) -> Result<Response<Body>, ApiError> {
    let bytes = serde_json::to_vec(value)
        .map_err(|e| ApiError::internal("encoding a response failed", &e))?;
    let mut resp = Response::new(full(bytes));
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    Ok(resp)
}

fn ok(value: &impl Serialize) -> Result<Response<Body>, ApiError> {
    json_response(StatusCode::OK, value)
}

fn created(value: &impl Serialize) -> Result<Response<Body>, ApiError> {
    json_response(StatusCode::CREATED, value)
}

fn no_content() -> Result<Response<Body>, ApiError> {
    let mut resp = Response::new(full(Bytes::new()));
    *resp.status_mut() = StatusCode::NO_CONTENT;
    Ok(resp)
}

/// Streams a file made for this response (a platform backup), then it is gone: it is
/// unlinked once open, so nothing of it stays behind whatever the client does.
async fn file_response(path: &std::path::Path) -> Result<Response<Body>, ApiError> {
    use tokio::io::AsyncReadExt;
    let opened = tokio::fs::File::open(path).await;
    let _ = std::fs::remove_file(path);
    let mut file = opened.map_err(|e| ApiError::internal("opening the backup", &e))?;
    let len = file
        .metadata()
        .await
        .map_err(|e| ApiError::internal("reading the backup", &e))?
        .len();
    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(8);
    tokio::spawn(async move {
        let mut buf = vec![0u8; 256 * 1024];
        loop {
            match file.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if tx.send(Bytes::copy_from_slice(&buf[..n])).await.is_err() {
                        break;
                    }
                }
            }
        }
    });
    // An exact length: a stream cut short (a read error) fails the response instead of
    // ending it cleanly with a truncated archive.
    let mut resp = Response::new(BytesBody(rx, len).boxed());
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/gzip"));
    Ok(resp)
}

struct BytesBody(tokio::sync::mpsc::Receiver<Bytes>, u64);

impl hyper::body::Body for BytesBody {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, Self::Error>>> {
        self.0
            .poll_recv(cx)
            .map(|b| b.map(|b| Ok(hyper::body::Frame::data(b))))
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        hyper::body::SizeHint::with_exact(self.1)
    }
}

/// Streams events as NDJSON, one line per event, as they happen. The body reads the channel
/// itself, so when hyper drops it (client gone) the sender sees the channel close at once.
pub(super) fn ndjson<T: Serialize + Send + 'static>(
    events: tokio::sync::mpsc::Receiver<T>,
) -> Response<Body> {
    let mut resp = Response::new(NdjsonBody(events).boxed());
    resp.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("application/x-ndjson"),
    );
    resp
}

struct NdjsonBody<T>(tokio::sync::mpsc::Receiver<T>);

impl<T: Serialize> hyper::body::Body for NdjsonBody<T> {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, Self::Error>>> {
        loop {
            return match self.0.poll_recv(cx) {
                std::task::Poll::Ready(Some(ev)) => {
                    let Ok(mut line) = serde_json::to_vec(&ev) else {
                        continue;
                    };
                    line.push(b'\n');
                    std::task::Poll::Ready(Some(Ok(hyper::body::Frame::data(Bytes::from(line)))))
                }
                std::task::Poll::Ready(None) => std::task::Poll::Ready(None),
                std::task::Poll::Pending => std::task::Poll::Pending,
            };
        }
    }
}

pub fn error_response(e: &ApiError) -> Response<Body> {
    let bytes = serde_json::to_vec(&e.body()).unwrap_or_else(|_| b"{}".to_vec());
    let mut resp = Response::new(full(bytes));
    *resp.status_mut() = e.status;
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    if let Some(allow) = e.allow {
        resp.headers_mut()
            .insert(ALLOW, HeaderValue::from_static(allow));
    }
    resp
}

fn not_found(req: &Request<Incoming>) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "not_found",
        format!("no such endpoint: {} {}", req.method(), req.uri().path()),
    )
}

fn not_allowed(allow: &'static str) -> ApiError {
    ApiError {
        allow: Some(allow),
        ..ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            format!("method not allowed here; use {allow}"),
        )
    }
}

/// The value of `name=...` in a query string, percent-decoded.
fn query_value(query: Option<&str>, name: &str) -> Option<String> {
    query?
        .split('&')
        .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
        .and_then(|v| percent_decode(v).ok())
}

fn query_flag(query: Option<&str>, name: &str) -> bool {
    query.is_some_and(|q| {
        q.split('&')
            .any(|kv| kv == name || kv == format!("{name}=true") || kv == format!("{name}=1"))
    })
}

fn percent_decode(s: &str) -> Result<String, ApiError> {
    let bad = || ApiError::bad_request("bad_path", format!("malformed path segment '{s}'"));
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = s.get(i + 1..i + 3).ok_or_else(bad)?;
            out.push(u8::from_str_radix(hex, 16).map_err(|_| bad())?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| bad())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decoding() {
        assert_eq!(percent_decode("a%2Fb").expect("ok"), "a/b");
        assert!(percent_decode("a%2").is_err());
        assert!(percent_decode("%ff").is_err());
        assert!(query_flag(Some("x=1&reveal=true"), "reveal"));
        assert!(!query_flag(Some("reveal=false"), "reveal"));
        assert!(!query_flag(None, "reveal"));
    }
}
