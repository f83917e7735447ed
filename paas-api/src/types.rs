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
    /// Buildpacks tried in order (built-in names or directories); empty = detect.
    #[serde(default)]
    pub buildpacks: Vec<String>,
    /// RFC 3339, UTC.
    pub created_at: String,
    pub status: AppStatus,
    /// Current release version (`3` for v3), if any.
    pub release: Option<u32>,
    /// Desired instance count per process type.
    pub formation: BTreeMap<String, u32>,
    pub domains: Vec<String>,
    pub urls: Vec<String>,
    /// The host uid (and gid) the app's processes run as, its own.
    #[serde(default)]
    pub uid: Option<u32>,
    /// The limits each process type's instances get (as `GET /apps/{app}/resources`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<Resources>,
}

/// Where an effective limit comes from.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum LimitOrigin {
    /// paasd's `[instances]` config.
    Default,
    /// `paas resources APP` without a type: set for every process type of the app.
    App,
    /// `paas resources APP TYPE`: set for this process type.
    ProcessType,
}

impl std::fmt::Display for LimitOrigin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            LimitOrigin::Default => "default",
            LimitOrigin::App => "app",
            LimitOrigin::ProcessType => "process type",
        })
    }
}

/// One effective limit and where it comes from.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub struct Limit {
    pub value: u64,
    pub origin: LimitOrigin,
}

/// The limits an instance gets. Memory and disk in MB (MiB), CPU in % of one CPU, pids a
/// count of processes and threads.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub struct ResourceLimits {
    pub memory_mb: Limit,
    pub cpu_percent: Limit,
    pub pids: Limit,
    pub disk_mb: Limit,
}

/// `GET /apps/{app}/resources`: effective limits, applied at each instance start.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Resources {
    /// What a process type without settings of its own gets.
    pub all: ResourceLimits,
    /// Per process type: the current release's types and any type with settings.
    pub process_types: BTreeMap<String, ResourceLimits>,
}

/// `PATCH /apps/{app}/resources[/{type}]`: a number sets a limit, `null` returns it to the
/// default (for a type: to the app's every-type value, else paasd's), an absent key leaves it.
/// Numbers are signed so that paasd, not a decoder, says what is wrong with a negative one.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ResourcesPatch {
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    pub memory_mb: Option<Option<i64>>,
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    pub cpu_percent: Option<Option<i64>>,
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    pub pids: Option<Option<i64>>,
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    pub disk_mb: Option<Option<i64>>,
}

/// A key that is there, `null` or not, is `Some`: an absent key is the field's default
/// (`None`), so `null` (reset) and absent (unchanged) stay apart.
fn present<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(d).map(Some)
}

/// `GET /apps/{app}/env`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct EnvVars {
    pub vars: BTreeMap<String, String>,
    /// Keys whose values were hidden by [`REDACTED`], whole or in part (the password of a
    /// URL); ask with `?reveal=true`.
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
    /// Process type -> command (Procfile first, then the buildpack's defaults); empty for a
    /// release made before any deploy.
    #[serde(default)]
    pub process_types: BTreeMap<String, String>,
    /// The deploy that built this release's slug (config-only releases keep their slug's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deployment: Option<Deployment>,
    /// How its rollout went: start, ready, switch and drain durations (empty until it was
    /// rolled out, and for releases that never ran).
    #[serde(default)]
    pub rollout: Vec<PhaseTiming>,
}

/// `POST /apps/{app}/rollback`: a version (`"v3"` or `3`) or, without one, the release
/// before the current one.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct RollbackRequest {
    #[serde(default)]
    pub release: Option<String>,
}

/// `PUT /apps/{app}/checks/{type}`: a health check (dokku's `app.json` fields). Without a
/// path the check is a TCP connect.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct HealthCheck {
    /// `startup`/`readiness` gate routing; `liveness` keeps running. Default `readiness`.
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// Seconds one attempt may take.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attempts: Option<u32>,
    /// Seconds between attempts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wait: Option<u64>,
    /// Seconds before the first attempt.
    #[serde(
        default,
        rename = "initialDelay",
        skip_serializing_if = "Option::is_none"
    )]
    pub initial_delay: Option<u64>,
    /// Text the response body must contain.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
    /// A label for messages (dokku's `name`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Seconds the instance must have run before the check can pass (dokku's `uptime`);
    /// without a path or port, the check is that alone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uptime: Option<u64>,
}

/// `GET /apps/{app}/checks`: the checks in force per process type and where each came from.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct CheckList {
    pub checks: BTreeMap<String, CheckInForce>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct CheckInForce {
    /// `paas` (set with `paas checks set`), `app.json` or `default`.
    pub origin: String,
    pub checks: Vec<HealthCheck>,
}

/// `PUT /apps/{app}/buildpacks`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct SetBuildpacks {
    pub buildpacks: Vec<String>,
}

/// The steps of a deploy, in the order they run.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub enum DeployPhase {
    Receive,
    Extract,
    Detect,
    Compile,
    Slug,
    ReleasePhase,
    Start,
    Ready,
    Switch,
    Drain,
}

impl std::fmt::Display for DeployPhase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            DeployPhase::Receive => "receive",
            DeployPhase::Extract => "extract",
            DeployPhase::Detect => "detect",
            DeployPhase::Compile => "compile",
            DeployPhase::Slug => "slug",
            DeployPhase::ReleasePhase => "release phase",
            DeployPhase::Start => "start",
            DeployPhase::Ready => "ready",
            DeployPhase::Switch => "switch",
            DeployPhase::Drain => "drain",
        })
    }
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub struct PhaseTiming {
    pub phase: DeployPhase,
    pub ms: u64,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum DeploymentStatus {
    Building,
    Succeeded,
    Failed,
}

impl std::fmt::Display for DeploymentStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            DeploymentStatus::Building => "building",
            DeploymentStatus::Succeeded => "succeeded",
            DeploymentStatus::Failed => "failed",
        })
    }
}

/// One deploy attempt (`GET /apps/{app}/deploy`), whether or not it made a release.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Deployment {
    pub id: u64,
    pub status: DeploymentStatus,
    /// The release it made, once it made one.
    pub version: Option<u32>,
    /// SHA-256 (hex) of the uploaded tarball, as received.
    pub source_sha256: String,
    pub source_bytes: u64,
    /// The buildpacks that ran (detected names or the app's configured ones).
    pub buildpacks: Vec<String>,
    /// Who asked: the Unix user on the API socket, or the key name for `git push`.
    pub user: String,
    pub started_at: String,
    pub finished_at: Option<String>,
    /// Durations of the phases that ran, in order.
    pub phases: Vec<PhaseTiming>,
    pub slug_sha256: Option<String>,
    pub slug_bytes: Option<u64>,
    /// Why it failed, in words a person can act on.
    pub error: Option<String>,
}

/// One NDJSON line of the `POST /apps/{app}/deploy` response. The upload is received and
/// unpacked before the response starts (a bad tarball is a plain 4xx error body); after that,
/// the stream always ends with `Done` or `Error`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum DeployEvent {
    /// The deployment record exists; `id` is its number in `GET /apps/{app}/deploy`.
    Started {
        id: u64,
    },
    /// A phase finished.
    Phase {
        phase: DeployPhase,
        ms: u64,
    },
    /// A line of build or release-phase output.
    Output {
        line: String,
    },
    Done {
        release: Box<Release>,
    },
    Error {
        code: String,
        message: String,
    },
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

/// Where a certificate came from.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum CertSource {
    /// Added with `paas certs add`.
    Custom,
    /// Issued by the ACME server paasd is configured with.
    Acme,
}

/// One name an app serves over HTTPS: `GET /apps/{app}/certs`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct CertInfo {
    /// The name served (`*.example.com` for a wildcard).
    pub domain: String,
    pub source: CertSource,
    /// The certificate's issuer (its CN or O); None before one is issued.
    pub issuer: Option<String>,
    /// RFC 3339, UTC.
    pub not_after: Option<String>,
    /// The names the certificate covers.
    pub names: Vec<String>,
    /// Why the last issuance or renewal failed, for a person to read.
    pub last_error: Option<String>,
}

/// `GET /apps/{app}/certs`: the app's certificates and what plain HTTP gets.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct CertList {
    pub certs: Vec<CertInfo>,
    pub https: HttpsSettings,
}

/// `POST /apps/{app}/certs`: a certificate chain (leaf first) and its private key, PEM.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct AddCert {
    pub cert_pem: String,
    pub key_pem: String,
}

/// An app's HTTPS behaviour: `PATCH /apps/{app}/certs/settings` (fields left out keep
/// their value).
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub struct HttpsSettings {
    /// Plain-HTTP requests for a name with a certificate get a 308 to HTTPS.
    pub redirect: bool,
    /// HTTPS responses carry `Strict-Transport-Security`.
    pub hsts: bool,
}

#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct HttpsPatch {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redirect: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hsts: Option<bool>,
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
    /// The address the HTTP router listens on.
    #[serde(default)]
    pub router: Option<String>,
    /// The address the router serves HTTPS on, if it does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub router_tls: Option<String>,
    /// The router's client connections since paasd started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connections: Option<RouterConnections>,
}

/// The router's client connections (`GET /health`): how many are open, what the caps
/// refused and what the timeouts closed.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct RouterConnections {
    pub open: u64,
    pub peak: u64,
    /// Admitted at once: `[router] max_connections`, or the descriptor budget if lower.
    pub max: u64,
    pub accepted: u64,
    /// Closed at accept: `max` were open.
    pub refused_total: u64,
    /// Closed at accept: their source had `max_connections_per_ip` open.
    pub refused_per_ip: u64,
    /// Idle connections closed to make room for newcomers at `max`.
    #[serde(default)]
    pub evicted: u64,
    /// Closed because a request head did not arrive in time.
    pub header_timeouts: u64,
    /// Keep-alive connections closed after waiting too long for a request.
    pub idle_timeouts: u64,
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

/// `GET /stacks`: the stacks apps can use (`host` plus configured and imported ones).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct StackList {
    pub stacks: Vec<String>,
}

/// `PUT /stacks/{name}` (body: a gzipped root filesystem tarball) answers with this.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct StackImported {
    pub name: String,
    pub files: u64,
    pub bytes: u64,
}

/// What an instance is doing, as `paas ps` shows it.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum InstanceState {
    /// Started, waiting for its readiness check.
    Starting,
    /// Running; for web, ready and in the route table.
    Up,
    /// Out of the route table, finishing in-flight requests before it is stopped.
    Draining,
    /// Sent SIGTERM; SIGKILL follows after the grace period.
    Stopping,
    /// Exited; restarts after its backoff.
    Restarting,
    /// Kept crashing: not restarted until the next deploy, scale or restart.
    Crashed,
}

/// The result of an instance's health check.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum HealthState {
    /// No check has passed or failed yet (or the process type has none).
    Unknown,
    Passing,
    Failing,
}

/// One instance (dyno): `GET /apps/{app}/ps`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct InstanceInfo {
    /// `web.1`.
    pub name: String,
    pub process_type: String,
    pub state: InstanceState,
    pub release: u32,
    /// `IP:PORT` the router sends requests to.
    pub address: Option<String>,
    /// RFC 3339, when its current process started.
    pub started_at: Option<String>,
    pub uptime_secs: Option<u64>,
    /// How many times it was restarted after exiting.
    pub restarts: u32,
    pub health: HealthState,
    /// The last check failure or exit, for a person to read.
    pub last_error: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct InstanceList {
    pub instances: Vec<InstanceInfo>,
}

/// Where a log line came from.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[serde(rename_all = "snake_case")]
pub enum LogSource {
    /// An instance's stdout or stderr.
    App,
    /// An access line of the HTTP router.
    Router,
    /// Build and release-phase output.
    Build,
    /// What paasd did: deploys, starts, crashes, OOM kills, scaling.
    Platform,
    /// Output of app.json `cron` runs (process `cron.N`, N the entry's place in the list).
    Cron,
}

/// One line of an app's log stream.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct LogLine {
    /// RFC 3339 UTC with milliseconds.
    pub ts: String,
    pub source: LogSource,
    /// `web.1` for app lines; `router`, `build` or `paasd` otherwise.
    pub process: String,
    /// The release the line came from (none for lines before the first release).
    pub release: Option<u32>,
    pub line: String,
}

/// `GET /apps/{app}/logs` streams NDJSON of these.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum LogEvent {
    Line(LogLine),
    /// Lines this follower missed because it read too slowly.
    Dropped {
        count: u64,
    },
}

/// `GET /apps/{app}/cron`: the app.json `cron` entries of the current release.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct CronList {
    pub entries: Vec<CronEntry>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct CronEntry {
    /// Five crontab fields, UTC.
    pub schedule: String,
    pub command: String,
    /// `cron.1`: the process name of its lines in `paas logs --source cron`.
    pub process: String,
    /// RFC 3339, UTC.
    pub next_run_at: Option<String>,
    pub last_run: Option<CronRun>,
}

/// How the last run of a cron entry went.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct CronRun {
    pub release: u32,
    /// RFC 3339, UTC.
    pub started_at: String,
    pub finished_at: Option<String>,
    pub exit_code: Option<i32>,
    /// `running`, `exited` (see `exit_code`), `signaled`, `oom`, `failed` (did not start) or
    /// `lost` (paasd stopped meanwhile, or the container's monitor went away).
    pub outcome: String,
}

/// `POST /keys`: allow a public key to `git push` (the text of an OpenSSH `.pub` file).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AddKey {
    pub name: String,
    pub public_key: String,
}

/// A key allowed to `git push`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct SshKey {
    pub name: String,
    /// `ssh-ed25519`, `ssh-rsa`, ...
    pub key_type: String,
    /// `SHA256:...`, as `ssh-keygen -lf` prints it.
    pub fingerprint: String,
    /// RFC 3339, UTC.
    pub created_at: String,
}

/// Which git service an SSH session asks for.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum GitService {
    /// `git push`.
    ReceivePack,
    /// `git clone` / `git fetch`.
    UploadPack,
}

/// `POST /git/{app}`: the git shell asks for the app's bare repo on behalf of a key.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GitAccess {
    pub service: GitService,
    /// The key name from the forced command.
    pub key: String,
}

/// The answer: where the repo is and what a push of it deploys.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct GitRepo {
    pub app: String,
    pub path: String,
    /// Branches whose push deploys (`main`, `master`).
    pub branches: Vec<String>,
    /// The push created the app.
    pub created: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_resources_patch_keeps_null_and_absent_apart() {
        let p: ResourcesPatch =
            serde_json::from_str(r#"{"memory_mb": 64, "pids": null}"#).expect("valid");
        assert_eq!(p.memory_mb, Some(Some(64)));
        assert_eq!(p.pids, Some(None), "null resets");
        assert_eq!((p.cpu_percent, p.disk_mb), (None, None), "absent leaves");
        let back = serde_json::to_value(&p).expect("encodes");
        assert_eq!(back, serde_json::json!({"memory_mb": 64, "pids": null}));
        assert!(serde_json::from_str::<ResourcesPatch>(r#"{"memory": 1}"#).is_err());
    }
}

/// `POST /addons`: a new add-on service, linked to `app`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct CreateAddon {
    pub app: String,
    /// `postgres` or `redis`.
    pub kind: String,
    /// The service's name; `APP-KIND` (then `-2`, `-3`...) when not given.
    #[serde(default)]
    pub name: Option<String>,
    /// A major version the host has (PostgreSQL); the newest when not given.
    #[serde(default)]
    pub version: Option<String>,
    /// Memory limit in MB (default 512).
    #[serde(default)]
    pub memory_mb: Option<u64>,
    /// Size of its data disk in MB (default 1024): writes beyond it fail.
    #[serde(default)]
    pub disk_mb: Option<u64>,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum AddonState {
    /// Started, not answering yet.
    Starting,
    Up,
    /// Ended or stopped answering; restarted after a backoff.
    Crashed,
    Stopped,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct AddonLink {
    pub app: String,
    /// The config var holding the service's URL in that app.
    pub env_var: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Addon {
    pub name: String,
    pub kind: String,
    pub version: String,
    pub state: AddonState,
    /// `IP:PORT` on the instance network (reachable by linked apps only).
    pub address: String,
    pub links: Vec<AddonLink>,
    pub memory_mb: u64,
    pub disk_mb: u64,
    /// MB used on its data disk, when it is mounted.
    #[serde(default)]
    pub disk_used_mb: Option<u64>,
    pub restarts: u32,
    #[serde(default)]
    pub last_error: Option<String>,
    #[serde(default)]
    pub backup_schedule: Option<BackupSchedule>,
    /// The service's latest output lines (`GET /addons/{name}` only).
    #[serde(default)]
    pub recent_output: Vec<String>,
    /// RFC 3339, UTC.
    pub created_at: String,
}

/// `POST /addons/{name}/links`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct LinkAddon {
    pub app: String,
}

/// `POST /addons/{name}/query`: `psql -c SQL` (one argument) or `redis-cli ARGS...`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct AddonQuery {
    pub args: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct AddonQueryOutput {
    pub exit_code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Backup {
    /// The backup's name (`20261206T093000Z`, `-auto` when the schedule made it).
    pub name: String,
    pub addon: String,
    pub kind: String,
    pub bytes: u64,
    pub scheduled: bool,
    /// RFC 3339, UTC.
    pub created_at: String,
}

/// `POST /addons/{name}/restore`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct RestoreBackup {
    pub backup: String,
}

/// `PUT /addons/{name}/backup-schedule`.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct BackupSchedule {
    pub every_secs: u64,
    pub keep: u32,
}

/// What `POST /platform/restore` brought back.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct RestoredPlatform {
    pub apps: Vec<String>,
    pub addons: Vec<String>,
    pub volumes: u32,
    pub repos: u32,
}

/// `POST /apps/{app}/volumes`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct AddVolume {
    pub name: String,
    /// Absolute path inside the app's containers, under /data, /mnt, /srv or /storage.
    pub path: String,
    /// Size in MB (default 1024).
    #[serde(default)]
    pub size_mb: Option<u64>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Volume {
    pub app: String,
    pub name: String,
    pub path: String,
    pub size_mb: u64,
    /// MB used, when it is mounted.
    #[serde(default)]
    pub used_mb: Option<u64>,
    /// RFC 3339, UTC.
    pub created_at: String,
}

/// A tarball of a volume's files (`paas volumes backup`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct VolumeBackup {
    pub name: String,
    pub app: String,
    pub volume: String,
    pub bytes: u64,
    /// RFC 3339, UTC.
    pub created_at: String,
}
