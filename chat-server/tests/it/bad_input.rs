//! Every kind of bad input over real TCP: a clear error or a defined disconnect, never a panic
//! or a hang, and never another client's loss.

use std::time::Duration;

use serde_json::json;
use tokio::io::AsyncReadExt;

use crate::harness::{Client, TestServer};

#[tokio::test]
async fn bad_lines_get_typed_errors_and_the_connection_goes_on() {
    let server = TestServer::start(&["--max-line", "1024"]).await;
    let mut bob = server.client("bob").await;
    let mut c = Client::connect(server.addr).await;
    // Before hello.
    c.say("#lobby", "too early").await;
    assert_eq!(c.expect_error().await, "not_registered");
    c.hello("alice").await;
    let cases: Vec<(Vec<u8>, &str)> = vec![
        ([vec![b'x'; 5000], b"\n".to_vec()].concat(), "line_too_long"),
        (b"\xff\xfe\xfd\n".to_vec(), "invalid_utf8"),
        (b"{not json\n".to_vec(), "malformed"),
        (b"{\"type\":\"teleport\"}\n".to_vec(), "unknown_type"),
        (b"{\"type\":\"say\",\"room\":1}\n".to_vec(), "malformed"),
        (
            b"{\"type\":\"say\",\"room\":\"#lobby\",\"text\":\"\"}\n".to_vec(),
            "empty_text",
        ),
        (
            b"{\"type\":\"say\",\"room\":\"#nope\",\"text\":\"x\"}\n".to_vec(),
            "not_in_room",
        ),
    ];
    for (bytes, code) in cases {
        c.raw(&bytes).await;
        assert_eq!(c.expect_error().await, code);
    }
    // An oversized line split across many writes is skipped as one.
    for _ in 0..4 {
        c.raw(&[b'y'; 600]).await;
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    c.raw(b"\n").await;
    assert_eq!(c.expect_error().await, "line_too_long");
    c.say("#lobby", "still fine").await;
    assert_eq!(bob.expect("message").await["text"], "still fine");
    server.stop().await;
}

#[tokio::test]
async fn a_connection_that_never_says_hello_is_dropped() {
    let server = TestServer::start(&["--register-timeout", "0.3"]).await;
    let mut c = Client::connect(server.addr).await;
    assert_eq!(
        c.expect_closed().await.as_deref(),
        Some("registration timeout")
    );
    server.stop().await;
}

#[tokio::test]
async fn a_silent_connection_is_pinged_then_dropped() {
    let server = TestServer::start(&["--ping-interval", "0.3", "--ping-timeout", "0.3"]).await;
    let mut alice = server.client("alice").await;
    let mut bob = server.client("bob").await;
    // bob answers pings for a while; alice never does.
    let ping = bob.expect("ping").await;
    bob.send(json!({"type":"pong","token":ping["token"]})).await;
    let quit = bob.expect("quit").await;
    assert_eq!(
        (quit["name"].as_str(), quit["reason"].as_str()),
        (Some("alice"), Some("ping timeout"))
    );
    assert_eq!(alice.expect_closed().await.as_deref(), Some("ping timeout"));
    server.stop().await;
}

#[tokio::test]
async fn a_flood_is_delayed_not_lost_and_a_persistent_flooder_is_dropped() {
    let server = TestServer::start(&["--flood-burst", "3", "--flood-rate", "20"]).await;
    let mut alice = server.client("alice").await;
    let mut bob = server.client("bob").await;
    for i in 0..10 {
        alice.say("#lobby", &format!("f{i}")).await;
    }
    assert_eq!(alice.expect_error().await, "flooding");
    for i in 0..10 {
        assert_eq!(bob.expect("message").await["text"], format!("f{i}"));
    }
    // 50 delayed messages is the limit; far beyond it the flooder goes.
    let mut burst = Vec::new();
    for i in 0..200 {
        burst.extend_from_slice(
            format!(
                "{}\n",
                json!({"type":"say","room":"#lobby","text":format!("g{i}")})
            )
            .as_bytes(),
        );
    }
    alice.raw(&burst).await;
    assert_eq!(alice.expect_closed().await.as_deref(), Some("flooding"));
    let quit = bob.expect("quit").await;
    assert_eq!(quit["reason"], "flooding");
    server.stop().await;
}

#[tokio::test]
async fn a_client_that_stops_reading_is_dropped_and_slows_nobody() {
    let server = TestServer::start(&["--send-queue", "64", "--max-line", "65536"]).await;
    let mut sender = server.client("sender").await;
    let mut healthy = server.client("healthy").await;
    let mut stuck = server.client("stuck").await;
    stuck.sync().await;
    healthy.sync().await;
    let text = "z".repeat(4000);
    let total = 3000; // 12 MB: far more than socket buffers plus the queue hold.
    let reader = tokio::spawn(async move {
        let mut n = 0;
        let mut saw_quit = false;
        while n < total {
            let v = healthy.next().await.expect("healthy stays connected");
            match v["type"].as_str() {
                Some("message") => n += 1,
                Some("quit") => {
                    saw_quit |= v["name"] == "stuck" && v["reason"] == "send queue exceeded"
                }
                _ => {}
            }
        }
        (n, saw_quit)
    });
    // The sender reads its own echoes in windows, as a live client does; `stuck` reads nothing.
    let writer = tokio::spawn(async move {
        for _ in 0..total / 30 {
            for _ in 0..30 {
                sender.say("#lobby", &text).await;
            }
            for _ in 0..30 {
                sender.expect("message").await;
            }
        }
        sender
    });
    let (received, saw_quit) = reader.await.unwrap();
    assert_eq!(received, total);
    assert!(saw_quit, "the stuck reader was dropped for its send queue");
    let _sender = writer.await.unwrap();
    // The stuck client finds its connection closed once it reads again.
    let mut sink = Vec::new();
    let read =
        tokio::time::timeout(Duration::from_secs(10), stuck.reader.read_to_end(&mut sink)).await;
    assert!(read.is_ok(), "the stuck client's connection was closed");
    server.stop().await;
}

#[tokio::test]
// A zero linger makes close() send RST at once; it cannot block.
#[allow(deprecated)]
async fn clean_and_abrupt_disconnects_in_every_state() {
    let server = TestServer::start(&[]).await;
    let mut watcher = server.client("watcher").await;
    // Before hello: FIN and RST.
    drop(Client::connect(server.addr).await);
    let s = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    s.set_linger(Some(Duration::ZERO)).unwrap();
    drop(s);
    // Registered, in two rooms, half-way through a line: FIN.
    let mut fin = server.client("fin").await;
    fin.send(json!({"type":"join","room":"#side"})).await;
    fin.expect("history").await;
    fin.raw(b"{\"type\":\"say\",").await;
    drop(fin);
    let quit = watcher.expect("quit").await;
    assert_eq!(quit["name"], "fin");
    // Registered: RST.
    let rst = server.client("rst").await;
    let stream = rst.reader.into_inner().reunite(rst.writer).unwrap();
    stream.set_linger(Some(Duration::ZERO)).unwrap();
    drop(stream);
    let quit = watcher.expect("quit").await;
    assert_eq!(quit["name"], "rst");
    assert_eq!(
        quit["reason"].as_str().map(|r| r.starts_with("connection")),
        Some(true)
    );
    // The names are free again and the server is healthy.
    server.client("fin").await;
    watcher.send(json!({"type":"who","room":"#side"})).await;
    assert_eq!(watcher.expect_error().await, "no_such_room");
    server.stop().await;
}

#[tokio::test]
async fn a_client_that_asks_for_big_replies_and_never_reads_is_dropped_by_bytes() {
    // A 50-byte join can ask for a room's whole history; repeated by a client that never
    // reads, only the byte bound on its queue stops it from holding the server's memory.
    let server = TestServer::start(&["--send-queue-bytes", "262144", "--history", "1000"]).await;
    let mut alice = server.client("alice").await;
    alice.send(json!({"type":"join","room":"#big"})).await;
    alice.expect("history").await;
    let text = "x".repeat(4000);
    for _ in 0..300 {
        alice.say("#big", &text).await;
    }
    for _ in 0..300 {
        alice.expect("message").await;
    }
    let mut mallory = Client::connect(server.addr).await;
    let mut burst = Vec::new();
    burst.extend_from_slice(b"{\"type\":\"hello\",\"version\":1,\"name\":\"mallory\"}\n");
    // Each reply is one page (at most the 16 KiB line limit); 600 of them are ~10 MB.
    for _ in 0..600 {
        burst.extend_from_slice(b"{\"type\":\"join\",\"room\":\"#big\",\"since\":0}\n");
    }
    mallory.raw(&burst).await;
    // mallory never reads; alice sees it dropped for its queue, within a few replies.
    loop {
        let v = alice.next().await.expect("alice stays connected");
        if v["type"] == "quit" && v["name"] == "mallory" {
            assert_eq!(v["reason"], "send queue exceeded");
            break;
        }
    }
    server.stop().await;
}
