//! An instance's veth pair, as the container helper's monitor makes it from the host's network
//! namespace while the container builds its root filesystem: the host end up on the bridge,
//! the peer created directly inside the container's namespace as `eth0` (no move, no rename).
//! The kernel creates the pair whole or not at all, and deletes it when the namespace goes, so
//! a container cannot leave its veth behind.

use std::fs::File;
use std::os::fd::AsRawFd;

use rtnetlink::packet_core::{NLM_F_ACK, NLM_F_CREATE, NLM_F_EXCL, NLM_F_REQUEST};
use rtnetlink::packet_route::link::{
    InfoBridgePort, InfoData, InfoPortData, InfoPortKind, InfoVeth, LinkMessage,
};
use rtnetlink::packet_route::RouteNetlinkMessage;
use rtnetlink::{LinkMessageBuilder, LinkUnspec, LinkVeth};
use serde::{Deserialize, Serialize};

use super::inside::{Eth0, ETH0};
pub use super::rtnl::Rtnl;
use super::NetError;

/// Everything the helper needs to connect an instance to the bridge (from [`super::Network::veth`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Veth {
    /// Name of the host end.
    pub host_if: String,
    /// Index of the bridge the host end joins.
    pub bridge: u32,
    /// The instance's end, as configured inside.
    pub eth0: Eth0,
}

/// The request creating `host_if` <-> `eth0`, `eth0` in the namespace `ns_fd` with the MAC
/// that follows from `ip` (see [`super::instance_mac`]).
pub(super) fn message(
    ns_fd: i32,
    host_if: &str,
    bridge: u32,
    ip: std::net::Ipv4Addr,
) -> LinkMessage {
    let peer = LinkUnspec::new_with_name(ETH0)
        .setns_by_fd(ns_fd)
        .address(super::instance_mac(ip).to_vec())
        .build();
    // An isolated port: the bridge forwards nothing between it and another isolated port,
    // so instances reach each other only through the host, where the policy decides.
    LinkMessageBuilder::<LinkVeth>::new(host_if, ETH0)
        .set_info_data(InfoData::Veth(InfoVeth::Peer(peer)))
        .set_port_kind(InfoPortKind::Bridge)
        .set_port_data(InfoPortData::BridgePort(vec![InfoBridgePort::Isolated(
            true,
        )]))
        .controller(bridge)
        .up()
        .build()
}

/// A netlink socket for [`create`], opened in the host's network namespace (where the bridge
/// is); it keeps acting there after its thread moves to another namespace.
pub fn host_socket() -> Result<Rtnl, NetError> {
    Rtnl::open("in the host's network namespace")
}

/// Creates the pair for the instance whose network namespace is `ns`, over `host` (from
/// [`host_socket`]). Blocking.
pub fn create(host: &mut Rtnl, ns: &File, v: &Veth) -> Result<(), NetError> {
    host.ack(
        RouteNetlinkMessage::NewLink(message(ns.as_raw_fd(), &v.host_if, v.bridge, v.eth0.ip)),
        NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL,
    )
    .map_err(|source| NetError::Netlink {
        op: "creating veth",
        target: format!("{} (peer {ETH0} in the instance's namespace)", v.host_if),
        source,
    })
}
