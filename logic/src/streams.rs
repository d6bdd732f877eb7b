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
/// `after_seq` of `epoch`, the newest below `before_seq` (when it is not 0),
/// or, for a user with no position at all, after the user's acknowledged
/// position.
pub(crate) fn start(
    stream: Stream<'_>,
    epoch: u64,
    after_seq: u64,
    before_seq: u64,
) -> Result<Start, BothDirections> {
    match (stream, epoch, after_seq, before_seq) {
        (_, _, 1.., 1..) => Err(BothDirections),
        (_, _, 0, 1..) => Ok(Start::Before(Position::new(epoch, before_seq))),
        (Stream::User(_), 0, 0, 0) => Ok(Start::Acked),
        _ => Ok(Start::After(Position::new(epoch, after_seq))),
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
        assert!(matches!(start(alice, 0, 0, 0), Ok(Start::Acked)));
        assert!(matches!(
            start(room, 0, 0, 0),
            Ok(Start::After(Position::NONE))
        ));
        assert!(matches!(
            start(alice, 7, 3, 0),
            Ok(Start::After(p)) if p == Position::new(7, 3)
        ));
        assert!(matches!(
            start(alice, 7, 0, 9),
            Ok(Start::Before(p)) if p == Position::new(7, 9)
        ));
        assert!(start(alice, 7, 3, 9).is_err());
    }
}
