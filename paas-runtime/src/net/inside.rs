//! What happens inside an instance's network namespace: `lo` up and, when the instance has a
//! veth, `eth0` up with its address and a default route through the gateway. Blocking
//! netlink on a socket of its own, no async runtime: the container helper's monitor calls it
//! (single-threaded, after `setns` into its container's namespace), and so does the worker
//! thread of [`super::Network::attach`]. A netlink socket acts on the namespace of the thread
//! that opens it, so this must only run in a thread that is inside the instance's namespace,
//! never in one of paasd's own.

use std::io;
use std::net::Ipv4Addr;

use rtnetlink::packet_core::{NLM_F_ACK, NLM_F_CREATE, NLM_F_EXCL, NLM_F_REQUEST};
use rtnetlink::packet_route::RouteNetlinkMessage;
use rtnetlink::{AddressMessageBuilder, LinkUnspec, RouteMessageBuilder};

use super::rtnl::Rtnl;
use super::NetError;

/// The instance's side of its veth, as the helper configures it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Eth0 {
    pub ip: Ipv4Addr,
    pub prefix: u8,
    pub gateway: Ipv4Addr,
}

/// Name of the instance's end of the veth pair.
pub const ETH0: &str = "eth0";

/// Brings `lo` up and, with `eth0`, configures the interface of that name (which must exist:
/// paasd creates it from the host side). Acts on the calling thread's network namespace.
pub fn configure(eth0: Option<&Eth0>) -> Result<(), NetError> {
    let mut nl = Rtnl::open("in the instance's network namespace")?;
    nl.ack(
        RouteNetlinkMessage::SetLink(LinkUnspec::new_with_name("lo").up().build()),
        NLM_F_REQUEST | NLM_F_ACK,
    )
    .map_err(fail("bringing up", "lo"))?;
    let Some(eth0) = eth0 else {
        return Ok(());
    };
    // An ioctl: a netlink lookup answers with the whole link, stats and all, to parse.
    let index = nix::net::if_::if_nametoindex(ETH0).map_err(|e| fail("finding", ETH0)(e.into()))?;
    // The address first: with it and the link up the kernel adds the prefix route, which
    // the default route's gateway must be reachable through.
    let addr = AddressMessageBuilder::<Ipv4Addr>::new()
        .index(index)
        .address(eth0.ip, eth0.prefix)
        .build();
    nl.ack(
        RouteNetlinkMessage::NewAddress(addr),
        NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL,
    )
    .map_err(fail(
        "adding address",
        format!("{}/{} on {ETH0}", eth0.ip, eth0.prefix),
    ))?;
    // The peer could not be created up (the kernel refuses to open a veth end before its
    // other end is registered: ENOTCONN), so it comes up here.
    nl.ack(
        RouteNetlinkMessage::SetLink(LinkUnspec::new_with_index(index).up().build()),
        NLM_F_REQUEST | NLM_F_ACK,
    )
    .map_err(fail("bringing up", ETH0))?;
    let route = RouteMessageBuilder::<Ipv4Addr>::new()
        .gateway(eth0.gateway)
        .output_interface(index)
        .build();
    nl.ack(
        RouteNetlinkMessage::NewRoute(route),
        NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL,
    )
    .map_err(fail(
        "adding default route",
        format!("via {} on {ETH0}", eth0.gateway),
    ))?;
    Ok(())
}

fn fail(op: &'static str, target: impl Into<String>) -> impl FnOnce(io::Error) -> NetError {
    let target = format!("{} in the instance's network namespace", target.into());
    move |source| NetError::Netlink { op, target, source }
}
