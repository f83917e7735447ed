//! What happens inside an instance's network namespace: `lo` up and, when the instance has a
//! veth, `eth0` up with its address and a default route through the gateway. Blocking
//! netlink on a socket of its own, no async runtime: the container helper's child calls it
//! (single-threaded, in the namespace since its `unshare`), and so does the worker thread of
//! [`super::Network::attach`] after its `setns`. A netlink socket acts on the namespace of the
//! thread that opens it, so this must only run in a thread that is inside the instance's
//! namespace, never in one of paasd's own.

use std::io;
use std::net::Ipv4Addr;

use rtnetlink::packet_core::{
    NetlinkMessage, NetlinkPayload, NLM_F_ACK, NLM_F_CREATE, NLM_F_EXCL, NLM_F_REQUEST,
};
use rtnetlink::packet_route::link::{LinkAttribute, LinkMessage};
use rtnetlink::packet_route::RouteNetlinkMessage;
use rtnetlink::sys::{protocols::NETLINK_ROUTE, Socket, SocketAddr};
use rtnetlink::{AddressMessageBuilder, LinkUnspec, RouteMessageBuilder};

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
    let mut nl = Rtnl::open()?;
    nl.ack(
        RouteNetlinkMessage::SetLink(LinkUnspec::new_with_name("lo").up().build()),
        NLM_F_REQUEST | NLM_F_ACK,
    )
    .map_err(fail("bringing up", "lo"))?;
    let Some(eth0) = eth0 else {
        return Ok(());
    };
    let index = nl.link_index(ETH0).map_err(fail("finding", ETH0))?;
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

/// A blocking rtnetlink socket: one request at a time, answered before the next.
struct Rtnl {
    socket: Socket,
    seq: u32,
}

impl Rtnl {
    fn open() -> Result<Rtnl, NetError> {
        let socket = Socket::new(NETLINK_ROUTE).map_err(|source| NetError::Socket {
            place: "in the instance's network namespace".into(),
            source,
        })?;
        Ok(Rtnl { socket, seq: 0 })
    }

    /// Sends `msg` and returns the kernel's answer: the reply message, or `None` for an ack.
    fn request(
        &mut self,
        msg: RouteNetlinkMessage,
        flags: u16,
    ) -> io::Result<Option<RouteNetlinkMessage>> {
        self.seq = self.seq.wrapping_add(1);
        let mut req = NetlinkMessage::from(msg);
        req.header.flags = flags;
        req.header.sequence_number = self.seq;
        req.finalize();
        let mut buf = vec![0; req.buffer_len()];
        req.serialize(&mut buf);
        self.socket.send_to(&buf, &SocketAddr::new(0, 0), 0)?;
        loop {
            let (data, _) = self.socket.recv_from_full()?;
            let mut rest = data.as_slice();
            while !rest.is_empty() {
                let msg = NetlinkMessage::<RouteNetlinkMessage>::deserialize(rest)
                    .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))?;
                // Messages are padded to 4 bytes.
                let len = (msg.header.length as usize).next_multiple_of(4);
                if len == 0 {
                    break;
                }
                rest = rest.get(len..).unwrap_or_default();
                if msg.header.sequence_number != self.seq {
                    continue;
                }
                match msg.payload {
                    NetlinkPayload::Error(e) if e.code.is_some() => return Err(e.to_io()),
                    NetlinkPayload::Error(_) | NetlinkPayload::Done(_) => return Ok(None),
                    NetlinkPayload::InnerMessage(m) => return Ok(Some(m)),
                    _ => {}
                }
            }
        }
    }

    /// A request answered by an ack.
    fn ack(&mut self, msg: RouteNetlinkMessage, flags: u16) -> io::Result<()> {
        self.request(msg, flags).map(|_| ())
    }

    fn link_index(&mut self, name: &str) -> io::Result<u32> {
        let mut get = LinkMessage::default();
        get.attributes.push(LinkAttribute::IfName(name.to_string()));
        match self.request(RouteNetlinkMessage::GetLink(get), NLM_F_REQUEST)? {
            Some(RouteNetlinkMessage::NewLink(link)) => Ok(link.header.index),
            _ => Err(io::Error::from_raw_os_error(libc::ENODEV)),
        }
    }
}
