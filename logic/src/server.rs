//! Binding and running logic: the HTTP API and the gRPC service side by side.
//!
//! `bind` does everything that can fail fast (config checks, both listeners,
//! the discovery watch) so a caller learns the real ports (port 0 works)
//! before anything is served. `run` registers this logic in discovery, serves
//! both protocols until the shutdown token fires, then drains: the servers
//! stop accepting, in-flight requests finish within [`DRAIN_DEADLINE`], and
//! the registration is removed. If either server fails, the other is stopped
//! too and the error is returned. `/readyz` answers 200 from registration
//! until the drain starts, 503 before and after. The admin listener
//! (`/metrics`, `/healthz`, `/readyz`) is apart from the public API, so
//! metrics are not served to the internet; the probes answer on both.

use std::net::SocketAddr;

use courier_runtime::tls::{self, Alpn, ServerTls};
use std::sync::Arc;
use std::time::Duration;

use courier_cluster::discovery::register_json;
use courier_cluster::{Backends, Discovery, LogicNode, ServiceKind};
use courier_proto::logic::logic_server::LogicServer;
use courier_runtime::net::{self, advertised};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic::transport::server::TcpIncoming;

use crate::config::LogicConfig;
use crate::error::LogicError;
use crate::grpc::LogicService;
use crate::nodes::CometView;
use crate::state::LogicState;

/// How long in-flight requests may take to finish after shutdown.
pub(crate) const DRAIN_DEADLINE: Duration = Duration::from_secs(10);
/// How often idle per-IP rate-limit entries are dropped.
const LIMITER_SWEEP: Duration = Duration::from_secs(60);

/// A bound, not yet serving, logic.
pub struct Logic {
    shared: Arc<LogicState>,
    /// The serving certificate, when the listeners speak TLS.
    tls: Option<Arc<ServerTls>>,
    discovery: Arc<dyn Discovery>,
    http: TcpListener,
    grpc: TcpListener,
    http_addr: SocketAddr,
    grpc_addr: SocketAddr,
    /// `/metrics`, `/healthz` and `/readyz` for operators, apart from the
    /// public API; `None` when disabled.
    admin: Option<(TcpListener, SocketAddr)>,
}

impl std::fmt::Debug for Logic {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Logic")
            .field("id", &self.id())
            .field("http_addr", &self.http_addr)
            .field("grpc_addr", &self.grpc_addr)
            .finish()
    }
}

async fn listen(
    what: &'static str,
    addr: SocketAddr,
) -> Result<(TcpListener, SocketAddr), LogicError> {
    net::bind(addr)
        .await
        .map_err(|source| LogicError::Bind { what, addr, source })
}

impl Logic {
    /// Checks `config`, binds the HTTP and gRPC listeners and starts
    /// following the comets in discovery.
    pub async fn bind(config: LogicConfig, backends: Backends) -> Result<Logic, LogicError> {
        config.validate().map_err(LogicError::Config)?;
        let secret = courier_runtime::ClusterSecret::new(&config.cluster_secret)
            .map_err(|e| LogicError::Config(format!("cluster_secret: {e}")))?;
        if config.api_key.is_empty() && config.api_keys.is_empty() {
            tracing::warn!(
                "no API key configured: push, read and admin routes refuse every request"
            );
        }
        let tls_error = |e: courier_runtime::tls::TlsError| LogicError::Config(format!("tls: {e}"));
        let tls = config.tls.server().map_err(tls_error)?;
        let comet_tls = config.tls.tonic_client().map_err(tls_error)?;
        let (http, http_addr) = listen("http", config.http_addr).await?;
        let (grpc, grpc_addr) = listen("grpc", config.grpc_addr).await?;
        let admin = match config.admin_addr {
            Some(addr) => Some(listen("admin", addr).await?),
            None => None,
        };
        let comets = CometView::follow(backends.discovery.as_ref()).await?;
        let revocations =
            crate::revocations::Revocations::follow(backends.discovery.clone(), config.token_ttl)
                .await?;
        let hooks = crate::hooks::Hooks::new(config.hooks.clone()).map_err(LogicError::Config)?;
        let shared = LogicState::new(
            config,
            &backends,
            comets,
            revocations,
            hooks,
            secret,
            comet_tls,
        );
        Ok(Logic {
            shared,
            tls,
            discovery: backends.discovery,
            http,
            grpc,
            http_addr,
            grpc_addr,
            admin,
        })
    }

    /// This logic's id in discovery.
    pub fn id(&self) -> &str {
        &self.shared.config.id
    }

    /// Where the HTTP API listens.
    pub fn http_addr(&self) -> SocketAddr {
        self.http_addr
    }

    /// Where the gRPC service listens.
    pub fn grpc_addr(&self) -> SocketAddr {
        self.grpc_addr
    }

    /// Where `/metrics`, `/healthz` and `/readyz` are served for operators;
    /// `None` when disabled.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin.as_ref().map(|(_, addr)| *addr)
    }

    /// Registers in discovery and serves until `shutdown` fires, then drains
    /// and deregisters.
    pub async fn run(self, shutdown: CancellationToken) -> Result<(), LogicError> {
        let Logic {
            shared,
            tls,
            discovery,
            http,
            grpc,
            http_addr,
            grpc_addr,
            admin,
        } = self;

        // Stage 1: the record in discovery.
        let host = shared.config.advertise_host.as_deref();
        let node = LogicNode {
            id: shared.config.id.clone(),
            grpc: advertised(grpc_addr, host),
            http: advertised(http_addr, host),
        };
        let registration =
            register_json(discovery.as_ref(), ServiceKind::Logic, &node.id, &node).await?;
        tracing::info!(id = %node.id, http = %http_addr, grpc = %grpc_addr, "logic serving");

        // Stage 2: readiness, the admin listener and the watchers; all of
        // them stop with `stop`.
        let stop = shutdown.child_token();
        spawn_watchers(&shared, discovery.as_ref(), admin, &stop).await?;

        // Stage 3: both servers, until `shutdown` or until one fails; then
        // in-flight requests get [`DRAIN_DEADLINE`].
        let tls_error = |e: courier_runtime::tls::TlsError| LogicError::Config(format!("tls: {e}"));
        let (http_tls, grpc_tls) = match &tls {
            Some(tls) => {
                tls.watch(stop.clone());
                (
                    Some(tls.acceptor(Alpn::Http).map_err(tls_error)?),
                    Some(tls.acceptor(Alpn::H2).map_err(tls_error)?),
                )
            }
            None => (None, None),
        };
        let servers = async {
            let (h, g) = tokio::join!(
                serve_http(shared.clone(), http, http_tls, stop.clone()),
                serve_grpc(shared.clone(), grpc, grpc_tls, stop.clone()),
            );
            h.and(g)
        };
        let deadline = async {
            stop.cancelled().await;
            tokio::time::sleep(DRAIN_DEADLINE).await;
        };
        let result = tokio::select! {
            result = servers => result,
            () = deadline => {
                tracing::warn!(deadline = ?DRAIN_DEADLINE, "drain deadline passed; closing remaining requests");
                Ok(())
            }
        };

        // Stage 4: out of discovery.
        stop.cancel();
        registration.deregister().await;
        tracing::info!(id = %node.id, "logic stopped");
        result
    }
}

/// Readiness (on now, off when `stop` fires), the admin listener and every
/// task that watches the cluster for this logic, all stopping with `stop`.
async fn spawn_watchers(
    shared: &Arc<LogicState>,
    discovery: &dyn Discovery,
    admin: Option<(TcpListener, SocketAddr)>,
    stop: &CancellationToken,
) -> Result<(), LogicError> {
    let readiness = shared.readiness.clone();
    readiness.set_ready(true);
    tokio::spawn({
        let (readiness, stop) = (readiness.clone(), stop.clone());
        async move {
            stop.cancelled().await;
            readiness.set_ready(false);
        }
    });
    if let Some((listener, _)) = admin {
        tokio::spawn(courier_runtime::admin::serve_admin(
            listener,
            readiness,
            stop.clone(),
        ));
    }
    tokio::spawn(sweep_limiter(shared.clone(), stop.clone()));
    tokio::spawn(crate::resync::watch_store(shared.clone(), stop.clone()));
    tokio::spawn(crate::store_watch::watch_store(
        shared.clone(),
        stop.clone(),
    ));
    tokio::spawn(crate::queue_watch::watch_queue(
        shared.clone(),
        stop.clone(),
    ));
    let comets = discovery.watch(ServiceKind::Comet).await?;
    tokio::spawn(crate::departures::forget_departed(
        comets,
        shared.sessions.clone(),
        shared.config.comet_departure_grace,
        stop.clone(),
    ));
    Ok(())
}

/// The HTTP API until `stop`; stops the gRPC service too when it ends.
async fn serve_http(
    shared: Arc<LogicState>,
    listener: TcpListener,
    tls: Option<tls::TlsAcceptor>,
    stop: CancellationToken,
) -> Result<(), LogicError> {
    let app = crate::http::router(shared.clone());
    let limits = crate::http::serve::Limits {
        max_connections: shared.config.max_connections,
        max_connections_per_ip: shared.config.max_connections_per_ip,
        header_read_timeout: shared.config.header_read_timeout,
        idle_timeout: shared.config.idle_timeout,
    };
    crate::http::serve::serve(listener, app, limits, tls, stop.clone()).await;
    stop.cancel();
    Ok(())
}

/// The gRPC service comets call, until `stop`; stops the HTTP API too when
/// it ends. Only callers with the cluster secret (comets) may call.
async fn serve_grpc(
    shared: Arc<LogicState>,
    listener: TcpListener,
    tls: Option<tls::TlsAcceptor>,
    stop: CancellationToken,
) -> Result<(), LogicError> {
    let secret = shared.cluster_secret.checker();
    let service = LogicServer::with_interceptor(LogicService::new(shared), secret);
    let server = tonic::transport::Server::builder()
        .layer(courier_runtime::grpc_metrics::GrpcMetricsLayer)
        .add_service(service);
    let shutdown = stop.clone().cancelled_owned();
    let result = match tls {
        Some(acceptor) => {
            let incoming = tls::incoming(listener, acceptor, stop.clone());
            server
                .serve_with_incoming_shutdown(incoming, shutdown)
                .await
        }
        None => {
            let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
            server
                .serve_with_incoming_shutdown(incoming, shutdown)
                .await
        }
    };
    stop.cancel();
    result.map_err(|e| LogicError::Serve {
        what: "grpc",
        message: e.to_string(),
    })
}

/// Binds and runs a logic until `shutdown` fires.
pub async fn serve(
    config: LogicConfig,
    backends: Backends,
    shutdown: CancellationToken,
) -> Result<(), LogicError> {
    Logic::bind(config, backends).await?.run(shutdown).await
}

/// Drops rate-limit state of addresses and users that have been quiet, so
/// the limiters hold only recently active keys (each limiter is swept
/// whether or not the others are configured).
async fn sweep_limiter(shared: Arc<LogicState>, stop: CancellationToken) {
    let mut tick = tokio::time::interval(LIMITER_SWEEP);
    loop {
        tokio::select! {
            _ = tick.tick() => {
                if let Some(limiter) = &shared.auth_limiter {
                    limiter.retain_recent();
                    limiter.shrink_to_fit();
                }
                if let Some(limiter) = &shared.login_limiter {
                    limiter.retain_recent();
                    limiter.shrink_to_fit();
                }
                if let Some(limiter) = &shared.read_limiter {
                    limiter.retain_recent();
                    limiter.shrink_to_fit();
                }
                shared.send_quota.sweep();
            }
            () = stop.cancelled() => break,
        }
    }
}
