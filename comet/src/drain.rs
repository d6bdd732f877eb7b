//! Moving a draining comet's clients elsewhere, in waves.
//!
//! Telling every client at once to reconnect would send them all to the
//! other comets (and their logins to logic) in the same second. Instead,
//! every [`WAVE`] a slice of the connections is told `Reconnect{after_ms}`
//! (with jitter within the wave) and closed, at `drain_rate` connections
//! per second in all, until none is left or `drain_grace` has passed; the
//! rest are then told at once. A told connection closes after writing its
//! `Reconnect`, and leaves the key index as its task ends.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use courier_proto::client::{frame::Body, Frame, Reconnect};
use courier_proto::encode_frame;
use rand::Rng;
use tokio::time::{Instant, MissedTickBehavior};

use crate::state::CometState;

/// How often a wave leaves.
pub(crate) const WAVE: Duration = Duration::from_millis(100);

/// What a drain did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Drained {
    /// Connections told to reconnect in waves.
    pub(crate) told: usize,
    /// Whether the grace ran out with connections left.
    pub(crate) out_of_time: bool,
}

/// Tells the comet's connections to reconnect elsewhere, `rate` per second,
/// until none is left or `grace` has passed.
pub(crate) async fn in_waves(state: &Arc<CometState>, rate: u32, grace: Duration) -> Drained {
    let per_wave = per_wave(rate);
    let deadline = Instant::now() + grace;
    let mut told: HashSet<Arc<str>> = HashSet::new();
    let mut tick = tokio::time::interval(WAVE);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if state.directory.keys.len() == 0 {
            return Drained {
                told: told.len(),
                out_of_time: false,
            };
        }
        if Instant::now() >= deadline {
            return Drained {
                told: told.len(),
                out_of_time: true,
            };
        }
        let wave = state
            .directory
            .keys
            .some(per_wave, |outbox| !told.contains(outbox.key()));
        for outbox in wave {
            let after_ms = rand::rng().random_range(0..=wave_ms());
            let frame = Frame::new(0, Body::Reconnect(Reconnect { after_ms }));
            outbox.close_with(encode_frame(&frame));
            told.insert(outbox.key().clone());
        }
        metrics::gauge!("courier_comet_drain_told").set(told.len() as f64);
    }
}

/// Connections per wave for `rate` per second (at least one).
fn per_wave(rate: u32) -> usize {
    let waves_per_second = (Duration::from_secs(1).as_millis() / WAVE.as_millis()).max(1);
    usize::try_from(u128::from(rate) / waves_per_second)
        .unwrap_or(usize::MAX)
        .max(1)
}

/// The jitter of `after_ms` within a wave: one wave's length, so the
/// clients of a wave arrive spread until the next wave's do.
fn wave_ms() -> u32 {
    u32::try_from(WAVE.as_millis()).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waves_split_the_rate() {
        assert_eq!(per_wave(1000), 100);
        assert_eq!(per_wave(5), 1);
        assert_eq!(per_wave(0), 1);
    }
}

#[cfg(test)]
mod waves {
    use std::sync::Arc;
    use std::time::Duration;

    use parking_lot::Mutex;
    use tokio::time::Instant;

    use super::*;
    use crate::counters::Counters;
    use crate::logic_client::{LogicPool, LOGIC_TIMEOUT};
    use crate::outbox::{frames, Outbox};

    /// A comet state holding `n` connections that leave the directory as
    /// soon as they are told to close, recording when (virtual time).
    fn comet_with(n: usize) -> (Arc<CometState>, Arc<Mutex<Vec<Instant>>>) {
        let secret =
            courier_runtime::ClusterSecret::new("drain-test-cluster-secret-32-bytes").unwrap();
        let state = Arc::new(CometState::new(
            crate::CometConfig::default(),
            Arc::new(LogicPool::new(LOGIC_TIMEOUT, secret)),
        ));
        let told = Arc::new(Mutex::new(Vec::new()));
        for i in 0..n {
            let (outbox, _rx) = Outbox::new(
                Arc::from(format!("k{i}").as_str()),
                frames(8),
                Arc::new(Counters::default()),
            );
            let identity = crate::registry::Identity {
                uid: Arc::from("u"),
                device: None,
                token: Default::default(),
            };
            state.directory.keys.insert(outbox.clone(), identity);
            let (state, told) = (state.clone(), told.clone());
            tokio::spawn(async move {
                let _rx = _rx;
                outbox.closing().await;
                told.lock().push(Instant::now());
                state.directory.keys.remove(outbox.key());
            });
        }
        (state, told)
    }

    #[tokio::test(start_paused = true)]
    async fn connections_are_told_in_waves_at_the_rate() {
        let (state, told) = comet_with(30);
        let start = Instant::now();
        let drained = in_waves(&state, 100, Duration::from_secs(60)).await;
        assert_eq!(
            drained,
            Drained {
                told: 30,
                out_of_time: false
            }
        );
        assert_eq!(state.directory.keys.len(), 0);
        // 100 a second is 10 a wave: three waves, 100 ms apart.
        let mut waves: Vec<u128> = told
            .lock()
            .iter()
            .map(|at| at.duration_since(start).as_millis() / WAVE.as_millis())
            .collect();
        waves.sort_unstable();
        waves.dedup();
        assert_eq!(waves, vec![0, 1, 2]);
    }

    #[tokio::test(start_paused = true)]
    async fn the_grace_bounds_a_drain() {
        let (state, _) = comet_with(30);
        // One a wave for a second: about ten told, the rest left.
        let drained = in_waves(&state, 10, Duration::from_secs(1)).await;
        assert!(drained.out_of_time);
        assert!((9..=11).contains(&drained.told), "{drained:?}");
        assert_eq!(state.directory.keys.len(), 30 - drained.told);
    }
}
