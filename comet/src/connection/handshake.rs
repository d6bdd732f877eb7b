//! The handshake: the first frame must be `Auth`, within
//! `handshake_timeout`, carrying a token this comet can verify locally
//! ([`read_auth`]). Logic then opens the session, and may refuse it by login
//! policy, and returns the page of the user's inbox the client missed since
//! the position its `Auth` carried ([`open`]).
//!
//! It runs inside the connection's own task, never in the accept loop, so
//! one slow client delays nobody else. A refusal carries the frame to send
//! before closing.

use courier_proto::client::{frame::Body, Auth, ErrorCode, Frame, Reconnect};
use courier_proto::logic::{ConnectRequest, Page};
use courier_proto::names::{check_device, check_room, check_uid};
use courier_proto::{CodecError, FrameCodec};
use courier_runtime::revoked::TokenStamp;
use futures::StreamExt;
use tokio::io::AsyncRead;
use tokio_util::codec::FramedRead;

use crate::state::CometState;

/// Room left in a frame for everything but the messages of a page.
pub(crate) const PAGE_OVERHEAD: usize = 1024;

/// A client whose token checked out, not yet known to logic.
#[derive(Debug)]
pub(crate) struct Hello {
    /// The `Auth` frame's id, echoed in `AuthReply`.
    pub(crate) frame_id: u64,
    pub(crate) uid: String,
    pub(crate) rooms: Vec<String>,
    /// The inbox position the client resumes from.
    pub(crate) last_seq: u64,
    pub(crate) epoch: u64,
    /// The client's device id, or empty.
    pub(crate) device: String,
    /// When the token expires, seconds since the epoch.
    pub(crate) expires: u64,
    /// What a revocation finds the token by.
    pub(crate) token: TokenStamp,
}

/// An authenticated client with an open session.
#[derive(Debug)]
pub(crate) struct Authenticated {
    pub(crate) frame_id: u64,
    pub(crate) rooms: Vec<String>,
    /// The inbox after the client's position: its first page.
    pub(crate) inbox: Page,
    pub(crate) device: String,
    /// When the token expires, seconds since the epoch.
    pub(crate) expires: u64,
}

/// Why the handshake ended without a session, and what to tell the client.
#[derive(Debug)]
pub(crate) struct Refusal {
    /// The last frame to send, if any (none when the client hung up).
    pub(crate) frame: Option<Frame>,
    pub(crate) reason: &'static str,
}

impl Refusal {
    pub(crate) fn error(
        id: u64,
        code: ErrorCode,
        message: impl Into<String>,
        reason: &'static str,
    ) -> Self {
        Self {
            frame: Some(Frame::error(id, code, message)),
            reason,
        }
    }
}

/// Reads the `Auth` frame and verifies its token.
pub(crate) async fn read_auth<R: AsyncRead + Unpin>(
    frames: &mut FramedRead<R, FrameCodec>,
    state: &CometState,
) -> Result<Hello, Refusal> {
    let first = tokio::select! {
        _ = state.draining.cancelled() => {
            return Err(Refusal {
                frame: Some(Frame::new(0, Body::Reconnect(Reconnect { after_ms: super::reconnect_jitter_ms() }))),
                reason: "draining",
            });
        }
        first = tokio::time::timeout(state.config.handshake_timeout, frames.next()) => first,
    };
    let frame = match first {
        Err(_) => {
            return Err(Refusal::error(
                0,
                ErrorCode::HandshakeTimeout,
                "no Auth frame within the handshake timeout",
                "handshake timeout",
            ))
        }
        Ok(None) => {
            return Err(Refusal {
                frame: None,
                reason: "closed before Auth",
            })
        }
        Ok(Some(Err(e))) => return Err(bad_frame(&e)),
        Ok(Some(Ok(frame))) => frame,
    };
    let id = frame.id;
    let Some(Body::Auth(Auth {
        token,
        last_seq,
        rooms,
        epoch,
        device,
    })) = frame.body
    else {
        return Err(Refusal::error(
            id,
            ErrorCode::Unauthenticated,
            "the first frame must be Auth",
            "first frame not Auth",
        ));
    };
    let claims = match state.tokens.verify(&token) {
        Ok(claims) => claims,
        Err(e) => {
            return Err(Refusal::error(
                id,
                ErrorCode::Unauthenticated,
                e.to_string(),
                "bad token",
            ))
        }
    };
    if check_uid(&claims.sub).is_err() {
        return Err(Refusal::error(
            id,
            ErrorCode::Unauthenticated,
            "token names an invalid uid",
            "bad uid",
        ));
    }
    if state.revoked.borrow().revokes(&claims) {
        return Err(Refusal::error(
            id,
            ErrorCode::TokenRevoked,
            "this token was revoked; log in again",
            "revoked token",
        ));
    }
    let token = TokenStamp::of(&claims);
    let (uid, expires) = (claims.sub, claims.exp);
    // What the connection may join at most, and nothing twice: logic checks
    // each room's rules at the open.
    let mut wanted: Vec<String> = Vec::with_capacity(rooms.len().min(state.config.max_rooms));
    for room in rooms {
        if wanted.len() == state.config.max_rooms {
            break;
        }
        if check_room(&room).is_ok() && !wanted.contains(&room) {
            wanted.push(room);
        }
    }
    let rooms = wanted;
    if !device.is_empty() {
        if let Err(e) = check_device(&device) {
            return Err(Refusal::error(
                id,
                ErrorCode::BadRequest,
                e.to_string(),
                "bad device id",
            ));
        }
    }
    Ok(Hello {
        frame_id: id,
        uid,
        rooms,
        last_seq,
        epoch,
        device,
        expires,
        token,
    })
}

/// Opens the session in logic as `key`, with the first page of the inbox.
pub(crate) async fn open(
    state: &CometState,
    key: &str,
    hello: Hello,
) -> Result<Authenticated, Refusal> {
    let request = ConnectRequest {
        comet_id: state.id().to_owned(),
        uid: hello.uid.clone(),
        key: key.to_owned(),
        rooms: hello.rooms.clone(),
        last_seq: hello.last_seq,
        epoch: hello.epoch,
        max_bytes: page_bytes(state.config.max_frame),
        device: hello.device.clone(),
    };
    let id = hello.frame_id;
    match state.opener.open(request).await {
        Ok(reply) => Ok(Authenticated {
            frame_id: id,
            // The rooms the room rules let this user into, in the order asked.
            rooms: hello
                .rooms
                .into_iter()
                .filter(|room| !reply.denied_rooms.contains(room))
                .collect(),
            inbox: reply.inbox.unwrap_or_default(),
            device: hello.device,
            expires: hello.expires,
        }),
        Err(e) if e.is_refusal() => Err(Refusal::error(
            id,
            ErrorCode::Rejected,
            e.client_message(),
            "refused by login policy",
        )),
        Err(e) => {
            // One line per interval, however many clients a logic outage
            // turns away.
            static THROTTLE: std::sync::LazyLock<courier_runtime::throttle::Throttle> =
                std::sync::LazyLock::new(|| {
                    courier_runtime::throttle::Throttle::new(std::time::Duration::from_secs(10))
                });
            if let Some(suppressed) = THROTTLE.admit() {
                tracing::warn!(%key, error = %e, suppressed, "cannot open session");
            }
            Err(Refusal::error(
                id,
                ErrorCode::Unavailable,
                e.client_message(),
                "logic unavailable",
            ))
        }
    }
}

/// The message bytes a page may carry to fit a `max_frame` frame.
pub(crate) fn page_bytes(max_frame: usize) -> u32 {
    u32::try_from(max_frame.saturating_sub(PAGE_OVERHEAD).max(1)).unwrap_or(u32::MAX)
}

/// The refusal for bytes that are not a frame.
/// A transport error is not the client's fault and gets no frame.
pub(crate) fn bad_frame(e: &CodecError) -> Refusal {
    match e {
        CodecError::Io(_) => Refusal {
            frame: None,
            reason: "read failed",
        },
        _ => Refusal::error(0, ErrorCode::BadFrame, e.to_string(), "bad frame"),
    }
}
