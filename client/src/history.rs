//! Reading a stream's stored history back from the newest, a page at a
//! time ([`crate::Client::history`], [`crate::Client::history_before`]).
//!
//! One `Sync` with `before_seq` asks for the newest messages below a seq;
//! the reply lists them oldest first. Whether older messages are still
//! held follows from the page: its first message is above the oldest seq
//! the stream holds (`head.first_seq`). The store keeps messages for its
//! retention, so paging back ends either at seq 1 (the start of the
//! stream) or at the oldest message still held, with `gap` set.

use courier_proto::client::{Message, Sync, SyncReply};
use courier_proto::Position;

/// A page of a stream's history: the newest messages below a position.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct History {
    /// The messages, oldest first.
    pub messages: Vec<Message>,
    /// Older messages are still held: [`History::older`] is where the
    /// next page back starts.
    pub more: bool,
    /// Older messages are gone (past the store's retention): this page
    /// reached the oldest message still held.
    pub gap: bool,
    /// The epoch asked about is not the stream's (the store lost it): this
    /// page is the newest of the current epoch, not the one below the
    /// position asked about.
    pub reset: bool,
}

impl History {
    /// Where the next page back starts (the oldest message of this one),
    /// while [`History::more`] says older messages are held.
    pub fn older(&self) -> Option<Position> {
        let first = self.messages.first().filter(|_| self.more)?;
        Some(Position::new(first.epoch, first.seq))
    }

    /// The history a page read back from a position holds.
    pub(crate) fn from_page(page: SyncReply) -> Self {
        let first_held = page.head.map_or(0, |h| h.first_seq);
        // Seq 1 is the start of a stream whatever the head says.
        let more = page
            .messages
            .first()
            .is_some_and(|m| m.seq > first_held.max(1));
        Self {
            messages: page.messages,
            more,
            gap: page.gap,
            reset: page.reset,
        }
    }
}

/// The `Sync` that reads the newest `limit` messages of `room` ("" the
/// inbox) below `before`: its seq in its epoch (0: the current one); seq 0
/// reads back from the newest. `limit` is at least 1 (a `Sync` with limit 0
/// reads only the head).
pub(crate) fn sync_before(room: &str, before: Position, limit: u32) -> Sync {
    // The comet caps a seq past the head at head.last_seq + 1; 0 on the
    // wire would mean "not paging back".
    let before_seq = match before.seq {
        0 => u64::MAX,
        seq => seq,
    };
    Sync {
        after_seq: 0,
        limit: limit.max(1),
        room: room.to_owned(),
        epoch: before.epoch,
        before_seq,
    }
}

#[cfg(test)]
mod tests {
    use courier_proto::client::StreamHead;

    use super::*;

    fn page(seqs: &[u64], first_seq: u64, gap: bool) -> SyncReply {
        let messages = seqs
            .iter()
            .map(|&seq| Message {
                seq,
                epoch: 7,
                ..Message::default()
            })
            .collect();
        SyncReply {
            head: Some(StreamHead {
                epoch: 7,
                last_seq: 90,
                first_seq,
            }),
            messages,
            gap,
            ..SyncReply::default()
        }
    }

    #[test]
    fn more_while_the_page_starts_above_the_oldest_held() {
        let h = History::from_page(page(&[40, 41, 42], 1, false));
        assert!(h.more && !h.gap);
        assert_eq!(h.older(), Some(Position::new(7, 40)));

        let start = History::from_page(page(&[1, 2], 1, false));
        assert!(!start.more && !start.gap, "seq 1 is the start");
        assert_eq!(start.older(), None);

        let expired = History::from_page(page(&[10, 11], 10, true));
        assert!(!expired.more && expired.gap, "older ones are gone");
        assert_eq!(expired.older(), None);

        let empty = History::from_page(page(&[], 10, true));
        assert!(!empty.more && empty.gap);
        // A head with no first_seq: only seq 1 says the start.
        assert!(History::from_page(page(&[5], 0, false)).more);
    }

    #[test]
    fn the_sync_pages_back_and_reads_from_the_newest_without_a_seq() {
        let s = sync_before("r", Position::new(7, 40), 20);
        assert_eq!(
            (s.after_seq, s.before_seq, s.epoch, s.limit),
            (0, 40, 7, 20)
        );
        assert_eq!(s.room, "r");
        let newest = sync_before("", Position::NONE, 0);
        assert_eq!((newest.before_seq, newest.epoch), (u64::MAX, 0));
        assert_eq!(newest.limit, 1, "limit 0 would read only the head");
    }
}
