//! The web chat page at `/`: three static files (`logic/web/`) compiled
//! into the binary, so nothing is built or read from disk at run time. The
//! page has no JavaScript dependencies; it talks to the API here and to a
//! comet over WebSocket in the `courier.json` subprotocol.

use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE};
use axum::http::HeaderName;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;

const INDEX: &str = include_str!("../../web/index.html");
const APP: &str = include_str!("../../web/app.js");
const STYLE: &str = include_str!("../../web/style.css");

/// Only this origin's scripts and styles; WebSocket connections to any
/// comet (they listen on their own hosts and ports).
const CSP: &str = "default-src 'self'; connect-src 'self' ws: wss:; img-src 'self' data:; \
                   frame-ancestors 'none'; base-uri 'none'; form-action 'self'";

/// `GET /`, `/app.js` and `/style.css`.
pub(crate) fn routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route(
            "/",
            get(|| async { page("text/html; charset=utf-8", INDEX) }),
        )
        .route(
            "/app.js",
            get(|| async { page("text/javascript; charset=utf-8", APP) }),
        )
        .route(
            "/style.css",
            get(|| async { page("text/css; charset=utf-8", STYLE) }),
        )
}

fn page(content_type: &'static str, body: &'static str) -> impl IntoResponse {
    (
        [
            (CONTENT_TYPE, content_type),
            // Small files: always revalidated, so an upgrade shows at once.
            (CACHE_CONTROL, "no-cache"),
            (HeaderName::from_static("content-security-policy"), CSP),
            (HeaderName::from_static("x-content-type-options"), "nosniff"),
        ],
        body,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_loads_only_the_files_served_here() {
        assert!(INDEX.contains(r#"src="/app.js""#));
        assert!(INDEX.contains(r#"href="/style.css""#));
        // No third-party script or style.
        assert!(!INDEX.contains("http://") && !INDEX.contains("https://"));
        assert!(APP.contains(r#"const SUBPROTOCOL = "courier.json";"#));
    }
}
