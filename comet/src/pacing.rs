//! A broadcast spread over time: `rate` connections a second instead of
//! every connection at once.
//!
//! A broadcast to a million connections queues a million frames in one
//! go; the writes, and the requests the clients make when they read it,
//! all land in the same second. A backend that names a `rate` (`POST
//! /push/all`) gets the connections served in slices instead: the
//! connections of the moment are listed once, then every [`slice_every`]
//! the next slice is queued, so that `rate` connections a second get the
//! frames. A connection that closed meanwhile is skipped; one that opened
//! meanwhile is not in the list (a broadcast is best effort and not
//! stored). Each paced broadcast runs on its own, so one sent later with a
//! higher rate can overtake it on some connections. None takes longer than
//! [`LONGEST`]: a slower rate is raised for it.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use crate::counters::Counters;
use crate::outbox::{fan_out, Outbox};

/// The shortest time between two slices: below it, slices grow instead.
const FINEST: Duration = Duration::from_millis(10);
/// The longest a paced broadcast may take: a slower `rate` is raised so it
/// ends within this, since it holds every listed connection's outbox (and
/// a closed connection's memory) until it is done.
pub(crate) const LONGEST: Duration = Duration::from_secs(600);

/// `rate`, raised so that `connections` are served within [`LONGEST`].
pub(crate) fn effective_rate(rate: u32, connections: usize) -> u32 {
    let at_least = (connections as u64).div_ceil(LONGEST.as_secs());
    rate.max(u32::try_from(at_least).unwrap_or(u32::MAX))
}

/// How often a slice is queued at `rate` connections a second (> 0), and
/// how many connections a slice holds.
pub(crate) fn slice_every(rate: u32) -> (Duration, usize) {
    let rate = rate.max(1);
    let every = (Duration::from_secs(1) / rate).max(FINEST);
    // `rate` a second, in slices of `every`: at least one connection each.
    let per_slice = (u128::from(rate) * every.as_micros() / 1_000_000).max(1);
    (every, usize::try_from(per_slice).unwrap_or(usize::MAX))
}

/// Queues `frames` to `outboxes`, `rate` a second (> 0), the first slice
/// at once. Runs until every slice is queued.
pub(crate) async fn pace(
    outboxes: Vec<Outbox>,
    frames: Arc<[Bytes]>,
    rate: u32,
    counters: Arc<Counters>,
) {
    let (every, per_slice) = slice_every(effective_rate(rate, outboxes.len()));
    let mut tick = tokio::time::interval(every);
    // A comet too busy to keep the pace catches up at its own speed rather
    // than in one burst.
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    for slice in outboxes.chunks(per_slice) {
        tick.tick().await;
        fan_out(slice.iter(), &frames, &counters);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outbox::frames;

    #[test]
    fn a_slow_rate_is_raised_to_end_within_ten_minutes() {
        assert_eq!(effective_rate(1, 100), 1);
        assert_eq!(effective_rate(1, 600_000), 1_000);
        assert_eq!(effective_rate(5_000, 600_000), 5_000);
        assert_eq!(effective_rate(1, 600_001), 1_001);
    }

    #[test]
    fn slices_hold_rate_connections_a_second() {
        assert_eq!(slice_every(1), (Duration::from_secs(1), 1));
        assert_eq!(slice_every(4), (Duration::from_millis(250), 1));
        assert_eq!(slice_every(100), (Duration::from_millis(10), 1));
        assert_eq!(slice_every(10_000), (Duration::from_millis(10), 100));
        assert_eq!(slice_every(u32::MAX).0, FINEST);
    }

    #[tokio::test(start_paused = true)]
    async fn two_connections_a_second_reach_five_in_two_seconds() {
        let counters = Arc::new(Counters::default());
        let (outboxes, mut writers): (Vec<Outbox>, Vec<_>) = (0..5)
            .map(|i| {
                let (outbox, writer) =
                    Outbox::new(Arc::from(format!("k{i}")), frames(8), counters.clone());
                outbox.release();
                (outbox, writer)
            })
            .unzip();
        let mut reached = 0;
        let mut received = move || {
            reached += writers.iter_mut().filter_map(|w| w.try_recv()).count();
            reached
        };
        let all: Arc<[Bytes]> = Arc::from(vec![Bytes::from_static(b"all")]);
        let task = tokio::spawn(pace(outboxes, all, 2, counters));
        tokio::task::yield_now().await;
        assert_eq!(received(), 1, "the first slice goes at once");
        tokio::time::sleep(Duration::from_millis(500)).await;
        tokio::task::yield_now().await;
        assert_eq!(received(), 2, "then one every half second");
        tokio::time::sleep(Duration::from_millis(1500)).await;
        task.await.unwrap();
        assert_eq!(received(), 5, "all five after two seconds");
    }
}
