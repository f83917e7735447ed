//! Instance networking: the host bridge (`paas0`) with the gateway address, IPv4 forwarding,
//! egress NAT (nftables table `inet paas_<bridge>`), and one veth pair per instance whose peer
//! becomes `eth0` inside the instance's network namespace. All link, address and route changes
//! go over netlink (`rtnetlink`): spawning `ip` costs milliseconds per call and container start
//! time is benchmarked. Owns only the bridge, our nft table and veths on our bridge: must never
//! modify other links, and must not choose addresses (the store's allocator does).

pub mod inside;
mod members;
mod netns;
mod nft;
mod rtnl;
pub mod subnet;
#[cfg(test)]
mod tests;
pub mod veth;

use std::fs::File;
use std::io;
use std::net::{IpAddr, Ipv4Addr};
use std::os::fd::AsRawFd;

use futures_util::TryStreamExt;
use rtnetlink::packet_route::address::{AddressAttribute, AddressMessage};
use rtnetlink::packet_route::link::{InfoKind, LinkAttribute, LinkFlags, LinkInfo, LinkMessage};
use rtnetlink::packet_route::AddressFamily;
use rtnetlink::{LinkBridge, LinkUnspec};
use tokio::sync::oneshot;

pub use inside::Eth0;
pub use nft::Policy;
pub use subnet::{Subnet, SubnetError};
pub use veth::Veth;

/// Linux's IFNAMSIZ minus the terminating NUL.
pub const MAX_IFNAME: usize = 15;

const IP_FORWARD: &str = "/proc/sys/net/ipv4/ip_forward";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetConfig {
    /// Bridge name, e.g. `paas0`; also names the nft table (`paas_<bridge>`).
    pub bridge: String,
    /// Network address of the instance subnet, e.g. 10.88.0.0 ...
    pub subnet: Ipv4Addr,
    /// ... and its prefix length, e.g. 16.
    pub prefix: u8,
    /// What instances may reach on the host besides each other (see [`nft`]).
    pub policy: Policy,
}

#[derive(Debug, thiserror::Error)]
pub enum NetError {
    #[error("instance subnet: {0}")]
    Subnet(#[from] SubnetError),
    #[error("interface name {name:?}: {reason}")]
    Name { name: String, reason: &'static str },
    #[error("{ip} is not an instance address of {subnet}")]
    Address { ip: Ipv4Addr, subnet: Subnet },
    #[error("opening a netlink socket {place}: {source}")]
    Socket { place: String, source: io::Error },
    /// A netlink request failed; `source` carries the kernel's errno when there is one.
    #[error("{op} {target}: {source}")]
    Netlink {
        op: &'static str,
        target: String,
        source: io::Error,
    },
    #[error("network namespace of pid {pid}: {what}: {source}")]
    Namespace {
        pid: i32,
        what: String,
        source: io::Error,
    },
    #[error("link {link} is not {expected}; leaving it alone")]
    NotOurs {
        link: String,
        expected: &'static str,
    },
    #[error("{path}: {source}")]
    Sysctl {
        path: &'static str,
        source: io::Error,
    },
    #[error("{path}: {source}")]
    BridgeSysctl { path: String, source: io::Error },
    #[error("nftables table {table}: {detail}")]
    Nft { table: String, detail: String },
    #[error("network namespace worker: {0}")]
    Worker(String),
}

impl NetError {
    /// The kernel's errno when a netlink request failed.
    pub fn errno(&self) -> Option<i32> {
        match self {
            NetError::Netlink { source, .. } => source.raw_os_error(),
            _ => None,
        }
    }
}

/// Maps an rtnetlink error to [`NetError::Netlink`], keeping the errno as an `io::Error`
/// (rtnetlink's own Display says "Received a netlink error message" and little else).
fn nl_error(
    op: &'static str,
    target: impl Into<String>,
) -> impl FnOnce(rtnetlink::Error) -> NetError {
    let target = target.into();
    move |e| NetError::Netlink {
        op,
        target,
        source: match e {
            rtnetlink::Error::NetlinkError(m) => m.to_io(),
            other => io::Error::other(other.to_string()),
        },
    }
}

fn errno_of(e: &rtnetlink::Error) -> Option<i32> {
    match e {
        rtnetlink::Error::NetlinkError(m) => Some(m.raw_code().abs()),
        _ => None,
    }
}

/// The instance network on this host. Its netlink socket is served by a thread of its own
/// (see [`host_connection`]), which ends when the `Network` is dropped.
pub struct Network {
    bridge: String,
    subnet: Subnet,
    /// Resolved once in `setup`: attach then needs no lookup (one round trip less per start).
    bridge_index: u32,
    nat: bool,
    handle: rtnetlink::Handle,
    /// Dropping it stops the connection thread.
    _stop: oneshot::Sender<()>,
}

/// Name of the thread serving the host-side netlink socket.
const CONN_THREAD: &str = "paas-netlink";

/// Opens paasd's netlink socket on a dedicated thread. The kernel does the work of a netlink
/// request inside the sending syscall (deleting a veth waits ~20 ms for RCU grace periods, a
/// bridge longer), so sending from a tokio worker would stall every task on it. Requests and
/// answers cross over runtime-agnostic channels, so any runtime can use the handle.
async fn host_connection() -> Result<(rtnetlink::Handle, oneshot::Sender<()>), NetError> {
    let (ready_tx, ready_rx) = oneshot::channel();
    let (stop_tx, stop_rx) = oneshot::channel::<()>();
    let socket_err = |source| NetError::Socket {
        place: "in paasd's network namespace".into(),
        source,
    };
    std::thread::Builder::new()
        .name(CONN_THREAD.into())
        .spawn(move || {
            let rt = match tokio::runtime::Builder::new_current_thread()
                .enable_io()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    let _ = ready_tx.send(Err(socket_err(e)));
                    return;
                }
            };
            rt.block_on(async move {
                match rtnetlink::new_connection() {
                    Ok((conn, handle, _)) => {
                        if ready_tx.send(Ok(handle)).is_ok() {
                            tokio::select! {
                                () = conn => {}
                                _ = stop_rx => {}
                            }
                        }
                    }
                    Err(e) => {
                        let _ = ready_tx.send(Err(socket_err(e)));
                    }
                }
            });
        })
        .map_err(|e| NetError::Worker(format!("spawning the netlink thread: {e}")))?;
    let handle = ready_rx
        .await
        .map_err(|_| NetError::Worker("the netlink thread died".into()))??;
    Ok((handle, stop_tx))
}

impl Network {
    /// Idempotent: the bridge exists, is up and has the gateway (first host of the subnet) as
    /// its only IPv4 address; IPv4 forwarding is on; the NAT table is in place. Without `nft`
    /// on the host it warns and goes on without NAT (host <-> instance traffic still works).
    pub async fn setup(cfg: NetConfig) -> Result<Network, NetError> {
        check_ifname(&cfg.bridge)?;
        let subnet = Subnet::new(cfg.subnet, cfg.prefix)?;
        let (handle, stop) = host_connection().await?;
        let mut net = Network {
            bridge: cfg.bridge,
            subnet,
            bridge_index: 0,
            nat: false,
            handle,
            _stop: stop,
        };
        net.bridge_index = net.ensure_bridge().await?;
        net.ensure_gateway_address().await?;
        enable_forwarding().await?;
        isolate_bridge(&net.bridge).await?;
        let table = nft::table_name(&net.bridge);
        let script = nft::table_script(&net.bridge, &subnet, &cfg.policy);
        match nft::apply(&table, &script).await? {
            nft::Applied::Yes => net.nat = true,
            nft::Applied::NoNft => tracing::warn!(
                bridge = %net.bridge,
                "nft not found: instances get no NAT for egress and no isolation from the \
                 host or each other (install the nftables package)"
            ),
        }
        Ok(net)
    }

    pub fn gateway(&self) -> Ipv4Addr {
        self.subnet.gateway()
    }

    pub fn subnet(&self) -> Subnet {
        self.subnet
    }

    pub fn bridge(&self) -> &str {
        &self.bridge
    }

    /// False when setup found no `nft`: instances cannot reach beyond the host, and nothing
    /// keeps them from the host or each other.
    pub fn nat(&self) -> bool {
        self.nat
    }

    /// Makes `ip` a member of `group` (an app's number, above 0): instances of one group
    /// reach each other. Call before the instance starts; [`Network::expel`] before `ip`
    /// is handed to anyone else.
    pub async fn admit(&self, ip: Ipv4Addr, group: u32) -> Result<(), NetError> {
        self.membership(move |t| members::admit(t, ip, group)).await
    }

    /// Takes `ip` out of `group`; idempotent.
    pub async fn expel(&self, ip: Ipv4Addr, group: u32) -> Result<(), NetError> {
        self.membership(move |t| members::expel(t, ip, group)).await
    }

    /// Lets members of `group` connect to TCP `ip:port` (an add-on service they are linked to).
    pub async fn link(&self, group: u32, ip: Ipv4Addr, port: u16) -> Result<(), NetError> {
        self.membership(move |t| members::link(t, group, ip, port))
            .await
    }

    /// Takes that back; idempotent.
    pub async fn unlink(&self, group: u32, ip: Ipv4Addr, port: u16) -> Result<(), NetError> {
        self.membership(move |t| members::unlink(t, group, ip, port))
            .await
    }

    async fn membership(
        &self,
        change: impl FnOnce(&str) -> io::Result<()> + Send + 'static,
    ) -> Result<(), NetError> {
        if !self.nat {
            return Ok(());
        }
        let table = nft::table_name(&self.bridge);
        let t = table.clone();
        tokio::task::spawn_blocking(move || change(&t))
            .await
            .map_err(|e| NetError::Worker(format!("membership change: {e}")))?
            .map_err(|e| NetError::Nft {
                table,
                detail: format!("changing an address's app group: {e}"),
            })
    }

    /// What an instance with address `ip` configures inside its namespace (see [`inside`]);
    /// fails unless `ip` is an instance address of the subnet.
    fn eth0(&self, ip: Ipv4Addr) -> Result<Eth0, NetError> {
        if !self.subnet.is_assignable(ip) {
            return Err(NetError::Address {
                ip,
                subnet: self.subnet,
            });
        }
        Ok(Eth0 {
            ip,
            prefix: self.subnet.prefix(),
            gateway: self.gateway(),
        })
    }

    /// How a container with address `ip` joins the bridge through the veth pair `host_if`
    /// <-> `eth0`; the container helper makes the pair ([`veth::create`]) and configures
    /// `eth0` ([`inside::configure`]).
    pub fn veth(&self, ip: Ipv4Addr, host_if: &str) -> Result<Veth, NetError> {
        check_ifname(host_if)?;
        Ok(Veth {
            host_if: host_if.to_string(),
            bridge: self.bridge_index,
            eth0: self.eth0(ip)?,
        })
    }

    /// Gives the network namespace of `pid` an `eth0` with `ip`, a default route through the
    /// gateway and `lo` up, connected to the bridge by the veth pair `host_if` <-> `eth0`.
    /// On failure nothing is left behind (the host veth is deleted, taking its peer along).
    /// (Containers do all of it in their helper: see [`Network::veth`].)
    pub async fn attach(&self, pid: i32, ip: Ipv4Addr, host_if: &str) -> Result<(), NetError> {
        check_ifname(host_if)?;
        let eth0 = self.eth0(ip)?;
        // The worker enters the namespace while we create the veth.
        let mut worker = netns::Worker::spawn(pid, eth0)?;
        let ns = (&mut worker.ns)
            .await
            .map_err(|_| NetError::Worker(format!("the thread for pid {pid} died")))??;
        self.add_veth(&ns, pid, ip, host_if).await?;
        // The fd had to stay open until the kernel read the request.
        drop(ns);
        if let Err(e) = worker.configure().await {
            if let Err(cleanup) = self.delete_link(host_if).await {
                tracing::warn!(link = host_if, error = %cleanup, "could not remove a half-attached veth");
            }
            return Err(e);
        }
        Ok(())
    }

    /// Creates the veth pair `host_if` <-> `eth0`, `eth0` directly in namespace `ns` (no move
    /// and no rename afterwards), the host end up on the bridge.
    async fn add_veth(
        &self,
        ns: &File,
        pid: i32,
        ip: Ipv4Addr,
        host_if: &str,
    ) -> Result<(), NetError> {
        self.handle
            .link()
            .add(veth::message(
                ns.as_raw_fd(),
                host_if,
                self.bridge_index,
                ip,
            ))
            .execute()
            .await
            .map_err(nl_error(
                "creating veth",
                format!("{host_if} (peer eth0 in the network namespace of pid {pid})"),
            ))
    }

    /// Deletes the host veth `host_if` (the kernel deletes its peer with it). A missing link is
    /// fine; a link that is not a veth of ours is refused.
    pub async fn detach(&self, host_if: &str) -> Result<(), NetError> {
        check_ifname(host_if)?;
        let Some(link) = self.find_link(host_if).await? else {
            return Ok(());
        };
        let controller = controller(&link);
        // No controller: a veth of ours whose bridge was deleted under it.
        if link_kind(&link) != Some(&InfoKind::Veth)
            || controller.is_some_and(|c| c != self.bridge_index)
        {
            return Err(NetError::NotOurs {
                link: host_if.to_string(),
                expected: "a veth on our bridge",
            });
        }
        self.delete_index(link.header.index, host_if).await
    }

    /// Host-side veth names on our bridge (to clean up after a crash).
    pub async fn attached(&self) -> Result<Vec<String>, NetError> {
        let links: Vec<LinkMessage> = self
            .handle
            .link()
            .get()
            .execute()
            .try_collect()
            .await
            .map_err(nl_error("listing", "links"))?;
        Ok(links
            .iter()
            .filter(|l| {
                controller(l) == Some(self.bridge_index) && link_kind(l) == Some(&InfoKind::Veth)
            })
            .filter_map(|l| link_name(l).map(str::to_string))
            .collect())
    }

    /// Removes the bridge and our nft table (uninstall, test teardown). Idempotent. Veths still
    /// on the bridge stay until detached or until their namespace goes away.
    pub async fn teardown(&self) -> Result<(), NetError> {
        if let Some(link) = self.find_link(&self.bridge).await? {
            if link_kind(&link) != Some(&InfoKind::Bridge) {
                return Err(NetError::NotOurs {
                    link: self.bridge.clone(),
                    expected: "a bridge",
                });
            }
            self.delete_index(link.header.index, &self.bridge).await?;
        }
        let table = nft::table_name(&self.bridge);
        if nft::apply(&table, &nft::delete_script(&self.bridge)).await? == nft::Applied::NoNft {
            tracing::debug!(table, "nft not found: no table to remove");
        }
        Ok(())
    }

    async fn find_link(&self, name: &str) -> Result<Option<LinkMessage>, NetError> {
        let found = self
            .handle
            .link()
            .get()
            .match_name(name)
            .execute()
            .try_next()
            .await;
        match found {
            Ok(link) => Ok(link),
            Err(e) if errno_of(&e) == Some(libc::ENODEV) => Ok(None),
            Err(e) => Err(nl_error("looking up link", name)(e)),
        }
    }

    async fn delete_index(&self, index: u32, name: &str) -> Result<(), NetError> {
        match self.handle.link().del(index).execute().await {
            // Gone meanwhile (e.g. its namespace died and took the pair along).
            Err(e) if errno_of(&e) == Some(libc::ENODEV) => Ok(()),
            r => r.map_err(nl_error("deleting link", name)),
        }
    }

    async fn delete_link(&self, name: &str) -> Result<(), NetError> {
        match self.find_link(name).await? {
            Some(link) => self.delete_index(link.header.index, name).await,
            None => Ok(()),
        }
    }

    /// Returns the bridge's index, creating it (up, with a fixed MAC) when missing.
    async fn ensure_bridge(&self) -> Result<u32, NetError> {
        let link = match self.find_link(&self.bridge).await? {
            Some(link) => link,
            None => {
                // A bridge without an explicit MAC takes the lowest of its ports', so the
                // gateway's MAC would change as instances come and go and every instance's
                // ARP entry for it would go stale. A set MAC never changes.
                let create = LinkBridge::new(&self.bridge)
                    .address(bridge_mac(&self.bridge).to_vec())
                    .build();
                match self.handle.link().add(create).execute().await {
                    Ok(()) => tracing::info!(bridge = %self.bridge, "created bridge"),
                    // Another setup won the race; use its bridge.
                    Err(e) if errno_of(&e) == Some(libc::EEXIST) => {}
                    Err(e) => return Err(nl_error("creating bridge", &self.bridge)(e)),
                }
                self.find_link(&self.bridge)
                    .await?
                    .ok_or_else(|| NetError::Netlink {
                        op: "creating bridge",
                        target: self.bridge.clone(),
                        source: io::Error::from_raw_os_error(libc::ENODEV),
                    })?
            }
        };
        if link_kind(&link) != Some(&InfoKind::Bridge) {
            return Err(NetError::NotOurs {
                link: self.bridge.clone(),
                expected: "a bridge",
            });
        }
        let index = link.header.index;
        if !link.header.flags.contains(LinkFlags::Up) {
            self.handle
                .link()
                .set(LinkUnspec::new_with_index(index).up().build())
                .execute()
                .await
                .map_err(nl_error("bringing up bridge", &self.bridge))?;
        }
        Ok(index)
    }

    /// Makes gateway/prefix the bridge's only IPv4 address: a leftover address from another
    /// subnet would keep routing that subnet to the bridge.
    async fn ensure_gateway_address(&self) -> Result<(), NetError> {
        let gateway = self.gateway();
        let prefix = self.subnet.prefix();
        let addrs: Vec<AddressMessage> = self
            .handle
            .address()
            .get()
            .set_link_index_filter(self.bridge_index)
            .execute()
            .try_collect()
            .await
            .map_err(nl_error("listing addresses of", &self.bridge))?;
        let mut present = false;
        for a in addrs {
            if a.header.family != AddressFamily::Inet {
                continue;
            }
            let ip = address_of(&a);
            if ip == Some(IpAddr::V4(gateway)) && a.header.prefix_len == prefix {
                present = true;
                continue;
            }
            let shown = format!(
                "{}/{} on {}",
                ip.map_or_else(|| "?".to_string(), |i| i.to_string()),
                a.header.prefix_len,
                self.bridge
            );
            tracing::info!(address = %shown, "removing stale bridge address");
            self.handle
                .address()
                .del(a)
                .execute()
                .await
                .map_err(nl_error("removing address", shown))?;
        }
        if !present {
            match self
                .handle
                .address()
                .add(self.bridge_index, IpAddr::V4(gateway), prefix)
                .execute()
                .await
            {
                Err(e) if errno_of(&e) == Some(libc::EEXIST) => {}
                r => r.map_err(nl_error(
                    "adding address",
                    format!("{gateway}/{prefix} on {}", self.bridge),
                ))?,
            }
        }
        Ok(())
    }
}

/// Per-bridge sysctls of the isolation: the host answers ARP for the whole subnet (instances
/// cannot see each other at layer 2, so their traffic comes to the host to be routed and
/// filtered), at once rather than after the default random proxy delay; and the bridge
/// gets no IPv6 address (no link-local one an instance could reach the host on).
async fn isolate_bridge(bridge: &str) -> Result<(), NetError> {
    let settings: [(String, &str, bool); 3] = [
        (
            format!("/proc/sys/net/ipv4/conf/{bridge}/proxy_arp_pvlan"),
            "1",
            true,
        ),
        (
            format!("/proc/sys/net/ipv4/neigh/{bridge}/proxy_delay"),
            "0",
            true,
        ),
        // Absent when the kernel has no IPv6: then there is nothing to turn off.
        (
            format!("/proc/sys/net/ipv6/conf/{bridge}/disable_ipv6"),
            "1",
            false,
        ),
    ];
    for (path, value, required) in settings {
        match tokio::fs::write(&path, value).await {
            Ok(()) => {}
            Err(e) if !required && e.kind() == io::ErrorKind::NotFound => {}
            Err(source) => {
                return Err(NetError::BridgeSysctl { path, source });
            }
        }
    }
    Ok(())
}

async fn enable_forwarding() -> Result<(), NetError> {
    let err = |source| NetError::Sysctl {
        path: IP_FORWARD,
        source,
    };
    let now = tokio::fs::read_to_string(IP_FORWARD).await.map_err(err)?;
    if now.trim() != "1" {
        tokio::fs::write(IP_FORWARD, "1").await.map_err(err)?;
        tracing::info!("enabled IPv4 forwarding (net.ipv4.ip_forward=1)");
    }
    Ok(())
}

/// Interface names we create or delete: what the kernel accepts, restricted to characters
/// that need no quoting in nft scripts or logs.
pub fn check_ifname(name: &str) -> Result<(), NetError> {
    let bad = |reason| {
        Err(NetError::Name {
            name: name.to_string(),
            reason,
        })
    };
    if name.is_empty() || name.len() > MAX_IFNAME {
        return bad("must be 1 to 15 characters");
    }
    if name == "." || name == ".." {
        return bad("is reserved");
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
    {
        return bad("may only contain letters, digits, '_', '-' and '.'");
    }
    Ok(())
}

/// An instance's MAC follows from its address (as Docker does): when an address is handed out
/// again, the host's neighbour entry for it is still right. A random MAC would leave the
/// host sending to the previous instance's MAC for seconds until the stale entry is probed
/// away.
pub(super) fn instance_mac(ip: Ipv4Addr) -> [u8; 6] {
    let [a, b, c, d] = ip.octets();
    [0x02, 0x51, a, b, c, d]
}

/// A stable, locally administered unicast MAC for the bridge, derived from its name (FNV-1a),
/// so re-creating the bridge keeps the gateway's MAC.
fn bridge_mac(name: &str) -> [u8; 6] {
    let mut h: u32 = 0x811c_9dc5;
    for b in name.bytes() {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    let [a, b, c, d] = h.to_be_bytes();
    [0x02, 0x50, a, b, c, d]
}

fn link_name(link: &LinkMessage) -> Option<&str> {
    link.attributes.iter().find_map(|a| match a {
        LinkAttribute::IfName(n) => Some(n.as_str()),
        _ => None,
    })
}

fn controller(link: &LinkMessage) -> Option<u32> {
    link.attributes.iter().find_map(|a| match a {
        LinkAttribute::Controller(c) => Some(*c),
        _ => None,
    })
}

fn link_kind(link: &LinkMessage) -> Option<&InfoKind> {
    link.attributes.iter().find_map(|a| match a {
        LinkAttribute::LinkInfo(infos) => infos.iter().find_map(|i| match i {
            LinkInfo::Kind(k) => Some(k),
            _ => None,
        }),
        _ => None,
    })
}

fn address_of(a: &AddressMessage) -> Option<IpAddr> {
    // IFA_LOCAL is the interface's own address; IFA_ADDRESS is the peer's on point-to-point.
    let local = a.attributes.iter().find_map(|x| match x {
        AddressAttribute::Local(ip) => Some(*ip),
        _ => None,
    });
    local.or_else(|| {
        a.attributes.iter().find_map(|x| match x {
            AddressAttribute::Address(ip) => Some(*ip),
            _ => None,
        })
    })
}
