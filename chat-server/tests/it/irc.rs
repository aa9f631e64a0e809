//! The IRC listener over real TCP: IRC and native clients in the same rooms, echoes held until
//! stored, PING as a barrier, bad lines answered and survived.

use std::time::Duration;

use serde_json::json;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};

use crate::harness::{Client, TestServer, WAIT, free_port};

/// A bare IRC client: raw lines out, lines in.
struct Irc {
    reader: BufReader<OwnedReadHalf>,
    writer: OwnedWriteHalf,
}

impl Irc {
    async fn connect(port: u16) -> Irc {
        for _ in 0..100 {
            if let Ok(stream) = TcpStream::connect(("127.0.0.1", port)).await {
                let (rd, wr) = stream.into_split();
                return Irc {
                    reader: BufReader::new(rd),
                    writer: wr,
                };
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("no IRC listener on {port}");
    }

    async fn send(&mut self, lines: &str) {
        self.writer.write_all(lines.as_bytes()).await.unwrap();
    }

    /// The next line without its `\r\n`; None at the end of the stream.
    async fn next(&mut self) -> Option<String> {
        let mut line = String::new();
        let n = tokio::time::timeout(WAIT, self.reader.read_line(&mut line))
            .await
            .expect("a line arrives in time")
            .ok()?;
        if n == 0 {
            return None;
        }
        assert!(line.ends_with("\r\n"), "{line:?} ends in CRLF");
        Some(line.trim_end().to_string())
    }

    /// Skips lines until one containing `needle` arrives; returns it and what came before.
    async fn expect(&mut self, needle: &str) -> (String, Vec<String>) {
        let mut before = Vec::new();
        loop {
            match self.next().await {
                Some(line) if line.contains(needle) => return (line, before),
                Some(line) => before.push(line),
                None => panic!("closed while waiting for {needle:?}; had {before:?}"),
            }
        }
    }

    async fn register(&mut self, nick: &str, caps: &str) {
        if !caps.is_empty() {
            self.send(&format!("CAP LS 302\r\nCAP REQ :{caps}\r\n"))
                .await;
        }
        self.send(&format!(
            "NICK {nick}\r\nUSER {nick} 0 * :{nick}\r\nCAP END\r\n"
        ))
        .await;
        self.expect(" 001 ").await;
        self.expect(" 422 ").await;
    }

    /// Joins a room and waits for the end of its names.
    async fn join(&mut self, room: &str) {
        self.send(&format!("JOIN {room}\r\n")).await;
        self.expect(" 366 ").await;
    }
}

#[tokio::test]
async fn irc_and_native_clients_share_a_room() {
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let server = TestServer::start(&["--irc-listen", &listen]).await;
    let mut irc = Irc::connect(port).await;
    irc.register("ann", "server-time message-tags echo-message")
        .await;
    let mut sam = server.client("sam").await;

    sam.send(json!({"type":"join","room":"#den"})).await;
    sam.expect("history").await;
    irc.send("JOIN #den\r\n").await;
    let (join, _) = irc.expect("JOIN #den").await;
    assert!(join.ends_with(":ann!ann@chat JOIN #den"), "{join}");
    let (names, _) = irc.expect(" 353 ").await;
    // sam made #den: its operator while there.
    assert!(names.ends_with("353 ann = #den :ann @sam"), "{names}");
    assert_eq!(sam.expect("join").await["name"], "ann");

    sam.say("#den", "hello from the native side").await;
    assert_eq!(sam.expect("message").await["from"], "sam");
    let (line, _) = irc.expect("PRIVMSG #den").await;
    assert!(line.starts_with("@msgid="), "{line}");
    assert!(line.contains(";time=20"), "{line}");
    assert!(line.ends_with(":sam!sam@chat PRIVMSG #den :hello from the native side"));

    irc.send("PRIVMSG #den :hello from IRC\r\nPRIVMSG #den :\u{1}ACTION waves\u{1}\r\n")
        .await;
    let m = sam.expect("message").await;
    assert_eq!(
        (m["from"].as_str(), m["text"].as_str()),
        (Some("ann"), Some("hello from IRC"))
    );
    let m = sam.expect("message").await;
    assert_eq!(m["text"], "waves");
    assert_eq!(m["action"], true);
    let (echo, _) = irc.expect("PRIVMSG #den :\u{1}ACTION waves\u{1}").await;
    assert!(echo.contains(":ann!ann@chat "), "{echo}");

    sam.send(json!({"type":"msg","to":"ann","text":"psst"}))
        .await;
    assert_eq!(sam.expect("direct").await["from"], "sam");
    irc.expect(":sam!sam@chat PRIVMSG ann :psst").await;
    irc.send("PRIVMSG sam :psst back\r\n").await;
    let d = sam.expect("direct").await;
    assert_eq!(
        (d["from"].as_str(), d["text"].as_str()),
        (Some("ann"), Some("psst back"))
    );

    irc.send("TOPIC #den :set from IRC\r\n").await;
    assert_eq!(sam.expect("topic").await["topic"], "set from IRC");
    irc.send("PART #den :off\r\nQUIT :bye\r\n").await;
    let part = sam.expect("part").await;
    assert_eq!(
        (part["name"].as_str(), part["reason"].as_str()),
        (Some("ann"), Some("off"))
    );
    let (error, _) = irc.expect("ERROR").await;
    assert_eq!(error, "ERROR :Closing link: bye");
    assert_eq!(irc.next().await, None, "closed after ERROR");
    server.stop().await;
}

#[tokio::test]
async fn echo_waits_for_the_store_and_pong_waits_for_the_echo() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let data = dir.path().to_str().unwrap();
    let server = TestServer::start(&["--irc-listen", &listen, "--data-dir", data]).await;
    let mut irc = Irc::connect(port).await;
    irc.register("ann", "echo-message").await;
    irc.join("#lobby").await;
    let mut sam = server.client("sam").await;
    irc.send("PRIVMSG #lobby :one\r\nPRIVMSG #lobby :two\r\nPING :barrier\r\n")
        .await;
    let (pong, before) = irc.expect("PONG").await;
    assert_eq!(pong, ":chat PONG chat :barrier");
    let echoes: Vec<&String> = before.iter().filter(|l| l.contains("PRIVMSG")).collect();
    assert_eq!(echoes.len(), 2, "both echoes before the PONG: {before:?}");
    assert!(echoes[1].ends_with("PRIVMSG #lobby :two"));
    // And they were stored: the native client sees them too, in order.
    assert_eq!(sam.expect("message").await["text"], "one");
    assert_eq!(sam.expect("message").await["text"], "two");

    // Without echo-message the sender gets nothing back, but the PONG still comes after.
    let mut bo = Irc::connect(port).await;
    bo.register("bo", "").await;
    bo.join("#lobby").await;
    bo.send("PRIVMSG #lobby :three\r\nPING :b2\r\n").await;
    let (_, before) = bo.expect("PONG").await;
    assert!(before.iter().all(|l| !l.contains(":three")), "{before:?}");
    assert_eq!(sam.expect("message").await["text"], "three");
    server.stop().await;
}

#[tokio::test]
async fn bad_lines_get_numerics_and_the_connection_goes_on() {
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let server = TestServer::start(&["--irc-listen", &listen]).await;
    let mut irc = Irc::connect(port).await;
    irc.send("PRIVMSG #lobby :early\r\n").await;
    irc.expect(" 451 * :You have not registered").await;
    irc.register("ann", "").await;
    irc.join("#lobby").await;
    let long = format!("PRIVMSG #lobby :{}\r\n", "x".repeat(600));
    irc.send(&long).await;
    irc.expect(" 417 ann :Input line was too long").await;
    irc.writer
        .write_all(b"PRIVMSG #lobby :\xff\xfe\r\n")
        .await
        .unwrap();
    irc.expect("FAIL * INVALID_UTF8").await;
    irc.send("WHAT\r\nJOIN\r\nJOIN nohash\r\nPART #never\r\n")
        .await;
    irc.expect(" 421 ann WHAT :Unknown command").await;
    irc.expect(" 461 ann JOIN :Not enough parameters").await;
    irc.expect(" 479 ann nohash ").await;
    irc.expect(" 442 ann #never ").await;
    // Still here, and heard.
    let mut sam: Client = server.client("sam").await;
    irc.send("PRIVMSG #lobby :still fine\r\n").await;
    assert_eq!(sam.expect("message").await["text"], "still fine");
    server.stop().await;
}

#[test]
fn irc_over_tls_without_a_certificate_is_refused_at_start() {
    let port = free_port();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_chat-server"))
        .args([
            "--listen",
            &format!("127.0.0.1:{}", free_port()),
            "--in-memory",
        ])
        .args(["--irc-tls-listen", &format!("127.0.0.1:{port}")])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + WAIT;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("the server started without a certificate for --irc-tls-listen");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut log = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut log).unwrap();
    assert!(!status.success());
    assert!(
        log.contains("--irc-tls-listen needs a certificate"),
        "{log}"
    );
}

#[tokio::test]
async fn chathistory_reaches_the_store_past_memory() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let data = dir.path().to_str().unwrap();
    let flags = [
        "--irc-listen",
        &listen,
        "--data-dir",
        data,
        "--history",
        "3",
    ];
    let server = TestServer::start(&flags).await;
    let mut sam = server.client("sam").await;
    for i in 1..=6 {
        sam.say("#lobby", &format!("message {i}")).await;
        sam.expect("message").await;
    }
    let mut irc = Irc::connect(port).await;
    irc.register("ann", "batch server-time message-tags draft/chathistory")
        .await;
    irc.send("JOIN #lobby\r\n").await;
    // Joining replays the latest messages (those in memory) as a batch first.
    let (_, replay) = irc.expect("BATCH -").await;
    assert_eq!(replay.iter().filter(|l| l.contains("PRIVMSG")).count(), 3);
    irc.send("CHATHISTORY LATEST #lobby * 50\r\n").await;
    let (start, _) = irc.expect("BATCH +").await;
    assert!(start.ends_with("chathistory #lobby"), "{start}");
    let (_, lines) = irc.expect("BATCH -").await;
    let texts: Vec<&str> = lines
        .iter()
        .filter_map(|l| l.split_once("PRIVMSG #lobby :").map(|(_, t)| t))
        .collect();
    let all: Vec<String> = (1..=6).map(|i| format!("message {i}")).collect();
    assert_eq!(
        texts, all,
        "the three in memory and the three only in SQLite"
    );
    assert!(
        lines
            .iter()
            .all(|l| l.contains("msgid=") && l.contains("time="))
    );
    server.stop().await;
}

/// A blocking WebSocket client.
type Ws = tungstenite::WebSocket<tungstenite::stream::MaybeTlsStream<std::net::TcpStream>>;

/// An IRC client over WebSocket (tungstenite, blocking, on its own thread).
fn ws_client(port: u16, protocol: &str) -> Ws {
    use tungstenite::client::IntoClientRequest;
    let mut request = format!("ws://127.0.0.1:{port}/")
        .into_client_request()
        .unwrap();
    request
        .headers_mut()
        .insert("Sec-WebSocket-Protocol", protocol.parse().unwrap());
    for _ in 0..100 {
        if let Ok((ws, response)) = tungstenite::connect(request.clone()) {
            let chosen = response.headers().get("Sec-WebSocket-Protocol");
            assert_eq!(
                chosen.and_then(|v| v.to_str().ok()),
                protocol.split(", ").next(),
                "the first subprotocol offered that the server speaks"
            );
            return ws;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("no WebSocket listener on {port}");
}

/// The next IRC line over WebSocket (a message each, text or binary, without CR LF).
fn ws_next(ws: &mut Ws) -> String {
    loop {
        match ws.read().expect("a message") {
            tungstenite::Message::Text(t) => return t.to_string(),
            tungstenite::Message::Binary(b) => return String::from_utf8(b.to_vec()).unwrap(),
            _ => {}
        }
    }
}

fn ws_expect(ws: &mut Ws, needle: &str) -> String {
    loop {
        let line = ws_next(ws);
        assert!(
            !line.ends_with('\n'),
            "{line:?}: a message is a line without CR LF"
        );
        if line.contains(needle) {
            return line;
        }
    }
}

#[tokio::test]
async fn irc_over_websocket_shares_rooms_with_native_clients() {
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let server = TestServer::start(&["--irc-ws-listen", &listen]).await;
    let mut sam = server.client("sam").await;
    sam.send(json!({"type":"join","room":"#den"})).await;
    sam.expect("history").await;
    // Binary frames for a client that asks for them first, text for one that asks for text.
    for (nick, protocol) in [
        ("bin", "binary.ircv3.net, text.ircv3.net"),
        ("txt", "text.ircv3.net"),
    ] {
        let nick = nick.to_string();
        let protocol = protocol.to_string();
        let said = tokio::task::spawn_blocking(move || {
            let mut ws = ws_client(port, &protocol);
            if let tungstenite::stream::MaybeTlsStream::Plain(tcp) = ws.get_ref() {
                tcp.set_read_timeout(Some(WAIT)).unwrap();
            }
            for line in [
                format!("NICK {nick}"),
                format!("USER {nick} 0 * :{nick}"),
                "JOIN #den".into(),
            ] {
                let msg = if protocol.starts_with("binary") {
                    tungstenite::Message::binary(line.into_bytes())
                } else {
                    tungstenite::Message::text(line)
                };
                ws.send(msg).unwrap();
            }
            ws_expect(&mut ws, " 366 ");
            // A burst of messages larger than one read takes: every one is answered, in order.
            for i in 0..3000 {
                ws.write(tungstenite::Message::text(format!("PING n{i}")))
                    .unwrap();
            }
            ws.flush().unwrap();
            let first = ws_expect(&mut ws, "PONG");
            assert!(first.ends_with(" :n0"), "{first}");
            assert!(ws_expect(&mut ws, "PONG").ends_with(" :n1"));
            ws_expect(&mut ws, " :n2999");
            // A message with its CR LF is one line all the same.
            ws.send(tungstenite::Message::text(
                "PRIVMSG #den :hello over WebSocket\r\n",
            ))
            .unwrap();
            let from_sam = ws_expect(&mut ws, "PRIVMSG #den");
            ws.send(tungstenite::Message::text("QUIT :bye")).unwrap();
            from_sam
        });
        let m = sam.expect("message").await;
        assert_eq!(m["text"], "hello over WebSocket");
        sam.say("#den", "hello back").await;
        let line = said.await.unwrap();
        assert!(
            line.ends_with(":sam!sam@chat PRIVMSG #den :hello back"),
            "{line}"
        );
        sam.expect("quit").await;
    }
    server.stop().await;
}
