//! Job against an in-memory queue and discovery and fake comets on loopback:
//! what each comet receives, batching, ordering, retries and commits.

#![allow(clippy::unwrap_used)]

mod support;

use std::sync::Arc;
use std::time::Duration;

use courier_cluster::queue::Queue;
use courier_cluster::ConsumerEvent;
use courier_proto::queue::envelope::Kind;
use courier_proto::queue::Envelope;
use prost::Message as _;
use support::*;
use tokio::sync::Semaphore;

#[tokio::test]
async fn keys_push_reaches_the_named_comet_only() {
    let cluster = Cluster::new();
    let a = cluster.comet("a", Behaviour::default()).await;
    let b = cluster.comet("b", Behaviour::default()).await;
    let job = cluster.job(config("keys"));

    cluster
        .publish("u1", keys("a", &["k1", "k2"], "for-a"))
        .await;
    cluster.publish("u2", keys("b", &["k3"], "for-b")).await;

    let at_a = a.answered_until(|c| !c.is_empty()).await;
    let at_b = b.answered_until(|c| !c.is_empty()).await;
    let keys_a = Call::Keys {
        keys: vec!["k1".into(), "k2".into()],
        ids: vec!["for-a".into()],
    };
    let keys_b = Call::Keys {
        keys: vec!["k3".into()],
        ids: vec!["for-b".into()],
    };
    assert_eq!(at_a, vec![keys_a]);
    assert_eq!(at_b, vec![keys_b]);
    job.stop().await;
}

#[tokio::test]
async fn room_push_reaches_the_listed_comets_and_only_them() {
    let cluster = Cluster::new();
    let a = cluster.comet("a", Behaviour::default()).await;
    let b = cluster.comet("b", Behaviour::default()).await;
    let c = cluster.comet("c", Behaviour::default()).await;
    let job = cluster.job(config("rooms"));

    // Same queue key, so the marker for c is consumed after the room message:
    // had c been sent the room message, it would have arrived first.
    cluster
        .publish("lobby", room("lobby", &["a", "b"], "r1"))
        .await;
    cluster.publish("lobby", keys("c", &["k"], "marker")).await;

    let lobby = Call::Room {
        room: "lobby".into(),
        ids: vec!["r1".into()],
    };
    assert_eq!(
        a.answered_until(|c| !c.is_empty()).await,
        vec![lobby.clone()]
    );
    assert_eq!(b.answered_until(|c| !c.is_empty()).await, vec![lobby]);
    let at_c = c.answered_until(|c| !c.is_empty()).await;
    assert_eq!(all_ids(&at_c), vec!["marker".to_owned()]);
    job.stop().await;
}

#[tokio::test]
async fn room_messages_within_the_wait_are_batched() {
    let cluster = Cluster::new();
    let a = cluster.comet("a", Behaviour::default()).await;
    let job = cluster.job(courier_job::JobConfig {
        room_batch_max: 4,
        room_batch_wait: Duration::from_millis(300),
        ..config("batching")
    });

    let sent = numbered("m", 10);
    for id in &sent {
        cluster.publish("lobby", room("lobby", &["a"], id)).await;
    }
    let calls = a.answered_until(|c| all_ids(c).len() >= 10).await;

    assert_eq!(all_ids(&calls), sent, "room order must be kept");
    assert!(calls
        .iter()
        .all(|c| matches!(c, Call::Room { room, .. } if room == "lobby")));
    assert!(
        calls.iter().all(|c| c.ids().len() <= 4),
        "batch too big: {calls:?}"
    );
    assert!(
        calls.len() <= 5,
        "10 messages should take few PushRoom calls: {calls:?}"
    );
    job.stop().await;
}

#[tokio::test]
async fn a_room_batch_over_the_comets_message_limit_is_split_not_dropped() {
    let cluster = Cluster::new();
    let gate = Arc::new(Semaphore::new(0));
    // The comet takes requests of at most 64 KiB; the job batches up to
    // 1 MiB, so a batch of 20 messages of 10 KiB is refused as too large.
    let a = cluster
        .comet(
            "a",
            Behaviour {
                max_request: Some(64 * 1024),
                ..Behaviour::gated(&gate)
            },
        )
        .await;
    let job = cluster.job(courier_job::JobConfig {
        room_batch_wait: Duration::from_millis(50),
        ..config("split")
    });
    // Held on a first push so the room messages queue up into one batch.
    cluster.publish("u1", keys("a", &["k"], "first")).await;
    a.received_until(|c| !c.is_empty()).await;
    let sent = numbered("big", 20);
    for id in &sent {
        let message = courier_testkit::messages::message_with(id, &[7u8; 10 * 1024]);
        let envelope = Envelope {
            kind: Some(Kind::Room(courier_proto::queue::RoomPush {
                room: "lobby".into(),
                comet_ids: vec!["a".into()],
                message: message.encode_to_vec().into(),
            })),
        };
        cluster.publish("u1", envelope).await;
    }
    gate.add_permits(1000);
    let calls = a
        .answered_until(|c| all_ids(c).iter().filter(|id| id.starts_with("big")).count() >= 20)
        .await;
    let delivered: Vec<String> = all_ids(&calls)
        .into_iter()
        .filter(|id| id.starts_with("big"))
        .collect();
    assert_eq!(delivered, sent, "all delivered, in order");
    job.stop().await;
}

#[tokio::test]
async fn broadcast_reaches_every_comet_with_its_rate() {
    let cluster = Cluster::new();
    let comets = [
        cluster.comet("a", Behaviour::default()).await,
        cluster.comet("b", Behaviour::default()).await,
        cluster.comet("c", Behaviour::default()).await,
    ];
    let job = cluster.job(config("broadcast"));

    cluster.publish("all", broadcast("hello-all", 500)).await;
    for comet in &comets {
        let calls = comet.answered_until(|c| !c.is_empty()).await;
        assert_eq!(
            calls,
            vec![Call::Broadcast {
                ids: vec!["hello-all".into()],
                rate: 500,
            }],
            "{}",
            comet.id
        );
    }
    job.stop().await;
}

#[tokio::test]
async fn order_per_comet_is_preserved_across_keys_and_rooms() {
    let cluster = Cluster::new();
    let a = cluster.comet("a", Behaviour::default()).await;
    let job = cluster.job(courier_job::JobConfig {
        room_batch_wait: Duration::from_millis(50),
        ..config("order")
    });

    let sent = numbered("m", 60);
    for (i, id) in sent.iter().enumerate() {
        let envelope = if i % 3 == 0 {
            keys("a", &["k"], id)
        } else {
            room("lobby", &["a"], id)
        };
        cluster.publish("lobby", envelope).await;
    }
    let calls = a.answered_until(|c| all_ids(c).len() >= sent.len()).await;
    assert_eq!(all_ids(&calls), sent);
    job.stop().await;
}

#[tokio::test]
async fn a_transiently_failing_comet_is_retried() {
    let cluster = Cluster::new();
    let a = cluster
        .comet(
            "a",
            Behaviour {
                fail_first: 2,
                ..Behaviour::default()
            },
        )
        .await;
    let job = cluster.job(config("retry"));

    cluster.publish("u1", keys("a", &["k"], "persistent")).await;
    let answered = a.answered_until(|c| !c.is_empty()).await;
    assert_eq!(all_ids(&answered), vec!["persistent".to_owned()]);
    let received = a.received_until(|c| c.len() >= 3).await;
    assert_eq!(
        received.len(),
        3,
        "two failures, then the success: {received:?}"
    );
    job.stop().await;
}

/// The first message a fresh consumer of `group` receives.
async fn first_redelivered(cluster: &Cluster, group: &str) -> String {
    let consumer = cluster.queue.subscribe(group).await.unwrap();
    let delivery = tokio::time::timeout(PATIENCE, async {
        loop {
            if let ConsumerEvent::Message(d) = consumer.next().await.unwrap() {
                return d;
            }
        }
    })
    .await
    .expect("nothing redelivered");
    match Envelope::decode(delivery.payload).unwrap().kind {
        Some(Kind::Keys(k)) => courier_testkit::messages::ids(&[k.message]).remove(0),
        other => panic!("unexpected envelope {other:?}"),
    }
}

#[tokio::test]
async fn offsets_are_committed_only_after_the_comet_answered() {
    let cluster = Cluster::new();
    let gate = Arc::new(Semaphore::new(0));
    let a = cluster.comet("a", Behaviour::gated(&gate)).await;
    let job = cluster.job(config("commits"));

    // m1 is answered; m2 reaches the comet but is never answered.
    cluster.publish("u1", keys("a", &["k"], "m1")).await;
    gate.add_permits(1);
    a.answered_until(|c| all_ids(c) == ["m1"]).await;
    cluster.publish("u1", keys("a", &["k"], "m2")).await;
    a.received_until(|c| all_ids(c).contains(&"m2".to_owned()))
        .await;

    // Stopping the job drops its consumer: the group hands the partition to
    // the next member, which must resume right after m1, at m2.
    job.stop().await;
    assert_eq!(all_ids(&a.answered()), vec!["m1".to_owned()]);
    assert_eq!(first_redelivered(&cluster, "commits").await, "m2");
    gate.add_permits(100);
}

#[tokio::test]
async fn pushes_for_a_comet_that_left_are_skipped_and_committed() {
    let cluster = Cluster::new();
    let gate = Arc::new(Semaphore::new(0));
    let mut a = cluster.comet("a", Behaviour::gated(&gate)).await;
    let b = cluster.comet("b", Behaviour::default()).await;
    let job = cluster.job(config("gone"));

    // Stuck at a comet that then leaves discovery: the job gives up the call
    // (and skips the push) instead of wedging the partition.
    cluster.publish("u1", keys("a", &["k"], "stuck")).await;
    a.received_until(|c| !c.is_empty()).await;
    a.leave_discovery().await;
    a.abandoned_until(1).await;
    // To a comet nobody knows: skipped at once.
    cluster
        .publish("u1", keys("nobody", &["k"], "unknown"))
        .await;
    // Garbage on the queue: skipped, never wedges the partition.
    let garbage = bytes::Bytes::from_static(b"\xff\xff garbage");
    cluster.queue.publish("u1", garbage).await.unwrap();
    // Same partition, consumed after all of the above.
    cluster.publish("u1", keys("b", &["k"], "marker")).await;
    b.answered_until(|c| !c.is_empty()).await;
    job.stop().await;

    assert!(a.answered().is_empty());
    cluster.publish("u1", keys("a", &["k"], "after")).await;
    assert_eq!(first_redelivered(&cluster, "gone").await, "after");
    gate.add_permits(100);
}

/// Publishes `first` to comet `a` and waits until `a` is stuck on it (gated),
/// then queues `rest` behind it and opens the gate.
async fn queue_behind_a_stuck_call(
    cluster: &Cluster,
    a: &RunningComet,
    gate: &Semaphore,
    rest: &[String],
) {
    cluster.publish("u1", keys("a", &["k"], "first")).await;
    a.received_until(|c| !c.is_empty()).await;
    for id in rest {
        cluster.publish("u1", keys("a", &["k", id], id)).await;
    }
    gate.add_permits(1000);
}

#[tokio::test]
async fn keys_pushes_queued_for_a_comet_leave_in_few_calls_in_order() {
    let cluster = Cluster::new();
    let gate = Arc::new(Semaphore::new(0));
    let a = cluster.comet("a", Behaviour::gated(&gate)).await;
    let job = cluster.job(courier_job::JobConfig {
        push_timeout: Duration::from_secs(10),
        ..config("keys-batch")
    });

    let rest = numbered("m", 50);
    queue_behind_a_stuck_call(&cluster, &a, &gate, &rest).await;
    let calls = a.answered_until(|c| all_ids(c).len() >= 51).await;

    let mut sent = vec!["first".to_owned()];
    sent.extend(rest);
    assert_eq!(all_ids(&calls), sent, "order must be kept");
    assert!(
        calls.len() <= 10,
        "51 pushes should take few calls: {} calls",
        calls.len()
    );
    let mut batched = 0;
    for call in &calls {
        if let Call::KeysBatch { keys, ids } = call {
            batched += ids.len();
            for (keys, id) in keys.iter().zip(ids) {
                assert_eq!(keys, &vec!["k".to_owned(), id.clone()], "keys of {id}");
            }
        }
    }
    assert!(batched >= 2, "no PushKeysBatch used: {calls:?}");
    job.stop().await;
}

#[tokio::test]
async fn a_comet_without_keys_batch_gets_the_pushes_one_by_one() {
    let cluster = Cluster::new();
    let gate = Arc::new(Semaphore::new(0));
    let a = cluster
        .comet(
            "a",
            Behaviour {
                no_keys_batch: true,
                ..Behaviour::gated(&gate)
            },
        )
        .await;
    let job = cluster.job(courier_job::JobConfig {
        push_timeout: Duration::from_secs(10),
        ..config("no-keys-batch")
    });

    let rest = numbered("m", 10);
    queue_behind_a_stuck_call(&cluster, &a, &gate, &rest).await;
    let calls = a.answered_until(|c| all_ids(c).len() >= 11).await;

    let mut sent = vec!["first".to_owned()];
    sent.extend(rest);
    assert_eq!(all_ids(&calls), sent);
    assert!(calls.iter().all(|c| matches!(c, Call::Keys { .. })));
    job.stop().await;
}

/// Publishes 20 pushes to comet `other` and 20 to `live`, interleaved on
/// one partition, and waits until `live` has answered all of its own, in
/// order.
async fn interleave_and_expect_live(cluster: &Cluster, other: &str, live: &RunningComet) {
    let sent = numbered("live", 20);
    for (i, id) in sent.iter().enumerate() {
        cluster
            .publish("u1", keys(other, &["k"], &format!("{other}{i}")))
            .await;
        cluster.publish("u1", keys("live", &["k"], id)).await;
    }
    let calls = live.answered_until(|c| all_ids(c).len() >= 20).await;
    assert_eq!(all_ids(&calls), sent);
}

#[tokio::test]
async fn an_unreachable_comet_stalls_no_other_comet_and_its_pushes_are_committed() {
    let cluster = Cluster::new();
    // In discovery, but nothing listens at its address.
    let (_, _dead) = cluster.dead_comet("dead").await;
    let live = cluster.comet("live", Behaviour::default()).await;
    // A tiny queue: were the dead comet's pushes waited for, the consumer
    // would block on it after a couple of messages.
    let job = cluster.job(courier_job::JobConfig {
        comet_queue: 2,
        ..config("unreachable")
    });

    // Were the dead comet retried until it answered (it never will: its
    // registration stays), the consumer would block behind its full queue
    // and the live comet would not get its pushes.
    interleave_and_expect_live(&cluster, "dead", &live).await;
    job.stop().await;

    // Everything above was committed, the dead comet's pushes included.
    cluster.publish("u1", keys("live", &["k"], "after")).await;
    assert_eq!(first_redelivered(&cluster, "unreachable").await, "after");
}

#[tokio::test]
async fn a_comet_that_accepts_and_never_answers_stalls_no_other_comet() {
    let cluster = Cluster::new();
    let (_registration, holder) = cluster.stuck_comet("frozen").await;
    let live = cluster.comet("live", Behaviour::default()).await;
    let job = cluster.job(courier_job::JobConfig {
        comet_queue: 2,
        push_timeout: Duration::from_millis(300),
        ..config("frozen")
    });

    // Were the dispatch to wait on the frozen comet's full queue, the live
    // comet would stop getting pushes after a couple of messages.
    interleave_and_expect_live(&cluster, "frozen", &live).await;

    // Were timeouts retried forever, the frozen comet's first push would
    // hold back every commit: instead it is marked down and its pushes are
    // left to the inbox, so everything is committed.
    let partition = cluster.queue.partition_for("u1");
    let (_, end) = cluster.queue.retained(partition).unwrap();
    courier_testkit::eventually("everything committed", || {
        cluster.queue.committed("frozen", partition) == Some(end)
    })
    .await;
    job.stop().await;
    holder.abort();
}

#[tokio::test]
async fn a_comet_reachable_again_gets_its_pushes_again() {
    let cluster = Cluster::new();
    let (addr, _registration) = cluster.dead_comet("a").await;
    // A full queue is waited on (for longer than the test runs), never
    // skipped as *behind*: only reachability decides here. (With the
    // default 200 ms the consumer could skip `a`'s pushes as behind while
    // its first one was still being retried, and pushes published around
    // its return could meet that stale backlog and be skipped by design.)
    let job = cluster.job(courier_job::JobConfig {
        comet_queue_wait: Duration::from_secs(60),
        ..config("comes-back")
    });
    let lost = numbered("lost", 5);
    for id in &lost {
        cluster.publish("u1", keys("a", &["k"], id)).await;
    }
    // The first push to `a` can only end as skipped once `a` is marked
    // down (it cannot answer, nobody listens), so once everything is
    // committed `a` is down and every `lost` push was skipped.
    let partition = cluster.queue.partition_for("u1");
    let (_, end) = cluster.queue.retained(partition).unwrap();
    courier_testkit::eventually("`a`'s pushes skipped and committed", || {
        cluster.queue.committed("comes-back", partition) == Some(end)
    })
    .await;

    // `a` comes up at the address discovery has for it.
    let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
    let a = cluster
        .comet_on("a", Behaviour::default(), listener, false)
        .await;
    // Nothing tells the test when the job's probe reached it: push until a
    // push arrives (pushes made before are skipped, so it is a probe).
    let mut probes = 0;
    courier_testkit::eventually_async("`a` gets a push again", PATIENCE, || {
        probes += 1;
        let probe = keys("a", &["k"], &format!("probe{probes}"));
        let cluster = &cluster;
        let a = &a;
        async move {
            cluster.publish("u1", probe).await;
            !a.answered().is_empty()
        }
    })
    .await;
    // Up again: every push is delivered, in order (probes still in flight
    // may arrive around them); what was skipped while down stays skipped.
    let after = numbered("after", 5);
    for id in &after {
        cluster.publish("u1", keys("a", &["k"], id)).await;
    }
    let is_after = |id: &String| id.starts_with("after");
    let calls = a
        .answered_until(|c| all_ids(c).iter().filter(|id| is_after(id)).count() >= after.len())
        .await;
    let ids = all_ids(&calls);
    let tail: Vec<_> = ids.iter().filter(|id| is_after(id)).cloned().collect();
    assert_eq!(tail, after);
    let others: Vec<_> = ids
        .iter()
        .filter(|id| !is_after(id) && !id.starts_with("probe"))
        .collect();
    assert!(
        others.is_empty(),
        "pushes skipped while down arrived: {others:?}"
    );
    job.stop().await;
}
