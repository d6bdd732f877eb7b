//! Calls from logic to a comet's gRPC service (drain, resync): a fresh
//! channel per call, TLS as configured, the cluster secret stamped on, the
//! whole call bounded.

use std::time::Duration;

use courier_proto::comet::comet_client::CometClient;
use courier_runtime::cluster_auth::Stamp;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

use crate::state::LogicState;

/// A client of the comet whose gRPC service is at `grpc`.
pub(crate) type Comet = CometClient<InterceptedService<Channel, Stamp>>;

/// Why a call to a comet failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum CallError {
    #[error("bad comet address: {0}")]
    Address(String),
    #[error("cannot connect: {0}")]
    Connect(#[from] tonic::transport::Error),
    #[error("{0}")]
    Status(#[from] tonic::Status),
    #[error("no answer within {0:?}")]
    Timeout(Duration),
}

/// Runs `call` against the comet at `grpc`, all of it within `limit`.
pub(crate) async fn call_comet<T, Fut>(
    shared: &LogicState,
    grpc: &str,
    limit: Duration,
    call: impl FnOnce(Comet) -> Fut,
) -> Result<T, CallError>
where
    Fut: std::future::Future<Output = Result<tonic::Response<T>, tonic::Status>>,
{
    let attempt = async {
        let channel = courier_runtime::tls::endpoint(grpc, shared.comet_tls.as_ref())
            .map_err(|e| CallError::Address(e.to_string()))?
            .connect_timeout(limit)
            .connect()
            .await?;
        let client = CometClient::with_interceptor(channel, shared.cluster_secret.stamper());
        Ok(call(client).await?.into_inner())
    };
    tokio::time::timeout(limit, attempt)
        .await
        .map_err(|_| CallError::Timeout(limit))?
}
