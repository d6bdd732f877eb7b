//! The accept loops of the TCP and WebSocket listeners. They only accept
//! and spawn: the handshake (TLS, the WebSocket upgrade, `Auth`) runs in
//! the connection's own task, so a slow or hostile client never delays the
//! next accept. Both listeners share the same admission: `accept_rate`,
//! connections per address, handshakes in progress.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use courier_proto::client::{ErrorCode, Frame};
use courier_proto::encode_frame;
use courier_runtime::tls::TlsAcceptor;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::server::TlsStream;
use tokio_util::sync::CancellationToken;

use crate::connection;
use courier_runtime::per_ip::IpSlot;

use crate::limits::{rate_limiter, HandshakeSlot};
use crate::state::CometState;

/// Pause after a failed accept (e.g. out of file descriptors).
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// How long a refused client is given to take its error frame.
const REFUSE_WRITE_TIMEOUT: Duration = Duration::from_secs(1);

/// What a listener's clients speak.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Transport {
    /// Length-prefixed frames on the socket.
    Tcp,
    /// An HTTP upgrade to a WebSocket at [`crate::ws::PATH`], then one
    /// frame per message.
    WebSocket,
}

/// Accepts clients until `stop` fires. With `tls`, each connection's TLS
/// handshake runs in its own task, within `handshake_timeout` and holding
/// its place among the connections still handshaking.
pub(crate) async fn accept_loop(
    listener: TcpListener,
    transport: Transport,
    state: Arc<CometState>,
    tls: Option<TlsAcceptor>,
    stop: CancellationToken,
) {
    let accepts = rate_limiter(state.config.accept_rate, &state.clock);
    loop {
        let accepted = tokio::select! {
            _ = stop.cancelled() => return,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((stream, peer)) => {
                if accepts.as_ref().is_some_and(|l| l.check().is_err()) {
                    metrics::counter!("courier_comet_accepts_refused_total").increment(1);
                    state
                        .tracker
                        .spawn(refuse(stream, transport, ErrorCode::Busy, BUSY));
                    continue;
                }
                let Some(slot) = state.ip_connections.admit(peer.ip()) else {
                    tracing::debug!(%peer, "refused: too many connections from this address");
                    state.tracker.spawn(refuse(
                        stream,
                        transport,
                        ErrorCode::TooManyConnections,
                        FROM_ADDRESS,
                    ));
                    continue;
                };
                let Some(handshaking) = state.handshakes.admit(peer.ip()) else {
                    tracing::debug!(%peer, "refused: too many handshakes in progress");
                    metrics::counter!("courier_comet_handshakes_refused_total").increment(1);
                    state.tracker.spawn(refuse(
                        stream,
                        transport,
                        ErrorCode::TooManyConnections,
                        HANDSHAKING,
                    ));
                    continue;
                };
                if let Err(e) = stream.set_nodelay(true) {
                    tracing::debug!(%peer, error = %e, "cannot set TCP_NODELAY");
                }
                tracing::debug!(%peer, "accepted");
                // Two task types, not one `match` inside a task: a task is
                // as big as its largest state, and a TLS stream's states
                // would more than double every plaintext connection's task.
                let tracker = state.tracker.clone();
                let state = state.clone();
                // One task type per transport and TLS or not (each handler
                // call below is its own type).
                match (&tls, transport) {
                    (None, Transport::Tcp) => tracker.spawn(serve_plain(
                        connection::serve,
                        stream,
                        peer,
                        state,
                        handshaking,
                        slot,
                    )),
                    (None, Transport::WebSocket) => tracker.spawn(serve_plain(
                        crate::ws::serve,
                        stream,
                        peer,
                        state,
                        handshaking,
                        slot,
                    )),
                    (Some(tls), Transport::Tcp) => tracker.spawn(serve_tls(
                        connection::serve,
                        tls.clone(),
                        stream,
                        peer,
                        state,
                        handshaking,
                        slot,
                    )),
                    (Some(tls), Transport::WebSocket) => tracker.spawn(serve_tls(
                        crate::ws::serve,
                        tls.clone(),
                        stream,
                        peer,
                        state,
                        handshaking,
                        slot,
                    )),
                };
            }
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(ACCEPT_BACKOFF) => {}
                }
            }
        }
    }
}

/// Serves a plaintext connection with `serve` (the TCP or the WebSocket
/// handler); `slot` is its place among its address's connections.
async fn serve_plain<F, Fut>(
    serve: F,
    stream: TcpStream,
    peer: SocketAddr,
    state: Arc<CometState>,
    handshaking: HandshakeSlot,
    slot: IpSlot,
) where
    F: FnOnce(TcpStream, Option<SocketAddr>, Arc<CometState>, HandshakeSlot) -> Fut,
    Fut: Future<Output = ()>,
{
    serve(stream, Some(peer), state, handshaking).await;
    drop(slot);
}

/// Serves a connection with `serve` after its TLS handshake (within
/// `handshake_timeout`).
async fn serve_tls<F, Fut>(
    serve: F,
    tls: TlsAcceptor,
    stream: TcpStream,
    peer: SocketAddr,
    state: Arc<CometState>,
    handshaking: HandshakeSlot,
    slot: IpSlot,
) where
    F: FnOnce(TlsStream<TcpStream>, Option<SocketAddr>, Arc<CometState>, HandshakeSlot) -> Fut,
    Fut: Future<Output = ()>,
{
    let limit = state.config.handshake_timeout;
    match tokio::time::timeout(limit, tls.accept(stream)).await {
        Ok(Ok(stream)) => serve(stream, Some(peer), state, handshaking).await,
        Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
        Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
    }
    drop(slot);
}

const FROM_ADDRESS: &str = "too many connections from this address";
const HANDSHAKING: &str = "too many connections still authenticating; retry shortly";
const BUSY: &str = "this comet takes no more new connections this second; back off and retry";

/// Tells a refused client why, briefly, then closes its socket: an error
/// frame to a TCP client, a `503` to a WebSocket client (whose upgrade
/// has not been read).
async fn refuse(mut stream: TcpStream, transport: Transport, code: ErrorCode, why: &'static str) {
    let bytes = match transport {
        Transport::Tcp => encode_frame(&Frame::error(0, code, why)),
        Transport::WebSocket => bytes::Bytes::from(format!(
            "HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n{why}",
            why.len()
        )),
    };
    let _ = tokio::time::timeout(REFUSE_WRITE_TIMEOUT, stream.write_all(&bytes)).await;
}
