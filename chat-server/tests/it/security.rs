//! What strangers on the network try: dual-stack addresses, slow HTTP clients, file modes,
//! and the TLS port's refusals.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use serde_json::json;

use crate::harness::{Client, TestServer, WAIT};

fn v4(last: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 0, 0, last))
}

/// On a `[::]` listener, IPv4 clients arrive as `::ffff:a.b.c.d`: each is still its own
/// address for the connection list, bans and throttles.
#[tokio::test]
async fn ipv4_clients_of_a_dual_stack_listener_keep_their_addresses() {
    let server = TestServer::start(&[
        "--listen",
        "[::]:0",
        "--allow-plaintext",
        "--operator",
        "root",
    ])
    .await;
    let port = server.addr.port();
    let to = SocketAddr::new(v4(1), port);
    let mut root = Client::connect_from(v4(1), to).await;
    root.hello("root").await;
    root.send(json!({"type":"register","password":"root's password"}))
        .await;
    root.expect("logged_in").await;
    let mut g20 = Client::connect_from(v4(20), to).await;
    g20.hello("g20").await;
    let mut g21 = Client::connect_from(v4(21), to).await;
    g21.hello("g21").await;
    // An IPv6 client of the same listener stays IPv6.
    let mut six = Client::connect_from(
        "::1".parse().unwrap(),
        SocketAddr::new("::1".parse().unwrap(), port),
    )
    .await;
    six.hello("six").await;

    root.send(json!({"type":"connections"})).await;
    let list = root.expect("connections").await;
    let addr_of = |name: &str| {
        list["conns"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == name)
            .map(|c| c["addr"].as_str().unwrap().to_string())
            .unwrap()
    };
    assert_eq!(addr_of("root"), "127.0.0.1");
    assert_eq!(addr_of("g20"), "127.0.0.20");
    assert_eq!(addr_of("g21"), "127.0.0.21");
    // IPv6 addresses count per /64 (one host's usual allocation).
    assert_eq!(addr_of("six"), "::");

    // A ban of one guest (by its address) takes out that guest alone.
    root.send(json!({"type":"ban","room":"#lobby","target":"g20"}))
        .await;
    let ban = root.expect("ban").await;
    assert_eq!(ban["ban"]["target"], "guest:g20");
    let kick = g21.expect("kick").await;
    assert_eq!(kick["name"], "g20");
    g21.sync().await;
    g21.say("#lobby", "still here").await;
    assert_eq!(g21.expect("message").await["text"], "still here");
    // An address ban matches the IPv4 address as written.
    root.send(json!({"type":"server_ban","target":"addr:127.0.0.21"}))
        .await;
    assert_eq!(root.expect("ban").await["ban"]["target"], "addr:127.0.0.21");
    assert!(g21.expect_closed().await.is_some());
    six.sync().await;

    // Ten failed logins from 127.0.0.30 lock that address out, not 127.0.0.31.
    let mut guesser = Client::connect_from(v4(30), to).await;
    for i in 0..10 {
        guesser
            .send(json!({"type":"hello","version":1,"name":format!("u{i}"),"password":"guess"}))
            .await;
        assert_eq!(guesser.expect_error().await, "bad_credentials");
    }
    guesser
        .send(json!({"type":"hello","version":1,"name":"u10","password":"guess"}))
        .await;
    assert_eq!(guesser.expect_error().await, "login_throttled");
    let mut other = Client::connect_from(v4(31), to).await;
    other
        .send(json!({"type":"hello","version":1,"name":"u0","password":"guess"}))
        .await;
    assert_eq!(other.expect_error().await, "bad_credentials");
    server.stop().await;
}

/// A GET over a fresh connection: the status line and the body.
async fn get(addr: SocketAddr, path: &str) -> (String, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: probe\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    tokio::time::timeout(WAIT, stream.read_to_string(&mut response))
        .await
        .expect("an answer in time")
        .unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap();
    (head.lines().next().unwrap().to_string(), body.to_string())
}

/// 200 clients that send half a request and wait do not hold up a liveness probe: each
/// connection is served on its own, and the slow ones are dropped at the header timeout.
#[tokio::test]
async fn the_metrics_endpoint_answers_probes_while_slow_clients_hang_on() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let metrics = std::sync::Arc::new(chat_server::metrics::Metrics::new());
    metrics.set_listening();
    let server = tokio::spawn(chat_server::metrics::serve(listener, metrics));
    let mut slow = Vec::new();
    for _ in 0..200 {
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.write_all(b"GET /metrics HTTP/1.1\r\nHost: sl")
            .await
            .unwrap();
        slow.push(s);
    }
    for _ in 0..5 {
        assert_eq!(
            get(addr, "/healthz").await,
            ("HTTP/1.1 200 OK".into(), "ok\n".into())
        );
        assert_eq!(get(addr, "/readyz").await.1, "ready\n");
    }
    let (status, body) = get(addr, "/metrics").await;
    assert_eq!(status, "HTTP/1.1 200 OK");
    assert!(body.ends_with("# EOF\n"), "{body}");
    assert_eq!(get(addr, "/nothing").await.0, "HTTP/1.1 404 Not Found");
    // The probes were answered while the slow ones were still waiting (none was closed
    // yet: answering did not wait for them to time out)...
    let mut byte = [0u8; 64];
    for s in &slow {
        assert!(
            matches!(s.try_read(&mut byte), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock),
            "a slow client was closed before the probes were answered"
        );
    }
    // ...and the header timeout (5 s) closes them.
    for s in &mut slow {
        let read = tokio::time::timeout(WAIT, s.read(&mut byte))
            .await
            .expect("closed in time");
        // Closed, or answered 408 and closed.
        match read {
            Ok(0) | Err(_) => {}
            Ok(_) => assert!(
                std::str::from_utf8(&byte)
                    .unwrap_or("")
                    .starts_with("HTTP/1.1 408")
            ),
        }
    }
    server.abort();
}

/// Started by hand under umask 022, the server keeps its data directory 0700 and everything in
/// it 0600; a data directory and database another start left readable are tightened, with a
/// warning. Backups are 0600 too.
#[test]
fn data_files_are_private_whatever_the_umask() {
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    let base = tempfile::tempdir().unwrap();
    let data = base.path().join("data");
    let start = |data: &std::path::Path| {
        std::process::Command::new("sh")
            .arg("-c")
            .arg(format!(
                "umask 022; exec {} --listen 127.0.0.1:0 --metrics-listen off --tls-self-signed --data-dir {}",
                env!("CARGO_BIN_EXE_chat-server"),
                data.display()
            ))
            .env("RUST_LOG", "warn")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    let wait_for = |path: &std::path::Path| {
        for _ in 0..400 {
            if path.exists() {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(25));
        }
        panic!("{} never appeared", path.display());
    };
    let stop = |child: std::process::Child| {
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let out = child.wait_with_output().unwrap();
        String::from_utf8_lossy(&out.stderr).to_string()
    };
    let child = start(&data);
    wait_for(&data.join("control.sock"));
    let files = [
        "chat.sqlite3",
        "chat.sqlite3-wal",
        "chat.sqlite3-shm",
        "chat.lock",
        "control.sock",
        "tls/self-signed.key",
        "tls/self-signed.pem",
    ];
    assert_eq!((mode(&data), mode(&data.join("tls"))), (0o700, 0o700));
    for f in files {
        assert_eq!(mode(&data.join(f)), 0o600, "{f}");
    }
    let backups = base.path().join("backups/");
    let backup = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!(
            "umask 022; exec {} backup {} --data-dir {}",
            env!("CARGO_BIN_EXE_chat-server"),
            backups.display(),
            data.display()
        ))
        .output()
        .unwrap();
    assert!(
        backup.status.success(),
        "{}",
        String::from_utf8_lossy(&backup.stderr)
    );
    let copy = std::fs::read_dir(&backups)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    assert_eq!(mode(&copy), 0o600, "{}", copy.display());
    stop(child);

    // Loosened by someone since: tightened at the next start, and said so.
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o755)).unwrap();
    let db = data.join("chat.sqlite3");
    std::fs::set_permissions(&db, std::fs::Permissions::from_mode(0o644)).unwrap();
    let child = start(&data);
    wait_for(&data.join("control.sock"));
    assert_eq!((mode(&data), mode(&db)), (0o700, 0o600));
    let log = stop(child);
    assert!(
        log.contains("it is private now") && log.contains("0644"),
        "{log}"
    );
}
