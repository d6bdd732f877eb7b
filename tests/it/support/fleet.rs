//! 100 users on a real cluster getting 1,000 pushes each while something
//! fails: the harness of the delivery promise's tests (tests/cluster_delivery.rs,
//! tests/store_faults.rs).
//!
//! Every push names every user and carries an `Idempotency-Key`; a push
//! refused (a backend down or failing over) is retried with the same key
//! until it is accepted, so users it already reached do not get it twice.
//! The fault runs once a third of the pushes were accepted, *while* the rest
//! are being sent. Then every user must have received every push exactly
//! once, in seq order, in one epoch, without being told of a gap or a reset.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use courier_client::{Client, ClientConfig, Event};
use futures::StreamExt;
use parking_lot::Mutex;
use serde_json::json;
use tokio::time::Instant;

use super::cluster::API_KEY;
use super::PASSWORD;

pub const USERS: usize = 100;
pub const PUSHES: usize = 1000;
/// Pushes in flight at once (each names every user).
const IN_FLIGHT: usize = 8;
/// Everything must have arrived this long after the last push.
const SETTLE: Duration = Duration::from_secs(90);
/// How long one push may keep being refused before the test fails.
const PUSH_PATIENCE: Duration = Duration::from_secs(120);

/// One message a user was shown.
#[derive(Debug, Clone)]
pub struct Shown {
    pub seq: u64,
    pub epoch: u64,
    pub data: String,
}

/// What one user was shown, in order, and what else it was told.
#[derive(Debug, Default)]
pub struct Seen {
    pub messages: Vec<Shown>,
    /// `Gap`, `Reset` and `Missed` events, as text.
    pub notices: Vec<String>,
}

pub struct Fleet {
    pub uids: Vec<String>,
    pub clients: Vec<Client>,
    pub seen: Vec<Arc<Mutex<Seen>>>,
}

/// `USERS` users (`{prefix}000`...), the even ones on comet-a and the odd
/// ones on comet-b (each lists the other comet second, for reconnects).
pub async fn fleet(url: &str, prefix: &str) -> Fleet {
    let mut fleet = Fleet {
        uids: Vec::new(),
        clients: Vec::new(),
        seen: Vec::new(),
    };
    for i in 0..USERS {
        let uid = format!("{prefix}{i:03}");
        let _ = courier_client::register(url, &uid, PASSWORD).await;
        let mut reply = courier_client::login(url, &uid, PASSWORD).await.unwrap();
        let first = if i % 2 == 0 { "comet-a" } else { "comet-b" };
        reply.comets.sort_by_key(|c| c.id != first);
        let (client, mut events) =
            Client::connect_with(ClientConfig::new(url, &uid, PASSWORD), reply)
                .await
                .unwrap();
        assert_eq!(client.comet_id().as_deref(), Some(first));
        let seen = Arc::new(Mutex::new(Seen::default()));
        let sink = seen.clone();
        tokio::spawn(async move {
            while let Some(event) = events.recv().await {
                match event {
                    Event::Message(m) => sink.lock().messages.push(Shown {
                        seq: m.seq,
                        epoch: m.epoch,
                        data: String::from_utf8_lossy(&m.data).into_owned(),
                    }),
                    e @ (Event::Gap { .. } | Event::Reset { .. } | Event::Missed { .. }) => {
                        sink.lock().notices.push(format!("{e:?}"))
                    }
                    _ => {}
                }
            }
        });
        fleet.uids.push(uid);
        fleet.clients.push(client);
        fleet.seen.push(seen);
    }
    fleet
}

/// What a run saw of the push API.
#[derive(Debug, Default)]
pub struct Report {
    /// Push requests answered other than 202 (all retried).
    pub refused: usize,
    /// From the fault's start to the first push accepted after one was
    /// refused: how long writes were out (zero if none was refused).
    pub outage: Duration,
    /// The longest a refused push request took to be answered (or to fail).
    pub slowest_refusal: Duration,
    /// When each push was accepted.
    pub accepts: Vec<Instant>,
}

impl Report {
    /// The first push accepted at or after `t`.
    pub fn first_accept_after(&self, t: Instant) -> Option<Instant> {
        self.accepts.iter().filter(|a| **a >= t).min().copied()
    }
}

/// Sends the pushes to every user of `fleet` through logic at `url`;
/// `fault` runs once a third are accepted, while the rest are sent. Then
/// checks that every user got every push, once, in order, in one epoch,
/// and was told of no gap or reset.
pub async fn pushes_survive(url: &str, fleet: &Fleet, fault: impl Future<Output = ()>) -> Report {
    let http = reqwest::Client::new();
    let push_url = format!("{url}/api/v1/push/users");
    let timeline = Mutex::new((Vec::<Instant>::new(), Vec::<Instant>::new()));
    let slowest_refusal = Mutex::new(Duration::ZERO);
    let send = |round: usize| {
        let (http, push_url, uids, timeline, slowest_refusal) =
            (&http, &push_url, &fleet.uids, &timeline, &slowest_refusal);
        async move {
            let body = json!({"uids": uids, "op": 1, "data": round});
            let key = format!("push-{round}");
            let deadline = Instant::now() + PUSH_PATIENCE;
            let mut pause = Duration::from_millis(50);
            loop {
                let asked = Instant::now();
                let reply = http
                    .post(push_url)
                    .bearer_auth(API_KEY)
                    .header("idempotency-key", &key)
                    .timeout(Duration::from_secs(10))
                    .json(&body)
                    .send()
                    .await;
                if reply.is_ok_and(|r| r.status().as_u16() == 202) {
                    timeline.lock().1.push(Instant::now());
                    return;
                }
                let now = Instant::now();
                timeline.lock().0.push(now);
                let took = now - asked;
                {
                    let mut slowest = slowest_refusal.lock();
                    *slowest = (*slowest).max(took);
                }
                assert!(
                    Instant::now() < deadline,
                    "push {round} refused for {PUSH_PATIENCE:?}"
                );
                // Backing off is the client's part of riding out an outage.
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_secs(1));
            }
        }
    };
    let third = PUSHES / 3;
    futures::stream::iter(0..third)
        .for_each_concurrent(IN_FLIGHT, send)
        .await;
    let fault_at = Instant::now();
    let rest = futures::stream::iter(third..PUSHES).for_each_concurrent(IN_FLIGHT, send);
    tokio::join!(fault, rest);

    let (refusals, accepts) = timeline.into_inner();
    let first_refusal = refusals.iter().filter(|t| **t >= fault_at).min().copied();
    let outage = first_refusal
        .and_then(|r| accepts.iter().filter(|t| **t > r).min().copied())
        .map_or(Duration::ZERO, |back| back - fault_at);
    check_every_user_got_everything(fleet).await;
    Report {
        refused: refusals.len(),
        outage,
        slowest_refusal: slowest_refusal.into_inner(),
        accepts,
    }
}

/// Waits (up to `SETTLE`) for every user to have every push, then checks
/// order, uniqueness, the epoch and the notices.
pub async fn check_every_user_got_everything(fleet: &Fleet) {
    let complete = courier_testkit::until_some("", SETTLE, || async {
        fleet
            .seen
            .iter()
            .all(|s| s.lock().messages.len() >= PUSHES)
            .then_some(())
    });
    if tokio::time::timeout(SETTLE, complete).await.is_err() {
        let short: Vec<(String, usize, Option<u64>)> = fleet
            .uids
            .iter()
            .zip(&fleet.seen)
            .map(|(uid, s)| {
                let s = s.lock();
                (
                    uid.clone(),
                    s.messages.len(),
                    s.messages.last().map(|m| m.seq),
                )
            })
            .filter(|(_, n, _)| *n < PUSHES)
            .collect();
        panic!("users short of {PUSHES} pushes (uid, received, last seq): {short:?}");
    }
    for (uid, seen) in fleet.uids.iter().zip(&fleet.seen) {
        let seen = seen.lock();
        // Pushes to one user are stored in the order logic took them, which
        // with several in flight is not the order they were sent: check the
        // seqs, and that each push arrived exactly once.
        let seqs: Vec<u64> = seen.messages.iter().map(|m| m.seq).collect();
        assert_eq!(
            seqs,
            (1..=PUSHES as u64).collect::<Vec<_>>(),
            "{uid}: not every seq once, in order"
        );
        let mut data: Vec<usize> = seen
            .messages
            .iter()
            .map(|m| m.data.parse().unwrap())
            .collect();
        data.sort_unstable();
        assert_eq!(
            data,
            (0..PUSHES).collect::<Vec<_>>(),
            "{uid}: a push lost or doubled"
        );
        let epoch = seen.messages[0].epoch;
        assert!(
            seen.messages.iter().all(|m| m.epoch == epoch),
            "{uid}: the epoch changed"
        );
        let told: Vec<&String> = seen
            .notices
            .iter()
            .filter(|n| !n.starts_with("Missed"))
            .collect();
        assert!(told.is_empty(), "{uid} was told {told:?}");
    }
}

/// Closes every client.
pub async fn close(fleet: Fleet) {
    for client in fleet.clients {
        client.close().await;
    }
}
