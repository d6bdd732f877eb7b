//! Hooks to the application: HTTP JSON requests logic makes so the
//! application can decide what Courier cannot (who a client is, who joins
//! an `app` room, whether a message goes out as written) and learn what it
//! must (messages for users with no connection, for a push gateway).
//!
//! Every request is a `POST` of JSON, signed: `X-Courier-Timestamp` is
//! the Unix time in seconds and `X-Courier-Signature` is `v1=` and the hex
//! HMAC-SHA256, under `hooks.secret`, of the timestamp, a `.`, and the body.
//! The application should check both (and refuse a timestamp minutes
//! old). Each request must be answered within `hooks.timeout`, with a
//! body of at most [`MAX_ANSWER`] bytes; redirects are not followed. What
//! happens when the application does not answer (or answers 5xx, or
//! something that does not parse) is each hook's `on_failure`.

mod config;
pub(crate) mod offline;

use std::time::Duration;

use hmac::{Hmac, Mac};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use sha2::Sha256;

pub use config::{Hook, HooksConfig, OfflineHook, OnFailure};

/// Largest answer body read from the application.
pub(crate) const MAX_ANSWER: usize = 64 * 1024;

/// Why a hook got no usable answer.
#[derive(Debug, thiserror::Error)]
pub(crate) enum HookError {
    #[error("no answer: {0}")]
    Unreachable(String),
    #[error("answered HTTP {0}")]
    Status(u16),
    #[error("an answer that does not parse: {0}")]
    BadAnswer(String),
}

/// The signature header's value for `body` sent at `timestamp`.
pub(crate) fn signature(secret: &[u8], timestamp: u64, body: &[u8]) -> String {
    // A key of any length is accepted by HMAC.
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret)
        .unwrap_or_else(|_| unreachable!("HMAC takes any key length"));
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    let digest = mac.finalize().into_bytes();
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("v1={hex}")
}

/// The hooks logic calls, with one HTTP client.
pub(crate) struct Hooks {
    http: reqwest::Client,
    config: HooksConfig,
    offline: Option<offline::OfflineQueue>,
}

/// What the connect hook said about a client's credentials.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub(crate) struct ConnectAnswer {
    /// Who the client is.
    pub(crate) uid: String,
    /// Rooms the client should join (the room rules still apply).
    #[serde(default)]
    pub(crate) rooms: Vec<String>,
    /// Seconds the token should live (at most `logic.token_ttl`).
    pub(crate) expires_in: Option<u64>,
}

/// What the publish hook decided about a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Store and deliver it as written.
    Accept,
    /// Store and deliver this instead.
    Rewrite { op: u32, data: bytes::Bytes },
    /// Do not: the client is told why.
    Refuse(String),
    /// No usable answer and `on_failure = "refuse"`: the client is told
    /// to retry later.
    Unanswered,
}

impl Hooks {
    /// The hooks of `config` (checked by `LogicConfig::validate`); an
    /// HTTP client that cannot be built stops logic from starting, rather
    /// than running without the timeout and redirect policy.
    pub(crate) fn new(config: HooksConfig) -> Result<Self, String> {
        let http = reqwest::Client::builder()
            .timeout(config.timeout)
            .connect_timeout(config.timeout)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| format!("hooks: cannot build the HTTP client: {e}"))?;
        let offline = config.offline.as_ref().map(|hook| {
            offline::OfflineQueue::start(http.clone(), hook.clone(), config.secret.clone())
        });
        Ok(Self {
            http,
            config,
            offline,
        })
    }

    /// Whether a connect hook is set.
    pub(crate) fn has_connect(&self) -> bool {
        self.config.connect.is_some()
    }

    /// The connect hook's answer for `credentials` from `ip`: `Ok(None)`
    /// when the application refused them (it answered 401 or 403).
    pub(crate) async fn connect(
        &self,
        credentials: &str,
        ip: &str,
    ) -> Result<Option<ConnectAnswer>, HookError> {
        let Some(hook) = &self.config.connect else {
            return Err(HookError::Unreachable("no connect hook".into()));
        };
        #[derive(Serialize)]
        struct Ask<'a> {
            credentials: &'a str,
            ip: &'a str,
        }
        match self.call(&hook.url, &Ask { credentials, ip }).await {
            Ok(answer) => Ok(Some(answer)),
            Err(HookError::Status(401 | 403)) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Whether the join hook lets `uid` into the `app` room `room` (with
    /// no join hook, no); `None` when it gave no usable answer, for the
    /// caller to apply [`Hooks::join_on_failure`] without remembering it.
    pub(crate) async fn may_join(&self, uid: &str, room: &str) -> Option<bool> {
        let Some(hook) = &self.config.join else {
            return Some(false);
        };
        #[derive(Serialize)]
        struct Ask<'a> {
            uid: &'a str,
            room: &'a str,
        }
        #[derive(Deserialize)]
        struct Answer {
            allow: bool,
        }
        match self.call::<_, Answer>(&hook.url, &Ask { uid, room }).await {
            Ok(answer) => Some(answer.allow),
            Err(e) => {
                metrics::counter!("courier_logic_hook_failures_total", "hook" => "join")
                    .increment(1);
                tracing::warn!(error = %e, "join hook failed; applying its on_failure");
                None
            }
        }
    }

    /// What a join the hook did not answer gets: its `on_failure`.
    pub(crate) fn join_on_failure(&self) -> bool {
        self.config
            .join
            .as_ref()
            .is_some_and(|hook| hook.on_failure == OnFailure::Allow)
    }

    /// The publish hook's verdict on a client's message; with no publish
    /// hook, accept.
    pub(crate) async fn publish(&self, message: &PublishAsk<'_>) -> Verdict {
        let Some(hook) = &self.config.publish else {
            return Verdict::Accept;
        };
        match self.call::<_, PublishAnswer>(&hook.url, message).await {
            Ok(answer) => answer.verdict(message.op),
            Err(e) => {
                metrics::counter!("courier_logic_hook_failures_total", "hook" => "publish")
                    .increment(1);
                tracing::warn!(error = %e, "publish hook failed; applying its on_failure");
                match hook.on_failure {
                    OnFailure::Allow => Verdict::Accept,
                    OnFailure::Refuse => Verdict::Unanswered,
                }
            }
        }
    }

    /// Queues a message stored for `uid`, who has no connection, for the
    /// offline webhook (if one is set).
    pub(crate) fn offline(&self, uid: &str, message: &bytes::Bytes) {
        if let Some(queue) = &self.offline {
            queue.push(uid, message);
        }
    }

    /// POSTs `request`, signed, and reads the JSON answer.
    async fn call<Q: Serialize, A: DeserializeOwned>(
        &self,
        url: &str,
        request: &Q,
    ) -> Result<A, HookError> {
        let body = serde_json::to_vec(request).map_err(|e| HookError::BadAnswer(e.to_string()))?;
        let answer = post(&self.http, url, self.config.secret.as_bytes(), body).await?;
        serde_json::from_slice(&answer).map_err(|e| HookError::BadAnswer(e.to_string()))
    }
}

/// POSTs `body` to `url`, signed with `secret`; the answer's body (at most
/// [`MAX_ANSWER`] bytes) if the status is 2xx.
pub(crate) async fn post(
    http: &reqwest::Client,
    url: &str,
    secret: &[u8],
    body: Vec<u8>,
) -> Result<Vec<u8>, HookError> {
    let timestamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let signature = signature(secret, timestamp, &body);
    let mut response = http
        .post(url)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .header("X-Courier-Timestamp", timestamp.to_string())
        .header("X-Courier-Signature", signature)
        .body(body)
        .send()
        .await
        .map_err(|e| HookError::Unreachable(e.to_string()))?;
    let status = response.status();
    if !status.is_success() {
        return Err(HookError::Status(status.as_u16()));
    }
    let mut answer = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| HookError::Unreachable(e.to_string()))?
    {
        if answer.len() + chunk.len() > MAX_ANSWER {
            return Err(HookError::BadAnswer(format!(
                "an answer over {MAX_ANSWER} bytes"
            )));
        }
        answer.extend_from_slice(&chunk);
    }
    Ok(answer)
}

/// What the publish hook is asked about a client's message.
#[derive(Debug, Serialize)]
pub(crate) struct PublishAsk<'a> {
    /// The sender.
    pub(crate) from: &'a str,
    /// `{"user": uid}` or `{"room": room}`.
    pub(crate) to: serde_json::Value,
    pub(crate) op: u32,
    /// The data as text, when it is UTF-8.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) data: Option<&'a str>,
    /// The data in standard base64, when it is not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) data_base64: Option<String>,
}

impl<'a> PublishAsk<'a> {
    /// The question about `data` from `from` to `to`.
    pub(crate) fn new(from: &'a str, to: serde_json::Value, op: u32, data: &'a [u8]) -> Self {
        let (text, base64) = match std::str::from_utf8(data) {
            Ok(text) => (Some(text), None),
            Err(_) => (None, Some(encode_base64(data))),
        };
        Self {
            from,
            to,
            op,
            data: text,
            data_base64: base64,
        }
    }
}

/// The publish hook's answer.
#[derive(Debug, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
enum PublishAnswer {
    Accept,
    Refuse {
        #[serde(default)]
        reason: String,
    },
    Rewrite {
        op: Option<u32>,
        data: Option<String>,
        data_base64: Option<String>,
    },
}

impl PublishAnswer {
    fn verdict(self, op: u32) -> Verdict {
        match self {
            PublishAnswer::Accept => Verdict::Accept,
            PublishAnswer::Refuse { reason } => Verdict::Refuse(match reason.is_empty() {
                true => "refused by the application".to_owned(),
                false => reason
                    .chars()
                    .filter(|c| !c.is_control())
                    .take(256)
                    .collect(),
            }),
            PublishAnswer::Rewrite {
                op: new_op,
                data,
                data_base64,
            } => {
                let data = match (data, data_base64) {
                    (Some(text), None) => Some(bytes::Bytes::from(text)),
                    (None, Some(b64)) => decode_base64(&b64).map(bytes::Bytes::from),
                    _ => None,
                };
                match data {
                    Some(data) => Verdict::Rewrite {
                        op: new_op.unwrap_or(op),
                        data,
                    },
                    None => Verdict::Unanswered,
                }
            }
        }
    }
}

pub(crate) fn encode_base64(data: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(data)
}

fn decode_base64(text: &str) -> Option<Vec<u8>> {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.decode(text).ok()
}

/// How long the connect hook's token may live at most.
pub(crate) fn token_life(answer: &ConnectAnswer, max: Duration) -> Duration {
    answer
        .expires_in
        .map_or(max, |secs| Duration::from_secs(secs).min(max))
        .max(Duration::from_secs(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signature_is_the_hmac_of_the_timestamp_and_body() {
        // HMAC-SHA256("key", "1700000000.{}"), from Python's hmac module.
        let s = signature(b"key", 1_700_000_000, b"{}");
        assert_eq!(
            s,
            "v1=9d713ed406bb7076d4123f0dc2c39d2df5c654ed4b0cd56b52c8b4c940bd63ae"
        );
        assert_ne!(
            s,
            signature(b"key", 1_700_000_001, b"{}"),
            "the time is signed"
        );
        assert_ne!(s, signature(b"kez", 1_700_000_000, b"{}"), "the key counts");
        assert_eq!(s, signature(b"key", 1_700_000_000, b"{}"));
    }

    #[test]
    fn a_rewrite_without_data_is_no_answer() {
        let bad: PublishAnswer =
            serde_json::from_str(r#"{"action":"rewrite","data_base64":"%%%"}"#)
                .unwrap_or(PublishAnswer::Accept);
        assert_eq!(bad.verdict(1), Verdict::Unanswered);
        let text: PublishAnswer =
            serde_json::from_str(r#"{"action":"rewrite","data":"hi","op":7}"#)
                .unwrap_or(PublishAnswer::Accept);
        assert_eq!(
            text.verdict(1),
            Verdict::Rewrite {
                op: 7,
                data: bytes::Bytes::from_static(b"hi")
            }
        );
        let refuse: PublishAnswer =
            serde_json::from_str("{\"action\":\"refuse\",\"reason\":\"no\\u001b[2J\"}")
                .unwrap_or(PublishAnswer::Accept);
        assert_eq!(refuse.verdict(1), Verdict::Refuse("no[2J".into()));
    }
}
