//! What `[logic.hooks]` configures: the application's URLs, the secret
//! every request is signed with, how long it may take, and what happens
//! when it does not answer.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The application's hooks. None is set by default.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct HooksConfig {
    /// HMAC-SHA256 key every hook request is signed with; at least 32
    /// bytes once any hook is set.
    pub secret: String,
    /// How long the application may take to answer one request (default
    /// 2 s); past it, the hook's `on_failure` applies.
    #[serde(with = "humantime_serde")]
    #[schemars(with = "String")]
    pub timeout: Duration,
    /// Authenticates the application's own credentials (`POST /connect`).
    pub connect: Option<Hook>,
    /// Decides who else may join an `app` room.
    pub join: Option<Hook>,
    /// Sees each client's `Send` before it is stored: accept, refuse or
    /// rewrite.
    pub publish: Option<Hook>,
    /// Receives, in batches, messages stored for users with no connection.
    pub offline: Option<OfflineHook>,
}

impl std::fmt::Debug for HooksConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HooksConfig")
            .field("secret", &"<redacted>")
            .field("timeout", &self.timeout)
            .field("connect", &self.connect)
            .field("join", &self.join)
            .field("publish", &self.publish)
            .field("offline", &self.offline)
            .finish()
    }
}

impl Default for HooksConfig {
    fn default() -> Self {
        Self {
            secret: String::new(),
            timeout: Duration::from_secs(2),
            connect: None,
            join: None,
            publish: None,
            offline: None,
        }
    }
}

/// One hook.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Hook {
    /// `http://` or `https://` URL the request is POSTed to.
    pub url: String,
    /// When the application does not answer (or answers an error):
    /// `refuse` (the default) or `allow`. The connect hook always refuses.
    #[serde(default)]
    pub on_failure: OnFailure,
}

/// What a hook that got no usable answer does.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum OnFailure {
    /// The join, or the message, is refused (the client is told to retry
    /// later).
    #[default]
    Refuse,
    /// It goes ahead as if the application had said yes.
    Allow,
}

/// The offline webhook.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct OfflineHook {
    /// `http://` or `https://` URL batches are POSTed to.
    pub url: String,
    /// Messages per request at most (default 100).
    pub batch: usize,
    /// Messages waiting at most (default 10 000); past it, new ones are
    /// dropped and counted (`courier_logic_offline_dropped_total`).
    pub queue: usize,
}

impl Default for OfflineHook {
    fn default() -> Self {
        Self {
            url: String::new(),
            batch: 100,
            queue: 10_000,
        }
    }
}

impl HooksConfig {
    /// Whether any hook is set.
    pub(crate) fn any(&self) -> bool {
        self.connect.is_some()
            || self.join.is_some()
            || self.publish.is_some()
            || self.offline.is_some()
    }

    /// Checks the secret and the URLs.
    pub(crate) fn validate(&self) -> Result<(), String> {
        if !self.any() {
            return Ok(());
        }
        if self.secret.len() < courier_runtime::MIN_SECRET_BYTES {
            return Err(format!(
                "hooks.secret must be at least {} bytes once a hook is set",
                courier_runtime::MIN_SECRET_BYTES
            ));
        }
        if self.timeout.is_zero() {
            return Err("hooks.timeout must be more than zero".into());
        }
        let urls = [
            ("connect", self.connect.as_ref().map(|h| h.url.as_str())),
            ("join", self.join.as_ref().map(|h| h.url.as_str())),
            ("publish", self.publish.as_ref().map(|h| h.url.as_str())),
            ("offline", self.offline.as_ref().map(|h| h.url.as_str())),
        ];
        for (name, url) in urls {
            if let Some(url) = url {
                let parsed = reqwest::Url::parse(url)
                    .map_err(|e| format!("hooks.{name}.url {url:?}: {e}"))?;
                if !matches!(parsed.scheme(), "http" | "https") {
                    return Err(format!("hooks.{name}.url must be http:// or https://"));
                }
            }
        }
        if let Some(offline) = &self.offline {
            if offline.batch == 0 || offline.queue == 0 {
                return Err("hooks.offline.batch and queue must be at least 1".into());
            }
        }
        Ok(())
    }
}
