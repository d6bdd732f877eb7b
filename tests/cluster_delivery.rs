//! The delivery promise on a real cluster (Redis, etcd, a Kafka-compatible
//! broker; logic, two comets and two jobs as processes): 100 users spread
//! over both comets get 1,000 pushes each, in order and none twice, while a
//! comet is killed, a job is killed, or a live comet drops out of etcd.

#![allow(clippy::unwrap_used)]

mod support;

use std::sync::Arc;
use std::time::Duration;

use courier_client::{Client, ClientConfig, Event};
use futures::StreamExt;
use parking_lot::Mutex;
use serde_json::json;
use support::cluster::{RealCluster, API_KEY};
use support::PASSWORD;

const USERS: usize = 100;
const PUSHES: usize = 1000;
/// Pushes in flight at once (each names every user).
const IN_FLIGHT: usize = 8;
/// Everything must have arrived this long after the last push.
const SETTLE: Duration = Duration::from_secs(90);

/// What one user received: `(seq, data)` in the order it was shown.
type Received = Arc<Mutex<Vec<(u64, String)>>>;

struct Fleet {
    uids: Vec<String>,
    clients: Vec<Client>,
    received: Vec<Received>,
}

/// `USERS` users, the even ones on comet-a and the odd ones on comet-b
/// (each lists the other comet second, for its reconnects).
async fn fleet(cluster: &RealCluster) -> Fleet {
    let url = cluster.logic_url();
    let mut fleet = Fleet {
        uids: Vec::new(),
        clients: Vec::new(),
        received: Vec::new(),
    };
    for i in 0..USERS {
        let uid = format!("u{i:03}");
        let _ = courier_client::register(&url, &uid, PASSWORD).await;
        let mut reply = courier_client::login(&url, &uid, PASSWORD).await.unwrap();
        let first = if i % 2 == 0 { "comet-a" } else { "comet-b" };
        reply.comets.sort_by_key(|c| c.id != first);
        let (client, mut events) =
            Client::connect_with(ClientConfig::new(&url, &uid, PASSWORD), reply)
                .await
                .unwrap();
        assert_eq!(client.comet_id().as_deref(), Some(first));
        let received = Received::default();
        let sink = received.clone();
        tokio::spawn(async move {
            while let Some(event) = events.recv().await {
                if let Event::Message(m) = event {
                    let data = String::from_utf8_lossy(&m.data).into_owned();
                    sink.lock().push((m.seq, data));
                }
            }
        });
        fleet.uids.push(uid);
        fleet.clients.push(client);
        fleet.received.push(received);
    }
    fleet
}

/// Sends the pushes (`fault` runs once a third are accepted), then checks
/// that every user got every one, in order, once.
async fn pushes_survive(cluster: &mut RealCluster, fault: impl AsyncFnOnce(&mut RealCluster)) {
    let fleet = fleet(cluster).await;
    let http = reqwest::Client::new();
    let url = format!("{}/api/v1/push/users", cluster.logic_url());
    // A push refused (a backend was busy) is retried with its
    // Idempotency-Key: the users it already reached do not get it twice.
    let send = |round: usize| {
        let (http, url, uids) = (&http, &url, &fleet.uids);
        async move {
            let body = json!({"uids": uids, "op": 1, "data": round});
            let key = format!("push-{round}");
            for _attempt in 0..5 {
                let reply = http
                    .post(url)
                    .bearer_auth(API_KEY)
                    .header("idempotency-key", &key)
                    .json(&body)
                    .send()
                    .await;
                if reply.is_ok_and(|r| r.status().as_u16() == 202) {
                    return;
                }
            }
            panic!("push {round} refused five times");
        }
    };
    let third = PUSHES / 3;
    futures::stream::iter(0..third)
        .for_each_concurrent(IN_FLIGHT, send)
        .await;
    fault(cluster).await;
    futures::stream::iter(third..PUSHES)
        .for_each_concurrent(IN_FLIGHT, send)
        .await;

    let expected: Vec<(u64, String)> = (0..PUSHES).map(|i| (i as u64 + 1, i.to_string())).collect();
    let complete = courier_testkit::until_some("", SETTLE, || async {
        fleet
            .received
            .iter()
            .all(|r| r.lock().len() >= PUSHES)
            .then_some(())
    });
    if tokio::time::timeout(SETTLE, complete).await.is_err() {
        let counts: Vec<(String, usize, Option<u64>)> = fleet
            .uids
            .iter()
            .zip(&fleet.received)
            .map(|(uid, r)| {
                let r = r.lock();
                (uid.clone(), r.len(), r.last().map(|(seq, _)| *seq))
            })
            .filter(|(_, n, _)| *n < PUSHES)
            .collect();
        panic!("users short of {PUSHES} pushes (uid, received, last seq): {counts:?}");
    }
    for (uid, received) in fleet.uids.iter().zip(&fleet.received) {
        let got = received.lock().clone();
        // Pushes to one user are stored in the order logic took them, which
        // with several in flight is not the order they were sent: check the
        // seqs, and that each push arrived exactly once.
        let seqs: Vec<u64> = got.iter().map(|(seq, _)| *seq).collect();
        let want: Vec<u64> = expected.iter().map(|(seq, _)| *seq).collect();
        assert_eq!(seqs, want, "{uid}: not every seq once, in order");
        let mut data: Vec<usize> = got.iter().map(|(_, d)| d.parse().unwrap()).collect();
        data.sort_unstable();
        assert_eq!(
            data,
            (0..PUSHES).collect::<Vec<_>>(),
            "{uid}: a push lost or doubled"
        );
    }
    for client in fleet.clients {
        client.close().await;
    }
}

#[tokio::test]
async fn every_user_gets_every_push_when_a_comet_is_killed() {
    let mut cluster = RealCluster::start().await;
    pushes_survive(&mut cluster, async |c| c.comets[1].kill().await).await;
}

#[tokio::test]
async fn every_user_gets_every_push_when_a_job_is_killed() {
    let mut cluster = RealCluster::start().await;
    pushes_survive(&mut cluster, async |c| c.jobs[0].kill().await).await;
}

#[tokio::test]
async fn every_user_gets_every_push_when_a_live_comet_drops_out_of_etcd() {
    let mut cluster = RealCluster::start().await;
    pushes_survive(&mut cluster, async |c| {
        // Revoke comet-a's lease: its record vanishes, job stops pushing to
        // it, until the comet notices and registers again.
        let endpoint = format!("http://{}", c.etcd.addr());
        let mut etcd = etcd_client::Client::connect([endpoint], None)
            .await
            .unwrap();
        let record = etcd.get("/courier/comets/comet-a", None).await.unwrap();
        let lease = record.kvs().first().expect("comet-a is registered").lease();
        etcd.lease_revoke(lease).await.unwrap();
    })
    .await;
}

/// A store that lost everything (a Redis restarted without persistence, a
/// flush) is a new epoch, and a client resuming from the old one is told
/// instead of being handed other messages under seqs it already showed.
#[tokio::test]
async fn a_flushed_store_is_a_new_epoch_and_the_client_is_told() {
    let cluster = RealCluster::start().await;
    let url = cluster.logic_url();
    let _ = courier_client::register(&url, "alice", PASSWORD).await;
    let push = |data: &'static str| {
        let url = format!("{url}/api/v1/push/users");
        async move {
            let body = json!({"uids": ["alice"], "op": 1, "data": data});
            let reply = reqwest::Client::new()
                .post(url)
                .bearer_auth(API_KEY)
                .json(&body)
                .send()
                .await
                .unwrap();
            assert_eq!(reply.status().as_u16(), 202);
        }
    };
    let (first, mut events) = Client::connect(ClientConfig::new(&url, "alice", PASSWORD))
        .await
        .unwrap();
    push("before").await;
    support::next_message_is(&mut events, br#""before""#).await;
    let kept = first.position();
    first.close().await;

    let flushed = std::process::Command::new("redis-cli")
        .args(["-p", &cluster.redis.port().to_string(), "FLUSHALL"])
        .output()
        .expect("redis-cli runs");
    assert!(flushed.status.success());
    // The account went with everything else.
    courier_client::register(&url, "alice", PASSWORD)
        .await
        .unwrap();
    push("after").await;

    let mut config = ClientConfig::new(&url, "alice", PASSWORD);
    config.resume_from = Some(kept);
    let (again, mut events) = Client::connect(config).await.unwrap();
    let reset = loop {
        match tokio::time::timeout(support::DEADLINE, events.recv())
            .await
            .unwrap()
        {
            Some(Event::Reset { room: None, epoch }) => break epoch,
            Some(Event::Message(m)) => panic!("a message before the reset: {m:?}"),
            Some(_) => continue,
            None => panic!("events ended"),
        }
    };
    assert_ne!(reset, kept.epoch);
    let m = support::next_message_is(&mut events, br#""after""#).await;
    assert_eq!((m.seq, m.epoch), (1, reset));
    again.close().await;
}
