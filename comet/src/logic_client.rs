//! Calls to logic, balanced over every logic in discovery.
//!
//! The pool follows `discovery.watch(ServiceKind::Logic)` and keeps one lazy
//! gRPC channel per logic, reused while its address is unchanged. Calls go
//! round-robin; a call that fails because its logic is unreachable is tried
//! once more on the next logic. Every call has a deadline, so a hung logic
//! costs a client an `UNAVAILABLE` error, never a stuck connection, and
//! carries the cluster secret logic checks.

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use courier_cluster::discovery::{decode_view, View};
use courier_cluster::LogicNode;
use courier_proto::client::StreamHead;
use courier_proto::logic::logic_client::LogicClient;
use courier_proto::logic::{
    AckRequest, CheckRoomsRequest, CloseSessionsRequest, CometStartedRequest, HeartbeatRequest,
    OpenSessionsReply, OpenSessionsRequest, Page, RenewOnlineRequest, RestoreSessionsReply,
    RestoreSessionsRequest, RoomOnlineRequest, RoomsChangedRequest, SendReply, SendRequest,
    SyncRequest,
};
use courier_runtime::cluster_auth::{ClusterSecret, Stamp};
use parking_lot::RwLock;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Channel, ClientTlsConfig};
use tonic::Code;

/// Deadline of one call to logic.
pub(crate) const LOGIC_TIMEOUT: Duration = Duration::from_secs(5);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// Why a call to logic failed.
#[derive(Debug, Clone, thiserror::Error)]
pub(crate) enum LogicError {
    #[error("no logic is registered in discovery")]
    NoLogic,
    #[error("logic did not answer within {0:?}")]
    Timeout(Duration),
    #[error("logic: {} ({:?})", .0.message(), .0.code())]
    Status(tonic::Status),
}

impl LogicError {
    /// Logic answered and refused (login policy, permissions).
    pub(crate) fn is_refusal(&self) -> bool {
        matches!(self, LogicError::Status(s)
            if matches!(s.code(), Code::FailedPrecondition | Code::PermissionDenied))
    }

    /// Logic answered that the caller is over a quota.
    pub(crate) fn is_over_quota(&self) -> bool {
        matches!(self, LogicError::Status(s) if s.code() == Code::ResourceExhausted)
    }

    /// Logic answered that the request itself was invalid.
    pub(crate) fn is_bad_request(&self) -> bool {
        matches!(self, LogicError::Status(s)
            if matches!(s.code(), Code::InvalidArgument | Code::NotFound | Code::OutOfRange))
    }

    /// A message fit for a client.
    pub(crate) fn client_message(&self) -> String {
        match self {
            LogicError::Status(s)
                if self.is_refusal() || self.is_bad_request() || self.is_over_quota() =>
            {
                s.message().to_owned()
            }
            _ => "service unavailable, retry later".to_owned(),
        }
    }
}

#[derive(Debug)]
struct LogicConn {
    id: String,
    grpc: String,
    client: Client,
}

/// A client of one logic, stamping every call with the cluster secret.
type Client = LogicClient<InterceptedService<Channel, Stamp>>;

/// The logics this comet can call.
#[derive(Debug)]
pub(crate) struct LogicPool {
    conns: RwLock<Arc<Vec<LogicConn>>>,
    next: AtomicUsize,
    timeout: Duration,
    secret: ClusterSecret,
    /// TLS of the calls to logic; `None`: plaintext.
    tls: Option<ClientTlsConfig>,
}

impl LogicPool {
    /// An empty pool whose calls time out after `timeout` and carry
    /// `secret`.
    pub(crate) fn new(timeout: Duration, secret: ClusterSecret) -> Self {
        Self {
            conns: RwLock::new(Arc::new(Vec::new())),
            next: AtomicUsize::new(0),
            timeout,
            secret,
            tls: None,
        }
    }

    /// The same pool calling logic over TLS verified by `tls`.
    pub(crate) fn with_tls(mut self, tls: Option<ClientTlsConfig>) -> Self {
        self.tls = tls;
        self
    }

    /// Replaces the set of logics with those in `view`, keeping the channels
    /// of logics whose address did not change.
    pub(crate) fn update(&self, view: &View) {
        let nodes: Vec<LogicNode> = decode_view(view);
        let old = self.conns.read().clone();
        let mut conns = Vec::with_capacity(nodes.len());
        for node in nodes {
            if let Some(c) = old.iter().find(|c| c.id == node.id && c.grpc == node.grpc) {
                conns.push(LogicConn {
                    id: c.id.clone(),
                    grpc: c.grpc.clone(),
                    client: c.client.clone(),
                });
                continue;
            }
            match courier_runtime::tls::endpoint(&node.grpc, self.tls.as_ref()) {
                Ok(endpoint) => {
                    let channel = endpoint
                        .connect_timeout(CONNECT_TIMEOUT)
                        .tcp_nodelay(true)
                        .connect_lazy();
                    tracing::info!(logic = %node.id, grpc = %node.grpc, "logic joined");
                    conns.push(LogicConn {
                        id: node.id,
                        grpc: node.grpc,
                        client: LogicClient::with_interceptor(channel, self.secret.stamper()),
                    });
                }
                Err(e) => {
                    tracing::warn!(logic = %node.id, grpc = %node.grpc, error = %e, "ignoring logic with a bad address");
                }
            }
        }
        *self.conns.write() = Arc::new(conns);
    }

    /// The cluster secret this comet's calls carry (and its push service
    /// expects).
    pub(crate) fn secret(&self) -> &ClusterSecret {
        &self.secret
    }

    /// Follows discovery until `stop` fires or discovery goes away.
    pub(crate) async fn follow(&self, mut view: watch::Receiver<View>, stop: CancellationToken) {
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                changed = view.changed() => {
                    if changed.is_err() {
                        tracing::warn!("logic discovery watch ended; keeping the last view");
                        return;
                    }
                    let current = view.borrow_and_update().clone();
                    self.update(&current);
                }
            }
        }
    }

    /// Logics currently known.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.conns.read().len()
    }

    /// Sends `req` with `rpc` to one logic (round robin), trying a second
    /// one if the first is unreachable. Every RPC wrapper below is this call.
    async fn call<Req, T, F, Fut>(&self, req: Req, rpc: F) -> Result<T, LogicError>
    where
        Req: Clone,
        F: Fn(Client, Req) -> Fut,
        Fut: Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    {
        let conns = self.conns.read().clone();
        if conns.is_empty() {
            return Err(LogicError::NoLogic);
        }
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        let attempts = conns.len().min(2);
        let mut last = LogicError::NoLogic;
        for i in 0..attempts {
            let conn = &conns[(start + i) % conns.len()];
            let attempt = rpc(conn.client.clone(), req.clone());
            match tokio::time::timeout(self.timeout, attempt).await {
                Ok(Ok(reply)) => return Ok(reply.into_inner()),
                Ok(Err(status)) if status.code() == Code::Unavailable => {
                    tracing::debug!(logic = %conn.id, error = %status, "logic unreachable");
                    last = LogicError::Status(status);
                }
                Ok(Err(status)) => return Err(LogicError::Status(status)),
                Err(_) => return Err(LogicError::Timeout(self.timeout)),
            }
        }
        Err(last)
    }

    /// Clients authenticated: open their sessions (see [`crate::opener`]).
    pub(crate) async fn open_sessions(
        &self,
        req: OpenSessionsRequest,
    ) -> Result<OpenSessionsReply, LogicError> {
        self.call(req, |mut c, req| async move { c.open_sessions(req).await })
            .await
    }

    /// Clients left: close their sessions.
    pub(crate) async fn close_sessions(&self, req: CloseSessionsRequest) -> Result<(), LogicError> {
        self.call(req, |mut c, req| async move { c.close_sessions(req).await })
            .await
            .map(drop)
    }

    /// This comet process starts: logic forgets what an earlier one left.
    pub(crate) async fn comet_started(&self, req: CometStartedRequest) -> Result<(), LogicError> {
        self.call(req, |mut c, req| async move { c.comet_started(req).await })
            .await
            .map(drop)
    }

    /// Checks a session (restoring it if gone but not ended); returns the
    /// user's inbox head.
    pub(crate) async fn heartbeat(
        &self,
        req: HeartbeatRequest,
    ) -> Result<Option<StreamHead>, LogicError> {
        self.call(req, |mut c, req| async move { c.heartbeat(req).await })
            .await
            .map(|reply| reply.inbox)
    }

    /// A page of the user's inbox or of a room.
    pub(crate) async fn sync(&self, req: SyncRequest) -> Result<Page, LogicError> {
        self.call(req, |mut c, req| async move { c.sync(req).await })
            .await
    }

    /// Whether `uid` may join `room` (its join rule).
    pub(crate) async fn may_join(&self, uid: &str, room: &str) -> Result<bool, LogicError> {
        let req = CheckRoomsRequest {
            uid: uid.to_owned(),
            rooms: vec![room.to_owned()],
        };
        self.call(req, |mut c, req| async move { c.check_rooms(req).await })
            .await
            .map(|reply| reply.allowed.first() == Some(&true))
    }

    /// Records how far the user has read its inbox.
    pub(crate) async fn ack(&self, req: AckRequest) -> Result<(), LogicError> {
        self.call(req, |mut c, req| async move { c.ack(req).await })
            .await
            .map(drop)
    }

    /// An upstream message from a client.
    pub(crate) async fn send(&self, req: SendRequest) -> Result<SendReply, LogicError> {
        self.call(req, |mut c, req| async move { c.send(req).await })
            .await
    }

    /// Rooms that gained their first or lost their last member here.
    pub(crate) async fn rooms_changed(&self, req: RoomsChangedRequest) -> Result<(), LogicError> {
        self.call(req, |mut c, req| async move { c.rooms_changed(req).await })
            .await
            .map(drop)
    }

    /// Connections in a room, cluster-wide.
    pub(crate) async fn room_online(&self, room: String) -> Result<u64, LogicError> {
        self.call(RoomOnlineRequest { room }, |mut c, req| async move {
            c.room_online(req).await
        })
        .await
        .map(|reply| reply.connections)
    }

    /// Every connection and room again, after the session store lost
    /// writes; returns the heads of their streams.
    pub(crate) async fn restore_sessions(
        &self,
        req: RestoreSessionsRequest,
    ) -> Result<RestoreSessionsReply, LogicError> {
        self.call(
            req,
            |mut c, req| async move { c.restore_sessions(req).await },
        )
        .await
    }

    /// The periodic load report.
    pub(crate) async fn renew_online(&self, req: RenewOnlineRequest) -> Result<(), LogicError> {
        self.call(req, |mut c, req| async move { c.renew_online(req).await })
            .await
            .map(drop)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret() -> ClusterSecret {
        ClusterSecret::new("logic-client-test-cluster-secret-32").unwrap()
    }

    fn view(nodes: &[(&str, &str)]) -> View {
        nodes
            .iter()
            .map(|(id, grpc)| {
                let node = LogicNode {
                    id: (*id).into(),
                    grpc: (*grpc).into(),
                    http: String::new(),
                };
                ((*id).to_owned(), serde_json::to_string(&node).unwrap())
            })
            .collect()
    }

    #[tokio::test]
    async fn the_pool_follows_the_view() {
        let pool = LogicPool::new(LOGIC_TIMEOUT, secret());
        assert!(matches!(
            pool.heartbeat(HeartbeatRequest::default()).await,
            Err(LogicError::NoLogic)
        ));
        pool.update(&view(&[("a", "127.0.0.1:1"), ("b", "127.0.0.1:2")]));
        assert_eq!(pool.len(), 2);
        let mut with_garbage = view(&[("a", "127.0.0.1:1")]);
        with_garbage.insert("junk".into(), "{not json".into());
        pool.update(&with_garbage);
        assert_eq!(pool.len(), 1);
    }

    #[tokio::test]
    async fn an_unreachable_logic_is_an_error_not_a_hang() {
        // Bind then drop, so nothing listens on the port.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let pool = LogicPool::new(LOGIC_TIMEOUT, secret());
        pool.update(&view(&[("a", &format!("127.0.0.1:{port}"))]));
        let err = pool
            .heartbeat(HeartbeatRequest::default())
            .await
            .unwrap_err();
        assert!(!err.is_refusal());
        assert!(matches!(err, LogicError::Status(s) if s.code() == Code::Unavailable));
    }
}
