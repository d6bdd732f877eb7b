//! Room rules on the comet: a join the rules refuse never enters the room
//! (at `Auth` or by `Join`), and a removed member is taken out of the room
//! and told.

use courier_proto::client::{frame::Body, ErrorCode, Heartbeat, Join, Sync};
use courier_proto::comet::{PushRoomRequest, RemoveFromRoomRequest};

use super::support::*;

fn room_push(room: &str, id: &str) -> PushRoomRequest {
    PushRoomRequest {
        room: room.into(),
        messages: vec![encoded_with(id, b"{}")],
    }
}

fn join(room: &str) -> Body {
    Body::Join(Join {
        room: room.into(),
        ..Join::default()
    })
}

#[tokio::test]
async fn a_room_the_rules_refuse_is_never_entered() {
    let h = Harness::start().await;
    let comet = h.comet(h.config()).await;
    let mut push = comet.push_client().await;
    // At Auth: the refused room is left out of the reply's rooms.
    let (mut a, reply) = comet.login(&h, "alice", &["lobby", "private-x"]).await;
    assert_eq!(reply.rooms, ["lobby"]);
    // By Join: NOT_ALLOWED, and the connection stays.
    a.send(2, join("private-y")).await;
    assert_eq!(a.expect_error(ErrorCode::NotAllowed).await.id, 2);
    for room in ["private-x", "private-y"] {
        let reply = push.push_room(room_push(room, "secret")).await.unwrap();
        assert_eq!(reply.into_inner().delivered, 0, "{room}");
    }
    a.send(3, Body::Heartbeat(Heartbeat {})).await;
    assert_eq!(a.recv().await.id, 3, "nothing of the rooms came first");
}

#[tokio::test]
async fn a_removed_member_is_taken_out_and_told() {
    let h = Harness::start().await;
    let comet = h.comet(h.config()).await;
    let mut push = comet.push_client().await;
    let (mut a, _) = comet.login(&h, "alice", &["team"]).await;
    let (mut b, _) = comet.login(&h, "bob", &["team"]).await;
    let removed = push
        .remove_from_room(RemoveFromRoomRequest {
            room: "team".into(),
            uids: vec!["alice".into(), "nobody".into()],
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(removed.removed, 1);
    let told = a.recv().await;
    assert_eq!(told.id, 0);
    assert!(
        matches!(&told.body, Some(Body::LeaveReply(l)) if l.room == "team"),
        "{told:?}"
    );
    let reply = push.push_room(room_push("team", "after")).await.unwrap();
    assert_eq!(reply.into_inner().delivered, 1, "only bob");
    assert_eq!(push_ids(&b.recv().await), ["after"]);
    // Out of the room here too: its history is not read for alice.
    a.send(
        4,
        Body::Sync(Sync {
            room: "team".into(),
            limit: 10,
            ..Sync::default()
        }),
    )
    .await;
    assert_eq!(a.expect_error(ErrorCode::NotInRoom).await.id, 4);
    // Joining again asks the rules again (here: allowed).
    let asked = h.logic.count(|c| matches!(c, Call::Sync(_)));
    a.send(5, join("team")).await;
    assert!(matches!(a.recv().await.body, Some(Body::JoinReply(_))));
    assert_eq!(h.logic.count(|c| matches!(c, Call::Sync(_))), asked + 1);
    let reply = push.push_room(room_push("team", "back")).await.unwrap();
    assert_eq!(reply.into_inner().delivered, 2);
}
