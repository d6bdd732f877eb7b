//! Connections counted per client: one IPv4 address or one IPv6 /64
//! ([`client_net`]). The comet bounds connections and handshakes per
//! client with it, logic its HTTP connections.

use std::net::IpAddr;
use std::sync::Arc;

use dashmap::mapref::entry::Entry;
use dashmap::DashMap;

use crate::net::client_net;

/// Open connections per client IP address.
#[derive(Debug)]
pub struct IpConnections {
    counts: DashMap<IpAddr, u32>,
    max: u32,
}

/// One admitted connection; dropping it gives its place back.
#[derive(Debug)]
pub struct IpSlot {
    owner: Arc<IpConnections>,
    ip: IpAddr,
}

impl IpConnections {
    /// At most `max` connections per address (0 = no limit).
    pub fn new(max: u32) -> Arc<Self> {
        Arc::new(Self {
            counts: DashMap::new(),
            max,
        })
    }

    /// A place for one more connection from `ip`'s network ([`client_net`]),
    /// or `None` at the limit.
    pub fn admit(self: &Arc<Self>, ip: IpAddr) -> Option<IpSlot> {
        let ip = client_net(ip);
        let mut count = self.counts.entry(ip).or_insert(0);
        if self.max > 0 && *count >= self.max {
            return None;
        }
        *count += 1;
        drop(count);
        Some(IpSlot {
            owner: self.clone(),
            ip,
        })
    }

    #[cfg(test)]
    fn count(&self, ip: IpAddr) -> u32 {
        self.counts.get(&client_net(ip)).map_or(0, |c| *c)
    }
}

impl Drop for IpSlot {
    fn drop(&mut self) {
        if let Entry::Occupied(mut e) = self.owner.counts.entry(self.ip) {
            *e.get_mut() = e.get().saturating_sub(1);
            if *e.get() == 0 {
                e.remove();
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn an_address_holds_at_most_max_connections() {
        let ips = IpConnections::new(2);
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let first = ips.admit(a).expect("first");
        let _second = ips.admit(a).expect("second");
        assert!(ips.admit(a).is_none(), "third is refused");
        assert!(ips.admit(b).is_some(), "other addresses are not affected");
        drop(first);
        assert_eq!(ips.count(a), 1);
        assert!(
            ips.admit(a).is_some(),
            "a closed connection frees its place"
        );
    }

    #[test]
    fn ipv6_clients_are_counted_by_their_64() {
        let ips = IpConnections::new(1);
        let a: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        let same_net: IpAddr = "2001:db8:1:2:ffff::9".parse().unwrap();
        let other_net: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        let _held = ips.admit(a).expect("first");
        assert!(ips.admit(same_net).is_none(), "same /64, same client");
        assert!(ips.admit(other_net).is_some());
        let mapped: IpAddr = "::ffff:10.0.0.1".parse().unwrap();
        assert_eq!(client_net(mapped), "10.0.0.1".parse::<IpAddr>().unwrap());
    }

    #[test]
    fn zero_means_no_limit() {
        let ips = IpConnections::new(0);
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        let slots: Vec<_> = (0..100).map(|_| ips.admit(ip).expect("admitted")).collect();
        assert_eq!(ips.count(ip), 100);
        drop(slots);
        assert_eq!(ips.count(ip), 0, "entries are removed at zero");
    }
}
