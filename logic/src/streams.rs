//! Reading the message store for comets (resume at auth, `Sync`) and for
//! the HTTP API, with the page limits both apply.

use courier_cluster::inbox::{self, Inbox, Start, Stream};
use courier_proto::logic::Page;
use courier_proto::Position;

/// Most messages one page carries, whatever was asked.
pub(crate) const MAX_PAGE: usize = 500;
/// Messages sent right after `AuthReply`; a client reads on with `Sync`.
pub(crate) const RESUME_PAGE: usize = 100;
/// Byte budget of a page when the caller names none (HTTP).
pub(crate) const DEFAULT_PAGE_BYTES: usize = 1 << 20;

/// Why a reader's position cannot be read from.
#[derive(Debug, thiserror::Error)]
#[error("give after_seq or before_seq, not both")]
pub(crate) struct BothDirections;

/// Where a reader's position says to start: the oldest messages after
/// `after`, the newest below `before_seq` (in `after`'s epoch; when it is
/// not 0, and then `after.seq` must be), or, for a user with no position at
/// all, after the user's acknowledged position.
pub(crate) fn start(
    stream: Stream<'_>,
    after: Position,
    before_seq: u64,
) -> Result<Start, BothDirections> {
    match (stream, after, before_seq) {
        (_, Position { seq: 1.., .. }, 1..) => Err(BothDirections),
        (_, Position { epoch, .. }, 1..) => Ok(Start::Before(Position::new(epoch, before_seq))),
        (Stream::User(_), Position::NONE, 0) => Ok(Start::Acked),
        _ => Ok(Start::After(after)),
    }
}

/// `start` as a device of the stream's own user resuming from a position
/// it showed: past the end of the stream's epoch, that proves the store
/// lost writes (see [`Start::Resume`]). Only a user's own inbox is read
/// this way; a room member or a backend claiming too much just reads
/// nothing new.
pub(crate) fn own_inbox(start: Start) -> Start {
    match start {
        Start::After(p) => Start::Resume(p),
        other => other,
    }
}

/// A page of `stream`, at most `limit` (capped at [`MAX_PAGE`]) messages and
/// `max_bytes` (0: [`DEFAULT_PAGE_BYTES`]).
pub(crate) async fn read(
    inbox: &dyn Inbox,
    stream: Stream<'_>,
    start: Start,
    limit: usize,
    max_bytes: usize,
) -> courier_cluster::Result<inbox::Page> {
    let max_bytes = if max_bytes == 0 {
        DEFAULT_PAGE_BYTES
    } else {
        max_bytes
    };
    inbox
        .read(stream, start, limit.min(MAX_PAGE), max_bytes)
        .await
}

/// The store's page as the comet gets it.
pub(crate) fn page(p: inbox::Page) -> Page {
    Page {
        head: Some(p.head),
        messages: p.messages,
        gap: p.gap,
        reset: p.reset,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_position_picks_the_direction() {
        let alice = Stream::User("alice");
        let room = Stream::Room("r");
        assert!(matches!(start(alice, Position::NONE, 0), Ok(Start::Acked)));
        assert!(matches!(
            start(room, Position::NONE, 0),
            Ok(Start::After(Position::NONE))
        ));
        assert!(matches!(
            start(alice, Position::new(7, 3), 0),
            Ok(Start::After(p)) if p == Position::new(7, 3)
        ));
        assert!(matches!(
            start(alice, Position::new(7, 0), 9),
            Ok(Start::Before(p)) if p == Position::new(7, 9)
        ));
        assert!(start(alice, Position::new(7, 3), 9).is_err());
    }
}
