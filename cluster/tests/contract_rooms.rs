//! The room-rules contract, written once and run against memory and
//! PostgreSQL (one shard, and two: a room's rows live in its history's
//! bucket). Plus what only PostgreSQL can show: a room's rule and members
//! move with its bucket.
#![allow(clippy::unwrap_used)]

mod pg;

use courier_cluster::inbox::InboxOptions;
use courier_cluster::postgres::routing::bucket_of;
use courier_cluster::rooms::memory::MemoryRoomRules;
use courier_cluster::rooms::MAX_MEMBERS_PER_CALL;
use courier_cluster::{Error, JoinRule, RoomRules};

fn uids(names: &[&str]) -> Vec<String> {
    names.iter().map(|n| (*n).to_owned()).collect()
}

async fn a_rule_is_kept_per_room(r: &dyn RoomRules) {
    assert_eq!(r.rule("team").await.unwrap(), None, "no rule of its own");
    r.set_rule("team", JoinRule::Members).await.unwrap();
    assert_eq!(r.rule("team").await.unwrap(), Some(JoinRule::Members));
    r.set_rule("team", JoinRule::App).await.unwrap();
    assert_eq!(r.rule("team").await.unwrap(), Some(JoinRule::App));
    assert_eq!(r.rule("other").await.unwrap(), None);
    // Many rooms, over every shard.
    for i in 0..40 {
        let room = format!("room-{i}");
        r.set_rule(&room, JoinRule::Open).await.unwrap();
        assert_eq!(r.rule(&room).await.unwrap(), Some(JoinRule::Open));
    }
}

async fn members_are_a_set_paged_in_uid_order(r: &dyn RoomRules) {
    assert!(!r.is_member("team", "alice").await.unwrap());
    assert_eq!(
        r.add_members("team", &uids(&["carol", "alice", "bob", "alice"]))
            .await
            .unwrap(),
        3
    );
    assert_eq!(
        r.add_members("team", &uids(&["bob", "dave"]))
            .await
            .unwrap(),
        1,
        "bob was in already"
    );
    assert!(r.is_member("team", "alice").await.unwrap());
    assert!(!r.is_member("other", "alice").await.unwrap(), "per room");
    assert_eq!(
        r.members("team", "", 2).await.unwrap(),
        uids(&["alice", "bob"])
    );
    assert_eq!(
        r.members("team", "bob", 10).await.unwrap(),
        uids(&["carol", "dave"])
    );
    assert!(r.members("team", "dave", 10).await.unwrap().is_empty());
    assert!(r.members("nobody-here", "", 10).await.unwrap().is_empty());

    assert!(r.remove_member("team", "bob").await.unwrap());
    assert!(!r.remove_member("team", "bob").await.unwrap(), "once");
    assert!(!r.is_member("team", "bob").await.unwrap());
    assert_eq!(
        r.members("team", "", 10).await.unwrap(),
        uids(&["alice", "carol", "dave"])
    );
    // Members and rules are independent.
    assert_eq!(r.rule("team").await.unwrap(), None);

    // One call adds a bounded number, and more are refused whole.
    let many: Vec<String> = (0..=MAX_MEMBERS_PER_CALL)
        .map(|i| format!("u{i:05}"))
        .collect();
    let err = r.add_members("big", &many).await.unwrap_err();
    assert!(matches!(err, Error::Unavailable { .. }), "{err:?}");
    assert!(r.members("big", "", 10).await.unwrap().is_empty());
    assert_eq!(
        r.add_members("big", &many[..MAX_MEMBERS_PER_CALL])
            .await
            .unwrap(),
        MAX_MEMBERS_PER_CALL
    );
    assert_eq!(
        r.members("big", "u00997", 10).await.unwrap(),
        uids(&["u00998", "u00999"])
    );
    // Added and then asked at once, as a member joining right away is.
    for i in 0..40 {
        let (room, uid) = (format!("room-{i}"), format!("user-{i}"));
        assert_eq!(
            r.add_members(&room, std::slice::from_ref(&uid))
                .await
                .unwrap(),
            1
        );
        assert!(r.is_member(&room, &uid).await.unwrap());
    }
}

#[tokio::test]
async fn memory_a_rule_is_kept_per_room() {
    a_rule_is_kept_per_room(&MemoryRoomRules::default()).await;
}

#[tokio::test]
async fn memory_members_are_a_set_paged_in_uid_order() {
    members_are_a_set_paged_in_uid_order(&MemoryRoomRules::default()).await;
}

#[tokio::test]
async fn postgres_single_a_rule_is_kept_per_room() {
    let (_server, store) = pg::single(InboxOptions::default()).await;
    a_rule_is_kept_per_room(store.as_ref()).await;
}

#[tokio::test]
async fn postgres_sharded_a_rule_is_kept_per_room() {
    let (_server, store) = pg::sharded(InboxOptions::default()).await;
    a_rule_is_kept_per_room(store.as_ref()).await;
}

#[tokio::test]
async fn postgres_single_members_are_a_set_paged_in_uid_order() {
    let (_server, store) = pg::single(InboxOptions::default()).await;
    members_are_a_set_paged_in_uid_order(store.as_ref()).await;
}

#[tokio::test]
async fn postgres_sharded_members_are_a_set_paged_in_uid_order() {
    let (_server, store) = pg::sharded(InboxOptions::default()).await;
    members_are_a_set_paged_in_uid_order(store.as_ref()).await;
}

#[tokio::test]
async fn postgres_a_room_keeps_its_rule_and_members_when_its_bucket_moves() {
    let (_server, store) = pg::sharded(InboxOptions::default()).await;
    store.set_rule("team", JoinRule::Members).await.unwrap();
    store
        .add_members("team", &uids(&["alice", "bob"]))
        .await
        .unwrap();
    let from = store.shard_of("r:team").unwrap();
    let to = if from == "a" { "b" } else { "a" };

    let moved = store.move_bucket(bucket_of("r:team"), to).await.unwrap();
    assert_eq!(moved.from, from);
    assert_eq!(store.shard_of("r:team").as_deref(), Some(to));

    assert_eq!(store.rule("team").await.unwrap(), Some(JoinRule::Members));
    assert_eq!(
        store.members("team", "", 10).await.unwrap(),
        uids(&["alice", "bob"])
    );
    // And the new shard takes the writes.
    assert!(store.remove_member("team", "bob").await.unwrap());
    store.set_rule("team", JoinRule::App).await.unwrap();
    assert_eq!(store.rule("team").await.unwrap(), Some(JoinRule::App));
    assert_eq!(
        store.members("team", "", 10).await.unwrap(),
        uids(&["alice"])
    );
}
