//! The names the protocol carries, and the one rule set every service
//! applies to them: logic when a push or a send names them, comet when a
//! client does, the SDK before it sends.
//!
//! A name is 1 to `max` bytes of UTF-8 with no control characters. Usernames
//! that logic registers are stricter still (see logic's accounts), but a
//! backend that mints its own tokens may use any uid these rules accept.
//! Comet ids and device ids, which the stores embed in their own records,
//! are plain: ASCII letters, digits, `.`, `_` and `-` only.

/// Longest user id, in bytes.
pub const MAX_UID_LEN: usize = 64;
/// Longest room name, in bytes.
pub const MAX_ROOM_LEN: usize = 64;
/// Longest comet id, in bytes.
pub const MAX_COMET_ID_LEN: usize = 64;
/// Longest connection key, in bytes (a comet id, its boot id and a counter).
pub const MAX_KEY_LEN: usize = 128;
/// Longest device id, in bytes.
pub const MAX_DEVICE_LEN: usize = 64;
/// Longest dedup key (a `Send.client_msg_id`, an HTTP `Idempotency-Key`).
pub const MAX_DEDUP_KEY_LEN: usize = 128;

/// Why a name is refused. The text names the field, for error replies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum InvalidName {
    /// The name is empty.
    #[error("{0} is empty")]
    Empty(&'static str),
    /// The name is longer than the limit.
    #[error("{what} is longer than {max} bytes")]
    TooLong {
        /// Which name.
        what: &'static str,
        /// Its limit, in bytes.
        max: usize,
    },
    /// The name contains a control character.
    #[error("{0} has control characters")]
    Control(&'static str),
    /// A plain name holds something other than letters, digits, `.`, `_`
    /// and `-`.
    #[error("{0} may hold only ASCII letters, digits, '.', '_' and '-'")]
    NotPlain(&'static str),
    /// A dedup key holds something other than visible ASCII.
    #[error("{0} may hold only visible ASCII characters")]
    NotVisible(&'static str),
}

fn check_plain(what: &'static str, name: &str, max: usize) -> Result<(), InvalidName> {
    check(what, name, max)?;
    if name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
    {
        Ok(())
    } else {
        Err(InvalidName::NotPlain(what))
    }
}

fn check(what: &'static str, name: &str, max: usize) -> Result<(), InvalidName> {
    if name.is_empty() {
        Err(InvalidName::Empty(what))
    } else if name.len() > max {
        Err(InvalidName::TooLong { what, max })
    } else if name.chars().any(char::is_control) {
        Err(InvalidName::Control(what))
    } else {
        Ok(())
    }
}

/// Checks a user id.
pub fn check_uid(uid: &str) -> Result<(), InvalidName> {
    check("uid", uid, MAX_UID_LEN)
}

/// Checks a room name.
pub fn check_room(room: &str) -> Result<(), InvalidName> {
    check("room name", room, MAX_ROOM_LEN)
}

/// Checks a connection key.
pub fn check_key(key: &str) -> Result<(), InvalidName> {
    check("connection key", key, MAX_KEY_LEN)
}

/// Checks a comet id.
pub fn check_comet_id(id: &str) -> Result<(), InvalidName> {
    check_plain("comet id", id, MAX_COMET_ID_LEN)
}

/// Checks a device id (an empty one means "no device id" and is not
/// checked by callers).
pub fn check_device(device: &str) -> Result<(), InvalidName> {
    check_plain("device id", device, MAX_DEVICE_LEN)
}

/// Checks a dedup key: 1-128 visible ASCII characters, the rule of the
/// HTTP `Idempotency-Key` and of a `Send.client_msg_id` that is not empty
/// (empty: no dedup).
pub fn check_dedup_key(key: &str) -> Result<(), InvalidName> {
    let what = "dedup key";
    if key.is_empty() {
        Err(InvalidName::Empty(what))
    } else if key.len() > MAX_DEDUP_KEY_LEN {
        Err(InvalidName::TooLong {
            what,
            max: MAX_DEDUP_KEY_LEN,
        })
    } else if !key.bytes().all(|b| b.is_ascii_graphic()) {
        Err(InvalidName::NotVisible(what))
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn comet_and_device_ids_are_plain() {
        assert!(check_comet_id("comet-1.eu_west").is_ok());
        assert_eq!(
            check_comet_id("a|b"),
            Err(InvalidName::NotPlain("comet id"))
        );
        assert!(check_device("laptop-3f2a").is_ok());
        assert!(check_device("phone 1").is_err());
        assert!(check_device(&"d".repeat(65)).is_err());
    }

    #[test]
    fn names_are_checked() {
        assert!(check_room("lobby").is_ok());
        assert_eq!(check_room(""), Err(InvalidName::Empty("room name")));
        assert_eq!(
            check_room(&"x".repeat(65)).unwrap_err().to_string(),
            "room name is longer than 64 bytes"
        );
        assert!(check_room(&"x".repeat(64)).is_ok());
        assert_eq!(
            check_room("a\u{0}b"),
            Err(InvalidName::Control("room name"))
        );
        assert!(check_uid("alice@example.com").is_ok());
        assert!(check_uid(&"u".repeat(65)).is_err());
        assert!(check_key(&"k".repeat(128)).is_ok());
        assert!(check_key(&"k".repeat(129)).is_err());
        assert!(check_comet_id("comet-1").is_ok());
    }

    #[test]
    fn dedup_keys_are_short_visible_ascii() {
        assert!(check_dedup_key("order-42:shipped").is_ok());
        assert!(check_dedup_key(&"k".repeat(128)).is_ok());
        assert!(check_dedup_key(&"k".repeat(129)).is_err());
        assert!(check_dedup_key("").is_err());
        assert!(check_dedup_key("a b").is_err());
        assert!(check_dedup_key("a\u{0}b").is_err());
        assert!(check_dedup_key("café").is_err());
    }
}
