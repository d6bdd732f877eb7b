//! How long the gRPC calls a server answers take, by method and status:
//! `courier_grpc_server_duration_seconds{method, code}`, a tower layer for
//! tonic's `Server::builder().layer(...)`.
//!
//! The method label is the call's path (`/courier.comet.Comet/PushKeys`).
//! A path the server does not serve is answered `UNIMPLEMENTED` and counted
//! as `method="unknown"`, so a peer inventing paths cannot grow the label
//! set. The code is the `grpc-status` of a trailers-only answer (how tonic
//! answers an error), `OK` otherwise; a call the transport failed is
//! `transport`.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use tonic::codegen::http;
use tower::{Layer, Service};

/// The histogram's name.
pub const DURATION: &str = "courier_grpc_server_duration_seconds";

/// Describes the histogram to the installed recorder (HELP text, unit).
pub fn describe_metrics() {
    metrics::describe_histogram!(
        DURATION,
        metrics::Unit::Seconds,
        "gRPC calls this process answered, from the request to the answer's head, by method and status code."
    );
}

/// Measures every call of the service it wraps.
#[derive(Debug, Clone, Copy, Default)]
pub struct GrpcMetricsLayer;

impl<S> Layer<S> for GrpcMetricsLayer {
    type Service = GrpcMetrics<S>;

    fn layer(&self, inner: S) -> Self::Service {
        GrpcMetrics { inner }
    }
}

/// [`GrpcMetricsLayer`]'s service.
#[derive(Debug, Clone)]
pub struct GrpcMetrics<S> {
    inner: S,
}

impl<S, B, RB> Service<http::Request<B>> for GrpcMetrics<S>
where
    S: Service<http::Request<B>, Response = http::Response<RB>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let path = request.uri().path().to_owned();
        let started = Instant::now();
        let call = self.inner.call(request);
        Box::pin(async move {
            let result = call.await;
            let code = match &result {
                Ok(response) => code_name(response.headers().get("grpc-status")),
                Err(_) => "transport",
            };
            let method = if code == "UNIMPLEMENTED" {
                "unknown".to_owned()
            } else {
                path
            };
            metrics::histogram!(DURATION, "method" => method, "code" => code)
                .record(started.elapsed().as_secs_f64());
            result
        })
    }
}

/// A `grpc-status` header as its code's name; none is `OK`.
fn code_name(status: Option<&http::HeaderValue>) -> &'static str {
    let Some(value) = status else { return "OK" };
    let code = value
        .to_str()
        .ok()
        .and_then(|v| v.parse::<i32>().ok())
        .map(tonic::Code::from_i32);
    match code {
        Some(tonic::Code::Ok) => "OK",
        Some(tonic::Code::Cancelled) => "CANCELLED",
        Some(tonic::Code::InvalidArgument) => "INVALID_ARGUMENT",
        Some(tonic::Code::DeadlineExceeded) => "DEADLINE_EXCEEDED",
        Some(tonic::Code::NotFound) => "NOT_FOUND",
        Some(tonic::Code::AlreadyExists) => "ALREADY_EXISTS",
        Some(tonic::Code::PermissionDenied) => "PERMISSION_DENIED",
        Some(tonic::Code::ResourceExhausted) => "RESOURCE_EXHAUSTED",
        Some(tonic::Code::FailedPrecondition) => "FAILED_PRECONDITION",
        Some(tonic::Code::Aborted) => "ABORTED",
        Some(tonic::Code::OutOfRange) => "OUT_OF_RANGE",
        Some(tonic::Code::Unimplemented) => "UNIMPLEMENTED",
        Some(tonic::Code::Internal) => "INTERNAL",
        Some(tonic::Code::Unavailable) => "UNAVAILABLE",
        Some(tonic::Code::DataLoss) => "DATA_LOSS",
        Some(tonic::Code::Unauthenticated) => "UNAUTHENTICATED",
        Some(tonic::Code::Unknown) | None => "UNKNOWN",
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use metrics_util::debugging::DebuggingRecorder;
    use tower::ServiceExt;

    use super::*;

    /// The labels of every call the layer recorded while `calls` ran.
    async fn recorded(paths: &[&str], status: Option<&'static str>) -> Vec<Vec<(String, String)>> {
        let recorder = DebuggingRecorder::new();
        let snapshotter = recorder.snapshotter();
        let _guard = metrics::set_default_local_recorder(&recorder);
        for path in paths {
            let answer = tower::service_fn(move |_: http::Request<()>| async move {
                let mut response = http::Response::new(());
                if let Some(code) = status {
                    response
                        .headers_mut()
                        .insert("grpc-status", http::HeaderValue::from_static(code));
                }
                Ok::<_, std::convert::Infallible>(response)
            });
            let request = http::Request::builder().uri(*path).body(()).unwrap();
            GrpcMetricsLayer
                .layer(answer)
                .oneshot(request)
                .await
                .unwrap();
        }
        snapshotter
            .snapshot()
            .into_vec()
            .into_iter()
            .map(|(key, ..)| {
                key.key()
                    .labels()
                    .map(|l| (l.key().to_owned(), l.value().to_owned()))
                    .collect()
            })
            .collect()
    }

    #[tokio::test]
    async fn calls_are_recorded_by_method_and_code() {
        let labels = recorded(&["/courier.comet.Comet/PushKeys"], None).await;
        let expected = vec![
            (
                "method".to_owned(),
                "/courier.comet.Comet/PushKeys".to_owned(),
            ),
            ("code".to_owned(), "OK".to_owned()),
        ];
        assert_eq!(labels, vec![expected]);
    }

    #[tokio::test]
    async fn invented_paths_cannot_grow_the_label_set() {
        let paths: Vec<String> = (0..100)
            .map(|n| format!("/courier.comet.Comet/X{n}"))
            .collect();
        let paths: Vec<&str> = paths.iter().map(String::as_str).collect();
        let labels = recorded(&paths, Some("12")).await;
        assert_eq!(labels.len(), 1, "one series: {labels:?}");
        assert!(labels[0].contains(&("method".to_owned(), "unknown".to_owned())));
    }

    #[test]
    fn status_headers_name_their_code() {
        assert_eq!(code_name(None), "OK");
        let h = |s: &'static str| http::HeaderValue::from_static(s);
        assert_eq!(code_name(Some(&h("0"))), "OK");
        assert_eq!(code_name(Some(&h("12"))), "UNIMPLEMENTED");
        assert_eq!(code_name(Some(&h("16"))), "UNAUTHENTICATED");
        assert_eq!(code_name(Some(&h("99"))), "UNKNOWN");
        assert_eq!(code_name(Some(&h("x"))), "UNKNOWN");
    }
}
