//! A blocking rtnetlink client for the processes and threads that configure links without an
//! async runtime (the container helper, the namespace worker): one request at a time, each
//! answered before the next. It acts on the network namespace of the thread that opened it.

use std::io;

use rtnetlink::packet_core::{NetlinkMessage, NetlinkPayload};
use rtnetlink::packet_route::RouteNetlinkMessage;
use rtnetlink::sys::{protocols::NETLINK_ROUTE, Socket, SocketAddr};

use super::NetError;

/// A netlink route socket (see the module doc).
pub struct Rtnl {
    socket: Socket,
    seq: u32,
}

impl Rtnl {
    /// `place` says where, for errors (e.g. "in the instance's network namespace").
    pub fn open(place: &str) -> Result<Rtnl, NetError> {
        let socket = Socket::new(NETLINK_ROUTE).map_err(|source| NetError::Socket {
            place: place.to_string(),
            source,
        })?;
        Ok(Rtnl { socket, seq: 0 })
    }

    /// Sends `msg` and returns the kernel's answer: the reply message, or `None` for an ack.
    pub fn request(
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
    pub fn ack(&mut self, msg: RouteNetlinkMessage, flags: u16) -> io::Result<()> {
        self.request(msg, flags).map(|_| ())
    }
}
