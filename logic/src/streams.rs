//! Reading the message store for comets (resume at auth, `Sync`) and for
//! the HTTP API, with the page limits both apply.

use courier_cluster::inbox::{self, Inbox, Start, Stream};
use courier_proto::client::StreamHead;
use courier_proto::logic::Page;

/// Most messages one page carries, whatever was asked.
pub(crate) const MAX_PAGE: usize = 500;
/// Messages sent right after `AuthReply`; a client reads on with `Sync`.
pub(crate) const RESUME_PAGE: usize = 100;
/// Byte budget of a page when the caller names none (HTTP).
pub(crate) const DEFAULT_PAGE_BYTES: usize = 1 << 20;

/// Where a client's position says to start: its epoch and seq, or, with
/// neither, after the user's acknowledged position (users only).
pub(crate) fn start(stream: Stream<'_>, epoch: u64, after_seq: u64) -> Start {
    match (stream, epoch, after_seq) {
        (Stream::User(_), 0, 0) => Start::Acked,
        _ => Start::Position { epoch, after_seq },
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

/// The store's head as the protocol carries it.
pub(crate) fn head(h: inbox::Head) -> StreamHead {
    StreamHead {
        epoch: h.epoch,
        last_seq: h.last_seq,
        first_seq: h.first_seq,
    }
}

/// The store's page as the comet gets it.
pub(crate) fn page(p: inbox::Page) -> Page {
    Page {
        head: Some(head(p.head)),
        messages: p.messages,
        gap: p.gap,
        reset: p.reset,
    }
}
