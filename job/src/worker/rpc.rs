//! The calls a worker makes to its comet, and the retry loop around one.

use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};
use courier_proto::comet::comet_client::CometClient;
use courier_proto::comet::{
    BroadcastRequest, KickRequest, PushKeysBatchRequest, PushKeysRequest, PushRoomRequest,
};
use tonic::transport::Channel;
use tonic::{Code, Status};

use super::health::Health;

/// Shortest and longest pause between two attempts of a failed call.
const RETRY_MIN: Duration = Duration::from_millis(50);
const RETRY_MAX: Duration = Duration::from_secs(5);

/// A gRPC call to a comet, kept so it can be attempted again.
#[derive(Debug)]
pub(super) enum Rpc {
    Keys(PushKeysRequest),
    KeysBatch(PushKeysBatchRequest),
    Room(PushRoomRequest),
    Broadcast(BroadcastRequest),
    Kick(KickRequest),
}

impl Rpc {
    /// The RPC's name in logs and metrics.
    pub(super) fn name(&self) -> &'static str {
        match self {
            Rpc::Keys(_) => "push_keys",
            Rpc::KeysBatch(_) => "push_keys_batch",
            Rpc::Room(_) => "push_room",
            Rpc::Broadcast(_) => "broadcast",
            Rpc::Kick(_) => "kick",
        }
    }

    async fn call(&self, client: &mut CometClient<Channel>) -> Result<(), Status> {
        match self {
            Rpc::Keys(r) => client.push_keys(r.clone()).await.map(drop),
            Rpc::KeysBatch(r) => client.push_keys_batch(r.clone()).await.map(drop),
            Rpc::Room(r) => client.push_room(r.clone()).await.map(drop),
            Rpc::Broadcast(r) => client.broadcast(r.clone()).await.map(drop),
            Rpc::Kick(r) => client.kick(r.clone()).await.map(drop),
        }
    }
}

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

/// Attempts `rpc` (each bounded by `timeout`) with exponential backoff until
/// the comet answers, refuses it for good, or turns out to be down.
pub(super) async fn until_answered(
    comet: &str,
    client: &CometClient<Channel>,
    timeout: Duration,
    health: &mut Health,
    rpc: &Rpc,
) -> Answer {
    let mut pauses = ExponentialBuilder::default()
        .with_min_delay(RETRY_MIN)
        .with_max_delay(RETRY_MAX)
        .with_jitter()
        .without_max_times()
        .build();
    loop {
        let status = match attempt(client, timeout, rpc).await {
            Ok(()) => {
                health.answered();
                return Answer::Delivered;
            }
            Err(status) => status,
        };
        metrics::counter!("courier_job_push_failures_total", "rpc" => rpc.name()).increment(1);
        if !transient(&status) {
            health.answered();
            return Answer::Rejected(status);
        }
        if health.failed(&status) {
            metrics::counter!("courier_job_comet_down_total").increment(1);
            tracing::warn!(
                comet,
                rpc = rpc.name(),
                message = status.message(),
                "comet unreachable; skipping its pushes until a probe reaches it"
            );
            return Answer::Unreachable;
        }
        let pause = pauses.next().unwrap_or(RETRY_MAX);
        tracing::warn!(
            comet, rpc = rpc.name(), code = ?status.code(),
            message = status.message(), retry_in = ?pause, "push failed; retrying"
        );
        tokio::time::sleep(pause).await;
    }
}

/// One attempt, bounded by `timeout`.
async fn attempt(
    client: &CometClient<Channel>,
    timeout: Duration,
    rpc: &Rpc,
) -> Result<(), Status> {
    let mut client = client.clone();
    match tokio::time::timeout(timeout, rpc.call(&mut client)).await {
        Ok(result) => result,
        Err(_) => Err(Status::deadline_exceeded("push timed out")),
    }
}
