//! Draining a comet: asked over the admin API, it moves its 1,000 clients
//! to the other comet in waves; every client ends on the other comet, none
//! sees an error, and no message pushed before or during the drain is lost
//! or duplicated.

#![allow(clippy::unwrap_used)]

use crate::support;

use std::time::Duration;

use courier_client::{Client, ClientConfig, CometAddr, Event, Events, LoginReply};
use courier_runtime::TokenKeys;
use serde_json::json;
use support::{text, Api};

const CLIENTS: usize = 1000;
/// Pushes to every client before the drain, and during it.
const BEFORE: usize = 5;
const DURING: usize = 15;
const JWT_SECRET: &str = "drain-test-jwt-secret-of-32-bytes";
/// Longest the whole move may take.
const PATIENCE: Duration = Duration::from_secs(120);

/// What one client saw.
#[derive(Debug, Default)]
struct Seen {
    comets: Vec<String>,
    messages: Vec<String>,
    disconnects: usize,
    trouble: Vec<String>,
}

/// Follows `events` until `want` messages arrived on comet `to` (or the
/// stream ends).
async fn follow(mut events: Events, want: usize, to: String) -> Seen {
    let mut seen = Seen::default();
    while let Some(event) = events.recv().await {
        match event {
            Event::Connected { comet_id, .. } => seen.comets.push(comet_id),
            Event::Message(m) => seen.messages.push(text(&m)),
            Event::Disconnected { .. } => seen.disconnects += 1,
            Event::Missed { .. } => {}
            other => seen.trouble.push(format!("{other:?}")),
        }
        if seen.messages.len() >= want && seen.comets.last() == Some(&to) {
            break;
        }
    }
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn draining_a_comet_moves_its_1000_clients_to_the_other_without_loss() {
    let mut config = support::config();
    config.auth.jwt_secret = JWT_SECRET.into();
    config.comet.drain_rate = 500;
    let system = support::start_with(config, 2).await;
    let (draining, staying) = (system.comets[0].clone(), system.comets[1].clone());
    let api = Api::new(&system);

    // Every client starts on the comet about to drain (a login reply
    // naming only it), with a token minted here: no password hashing.
    let keys = TokenKeys::new(JWT_SECRET.as_bytes());
    let uids: Vec<String> = (0..CLIENTS).map(|i| format!("drainee-{i:04}")).collect();
    let mut clients = Vec::with_capacity(CLIENTS);
    let mut followers = Vec::with_capacity(CLIENTS);
    for batch in uids.chunks(50) {
        let connects = batch.iter().map(|uid| {
            let reply = LoginReply {
                uid: uid.clone(),
                token: keys.issue(uid, Duration::from_secs(3600)).unwrap(),
                expires_in: 3600,
                heartbeat_secs: 30,
                comets: vec![CometAddr {
                    id: draining.id.clone(),
                    tcp: draining.tcp.to_string(),
                    ws: String::new(),
                }],
            };
            let config = ClientConfig::new(system.logic_url(), uid.as_str(), "unused");
            Client::connect_with(config, reply)
        });
        for connected in futures::future::join_all(connects).await {
            let (client, events) = connected.expect("client connects");
            followers.push(tokio::spawn(follow(
                events,
                BEFORE + DURING,
                staying.id.clone(),
            )));
            clients.push(client);
        }
    }
    assert!(clients
        .iter()
        .all(|c| c.comet_id().as_deref() == Some(draining.id.as_str())));

    let push = |i: usize| {
        let api = &api;
        let uids = &uids;
        async move {
            let (status, body) = api
                .post(
                    "/push/users",
                    json!({"uids": uids, "data": format!("m{i:02}")}),
                )
                .await;
            assert_eq!(status, 202, "{body}");
        }
    };
    for i in 0..BEFORE {
        push(i).await;
    }
    let (status, body) = api
        .post(&format!("/admin/comets/{}/drain", draining.id), json!({}))
        .await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["connections"], CLIENTS);
    // Keep pushing while the clients move.
    let mut pace = tokio::time::interval(Duration::from_millis(100));
    for i in BEFORE..BEFORE + DURING {
        pace.tick().await;
        push(i).await;
    }

    let expected: Vec<String> = (0..BEFORE + DURING)
        .map(|i| format!("\"m{i:02}\""))
        .collect();
    for (uid, follower) in uids.iter().zip(followers) {
        let seen = tokio::time::timeout(PATIENCE, follower)
            .await
            .unwrap_or_else(|_| panic!("{uid} did not move with every message in time"))
            .unwrap();
        assert_eq!(
            seen.messages, expected,
            "{uid}: every message once, in order"
        );
        assert_eq!(
            seen.comets,
            [draining.id.clone(), staying.id.clone()],
            "{uid} moved once"
        );
        assert_eq!(seen.disconnects, 1, "{uid}");
        assert!(seen.trouble.is_empty(), "{uid}: {:?}", seen.trouble);
    }
    // The drained comet left discovery: only the other is offered.
    api.wait_for("/nodes", |nodes| {
        nodes.as_array().is_some_and(|n| n.len() == 1) && nodes[0]["id"] == staying.id.as_str()
    })
    .await;
    for client in &clients {
        client.close().await;
    }
}
