//! Watching for partitions no member consumes, and rejoining when one is.
//!
//! A group coordinator must hand a crashed member's partitions to the
//! survivors once the crashed member's session times out. Not every
//! Kafka-compatible broker does that every time. tansu 0.6 evicts a silent
//! member while it answers a survivor's heartbeat, but it keeps the group
//! "formed" at the same generation with the old assignment. The survivor's
//! rejoin then gets back only its own old partitions, and the dead
//! member's partitions stay unowned until membership changes again.
//!
//! A member cannot see the other members' assignments (tansu's
//! DescribeGroups leaves them out), but it can see the effect: a partition
//! it does not own whose committed group offset stays behind the log end
//! for longer than a healthy rebalance takes. When that happens the member
//! leaves and rejoins the group (unsubscribe, then subscribe, which also
//! gives it a new member id). On any coordinator that forces a full
//! rebalance, and the survivors share out every partition.
//!
//! On a correct broker this only fires when a live member is stuck on a
//! partition for that long. Then the rebalance is a fair response, and
//! repeated rejoins back off so they cannot become a rebalance storm.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{Consumer as _, StreamConsumer};
use rdkafka::error::KafkaResult;
use rdkafka::{Offset, TopicPartitionList};

use super::{Assignment, RebalanceLog};

/// How often the group's progress is sampled.
const CHECK_EVERY: Duration = Duration::from_secs(3);
/// Bound on each metadata/offset request of a check.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// The shortest time a partition must lag without progress to count as
/// orphaned, whatever the session timeout.
const MIN_STALL: Duration = Duration::from_secs(10);
/// Pause after a rejoin before another one, doubling while partitions stay
/// orphaned.
const REJOIN_BACKOFF_MIN: Duration = Duration::from_secs(30);
const REJOIN_BACKOFF_MAX: Duration = Duration::from_secs(300);
/// librdkafka's default `session.timeout.ms`.
const DEFAULT_SESSION_TIMEOUT_MS: u64 = 45_000;

type Member = StreamConsumer<RebalanceLog>;

/// How long a partition may lag without progress before it counts as
/// orphaned: twice the session timeout, time for the coordinator to evict a
/// dead owner and for the rebalance that follows.
pub(super) fn stall_limit(config: &ClientConfig) -> Duration {
    let session_ms = config
        .get("session.timeout.ms")
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(DEFAULT_SESSION_TIMEOUT_MS);
    Duration::from_millis(session_ms.saturating_mul(2)).max(MIN_STALL)
}

/// Starts watching the group of `consumer` for orphaned partitions. The
/// watch ends on its own once the consumer is dropped.
pub(super) fn spawn(
    consumer: &Arc<Member>,
    assignment: Arc<Assignment>,
    stall: Duration,
) -> Option<tokio::task::JoinHandle<()>> {
    let handle = tokio::runtime::Handle::try_current().ok()?;
    let watch = Watch::new(assignment.topic.clone(), stall);
    Some(handle.spawn(run(Arc::downgrade(consumer), assignment, watch)))
}

async fn run(consumer: Weak<Member>, assignment: Arc<Assignment>, mut watch: Watch) {
    loop {
        tokio::time::sleep(CHECK_EVERY).await;
        // The strong reference only lives on the blocking thread, so if it
        // turns out to be the last one, librdkafka's close blocks there.
        let Some(member) = consumer.upgrade() else {
            return;
        };
        let owned = assignment.state.lock().owned.clone();
        let checked = tokio::task::spawn_blocking(move || {
            watch.check(&member, &owned, Instant::now());
            watch
        });
        match checked.await {
            Ok(checked) => watch = checked,
            Err(_) => return,
        }
    }
}

/// What the group has done with one partition this member does not own.
#[derive(Debug, Default)]
struct Progress {
    /// The group's committed offset at the last check (`None`: none yet).
    committed: Option<i64>,
    /// Whether `committed` has been sampled yet.
    sampled: bool,
    /// Since when the partition has had messages the group has not
    /// consumed, without progress.
    lagging_since: Option<Instant>,
}

/// The watch's state, moved onto a blocking thread for each check.
#[derive(Debug)]
struct Watch {
    topic: String,
    stall: Duration,
    progress: BTreeMap<i32, Progress>,
    /// No rejoin before this.
    quiet_until: Option<Instant>,
    backoff: Duration,
    /// A subscribe after the rejoin's unsubscribe failed and must be retried.
    resubscribe: bool,
}

impl Watch {
    fn new(topic: String, stall: Duration) -> Self {
        Self {
            topic,
            stall,
            progress: BTreeMap::new(),
            quiet_until: None,
            backoff: REJOIN_BACKOFF_MIN,
            resubscribe: false,
        }
    }

    /// One check: samples the group's progress and rejoins if a partition
    /// is orphaned and the backoff allows it.
    fn check(&mut self, member: &Member, owned: &BTreeSet<i32>, now: Instant) {
        if self.resubscribe {
            self.subscribe(member);
            return;
        }
        let orphans = match self.orphans(member, owned, now) {
            Ok(orphans) => orphans,
            Err(e) => {
                tracing::debug!(topic = %self.topic, error = %e, "checking the group's progress failed");
                return;
            }
        };
        if self.progress.values().all(|p| p.lagging_since.is_none()) {
            self.backoff = REJOIN_BACKOFF_MIN;
        }
        if orphans.is_empty() || self.quiet_until.is_some_and(|t| now < t) {
            return;
        }
        tracing::warn!(
            topic = %self.topic,
            ?orphans,
            stalled_for = ?self.stall,
            "partitions unconsumed by the group; rejoining it to force a rebalance"
        );
        member.unsubscribe();
        self.subscribe(member);
        self.progress.clear();
        self.quiet_until = Some(now + self.backoff);
        self.backoff = (self.backoff * 2).min(REJOIN_BACKOFF_MAX);
    }

    fn subscribe(&mut self, member: &Member) {
        match member.subscribe(&[self.topic.as_str()]) {
            Ok(()) => self.resubscribe = false,
            Err(e) => {
                tracing::warn!(topic = %self.topic, error = %e, "resubscribing failed; retrying");
                self.resubscribe = true;
            }
        }
    }

    /// The partitions not owned here that have lagged without progress for
    /// at least the stall limit.
    fn orphans(
        &mut self,
        member: &Member,
        owned: &BTreeSet<i32>,
        now: Instant,
    ) -> KafkaResult<Vec<i32>> {
        let metadata = member.fetch_metadata(Some(&self.topic), REQUEST_TIMEOUT)?;
        let others: BTreeSet<i32> = metadata
            .topics()
            .iter()
            .filter(|t| t.name() == self.topic)
            .flat_map(|t| t.partitions().iter().map(|p| p.id()))
            .filter(|p| !owned.contains(p))
            .collect();
        self.progress.retain(|p, _| others.contains(p));
        if others.is_empty() {
            return Ok(Vec::new());
        }
        let mut tpl = TopicPartitionList::new();
        for &p in &others {
            tpl.add_partition(&self.topic, p);
        }
        let committed = member.committed_offsets(tpl, REQUEST_TIMEOUT)?;
        let mut orphans = Vec::new();
        for element in committed.elements_for_topic(&self.topic) {
            let partition = element.partition();
            let offset = match element.offset() {
                Offset::Offset(n) => Some(n),
                _ => None,
            };
            let progress = self.progress.entry(partition).or_default();
            let moved = progress.sampled && progress.committed != offset;
            progress.committed = offset;
            progress.sampled = true;
            if moved {
                progress.lagging_since = None;
                continue;
            }
            let (low, high) = member.fetch_watermarks(&self.topic, partition, REQUEST_TIMEOUT)?;
            // Without a commit the group starts at the log start.
            let consumed_to = offset.map_or(low, |n| n.max(low));
            if consumed_to < high {
                let since = *progress.lagging_since.get_or_insert(now);
                if now.duration_since(since) >= self.stall {
                    orphans.push(partition);
                }
            } else {
                progress.lagging_since = None;
            }
        }
        Ok(orphans)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stall_limit_is_twice_the_session_timeout_but_never_tiny() {
        let mut config = ClientConfig::new();
        assert_eq!(stall_limit(&config), Duration::from_secs(90));
        config.set("session.timeout.ms", "6000");
        assert_eq!(stall_limit(&config), Duration::from_secs(12));
        config.set("session.timeout.ms", "1000");
        assert_eq!(stall_limit(&config), MIN_STALL);
    }
}
