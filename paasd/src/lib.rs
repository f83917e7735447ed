//! paasd: the paas daemon as a library. [`run`] is the real entry point (`main.rs` only
//! parses flags and waits for signals), so tests and embedders drive the same code.

#![forbid(unsafe_code)]

pub mod addons;
pub mod addresses;
pub mod api;
pub mod app_files;
pub mod app_json;
pub mod app_users;
pub mod apps;
pub mod build;
pub mod certs;
pub mod config;
pub mod cron;
pub mod disk_image;
pub mod edge;
pub mod fds;
pub mod floods;
pub mod git;
pub mod launch;
pub mod locks;
pub mod logs;
pub mod memory;
pub mod notify;
pub mod oneoff;
pub mod platform_backup;
pub mod routing;
pub mod secrets;
pub mod slugs;
pub mod stacks;
pub mod store;
pub mod supervisor;
pub mod tarball;
pub mod volumes;

use std::fs::{self, File, OpenOptions};
use std::future::Future;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use nix::fcntl::{Flock, FlockArg};

pub use config::{Config, Overrides};
pub use paas_runtime::Shutdown;

#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error("state dir {}: {source}", .path.display())]
    StateDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("another paasd is using state dir {} (lock {} is held)", .dir.display(), .lock.display())]
    Locked { dir: PathBuf, lock: PathBuf },
    #[error(transparent)]
    Secret(#[from] secrets::SecretError),
    #[error(transparent)]
    Certs(#[from] certs::CertError),
    #[error("cannot read [acme] ca_file {path}: {source}")]
    AcmeCaFile {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Store(#[from] store::StoreError),
    #[error(transparent)]
    Socket(#[from] api::socket::SocketError),
    #[error("router: cannot listen on {addr}: {source}")]
    Http {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
    #[error("{what} failed: {error}")]
    Task { what: &'static str, error: String },
    #[error(transparent)]
    Address(#[from] addresses::AddressError),
    #[error("container runtime: {0}")]
    Runtime(#[from] paas_runtime::RuntimeError),
    #[error("app logs: {0}")]
    Logs(#[from] logs::LogError),
    #[error("git push: {0}")]
    Git(#[from] git::GitError),
    #[error(transparent)]
    Users(#[from] app_users::UsersError),
    #[error(transparent)]
    Apps(#[from] apps::AppError),
}

/// Runs the daemon until `shutdown` resolves, then drains requests and returns. What it
/// resolves to says whether the app instances stop too or run on for the next paasd.
pub async fn run(
    config: Config,
    shutdown: impl Future<Output = Shutdown>,
) -> Result<(), DaemonError> {
    let _lock = prepare_state_dir(&config)?;
    let mut inherited = Inherited::take(&config);
    app_users::check_range(
        std::path::Path::new("/etc"),
        config.users.first_uid,
        config.users.count,
    )?;
    // The apps' and add-ons' uids, then (the last) the edge's.
    let users = apps::UidRange {
        first: config.users.first_uid,
        count: config.users.count,
    };
    // Before anything opens descriptors in numbers; the router's budget is taken from this.
    let nofile = match fds::raise() {
        Ok(n) => {
            tracing::info!(
                before = n.before,
                now = n.now,
                "RLIMIT_NOFILE (open files) raised to the hard limit"
            );
            Some(n.now)
        }
        Err(e) => {
            tracing::warn!(error = %e, "could not raise RLIMIT_NOFILE; the router's budget uses the current limit");
            nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
                .ok()
                .map(|(soft, _)| soft)
        }
    };
    let secrets = secrets::SecretBox::load_or_create(&config.key_file)?;
    let secrets_for_restore = secrets.clone();
    let paths = config.paths();
    let db_path = paths.db();
    let store = tokio::task::spawn_blocking(move || store::Store::open(&db_path))
        .await
        .map_err(|e| store::StoreError::Worker(e.to_string()))??;
    // Configured stacks, plus the ones imported by an earlier run (a configured name wins).
    let mut all_stacks = stacks::imported(&config.state_dir);
    all_stacks.extend(config.stacks.clone());
    let stack_names = Arc::new(std::sync::RwLock::new(
        std::iter::once("host".to_string())
            .chain(all_stacks.keys().cloned())
            .collect::<Vec<_>>(),
    ));
    // Apps, domains and instances change what the router must know; the supervisor publishes.
    let routes = routing::RouteSignal::new();
    let apps = apps::Apps::new(
        store.clone(),
        secrets.clone(),
        apps::Settings {
            base_domain: config.base_domain.clone(),
            max_instances_per_type: config.max_instances_per_type,
            stacks: stack_names.clone(),
            routes: routes.clone(),
            uids: users.for_apps(),
            resources: resource_settings(&config.instances, &config.build),
            volumes_dir: paths.volumes(),
        },
    );
    // The edge (the router's process) the last paasd left serving, if any: it holds the
    // ports, so its sockets are used when nobody handed them to us.
    let mut found_edges = {
        let state_dir = config.state_dir.clone();
        tokio::task::spawn_blocking(move || edge::discover(&state_dir))
            .await
            .unwrap_or_default()
    };
    // Bound before the network is set up: the policy publishes the port it got.
    let listeners = router_listeners(&config, &mut inherited, &mut found_edges)?;
    let router_addr = listeners.http.local_addr().ok();
    let router_tls_addr = listeners.https.as_ref().and_then(|l| l.local_addr().ok());
    let network = paas_runtime::net::Network::setup(paas_runtime::net::NetConfig {
        bridge: config.bridge.clone(),
        subnet: config.subnet.0,
        prefix: config.subnet.1,
        policy: paas_runtime::net::Policy {
            published: std::iter::once(router_addr.map_or(config.http.port(), |a| a.port()))
                .chain(router_tls_addr.map(|a| a.port()))
                .collect(),
            dns: paas_runtime::container_nameservers(),
        },
    })
    .await
    .map_err(paas_runtime::RuntimeError::from)?;
    let subnet = network.subnet();
    let cg_parent = config.cgroup_parent_in_use(
        &fs::read_to_string("/proc/self/cgroup").unwrap_or_default(),
        std::env::var_os("INVOCATION_ID").is_some(),
    );
    tracing::info!(parent = %cg_parent, "containers' cgroups go under this parent");
    let (state_dir, stacks) = (config.state_dir.clone(), all_stacks.clone());
    let runtime = tokio::task::spawn_blocking(move || {
        paas_runtime::Runtime::new(&state_dir, &cg_parent, network, &stacks)
    })
    .await
    .map_err(|e| DaemonError::Task {
        what: "starting the container runtime",
        error: e.to_string(),
    })??;
    tracing::info!(cgroups = runtime.cgroup_kind(), "container runtime ready");
    let runtime = Arc::new(runtime);
    // Addresses on record stay taken until the supervisor has adopted what still runs.
    let addresses =
        addresses::Addresses::new(store.clone(), subnet).with_policy(Arc::clone(&runtime));
    if !config.buildpacks_dir.is_dir() {
        tracing::warn!(dir = %config.buildpacks_dir.display(), "built-in buildpacks not found; builds need buildpacks_dir");
    }
    let logs = logs::Logs::new(&paths.logs(), logs::LogConfig::from_settings(&config.logs))?;
    // Failed releases left pending by a stop mid-rollout never ran.
    store.tx(store::releases::fail_pending).await?;
    let edge_options = edge::Options {
        trusted_proxies: config
            .trusted_proxies
            .iter()
            .map(ToString::to_string)
            .collect(),
        max_connections: config.router.max_connections,
        max_connections_per_ip: config.router.max_connections_per_ip,
        header_timeout_ms: config.router.header_timeout_secs.saturating_mul(1000),
        idle_timeout_ms: config.router.idle_timeout_secs.saturating_mul(1000),
        upgrade_idle_timeout_ms: config.router.upgrade_idle_timeout_secs.saturating_mul(1000),
        nofile,
        uid: users.edge(),
    };
    let max_connections = config
        .router
        .max_connections
        .min(nofile.map_or(usize::MAX, paas_router::connection_budget));
    if max_connections < config.router.max_connections {
        tracing::warn!(
            "router: at most {} client connections, not max_connections = {}: RLIMIT_NOFILE is {} \
             and a tenth of it (at least {}) stays for the API, health checks, logs and containers",
            max_connections,
            config.router.max_connections,
            nofile.unwrap_or(0),
            paas_router::MIN_FD_RESERVE,
        );
    } else {
        tracing::info!(
            max_connections,
            per_ip = config.router.max_connections_per_ip,
            "router: client connection caps"
        );
    }
    // Takes over the edge the last paasd left, if it suits; tables reach it from `go_live`.
    let edge = edge::Edge::start(
        config.state_dir.clone(),
        edge_options,
        listeners,
        found_edges,
        {
            let logs = logs.clone();
            Arc::new(move |a: edge::Access| {
                let access = logs::Access {
                    method: &a.method,
                    path: &a.path,
                    status: a.status,
                    bytes: a.bytes,
                    duration: std::time::Duration::from_micros(a.duration_us),
                    instance: a.instance.as_deref(),
                };
                logs.router(&a.app, a.release, &access);
            })
        },
    )
    .await;
    let hooks = supervisor::Hooks {
        publish: {
            let edge = edge.clone();
            Arc::new(move |table| edge.publish(table))
        },
        inflight: {
            let edge = edge.clone();
            Arc::new(move |addr| {
                let edge = edge.clone();
                Box::pin(async move { edge.inflight(addr).await })
            })
        },
        log: {
            let logs = logs.clone();
            Arc::new(move |app: &str, line: paas_api::LogLine| logs.append(app, line))
        },
    };
    let slugs = slugs::Slugs::new(&paths.slugs());
    let slugs_for_restore = slugs.clone();
    // Apps from before uids were per app get theirs, and their slugs with them.
    for (app, uid) in apps.assign_uids().await? {
        let slugs = slugs.clone();
        let reowned = tokio::task::spawn_blocking(move || slugs.reown(&app, uid)).await;
        if let Ok(Err(e)) = reowned {
            tracing::warn!(error = %e, "could not give an app's slugs to its new uid");
        }
    }
    let locks = locks::AppLocks::new();
    let line_rate = floods::LineRate {
        per_sec: config.logs.lines_per_sec,
    };
    let supervisor = supervisor::Supervisor::new(
        supervisor::Services {
            runtime: Arc::clone(&runtime),
            routes: routes.clone(),
            addresses: addresses.clone(),
            locks: locks.clone(),
            apps: apps.clone(),
            slugs: slugs.clone(),
            hooks,
            line_rate,
        },
        config.base_domain.clone(),
        config.instances.clone(),
    );
    let volumes = volumes::Volumes::new(
        store.clone(),
        paths.volumes(),
        config.backups_dir.join("volumes"),
    );
    let addons = addons::Addons::new(addons::Services {
        store: store.clone(),
        secrets: secrets.clone(),
        apps: apps.clone(),
        supervisor: supervisor.clone(),
        addresses: addresses.clone(),
        runtime: Arc::clone(&runtime),
        uids: users.for_apps(),
        data: paths.addons(),
        backups: config.backups_dir.join("addons"),
    });
    let oneoffs = oneoff::OneOffs::new(
        apps.clone(),
        addresses.clone(),
        Arc::clone(&runtime),
        slugs.clone(),
    );
    let cron = cron::Cron::new(
        apps.clone(),
        oneoffs.clone(),
        slugs.clone(),
        logs.clone(),
        line_rate,
    );
    let builds = build::Builds::new(
        build::Services {
            apps: apps.clone(),
            store: store.clone(),
            runtime: Arc::clone(&runtime),
            oneoffs: oneoffs.clone(),
            locks,
            slugs,
            supervisor: supervisor.clone(),
            logs: logs.clone(),
            addresses: addresses.clone(),
        },
        config.build.clone(),
        config.buildpacks_dir.clone(),
        paths.clone(),
    );
    builds.recover().await?;
    let stacks = stacks::Stacks::new(
        Arc::clone(&runtime),
        &config.state_dir,
        stack_names,
        config.max_stack_mb.bytes(),
    );
    let git = git::Git::new(
        store.clone(),
        apps.clone(),
        config.git.clone(),
        config.state_dir.clone(),
        &config.socket,
        config.build.max_upload_mb.bytes(),
    )?;
    // Keys keep working when the socket or shell path changed; a missing git user only
    // matters once somebody pushes, so it is not fatal here.
    if let Err(e) = git.sync_keys().await {
        tracing::warn!(error = %e, "could not rewrite the git user's authorized_keys");
    }
    let certs = certs::Certs::new(
        store.clone(),
        secrets,
        {
            let edge = edge.clone();
            Arc::new(move |c: &paas_router::tls::Certs| edge.publish_certs(c))
        },
        routes.clone(),
        &config.base_domain,
    );
    certs.publish().await?;
    if let (true, Some(_)) = (config.acme.enabled, router_tls_addr) {
        let mut settings = certs::acme::AcmeSettings::new(config.acme.directory_url.clone());
        settings.contact_email = config.acme.email.clone();
        if let Some(path) = &config.acme.ca_file {
            settings.extra_root_pem =
                Some(
                    std::fs::read(path).map_err(|source| DaemonError::AcmeCaFile {
                        path: path.clone(),
                        source,
                    })?,
                );
        }
        if config.acme.challenge == config::AcmeChallenge::TlsAlpn01 {
            settings.tls_alpn = Some(certs.tls_alpn_answers());
        }
        settings.served = Some({
            let edge = edge.clone();
            certs::acme::Served(Arc::new(move || {
                let edge = edge.clone();
                Box::pin(async move { edge.applied().await })
            }))
        });
        let tokens = certs::acme::Http01Tokens::new();
        let edge = edge.clone();
        tokens.on_change(certs::acme::TokensChanged(Arc::new(move |m| {
            edge.set_acme(m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
        })));
        certs.start_acme(settings, tokens);
    }
    let platform = platform_backup::PlatformBackups::new(platform_backup::Services {
        store: store.clone(),
        secrets: secrets_for_restore,
        key_file: config.key_file.clone(),
        state_dir: config.state_dir.clone(),
        apps: apps.clone(),
        slugs: slugs_for_restore,
        git: git.clone(),
        volumes: volumes.clone(),
        addons: addons.clone(),
        certs: certs.clone(),
        supervisor: supervisor.clone(),
        // An archive holds every app's slugs and data: the stack import's cap, at least 16 GB.
        max_upload: config.max_stack_mb.bytes().max(16 << 30),
        uids: users.for_apps(),
    });
    platform.sweep();
    let state = Arc::new(api::State {
        platform,
        addons: addons.clone(),
        volumes: volumes.clone(),
        certs,
        router_tls_addr,
        git,
        stacks,
        apps,
        oneoffs,
        builds,
        supervisor: supervisor.clone(),
        cron: cron.clone(),
        router_addr,
        edge: edge.clone(),
        logs: logs.clone(),
        limits: api::body::Limits {
            max_body_bytes: config.max_body_bytes,
            max_json_depth: config.max_json_depth,
        },
        started: Instant::now(),
    });

    // An inherited socket belongs to whoever handed it over: its file stays when we exit.
    let (listener, socket_guard) = match inherited.api.take() {
        Some(l) => (l, None),
        None => {
            let (l, guard) = api::socket::bind(&config.socket, &config.socket_group)?;
            (l, Some(guard))
        }
    };
    let listener = listener
        .set_nonblocking(true)
        .and_then(|()| tokio::net::UnixListener::from_std(listener))
        .map_err(|source| api::socket::SocketError::Io {
            path: config.socket.clone(),
            source,
        })?;
    // Held by systemd from here on: then the API socket's file must outlive a restart.
    let stored = {
        use std::os::fd::AsFd;
        let mut fds = vec![
            ("api", listener.as_fd()),
            ("http", edge.listeners().http.as_fd()),
        ];
        if let Some(l) = edge.listeners().https.as_ref() {
            fds.push(("https", l.as_fd()));
        }
        notify::store_listeners(&fds)
    };
    tracing::info!(socket = %config.socket.display(), state_dir = %config.state_dir.display(), "paasd ready");
    // Both listeners are bound, so connections queue from here on: tell systemd (Type=notify).
    notify::ready(&format!(
        "serving the API on {} and apps on {}",
        config.socket.display(),
        router_addr.map_or_else(|| config.http.to_string(), |a| a.to_string())
    ));
    // What the last paasd left running is taken back (and routed once ready) before the
    // router accepts a connection: those queued meanwhile go to instances that answer.
    let adopted = runtime.recover().await;
    // Add-on services first: apps' instances (adopted or started) find their databases
    // running and linked.
    volumes.mount_all().await;
    let adopted = addons.start(adopted).await;
    addons.start_scheduler();
    if !adopted.is_empty() {
        let found = adopted.len();
        let kept = supervisor.adopt(adopted).await;
        tracing::info!(
            found,
            kept,
            "adopted the instances the last paasd left running"
        );
    } else {
        supervisor.adopt(Vec::new()).await;
    }
    {
        let supervisor = supervisor.clone();
        tokio::spawn(async move { supervisor.start_all().await });
    }
    cron.start().await;
    // The instances are adopted and routed: the edge gets the table (a new edge starts now,
    // and one it replaces stops accepting and finishes what it has in flight).
    edge.go_live().await;
    let mode = Arc::new(std::sync::OnceLock::new());
    let shutdown = {
        let (runtime, supervisor, addons, volumes, logs, mode, edge) = (
            Arc::clone(&runtime),
            supervisor.clone(),
            addons.clone(),
            volumes.clone(),
            logs.clone(),
            Arc::clone(&mode),
            edge.clone(),
        );
        async move {
            let how = shutdown.await;
            let _ = mode.set(how);
            // `logs --follow` streams end too, or they would hold the drain open.
            logs.close_followers();
            match how {
                Shutdown::StopAll => {
                    notify::stopping("stopping: draining requests and stopping instances");
                    // Containers go first: attached `paas run` streams then end with their
                    // exit instead of holding the drain open for its whole timeout.
                    supervisor.shutdown().await;
                    // Databases last: apps may write to them until they stop.
                    addons.shutdown(false).await;
                    volumes.unmount_all().await;
                    // The edge answered (503) until now; it finishes and exits.
                    edge.stop().await;
                }
                Shutdown::Detach => {
                    notify::stopping("restarting: apps keep running for the next paasd");
                    // The edge serves on, and the instances run on, for the next paasd.
                    edge.detach();
                    supervisor.detach().await;
                    addons.shutdown(true).await;
                }
            }
            let _ = tokio::task::spawn_blocking(move || runtime.shutdown(how)).await;
        }
    };
    tracing::info!(http = ?router_addr, https = ?router_tls_addr, "router listening");
    api::serve(listener, state, shutdown).await;
    let how = mode.get().copied().unwrap_or(Shutdown::StopAll);
    // A restart whose API socket lives on in systemd's store keeps its file; otherwise the
    // file goes with the socket, as before.
    match (socket_guard, how) {
        (Some(g), Shutdown::Detach) if stored => g.keep(),
        (g, _) => drop(g),
    }
    // Again: a request that raced the signal may have started one more.
    runtime.shutdown(how);
    logs.flush().await;
    tracing::info!("paasd stopped");
    Ok(())
}

/// The router's listening sockets: handed over at start (systemd's store, a test), else
/// those of the edge the last paasd left serving (it holds the ports), else bound now with
/// a deep accept backlog (hundreds of clients connecting at once must not overflow it).
fn router_listeners(
    config: &Config,
    inherited: &mut Inherited,
    found: &mut [edge::Found],
) -> Result<edge::Listeners, DaemonError> {
    let need_edge =
        inherited.http.is_none() || (config.https.is_some() && inherited.https.is_none());
    let mut from_edge = None;
    if need_edge {
        if let Some(f) = found.iter_mut().find(|f| f.serves(config.http)) {
            match f.take_listeners() {
                Ok(l) => {
                    tracing::info!(
                        pid = f.pid(),
                        "using the listening sockets of the running edge"
                    );
                    from_edge = Some(l);
                }
                Err(e) => {
                    tracing::warn!(pid = f.pid(), error = %e, "could not get the running edge's sockets")
                }
            }
        }
    }
    let bind = |addr: std::net::SocketAddr| -> Result<std::net::TcpListener, DaemonError> {
        paas_router::bind(addr)
            .and_then(tokio::net::TcpListener::into_std)
            .map_err(|source| DaemonError::Http { addr, source })
    };
    let (edge_http, edge_https) = match from_edge {
        Some(l) => (Some(l.http), l.https),
        None => (None, None),
    };
    // The edge's HTTPS socket only if it is the configured one (the config may have moved it).
    let edge_https = edge_https.filter(
        |l| matches!((l.local_addr(), config.https), (Ok(a), Some(want)) if edge::matches(a, want)),
    );
    let http = match inherited.http.take().or(edge_http) {
        Some(l) => l,
        None => bind(config.http)?,
    };
    let https = match config.https {
        None => None,
        Some(addr) => match inherited.https.take().or(edge_https) {
            Some(l) => Some(l),
            None => Some(bind(addr)?),
        },
    };
    Ok(edge::Listeners { http, https })
}

/// The listening sockets handed over at start (see `paas_runtime::listen_fds`), matched to
/// what the config says by address: they are used instead of binding.
#[derive(Default)]
struct Inherited {
    api: Option<std::os::unix::net::UnixListener>,
    http: Option<std::net::TcpListener>,
    https: Option<std::net::TcpListener>,
}

impl Inherited {
    fn take(config: &Config) -> Inherited {
        let mut got = Inherited::default();
        for l in paas_runtime::listen_fds::take() {
            match l {
                // paasd listens on one Unix socket, the API's. Its bound name may not be
                // --socket: paasd binds a temporary name and renames it into place.
                paas_runtime::listen_fds::Listener::Unix(u) => {
                    let path = u
                        .local_addr()
                        .ok()
                        .and_then(|a| a.as_pathname().map(PathBuf::from));
                    if got.api.is_none() {
                        tracing::info!(socket = %config.socket.display(), bound = ?path, "using the inherited API socket");
                        got.api = Some(u);
                    } else {
                        tracing::warn!(?path, "a second inherited Unix socket; closed");
                    }
                }
                paas_runtime::listen_fds::Listener::Tcp(t) => {
                    let addr = t.local_addr().ok();
                    let is = |want: Option<std::net::SocketAddr>| matches!((addr, want), (Some(a), Some(w)) if a == w || (w.ip().is_unspecified() && a.port() == w.port()));
                    let slot = if is(Some(config.http)) && got.http.is_none() {
                        &mut got.http
                    } else if is(config.https) && got.https.is_none() {
                        &mut got.https
                    } else {
                        tracing::warn!(
                            ?addr,
                            "an inherited TCP socket matches neither --http nor --https; closed"
                        );
                        continue;
                    };
                    tracing::info!(?addr, "using an inherited listening socket");
                    *slot = Some(t);
                }
            }
        }
        got
    }
}

/// Creates the state dir and takes its exclusive lock (held for the daemon's lifetime), so
/// two daemons never share one database.
/// `[instances]` limits as the app service's defaults, with this host's memory and CPUs as
/// the ceilings `paas resources` may set.
fn resource_settings(
    c: &config::InstanceConfig,
    b: &config::BuildConfig,
) -> apps::ResourceSettings {
    // Unreadable /proc: a ceiling no host has, so nothing sane is refused.
    let host_memory_mb = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| mem_total_mb(&m))
        .unwrap_or(1 << 30);
    apps::ResourceSettings {
        defaults: apps::Limits {
            memory_mb: c.memory_mb.0,
            cpu_percent: c.cpu_percent,
            pids: c.pids,
            disk_mb: c.disk_mb.0,
        },
        build_defaults: apps::Limits {
            memory_mb: b.memory_mb.0,
            cpu_percent: b.cpu_percent,
            pids: b.pids,
            disk_mb: b.disk_mb.0,
        },
        host_memory_mb,
        cpus: std::thread::available_parallelism()
            .map_or(1, |n| u32::try_from(n.get()).unwrap_or(u32::MAX)),
    }
}

/// `MemTotal:  24683520 kB` of /proc/meminfo, in MiB.
fn mem_total_mb(meminfo: &str) -> Option<u64> {
    let line = meminfo.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024)
}

fn prepare_state_dir(config: &Config) -> Result<Flock<File>, DaemonError> {
    let dir = &config.state_dir;
    let io = |source| DaemonError::StateDir {
        path: dir.clone(),
        source,
    };
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o755)
        .create(dir)
        .map_err(io)?;
    let lock_path = config.paths().lock();
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o644)
        .open(&lock_path)
        .map_err(io)?;
    let mut lock =
        Flock::lock(file, FlockArg::LockExclusiveNonblock).map_err(|_| DaemonError::Locked {
            dir: dir.clone(),
            lock: lock_path.clone(),
        })?;
    lock.set_len(0).map_err(io)?;
    writeln!(lock, "{}", std::process::id()).map_err(io)?;
    Ok(lock)
}

#[cfg(test)]
mod tests {
    #[test]
    fn host_memory_is_read_from_meminfo() {
        let m = "MemTotal:       24683520 kB\nMemFree:  1 kB\n";
        assert_eq!(super::mem_total_mb(m), Some(24105));
        assert_eq!(super::mem_total_mb("MemFree: 1 kB\n"), None);
        assert_eq!(super::mem_total_mb("MemTotal: lots kB\n"), None);
    }
}
