//! What each kind of add-on is: the host programs it runs, the port, the script that starts
//! it inside its container, the URL apps get, the config var that URL goes in, and how its
//! client, readiness probe and backups are invoked. Pure: builds strings and argv, runs
//! nothing (`service.rs` and `tools.rs` do).

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

/// Where the service's data dir is mounted inside its container.
pub const DATA_MOUNT: &str = "/data";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    Postgres,
    Redis,
}

impl Kind {
    pub fn parse(s: &str) -> Option<Kind> {
        match s {
            "postgres" | "postgresql" | "heroku-postgresql" => Some(Kind::Postgres),
            "redis" | "heroku-redis" => Some(Kind::Redis),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Postgres => "postgres",
            Kind::Redis => "redis",
        }
    }

    pub fn port(self) -> u16 {
        match self {
            Kind::Postgres => 5432,
            Kind::Redis => 6379,
        }
    }

    /// The config var of an app's first link of this kind (Heroku's names).
    pub fn default_env_var(self) -> &'static str {
        match self {
            Kind::Postgres => "DATABASE_URL",
            Kind::Redis => "REDIS_URL",
        }
    }

    /// The signal that stops it cleanly and quickly: PostgreSQL's SIGTERM waits for every
    /// client to disconnect ("smart"), SIGINT is its "fast" shutdown (a checkpoint, then exit).
    pub fn stop_signal(self) -> i32 {
        match self {
            Kind::Postgres => libc::SIGINT,
            Kind::Redis => libc::SIGTERM,
        }
    }

    /// The file extension of its backups: a `pg_dump -Fc` archive or a Redis RDB snapshot.
    pub fn backup_ext(self) -> &'static str {
        match self {
            Kind::Postgres => "dump",
            Kind::Redis => "rdb",
        }
    }

    /// The database name in a PostgreSQL URL: the service's name, as an identifier.
    pub fn database(self, service: &str) -> String {
        service.replace('-', "_")
    }

    /// The URL a linked app gets. Passwords are generated from `[0-9a-f]`, so nothing needs
    /// escaping.
    pub fn url(self, service: &str, password: &str, ip: Ipv4Addr) -> String {
        match self {
            Kind::Postgres => format!(
                "postgres://postgres:{password}@{ip}:{}/{}",
                self.port(),
                self.database(service)
            ),
            Kind::Redis => format!("redis://:{password}@{ip}:{}", self.port()),
        }
    }

    /// The versions this host can run, newest first (from the host's packages).
    pub fn versions(self, root: &Path) -> Vec<String> {
        match self {
            Kind::Postgres => {
                let mut v: Vec<(u32, String)> = std::fs::read_dir(root.join("usr/lib/postgresql"))
                    .into_iter()
                    .flatten()
                    .flatten()
                    .filter_map(|e| {
                        let name = e.file_name().to_string_lossy().into_owned();
                        let n = name.parse::<u32>().ok()?;
                        e.path().join("bin/postgres").is_file().then_some((n, name))
                    })
                    .collect();
                v.sort_by_key(|(n, _)| std::cmp::Reverse(*n));
                v.into_iter().map(|(_, s)| s).collect()
            }
            Kind::Redis => {
                if root.join("usr/bin/redis-server").is_file() {
                    vec![redis_version().unwrap_or_else(|| "host".into())]
                } else {
                    Vec::new()
                }
            }
        }
    }

    /// The Debian package that provides it, for error messages.
    pub fn package(self) -> &'static str {
        match self {
            Kind::Postgres => "postgresql",
            Kind::Redis => "redis-server",
        }
    }

    /// The container's command: a bash script (argv, not a string a shell re-parses). The
    /// password comes in the environment (`PAAS_ADDON_PASSWORD`), never in an argv, which
    /// every host user could read in /proc.
    pub fn entry(self, service: &str, version: &str, memory_mb: u64) -> Vec<String> {
        let script = match self {
            Kind::Postgres => postgres_script(&self.database(service), version, memory_mb),
            Kind::Redis => redis_script(memory_mb),
        };
        vec!["bash".into(), "-c".into(), script]
    }

    /// The host client for `paas addons psql|redis-cli`, reading the password from the
    /// environment [`Kind::client_env`] gives.
    pub fn client(self, service: &str, version: &str, ip: Ipv4Addr) -> (PathBuf, Vec<String>) {
        match self {
            Kind::Postgres => (
                pg_bin(version, "psql"),
                vec![
                    "-X".into(),
                    "-q".into(),
                    "-v".into(),
                    "ON_ERROR_STOP=1".into(),
                    "-h".into(),
                    ip.to_string(),
                    "-p".into(),
                    self.port().to_string(),
                    "-U".into(),
                    "postgres".into(),
                    "-d".into(),
                    self.database(service),
                ],
            ),
            Kind::Redis => (
                PathBuf::from("/usr/bin/redis-cli"),
                vec![
                    "-h".into(),
                    ip.to_string(),
                    "-p".into(),
                    self.port().to_string(),
                ],
            ),
        }
    }

    pub fn client_env(self, password: &str) -> Vec<(&'static str, String)> {
        match self {
            Kind::Postgres => vec![
                ("PGPASSWORD", password.to_string()),
                ("PGCONNECT_TIMEOUT", "5".into()),
            ],
            Kind::Redis => vec![("REDISCLI_AUTH", password.to_string())],
        }
    }
}

/// A host binary of PostgreSQL `version` (Debian keeps each major version's in its own dir).
pub fn pg_bin(version: &str, name: &str) -> PathBuf {
    PathBuf::from(format!("/usr/lib/postgresql/{version}/bin/{name}"))
}

fn redis_version() -> Option<String> {
    let out = std::process::Command::new("/usr/bin/redis-server")
        .arg("--version")
        .output()
        .ok()?;
    // "Redis server v=7.0.15 sha=..." -> "7.0"
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let v = text.split_whitespace().find_map(|w| w.strip_prefix("v="))?;
    let mut parts = v.split('.');
    Some(format!("{}.{}", parts.next()?, parts.next()?))
}

/// First start: `initdb` into a scratch dir renamed into place (a start killed halfway
/// leaves no half cluster), the service's database made in single-user mode, password
/// authentication for every address. Every start: the server in the foreground with its log
/// on stderr; `shared_buffers` a quarter of the memory limit.
fn postgres_script(db: &str, version: &str, memory_mb: u64) -> String {
    let bin = format!("/usr/lib/postgresql/{version}/bin");
    let shared = (memory_mb / 4).clamp(16, 8192);
    format!(
        r#"set -eu
umask 077
export PGDATA={DATA_MOUNT}/pgdata
if [ ! -s "$PGDATA/PG_VERSION" ]; then
  rm -rf "$PGDATA" "$PGDATA.init"
  printf '%s\n' "$PAAS_ADDON_PASSWORD" > /tmp/pw
  {bin}/initdb -D "$PGDATA.init" -U postgres --pwfile=/tmp/pw --auth=scram-sha-256 -E UTF8 --locale=C >/dev/null
  rm -f /tmp/pw
  echo 'host all all 0.0.0.0/0 scram-sha-256' >> "$PGDATA.init/pg_hba.conf"
  echo 'CREATE DATABASE "{db}";' | {bin}/postgres --single -D "$PGDATA.init" postgres >/dev/null
  mv "$PGDATA.init" "$PGDATA"
  echo "paas: initialized a PostgreSQL {version} cluster with database {db}"
fi
unset PAAS_ADDON_PASSWORD
exec {bin}/postgres -D "$PGDATA" -c listen_addresses='*' -c port=5432 \
  -c unix_socket_directories=/tmp -c dynamic_shared_memory_type=mmap \
  -c shared_buffers={shared}MB -c logging_collector=off -c ssl=off
"#
    )
}

/// Append-only file (fsync every second) plus RDB snapshots. A restore leaves the snapshot
/// as `restore.rdb`: Redis loads it with the AOF off, then turns the AOF on, which rewrites
/// the AOF from the loaded data (turning it on in the config alone would start empty).
fn redis_script(memory_mb: u64) -> String {
    let maxmemory = memory_mb.saturating_mul(3) / 4;
    format!(
        r#"set -eu
umask 077
conf=/tmp/redis.conf
{{
  echo 'bind 0.0.0.0'
  echo 'port 6379'
  echo 'protected-mode no'
  echo 'dir {DATA_MOUNT}'
  echo 'appendonly yes'
  echo 'appendfsync everysec'
  echo 'save 3600 1 300 100 60 10000'
  echo 'daemonize no'
  echo 'logfile ""'
  echo 'maxmemory {maxmemory}mb'
  echo 'maxmemory-policy noeviction'
  echo "requirepass $PAAS_ADDON_PASSWORD"
}} > "$conf"
export REDISCLI_AUTH="$PAAS_ADDON_PASSWORD"
unset PAAS_ADDON_PASSWORD
if [ -f {DATA_MOUNT}/restore.rdb ]; then
  rm -rf {DATA_MOUNT}/appendonlydir {DATA_MOUNT}/dump.rdb
  mv {DATA_MOUNT}/restore.rdb {DATA_MOUNT}/dump.rdb
  redis-server "$conf" --appendonly no &
  pid=$!
  trap 'wait $pid; exit' TERM INT
  until redis-cli -p 6379 ping 2>/dev/null | grep -q PONG; do sleep 0.1; done
  redis-cli -p 6379 config set appendonly yes >/dev/null
  echo "paas: restored a snapshot; the append-only file is rewritten from it"
  wait $pid
  exit
fi
unset REDISCLI_AUTH
exec redis-server "$conf"
"#
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_parse_by_their_heroku_names_too() {
        assert_eq!(Kind::parse("heroku-postgresql"), Some(Kind::Postgres));
        assert_eq!(Kind::parse("redis"), Some(Kind::Redis));
        assert_eq!(Kind::parse("mysql"), None);
    }

    #[test]
    fn urls_name_the_address_port_and_database() {
        let ip: Ipv4Addr = "10.88.0.5".parse().expect("ip");
        assert_eq!(
            Kind::Postgres.url("notes-db", "ab12", ip),
            "postgres://postgres:ab12@10.88.0.5:5432/notes_db"
        );
        assert_eq!(
            Kind::Redis.url("c", "ab12", ip),
            "redis://:ab12@10.88.0.5:6379"
        );
    }

    #[test]
    fn the_password_is_never_in_an_argv() {
        for kind in [Kind::Postgres, Kind::Redis] {
            let argv = kind.entry("x", "15", 512);
            assert!(argv[2].contains("$PAAS_ADDON_PASSWORD"));
            let (_, client) = kind.client("x", "15", "10.0.0.2".parse().expect("ip"));
            assert!(client.iter().all(|a| !a.contains("PASS")));
        }
    }

    #[test]
    fn postgres_versions_are_the_hosts_newest_first() {
        let root = tempfile::tempdir().expect("tempdir");
        for v in ["13", "16", "9"] {
            let bin = root.path().join(format!("usr/lib/postgresql/{v}/bin"));
            std::fs::create_dir_all(&bin).expect("mkdir");
            std::fs::write(bin.join("postgres"), "").expect("write");
        }
        std::fs::create_dir_all(root.path().join("usr/lib/postgresql/common")).expect("mkdir");
        assert_eq!(Kind::Postgres.versions(root.path()), ["16", "13", "9"]);
    }
}
