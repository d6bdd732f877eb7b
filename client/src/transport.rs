//! How the client reaches a comet: any byte stream that reads and writes.
//!
//! The connection code (handshake, driver) runs over a [`BoxStream`], so TCP
//! (the default, [`Connector::tcp`]), a TLS or WebSocket stream, or an
//! in-memory duplex in tests all run the same code. A [`Transport`] opens
//! one stream to one comet; the [`Connector`] in [`crate::ClientConfig`]
//! carries it.

use std::sync::Arc;

use futures::future::BoxFuture;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

use crate::CometAddr;

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
