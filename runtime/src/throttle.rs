//! Warnings that repeat are logged once per interval, with a count.
//!
//! When a backend is down every request fails the same way; logging each
//! one (872,500 identical lines in two minutes, in one measured outage)
//! buries everything else and costs the CPU the outage leaves. A
//! [`Throttle`] at the logging site lets the first one through and then one
//! per interval, saying how many it held back:
//!
//! ```
//! use std::sync::LazyLock;
//! use std::time::Duration;
//! use courier_runtime::throttle::Throttle;
//!
//! static BACKEND_DOWN: LazyLock<Throttle> =
//!     LazyLock::new(|| Throttle::new(Duration::from_secs(10)));
//!
//! fn on_failure(error: &str) {
//!     if let Some(suppressed) = BACKEND_DOWN.admit() {
//!         tracing::warn!(%error, suppressed, "backend failure");
//!     }
//! }
//! # on_failure("timed out");
//! ```

use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};

/// One logging site's throttle. See the module docs.
#[derive(Debug)]
pub struct Throttle {
    limiter: DefaultDirectRateLimiter,
    suppressed: AtomicU64,
}

impl Throttle {
    /// Lets one event through per `interval` (at least 1 ms).
    pub fn new(interval: Duration) -> Self {
        let quota = Quota::with_period(interval.max(Duration::from_millis(1)))
            .unwrap_or_else(|| Quota::per_second(NonZeroU32::MIN))
            .allow_burst(NonZeroU32::MIN);
        Self {
            limiter: RateLimiter::direct(quota),
            suppressed: AtomicU64::new(0),
        }
    }

    /// `Some(n)` if this event should be logged, `n` being how many were
    /// held back since the last one logged; `None` (and counted) if not.
    pub fn admit(&self) -> Option<u64> {
        match self.limiter.check() {
            Ok(()) => Some(self.suppressed.swap(0, Ordering::Relaxed)),
            Err(_) => {
                self.suppressed.fetch_add(1, Ordering::Relaxed);
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_first_passes_the_rest_are_counted_until_the_interval_has_passed() {
        let throttle = Throttle::new(Duration::from_millis(100));
        assert_eq!(throttle.admit(), Some(0));
        let mut held = 0;
        let next = loop {
            match throttle.admit() {
                Some(suppressed) => break suppressed,
                None => held += 1,
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        };
        assert_eq!(next, held, "every held-back event is counted once");
        assert_eq!(throttle.admit(), None, "and the interval starts again");
    }
}
