//! Per-client limits: connections per IP address and the send rate of one
//! connection.
//!
//! The IP count is a sharded map touched once when a connection opens and
//! once when it closes, never per frame. The send limiter is a single atomic
//! (governor's GCRA state) owned by the connection's own task.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Arc;

use dashmap::mapref::entry::Entry;
use dashmap::DashMap;
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};

/// Open connections per client IP address.
#[derive(Debug)]
pub(crate) struct IpConnections {
    counts: DashMap<IpAddr, u32>,
    max: u32,
}

/// One admitted connection; dropping it gives its place back.
#[derive(Debug)]
pub(crate) struct IpSlot {
    owner: Arc<IpConnections>,
    ip: IpAddr,
}

impl IpConnections {
    /// At most `max` connections per address (0 = no limit).
    pub(crate) fn new(max: u32) -> Arc<Self> {
        Arc::new(Self {
            counts: DashMap::new(),
            max,
        })
    }

    /// A place for one more connection from `ip`, or `None` at the limit.
    pub(crate) fn admit(self: &Arc<Self>, ip: IpAddr) -> Option<IpSlot> {
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
        self.counts.get(&ip).map_or(0, |c| *c)
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

/// A limiter of `rate` sends per second with a burst of as many, or `None`
/// when `rate` is 0 (no limit).
pub(crate) fn send_limiter(rate: u32) -> Option<DefaultDirectRateLimiter> {
    NonZeroU32::new(rate).map(|r| RateLimiter::direct(Quota::per_second(r)))
}

#[cfg(test)]
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
    fn zero_means_no_limit() {
        let ips = IpConnections::new(0);
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        let slots: Vec<_> = (0..100).map(|_| ips.admit(ip).expect("admitted")).collect();
        assert_eq!(ips.count(ip), 100);
        drop(slots);
        assert_eq!(ips.count(ip), 0, "entries are removed at zero");
        assert!(send_limiter(0).is_none());
    }

    #[test]
    fn the_send_limiter_allows_a_burst_of_rate() {
        let limiter = send_limiter(3).expect("limited");
        assert!((0..3).all(|_| limiter.check().is_ok()));
        assert!(limiter.check().is_err());
    }
}
