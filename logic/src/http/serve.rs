//! Serving the HTTP API: hyper connections under the limits axum's own
//! `serve` has no knobs for, on the accept loop every Courier listener runs
//! ([`courier_runtime::acceptor`]: the backoff on a failed accept, the
//! refusal written by a task of its own, `TCP_NODELAY`).
//!
//! - At most `max_connections` connections at once, and
//!   `max_connections_per_ip` from one client (an IPv4 address, an IPv6
//!   /64): one more is answered `503` with `Retry-After` (counted in
//!   `courier_logic_http_refused_total`) and closed at once, so a flood
//!   costs a few bytes, not a file descriptor held open, and one client
//!   cannot hold every place.
//! - A request head must arrive within `header_read_timeout` once it has
//!   begun (hyper's HTTP/1 timer), so a client holding half a head loses
//!   its socket.
//! - A connection that sends nothing for `idle_timeout` (before its first
//!   request or between keep-alive requests) is closed: hyper's timer only
//!   starts at a head's first byte.
//! - A request must be answered within `request_timeout` (a `408` after;
//!   see the router's layers).
//! - Nagle is off: replies are small writes.
//! - With TLS, the handshake runs in the connection's own task, within
//!   `header_read_timeout`, never in the accept loop.
//!
//! On shutdown the listener closes and open connections finish their
//! in-flight requests (graceful), within the caller's deadline.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::Router;
use courier_runtime::acceptor::{self, tls_handshake, Admission, Verdict};
use courier_runtime::per_ip::{IpConnections, IpSlot};
use courier_runtime::tls::TlsAcceptor;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_io_timeout::TimeoutStream;
use tokio_util::either::Either;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

/// The limits of the HTTP listener.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    pub(crate) max_connections: usize,
    pub(crate) max_connections_per_ip: u32,
    pub(crate) header_read_timeout: Duration,
    pub(crate) idle_timeout: Duration,
}

/// Serves `app` on `listener` until `stop` fires, then lets open
/// connections finish (the caller bounds how long).
pub(crate) async fn serve(
    listener: TcpListener,
    app: Router,
    limits: Limits,
    tls: Option<TlsAcceptor>,
    stop: CancellationToken,
) {
    let graceful = GracefulShutdown::new();
    let mut builder = Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout);
    let connections = Connections {
        slots: Arc::new(Semaphore::new(limits.max_connections.max(1))),
        per_ip: IpConnections::new(limits.max_connections_per_ip),
        graceful: &graceful,
        builder,
        app,
        limits,
        tls,
    };
    // Closes the listener when `stop` fires.
    acceptor::run(listener, &stop, connections).await;
    graceful.shutdown().await;
}

/// The HTTP listener's admission and connections.
struct Connections<'a> {
    slots: Arc<Semaphore>,
    per_ip: Arc<IpConnections>,
    graceful: &'a GracefulShutdown,
    builder: Builder<TokioExecutor>,
    app: Router,
    limits: Limits,
    tls: Option<TlsAcceptor>,
}

impl Admission for Connections<'_> {
    type Ticket = (OwnedSemaphorePermit, IpSlot);

    async fn admit(&mut self, peer: SocketAddr) -> Verdict<Self::Ticket> {
        match (
            self.slots.clone().try_acquire_owned(),
            self.per_ip.admit(peer.ip()),
        ) {
            (Ok(slot), Some(ip_slot)) => Verdict::Admit((slot, ip_slot)),
            _ => Verdict::Refuse {
                reply: BUSY.as_bytes(),
                counter: metrics::counter!("courier_logic_http_refused_total"),
            },
        }
    }

    fn serve(
        &mut self,
        stream: TcpStream,
        peer: SocketAddr,
        places: Self::Ticket,
    ) -> impl Future<Output = ()> + Send + 'static {
        let app = self.app.clone();
        let service = tower::service_fn(move |mut request: hyper::Request<Incoming>| {
            request.extensions_mut().insert(ConnectInfo(peer));
            app.clone().oneshot(request)
        });
        let (builder, watcher, tls) = (
            self.builder.clone(),
            self.graceful.watcher(),
            self.tls.clone(),
        );
        let limits = self.limits;
        async move {
            let stream = match tls {
                None => Either::Right(stream),
                Some(tls) => {
                    match tls_handshake(&tls, stream, peer, limits.header_read_timeout).await {
                        Some(stream) => Either::Left(stream),
                        None => return,
                    }
                }
            };
            let mut stream = TimeoutStream::new(stream);
            stream.set_read_timeout(Some(limits.idle_timeout));
            let connection = builder
                .serve_connection_with_upgrades(
                    TokioIo::new(Box::pin(stream)),
                    TowerToHyperService::new(service),
                )
                .into_owned();
            let connection = watcher.watch(connection);
            if let Err(e) = connection.await {
                tracing::debug!(%peer, error = %e, "HTTP connection ended with an error");
            }
            drop(places);
        }
    }
}

/// What a client over the connection cap is told: come back later.
static BUSY: LazyLock<String> = LazyLock::new(|| {
    const BODY: &str =
        r#"{"error":{"code":"busy","message":"too many connections; retry shortly"}}"#;
    format!(
        "HTTP/1.1 503 Service Unavailable\r\nRetry-After: 1\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n{BODY}",
        BODY.len()
    )
});
