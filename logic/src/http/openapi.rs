//! The HTTP API's OpenAPI 3.1 document, generated at compile time from the
//! handlers' `#[utoipa::path]` attributes and the DTOs' schemas, and served
//! at `GET /api/v1/openapi.json`.
//!
//! A route added to the router is not in the document until its handler is
//! listed in [`ApiDoc`]'s `paths`; `tests/openapi.rs` checks the two agree.

use std::sync::LazyLock;

use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use super::{messages, online, operate, push, push_batch, rooms, store, users};

/// The document, built once.
static DOCUMENT: LazyLock<utoipa::openapi::OpenApi> = LazyLock::new(ApiDoc::openapi);

/// The whole API: every route of [`super::router`].
#[derive(OpenApi)]
#[openapi(
    info(
        title = "Courier",
        version = env!("CARGO_PKG_VERSION"),
        description = "The HTTP API of Courier's logic: register and log in users, push \
            messages to users, connection keys, rooms or everyone, read who is online and \
            stored message history, and operate comets and the store of record.\n\n\
            Every error has the body `ApiError` (`{\"error\": {\"code\", \"message\"}}`). \
            A request not answered within the server's request timeout gets a 408 with an \
            empty body; unknown routes and methods get a 404 or 405 with the error body.",
    ),
    paths(
        users::register,
        users::login,
        users::logout,
        users::connect,
        users::change_password,
        push::users,
        push::keys,
        push::room,
        push::all,
        push_batch::batch,
        online::online,
        online::users,
        online::top_rooms,
        online::room,
        online::presence,
        online::nodes,
        messages::user,
        messages::room,
        operate::drain_comet,
        operate::disconnect_user,
        rooms::set_rule,
        rooms::rule,
        rooms::add_members,
        rooms::remove_member,
        rooms::members,
        store::status,
        store::start_moves,
        openapi_json,
        super::healthz,
        super::readyz,
    ),
    modifiers(&SecuritySchemes),
    tags(
        (name = "users", description = "Accounts and login (public, rate-limited per client address)"),
        (name = "push", description = "Sending messages (an API key with the `push` scope)"),
        (name = "online", description = "Who is online and where to connect"),
        (name = "messages", description = "Stored messages (an API key with the `read` scope)"),
        (name = "admin", description = "Operating the cluster (an API key with the `admin` scope)"),
        (name = "rooms", description = "Room join rules and members (writes: an API key with the `rooms` scope; reads: `read`)"),
        (name = "operations", description = "Metrics and probes, outside `/api/v1`"),
        (name = "meta", description = "This document"),
    ),
)]
pub(crate) struct ApiDoc;

/// The two ways to authenticate, both `Authorization: Bearer`.
struct SecuritySchemes;

impl Modify for SecuritySchemes {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "api_key",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "An API key from the server's configuration. Each key has scopes: \
                         `push` (the push routes), `read` (listings, presence, nodes, \
                         message history), `admin` (operating comets and the store). A missing or unknown \
                         key, or one without the route's scope, is a 401.",
                    ))
                    .build(),
            ),
        );
        components.add_security_scheme(
            "user_token",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .description(Some(
                        "The `token` of `POST /api/v1/login`. It opens only `/presence` and \
                         `/nodes`, within a per-user read budget (429 beyond).",
                    ))
                    .build(),
            ),
        );
    }
}

/// `GET /api/v1/openapi.json`: this document.
#[utoipa::path(
    get,
    path = "/api/v1/openapi.json",
    operation_id = "openapi",
    tag = "meta",
    responses(
        (status = 200, description = "The OpenAPI 3.1 document of this API", content_type = "application/json"),
    ),
)]
pub(crate) async fn openapi_json() -> axum::Json<&'static utoipa::openapi::OpenApi> {
    axum::Json(&DOCUMENT)
}
