//! What the driver does with each frame the comet sends on an established
//! connection: replies complete pending requests, pushes become events (once
//! per `msg_id`) and are acked, `Reconnect` and `Kick` end the connection.

use std::time::Duration;

use courier_proto::client::{frame::Body, target, Ack, Frame, Push};
use tracing::debug;

use super::{lost, Driver, SessionEnd};
use crate::session::Session;
use crate::{ClientError, Event};

impl Driver {
    pub(super) async fn on_frame(
        &mut self,
        session: &mut Session,
        frame: Frame,
    ) -> Result<(), SessionEnd> {
        let Some(body) = frame.body else {
            return Ok(());
        };
        match body {
            Body::Push(push) => self.on_push(session, push).await,
            Body::Error(e) => {
                match self.pending.remove(&frame.id).filter(|_| frame.id != 0) {
                    Some(cmd) => {
                        let _ = cmd.reply.send(Err(ClientError::Server {
                            code: e.code,
                            message: e.message,
                        }));
                    }
                    None => {
                        self.emit(Event::Error {
                            code: e.code,
                            message: e.message,
                        })
                        .await
                    }
                }
                Ok(())
            }
            Body::Reconnect(r) => Err(SessionEnd::Lost {
                reason: format!("comet {} is draining", session.comet.id),
                after: Some(
                    Duration::from_millis(u64::from(r.after_ms)).min(super::MAX_DRAIN_WAIT),
                ),
            }),
            Body::Kick(k) if is_transient_kick(&k.reason) => {
                Err(lost(format!("kicked: {}", k.reason)))
            }
            Body::Kick(k) => Err(SessionEnd::Kicked(k.reason)),
            reply @ (Body::SendReply(_)
            | Body::JoinReply(_)
            | Body::LeaveReply(_)
            | Body::HeartbeatReply(_)
            | Body::AuthReply(_)) => {
                if let Some(cmd) = self.pending.remove(&frame.id) {
                    self.track_rooms(&cmd.body, &reply);
                    let _ = cmd.reply.send(Ok(reply));
                }
                Ok(())
            }
            other => {
                debug!(?other, "ignoring a client-only frame from the server");
                Ok(())
            }
        }
    }

    fn track_rooms(&self, request: &Body, reply: &Body) {
        let mut state = self.shared.conn.lock();
        match (request, reply) {
            (Body::Join(j), Body::JoinReply(_)) if !state.rooms.contains(&j.room) => {
                state.rooms.push(j.room.clone());
            }
            (Body::Leave(l), Body::LeaveReply(_)) => state.rooms.retain(|r| *r != l.room),
            _ => {}
        }
    }

    async fn on_push(&mut self, session: &mut Session, push: Push) -> Result<(), SessionEnd> {
        for msg in push.messages {
            if !self.recent.insert(&msg.msg_id) {
                continue;
            }
            let personal = !matches!(
                msg.to.as_ref().and_then(|t| t.kind.as_ref()),
                Some(target::Kind::Room(_)) | Some(target::Kind::All(_))
            );
            if personal && msg.seq > self.last_seq {
                self.last_seq = msg.seq;
            }
            self.emit(Event::Message(msg)).await;
        }
        if self.last_seq > self.acked_seq {
            self.acked_seq = self.last_seq;
            let ack = Frame::new(self.next_id(), Body::Ack(Ack { seq: self.last_seq }));
            self.write(session, ack).await?;
            self.flush(session).await?;
        }
        Ok(())
    }
}

/// Kicks for being slow or idle are recoverable: reconnect. Any other kick
/// (login policy, an operator) is final.
fn is_transient_kick(reason: &str) -> bool {
    let reason = reason.to_ascii_lowercase();
    ["slow", "overflow", "idle", "queue full"]
        .iter()
        .any(|w| reason.contains(w))
}
