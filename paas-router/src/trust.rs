//! Trusted proxies: the networks whose forwarding headers the router believes.
//!
//! Owns the CIDR type ([`IpNet`]), its parsing and the membership test. It must not look at
//! requests or headers (`headers` decides what trust changes); a peer is matched once per
//! connection, never per request.

use std::net::IpAddr;
use std::str::FromStr;

/// An IPv4 or IPv6 network, `10.0.0.0/8` or `fd00::/8`; a bare address is a /32 or /128.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpNet {
    addr: IpAddr,
    prefix: u8,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IpNetError {
    #[error("'{0}' is not an IP address")]
    Address(String),
    #[error("'{0}' is not a prefix length (0-32 for IPv4, 0-128 for IPv6)")]
    Prefix(String),
    #[error("'{given}' has host bits set; the network is {network}")]
    HostBits { given: String, network: String },
}

impl IpNet {
    pub fn addr(&self) -> IpAddr {
        self.addr
    }

    pub fn prefix(&self) -> u8 {
        self.prefix
    }

    /// Whether `ip` is in this network; an IPv4-mapped IPv6 address counts as IPv4.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip.to_canonical()) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

impl FromStr for IpNet {
    type Err = IpNetError;

    fn from_str(s: &str) -> Result<IpNet, IpNetError> {
        let (addr_text, prefix_text) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr: IpAddr = addr_text
            .parse()
            .map_err(|_| IpNetError::Address(addr_text.to_string()))?;
        let addr = addr.to_canonical();
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix_text {
            None => max,
            Some(p) => p
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| IpNetError::Prefix(p.to_string()))?,
        };
        let net = IpNet { addr, prefix };
        let network = net.network();
        if network != addr {
            return Err(IpNetError::HostBits {
                given: s.to_string(),
                network: format!("{network}/{prefix}"),
            });
        }
        Ok(net)
    }
}

impl IpNet {
    fn network(&self) -> IpAddr {
        match self.addr {
            IpAddr::V4(a) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                IpAddr::V4((u32::from(a) & mask).into())
            }
            IpAddr::V6(a) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                IpAddr::V6((u128::from(a) & mask).into())
            }
        }
    }
}

impl std::fmt::Display for IpNet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// Whether the peer is in any trusted network (a linear scan: the list is a handful).
pub(crate) fn is_trusted(trusted: &[IpNet], peer: IpAddr) -> bool {
    trusted.iter().any(|n| n.contains(peer))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    #[test]
    fn router_trust_cidrs_parse_and_match() {
        let nets: Vec<IpNet> = ["127.0.0.1/32", "10.0.0.0/8", "fd00::/8", "::1", "0.0.0.0/0"]
            .iter()
            .map(|s| s.parse().expect(s))
            .collect();
        assert_eq!(nets[0].to_string(), "127.0.0.1/32");
        assert_eq!(nets[3].to_string(), "::1/128");
        assert!(nets[0].contains(ip("127.0.0.1")));
        assert!(!nets[0].contains(ip("127.0.0.2")));
        assert!(nets[0].contains(ip("::ffff:127.0.0.1")));
        assert!(nets[1].contains(ip("10.255.1.2")));
        assert!(!nets[1].contains(ip("11.0.0.1")));
        assert!(!nets[1].contains(ip("::a00:1")));
        assert!(nets[2].contains(ip("fd12:3456::1")));
        assert!(!nets[2].contains(ip("fe80::1")));
        assert!(nets[3].contains(ip("::1")));
        assert!(nets[4].contains(ip("203.0.113.7")));
        assert!(!nets[4].contains(ip("2001:db8::1")));
        assert!(is_trusted(&nets[..2], ip("10.1.1.1")));
        assert!(!is_trusted(&[], ip("10.1.1.1")));
        let all6: IpNet = "::/0".parse().expect("::/0");
        assert!(all6.contains(ip("2001:db8::1")));
    }

    #[test]
    fn router_trust_bad_cidrs_say_why() {
        assert_eq!(
            "10.0.0.1/8".parse::<IpNet>(),
            Err(IpNetError::HostBits {
                given: "10.0.0.1/8".into(),
                network: "10.0.0.0/8".into()
            })
        );
        assert_eq!(
            "10.0.0.0/33".parse::<IpNet>(),
            Err(IpNetError::Prefix("33".into()))
        );
        assert_eq!(
            "fd00::/129".parse::<IpNet>(),
            Err(IpNetError::Prefix("129".into()))
        );
        assert_eq!(
            "10.0.0/8".parse::<IpNet>(),
            Err(IpNetError::Address("10.0.0".into()))
        );
        for bad in ["", "/8", "10.0.0.0/", "10.0.0.0/x", "localhost"] {
            assert!(bad.parse::<IpNet>().is_err(), "{bad}");
        }
    }
}
