//! axum's `Json`, `Path` and `Query` with the API's error shape: the same
//! parsing, but a rejection is answered as an [`ApiError`] carrying axum's
//! explanation instead of a plain-text body (see the `From` conversions in
//! `error.rs`).

use axum::extract::{FromRequest, FromRequestParts};

use super::error::ApiError;

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
