//! Discovery registration, load reports and the drain on shutdown.

use courier_cluster::discovery::decode_view;
use courier_cluster::{CometNode, Discovery, NodeState, ServiceKind};
use courier_proto::client::frame::Body;

use super::support::*;

#[tokio::test]
async fn the_comet_registers_and_reports_its_load() {
    let h = Harness::start().await;
    let comet = h.comet(h.config()).await;
    let view = h.discovery.watch(ServiceKind::Comet).await.unwrap();
    let record = |view: &tokio::sync::watch::Receiver<_>| -> Option<CometNode> {
        decode_view::<CometNode>(&view.borrow()).into_iter().next()
    };
    eventually("comet registered", || record(&view).is_some()).await;
    let node = record(&view).unwrap();
    assert_eq!(node.id, comet.id);
    assert_eq!(node.tcp, comet.tcp.to_string());
    assert_eq!(node.grpc, comet.grpc.to_string());
    assert_eq!(node.state, NodeState::Serving);

    let (_c, _) = comet.login(&h, "alice", &["r"]).await;
    // Before it took that client, the comet told logic it started (so what
    // an earlier process under its id left is forgotten).
    let started = |c: &Call| matches!(c, Call::Started(r) if r.comet_id == comet.id);
    assert_eq!(h.logic.count(started), 1);
    eventually("connection count in discovery", || {
        record(&view).is_some_and(|n| n.connections == 1)
    })
    .await;
    h.logic
        .wait_for(|c| match c {
            Call::Renew(r) if r.connections == 1 && r.rooms.get("r") == Some(&1) => Some(()),
            _ => None,
        })
        .await;
}

#[tokio::test]
async fn clients_leaving_together_all_have_their_sessions_closed() {
    let h = Harness::start().await;
    let comet = h.comet(h.config()).await;
    let mut clients = Vec::new();
    for i in 0..50 {
        clients.push(comet.login(&h, &format!("user-{i}"), &[]).await);
    }
    let keys: std::collections::HashSet<String> =
        clients.iter().map(|(_, auth)| auth.key.clone()).collect();
    drop(clients);
    h.logic
        .wait_count(|c| matches!(c, Call::Close(s) if keys.contains(&s.key)), 50)
        .await;
}

#[tokio::test]
async fn shutdown_tells_clients_to_reconnect_and_deregisters() {
    let h = Harness::start().await;
    let comet = h.comet(h.config()).await;
    let (mut a, auth) = comet.login(&h, "alice", &[]).await;
    let view = h.discovery.watch(ServiceKind::Comet).await.unwrap();

    comet.shutdown.cancel();
    match a.recv().await.body {
        Some(Body::Reconnect(r)) => assert!(r.after_ms > 0 && r.after_ms <= 5_000),
        other => panic!("expected Reconnect, got {other:?}"),
    }
    a.expect_closed().await;
    let tcp = comet.tcp;
    comet.stop().await.unwrap();

    assert!(view.borrow().is_empty(), "deregistered");
    assert_eq!(h.logic.closed().await.key, auth.key);
    assert!(
        tokio::net::TcpStream::connect(tcp).await.is_err(),
        "no longer accepting"
    );
}

#[tokio::test]
async fn admin_probes_follow_the_comets_life() {
    let h = Harness::start().await;
    let comet = h.comet(h.config()).await;
    let view = h.discovery.watch(ServiceKind::Comet).await.unwrap();
    let state = |view: &tokio::sync::watch::Receiver<_>| {
        decode_view::<CometNode>(&view.borrow())
            .into_iter()
            .next()
            .map(|n| n.state)
    };
    eventually("comet registered", || state(&view).is_some()).await;
    assert_eq!(
        comet.admin_get("/healthz").await.unwrap(),
        (200, "ok".into())
    );
    assert_eq!(
        comet.admin_get("/readyz").await.unwrap(),
        (200, "ready".into())
    );
    // No recorder is installed in this test binary.
    assert_eq!(comet.admin_get("/metrics").await.unwrap().0, 404);

    // A client whose session close logic holds keeps the comet draining.
    let (_a, _) = comet.login(&h, "alice", &[]).await;
    h.logic.hold_closes(true);
    comet.shutdown.cancel();
    h.logic.closed().await;
    eventually("comet draining", || {
        state(&view) == Some(NodeState::Draining)
    })
    .await;
    assert_eq!(
        comet.admin_get("/readyz").await.unwrap(),
        (503, "not ready".into())
    );
    assert_eq!(comet.admin_get("/healthz").await.unwrap().0, 200);

    h.logic.hold_closes(false);
    let admin = comet.admin.unwrap();
    comet.stop().await.unwrap();
    assert!(
        tokio::net::TcpStream::connect(admin).await.is_err(),
        "the admin listener closes with the comet"
    );
}
