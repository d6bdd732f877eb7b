//! The part of Redis's RESP2 protocol `bench peer` speaks, sans-io.
//!
//! Commands go out as arrays of bulk strings
//! (`*2\r\n$9\r\nSUBSCRIBE\r\n$10\r\nbench-peer\r\n`). A subscribed
//! connection then reads pushes, each an array of three bulk strings:
//! `*3\r\n$7\r\nmessage\r\n$<n>\r\n<channel>\r\n$<n>\r\n<payload>\r\n`; the
//! first reply, `["subscribe", channel, count]`, confirms the subscription.
//! The publisher's `PUBLISH` is answered `:<receivers>\r\n`.
//!
//! [`next_reply`] reads one top-level value from the front of a buffer
//! without allocating: bulk strings are slices of the buffer, skipped by
//! their length rather than scanned, and of an array only its first three
//! elements are kept (nested arrays are refused: nothing `bench peer` asks
//! for answers with one). "Not enough bytes yet" is `Ok(None)`.

use std::io::Write as _;

use super::nats::{find_crlf, parse_len};
use super::BadBytes;

/// Longest header line accepted (`-ERR` texts are the longest).
const MAX_LINE: usize = 64 * 1024;
/// Most elements of an array reply accepted.
const MAX_ARRAY: usize = 16;

/// One reply or push from the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Reply<'a> {
    /// `["message", channel, payload]`: a delivered message.
    Message {
        channel: &'a [u8],
        payload: &'a [u8],
    },
    /// `["subscribe", channel, count]`: the subscription is in place.
    Subscribed,
    /// `:<n>`: `PUBLISH`'s answer, the subscribers that got it.
    Integer(i64),
    /// `-ERR …`, with its text.
    Error(&'a [u8]),
    /// Anything else (`+OK`, other arrays, bulk strings).
    Other,
}

/// One element of an array, as far as it is kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Value<'a> {
    Bulk(Option<&'a [u8]>),
    Integer(i64),
    Simple(&'a [u8]),
    Error(&'a [u8]),
    /// An array header with its length (-1: null).
    Array(i64),
}

/// The reply at the front of `buf` and the bytes it takes, or `None` until
/// all of it has arrived. Bulk strings longer than `max_bulk` are refused.
pub(crate) fn next_reply(
    buf: &[u8],
    max_bulk: usize,
) -> Result<Option<(Reply<'_>, usize)>, BadBytes> {
    let Some((top, mut at)) = value(buf, 0, max_bulk)? else {
        return Ok(None);
    };
    let reply = match top {
        Value::Array(n) if n > 0 => {
            let n = usize::try_from(n).map_err(|_| BadBytes("array length"))?;
            if n > MAX_ARRAY {
                return Err(BadBytes("array reply too long"));
            }
            let mut first = [None; 3];
            for i in 0..n {
                let Some((element, next)) = value(buf, at, max_bulk)? else {
                    return Ok(None);
                };
                if let Value::Array(_) = element {
                    return Err(BadBytes("nested array"));
                }
                if let Some(slot) = first.get_mut(i) {
                    *slot = Some(element);
                }
                at = next;
            }
            match (n, first) {
                (
                    3,
                    [Some(Value::Bulk(Some(kind))), Some(Value::Bulk(Some(channel))), Some(Value::Bulk(Some(payload)))],
                ) if kind.eq_ignore_ascii_case(b"message") => Reply::Message { channel, payload },
                (3, [Some(Value::Bulk(Some(kind))), _, Some(Value::Integer(_))])
                    if kind.eq_ignore_ascii_case(b"subscribe") =>
                {
                    Reply::Subscribed
                }
                _ => Reply::Other,
            }
        }
        Value::Integer(n) => Reply::Integer(n),
        Value::Error(text) => Reply::Error(text),
        Value::Array(_) | Value::Bulk(_) | Value::Simple(_) => Reply::Other,
    };
    Ok(Some((reply, at)))
}

/// One value's header (and a bulk string's body) starting at `buf[at]`;
/// an array's elements are not read.
fn value(buf: &[u8], at: usize, max_bulk: usize) -> Result<Option<(Value<'_>, usize)>, BadBytes> {
    let rest = buf.get(at..).unwrap_or_default();
    let Some(line_end) = find_crlf(rest) else {
        if rest.len() > MAX_LINE {
            return Err(BadBytes("header line too long"));
        }
        return Ok(None);
    };
    let Some((&kind, text)) = rest[..line_end].split_first() else {
        return Err(BadBytes("empty line"));
    };
    let after_line = at + line_end + 2;
    let parsed = match kind {
        b'$' => {
            if text == b"-1" {
                Value::Bulk(None)
            } else {
                let len = parse_len(text).ok_or(BadBytes("bulk length is not a number"))?;
                if len > max_bulk {
                    return Err(BadBytes("bulk string over the limit"));
                }
                let end = after_line + len;
                let Some(trailer) = buf.get(end..end + 2) else {
                    return Ok(None);
                };
                if trailer != b"\r\n" {
                    return Err(BadBytes("bulk string not followed by CRLF"));
                }
                return Ok(Some((Value::Bulk(Some(&buf[after_line..end])), end + 2)));
            }
        }
        b'*' => Value::Array(parse_int(text).ok_or(BadBytes("array length is not a number"))?),
        b':' => Value::Integer(parse_int(text).ok_or(BadBytes("integer is not a number"))?),
        b'+' => Value::Simple(text),
        b'-' => Value::Error(text),
        _ => return Err(BadBytes("unknown RESP type")),
    };
    Ok(Some((parsed, after_line)))
}

fn parse_int(text: &[u8]) -> Option<i64> {
    match text.split_first()? {
        (b'-', digits) => parse_len(digits)
            .and_then(|n| i64::try_from(n).ok())
            .map(|n| -n),
        _ => parse_len(text).and_then(|n| i64::try_from(n).ok()),
    }
}

/// Appends a command as a RESP array of bulk strings to `out`.
pub(crate) fn command(out: &mut Vec<u8>, args: &[&[u8]]) {
    // Writing into a Vec cannot fail.
    let _ = write!(out, "*{}\r\n", args.len());
    for arg in args {
        let _ = write!(out, "${}\r\n", arg.len());
        out.extend_from_slice(arg);
        out.extend_from_slice(b"\r\n");
    }
}

/// `SUBSCRIBE <channel>`.
pub(crate) fn subscribe(channel: &str) -> Vec<u8> {
    let mut out = Vec::new();
    command(&mut out, &[b"SUBSCRIBE", channel.as_bytes()]);
    out
}

/// Appends `PUBLISH <channel> <payload>` to `out`.
pub(crate) fn publish(out: &mut Vec<u8>, channel: &str, payload: &[u8]) {
    command(out, &[b"PUBLISH", channel.as_bytes(), payload]);
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAX: usize = 1 << 20;

    fn replies_split(stream: &[u8], cut: usize) -> Vec<String> {
        let mut buf = Vec::new();
        let mut seen = Vec::new();
        for part in [&stream[..cut], &stream[cut..]] {
            buf.extend_from_slice(part);
            while let Some((reply, used)) = next_reply(&buf, MAX).expect("valid stream") {
                seen.push(format!("{reply:?}"));
                buf.drain(..used);
            }
        }
        assert!(buf.is_empty(), "left over: {buf:?}");
        seen
    }

    fn push(channel: &[u8], payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        command(&mut out, &[b"message", channel, payload]);
        out
    }

    #[test]
    fn message_pushes_survive_every_split() {
        let mut s = b"*3\r\n$9\r\nsubscribe\r\n$10\r\nbench-peer\r\n:1\r\n".to_vec();
        s.extend(push(b"bench-peer", b"{\"t\":1}"));
        // A payload holding CRLF and `$`: skipped by length, not scanned.
        s.extend(push(b"bench-peer", b"a\r\n$3\r\n"));
        s.extend(push(b"c", b""));
        s.extend_from_slice(b":10000\r\n-ERR wrong\r\n+OK\r\n$-1\r\n*-1\r\n");
        let whole = replies_split(&s, s.len());
        assert_eq!(
            whole,
            [
                "Subscribed".to_owned(),
                format!(
                    "{:?}",
                    Reply::Message {
                        channel: b"bench-peer",
                        payload: b"{\"t\":1}"
                    }
                ),
                format!(
                    "{:?}",
                    Reply::Message {
                        channel: b"bench-peer",
                        payload: b"a\r\n$3\r\n"
                    }
                ),
                format!(
                    "{:?}",
                    Reply::Message {
                        channel: b"c",
                        payload: b""
                    }
                ),
                "Integer(10000)".to_owned(),
                format!("{:?}", Reply::Error(b"ERR wrong")),
                "Other".to_owned(),
                "Other".to_owned(),
                "Other".to_owned(),
            ]
        );
        for cut in 0..=s.len() {
            assert_eq!(replies_split(&s, cut), whole, "cut at {cut}");
        }
    }

    #[test]
    fn commands_are_arrays_of_bulk_strings() {
        assert_eq!(
            subscribe("bench-peer"),
            b"*2\r\n$9\r\nSUBSCRIBE\r\n$10\r\nbench-peer\r\n"
        );
        let mut out = Vec::new();
        publish(&mut out, "ch", b"xy");
        assert_eq!(out, b"*3\r\n$7\r\nPUBLISH\r\n$2\r\nch\r\n$2\r\nxy\r\n");
    }

    #[test]
    fn bad_bytes_are_errors_not_panics() {
        assert!(next_reply(b"?x\r\n", MAX).is_err());
        assert!(next_reply(b"\r\n", MAX).is_err());
        assert!(next_reply(b"$3\r\nabcXY", MAX).is_err());
        assert!(next_reply(b"$99\r\n", 10).is_err());
        assert!(next_reply(b"*1\r\n*1\r\n:1\r\n", MAX).is_err());
        assert!(next_reply(b"*99\r\n", MAX).is_err());
        assert!(next_reply(b":x\r\n", MAX).is_err());
        assert_eq!(
            next_reply(b":-5\r\n", MAX),
            Ok(Some((Reply::Integer(-5), 5)))
        );
        assert_eq!(next_reply(b"*3\r\n$7\r\nmess", MAX), Ok(None));
    }
}
