//! The operations endpoints every service serves: `/metrics` (Prometheus
//! text), `/healthz` (the process answers) and `/readyz` (the service wants
//! traffic).
//!
//! Comet and job serve them on a listener of their own ([`serve_admin`]),
//! so a scrape or a probe never competes with clients or pushes; logic adds
//! the same handlers to its HTTP API. Readiness is one shared flag
//! ([`Readiness`]) the service flips: on once it is registered and serving,
//! off the moment it starts draining, so a load balancer stops sending work
//! before the listeners close.
//!
//! The metrics text comes from the recorder the binary installed, which
//! hands its renderer to [`render_metrics_with`]. A metrics recorder is
//! process-wide (the `metrics` facade allows one), so its renderer is too:
//! every service of one process (`courier up`) serves the same text. Without
//! one, `/metrics` says so with a 404 rather than serving an empty page that
//! looks healthy.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// Content type of the Prometheus text exposition format.
const PROMETHEUS_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// How long open admin requests may take to finish after shutdown.
const ADMIN_GRACE: Duration = Duration::from_secs(2);

/// Renders the process's metrics as Prometheus text.
type Render = Box<dyn Fn() -> String + Send + Sync>;

/// The renderer of the process's metrics recorder, once the binary set it.
static RENDER: OnceLock<Render> = OnceLock::new();

/// Makes `/metrics` answer with `render()`: called once by the binary after
/// it installed its recorder. Returns `false` (and changes nothing) if a
/// renderer was already set.
pub fn render_metrics_with(render: impl Fn() -> String + Send + Sync + 'static) -> bool {
    RENDER.set(Box::new(render)).is_ok()
}

/// A service's readiness, shared between the service and its probes.
/// Cloning is cheap: every clone flips and reads the same flags.
///
/// Two things make a service not ready: its own state (not serving yet,
/// or draining: [`Readiness::set_ready`]) and backends it cannot do its
/// work without being unreachable ([`Readiness::set_blocked`]), which
/// `/readyz` names. Each backend's watcher sets and clears its own reason.
#[derive(Debug, Clone, Default)]
pub struct Readiness {
    ready: Arc<AtomicBool>,
    blocked: Arc<parking_lot::Mutex<Vec<&'static str>>>,
}

impl Readiness {
    /// A flag that starts not ready.
    pub fn new() -> Self {
        Self::default()
    }

    /// Marks the service ready (`true`) or not (`false`).
    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::Relaxed);
    }

    /// Says that `why` (e.g. `"queue unreachable"`) keeps the service
    /// from its work now (`blocked`), or no longer does.
    pub fn set_blocked(&self, why: &'static str, blocked: bool) {
        let mut reasons = self.blocked.lock();
        let present = reasons.contains(&why);
        if blocked && !present {
            reasons.push(why);
        } else if !blocked && present {
            reasons.retain(|r| *r != why);
        }
    }

    /// Whether `/readyz` currently answers 200.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Relaxed) && self.blocked.lock().is_empty()
    }

    /// What blocks the service, in the order it began: empty when nothing.
    pub fn blocked(&self) -> Vec<&'static str> {
        self.blocked.lock().clone()
    }
}

/// `GET /metrics`: the installed recorder's Prometheus text, or 404 when
/// this process installed none.
pub async fn metrics() -> Response {
    match RENDER.get() {
        Some(render) => ([(header::CONTENT_TYPE, PROMETHEUS_TEXT)], render()).into_response(),
        None => (
            StatusCode::NOT_FOUND,
            "no metrics recorder installed in this process\n",
        )
            .into_response(),
    }
}

/// `GET /healthz`: 200 `ok` whenever the process answers at all.
pub async fn healthz() -> &'static str {
    "ok"
}

/// The `/readyz` answer for `readiness`: 200 `ready`, or 503 `not ready`
/// (with what blocks it, e.g. `not ready: queue unreachable`).
pub fn readiness_reply(readiness: &Readiness) -> Response {
    if readiness.is_ready() {
        return (StatusCode::OK, "ready").into_response();
    }
    let blocked = readiness.blocked();
    if blocked.is_empty() {
        return (StatusCode::SERVICE_UNAVAILABLE, "not ready").into_response();
    }
    let why = blocked.join(", ");
    (StatusCode::SERVICE_UNAVAILABLE, format!("not ready: {why}")).into_response()
}

async fn readyz(State(readiness): State<Readiness>) -> Response {
    readiness_reply(&readiness)
}

/// `/metrics`, `/healthz` and `/readyz` over `readiness`.
pub fn admin_router(readiness: Readiness) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(readiness)
}

/// Serves [`admin_router`] on `listener` until `shutdown` fires, then lets
/// open requests finish for at most a couple of seconds and returns.
pub async fn serve_admin(
    listener: TcpListener,
    readiness: Readiness,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let server = axum::serve(listener, admin_router(readiness))
        .with_graceful_shutdown(shutdown.clone().cancelled_owned());
    let grace = async {
        shutdown.cancelled().await;
        tokio::time::sleep(ADMIN_GRACE).await;
    };
    tokio::select! {
        result = server => result,
        () = grace => Ok(()),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::Request;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tower::ServiceExt;

    async fn get(readiness: &Readiness, path: &str) -> (StatusCode, String) {
        let response = admin_router(readiness.clone())
            .oneshot(Request::get(path).body(Body::empty()).unwrap())
            .await
            .unwrap();
        let status = response.status();
        let body = axum::body::to_bytes(response.into_body(), 64 * 1024)
            .await
            .unwrap();
        (status, String::from_utf8(body.to_vec()).unwrap())
    }

    #[tokio::test]
    async fn healthz_answers_even_when_not_ready() {
        let readiness = Readiness::new();
        assert_eq!(
            get(&readiness, "/healthz").await,
            (StatusCode::OK, "ok".into())
        );
    }

    #[tokio::test]
    async fn readyz_follows_the_flag() {
        let readiness = Readiness::new();
        assert_eq!(
            get(&readiness, "/readyz").await,
            (StatusCode::SERVICE_UNAVAILABLE, "not ready".into())
        );
        readiness.clone().set_ready(true);
        assert_eq!(
            get(&readiness, "/readyz").await,
            (StatusCode::OK, "ready".into())
        );
        readiness.set_ready(false);
        assert_eq!(
            get(&readiness, "/readyz").await.0,
            StatusCode::SERVICE_UNAVAILABLE
        );
    }

    #[tokio::test]
    async fn metrics_is_404_without_a_recorder() {
        // Nothing in this test binary installs a recorder.
        let (status, body) = get(&Readiness::new(), "/metrics").await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert!(body.contains("no metrics recorder"), "{body}");
    }

    #[tokio::test]
    async fn serve_admin_answers_over_tcp_and_stops_on_shutdown() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let readiness = Readiness::new();
        readiness.set_ready(true);
        let shutdown = CancellationToken::new();
        let server = tokio::spawn(serve_admin(listener, readiness, shutdown.clone()));

        let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        tcp.write_all(b"GET /readyz HTTP/1.1\r\nHost: admin\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut reply = String::new();
        tcp.read_to_string(&mut reply).await.unwrap();
        assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
        assert!(reply.ends_with("ready"), "{reply}");

        shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(5), server)
            .await
            .expect("serve_admin returns after shutdown")
            .unwrap()
            .unwrap();
    }
}
