//! Health checks: which checks a process type gets (set with `paas checks set`, else the
//! slug's `app.json` `healthchecks` in dokku's format, else the default TCP connect for
//! `web`), and probing an instance once. dokku's fields: `type`, `name`, `path`, `port`,
//! `attempts`, `wait`, `timeout`, `initialDelay`, `content` and `uptime` (not ready before the
//! instance ran that long; alone, without path or port, that is the whole check). A probe
//! that paasd itself could not run (out of descriptors, memory or local ports) is
//! [`ProbeError::Inconclusive`], never a failure of the instance. Must not decide what a
//! failure leads to: the instance task does.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use paas_api::HealthCheck;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The port every instance listens on (`PORT`).
pub const APP_PORT: u16 = 5000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Must pass before the instance gets traffic (dokku's `startup` and `readiness`).
    Readiness,
    /// Checked while the instance runs; failing it `attempts` times in a row replaces it.
    Liveness,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Probe {
    Tcp,
    /// dokku's uptime-only check: nothing to connect to; passing means the instance has run
    /// `uptime` seconds (folded into the initial delay) without exiting.
    Uptime,
    Http {
        path: String,
        content: Option<String>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    /// dokku's `name`, shown in messages.
    pub name: Option<String>,
    pub kind: Kind,
    pub probe: Probe,
    pub port: u16,
    pub timeout: Duration,
    pub attempts: u32,
    pub wait: Duration,
    pub initial_delay: Duration,
}

impl Check {
    /// The default for `web`: a TCP connect to `PORT` succeeds within 60 s.
    pub fn default_web() -> Check {
        Check {
            name: None,
            kind: Kind::Readiness,
            probe: Probe::Tcp,
            port: APP_PORT,
            timeout: Duration::from_secs(2),
            attempts: 600,
            wait: Duration::from_millis(100),
            initial_delay: Duration::ZERO,
        }
    }

    /// Liveness for `web` when none is configured: the port keeps accepting (every 10 s,
    /// three failures in a row replace the instance).
    pub fn default_web_liveness() -> Check {
        Check {
            name: None,
            kind: Kind::Liveness,
            probe: Probe::Tcp,
            port: APP_PORT,
            timeout: Duration::from_secs(5),
            attempts: 3,
            wait: Duration::from_secs(10),
            initial_delay: Duration::ZERO,
        }
    }

    /// The longest a readiness check can take before it has failed for good.
    pub fn budget(&self) -> Duration {
        self.initial_delay + (self.timeout + self.wait) * self.attempts
    }

    /// What it checks, for messages: `GET /health on :5000`.
    pub fn describe(&self) -> String {
        let what = match &self.probe {
            Probe::Tcp => format!("TCP connect to :{}", self.port),
            Probe::Uptime => format!("up for {} s", self.initial_delay.as_secs()),
            Probe::Http { path, .. } => format!("GET {path} on :{}", self.port),
        };
        match &self.name {
            Some(n) => format!("{n} ({what})"),
            None => what,
        }
    }

    pub fn from_api(c: &HealthCheck) -> Result<Check, String> {
        let kind = match c.kind.as_deref().unwrap_or("readiness") {
            "startup" | "readiness" => Kind::Readiness,
            "liveness" => Kind::Liveness,
            other => {
                return Err(format!(
                    "check type '{other}': use startup, readiness or liveness"
                ))
            }
        };
        let secs = |what: &str, v: Option<u64>, default: u64, max: u64| match v.unwrap_or(default) {
            n if n <= max => Ok(Duration::from_secs(n)),
            n => Err(format!("check {what} {n} s is more than {max} s")),
        };
        let uptime = secs("uptime", c.uptime, 0, 3600)?;
        let probe = match &c.path {
            None if c.port.is_none() && !uptime.is_zero() => {
                if kind == Kind::Liveness {
                    return Err(
                        "an uptime check (no path or port) is a startup or readiness check".into(),
                    );
                }
                Probe::Uptime
            }
            None => Probe::Tcp,
            Some(p)
                if p.starts_with('/') && !p.bytes().any(|b| b.is_ascii_control() || b == b' ') =>
            {
                Probe::Http {
                    path: p.clone(),
                    content: c.content.clone(),
                }
            }
            Some(p) => {
                return Err(format!(
                    "check path '{p}' must start with / and hold no spaces"
                ))
            }
        };
        let attempts = c
            .attempts
            .unwrap_or(if kind == Kind::Liveness { 3 } else { 60 });
        if !(1..=1000).contains(&attempts) {
            return Err(format!("check attempts must be 1 to 1000, got {attempts}"));
        }
        let timeout = secs("timeout", c.timeout, 5, 300)?;
        if timeout.is_zero() {
            return Err("check timeout must be at least 1 s".into());
        }
        let initial_delay = secs("initialDelay", c.initial_delay, 0, 3600)?;
        Ok(Check {
            name: c.name.clone(),
            kind,
            probe,
            port: c.port.unwrap_or(APP_PORT),
            timeout,
            attempts,
            wait: secs(
                "wait",
                c.wait,
                if kind == Kind::Liveness { 10 } else { 1 },
                3600,
            )?,
            // Not ready before it ran `uptime`: an exit meanwhile fails the rollout, as any
            // exit during readiness does.
            initial_delay: if kind == Kind::Readiness {
                initial_delay.max(uptime)
            } else {
                initial_delay
            },
        })
    }
}

/// Where the checks in force came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    Paas,
    AppJson,
    Default,
}

impl Origin {
    pub fn as_str(self) -> &'static str {
        match self {
            Origin::Paas => "paas",
            Origin::AppJson => "app.json",
            Origin::Default => "default",
        }
    }
}

/// The checks of one process type as configured: `paas checks set` (JSON list of
/// [`HealthCheck`]) over `app.json`. Invalid entries of app.json are skipped with a note,
/// since a deploy must not fail on an unrelated field.
pub fn configured(
    process_type: &str,
    set: Option<&str>,
    app_json: Option<&serde_json::Value>,
) -> (Origin, Vec<HealthCheck>) {
    if let Some(list) = set.and_then(|s| serde_json::from_str::<Vec<HealthCheck>>(s).ok()) {
        return (Origin::Paas, list);
    }
    let from_json = app_json
        .and_then(|v| v.get("healthchecks"))
        .and_then(|h| h.get(process_type))
        .and_then(|l| l.as_array())
        .map(|l| l.iter().filter_map(lenient).collect::<Vec<_>>())
        .unwrap_or_default();
    if from_json.is_empty() {
        (Origin::Default, Vec::new())
    } else {
        (Origin::AppJson, from_json)
    }
}

/// dokku's check objects carry fields we don't use (description, listening...); the deploy
/// warns about those (`app_json`).
fn lenient(v: &serde_json::Value) -> Option<HealthCheck> {
    let s = |k: &str| v.get(k).and_then(|x| x.as_str()).map(str::to_string);
    let n = |k: &str| v.get(k).and_then(serde_json::Value::as_u64);
    Some(HealthCheck {
        kind: s("type"),
        path: s("path"),
        port: n("port").and_then(|p| u16::try_from(p).ok()),
        timeout: n("timeout"),
        attempts: n("attempts").and_then(|p| u32::try_from(p).ok()),
        wait: n("wait"),
        initial_delay: n("initialDelay"),
        content: s("content"),
        name: s("name"),
        uptime: n("uptime"),
    })
}

/// Readiness and liveness checks in force for a process type.
pub fn resolve(process_type: &str, configured: &[HealthCheck]) -> (Vec<Check>, Vec<String>) {
    let mut checks = Vec::new();
    let mut notes = Vec::new();
    for c in configured {
        match Check::from_api(c) {
            Ok(c) => checks.push(c),
            Err(e) => notes.push(format!("ignoring a {process_type} health check: {e}")),
        }
    }
    if process_type == "web" {
        if !checks.iter().any(|c| c.kind == Kind::Readiness) {
            checks.push(Check::default_web());
        }
        if !checks.iter().any(|c| c.kind == Kind::Liveness) {
            checks.push(Check::default_web_liveness());
        }
    }
    (checks, notes)
}

/// Why a probe did not pass.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProbeError {
    /// The instance failed it: refused, reset, no answer in time, a bad status or body.
    #[error("{0}")]
    Failed(String),
    /// paasd could not run it (its own descriptors, memory or local ports ran out), so it
    /// says nothing about the instance and must never count against it.
    #[error("{0}")]
    Inconclusive(String),
}

/// Errors of *our* side of a probe: the process or the host is short of something. A
/// connection flood that exhausts paasd's descriptors must not get healthy instances
/// replaced (and their replacements fail to start for the same reason).
pub fn is_local_shortage(e: &std::io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(
            libc::EMFILE // this process's descriptors
                | libc::ENFILE // the system's
                | libc::ENOMEM
                | libc::ENOBUFS
                // connect(2): no free local port (both spellings Linux uses)
                | libc::EAGAIN
                | libc::EADDRNOTAVAIL
        )
    )
}

/// An I/O error of a probe, classified.
fn io_error(what: &str, e: std::io::Error) -> ProbeError {
    if is_local_shortage(&e) {
        ProbeError::Inconclusive(format!("{what}: paasd could not run the check: {e}"))
    } else {
        ProbeError::Failed(format!("{what}: {e}"))
    }
}

/// One attempt of `check` against the instance at `ip`.
pub async fn probe(check: &Check, ip: Ipv4Addr, host: &str) -> Result<(), ProbeError> {
    let addr = SocketAddr::from((ip, check.port));
    match tokio::time::timeout(check.timeout, attempt(check, addr, host)).await {
        Ok(r) => r,
        Err(_) => Err(ProbeError::Failed(format!(
            "{}: no answer within {} s",
            check.describe(),
            check.timeout.as_secs_f32()
        ))),
    }
}

async fn attempt(check: &Check, addr: SocketAddr, host: &str) -> Result<(), ProbeError> {
    if check.probe == Probe::Uptime {
        return Ok(());
    }
    let what = check.describe();
    let mut conn = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| io_error(&what, e))?;
    let Probe::Http { path, content } = &check.probe else {
        return Ok(());
    };
    let req = format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: paas-health\r\nConnection: close\r\n\r\n"
    );
    conn.write_all(req.as_bytes())
        .await
        .map_err(|e| io_error(&what, e))?;
    // Enough for a status line and a small body; a check reads no more.
    let mut buf = Vec::with_capacity(4096);
    let mut chunk = [0u8; 4096];
    while buf.len() < 64 * 1024 {
        match conn.read(&mut chunk).await {
            Ok(0) => break,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) => return Err(io_error(&what, e)),
        }
    }
    let text = String::from_utf8_lossy(&buf);
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse::<u16>().ok())
        .ok_or_else(|| ProbeError::Failed(format!("{what}: not an HTTP response")))?;
    if !(200..400).contains(&status) {
        return Err(ProbeError::Failed(format!("{what}: status {status}")));
    }
    if let Some(want) = content {
        let body = text.split_once("\r\n\r\n").map_or("", |(_, b)| b);
        if !body.contains(want.as_str()) {
            return Err(ProbeError::Failed(format!(
                "{what}: the body does not contain '{want}'"
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn web_gets_default_checks_and_app_json_is_lenient() {
        let (checks, notes) = resolve("web", &[]);
        assert_eq!(
            checks,
            vec![Check::default_web(), Check::default_web_liveness()]
        );
        assert!(notes.is_empty());
        assert!(resolve("worker", &[]).0.is_empty());

        let json: serde_json::Value = serde_json::from_str(
            r#"{"healthchecks":{"web":[{"type":"startup","name":"x","path":"/health","attempts":5,"wait":2,"uptime":3}]}}"#,
        )
        .expect("json");
        let (origin, list) = configured("web", None, Some(&json));
        assert_eq!(origin, Origin::AppJson);
        let (checks, _) = resolve("web", &list);
        assert_eq!(
            checks[0].probe,
            Probe::Http {
                path: "/health".into(),
                content: None
            }
        );
        assert_eq!(checks[0].attempts, 5);
        assert_eq!(checks[0].wait, Duration::from_secs(2));
        assert_eq!(checks.len(), 2, "default liveness added");

        let set = r#"[{"path":"/ready","timeout":3}]"#;
        let (origin, list) = configured("web", Some(set), Some(&json));
        assert_eq!(origin, Origin::Paas);
        assert_eq!(list[0].path.as_deref(), Some("/ready"));
    }

    #[test]
    fn every_dokku_field_is_read_from_app_json() {
        let json: serde_json::Value = serde_json::from_str(
            r#"{"healthchecks":{"web":[
                {"type":"startup","name":"ready","path":"/ready","port":5001,"attempts":4,
                 "wait":3,"timeout":7,"initialDelay":2,"content":"ok","uptime":5},
                {"type":"liveness","name":"alive","path":"/alive","initialDelay":1}
              ],
              "worker":[{"type":"startup","name":"settled","uptime":4}]}}"#,
        )
        .expect("json");
        let (_, list) = configured("web", None, Some(&json));
        let (checks, notes) = resolve("web", &list);
        assert!(notes.is_empty(), "{notes:?}");
        let ready = &checks[0];
        assert_eq!(ready.kind, Kind::Readiness);
        assert_eq!(
            ready.probe,
            Probe::Http {
                path: "/ready".into(),
                content: Some("ok".into())
            }
        );
        assert_eq!(ready.port, 5001);
        assert_eq!(ready.attempts, 4);
        assert_eq!(ready.wait, Duration::from_secs(3));
        assert_eq!(ready.timeout, Duration::from_secs(7));
        // uptime 5 beats initialDelay 2: not ready before it ran 5 s.
        assert_eq!(ready.initial_delay, Duration::from_secs(5));
        assert_eq!(ready.describe(), "ready (GET /ready on :5001)");
        assert_eq!(checks[1].kind, Kind::Liveness);
        assert_eq!(checks[1].initial_delay, Duration::from_secs(1));
        assert_eq!(checks.len(), 2, "both configured: no defaults added");

        let (_, list) = configured("worker", None, Some(&json));
        let (checks, _) = resolve("worker", &list);
        assert_eq!(checks.len(), 1);
        assert_eq!(checks[0].probe, Probe::Uptime);
        assert_eq!(checks[0].initial_delay, Duration::from_secs(4));
        assert_eq!(checks[0].describe(), "settled (up for 4 s)");
        let e = Check::from_api(&HealthCheck {
            kind: Some("liveness".into()),
            uptime: Some(3),
            ..Default::default()
        })
        .expect_err("uptime liveness");
        assert!(e.contains("uptime"), "{e}");
    }

    #[tokio::test]
    async fn an_uptime_check_needs_no_listener() {
        let c = Check::from_api(&HealthCheck {
            uptime: Some(1),
            ..Default::default()
        })
        .expect("valid");
        // Nothing listens on this address; the probe passes anyway.
        assert_eq!(probe(&c, Ipv4Addr::new(127, 0, 0, 1), "x").await, Ok(()));
    }

    #[test]
    fn paasds_own_shortages_are_inconclusive_and_the_instances_failures_are_not() {
        let os = std::io::Error::from_raw_os_error;
        for errno in [
            libc::EMFILE,
            libc::ENFILE,
            libc::ENOMEM,
            libc::ENOBUFS,
            libc::EAGAIN,
            libc::EADDRNOTAVAIL,
        ] {
            assert!(is_local_shortage(&os(errno)), "{}", os(errno));
            match io_error("TCP connect to :5000", os(errno)) {
                ProbeError::Inconclusive(m) => {
                    assert!(m.contains("paasd could not run the check"), "{m}")
                }
                other => panic!("{errno}: {other:?}"),
            }
        }
        for errno in [
            libc::ECONNREFUSED,
            libc::ECONNRESET,
            libc::ETIMEDOUT,
            libc::EHOSTUNREACH,
            libc::ENETUNREACH,
            libc::EPIPE,
        ] {
            assert!(!is_local_shortage(&os(errno)), "{}", os(errno));
            assert!(matches!(io_error("x", os(errno)), ProbeError::Failed(_)));
        }
        // Errors without an errno (ours: timeouts, bad answers) are the instance's.
        assert!(!is_local_shortage(&std::io::Error::other("eof")));
    }

    #[tokio::test]
    async fn a_refused_connect_is_a_failure() {
        // A port nothing listens on: bind one, then free it.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let c = Check {
            port,
            ..Check::default_web()
        };
        match probe(&c, Ipv4Addr::LOCALHOST, "x").await {
            Err(ProbeError::Failed(m)) => assert!(m.contains("TCP connect"), "{m}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn bad_checks_are_refused_with_reasons() {
        let bad = |c: HealthCheck| Check::from_api(&c).expect_err("refused");
        assert!(bad(HealthCheck {
            kind: Some("sometimes".into()),
            ..Default::default()
        })
        .contains("startup"));
        assert!(bad(HealthCheck {
            path: Some("health".into()),
            ..Default::default()
        })
        .contains("start with /"));
        assert!(bad(HealthCheck {
            attempts: Some(0),
            ..Default::default()
        })
        .contains("attempts"));
        assert!(bad(HealthCheck {
            timeout: Some(0),
            ..Default::default()
        })
        .contains("timeout"));
    }
}
