//! The WebSocket upgrade: `GET /ws` from an allowed origin, in one of
//! Courier's subprotocols, then the same connection handler as TCP.
//!
//! A request naming no subprotocol gets `courier.protobuf`; one naming only
//! others is refused (400), as is any other path (404) and an origin not in
//! `ws_origins` (403). The upgrade holds the connection's place among
//! those handshaking and must finish within `handshake_timeout`; `Auth`
//! then has its own `handshake_timeout`, as on TCP. Messages are capped at
//! `max_frame` by the WebSocket layer itself, so nothing larger is ever
//! buffered; until the first message (`Auth`) has been read, at most
//! [`first_message_bytes`] are read from the socket at all, so a client that
//! has not authenticated makes the comet buffer no more than on TCP.

use std::net::SocketAddr;
use std::sync::Arc;

use courier_ws::tokio_tungstenite::accept_hdr_async_with_config;
use courier_ws::tokio_tungstenite::tungstenite::handshake::server::{
    ErrorResponse, Request, Response,
};
use courier_ws::tokio_tungstenite::tungstenite::http::{header, HeaderValue, StatusCode};
use courier_ws::{Encoding, FrameSocket, ReadBudget};
use tokio::io::{AsyncRead, AsyncWrite};

use crate::connection;
use crate::limits::HandshakeSlot;
use crate::state::CometState;

/// The path WebSocket clients connect to.
pub(crate) const PATH: &str = "/ws";

/// Upgrades `stream` and serves it as a client connection.
pub(crate) async fn serve<S>(
    stream: S,
    peer: Option<SocketAddr>,
    state: Arc<CometState>,
    handshaking: HandshakeSlot,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let max_frame = state.config.max_frame;
    let config = courier_ws::config(max_frame);
    let mut chosen = Encoding::Protobuf;
    let origins = &state.config.ws_origins;
    // Validated at bind; parsed here, once per upgrade, not per frame.
    let public_path = (state.config.public_ws_url.as_deref())
        .and_then(|url| crate::config::public_ws_path(url).ok());
    let public_path = public_path.as_deref();
    // The error type is tungstenite's callback signature, not ours.
    #[allow(clippy::result_large_err)]
    let check = |request: &Request, response: Response| {
        let (encoding, response) = upgrade(request, response, origins, public_path)
            .map_err(|(status, why)| refusal(status, why))?;
        chosen = encoding;
        Ok(response)
    };
    let limit = state.config.handshake_timeout;
    let upgraded = tokio::time::timeout(
        limit,
        accept_hdr_async_with_config(ReadBudget::new(stream), check, Some(config)),
    )
    .await;
    match upgraded {
        Ok(Ok(ws)) => {
            metrics::counter!("courier_comet_websockets_total", "subprotocol" => chosen.subprotocol())
                .increment(1);
            let first = first_message_bytes(state.config.max_auth_frame, chosen);
            let socket = FrameSocket::new(ws, chosen, max_frame).bound_first_message(first);
            connection::serve(socket, peer, state, handshaking).await;
        }
        Ok(Err(e)) => tracing::debug!(?peer, error = %e, "WebSocket upgrade refused or failed"),
        Err(_) => tracing::debug!(?peer, "WebSocket upgrade timed out"),
    }
}

/// Socket bytes read at most before the first message is whole: an
/// `Auth` frame of `max_auth_frame` bytes, its WebSocket header (at most
/// 14 bytes; a client masks with 4 of them), and for `courier.json` the
/// text's growth over protobuf (field names, base64), at most twice.
pub(crate) fn first_message_bytes(max_auth_frame: usize, encoding: Encoding) -> usize {
    let body = match encoding {
        Encoding::Protobuf => max_auth_frame,
        Encoding::Json => 2 * max_auth_frame,
    };
    body + 14
}

/// Why an upgrade is refused: the status and a line of text.
type Refused = (StatusCode, &'static str);

/// Checks an upgrade request: its path (`/ws`, or the path of the public
/// URL clients are given), its origin and its subprotocol.
fn upgrade(
    request: &Request,
    mut response: Response,
    origins: &[String],
    public_path: Option<&str>,
) -> Result<(Encoding, Response), Refused> {
    let path = request.uri().path();
    if path != PATH && Some(path) != public_path {
        return Err((StatusCode::NOT_FOUND, "WebSocket clients connect to /ws"));
    }
    if let Some(origin) = request.headers().get(header::ORIGIN) {
        let allowed = origins.is_empty()
            || origin.to_str().is_ok_and(|o| {
                origins
                    .iter()
                    .any(|allowed| allowed.eq_ignore_ascii_case(o))
            });
        if !allowed {
            return Err((StatusCode::FORBIDDEN, "origin not allowed"));
        }
    }
    let offered = request.headers().get(header::SEC_WEBSOCKET_PROTOCOL);
    let Some(offered) = offered else {
        return Ok((Encoding::Protobuf, response));
    };
    let encoding = offered.to_str().ok().and_then(Encoding::choose).ok_or((
        StatusCode::BAD_REQUEST,
        "subprotocol must be courier.protobuf or courier.json",
    ))?;
    response.headers_mut().insert(
        header::SEC_WEBSOCKET_PROTOCOL,
        HeaderValue::from_static(encoding.subprotocol()),
    );
    Ok((encoding, response))
}

fn refusal(status: StatusCode, why: &str) -> ErrorResponse {
    let mut response = ErrorResponse::new(Some(why.to_owned()));
    *response.status_mut() = status;
    response
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn request(path: &str, headers: &[(&str, &str)]) -> Request {
        let mut r = Request::builder().uri(path);
        for (k, v) in headers {
            r = r.header(*k, *v);
        }
        r.body(()).unwrap()
    }

    fn outcome(r: &Request, origins: &[&str]) -> Result<(Encoding, Option<String>), u16> {
        let origins: Vec<String> = origins.iter().map(|o| (*o).to_owned()).collect();
        match upgrade(r, Response::new(()), &origins, None) {
            Ok((encoding, response)) => Ok((
                encoding,
                response
                    .headers()
                    .get(header::SEC_WEBSOCKET_PROTOCOL)
                    .map(|v| v.to_str().unwrap().to_owned()),
            )),
            Err((status, _)) => Err(status.as_u16()),
        }
    }

    #[test]
    fn the_subprotocol_is_the_first_courier_one_offered() {
        let json = request("/ws", &[("sec-websocket-protocol", "chat, courier.json")]);
        assert_eq!(
            outcome(&json, &[]),
            Ok((Encoding::Json, Some("courier.json".into())))
        );
        let none = request("/ws", &[]);
        assert_eq!(outcome(&none, &[]), Ok((Encoding::Protobuf, None)));
        let other = request("/ws", &[("sec-websocket-protocol", "mqtt")]);
        assert_eq!(outcome(&other, &[]), Err(400));
    }

    #[test]
    fn only_the_ws_path_and_allowed_origins_are_upgraded() {
        assert_eq!(outcome(&request("/", &[]), &[]), Err(404));
        let from = |o| request("/ws", &[("origin", o)]);
        let allowed = ["https://chat.example.com"];
        assert!(outcome(&from("https://chat.example.com"), &allowed).is_ok());
        assert_eq!(outcome(&from("https://evil.example"), &allowed), Err(403));
        assert!(outcome(&from("https://anything.example"), &[]).is_ok());
        // Not a browser: nothing to check.
        assert!(outcome(&request("/ws", &[]), &allowed).is_ok());
    }
}
