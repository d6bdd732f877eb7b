//! TLS to PostgreSQL, as libpq's `sslmode` says (the URL's query
//! parameter), over rustls:
//!
//! | `sslmode` | TLS | server certificate |
//! |---|---|---|
//! | `disable` | never | - |
//! | `prefer` (the default) | if the server offers it | not checked |
//! | `require` | always | not checked |
//! | `verify-ca` | always | chains to a trusted CA |
//! | `verify-full` | always | chains to a trusted CA and names the host |
//!
//! The trusted CAs are [`BackendTls`]'s: the `backend_ca` file, else the
//! system's roots. (libpq reads `~/.postgresql/root.crt` instead and, when
//! that file exists, checks the chain under `require` too; here `require`
//! never checks, and `sslrootcert` in a URL is not read.)
//!
//! tokio-postgres itself knows only `disable`, `prefer` and `require`: the
//! two `verify-*` modes reach it as `require`, and the check is this
//! module's certificate verifier.

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, ClientConfig, DigitallySignedStruct, SignatureScheme};
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::tls::BackendTls;
use crate::{Error, Result};

/// A URL's `sslmode`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) enum SslMode {
    Disable,
    #[default]
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

impl SslMode {
    fn parse(value: &str) -> Option<Self> {
        Some(match value {
            "disable" => Self::Disable,
            "prefer" => Self::Prefer,
            "require" => Self::Require,
            "verify-ca" => Self::VerifyCa,
            "verify-full" => Self::VerifyFull,
            _ => return None,
        })
    }
}

/// `url`'s `sslmode`, and `url` as tokio-postgres takes it (`verify-ca`
/// and `verify-full` written as `require`).
pub(crate) fn split_sslmode(url: &str) -> Result<(SslMode, String)> {
    let Some((base, query)) = url.split_once('?') else {
        return Ok((SslMode::default(), url.to_owned()));
    };
    let mut mode = SslMode::default();
    let mut params = Vec::new();
    for param in query.split('&') {
        match param.split_once('=') {
            Some(("sslmode", value)) => {
                mode = SslMode::parse(value).ok_or_else(|| {
                    Error::bad_url(
                        url,
                        format!(
                            "sslmode `{value}`: expected disable, prefer, require, verify-ca \
                             or verify-full"
                        ),
                    )
                })?;
                let passed = match mode {
                    SslMode::VerifyCa | SslMode::VerifyFull => "require",
                    _ => value,
                };
                params.push(format!("sslmode={passed}"));
            }
            _ => params.push(param.to_owned()),
        }
    }
    Ok((mode, format!("{base}?{}", params.join("&"))))
}

/// The TLS connector of a shard whose URL says `mode`.
pub(crate) fn connector(mode: SslMode, tls: &BackendTls) -> Result<MakeRustlsConnect> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier: Arc<dyn ServerCertVerifier> = match mode {
        SslMode::Disable | SslMode::Prefer | SslMode::Require => {
            Arc::new(Unchecked(provider.clone()))
        }
        SslMode::VerifyCa | SslMode::VerifyFull => {
            let roots = Arc::new(tls.root_store()?);
            let webpki = WebPkiServerVerifier::builder_with_provider(roots, provider.clone())
                .build()
                .map_err(|e| Error::tls(format!("postgres certificate verifier: {e}")))?;
            if mode == SslMode::VerifyCa {
                Arc::new(AnyName(webpki))
            } else {
                webpki
            }
        }
    };
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::tls(format!("postgres TLS: {e}")))?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    Ok(MakeRustlsConnect::new(config))
}

/// `sslmode=prefer|require`: any certificate is taken (the connection is
/// encrypted, not authenticated), but the handshake's signatures are still
/// checked, as the certificate's key must have made them.
#[derive(Debug)]
struct Unchecked(Arc<CryptoProvider>);

impl ServerCertVerifier for Unchecked {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> std::result::Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// `sslmode=verify-ca`: the chain is checked, the host name is not.
/// (webpki checks the chain first, so a certificate refused only for its
/// name has a good chain.)
#[derive(Debug)]
struct AnyName(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for AnyName {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> std::result::Result<ServerCertVerified, rustls::Error> {
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
        {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verify_modes_reach_tokio_postgres_as_require() {
        let split = |url: &str| split_sslmode(url).ok();
        assert_eq!(
            split("postgres://u@h/db"),
            Some((SslMode::Prefer, "postgres://u@h/db".to_owned()))
        );
        assert_eq!(
            split("postgres://u@h/db?application_name=x&sslmode=verify-full"),
            Some((
                SslMode::VerifyFull,
                "postgres://u@h/db?application_name=x&sslmode=require".to_owned()
            ))
        );
        assert_eq!(
            split("postgres://u@h/db?sslmode=verify-ca").map(|s| s.0),
            Some(SslMode::VerifyCa)
        );
        assert_eq!(
            split("postgres://u@h/db?sslmode=disable"),
            Some((
                SslMode::Disable,
                "postgres://u@h/db?sslmode=disable".to_owned()
            ))
        );
        let e = split_sslmode("postgres://u:pw@h/db?sslmode=allow")
            .err()
            .map(|e| e.to_string());
        assert!(
            e.as_deref()
                .is_some_and(|e| e.contains("verify-full") && !e.contains("pw")),
            "{e:?}"
        );
    }
}
