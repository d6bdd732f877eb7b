//! The message-store contract, written once and run against every backend:
//! memory (with paused time), a single Redis and a three-node Redis Cluster
//! (each test starts its own real server; a server that cannot start fails
//! the test).
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use bytes::Bytes;
use courier_cluster::inbox::memory::MemoryInbox;
use courier_cluster::inbox::redis::RedisInbox;
use courier_cluster::inbox::{
    Appended, Inbox, InboxOptions, NewMessage, Page, Start, Stream, StreamLimits,
};
use courier_cluster::sessions::redis::RedisConn;
use courier_proto::client::Message;
use courier_proto::encode_message;
use courier_testkit::redis::{RedisCluster, RedisServer};
use prost::Message as _;

const ALICE: Stream<'static> = Stream::User("alice");

/// Small bounds so the bound tests are quick; ages long enough that only
/// the age test sees one pass.
fn opts() -> InboxOptions {
    InboxOptions {
        inbox: StreamLimits {
            max_messages: 5,
            max_age: Duration::from_secs(600),
        },
        room: StreamLimits {
            max_messages: 3,
            max_age: Duration::from_secs(600),
        },
        dedup_window: Duration::from_secs(600),
    }
}

/// Bounds whose age passes in about a second, for the age test.
fn short_lived() -> InboxOptions {
    InboxOptions {
        inbox: StreamLimits {
            max_messages: 100,
            max_age: Duration::from_millis(1200),
        },
        ..opts()
    }
}

fn encoded(id: &str) -> Bytes {
    encode_message(&courier_testkit::messages::message_with(id, b"{}"))
}

async fn append(s: &dyn Inbox, stream: Stream<'_>, id: &str) -> Appended {
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
    appended
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
    s.read(stream, Start::Position { epoch, after_seq }, 100, 1 << 20)
        .await
        .unwrap()
}

async fn seqs_are_gap_free_and_read_back_in_order(s: &dyn Inbox, _: InboxOptions) {
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
        .read(
            ALICE,
            Start::Position {
                epoch: a.epoch,
                after_seq: 0,
            },
            1,
            1 << 20,
        )
        .await
        .unwrap();
    assert_eq!(ids(&one), ["a"]);
    // Epoch 0: the position is taken in the current epoch.
    assert_eq!(ids(&read(s, ALICE, 0, 2).await), ["c"]);
}

async fn streams_are_separate(s: &dyn Inbox, _: InboxOptions) {
    append(s, ALICE, "a1").await;
    let bob = append(s, Stream::User("bob"), "b1").await;
    let room = append(s, Stream::Room("alice"), "r1").await;
    assert_eq!((bob.seq, room.seq), (1, 1));
    assert_eq!(ids(&read(s, Stream::User("bob"), 0, 0).await), ["b1"]);
    assert_eq!(ids(&read(s, Stream::Room("alice"), 0, 0).await), ["r1"]);
    assert_eq!(ids(&read(s, ALICE, 0, 0).await), ["a1"]);
}

async fn a_missing_stream_is_empty_and_a_reader_with_an_epoch_is_told(
    s: &dyn Inbox,
    _: InboxOptions,
) {
    let page = read(s, ALICE, 0, 0).await;
    assert_eq!(page, Page::default());
    let page = read(s, ALICE, 77, 3).await;
    assert!(page.reset, "an epoch the store does not have");
    assert!(page.messages.is_empty());
}

async fn the_count_bound_holds_and_reading_before_it_is_a_gap(s: &dyn Inbox, o: InboxOptions) {
    let max = o.inbox.max_messages as u64;
    let mut epoch = 0;
    for i in 1..=max + 3 {
        epoch = append(s, ALICE, &format!("m{i}")).await.epoch;
    }
    let page = read(s, ALICE, epoch, 1).await;
    assert_eq!(page.head.first_seq, 4, "the 3 oldest were dropped");
    assert_eq!(page.head.last_seq, max + 3);
    assert!(page.gap, "seqs 2 and 3 are gone");
    assert_eq!(page.messages.len() as u64, max);
    assert_eq!(stamped(&page)[0].1, 4);
    // From inside the window there is no gap.
    assert!(!read(s, ALICE, epoch, 3).await.gap);
    // Rooms have their own bound.
    for i in 1..=5 {
        append(s, Stream::Room("r"), &format!("r{i}")).await;
    }
    assert_eq!(
        ids(&read(s, Stream::Room("r"), 0, 0).await),
        ["r3", "r4", "r5"]
    );
}

async fn a_repeat_of_a_dedup_key_is_stored_once(s: &dyn Inbox, _: InboxOptions) {
    let message = encoded("once");
    let first = s
        .append(
            ALICE,
            NewMessage {
                message: &message,
                dedup: Some("bob:1"),
            },
        )
        .await
        .unwrap();
    let again = s
        .append(
            ALICE,
            NewMessage {
                message: &message,
                dedup: Some("bob:1"),
            },
        )
        .await
        .unwrap();
    assert!(!first.repeat && again.repeat);
    assert_eq!((again.seq, again.epoch), (first.seq, first.epoch));
    let other = s
        .append(
            ALICE,
            NewMessage {
                message: &message,
                dedup: Some("bob:2"),
            },
        )
        .await
        .unwrap();
    assert_eq!(other.seq, first.seq + 1);
    assert_eq!(read(s, ALICE, 0, 0).await.messages.len(), 2);
    // The same key in another stream is another message.
    let bobs = s
        .append(
            Stream::User("bob"),
            NewMessage {
                message: &message,
                dedup: Some("bob:1"),
            },
        )
        .await
        .unwrap();
    assert!(!bobs.repeat);
}

async fn an_unknown_epoch_reads_from_the_start(s: &dyn Inbox, _: InboxOptions) {
    let a = append(s, ALICE, "a").await;
    append(s, ALICE, "b").await;
    let page = read(s, ALICE, a.epoch.wrapping_add(2), 1).await;
    assert!(page.reset && !page.gap);
    assert_eq!(page.head.epoch, a.epoch);
    assert_eq!(ids(&page), ["a", "b"]);
}

async fn a_reader_ahead_of_the_store_moves_it_to_a_new_epoch(s: &dyn Inbox, _: InboxOptions) {
    let a = append(s, ALICE, "a").await;
    append(s, ALICE, "b").await;
    // The reader showed seq 5: this store lost writes it once took.
    let page = read(s, ALICE, a.epoch, 5).await;
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
    assert_eq!((c.seq, c.epoch), (3, page.head.epoch));
    assert!(read(s, ALICE, a.epoch, 2).await.reset);
}

async fn acks_move_forward_only_and_a_new_device_starts_there(s: &dyn Inbox, _: InboxOptions) {
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
    s.ack("alice", a.epoch, 2).await.unwrap();
    s.ack("alice", a.epoch, 1).await.unwrap();
    s.ack("alice", a.epoch.wrapping_add(2), 3).await.unwrap();
    let unread = s.read(ALICE, Start::Acked, 10, 1 << 20).await.unwrap();
    assert_eq!(ids(&unread), ["c"], "the highest ack of this epoch counts");
    s.ack("alice", a.epoch, 99).await.unwrap();
    let unread = s.read(ALICE, Start::Acked, 10, 1 << 20).await.unwrap();
    assert!(
        unread.messages.is_empty(),
        "an ack past the end stops there"
    );
}

async fn pages_respect_the_byte_budget_but_carry_at_least_one(s: &dyn Inbox, _: InboxOptions) {
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
    let start = Start::Position {
        epoch: 0,
        after_seq: 0,
    };
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

async fn messages_older_than_the_age_bound_are_gone(s: &dyn Inbox, o: InboxOptions) {
    let old = append(s, ALICE, "old").await;
    // Time passing is the point (paused on memory, real on Redis).
    tokio::time::sleep(o.inbox.max_age / 2 + Duration::from_millis(100)).await;
    append(s, ALICE, "newer").await;
    tokio::time::sleep(o.inbox.max_age / 2 + Duration::from_millis(100)).await;
    let page = read(s, ALICE, old.epoch, 0).await;
    assert_eq!(ids(&page), ["newer"]);
    assert!(page.gap, "seq 1 aged out");
    assert_eq!(page.head.first_seq, 2);
}

macro_rules! contract {
    ($opts:ident: $($name:ident),* $(,)?) => {
        mod memory {
            use super::*;
            $(
                #[tokio::test(start_paused = true)]
                async fn $name() {
                    super::$name(&MemoryInbox::new($opts()), $opts()).await;
                }
            )*
        }

        mod redis_single {
            use super::*;
            $(
                #[tokio::test]
                async fn $name() {
                    let server = RedisServer::start().await.unwrap();
                    let conn = RedisConn::connect(&server.url()).await.unwrap();
                    super::$name(&RedisInbox::new(conn, $opts()), $opts()).await;
                }
            )*
        }

        mod redis_cluster {
            use super::*;
            $(
                #[tokio::test]
                async fn $name() {
                    let cluster = RedisCluster::start().await.unwrap();
                    let conn = RedisConn::connect(&cluster.url()).await.unwrap();
                    super::$name(&RedisInbox::new(conn, $opts()), $opts()).await;
                }
            )*
        }
    };
}

mod bounded {
    use super::*;
    contract!(
        opts:
        seqs_are_gap_free_and_read_back_in_order,
        streams_are_separate,
        a_missing_stream_is_empty_and_a_reader_with_an_epoch_is_told,
        the_count_bound_holds_and_reading_before_it_is_a_gap,
        a_repeat_of_a_dedup_key_is_stored_once,
        an_unknown_epoch_reads_from_the_start,
        a_reader_ahead_of_the_store_moves_it_to_a_new_epoch,
        acks_move_forward_only_and_a_new_device_starts_there,
        pages_respect_the_byte_budget_but_carry_at_least_one,
    );
}

mod aging {
    use super::*;
    contract!(short_lived: messages_older_than_the_age_bound_are_gone);
}

/// A store that loses everything (a restart without persistence, a flush)
/// starts a new epoch, and a reader of the old one is told.
#[tokio::test]
async fn a_flushed_redis_starts_a_new_epoch() {
    let server = RedisServer::start().await.unwrap();
    let conn = RedisConn::connect(&server.url()).await.unwrap();
    let s = RedisInbox::new(conn.clone(), opts());
    let before = append(&s, ALICE, "a").await;
    redis::cmd("FLUSHALL")
        .query_async::<()>(&mut conn.clone())
        .await
        .unwrap();
    let after = append(&s, ALICE, "b").await;
    assert_eq!(after.seq, 1, "seqs start again");
    assert_ne!(after.epoch, before.epoch, "under a new epoch");
    let page = read(&s, ALICE, before.epoch, 1).await;
    assert!(page.reset);
    assert_eq!(stamped(&page), vec![("b".into(), 1, after.epoch)]);
}
