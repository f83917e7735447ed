//! App-group membership changes in our nft table (`app_of` and `members`, see [`super::nft`])
//! as one nfnetlink batch on a socket of its own, instead of an `nft -f` process: paasd does
//! this around every instance start and stop, and `nft` parses its whole cache of the ruleset
//! first (2 ms idle, 15-20 ms on a loaded host, measured by bench/container.sh). The only
//! well-kept crates for nftables netlink are GPL (rustables) or bind libnftnl (C), so the two
//! message kinds we need are encoded here. Owns encoding them and reading the kernel's acks;
//! must not change anything else (the table itself is still written by `nft -f`).

use std::io;
use std::net::Ipv4Addr;
use std::os::fd::AsFd;

use rtnetlink::sys::{protocols::NETLINK_NETFILTER, Socket, SocketAddr};

const NFNL_SUBSYS_NFTABLES: u16 = 10;
const NFNL_MSG_BATCH_BEGIN: u16 = 0x10;
const NFNL_MSG_BATCH_END: u16 = 0x11;
const NFT_MSG_NEWSETELEM: u16 = 12;
const NFT_MSG_DELSETELEM: u16 = 14;
const NFTA_SET_ELEM_LIST_TABLE: u16 = 1;
const NFTA_SET_ELEM_LIST_SET: u16 = 2;
const NFTA_SET_ELEM_LIST_ELEMENTS: u16 = 3;
const NFTA_LIST_ELEM: u16 = 1;
const NFTA_SET_ELEM_KEY: u16 = 1;
const NFTA_SET_ELEM_DATA: u16 = 2;
const NFTA_DATA_VALUE: u16 = 1;
const NFPROTO_INET: u8 = 1;
const NFPROTO_UNSPEC: u8 = 0;
const NLA_F_NESTED: u16 = 0x8000;
const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_ACK: u16 = 0x4;
const NLM_F_CREATE: u16 = 0x400;
const NLMSG_ERROR: u16 = 0x2;

/// One element change: add or delete `key` (with `data` for a map) in `set`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Change {
    add: bool,
    set: &'static str,
    key: Vec<u8>,
    data: Option<Vec<u8>>,
}

/// The changes making `ip` a member of `group`: `app_of[ip] = group`, `members += ip . group`.
/// A mark is a host-endian u32; an address goes in network order; each field of a
/// concatenation takes a 4-byte register.
fn admit_changes(ip: Ipv4Addr, group: u32) -> Vec<Change> {
    let (ip, mark) = (ip.octets().to_vec(), group.to_ne_bytes().to_vec());
    vec![
        Change {
            add: true,
            set: "app_of",
            key: ip.clone(),
            data: Some(mark.clone()),
        },
        Change {
            add: true,
            set: "members",
            key: [ip, mark].concat(),
            data: None,
        },
    ]
}

/// The changes taking `ip` out of `group`, idempotent: the batch adds the elements first
/// (adding one that exists is no error) and then deletes them (deleting one that does not
/// would abort the whole batch).
fn expel_changes(ip: Ipv4Addr, group: u32) -> Vec<Change> {
    let added = admit_changes(ip, group);
    let deleted = added.iter().cloned().map(|c| Change {
        add: false,
        data: None,
        ..c
    });
    added.clone().into_iter().chain(deleted).collect()
}

/// The change letting members of `group` open TCP connections to `ip:port` (an add-on
/// service): one `links` element, `group . ip . port`. A port takes a whole 4-byte register
/// in a concatenation: network order, then two zero bytes.
fn link_change(group: u32, ip: Ipv4Addr, port: u16, add: bool) -> Change {
    let mut key = group.to_ne_bytes().to_vec();
    key.extend_from_slice(&ip.octets());
    key.extend_from_slice(&port.to_be_bytes());
    key.extend_from_slice(&[0, 0]);
    Change {
        add,
        set: "links",
        key,
        data: None,
    }
}

pub fn link(table: &str, group: u32, ip: Ipv4Addr, port: u16) -> io::Result<()> {
    apply(table, &[link_change(group, ip, port, true)])
}

/// Idempotent, like [`expel`]: added first, then deleted, in one batch.
pub fn unlink(table: &str, group: u32, ip: Ipv4Addr, port: u16) -> io::Result<()> {
    apply(
        table,
        &[
            link_change(group, ip, port, true),
            link_change(group, ip, port, false),
        ],
    )
}

pub fn admit(table: &str, ip: Ipv4Addr, group: u32) -> io::Result<()> {
    apply(table, &admit_changes(ip, group))
}

pub fn expel(table: &str, ip: Ipv4Addr, group: u32) -> io::Result<()> {
    apply(table, &expel_changes(ip, group))
}

/// Sends the changes as one batch (one transaction: all or nothing) and waits for the
/// kernel's answer to each. Blocking, microseconds.
fn apply(table: &str, changes: &[Change]) -> io::Result<()> {
    let (batch, acks) = encode(table, changes);
    let socket = Socket::new(NETLINK_NETFILTER)?;
    socket.send_to(&batch, &SocketAddr::new(0, 0), 0)?;
    let mut acked = 0;
    while acked < acks {
        // The kernel answers within the send; a missing answer must not hang paasd.
        let ready = nix::poll::poll(
            &mut [nix::poll::PollFd::new(
                socket.as_fd(),
                nix::poll::PollFlags::POLLIN,
            )],
            nix::poll::PollTimeout::from(2000u16),
        )?;
        if ready == 0 {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "no answer from nf_tables",
            ));
        }
        let (data, _) = socket.recv_from_full()?;
        for errno in errors(&data) {
            if errno != 0 {
                return Err(io::Error::from_raw_os_error(-errno));
            }
            acked += 1;
        }
    }
    Ok(())
}

/// The batch and how many acks it asks for.
fn encode(table: &str, changes: &[Change]) -> (Vec<u8>, usize) {
    let mut out = Vec::new();
    let mut seq = 1;
    message(
        &mut out,
        NFNL_MSG_BATCH_BEGIN,
        NLM_F_REQUEST,
        seq,
        NFPROTO_UNSPEC,
        NFNL_SUBSYS_NFTABLES,
        &[],
    );
    for c in changes {
        seq += 1;
        let mut elem = Vec::new();
        let mut key = Vec::new();
        attr(&mut key, NFTA_DATA_VALUE, &c.key);
        attr(&mut elem, NFTA_SET_ELEM_KEY | NLA_F_NESTED, &key);
        if let Some(d) = &c.data {
            let mut data = Vec::new();
            attr(&mut data, NFTA_DATA_VALUE, d);
            attr(&mut elem, NFTA_SET_ELEM_DATA | NLA_F_NESTED, &data);
        }
        let mut list = Vec::new();
        attr(&mut list, NFTA_LIST_ELEM | NLA_F_NESTED, &elem);
        let mut body = Vec::new();
        attr(&mut body, NFTA_SET_ELEM_LIST_TABLE, &c_string(table));
        attr(&mut body, NFTA_SET_ELEM_LIST_SET, &c_string(c.set));
        attr(&mut body, NFTA_SET_ELEM_LIST_ELEMENTS | NLA_F_NESTED, &list);
        let (kind, flags) = if c.add {
            (NFT_MSG_NEWSETELEM, NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE)
        } else {
            (NFT_MSG_DELSETELEM, NLM_F_REQUEST | NLM_F_ACK)
        };
        message(
            &mut out,
            (NFNL_SUBSYS_NFTABLES << 8) | kind,
            flags,
            seq,
            NFPROTO_INET,
            0,
            &body,
        );
    }
    message(
        &mut out,
        NFNL_MSG_BATCH_END,
        NLM_F_REQUEST,
        seq + 1,
        NFPROTO_UNSPEC,
        NFNL_SUBSYS_NFTABLES,
        &[],
    );
    (out, changes.len())
}

fn c_string(s: &str) -> Vec<u8> {
    let mut v = s.as_bytes().to_vec();
    v.push(0);
    v
}

/// A netlink attribute: length (header included, padding not), type, payload, padding to 4.
fn attr(out: &mut Vec<u8>, kind: u16, payload: &[u8]) {
    let len = 4 + payload.len();
    out.extend_from_slice(&(len as u16).to_ne_bytes());
    out.extend_from_slice(&kind.to_ne_bytes());
    out.extend_from_slice(payload);
    out.resize(out.len().next_multiple_of(4), 0);
}

/// A netlink message with an nfgenmsg header (`res_id` is big-endian).
fn message(
    out: &mut Vec<u8>,
    kind: u16,
    flags: u16,
    seq: u32,
    family: u8,
    res_id: u16,
    body: &[u8],
) {
    let len = 16 + 4 + body.len();
    out.extend_from_slice(&(len as u32).to_ne_bytes());
    out.extend_from_slice(&kind.to_ne_bytes());
    out.extend_from_slice(&flags.to_ne_bytes());
    out.extend_from_slice(&seq.to_ne_bytes());
    out.extend_from_slice(&0u32.to_ne_bytes());
    out.push(family);
    out.push(0);
    out.extend_from_slice(&res_id.to_be_bytes());
    out.extend_from_slice(body);
    out.resize(out.len().next_multiple_of(4), 0);
}

/// The error codes (0 for an ack) of the NLMSG_ERROR messages in a datagram.
fn errors(data: &[u8]) -> Vec<i32> {
    let mut out = Vec::new();
    let mut rest = data;
    while rest.len() >= 16 {
        let len = u32::from_ne_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
        let kind = u16::from_ne_bytes([rest[4], rest[5]]);
        if len < 16 || len > rest.len() {
            break;
        }
        if kind == NLMSG_ERROR && len >= 20 {
            out.push(i32::from_ne_bytes([rest[16], rest[17], rest[18], rest[19]]));
        }
        rest = rest.get(len.next_multiple_of(4)..).unwrap_or_default();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_wraps_one_acked_message_per_change() {
        let ip: Ipv4Addr = "10.88.0.7".parse().expect("ip");
        let (batch, acks) = encode("paas_x", &expel_changes(ip, 3));
        assert_eq!(acks, 4, "two adds, then two deletes");
        // begin + 4 changes + end, each a whole message.
        let mut kinds = Vec::new();
        let mut rest = batch.as_slice();
        while !rest.is_empty() {
            let len = u32::from_ne_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
            kinds.push(u16::from_ne_bytes([rest[4], rest[5]]));
            rest = &rest[len.next_multiple_of(4)..];
        }
        let new = (NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_NEWSETELEM;
        let del = (NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_DELSETELEM;
        assert_eq!(kinds, [0x10, new, new, del, del, 0x11]);
        // The concatenated key: the address in network order, then the mark as the host has it.
        let members = &expel_changes(ip, 3)[1];
        assert_eq!(members.key[..4], [10, 88, 0, 7]);
        assert_eq!(members.key[4..], 3u32.to_ne_bytes());
    }

    #[test]
    fn a_link_key_is_group_address_and_port_each_in_a_register() {
        let c = link_change(7, "10.88.0.9".parse().expect("ip"), 5432, true);
        assert_eq!(c.set, "links");
        assert_eq!(c.key[..4], 7u32.to_ne_bytes());
        assert_eq!(c.key[4..8], [10, 88, 0, 9]);
        assert_eq!(c.key[8..], [0x15, 0x38, 0, 0]);
    }

    #[test]
    fn acks_and_errors_are_read_from_a_datagram() {
        let mut d = Vec::new();
        for code in [0i32, -2] {
            d.extend_from_slice(&36u32.to_ne_bytes());
            d.extend_from_slice(&NLMSG_ERROR.to_ne_bytes());
            d.extend_from_slice(&[0; 10]);
            d.extend_from_slice(&code.to_ne_bytes());
            d.extend_from_slice(&[0; 16]);
        }
        assert_eq!(errors(&d), [0, -2]);
    }
}
