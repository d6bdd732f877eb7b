//! TLS end to end: logic's HTTPS API, the comet's TLS listener and every
//! gRPC link (comet -> logic, job -> comet) with certificates made at test
//! time; plaintext peers are refused; a renewed certificate is served
//! without a restart.

#![allow(clippy::unwrap_used)]

use crate::support;

use std::path::Path;
use std::time::Duration;

use courier_client::{register_with, Client, ClientConfig, Event};
use courier_runtime::TlsConfig;
use courier_testkit::tls::TestCerts;
use courier_testkit::FrameClient;
use serde_json::json;
use support::{next_message, text, PASSWORD};

fn client_config(system: &courier::System, user: &str, ca: &Path) -> ClientConfig {
    ClientConfig::new(system.logic_url(), user, PASSWORD)
        .with_tls(Some(ca))
        .unwrap()
}

/// An HTTPS client of logic trusting `ca`.
fn https(ca: &Path) -> reqwest::Client {
    let pem = std::fs::read(ca).unwrap();
    reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&pem).unwrap())
        .build()
        .unwrap()
}

/// An embedded system serving and dialing with `certs`.
async fn system_on(certs: &TestCerts) -> courier::System {
    let mut config = support::config();
    config.tls = TlsConfig {
        cert: certs.cert.clone(),
        key: certs.key.clone(),
        ca: certs.ca.clone(),
    };
    support::start_with(config, 1).await
}

#[tokio::test]
async fn every_listener_and_link_speaks_tls_and_refuses_plaintext() {
    let certs = TestCerts::new().unwrap();
    let system = system_on(&certs).await;
    assert!(system.logic_url().starts_with("https://"));

    // Register and log in over HTTPS, connect to the comet over TLS (which
    // opens the session in logic over gRPC with TLS).
    let alice = client_config(&system, "alice", &certs.ca);
    register_with(&alice).await.unwrap();
    let (client, mut events) = Client::connect(alice).await.unwrap();
    assert!(matches!(events.recv().await, Some(Event::Connected { .. })));

    // A push goes logic -> queue -> job -> comet (gRPC with TLS) -> client.
    let pushed = https(&certs.ca)
        .post(format!("{}/api/v1/push/users", system.logic_url()))
        .bearer_auth(system.api_key())
        .json(&json!({"uids": ["alice"], "data": "over tls"}))
        .send()
        .await
        .unwrap();
    assert_eq!(pushed.status(), 202);
    assert_eq!(text(&next_message(&mut events).await), "\"over tls\"");

    // Plaintext is refused: an Auth frame gets no AuthReply, a plain HTTP
    // request no answer.
    let mut plain = FrameClient::connect(system.comets[0].tcp).await;
    plain.send_bytes(b"\x00\x00\x00\x02\x08\x01").await;
    assert!(plain.next_frame(Duration::from_secs(5)).await.is_none());
    let http = system.logic_url().replacen("https://", "http://", 1);
    assert!(reqwest::get(format!("{http}/healthz")).await.is_err());
    // A client that does not trust the CA cannot log in.
    let stranger = TestCerts::new().unwrap();
    let untrusting = client_config(&system, "alice", &stranger.ca);
    assert!(Client::connect(untrusting).await.is_err());
    client.close().await;
}

#[tokio::test]
async fn a_renewed_certificate_is_served_without_a_restart() {
    let mut certs = TestCerts::new().unwrap();
    let system = system_on(&certs).await;
    let bob = client_config(&system, "bob", &certs.ca);
    register_with(&bob).await.unwrap();
    let (old, _events) = Client::connect(bob).await.unwrap();
    let old_ca = certs.dir().join("old-ca.pem");
    std::fs::copy(&certs.ca, &old_ca).unwrap();

    // Rotate every file to a new CA; the services notice the change.
    certs.renew().unwrap();
    let ca = certs.ca.clone();
    courier_testkit::wait::eventually_async(
        "logic and the comet serve the new certificate",
        Duration::from_secs(20),
        || {
            let config = client_config(&system, "bob", &ca);
            async move {
                match Client::connect(config).await {
                    Ok((client, _)) => {
                        client.close().await;
                        true
                    }
                    Err(_) => false,
                }
            }
        },
    )
    .await;
    // The old CA no longer verifies them, and the open connection lived on.
    assert!(Client::connect(client_config(&system, "bob", &old_ca))
        .await
        .is_err());
    assert!(old.comet_id().is_some(), "the connection from before stays");
    old.close().await;
}
