//! The real `paas` binary against a fake paasd on a Unix socket: the streamed upload, the
//! NDJSON deploy stream, exit codes, what goes to stdout and what to stderr. The fake speaks
//! the API contract with `paas_api` types, so a wire change breaks these tests too.

#![forbid(unsafe_code)]

use std::collections::HashMap;
use std::convert::Infallible;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::HeaderMap;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use paas_api::{
    App, AppStatus, DeployEvent, DeployPhase, Deployment, DeploymentStatus, PhaseTiming, Release,
    ReleaseStatus,
};
use serde_json::{json, Value};

/// What the fake answers to `POST .../deploy`.
#[derive(Clone)]
enum Deploy {
    /// Reads the whole body, then 200 with these NDJSON lines.
    Events(Vec<String>),
    /// Reads the whole body, then this error.
    Refuse(StatusCode, &'static str, &'static str),
    /// Answers this error without reading the body.
    RefuseUnread(StatusCode, &'static str, &'static str),
}

struct Seen {
    method: Method,
    path: String,
    headers: HeaderMap,
    body: Bytes,
}

struct Fake {
    _dir: tempfile::TempDir,
    socket: PathBuf,
    seen: Arc<Mutex<Vec<Seen>>>,
}

struct Routes {
    deploy: Deploy,
    /// `METHOD path` -> (status, JSON body).
    json: HashMap<String, (StatusCode, Value)>,
}

fn error_body(code: &str, message: &str) -> Bytes {
    Bytes::from(json!({"error": {"code": code, "message": message}}).to_string())
}

fn respond(status: StatusCode, content_type: &str, body: Bytes) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(body));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        content_type.parse().expect("header"),
    );
    resp
}

async fn handle(
    req: Request<Incoming>,
    routes: Arc<Routes>,
    seen: Arc<Mutex<Vec<Seen>>>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let headers = req.headers().clone();
    let is_deploy = method == Method::POST && path.ends_with("/deploy");
    if is_deploy {
        if let Deploy::RefuseUnread(status, code, message) = routes.deploy {
            seen.lock().expect("lock").push(Seen {
                method,
                path,
                headers,
                body: Bytes::new(),
            });
            return Ok(respond(
                status,
                "application/json",
                error_body(code, message),
            ));
        }
    }
    let body = match req.into_body().collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => Bytes::new(),
    };
    seen.lock().expect("lock").push(Seen {
        method: method.clone(),
        path: path.clone(),
        headers,
        body,
    });
    if is_deploy {
        return Ok(match &routes.deploy {
            Deploy::Events(lines) => {
                let mut text = String::new();
                for line in lines {
                    text.push_str(line);
                    text.push('\n');
                }
                respond(StatusCode::OK, "application/x-ndjson", Bytes::from(text))
            }
            Deploy::Refuse(status, code, message) | Deploy::RefuseUnread(status, code, message) => {
                respond(*status, "application/json", error_body(code, message))
            }
        });
    }
    Ok(match routes.json.get(&format!("{method} {path}")) {
        Some((status, value)) => {
            respond(*status, "application/json", Bytes::from(value.to_string()))
        }
        None => respond(
            StatusCode::NOT_FOUND,
            "application/json",
            error_body("not_found", "no such endpoint"),
        ),
    })
}

impl Fake {
    async fn start(deploy: Deploy, json: Vec<(&str, StatusCode, Value)>) -> Fake {
        let dir = tempfile::tempdir().expect("tempdir");
        let socket = dir.path().join("paasd.sock");
        let listener = tokio::net::UnixListener::bind(&socket).expect("bind");
        let routes = Arc::new(Routes {
            deploy,
            json: json
                .into_iter()
                .map(|(k, s, v)| (k.to_owned(), (s, v)))
                .collect(),
        });
        let seen = Arc::new(Mutex::new(Vec::new()));
        let seen2 = seen.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let routes = routes.clone();
                let seen = seen2.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |req| handle(req, routes.clone(), seen.clone()));
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Fake {
            _dir: dir,
            socket,
            seen,
        }
    }

    fn deploy_request(&self) -> Seen {
        let mut seen = self.seen.lock().expect("lock");
        let i = seen
            .iter()
            .position(|s| s.method == Method::POST && s.path.ends_with("/deploy"))
            .expect("a deploy request");
        seen.remove(i)
    }

    fn requests(&self) -> Vec<(Method, String, Bytes)> {
        self.seen
            .lock()
            .expect("lock")
            .iter()
            .map(|s| (s.method.clone(), s.path.clone(), s.body.clone()))
            .collect()
    }
}

/// Runs `paas --socket SOCKET ARGS` (stdin, stdout, stderr not a terminal).
async fn paas(socket: &Path, args: &[&str]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_paas"));
    cmd.arg("--socket").arg(socket).args(args);
    cmd.env_remove("PAAS_SOCKET");
    tokio::task::spawn_blocking(move || cmd.output().expect("run paas"))
        .await
        .expect("join")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Asserts the exit code and that stderr mentions `needle`.
fn fails(out: &std::process::Output, code: i32, needle: &str) {
    assert_eq!(out.status.code(), Some(code), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains(needle),
        "stderr lacks {needle:?}: {}",
        text(&out.stderr)
    );
}

fn event(e: DeployEvent) -> String {
    serde_json::to_string(&e).expect("serialize")
}

fn deployment(version: Option<u32>, status: DeploymentStatus) -> Deployment {
    Deployment {
        id: 7,
        status,
        version,
        source_sha256: "ab".repeat(32),
        source_bytes: 1234,
        buildpacks: vec!["nodejs".to_owned()],
        user: "alice".to_owned(),
        started_at: "2026-01-01T12:00:00Z".to_owned(),
        finished_at: Some("2026-01-01T12:00:13Z".to_owned()),
        phases: vec![
            PhaseTiming {
                phase: DeployPhase::Receive,
                ms: 345,
            },
            PhaseTiming {
                phase: DeployPhase::Compile,
                ms: 12_345,
            },
        ],
        slug_sha256: Some("cd".repeat(32)),
        slug_bytes: Some(5 * 1024 * 1024),
        error: None,
    }
}

fn release(version: u32) -> Release {
    Release {
        version,
        description: "Deploy abababab".to_owned(),
        status: ReleaseStatus::Succeeded,
        created_at: "2026-01-01T12:00:13Z".to_owned(),
        config_keys: vec!["DATABASE_URL".to_owned()],
        process_types: [("web".to_owned(), "npm start".to_owned())].into(),
        deployment: Some(deployment(Some(version), DeploymentStatus::Succeeded)),
        rollout: vec![],
    }
}

fn app_json(name: &str, buildpacks: &[&str]) -> Value {
    serde_json::to_value(App {
        name: name.to_owned(),
        stack: "host".to_owned(),
        buildpacks: buildpacks.iter().map(|s| (*s).to_owned()).collect(),
        created_at: "2026-01-01T11:00:00Z".to_owned(),
        status: AppStatus::Deployed,
        release: Some(3),
        formation: [("web".to_owned(), 1)].into(),
        domains: vec![],
        urls: vec![format!("http://{name}.paas.test")],
        uid: Some(1_900_000_000),
        resources: None,
    })
    .expect("app")
}

fn successful_build() -> Vec<String> {
    vec![
        event(DeployEvent::Started { id: 7 }),
        event(DeployEvent::Phase {
            phase: DeployPhase::Receive,
            ms: 345,
        }),
        event(DeployEvent::Output {
            line: "-----> Node.js app detected".to_owned(),
        }),
        event(DeployEvent::Output {
            line: "       added 3 packages".to_owned(),
        }),
        event(DeployEvent::Phase {
            phase: DeployPhase::Compile,
            ms: 12_345,
        }),
        // paasd's closing line (kept in its build log); the CLI says it once, on stdout.
        event(DeployEvent::Output {
            line: "-----> Released v3 of web".to_owned(),
        }),
        // Built as JSON so this test does not care whether the variant boxes its release.
        json!({"type": "done", "release": release(3)}).to_string(),
    ]
}

/// `paas deploy web --source DIR` of a fresh [`source_tree`].
async fn deploy_tree(socket: &Path) -> Output {
    let src = source_tree();
    paas(
        socket,
        &["deploy", "web", "--source", &src.path().to_string_lossy()],
    )
    .await
}

fn source_tree() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path();
    std::fs::write(root.join("package.json"), "{}").expect("write");
    std::fs::write(root.join(".gitignore"), "node_modules/\n").expect("write");
    std::fs::write(root.join(".paasignore"), "*.md\n").expect("write");
    std::fs::write(root.join("README.md"), "hi").expect("write");
    std::fs::create_dir_all(root.join("node_modules/x")).expect("mkdir");
    std::fs::write(root.join("node_modules/x/i.js"), "").expect("write");
    std::fs::create_dir_all(root.join(".git")).expect("mkdir");
    std::fs::write(root.join(".git/HEAD"), "ref").expect("write");
    dir
}

fn tar_names(gz: &[u8]) -> Vec<String> {
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(gz));
    archive
        .entries()
        .expect("entries")
        .map(|e| {
            let mut e = e.expect("entry");
            let name = e.path().expect("path").to_string_lossy().into_owned();
            let mut sink = Vec::new();
            e.read_to_end(&mut sink).expect("read");
            name
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn deploy_of_a_directory_streams_a_tarball_and_prints_the_release() {
    let fake = Fake::start(
        Deploy::Events(successful_build()),
        vec![("GET /api/v1/apps/web", StatusCode::OK, app_json("web", &[]))],
    )
    .await;
    let out = deploy_tree(&fake.socket).await;
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert_eq!(stdout, "Released v3 of web\nhttp://web.paas.test\n");
    assert!(!stderr.contains("Released"), "said twice: {stderr}");
    assert!(
        stderr.starts_with("-----> Uploading source from ") && stderr.contains("(3 files)\n"),
        "{stderr}"
    );
    assert!(stderr.contains(" uploaded\n"), "{stderr}");
    assert!(
        stderr.contains(
            "       receive: 345ms\n-----> Node.js app detected\n       added 3 packages\n       compile: 12.3s\n"
        ),
        "{stderr}"
    );
    let req = fake.deploy_request();
    assert_eq!(req.path, "/api/v1/apps/web/deploy");
    assert_eq!(req.headers["content-type"], "application/gzip");
    assert_eq!(req.headers["transfer-encoding"], "chunked");
    // The body waits for the server to read it (see the refusal test below).
    assert_eq!(req.headers["expect"], "100-continue");
    assert_eq!(
        tar_names(&req.body),
        [".gitignore", ".paasignore", "package.json"]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn deploy_of_a_tarball_sends_it_unchanged_with_its_length() {
    let fake = Fake::start(Deploy::Events(successful_build()), vec![]).await;
    let src = source_tree();
    let tgz = src.path().join("app.tgz");
    let bytes: Vec<u8> = [0x1f, 0x8b]
        .into_iter()
        .chain((0..100_000u32).map(|i| (i % 251) as u8))
        .collect();
    std::fs::write(&tgz, &bytes).expect("write");
    let out = paas(
        &fake.socket,
        &["deploy", "web", "--source", &tgz.to_string_lossy()],
    )
    .await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    // No app info to be had: the release line alone.
    assert_eq!(text(&out.stdout), "Released v3 of web\n");
    assert!(
        text(&out.stderr).starts_with("-----> Uploading "),
        "{}",
        text(&out.stderr)
    );
    let req = fake.deploy_request();
    assert_eq!(
        req.headers["content-length"],
        bytes.len().to_string().as_str()
    );
    assert_eq!(req.body.as_ref(), bytes.as_slice());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failed_build_exits_1_with_the_message() {
    let fake = Fake::start(
        Deploy::Events(vec![
            event(DeployEvent::Started { id: 8 }),
            event(DeployEvent::Output {
                line: "-----> No buildpack detected".to_owned(),
            }),
            event(DeployEvent::Error {
                code: "build_failed".to_owned(),
                message: "no buildpack could build this app".to_owned(),
            }),
        ]),
        vec![],
    )
    .await;
    let out = deploy_tree(&fake.socket).await;
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert_eq!(text(&out.stdout), "");
    assert!(
        stderr
            .ends_with("-----> No buildpack detected\nerror: no buildpack could build this app\n"),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failed_start_ends_with_where_to_look() {
    let fake = Fake::start(
        Deploy::Events(vec![
            event(DeployEvent::Started { id: 9 }),
            event(DeployEvent::Output {
                line: " !     web.1 exited with code 3".to_owned(),
            }),
            event(DeployEvent::Error {
                code: "rollout_failed".to_owned(),
                message: "v3 did not get ready: web.1 exited with code 3; the previous release keeps serving".to_owned(),
            }),
        ]),
        vec![],
    )
    .await;
    let out = deploy_tree(&fake.socket).await;
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.ends_with(
            "error: v3 did not get ready: web.1 exited with code 3; the previous release keeps serving\n\
             see its output with: paas logs web --ps web.1\n"
        ),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failed_restart_ends_with_where_to_look_and_a_missing_app_is_not_restarted() {
    let fake = Fake::start(
        Deploy::Events(vec![]),
        vec![
            ("GET /api/v1/apps/web", StatusCode::OK, app_json("web", &[])),
            (
                "POST /api/v1/apps/web/restart",
                StatusCode::UNPROCESSABLE_ENTITY,
                json!({"error": {"code": "rollout_failed", "message": "v3 did not get ready: worker.2 was killed by signal 9; the previous release keeps serving"}}),
            ),
        ],
    )
    .await;
    let out = paas(&fake.socket, &["ps:restart", "web"]).await;
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.starts_with("Restarting web...\n"), "{stderr}");
    assert!(
        stderr.ends_with("\nsee its output with: paas logs web --ps worker.2\n"),
        "{stderr}"
    );
    // The fake knows no app `gone`: nothing is restarted, nothing says so.
    let out = paas(&fake.socket, &["restart", "gone"]).await;
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(!stderr.contains("Restarting"), "{stderr}");
    assert!(
        !fake
            .requests()
            .iter()
            .any(|(m, p, _)| m == Method::POST && p == "/api/v1/apps/gone/restart"),
        "no restart was sent"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_refused_upload_exits_1_with_the_message() {
    let fake = Fake::start(
        Deploy::Refuse(
            StatusCode::CONFLICT,
            "deploy_running",
            "another deploy of 'web' is running",
        ),
        vec![],
    )
    .await;
    let out = deploy_tree(&fake.socket).await;
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.ends_with("\nerror: another deploy of 'web' is running\n"),
        "{stderr}"
    );
    assert_eq!(text(&out.stdout), "");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_refusal_before_the_upload_is_read_still_shows_the_message() {
    let fake = Fake::start(
        Deploy::RefuseUnread(
            StatusCode::NOT_FOUND,
            "app_not_found",
            "app 'ghost' does not exist",
        ),
        vec![],
    )
    .await;
    // Big and incompressible: far more than the socket buffers hold.
    let src = tempfile::tempdir().expect("tempdir");
    let mut x: u64 = 88_172_645_463_325_252;
    let data: Vec<u8> = (0..8 * 1024 * 1024)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x.to_le_bytes()[0]
        })
        .collect();
    std::fs::write(src.path().join("big.bin"), data).expect("write");
    let out = paas(
        &fake.socket,
        &["deploy", "ghost", "--source", &src.path().to_string_lossy()],
    )
    .await;
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.ends_with("error: app 'ghost' does not exist\n"),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stream_without_an_end_leaves_the_outcome_open() {
    let fake = Fake::start(
        Deploy::Events(vec![
            event(DeployEvent::Started { id: 9 }),
            event(DeployEvent::Output {
                line: "-----> Building".to_owned(),
            }),
        ]),
        vec![],
    )
    .await;
    let out = deploy_tree(&fake.socket).await;
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.ends_with(
            "error: connection to paasd lost during the deploy; the deploy may still finish: see `paas releases web`\n"
        ),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn json_deploy_prints_the_events() {
    let lines = successful_build();
    let fake = Fake::start(Deploy::Events(lines.clone()), vec![]).await;
    let src = source_tree();
    let out = paas(
        &fake.socket,
        &[
            "deploy",
            "web",
            "--json",
            "--source",
            &src.path().to_string_lossy(),
        ],
    )
    .await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), format!("{}\n", lines.join("\n")));
    assert!(!text(&out.stderr).contains("Node.js app detected"));
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_sources_are_usage_errors_and_a_missing_daemon_is_exit_3() {
    let src = source_tree();
    let nowhere = src.path().join("no.sock");
    let out = paas(
        &nowhere,
        &[
            "deploy",
            "web",
            "--source",
            &src.path().join("nope").to_string_lossy(),
        ],
    )
    .await;
    fails(&out, 2, "does not exist");
    let out = paas(
        &nowhere,
        &[
            "deploy",
            "web",
            "--source",
            &src.path().join("package.json").to_string_lossy(),
        ],
    )
    .await;
    fails(&out, 2, "is not a gzipped tarball");
    let out = paas(
        &nowhere,
        &["deploy", "web", "--source", &src.path().to_string_lossy()],
    )
    .await;
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("cannot reach paasd"));
}

#[tokio::test(flavor = "multi_thread")]
async fn releases_show_pending_deploys_and_one_release_in_detail() {
    let mut failed = deployment(None, DeploymentStatus::Failed);
    failed.id = 8;
    failed.started_at = "2026-01-01T13:00:00Z".to_owned();
    failed.error = Some("compile failed".to_owned());
    let mut old = release(2);
    old.deployment = None;
    old.description = "Initial release".to_owned();
    let fake = Fake::start(
        Deploy::Events(vec![]),
        vec![
            (
                "GET /api/v1/apps/web/releases",
                StatusCode::OK,
                json!([release(3), old]),
            ),
            (
                "GET /api/v1/apps/web/deploy",
                StatusCode::OK,
                json!([failed, deployment(Some(3), DeploymentStatus::Succeeded)]),
            ),
            (
                "GET /api/v1/apps/web/releases/3",
                StatusCode::OK,
                json!(release(3)),
            ),
        ],
    )
    .await;
    let out = paas(&fake.socket, &["releases", "web"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let table = text(&out.stdout);
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 4, "{table}");
    assert!(
        lines[0].starts_with("VERSION   STATUS      SOURCE     BUILDPACK   BY      CREATED"),
        "{table}"
    );
    assert!(
        lines[1].starts_with("-         failed      abababab   nodejs      alice"),
        "{table}"
    );
    assert!(
        lines[1].ends_with("12.7s      Deploy #8 failed: compile failed"),
        "{table}"
    );
    assert!(
        lines[2].starts_with("v3        succeeded   abababab   nodejs      alice"),
        "{table}"
    );
    assert!(
        lines[3].starts_with("v2        succeeded   -          -           -"),
        "{table}"
    );

    let out = paas(&fake.socket, &["releases", "web", "--json"]).await;
    let value: Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(value[0]["version"], 3);

    for version in ["v3", "3"] {
        let out = paas(&fake.socket, &["releases:info", "web", version]).await;
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
        let info = text(&out.stdout);
        assert!(
            info.starts_with("version:       v3\nstatus:        succeeded\n"),
            "{info}"
        );
        assert!(
            info.contains(&format!(
                "source:        sha256:{} (1.21 KiB)\n",
                "ab".repeat(32)
            )),
            "{info}"
        );
        assert!(info.contains("by:            alice\n"), "{info}");
        assert!(info.ends_with("phases:        receive  345ms\n               compile  12.3s\n               total    12.7s\n"), "{info}");
    }
    let out = paas(&fake.socket, &["releases", "info", "web", "three"]).await;
    assert_eq!(out.status.code(), Some(2));
}

#[tokio::test(flavor = "multi_thread")]
async fn buildpacks_list_set_and_clear() {
    let fake = Fake::start(
        Deploy::Events(vec![]),
        vec![
            (
                "GET /api/v1/apps/web",
                StatusCode::OK,
                app_json("web", &["nodejs", "/opt/bp"]),
            ),
            (
                "PUT /api/v1/apps/web/buildpacks",
                StatusCode::OK,
                app_json("web", &["python"]),
            ),
        ],
    )
    .await;
    let out = paas(&fake.socket, &["buildpacks", "web"]).await;
    assert_eq!(text(&out.stdout), "nodejs\n/opt/bp\n");
    let out = paas(&fake.socket, &["buildpacks", "web", "--json"]).await;
    assert_eq!(
        serde_json::from_slice::<Value>(&out.stdout).expect("json"),
        json!({"buildpacks": ["nodejs", "/opt/bp"]})
    );
    let out = paas(&fake.socket, &["buildpacks:set", "web", "python"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "python\n");
    assert!(text(&out.stderr).starts_with("Setting buildpacks of web... done"));
    let out = paas(&fake.socket, &["buildpacks", "clear", "web"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let puts: Vec<Value> = fake
        .requests()
        .into_iter()
        .filter(|(m, p, _)| m == Method::PUT && p == "/api/v1/apps/web/buildpacks")
        .map(|(_, _, body)| serde_json::from_slice(&body).expect("json"))
        .collect();
    assert_eq!(
        puts,
        [json!({"buildpacks": ["python"]}), json!({"buildpacks": []})]
    );
}
