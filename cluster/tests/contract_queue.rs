//! The `Queue` contract, written once and run against every backend:
//! `memory://` in-process and Kafka against a real `tansu` broker (each test
//! starts its own, so tests never share topics or groups).
//!
//! Consumers run the way job runs them: one task loops on `next()` while the
//! test commits from outside. Every wait is bounded, so a broken backend
//! fails instead of hanging, and a missing broker binary fails the Kafka
//! tests instead of skipping them.
//!
//! A crash is a member that stops without leaving its group. For Kafka that
//! takes a real process killed with SIGKILL: this test binary runs itself as
//! the doomed member (see `doomed_member_process`), because an in-process
//! librdkafka consumer keeps heartbeating or leaves the group when dropped.

#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use courier_cluster::queue::kafka::KafkaQueue;
use courier_cluster::queue::memory::MemoryQueue;
use courier_cluster::{Consumer, ConsumerEvent, Delivery, Queue};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

const PARTITIONS: u32 = 4;
/// Upper bound on any single wait. Kafka rebalances take a few seconds.
const WAIT: Duration = Duration::from_secs(30);

/// One running member: a task draining `next()` into the group's channel.
struct Member {
    consumer: Arc<dyn Consumer>,
    task: JoinHandle<()>,
}

/// Members of consumer groups under test and what each has seen.
struct Members {
    tx: mpsc::UnboundedSender<(usize, courier_cluster::Result<ConsumerEvent>)>,
    rx: mpsc::UnboundedReceiver<(usize, courier_cluster::Result<ConsumerEvent>)>,
    members: Vec<Option<Member>>,
    /// Partitions each member owns according to its Assigned/Revoked events.
    owned: Vec<BTreeSet<i32>>,
    /// Messages each member received, in order.
    received: Vec<Vec<Delivery>>,
}

impl Members {
    fn new() -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        Self {
            tx,
            rx,
            members: Vec::new(),
            owned: Vec::new(),
            received: Vec::new(),
        }
    }

    async fn join(&mut self, queue: &dyn Queue, group: &str) -> usize {
        let consumer: Arc<dyn Consumer> = Arc::from(queue.subscribe(group).await.unwrap());
        let index = self.members.len();
        let (c, tx) = (consumer.clone(), self.tx.clone());
        let task = tokio::spawn(async move {
            loop {
                let event = c.next().await;
                let failed = event.is_err();
                if tx.send((index, event)).is_err() || failed {
                    return;
                }
            }
        });
        self.members.push(Some(Member { consumer, task }));
        self.owned.push(BTreeSet::new());
        self.received.push(Vec::new());
        index
    }

    /// Stops member `index`'s task and drops its consumer (leaving the group).
    async fn leave(&mut self, index: usize) {
        let member = self.members[index].take().expect("member still running");
        member.task.abort();
        let _ = member.task.await;
        drop(member.consumer);
        self.owned[index].clear();
    }

    fn consumer(&self, index: usize) -> &dyn Consumer {
        self.members[index]
            .as_ref()
            .expect("member running")
            .consumer
            .as_ref()
    }

    /// Receives one event, checking that a message belongs to a partition
    /// its member was told it owns.
    async fn step(&mut self) {
        let (index, event) = tokio::time::timeout(WAIT, self.rx.recv())
            .await
            .unwrap_or_else(|_| panic!("no consumer event within {WAIT:?}; owned {:?}", self.owned))
            .expect("event channel open");
        if self.members[index].is_none() {
            return; // sent before the member left
        }
        match event.unwrap() {
            ConsumerEvent::Assigned(ps) => self.owned[index].extend(ps),
            ConsumerEvent::Revoked(ps) => {
                for p in ps {
                    self.owned[index].remove(&p);
                }
            }
            ConsumerEvent::Message(d) => {
                assert!(
                    self.owned[index].contains(&d.partition),
                    "member {index} got a message of partition {} before it was assigned (owns {:?})",
                    d.partition,
                    self.owned[index]
                );
                self.received[index].push(d);
            }
        }
    }

    /// Steps until `done` holds.
    async fn until(&mut self, mut done: impl FnMut(&Self) -> bool) {
        while !done(self) {
            self.step().await;
        }
    }

    /// Steps until every running member owns some partitions and together
    /// they own each partition exactly once.
    async fn until_balanced(&mut self) {
        self.until(|m| {
            let running: Vec<&BTreeSet<i32>> = m
                .members
                .iter()
                .zip(&m.owned)
                .filter(|(member, _)| member.is_some())
                .map(|(_, owned)| owned)
                .collect();
            let total: usize = running.iter().map(|o| o.len()).sum();
            let union: BTreeSet<i32> = running.iter().flat_map(|o| o.iter().copied()).collect();
            running.iter().all(|o| !o.is_empty())
                && total == PARTITIONS as usize
                && union.len() == PARTITIONS as usize
        })
        .await;
    }

    fn payloads(&self, index: usize) -> Vec<String> {
        self.received[index].iter().map(text).collect()
    }
}

impl Drop for Members {
    fn drop(&mut self) {
        for member in self.members.iter().flatten() {
            member.task.abort();
        }
    }
}

fn text(d: &Delivery) -> String {
    String::from_utf8(d.payload.to_vec()).unwrap()
}

async fn publish(queue: &dyn Queue, key: &str, payload: String) {
    tokio::time::timeout(WAIT, queue.publish(key, Bytes::from(payload)))
        .await
        .expect("publish within the wait")
        .unwrap();
}

// ---- the contract ----

/// Messages of one key arrive in publish order, on one partition, with
/// increasing offsets, after the partition was assigned.
async fn one_keys_messages_stay_in_order(queue: Arc<dyn Queue>) {
    let keys = ["alice", "bob", "carol"];
    for i in 0..10 {
        for key in keys {
            publish(queue.as_ref(), key, format!("{key}:{i}")).await;
        }
    }
    let mut m = Members::new();
    m.join(queue.as_ref(), "job").await;
    m.until(|m| m.received[0].len() >= 30).await;
    assert_eq!(m.received[0].len(), 30);
    for key in keys {
        let mine: Vec<&Delivery> = m.received[0]
            .iter()
            .filter(|d| d.key.as_deref() == Some(key))
            .collect();
        let payloads: Vec<String> = mine.iter().map(|d| text(d)).collect();
        let expected: Vec<String> = (0..10).map(|i| format!("{key}:{i}")).collect();
        assert_eq!(payloads, expected, "order of {key}");
        assert!(mine.iter().all(|d| d.partition == mine[0].partition));
        assert!(mine.windows(2).all(|w| w[0].offset < w[1].offset));
    }
}

/// Distinct keys use every partition.
async fn keys_spread_over_partitions(queue: Arc<dyn Queue>) {
    for i in 0..100 {
        publish(queue.as_ref(), &format!("user-{i}"), format!("{i}")).await;
    }
    let mut m = Members::new();
    m.join(queue.as_ref(), "job").await;
    m.until(|m| m.received[0].len() >= 100).await;
    let used: BTreeSet<i32> = m.received[0].iter().map(|d| d.partition).collect();
    assert_eq!(used, (0..PARTITIONS as i32).collect());
}

/// After a commit, the group's next member starts right after it, even
/// while another group still needs the earlier messages.
async fn a_new_member_resumes_after_the_commit(queue: Arc<dyn Queue>) {
    for i in 0..10 {
        publish(queue.as_ref(), "room:1", format!("{i}")).await;
    }
    let mut m = Members::new();
    let lagging = m.join(queue.as_ref(), "audit").await;
    let first = m.join(queue.as_ref(), "job").await;
    m.until(|m| m.received[first].len() >= 10).await;
    let sixth = m.received[first][5].clone();
    m.consumer(first)
        .commit(sixth.partition, sixth.offset)
        .await
        .unwrap();
    m.leave(first).await;

    let second = m.join(queue.as_ref(), "job").await;
    m.until(|m| m.received[second].len() >= 4).await;
    assert_eq!(m.payloads(second), ["6", "7", "8", "9"]);
    assert_eq!(m.received[second][0].offset, sixth.offset + 1);
    m.until(|m| m.received[lagging].len() >= 10).await;
    assert_eq!(
        m.payloads(lagging)[0],
        "0",
        "the other group starts at the beginning"
    );
}

/// What the owner of a partition consumed without committing is delivered
/// again to the member that takes the partition over when it leaves.
async fn uncommitted_messages_go_to_the_next_owner(queue: Arc<dyn Queue>) {
    let mut m = Members::new();
    let a = m.join(queue.as_ref(), "job").await;
    let b = m.join(queue.as_ref(), "job").await;
    m.until_balanced().await;

    for i in 0..5 {
        publish(queue.as_ref(), "room:7", format!("{i}")).await;
    }
    m.until(|m| m.received[a].len() + m.received[b].len() >= 5)
        .await;
    let (owner, heir) = if m.received[a].is_empty() {
        (b, a)
    } else {
        (a, b)
    };
    let partition = m.received[owner][0].partition;
    // Commit only the first: the other four are still owed.
    let first = m.received[owner][0].clone();
    m.consumer(owner)
        .commit(first.partition, first.offset)
        .await
        .unwrap();
    m.leave(owner).await;

    m.until(|m| m.received[heir].len() >= 4).await;
    assert!(m.owned[heir].contains(&partition));
    assert_eq!(m.payloads(heir), ["1", "2", "3", "4"]);
}

/// Two members of one group split the partitions: each message reaches
/// exactly one of them.
async fn members_of_a_group_split_the_partitions(queue: Arc<dyn Queue>) {
    let mut m = Members::new();
    let a = m.join(queue.as_ref(), "job").await;
    let b = m.join(queue.as_ref(), "job").await;
    m.until_balanced().await;
    assert!(m.owned[a].is_disjoint(&m.owned[b]));

    for i in 0..40 {
        publish(queue.as_ref(), &format!("user-{i}"), format!("{i}")).await;
    }
    m.until(|m| m.received[a].len() + m.received[b].len() >= 40)
        .await;
    assert!(!m.received[a].is_empty() && !m.received[b].is_empty());
    let mut all: Vec<String> = m.payloads(a);
    all.extend(m.payloads(b));
    all.sort_by_key(|p| p.parse::<u32>().unwrap());
    let expected: Vec<String> = (0..40).map(|i| i.to_string()).collect();
    assert_eq!(all, expected, "each message exactly once");
}

/// Every group gets every message.
async fn every_group_gets_everything(queue: Arc<dyn Queue>) {
    let mut m = Members::new();
    let a = m.join(queue.as_ref(), "job").await;
    let b = m.join(queue.as_ref(), "audit").await;
    for i in 0..20 {
        publish(queue.as_ref(), &format!("user-{i}"), format!("{i}")).await;
    }
    m.until(|m| m.received[a].len() >= 20 && m.received[b].len() >= 20)
        .await;
    for member in [a, b] {
        let got: BTreeSet<String> = m.payloads(member).into_iter().collect();
        assert_eq!(got.len(), 20, "member {member}");
        assert_eq!(
            m.received[member].len(),
            20,
            "no duplicates for member {member}"
        );
    }
}

/// How [`a_crashed_members_partitions_go_to_the_survivor`] stops its
/// second member.
enum Crash {
    /// Drop the consumer: the in-process backend has no separate liveness.
    Drop,
    /// SIGKILL a child process that consumes from this `kafka://` URL: no
    /// LeaveGroup, no more heartbeats.
    KillProcess(String),
}

/// When a member dies without leaving, the survivor ends up consuming every
/// partition, including those the dead member owned.
async fn a_crashed_members_partitions_go_to_the_survivor(queue: Arc<dyn Queue>, crash: Crash) {
    let mut m = Members::new();
    let survivor = m.join(queue.as_ref(), "job").await;
    match crash {
        Crash::Drop => {
            let doomed = m.join(queue.as_ref(), "job").await;
            m.until_balanced().await;
            m.leave(doomed).await;
        }
        Crash::KillProcess(url) => {
            let mut doomed = DoomedMember::spawn(&url);
            let doomed_owns = doomed.assigned().await;
            m.until(|m| {
                let owned = m.owned[survivor].len();
                owned > 0 && owned < PARTITIONS as usize
            })
            .await;
            assert!(
                m.owned[survivor].iter().all(|p| !doomed_owns.contains(p)),
                "survivor {:?} and doomed member {doomed_owns:?} split the partitions",
                m.owned[survivor]
            );
            doomed.kill().await;
        }
    }

    for i in 0..100 {
        publish(queue.as_ref(), &format!("user-{i}"), format!("{i}")).await;
    }
    let all: BTreeSet<i32> = (0..PARTITIONS as i32).collect();
    m.until(|m| {
        let seen: BTreeSet<i32> = m.received[survivor].iter().map(|d| d.partition).collect();
        seen == all
    })
    .await;
    assert_eq!(m.owned[survivor], all);
}

/// Set to a `kafka://` URL, it makes this test binary a doomed member.
const DOOMED_MEMBER_URL: &str = "COURIER_CONTRACT_DOOMED_MEMBER_URL";
/// The doomed member's stdout line announcing an assignment.
const ASSIGNED: &str = "doomed member assigned ";

/// A group member in a child process, killed without leaving the group.
struct DoomedMember {
    child: tokio::process::Child,
    lines: tokio::io::Lines<tokio::io::BufReader<tokio::process::ChildStdout>>,
}

impl DoomedMember {
    /// Runs `doomed_member_process` of this test binary against `url`.
    fn spawn(url: &str) -> Self {
        let mut child = tokio::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "doomed_member_process",
                "--exact",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(DOOMED_MEMBER_URL, url)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let lines = tokio::io::AsyncBufReadExt::lines(tokio::io::BufReader::new(stdout));
        Self { child, lines }
    }

    /// Waits for the member's first assignment and returns its partitions.
    async fn assigned(&mut self) -> BTreeSet<i32> {
        let read = async {
            while let Some(line) = self.lines.next_line().await.unwrap() {
                // The test harness's "test doomed_member_process ... " may
                // precede it on the same line.
                if let Some((_, list)) = line.split_once(ASSIGNED) {
                    return list
                        .split(',')
                        .map(|p| p.trim().parse::<i32>().unwrap())
                        .collect();
                }
            }
            panic!("the doomed member exited before being assigned partitions");
        };
        tokio::time::timeout(WAIT, read)
            .await
            .expect("the doomed member is assigned partitions")
    }

    /// SIGKILL: the member can neither leave the group nor heartbeat again.
    async fn kill(mut self) {
        self.child.kill().await.unwrap();
    }
}

/// Not a test of its own: the body of a [`DoomedMember`] process, which
/// joins group `job` and consumes without committing until it is killed.
/// Without `DOOMED_MEMBER_URL` set it does nothing.
#[test]
fn doomed_member_process() {
    let Ok(url) = std::env::var(DOOMED_MEMBER_URL) else {
        return;
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let queue = KafkaQueue::connect(&url, PARTITIONS, &BTreeMap::new())
            .await
            .unwrap();
        let consumer = queue.subscribe("job").await.unwrap();
        loop {
            if let ConsumerEvent::Assigned(partitions) = consumer.next().await.unwrap() {
                let list: Vec<String> = partitions.iter().map(i32::to_string).collect();
                println!("{ASSIGNED}{}", list.join(","));
                std::io::Write::flush(&mut std::io::stdout()).unwrap();
            }
        }
    });
}

// ---- the backends ----

async fn kafka_queue(broker: &courier_testkit::kafka::KafkaBroker) -> Arc<dyn Queue> {
    let url = broker.url("courier-test");
    let queue = KafkaQueue::connect(&url, PARTITIONS, &BTreeMap::new())
        .await
        .unwrap_or_else(|e| panic!("connecting to {url}: {e}"));
    Arc::new(queue)
}

macro_rules! contract {
    ($($test:ident),* $(,)?) => {
        mod memory {
            $(
                #[tokio::test]
                async fn $test() {
                    super::$test(std::sync::Arc::new(super::MemoryQueue::new(super::PARTITIONS))).await;
                }
            )*
        }
        mod kafka {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() {
                    let broker = courier_testkit::kafka::KafkaBroker::start()
                        .await
                        .expect("a Kafka-compatible broker for the contract tests");
                    super::$test(super::kafka_queue(&broker).await).await;
                }
            )*
        }
    };
}

contract!(
    one_keys_messages_stay_in_order,
    keys_spread_over_partitions,
    a_new_member_resumes_after_the_commit,
    uncommitted_messages_go_to_the_next_owner,
    members_of_a_group_split_the_partitions,
    every_group_gets_everything,
);

mod crash {
    use super::{a_crashed_members_partitions_go_to_the_survivor, Crash};

    #[tokio::test]
    async fn memory_a_crashed_members_partitions_go_to_the_survivor() {
        let queue = std::sync::Arc::new(super::MemoryQueue::new(super::PARTITIONS));
        a_crashed_members_partitions_go_to_the_survivor(queue, Crash::Drop).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn kafka_a_crashed_members_partitions_go_to_the_survivor() {
        let broker = courier_testkit::kafka::KafkaBroker::start()
            .await
            .expect("a Kafka-compatible broker for the contract tests");
        let url = broker.url("courier-test");
        let queue = super::kafka_queue(&broker).await;
        a_crashed_members_partitions_go_to_the_survivor(queue, Crash::KillProcess(url)).await;
    }
}
