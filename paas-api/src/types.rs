//! Wire types of the `/api/v1` HTTP API. Owns the JSON shape that crosses the socket;
//! must not contain behaviour beyond (de)serialisation and display helpers.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Every non-2xx response carries this body.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ErrorDetail {
    /// Stable, machine-readable: `app_not_found`, `invalid_name`, ...
    pub code: String,
    /// One sentence a person can act on.
    pub message: String,
}

/// `POST /apps`.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct CreateApp {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stack: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub buildpack: Option<String>,
}

/// What an app is doing, as far as the platform knows.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum AppStatus {
    /// Created, nothing deployed yet.
    Created,
    /// A release with a slug exists.
    Deployed,
}

impl std::fmt::Display for AppStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            AppStatus::Created => "created",
            AppStatus::Deployed => "deployed",
        })
    }
}

/// `GET /apps/{app}` and each element of `GET /apps`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct App {
    pub name: String,
    pub stack: String,
    pub buildpack: Option<String>,
    /// RFC 3339, UTC.
    pub created_at: String,
    pub status: AppStatus,
    /// Current release version (`3` for v3), if any.
    pub release: Option<u32>,
    /// Desired instance count per process type.
    pub formation: BTreeMap<String, u32>,
    pub domains: Vec<String>,
    pub urls: Vec<String>,
}

/// `GET /apps/{app}/env`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct EnvVars {
    pub vars: BTreeMap<String, String>,
    /// Keys whose values were replaced by [`REDACTED`] (ask with `?reveal=true`).
    pub redacted: Vec<String>,
}

/// Placeholder shown instead of a secret-looking value.
pub const REDACTED: &str = "[REDACTED]";

/// `PATCH /apps/{app}/env`: a value sets the key, `null` unsets it (Heroku's shape).
pub type EnvPatch = BTreeMap<String, Option<String>>;

/// `PUT /apps/{app}/env`: the complete new set.
pub type EnvReplace = BTreeMap<String, String>;

/// Answer to an env change.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct EnvChanged {
    /// The release the change created; `None` when nothing changed.
    pub release: Option<Release>,
    pub env: EnvVars,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ReleaseStatus {
    Pending,
    Succeeded,
    Failed,
}

impl std::fmt::Display for ReleaseStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ReleaseStatus::Pending => "pending",
            ReleaseStatus::Succeeded => "succeeded",
            ReleaseStatus::Failed => "failed",
        })
    }
}

/// `GET /apps/{app}/releases` elements.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Release {
    pub version: u32,
    pub description: String,
    pub status: ReleaseStatus,
    /// RFC 3339, UTC.
    pub created_at: String,
    /// Config var names in this release's snapshot (values never leave through here).
    pub config_keys: Vec<String>,
}

/// `POST /apps/{app}/domains`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AddDomain {
    pub domain: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Domain {
    pub domain: String,
    pub app: String,
    /// RFC 3339, UTC.
    pub created_at: String,
}

/// `POST /apps/{app}/scale` body: `{"web": 3, "worker": 1}` or `{"instances": 3}` (= web).
/// Kept as raw JSON numbers so the server can say exactly what is wrong with a value.
pub type ScaleRequest = BTreeMap<String, serde_json::Value>;

/// Answer to scale: the whole formation after the change.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Formation {
    pub formation: BTreeMap<String, u32>,
}

/// `GET /health`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct DaemonHealth {
    pub status: String,
    pub version: String,
    pub uptime_secs: u64,
}

/// `POST /apps/{app}/run`: a one-off container on the app's current release.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunRequest {
    /// One element: a shell command line (run with `bash -c`, as Heroku does). Several: an
    /// argv, quoted for `bash -c` so each element stays one argument.
    pub command: Vec<String>,
    /// Memory limit in MiB (swap off); the platform default when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_mb: Option<u64>,
    /// CPU quota in percent of one CPU (100 = one full CPU).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_percent: Option<u32>,
    /// Maximum number of processes and threads.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pids: Option<u64>,
}

/// The NDJSON lines `POST /apps/{app}/run` streams.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum RunEvent {
    Started {
        id: String,
        /// The container's address on the instance bridge.
        #[serde(default)]
        ip: Option<String>,
    },
    Output {
        stream: OutputStream,
        line: String,
    },
    Exited {
        code: Option<i32>,
        signal: Option<i32>,
        /// Killed by the kernel for exceeding its memory limit.
        #[serde(default)]
        oom: bool,
    },
    /// The platform lost the container (not the command's own failure).
    Error {
        message: String,
    },
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum OutputStream {
    Stdout,
    Stderr,
}
