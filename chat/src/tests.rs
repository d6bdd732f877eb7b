//! The chat loop: argument parsing, and typed lines against a fake comet.

use super::*;
use clap::Parser;

#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    chat: ChatArgs,
}

#[test]
fn args_have_the_documented_defaults() {
    let cli = Cli::try_parse_from(["chat", "--user", "alice", "--register"]).unwrap();
    assert_eq!(cli.chat.server, "http://127.0.0.1:3111");
    assert_eq!(cli.chat.room, "lobby");
    assert!(cli.chat.register);
    assert!(!cli.chat.ws, "TCP unless --ws");
    let cli =
        Cli::try_parse_from(["chat", "--user", "bob", "--password", "pw", "--room", "r"]).unwrap();
    assert_eq!(cli.chat.password.as_deref(), Some("pw"));
    assert_eq!(cli.chat.room, "r");
    let cli = Cli::try_parse_from(["chat", "--user", "carol", "--ws"]).unwrap();
    assert!(cli.chat.ws);
    assert!(Cli::try_parse_from(["chat"]).is_err(), "--user is required");
}

#[test]
fn prompt_names_the_current_room() {
    assert_eq!(prompt_for("lobby"), "#lobby> ");
    assert_eq!(prompt_for(""), "> ");
}

mod session {
    use std::time::Duration;

    use courier_proto::client::{
        frame::Body, AuthReply, HeartbeatReply, JoinReply, LeaveReply, Message, Push, SendReply,
        Target,
    };
    use courier_testkit::FrameClient;
    use tokio::net::TcpListener;
    use tokio::sync::mpsc;

    use super::super::Chat;
    use courier_client::{Client, ClientConfig, CometAddr, LoginReply};

    /// Answers every request; after a send to room `r`, pushes bob's reply there.
    /// Returns the sends and joins it saw, in order.
    async fn fake_comet(listener: TcpListener) -> Vec<String> {
        let (stream, _) = listener.accept().await.unwrap();
        let mut conn = FrameClient::new(stream);
        let mut seen = Vec::new();
        while let Some(Ok(frame)) = conn.try_next().await {
            let reply = match frame.body {
                Some(Body::Auth(auth)) => Body::AuthReply(AuthReply {
                    uid: "alice".into(),
                    key: "k1".into(),
                    heartbeat_secs: 30,
                    rooms: auth.rooms,
                    ..AuthReply::default()
                }),
                Some(Body::Heartbeat(_)) => Body::HeartbeatReply(HeartbeatReply::default()),
                Some(Body::Join(j)) => {
                    seen.push(format!("join {}", j.room));
                    Body::JoinReply(JoinReply {
                        room: j.room,
                        ..JoinReply::default()
                    })
                }
                Some(Body::Leave(l)) => {
                    seen.push(format!("leave {}", l.room));
                    Body::LeaveReply(LeaveReply { room: l.room })
                }
                Some(Body::Send(s)) => {
                    let to = match s.to.and_then(|t| t.kind) {
                        Some(courier_proto::client::target::Kind::Room(r)) => format!("#{r}"),
                        Some(courier_proto::client::target::Kind::User(u)) => format!("@{u}"),
                        other => format!("{other:?}"),
                    };
                    let text = String::from_utf8_lossy(&s.data).into_owned();
                    seen.push(format!("{to} {text}"));
                    if to == "#r" {
                        let msg = Message {
                            msg_id: "m9".into(),
                            from: "bob".into(),
                            to: Some(Target::room("r")),
                            op: 1,
                            data: "yo".into(),
                            sent_at_ms: 1_700_000_000_000,
                            ..Message::default()
                        };
                        let push = Body::Push(Push {
                            messages: vec![msg],
                        });
                        conn.send(0, push).await;
                    }
                    Body::SendReply(SendReply {
                        msg_id: format!("m{}", seen.len()),
                        seq: 0,
                        epoch: 0,
                    })
                }
                _ => continue,
            };
            conn.send(frame.id, reply).await;
        }
        seen
    }

    async fn next_line(out: &mut mpsc::Receiver<String>) -> String {
        tokio::time::timeout(Duration::from_secs(5), out.recv())
            .await
            .expect("output in time")
            .expect("output open")
    }

    #[tokio::test]
    async fn typed_lines_become_frames_and_output_lines() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let comet = CometAddr {
            id: "comet-1".into(),
            tcp: listener.local_addr().unwrap().to_string(),
            ws: String::new(),
        };
        let comet_task = tokio::spawn(fake_comet(listener));
        let login = LoginReply {
            uid: "alice".into(),
            token: "t".into(),
            expires_in: 3600,
            heartbeat_secs: 30,
            comets: vec![comet],
        };
        let config = ClientConfig::new("http://127.0.0.1:9", "alice", "pw").with_rooms(["lobby"]);
        let (client, events) = Client::connect_with(config, login).await.unwrap();

        let (line_tx, lines) = mpsc::channel(16);
        let (out, mut out_rx) = mpsc::channel(64);
        let mut chat = Chat {
            client: client.clone(),
            username: "alice".into(),
            current: "lobby".into(),
            first_connect: true,
            out,
        };
        let running = tokio::spawn(async move {
            let result = chat.run(events, lines, None).await;
            (chat, result)
        });
        for line in [
            "hello",
            "@bob hi",
            "",
            ":join r",
            "in r",
            ":rooms",
            ":bogus",
            "bob;;psst",
            ":leave r",
        ] {
            line_tx.send(line.to_owned()).await.unwrap();
        }

        let mut output = Vec::new();
        while !output.iter().any(|l: &String| l.starts_with("* left")) {
            output.push(next_line(&mut out_rx).await);
        }
        drop(line_tx); // end of input
        let (chat, result) = running.await.unwrap();
        result.unwrap();
        client.close().await;
        drop(chat);
        while let Some(line) = out_rx.recv().await {
            output.push(line);
        }

        let has = |want: &str| output.iter().any(|l| l == want);
        assert!(
            has("* connected to comet-1 as alice (key k1)"),
            "{output:#?}"
        );
        assert!(has("* joined #r"), "{output:#?}");
        assert!(has("* rooms: lobby, r*"), "{output:#?}");
        assert!(
            has("* unknown command :bogus; :help lists commands"),
            "{output:#?}"
        );
        assert!(has("* left #r"), "{output:#?}");
        let pushed = output
            .iter()
            .find(|l| l.ends_with("#r bob: yo"))
            .unwrap_or_else(|| panic!("bob's message shown: {output:#?}"));
        assert!(
            pushed.starts_with('[') && pushed.as_bytes()[9] == b']',
            "{pushed}"
        );
        assert!(
            !output.iter().any(|l| l.starts_with("* error")),
            "{output:#?}"
        );

        let seen = comet_task.await.unwrap();
        assert_eq!(
            seen,
            vec![
                "#lobby hello",
                "@bob hi",
                "join r",
                "#r in r",
                "@bob psst",
                "leave r"
            ]
        );
    }
}
