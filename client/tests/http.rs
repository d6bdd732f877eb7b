//! register / login / presence against a tiny in-test logic (axum), and
//! `Client::connect` going from HTTP login to a fake comet.

#![allow(clippy::unwrap_used)]

use std::collections::HashMap;

use axum::extract::Query;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use axum::{Json, Router};
use courier_client::{login, register, Client, ClientConfig, ClientError, Event};
use courier_proto::client::{frame::Body, AuthReply, Frame};
use courier_proto::FrameCodec;
use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio_util::codec::Framed;

async fn serve(app: Router) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}")
}

fn logic(comet_tcp: String) -> Router {
    Router::new()
        .route(
            "/api/v1/users",
            post(|Json(body): Json<Value>| async move {
                match body["username"].as_str() {
                    Some("taken") => (
                        StatusCode::CONFLICT,
                        Json(json!({"error":{"code":"conflict","message":"already exists"}})),
                    ),
                    Some("") => (
                        StatusCode::BAD_REQUEST,
                        Json(json!({"error":{"code":"bad_request","message":"empty username"}})),
                    ),
                    Some(name) => (StatusCode::CREATED, Json(json!({ "uid": name }))),
                    None => (StatusCode::BAD_REQUEST, Json(json!({}))),
                }
            }),
        )
        .route(
            "/api/v1/login",
            post(move |Json(body): Json<Value>| {
                let comet_tcp = comet_tcp.clone();
                async move {
                    if body["password"] != "pw" {
                        let err =
                            json!({"error":{"code":"unauthorized","message":"bad credentials"}});
                        return (StatusCode::UNAUTHORIZED, Json(err));
                    }
                    let reply = json!({
                        "uid": body["username"], "token": "tok-1", "expires_in": 3600,
                        "heartbeat_secs": 30,
                        "comets": [{"id": "comet-1", "tcp": comet_tcp, "ws": "ws://x/ws"}],
                    });
                    (StatusCode::OK, Json(reply))
                }
            }),
        )
        .route(
            "/api/v1/presence",
            get(
                |headers: HeaderMap, Query(q): Query<HashMap<String, String>>| async move {
                    if headers.get("authorization").and_then(|v| v.to_str().ok())
                        != Some("Bearer tok-1")
                    {
                        return (StatusCode::UNAUTHORIZED, Json(json!({})));
                    }
                    // alice and carol are online.
                    let online: Vec<&str> = q
                        .get("uids")
                        .map(String::as_str)
                        .unwrap_or("")
                        .split(',')
                        .filter(|u| ["alice", "carol"].contains(u))
                        .collect();
                    (StatusCode::OK, Json(json!({ "online": online })))
                },
            ),
        )
}

#[tokio::test]
async fn register_and_login_map_statuses_to_errors() {
    let server = serve(logic("127.0.0.1:1".into())).await;
    assert_eq!(register(&server, "alice", "pw").await.unwrap(), "alice");
    assert!(matches!(
        register(&server, "taken", "pw").await,
        Err(ClientError::Conflict)
    ));
    match register(&server, "", "pw").await {
        Err(ClientError::Http {
            status,
            code,
            message,
        }) => {
            assert_eq!(
                (status, code.as_str(), message.as_str()),
                (400, "bad_request", "empty username")
            );
        }
        other => panic!("expected an HTTP error, got {other:?}"),
    }
    let reply = login(&server, "alice", "pw").await.unwrap();
    assert_eq!(reply.token, "tok-1");
    assert_eq!(reply.comets[0].id, "comet-1");
    assert!(matches!(
        login(&server, "alice", "wrong").await,
        Err(ClientError::Unauthorized)
    ));
}

#[tokio::test]
async fn connect_logs_in_and_asks_who_is_online_with_the_token() {
    let comet = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let server = serve(logic(comet.local_addr().unwrap().to_string())).await;
    let fake_comet = tokio::spawn(async move {
        let (stream, _) = comet.accept().await.unwrap();
        let mut conn = Framed::new(stream, FrameCodec::default());
        let frame = conn.next().await.unwrap().unwrap();
        let Some(Body::Auth(auth)) = frame.body else {
            panic!("expected Auth")
        };
        assert_eq!(auth.token, "tok-1", "the token from login");
        let reply = AuthReply {
            uid: "alice".into(),
            key: "k1".into(),
            heartbeat_secs: 30,
            rooms: auth.rooms,
            ..AuthReply::default()
        };
        conn.send(Frame::new(frame.id, Body::AuthReply(reply)))
            .await
            .unwrap();
        conn
    });
    let config = ClientConfig::new(server.clone(), "alice", "pw").with_rooms(["lobby"]);
    let (client, mut events) = Client::connect(config).await.unwrap();
    let _conn = fake_comet.await.unwrap();
    assert_eq!(
        events.recv().await.unwrap(),
        Event::Connected {
            comet_id: "comet-1".into(),
            key: "k1".into()
        }
    );
    assert_eq!(
        client.presence(&["alice", "bob", "carol"]).await.unwrap(),
        vec!["alice", "carol"]
    );

    let bad = ClientConfig::new(server, "alice", "nope");
    assert!(matches!(
        Client::connect(bad).await,
        Err(ClientError::Unauthorized)
    ));
    client.close().await;
}
