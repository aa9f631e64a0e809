//! TLS for the listener: certificates from PEM files (or made once, self-signed, for demos and
//! tests), reloaded on SIGHUP without dropping a connection.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use anyhow::{Context, bail};
use rustls::ServerConfig;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

/// The certificate in use, swapped whole on reload; handshakes in flight keep the one they got.
#[derive(Debug)]
pub struct Certificates {
    cert: PathBuf,
    key: PathBuf,
    current: RwLock<Arc<CertifiedKey>>,
}

impl ResolvesServerCert for Certificates {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(
            self.current
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .clone(),
        )
    }
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

impl Certificates {
    /// Loads a certificate chain and its private key (PEM).
    pub fn load(cert: &Path, key: &Path) -> anyhow::Result<Arc<Self>> {
        let current = RwLock::new(load_pair(cert, key)?);
        Ok(Arc::new(Self {
            cert: cert.to_path_buf(),
            key: key.to_path_buf(),
            current,
        }))
    }

    /// Reads the files again. On any error the certificate in use stays, and the error says why.
    pub fn reload(&self) -> anyhow::Result<()> {
        let pair = load_pair(&self.cert, &self.key)?;
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = pair;
        Ok(())
    }

    /// SHA-256 fingerprint of the certificate in use, as clients show it.
    pub fn fingerprint(&self) -> String {
        let current = self.current.read().unwrap_or_else(|e| e.into_inner());
        current
            .end_entity_cert()
            .map(|c| chat_core::tls::fingerprint(c))
            .unwrap_or_default()
    }

    /// A rustls configuration serving these certificates (TLS 1.2 and 1.3, no client
    /// certificates).
    pub fn server_config(self: &Arc<Self>) -> anyhow::Result<Arc<ServerConfig>> {
        let config = ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .context("cannot set up TLS")?
            .with_no_client_auth()
            .with_cert_resolver(self.clone());
        Ok(Arc::new(config))
    }
}

fn load_pair(cert: &Path, key: &Path) -> anyhow::Result<Arc<CertifiedKey>> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .with_context(|| format!("cannot read the TLS certificate {}", cert.display()))?
        .collect::<Result<_, _>>()
        .with_context(|| format!("bad PEM in the TLS certificate {}", cert.display()))?;
    if chain.is_empty() {
        bail!("no certificate in {}", cert.display());
    }
    let key_der = PrivateKeyDer::from_pem_file(key)
        .with_context(|| format!("cannot read a private key from {}", key.display()))?;
    let certified = CertifiedKey::from_der(chain, key_der, &provider()).with_context(|| {
        format!(
            "the key {} does not fit the certificate {}",
            key.display(),
            cert.display()
        )
    })?;
    Ok(Arc::new(certified))
}

/// Makes a self-signed certificate for `hosts` in `dir` (`self-signed.pem`,
/// `self-signed.key`), or keeps the one made before, so that clients that trusted it on first
/// use go on trusting it. Returns the two paths.
pub fn self_signed(dir: &Path, hosts: &[String]) -> anyhow::Result<(PathBuf, PathBuf)> {
    let cert = dir.join("self-signed.pem");
    let key = dir.join("self-signed.key");
    if cert.exists() && key.exists() {
        return Ok((cert, key));
    }
    crate::private::dir(dir)?;
    let made = rcgen::generate_simple_self_signed(hosts.to_vec())
        .context("cannot make a self-signed certificate")?;
    std::fs::write(&cert, made.cert.pem())
        .with_context(|| format!("cannot write {}", cert.display()))?;
    write_private(&key, made.signing_key.serialize_pem().as_bytes())?;
    Ok((cert, key))
}

/// Writes a file only its owner may read.
fn write_private(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options
        .open(path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    file.write_all(bytes)
        .with_context(|| format!("cannot write {}", path.display()))
}
