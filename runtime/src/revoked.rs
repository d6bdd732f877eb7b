//! Revoked tokens: which tokens may no longer open a connection, refresh
//! one, or keep one open.
//!
//! Logic writes the records to discovery (under `/courier/revoked/`, each
//! for as long as what it revokes can live) and every comet and logic
//! watches them, so a check costs no round trip and a revocation reaches
//! every comet as fast as etcd's watch does:
//!
//! - `t/<jti>` = uid: that one token (a logout);
//! - `u/<uid>` = milliseconds since the epoch: every token of the user
//!   issued before then (a password change, an operator's revoke).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::hash::{Hash, Hasher};

use crate::token::Claims;

/// The record name that revokes the token with id `jti`.
pub fn token_record(jti: &str) -> String {
    format!("t/{jti}")
}

/// The record name that revokes `uid`'s tokens issued before a moment.
pub fn user_record(uid: &str) -> String {
    format!("u/{uid}")
}

/// What a connection keeps of its token to be found by a revocation: 16
/// bytes, not the token.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TokenStamp {
    /// A hash of the token's id; 0: it has none.
    id: u64,
    issued_ms: u64,
}

impl TokenStamp {
    /// The stamp of a verified token.
    pub fn of(claims: &Claims) -> Self {
        Self {
            id: claims.jti.as_deref().map_or(0, id_hash),
            issued_ms: claims.issued_ms(),
        }
    }
}

fn id_hash(jti: &str) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    jti.hash(&mut h);
    h.finish().max(1)
}

/// One revocation, as a connection is matched against it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Revocation {
    /// The token whose id hashes to `id`.
    Token { uid: String, id: u64 },
    /// Every token of `uid` issued before `ms`.
    Before { uid: String, ms: u64 },
}

impl Revocation {
    /// The user it concerns.
    pub fn uid(&self) -> &str {
        match self {
            Revocation::Token { uid, .. } | Revocation::Before { uid, .. } => uid,
        }
    }

    /// Whether it revokes the token `stamp` of `uid`.
    pub fn catches(&self, uid: &str, stamp: TokenStamp) -> bool {
        self.uid() == uid
            && match self {
                Revocation::Token { id, .. } => stamp.id == *id,
                Revocation::Before { ms, .. } => stamp.issued_ms < *ms,
            }
    }
}

/// Every revocation in force, from discovery's records.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Revoked {
    /// Hash of a revoked token id -> its user.
    tokens: HashMap<u64, String>,
    /// uid -> tokens issued before this many ms are revoked.
    before: HashMap<String, u64>,
}

impl Revoked {
    /// The revocations `records` (name -> value) hold; records that do not
    /// parse are skipped.
    pub fn from_records(records: &BTreeMap<String, String>) -> Self {
        let mut revoked = Revoked::default();
        for (name, value) in records {
            if let Some(jti) = name.strip_prefix("t/") {
                revoked.tokens.insert(id_hash(jti), value.clone());
            } else if let (Some(uid), Ok(ms)) = (name.strip_prefix("u/"), value.parse()) {
                revoked.before.insert(uid.to_owned(), ms);
            }
        }
        revoked
    }

    /// Whether the token `claims` are of is revoked.
    pub fn revokes(&self, claims: &Claims) -> bool {
        self.revokes_stamp(&claims.sub, TokenStamp::of(claims))
    }

    /// Whether the token `stamp` of `uid` is revoked.
    pub fn revokes_stamp(&self, uid: &str, stamp: TokenStamp) -> bool {
        (stamp.id != 0 && self.tokens.get(&stamp.id).is_some_and(|u| u == uid))
            || self.before.get(uid).is_some_and(|ms| stamp.issued_ms < *ms)
    }

    /// What this revokes that `older` did not.
    pub fn added_since(&self, older: &Revoked) -> Vec<Revocation> {
        let tokens = self
            .tokens
            .iter()
            .filter(|(id, _)| !older.tokens.contains_key(id))
            .map(|(id, uid)| Revocation::Token {
                uid: uid.clone(),
                id: *id,
            });
        let before = self
            .before
            .iter()
            .filter(|(uid, ms)| older.before.get(*uid).is_none_or(|old| old < ms))
            .map(|(uid, ms)| Revocation::Before {
                uid: uid.clone(),
                ms: *ms,
            });
        tokens.chain(before).collect()
    }

    /// The users any of `revocations` concerns.
    pub fn users(revocations: &[Revocation]) -> HashSet<&str> {
        revocations.iter().map(Revocation::uid).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(uid: &str, jti: Option<&str>, issued_ms: u64) -> Claims {
        Claims {
            sub: uid.into(),
            iat: issued_ms / 1000,
            exp: u64::MAX / 2,
            jti: jti.map(str::to_owned),
            iat_ms: Some(issued_ms),
        }
    }

    fn records(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn a_token_record_revokes_that_token_of_that_user_only() {
        let r = Revoked::from_records(&records(&[("t/abc", "alice")]));
        assert!(r.revokes(&claims("alice", Some("abc"), 5)));
        assert!(!r.revokes(&claims("alice", Some("abd"), 5)));
        assert!(!r.revokes(&claims("alice", None, 5)));
        // A record naming another user cannot revoke bob's token.
        assert!(!r.revokes(&claims("bob", Some("abc"), 5)));
    }

    #[test]
    fn a_user_record_revokes_what_was_issued_before_it() {
        let r = Revoked::from_records(&records(&[("u/alice", "2000"), ("u/bad", "x")]));
        assert!(r.revokes(&claims("alice", Some("a"), 1999)));
        assert!(!r.revokes(&claims("alice", Some("b"), 2000)));
        assert!(!r.revokes(&claims("bob", None, 1)));
        // A backend's token without `iat_ms`: the start of its second.
        let mut old = claims("alice", None, 0);
        (old.iat, old.iat_ms) = (1, None);
        assert!(r.revokes(&old));
    }

    #[test]
    fn what_was_added_is_what_a_comet_closes() {
        let before = Revoked::from_records(&records(&[("t/a", "alice"), ("u/bob", "10")]));
        let after = Revoked::from_records(&records(&[
            ("t/a", "alice"),
            ("t/b", "alice"),
            ("u/bob", "20"),
            ("u/carol", "5"),
        ]));
        let mut added = after.added_since(&before);
        added.sort_by_key(|r| format!("{r:?}"));
        assert_eq!(added.len(), 3, "{added:?}");
        let alice_b = TokenStamp::of(&claims("alice", Some("b"), 1));
        let alice_a = TokenStamp::of(&claims("alice", Some("a"), 1));
        assert!(added.iter().any(|r| r.catches("alice", alice_b)));
        assert!(!added.iter().any(|r| r.catches("alice", alice_a)));
        let bob_15 = TokenStamp::of(&claims("bob", None, 15));
        assert!(added.iter().any(|r| r.catches("bob", bob_15)));
        assert!(Revoked::users(&added).contains("carol"));
    }
}
