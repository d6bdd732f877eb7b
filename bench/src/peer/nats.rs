//! The part of the NATS client protocol `bench peer` speaks, sans-io.
//!
//! NATS is a text protocol: control lines end in `\r\n`, and a `MSG`
//! line's last field is the length of the payload that follows it (itself
//! followed by `\r\n`). A subscriber sends
//! `CONNECT {"verbose":false,"pedantic":false}\r\nSUB <subject> <sid>\r\nPING\r\n`:
//! the server handles one connection's commands in order, so its `PONG`
//! means the subscription is in place. After that it reads `MSG` frames and
//! must answer the server's `PING` with `PONG` or be dropped. The publisher
//! sends `PUB <subject> <len>\r\n<payload>\r\n` and a final `PING`, whose
//! `PONG` means every `PUB` before it was processed.
//!
//! [`next_op`] finds one operation at the front of a buffer without
//! allocating: a `MSG`'s payload is a slice of the buffer, skipped by its
//! length rather than scanned, so counting messages costs one short line
//! search each. "Not enough bytes yet" is `Ok(None)`, not an error.

use std::io::Write as _;

use super::BadBytes;

/// The server's `PING`'s answer.
pub(crate) const PONG: &[u8] = b"PONG\r\n";
/// Asks the server for a `PONG` once it has handled everything before.
pub(crate) const PING: &[u8] = b"PING\r\n";
/// Longest control line accepted (`INFO` is the longest the server sends).
const MAX_LINE: usize = 64 * 1024;

/// One operation from the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Op<'a> {
    /// `MSG <subject> <sid> [reply-to] <len>`: a delivered message.
    Msg(&'a [u8]),
    /// `PING`: answer with [`PONG`].
    Ping,
    /// `PONG`: everything sent before our `PING` was handled.
    Pong,
    /// `INFO {…}`, `+OK`: nothing to do.
    Other,
    /// `-ERR '…'`, with its text.
    Err(&'a [u8]),
}

/// The operation at the front of `buf` and the bytes it takes, or `None`
/// until all of it has arrived. Payloads longer than `max_payload` are
/// refused (the length cannot be trusted, and the buffer is bounded).
pub(crate) fn next_op(buf: &[u8], max_payload: usize) -> Result<Option<(Op<'_>, usize)>, BadBytes> {
    let Some(line_end) = find_crlf(buf) else {
        if buf.len() > MAX_LINE {
            return Err(BadBytes("control line too long"));
        }
        return Ok(None);
    };
    let line = &buf[..line_end];
    let after_line = line_end + 2;
    let mut fields = line
        .split(|b| *b == b' ' || *b == b'\t')
        .filter(|f| !f.is_empty());
    let op = fields.next().unwrap_or_default();
    if op.eq_ignore_ascii_case(b"MSG") {
        // subject, sid, optional reply-to, then the length last.
        let (mut n, mut last) = (0, None);
        for f in fields {
            n += 1;
            last = Some(f);
        }
        if !(3..=4).contains(&n) {
            return Err(BadBytes("MSG line with wrong number of fields"));
        }
        let len = last
            .and_then(parse_len)
            .ok_or(BadBytes("MSG length is not a number"))?;
        if len > max_payload {
            return Err(BadBytes("MSG payload over the limit"));
        }
        let end = after_line + len;
        let Some(trailer) = buf.get(end..end + 2) else {
            return Ok(None);
        };
        if trailer != b"\r\n" {
            return Err(BadBytes("MSG payload not followed by CRLF"));
        }
        return Ok(Some((Op::Msg(&buf[after_line..end]), end + 2)));
    }
    let parsed = if op.eq_ignore_ascii_case(b"PING") {
        Op::Ping
    } else if op.eq_ignore_ascii_case(b"PONG") {
        Op::Pong
    } else if op.eq_ignore_ascii_case(b"INFO") || op.eq_ignore_ascii_case(b"+OK") {
        Op::Other
    } else if op.eq_ignore_ascii_case(b"-ERR") {
        Op::Err(line.get(5..).unwrap_or_default())
    } else {
        return Err(BadBytes("unknown NATS operation"));
    };
    Ok(Some((parsed, after_line)))
}

/// A subscriber's first bytes: `CONNECT`, `SUB`, and a `PING` whose `PONG`
/// confirms the subscription.
pub(crate) fn subscribe(subject: &str, sid: u64) -> Vec<u8> {
    format!("CONNECT {{\"verbose\":false,\"pedantic\":false}}\r\nSUB {subject} {sid}\r\nPING\r\n")
        .into_bytes()
}

/// The publisher's first bytes.
pub(crate) fn connect() -> &'static [u8] {
    b"CONNECT {\"verbose\":false,\"pedantic\":false}\r\n"
}

/// Appends `PUB <subject> <len>\r\n<payload>\r\n` to `out`.
pub(crate) fn publish(out: &mut Vec<u8>, subject: &str, payload: &[u8]) {
    // Writing into a Vec cannot fail.
    let _ = write!(out, "PUB {subject} {}\r\n", payload.len());
    out.extend_from_slice(payload);
    out.extend_from_slice(b"\r\n");
}

/// Index of the first `\r\n` in `buf`.
pub(crate) fn find_crlf(buf: &[u8]) -> Option<usize> {
    let mut from = 0;
    while let Some(i) = buf.get(from..)?.iter().position(|b| *b == b'\n') {
        let at = from + i;
        if at > 0 && buf.get(at - 1) == Some(&b'\r') {
            return Some(at - 1);
        }
        from = at + 1;
    }
    None
}

/// A decimal length, without allocating.
pub(crate) fn parse_len(digits: &[u8]) -> Option<usize> {
    if digits.is_empty() || digits.len() > 12 {
        return None;
    }
    digits.iter().try_fold(0usize, |n, d| {
        d.is_ascii_digit().then(|| n * 10 + usize::from(d - b'0'))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAX: usize = 1 << 20;

    /// Everything `next_op` finds in `stream` fed in two parts split at
    /// `cut`, the way a reader with a reused buffer sees it.
    fn ops_split(stream: &[u8], cut: usize) -> Vec<String> {
        let mut buf = Vec::new();
        let mut seen = Vec::new();
        for part in [&stream[..cut], &stream[cut..]] {
            buf.extend_from_slice(part);
            while let Some((op, used)) = next_op(&buf, MAX).expect("valid stream") {
                seen.push(format!("{op:?}"));
                buf.drain(..used);
            }
        }
        assert!(buf.is_empty(), "left over: {buf:?}");
        seen
    }

    fn stream() -> Vec<u8> {
        let mut s = b"INFO {\"server_id\":\"x\",\"max_payload\":1048576}\r\n".to_vec();
        s.extend_from_slice(b"+OK\r\nPONG\r\n");
        s.extend_from_slice(b"MSG bench.peer 1 5\r\nhello\r\n");
        s.extend_from_slice(b"PING\r\n");
        // A payload holding CRLF and spaces: skipped by length, not scanned.
        s.extend_from_slice(b"MSG bench.peer 1 reply.to 8\r\na\r\nb c\r\n\r\n");
        s.extend_from_slice(b"MSG bench.peer 1 0\r\n\r\n");
        s
    }

    #[test]
    fn msg_framing_survives_every_split() {
        let s = stream();
        let whole = ops_split(&s, s.len());
        assert_eq!(
            whole,
            [
                "Other",
                "Other",
                "Pong",
                "Msg([104, 101, 108, 108, 111])",
                "Ping",
                "Msg([97, 13, 10, 98, 32, 99, 13, 10])",
                "Msg([])",
            ]
        );
        for cut in 0..=s.len() {
            assert_eq!(ops_split(&s, cut), whole, "cut at {cut}");
        }
    }

    #[test]
    fn ping_is_answered_and_partial_ping_waits() {
        assert_eq!(next_op(b"PING\r\n", MAX), Ok(Some((Op::Ping, 6))));
        assert_eq!(next_op(b"PING\r", MAX), Ok(None));
        assert_eq!(next_op(b"PI", MAX), Ok(None));
        assert_eq!(next_op(b"ping\r\n", MAX), Ok(Some((Op::Ping, 6))));
        assert_eq!(PONG, b"PONG\r\n");
    }

    #[test]
    fn bad_bytes_are_errors_not_panics() {
        assert!(next_op(b"MSG a 1 x\r\n", MAX).is_err());
        assert!(next_op(b"MSG a 5\r\n", MAX).is_err());
        assert!(next_op(b"MSG a 1 2\r\nabXY", MAX).is_err());
        assert!(next_op(b"MSG a 1 99\r\n", 10).is_err());
        assert!(next_op(b"WAT\r\n", MAX).is_err());
        assert!(next_op(&vec![b'x'; MAX_LINE + 1], MAX).is_err());
        assert_eq!(
            next_op(b"-ERR 'Slow Consumer'\r\n", MAX),
            Ok(Some((Op::Err(b"'Slow Consumer'"), 22)))
        );
    }

    #[test]
    fn frames_parse_back() {
        let mut out = Vec::new();
        publish(&mut out, "bench.peer", b"{\"t\":1}");
        assert_eq!(out, b"PUB bench.peer 7\r\n{\"t\":1}\r\n");
        assert_eq!(
            subscribe("s", 3),
            b"CONNECT {\"verbose\":false,\"pedantic\":false}\r\nSUB s 3\r\nPING\r\n"
        );
        assert_eq!(find_crlf(b"a\nb\r\n"), Some(3));
        assert_eq!(find_crlf(b"\n\r"), None);
        assert_eq!(parse_len(b"0"), Some(0));
        assert_eq!(parse_len(b""), None);
        assert_eq!(parse_len(b"1x"), None);
    }
}
