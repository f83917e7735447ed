//! The instance network's policy and egress NAT: one nftables table of our own
//! (`inet paas_<bridge>`), written by `nft -f -` (there is no well-kept netlink nftables
//! crate). Owns only that table: must never touch the host's other tables or chains, so a
//! host firewall keeps working (our `drop`s are final for a packet; our `accept`s are not,
//! the host's own rules still see it).
//!
//! What an instance may reach:
//! - the outside world, masqueraded (`postrouting`);
//! - the host only on the router's published ports, as any outside client would, and on
//!   port 53 of a resolver that `/etc/resolv.conf` names on a host address (`dns`);
//! - instances of its own app (`members`), and services its app is linked to (`links`:
//!   one element `app . address . port` per link, for add-ons);
//! - nothing else: not the host on any other address or port (gateway, other interfaces,
//!   IPv6 link-local: IPv6 from the bridge is dropped whole), not other apps' instances,
//!   not other paasd installs' bridges (their own `to_instances` refuses new connections
//!   from outside their bridge, and ours does the same), not link-local/metadata ranges.
//!
//! Instances are isolated at layer 2 (their bridge ports are `isolated`, see `veth`), so
//! instance-to-instance traffic is routed through the host (proxy ARP on the bridge) and
//! passes the `forward` hook, where conntrack and the membership sets decide. A member is identified by its app's number, carried from
//! `app_of` to the `members` lookup in the packet mark, which is cleared again before
//! the packet leaves the chain.

use std::fmt::Write as _;
use std::net::Ipv4Addr;
use std::process::Stdio;

use tokio::io::AsyncWriteExt;

use super::subnet::Subnet;
use super::NetError;

/// The inet table holding our rules for `bridge`.
pub fn table_name(bridge: &str) -> String {
    format!("paas_{bridge}")
}

/// What the policy lets through besides the fixed rules.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Policy {
    /// TCP ports the router listens on for the world (reachable on every host address).
    pub published: Vec<u16>,
    /// Resolvers an instance may query on port 53 even when they are host addresses.
    pub dns: Vec<Ipv4Addr>,
}

/// The whole table, replaced atomically: `nft -f` applies a script as one transaction, and
/// declaring the table before deleting it makes the delete succeed on a first run. The
/// membership sets start empty (nothing runs when the network is set up).
pub fn table_script(bridge: &str, subnet: &Subnet, policy: &Policy) -> String {
    let table = table_name(bridge);
    let elements = |items: Vec<String>| {
        if items.is_empty() {
            String::new()
        } else {
            format!(" elements = {{ {} }};", items.join(", "))
        }
    };
    let published = elements(policy.published.iter().map(u16::to_string).collect());
    let dns = elements(policy.dns.iter().map(Ipv4Addr::to_string).collect());
    let mut s = String::new();
    let _ = write!(
        s,
        "table inet {table} {{}}\n\
         delete table inet {table}\n\
         table inet {table} {{\n\
         \tmap app_of {{ type ipv4_addr : mark; }}\n\
         \tset members {{ type ipv4_addr . mark; }}\n\
         \tset links {{ type mark . ipv4_addr . inet_service; }}\n\
         \tset published {{ type inet_service;{published} }}\n\
         \tset dns {{ type ipv4_addr;{dns} }}\n\
         \tchain input {{\n\
         \t\ttype filter hook input priority filter - 5; policy accept;\n\
         \t\tiifname \"{bridge}\" jump to_host\n\
         \t}}\n\
         \tchain to_host {{\n\
         \t\tct state established,related accept\n\
         \t\tmeta nfproto ipv4 tcp dport @published accept\n\
         \t\tmeta nfproto ipv4 ip daddr @dns meta l4proto {{ tcp, udp }} th dport 53 accept\n\
         \t\tmeta l4proto tcp reject with tcp reset\n\
         \t\treject with icmpx admin-prohibited\n\
         \t}}\n\
         \tchain forward {{\n\
         \t\ttype filter hook forward priority filter - 5; policy accept;\n\
         \t\tiifname \"{bridge}\" jump from_instances\n\
         \t\toifname \"{bridge}\" jump to_instances\n\
         \t}}\n\
         \tchain from_instances {{\n\
         \t\tmeta nfproto ipv6 drop\n\
         \t\tct state established,related accept\n\
         \t\tip daddr {{ 169.254.0.0/16, 100.100.100.200 }} goto refuse\n\
         \t\toifname \"{bridge}\" goto east_west\n\
         \t\tip saddr != {subnet} goto refuse\n\
         \t\taccept\n\
         \t}}\n\
         \tchain east_west {{\n\
         \t\tmeta mark set ip saddr map @app_of\n\
         \t\tip daddr . meta mark @members meta mark set 0 accept\n\
         \t\tmeta mark . ip daddr . tcp dport @links meta mark set 0 accept\n\
         \t\tmeta mark set 0 goto refuse\n\
         \t}}\n\
         \tchain to_instances {{\n\
         \t\tct state established,related accept\n\
         \t\tgoto refuse\n\
         \t}}\n\
         \tchain refuse {{\n\
         \t\tmeta l4proto tcp reject with tcp reset\n\
         \t\treject with icmpx admin-prohibited\n\
         \t}}\n\
         \tchain output {{\n\
         \t\ttype filter hook output priority filter - 5; policy accept;\n\
         \t\toifname \"{bridge}\" icmp type redirect drop\n\
         \t}}\n\
         \tchain postrouting {{\n\
         \t\ttype nat hook postrouting priority srcnat; policy accept;\n\
         \t\tip saddr {subnet} oifname != \"{bridge}\" masquerade\n\
         \t}}\n\
         }}\n"
    );
    s
}

pub fn delete_script(bridge: &str) -> String {
    let table = table_name(bridge);
    format!("table inet {table} {{}}\ndelete table inet {table}\n")
}

/// What running a script did.
#[derive(Debug, PartialEq, Eq)]
pub enum Applied {
    Yes,
    /// `nft` is not installed; the caller decides whether that matters.
    NoNft,
}

pub async fn apply(table: &str, script: &str) -> Result<Applied, NetError> {
    let err = |detail: String| NetError::Nft {
        table: table.to_string(),
        detail,
    };
    let child = tokio::process::Command::new("nft")
        .args(["-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn();
    let mut child = match child {
        Ok(c) => c,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Applied::NoNft),
        Err(e) => return Err(err(format!("running nft: {e}"))),
    };
    // Dropping stdin after the write closes it: nft reads the script to EOF, then applies it.
    let written = match child.stdin.take() {
        Some(mut stdin) => stdin.write_all(script.as_bytes()).await,
        None => Err(std::io::Error::other("no stdin pipe")),
    };
    let out = child
        .wait_with_output()
        .await
        .map_err(|e| err(format!("waiting for nft: {e}")))?;
    if !out.status.success() {
        // Its own message says more than the broken pipe a write to it may have hit.
        return Err(err(format!(
            "nft -f failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    written.map_err(|e| err(format!("writing the script to nft: {e}")))?;
    Ok(Applied::Yes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_is_replaced_whole_and_names_our_bridge_only() {
        let s = Subnet::new("10.88.0.0".parse().expect("ip"), 16).expect("subnet");
        let policy = Policy {
            published: vec![80, 443],
            dns: vec!["10.0.0.2".parse().expect("ip")],
        };
        let script = table_script("paas0", &s, &policy);
        assert!(script.starts_with("table inet paas_paas0 {}\ndelete table inet paas_paas0\n"));
        assert!(script.contains("type nat hook postrouting priority srcnat;"));
        assert!(script.contains("ip saddr 10.88.0.0/16 oifname != \"paas0\" masquerade"));
        assert!(script.contains("set published { type inet_service; elements = { 80, 443 }; }"));
        assert!(script.contains("set dns { type ipv4_addr; elements = { 10.0.0.2 }; }"));
        assert!(script.contains("iifname \"paas0\" jump to_host"));
        // Empty sets are declared without an element list (nft refuses `elements = { }`).
        let bare = table_script("paas0", &s, &Policy::default());
        assert!(bare.contains("set dns { type ipv4_addr; }"), "{bare}");
        assert_eq!(
            delete_script("paas0"),
            "table inet paas_paas0 {}\ndelete table inet paas_paas0\n"
        );
    }
}
