//! One call to a comet, attempted until it is answered.

use std::time::Duration;

use courier_runtime::backoff::Backoff;
use tonic::client::Grpc;
use tonic::codegen::http::uri::PathAndQuery;
use tonic::transport::Channel;
use tonic::{Code, Request, Status};

use courier_runtime::ClusterSecret;

use super::call::{Call, Passthrough};
use super::reachability::Reachability;

/// Shortest and longest pause between two attempts of a failed call.
const RETRY_MIN: Duration = Duration::from_millis(50);
const RETRY_MAX: Duration = Duration::from_secs(5);

/// How a call ended.
#[derive(Debug)]
pub(super) enum Answer {
    /// The comet took it.
    Delivered,
    /// The comet refused it for good (retrying cannot help).
    Rejected(Status),
    /// The comet could not be reached and is now down.
    Unreachable,
}

/// Whether another attempt may succeed.
fn transient(status: &Status) -> bool {
    !matches!(
        status.code(),
        Code::InvalidArgument | Code::Unimplemented | Code::OutOfRange
    )
}

/// Attempts `call` (each bounded by `timeout`) with exponential backoff until
/// the comet answers, refuses it for good, or turns out to be down.
pub(super) async fn until_answered(
    comet: &str,
    channel: &Channel,
    secret: &ClusterSecret,
    timeout: Duration,
    reachability: &mut Reachability,
    call: &Call,
) -> Answer {
    let name = call.method.name();
    let mut pauses = Backoff::new(RETRY_MIN, RETRY_MAX);
    loop {
        let status = match attempt(channel, secret, timeout, call).await {
            Ok(()) => {
                reachability.answered();
                return Answer::Delivered;
            }
            Err(status) => status,
        };
        metrics::counter!("courier_job_push_failures_total", "rpc" => name).increment(1);
        if !transient(&status) {
            reachability.answered();
            return Answer::Rejected(status);
        }
        if reachability.failed(&status) {
            metrics::counter!("courier_job_comet_down_total").increment(1);
            tracing::warn!(
                comet,
                rpc = name,
                message = status.message(),
                "comet unreachable; skipping its pushes until a probe reaches it"
            );
            return Answer::Unreachable;
        }
        let pause = pauses.next_delay();
        tracing::warn!(
            comet, rpc = name, code = ?status.code(),
            message = status.message(), retry_in = ?pause, "push failed; retrying"
        );
        tokio::time::sleep(pause).await;
    }
}

/// One attempt, bounded by `timeout`, carrying the cluster secret. The
/// request body is shared, not copied or encoded again.
async fn attempt(
    channel: &Channel,
    secret: &ClusterSecret,
    timeout: Duration,
    call: &Call,
) -> Result<(), Status> {
    let mut grpc = Grpc::new(channel.clone());
    let mut request = Request::new(call.body.clone());
    secret.stamp(&mut request);
    let send = async {
        grpc.ready()
            .await
            .map_err(|e| Status::unknown(format!("comet channel not ready: {e}")))?;
        let path = PathAndQuery::from_static(call.method.path());
        grpc.unary(request, path, Passthrough).await.map(drop)
    };
    match tokio::time::timeout(timeout, send).await {
        Ok(result) => result,
        Err(_) => Err(Status::deadline_exceeded("push timed out")),
    }
}
