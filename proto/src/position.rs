//! A place in a stream: one user's inbox or one room's history.
//!
//! Seqs count up from 1 without gaps within an *epoch*; an epoch changes
//! only when the store really lost the stream. A position names both, in
//! one order, everywhere (the store, logic, the comet, the SDK), instead of
//! a bare pair whose order each function chose for itself.

use crate::client::StreamHead;

/// A seq within its epoch. `Position::NONE` (both 0) means "no position":
/// a reader that has shown nothing, or a message that is not stored.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Position {
    /// The stream's epoch; 0 when unknown (the reader takes whatever epoch
    /// is current).
    pub epoch: u64,
    /// The seq; 0 before the first message.
    pub seq: u64,
}

impl Position {
    /// No position.
    pub const NONE: Position = Position { epoch: 0, seq: 0 };

    /// `seq` of `epoch`.
    pub const fn new(epoch: u64, seq: u64) -> Self {
        Self { epoch, seq }
    }

    /// Whether this is [`Position::NONE`].
    pub const fn is_none(self) -> bool {
        self.epoch == 0 && self.seq == 0
    }
}

impl StreamHead {
    /// The newest position of the stream.
    pub fn last(&self) -> Position {
        Position::new(self.epoch, self.last_seq)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_head_names_its_newest_position() {
        let head = StreamHead {
            epoch: 7,
            last_seq: 3,
            first_seq: 1,
        };
        assert_eq!(head.last(), Position::new(7, 3));
        assert!(Position::NONE.is_none());
        assert!(!Position::new(0, 1).is_none());
    }
}
