//! The chat's output lines. The format is stable because tests and scripts
//! parse it: one line per message, `[HH:MM:SS]` local time of `sent_at_ms`,
//! status lines start with `* `. Line breaks inside a message are shown as
//! `\n` so one message is always one line.

use std::borrow::Cow;

use chrono::{Local, TimeZone};
use courier_proto::client::{target::Kind, ErrorCode, Message};

use courier_client::Event;

/// `HH:MM:SS` in local time; `??:??:??` for an impossible timestamp.
pub fn clock(sent_at_ms: i64) -> String {
    match Local.timestamp_millis_opt(sent_at_ms).single() {
        Some(t) => t.format("%H:%M:%S").to_string(),
        None => "??:??:??".to_owned(),
    }
}

/// One received message as a line. `me` is our uid.
pub fn message_line(msg: &Message, me: &str) -> String {
    message_line_at(&clock(msg.sent_at_ms), msg, me)
}

/// [`message_line`] with the time already formatted.
pub fn message_line_at(time: &str, msg: &Message, me: &str) -> String {
    let text = one_line(&msg.data);
    let target = msg.to.as_ref().and_then(|t| t.kind.as_ref());
    if msg.from.is_empty() {
        return match target {
            Some(Kind::Room(room)) => format!("[{time}] push #{room} op={}: {text}", msg.op),
            _ => format!("[{time}] push op={}: {text}", msg.op),
        };
    }
    let from = &msg.from;
    match target {
        Some(Kind::Room(room)) => format!("[{time}] #{room} {from}: {text}"),
        Some(Kind::All(_)) => format!("[{time}] @{from} -> all: {text}"),
        Some(Kind::User(to)) if to != me => format!("[{time}] @{from} -> {to}: {text}"),
        _ => format!("[{time}] @{from} -> you: {text}"),
    }
}

/// A status line.
pub fn status(text: impl std::fmt::Display) -> String {
    format!("* {text}")
}

/// The status line for a connection event (`None` for messages).
/// `first` tells a first connection from a reconnect.
pub fn event_line(event: &Event, username: &str, first: bool) -> Option<String> {
    Some(match event {
        Event::Message(_) => return None,
        Event::Connected { comet_id, key } if first => {
            status(format!("connected to {comet_id} as {username} (key {key})"))
        }
        Event::Connected { comet_id, key } => {
            status(format!("reconnected to {comet_id} (key {key})"))
        }
        Event::Disconnected { reason } => status(format!("disconnected: {reason}")),
        Event::Kicked { reason } => status(format!("kicked: {reason}")),
        Event::RemovedFromRoom { room } => status(format!("you were removed from #{room}")),
        Event::Missed { room, count } => {
            let plural = if *count == 1 { "" } else { "s" };
            match room {
                None => status(format!("{count} message{plural} while you were away")),
                Some(r) => status(format!(
                    "{count} message{plural} in #{r} while you were away"
                )),
            }
        }
        Event::Gap {
            room,
            from_seq,
            to_seq,
        } => {
            let n = to_seq.saturating_sub(*from_seq) + 1;
            let plural = if n == 1 { "" } else { "s" };
            match room {
                None => status(format!(
                    "{n} older message{plural} expired before you read them"
                )),
                Some(r) => status(format!(
                    "{n} older message{plural} of #{r} expired before you read them"
                )),
            }
        }
        Event::Reset { room, .. } => match room {
            None => status("the server lost your message history; it starts again"),
            Some(r) => status(format!(
                "the server lost the history of #{r}; it starts again"
            )),
        },
        Event::Error { code, message } => {
            let name = ErrorCode::try_from(*code)
                .map(|c| {
                    c.as_str_name()
                        .trim_start_matches("ERROR_CODE_")
                        .to_ascii_lowercase()
                })
                .unwrap_or_else(|_| code.to_string());
            status(format!("error: {message} ({name})"))
        }
    })
}

/// `* rooms: lobby*, r`, the current room marked.
pub fn rooms_line(rooms: &[String], current: &str) -> String {
    if rooms.is_empty() {
        return status("rooms: (none)");
    }
    let list: Vec<String> = rooms
        .iter()
        .map(|r| {
            if r == current {
                format!("{r}*")
            } else {
                r.clone()
            }
        })
        .collect();
    status(format!("rooms: {}", list.join(", ")))
}

/// `* online: alice, bob; offline: carol` for the users asked about.
pub fn online_line(asked: &[String], online: &[String]) -> String {
    let (on, off): (Vec<&str>, Vec<&str>) = asked
        .iter()
        .map(String::as_str)
        .partition(|u| online.iter().any(|o| o == u));
    let list = |users: Vec<&str>| match users.is_empty() {
        true => "(none)".to_owned(),
        false => users.join(", "),
    };
    match off.is_empty() {
        true => status(format!("online: {}", list(on))),
        false => status(format!("online: {}; offline: {}", list(on), list(off))),
    }
}

/// UTF-8 (lossy) text on one line: line breaks and every other control
/// character escaped.
fn one_line(data: &[u8]) -> String {
    let text = String::from_utf8_lossy(data);
    escape_controls(&text, false).into_owned()
}

/// `text` with every control character but `\n` shown as an escape (`\r`,
/// `\t`, `\u{1b}`, ...), for anything printed to the terminal: text that
/// came over the network (a message, a kick reason) must not move the
/// cursor, clear the screen, retitle the window or ring the bell.
pub fn terminal_safe(text: &str) -> Cow<'_, str> {
    escape_controls(text, true)
}

fn escape_controls(text: &str, keep_newlines: bool) -> Cow<'_, str> {
    let escaped = |c: char| c.is_control() && !(keep_newlines && c == '\n');
    if !text.chars().any(escaped) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        match c {
            c if !escaped(c) => out.push(c),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c => out.push_str(&format!("\\u{{{:x}}}", u32::from(c))),
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use courier_proto::client::Target;

    fn msg(from: &str, to: Target, op: u32, data: &str) -> Message {
        Message {
            msg_id: "m1".into(),
            seq: 0,
            epoch: 0,
            from: from.into(),
            to: Some(to),
            op,
            data: data.as_bytes().to_vec().into(),
            sent_at_ms: 0,
        }
    }

    /// Checks each message renders as its line, as seen by bob at 12:00:01.
    fn assert_lines_for_bob(cases: &[(Message, &str)]) {
        for (message, line) in cases {
            assert_eq!(message_line_at("12:00:01", message, "bob"), *line);
        }
    }

    #[test]
    fn room_and_private_messages() {
        assert_lines_for_bob(&[
            (
                msg("alice", Target::room("lobby"), 1, "hello"),
                "[12:00:01] #lobby alice: hello",
            ),
            (
                msg("alice", Target::user("bob"), 1, "hi"),
                "[12:00:01] @alice -> you: hi",
            ),
            (
                msg("alice", Target::key("k1"), 1, "hi"),
                "[12:00:01] @alice -> you: hi",
            ),
            (
                msg("bob", Target::user("carol"), 1, "yo"),
                "[12:00:01] @bob -> carol: yo",
            ),
        ]);
    }

    #[test]
    fn backend_pushes() {
        assert_lines_for_bob(&[
            (
                msg("", Target::room("room"), 1001, r#"{"a":1}"#),
                r#"[12:00:01] push #room op=1001: {"a":1}"#,
            ),
            (
                msg("", Target::user("bob"), 1001, r#"{"a":1}"#),
                r#"[12:00:01] push op=1001: {"a":1}"#,
            ),
            (msg("", Target::all(), 7, "x"), "[12:00:01] push op=7: x"),
        ]);
    }

    #[test]
    fn bad_utf8_and_newlines_stay_on_one_line() {
        let mut m = msg("alice", Target::room("r"), 1, "");
        m.data = vec![b'a', 0xff, b'\n', b'b'].into();
        assert_eq!(
            message_line_at("t", &m, "bob"),
            "[t] #r alice: a\u{fffd}\\nb"
        );
    }

    #[test]
    fn terminal_control_sequences_in_a_message_are_shown_not_run() {
        // Clear screen, bell, an OSC window title, a C1 CSI, DEL.
        let mut m = msg("mallory", Target::room("r"), 1, "");
        m.data = "\u{1b}[2J\u{7}\u{1b}]0;pwned\u{7}\u{9b}31m\t\u{7f}ok".into();
        let line = message_line_at("t", &m, "bob");
        assert_eq!(
            line,
            "[t] #r mallory: \\u{1b}[2J\\u{7}\\u{1b}]0;pwned\\u{7}\\u{9b}31m\\t\\u{7f}ok"
        );
        assert!(!line.chars().any(char::is_control));
    }

    #[test]
    fn status_lines_keep_their_line_breaks_and_lose_control_characters() {
        assert_eq!(terminal_safe("a\nb"), "a\nb");
        assert!(matches!(terminal_safe("plain"), Cow::Borrowed(_)));
        let kicked = Event::Kicked {
            reason: "bye\u{1b}[31m\r".into(),
        };
        let line = event_line(&kicked, "a", false).unwrap();
        assert_eq!(terminal_safe(&line), "* kicked: bye\\u{1b}[31m\\r");
    }

    #[test]
    fn clock_is_hh_mm_ss() {
        let c = clock(1_700_000_000_123);
        assert_eq!(c.len(), 8);
        assert_eq!(c.as_bytes()[2], b':');
        assert_eq!(c.as_bytes()[5], b':');
        assert_eq!(clock(i64::MAX), "??:??:??");
    }

    #[test]
    fn status_lines() {
        let rooms = vec!["lobby".to_string(), "r".to_string()];
        assert_eq!(rooms_line(&rooms, "lobby"), "* rooms: lobby*, r");
        assert_eq!(
            online_line(
                &["alice".into(), "bob".into(), "carol".into()],
                &["alice".into(), "bob".into()]
            ),
            "* online: alice, bob; offline: carol"
        );
        let connected = Event::Connected {
            comet_id: "comet-1".into(),
            key: "k".into(),
        };
        assert_eq!(
            event_line(&connected, "alice", true).unwrap(),
            "* connected to comet-1 as alice (key k)"
        );
        assert!(event_line(&connected, "alice", false)
            .unwrap()
            .starts_with("* reconnected to comet-1"));
        let err = Event::Error {
            code: ErrorCode::SlowConsumer as i32,
            message: "queue full".into(),
        };
        assert_eq!(
            event_line(&err, "a", false).unwrap(),
            "* error: queue full (slow_consumer)"
        );
    }
}
