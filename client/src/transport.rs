//! How the client reaches a comet: any byte stream that reads and writes.
//!
//! The connection code (handshake, driver) runs over a [`BoxStream`], so TCP
//! (the default, [`Connector::tcp`]), TLS ([`Connector::tls`]), a WebSocket
//! ([`Connector::websocket`]), or an in-memory duplex in tests all run the
//! same code. A [`Transport`] opens
//! one stream to one comet; the [`Connector`] in [`crate::ClientConfig`]
//! carries it.

use std::path::Path;
use std::sync::Arc;

use futures::future::BoxFuture;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

use crate::CometAddr;

mod ws;

pub use ws::WebSocket;

/// A byte stream to a comet.
pub trait Stream: AsyncRead + AsyncWrite + Unpin + Send + 'static {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send + 'static> Stream for T {}

/// A boxed [`Stream`], as the connection code holds it.
pub type BoxStream = Box<dyn Stream>;

/// Opens byte streams to comets.
pub trait Transport: Send + Sync + 'static {
    /// Opens a stream to `comet`. The caller bounds it with a timeout.
    fn connect<'a>(&'a self, comet: &'a CometAddr) -> BoxFuture<'a, std::io::Result<BoxStream>>;
}

/// TCP to the comet's `tcp` address, Nagle off (frames are small and
/// latency matters more than packet count).
#[derive(Debug, Clone, Copy, Default)]
pub struct Tcp;

impl Transport for Tcp {
    fn connect<'a>(&'a self, comet: &'a CometAddr) -> BoxFuture<'a, std::io::Result<BoxStream>> {
        Box::pin(async move {
            let stream = TcpStream::connect(comet.tcp.as_str()).await?;
            stream.set_nodelay(true)?;
            Ok(Box::new(stream) as BoxStream)
        })
    }
}

/// TLS over TCP to the comet's `tcp` address, verifying the comet's
/// certificate for that address's host against the given roots.
#[derive(Clone)]
pub struct Tls {
    connector: tokio_rustls::TlsConnector,
}

impl Tls {
    /// Trusting the CA certificates in the PEM file `ca`, or the public
    /// web roots when `None`.
    pub fn new(ca: Option<&Path>) -> std::io::Result<Self> {
        let mut roots = rustls::RootCertStore::empty();
        match ca {
            Some(ca) => {
                for cert in CertificateDer::pem_file_iter(ca).map_err(std::io::Error::other)? {
                    roots
                        .add(cert.map_err(std::io::Error::other)?)
                        .map_err(std::io::Error::other)?;
                }
            }
            None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(std::io::Error::other)?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(Self {
            connector: tokio_rustls::TlsConnector::from(Arc::new(config)),
        })
    }
}

impl Transport for Tls {
    fn connect<'a>(&'a self, comet: &'a CometAddr) -> BoxFuture<'a, std::io::Result<BoxStream>> {
        Box::pin(async move {
            let name = server_name(&comet.tcp)?;
            let stream = TcpStream::connect(comet.tcp.as_str()).await?;
            stream.set_nodelay(true)?;
            let tls = self.connector.connect(name, stream).await?;
            Ok(Box::new(tls) as BoxStream)
        })
    }
}

/// The host of a `host:port` address as a TLS server name.
fn server_name(addr: &str) -> std::io::Result<ServerName<'static>> {
    let host = match addr.rsplit_once(':') {
        Some((host, port)) if port.parse::<u16>().is_ok() => host,
        _ => addr,
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    ServerName::try_from(host.to_owned()).map_err(std::io::Error::other)
}

/// The transport a client uses; cheap to clone.
#[derive(Clone)]
pub struct Connector(Arc<dyn Transport>);

impl Connector {
    /// A connector over `transport`.
    pub fn new(transport: impl Transport) -> Self {
        Self(Arc::new(transport))
    }

    /// TCP, the default.
    pub fn tcp() -> Self {
        Self::new(Tcp)
    }

    /// TLS over TCP, trusting `ca` (a PEM file) or, with `None`, the public
    /// web roots.
    pub fn tls(ca: Option<&Path>) -> std::io::Result<Self> {
        Tls::new(ca).map(Self::new)
    }

    /// WebSocket to the comet's `ws` URL, with [`CLIENT_MAX_FRAME`]
    /// frames; `wss://` URLs are verified against the public web roots.
    ///
    /// [`CLIENT_MAX_FRAME`]: crate::CLIENT_MAX_FRAME
    pub fn websocket() -> Self {
        Self::new(WebSocket::new())
    }

    /// WebSocket to the comet's `ws` URL, with [`CLIENT_MAX_FRAME`]
    /// frames; `wss://` URLs are verified against `ca` (a PEM file) or,
    /// with `None`, the public web roots.
    ///
    /// [`CLIENT_MAX_FRAME`]: crate::CLIENT_MAX_FRAME
    pub fn websocket_tls(ca: Option<&Path>) -> std::io::Result<Self> {
        WebSocket::new().with_ca(ca).map(Self::new)
    }

    /// Opens a stream to `comet`.
    pub(crate) async fn connect(&self, comet: &CometAddr) -> std::io::Result<BoxStream> {
        self.0.connect(comet).await
    }
}

impl Default for Connector {
    fn default() -> Self {
        Self::tcp()
    }
}

impl std::fmt::Debug for Connector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Connector(..)")
    }
}
