//! axum's `Json`, `Path` and `Query` with the API's error shape: the same
//! parsing, but a rejection is answered as an [`ApiError`] carrying axum's
//! explanation instead of a plain-text body (see the `From` conversions in
//! `error.rs`).

use axum::extract::{FromRequest, FromRequestParts};
use axum::http::request::Parts;
use utoipa::openapi::path::{Parameter, ParameterBuilder, ParameterIn};
use utoipa::openapi::schema::{ObjectBuilder, Type};
use utoipa::openapi::Required;
use utoipa::IntoParams;

use super::error::ApiError;

/// Longest `Idempotency-Key`, in bytes.
const MAX_IDEMPOTENCY_KEY: usize = courier_proto::names::MAX_DEDUP_KEY_LEN;

/// A JSON request body.
#[derive(FromRequest)]
#[from_request(via(axum::Json), rejection(ApiError))]
pub(crate) struct Json<T>(pub(crate) T);

/// Path parameters.
#[derive(FromRequestParts)]
#[from_request(via(axum::extract::Path), rejection(ApiError))]
pub(crate) struct Path<T>(pub(crate) T);

/// Query-string parameters.
#[derive(FromRequestParts)]
#[from_request(via(axum::extract::Query), rejection(ApiError))]
pub(crate) struct Query<T>(pub(crate) T);

/// The optional `Idempotency-Key` header: 1-128 visible ASCII characters.
pub(crate) struct IdempotencyKey(pub(crate) Option<String>);

/// The header as the OpenAPI document shows it, with the bounds the
/// extractor enforces.
impl IntoParams for IdempotencyKey {
    fn into_params(_: impl Fn() -> Option<ParameterIn>) -> Vec<Parameter> {
        let schema = ObjectBuilder::new()
            .schema_type(Type::String)
            .min_length(Some(1))
            .max_length(Some(MAX_IDEMPOTENCY_KEY))
            .pattern(Some("^[!-~]+$"));
        vec![ParameterBuilder::new()
            .name("Idempotency-Key")
            .parameter_in(ParameterIn::Header)
            .required(Required::False)
            .description(Some(format!(
                "Makes a retry safe: a repeat within the dedup window returns the \
                 original `msg_id` and `seq` and is not stored or delivered again, \
                 per recipient. 1-{MAX_IDEMPOTENCY_KEY} visible ASCII characters; \
                 anything else is a 400."
            )))
            .schema(Some(schema))
            .build()]
    }
}

impl<S: Send + Sync> FromRequestParts<S> for IdempotencyKey {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let Some(value) = parts.headers.get("idempotency-key") else {
            return Ok(Self(None));
        };
        let key = value
            .to_str()
            .ok()
            .filter(|k| courier_proto::names::check_dedup_key(k).is_ok())
            .ok_or_else(|| {
                ApiError::invalid(format!(
                    "Idempotency-Key must be 1-{MAX_IDEMPOTENCY_KEY} visible ASCII characters"
                ))
            })?;
        Ok(Self(Some(key.to_owned())))
    }
}
