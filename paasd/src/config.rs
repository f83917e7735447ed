//! Daemon configuration: `/etc/paas/paasd.toml` (or `--config FILE`) overlaid by command-line
//! flags. Owns defaults and the rule that derives every path from the state dir; must not
//! touch the filesystem beyond reading the config file.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

pub const DEFAULT_CONFIG_FILE: &str = "/etc/paas/paasd.toml";
pub const DEFAULT_STATE_DIR: &str = "/var/lib/paas";
pub const DEFAULT_KEY_FILE: &str = "/etc/paas/secret.key";

/// A size in mebibytes, as the config file spells it (`memory_mb = 512`). Code that needs
/// bytes asks [`MiB::bytes`], so no `<< 20` is scattered around.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
#[serde(transparent)]
pub struct MiB(pub u64);

impl MiB {
    /// The size in bytes (saturating: an absurd config value means "no limit", not a wrap).
    pub fn bytes(self) -> u64 {
        self.0.saturating_mul(1 << 20)
    }
}

impl std::fmt::Display for MiB {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} MB", self.0)
    }
}

/// Every path under the state dir, built in one place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatePaths {
    pub root: PathBuf,
}

impl StatePaths {
    pub fn new(root: &Path) -> StatePaths {
        StatePaths {
            root: root.to_path_buf(),
        }
    }
    pub fn db(&self) -> PathBuf {
        self.root.join("paas.db")
    }
    pub fn lock(&self) -> PathBuf {
        self.root.join("paasd.lock")
    }
    /// The key file when the state dir is not the default one.
    pub fn key_file(&self) -> PathBuf {
        self.root.join("secret.key")
    }
    /// Scratch trees of running builds (`builds/APP-ID/`).
    pub fn builds(&self) -> PathBuf {
        self.root.join("builds")
    }
    /// The build cache of one app.
    pub fn cache(&self, app: &str) -> PathBuf {
        self.root.join("cache").join(app)
    }
    pub fn slugs(&self) -> PathBuf {
        self.root.join("slugs")
    }
    /// Bare repos (`git/APP.git`) and the shared hooks dir.
    pub fn git(&self) -> PathBuf {
        self.root.join("git")
    }
    /// App log streams and build logs (`logs/APP/`).
    pub fn logs(&self) -> PathBuf {
        self.root.join("logs")
    }
    pub fn app_logs(&self, app: &str) -> PathBuf {
        self.logs().join(app)
    }
    /// Git-URL buildpacks, cloned once per URL and ref (`buildpacks/NAME-KEY/`).
    pub fn buildpacks(&self) -> PathBuf {
        self.root.join("buildpacks")
    }
    /// Imported stacks (`stacks/NAME/`), next to the runtime's `stacks/host` skeleton.
    pub fn stacks(&self) -> PathBuf {
        self.root.join("stacks")
    }
    /// Apps' volumes: `volumes/APP/NAME.img` mounted at `volumes/APP/NAME`.
    pub fn volumes(&self) -> PathBuf {
        self.root.join("volumes")
    }
    /// Add-on services' data (`addons/NAME/data`, owned by the service's uid).
    pub fn addons(&self) -> PathBuf {
        self.root.join("addons")
    }
    /// Scratch of platform backups and restores (`backups/platform/`), always on the state
    /// disk (the archive holds the key).
    pub fn platform_backups(&self) -> PathBuf {
        self.root.join("backups").join("platform")
    }
}

/// `cgroup_parent`'s default: see [`Config::cgroup_parent_in_use`].
pub const AUTO_CGROUP_PARENT: &str = "auto";

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {}: {source}", .path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("subnet '{0}': give an IPv4 network like 10.88.0.0/16")]
    Subnet(String),
    #[error("[router] trusted_proxies: {0} overlaps the instance subnet {1}: any app could then claim to be a proxy and forge client addresses")]
    TrustedInstances(String, String),
    #[error("[users] {0}")]
    Users(String),
    #[error("[router] trusted_proxies: {0}")]
    TrustedProxy(#[source] paas_router::IpNetError),
    #[error("config key {key}: {why}")]
    Invalid { key: &'static str, why: String },
    #[error("[router] {key}: {reason}")]
    Router { key: &'static str, reason: String },
    #[error("config file {}: {source}", .path.display())]
    Parse {
        path: PathBuf,
        source: Box<toml::de::Error>,
    },
}

/// Keys of `paasd.toml`. Every key is optional; flags of the same name override them.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub socket: Option<PathBuf>,
    pub state_dir: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    pub socket_group: Option<String>,
    pub http: Option<SocketAddr>,
    pub https: Option<SocketAddr>,
    pub base_domain: Option<String>,
    pub max_body_bytes: Option<usize>,
    pub max_json_depth: Option<usize>,
    pub max_instances_per_type: Option<u32>,
    pub cgroup_parent: Option<String>,
    pub bridge: Option<String>,
    pub subnet: Option<String>,
    /// Extra stacks: name = root filesystem directory.
    #[serde(default)]
    pub stacks: std::collections::BTreeMap<String, PathBuf>,
    /// Where the built-in buildpacks live.
    pub buildpacks_dir: Option<PathBuf>,
    /// Where add-on and volume backups go (default STATE/backups): another disk, a mounted
    /// NFS or object-store share.
    pub backups_dir: Option<PathBuf>,
    /// Largest stack tarball `PUT /stacks/NAME` accepts (compressed; unpacked up to 4x).
    pub max_stack_mb: Option<MiB>,
    /// Limits on uploads and builds (`[build]`).
    #[serde(default)]
    pub build: BuildConfig,
    /// How instances run, restart and are replaced (`[instances]`).
    #[serde(default)]
    pub instances: InstanceConfig,
    /// The app log stream (`[logs]`).
    #[serde(default)]
    pub logs: LogsConfig,
    /// Automatic certificates (`[acme]`).
    #[serde(default)]
    pub acme: AcmeConfig,
    /// `git push` over SSH (`[git]`).
    #[serde(default)]
    pub git: GitConfig,
    /// The HTTP router (`[router]`).
    #[serde(default)]
    pub router: RouterConfig,
    /// The uids apps run as (`[users]`).
    #[serde(default)]
    pub users: UsersConfig,
}

/// `[users]`: the host uid range apps run as, one uid per app (its gid is the same number).
/// Above everything Debian hands out: regular users stop at 60000, `useradd`'s subordinate
/// ranges at 600100000, and systemd's container range at 1879048191; below 2^31, which
/// some tools read as negative. paasd refuses to start if a host account, group or
/// subordinate range overlaps it (see `app_users`).
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct UsersConfig {
    pub first_uid: u32,
    pub count: u32,
}

impl Default for UsersConfig {
    fn default() -> UsersConfig {
        UsersConfig {
            first_uid: 1_900_000_000,
            count: 100_000,
        }
    }
}

/// `[router]`: what the router believes about its clients and how much of paasd they may
/// take.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct RouterConfig {
    /// Networks (`"172.16.0.0/12"`, `"fd00::/8"`, a bare address) of proxies in front of the
    /// router whose `X-Forwarded-*`, `X-Real-IP` and `Forwarded` are kept and appended to.
    /// Empty (the default): the router is the edge and replaces them all. None may overlap
    /// the instance subnet (an app would be a trusted proxy).
    pub trusted_proxies: Vec<String>,
    /// Client connections open at once; more are closed at accept. The router also stays
    /// within paasd's descriptor budget (`paas_router::connection_budget`) if that is lower.
    pub max_connections: usize,
    /// Client connections open at once from one address (an IPv6 client's /64). A proxy in
    /// front of the router counts as one address: raise this, or list it nowhere near a cap.
    pub max_connections_per_ip: usize,
    /// Seconds a client has for a request head, from its first byte (a new connection's:
    /// from accept).
    pub header_timeout_secs: u64,
    /// Seconds a keep-alive connection may wait for its next request.
    pub idle_timeout_secs: u64,
    /// Seconds an upgraded connection (a WebSocket) may pass no byte either way.
    pub upgrade_idle_timeout_secs: u64,
}

impl Default for RouterConfig {
    fn default() -> RouterConfig {
        RouterConfig {
            trusted_proxies: Vec::new(),
            // See ARCHITECTURE.md, "Router": what a connection costs and why these numbers.
            max_connections: 10_000,
            max_connections_per_ip: 256,
            header_timeout_secs: 10,
            idle_timeout_secs: 60,
            upgrade_idle_timeout_secs: 60,
        }
    }
}

impl RouterConfig {
    /// Every value the router can work with; the first that is not, with the reason.
    fn check(&self) -> Result<(), ConfigError> {
        let bad = |key: &'static str, reason: String| Err(ConfigError::Router { key, reason });
        if !(1..=1_000_000).contains(&self.max_connections) {
            return bad(
                "max_connections",
                format!("{} is not between 1 and 1000000", self.max_connections),
            );
        }
        if !(1..=self.max_connections).contains(&self.max_connections_per_ip) {
            return bad(
                "max_connections_per_ip",
                format!(
                    "{} is not between 1 and max_connections ({})",
                    self.max_connections_per_ip, self.max_connections
                ),
            );
        }
        if !(1..=300).contains(&self.header_timeout_secs) {
            return bad(
                "header_timeout_secs",
                format!("{} is not between 1 and 300", self.header_timeout_secs),
            );
        }
        if !(1..=3600).contains(&self.idle_timeout_secs) {
            return bad(
                "idle_timeout_secs",
                format!("{} is not between 1 and 3600", self.idle_timeout_secs),
            );
        }
        if !(1..=86_400).contains(&self.upgrade_idle_timeout_secs) {
            return bad(
                "upgrade_idle_timeout_secs",
                format!(
                    "{} is not between 1 and 86400",
                    self.upgrade_idle_timeout_secs
                ),
            );
        }
        Ok(())
    }
}

/// `[git]`: how `git push paas@host:app main` reaches paasd.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct GitConfig {
    /// The system user people push as (`paas@host`). paasd writes its authorized_keys and
    /// owns the bare repos as this user.
    pub user: String,
    /// Default: `~USER/.ssh/authorized_keys`.
    pub authorized_keys: Option<PathBuf>,
    /// The forced command of every key. Default: `paas-git-shell` next to paasd's binary.
    pub shell: Option<PathBuf>,
    /// Pushing to an app that does not exist creates it (as dokku does).
    pub create_on_push: bool,
    /// Branches whose push deploys; pushes of other refs are refused.
    pub branches: Vec<String>,
}

impl Default for GitConfig {
    fn default() -> GitConfig {
        GitConfig {
            user: "paas".to_string(),
            authorized_keys: None,
            shell: None,
            create_on_push: true,
            branches: vec!["main".to_string(), "master".to_string()],
        }
    }
}

/// `[instances]`: what one app instance may use and how the supervisor treats it.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct InstanceConfig {
    /// Memory of one instance (no swap); Heroku's standard dyno has 512 MB.
    pub memory_mb: MiB,
    /// CPU quota of one instance, in % of one CPU.
    pub cpu_percent: u32,
    pub pids: u64,
    /// Size of an instance's writable layer (its /app, /tmp and every other write). It is
    /// kept in memory (tmpfs) and counts against `memory_mb`; writes beyond it get ENOSPC.
    pub disk_mb: MiB,
    /// After SIGTERM, how long an instance may take to exit before SIGKILL.
    pub grace_secs: u64,
    /// How long a stopping web instance may take to finish its in-flight requests.
    pub drain_secs: u64,
    /// First restart delay after a crash; doubles with each crash in a row.
    pub backoff_initial_ms: u64,
    pub backoff_max_secs: u64,
    /// After this many crashes in a row an instance is left `crashed`.
    pub crash_limit: u32,
    /// An instance that ran this long before exiting starts a fresh crash count.
    pub crash_reset_secs: u64,
}

impl Default for InstanceConfig {
    fn default() -> InstanceConfig {
        InstanceConfig {
            memory_mb: MiB(512),
            cpu_percent: 100,
            pids: 512,
            disk_mb: MiB(256),
            grace_secs: 30,
            drain_secs: 30,
            backoff_initial_ms: 1000,
            backoff_max_secs: 300,
            crash_limit: 5,
            crash_reset_secs: 60,
        }
    }
}

/// `[acme]`: automatic certificates for every app domain over HTTP-01 (only with an HTTPS
/// listener, `https`).
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct AcmeConfig {
    pub enabled: bool,
    /// The ACME directory; Let's Encrypt's staging one is
    /// https://acme-staging-v02.api.letsencrypt.org/directory.
    pub directory_url: String,
    /// Where the CA may write about expiring certificates or policy changes.
    pub email: Option<String>,
    /// A PEM root to trust for the directory's own HTTPS besides the system's (a private or
    /// test ACME server).
    pub ca_file: Option<PathBuf>,
    /// How the CA checks that a name points here: "http-01" (a file on port 80) or
    /// "tls-alpn-01" (a certificate on the HTTPS port, for hosts whose port 80 is closed).
    pub challenge: AcmeChallenge,
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
pub enum AcmeChallenge {
    #[default]
    #[serde(rename = "http-01")]
    Http01,
    #[serde(rename = "tls-alpn-01")]
    TlsAlpn01,
}

impl Default for AcmeConfig {
    fn default() -> AcmeConfig {
        AcmeConfig {
            enabled: true,
            directory_url: "https://acme-v02.api.letsencrypt.org/directory".into(),
            email: None,
            ca_file: None,
            challenge: AcmeChallenge::Http01,
        }
    }
}

/// `[logs]`: how much of each app's log stream is kept on disk (`STATE/logs/APP/stream/` and
/// `STATE/logs/APP/platform/`) and how fast one process may add to it.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct LogsConfig {
    /// Disk one app's stream (its output, router and cron lines) may use; the oldest lines
    /// go first (at least 1).
    pub max_mb_per_app: MiB,
    /// Disk one app's platform and build lines may use, apart from the stream so that the
    /// app's own output never rotates them away (at least 1).
    pub platform_mb_per_app: MiB,
    /// Size of one segment file, the unit rotation deletes (at most a quarter of the cap).
    pub segment_mb: MiB,
    /// Output lines one app process may log per second on average (5 s worth at once);
    /// beyond it lines are dropped and the stream says how many. Keeps one app's flood from
    /// taking the log writer, the disk and its own history from everybody else.
    pub lines_per_sec: u32,
}

impl Default for LogsConfig {
    fn default() -> LogsConfig {
        LogsConfig {
            max_mb_per_app: MiB(32),
            platform_mb_per_app: MiB(8),
            segment_mb: MiB(4),
            lines_per_sec: 2000,
        }
    }
}

impl LogsConfig {
    /// The most `lines_per_sec` may be: above it the limit protects nothing.
    pub const MAX_LINES_PER_SEC: u32 = 1_000_000;

    fn validate(&self) -> Result<(), ConfigError> {
        if self.platform_mb_per_app < MiB(1) {
            return Err(ConfigError::Invalid {
                key: "[logs] platform_mb_per_app",
                why: "keep at least 1 MB of platform and build lines".into(),
            });
        }
        if !(1..=Self::MAX_LINES_PER_SEC).contains(&self.lines_per_sec) {
            return Err(ConfigError::Invalid {
                key: "[logs] lines_per_sec",
                why: format!(
                    "{} is not between 1 and {}",
                    self.lines_per_sec,
                    Self::MAX_LINES_PER_SEC
                ),
            });
        }
        Ok(())
    }
}

/// `[build]`: what one deploy may use. Defaults suit a small VPS.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct BuildConfig {
    /// Memory of a build container (no swap).
    pub memory_mb: MiB,
    /// CPU quota of a build, in % of one CPU.
    pub cpu_percent: u32,
    pub pids: u64,
    /// Disk one build may write (its /app, /tmp and writable layer, in a filesystem image of
    /// this size); its cache dir has an image of the same size of its own.
    pub disk_mb: MiB,
    /// Wall-clock limit of a whole build (detect, compile, release phase).
    pub timeout_secs: u64,
    /// Compressed upload size.
    pub max_upload_mb: MiB,
    /// Unpacked source size, entries and path length.
    pub max_source_mb: MiB,
    pub max_source_files: u64,
    pub max_path_bytes: usize,
    /// A deploy is refused when less than this is free under the state dir.
    pub min_free_disk_mb: MiB,
    /// Slugs of the newest N releases (and the current one) are kept for rollback.
    pub keep_releases: u32,
}

impl Default for BuildConfig {
    fn default() -> BuildConfig {
        BuildConfig {
            memory_mb: MiB(2048),
            cpu_percent: 200,
            pids: 4096,
            disk_mb: MiB(4096),
            timeout_secs: 1200,
            max_upload_mb: MiB(512),
            max_source_mb: MiB(2048),
            max_source_files: 200_000,
            max_path_bytes: 1024,
            min_free_disk_mb: MiB(1024),
            keep_releases: 10,
        }
    }
}

/// Overrides from the command line (same names as the file keys). `paasd`'s flags are this
/// struct, so flags and file keys cannot drift apart.
#[derive(Debug, Default, Clone, clap::Args)]
pub struct Overrides {
    /// Config file (default /etc/paas/paasd.toml, read if it exists).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// API socket path (default /run/paas/paasd.sock).
    #[arg(long)]
    pub socket: Option<PathBuf>,
    /// State directory: database, key (unless --key-file), slugs, logs (default /var/lib/paas).
    #[arg(long)]
    pub state_dir: Option<PathBuf>,
    /// Config-var encryption key file (default /etc/paas/secret.key, or STATE_DIR/secret.key).
    #[arg(long)]
    pub key_file: Option<PathBuf>,
    /// Group allowed to use the API socket (default paas).
    #[arg(long)]
    pub socket_group: Option<String>,
    /// Router listen address (default 0.0.0.0:80).
    #[arg(long)]
    pub http: Option<SocketAddr>,
    /// Router HTTPS listen address (none unless given; install.sh sets 0.0.0.0:443).
    #[arg(long)]
    pub https: Option<SocketAddr>,
    /// Apps are served at APP.BASE_DOMAIN (default paas.localhost).
    #[arg(long)]
    pub base_domain: Option<String>,
    /// cgroup subtree for containers (default auto: the `apps` sibling of the `daemon`
    /// subgroup systemd delegated to the unit, else `paas`).
    #[arg(long)]
    pub cgroup_parent: Option<String>,
    /// Bridge for instance networking (default paas0).
    #[arg(long)]
    pub bridge: Option<String>,
    /// Instance subnet (default 10.88.0.0/16).
    #[arg(long)]
    pub subnet: Option<String>,
    /// Directory of the built-in buildpacks (default /usr/local/share/paas/buildpacks).
    #[arg(long)]
    pub buildpacks_dir: Option<PathBuf>,
    /// The system user `git push` logs in as ([git] user; default paas).
    #[arg(long)]
    pub git_user: Option<String>,
    /// First uid apps run as ([users] first_uid; default 1900000000).
    #[arg(long)]
    pub first_uid: Option<u32>,
}

/// Installed location of the built-in buildpacks.
pub const DEFAULT_BUILDPACKS_DIR: &str = "/usr/local/share/paas/buildpacks";

/// The resolved configuration `paasd::run` works from.
#[derive(Debug, Clone)]
pub struct Config {
    pub socket: PathBuf,
    pub state_dir: PathBuf,
    pub key_file: PathBuf,
    /// Group that may use the API socket (mode 0660). Missing group: socket stays root-only.
    pub socket_group: String,
    pub http: SocketAddr,
    /// The router's TLS listener, if any.
    pub https: Option<SocketAddr>,
    pub base_domain: String,
    pub max_body_bytes: usize,
    pub max_json_depth: usize,
    pub max_instances_per_type: u32,
    /// The cgroup subtree paasd owns (one per daemon: tests run several side by side).
    pub cgroup_parent: String,
    /// Bridge the instances hang off, and their subnet (`10.88.0.0/16` style).
    pub bridge: String,
    pub subnet: (std::net::Ipv4Addr, u8),
    /// Extra stacks by name (`[stacks]` in the config file); `host` is built in.
    pub stacks: std::collections::BTreeMap<String, PathBuf>,
    pub buildpacks_dir: PathBuf,
    /// Add-on backups go to `addons/NAME/`, volume backups to `volumes/APP/NAME/` under it.
    pub backups_dir: PathBuf,
    pub build: BuildConfig,
    pub instances: InstanceConfig,
    pub logs: LogsConfig,
    pub acme: AcmeConfig,
    pub git: GitConfig,
    pub max_stack_mb: MiB,
    /// `[router] trusted_proxies`, parsed.
    pub trusted_proxies: Vec<paas_router::IpNet>,
    pub users: UsersConfig,
    /// `[router]`, checked (`trusted_proxies` is the parsed field above).
    pub router: RouterConfig,
}

impl Config {
    /// The cgroup parent containers go under. `auto`: the subtree systemd delegated to this
    /// unit when it gave paasd a `daemon` subgroup (`DelegateSubgroup=daemon`, systemd 254 and
    /// later, pure cgroup v2), so `systemctl status paasd` accounts the apps; otherwise
    /// `paas` at the hierarchy's root, as before. On a hybrid (v1) host under systemd:
    /// `<unit>/apps` in every controller hierarchy (`under_systemd`: `INVOCATION_ID` is set).
    pub fn cgroup_parent_in_use(&self, proc_self_cgroup: &str, under_systemd: bool) -> String {
        if self.cgroup_parent != AUTO_CGROUP_PARENT {
            return self.cgroup_parent.clone();
        }
        paas_runtime::cgroups::delegated_parent(proc_self_cgroup)
            .or_else(|| paas_runtime::cgroups::delegated_parent_v1(proc_self_cgroup, under_systemd))
            .unwrap_or_else(|| "paas".to_string())
    }

    /// Reads the config file (the default one only if it exists) and applies the overrides.
    pub fn load(o: Overrides) -> Result<Config, ConfigError> {
        let file = match &o.config {
            Some(path) => read_file(path)?,
            None if Path::new(DEFAULT_CONFIG_FILE).exists() => {
                read_file(Path::new(DEFAULT_CONFIG_FILE))?
            }
            None => FileConfig::default(),
        };
        Config::resolve(file, o)
    }

    /// Pure merge of file keys and flags, with defaults.
    pub fn resolve(file: FileConfig, o: Overrides) -> Result<Config, ConfigError> {
        let state_dir = o
            .state_dir
            .or(file.state_dir)
            .unwrap_or_else(|| PathBuf::from(DEFAULT_STATE_DIR));
        // A non-default state dir keeps its key inside, so test daemons never share /etc's key.
        let key_file = o.key_file.or(file.key_file).unwrap_or_else(|| {
            if state_dir == Path::new(DEFAULT_STATE_DIR) {
                PathBuf::from(DEFAULT_KEY_FILE)
            } else {
                StatePaths::new(&state_dir).key_file()
            }
        });
        let subnet_text = o
            .subnet
            .or(file.subnet)
            .unwrap_or_else(|| "10.88.0.0/16".to_string());
        let subnet = parse_cidr(&subnet_text).ok_or(ConfigError::Subnet(subnet_text))?;
        let trusted_proxies = file
            .router
            .trusted_proxies
            .iter()
            .map(|n| n.parse())
            .collect::<Result<Vec<paas_router::IpNet>, _>>()
            .map_err(ConfigError::TrustedProxy)?;
        let instances = (
            std::net::IpAddr::V4(subnet.0),
            std::net::IpAddr::V4(broadcast(subnet)),
        );
        if let Some(n) = trusted_proxies
            .iter()
            .find(|n| n.contains(instances.0) || n.contains(instances.1))
        {
            return Err(ConfigError::TrustedInstances(
                format!("{}/{}", n.addr(), n.prefix()),
                format!("{}/{}", subnet.0, subnet.1),
            ));
        }
        let users = UsersConfig {
            first_uid: o.first_uid.unwrap_or(file.users.first_uid),
            ..file.users
        };
        if users.count < 2 || users.first_uid < 65536 {
            return Err(ConfigError::Users(
                "first_uid must be at least 65536 and count at least 2 (the last uid is the edge's)".into(),
            ));
        }
        if u64::from(users.first_uid) + u64::from(users.count) > 1 << 31 {
            return Err(ConfigError::Users(
                "first_uid + count must stay below 2^31 (tools read larger uids as negative)"
                    .into(),
            ));
        }
        file.logs.validate()?;
        file.router.check()?;
        Ok(Config {
            users,
            socket: o
                .socket
                .or(file.socket)
                .unwrap_or_else(|| PathBuf::from(paas_api::DEFAULT_SOCKET)),
            key_file,
            socket_group: o
                .socket_group
                .or(file.socket_group)
                .unwrap_or_else(|| "paas".to_string()),
            http: o
                .http
                .or(file.http)
                .unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 80))),
            https: o.https.or(file.https),
            base_domain: o
                .base_domain
                .or(file.base_domain)
                .unwrap_or_else(|| "paas.localhost".to_string()),
            max_body_bytes: file.max_body_bytes.unwrap_or(1024 * 1024),
            max_json_depth: file.max_json_depth.unwrap_or(16),
            max_instances_per_type: file.max_instances_per_type.unwrap_or(100),
            cgroup_parent: o
                .cgroup_parent
                .or(file.cgroup_parent)
                .unwrap_or_else(|| AUTO_CGROUP_PARENT.to_string()),
            bridge: o
                .bridge
                .or(file.bridge)
                .unwrap_or_else(|| "paas0".to_string()),
            subnet,
            stacks: file.stacks,
            buildpacks_dir: o
                .buildpacks_dir
                .or(file.buildpacks_dir)
                .unwrap_or_else(|| PathBuf::from(DEFAULT_BUILDPACKS_DIR)),
            backups_dir: file
                .backups_dir
                .unwrap_or_else(|| state_dir.join("backups")),
            build: file.build,
            instances: file.instances,
            logs: file.logs,
            acme: file.acme,
            git: GitConfig {
                user: o.git_user.unwrap_or(file.git.user),
                ..file.git
            },
            max_stack_mb: file.max_stack_mb.unwrap_or(MiB(4096)),
            trusted_proxies,
            router: file.router,
            state_dir,
        })
    }

    /// Paths under the state dir.
    pub fn paths(&self) -> StatePaths {
        StatePaths::new(&self.state_dir)
    }
}

/// The last address of `net`.
fn broadcast(net: (std::net::Ipv4Addr, u8)) -> std::net::Ipv4Addr {
    let host_bits = 32 - u32::from(net.1);
    (u32::from(net.0) | ((1u64 << host_bits) - 1) as u32).into()
}

/// `a.b.c.d/p` with 8 <= p <= 30 (room for a gateway and instances).
fn parse_cidr(s: &str) -> Option<(std::net::Ipv4Addr, u8)> {
    let (addr, prefix) = s.split_once('/')?;
    let prefix: u8 = prefix.parse().ok().filter(|p| (8..=30).contains(p))?;
    Some((addr.parse().ok()?, prefix))
}

fn read_file(path: &Path) -> Result<FileConfig, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    toml::from_str(&text).map_err(|source| ConfigError::Parse {
        path: path.to_path_buf(),
        source: Box::new(source),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instances_are_never_trusted_proxies_and_uids_stay_in_range() {
        let file = |t: &str| toml::from_str::<FileConfig>(t).expect("toml");
        let e = Config::resolve(
            file("[router]\ntrusted_proxies = [\"10.0.0.0/8\"]\n"),
            Overrides::default(),
        )
        .expect_err("10.0.0.0/8 holds 10.88.0.0/16");
        assert!(
            e.to_string()
                .contains("overlaps the instance subnet 10.88.0.0/16"),
            "{e}"
        );
        // A proxy inside the subnet's range, not at its ends, is caught too.
        let e = Config::resolve(
            file("subnet = \"10.88.0.0/16\"\n[router]\ntrusted_proxies = [\"10.88.0.0/12\"]\n"),
            Overrides::default(),
        );
        assert!(e.is_err());
        assert!(Config::resolve(
            file("[router]\ntrusted_proxies = [\"192.168.0.0/16\"]\n"),
            Overrides::default()
        )
        .is_ok());
        for bad in [
            "first_uid = 1000",
            "count = 0",
            "count = 1",
            "first_uid = 2147000000\ncount = 1000000",
        ] {
            let e = Config::resolve(file(&format!("[users]\n{bad}\n")), Overrides::default())
                .expect_err(bad);
            assert!(e.to_string().starts_with("[users]"), "{e}");
        }
    }

    #[test]
    fn state_dir_flag_keeps_everything_inside() {
        let c = Config::resolve(
            FileConfig::default(),
            Overrides {
                state_dir: Some("/tmp/x".into()),
                ..Default::default()
            },
        )
        .expect("valid");
        assert_eq!(c.key_file, Path::new("/tmp/x/secret.key"));
        assert_eq!(c.paths().db(), Path::new("/tmp/x/paas.db"));
        assert_eq!(c.backups_dir, Path::new("/tmp/x/backups"));
        let file: FileConfig = toml::from_str("backups_dir = \"/mnt/bk\"\n").expect("toml");
        let c = Config::resolve(file, Overrides::default()).expect("valid");
        assert_eq!(
            c.backups_dir,
            Path::new("/mnt/bk"),
            "backups can go to another disk"
        );
    }

    #[test]
    fn defaults_are_production_paths() {
        let c = Config::resolve(FileConfig::default(), Overrides::default()).expect("valid");
        assert_eq!(c.subnet, ("10.88.0.0".parse().expect("ip"), 16));
        assert_eq!(c.key_file, Path::new(DEFAULT_KEY_FILE));
        assert_eq!(c.socket, Path::new("/run/paas/paasd.sock"));
        assert_eq!(c.http.port(), 80);
    }

    #[test]
    fn the_cgroup_parent_follows_systemds_delegation_unless_set() {
        let c = Config::resolve(FileConfig::default(), Overrides::default()).expect("valid");
        let delegated = "0::/system.slice/paasd.service/daemon\n";
        assert_eq!(
            c.cgroup_parent_in_use(delegated, true),
            "system.slice/paasd.service/apps"
        );
        assert_eq!(
            c.cgroup_parent_in_use("0::/system.slice/paasd.service\n", true),
            "paas"
        );
        assert_eq!(c.cgroup_parent_in_use("5:pids:/\n0::/\n", true), "paas");
        // A hybrid host: the service's cgroup in every v1 hierarchy, if systemd started us.
        let hybrid = "7:pids:/system.slice/paasd.service\n4:memory:/system.slice/paasd.service\n\
                      2:cpu,cpuacct:/system.slice/paasd.service\n1:name=systemd:/system.slice/paasd.service\n\
                      0::/system.slice/paasd.service\n";
        assert_eq!(
            c.cgroup_parent_in_use(hybrid, true),
            "system.slice/paasd.service/apps"
        );
        assert_eq!(c.cgroup_parent_in_use(hybrid, false), "paas");
        let set = Config::resolve(
            FileConfig::default(),
            Overrides {
                cgroup_parent: Some("mine".into()),
                ..Default::default()
            },
        )
        .expect("valid");
        assert_eq!(set.cgroup_parent_in_use(delegated, true), "mine");
    }

    #[test]
    fn flags_override_file() {
        let file: FileConfig =
            toml::from_str("socket = \"/a.sock\"\nbase_domain = \"example.com\"\n")
                .expect("valid toml");
        let c = Config::resolve(
            file,
            Overrides {
                socket: Some("/b.sock".into()),
                ..Default::default()
            },
        )
        .expect("valid");
        assert_eq!(c.socket, Path::new("/b.sock"));
        assert_eq!(c.base_domain, "example.com");
    }

    #[test]
    fn subnets_are_checked() {
        assert_eq!(
            parse_cidr("10.213.4.0/24"),
            Some(("10.213.4.0".parse().expect("ip"), 24))
        );
        for bad in [
            "10.0.0.0",
            "10.0.0.0/33",
            "10.0.0.0/31",
            "x/16",
            "10.0.0/16",
        ] {
            assert_eq!(parse_cidr(bad), None, "{bad}");
        }
    }

    #[test]
    fn build_table_overrides_some_keys() {
        let file: FileConfig =
            toml::from_str("[build]\nmemory_mb = 256\ntimeout_secs = 60\n").expect("valid");
        let c = Config::resolve(file, Overrides::default()).expect("valid");
        assert_eq!(c.build.memory_mb, MiB(256));
        assert_eq!(c.build.memory_mb.bytes(), 256 << 20);
        assert_eq!(c.build.timeout_secs, 60);
        assert_eq!(c.build.keep_releases, 10);
        assert!(toml::from_str::<FileConfig>("[build]\nmemory = 1\n").is_err());
    }

    #[test]
    fn logs_table() {
        let c = Config::resolve(FileConfig::default(), Overrides::default()).expect("valid");
        assert_eq!(c.logs.max_mb_per_app.bytes(), 32 << 20);
        let file: FileConfig = toml::from_str("[logs]\nmax_mb_per_app = 8\n").expect("valid");
        let c = Config::resolve(file, Overrides::default()).expect("valid");
        assert_eq!((c.logs.max_mb_per_app, c.logs.segment_mb), (MiB(8), MiB(4)));
        assert_eq!(c.logs.lines_per_sec, 2000);
        assert_eq!(c.logs.platform_mb_per_app, MiB(8));
        let file: FileConfig = toml::from_str("[logs]\nplatform_mb_per_app = 0\n").expect("parses");
        let e = Config::resolve(file, Overrides::default()).expect_err("refused");
        assert!(e.to_string().contains("platform_mb_per_app"), "{e}");
        assert!(toml::from_str::<FileConfig>("[logs]\nmax_mb = 1\n").is_err());
        let file: FileConfig = toml::from_str("[logs]\nlines_per_sec = 50\n").expect("valid");
        let c = Config::resolve(file, Overrides::default()).expect("valid");
        assert_eq!(c.logs.lines_per_sec, 50);
        for bad in ["0", "1000001"] {
            let file: FileConfig =
                toml::from_str(&format!("[logs]\nlines_per_sec = {bad}\n")).expect("parses");
            let e = Config::resolve(file, Overrides::default()).expect_err("refused");
            assert_eq!(
                e.to_string(),
                format!("config key [logs] lines_per_sec: {bad} is not between 1 and 1000000")
            );
        }
        assert!(toml::from_str::<FileConfig>("[logs]\nlines_per_sec = -1\n").is_err());
    }

    #[test]
    fn router_trusted_proxies_are_cidrs() {
        let c = Config::resolve(FileConfig::default(), Overrides::default()).expect("valid");
        assert!(c.trusted_proxies.is_empty());
        let file: FileConfig = toml::from_str(
            "[router]\ntrusted_proxies = [\"127.0.0.1/32\", \"172.16.0.0/12\", \"fd00::/8\"]\n",
        )
        .expect("valid");
        let c = Config::resolve(file, Overrides::default()).expect("valid");
        let nets: Vec<String> = c.trusted_proxies.iter().map(|n| n.to_string()).collect();
        assert_eq!(nets, ["127.0.0.1/32", "172.16.0.0/12", "fd00::/8"]);
        for (bad, says) in [
            ("10.0.0.1/8", "host bits set; the network is 10.0.0.0/8"),
            ("10.0.0.0/40", "not a prefix length"),
            ("proxy.local", "'proxy.local' is not an IP address"),
        ] {
            let file: FileConfig =
                toml::from_str(&format!("[router]\ntrusted_proxies = [\"{bad}\"]\n"))
                    .expect("valid toml");
            let err = Config::resolve(file, Overrides::default()).expect_err(bad);
            let msg = err.to_string();
            assert!(msg.starts_with("[router] trusted_proxies: "), "{msg}");
            assert!(msg.contains(says), "{msg}");
        }
        assert!(toml::from_str::<FileConfig>("[router]\ntrusted = []\n").is_err());
    }

    #[test]
    fn router_caps_and_timeouts_have_defaults_and_are_checked() {
        let c = Config::resolve(FileConfig::default(), Overrides::default()).expect("valid");
        assert_eq!(c.router, RouterConfig::default());
        assert_eq!(
            (c.router.max_connections, c.router.max_connections_per_ip),
            (10_000, 256)
        );
        assert_eq!(
            (c.router.header_timeout_secs, c.router.idle_timeout_secs),
            (10, 60)
        );
        let file: FileConfig = toml::from_str(
            "[router]\nmax_connections = 50\nmax_connections_per_ip = 5\nheader_timeout_secs = 2\n",
        )
        .expect("valid");
        let c = Config::resolve(file, Overrides::default()).expect("valid");
        assert_eq!(c.router.max_connections, 50);
        assert_eq!(c.router.max_connections_per_ip, 5);
        assert_eq!(c.router.header_timeout_secs, 2);
        assert_eq!(c.router.idle_timeout_secs, 60);
        for (bad, says) in [
            (
                "max_connections = 0",
                "[router] max_connections: 0 is not between 1",
            ),
            (
                "max_connections = 10\nmax_connections_per_ip = 11",
                "[router] max_connections_per_ip: 11 is not between 1 and max_connections (10)",
            ),
            (
                "max_connections_per_ip = 0",
                "[router] max_connections_per_ip: 0",
            ),
            ("header_timeout_secs = 0", "[router] header_timeout_secs: 0"),
            (
                "idle_timeout_secs = 7200",
                "[router] idle_timeout_secs: 7200",
            ),
        ] {
            let file: FileConfig =
                toml::from_str(&format!("[router]\n{bad}\n")).expect("valid toml");
            let err = Config::resolve(file, Overrides::default()).expect_err(bad);
            assert!(err.to_string().starts_with(says), "{bad}: {err}");
        }
        // A negative number is not a count at all.
        assert!(toml::from_str::<FileConfig>("[router]\nmax_connections = -1\n").is_err());
    }

    #[test]
    fn unknown_keys_are_rejected() {
        assert!(toml::from_str::<FileConfig>("sockett = \"/a\"").is_err());
    }
}
