//! The SDK's delays between attempts (reconnects, a history page asked
//! again after the comet's rate limit): exponential from `min` to `max`,
//! with jitter so that the clients of a comet that died do not all come
//! back in the same millisecond. (The SDK does not depend on the server
//! runtime, whose services share `courier_runtime::backoff`.)
//!
//! Attempt `n` waits a uniformly random time in `[ceil/2, ceil]` where
//! `ceil = min(max, min * 2^n)` ("equal jitter"), never less than `min`.

use std::time::Duration;

use rand::Rng;

/// The delays between reconnect attempts.
#[derive(Debug, Clone)]
pub(crate) struct Backoff {
    min: Duration,
    max: Duration,
    attempt: u32,
}

impl Backoff {
    pub(crate) fn new(min: Duration, max: Duration) -> Self {
        Self {
            min,
            max: max.max(min),
            attempt: 0,
        }
    }

    /// The ceiling of the next delay (before jitter).
    fn ceiling(&self) -> Duration {
        let factor = 1u32.checked_shl(self.attempt.min(31)).unwrap_or(u32::MAX);
        self.min.saturating_mul(factor).min(self.max)
    }

    /// The next delay to wait, growing with each call.
    pub(crate) fn next_delay(&mut self) -> Duration {
        let ceil = self.ceiling();
        self.attempt = self.attempt.saturating_add(1);
        let floor = (ceil / 2).max(self.min);
        if floor >= ceil {
            return ceil;
        }
        rand::rng().random_range(floor..=ceil)
    }

    /// Starts over after a successful connection.
    pub(crate) fn reset(&mut self) {
        self.attempt = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_stay_within_bounds_and_grow_to_max() {
        let (min, max) = (Duration::from_millis(200), Duration::from_secs(10));
        let mut b = Backoff::new(min, max);
        let delays: Vec<_> = (0..40).map(|_| b.next_delay()).collect();
        assert!(delays.iter().all(|d| *d >= min && *d <= max), "{delays:?}");
        assert_eq!(delays[0], min, "first attempt waits min");
        assert!(delays[1] <= min * 2);
        assert!(
            delays[20..].iter().all(|d| *d >= max / 2),
            "late attempts near max"
        );
    }

    #[test]
    fn reset_starts_over() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
        for _ in 0..10 {
            b.next_delay();
        }
        b.reset();
        assert_eq!(b.next_delay(), Duration::from_millis(100));
    }

    #[test]
    fn degenerate_bounds_do_not_panic() {
        let mut b = Backoff::new(Duration::from_secs(2), Duration::from_secs(1));
        assert_eq!(b.next_delay(), Duration::from_secs(2));
        let mut z = Backoff::new(Duration::ZERO, Duration::ZERO);
        for _ in 0..100 {
            assert_eq!(z.next_delay(), Duration::ZERO);
        }
    }
}
