//! Logic's public HTTP API as the client uses it: register, login, the
//! comet ranking and the presence of named users.
//!
//! Error replies are `{"error":{"code","message"}}` with a 4xx status; the
//! statuses a caller branches on (409 on register, 401 on login) get their own
//! [`ClientError`] variant, everything else keeps status, code and message.

use std::path::Path;
use std::time::Duration;

use reqwest::{RequestBuilder, Response, StatusCode};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::ClientError;

/// Default timeout of the free functions [`register`] and [`login`].
const DEFAULT_HTTP_TIMEOUT: Duration = Duration::from_secs(10);

/// One comet a client may connect to, as ranked by logic.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CometAddr {
    /// The comet's id, e.g. `comet-1`.
    pub id: String,
    /// Its TCP listener, `host:port`.
    pub tcp: String,
    /// Its WebSocket URL, `ws://host:port/ws` or `wss://…`; empty when it
    /// serves no WebSocket. Used by the [`crate::WebSocket`] transport.
    #[serde(default)]
    pub ws: String,
}

/// The reply of `POST /api/v1/login`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoginReply {
    /// The user id.
    pub uid: String,
    /// A JWT for `Auth` frames and user-authenticated HTTP routes.
    pub token: String,
    /// Seconds until the token expires.
    pub expires_in: u64,
    /// How often the comet expects a heartbeat.
    pub heartbeat_secs: u32,
    /// Comets to connect to, best first.
    pub comets: Vec<CometAddr>,
}

/// `POST /connect`'s reply: a login reply and the rooms the application's
/// connect hook named.
#[derive(Debug, Deserialize)]
pub(crate) struct ConnectReply {
    #[serde(flatten)]
    pub(crate) login: LoginReply,
    #[serde(default)]
    pub(crate) rooms: Vec<String>,
}

#[derive(Serialize)]
struct Credentials<'a> {
    username: &'a str,
    password: &'a str,
}

#[derive(Deserialize)]
struct RegisterReply {
    uid: String,
}

#[derive(Deserialize)]
struct PresenceReply {
    online: Vec<String>,
}

/// Creates an account at the logic `config` names, trusting its `tls_ca`;
/// returns the uid. A taken name is [`ClientError::Conflict`].
pub async fn register_with(config: &crate::ClientConfig) -> Result<String, ClientError> {
    LogicApi::new(
        &config.server,
        config.request_timeout,
        config.tls_ca.as_deref(),
    )?
    .register(&config.username, &config.password)
    .await
}

/// Creates an account; returns its uid. A taken name is [`ClientError::Conflict`].
pub async fn register(server: &str, username: &str, password: &str) -> Result<String, ClientError> {
    LogicApi::new(server, DEFAULT_HTTP_TIMEOUT, None)?
        .register(username, password)
        .await
}

/// Logs in. Wrong credentials are [`ClientError::Unauthorized`].
pub async fn login(
    server: &str,
    username: &str,
    password: &str,
) -> Result<LoginReply, ClientError> {
    LogicApi::new(server, DEFAULT_HTTP_TIMEOUT, None)?
        .login(username, password)
        .await
}

/// A reusable HTTP client bound to one logic base URL.
#[derive(Debug, Clone)]
pub(crate) struct LogicApi {
    base: String,
    http: reqwest::Client,
}

impl LogicApi {
    pub(crate) fn new(
        server: &str,
        timeout: Duration,
        ca: Option<&Path>,
    ) -> Result<Self, ClientError> {
        let mut builder = reqwest::Client::builder().timeout(timeout);
        if let Some(ca) = ca {
            let pem = std::fs::read(ca)?;
            builder = builder.add_root_certificate(reqwest::Certificate::from_pem(&pem)?);
        }
        let http = builder.build()?;
        Ok(Self {
            base: format!("{}/api/v1", server.trim_end_matches('/')),
            http,
        })
    }

    pub(crate) async fn register(
        &self,
        username: &str,
        password: &str,
    ) -> Result<String, ClientError> {
        let req = self
            .http
            .post(format!("{}/users", self.base))
            .json(&Credentials { username, password });
        let reply: RegisterReply = send(req).await?.json().await?;
        Ok(reply.uid)
    }

    pub(crate) async fn login(
        &self,
        username: &str,
        password: &str,
    ) -> Result<LoginReply, ClientError> {
        let req = self
            .http
            .post(format!("{}/login", self.base))
            .json(&Credentials { username, password });
        Ok(send(req).await?.json().await?)
    }

    /// Exchanges the application's own credentials for a token, through
    /// its connect hook (`POST /connect`).
    pub(crate) async fn connect_hook(
        &self,
        credentials: &str,
    ) -> Result<ConnectReply, ClientError> {
        let req = self
            .http
            .post(format!("{}/connect", self.base))
            .json(&serde_json::json!({ "credentials": credentials }));
        Ok(send(req).await?.json().await?)
    }

    /// The comets to connect to, best first, for the holder of `token` (no
    /// password round trip: how a reconnect refreshes its ranking).
    pub(crate) async fn nodes(&self, token: &str) -> Result<Vec<CometAddr>, ClientError> {
        let req = self
            .http
            .get(format!("{}/nodes", self.base))
            .bearer_auth(token);
        Ok(send(req).await?.json().await?)
    }

    /// Which of `uids` are online.
    pub(crate) async fn presence(
        &self,
        token: &str,
        uids: &[&str],
    ) -> Result<Vec<String>, ClientError> {
        let req = self
            .http
            .get(format!("{}/presence", self.base))
            .bearer_auth(token)
            .query(&[("uids", uids.join(","))]);
        let reply: PresenceReply = send(req).await?.json().await?;
        Ok(reply.online)
    }

    /// Revokes `token` (`POST /logout`).
    pub(crate) async fn logout(&self, token: &str) -> Result<(), ClientError> {
        let req = self
            .http
            .post(format!("{}/logout", self.base))
            .bearer_auth(token);
        send(req).await.map(drop)
    }
}

/// Sends a request and turns an error status into a [`ClientError`].
async fn send(req: RequestBuilder) -> Result<Response, ClientError> {
    let resp = req.send().await?;
    let status = resp.status();
    if status.is_success() {
        return Ok(resp);
    }
    match status {
        StatusCode::CONFLICT => Err(ClientError::Conflict),
        StatusCode::UNAUTHORIZED => Err(ClientError::Unauthorized),
        _ => {
            let body = resp.text().await.unwrap_or_default();
            let (code, message) = error_body(&body);
            Err(ClientError::Http {
                status: status.as_u16(),
                code,
                message,
            })
        }
    }
}

/// Reads `{"error":{"code","message"}}`, falling back to the raw body.
fn error_body(body: &str) -> (String, String) {
    let Ok(Value::Object(top)) = serde_json::from_str::<Value>(body) else {
        return (String::new(), body.chars().take(512).collect());
    };
    let err = top.get("error");
    let field = |name: &str| match err.and_then(|e| e.get(name)) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Null) | None => String::new(),
        Some(other) => other.to_string(),
    };
    (field("code"), field("message"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_body_reads_code_and_message() {
        let (code, msg) = error_body(r#"{"error":{"code":"bad_request","message":"no"}}"#);
        assert_eq!((code.as_str(), msg.as_str()), ("bad_request", "no"));
        let (code, msg) = error_body("plain failure");
        assert_eq!((code.as_str(), msg.as_str()), ("", "plain failure"));
    }

    #[test]
    fn login_reply_parses_the_documented_shape() {
        let json = r#"{"uid":"u1","token":"t","expires_in":3600,"heartbeat_secs":30,
            "comets":[{"id":"comet-1","tcp":"127.0.0.1:3101","ws":"ws://127.0.0.1:3102/ws"}]}"#;
        let reply: LoginReply = serde_json::from_str(json).unwrap();
        assert_eq!(reply.comets[0].tcp, "127.0.0.1:3101");
        assert_eq!(reply.heartbeat_secs, 30);
    }
}
