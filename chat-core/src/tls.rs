//! TLS on the client side, and certificate fingerprints on both.
//!
//! A client verifies the server's certificate against the system's roots (or a CA file). A
//! server with a self-signed certificate is trusted on first use, as ssh does: the user sees
//! the certificate's SHA-256 fingerprint and accepts it once; it is remembered per host in
//! `known_hosts` in the client's configuration directory, and a different certificate for that
//! host later is refused, loudly, until the user removes the old line.

/// The SHA-256 fingerprint of a DER certificate, as colon-separated upper-case hex pairs (the
/// form `openssl x509 -fingerprint -sha256` prints).
pub fn fingerprint(der: &[u8]) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, der);
    digest
        .as_ref()
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":")
}

#[cfg(feature = "tokio")]
pub use client::*;

#[cfg(feature = "tokio")]
mod client {
    use std::io;
    use std::path::{Path, PathBuf};
    use std::sync::Arc;

    use rustls::client::WebPkiServerVerifier;
    use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
    use rustls::crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature};
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
    use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};

    use super::fingerprint;

    /// What the client knows of hosts' self-signed certificates: `host:port fingerprint` lines.
    #[derive(Debug, Clone)]
    pub struct KnownHosts {
        path: PathBuf,
    }

    impl KnownHosts {
        /// The file at `path` (it need not exist yet).
        pub fn at(path: impl Into<PathBuf>) -> Self {
            Self { path: path.into() }
        }

        /// `known_hosts` in the client's configuration directory: `$CHAT_CONFIG_DIR`, or the
        /// platform's (`~/.config/chat` on Linux).
        pub fn default_location() -> Self {
            Self::at(config_dir().join("known_hosts"))
        }

        /// The file.
        pub fn path(&self) -> &Path {
            &self.path
        }

        /// The fingerprint remembered for `host` (`host:port`).
        pub fn get(&self, host: &str) -> Option<String> {
            let text = std::fs::read_to_string(&self.path).ok()?;
            text.lines()
                .filter_map(|l| l.split_once(' '))
                .find(|(h, _)| *h == host)
                .map(|(_, fp)| fp.trim().to_string())
        }

        /// Remembers `fingerprint` for `host`, replacing nothing: a host already known keeps
        /// its line (a changed certificate must be removed by hand).
        pub fn add(&self, host: &str, fingerprint: &str) -> io::Result<()> {
            if self.get(host).is_some() {
                return Ok(());
            }
            if let Some(dir) = self.path.parent() {
                std::fs::create_dir_all(dir)?;
            }
            use std::io::Write;
            let mut file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&self.path)?;
            writeln!(file, "{host} {fingerprint}")
        }
    }

    /// The client's configuration directory.
    pub fn config_dir() -> PathBuf {
        if let Some(dir) = std::env::var_os("CHAT_CONFIG_DIR") {
            return PathBuf::from(dir);
        }
        dirs::config_dir()
            .unwrap_or_else(|| PathBuf::from("."))
            .join("chat")
    }

    /// How the client decides to trust a server.
    #[derive(Debug, Clone)]
    pub struct Trust {
        /// Certificates signed by these roots are trusted (the system's, or `--ca`).
        pub roots: Arc<RootCertStore>,
        /// Self-signed certificates remembered per host.
        pub known: KnownHosts,
        /// A fingerprint the user accepted for this run (`--trust-fingerprint`, or a yes to
        /// the first-use question); it is also written to `known`.
        pub accept: Option<String>,
    }

    impl Trust {
        /// The system's roots (none if they cannot be read) and the default `known_hosts`.
        pub fn system() -> Self {
            let mut roots = RootCertStore::empty();
            let loaded = rustls_native_certs::load_native_certs();
            for cert in loaded.certs {
                let _ = roots.add(cert);
            }
            Self {
                roots: Arc::new(roots),
                known: KnownHosts::default_location(),
                accept: None,
            }
        }

        /// Only the CA certificates in `file` (PEM), and the default `known_hosts`.
        pub fn ca_file(file: &Path) -> io::Result<Self> {
            let mut roots = RootCertStore::empty();
            for cert in CertificateDer::pem_file_iter(file).map_err(io::Error::other)? {
                roots
                    .add(cert.map_err(io::Error::other)?)
                    .map_err(io::Error::other)?;
            }
            Ok(Self {
                roots: Arc::new(roots),
                known: KnownHosts::default_location(),
                accept: None,
            })
        }
    }

    /// Why a server's certificate was not trusted.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub enum Untrusted {
        /// Self-signed (or from an unknown CA) and never seen: ask the user.
        Unknown {
            /// Its fingerprint, to show.
            fingerprint: String,
        },
        /// Not the certificate remembered for this host: refuse.
        Changed {
            /// The one remembered.
            known: String,
            /// The one offered now.
            offered: String,
        },
    }

    /// Markers in rustls errors, so that [`untrusted`] can tell the two cases apart.
    const UNKNOWN: &str = "unknown certificate ";
    const CHANGED: &str = "CERTIFICATE CHANGED ";

    /// Reads why a connection failed on the certificate, from its error.
    pub fn untrusted(err: &io::Error) -> Option<Untrusted> {
        let text = err.to_string();
        if let Some(rest) = text.split(UNKNOWN).nth(1) {
            let fingerprint = rest.split_whitespace().next()?.to_string();
            return Some(Untrusted::Unknown { fingerprint });
        }
        let rest = text.split(CHANGED).nth(1)?;
        let mut words = rest.split_whitespace();
        let (known, offered) = (words.next()?, words.nth(1)?);
        Some(Untrusted::Changed {
            known: known.to_string(),
            offered: offered.trim_end_matches(':').to_string(),
        })
    }

    #[derive(Debug)]
    struct Verifier {
        host: String,
        webpki: Option<Arc<WebPkiServerVerifier>>,
        trust: Trust,
        provider: Arc<CryptoProvider>,
    }

    impl ServerCertVerifier for Verifier {
        fn verify_server_cert(
            &self,
            end_entity: &CertificateDer<'_>,
            intermediates: &[CertificateDer<'_>],
            server_name: &ServerName<'_>,
            ocsp: &[u8],
            now: UnixTime,
        ) -> Result<ServerCertVerified, rustls::Error> {
            if let Some(webpki) = &self.webpki
                && webpki
                    .verify_server_cert(end_entity, intermediates, server_name, ocsp, now)
                    .is_ok()
            {
                return Ok(ServerCertVerified::assertion());
            }
            let offered = fingerprint(end_entity);
            match self.trust.known.get(&self.host) {
                Some(known) if known == offered => Ok(ServerCertVerified::assertion()),
                Some(known) => Err(rustls::Error::General(format!(
                    "{CHANGED}{known} -> {offered}: the certificate of {} is not the one \
                     trusted before; if the server's owner changed it, remove its line from {}",
                    self.host,
                    self.trust.known.path().display()
                ))),
                None if self.trust.accept.as_deref() == Some(offered.as_str()) => {
                    let _ = self.trust.known.add(&self.host, &offered);
                    Ok(ServerCertVerified::assertion())
                }
                None => Err(rustls::Error::General(format!(
                    "{UNKNOWN}{offered} (self-signed or from an unknown authority)"
                ))),
            }
        }

        fn verify_tls12_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            verify_tls12_signature(
                message,
                cert,
                dss,
                &self.provider.signature_verification_algorithms,
            )
        }

        fn verify_tls13_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            verify_tls13_signature(
                message,
                cert,
                dss,
                &self.provider.signature_verification_algorithms,
            )
        }

        fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
            self.provider
                .signature_verification_algorithms
                .supported_schemes()
        }
    }

    /// The certificate verifier for `host` (`host:port`): roots first, then `known_hosts`.
    pub(crate) fn verifier(host: &str, trust: Trust) -> Arc<dyn ServerCertVerifier> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let webpki = (!trust.roots.is_empty())
            .then(|| {
                WebPkiServerVerifier::builder_with_provider(trust.roots.clone(), provider.clone())
                    .build()
                    .ok()
            })
            .flatten();
        Arc::new(Verifier {
            host: host.to_string(),
            webpki,
            trust,
            provider,
        })
    }

    /// A rustls client configuration for connecting to `host` (`host:port`) with `trust`.
    pub fn client_config(host: &str, trust: Trust) -> io::Result<Arc<ClientConfig>> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let verifier = verifier(host, trust);
        let config = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(io::Error::other)?
            .dangerous()
            .with_custom_certificate_verifier(verifier)
            .with_no_client_auth();
        Ok(Arc::new(config))
    }

    /// Whether a client uses TLS.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
    pub enum TlsMode {
        /// TLS except to loopback hosts.
        #[default]
        Auto,
        /// Always TLS.
        On,
        /// Never TLS.
        Off,
    }

    /// How a front-end was asked to connect: `--tls`/`--no-tls`, `--ca`,
    /// `--trust-fingerprint`.
    #[derive(Debug, Clone, Default)]
    pub struct TlsOptions {
        /// Whether to use TLS.
        pub mode: TlsMode,
        /// Trust only the CA certificates in this PEM file instead of the system's.
        pub ca: Option<PathBuf>,
        /// Trust a self-signed certificate with this fingerprint (and remember it).
        pub trust_fingerprint: Option<String>,
    }

    impl TlsOptions {
        /// True when connecting to `host` uses TLS.
        pub fn enabled_for(&self, host: &str) -> bool {
            match self.mode {
                TlsMode::On => true,
                TlsMode::Off => false,
                TlsMode::Auto => !is_loopback(host),
            }
        }

        /// The trust these options describe, with `accept` as an extra fingerprint the user
        /// agreed to.
        pub fn trust(&self, accept: Option<String>) -> io::Result<Trust> {
            let mut trust = match &self.ca {
                Some(file) => Trust::ca_file(file)?,
                None => Trust::system(),
            };
            trust.accept = accept.or_else(|| self.trust_fingerprint.clone());
            Ok(trust)
        }

        /// A connector for `host:port`, over TLS when these options say so.
        pub fn connector(
            &self,
            host: &str,
            port: u16,
            accept: Option<String>,
        ) -> io::Result<crate::client::TcpConnector> {
            let addr = if host.contains(':') && !host.starts_with('[') {
                format!("[{host}]:{port}")
            } else {
                format!("{host}:{port}")
            };
            if self.enabled_for(host) {
                crate::client::TcpConnector::tls(addr, self.trust(accept)?)
            } else {
                Ok(crate::client::TcpConnector::new(addr))
            }
        }
    }

    /// Connects once to find out whether the server's certificate is trusted. `None` when it is
    /// (or when the connection failed for another reason, which the driver's retries report).
    pub async fn check_certificate(connector: &crate::client::TcpConnector) -> Option<Untrusted> {
        use crate::client::{Connector, Transport};
        connector.tls.as_ref()?;
        match connector.connect().await {
            Ok(mut t) => {
                let _ = t.close().await;
                None
            }
            Err(err) => untrusted(&err),
        }
    }

    /// What to tell the user about an untrusted certificate of `addr`.
    pub fn explain(addr: &str, why: &Untrusted) -> String {
        match why {
            Untrusted::Unknown { fingerprint } => format!(
                "The server at {addr} presents a certificate that no authority you trust has \
                 signed (self-signed, usually).\nSHA-256 fingerprint: {fingerprint}\nCompare \
                 it with the one the server printed at start before you trust it."
            ),
            Untrusted::Changed { known, offered } => format!(
                "WARNING: the certificate of {addr} has CHANGED.\nTrusted before: {known}\n\
                 Offered now:    {offered}\nSomeone may be intercepting the connection. If \
                 the server's owner replaced the certificate, remove the line for {addr} from \
                 {}.",
                KnownHosts::default_location().path().display()
            ),
        }
    }

    /// True for hosts where plaintext is the default: loopback names and addresses.
    pub fn is_loopback(host: &str) -> bool {
        host == "localhost"
            || host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback())
    }
}

#[cfg(all(test, feature = "tokio"))]
mod tests {
    use std::io;
    use std::sync::Arc;

    use rustls::client::danger::ServerCertVerifier;
    use rustls::pki_types::{CertificateDer, ServerName, UnixTime};

    use super::*;

    #[test]
    fn a_fingerprint_is_sha256_in_colon_separated_hex() {
        // SHA-256 of "abc", from FIPS 180-2.
        assert_eq!(
            fingerprint(b"abc"),
            "BA:78:16:BF:8F:01:CF:EA:41:41:40:DE:5D:AE:22:23:B0:03:61:A3:96:17:7A:9C:B4:10:FF:61:F2:00:15:AD"
        );
    }

    fn temp(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("chat-tls-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn known_hosts_keep_the_first_fingerprint_of_a_host() {
        let dir = temp("known");
        let known = KnownHosts::at(dir.join("sub/known_hosts"));
        assert_eq!(known.get("h:1"), None);
        known.add("h:1", "AA:BB").unwrap();
        known.add("h:2", "CC:DD").unwrap();
        known.add("h:1", "EE:FF").unwrap();
        assert_eq!(known.get("h:1").as_deref(), Some("AA:BB"));
        assert_eq!(known.get("h:2").as_deref(), Some("CC:DD"));
        assert_eq!(known.get("h:3"), None);
        let _ = std::fs::remove_dir_all(dir);
    }

    fn cert() -> CertificateDer<'static> {
        rcgen::generate_simple_self_signed(vec!["localhost".to_string()])
            .unwrap()
            .cert
            .der()
            .clone()
    }

    fn verifier(known: &std::path::Path, accept: Option<String>) -> Arc<dyn ServerCertVerifier> {
        let trust = Trust {
            roots: rustls::RootCertStore::empty().into(),
            known: KnownHosts::at(known),
            accept,
        };
        client::verifier("localhost:1", trust)
    }

    /// What a connection attempt reports when the verifier refuses.
    fn verify(v: &dyn ServerCertVerifier, cert: &CertificateDer<'_>) -> Result<(), io::Error> {
        let name = ServerName::try_from("localhost").unwrap();
        v.verify_server_cert(cert, &[], &name, &[], UnixTime::now())
            .map(|_| ())
            .map_err(io::Error::other)
    }

    #[test]
    fn trust_on_first_use_then_refuse_a_changed_certificate() {
        let dir = temp("tofu");
        let known = dir.join("known_hosts");
        let (first, second) = (cert(), cert());
        let offered = fingerprint(&first);
        // Unknown: refused with the fingerprint to show.
        let err = verify(verifier(&known, None).as_ref(), &first).unwrap_err();
        assert_eq!(
            untrusted(&err),
            Some(Untrusted::Unknown {
                fingerprint: offered.clone()
            })
        );
        // Accepted once: trusted and remembered.
        verify(verifier(&known, Some(offered.clone())).as_ref(), &first).unwrap();
        assert_eq!(
            KnownHosts::at(&known).get("localhost:1"),
            Some(offered.clone())
        );
        verify(verifier(&known, None).as_ref(), &first).unwrap();
        // Another certificate for the host: refused, whatever was "accepted".
        let err = verify(
            verifier(&known, Some(fingerprint(&second))).as_ref(),
            &second,
        )
        .unwrap_err();
        assert_eq!(
            untrusted(&err),
            Some(Untrusted::Changed {
                known: offered,
                offered: fingerprint(&second)
            })
        );
        assert!(!verifier(&known, None).supported_verify_schemes().is_empty());
        assert_eq!(untrusted(&io::Error::other("connection refused")), None);
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn tls_is_the_default_except_to_loopback() {
        for host in ["localhost", "127.0.0.1", "::1", "[::1]", "127.1.2.3"] {
            assert!(is_loopback(host), "{host}");
        }
        for host in ["chat.example.org", "10.0.0.1", "::2", "localhost.example"] {
            assert!(!is_loopback(host), "{host}");
        }
        let mode = |mode| TlsOptions {
            mode,
            ..TlsOptions::default()
        };
        assert!(mode(TlsMode::Auto).enabled_for("chat.example.org"));
        assert!(!mode(TlsMode::Auto).enabled_for("127.0.0.1"));
        assert!(mode(TlsMode::On).enabled_for("127.0.0.1"));
        assert!(!mode(TlsMode::Off).enabled_for("chat.example.org"));
        let plain = mode(TlsMode::Off).connector("::1", 53000, None).unwrap();
        assert_eq!(
            (plain.addr.as_str(), plain.tls.is_some()),
            ("[::1]:53000", false)
        );
        let tls = mode(TlsMode::On)
            .connector("localhost", 6697, None)
            .unwrap();
        assert_eq!(
            (tls.addr.as_str(), tls.tls.is_some()),
            ("localhost:6697", true)
        );
    }
}
