//! Serving the HTTP API: an accept loop over hyper with the limits axum's
//! own `serve` has no knobs for.
//!
//! - At most `max_connections` connections at once, and
//!   `max_connections_per_ip` from one client (an IPv4 address, an IPv6
//!   /64): one more is answered `503` with `Retry-After` and closed at once,
//!   so a flood costs a few bytes, not a file descriptor held open, and one
//!   client cannot hold every place.
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

use std::sync::Arc;
use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::Router;
use courier_runtime::per_ip::IpConnections;
use courier_runtime::tls::TlsAcceptor;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_io_timeout::TimeoutStream;
use tokio_util::either::Either;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

/// How long a refused connection gets to take its 503.
const REFUSE_WRITE: Duration = Duration::from_secs(1);
/// Pause after a failed accept (e.g. out of file descriptors).
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

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
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let per_ip = IpConnections::new(limits.max_connections_per_ip);
    let graceful = GracefulShutdown::new();
    let mut builder = Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout);
    loop {
        let accepted = tokio::select! {
            _ = stop.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(ACCEPT_BACKOFF).await;
                continue;
            }
        };
        let (Ok(slot), Some(ip_slot)) =
            (slots.clone().try_acquire_owned(), per_ip.admit(peer.ip()))
        else {
            metrics::counter!("courier_logic_http_refused_total").increment(1);
            tokio::spawn(refuse(stream));
            continue;
        };
        if let Err(e) = stream.set_nodelay(true) {
            tracing::debug!(error = %e, "cannot set TCP_NODELAY");
        }
        let app = app.clone();
        let service = tower::service_fn(move |mut request: hyper::Request<Incoming>| {
            request.extensions_mut().insert(ConnectInfo(peer));
            app.clone().oneshot(request)
        });
        let (builder, watcher, tls) = (builder.clone(), graceful.watcher(), tls.clone());
        tokio::spawn(async move {
            let stream = match tls {
                None => Either::Right(stream),
                Some(tls) => {
                    match tokio::time::timeout(limits.header_read_timeout, tls.accept(stream)).await
                    {
                        Ok(Ok(stream)) => Either::Left(stream),
                        Ok(Err(e)) => {
                            return tracing::debug!(%peer, error = %e, "TLS handshake failed")
                        }
                        Err(_) => return tracing::debug!(%peer, "TLS handshake timed out"),
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
            drop((slot, ip_slot));
        });
    }
    drop(listener);
    graceful.shutdown().await;
}

/// Tells a client over the connection cap to come back later, and closes.
async fn refuse(mut stream: TcpStream) {
    const BODY: &str =
        r#"{"error":{"code":"busy","message":"too many connections; retry shortly"}}"#;
    let reply = format!(
        "HTTP/1.1 503 Service Unavailable\r\nRetry-After: 1\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n{BODY}",
        BODY.len()
    );
    let _ = tokio::time::timeout(REFUSE_WRITE, stream.write_all(reply.as_bytes())).await;
}
