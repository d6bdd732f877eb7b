//! API keys: several named keys, each with scopes, so a key can be rotated
//! without downtime (add the new one, move the callers, remove the old one)
//! and a backend that only pushes holds a key that cannot read.
//!
//! A presented key is compared with every configured key in constant time
//! (`subtle`), and all of them are compared, so neither the timing of one
//! comparison nor which key matched leaks. Keys never appear in logs or in
//! `Debug` output: only their names do.

use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;

/// What a key may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    /// The push routes (`/push/*`).
    Push,
    /// The read routes: online counts and listings, `/nodes`, message
    /// history.
    Read,
    /// Operating the cluster (draining a comet); also allows everything
    /// `read` and `rooms` do.
    Admin,
    /// Room rules and members (`/rooms/{room}`, `/rooms/{room}/members`).
    Rooms,
}

impl Scope {
    /// Whether a key with this scope may do what `needed` guards.
    fn grants(self, needed: Scope) -> bool {
        self == needed || (self == Scope::Admin && matches!(needed, Scope::Read | Scope::Rooms))
    }
}

/// One named API key.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ApiKeyConfig {
    /// A name for logs and metrics (never the key itself).
    pub name: String,
    /// The Bearer key, at least 16 bytes.
    pub key: String,
    /// What it may do.
    pub scopes: Vec<Scope>,
}

impl std::fmt::Debug for ApiKeyConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiKeyConfig")
            .field("name", &self.name)
            .field("key", &"<redacted>")
            .field("scopes", &self.scopes)
            .finish()
    }
}

/// Shortest accepted key: shorter ones are guessable.
const MIN_KEY_LEN: usize = 16;

/// The configured keys, checked once at start.
#[derive(Debug, Clone, Default)]
pub(crate) struct ApiKeys {
    keys: Vec<ApiKeyConfig>,
}

impl ApiKeys {
    /// `named` plus the single `legacy` key (`api_key`: every scope, named
    /// `default`) if it is set.
    pub(crate) fn new(legacy: &str, named: &[ApiKeyConfig]) -> Result<Self, String> {
        let mut keys = Vec::with_capacity(named.len() + 1);
        if !legacy.is_empty() {
            keys.push(ApiKeyConfig {
                name: "default".into(),
                key: legacy.to_owned(),
                scopes: vec![Scope::Push, Scope::Admin],
            });
        }
        for key in named {
            if key.name.is_empty() {
                return Err("every api_keys entry needs a name".into());
            }
            if key.key.len() < MIN_KEY_LEN {
                return Err(format!(
                    "api key {:?} is shorter than {MIN_KEY_LEN} bytes",
                    key.name
                ));
            }
            if key.scopes.is_empty() {
                return Err(format!("api key {:?} has no scopes", key.name));
            }
            keys.push(key.clone());
        }
        Ok(Self { keys })
    }

    /// The name of the key `presented` is, if it grants `needed`.
    pub(crate) fn check(&self, presented: &str, needed: Scope) -> Option<&str> {
        let mut found: Option<&ApiKeyConfig> = None;
        for key in &self.keys {
            // Every key is compared; none short-circuits.
            let same: bool = key.key.as_bytes().ct_eq(presented.as_bytes()).into();
            if same && found.is_none() {
                found = Some(key);
            }
        }
        let key = found?;
        key.scopes
            .iter()
            .any(|s| s.grants(needed))
            .then_some(key.name.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(name: &str, key: &str, scopes: &[Scope]) -> ApiKeyConfig {
        ApiKeyConfig {
            name: name.into(),
            key: key.into(),
            scopes: scopes.to_vec(),
        }
    }

    #[test]
    fn each_key_grants_only_its_scopes() {
        let keys = ApiKeys::new(
            "",
            &[
                key("pusher", "push-key-0123456789", &[Scope::Push]),
                key("ops", "admin-key-0123456789", &[Scope::Admin]),
                key("app", "rooms-key-0123456789", &[Scope::Rooms]),
            ],
        )
        .unwrap();
        assert_eq!(
            keys.check("rooms-key-0123456789", Scope::Rooms),
            Some("app")
        );
        assert_eq!(keys.check("rooms-key-0123456789", Scope::Push), None);
        assert_eq!(keys.check("push-key-0123456789", Scope::Rooms), None);
        assert_eq!(
            keys.check("admin-key-0123456789", Scope::Rooms),
            Some("ops")
        );
        assert_eq!(
            keys.check("push-key-0123456789", Scope::Push),
            Some("pusher")
        );
        assert_eq!(keys.check("push-key-0123456789", Scope::Read), None);
        assert_eq!(keys.check("admin-key-0123456789", Scope::Read), Some("ops"));
        assert_eq!(
            keys.check("admin-key-0123456789", Scope::Admin),
            Some("ops")
        );
        assert_eq!(keys.check("admin-key-0123456789", Scope::Push), None);
        assert_eq!(keys.check("admin-key-012345678", Scope::Admin), None);
        assert_eq!(keys.check("", Scope::Push), None);
    }

    #[test]
    fn the_single_api_key_may_do_everything() {
        let keys = ApiKeys::new("legacy", &[]).unwrap();
        for scope in [Scope::Push, Scope::Read, Scope::Admin, Scope::Rooms] {
            assert_eq!(keys.check("legacy", scope), Some("default"));
        }
        assert_eq!(ApiKeys::new("", &[]).unwrap().check("", Scope::Read), None);
    }

    #[test]
    fn weak_or_unnamed_keys_are_refused_and_keys_never_print() {
        assert!(ApiKeys::new("", &[key("short", "abc", &[Scope::Push])]).is_err());
        assert!(ApiKeys::new("", &[key("", "0123456789abcdef", &[Scope::Push])]).is_err());
        assert!(ApiKeys::new("", &[key("none", "0123456789abcdef", &[])]).is_err());
        let shown = format!("{:?}", key("k", "0123456789abcdef", &[Scope::Read]));
        assert!(!shown.contains("0123456789abcdef"), "{shown}");
    }
}
