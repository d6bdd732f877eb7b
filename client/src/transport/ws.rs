//! The WebSocket transport: the comet's `ws` URL, in the `courier.protobuf`
//! subprotocol, seen as the TCP protocol's byte stream by
//! [`courier_ws::FrameSocket`], so the handshake and the driver run
//! unchanged over it.

use std::path::Path;
use std::sync::OnceLock;

use courier_ws::tokio_tungstenite::client_async_with_config;
use courier_ws::tokio_tungstenite::tungstenite::client::IntoClientRequest;
use courier_ws::tokio_tungstenite::tungstenite::handshake::client::Request;
use courier_ws::tokio_tungstenite::tungstenite::http::{header, HeaderValue};
use courier_ws::tokio_tungstenite::tungstenite::Error as WsError;
use courier_ws::{Encoding, FrameSocket};
use futures::future::BoxFuture;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

use super::{server_name, BoxStream, Tls, Transport};
use crate::{CometAddr, CLIENT_MAX_FRAME};

/// A WebSocket to the comet's `ws` URL (`ws://host:port/ws`, or
/// `wss://…` for TLS), speaking `courier.protobuf`. A comet whose `ws` is
/// empty serves no WebSocket: connecting to it is an error, and the
/// client tries the next comet.
///
/// `wss://` URLs are verified as the [`Tls`] transport verifies the TCP
/// address: against the CA given to [`WebSocket::with_ca`], or the public
/// web roots. Messages, and the frames they are made of, are refused above
/// the frame size limit ([`CLIENT_MAX_FRAME`] unless
/// [`WebSocket::with_max_frame`] says otherwise), so nothing larger is
/// ever buffered.
#[derive(Clone)]
pub struct WebSocket {
    /// The roots `wss://` URLs are verified against; the public web roots,
    /// built on the first `wss://` connect, when unset.
    tls: OnceLock<Tls>,
    max_frame: usize,
}

impl WebSocket {
    /// `ws://` and `wss://` (verified against the public web roots), with
    /// the client's default frame limit, [`CLIENT_MAX_FRAME`].
    pub fn new() -> Self {
        Self {
            tls: OnceLock::new(),
            max_frame: CLIENT_MAX_FRAME,
        }
    }

    /// The same transport verifying `wss://` URLs against the CA
    /// certificates in the PEM file `ca`, or the public web roots when
    /// `None` (see [`Tls::new`]).
    pub fn with_ca(self, ca: Option<&Path>) -> std::io::Result<Self> {
        // Without a CA, the public roots are built on the first `wss://`
        // connect (see `tls`), so a `ws://`-only client never builds them.
        let tls = OnceLock::new();
        if ca.is_some() {
            let _ = tls.set(Tls::new(ca)?);
        }
        Ok(Self { tls, ..self })
    }

    /// The same transport refusing messages longer than `max_frame` bytes;
    /// give it the config's `ClientConfig::max_frame`, which bounds the
    /// frames read from the stream.
    pub fn with_max_frame(self, max_frame: usize) -> Self {
        Self { max_frame, ..self }
    }

    /// The TLS connector for `wss://` URLs.
    fn tls(&self) -> std::io::Result<&Tls> {
        if let Some(tls) = self.tls.get() {
            return Ok(tls);
        }
        let public = Tls::new(None)?;
        Ok(self.tls.get_or_init(|| public))
    }

    async fn open(&self, comet: &CometAddr) -> std::io::Result<BoxStream> {
        if comet.ws.is_empty() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::Unsupported,
                format!("comet {} serves no WebSocket", comet.id),
            ));
        }
        let target = Target::parse(&comet.ws)?;
        let stream = TcpStream::connect(target.addr.as_str()).await?;
        stream.set_nodelay(true)?;
        if target.secure {
            let name = server_name(&target.addr)?;
            let tls = self.tls()?.connector.connect(name, stream).await?;
            self.upgrade(target.request, tls).await
        } else {
            self.upgrade(target.request, stream).await
        }
    }

    /// The WebSocket handshake over `stream`, then the socket as frames.
    async fn upgrade<S>(&self, request: Request, stream: S) -> std::io::Result<BoxStream>
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let config = courier_ws::config(self.max_frame);
        let (ws, _) = client_async_with_config(request, stream, Some(config))
            .await
            .map_err(handshake_error)?;
        Ok(Box::new(FrameSocket::new(
            ws,
            Encoding::Protobuf,
            self.max_frame,
        )))
    }
}

impl Default for WebSocket {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for WebSocket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebSocket")
            .field("max_frame", &self.max_frame)
            .finish_non_exhaustive()
    }
}

impl Transport for WebSocket {
    fn connect<'a>(&'a self, comet: &'a CometAddr) -> BoxFuture<'a, std::io::Result<BoxStream>> {
        Box::pin(self.open(comet))
    }
}

/// Where a `ws` URL leads: the upgrade request (offering
/// `courier.protobuf`), the `host:port` to dial and whether it is TLS.
#[derive(Debug)]
struct Target {
    request: Request,
    addr: String,
    secure: bool,
}

impl Target {
    fn parse(url: &str) -> std::io::Result<Self> {
        let invalid = |why: String| std::io::Error::new(std::io::ErrorKind::InvalidInput, why);
        let mut request = url
            .into_client_request()
            .map_err(|e| invalid(format!("WebSocket URL {url:?}: {e}")))?;
        let uri = request.uri();
        let secure = match uri.scheme_str() {
            Some("ws") => false,
            Some("wss") => true,
            _ => return Err(invalid(format!("{url:?} is not a ws:// or wss:// URL"))),
        };
        let host = uri
            .host()
            .filter(|h| !h.is_empty())
            .ok_or_else(|| invalid(format!("WebSocket URL {url:?} names no host")))?;
        let port = uri.port_u16().unwrap_or(if secure { 443 } else { 80 });
        let addr = format!("{host}:{port}");
        request.headers_mut().insert(
            header::SEC_WEBSOCKET_PROTOCOL,
            HeaderValue::from_static(Encoding::Protobuf.subprotocol()),
        );
        Ok(Self {
            request,
            addr,
            secure,
        })
    }
}

/// A failed upgrade as an I/O error, keeping the socket's own error.
fn handshake_error(e: WsError) -> std::io::Error {
    match e {
        WsError::Io(e) => e,
        e => std::io::Error::new(std::io::ErrorKind::ConnectionRefused, e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_name_the_address_the_scheme_and_the_subprotocol() {
        let plain = Target::parse("ws://127.0.0.1:3102/ws").unwrap();
        assert_eq!(plain.addr, "127.0.0.1:3102");
        assert!(!plain.secure);
        assert_eq!(plain.request.uri().path(), "/ws");
        assert_eq!(
            plain.request.headers()[header::SEC_WEBSOCKET_PROTOCOL],
            "courier.protobuf"
        );

        let tls = Target::parse("wss://comet.example.com/ws").unwrap();
        assert_eq!(tls.addr, "comet.example.com:443");
        assert!(tls.secure);
        let v6 = Target::parse("ws://[::1]:3102/ws").unwrap();
        assert_eq!(v6.addr, "[::1]:3102");
        assert!(server_name("[::1]:3102").is_ok());

        assert!(Target::parse("http://127.0.0.1:3102/ws").is_err());
        assert!(Target::parse("127.0.0.1:3102").is_err());
    }

    fn comet(ws: &str) -> CometAddr {
        CometAddr {
            id: "comet-1".into(),
            tcp: "127.0.0.1:1".into(),
            ws: ws.into(),
        }
    }

    /// A WebSocket server on a local port that answers the subprotocol
    /// offered, echoes one binary message, then sends `reply`.
    async fn echo_server(reply: Vec<u8>) -> (String, tokio::task::JoinHandle<Option<String>>) {
        use courier_ws::tokio_tungstenite::accept_hdr_async;
        use courier_ws::tokio_tungstenite::tungstenite::handshake::server;
        use courier_ws::tokio_tungstenite::tungstenite::Message;
        use futures::{SinkExt, StreamExt};

        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("ws://{}/ws", listener.local_addr().unwrap());
        let task = tokio::spawn(async move {
            let (stream, _) = listener.accept().await.unwrap();
            let mut offered = None;
            // The error type is tungstenite's callback signature, not ours.
            #[allow(clippy::result_large_err)]
            let answer = |request: &server::Request, mut response: server::Response| {
                let protocol = request
                    .headers()
                    .get(header::SEC_WEBSOCKET_PROTOCOL)
                    .cloned();
                if let Some(p) = protocol {
                    offered = p.to_str().ok().map(str::to_owned);
                    response
                        .headers_mut()
                        .insert(header::SEC_WEBSOCKET_PROTOCOL, p);
                }
                Ok(response)
            };
            let mut ws = accept_hdr_async(stream, answer).await.unwrap();
            let echo = ws.next().await.unwrap().unwrap();
            ws.send(echo).await.unwrap();
            ws.send(Message::binary(reply)).await.unwrap();
            // Hold the socket open until the client is done with it.
            while let Some(Ok(_)) = ws.next().await {}
            offered
        });
        (url, task)
    }

    #[tokio::test]
    async fn frames_travel_as_binary_messages_and_big_ones_are_refused() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};

        let (url, server) = echo_server(vec![7; 65]).await;
        let transport = WebSocket::new().with_max_frame(64);
        let mut stream = transport.connect(&comet(&url)).await.unwrap();
        // One length-prefixed frame out, the same frame back.
        stream.write_all(&[0, 0, 0, 3, 1, 2, 3]).await.unwrap();
        stream.flush().await.unwrap();
        let mut echoed = [0; 7];
        stream.read_exact(&mut echoed).await.unwrap();
        assert_eq!(echoed, [0, 0, 0, 3, 1, 2, 3]);
        // A message over the 64-byte limit is an error, not a buffer.
        let mut rest = Vec::new();
        let err = stream.read_to_end(&mut rest).await.unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::InvalidData, "{err}");
        assert!(rest.is_empty());
        drop(stream);
        assert_eq!(server.await.unwrap().as_deref(), Some("courier.protobuf"));
    }

    #[tokio::test]
    async fn a_comet_without_a_websocket_is_an_error() {
        let err = WebSocket::new().open(&comet("")).await.err().unwrap();
        assert_eq!(err.kind(), std::io::ErrorKind::Unsupported);
    }
}
