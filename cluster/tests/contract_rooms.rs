//! The room-rules contract, written once and run against memory and
//! PostgreSQL.
#![allow(clippy::unwrap_used)]

use courier_cluster::rooms::memory::MemoryRoomRules;
use courier_cluster::{JoinRule, RoomRules};

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
}

#[tokio::test]
async fn memory_a_rule_is_kept_per_room() {
    a_rule_is_kept_per_room(&MemoryRoomRules::default()).await;
}

#[tokio::test]
async fn memory_members_are_a_set_paged_in_uid_order() {
    members_are_a_set_paged_in_uid_order(&MemoryRoomRules::default()).await;
}
