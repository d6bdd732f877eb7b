//! What a backend's TLS certificate must chain to, for every backend alike.
//!
//! Each backend turns TLS on its own way (`rediss://`, `etcds://`,
//! PostgreSQL's `sslmode`, librdkafka's `security.protocol`), but all of
//! them trust the same CAs: the PEM file named by the cluster config's
//! `backend_ca` when it is set (then *only* those CAs: a private CA's
//! certificates are not vouched for by public ones, and a public CA should
//! not vouch for a private backend), else the system's roots
//! (`/etc/ssl/certs`, read by `rustls-native-certs`).

use std::path::{Path, PathBuf};

use crate::{Error, Result};

/// The CAs backends' TLS certificates must chain to. The default trusts
/// the system's roots.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BackendTls {
    ca: Option<PathBuf>,
}

impl BackendTls {
    /// Trusts only the CA certificates in the PEM file `ca` when given,
    /// else the system's roots. The file is read when a TLS connection is
    /// first configured, not here.
    pub fn new(ca: Option<PathBuf>) -> Self {
        Self { ca }
    }

    /// The CA file, if one is set.
    pub fn ca(&self) -> Option<&Path> {
        self.ca.as_deref()
    }

    /// The CA file's contents, checked to hold at least one PEM
    /// certificate; `None` when no file is set (the system's roots).
    #[cfg_attr(
        not(any(feature = "redis", feature = "etcd", feature = "postgres")),
        allow(dead_code)
    )]
    pub(crate) fn ca_pem(&self) -> Result<Option<Vec<u8>>> {
        let Some(path) = &self.ca else {
            return Ok(None);
        };
        let pem = std::fs::read(path)
            .map_err(|e| Error::tls(format!("reading backend_ca {}: {e}", path.display())))?;
        let certs = parse_certs(&pem, path)?;
        if certs.is_empty() {
            return Err(Error::tls(format!(
                "backend_ca {}: no PEM certificate in it",
                path.display()
            )));
        }
        Ok(Some(pem))
    }

    /// The roots a rustls client verifies a backend against.
    #[cfg(feature = "postgres")]
    pub(crate) fn root_store(&self) -> Result<rustls::RootCertStore> {
        let mut roots = rustls::RootCertStore::empty();
        match (&self.ca, self.ca_pem()?) {
            (Some(path), Some(pem)) => {
                for cert in parse_certs(&pem, path)? {
                    roots
                        .add(cert)
                        .map_err(|e| Error::tls(format!("backend_ca {}: {e}", path.display())))?;
                }
            }
            _ => {
                let native = rustls_native_certs::load_native_certs();
                let (added, _ignored) = roots.add_parsable_certificates(native.certs);
                if added == 0 {
                    let why = native
                        .errors
                        .first()
                        .map_or_else(|| "none found".to_owned(), ToString::to_string);
                    return Err(Error::tls(format!(
                        "no system root certificates ({why}); set backend_ca"
                    )));
                }
            }
        }
        Ok(roots)
    }
}

fn parse_certs(pem: &[u8], path: &Path) -> Result<Vec<rustls_pki_types::CertificateDer<'static>>> {
    use rustls_pki_types::pem::PemObject;
    rustls_pki_types::CertificateDer::pem_slice_iter(pem)
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| Error::tls(format!("backend_ca {}: {e}", path.display())))
}

/// Makes ring the process's rustls provider unless one is set already:
/// clients that build their rustls config themselves (the Redis client)
/// use the process default.
#[cfg(feature = "redis")]
pub(crate) fn ensure_crypto_provider() {
    if rustls::crypto::CryptoProvider::get_default().is_none() {
        // Losing a race to another installer is fine: one is set.
        let _ = rustls::crypto::ring::default_provider().install_default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ca_file_must_hold_a_certificate() {
        assert_eq!(BackendTls::default().ca_pem().ok(), Some(None));
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let missing = BackendTls::new(Some(dir.path().join("none.pem")));
        let e = missing.ca_pem().err().map(|e| e.to_string());
        assert!(
            e.as_deref().is_some_and(|e| e.contains("none.pem")),
            "{e:?}"
        );
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").unwrap_or_else(|e| panic!("{e}"));
        let e = BackendTls::new(Some(empty))
            .ca_pem()
            .err()
            .map(|e| e.to_string());
        assert!(
            e.as_deref()
                .is_some_and(|e| e.contains("no PEM certificate")),
            "{e:?}"
        );
    }
}
