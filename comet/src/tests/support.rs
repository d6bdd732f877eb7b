//! Test harness: an in-test logic (our own gRPC service, faked), memory
//! discovery and comets on 127.0.0.1:0. Clients are the test kit's
//! [`FrameClient`].

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use courier_cluster::discovery::memory::MemoryDiscovery;
use courier_cluster::discovery::register_json;
use courier_cluster::{Discovery, LogicNode, Registration, ServiceKind};
use courier_proto::client::{AuthReply, Message, StreamHead, Target};
use courier_proto::comet::comet_client::CometClient;
use courier_proto::encode_message;
use courier_proto::logic::logic_server::{Logic, LogicServer};
use courier_proto::logic::*;
use courier_runtime::cluster_auth::Stamp;
use courier_runtime::TokenKeys;
pub(crate) use courier_testkit::messages::{encoded_with, push_ids};
pub(crate) use courier_testkit::{eventually, CallLog, FrameClient};
use courier_ws::tokio_tungstenite;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio_stream::wrappers::TcpListenerStream;
use tokio_util::sync::CancellationToken;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;
use tonic::{Request, Response, Status};

use crate::logic_client::{LogicPool, LOGIC_TIMEOUT};
use crate::state::CometState;
use crate::{Comet, CometConfig, CometDeps, CometError};

pub(crate) const SECRET: &str = "comet-test-jwt-secret-of-32-bytes";
pub(crate) const CLUSTER_SECRET: &str = "comet-test-cluster-secret-32-bytes";

/// The cluster secret of the comets under test.
pub(crate) fn cluster_secret() -> courier_runtime::ClusterSecret {
    courier_runtime::ClusterSecret::new(CLUSTER_SECRET).unwrap()
}

/// One call logic received.
#[derive(Debug, Clone)]
pub(crate) enum Call {
    Open(ConnectRequest),
    /// An `OpenSessions` call, with how many sessions it named (each is
    /// also recorded as an `Open`).
    OpenBatch(usize),
    /// One session of a `CloseSessions` batch.
    Close(ClosedSession),
    Started(CometStartedRequest),
    Heartbeat(HeartbeatRequest),
    Send(SendRequest),
    Sync(SyncRequest),
    Ack(AckRequest),
    RoomsChanged(RoomsChangedRequest),
    Renew(RenewOnlineRequest),
    Restore(RestoreSessionsRequest),
}

/// A logic that records calls. It refuses uid `banned` (login policy),
/// lets nobody into rooms named `private-...` (room rules),
/// returns one missed message when `last_seq > 0`, refuses a `Send`
/// whose data is `bad`, and refuses heartbeats of uid `replaced` (a newer
/// login ended the session).
/// Rooms no user may join at [`FakeLogic`].
pub(crate) const PRIVATE: &str = "private-";

#[derive(Debug, Default)]
pub(crate) struct FakeLogic {
    calls: CallLog<Call>,
    /// While `true`, `CloseSessions` is recorded but not answered, which
    /// holds a draining comet in its drain.
    closes_held: tokio::sync::watch::Sender<bool>,
    /// While `true`, `OpenSession` is recorded but not answered.
    opens_held: tokio::sync::watch::Sender<bool>,
}

impl FakeLogic {
    fn record(&self, call: Call) {
        self.calls.record(call);
    }

    /// Waits for a call matching `f`.
    pub(crate) async fn wait_for<T>(&self, f: impl Fn(&Call) -> Option<T>) -> T {
        self.calls.wait_for(f).await
    }

    /// Waits until `n` calls match `f`.
    pub(crate) async fn wait_count(&self, f: impl Fn(&Call) -> bool, n: usize) {
        self.calls.wait_count(f, n).await
    }

    /// Waits for the first session closed.
    pub(crate) async fn closed(&self) -> ClosedSession {
        self.wait_for(|c| match c {
            Call::Close(r) => Some(r.clone()),
            _ => None,
        })
        .await
    }

    /// Holds (`true`) or releases (`false`) every `CloseSessions` answer.
    pub(crate) fn hold_closes(&self, held: bool) {
        self.closes_held.send_replace(held);
    }

    /// Holds (`true`) or releases (`false`) every `OpenSession` answer.
    pub(crate) fn hold_opens(&self, held: bool) {
        self.opens_held.send_replace(held);
    }

    /// Calls so far matching `f`.
    pub(crate) fn count(&self, f: impl Fn(&Call) -> bool) -> usize {
        self.calls.count(f)
    }
}

#[tonic::async_trait]
impl Logic for FakeLogic {
    async fn open_session(
        &self,
        request: Request<ConnectRequest>,
    ) -> Result<Response<ConnectReply>, Status> {
        let req = request.into_inner();
        self.record(Call::Open(req.clone()));
        let mut held = self.opens_held.subscribe();
        let _ = held.wait_for(|held| !held).await;
        if req.uid == "banned" {
            return Err(Status::failed_precondition("login policy refused"));
        }
        let inbox = if req.last_seq > 0 {
            page(&req.uid, "", req.last_seq, req.epoch, "missed-1")
        } else {
            Page {
                head: Some(StreamHead {
                    epoch: EPOCH,
                    ..StreamHead::default()
                }),
                ..Page::default()
            }
        };
        Ok(Response::new(ConnectReply {
            heartbeat_secs: 30,
            denied_rooms: req
                .rooms
                .iter()
                .filter(|r| r.starts_with(PRIVATE))
                .cloned()
                .collect(),
            inbox: Some(inbox),
        }))
    }

    async fn open_sessions(
        &self,
        request: Request<OpenSessionsRequest>,
    ) -> Result<Response<OpenSessionsReply>, Status> {
        let sessions = request.into_inner().sessions;
        self.record(Call::OpenBatch(sessions.len()));
        let opens = sessions
            .into_iter()
            .map(|r| self.open_session(Request::new(r)));
        let results = futures::future::join_all(opens)
            .await
            .into_iter()
            .map(|answer| OpenResult {
                result: Some(match answer {
                    Ok(reply) => open_result::Result::Opened(reply.into_inner()),
                    Err(status) => open_result::Result::Refused(OpenRefused {
                        code: status.code() as i32,
                        message: status.message().to_owned(),
                    }),
                }),
            })
            .collect();
        Ok(Response::new(OpenSessionsReply { results }))
    }

    async fn close_sessions(
        &self,
        request: Request<CloseSessionsRequest>,
    ) -> Result<Response<CloseSessionsReply>, Status> {
        for closed in request.into_inner().sessions {
            self.record(Call::Close(closed));
        }
        let mut held = self.closes_held.subscribe();
        let _ = held.wait_for(|held| !held).await;
        Ok(Response::new(CloseSessionsReply {}))
    }

    async fn comet_started(
        &self,
        request: Request<CometStartedRequest>,
    ) -> Result<Response<CometStartedReply>, Status> {
        self.record(Call::Started(request.into_inner()));
        Ok(Response::new(CometStartedReply {}))
    }

    async fn heartbeat(
        &self,
        request: Request<HeartbeatRequest>,
    ) -> Result<Response<HeartbeatReply>, Status> {
        let request = request.into_inner();
        let replaced = request.uid == "replaced";
        self.record(Call::Heartbeat(request));
        if replaced {
            return Err(Status::failed_precondition(
                "session ended: logged in elsewhere",
            ));
        }
        Ok(Response::new(HeartbeatReply {
            inbox: Some(StreamHead {
                epoch: EPOCH,
                last_seq: 3,
                first_seq: 1,
            }),
        }))
    }

    async fn send(&self, request: Request<SendRequest>) -> Result<Response<SendReply>, Status> {
        let req = request.into_inner();
        self.record(Call::Send(req.clone()));
        let send = req.send.unwrap_or_default();
        if &send.data[..] == b"bad" {
            return Err(Status::invalid_argument("bad data"));
        }
        Ok(Response::new(SendReply {
            msg_id: format!("m-{}", send.client_msg_id),
            seq: 7,
            epoch: EPOCH,
        }))
    }

    async fn sync(&self, request: Request<SyncRequest>) -> Result<Response<Page>, Status> {
        let req = request.into_inner();
        self.record(Call::Sync(req.clone()));
        let id = format!("synced-{}", req.after_seq + 1);
        Ok(Response::new(page(
            &req.uid,
            &req.room,
            req.after_seq,
            req.epoch,
            &id,
        )))
    }

    async fn ack(&self, request: Request<AckRequest>) -> Result<Response<AckReply>, Status> {
        self.record(Call::Ack(request.into_inner()));
        Ok(Response::new(AckReply {}))
    }

    async fn rooms_changed(
        &self,
        request: Request<RoomsChangedRequest>,
    ) -> Result<Response<RoomsChangedReply>, Status> {
        self.record(Call::RoomsChanged(request.into_inner()));
        Ok(Response::new(RoomsChangedReply {}))
    }

    async fn renew_online(
        &self,
        request: Request<RenewOnlineRequest>,
    ) -> Result<Response<RenewOnlineReply>, Status> {
        self.record(Call::Renew(request.into_inner()));
        Ok(Response::new(RenewOnlineReply {}))
    }

    async fn room_online(
        &self,
        request: Request<RoomOnlineRequest>,
    ) -> Result<Response<RoomOnlineReply>, Status> {
        let room = request.into_inner().room;
        Ok(Response::new(RoomOnlineReply {
            connections: room.len() as u64,
        }))
    }

    async fn check_rooms(
        &self,
        request: Request<CheckRoomsRequest>,
    ) -> Result<Response<CheckRoomsReply>, Status> {
        let allowed = request
            .into_inner()
            .rooms
            .iter()
            .map(|r| !r.starts_with(PRIVATE))
            .collect();
        Ok(Response::new(CheckRoomsReply { allowed }))
    }

    async fn restore_sessions(
        &self,
        request: Request<RestoreSessionsRequest>,
    ) -> Result<Response<RestoreSessionsReply>, Status> {
        let req = request.into_inner();
        self.record(Call::Restore(req.clone()));
        // Every stream stands at seq 5 of EPOCH.
        let head = StreamHead {
            epoch: EPOCH,
            last_seq: 5,
            first_seq: 1,
        };
        Ok(Response::new(RestoreSessionsReply {
            inboxes: req.sessions.iter().map(|s| (s.uid.clone(), head)).collect(),
            rooms: req.rooms.iter().map(|r| (r.clone(), head)).collect(),
        }))
    }
}

/// The epoch of every stream of the fake logic.
pub(crate) const EPOCH: u64 = 7;

/// A page of one message, `id`, right after `after_seq`, in `room` ("" for
/// the user's inbox).
fn page(uid: &str, room: &str, after_seq: u64, epoch: u64, id: &str) -> Page {
    let to = if room.is_empty() {
        Target::user(uid)
    } else {
        Target::room(room)
    };
    let seq = after_seq + 1;
    let epoch = if epoch == 0 { EPOCH } else { epoch };
    Page {
        head: Some(StreamHead {
            epoch,
            last_seq: seq,
            first_seq: 1,
        }),
        messages: vec![encode_message(&Message {
            msg_id: id.into(),
            seq,
            epoch,
            to: Some(to),
            ..Default::default()
        })],
        gap: false,
        reset: false,
    }
}

/// Memory discovery with one fake logic registered in it.
pub(crate) struct Harness {
    pub(crate) discovery: Arc<MemoryDiscovery>,
    pub(crate) logic: Arc<FakeLogic>,
    pub(crate) keys: TokenKeys,
    _registration: Registration,
    server: JoinHandle<()>,
}

impl Drop for Harness {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl Harness {
    pub(crate) async fn start() -> Harness {
        let discovery = Arc::new(MemoryDiscovery::default());
        let logic = Arc::new(FakeLogic::default());
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let service = LogicServer::from_arc(logic.clone());
        let server = tokio::spawn(async move {
            let _ = tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming(TcpListenerStream::new(listener))
                .await;
        });
        let node = LogicNode {
            id: "logic-test".into(),
            grpc: addr.to_string(),
            http: String::new(),
        };
        let registration = register_json(discovery.as_ref(), ServiceKind::Logic, &node.id, &node)
            .await
            .unwrap();
        Harness {
            discovery,
            logic,
            keys: TokenKeys::new(SECRET.as_bytes()),
            _registration: registration,
            server,
        }
    }

    pub(crate) fn config(&self) -> CometConfig {
        CometConfig {
            tcp_addr: "127.0.0.1:0".parse().unwrap(),
            grpc_addr: "127.0.0.1:0".parse().unwrap(),
            admin_addr: Some("127.0.0.1:0".parse().unwrap()),
            ws_addr: Some("127.0.0.1:0".parse().unwrap()),
            jwt_secret: SECRET.into(),
            cluster_secret: CLUSTER_SECRET.into(),
            report_interval: Duration::from_millis(100),
            // Every heartbeat checks the session, so tests see each check.
            session_check: Duration::ZERO,
            ..CometConfig::default()
        }
    }

    pub(crate) fn token(&self, uid: &str) -> String {
        self.keys.issue(uid, Duration::from_secs(60)).unwrap()
    }

    /// Comet state wired to this harness's logic, for driving the
    /// connection handler directly (duplex tests).
    pub(crate) async fn state(&self, config: CometConfig) -> Arc<CometState> {
        let pool = LogicPool::new(LOGIC_TIMEOUT, cluster_secret());
        let view = self.discovery.watch(ServiceKind::Logic).await.unwrap();
        pool.update(&view.borrow());
        let state = Arc::new(CometState::new(config, Arc::new(pool)));
        // Room changes are reported (and acknowledged) as in a running comet;
        // the task ends with the test's runtime.
        tokio::spawn(crate::report::room_changes(
            state.clone(),
            CancellationToken::new(),
        ));
        state.spawn_closer(CancellationToken::new());
        state
    }

    /// A comet serving on loopback.
    pub(crate) async fn comet(&self, config: CometConfig) -> RunningComet {
        let discovery: Arc<dyn Discovery> = self.discovery.clone();
        let comet = Comet::bind(config, CometDeps { discovery }).await.unwrap();
        let shutdown = CancellationToken::new();
        RunningComet {
            id: comet.id().to_owned(),
            tcp: comet.tcp_addr(),
            ws: comet.ws_addr(),
            grpc: comet.grpc_addr(),
            admin: comet.admin_addr(),
            shutdown: shutdown.clone(),
            task: Some(tokio::spawn(comet.run(shutdown))),
        }
    }
}

/// Serves one duplex connection with `state`; returns the client's end.
pub(crate) fn duplex_client(
    state: &Arc<CometState>,
    buffer: usize,
) -> (FrameClient<tokio::io::DuplexStream>, JoinHandle<()>) {
    let (client, server) = tokio::io::duplex(buffer);
    let handshaking = state
        .handshakes
        .admit(std::net::Ipv4Addr::LOCALHOST.into())
        .expect("room for a test handshake");
    let task = tokio::spawn(crate::connection::serve(
        server,
        None,
        state.clone(),
        handshaking,
    ));
    (FrameClient::new(client), task)
}

/// A client's WebSocket to a comet.
pub(crate) type WebSocket = tokio_tungstenite::WebSocketStream<TcpStream>;

pub(crate) struct RunningComet {
    pub(crate) id: String,
    pub(crate) tcp: SocketAddr,
    pub(crate) ws: Option<SocketAddr>,
    pub(crate) grpc: SocketAddr,
    pub(crate) admin: Option<SocketAddr>,
    pub(crate) shutdown: CancellationToken,
    pub(crate) task: Option<JoinHandle<Result<(), CometError>>>,
}

impl Drop for RunningComet {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

impl RunningComet {
    /// `GET path` on the admin listener: the status code and the body.
    pub(crate) async fn admin_get(&self, path: &str) -> std::io::Result<(u16, String)> {
        let addr = self.admin.expect("the admin listener is enabled");
        courier_testkit::http_get(addr, path).await
    }

    pub(crate) async fn client(&self) -> FrameClient<TcpStream> {
        FrameClient::connect(self.tcp).await
    }

    /// A raw WebSocket to `/ws` offering `subprotocol` (none: `None`).
    pub(crate) async fn websocket(
        &self,
        subprotocol: Option<&str>,
    ) -> Result<WebSocket, tokio_tungstenite::tungstenite::Error> {
        use tokio_tungstenite::tungstenite::client::IntoClientRequest;
        let addr = self.ws.expect("the WebSocket listener is enabled");
        let mut request = format!("ws://{addr}/ws").into_client_request()?;
        if let Some(subprotocol) = subprotocol {
            request
                .headers_mut()
                .insert("sec-websocket-protocol", subprotocol.parse().unwrap());
        }
        let stream = TcpStream::connect(addr).await?;
        let (ws, _) = tokio_tungstenite::client_async(request, stream).await?;
        Ok(ws)
    }

    /// A frame client over a WebSocket in `encoding`: the same frames as
    /// [`client`](Self::client), one per message.
    pub(crate) async fn ws_client(
        &self,
        encoding: courier_ws::Encoding,
    ) -> FrameClient<courier_ws::FrameSocket<TcpStream>> {
        let ws = self
            .websocket(Some(encoding.subprotocol()))
            .await
            .expect("WebSocket upgrade");
        FrameClient::new(courier_ws::FrameSocket::new(
            ws,
            encoding,
            courier_proto::DEFAULT_MAX_FRAME,
        ))
    }

    /// A client authenticated as `uid` in `rooms`.
    pub(crate) async fn login(
        &self,
        h: &Harness,
        uid: &str,
        rooms: &[&str],
    ) -> (FrameClient<TcpStream>, AuthReply) {
        let mut c = self.client().await;
        let reply = c.auth(&h.token(uid), rooms).await;
        (c, reply)
    }

    /// A push-service client that carries the cluster secret, as job does.
    pub(crate) async fn push_client(&self) -> CometClient<InterceptedService<Channel, Stamp>> {
        let channel = Channel::from_shared(format!("http://{}", self.grpc))
            .unwrap()
            .connect()
            .await
            .unwrap();
        CometClient::with_interceptor(channel, cluster_secret().stamper())
    }

    /// A push-service client without the cluster secret.
    pub(crate) async fn anonymous_push_client(&self) -> CometClient<Channel> {
        CometClient::connect(format!("http://{}", self.grpc))
            .await
            .unwrap()
    }

    /// Shuts the comet down and returns what `run` returned.
    pub(crate) async fn stop(mut self) -> Result<(), CometError> {
        self.shutdown.cancel();
        let task = self.task.take().unwrap();
        tokio::time::timeout(Duration::from_secs(30), task)
            .await
            .expect("comet stops")
            .unwrap()
    }
}
