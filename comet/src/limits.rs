//! Per-client limits: connections per address, connections still in their
//! handshake (global and per address), and the rates of one connection's
//! sends and joins.
//!
//! An address is an IPv4 address or an IPv6 /64
//! ([`courier_runtime::net::client_net`], shared with logic): one host on
//! IPv6 typically holds a whole /64, so counting single addresses would let
//! it open as many connections as it has addresses.
//!
//! The address counts ([`IpConnections`], shared with logic's HTTP
//! listener) are sharded maps touched once when a connection opens and once
//! when it closes (or finishes its handshake), never per frame.
//! The rate limiters are a single atomic each (governor's GCRA state)
//! owned by the connection's own task.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Arc;

use courier_runtime::per_ip::{IpConnections, IpSlot};
use governor::clock::DefaultClock;
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};

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
    fn a_rate_of_zero_means_no_limiter() {
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
