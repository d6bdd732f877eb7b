//! The cluster secret: every service-to-service gRPC call carries it, and
//! every internal gRPC service refuses a call without it.
//!
//! Logic's service takes a comet's word for which user a connection is, and
//! a comet's push service delivers whatever it is given: on a network with
//! other machines, anyone who can reach those ports could act as any user
//! or push to everyone. So clients stamp each call with
//! `authorization: Bearer <secret>` ([`ClusterSecret::stamp`]) and servers
//! check it, in constant time, before the call reaches the service
//! ([`ClusterSecret::check`]); a call without it gets `UNAUTHENTICATED`.
//! The secret comes from config (`auth.cluster_secret`), like the JWT
//! secret, and is never logged.

use std::sync::Arc;

use subtle::ConstantTimeEq;
use tonic::metadata::MetadataValue;
use tonic::service::Interceptor;
use tonic::{Request, Status};

/// The metadata key the secret travels in.
const HEADER: &str = "authorization";

/// The shared secret of the cluster's internal calls. Cheap to clone.
#[derive(Clone)]
pub struct ClusterSecret {
    /// `Bearer <secret>`, as sent and as expected.
    bearer: Arc<MetadataValue<tonic::metadata::Ascii>>,
}

impl std::fmt::Debug for ClusterSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ClusterSecret(..)")
    }
}

/// Why a secret cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("the cluster secret is empty")]
    Empty,
    #[error("the cluster secret must be visible ASCII")]
    NotAscii,
    #[error("the cluster secret must be at least {MIN_SECRET_BYTES} bytes")]
    TooShort,
}

/// The fewest bytes a shared secret (the cluster secret, the JWT secret)
/// may have: HS256 keys are 256 bits, and a short secret can be guessed
/// offline from one token.
pub const MIN_SECRET_BYTES: usize = 32;

impl ClusterSecret {
    /// The secret `secret` (visible ASCII: it travels in a header; at least
    /// [`MIN_SECRET_BYTES`]).
    pub fn new(secret: &str) -> Result<Self, SecretError> {
        if secret.is_empty() {
            return Err(SecretError::Empty);
        }
        if !secret.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(SecretError::NotAscii);
        }
        if secret.len() < MIN_SECRET_BYTES {
            return Err(SecretError::TooShort);
        }
        let bearer = MetadataValue::try_from(format!("Bearer {secret}"))
            .map_err(|_| SecretError::NotAscii)?;
        Ok(Self {
            bearer: Arc::new(bearer),
        })
    }

    /// Adds the secret to an outgoing call.
    pub fn stamp<T>(&self, request: &mut Request<T>) {
        request
            .metadata_mut()
            .insert(HEADER, (*self.bearer).clone());
    }

    /// Whether an incoming call carries the secret (compared in constant
    /// time, so timing tells nothing about a guess).
    pub fn check<T>(&self, request: &Request<T>) -> Result<(), Status> {
        let presented = request
            .metadata()
            .get(HEADER)
            .map(|v| v.as_bytes())
            .unwrap_or_default();
        let expected = self.bearer.as_bytes();
        if presented.len() == expected.len() && bool::from(presented.ct_eq(expected)) {
            Ok(())
        } else {
            Err(Status::unauthenticated(
                "this service answers only calls from its cluster",
            ))
        }
    }

    /// The server interceptor that refuses calls without the secret.
    pub fn checker(&self) -> Check {
        Check(self.clone())
    }

    /// The client interceptor that stamps every call.
    pub fn stamper(&self) -> Stamp {
        Stamp(self.clone())
    }
}

/// A gRPC server's gate: see [`ClusterSecret::check`].
#[derive(Debug, Clone)]
pub struct Check(ClusterSecret);

impl Interceptor for Check {
    fn call(&mut self, request: Request<()>) -> Result<Request<()>, Status> {
        self.0.check(&request).map(|()| request)
    }
}

/// A gRPC client's stamp: see [`ClusterSecret::stamp`].
#[derive(Debug, Clone)]
pub struct Stamp(ClusterSecret);

impl Interceptor for Stamp {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        self.0.stamp(&mut request);
        Ok(request)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_calls_with_the_secret_pass() {
        let secret = ClusterSecret::new(&"s3cret".repeat(6)).expect("a valid secret");
        let mut stamped = Request::new(());
        secret.stamp(&mut stamped);
        assert!(secret.check(&stamped).is_ok());
        let status = secret.check(&Request::new(())).expect_err("refused");
        assert_eq!(status.code(), tonic::Code::Unauthenticated);
        let mut wrong = Request::new(());
        ClusterSecret::new(&"other".repeat(7))
            .expect("a valid secret")
            .stamp(&mut wrong);
        assert!(secret.check(&wrong).is_err());
        assert!(ClusterSecret::new("").is_err());
        assert!(ClusterSecret::new(&"has space".repeat(4)).is_err());
        assert!(matches!(
            ClusterSecret::new(&"x".repeat(MIN_SECRET_BYTES - 1)),
            Err(SecretError::TooShort)
        ));
    }
}
