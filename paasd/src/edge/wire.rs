//! What paasd and its edge process say to each other over the edge's control socket: JSON
//! lines, and the listening sockets as descriptors on a marker byte
//! (`paas_runtime::fdpass`). Pure data; must not do I/O beyond one blocking line.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::os::unix::net::UnixStream;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The marker byte that carries listening sockets: `http`, then `https` if any.
pub const LISTENERS: u8 = b'L';

/// The longest line either side reads while they shake hands (`Init` carries the route
/// table and every certificate).
pub const MAX_HELLO: usize = 64 << 20;

/// Which executable a process runs: its device and inode. An upgrade installs another file,
/// so a new paasd and an edge of the old one differ here even when the path is the same.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExeId {
    pub dev: u64,
    pub ino: u64,
}

impl ExeId {
    /// Of process `pid` (`None`: ourselves).
    pub fn of(pid: Option<u32>) -> std::io::Result<ExeId> {
        use std::os::unix::fs::MetadataExt;
        let path = match pid {
            Some(p) => format!("/proc/{p}/exe"),
            None => "/proc/self/exe".to_string(),
        };
        let m = std::fs::metadata(path)?;
        Ok(ExeId {
            dev: m.dev(),
            ino: m.ino(),
        })
    }
}

/// The router settings an edge is started with. An edge whose options differ from what the
/// config says now is replaced (with the same hand-over as an upgrade).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Options {
    pub trusted_proxies: Vec<String>,
    pub max_connections: usize,
    pub max_connections_per_ip: usize,
    pub header_timeout_ms: u64,
    pub idle_timeout_ms: u64,
    pub upgrade_idle_timeout_ms: u64,
    pub nofile: Option<u64>,
    /// The uid (and gid) the edge serves as once its sockets are open.
    pub uid: u32,
}

impl Options {
    pub fn router_options(&self) -> paas_router::RouterOptions {
        paas_router::RouterOptions {
            trusted_proxies: self
                .trusted_proxies
                .iter()
                .filter_map(|n| n.parse().ok())
                .collect(),
            max_connections: self.max_connections,
            max_connections_per_ip: self.max_connections_per_ip,
            client_header_timeout: Duration::from_millis(self.header_timeout_ms),
            client_idle_timeout: Duration::from_millis(self.idle_timeout_ms),
            upgrade_idle_timeout: Duration::from_millis(self.upgrade_idle_timeout_ms),
            nofile: self.nofile,
            ..paas_router::RouterOptions::default()
        }
    }
}

/// The edge's first line on every control connection.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Hello {
    pub pid: u32,
    pub exe: ExeId,
    /// `None` until a paasd has sent [`Command::Init`].
    pub options: Option<Options>,
    /// The addresses it serves (`http`, then `https`); empty before `Init`.
    pub listeners: Vec<SocketAddr>,
}

/// What paasd says while the two shake hands (blocking, one line each).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Command {
    /// Serve with these options on the sockets that follow (a [`LISTENERS`] marker), with
    /// this table, these certificates and ACME answers from the first connection on.
    Init {
        // Boxed: the other commands are a word or two.
        options: Box<Options>,
        https: bool,
        table: paas_router::TableSpec,
        certs: paas_router::tls::CertsSpec,
        acme: BTreeMap<String, String>,
    },
    /// Send your listening sockets back (a [`LISTENERS`] marker): a paasd that starts while
    /// this edge holds the ports cannot bind them.
    GiveListeners,
    /// This connection is the controlling paasd from now on: the JSON-lines phase begins.
    Attach,
    /// Stop accepting (another edge does by now), finish what is in flight within `drain_ms`,
    /// exit.
    Retire { drain_ms: u64 },
}

/// paasd to edge, once attached.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ToEdge {
    Table(paas_router::TableSpec),
    Certs(paas_router::tls::CertsSpec),
    /// ACME HTTP-01 answers by token.
    Acme(BTreeMap<String, String>),
    Query {
        id: u64,
        query: Query,
    },
    /// A full stop: stop accepting, finish what is in flight within `drain_ms`, exit.
    Stop {
        drain_ms: u64,
    },
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Query {
    Inflight(SocketAddr),
    Connections,
}

/// Edge to paasd, once attached.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FromEdge {
    Access(Vec<Access>),
    /// Access lines dropped while no paasd listened (the buffer is bounded).
    Dropped(u64),
    Reply {
        id: u64,
        answer: Answer,
    },
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Answer {
    Inflight(usize),
    Connections {
        stats: paas_router::ConnStats,
        max: usize,
    },
}

/// An owned [`paas_router::AccessLine`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Access {
    pub app: String,
    pub method: String,
    pub path: String,
    pub status: u16,
    pub bytes: u64,
    pub duration_us: u64,
    pub instance: Option<String>,
    pub release: Option<u32>,
}

impl Access {
    pub fn of(a: &paas_router::AccessLine<'_>) -> Access {
        Access {
            app: a.app.to_string(),
            method: a.method.to_string(),
            path: a.path.to_string(),
            status: a.status,
            bytes: a.bytes,
            duration_us: u64::try_from(a.duration.as_micros()).unwrap_or(u64::MAX),
            instance: a.instance.map(str::to_string),
            release: a.release,
        }
    }
}

/// Writes `msg` as one line.
pub fn write_line<T: Serialize>(mut stream: &UnixStream, msg: &T) -> std::io::Result<()> {
    use std::io::Write;
    let mut line = serde_json::to_vec(msg).map_err(std::io::Error::other)?;
    line.push(b'\n');
    stream.write_all(&line)
}

/// Reads one line as `T` (a byte at a time: a marker with descriptors may follow it).
pub fn read_line<T: for<'de> Deserialize<'de>>(stream: &UnixStream) -> std::io::Result<T> {
    let line = paas_runtime::fdpass::read_line(stream, MAX_HELLO)?;
    serde_json::from_str(&line).map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_keep_their_shape_on_the_wire() {
        let q = ToEdge::Query {
            id: 7,
            query: Query::Inflight("10.0.0.2:5000".parse().expect("addr")),
        };
        assert_eq!(
            serde_json::to_string(&q).expect("json"),
            r#"{"query":{"id":7,"query":{"inflight":"10.0.0.2:5000"}}}"#
        );
        let c: Command = serde_json::from_str(r#"{"retire":{"drain_ms":5000}}"#).expect("parse");
        assert!(matches!(c, Command::Retire { drain_ms: 5000 }));
        let a: Command = serde_json::from_str(r#""attach""#).expect("parse");
        assert!(matches!(a, Command::Attach));
    }

    #[test]
    fn options_become_router_options() {
        let o = Options {
            trusted_proxies: vec!["10.0.0.0/8".into(), "not a net".into()],
            max_connections: 10,
            max_connections_per_ip: 2,
            header_timeout_ms: 1500,
            idle_timeout_ms: 60_000,
            upgrade_idle_timeout_ms: 30_000,
            nofile: Some(1024),
            uid: 1_900_099_999,
        };
        let r = o.router_options();
        assert_eq!(r.trusted_proxies.len(), 1);
        assert_eq!(r.client_header_timeout, Duration::from_millis(1500));
        assert_eq!(r.max_connections_per_ip, 2);
        assert_eq!(r.nofile, Some(1024));
    }
}
