//! HELP text and units of every metric logic emits, for the process that
//! installs a recorder to call once after installing it; and the HTTP
//! middleware that measures every request.

use ::metrics::{describe_counter, describe_histogram, Unit};
use axum::extract::{MatchedPath, Request};
use axum::middleware::Next;
use axum::response::Response;
use tokio::time::Instant;

/// The `route` of a request no route matched (the fallback's 404): one
/// label value, whatever the path.
const UNMATCHED: &str = "unmatched";

/// Records how long each HTTP request took, by route (its pattern, such as
/// `/api/v1/rooms/{room}`, never the path itself) and response status.
pub(crate) async fn http_duration(request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or(UNMATCHED, MatchedPath::as_str)
        .to_owned();
    let started = Instant::now();
    let response = next.run(request).await;
    let labels = [
        ("route", route),
        ("status", response.status().as_u16().to_string()),
    ];
    ::metrics::histogram!("courier_logic_http_request_duration_seconds", &labels)
        .record(started.elapsed());
    response
}

/// Describes every metric of this crate to the installed recorder.
pub fn describe() {
    describe_histogram!(
        "courier_logic_http_request_duration_seconds",
        Unit::Seconds,
        "Time logic took to answer an HTTP request (until its response head), by route pattern and status."
    );
    describe_counter!(
        "courier_logic_messages_total",
        Unit::Count,
        "Messages accepted for delivery (pushes and client sends), by target: users, keys, room or all."
    );
    describe_counter!(
        "courier_logic_stranded_total",
        Unit::Count,
        "Messages stored whose publish to the queue failed (their recipients get them when they sync)."
    );
    describe_counter!(
        "courier_logic_queue_resyncs_total",
        Unit::Count,
        "Times logic had every client sync what it missed, after the queue lost messages or a message was stranded."
    );
    describe_counter!(
        "courier_logic_session_store_losses_total",
        Unit::Count,
        "Times the session store was found to have lost writes (every comet is then asked to report its connections again)."
    );
    describe_counter!(
        "courier_logic_room_count_reads_total",
        Unit::Count,
        "Reads of every room's head count from the session store (one per refresh of the shared snapshot)."
    );
    describe_counter!(
        "courier_logic_sends_over_quota_total",
        Unit::Count,
        "Client messages refused because their sender was over its per-minute quota."
    );
    describe_counter!(
        "courier_logic_hook_failures_total",
        Unit::Count,
        "Webhook calls that failed (its on_failure was applied), by hook: join or publish."
    );
    describe_counter!(
        "courier_logic_offline_sent_total",
        Unit::Count,
        "Messages the offline webhook took."
    );
    describe_counter!(
        "courier_logic_offline_dropped_total",
        Unit::Count,
        "Messages for the offline webhook dropped: its queue was full, or their batch failed every attempt."
    );
    describe_counter!(
        "courier_logic_http_refused_total",
        Unit::Count,
        "HTTP connections refused at accept: too many open in all or from one client."
    );
    describe_counter!(
        "courier_logic_auth_rate_limited_total",
        Unit::Count,
        "Register and login requests answered 429: their client went over auth_rate_per_minute."
    );
    describe_counter!(
        "courier_logic_login_rate_limited_total",
        Unit::Count,
        "Logins answered 429: one username from one client went over login_rate_per_user_per_minute."
    );
    describe_counter!(
        "courier_logic_user_reads_limited_total",
        Unit::Count,
        "Reads with a user's token answered 429: the user went over user_reads_per_minute."
    );
}
