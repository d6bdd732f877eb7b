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
    use std::collections::HashMap;
    use std::time::Duration;

    use courier_proto::client::{
        frame::Body, AuthReply, HeartbeatReply, JoinReply, LeaveReply, Message, Push, SendReply,
        StreamHead, Sync, SyncReply, Target,
    };
    use courier_testkit::FrameClient;
    use tokio::net::TcpListener;
    use tokio::sync::mpsc;

    use super::super::Chat;
    use courier_client::{Client, ClientConfig, CometAddr, LoginReply};

    /// The epoch of every stream the fake comet holds.
    const EPOCH: u64 = 3;

    /// What the fake comet holds of a stream: bob's messages `m{seq}` for
    /// seqs `first..=last` (older ones expired).
    #[derive(Clone, Copy)]
    struct Held {
        first: u64,
        last: u64,
    }

    impl Held {
        fn head(self) -> StreamHead {
            StreamHead {
                epoch: EPOCH,
                last_seq: self.last,
                first_seq: self.first,
            }
        }
    }

    /// A page of `room` ("" the inbox) as a comet answers `sync`: the
    /// oldest after `after_seq`, or the newest below `before_seq`, with
    /// `gap` when paging back reached the oldest held and older ones are
    /// gone.
    fn page(room: &str, held: Held, sync: &Sync) -> SyncReply {
        let limit = u64::from(sync.limit);
        let (seqs, gap) = if sync.before_seq > 0 {
            let end = sync.before_seq.min(held.last + 1);
            let start = end.saturating_sub(limit).max(held.first);
            (start..end, start.min(end) <= held.first && held.first > 1)
        } else {
            let start = (sync.after_seq + 1).max(held.first);
            (start..(start + limit).min(held.last + 1), false)
        };
        let to = match room {
            "" => Target::user("alice"),
            room => Target::room(room),
        };
        let messages = seqs
            .map(|seq| Message {
                msg_id: format!("{room}-{seq}"),
                seq,
                epoch: EPOCH,
                from: "bob".into(),
                to: Some(to.clone()),
                op: 1,
                data: format!("m{seq}").into(),
                sent_at_ms: 1_700_000_000_000,
            })
            .collect();
        SyncReply {
            room: room.into(),
            head: Some(held.head()),
            messages,
            gap,
            reset: false,
        }
    }

    /// Answers every request from `held` (stream -> what it holds; "" the
    /// inbox); after a send to room `r`, pushes bob's reply there. Returns
    /// the sends, joins, leaves and history pages (syncs paging back) it
    /// saw, in order.
    async fn fake_comet(listener: TcpListener, held: HashMap<String, Held>) -> Vec<String> {
        let (stream, _) = listener.accept().await.unwrap();
        let mut conn = FrameClient::new(stream);
        let mut seen = Vec::new();
        let empty = Held { first: 0, last: 0 };
        while let Some(Ok(frame)) = conn.try_next().await {
            let reply = match frame.body {
                Some(Body::Auth(auth)) => {
                    let reply = Body::AuthReply(AuthReply {
                        uid: "alice".into(),
                        key: "k1".into(),
                        heartbeat_secs: 30,
                        rooms: auth.rooms,
                        ..AuthReply::default()
                    });
                    conn.send(frame.id, reply).await;
                    // Where the inbox stands, always right after AuthReply.
                    let inbox = held.get("").copied().unwrap_or(empty);
                    let resume = Sync {
                        after_seq: inbox.last,
                        ..Sync::default()
                    };
                    Body::SyncReply(page("", inbox, &resume))
                }
                Some(Body::Heartbeat(_)) => Body::HeartbeatReply(HeartbeatReply::default()),
                Some(Body::Sync(sync)) => {
                    if sync.before_seq > 0 {
                        seen.push(format!(
                            "history {:?} before {} epoch {} limit {}",
                            sync.room, sync.before_seq, sync.epoch, sync.limit
                        ));
                    }
                    let stream = held.get(&sync.room).copied().unwrap_or(empty);
                    Body::SyncReply(page(&sync.room, stream, &sync))
                }
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

    /// Runs a chat session against a fake comet holding `held`, in room
    /// `lobby`: types `lines`, waits for an output line starting with
    /// `until`, then ends the input. Returns every output line and what the
    /// comet saw.
    async fn session(
        held: HashMap<String, Held>,
        lines: &[&str],
        until: &str,
    ) -> (Vec<String>, Vec<String>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let comet = CometAddr {
            id: "comet-1".into(),
            tcp: listener.local_addr().unwrap().to_string(),
            ws: String::new(),
        };
        let comet_task = tokio::spawn(fake_comet(listener, held));
        let login = LoginReply {
            uid: "alice".into(),
            token: "t".into(),
            expires_in: 3600,
            heartbeat_secs: 30,
            comets: vec![comet],
        };
        let config = ClientConfig::new("http://127.0.0.1:9", "alice", "pw").with_rooms(["lobby"]);
        let (client, events) = Client::connect_with(config, login).await.unwrap();

        let (line_tx, line_rx) = mpsc::channel(16);
        let (out, mut out_rx) = mpsc::channel(64);
        let mut chat = Chat::new(client.clone(), "alice".into(), "lobby".into(), out);
        let running = tokio::spawn(async move {
            let result = chat.run(events, line_rx, None).await;
            (chat, result)
        });
        for line in lines {
            line_tx.send((*line).to_owned()).await.unwrap();
        }

        let mut output = Vec::new();
        while !output.iter().any(|l: &String| l.starts_with(until)) {
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
        (output, comet_task.await.unwrap())
    }

    #[tokio::test]
    async fn typed_lines_become_frames_and_output_lines() {
        let lines = [
            "hello",
            "@bob hi",
            "",
            ":join r",
            "in r",
            ":rooms",
            ":bogus",
            "bob;;psst",
            ":leave r",
        ];
        let (output, seen) = session(HashMap::new(), &lines, "* left").await;

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

    #[tokio::test]
    async fn history_pages_back_to_the_start_or_to_what_is_still_held() {
        // lobby holds all of its 7 messages; the inbox its last 3 of 6.
        let held = HashMap::from([
            ("lobby".to_owned(), Held { first: 1, last: 7 }),
            (String::new(), Held { first: 4, last: 6 }),
        ]);
        let lines = [
            ":history 3",
            ":history 3",
            ":history 3",
            ":history 2", // past the start: from the newest again
            ":inbox 2",
            ":inbox 2",
            ":rooms",
        ];
        let (output, seen) = session(held, &lines, "* rooms:").await;

        // Without the clock of message lines and the connection's status.
        let shown: Vec<&str> = output
            .iter()
            .filter(|l| !l.starts_with("* connected"))
            .map(|l| match l.strip_prefix('[') {
                Some(_) => &l[11..],
                None => l.as_str(),
            })
            .collect();
        assert_eq!(
            shown,
            [
                "* last 3 of #lobby:",
                "#lobby bob: m5",
                "#lobby bob: m6",
                "#lobby bob: m7",
                "* 3 earlier in #lobby:",
                "#lobby bob: m2",
                "#lobby bob: m3",
                "#lobby bob: m4",
                "* 1 earlier in #lobby:",
                "#lobby bob: m1",
                "* (start of history)",
                "* last 2 of #lobby:",
                "#lobby bob: m6",
                "#lobby bob: m7",
                "* last 2 of your inbox:",
                "@bob -> you: m5",
                "@bob -> you: m6",
                "* 1 earlier in your inbox:",
                "@bob -> you: m4",
                "* older messages of your inbox are no longer stored",
                "* rooms: lobby*",
            ],
            "{output:#?}"
        );
        let max = u64::MAX;
        assert_eq!(
            seen,
            [
                format!("history \"lobby\" before {max} epoch 0 limit 3"),
                format!("history \"lobby\" before 5 epoch {EPOCH} limit 3"),
                format!("history \"lobby\" before 2 epoch {EPOCH} limit 3"),
                format!("history \"lobby\" before {max} epoch 0 limit 2"),
                format!("history \"\" before {max} epoch 0 limit 2"),
                format!("history \"\" before 5 epoch {EPOCH} limit 2"),
            ]
        );
    }
}
