//! The message-store contract, written once and run against every backend:
//! memory (with paused time), PostgreSQL with one shard, and PostgreSQL
//! with two shards in two databases (each test starts its own real server;
//! a server that cannot start fails the test).
#![allow(clippy::unwrap_used)]

mod pg;

use std::time::Duration;

use bytes::Bytes;
use courier_cluster::inbox::memory::MemoryInbox;
use courier_cluster::inbox::{Appended, Inbox, InboxOptions, NewMessage, Page, Start, Stream};
use courier_proto::client::Message;
use courier_proto::{encode_message, Position};
use prost::Message as _;

const ALICE: Stream<'static> = Stream::User("alice");

/// Long enough that only the retention test sees anything expire.
fn opts() -> InboxOptions {
    InboxOptions {
        retention: Duration::from_secs(600),
        dedup_window: Duration::from_secs(600),
    }
}

/// A retention that passes in a few seconds, for the retention test: long
/// enough that a loaded machine's delays cannot age the newer message out.
fn short_lived() -> InboxOptions {
    InboxOptions {
        retention: Duration::from_secs(4),
        ..opts()
    }
}

fn encoded(id: &str) -> Bytes {
    encode_message(&courier_testkit::messages::message_with(id, b"{}"))
}

async fn append(s: &dyn Inbox, stream: Stream<'_>, id: &str) -> Position {
    let message = encoded(id);
    let appended = s
        .append(
            stream,
            NewMessage {
                message: &message,
                dedup: None,
            },
        )
        .await
        .unwrap();
    assert!(!appended.repeat);
    appended.at
}

async fn append_keyed(s: &dyn Inbox, stream: Stream<'_>, id: &str, key: &str) -> Appended {
    let message = encoded(id);
    s.append(
        stream,
        NewMessage {
            message: &message,
            dedup: Some(key),
        },
    )
    .await
    .unwrap()
}

/// `(msg_id, seq, epoch)` of each message of a page.
fn stamped(page: &Page) -> Vec<(String, u64, u64)> {
    page.messages
        .iter()
        .map(|m| {
            let m = Message::decode(m.clone()).unwrap();
            (m.msg_id, m.seq, m.epoch)
        })
        .collect()
}

fn ids(page: &Page) -> Vec<String> {
    stamped(page).into_iter().map(|(id, _, _)| id).collect()
}

async fn read(s: &dyn Inbox, stream: Stream<'_>, epoch: u64, after_seq: u64) -> Page {
    s.read(
        stream,
        Start::After(Position::new(epoch, after_seq)),
        100,
        1 << 20,
    )
    .await
    .unwrap()
}

async fn back(s: &dyn Inbox, stream: Stream<'_>, before: Position, limit: usize) -> Page {
    s.read(stream, Start::Before(before), limit, 1 << 20)
        .await
        .unwrap()
}

async fn seqs_are_gap_free_and_read_back_in_order(s: &dyn Inbox) {
    let a = append(s, ALICE, "a").await;
    let b = append(s, ALICE, "b").await;
    let c = append(s, ALICE, "c").await;
    assert_eq!((a.seq, b.seq, c.seq), (1, 2, 3));
    assert!(a.epoch != 0 && a.epoch == b.epoch && b.epoch == c.epoch);

    let page = read(s, ALICE, a.epoch, 0).await;
    assert_eq!(
        stamped(&page),
        vec![
            ("a".into(), 1, a.epoch),
            ("b".into(), 2, a.epoch),
            ("c".into(), 3, a.epoch)
        ]
    );
    assert_eq!((page.head.last_seq, page.head.first_seq), (3, 1));
    assert!(!page.gap && !page.reset);

    assert_eq!(ids(&read(s, ALICE, a.epoch, 1).await), ["b", "c"]);
    assert!(read(s, ALICE, a.epoch, 3).await.messages.is_empty());
    let one = s
        .read(ALICE, Start::After(Position::new(a.epoch, 0)), 1, 1 << 20)
        .await
        .unwrap();
    assert_eq!(ids(&one), ["a"]);
    // Epoch 0: the position is taken in the current epoch.
    assert_eq!(ids(&read(s, ALICE, 0, 2).await), ["c"]);
}

async fn streams_are_separate(s: &dyn Inbox) {
    append(s, ALICE, "a1").await;
    let bob = append(s, Stream::User("bob"), "b1").await;
    let room = append(s, Stream::Room("alice"), "r1").await;
    assert_eq!((bob.seq, room.seq), (1, 1));
    assert_eq!(ids(&read(s, Stream::User("bob"), 0, 0).await), ["b1"]);
    assert_eq!(ids(&read(s, Stream::Room("alice"), 0, 0).await), ["r1"]);
    assert_eq!(ids(&read(s, ALICE, 0, 0).await), ["a1"]);
}

async fn a_missing_stream_is_empty_and_a_reader_with_an_epoch_is_told(s: &dyn Inbox) {
    let page = read(s, ALICE, 0, 0).await;
    assert_eq!(page, Page::default());
    let page = read(s, ALICE, 77, 3).await;
    assert!(page.reset, "an epoch the store does not have");
    assert!(page.messages.is_empty());
}

async fn a_long_history_keeps_every_message(s: &dyn Inbox) {
    // No count bound: 1,500 messages, every one read back in pages.
    let n = 1_500u64;
    let appends = (1..=n).map(|i| async move { append(s, ALICE, &format!("m{i}")).await });
    let positions = futures::future::join_all(appends).await;
    let mut seqs: Vec<u64> = positions.iter().map(|p| p.seq).collect();
    seqs.sort_unstable();
    assert_eq!(
        seqs,
        (1..=n).collect::<Vec<_>>(),
        "gap-free under concurrency"
    );
    let epoch = positions[0].epoch;
    let mut after = 0;
    let mut read_back = 0;
    loop {
        let page = read(s, ALICE, epoch, after).await;
        let got = stamped(&page);
        if got.is_empty() {
            break;
        }
        for (_, seq, _) in &got {
            assert_eq!(*seq, after + 1, "in order, without gaps");
            after = *seq;
            read_back += 1;
        }
    }
    assert_eq!(read_back, n);
}

async fn paging_back_gives_the_newest_below_in_order(s: &dyn Inbox) {
    let mut epoch = 0;
    for i in 1..=7 {
        epoch = append(s, ALICE, &format!("m{i}")).await.epoch;
    }
    let newest = back(s, ALICE, Position::new(epoch, 0), 3).await;
    assert_eq!(ids(&newest), ["m5", "m6", "m7"]);
    assert!(!newest.gap && !newest.reset);
    assert_eq!(newest.head.last_seq, 7);
    let older = back(s, ALICE, Position::new(epoch, 5), 3).await;
    assert_eq!(
        stamped(&older).iter().map(|m| m.1).collect::<Vec<_>>(),
        [2, 3, 4]
    );
    let first = back(s, ALICE, Position::new(epoch, 2), 3).await;
    assert_eq!(ids(&first), ["m1"]);
    assert!(!first.gap, "nothing older ever existed");
    assert!(back(s, ALICE, Position::new(epoch, 1), 3)
        .await
        .messages
        .is_empty());
    // Past the end reads from the newest; another epoch too, and says so.
    assert_eq!(
        ids(&back(s, ALICE, Position::new(epoch, 99), 1).await),
        ["m7"]
    );
    let other = back(s, ALICE, Position::new(epoch ^ 2, 3), 2).await;
    assert!(other.reset);
    assert_eq!(ids(&other), ["m6", "m7"]);
    // The byte budget keeps the newest, at least one.
    let one = s
        .read(ALICE, Start::Before(Position::new(epoch, 0)), 5, 1)
        .await
        .unwrap();
    assert_eq!(ids(&one), ["m7"]);
}

async fn a_repeat_of_a_dedup_key_is_stored_once(s: &dyn Inbox) {
    let first = append_keyed(s, ALICE, "once", "bob:1").await;
    let again = append_keyed(s, ALICE, "once", "bob:1").await;
    assert!(!first.repeat && again.repeat);
    assert_eq!(again.at, first.at);
    let other = append_keyed(s, ALICE, "once", "bob:2").await;
    assert_eq!(other.at.seq, first.at.seq + 1);
    assert_eq!(read(s, ALICE, 0, 0).await.messages.len(), 2);
    // The same key in another stream is another message.
    assert!(
        !append_keyed(s, Stream::User("bob"), "once", "bob:1")
            .await
            .repeat
    );
    // Concurrent repeats of one new key: exactly one is stored.
    let tries = (0..8).map(|_| append_keyed(s, ALICE, "race", "race:1"));
    let results = futures::future::join_all(tries).await;
    assert_eq!(results.iter().filter(|a| !a.repeat).count(), 1);
    assert!(results.windows(2).all(|w| w[0].at == w[1].at));
    assert_eq!(read(s, ALICE, 0, 0).await.messages.len(), 3);
}

async fn an_unknown_epoch_reads_the_newest_page(s: &dyn Inbox) {
    let a = append(s, ALICE, "a").await;
    append(s, ALICE, "b").await;
    append(s, ALICE, "c").await;
    let page = read(s, ALICE, a.epoch.wrapping_add(2), 1).await;
    assert!(page.reset && !page.gap);
    assert_eq!(page.head.epoch, a.epoch);
    assert_eq!(ids(&page), ["a", "b", "c"]);
    // Not the whole retained history: the newest page of what was asked.
    let newest = s
        .read(
            ALICE,
            Start::After(Position::new(a.epoch.wrapping_add(2), 1)),
            2,
            1 << 20,
        )
        .await
        .unwrap();
    assert!(newest.reset);
    assert_eq!(ids(&newest), ["b", "c"]);
}

async fn a_device_resuming_ahead_of_the_store_moves_it_to_a_new_epoch(s: &dyn Inbox) {
    let a = append(s, ALICE, "a").await;
    append(s, ALICE, "b").await;
    // Anyone else claiming seq 5 reads nothing new, and changes nothing.
    let claimed = read(s, ALICE, a.epoch, 5).await;
    assert!(!claimed.reset && claimed.messages.is_empty());
    assert_eq!(claimed.head.epoch, a.epoch);
    let room = append(s, Stream::Room("r"), "r1").await;
    assert!(!read(s, Stream::Room("r"), room.epoch, 9).await.reset);
    // The user's own device showed seq 5: this store lost writes it once
    // took (a restore from an old backup).
    let page = s
        .read(
            ALICE,
            Start::Resume(Position::new(a.epoch, 5)),
            100,
            1 << 20,
        )
        .await
        .unwrap();
    assert!(page.reset);
    assert_ne!(page.head.epoch, a.epoch);
    assert_eq!(
        stamped(&page),
        vec![
            ("a".into(), 1, page.head.epoch),
            ("b".into(), 2, page.head.epoch)
        ]
    );
    // Every later reader and append is in the new epoch.
    let c = append(s, ALICE, "c").await;
    assert_eq!(c, Position::new(page.head.epoch, 3));
    assert!(read(s, ALICE, a.epoch, 2).await.reset);
}

async fn acks_move_forward_only_and_a_new_device_starts_there(s: &dyn Inbox) {
    let page = s.read(ALICE, Start::Acked, 10, 1 << 20).await.unwrap();
    assert!(page.messages.is_empty());
    let a = append(s, ALICE, "a").await;
    append(s, ALICE, "b").await;
    append(s, ALICE, "c").await;
    let unread = s.read(ALICE, Start::Acked, 10, 1 << 20).await.unwrap();
    assert_eq!(
        ids(&unread),
        ["a", "b", "c"],
        "nothing acked: everything held"
    );
    s.ack("alice", Position::new(a.epoch, 2)).await.unwrap();
    s.ack("alice", Position::new(a.epoch, 1)).await.unwrap();
    s.ack("alice", Position::new(a.epoch.wrapping_add(2), 3))
        .await
        .unwrap();
    let unread = s.read(ALICE, Start::Acked, 10, 1 << 20).await.unwrap();
    assert_eq!(ids(&unread), ["c"], "the highest ack of this epoch counts");
    s.ack("alice", Position::new(a.epoch, 99)).await.unwrap();
    let unread = s.read(ALICE, Start::Acked, 10, 1 << 20).await.unwrap();
    assert!(
        unread.messages.is_empty(),
        "an ack past the end stops there"
    );
}

async fn pages_respect_the_byte_budget_but_carry_at_least_one(s: &dyn Inbox) {
    let big = Bytes::from(vec![b'x'; 100]);
    for _ in 0..3 {
        s.append(
            ALICE,
            NewMessage {
                message: &big,
                dedup: None,
            },
        )
        .await
        .unwrap();
    }
    let start = Start::After(Position::NONE);
    assert_eq!(
        s.read(ALICE, start, 10, 150).await.unwrap().messages.len(),
        1
    );
    assert_eq!(
        s.read(ALICE, start, 10, 250).await.unwrap().messages.len(),
        2
    );
    assert_eq!(s.read(ALICE, start, 10, 1).await.unwrap().messages.len(), 1);
    let head_only = s.read(ALICE, start, 0, 1 << 20).await.unwrap();
    assert!(head_only.messages.is_empty());
    assert_eq!(head_only.head.last_seq, 3);
}

async fn heads_of_many_streams_come_in_the_order_asked(s: &dyn Inbox) {
    for i in 0..3 {
        append(s, ALICE, &format!("a{i}")).await;
    }
    append(s, Stream::Room("lobby"), "r").await;
    let heads = s
        .heads(&[Stream::Room("lobby"), Stream::User("nobody"), ALICE])
        .await
        .unwrap();
    assert_eq!(
        heads.iter().map(|h| h.last_seq).collect::<Vec<_>>(),
        [1, 0, 3]
    );
    assert_eq!((heads[1].epoch, heads[2].first_seq), (0, 1));
}

macro_rules! contract {
    ($opts:ident: $($name:ident),* $(,)?) => {
        mod memory {
            use super::*;
            $(
                #[tokio::test(start_paused = true)]
                async fn $name() {
                    super::$name(&MemoryInbox::new($opts())).await;
                }
            )*
        }

        mod postgres_single {
            use super::*;
            $(
                #[tokio::test]
                async fn $name() {
                    let (_server, store) = pg::single($opts()).await;
                    super::$name(store.as_ref()).await;
                }
            )*
        }

        mod postgres_sharded {
            use super::*;
            $(
                #[tokio::test]
                async fn $name() {
                    let (_server, store) = pg::sharded($opts()).await;
                    super::$name(store.as_ref()).await;
                }
            )*
        }
    };
}

mod kept {
    use super::*;
    contract!(
        opts:
        seqs_are_gap_free_and_read_back_in_order,
        streams_are_separate,
        a_missing_stream_is_empty_and_a_reader_with_an_epoch_is_told,
        a_long_history_keeps_every_message,
        paging_back_gives_the_newest_below_in_order,
        a_repeat_of_a_dedup_key_is_stored_once,
        an_unknown_epoch_reads_the_newest_page,
        a_device_resuming_ahead_of_the_store_moves_it_to_a_new_epoch,
        acks_move_forward_only_and_a_new_device_starts_there,
        pages_respect_the_byte_budget_but_carry_at_least_one,
        heads_of_many_streams_come_in_the_order_asked,
    );
}

/// Messages past the retention are gone; a reader asking for them is told
/// (`gap`), forwards and backwards. `expire` deletes what is due now (the
/// memory store drops it as it reads).
async fn messages_older_than_the_retention_are_gone(
    s: &dyn Inbox,
    o: InboxOptions,
    expire: impl AsyncFn(),
) {
    let old = append(s, ALICE, "old").await;
    // Time passing is the point (paused on memory, real on PostgreSQL): the
    // old message ends 5/4 of the retention old, the newer 5/8.
    let step = o.retention * 5 / 8;
    tokio::time::sleep(step).await;
    append(s, ALICE, "newer").await;
    tokio::time::sleep(step).await;
    expire().await;
    let page = read(s, ALICE, old.epoch, 0).await;
    assert_eq!(ids(&page), ["newer"]);
    assert!(page.gap, "seq 1 is gone");
    assert_eq!(page.head.first_seq, 2);
    let page = back(s, ALICE, Position::new(old.epoch, 0), 10).await;
    assert_eq!(ids(&page), ["newer"]);
    assert!(page.gap, "paging back reached what is gone");
    assert_eq!(
        page.head.epoch, old.epoch,
        "retention never changes the epoch"
    );
}

#[tokio::test(start_paused = true)]
async fn memory_messages_older_than_the_retention_are_gone() {
    let s = MemoryInbox::new(short_lived());
    messages_older_than_the_retention_are_gone(&s, short_lived(), async || {}).await;
}

#[tokio::test]
async fn postgres_messages_older_than_the_retention_are_gone() {
    let (_server, store) = pg::sharded(short_lived()).await;
    let expire = async || {
        store.expire_now().await.unwrap();
    };
    messages_older_than_the_retention_are_gone(store.as_ref(), short_lived(), expire).await;
}
