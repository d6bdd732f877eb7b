//! What a typed line means. Parsing is pure so it is tested without a
//! terminal or a server.
//!
//! Plain text goes to the current room; `@bob text` (and CIM's `bob;;text`)
//! is private; `:`-commands manage rooms and the session. `::text` sends a
//! line that starts with `:`.

/// One typed line, understood.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Line {
    /// Nothing typed.
    Empty,
    /// Text for the current room.
    Say(String),
    /// Text for one user.
    Private {
        /// The recipient's uid.
        to: String,
        /// The text.
        text: String,
    },
    /// `:join r`: join and make current.
    Join(String),
    /// `:leave [r]`: leave `r`, or the current room.
    Leave(Option<String>),
    /// `:rooms`.
    Rooms,
    /// `:history [n]`: the last `n` messages of the current room, then,
    /// typed again, the `n` before those; `:inbox [n]`: the same through
    /// your private messages and pushes.
    History {
        /// How many (default 20).
        count: u32,
        /// The inbox instead of the current room.
        inbox: bool,
    },
    /// `:who`: how many are in the current room.
    Who,
    /// `:online user...`: which of the named users are online.
    Online(Vec<String>),
    /// `:help`.
    Help,
    /// `:q`.
    Quit,
    /// A command we do not know (without the `:`).
    Unknown(String),
    /// A known form used wrongly; the payload is the right usage.
    Usage(&'static str),
}

/// Parses one line of input (a trailing newline is ignored).
pub fn parse_line(line: &str) -> Line {
    let line = line.trim();
    if line.is_empty() {
        return Line::Empty;
    }
    if let Some(escaped) = line.strip_prefix("::") {
        return Line::Say(format!(":{escaped}"));
    }
    if let Some(command) = line.strip_prefix(':') {
        return parse_command(command);
    }
    if let Some(rest) = line.strip_prefix('@') {
        let (to, text) = split_word(rest);
        return private(to, text, "@user message");
    }
    if let Some((to, text)) = line.split_once(";;") {
        if !to.is_empty() && !to.contains(char::is_whitespace) {
            return private(to, text.trim(), "user;;message");
        }
    }
    Line::Say(line.to_owned())
}

fn private(to: &str, text: &str, usage: &'static str) -> Line {
    if to.is_empty() || text.is_empty() {
        return Line::Usage(usage);
    }
    Line::Private {
        to: to.to_owned(),
        text: text.to_owned(),
    }
}

fn parse_command(command: &str) -> Line {
    let (name, arg) = split_word(command);
    let arg = (!arg.is_empty()).then(|| arg.to_owned());
    match name {
        "join" | "j" => match arg {
            Some(room) if !room.contains(char::is_whitespace) => Line::Join(room),
            _ => Line::Usage(":join room"),
        },
        "leave" | "l" => match arg {
            Some(room) if room.contains(char::is_whitespace) => Line::Usage(":leave [room]"),
            arg => Line::Leave(arg),
        },
        "rooms" => Line::Rooms,
        "history" | "inbox" => match arg.as_deref().map(str::parse::<u32>) {
            None => Line::History {
                count: DEFAULT_HISTORY,
                inbox: name == "inbox",
            },
            Some(Ok(count)) if (1..=MAX_HISTORY).contains(&count) => Line::History {
                count,
                inbox: name == "inbox",
            },
            Some(_) if name == "inbox" => Line::Usage(":inbox [1-500]"),
            Some(_) => Line::Usage(":history [1-500]"),
        },
        "who" => Line::Who,
        "olu" | "online" => match arg {
            Some(users) => Line::Online(users.split_whitespace().map(str::to_owned).collect()),
            None => Line::Usage(":online user..."),
        },
        "help" | "h" | "?" => Line::Help,
        "q" | "quit" | "exit" => Line::Quit,
        other => Line::Unknown(other.to_owned()),
    }
}

/// Messages `:history` and `:inbox` show unless told otherwise, and at most.
const DEFAULT_HISTORY: u32 = 20;
const MAX_HISTORY: u32 = 500;

/// Splits off the first word; the rest is trimmed.
fn split_word(s: &str) -> (&str, &str) {
    match s.split_once(char::is_whitespace) {
        Some((word, rest)) => (word, rest.trim()),
        None => (s, ""),
    }
}

/// The help text, one status line per entry.
pub const HELP: &[&str] = &[
    "text              send to the current room",
    "@user text        send to one user (also: user;;text)",
    ":join room        join a room and make it current",
    ":leave [room]     leave a room (default: the current one)",
    ":rooms            list joined rooms (* = current)",
    ":history [n]      the last n messages of the current room (default 20);",
    "                  again: the n before those, back to the start",
    ":inbox [n]        the same for your private messages and pushes",
    ":who              how many are in the current room",
    ":online user...   which of these users are online",
    ":help             this help",
    ":q                quit",
];

#[cfg(test)]
mod tests {
    use super::*;

    fn private(to: &str, text: &str) -> Line {
        Line::Private {
            to: to.into(),
            text: text.into(),
        }
    }

    #[test]
    fn private_messages_in_both_syntaxes() {
        assert_eq!(parse_line("@bob hi there"), private("bob", "hi there"));
        assert_eq!(parse_line("bob;;hi"), private("bob", "hi"));
        assert_eq!(parse_line("bob;; hi;;again\n"), private("bob", "hi;;again"));
        assert_eq!(parse_line("@bob"), Line::Usage("@user message"));
        assert_eq!(parse_line("@ hi"), Line::Usage("@user message"));
        assert_eq!(parse_line("bob;;"), Line::Usage("user;;message"));
    }

    #[test]
    fn plain_text_goes_to_the_room() {
        assert_eq!(parse_line("hello world"), Line::Say("hello world".into()));
        assert_eq!(parse_line("  padded \r\n"), Line::Say("padded".into()));
        assert_eq!(
            parse_line("a b;;c"),
            Line::Say("a b;;c".into()),
            "not a uid"
        );
        assert_eq!(parse_line(";;x"), Line::Say(";;x".into()));
        assert_eq!(parse_line("::-) smile"), Line::Say(":-) smile".into()));
    }

    #[test]
    fn commands() {
        assert_eq!(parse_line(":join r"), Line::Join("r".into()));
        assert_eq!(parse_line(":join"), Line::Usage(":join room"));
        assert_eq!(parse_line(":join a b"), Line::Usage(":join room"));
        assert_eq!(parse_line(":leave r"), Line::Leave(Some("r".into())));
        assert_eq!(parse_line(":leave"), Line::Leave(None));
        assert_eq!(parse_line(":rooms"), Line::Rooms);
        assert_eq!(
            parse_line(":history"),
            Line::History {
                count: 20,
                inbox: false
            }
        );
        assert_eq!(
            parse_line(":inbox 5"),
            Line::History {
                count: 5,
                inbox: true
            }
        );
        assert_eq!(parse_line(":history x"), Line::Usage(":history [1-500]"));
        assert_eq!(parse_line(":history 0"), Line::Usage(":history [1-500]"));
        assert_eq!(
            parse_line(":online alice  bob"),
            Line::Online(vec!["alice".into(), "bob".into()])
        );
        assert_eq!(parse_line(":olu"), Line::Usage(":online user..."));
        assert_eq!(parse_line(":who"), Line::Who);
        assert_eq!(parse_line(":help"), Line::Help);
        assert_eq!(parse_line(":q"), Line::Quit);
        assert_eq!(
            parse_line(":frobnicate x"),
            Line::Unknown("frobnicate".into())
        );
    }

    #[test]
    fn empty_lines_are_ignored() {
        assert_eq!(parse_line(""), Line::Empty);
        assert_eq!(parse_line("   \n"), Line::Empty);
    }
}
