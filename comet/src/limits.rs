//! Per-client limits: connections per address, connections still in their
//! handshake (global and per address), and the rates of one connection's
//! sends and joins.
//!
//! An address is an IPv4 address or an IPv6 /64 ([`client_net`], shared
//! with logic's login limits): one host
//! on IPv6 typically holds a whole /64, so counting single addresses would
//! let it open as many connections as it has addresses.
//!
//! The address counts are sharded maps touched once when a connection opens
//! and once when it closes (or finishes its handshake), never per frame.
//! The rate limiters are a single atomic each (governor's GCRA state)
//! owned by the connection's own task.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Arc;

use courier_runtime::net::client_net;

use dashmap::mapref::entry::Entry;
use dashmap::DashMap;
use governor::clock::DefaultClock;
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

    /// A place for one more connection from `ip`'s network ([`client_net`]),
    /// or `None` at the limit.
    pub(crate) fn admit(self: &Arc<Self>, ip: IpAddr) -> Option<IpSlot> {
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

/// Connections that have not authenticated yet: at most `max` in all and
/// `per_ip` per address.
#[derive(Debug)]
pub(crate) struct Handshakes {
    all: Arc<tokio::sync::Semaphore>,
    per_ip: Arc<IpConnections>,
}

/// A connection's place among those handshaking; dropping it (once the
/// handshake ends either way) gives it back.
#[derive(Debug)]
pub(crate) struct HandshakeSlot {
    _all: tokio::sync::OwnedSemaphorePermit,
    _ip: IpSlot,
}

impl Handshakes {
    pub(crate) fn new(max: usize, per_ip: u32) -> Self {
        Self {
            all: Arc::new(tokio::sync::Semaphore::new(max)),
            per_ip: IpConnections::new(per_ip),
        }
    }

    /// A place for one more handshake from `ip`, or `None` when either
    /// bound is reached.
    pub(crate) fn admit(&self, ip: IpAddr) -> Option<HandshakeSlot> {
        let ip_slot = self.per_ip.admit(ip)?;
        let all = self.all.clone().try_acquire_owned().ok()?;
        Some(HandshakeSlot {
            _all: all,
            _ip: ip_slot,
        })
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

/// A limiter of `rate` frames per second with a burst of as many, or `None`
/// when `rate` is 0 (no limit), reading time from `clock`.
///
/// Pass the comet's one clock ([`crate::state::CometState::clock`]): making
/// a new one calibrates it with CPUID instructions, which trap to the
/// hypervisor on a VM; with two limiters per connection that was 15% of a
/// comet's CPU while clients connected.
pub(crate) fn rate_limiter(rate: u32, clock: &DefaultClock) -> Option<DefaultDirectRateLimiter> {
    NonZeroU32::new(rate)
        .map(|r| RateLimiter::direct_with_clock(Quota::per_second(r), clock.clone()))
}

/// A per-connection limiter made on its first check: most connections
/// never send or join after their handshake, and a limiter is 72 bytes an
/// idle connection would carry for nothing (boxed, this is 8).
#[derive(Debug, Default)]
pub(crate) struct LazyLimiter(Option<Box<DefaultDirectRateLimiter>>);

impl LazyLimiter {
    /// Whether one more frame is within `rate` per second (0: no limit).
    pub(crate) fn allows(&mut self, rate: u32, clock: &DefaultClock) -> bool {
        if self.0.is_none() {
            match rate_limiter(rate, clock) {
                Some(limiter) => self.0 = Some(Box::new(limiter)),
                None => return true,
            }
        }
        self.0.as_ref().is_none_or(|l| l.check().is_ok())
    }
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
    fn handshakes_are_bounded_in_all_and_per_address() {
        let handshakes = Handshakes::new(3, 2);
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let c: IpAddr = "10.0.0.3".parse().unwrap();
        let a1 = handshakes.admit(a).expect("a1");
        let _a2 = handshakes.admit(a).expect("a2");
        assert!(handshakes.admit(a).is_none(), "per address");
        let _b1 = handshakes.admit(b).expect("b1");
        assert!(handshakes.admit(c).is_none(), "in all");
        drop(a1);
        assert!(
            handshakes.admit(c).is_some(),
            "a finished handshake frees its place"
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
        assert!(rate_limiter(0, &DefaultClock::default()).is_none());
    }

    #[test]
    fn the_send_limiter_allows_a_burst_of_rate() {
        let mut lazy = LazyLimiter::default();
        let clock = DefaultClock::default();
        assert!((0..100).all(|_| lazy.allows(0, &clock)), "0 is no limit");
        let mut lazy = LazyLimiter::default();
        assert_eq!((0..5).filter(|_| lazy.allows(3, &clock)).count(), 3);
        let limiter = rate_limiter(3, &DefaultClock::default()).expect("limited");
        assert!((0..3).all(|_| limiter.check().is_ok()));
        assert!(limiter.check().is_err());
    }
}
