//! TLS end to end: certificates from a test CA, a self-signed certificate trusted on first use,
//! refusals (wrong CA, changed certificate, garbage handshakes, plaintext off loopback), and a
//! certificate reloaded on SIGHUP without dropping connections.

use std::io;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use chat_core::client::{Connector, Received, TcpConnector, TcpTransport, Transport};
use chat_core::protocol::{ClientMsg, ServerMsg};
use chat_core::tls::{KnownHosts, Trust, Untrusted, untrusted};
use clap::Parser;
use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
use rustls::RootCertStore;
use rustls::pki_types::CertificateDer;
use tokio::io::AsyncWriteExt;

use crate::harness::{Client, TestServer, free_port};

/// A test CA, and a server certificate it signed for localhost and 127.0.0.1, as PEM files.
struct Pki {
    ca_pem: String,
    ca_der: CertificateDer<'static>,
    issuer: Issuer<'static, KeyPair>,
}

impl Pki {
    fn new() -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let key = KeyPair::generate().unwrap();
        let ca = params.self_signed(&key).unwrap();
        Self {
            ca_pem: ca.pem(),
            ca_der: ca.der().clone(),
            issuer: Issuer::new(params, key),
        }
    }

    /// Writes a server certificate and key signed by this CA into `dir`.
    fn server_cert(&self, dir: &Path) -> (String, String) {
        let params =
            CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()]).unwrap();
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        let (cert_path, key_path) = (dir.join("server.pem"), dir.join("server.key"));
        std::fs::write(&cert_path, cert.pem()).unwrap();
        std::fs::write(&key_path, key.serialize_pem()).unwrap();
        (
            cert_path.to_str().unwrap().to_string(),
            key_path.to_str().unwrap().to_string(),
        )
    }

    /// Trusts this CA, read from a PEM file as `--ca FILE` does.
    fn trust(&self, known: &Path) -> Trust {
        let file = known.with_extension(format!("ca{}.pem", self.ca_der.len()));
        std::fs::write(&file, &self.ca_pem).unwrap();
        Trust {
            known: KnownHosts::at(known),
            ..Trust::ca_file(&file).unwrap()
        }
    }
}

/// Trusts nothing but what `known` remembers (and `accept`).
fn no_roots(known: &Path, accept: Option<String>) -> Trust {
    Trust {
        roots: RootCertStore::empty().into(),
        known: KnownHosts::at(known),
        accept,
    }
}

async fn connect(addr: &str, trust: Trust) -> io::Result<TcpTransport> {
    TcpConnector::tls(addr, trust)?.connect().await
}

/// Says hello and waits for the welcome.
async fn hello(t: &mut TcpTransport, name: &str) {
    t.send(&ClientMsg::Hello {
        version: 1,
        name: name.into(),
        password: None,
    })
    .await
    .unwrap();
    loop {
        match tokio::time::timeout(Duration::from_secs(10), t.recv()).await {
            Ok(Ok(Received::Msg(ServerMsg::Welcome { name: got, .. }))) => {
                assert_eq!(got, name);
                return;
            }
            Ok(Ok(Received::Msg(_))) => {}
            other => panic!("no welcome: {other:?}"),
        }
    }
}

/// Waits for a room message and returns its text.
async fn next_text(t: &mut TcpTransport) -> String {
    loop {
        match tokio::time::timeout(Duration::from_secs(10), t.recv()).await {
            Ok(Ok(Received::Msg(ServerMsg::Message(m)))) => return m.text,
            Ok(Ok(Received::Msg(_))) => {}
            other => panic!("no message: {other:?}"),
        }
    }
}

#[tokio::test]
async fn tls_end_to_end_beside_a_plaintext_listener() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new();
    let (cert, key) = pki.server_cert(dir.path());
    let plain_port = free_port();
    let plain_addr = format!("127.0.0.1:{plain_port}");
    let server = TestServer::start(&[
        "--tls-cert",
        &cert,
        "--tls-key",
        &key,
        "--plain-listen",
        &plain_addr,
    ])
    .await;
    let addr = format!("localhost:{}", server.addr.port());
    let known = dir.path().join("known_hosts");
    let mut alice = connect(&addr, pki.trust(&known)).await.unwrap();
    hello(&mut alice, "alice").await;
    // Someone on the plaintext listener is in the same room.
    let mut bob = Client::connect(plain_addr.parse().unwrap()).await;
    bob.hello("bob").await;
    // Bigger than one TLS record, to cross record boundaries both ways.
    let long = "x".repeat(3000);
    bob.say("#lobby", &long).await;
    assert_eq!(next_text(&mut alice).await, long);
    alice
        .send(&ClientMsg::Say {
            room: "#lobby".into(),
            text: "over TLS".into(),
            cid: None,
            notice: false,
            tags: Default::default(),
        })
        .await
        .unwrap();
    loop {
        let m = bob.expect("message").await;
        if m["text"] == "over TLS" {
            break;
        }
    }
    // A certificate from a CA is not a first-use question: nothing is remembered.
    assert!(!known.exists());
    server.stop().await;
}

#[tokio::test]
async fn a_certificate_from_another_ca_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = Pki::new().server_cert(dir.path());
    let server = TestServer::start(&["--tls-cert", &cert, "--tls-key", &key]).await;
    let addr = format!("localhost:{}", server.addr.port());
    let other = Pki::new();
    let err = connect(&addr, other.trust(&dir.path().join("known_hosts")))
        .await
        .unwrap_err();
    assert!(
        matches!(untrusted(&err), Some(Untrusted::Unknown { .. })),
        "{err}"
    );
    server.stop().await;
}

#[tokio::test]
async fn a_self_signed_server_is_trusted_on_first_use_and_a_changed_one_refused() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let data = data.to_str().unwrap();
    let server = TestServer::start(&["--tls-self-signed", "--data-dir", data]).await;
    let addr = format!("127.0.0.1:{}", server.addr.port());
    let known = dir.path().join("known_hosts");
    // First use: the client learns the fingerprint and must ask.
    let err = connect(&addr, no_roots(&known, None)).await.unwrap_err();
    let Some(Untrusted::Unknown { fingerprint }) = untrusted(&err) else {
        panic!("{err}");
    };
    // It is the server's own certificate (the one it made in its data directory).
    let pem = std::fs::read(dir.path().join("data/tls/self-signed.pem")).unwrap();
    let der = rustls::pki_types::pem::PemObject::from_pem_slice(&pem).unwrap();
    let der: CertificateDer = der;
    assert_eq!(fingerprint, chat_core::tls::fingerprint(&der));
    // The user says yes: it is remembered, and the next connection needs no question.
    let mut first = connect(&addr, no_roots(&known, Some(fingerprint.clone())))
        .await
        .unwrap();
    hello(&mut first, "first").await;
    assert_eq!(KnownHosts::at(&known).get(&addr), Some(fingerprint.clone()));
    let mut again = connect(&addr, no_roots(&known, None)).await.unwrap();
    hello(&mut again, "again").await;
    // Another certificate under the same host is refused, loudly, even if "accepted".
    let forged = dir.path().join("forged_hosts");
    std::fs::write(&forged, format!("{addr} AA:BB\n")).unwrap();
    let err = connect(&addr, no_roots(&forged, Some(fingerprint.clone())))
        .await
        .unwrap_err();
    assert_eq!(
        untrusted(&err),
        Some(Untrusted::Changed {
            known: "AA:BB".into(),
            offered: fingerprint
        }),
        "{err}"
    );
    assert!(err.to_string().contains("remove its line"), "{err}");
    server.stop().await;
}

#[tokio::test]
async fn garbage_in_the_handshake_closes_that_connection_only() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new();
    let (cert, key) = pki.server_cert(dir.path());
    let server = TestServer::start(&["--tls-cert", &cert, "--tls-key", &key]).await;
    // Plaintext JSON at a TLS port, then random bytes.
    for junk in [
        &b"{\"type\":\"hello\",\"version\":1,\"name\":\"x\"}\n"[..],
        &[0x16, 0x03, 0x01, 0xff, 0xff, 0x00, 0x42, 0x13, 0x37][..],
    ] {
        let mut raw = tokio::net::TcpStream::connect(server.addr).await.unwrap();
        raw.write_all(junk).await.unwrap();
        let mut buf = [0u8; 64];
        let read = tokio::time::timeout(
            Duration::from_secs(15),
            tokio::io::AsyncReadExt::read(&mut raw, &mut buf),
        )
        .await
        .expect("the server closes a bad handshake");
        // A TLS alert at most, never a chat message.
        if let Ok(n) = read {
            assert!(!buf[..n].contains(&b'{'), "{:?}", &buf[..n]);
        }
    }
    let addr = format!("localhost:{}", server.addr.port());
    let mut ok = connect(&addr, pki.trust(&dir.path().join("k")))
        .await
        .unwrap();
    hello(&mut ok, "fine").await;
    server.stop().await;
}

#[tokio::test]
async fn plaintext_off_loopback_needs_the_flag() {
    let parse = |extra: &[&str]| {
        let mut args = vec!["chat-server", "--in-memory", "--listen", "0.0.0.0:0"];
        args.extend_from_slice(extra);
        chat_server::Config::parse_from(args)
    };
    let err = chat_server::bind(&parse(&[])).await.unwrap_err();
    assert!(err.to_string().contains("--allow-plaintext"), "{err}");
    assert!(
        chat_server::bind(&parse(&["--allow-plaintext"]))
            .await
            .is_ok()
    );
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap();
    assert!(
        chat_server::bind(&parse(&["--tls-self-signed", "--data-dir", data]))
            .await
            .is_ok(),
        "TLS may listen anywhere"
    );
}

#[tokio::test]
async fn sighup_reloads_the_certificate_without_dropping_connections() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new();
    let (cert, key) = pki.server_cert(dir.path());
    let port = free_port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_chat-server"))
        .args(["--listen", &format!("127.0.0.1:{port}"), "--in-memory"])
        .args(["--tls-cert", &cert, "--tls-key", &key, "--flood-rate", "0"])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let addr = format!("localhost:{port}");
    let known = dir.path().join("known_hosts");
    let mut old = None;
    for _ in 0..200 {
        if let Ok(t) = connect(&addr, pki.trust(&known)).await {
            old = Some(t);
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let mut old = old.expect("the server comes up");
    hello(&mut old, "early").await;
    // A new certificate from another CA replaces the files; SIGHUP loads it.
    let other = Pki::new();
    other.server_cert(dir.path());
    let status = Command::new("kill")
        .args(["-HUP", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let mut reloaded = false;
    for _ in 0..200 {
        if let Ok(mut t) = connect(&addr, other.trust(&known)).await {
            hello(&mut t, "late").await;
            reloaded = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(reloaded, "new connections get the new certificate");
    // The connection made before the reload is still up.
    old.send(&ClientMsg::Say {
        room: "#lobby".into(),
        text: "still connected".into(),
        cid: None,
        notice: false,
        tags: Default::default(),
    })
    .await
    .unwrap();
    assert_eq!(next_text(&mut old).await, "still connected");
    let _ = child.kill();
    let _ = child.wait();
}

#[tokio::test]
async fn a_tls_client_that_stops_reading_is_dropped_and_slows_nobody() {
    // The same bound as in plaintext: rustls holds at most a bounded amount of ciphertext, and
    // past the queue's bound the reader is dropped.
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new();
    let (cert, key) = pki.server_cert(dir.path());
    let server = TestServer::start(&[
        "--tls-cert",
        &cert,
        "--tls-key",
        &key,
        "--send-queue",
        "64",
        "--max-line",
        "65536",
    ])
    .await;
    let addr = format!("localhost:{}", server.addr.port());
    let known = dir.path().join("known_hosts");
    let mut stuck = connect(&addr, pki.trust(&known)).await.unwrap();
    hello(&mut stuck, "stuck").await;
    let mut healthy = connect(&addr, pki.trust(&known)).await.unwrap();
    hello(&mut healthy, "healthy").await;
    let mut sender = connect(&addr, pki.trust(&known)).await.unwrap();
    hello(&mut sender, "sender").await;
    let text = "z".repeat(4000);
    let total = 3000; // 12 MB: far more than socket buffers, rustls and the queue hold.
    let reader = tokio::spawn(async move {
        let mut n = 0;
        let mut saw_quit = false;
        while n < total {
            match tokio::time::timeout(Duration::from_secs(20), healthy.recv()).await {
                Ok(Ok(Received::Msg(ServerMsg::Message(_)))) => n += 1,
                Ok(Ok(Received::Msg(ServerMsg::Quit { name, reason, .. }))) => {
                    saw_quit |= name == "stuck" && reason == "send queue exceeded";
                }
                Ok(Ok(Received::Msg(_))) => {}
                other => panic!("healthy lost its connection: {other:?}"),
            }
        }
        (n, saw_quit)
    });
    // The sender reads its own echoes in windows, as a live client does.
    for _ in 0..total / 30 {
        for _ in 0..30 {
            sender
                .send(&ClientMsg::Say {
                    room: "#lobby".into(),
                    text: text.clone(),
                    cid: None,
                    notice: false,
                    tags: Default::default(),
                })
                .await
                .unwrap();
        }
        for _ in 0..30 {
            next_text(&mut sender).await;
        }
    }
    let (received, saw_quit) = reader.await.unwrap();
    assert_eq!(received, total);
    assert!(saw_quit, "the stuck reader was dropped for its send queue");
    // The stuck client, reading again, finds its connection ended.
    let ended = tokio::time::timeout(Duration::from_secs(20), async {
        while let Ok(Received::Msg(_) | Received::Bad(_)) = stuck.recv().await {}
    })
    .await;
    assert!(ended.is_ok(), "the stuck client's connection was closed");
    server.stop().await;
}

/// On the TLS port a refusal (too many connections from one address) is said inside TLS after
/// the handshake, never as plaintext before it.
#[tokio::test]
async fn a_refusal_on_the_tls_port_is_written_inside_tls() {
    use tokio::io::AsyncReadExt;
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new();
    let (cert, key) = pki.server_cert(dir.path());
    let server =
        TestServer::start(&["--tls-cert", &cert, "--tls-key", &key, "--max-per-ip", "1"]).await;
    let addr = format!("localhost:{}", server.addr.port());
    let known = dir.path().join("known_hosts");
    let mut first = connect(&addr, pki.trust(&known)).await.unwrap();
    hello(&mut first, "first").await;
    // A raw TCP peer that sends nothing hears nothing in the clear: the server waits for a
    // handshake (and gives up on it), it does not write its refusal first.
    let mut raw = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    let mut byte = [0u8; 1];
    let heard = tokio::time::timeout(Duration::from_millis(500), raw.read(&mut byte)).await;
    assert!(
        heard.is_err(),
        "the server wrote {byte:?} before any handshake"
    );
    drop(raw);
    // A TLS client is told why, over TLS.
    let mut second = connect(&addr, pki.trust(&known)).await.unwrap();
    loop {
        match tokio::time::timeout(Duration::from_secs(10), second.recv()).await {
            Ok(Ok(Received::Msg(ServerMsg::Error { code, .. }))) => {
                assert_eq!(code, chat_core::protocol::ErrorCode::TooManyConnections);
                break;
            }
            Ok(Ok(Received::Msg(_))) => {}
            other => panic!("no refusal: {other:?}"),
        }
    }
    server.stop().await;
}
