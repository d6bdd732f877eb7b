//! One client connection, from the first byte to its close queued for logic.
//!
//! The handler is generic over `AsyncRead + AsyncWrite`: the TCP listener
//! and the in-memory duplex of the tests run the same code, and any other
//! byte stream could.
//! It runs in the connection's own task: handshake first (under its own
//! timeout), then a reader ([`session`]) in this task and a writer
//! ([`writer`]) in another, joined by the connection's [`Outbox`]. Whatever
//! ends the connection, the cleanup is the same: leave every room, leave the
//! key index, let the writer finish, queue the close for logic (the
//! [`crate::closer`] batches them).

mod acks;
mod handshake;
mod pages;
mod room_set;
mod session;
mod writer;

use std::net::SocketAddr;
use std::sync::Arc;

use courier_proto::{encode_frame, FrameCodec};
use rand::Rng;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio_util::codec::FramedRead;

use crate::limits::HandshakeSlot;
use crate::logic_client::LOGIC_TIMEOUT;
use crate::outbox::{Bounds, Outbox};
use crate::registry::Identity;
use crate::state::CometState;

/// Initial read buffer; it grows only for large frames.
const READ_BUFFER: usize = 512;
/// Range of the delay a draining comet tells its clients to wait.
const RECONNECT_JITTER_MS: std::ops::RangeInclusive<u32> = 200..=5_000;

/// A random reconnect delay, so a draining comet's clients do not all
/// reconnect at once.
pub(crate) fn reconnect_jitter_ms() -> u32 {
    rand::rng().random_range(RECONNECT_JITTER_MS)
}

/// Serves one client connection until it ends. `handshaking` is its place
/// among the connections not yet authenticated, given back once the
/// handshake ends.
pub(crate) async fn serve<S>(
    stream: S,
    peer: Option<SocketAddr>,
    state: Arc<CometState>,
    handshaking: HandshakeSlot,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    metrics::counter!("courier_comet_connections_total").increment(1);
    let config = &state.config;
    let (read, write) = tokio::io::split(stream);
    // Until the client has authenticated, only an Auth-sized frame is read.
    let mut frames =
        FramedRead::with_capacity(read, FrameCodec::new(config.max_auth_frame), READ_BUFFER);
    let key = state.next_key();
    // The handshake's futures (a gRPC call among them) are boxed: they live
    // only until the client is in, and inlined they would make every
    // connection's task as big as the biggest of them for its whole life.
    let hello = match Box::pin(handshake::read_auth(&mut frames, &state)).await {
        Ok(hello) => hello,
        Err(refusal) => return Box::pin(refuse(refusal, write, peer, &state)).await,
    };
    // In the directory (holding pushes back) before logic opens the session,
    // so nothing published for this connection from then on is missed.
    let bounds = Bounds {
        frames: config.outbound_queue,
        bytes: config.outbound_bytes,
    };
    let (outbox, queue) = Outbox::new(key.clone(), bounds, state.directory.counters.clone());
    // One copy of the uid, shared by the index and the session.
    let uid: Arc<str> = Arc::from(hello.uid.as_str());
    let identity = Identity {
        uid: uid.clone(),
        device: (!hello.device.is_empty()).then(|| Arc::from(hello.device.as_str())),
        token: hello.token,
    };
    let token = hello.token;
    state.directory.keys.insert(outbox.clone(), identity);
    // Checked again now that a revocation's scan would find it: one applied
    // since the token was checked is not missed.
    if state.revoked.borrow().revokes_stamp(&uid, token) {
        state.directory.keys.remove(&key);
        let refusal = handshake::Refusal::error(
            hello.frame_id,
            courier_proto::client::ErrorCode::TokenRevoked,
            "this token was revoked; log in again",
            "revoked token",
        );
        return Box::pin(refuse(refusal, write, peer, &state)).await;
    }
    let auth = match Box::pin(handshake::open(&state, &key, hello)).await {
        Ok(auth) => auth,
        Err(refusal) => {
            state.directory.keys.remove(&key);
            return Box::pin(refuse(refusal, write, peer, &state)).await;
        }
    };
    drop(handshaking);
    // From here on the connection is mostly idle: its read buffer goes
    // whenever it is emptied, so an idle connection holds none.
    *frames.decoder_mut() = FrameCodec::new(config.max_frame).release_when_empty();
    if frames.read_buffer().is_empty() {
        *frames.read_buffer_mut() = bytes::BytesMut::new();
    }

    let writer = tokio::spawn(writer::run(
        write,
        queue,
        outbox.clone(),
        config.write_timeout,
        config.outbound_queue,
    ));
    metrics::gauge!("courier_comet_connections").increment(1.0);
    // Debug, not info: a reconnect storm is tens of thousands of these a
    // second, and `courier_comet_connections` already counts them.
    tracing::debug!(?peer, %uid, %key, "client connected");

    // Leaves the key index when dropped.
    let mut session = session::Session::new(state.clone(), outbox.clone(), uid.clone());
    Box::pin(session.start(auth)).await;
    let reason = session.run(&mut frames).await;

    let heartbeat = session.heartbeat_gate();
    drop(session); // leaves every room and the key index
    outbox.finish();
    if let Err(e) = writer.await {
        tracing::error!(%key, error = %e, "connection writer failed");
    }
    drop(frames);
    metrics::gauge!("courier_comet_connections").decrement(1.0);
    tracing::debug!(?peer, %uid, %key, reason, "client disconnected");
    // A session check still in flight must land before the close, not
    // after it.
    if let Some(heartbeat) = heartbeat {
        let _ = tokio::time::timeout(LOGIC_TIMEOUT, heartbeat.acquire()).await;
    }
    state.closer.close(uid.to_string(), key.to_string()).await;
}

/// Tells a client why the handshake ended, briefly, and closes the socket.
async fn refuse<W: AsyncWrite + Unpin>(
    refusal: handshake::Refusal,
    mut write: W,
    peer: Option<SocketAddr>,
    state: &CometState,
) {
    tracing::debug!(?peer, reason = refusal.reason, "handshake refused");
    if let Some(frame) = refusal.frame {
        let bytes = encode_frame(&frame);
        let _ = tokio::time::timeout(state.config.write_timeout, async {
            write.write_all(&bytes).await?;
            write.flush().await?;
            write.shutdown().await
        })
        .await;
    }
}
