//! TLS for every listener and link, by config, with certificates from PEM
//! files that are reloaded without a restart.
//!
//! A process serves with one certificate chain and key ([`TlsConfig::cert`],
//! [`TlsConfig::key`]) on all its listeners, and verifies the services it
//! dials against one CA file ([`TlsConfig::ca`]). Empty paths mean
//! plaintext, so a laptop's `courier up` needs no certificates.
//!
//! The serving certificate sits behind a resolver ([`ServerTls`]) that every
//! handshake asks: [`ServerTls::reload`] swaps it, and [`ServerTls::watch`]
//! reloads on `SIGHUP` and whenever either file's modification time changes,
//! so a renewed certificate is served from the next handshake on while open
//! connections carry on. A file that fails to parse keeps the old
//! certificate (and is logged), never takes the listener down.
//!
//! Crypto is `ring`, chosen explicitly: no process-wide default provider is
//! installed or needed.

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use parking_lot::RwLock;
use rustls::crypto::ring as provider;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use serde::{Deserialize, Serialize};
use tokio::net::{TcpListener, TcpStream};
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;

use crate::acceptor::{tls_handshake, Admission, Verdict};
use crate::per_ip::{IpConnections, IpSlot};

pub use tokio_rustls::{TlsAcceptor, TlsConnector};

/// How often the certificate files are checked for a change.
pub const RELOAD_POLL: Duration = Duration::from_secs(2);
/// Longest a TLS handshake on a gRPC listener may take.
const GRPC_HANDSHAKE: Duration = Duration::from_secs(10);
/// TLS handshakes a gRPC listener runs at once.
const GRPC_HANDSHAKES: usize = 64;
/// Of those, at most this many from one peer (an IPv4 address, an IPv6
/// /64): a peer that opens connections and never finishes a handshake
/// cannot hold every place while the others wait.
const GRPC_HANDSHAKES_PER_PEER: u32 = 8;

/// Where a process's certificates are. Every path empty: plaintext.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM certificate chain the listeners serve (leaf first).
    pub cert: PathBuf,
    /// PEM private key of `cert` (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
    /// PEM CA certificates the services this process dials are verified
    /// against (comet -> logic, job -> comet, logic -> comet).
    pub ca: PathBuf,
}

impl TlsConfig {
    /// Whether the listeners serve TLS.
    pub fn serves(&self) -> bool {
        !self.cert.as_os_str().is_empty()
    }

    /// Whether links to other services use TLS.
    pub fn dials(&self) -> bool {
        !self.ca.as_os_str().is_empty()
    }

    /// Checks that `cert` and `key` come together and that every file
    /// given parses.
    pub fn validate(&self) -> Result<(), TlsError> {
        let has_key = !self.key.as_os_str().is_empty();
        if self.serves() != has_key {
            return Err(TlsError::Config(
                "tls.cert and tls.key must be set together".into(),
            ));
        }
        if self.serves() {
            load_key_pair(&self.cert, &self.key)?;
        }
        if self.dials() {
            roots(&self.ca)?;
        }
        Ok(())
    }

    /// The serving side, if this config serves TLS.
    pub fn server(&self) -> Result<Option<Arc<ServerTls>>, TlsError> {
        if !self.serves() {
            return Ok(None);
        }
        ServerTls::load(&self.cert, &self.key).map(|s| Some(Arc::new(s)))
    }

    /// The dialing side for tonic channels, if this config dials TLS.
    pub fn tonic_client(&self) -> Result<Option<tonic::transport::ClientTlsConfig>, TlsError> {
        if !self.dials() {
            return Ok(None);
        }
        let pem = std::fs::read(&self.ca).map_err(|e| TlsError::file(&self.ca, e))?;
        roots(&self.ca)?;
        Ok(Some(
            tonic::transport::ClientTlsConfig::new()
                .ca_certificate(tonic::transport::Certificate::from_pem(pem)),
        ))
    }

    /// `http` or `https`, as this config dials.
    pub fn scheme(&self) -> &'static str {
        if self.dials() {
            "https"
        } else {
            "http"
        }
    }
}

/// Why TLS could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{path}: {message}")]
    File { path: PathBuf, message: String },
    #[error("{0}")]
    Config(String),
}

impl TlsError {
    fn file(path: &Path, e: impl std::fmt::Display) -> Self {
        Self::File {
            path: path.to_owned(),
            message: e.to_string(),
        }
    }
}

/// What the server offers in ALPN.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Alpn {
    /// Nothing (Courier's own framed TCP).
    None,
    /// HTTP/2 only (gRPC).
    H2,
    /// HTTP/2 and HTTP/1.1 (the HTTP API).
    Http,
}

/// A serving certificate that can be swapped while listeners run.
#[derive(Debug)]
pub struct ServerTls {
    resolver: Arc<Resolver>,
    cert: PathBuf,
    key: PathBuf,
    /// The files' modification times when they were last read.
    loaded: parking_lot::Mutex<Stamp>,
}

type Stamp = (Option<SystemTime>, Option<SystemTime>);

#[derive(Debug)]
struct Resolver {
    current: RwLock<Arc<CertifiedKey>>,
}

impl ResolvesServerCert for Resolver {
    fn resolve(&self, _: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.read().clone())
    }
}

impl ServerTls {
    /// Loads `cert` and `key`.
    pub fn load(cert: &Path, key: &Path) -> Result<Self, TlsError> {
        let stamp = stamp(cert, key);
        let current = load_key_pair(cert, key)?;
        Ok(Self {
            resolver: Arc::new(Resolver {
                current: RwLock::new(Arc::new(current)),
            }),
            cert: cert.to_owned(),
            key: key.to_owned(),
            loaded: parking_lot::Mutex::new(stamp),
        })
    }

    /// An acceptor offering `alpn`; every acceptor of this `ServerTls`
    /// serves the current certificate.
    pub fn acceptor(&self, alpn: Alpn) -> Result<TlsAcceptor, TlsError> {
        let mut config =
            rustls::ServerConfig::builder_with_provider(Arc::new(provider::default_provider()))
                .with_safe_default_protocol_versions()
                .map_err(|e| TlsError::Config(e.to_string()))?
                .with_no_client_auth()
                .with_cert_resolver(self.resolver.clone());
        config.alpn_protocols = match alpn {
            Alpn::None => Vec::new(),
            Alpn::H2 => vec![b"h2".to_vec()],
            Alpn::Http => vec![b"h2".to_vec(), b"http/1.1".to_vec()],
        };
        Ok(TlsAcceptor::from(Arc::new(config)))
    }

    /// Reads the files again and serves them from the next handshake on.
    /// On error the old certificate stays.
    pub fn reload(&self) -> Result<(), TlsError> {
        let stamp = stamp(&self.cert, &self.key);
        // Recorded even when the files do not parse: a half-written file
        // is retried when it changes again (or on SIGHUP), not every poll.
        *self.loaded.lock() = stamp;
        let next = load_key_pair(&self.cert, &self.key)?;
        *self.resolver.current.write() = Arc::new(next);
        Ok(())
    }

    /// Reloads on `SIGHUP` and when a file changes, until `stop` fires.
    pub fn watch(self: &Arc<Self>, stop: CancellationToken) -> tokio::task::JoinHandle<()> {
        let tls = self.clone();
        tokio::spawn(async move {
            let mut poll = tokio::time::interval(RELOAD_POLL);
            let mut hangup = hangups();
            loop {
                let why = tokio::select! {
                    () = stop.cancelled() => return,
                    _ = poll.tick() => {
                        if stamp(&tls.cert, &tls.key) == *tls.loaded.lock() {
                            continue;
                        }
                        "files changed"
                    }
                    () = next_hangup(&mut hangup) => "SIGHUP",
                };
                match tls.reload() {
                    Ok(()) => {
                        tracing::info!(cert = %tls.cert.display(), why, "TLS certificate reloaded")
                    }
                    Err(e) => {
                        tracing::error!(error = %e, why, "TLS certificate not reloaded; serving the old one")
                    }
                }
            }
        })
    }
}

/// The modification times of `cert` and `key`.
fn stamp(cert: &Path, key: &Path) -> Stamp {
    let modified = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    (modified(cert), modified(key))
}

#[cfg(unix)]
type Hangups = Option<tokio::signal::unix::Signal>;
#[cfg(not(unix))]
type Hangups = ();

#[cfg(unix)]
fn hangups() -> Hangups {
    tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok()
}
#[cfg(not(unix))]
fn hangups() -> Hangups {}

#[cfg(unix)]
async fn next_hangup(hangups: &mut Hangups) {
    match hangups {
        Some(signal) => {
            if signal.recv().await.is_none() {
                std::future::pending::<()>().await;
            }
        }
        None => std::future::pending().await,
    }
}
#[cfg(not(unix))]
async fn next_hangup(_: &mut Hangups) {
    std::future::pending().await
}

fn load_key_pair(cert: &Path, key: &Path) -> Result<CertifiedKey, TlsError> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(|e| TlsError::file(cert, e))?
        .collect::<Result<_, _>>()
        .map_err(|e| TlsError::file(cert, e))?;
    if chain.is_empty() {
        return Err(TlsError::file(cert, "no certificate in the file"));
    }
    let der = PrivateKeyDer::from_pem_file(key).map_err(|e| TlsError::file(key, e))?;
    let signing = provider::sign::any_supported_type(&der).map_err(|e| TlsError::file(key, e))?;
    Ok(CertifiedKey::new(chain, signing))
}

fn roots(ca: &Path) -> Result<rustls::RootCertStore, TlsError> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca).map_err(|e| TlsError::file(ca, e))? {
        let cert = cert.map_err(|e| TlsError::file(ca, e))?;
        roots.add(cert).map_err(|e| TlsError::file(ca, e))?;
    }
    if roots.is_empty() {
        return Err(TlsError::file(ca, "no CA certificate in the file"));
    }
    Ok(roots)
}

/// A client config trusting the CAs in `ca` (PEM), for dialing Courier's
/// own listeners.
pub fn client_config(ca: &Path) -> Result<rustls::ClientConfig, TlsError> {
    Ok(
        rustls::ClientConfig::builder_with_provider(Arc::new(provider::default_provider()))
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError::Config(e.to_string()))?
            .with_root_certificates(roots(ca)?)
            .with_no_client_auth(),
    )
}

/// The name to verify a `host:port` address's certificate against: its
/// host, an IP address or a DNS name.
pub fn server_name(addr: &str) -> Result<ServerName<'static>, TlsError> {
    let host = match addr.rsplit_once(':') {
        Some((host, port)) if port.parse::<u16>().is_ok() => host,
        _ => addr,
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    ServerName::try_from(host.to_owned())
        .map_err(|e| TlsError::Config(format!("{addr}: not a valid TLS server name: {e}")))
}

/// A tonic endpoint for a Courier gRPC service at `addr` (`host:port`):
/// `https` verifying `addr`'s host with `tls`, plain `http` without.
pub fn endpoint(
    addr: &str,
    tls: Option<&tonic::transport::ClientTlsConfig>,
) -> Result<tonic::transport::Endpoint, TlsError> {
    let scheme = if tls.is_some() { "https" } else { "http" };
    let endpoint = tonic::transport::Endpoint::from_shared(format!("{scheme}://{addr}"))
        .map_err(|e| TlsError::Config(format!("{addr}: {e}")))?;
    let Some(tls) = tls else {
        return Ok(endpoint);
    };
    let host = match server_name(addr)? {
        ServerName::DnsName(name) => name.as_ref().to_owned(),
        ServerName::IpAddress(ip) => std::net::IpAddr::from(ip).to_string(),
        other => {
            return Err(TlsError::Config(format!(
                "{addr}: unsupported server name {other:?}"
            )))
        }
    };
    endpoint
        .tls_config(tls.clone().domain_name(host))
        .map_err(|e| TlsError::Config(format!("{addr}: {e}")))
}

/// Connections that completed their TLS handshake.
pub type Incoming = ReceiverStream<std::io::Result<tokio_rustls::server::TlsStream<TcpStream>>>;

/// Accepts TCP connections on `listener` ([`crate::acceptor::run`]) and
/// hands out the ones whose TLS handshake succeeded (bounded in time, in
/// number at once, and per peer: one more from a peer at its bound is
/// closed at once), for `tonic`'s `serve_with_incoming`. Stops when `stop`
/// fires or the stream is dropped.
pub fn incoming(listener: TcpListener, acceptor: TlsAcceptor, stop: CancellationToken) -> Incoming {
    let (tx, rx) = tokio::sync::mpsc::channel(GRPC_HANDSHAKES);
    let handshakes = GrpcHandshakes {
        all: Arc::new(tokio::sync::Semaphore::new(GRPC_HANDSHAKES)),
        per_peer: IpConnections::new(GRPC_HANDSHAKES_PER_PEER),
        acceptor,
        tx: tx.clone(),
    };
    tokio::spawn(async move {
        tokio::select! {
            () = crate::acceptor::run(listener, &stop, handshakes) => {}
            () = tx.closed() => {}
        }
    });
    ReceiverStream::new(rx)
}

/// The gRPC listener's admission: a place among the handshakes (waited
/// for) and among its peer's (closed at once without one); the handshake in
/// the connection's task, its stream handed to tonic.
struct GrpcHandshakes {
    all: Arc<tokio::sync::Semaphore>,
    per_peer: Arc<IpConnections>,
    acceptor: TlsAcceptor,
    tx: tokio::sync::mpsc::Sender<std::io::Result<tokio_rustls::server::TlsStream<TcpStream>>>,
}

impl Admission for GrpcHandshakes {
    type Ticket = (tokio::sync::OwnedSemaphorePermit, IpSlot);

    async fn admit(&mut self, peer: SocketAddr) -> Verdict<Self::Ticket> {
        let Some(peer_slot) = self.per_peer.admit(peer.ip()) else {
            tracing::debug!(%peer, "too many gRPC TLS handshakes from this peer; closed");
            return Verdict::Close;
        };
        match self.all.clone().acquire_owned().await {
            Ok(permit) => Verdict::Admit((permit, peer_slot)),
            Err(_) => Verdict::Close,
        }
    }

    fn serve(
        &mut self,
        stream: TcpStream,
        peer: SocketAddr,
        ticket: Self::Ticket,
    ) -> impl Future<Output = ()> + Send + 'static {
        let (acceptor, tx) = (self.acceptor.clone(), self.tx.clone());
        async move {
            let _places = ticket;
            if let Some(tls) = tls_handshake(&acceptor, stream, peer, GRPC_HANDSHAKE).await {
                let _ = tx.send(Ok(tls)).await;
            }
        }
    }
}

/// Dials `addr` (`host:port`) over TCP and TLS with `connector`.
pub async fn connect(
    connector: &TlsConnector,
    addr: &str,
) -> std::io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
    let name = server_name(addr).map_err(std::io::Error::other)?;
    let tcp = TcpStream::connect(addr).await?;
    tcp.set_nodelay(true)?;
    connector.connect(name, tcp).await
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;
    use courier_testkit::tls::TestCerts;

    /// Serves one echo of 4 bytes per connection with `tls`.
    async fn echo_server(tls: Arc<ServerTls>) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let acceptor = tls.acceptor(Alpn::None).unwrap();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    if let Ok(mut tls) = acceptor.accept(stream).await {
                        let mut buf = [0u8; 4];
                        if tls.read_exact(&mut buf).await.is_ok() {
                            let _ = tls.write_all(&buf).await;
                            let _ = tls.shutdown().await;
                        }
                    }
                });
            }
        });
        addr
    }

    /// Whether a client trusting `ca` gets an echo from `addr`.
    async fn echoes(ca: &Path, addr: &str) -> bool {
        let connector = TlsConnector::from(Arc::new(client_config(ca).unwrap()));
        let Ok(mut stream) = connect(&connector, addr).await else {
            return false;
        };
        let mut buf = [0u8; 4];
        stream.write_all(b"ping").await.is_ok()
            && stream.read_exact(&mut buf).await.is_ok()
            && &buf == b"ping"
    }

    #[tokio::test]
    async fn one_peer_cannot_hold_every_grpc_handshake_place() {
        use tokio_stream::StreamExt;
        let certs = TestCerts::new().unwrap();
        let config = TlsConfig {
            cert: certs.cert.clone(),
            key: certs.key.clone(),
            ca: certs.ca.clone(),
        };
        let tls = config.server().unwrap().expect("serves");
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let stop = CancellationToken::new();
        let mut incoming = incoming(listener, tls.acceptor(Alpn::None).unwrap(), stop.clone());
        let from = |ip: &'static str| {
            let addr = addr.clone();
            async move {
                let socket = tokio::net::TcpSocket::new_v4().unwrap();
                socket.bind(format!("{ip}:0").parse().unwrap()).unwrap();
                socket.connect(addr.parse().unwrap()).await.unwrap()
            }
        };
        // A peer that opens connections and never says a word.
        let mut silent = Vec::new();
        for _ in 0..GRPC_HANDSHAKES_PER_PEER {
            silent.push(from("127.0.0.1").await);
        }
        // One more from it is closed at once.
        let mut extra = from("127.0.0.1").await;
        let mut buf = [0u8; 1];
        let read = tokio::time::timeout(courier_testkit::wait::PATIENCE, extra.read(&mut buf))
            .await
            .expect("closed in time");
        assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
        // Closed for being one too many, not by the handshake timeout: the
        // silent ones, opened before it, are still waiting.
        for conn in &silent {
            let mut buf = [0u8; 1];
            let still_open = matches!(conn.try_read(&mut buf), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock);
            assert!(still_open, "a silent connection was closed");
        }
        // Another peer still gets through.
        let connector = TlsConnector::from(Arc::new(client_config(&certs.ca).unwrap()));
        let tcp = from("127.0.0.2").await;
        let name = server_name(&addr).unwrap();
        let (client, server) = tokio::join!(connector.connect(name, tcp), incoming.next());
        client.expect("the other peer's handshake");
        server.expect("handed out").expect("a TLS stream");
        stop.cancel();
        drop(silent);
    }

    #[tokio::test]
    async fn a_renewed_certificate_is_served_from_the_next_handshake() {
        let mut certs = TestCerts::new().unwrap();
        let config = TlsConfig {
            cert: certs.cert.clone(),
            key: certs.key.clone(),
            ca: certs.ca.clone(),
        };
        config.validate().unwrap();
        let tls = config.server().unwrap().expect("serves");
        let addr = echo_server(tls.clone()).await;
        let old_ca = certs.dir().join("old-ca.pem");
        std::fs::copy(&certs.ca, &old_ca).unwrap();
        assert!(echoes(&certs.ca, &addr).await);

        // Rotate to a certificate from another CA; the watcher notices.
        let stop = CancellationToken::new();
        let watcher = tls.watch(stop.clone());
        certs.renew().unwrap();
        courier_testkit::wait::eventually_async(
            "the new certificate is served",
            Duration::from_secs(10),
            || echoes(&certs.ca, &addr),
        )
        .await;
        assert!(
            !echoes(&old_ca, &addr).await,
            "the old CA no longer verifies it"
        );
        stop.cancel();
        watcher.await.unwrap();
    }

    #[tokio::test]
    async fn bad_files_are_refused_and_keep_the_old_certificate() {
        let certs = TestCerts::new().unwrap();
        let half = TlsConfig {
            cert: certs.cert.clone(),
            ..TlsConfig::default()
        };
        assert!(half.validate().is_err(), "cert without key");
        let tls = ServerTls::load(&certs.cert, &certs.key).unwrap();
        std::fs::write(&certs.cert, "not a certificate").unwrap();
        assert!(tls.reload().is_err());
        let addr = echo_server(Arc::new(tls)).await;
        assert!(echoes(&certs.ca, &addr).await, "still serving the old one");
        assert!(
            TlsConfig::default().server().unwrap().is_none(),
            "empty: plaintext"
        );
    }

    #[test]
    fn server_names_come_from_the_host() {
        assert!(matches!(
            server_name("127.0.0.1:3101"),
            Ok(ServerName::IpAddress(_))
        ));
        assert!(matches!(
            server_name("[::1]:3101"),
            Ok(ServerName::IpAddress(_))
        ));
        assert!(matches!(
            server_name("comet-1.example.com:443"),
            Ok(ServerName::DnsName(_))
        ));
    }
}
