//! The TLS a benchmark speaks: `--ca FILE` (or an `https` server) makes the
//! SDK clients speak TLS to logic and the comets and the HTTP client trust
//! that CA, as a production client would.

use std::path::{Path, PathBuf};

use anyhow::Context;
use courier_client::ClientConfig;

/// The logic a benchmark pushes through, and how to reach it.
#[derive(Debug, Clone, clap::Args)]
pub struct LogicTarget {
    /// Logic's base URL.
    #[arg(long, default_value = "http://127.0.0.1:3111")]
    pub server: String,
    /// Push API key.
    #[arg(long, env = "COURIER_API_KEY")]
    pub api_key: String,
    /// A PEM file of the CA that signed the cluster's certificates (TLS).
    #[arg(long, env = "COURIER_CA")]
    pub ca: Option<PathBuf>,
}

/// An SDK config for `user` at `server`, over TLS when `ca` is given or the
/// server is `https`.
pub fn client_config(
    server: &str,
    user: &str,
    password: &str,
    ca: Option<&Path>,
) -> anyhow::Result<ClientConfig> {
    let config = ClientConfig::new(server, user, password);
    if ca.is_some() || server.starts_with("https://") {
        return config.with_tls(ca).context("--ca");
    }
    Ok(config)
}

/// An HTTP client builder that trusts `ca` too.
pub fn http(ca: Option<&Path>) -> anyhow::Result<reqwest::ClientBuilder> {
    let mut builder = reqwest::Client::builder();
    if let Some(ca) = ca {
        let pem = std::fs::read(ca).with_context(|| format!("reading {}", ca.display()))?;
        builder = builder.add_root_certificate(reqwest::Certificate::from_pem(&pem)?);
    }
    Ok(builder)
}
