//! The operations endpoints every service serves: `/healthz`, `/readyz` and
//! `/metrics` on every service's admin listener (logic's probes answer on
//! its HTTP API too, its metrics do not), in the embedded system and in a
//! real cluster of `courier` processes.

#![allow(clippy::unwrap_used)]

use crate::support;

use std::net::SocketAddr;
use std::time::Duration;

use serde_json::json;
use support::cluster::RealCluster;
use support::*;

/// GET `url`: status and body text.
async fn get(url: &str) -> (u16, String) {
    let resp = reqwest::get(url).await.expect("HTTP request");
    let status = resp.status().as_u16();
    (status, resp.text().await.expect("HTTP body"))
}

/// Polls `base/readyz` until it answers 200, failing at `deadline`.
async fn wait_ready(base: &str, deadline: Duration) {
    let what = format!("{base} to become ready");
    courier_testkit::eventually_async(&what, deadline, || async {
        let (status, body) = get(&format!("{base}/readyz")).await;
        if status == 200 {
            assert_eq!(body, "ready");
            return true;
        }
        assert_eq!((status, body.as_str()), (503, "not ready"));
        false
    })
    .await
}

fn admin_base(addr: Option<SocketAddr>) -> String {
    format!("http://{}", addr.expect("admin listener enabled"))
}

#[tokio::test]
async fn every_embedded_service_serves_probes_and_metrics() {
    // What the binary does at start; idempotent, so other tests in this
    // process may call it too.
    assert!(
        courier::telemetry::install_metrics(),
        "no foreign recorder in this test process"
    );
    let system = start(2).await;

    let mut admins: Vec<String> = system.comets.iter().map(|c| admin_base(c.admin)).collect();
    admins.extend(system.jobs.iter().map(|j| admin_base(j.admin)));
    assert_eq!(admins.len(), 3, "two comets and a job");
    for base in &admins {
        assert_eq!(get(&format!("{base}/healthz")).await, (200, "ok".into()));
        wait_ready(base, DEADLINE).await;
    }
    let logic = system.logic_url();
    assert_eq!(get(&format!("{logic}/healthz")).await, (200, "ok".into()));
    assert_eq!(get(&format!("{logic}/readyz")).await, (200, "ready".into()));

    // One push end to end, so logic, comet and job have counted something.
    let api = Api::new(&system);
    let (_alice, mut events) = user(&system, "alice").await;
    let (status, reply) = api
        .post("/push/users", json!({"uids": ["alice"], "data": "hi"}))
        .await;
    assert_eq!(status, 202, "{reply}");
    next_message_is(&mut events, br#""hi""#).await;

    // Metrics are for operators, on logic's admin listener, not its API.
    assert_eq!(get(&format!("{logic}/metrics")).await.0, 404);
    let logic_admin = admin_base(system.logic_admin);
    assert_eq!(
        get(&format!("{logic_admin}/readyz")).await,
        (200, "ready".into())
    );
    let (status, text) = get(&format!("{logic_admin}/metrics")).await;
    assert_eq!(status, 200, "{text}");
    assert!(
        text.contains("courier_logic_messages_total{target=\"users\"} 1"),
        "{text}"
    );
    // One recorder per process: every admin listener renders the same
    // registry, comet and job counters included.
    let (status, text) = get(&format!("{}/metrics", admins[0])).await;
    assert_eq!(status, 200);
    assert!(text.contains("courier_comet_connections_total"), "{text}");
    let (status, text) = get(&format!("{}/metrics", admins[2])).await;
    assert_eq!(status, 200);
    assert!(text.contains("courier_logic_messages_total"), "{text}");
    system.stop().await;
}

#[tokio::test]
async fn extra_jobs_get_their_own_admin_listener() {
    let mut system = start(1).await;
    let first = system.jobs[0].admin;
    let second = system.add_job().await.unwrap().admin;
    assert_ne!(first, second);
    wait_ready(&admin_base(second), DEADLINE).await;
    system.stop().await;
    assert!(
        tokio::net::TcpStream::connect(second.unwrap())
            .await
            .is_err(),
        "a stopped job's admin listener is closed"
    );
}

#[tokio::test]
async fn every_cluster_process_serves_probes_and_metrics() {
    let cluster = RealCluster::start().await;
    let logic = cluster.logic_url();
    assert_eq!(get(&format!("{logic}/readyz")).await, (200, "ready".into()));
    assert_eq!(
        get(&format!("{logic}/metrics")).await.0,
        404,
        "not on the API"
    );
    for service in std::iter::once(&cluster.logic)
        .chain(&cluster.comets)
        .chain(&cluster.jobs)
    {
        let admin = service
            .addrs
            .get("admin")
            .unwrap_or_else(|| panic!("{} printed no admin address", service.id));
        let base = format!("http://{admin}");
        assert_eq!(get(&format!("{base}/healthz")).await, (200, "ok".into()));
        // Joining the consumer group and registering take a moment.
        wait_ready(&base, Duration::from_secs(60)).await;
        let (status, text) = get(&format!("{base}/metrics")).await;
        assert_eq!(status, 200, "{} installs a recorder: {text}", service.id);
    }
}

/// Polls `url` (a `/readyz`) until it answers `expected`.
async fn wait_readyz(url: &str, expected: (u16, &str), deadline: Duration) {
    let what = format!("{url} to answer {expected:?}");
    courier_testkit::eventually_async(&what, deadline, || async {
        let (status, body) = get(url).await;
        (status, body.as_str()) == expected
    })
    .await
}

#[tokio::test]
async fn logic_is_not_ready_while_its_session_store_or_store_primary_is_away() {
    let mut cluster = RealCluster::start().await;
    let readyz = format!("{}/readyz", cluster.logic_url());
    wait_readyz(&readyz, (200, "ready"), DEADLINE).await;

    cluster.redis.kill();
    let away = (503, "not ready: session store unreachable");
    wait_readyz(&readyz, away, DEADLINE).await;
    // The probe on the admin listener says the same.
    let admin = &cluster.logic.addrs["admin"];
    wait_readyz(&format!("http://{admin}/readyz"), away, DEADLINE).await;
    cluster.redis.restart().await.expect("redis restarts");
    wait_readyz(&readyz, (200, "ready"), DEADLINE).await;

    let postgres = cluster.postgres.as_mut().expect("a store of record");
    postgres.kill();
    let away = (503, "not ready: store primary unreachable");
    wait_readyz(&readyz, away, DEADLINE).await;
    postgres.restart().await.expect("postgres restarts");
    wait_readyz(&readyz, (200, "ready"), DEADLINE * 3).await;
}

#[test]
fn the_local_cluster_configs_give_every_process_its_admin_port() {
    let load = |file: &str| {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("deploy/config")
            .join(file);
        courier::CourierConfig::load(Some(&path)).unwrap()
    };
    let port = |addr: Option<SocketAddr>| addr.map(|a| a.port());
    assert_eq!(port(load("logic.toml").logic.admin_addr), Some(3113));
    assert_eq!(port(load("comet1.toml").comet.admin_addr), Some(3103));
    assert_eq!(port(load("comet2.toml").comet.admin_addr), Some(3203));
    assert_eq!(port(load("job1.toml").job.admin_addr), Some(3121));
    assert_eq!(port(load("job2.toml").job.admin_addr), Some(3221));
}

#[tokio::test]
async fn an_operator_disconnects_every_connection_of_a_user_on_every_comet() {
    use courier_proto::client::frame::Body;
    let system = start(2).await;
    let api = Api::new(&system);
    let token = token(&system, "alice").await;
    let mut conns = Vec::new();
    for comet in &system.comets {
        let mut conn = courier_testkit::FrameClient::connect(comet.tcp).await;
        conn.auth(&token, &[]).await;
        conns.push(conn);
    }
    let asked = tokio::time::Instant::now();
    let (status, body) = api
        .post(
            "/users/alice/disconnect",
            json!({"reason": "account suspended"}),
        )
        .await;
    assert_eq!(
        (status, body["connections"].as_u64()),
        (200, Some(2)),
        "{body}"
    );
    for conn in &mut conns {
        let frame = conn.recv().await;
        let Some(Body::Kick(kick)) = frame.body else {
            panic!("expected a Kick, got {frame:?}")
        };
        assert_eq!(kick.reason, "account suspended");
        conn.expect_closed().await;
    }
    eprintln!(
        "disconnect: both connections (two comets) closed {:?} after the request",
        asked.elapsed()
    );
    // Their sessions are gone too.
    let (status, body) = api.get("/presence?uids=alice").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["online"], json!([]), "{body}");
    // Nobody connected: nothing to do, and not an error.
    let (status, body) = api.post("/users/alice/disconnect", json!({})).await;
    assert_eq!(
        (status, body["connections"].as_u64()),
        (200, Some(0)),
        "{body}"
    );
    system.stop().await;
}

#[tokio::test]
async fn a_disconnect_with_bad_input_is_refused() {
    let system = start(1).await;
    let api = Api::new(&system);
    let long = "x".repeat(257);
    let long_uid = format!("/users/{}/disconnect", "u".repeat(65));
    for (path, body, want) in [
        (long_uid.as_str(), json!({}), 400),
        ("/users/a%07b/disconnect", json!({}), 400),
        ("/users/alice/disconnect", json!({"reason": long}), 400),
        (
            "/users/alice/disconnect",
            json!({"reason": "bye\u{1b}[2J"}),
            400,
        ),
        ("/users/alice/disconnect", json!({"why": "x"}), 422),
    ] {
        let (status, reply) = api.post(path, body).await;
        assert_eq!(status, want, "{path}: {reply}");
    }
    let (status, _) = api.post_public("/users/alice/disconnect", json!({})).await;
    assert_eq!(status, 401, "an admin key is needed");
    system.stop().await;
}
