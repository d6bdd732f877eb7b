//! The one way Courier's services wait between attempts at something that
//! must eventually succeed (a backend coming back, a logic answering):
//! exponential from a floor to a ceiling, with jitter so that many
//! processes retrying the same backend do not come back in step, endless,
//! and started over after a success. Built on `backon`'s exponential
//! policy; a bounded number of attempts is `backon`'s `Retryable` itself.
//!
//! (The SDK, which does not depend on the server runtime, has its own
//! reconnect delays in `courier-client`.)

use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBackoff, ExponentialBuilder};

/// Delays between attempts: exponential with jitter, capped, endless.
#[derive(Debug)]
pub struct Backoff {
    policy: ExponentialBuilder,
    delays: ExponentialBackoff,
}

impl Backoff {
    /// From `min`, doubling, to at most `max` (plus jitter below it).
    pub fn new(min: Duration, max: Duration) -> Self {
        let policy = ExponentialBuilder::default()
            .with_min_delay(min)
            .with_max_delay(max.max(min))
            .with_jitter()
            .without_max_times();
        Self {
            delays: policy.build(),
            policy,
        }
    }

    /// The next delay, longer than the last until the ceiling.
    pub fn next_delay(&mut self) -> Duration {
        // Endless: `without_max_times` never ends the iterator.
        self.delays.next().unwrap_or(Duration::ZERO)
    }

    /// Sleeps for the next delay.
    pub async fn wait(&mut self) {
        tokio::time::sleep(self.next_delay()).await;
    }

    /// Sleeps for the next delay unless `stop` fires first; `false` then.
    pub async fn wait_or(&mut self, stop: &tokio_util::sync::CancellationToken) -> bool {
        tokio::select! {
            _ = stop.cancelled() => false,
            _ = self.wait() => true,
        }
    }

    /// Starts over from the floor (after a success).
    pub fn reset(&mut self) {
        self.delays = self.policy.build();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_grow_to_the_ceiling_and_start_over() {
        let (min, max) = (Duration::from_millis(100), Duration::from_secs(1));
        let mut b = Backoff::new(min, max);
        let delays: Vec<Duration> = (0..12).map(|_| b.next_delay()).collect();
        assert!(delays[0] >= min && delays[0] < min * 2, "{delays:?}");
        // Jitter stays below twice the ceiling; the policy never ends.
        assert!(delays.iter().all(|d| *d < max * 2), "{delays:?}");
        assert!(delays[11] >= max, "reaches the ceiling: {delays:?}");
        b.reset();
        assert!(b.next_delay() < min * 2, "starts over");
    }

    #[tokio::test(start_paused = true)]
    async fn a_stop_ends_the_wait() {
        let mut b = Backoff::new(Duration::from_secs(60), Duration::from_secs(60));
        let stop = tokio_util::sync::CancellationToken::new();
        stop.cancel();
        assert!(!b.wait_or(&stop).await);
    }
}
