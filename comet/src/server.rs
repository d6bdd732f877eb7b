//! A comet's life: bind, serve, drain.
//!
//! [`Comet::bind`] binds both listeners (so callers learn the real ports
//! before anything runs). [`Comet::run`] follows the logics in discovery,
//! registers this comet, and serves clients and the push service until
//! `shutdown` fires or a drain is asked for (the `Drain` RPC); before it
//! accepts a client it tells logic it started (`CometStarted`), so what an
//! earlier process under its id left behind is forgotten. Then it
//! drains: the record is marked `draining` (so logic ranks it out and no new
//! client is sent here), accepting stops, the clients are told `Reconnect`
//! in waves at `drain_rate` (see [`crate::drain`]) and closed (their
//! sessions closed in logic) until none is left or `drain_grace` ran out,
//! the record is removed, and the push service stops last so job can
//! deliver until the very end. Then `run` returns.
//!
//! The admin listener (`/metrics`, `/healthz`, `/readyz`) serves for the
//! whole of `run`, drain included: `/readyz` turns 200 once the comet is
//! registered and accepting, and 503 the moment draining starts, while
//! `/healthz` keeps answering until the comet has stopped.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use courier_cluster::discovery::register_json;
use courier_cluster::{CometNode, Discovery, NodeState, ServiceKind};
use courier_proto::comet::comet_server::CometServer;
use courier_proto::logic::CometStartedRequest;
use courier_runtime::admin::{serve_admin, Readiness};
use courier_runtime::backoff::Backoff;
use courier_runtime::net::{self, advertised};
use courier_runtime::tls::{self, Alpn, ServerTls};
use courier_runtime::ClusterSecret;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tonic::transport::server::TcpIncoming;

use crate::config::CometConfig;
use crate::error::CometError;
use crate::listener::{accept_loop, Transport};
use crate::logic_client::{LogicPool, LOGIC_TIMEOUT};
use crate::push_service::PushService;
use crate::report;
use crate::state::CometState;

/// How long the push service gets to finish its calls after the drain.
const GRPC_GRACE: Duration = Duration::from_secs(5);
/// How long the admin server gets to stop once the comet has stopped.
const ADMIN_GRACE: Duration = Duration::from_secs(3);

/// What a comet needs from the rest of the cluster.
#[derive(Clone)]
pub struct CometDeps {
    /// Where comets register and logics are found.
    pub discovery: Arc<dyn Discovery>,
}

impl std::fmt::Debug for CometDeps {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CometDeps").finish_non_exhaustive()
    }
}

/// A comet with its listeners bound, ready to [`run`](Comet::run).
pub struct Comet {
    state: Arc<CometState>,
    /// The serving certificate, when the listeners speak TLS.
    tls: Option<Arc<ServerTls>>,
    deps: CometDeps,
    tcp: TcpListener,
    ws: Option<TcpListener>,
    grpc: TcpListener,
    admin: Option<TcpListener>,
    tcp_addr: SocketAddr,
    ws_addr: Option<SocketAddr>,
    grpc_addr: SocketAddr,
    admin_addr: Option<SocketAddr>,
}

impl std::fmt::Debug for Comet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Comet")
            .field("id", &self.id())
            .field("tcp_addr", &self.tcp_addr)
            .field("ws_addr", &self.ws_addr)
            .field("grpc_addr", &self.grpc_addr)
            .field("admin_addr", &self.admin_addr)
            .finish_non_exhaustive()
    }
}

async fn bind_listener(
    listener: &'static str,
    addr: SocketAddr,
) -> Result<(TcpListener, SocketAddr), CometError> {
    net::bind(addr).await.map_err(|source| CometError::Bind {
        listener,
        addr,
        source,
    })
}

impl Comet {
    /// Checks `config` and binds the TCP, gRPC and (unless disabled) admin
    /// listeners (port 0 picks a free port; see [`tcp_addr`](Comet::tcp_addr)).
    pub async fn bind(config: CometConfig, deps: CometDeps) -> Result<Comet, CometError> {
        config.validate().map_err(CometError::Config)?;
        let (tcp, tcp_addr) = bind_listener("tcp", config.tcp_addr).await?;
        let (ws, ws_addr) = match config.ws_addr {
            Some(addr) => {
                let (listener, bound) = bind_listener("ws", addr).await?;
                (Some(listener), Some(bound))
            }
            None => (None, None),
        };
        let (grpc, grpc_addr) = bind_listener("grpc", config.grpc_addr).await?;
        let (admin, admin_addr) = match config.admin_addr {
            Some(addr) => {
                let (listener, bound) = bind_listener("admin", addr).await?;
                (Some(listener), Some(bound))
            }
            None => (None, None),
        };
        let secret = ClusterSecret::new(&config.cluster_secret)
            .map_err(|e| CometError::Config(format!("cluster_secret: {e}")))?;
        let tls_error = |e: courier_runtime::tls::TlsError| CometError::Config(format!("tls: {e}"));
        let tls = config.tls.server().map_err(tls_error)?;
        let logic_tls = config.tls.tonic_client().map_err(tls_error)?;
        let logic = Arc::new(LogicPool::new(LOGIC_TIMEOUT, secret).with_tls(logic_tls));
        Ok(Comet {
            state: Arc::new(CometState::new(config, logic)),
            tls,
            deps,
            tcp,
            ws,
            grpc,
            admin,
            tcp_addr,
            ws_addr,
            grpc_addr,
            admin_addr,
        })
    }

    /// This comet's id.
    pub fn id(&self) -> &str {
        self.state.id()
    }

    /// The bound client (TCP) address.
    pub fn tcp_addr(&self) -> SocketAddr {
        self.tcp_addr
    }

    /// The bound WebSocket address (clients connect to `/ws` there),
    /// `None` when `ws_addr` is disabled.
    pub fn ws_addr(&self) -> Option<SocketAddr> {
        self.ws_addr
    }

    /// The bound push-service (gRPC) address.
    pub fn grpc_addr(&self) -> SocketAddr {
        self.grpc_addr
    }

    /// The bound admin (`/metrics`, `/healthz`, `/readyz`) address, `None`
    /// when `admin_addr` is disabled.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin_addr
    }

    /// Registers in discovery and serves until `shutdown` fires, then drains
    /// (see the module docs) and returns.
    pub async fn run(self, shutdown: CancellationToken) -> Result<(), CometError> {
        let Comet {
            state,
            tls,
            deps,
            tcp,
            ws,
            grpc,
            admin,
            tcp_addr,
            ws_addr,
            grpc_addr,
            admin_addr: _,
        } = self;
        let config = &state.config;

        // Stage 1: the admin listener, for the whole of `run`.
        let readiness = Readiness::new();
        let admin = Admin::start(admin, &readiness);

        // Stage 2: what must be known before the first client (the logics,
        // the revoked tokens), then the record in discovery.
        let logics = deps.discovery.watch(ServiceKind::Logic).await?;
        state.logic.update(&logics.borrow());
        let revoked = deps.discovery.watch_revoked().await?;
        crate::revocations::apply(&revoked.borrow(), &state.revoked, &state.directory);
        let mut record = record(config, tls.is_some(), tcp_addr, ws_addr, grpc_addr);
        let registration = register_json(
            deps.discovery.as_ref(),
            ServiceKind::Comet,
            &config.id,
            &record,
        )
        .await?;

        // Stage 3: the tasks that follow the cluster, and the push service.
        let mut background = Background::new();
        let pool = state.logic.clone();
        background.spawn(|stop| async move { pool.follow(logics, stop).await });
        let s = state.clone();
        background.spawn(|stop| crate::revocations::follow(revoked, s, stop));
        let s = state.clone();
        background.spawn(|stop| report::room_changes(s, stop));
        let reporter = crate::resync::Reporter {
            comet_id: config.id.clone(),
            directory: state.directory.clone(),
            logic: state.logic.clone(),
        };
        let requests = state.resync.clone();
        background.spawn(|stop| crate::resync::run(reporter, requests, stop));
        let tls_error = |e: courier_runtime::tls::TlsError| CometError::Config(format!("tls: {e}"));
        let acceptors = match &tls {
            Some(tls) => {
                tls.watch(background.token());
                Some((
                    tls.acceptor(Alpn::None).map_err(tls_error)?,
                    tls.acceptor(Alpn::H2).map_err(tls_error)?,
                ))
            }
            None => None,
        };
        let mut push = PushServer::start(&state, grpc, acceptors.as_ref().map(|(_, g)| g.clone()));
        let stop_closer = CancellationToken::new();
        let closer = state.spawn_closer(stop_closer.clone());
        let teardown = Teardown {
            id: config.id.clone(),
            closer: (stop_closer, closer),
            registration,
            background,
            admin,
        };
        if !announce_start(&state, &shutdown).await {
            // Stopped before any logic answered: nothing was served.
            return teardown.run(push, None).await;
        }

        // Stage 4: clients.
        let accepting = Accepting::start(&state, tcp, ws, acceptors.map(|(client, _)| client));
        readiness.set_ready(true);
        tracing::info!(id = %config.id, tcp = %record.tcp, ws = %record.ws, grpc = %record.grpc, "comet serving");
        let push_ended = tokio::select! {
            _ = shutdown.cancelled() => None,
            _ = state.drain_requested.cancelled() => None,
            _ = report::load(&state, &teardown.registration, record.clone()) => None,
            ended = &mut push.task => Some(ended),
        };

        // Stage 5: the drain, then everything in reverse.
        readiness.set_ready(false);
        tracing::info!(id = %config.id, connections = state.directory.keys.len(), "comet draining");
        record.state = NodeState::Draining;
        record.connections = u32::try_from(state.directory.keys.len()).unwrap_or(u32::MAX);
        report::update(&teardown.registration, &record);
        accepting.stop().await;
        drain_clients(&state).await;
        // The last closes go to logic before this comet leaves discovery,
        // and the push service stops last so job can deliver until then.
        let ended = teardown.run(push, push_ended).await;
        tracing::info!(id = %config.id, "comet stopped");
        ended
    }
}

/// This comet's record in discovery: where clients and jobs reach it.
fn record(
    config: &CometConfig,
    tls: bool,
    tcp_addr: SocketAddr,
    ws_addr: Option<SocketAddr>,
    grpc_addr: SocketAddr,
) -> CometNode {
    let host = config.advertise_host.as_deref();
    CometNode {
        id: config.id.clone(),
        tcp: config
            .public_tcp
            .clone()
            .unwrap_or_else(|| advertised(tcp_addr, host)),
        ws: ws_addr
            .map(|addr| match &config.public_ws_url {
                Some(url) => url.clone(),
                None => {
                    let scheme = if tls { "wss" } else { "ws" };
                    format!("{scheme}://{}{}", advertised(addr, host), crate::ws::PATH)
                }
            })
            .unwrap_or_default(),
        grpc: advertised(grpc_addr, host),
        weight: config.weight,
        connections: 0,
        state: NodeState::Serving,
    }
}

/// Tasks that follow the cluster while the comet runs, stopped together.
struct Background {
    stop: CancellationToken,
    tasks: Vec<JoinHandle<()>>,
}

impl Background {
    fn new() -> Self {
        Self {
            stop: CancellationToken::new(),
            tasks: Vec::new(),
        }
    }

    /// The token every background task stops on.
    fn token(&self) -> CancellationToken {
        self.stop.clone()
    }

    /// Spawns `task(stop)`.
    fn spawn<F, Fut>(&mut self, task: F)
    where
        F: FnOnce(CancellationToken) -> Fut,
        Fut: std::future::Future + Send + 'static,
    {
        let run = task(self.stop.clone());
        self.tasks.push(tokio::spawn(async move {
            run.await;
        }));
    }

    /// Stops every task and waits for each.
    async fn stop(self) {
        self.stop.cancel();
        for task in self.tasks {
            let _ = task.await;
        }
    }
}

/// The admin listener's task, stopped last.
struct Admin {
    stop: CancellationToken,
    /// An early error return must not leave the admin server running.
    _stop_on_drop: tokio_util::sync::DropGuard,
    task: Option<JoinHandle<std::io::Result<()>>>,
}

impl Admin {
    fn start(listener: Option<TcpListener>, readiness: &Readiness) -> Self {
        let stop = CancellationToken::new();
        let task = listener
            .map(|listener| tokio::spawn(serve_admin(listener, readiness.clone(), stop.clone())));
        Self {
            _stop_on_drop: stop.clone().drop_guard(),
            stop,
            task,
        }
    }

    async fn stop(self, id: &str) {
        self.stop.cancel();
        if let Some(mut task) = self.task {
            match tokio::time::timeout(ADMIN_GRACE, &mut task).await {
                Ok(Ok(Err(e))) => tracing::warn!(id, error = %e, "admin server failed"),
                Ok(_) => {}
                Err(_) => task.abort(),
            }
        }
    }
}

/// The push service jobs call.
struct PushServer {
    stop: CancellationToken,
    task: JoinHandle<Result<(), tonic::transport::Error>>,
}

impl PushServer {
    fn start(state: &CometState, grpc: TcpListener, tls: Option<tls::TlsAcceptor>) -> Self {
        let config = &state.config;
        // Only callers with the cluster secret (jobs) may push.
        let service = CometServer::with_interceptor(
            PushService::new(
                state.directory.clone(),
                &config.id,
                config.max_frame,
                state.drain_requested.clone(),
                state.resync.clone(),
            ),
            state.logic.secret().checker(),
        );
        let server = tonic::transport::Server::builder()
            .layer(courier_runtime::grpc_metrics::GrpcMetricsLayer)
            .add_service(service);
        let stop = CancellationToken::new();
        let task = match tls {
            Some(acceptor) => tokio::spawn(server.serve_with_incoming_shutdown(
                tls::incoming(grpc, acceptor, stop.clone()),
                stop.clone().cancelled_owned(),
            )),
            None => tokio::spawn(server.serve_with_incoming_shutdown(
                // Without TCP_NODELAY a reply split over two writes waits
                // for job's delayed ACK (~40 ms), and job's ordered worker
                // waits for the reply.
                TcpIncoming::from(grpc).with_nodelay(Some(true)),
                stop.clone().cancelled_owned(),
            )),
        };
        Self { stop, task }
    }

    /// Stops the service (unless it already `ended`) and says how it ended.
    async fn stop(
        mut self,
        ended: Option<Result<Result<(), tonic::transport::Error>, tokio::task::JoinError>>,
    ) -> Result<(), CometError> {
        self.stop.cancel();
        let ended = match ended {
            Some(ended) => ended,
            None => match tokio::time::timeout(GRPC_GRACE, &mut self.task).await {
                Ok(ended) => ended,
                Err(_) => {
                    self.task.abort();
                    Ok(Ok(()))
                }
            },
        };
        match ended {
            Ok(result) => result.map_err(CometError::from),
            Err(e) => Err(CometError::Task(e.to_string())),
        }
    }
}

/// The client accept loops (TCP, and WebSocket when enabled).
struct Accepting {
    stop: CancellationToken,
    tasks: Vec<JoinHandle<()>>,
}

impl Accepting {
    fn start(
        state: &Arc<CometState>,
        tcp: TcpListener,
        ws: Option<TcpListener>,
        tls: Option<tls::TlsAcceptor>,
    ) -> Self {
        let stop = CancellationToken::new();
        let mut listeners = vec![(tcp, Transport::Tcp)];
        listeners.extend(ws.map(|ws| (ws, Transport::WebSocket)));
        let tasks = listeners
            .into_iter()
            .map(|(listener, transport)| {
                tokio::spawn(accept_loop(
                    listener,
                    transport,
                    state.clone(),
                    tls.clone(),
                    stop.clone(),
                ))
            })
            .collect();
        Self { stop, tasks }
    }

    async fn stop(self) {
        self.stop.cancel();
        for task in self.tasks {
            let _ = task.await;
        }
    }
}

/// Tells every client to reconnect elsewhere, in waves, then closes what
/// is left and waits (boundedly) for the connections to end.
async fn drain_clients(state: &Arc<CometState>) {
    let config = &state.config;
    let drained = crate::drain::in_waves(state, config.drain_rate, config.drain_grace).await;
    if drained.out_of_time {
        tracing::warn!(
            id = %config.id, told = drained.told, left = state.directory.keys.len(),
            "drain grace over; telling the rest at once"
        );
    } else {
        tracing::info!(id = %config.id, told = drained.told, "every client moved");
    }
    state.draining.cancel();
    state.tracker.close();
    let grace = config.write_timeout + LOGIC_TIMEOUT + Duration::from_secs(1);
    if tokio::time::timeout(grace, state.tracker.wait())
        .await
        .is_err()
    {
        tracing::warn!(id = %config.id, "connections still closing after {grace:?}; leaving them");
    }
}

/// What stops after the clients, in this order: the session closer (the
/// last closes reach logic), the record in discovery, the push service,
/// the background tasks, the admin listener.
struct Teardown {
    id: String,
    closer: (CancellationToken, Option<JoinHandle<()>>),
    registration: courier_cluster::discovery::Registration,
    background: Background,
    admin: Admin,
}

impl Teardown {
    /// Stops everything in order; the push service after the record is
    /// gone, unless it already `ended`. Says how the push service ended.
    async fn run(
        self,
        push: PushServer,
        ended: Option<Result<Result<(), tonic::transport::Error>, tokio::task::JoinError>>,
    ) -> Result<(), CometError> {
        let (stop_closer, closer) = self.closer;
        stop_closer.cancel();
        if let Some(mut closer) = closer {
            if tokio::time::timeout(LOGIC_TIMEOUT, &mut closer)
                .await
                .is_err()
            {
                closer.abort();
            }
        }
        self.registration.deregister().await;
        let ended = push.stop(ended).await;
        self.background.stop().await;
        self.admin.stop(&self.id).await;
        ended
    }
}

/// Tells logic this comet process starts (see `CometStarted`), retrying
/// until a logic answers. `false` if `shutdown` fired first.
async fn announce_start(state: &CometState, shutdown: &CancellationToken) -> bool {
    let mut delays = Backoff::new(Duration::from_millis(50), Duration::from_secs(2));
    let request = CometStartedRequest {
        comet_id: state.id().to_owned(),
    };
    loop {
        match state.logic.comet_started(request.clone()).await {
            Ok(()) => return true,
            Err(e) => tracing::info!(error = %e, "waiting for a logic to announce this comet to"),
        }
        let delay = delays.next_delay();
        tokio::select! {
            _ = shutdown.cancelled() => return false,
            _ = tokio::time::sleep(delay) => {}
        }
    }
}

/// Binds and runs a comet until `shutdown` fires.
pub async fn serve(
    config: CometConfig,
    deps: CometDeps,
    shutdown: CancellationToken,
) -> Result<(), CometError> {
    Comet::bind(config, deps).await?.run(shutdown).await
}
