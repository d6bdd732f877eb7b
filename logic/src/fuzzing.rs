//! Entry points for the fuzz targets in `fuzz/` (not an API).
//!
//! [`parse_body`] turns bytes into a route's request body type as its handler
//! receives it (axum's `Json` is `serde_json` over the same type), then runs
//! the checks the handler runs next that need no state: the username rule
//! and password length for `/users` and `/login`, the name rules for uids and
//! keys, and the `data` text conversion for pushes. The checks that read the
//! config (`max_recipients`, `max_data`) are not run. [`parse_query`] does the
//! same for the query strings of the read routes, through axum's `Query`.
//!
//! A broken invariant panics; a refused input is an `Err`.

use axum::http::Uri;
use courier_proto::names;
use serde::de::DeserializeOwned;
use serde_json::value::RawValue;

use crate::accounts::{valid_username, MAX_PASSWORD, MIN_PASSWORD};
use crate::http::dto::{
    Credentials, MessagesQuery, NewMembers, PasswordChange, PresenceQuery, PushAll, PushBatch,
    PushKeys, PushRoom, PushUsers, SetRule, TopQuery, UsersPage,
};

/// A route with a JSON request body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// `POST /users`.
    Register,
    /// `POST /login`.
    Login,
    /// `POST /push/users`.
    PushUsers,
    /// `POST /push/keys`.
    PushKeys,
    /// `POST /push/rooms/{room}`.
    PushRoom,
    /// `POST /push/all`.
    PushAll,
    /// `POST /push/batch`.
    PushBatch,
    /// `POST /password`.
    Password,
    /// `PUT /rooms/{room}`, `POST /rooms/{room}/members`.
    Rooms,
}

/// A route with a query string.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueryRoute {
    /// `GET /online/users?cursor=&limit=`.
    OnlineUsers,
    /// `GET /online/rooms?top=`.
    TopRooms,
    /// `GET /presence?uids=`.
    Presence,
    /// `GET /users/{uid}/messages` and `GET /rooms/{room}/messages`.
    Messages,
}

/// Parses `bytes` as `route`'s body and runs its stateless checks.
pub fn parse_body(route: Route, bytes: &[u8]) -> Result<(), String> {
    match route {
        Route::Register => {
            let c: Credentials = json(bytes)?;
            if !valid_username(&c.username) {
                return Err("invalid username".into());
            }
            if !(MIN_PASSWORD..=MAX_PASSWORD).contains(&c.password.len()) {
                return Err("invalid password".into());
            }
            Ok(())
        }
        Route::Login => {
            let c: Credentials = json(bytes)?;
            if !valid_username(&c.username) || c.password.len() > MAX_PASSWORD {
                return Err("bad credentials".into());
            }
            Ok(())
        }
        Route::PushUsers => {
            let body: PushUsers = json(bytes)?;
            check_names(&body.uids, names::check_uid)?;
            data_text(body.data);
            Ok(())
        }
        Route::PushKeys => {
            let body: PushKeys = json(bytes)?;
            check_names(&body.keys, names::check_key)?;
            data_text(body.data);
            Ok(())
        }
        Route::PushRoom => {
            let body: PushRoom = json(bytes)?;
            data_text(body.data);
            Ok(())
        }
        Route::PushAll => {
            let body: PushAll = json(bytes)?;
            data_text(body.data);
            Ok(())
        }
        Route::PushBatch => {
            let body: PushBatch = json(bytes)?;
            for push in body.pushes {
                let to = &push.to;
                if let Some(uids) = &to.users {
                    check_names(uids, names::check_uid)?;
                }
                if let Some(keys) = &to.keys {
                    check_names(keys, names::check_key)?;
                }
                if let Some(room) = &to.room {
                    names::check_room(room).map_err(|e| e.to_string())?;
                }
                if let Some(key) = &push.idempotency_key {
                    names::check_dedup_key(key).map_err(|e| e.to_string())?;
                }
                data_text(push.data);
            }
            Ok(())
        }
        Route::Password => {
            let body: PasswordChange = json(bytes)?;
            if !(MIN_PASSWORD..=MAX_PASSWORD).contains(&body.new_password.len()) {
                return Err("invalid password".into());
            }
            Ok(())
        }
        Route::Rooms => {
            // Either body of the room routes.
            if let Ok(rule) = json::<SetRule>(bytes) {
                let _ = courier_cluster::JoinRule::from(rule.join);
                return Ok(());
            }
            let body: NewMembers = json(bytes)?;
            check_names(&body.uids, names::check_uid)
        }
    }
}

/// Parses `query` (the text after `?`) as `route`'s query string.
pub fn parse_query(route: QueryRoute, query: &[u8]) -> Result<(), String> {
    let mut uri = b"/q?".to_vec();
    uri.extend_from_slice(query);
    // hyper refuses such a request line before any handler runs.
    let uri = Uri::try_from(uri).map_err(|e| e.to_string())?;
    match route {
        QueryRoute::OnlineUsers => query_of::<UsersPage>(&uri).map(drop),
        QueryRoute::TopRooms => query_of::<TopQuery>(&uri).map(drop),
        QueryRoute::Messages => query_of::<MessagesQuery>(&uri).map(drop),
        QueryRoute::Presence => {
            let q: PresenceQuery = query_of(&uri)?;
            q.uids
                .split(',')
                .filter(|u| !u.is_empty())
                .try_for_each(names::check_uid)
                .map_err(|e| e.to_string())
        }
    }
}

fn json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, String> {
    serde_json::from_slice(bytes).map_err(|e| e.to_string())
}

fn query_of<T: DeserializeOwned>(uri: &Uri) -> Result<T, String> {
    axum::extract::Query::<T>::try_from_uri(uri)
        .map(|q| q.0)
        .map_err(|e| e.body_text())
}

fn check_names(
    items: &[String],
    check: fn(&str) -> Result<(), names::InvalidName>,
) -> Result<(), String> {
    if items.is_empty() {
        return Err("empty list".into());
    }
    items
        .iter()
        .try_for_each(|item| check(item))
        .map_err(|e| e.to_string())
}

/// The handlers' conversion of `data` to the text a message carries, which
/// must be the JSON value it arrived as.
fn data_text(data: Box<RawValue>) {
    let text: Box<str> = data.into();
    let text = String::from(text);
    assert!(
        serde_json::from_str::<serde::de::IgnoredAny>(&text).is_ok(),
        "data text is not JSON: {text:?}"
    );
}
