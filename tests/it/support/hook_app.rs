//! A small HTTP application for the hook tests: it checks every request's
//! signature, records what it was asked, and answers by fixed rules.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes as Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::Json;
use courier_logic::{Hook, HooksConfig, OfflineHook, OnFailure};
use hmac::{Hmac, Mac};
use parking_lot::Mutex;
use serde_json::{json, Value};
use sha2::Sha256;
use tokio::sync::Notify;

pub const HOOK_SECRET: &str = "hook-secret-of-at-least-32-bytes!!";

/// What the application saw.
#[derive(Default)]
pub struct HookApp {
    /// (path, body) of every request with a valid signature.
    pub calls: Mutex<Vec<(String, Value)>>,
    /// Requests whose signature did not verify.
    pub forged: Mutex<usize>,
    pub offline: Mutex<Vec<Value>>,
    pub offline_arrived: Notify,
}

impl HookApp {
    /// The body of a request if its signature verifies.
    fn verified(&self, path: &str, headers: &HeaderMap, body: &[u8]) -> Option<Value> {
        let timestamp = headers.get("x-courier-timestamp")?.to_str().ok()?;
        let signature = headers.get("x-courier-signature")?.to_str().ok()?;
        let mut mac = Hmac::<Sha256>::new_from_slice(HOOK_SECRET.as_bytes()).unwrap();
        mac.update(format!("{timestamp}.").as_bytes());
        mac.update(body);
        let expected: String = mac
            .finalize()
            .into_bytes()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        if signature != format!("v1={expected}") {
            *self.forged.lock() += 1;
            return None;
        }
        let value: Value = serde_json::from_slice(body).ok()?;
        self.calls.lock().push((path.to_owned(), value.clone()));
        Some(value)
    }

    pub fn calls_to(&self, path: &str) -> usize {
        self.calls.lock().iter().filter(|(p, _)| p == path).count()
    }
}

type Answer = (StatusCode, Json<Value>);

async fn connect(State(app): State<Arc<HookApp>>, headers: HeaderMap, body: Body) -> Answer {
    let Some(ask) = app.verified("/connect", &headers, &body) else {
        return (StatusCode::BAD_REQUEST, Json(json!({})));
    };
    match ask["credentials"].as_str() {
        Some("good-cookie") => (
            StatusCode::OK,
            Json(json!({"uid": "dana", "rooms": ["lobby"], "expires_in": 60})),
        ),
        Some("bad-uid") => (StatusCode::OK, Json(json!({"uid": "a\u{7}b"}))),
        Some("hang") => std::future::pending().await,
        _ => (StatusCode::UNAUTHORIZED, Json(json!({}))),
    }
}

async fn join(State(app): State<Arc<HookApp>>, headers: HeaderMap, body: Body) -> Answer {
    let Some(ask) = app.verified("/join", &headers, &body) else {
        return (StatusCode::BAD_REQUEST, Json(json!({})));
    };
    let allow = ask["uid"] == "dana" && ask["room"] == "vip";
    (StatusCode::OK, Json(json!({ "allow": allow })))
}

async fn publish(State(app): State<Arc<HookApp>>, headers: HeaderMap, body: Body) -> Answer {
    let Some(ask) = app.verified("/publish", &headers, &body) else {
        return (StatusCode::BAD_REQUEST, Json(json!({})));
    };
    let text = ask["data"].as_str().unwrap_or_default().to_owned();
    if text.contains("bad word") {
        return (
            StatusCode::OK,
            Json(json!({"action": "refuse", "reason": "watch your language"})),
        );
    }
    if text == "hang" {
        return std::future::pending().await;
    }
    if let Some(rest) = text.strip_prefix("shout ") {
        return (
            StatusCode::OK,
            Json(json!({"action": "rewrite", "data": rest.to_uppercase()})),
        );
    }
    (StatusCode::OK, Json(json!({"action": "accept"})))
}

async fn offline(State(app): State<Arc<HookApp>>, headers: HeaderMap, body: Body) -> StatusCode {
    let Some(batch) = app.verified("/offline", &headers, &body) else {
        return StatusCode::BAD_REQUEST;
    };
    app.offline
        .lock()
        .extend(batch["messages"].as_array().cloned().unwrap_or_default());
    app.offline_arrived.notify_waiters();
    StatusCode::NO_CONTENT
}

impl HookApp {
    /// Starts the application on 127.0.0.1: it and its base URL.
    pub async fn start() -> (Arc<HookApp>, String) {
        let app = Arc::new(HookApp::default());
        let router = axum::Router::new()
            .route("/connect", post(connect))
            .route("/join", post(join))
            .route("/publish", post(publish))
            .route("/offline", post(offline))
            .with_state(app.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, router).await });
        (app, base)
    }

    /// Every hook, pointed at the application at `base`.
    pub fn hooks(base: &str) -> HooksConfig {
        let hook = |path: &str| Hook {
            url: format!("{base}{path}"),
            on_failure: OnFailure::Refuse,
        };
        HooksConfig {
            secret: HOOK_SECRET.into(),
            // Long enough for a loaded CI machine; the hanging answers
            // wait it out.
            timeout: Duration::from_secs(2),
            connect: Some(hook("/connect")),
            join: Some(hook("/join")),
            publish: Some(hook("/publish")),
            offline: Some(OfflineHook {
                url: format!("{base}/offline"),
                ..OfflineHook::default()
            }),
        }
    }
}
