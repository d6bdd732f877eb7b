//! Putting stored messages in order: one [`Sequencer`] per stream (the
//! user's inbox, each room).
//!
//! A stored message has a seq (gap-free within its stream's epoch). The
//! sequencer shows messages strictly in seq order, each once: a duplicate
//! (seq already shown) is dropped; a message after a gap waits while the
//! missing range is read with `Sync`; a page (`SyncReply`) fills the gap.
//! It learns of a message that never arrived from the stream's head (a
//! heartbeat reply carries the inbox's, or the rooms' when the comet sends
//! it unasked; a history page carries its stream's), and of a lost store
//! from a new epoch. It is plain data with no I/O: the driver sends the syncs it asks
//! for and emits what it returns.
//!
//! A store that lost its last writes without a new epoch (a failover to a
//! standby that had not replayed them) hands their seqs out again. That
//! is never dropped silently: a seq shown before arriving with another
//! `msg_id`, or a stream whose head, read after we asked, is behind what
//! we showed, is a [`Notice::Reset`], and the stream goes on from where
//! the store stands. A head behind us that was not asked for is only a
//! reason to ask: it may have been read before a message we already
//! showed was stored.
//!
//! A stream's starting point comes from the server, never from the first
//! message to arrive (messages of one stream may arrive out of order): the
//! inbox's from the page sent right after `AuthReply`, a room's from the
//! head in `JoinReply` or a head-only `Sync`. Until then messages wait.

use std::collections::{BTreeMap, VecDeque};
use std::hash::{DefaultHasher, Hash, Hasher};

use courier_proto::client::{Message, StreamHead, SyncReply};
use courier_proto::Position;

/// Messages waiting behind a gap, at most; more are dropped and read back
/// by the sync.
const MAX_WAITING: usize = 1024;
/// The newest shown messages remembered (seq and a hash of the `msg_id`),
/// to tell a seq handed out again from a duplicate.
const REMEMBERED: usize = 64;

/// A sync the sequencer wants sent: the stream's messages after `after`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SyncWanted {
    pub(crate) after: Position,
}

/// Something about a stream the application should know.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Notice {
    /// Messages `from..=to` are gone (older than the store's retention).
    Gap { from: u64, to: u64 },
    /// The store lost the stream, or its newest messages: it goes on in
    /// `epoch` (new, or the same one with seqs handed out again).
    Reset { epoch: u64 },
}

/// What handling a message, a page or a head produced.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct Outcome {
    /// Messages to show now, in order.
    pub(crate) show: Vec<Message>,
    pub(crate) notices: Vec<Notice>,
    pub(crate) sync: Option<SyncWanted>,
    /// A live message came ahead of the next seq: the one missing usually
    /// follows right behind it (two pushes stored in one order and queued
    /// in the other), so the gap is synced only if it is still open a
    /// moment later ([`Sequencer::gap_still_open`]). Syncing at once would
    /// ask the store for messages that are on their way.
    pub(crate) sync_later: bool,
}

/// One stream's order.
#[derive(Debug, Default)]
pub(crate) struct Sequencer {
    /// The last position shown; `None` until the server said where the
    /// stream starts for us.
    start: Option<Position>,
    waiting: BTreeMap<u64, Message>,
    syncing: bool,
    /// A sync was refused for now (rate-limited): ask again at the next
    /// wait's end, gap or not.
    retry: bool,
    /// Where we stood when we last asked for a page: its head may not be
    /// behind that.
    asked: Option<Position>,
    /// The newest shown: `(seq, hash of msg_id)`, oldest first.
    shown: VecDeque<(u64, u64)>,
}

impl Sequencer {
    /// A sequencer that has shown up to `at`.
    pub(crate) fn at(at: Position) -> Self {
        Self {
            start: Some(at),
            ..Self::default()
        }
    }

    /// The last position shown ([`Position::NONE`] while the start is
    /// unknown).
    pub(crate) fn position(&self) -> Position {
        self.start.unwrap_or(Position::NONE)
    }

    /// Whether the server has told where this stream starts.
    pub(crate) fn knows_start(&self) -> bool {
        self.start.is_some()
    }

    /// The server says the stream stands at `head`: a sequencer that did
    /// not know its start starts after its last seq.
    pub(crate) fn start_at(&mut self, head: StreamHead) -> Outcome {
        let mut out = Outcome::default();
        if self.start.is_none() {
            self.start = Some(head.last());
            self.drain(&mut out);
        }
        out
    }

    /// A sync was sent, or failed: stop or start asking for one.
    pub(crate) fn set_syncing(&mut self, syncing: bool) {
        self.syncing = syncing;
        if !syncing {
            self.asked = None;
        }
    }

    /// A sync was refused for now: it is asked again from
    /// [`Sequencer::gap_still_open`].
    pub(crate) fn sync_refused(&mut self) {
        self.set_syncing(false);
        self.retry = true;
    }

    /// A message of this stream arrived live.
    pub(crate) fn on_message(&mut self, m: Message) -> Outcome {
        let mut out = Outcome::default();
        self.accept(m, &mut out);
        self.drain(&mut out);
        out
    }

    /// A page of this stream arrived (asked for or not).
    pub(crate) fn on_page(&mut self, page: SyncReply) -> Outcome {
        let mut out = Outcome::default();
        self.syncing = false;
        let asked = self.asked.take();
        let head = page.head.unwrap_or_default();
        let first = page.messages.first().map(|m| m.seq);
        // Where this page starts: after the seq before its first message,
        // or at the head when it carries none.
        let page_start = Position::new(
            head.epoch,
            first.map_or(head.last_seq, |seq| seq.saturating_sub(1)),
        );
        match self.start.as_mut() {
            None => self.start = Some(page_start),
            Some(at) if page.reset => {
                out.notices.push(Notice::Reset { epoch: head.epoch });
                self.waiting.clear();
                *at = page_start;
            }
            Some(at)
                if asked.is_some_and(|asked| {
                    asked.epoch == head.epoch && head.epoch != 0 && head.last_seq < asked.seq
                }) =>
            {
                // Read after we asked, and behind what we had shown: the
                // store lost its newest messages and hands their seqs out
                // again.
                out.notices.push(Notice::Reset { epoch: head.epoch });
                self.waiting.clear();
                self.shown.clear();
                *at = head.last();
            }
            Some(at) => {
                if at.epoch == 0 {
                    at.epoch = head.epoch;
                }
                if page.gap && page_start.seq > at.seq {
                    out.notices.push(Notice::Gap {
                        from: at.seq + 1,
                        to: page_start.seq,
                    });
                    at.seq = page_start.seq;
                }
            }
        }
        let progressed = !page.messages.is_empty();
        for m in page.messages {
            self.accept(m, &mut out);
        }
        self.drain(&mut out);
        // More to read: ask again, as long as the last page moved us on.
        let at = self.position();
        if out.sync.is_none() && progressed && at.seq < head.last_seq && !self.syncing {
            self.ask(&mut out);
        }
        out
    }

    /// Asks for the page after the position.
    fn ask(&mut self, out: &mut Outcome) {
        let after = self.position();
        self.syncing = true;
        self.asked = Some(after);
        out.sync = Some(SyncWanted { after });
    }

    /// The stream's head, learned from a heartbeat or a reply.
    pub(crate) fn on_head(&mut self, head: StreamHead) -> Outcome {
        let mut out = Outcome::default();
        let Some(at) = self.start else {
            return out;
        };
        if self.syncing || head.epoch == 0 {
            return out;
        }
        let other_epoch = at.epoch != 0 && head.epoch != at.epoch;
        // A head behind us is asked about: the page's head will say
        // whether the store lost what we showed.
        if other_epoch || head.last_seq != at.seq {
            self.ask(&mut out);
        }
        out
    }

    fn accept(&mut self, m: Message, out: &mut Outcome) {
        let Some(at) = self.start.as_mut() else {
            // Where this stream starts for us is not known yet: wait.
            if self.waiting.len() < MAX_WAITING {
                self.waiting.insert(m.seq, m);
            }
            return;
        };
        if at.epoch == 0 {
            at.epoch = m.epoch;
        }
        if m.epoch != at.epoch {
            // The store lost the stream: ask where it stands now.
            if !self.syncing {
                self.ask(out);
            }
            return;
        }
        if m.seq <= at.seq {
            let id = id_hash(&m.msg_id);
            match self.shown.iter().find(|(seq, _)| *seq == m.seq) {
                // The seq we showed, handed out again to another message:
                // the store lost what we showed from there on.
                Some((_, shown)) if *shown != id => {
                    out.notices.push(Notice::Reset { epoch: m.epoch });
                    self.waiting.clear();
                    self.shown.clear();
                    at.seq = m.seq - 1;
                }
                _ => return, // shown already
            }
        }
        if m.seq == at.seq + 1 {
            self.show(m, out);
            return;
        }
        let room = self.waiting.len() < MAX_WAITING;
        if room {
            self.waiting.insert(m.seq, m);
        }
        if self.syncing {
            return;
        }
        if room {
            out.sync_later = true;
        } else {
            // Too much waits behind the gap: read it from the store now.
            self.ask(out);
        }
    }

    /// Shows `m`, the message right after the position.
    fn show(&mut self, m: Message, out: &mut Outcome) {
        if let Some(at) = self.start.as_mut() {
            at.seq = m.seq;
        }
        if self.shown.len() == REMEMBERED {
            self.shown.pop_front();
        }
        self.shown.push_back((m.seq, id_hash(&m.msg_id)));
        out.show.push(m);
    }

    /// The moment after a `sync_later` has passed: the sync for a gap that
    /// is still open, if any (once; the page that answers it closes it).
    pub(crate) fn gap_still_open(&mut self) -> Option<SyncWanted> {
        let at = self.start?;
        if self.syncing || (self.waiting.is_empty() && !self.retry) {
            return None;
        }
        self.retry = false;
        self.syncing = true;
        self.asked = Some(at);
        Some(SyncWanted { after: at })
    }

    /// Shows whatever waited right behind the position.
    fn drain(&mut self, out: &mut Outcome) {
        while let (Some(at), Some(entry)) = (self.start, self.waiting.first_entry()) {
            let seq = *entry.key();
            if seq <= at.seq || entry.get().epoch != at.epoch {
                entry.remove();
            } else if seq == at.seq + 1 {
                let m = entry.remove();
                self.show(m, out);
            } else {
                break;
            }
        }
    }
}

/// A short fingerprint of a `msg_id` (ids are assigned by logic, so a
/// collision is chance, not choice).
fn id_hash(msg_id: &str) -> u64 {
    let mut h = DefaultHasher::new();
    msg_id.hash(&mut h);
    h.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(seq: u64, epoch: u64) -> Message {
        Message {
            msg_id: format!("m{seq}"),
            seq,
            epoch,
            ..Message::default()
        }
    }

    fn seqs(out: &Outcome) -> Vec<u64> {
        out.show.iter().map(|m| m.seq).collect()
    }

    /// A stream's head: newest `last_seq` of `epoch`, oldest held `first_seq`.
    fn head(epoch: u64, last_seq: u64, first_seq: u64) -> StreamHead {
        StreamHead {
            epoch,
            last_seq,
            first_seq,
        }
    }

    fn page(messages: Vec<Message>, head: StreamHead) -> SyncReply {
        SyncReply {
            head: Some(head),
            messages,
            ..SyncReply::default()
        }
    }

    #[test]
    fn in_order_messages_show_at_once_and_duplicates_never() {
        let mut s = Sequencer::at(Position::new(7, 0));
        assert_eq!(seqs(&s.on_message(msg(1, 7))), [1]);
        assert_eq!(seqs(&s.on_message(msg(2, 7))), [2]);
        let again = s.on_message(msg(2, 7));
        assert!(again.show.is_empty() && again.sync.is_none());
        assert_eq!(s.position(), Position::new(7, 2));
    }

    #[test]
    fn a_gap_waits_for_its_sync_then_shows_in_order() {
        let mut s = Sequencer::at(Position::new(7, 1));
        let out = s.on_message(msg(4, 7));
        assert!(out.show.is_empty(), "4 waits for 2 and 3");
        assert!(out.sync.is_none() && out.sync_later, "a moment first");
        assert_eq!(
            s.gap_still_open(),
            Some(SyncWanted {
                after: Position::new(7, 1)
            })
        );
        assert_eq!(s.gap_still_open(), None, "one sync at a time");
        let out = s.on_message(msg(5, 7));
        assert!(out.sync.is_none() && !out.sync_later, "one sync at a time");
        let out = s.on_page(page(vec![msg(2, 7), msg(3, 7), msg(4, 7)], head(7, 5, 1)));
        assert_eq!(seqs(&out), [2, 3, 4, 5]);
        assert!(out.sync.is_none(), "caught up with the head");
    }

    #[test]
    fn a_refused_sync_is_asked_again_even_with_nothing_waiting() {
        let mut s = Sequencer::at(Position::new(7, 3));
        // A head ahead asks for the tail at once; nothing waits behind it.
        let out = s.start_at(head(7, 9, 1));
        assert!(out.sync.is_none(), "the start was known");
        s.set_syncing(true);
        s.sync_refused();
        assert_eq!(
            s.gap_still_open(),
            Some(SyncWanted {
                after: Position::new(7, 3)
            }),
            "asked again from where it stands"
        );
        assert_eq!(s.gap_still_open(), None, "once");
    }

    #[test]
    fn a_swapped_pair_closes_itself_without_a_sync() {
        let mut s = Sequencer::at(Position::new(7, 1));
        let out = s.on_message(msg(3, 7));
        assert!(out.show.is_empty() && out.sync_later);
        let out = s.on_message(msg(2, 7));
        assert_eq!(seqs(&out), [2, 3]);
        assert_eq!(s.gap_still_open(), None, "nothing left to ask for");
    }

    #[test]
    fn the_tail_gap_is_found_from_the_head() {
        let mut s = Sequencer::at(Position::new(7, 3));
        assert!(s.on_head(head(7, 3, 1)).sync.is_none());
        let out = s.on_head(head(7, 5, 1));
        assert_eq!(
            out.sync,
            Some(SyncWanted {
                after: Position::new(7, 3)
            })
        );
        let out = s.on_page(page(vec![msg(4, 7), msg(5, 7)], head(7, 5, 1)));
        assert_eq!(seqs(&out), [4, 5]);
    }

    #[test]
    fn a_page_that_stops_short_of_the_head_asks_for_more() {
        let mut s = Sequencer::at(Position::new(7, 0));
        let out = s.on_page(page(vec![msg(1, 7), msg(2, 7)], head(7, 9, 1)));
        assert_eq!(seqs(&out), [1, 2]);
        assert_eq!(
            out.sync,
            Some(SyncWanted {
                after: Position::new(7, 2)
            })
        );
    }

    #[test]
    fn a_window_gap_is_reported_and_skipped() {
        let mut s = Sequencer::at(Position::new(7, 2));
        let mut p = page(vec![msg(6, 7), msg(7, 7)], head(7, 7, 6));
        p.gap = true;
        let out = s.on_page(p);
        assert_eq!(out.notices, [Notice::Gap { from: 3, to: 5 }]);
        assert_eq!(seqs(&out), [6, 7]);
    }

    #[test]
    fn a_new_epoch_is_a_reset_not_a_silent_skip() {
        let mut s = Sequencer::at(Position::new(7, 40));
        // Live message of the new epoch: not shown as if it were seq 1 of 7.
        let out = s.on_message(msg(1, 9));
        assert!(out.show.is_empty());
        assert_eq!(
            out.sync,
            Some(SyncWanted {
                after: Position::new(7, 40)
            })
        );
        let mut p = page(vec![msg(1, 9), msg(2, 9)], head(9, 2, 1));
        p.reset = true;
        let out = s.on_page(p);
        assert_eq!(out.notices, [Notice::Reset { epoch: 9 }]);
        assert_eq!(seqs(&out), [1, 2]);
        assert_eq!(s.position(), Position::new(9, 2));
    }

    fn msg_id(seq: u64, epoch: u64, id: &str) -> Message {
        Message {
            msg_id: id.into(),
            ..msg(seq, epoch)
        }
    }

    #[test]
    fn a_seq_handed_out_again_to_another_message_is_a_reset_not_a_duplicate() {
        let mut s = Sequencer::at(Position::new(7, 0));
        for seq in 1..=5 {
            assert_eq!(seqs(&s.on_message(msg(seq, 7))), [seq]);
        }
        // The same message again: a duplicate, dropped.
        let again = s.on_message(msg(4, 7));
        assert!(again.show.is_empty() && again.notices.is_empty());
        // The store lost 4 and 5 and gave 4 to another message.
        let out = s.on_message(msg_id(4, 7, "other-4"));
        assert_eq!(out.notices, [Notice::Reset { epoch: 7 }]);
        assert_eq!(seqs(&out), [4]);
        assert_eq!(s.position(), Position::new(7, 4));
        assert_eq!(seqs(&s.on_message(msg_id(5, 7, "other-5"))), [5]);
    }

    #[test]
    fn a_head_behind_us_is_asked_about_and_a_page_read_after_confirms_the_loss() {
        let mut s = Sequencer::at(Position::new(7, 0));
        for seq in 1..=5 {
            s.on_message(msg(seq, 7));
        }
        // A heartbeat's head may have been read before 5 was stored: ask.
        let out = s.on_head(head(7, 3, 1));
        assert!(out.notices.is_empty(), "not a loss yet");
        assert_eq!(
            out.sync,
            Some(SyncWanted {
                after: Position::new(7, 5)
            })
        );
        // The page answering it was read after we asked: the store has 3.
        let out = s.on_page(page(vec![], head(7, 3, 1)));
        assert_eq!(out.notices, [Notice::Reset { epoch: 7 }]);
        assert_eq!(s.position(), Position::new(7, 3));
        assert_eq!(seqs(&s.on_message(msg_id(4, 7, "new-4"))), [4]);
    }

    #[test]
    fn a_page_asked_for_before_a_live_message_is_not_a_loss() {
        let mut s = Sequencer::at(Position::new(7, 5));
        let out = s.on_head(head(7, 6, 1));
        assert!(out.sync.is_some());
        // 6 arrives live before the page, read when the head was 5 + 1.
        assert_eq!(seqs(&s.on_message(msg(6, 7))), [6]);
        let out = s.on_page(page(vec![msg(6, 7)], head(7, 6, 1)));
        assert!(out.notices.is_empty() && out.show.is_empty());
        // Or read just before 6 was stored: behind us, not behind the ask.
        let out = s.on_head(head(7, 7, 1));
        assert!(out.sync.is_some());
        assert_eq!(seqs(&s.on_message(msg(7, 7))), [7]);
        let out = s.on_page(page(vec![], head(7, 6, 1)));
        assert!(out.notices.is_empty(), "{:?}", out.notices);
        assert_eq!(s.position(), Position::new(7, 7));
    }

    #[test]
    fn a_stream_with_no_start_waits_for_the_server_to_tell_it() {
        // Messages of one stream may arrive out of order: the first one to
        // arrive is not where the stream starts.
        let mut s = Sequencer::default();
        assert!(s.on_message(msg(58, 3)).show.is_empty());
        assert!(s.on_message(msg(57, 3)).show.is_empty());
        let out = s.start_at(head(3, 56, 1));
        assert_eq!(seqs(&out), [57, 58]);
        assert_eq!(seqs(&s.on_message(msg(59, 3))), [59]);
    }

    #[test]
    fn a_first_page_sets_the_start_where_its_messages_begin() {
        let mut s = Sequencer::default();
        assert!(
            s.on_message(msg(9, 3)).show.is_empty(),
            "live, after the page"
        );
        let out = s.on_page(page(vec![msg(6, 3), msg(7, 3), msg(8, 3)], head(3, 8, 1)));
        assert_eq!(seqs(&out), [6, 7, 8, 9]);
        let mut empty = Sequencer::default();
        empty.on_page(page(vec![], head(3, 8, 1)));
        assert_eq!(empty.position(), Position::new(3, 8));
    }
}
