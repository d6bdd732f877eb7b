//! Probing the brokers: reachability, the topic, and whether the log went
//! back.
//!
//! Every [`PROBE_EVERY`] the probe asks for the topic's metadata and each
//! partition's high watermark (on a blocking thread: librdkafka's calls
//! block), bounded by [`PROBE_TIMEOUT`]:
//!
//! - no answer: the brokers are unreachable ([`QueueHealth::reachable`]
//!   false, so `publish` fails at once) until one answers again;
//! - the topic is missing: it is created again; if this probe had seen it
//!   before, the broker lost its log, and that counts as a loss;
//! - a partition's high watermark below the highest this probe saw: the
//!   log went back (a broker that came back empty and was written to since,
//!   a replica that lost the tail), a loss too.
//!
//! A loss means messages that were accepted (stored and answered 202) may
//! never be consumed. Nothing is lost for good, since the store of record
//! has every one, but connected clients would only learn of them at their
//! next message or session check; whoever watches the health (logic) has
//! every client told where its streams stand instead.

use std::sync::Arc;
use std::time::Duration;

use rdkafka::error::RDKafkaErrorCode;
use rdkafka::producer::Producer as _;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::{Producer, Producing};
use crate::queue::QueueHealth;

/// How often the brokers are probed.
pub(super) const PROBE_EVERY: Duration = Duration::from_millis(500);
/// How long one probe may take.
const PROBE_TIMEOUT: Duration = Duration::from_secs(1);

/// What one probe saw.
#[derive(Debug, PartialEq, Eq)]
enum Seen {
    /// No broker answered.
    Unreachable,
    /// The topic does not exist.
    NoTopic,
    /// Each partition's high watermark, by partition.
    Marks(Vec<i64>),
}

/// Probes until `stop`, publishing what it finds through `health`.
pub(super) async fn probe(
    producing: Arc<Producing>,
    health: watch::Sender<QueueHealth>,
    stop: CancellationToken,
) {
    let mut tick = tokio::time::interval(PROBE_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut highest: Option<Vec<i64>> = None;
    // Shown at 0 from the start, so an alert on its increase has a series.
    metrics::counter!("courier_queue_losses_total").increment(0);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        let producer = producing.producer();
        let topic = producing.topic.clone();
        let seen = tokio::task::spawn_blocking(move || look(&producer, &topic))
            .await
            .unwrap_or(Seen::Unreachable);
        let reachable = seen != Seen::Unreachable;
        let lost = match seen {
            Seen::Unreachable => false,
            Seen::NoTopic => {
                match producing.ensure_topic().await {
                    Ok(()) => {
                        tracing::warn!(topic = %producing.topic, "the topic was gone; created it again")
                    }
                    Err(e) => {
                        tracing::warn!(topic = %producing.topic, error = %e, "the topic is gone and cannot be created yet")
                    }
                }
                highest.take().is_some()
            }
            Seen::Marks(marks) => went_back(&mut highest, marks),
        };
        if lost {
            metrics::counter!("courier_queue_losses_total").increment(1);
            tracing::warn!(topic = %producing.topic, "the broker lost messages it had taken; every client will be told where its streams stand");
            // It lost what it knew of this producer too: a fresh one does
            // not wait on sequence numbers the broker never saw.
            producing.rebuild("the broker lost its log", true);
        }
        metrics::gauge!("courier_queue_reachable").set(if reachable { 1.0 } else { 0.0 });
        health.send_if_modified(|h| {
            let changed = h.reachable != reachable || lost;
            if h.reachable != reachable {
                if reachable {
                    tracing::info!(topic = %producing.topic, "the brokers answer again");
                } else {
                    tracing::warn!(topic = %producing.topic, "no broker answers; pushes are refused until one does");
                }
            }
            h.reachable = reachable;
            h.losses += u64::from(lost);
            changed
        });
    }
}

/// One probe (blocking).
fn look(producer: &Producer, topic: &str) -> Seen {
    let client = producer.client();
    let metadata = match client.fetch_metadata(Some(topic), PROBE_TIMEOUT) {
        Ok(metadata) => metadata,
        Err(_) => return Seen::Unreachable,
    };
    let Some(found) = metadata.topics().iter().find(|t| t.name() == topic) else {
        return Seen::NoTopic;
    };
    if matches!(
        found.error().map(RDKafkaErrorCode::from),
        Some(RDKafkaErrorCode::UnknownTopicOrPartition)
    ) || found.partitions().is_empty()
    {
        return Seen::NoTopic;
    }
    let mut marks = Vec::with_capacity(found.partitions().len());
    for partition in found.partitions() {
        match client.fetch_watermarks(topic, partition.id(), PROBE_TIMEOUT) {
            Ok((_, high)) => marks.push(high),
            Err(_) => return Seen::Unreachable,
        }
    }
    Seen::Marks(marks)
}

/// Whether `marks` went back from the highest seen (fewer partitions, or
/// one lower); records the new highest.
fn went_back(highest: &mut Option<Vec<i64>>, marks: Vec<i64>) -> bool {
    let back = highest.as_ref().is_some_and(|seen| {
        marks.len() < seen.len() || marks.iter().zip(seen).any(|(now, was)| now < was)
    });
    match highest {
        Some(seen) if !back => {
            for (was, now) in seen.iter_mut().zip(&marks) {
                *was = (*was).max(*now);
            }
            if marks.len() > seen.len() {
                seen.extend_from_slice(&marks[seen.len()..]);
            }
        }
        _ => *highest = Some(marks),
    }
    back
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_log_that_goes_back_is_a_loss_once() {
        let mut highest = None;
        assert!(!went_back(&mut highest, vec![5, 3]));
        assert!(!went_back(&mut highest, vec![6, 3]));
        assert!(
            went_back(&mut highest, vec![1, 0]),
            "a broker that came back empty"
        );
        assert!(
            !went_back(&mut highest, vec![2, 1]),
            "counted once, then followed"
        );
        assert!(went_back(&mut highest, vec![2]), "a partition gone");
        assert!(!went_back(&mut highest, vec![2, 0]), "one more partition");
    }
}
