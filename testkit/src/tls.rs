//! Certificates made at test time: a CA and a server certificate for
//! `127.0.0.1` and `localhost`, written as PEM files into a temp dir.

use std::path::{Path, PathBuf};

use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair, SanType};

/// A CA with one server certificate, as files.
pub struct TestCerts {
    dir: tempfile::TempDir,
    /// The server certificate's names; `None`: `localhost` and `127.0.0.1`.
    names: Option<Vec<String>>,
    /// The CA certificate (what clients trust).
    pub ca: PathBuf,
    /// The server's certificate chain.
    pub cert: PathBuf,
    /// The server's private key.
    pub key: PathBuf,
}

impl TestCerts {
    /// A fresh CA and a server certificate it signed.
    pub fn new() -> anyhow::Result<Self> {
        Self::make(None)
    }

    /// A fresh CA and a server certificate it signed for the DNS names
    /// `names` alone (not `127.0.0.1`): a client that connects to the
    /// loopback address finds the name wrong and the chain right.
    pub fn for_names(names: &[&str]) -> anyhow::Result<Self> {
        Self::make(Some(names.iter().map(|n| (*n).to_owned()).collect()))
    }

    fn make(names: Option<Vec<String>>) -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        let mut certs = Self {
            names,
            ca: dir.path().join("ca.pem"),
            cert: dir.path().join("server.pem"),
            key: dir.path().join("server.key"),
            dir,
        };
        certs.renew()?;
        Ok(certs)
    }

    /// Replaces every file with a new CA and a new server certificate (as a
    /// rotation to a new CA would).
    pub fn renew(&mut self) -> anyhow::Result<()> {
        let ca_key = KeyPair::generate()?;
        let mut ca = CertificateParams::new(Vec::<String>::new())?;
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.distinguished_name
            .push(rcgen::DnType::CommonName, "Courier test CA");
        let ca_cert = ca.self_signed(&ca_key)?;

        let key = KeyPair::generate()?;
        let leaf = match &self.names {
            Some(names) => CertificateParams::new(names.clone())?,
            None => {
                let mut leaf = CertificateParams::new(vec!["localhost".to_owned()])?;
                leaf.subject_alt_names
                    .push(SanType::IpAddress(std::net::Ipv4Addr::LOCALHOST.into()));
                leaf
            }
        };
        let cert = leaf.signed_by(&key, &ca_cert, &ca_key)?;

        write_atomically(&self.ca, ca_cert.pem().as_bytes())?;
        write_atomically(&self.key, key.serialize_pem().as_bytes())?;
        write_atomically(&self.cert, cert.pem().as_bytes())?;
        Ok(())
    }

    /// The directory the files are in.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

/// Writes through a temp file and a rename, so a reader never sees half.
fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path)
}
