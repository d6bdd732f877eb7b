//! A real cluster (Redis, etcd, a Kafka-compatible broker; logic, two comets
//! and two jobs as separate processes): chat across comets, targeted room
//! fan-out, and surviving `kill -9` of a comet, a job and logic.

#![allow(clippy::unwrap_used)]

use crate::support;

use std::time::Duration;

use bytes::Bytes;
use courier_client::{Client, ClientConfig, Event, Events};
use courier_proto::comet::{comet_client::CometClient, StatsRequest};
use courier_proto::op;
use serde_json::{json, Value};
use support::cluster::{RealCluster, API_KEY, CLUSTER_SECRET};
use support::{next_message_is, next_message_within, text, PASSWORD};

/// Rebalances and lease expiry take seconds; give them room.
const SLOW_DEADLINE: Duration = Duration::from_secs(60);

async fn http(method: &str, url: String, body: Option<Value>) -> (u16, Value) {
    let client = reqwest::Client::new();
    let mut req = match method {
        "GET" => client.get(url),
        _ => client.post(url),
    }
    .bearer_auth(API_KEY);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().await.expect("HTTP");
    let status = resp.status().as_u16();
    let body = resp.json().await.unwrap_or(Value::Null);
    (status, body)
}

/// Polls logic's `path` until `pred` holds.
async fn wait_until(cluster: &RealCluster, path: &str, pred: impl Fn(&Value) -> bool) -> Value {
    let what = format!("GET {path} to satisfy the test");
    courier_testkit::until_some(&what, SLOW_DEADLINE, || async {
        let (status, body) =
            http("GET", format!("{}/api/v1{path}", cluster.logic_url()), None).await;
        (status == 200 && pred(&body)).then_some(body)
    })
    .await
}

fn node_ids(nodes: &Value) -> Vec<String> {
    nodes
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|n| n["id"].as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

/// Connects `name` once logic ranks `comet` first, so the client lands there.
async fn user_on(cluster: &RealCluster, name: &str, comet: &str) -> (Client, Events) {
    let _ = courier_client::register(&cluster.logic_url(), name, PASSWORD).await;
    wait_until(cluster, "/nodes", |n| {
        node_ids(n).first().map(String::as_str) == Some(comet)
    })
    .await;
    let (client, events) = Client::connect(ClientConfig::new(cluster.logic_url(), name, PASSWORD))
        .await
        .expect("connect");
    assert_eq!(client.comet_id().as_deref(), Some(comet));
    (client, events)
}

/// Alice on comet-a, bob on comet-b.
async fn alice_and_bob(cluster: &RealCluster) -> ((Client, Events), (Client, Events)) {
    let alice = user_on(cluster, "alice", "comet-a").await;
    let bob = user_on(cluster, "bob", "comet-b").await;
    (alice, bob)
}

async fn push_to(cluster: &RealCluster, uid: &str, data: &str) {
    let (status, body) = http(
        "POST",
        format!("{}/api/v1/push/users", cluster.logic_url()),
        Some(json!({"uids": [uid], "op": 1, "data": data})),
    )
    .await;
    assert_eq!(status, 202, "{body}");
}

/// Waits for the client to lose its connection and connect again; returns
/// the comet it reconnected to.
async fn wait_reconnected(events: &mut Events) -> String {
    let wait = async {
        let mut disconnected = false;
        loop {
            match events.recv().await {
                Some(Event::Disconnected { .. }) => disconnected = true,
                Some(Event::Connected { comet_id, .. }) if disconnected => return comet_id,
                Some(_) => continue,
                None => panic!("client closed"),
            }
        }
    };
    tokio::time::timeout(SLOW_DEADLINE, wait)
        .await
        .expect("reconnected")
}

#[tokio::test]
async fn users_on_different_comets_chat_privately_and_in_rooms() {
    let cluster = RealCluster::start().await;
    let ((alice, mut alice_events), (bob, mut bob_events)) = alice_and_bob(&cluster).await;

    alice
        .send_to_user("bob", op::CHAT, Bytes::from_static(b"hi from a"))
        .await
        .expect("send");
    next_message_is(&mut bob_events, b"hi from a").await;
    bob.send_to_user("alice", op::CHAT, Bytes::from_static(b"hi from b"))
        .await
        .expect("send");
    next_message_is(&mut alice_events, b"hi from b").await;

    alice.join("spread").await.expect("join");
    bob.join("spread").await.expect("join");
    alice
        .send_to_room("spread", op::CHAT, Bytes::from_static(b"to both comets"))
        .await
        .expect("send");
    next_message_is(&mut alice_events, b"to both comets").await;
    next_message_is(&mut bob_events, b"to both comets").await;
}

#[tokio::test]
async fn a_room_push_reaches_only_comets_with_members() {
    let cluster = RealCluster::start().await;
    let ((alice, mut alice_events), (_bob, _bob_events)) = alice_and_bob(&cluster).await;
    alice.join("local").await.expect("join");

    let mut stats = Vec::new();
    for comet in &cluster.comets {
        stats.push(support::comet_client(&comet.addrs["grpc"], CLUSTER_SECRET).await);
    }
    let before: Vec<u64> = futures_stats(&mut stats).await;
    for i in 0..5 {
        let (status, _) = http(
            "POST",
            format!("{}/api/v1/push/rooms/local", cluster.logic_url()),
            Some(json!({"op": 1, "data": i})),
        )
        .await;
        assert_eq!(status, 202);
        next_message_is(&mut alice_events, i.to_string().as_bytes()).await;
    }
    let after = futures_stats(&mut stats).await;
    assert!(
        after[0] > before[0],
        "comet-a (has members) got no room push"
    );
    assert_eq!(after[1], before[1], "comet-b (no members) got a room push");
}

async fn futures_stats(
    clients: &mut [CometClient<
        tonic::service::interceptor::InterceptedService<
            tonic::transport::Channel,
            courier_runtime::cluster_auth::Stamp,
        >,
    >],
) -> Vec<u64> {
    let mut out = Vec::new();
    for c in clients {
        out.push(
            c.stats(StatsRequest {})
                .await
                .expect("stats")
                .into_inner()
                .room_pushes,
        );
    }
    out
}

#[tokio::test]
async fn killing_a_comet_moves_its_clients_to_the_other() {
    let mut cluster = RealCluster::start().await;
    let ((_alice, mut alice_events), (bob, mut bob_events)) = alice_and_bob(&cluster).await;

    cluster.comets[1].kill().await;
    // Gone from etcd within the lease, hence from /nodes and from login.
    wait_until(&cluster, "/nodes", |n| node_ids(n) == ["comet-a"]).await;
    let reply = courier_client::login(&cluster.logic_url(), "bob", PASSWORD)
        .await
        .expect("login");
    assert_eq!(
        reply
            .comets
            .iter()
            .map(|c| c.id.as_str())
            .collect::<Vec<_>>(),
        ["comet-a"]
    );

    // Bob's SDK reconnects to comet-a and chats on.
    assert_eq!(wait_reconnected(&mut bob_events).await, "comet-a");
    bob.send_to_user("alice", op::CHAT, Bytes::from_static(b"back again"))
        .await
        .expect("send after reconnect");
    next_message_is(&mut alice_events, b"back again").await;
    push_to(&cluster, "bob", "pushed after failover").await;
    next_message_is(&mut bob_events, br#""pushed after failover""#).await;
}

#[tokio::test]
async fn killing_a_job_keeps_pushes_flowing() {
    let mut cluster = RealCluster::start().await;
    // With librdkafka's default partitioner (CRC32 of the key modulo 4
    // partitions) these uids land on partitions 3, 0, 2 and 1: between them
    // every partition, so whichever two the dead job owned are exercised.
    let mut users = Vec::new();
    for (name, comet) in [
        ("alice", "comet-a"),
        ("bob", "comet-b"),
        ("erin", "comet-a"),
        ("frank", "comet-b"),
    ] {
        let (client, events) = user_on(&cluster, name, comet).await;
        users.push((name, client, events));
    }
    for (name, _, events) in &mut users {
        push_to(&cluster, name, "before").await;
        next_message_is(events, br#""before""#).await;
    }

    cluster.jobs[0].kill().await;
    // Every push after the kill arrives, in order: job-2 takes over job-1's
    // partitions after the rebalance and resumes from their committed offsets.
    for round in 0..3 {
        for (name, _, events) in &mut users {
            let data = format!("after {round}");
            push_to(&cluster, name, &data).await;
            let expected = serde_json::to_string(&data).unwrap();
            let m = next_message_within(events, SLOW_DEADLINE).await;
            assert_eq!(
                text(&m),
                expected,
                "{name}: push lost or reordered after the job died"
            );
        }
    }
}

#[tokio::test]
async fn logic_restart_keeps_sessions() {
    let mut cluster = RealCluster::start().await;
    let ((alice, mut alice_events), (_bob, mut bob_events)) = alice_and_bob(&cluster).await;

    cluster.logic.kill().await;
    cluster.logic = cluster.spawn("logic", "logic-2").await;
    // The sessions live in Redis: the new logic still knows where bob is.
    push_to(&cluster, "bob", "after restart").await;
    next_message_is(&mut bob_events, br#""after restart""#).await;
    // And comets found the new logic through etcd: upstream sends work.
    courier_testkit::eventually_async("a send through the new logic", SLOW_DEADLINE, || async {
        alice
            .send_to_user("bob", op::CHAT, Bytes::from_static(b"via new logic"))
            .await
            .is_ok()
    })
    .await;
    next_message_is(&mut bob_events, b"via new logic").await;
    push_to(&cluster, "alice", "alice too").await;
    next_message_is(&mut alice_events, br#""alice too""#).await;
}

#[tokio::test]
async fn a_logout_closes_its_token_on_every_comet_of_the_cluster() {
    use courier_proto::client::frame::Body;
    let cluster = RealCluster::start().await;
    let (laptop, mut laptop_events) = user_on(&cluster, "dave", "comet-a").await;
    let login = reqwest::Client::new()
        .post(format!("{}/api/v1/login", cluster.logic_url()))
        .json(&json!({"username": "dave", "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    let token = login.json::<Value>().await.unwrap()["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let nodes = wait_until(&cluster, "/nodes", |n| node_ids(n).len() == 2).await;
    let mut phones = Vec::new();
    for node in nodes.as_array().unwrap() {
        let mut c = courier_testkit::FrameClient::connect(node["tcp"].as_str().unwrap()).await;
        c.auth(&token, &[]).await;
        phones.push(c);
    }
    let asked = tokio::time::Instant::now();
    let revoked = reqwest::Client::new()
        .post(format!("{}/api/v1/logout", cluster.logic_url()))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(revoked.status().as_u16(), 204);
    for phone in &mut phones {
        let frame = phone.recv().await;
        let Some(Body::Kick(kick)) = frame.body else {
            panic!("expected a Kick, got {frame:?}")
        };
        assert_eq!(kick.reason, "token revoked");
        phone.expect_closed().await;
    }
    eprintln!(
        "cluster logout: connections on both comets closed {:?} after the request",
        asked.elapsed()
    );
    // The same user's other device, with its own token, stays.
    push_to(&cluster, "dave", "still yours").await;
    next_message_is(&mut laptop_events, b"\"still yours\"").await;
    laptop.close().await;
}

#[tokio::test]
async fn room_rules_live_in_the_store_and_a_removal_reaches_the_members_comet() {
    let cluster = RealCluster::start().await;
    let api = |path: &str| format!("{}/api/v1{path}", cluster.logic_url());
    let client = reqwest::Client::new();
    let put = client
        .put(api("/rooms/crew"))
        .bearer_auth(API_KEY)
        .json(&json!({"join": "members"}))
        .send()
        .await
        .unwrap();
    assert_eq!(put.status().as_u16(), 200);
    let (status, body) = http(
        "POST",
        api("/rooms/crew/members"),
        Some(json!({"uids": ["alice"]})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let ((alice, mut alice_events), (bob, _bob_events)) = alice_and_bob(&cluster).await;
    alice.join("crew").await.expect("a member joins");
    bob.join("crew").await.expect_err("bob is no member");
    alice
        .send_to_room("crew", op::CHAT, Bytes::from_static(b"crew only"))
        .await
        .expect("send");
    next_message_is(&mut alice_events, b"crew only").await;

    let asked = tokio::time::Instant::now();
    let removed = client
        .delete(api("/rooms/crew/members/alice"))
        .bearer_auth(API_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(removed.status().as_u16(), 200);
    let wait = async {
        loop {
            match alice_events.recv().await {
                Some(Event::RemovedFromRoom { room }) => return room,
                Some(_) => continue,
                None => panic!("client closed"),
            }
        }
    };
    let room = tokio::time::timeout(SLOW_DEADLINE, wait)
        .await
        .expect("told");
    assert_eq!(room, "crew");
    eprintln!(
        "cluster room removal: out of the room {:?} after the request",
        asked.elapsed()
    );
    alice.join("crew").await.expect_err("removed");
}

#[tokio::test]
async fn a_cluster_logic_calls_the_applications_hooks() {
    use support::hook_app::{HookApp, HOOK_SECRET};
    let (app, base) = HookApp::start().await;
    let mut cluster = RealCluster::start().await;
    // A logic configured the way an operator would: in its environment.
    cluster.logic_env = vec![
        ("COURIER_LOGIC__HOOKS__SECRET".into(), HOOK_SECRET.into()),
        (
            "COURIER_LOGIC__HOOKS__PUBLISH__URL".into(),
            format!("{base}/publish"),
        ),
        (
            "COURIER_LOGIC__HOOKS__OFFLINE__URL".into(),
            format!("{base}/offline"),
        ),
    ];
    cluster.logic.kill().await;
    cluster.logic = cluster.spawn("logic", "logic-hooks").await;
    let ((alice, mut alice_events), (bob, _bob_events)) = alice_and_bob(&cluster).await;

    // The publish hook: a refusal reaches the sender, a rewrite the reader.
    let refused =
        courier_testkit::until_some("logic-hooks serves sends", SLOW_DEADLINE, || async {
            bob.send_to_user("alice", op::CHAT, Bytes::from_static(b"a bad word"))
                .await
                .err()
                .filter(|e| e.to_string().contains("watch your language"))
        })
        .await;
    assert!(refused.to_string().contains("watch your language"));
    bob.send_to_user("alice", op::CHAT, Bytes::from_static(b"shout over here"))
        .await
        .expect("send");
    next_message_is(&mut alice_events, b"OVER HERE").await;

    // The offline webhook: a push to a user with no connection.
    let arrived = app.offline_arrived.notified();
    tokio::pin!(arrived);
    arrived.as_mut().enable();
    push_to(&cluster, "nobody-online", "for later").await;
    tokio::time::timeout(SLOW_DEADLINE, arrived)
        .await
        .expect("a batch");
    let offline = app.offline.lock().clone();
    assert_eq!(offline[0]["uid"], "nobody-online", "{offline:?}");
    assert_eq!(*app.forged.lock(), 0, "every request was signed");
    alice.close().await;
}

#[tokio::test]
async fn on_the_cluster_a_token_expires_on_its_connection_unless_refreshed() {
    use courier_proto::client::frame::Body;
    use courier_proto::client::{ErrorCode, Heartbeat, Refresh};
    let cluster = RealCluster::start().await;
    let keys = courier_runtime::TokenKeys::new(support::cluster::JWT_SECRET.as_bytes());
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let token = |life: u64| {
        keys.sign(&courier_runtime::Claims {
            sub: "ivy".into(),
            iat: now,
            exp: now + life,
            jti: None,
            iat_ms: None,
        })
        .unwrap()
    };
    let nodes = wait_until(&cluster, "/nodes", |n| node_ids(n).len() == 2).await;
    let tcp = |i: usize| nodes[i]["tcp"].as_str().unwrap().to_owned();
    let mut refreshed = courier_testkit::FrameClient::connect(tcp(0)).await;
    refreshed.auth(&token(3), &[]).await;
    let mut left = courier_testkit::FrameClient::connect(tcp(1)).await;
    left.auth(&token(3), &[]).await;
    refreshed
        .send(2, Body::Refresh(Refresh { token: token(3600) }))
        .await;
    let reply = refreshed.recv().await;
    assert!(
        matches!(reply.body, Some(Body::RefreshReply(_))),
        "{reply:?}"
    );
    // The other one's token runs out: closed with TOKEN_EXPIRED.
    let expired = tokio::time::timeout(SLOW_DEADLINE, left.expect_error(ErrorCode::TokenExpired))
        .await
        .expect("closed when its token expired");
    assert_eq!(expired.id, 0);
    left.expect_closed().await;
    // The refreshed one is still served.
    refreshed.send(3, Body::Heartbeat(Heartbeat {})).await;
    assert_eq!(refreshed.recv().await.id, 3);
}
