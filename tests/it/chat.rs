//! Upstream chat: private and room messages sent by clients, rooms joined
//! and left, and `courier chat` driven as a process.

#![allow(clippy::unwrap_used)]

use crate::support;

use std::process::Stdio;

use bytes::Bytes;
use courier_proto::client::Target;
use courier_proto::op;
use support::*;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

#[tokio::test]
async fn private_and_room_chat_through_send() {
    let system = start(2).await;
    let (alice, mut alice_events) = user(&system, "alice").await;
    let (bob, mut bob_events) = user(&system, "bob").await;

    let reply = alice
        .send_to_user("bob", op::CHAT, Bytes::from_static(b"hi bob"))
        .await
        .expect("send");
    let m = next_message_is(&mut bob_events, b"hi bob").await;
    assert_eq!(m.from, "alice");
    assert_eq!(m.msg_id, reply.msg_id);
    assert_eq!(m.to, Some(Target::user("bob")));

    alice.join("general").await.expect("join");
    bob.join("general").await.expect("join");
    bob.send_to_room("general", op::CHAT, Bytes::from_static(b"hello room"))
        .await
        .expect("send");
    for events in [&mut alice_events, &mut bob_events] {
        let m = next_message_is(events, b"hello room").await;
        assert_eq!(m.from, "bob");
        assert_eq!(m.to, Some(Target::room("general")));
    }
    system.stop().await;
}

#[tokio::test]
async fn leaving_a_room_stops_its_messages() {
    let system = start(1).await;
    let (alice, mut alice_events) = user(&system, "alice").await;
    let (bob, _bob_events) = user(&system, "bob").await;
    alice.join("r1").await.expect("join");
    alice.join("r2").await.expect("join");
    assert_eq!(alice.rooms(), vec!["r1".to_string(), "r2".to_string()]);
    alice.leave("r1").await.expect("leave");
    assert_eq!(alice.rooms(), vec!["r2".to_string()]);

    bob.send_to_room("r1", op::CHAT, Bytes::from_static(b"to r1"))
        .await
        .expect("send");
    bob.send_to_room("r2", op::CHAT, Bytes::from_static(b"to r2"))
        .await
        .expect("send");
    // Messages to one connection arrive in order: r1's would come first.
    next_message_is(&mut alice_events, b"to r2").await;
    system.stop().await;
}

/// A `courier chat` process with piped stdin/stdout.
struct ChatProcess {
    child: tokio::process::Child,
    stdin: tokio::process::ChildStdin,
    lines: tokio::io::Lines<BufReader<tokio::process::ChildStdout>>,
}

impl ChatProcess {
    fn spawn(server: &str, user: &str) -> Self {
        let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_courier"))
            .args(["chat", "--server", server, "--user", user, "--register"])
            .args(["--password", PASSWORD])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn courier chat");
        let stdin = child.stdin.take().unwrap();
        let lines = BufReader::new(child.stdout.take().unwrap()).lines();
        Self {
            child,
            stdin,
            lines,
        }
    }

    async fn say(&mut self, line: &str) {
        self.stdin
            .write_all(format!("{line}\n").as_bytes())
            .await
            .expect("write stdin");
        self.stdin.flush().await.expect("flush");
    }

    /// Reads lines until one contains `needle`; returns it.
    async fn expect(&mut self, needle: &str) -> String {
        let wait = async {
            while let Some(line) = self.lines.next_line().await.expect("read stdout") {
                if line.contains(needle) {
                    return line;
                }
            }
            panic!("stdout closed before {needle:?}");
        };
        tokio::time::timeout(DEADLINE, wait)
            .await
            .unwrap_or_else(|_| panic!("no line with {needle:?}"))
    }
}

#[tokio::test]
async fn courier_chat_as_a_process() {
    let system = start(1).await;
    let server = system.logic_url();
    let mut alice = ChatProcess::spawn(&server, "alice");
    let mut bob = ChatProcess::spawn(&server, "bob");
    alice.expect("* connected").await;
    bob.expect("* connected").await;

    alice.say("hello everyone").await;
    let line = bob.expect("hello everyone").await;
    assert!(line.contains("#lobby alice: hello everyone"), "{line}");

    bob.say("@alice psst").await;
    let line = alice.expect("psst").await;
    assert!(line.contains("@bob -> you: psst"), "{line}");
    bob.say("alice;;cim style").await;
    alice.expect("@bob -> you: cim style").await;

    alice.say(":join ops").await;
    alice.expect("* joined #ops").await;
    bob.say(":join ops").await;
    bob.expect("* joined #ops").await;
    alice.say("deploy at noon").await;
    bob.expect("#ops alice: deploy at noon").await;

    bob.say(":who").await;
    let line = bob.expect("* #ops:").await;
    assert!(line.ends_with("online"), "{line}");
    bob.say(":online alice bob nobody").await;
    let line = bob.expect("* online:").await;
    assert!(
        line.contains("online: alice, bob; offline: nobody"),
        "{line}"
    );

    alice.say(":q").await;
    let status = tokio::time::timeout(DEADLINE, alice.child.wait())
        .await
        .expect("chat exits on :q")
        .expect("wait");
    assert!(status.success());
    drop(bob);
    system.stop().await;
}

#[tokio::test]
async fn courier_chat_tells_what_arrived_while_away_and_shows_history() {
    let system = start(1).await;
    let server = system.logic_url();
    let api = Api::new(&system);
    // Bob is registered but away while three messages reach him.
    token(&system, "bob").await;
    for i in 1..=3 {
        let (status, _) = api
            .post(
                "/push/users",
                serde_json::json!({"uids": ["bob"], "op": 1, "data": format!("news {i}")}),
            )
            .await;
        assert_eq!(status, 202);
    }
    let mut bob = ChatProcess::spawn(&server, "bob");
    bob.expect("* connected").await;
    bob.expect("news 1").await;
    bob.expect("news 3").await;
    bob.expect("* 3 messages while you were away").await;

    let mut alice = ChatProcess::spawn(&server, "alice");
    alice.expect("* connected").await;
    for line in ["first", "second", "third"] {
        alice.say(line).await;
        bob.expect(&format!("#lobby alice: {line}")).await;
    }
    bob.say(":history 2").await;
    bob.expect("* last 2 of #lobby:").await;
    bob.expect("#lobby alice: second").await;
    bob.expect("#lobby alice: third").await;
    bob.say(":inbox").await;
    bob.expect("* last 3 of your inbox:").await;
    drop((alice, bob));
    system.stop().await;
}
