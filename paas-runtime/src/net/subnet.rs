//! IPv4 subnet arithmetic for the instance network: which addresses exist, which one is the
//! gateway, which ones instances may get, and the lowest free one. Pure: no I/O, no kernel,
//! no SQL (the store persists allocations and calls in here for the arithmetic).

use std::collections::BTreeSet;
use std::fmt;
use std::net::Ipv4Addr;

/// A validated IPv4 subnet: host bits zero, prefix in [`Subnet::MIN_PREFIX`]..=[`Subnet::MAX_PREFIX`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Subnet {
    network: u32,
    prefix: u8,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SubnetError {
    #[error("prefix /{0} is out of range (/{min}../{max})", min = Subnet::MIN_PREFIX, max = Subnet::MAX_PREFIX)]
    Prefix(u8),
    #[error("{addr}/{prefix} has host bits set (the network address is {network}/{prefix})")]
    HostBits {
        addr: Ipv4Addr,
        prefix: u8,
        network: Ipv4Addr,
    },
}

impl Subnet {
    /// Larger than a /8 is not an instance network but a misconfiguration.
    pub const MIN_PREFIX: u8 = 8;
    /// A /30 is the smallest subnet with a gateway and one instance.
    pub const MAX_PREFIX: u8 = 30;

    pub fn new(addr: Ipv4Addr, prefix: u8) -> Result<Subnet, SubnetError> {
        if !(Self::MIN_PREFIX..=Self::MAX_PREFIX).contains(&prefix) {
            return Err(SubnetError::Prefix(prefix));
        }
        let mask = u32::MAX << (32 - prefix);
        let a = u32::from(addr);
        if a & !mask != 0 {
            return Err(SubnetError::HostBits {
                addr,
                prefix,
                network: Ipv4Addr::from(a & mask),
            });
        }
        Ok(Subnet { network: a, prefix })
    }

    pub fn network(&self) -> Ipv4Addr {
        Ipv4Addr::from(self.network)
    }

    pub fn prefix(&self) -> u8 {
        self.prefix
    }

    fn size(&self) -> u32 {
        // prefix >= 8, so this never overflows.
        1u32 << (32 - self.prefix)
    }

    pub fn broadcast(&self) -> Ipv4Addr {
        Ipv4Addr::from(self.network + (self.size() - 1))
    }

    /// Number of host addresses (all but network and broadcast), gateway included.
    pub fn host_count(&self) -> u32 {
        self.size() - 2
    }

    /// The `n`th host address, 1-based (`host(1)` is the first after the network address);
    /// `None` outside `1..=host_count()`.
    pub fn host(&self, n: u32) -> Option<Ipv4Addr> {
        (1..=self.host_count())
            .contains(&n)
            .then(|| Ipv4Addr::from(self.network + n))
    }

    /// The bridge's address: the first host, as Docker and CNI do.
    pub fn gateway(&self) -> Ipv4Addr {
        Ipv4Addr::from(self.network + 1)
    }

    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        u32::from(ip).wrapping_sub(self.network) < self.size()
    }

    /// True for addresses an instance may get: inside, and not network, gateway or broadcast.
    pub fn is_assignable(&self, ip: Ipv4Addr) -> bool {
        self.contains(ip) && ip != self.network() && ip != self.gateway() && ip != self.broadcast()
    }

    /// The lowest assignable address not in `used`; `None` when the subnet is full.
    pub fn first_free(&self, used: &BTreeSet<Ipv4Addr>) -> Option<Ipv4Addr> {
        (2..=self.host_count())
            .filter_map(|n| self.host(n))
            .find(|ip| !used.contains(ip))
    }
}

impl fmt::Display for Subnet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network(), self.prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> Ipv4Addr {
        s.parse().expect("test address")
    }

    #[test]
    fn validates_prefix_and_host_bits() {
        assert!(Subnet::new(ip("10.88.0.0"), 16).is_ok());
        assert_eq!(Subnet::new(ip("10.0.0.0"), 7), Err(SubnetError::Prefix(7)));
        assert_eq!(
            Subnet::new(ip("10.0.0.0"), 31),
            Err(SubnetError::Prefix(31))
        );
        assert_eq!(
            Subnet::new(ip("10.88.1.0"), 16),
            Err(SubnetError::HostBits {
                addr: ip("10.88.1.0"),
                prefix: 16,
                network: ip("10.88.0.0")
            })
        );
    }

    #[test]
    fn hosts_gateway_broadcast() {
        let s = Subnet::new(ip("10.88.0.0"), 16).expect("subnet");
        assert_eq!(s.gateway(), ip("10.88.0.1"));
        assert_eq!(s.broadcast(), ip("10.88.255.255"));
        assert_eq!(s.host_count(), 65534);
        assert_eq!(s.host(0), None);
        assert_eq!(s.host(1), Some(ip("10.88.0.1")));
        assert_eq!(s.host(256), Some(ip("10.88.1.0")));
        assert_eq!(s.host(65534), Some(ip("10.88.255.254")));
        assert_eq!(s.host(65535), None);
        assert_eq!(s.to_string(), "10.88.0.0/16");

        let small = Subnet::new(ip("192.168.7.4"), 30).expect("subnet");
        assert_eq!(small.host_count(), 2);
        assert_eq!(small.gateway(), ip("192.168.7.5"));
        assert_eq!(small.broadcast(), ip("192.168.7.7"));
        // The largest subnet allowed does not overflow at the top of the address space.
        let top = Subnet::new(ip("255.0.0.0"), 8).expect("subnet");
        assert_eq!(top.broadcast(), ip("255.255.255.255"));
        assert_eq!(top.host(top.host_count()), Some(ip("255.255.255.254")));
    }

    #[test]
    fn membership_and_assignability() {
        let s = Subnet::new(ip("10.213.4.0"), 24).expect("subnet");
        assert!(s.contains(ip("10.213.4.0")));
        assert!(s.contains(ip("10.213.4.255")));
        assert!(!s.contains(ip("10.213.5.0")));
        assert!(!s.contains(ip("10.213.3.255")));
        assert!(!s.contains(ip("0.0.0.0")));
        for not in ["10.213.4.0", "10.213.4.1", "10.213.4.255", "10.213.5.2"] {
            assert!(!s.is_assignable(ip(not)), "{not}");
        }
        assert!(s.is_assignable(ip("10.213.4.2")));
        assert!(s.is_assignable(ip("10.213.4.254")));
    }

    #[test]
    fn first_free_skips_gateway_and_used_and_ends_when_full() {
        let s = Subnet::new(ip("10.0.0.8"), 29).expect("subnet");
        let mut used = BTreeSet::new();
        let mut got = Vec::new();
        while let Some(a) = s.first_free(&used) {
            used.insert(a);
            got.push(a.to_string());
        }
        assert_eq!(
            got,
            [
                "10.0.0.10",
                "10.0.0.11",
                "10.0.0.12",
                "10.0.0.13",
                "10.0.0.14"
            ]
        );
        used.remove(&ip("10.0.0.12"));
        assert_eq!(s.first_free(&used), Some(ip("10.0.0.12")));
        // Addresses of another subnet do not count against this one.
        let other: BTreeSet<_> = [ip("10.0.1.2")].into();
        assert_eq!(s.first_free(&other), Some(ip("10.0.0.10")));
    }
}
