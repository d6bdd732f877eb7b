//! Opening one authenticated connection to one comet: open a stream with the
//! configured transport, send `Auth`, wait for `AuthReply`. Used for the
//! first connection and every reconnect, always under the caller's timeout.

use std::time::Duration;

use courier_proto::client::{frame::Body, Auth, Frame};
use courier_proto::{FrameCodec, Position};
use futures::{SinkExt, StreamExt};
use tokio_util::codec::Framed;

use crate::transport::{BoxStream, Connector};
use crate::{ClientError, CometAddr};

/// Heartbeat interval used when neither the comet nor logic said one.
const DEFAULT_HEARTBEAT: Duration = Duration::from_secs(30);
/// Frames (pushes) accepted before `AuthReply`; a comet sends none, but a
/// peer that does is not refused for a few.
const MAX_EARLY_FRAMES: usize = 64;

/// An authenticated connection.
pub(crate) struct Session {
    pub(crate) framed: Framed<BoxStream, FrameCodec>,
    pub(crate) comet: CometAddr,
    pub(crate) key: String,
    pub(crate) heartbeat: Duration,
    /// Frames that arrived before `AuthReply`, to be handled first.
    pub(crate) early: Vec<Frame>,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("comet", &self.comet.id)
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

/// What the `Auth` frame carries.
#[derive(Debug)]
pub(crate) struct AuthRequest {
    pub(crate) id: u64,
    pub(crate) token: String,
    /// The last inbox message shown ([`Position::NONE`]: start after the
    /// user's acknowledged position).
    pub(crate) resume: Position,
    pub(crate) rooms: Vec<String>,
    pub(crate) device: String,
    /// Heartbeat interval from login, used if `AuthReply` has none.
    pub(crate) login_heartbeat_secs: u32,
    pub(crate) max_frame: usize,
}

/// Connects to `comet` and authenticates. The caller bounds it with a timeout.
pub(crate) async fn open(
    connector: &Connector,
    comet: &CometAddr,
    auth: AuthRequest,
) -> Result<Session, ClientError> {
    let stream = connector.connect(comet).await?;
    let mut framed = Framed::new(stream, FrameCodec::new(auth.max_frame));
    let frame = Frame::new(
        auth.id,
        Body::Auth(Auth {
            token: auth.token,
            last_seq: auth.resume.seq,
            rooms: auth.rooms,
            epoch: auth.resume.epoch,
            device: auth.device,
        }),
    );
    framed.send(frame).await?;

    let mut early = Vec::new();
    loop {
        let Some(frame) = framed.next().await.transpose()? else {
            return Err(ClientError::Io(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "connection closed during auth",
            )));
        };
        match frame.body {
            Some(Body::AuthReply(reply)) => {
                let secs = match (reply.heartbeat_secs, auth.login_heartbeat_secs) {
                    (0, 0) => DEFAULT_HEARTBEAT.as_secs(),
                    (0, login) => u64::from(login),
                    (comet, _) => u64::from(comet),
                };
                return Ok(Session {
                    framed,
                    comet: comet.clone(),
                    key: reply.key,
                    heartbeat: Duration::from_secs(secs),
                    early,
                });
            }
            Some(Body::Error(e)) => {
                return Err(ClientError::Server {
                    code: e.code,
                    message: e.message,
                })
            }
            Some(Body::Kick(k)) => return Err(ClientError::Kicked(k.reason)),
            Some(Body::Reconnect(_)) => {
                return Err(ClientError::NoComet(format!("{} is draining", comet.id)))
            }
            Some(Body::Push(_)) if early.len() < MAX_EARLY_FRAMES => early.push(frame),
            Some(Body::Push(_)) => {
                return Err(ClientError::Protocol(
                    "too many pushes before AuthReply".into(),
                ))
            }
            // Anything else before AuthReply carries nothing for us.
            _ => {}
        }
    }
}
