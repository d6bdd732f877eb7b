//! Login tokens: HS256 JWTs issued by logic and verified locally by comets.
//! A backend holding the secret may mint its own.
//!
//! Tokens logic issues carry an id (`jti`) and their issue time in
//! milliseconds (`iat_ms`), so that one token can be revoked (logout) and
//! so can every token issued before a moment (a password change) without
//! catching one issued a millisecond later ([`crate::revoked`]). A
//! backend's token may leave both out.

use std::time::Duration;

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

/// What a token says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// The user id.
    pub sub: String,
    /// Issued at, seconds since the epoch.
    pub iat: u64,
    /// Expires at, seconds since the epoch.
    pub exp: u64,
    /// The token's id, if it has one (at most [`MAX_TOKEN_ID`] bytes):
    /// what revoking this one token names.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jti: Option<String>,
    /// Issued at, milliseconds since the epoch (finer than `iat`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iat_ms: Option<u64>,
}

/// Longest token id accepted, in bytes.
pub const MAX_TOKEN_ID: usize = 64;

impl Claims {
    /// When the token was issued, in milliseconds since the epoch: `iat_ms`,
    /// else the start of `iat`'s second.
    pub fn issued_ms(&self) -> u64 {
        self.iat_ms.unwrap_or(self.iat.saturating_mul(1000))
    }
}

/// Why a token was refused.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("token expired")]
    Expired,
    #[error("invalid token: {0}")]
    Invalid(String),
}

/// The shared secret, ready to sign and verify.
#[derive(Clone)]
pub struct TokenKeys {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
}

impl std::fmt::Debug for TokenKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenKeys(..)")
    }
}

impl TokenKeys {
    /// Keys for an HMAC secret.
    pub fn new(secret: &[u8]) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = 5;
        validation.set_required_spec_claims(&["exp", "sub"]);
        Self {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            validation,
        }
    }

    /// A token for `uid` valid for `ttl` from now, with a fresh id.
    pub fn issue(&self, uid: &str, ttl: Duration) -> Result<String, TokenError> {
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        let now = now_ms / 1000;
        self.sign(&Claims {
            sub: uid.to_owned(),
            iat: now,
            exp: now + ttl.as_secs(),
            jti: Some(uuid::Uuid::new_v4().simple().to_string()),
            iat_ms: Some(now_ms),
        })
    }

    /// Signs arbitrary claims (tests mint expired tokens with it).
    pub fn sign(&self, claims: &Claims) -> Result<String, TokenError> {
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), claims, &self.encoding)
            .map_err(|e| TokenError::Invalid(e.to_string()))
    }

    /// Checks signature and expiry, and that an id is within bounds.
    pub fn verify(&self, token: &str) -> Result<Claims, TokenError> {
        let claims = jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation)
            .map(|data| data.claims)
            .map_err(|e| match e.kind() {
                jsonwebtoken::errors::ErrorKind::ExpiredSignature => TokenError::Expired,
                _ => TokenError::Invalid(e.to_string()),
            })?;
        if claims
            .jti
            .as_ref()
            .is_some_and(|id| id.is_empty() || id.len() > MAX_TOKEN_ID)
        {
            return Err(TokenError::Invalid(format!(
                "jti must be 1-{MAX_TOKEN_ID} bytes"
            )));
        }
        Ok(claims)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issued_tokens_verify_with_an_id_each() {
        let keys = TokenKeys::new(b"secret");
        let t = keys.issue("alice", Duration::from_secs(60)).expect("issue");
        let claims = keys.verify(&t).expect("verify");
        assert_eq!(claims.sub, "alice");
        assert_eq!(claims.issued_ms() / 1000, claims.iat);
        let other = keys.issue("alice", Duration::from_secs(60)).expect("issue");
        assert_ne!(claims.jti, keys.verify(&other).expect("verify").jti);
        assert!(claims.jti.is_some());
    }

    #[test]
    fn an_oversized_token_id_is_refused() {
        let keys = TokenKeys::new(b"secret");
        let t = keys
            .sign(&Claims {
                sub: "alice".into(),
                iat: 1,
                exp: u64::MAX / 2,
                jti: Some("x".repeat(MAX_TOKEN_ID + 1)),
                iat_ms: None,
            })
            .expect("sign");
        assert!(matches!(keys.verify(&t), Err(TokenError::Invalid(_))));
    }

    #[test]
    fn forged_and_expired_tokens_are_refused() {
        let keys = TokenKeys::new(b"secret");
        let forged = TokenKeys::new(b"other")
            .issue("alice", Duration::from_secs(60))
            .expect("issue");
        assert!(matches!(keys.verify(&forged), Err(TokenError::Invalid(_))));
        let expired = keys
            .sign(&Claims {
                sub: "alice".into(),
                iat: 1,
                exp: 2,
                jti: None,
                iat_ms: None,
            })
            .expect("sign");
        assert!(matches!(keys.verify(&expired), Err(TokenError::Expired)));
        assert!(matches!(
            keys.verify("garbage"),
            Err(TokenError::Invalid(_))
        ));
    }
}
