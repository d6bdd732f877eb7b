//! The comet's part of the TCP and WebSocket listeners' accept loop
//! ([`courier_runtime::acceptor`], which accepts, backs off on a failed
//! accept and writes refusals): who is let in, what a refused client is
//! told, and the task a client is served in. The handshake (TLS, the
//! WebSocket upgrade, `Auth`) runs in the connection's own task, so a slow
//! or hostile client never delays the next accept.
//!
//! Both listeners share the same admission, in this order: `accept_rate`
//! (refused `Busy`, counted in `courier_comet_accepts_refused_total`),
//! connections per address (`TooManyConnections`), handshakes in progress,
//! in all and per address (`TooManyConnections`, counted in
//! `courier_comet_handshakes_refused_total`). A refused TCP client gets an
//! error frame, a refused WebSocket client a `503` (its upgrade has not been
//! read). Connections and refusals run on the comet's task tracker, so the
//! drain waits for them.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, LazyLock};

use courier_proto::client::{ErrorCode, Frame};
use courier_proto::encode_frame;
use courier_runtime::acceptor::{self, tls_handshake, Admission, Verdict};
use courier_runtime::per_ip::IpSlot;
use courier_runtime::tls::TlsAcceptor;
use governor::DefaultDirectRateLimiter;
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::server::TlsStream;
use tokio_util::sync::CancellationToken;

use crate::connection;
use crate::limits::{rate_limiter, HandshakeSlot};
use crate::state::CometState;

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
    // One task type per transport and TLS or not (each handler below is
    // its own type), not one `match` inside a task: a task is as big as its
    // largest state, and a TLS stream's states would more than double every
    // plaintext connection's task.
    let stop = &stop;
    match (tls, transport) {
        (None, Transport::Tcp) => {
            let clients = Clients::new(&state, transport, |stream, peer, state, places| {
                serve_plain(connection::serve, stream, peer, state, places)
            });
            acceptor::run(listener, stop, clients).await
        }
        (None, Transport::WebSocket) => {
            let clients = Clients::new(&state, transport, |stream, peer, state, places| {
                serve_plain(crate::ws::serve, stream, peer, state, places)
            });
            acceptor::run(listener, stop, clients).await
        }
        (Some(tls), Transport::Tcp) => {
            let clients = Clients::new(&state, transport, move |stream, peer, state, places| {
                serve_tls(connection::serve, tls.clone(), stream, peer, state, places)
            });
            acceptor::run(listener, stop, clients).await
        }
        (Some(tls), Transport::WebSocket) => {
            let clients = Clients::new(&state, transport, move |stream, peer, state, places| {
                serve_tls(crate::ws::serve, tls.clone(), stream, peer, state, places)
            });
            acceptor::run(listener, stop, clients).await
        }
    }
}

/// An admitted client's places: among the handshakes in progress, and
/// among its address's connections.
type Places = (HandshakeSlot, IpSlot);

/// One listener's admission; `serve` makes an admitted client's task.
struct Clients<S> {
    state: Arc<CometState>,
    accepts: Option<DefaultDirectRateLimiter>,
    replies: &'static Replies,
    serve: S,
}

impl<S> Clients<S> {
    fn new<T>(state: &Arc<CometState>, transport: Transport, serve: S) -> Self
    where
        S: FnMut(TcpStream, SocketAddr, Arc<CometState>, Places) -> T,
    {
        Self {
            accepts: rate_limiter(state.config.accept_rate, &state.clock),
            state: state.clone(),
            replies: Replies::of(transport),
            serve,
        }
    }
}

impl<S, T> Admission for Clients<S>
where
    S: FnMut(TcpStream, SocketAddr, Arc<CometState>, Places) -> T + Send,
    T: Future<Output = ()> + Send + 'static,
{
    type Ticket = Places;

    async fn admit(&mut self, peer: SocketAddr) -> Verdict<Places> {
        if self.accepts.as_ref().is_some_and(|l| l.check().is_err()) {
            return Verdict::Refuse {
                reply: &self.replies.busy,
                counter: metrics::counter!("courier_comet_accepts_refused_total"),
            };
        }
        let Some(slot) = self.state.ip_connections.admit(peer.ip()) else {
            tracing::debug!(%peer, "refused: too many connections from this address");
            return Verdict::Refuse {
                reply: &self.replies.from_address,
                counter: metrics::Counter::noop(),
            };
        };
        let Some(handshaking) = self.state.handshakes.admit(peer.ip()) else {
            tracing::debug!(%peer, "refused: too many handshakes in progress");
            return Verdict::Refuse {
                reply: &self.replies.handshaking,
                counter: metrics::counter!("courier_comet_handshakes_refused_total"),
            };
        };
        Verdict::Admit((handshaking, slot))
    }

    fn serve(
        &mut self,
        stream: TcpStream,
        peer: SocketAddr,
        places: Places,
    ) -> impl Future<Output = ()> + Send + 'static {
        tracing::debug!(%peer, "accepted");
        (self.serve)(stream, peer, self.state.clone(), places)
    }

    fn spawn<F>(&self, task: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        self.state.tracker.spawn(task);
    }
}

/// Serves a plaintext connection with `serve` (the TCP or the WebSocket
/// handler), which gives the handshake's place back when the handshake
/// ends; the address's place is held to the end.
async fn serve_plain<F, Fut>(
    serve: F,
    stream: TcpStream,
    peer: SocketAddr,
    state: Arc<CometState>,
    (handshaking, slot): Places,
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
    (handshaking, slot): Places,
) where
    F: FnOnce(TlsStream<TcpStream>, Option<SocketAddr>, Arc<CometState>, HandshakeSlot) -> Fut,
    Fut: Future<Output = ()>,
{
    let limit = state.config.handshake_timeout;
    if let Some(stream) = tls_handshake(&tls, stream, peer, limit).await {
        serve(stream, Some(peer), state, handshaking).await;
    }
    drop(slot);
}

/// What a refused client is told, per reason: an error frame to a TCP
/// client, a `503` to a WebSocket client (whose upgrade has not been read).
/// Made once per transport.
struct Replies {
    busy: Vec<u8>,
    from_address: Vec<u8>,
    handshaking: Vec<u8>,
}

impl Replies {
    fn of(transport: Transport) -> &'static Self {
        static TCP: LazyLock<Replies> = LazyLock::new(|| Replies::new(Transport::Tcp));
        static WEBSOCKET: LazyLock<Replies> = LazyLock::new(|| Replies::new(Transport::WebSocket));
        match transport {
            Transport::Tcp => &TCP,
            Transport::WebSocket => &WEBSOCKET,
        }
    }

    fn new(transport: Transport) -> Self {
        let reply = |code: ErrorCode, why: &str| match transport {
            Transport::Tcp => encode_frame(&Frame::error(0, code, why)).to_vec(),
            Transport::WebSocket => format!(
                "HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\n\
                 Content-Length: {}\r\nConnection: close\r\n\r\n{why}",
                why.len()
            )
            .into_bytes(),
        };
        Self {
            busy: reply(ErrorCode::Busy, BUSY),
            from_address: reply(ErrorCode::TooManyConnections, FROM_ADDRESS),
            handshaking: reply(ErrorCode::TooManyConnections, HANDSHAKING),
        }
    }
}

const FROM_ADDRESS: &str = "too many connections from this address";
const HANDSHAKING: &str = "too many connections still authenticating; retry shortly";
const BUSY: &str = "this comet takes no more new connections this second; back off and retry";
