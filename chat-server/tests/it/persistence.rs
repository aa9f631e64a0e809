//! Durable history: a restart keeps rooms, topics and messages, ids keep increasing, and every
//! acknowledged message survives `kill -9` of the real binary.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::json;

use crate::harness::{Client, TestServer, free_port};

#[tokio::test]
async fn restart_keeps_history_topics_and_ids() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap();
    let server = TestServer::start(&["--data-dir", data]).await;
    let mut alice = server.client("alice").await;
    alice.send(json!({"type":"join","room":"#keep"})).await;
    alice
        .send(json!({"type":"topic","room":"#keep","topic":"remember me"}))
        .await;
    alice.say("#keep", "first").await;
    let last = alice.expect("message").await["id"].as_u64().unwrap();
    server.stop().await;

    let server = TestServer::start(&["--data-dir", data]).await;
    let mut bob = server.client("bob").await;
    bob.send(json!({"type":"join","room":"#keep"})).await;
    assert_eq!(bob.expect("topic").await["topic"], "remember me");
    let history = bob.expect("history").await;
    assert_eq!(history["messages"][0]["text"], "first");
    bob.say("#keep", "second").await;
    let id = bob.expect("message").await["id"].as_u64().unwrap();
    assert!(
        id > last,
        "ids keep increasing across restarts ({id} > {last})"
    );
    server.stop().await;
}

/// Sends the server `signal`, then checks that the client was told and the process exited 0.
async fn stops_cleanly_on(child: &mut ServerProcess, signal: &str, client: &mut Client) {
    let status = Command::new("kill")
        .args([&format!("-{signal}"), &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    assert_eq!(
        client.expect_closed().await.as_deref(),
        Some("server shutdown")
    );
    let mut code = None;
    for _ in 0..200 {
        if let Some(status) = child.try_wait().unwrap() {
            code = status.code();
            break;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    assert_eq!(code, Some(0), "exit status after SIG{signal}");
}

/// A server process that is killed when dropped, so a failing test leaves none behind.
struct ServerProcess(Child);

impl std::ops::Deref for ServerProcess {
    type Target = Child;
    fn deref(&self) -> &Child {
        &self.0
    }
}

impl std::ops::DerefMut for ServerProcess {
    fn deref_mut(&mut self) -> &mut Child {
        &mut self.0
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn spawn_server(data: &str, port: u16) -> ServerProcess {
    let child = Command::new(env!("CARGO_BIN_EXE_chat-server"))
        .args([
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--data-dir",
            data,
            "--flood-rate",
            "0",
            // Enough history to page through everything the kill -9 test sends.
            "--history",
            "5000",
        ])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    ServerProcess(child)
}

async fn connect_retrying(port: u16) -> Client {
    for _ in 0..200 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            return Client::connect(([127, 0, 0, 1], port).into()).await;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("server did not come up on port {port}");
}

#[tokio::test]
async fn kill_9_keeps_every_acknowledged_message() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap();
    let port = free_port();
    let mut child = spawn_server(data, port);
    let mut alice = connect_retrying(port).await;
    alice.hello("alice").await;
    // Send a stream of messages and kill the server while they are in flight.
    let mut batch = Vec::new();
    for i in 0..2000 {
        batch.extend_from_slice(
            format!(
                "{}\n",
                json!({"type":"say","room":"#lobby","text":format!("k{i}")})
            )
            .as_bytes(),
        );
    }
    alice.raw(&batch).await;
    let mut acked = Vec::new();
    while acked.len() < 500 {
        let m = alice.expect("message").await;
        acked.push(m["text"].as_str().unwrap().to_string());
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    // Whatever else was acknowledged before the socket died counts too.
    while let Some(v) = alice.next().await {
        if v["type"] == "message" {
            acked.push(v["text"].as_str().unwrap().to_string());
        }
    }

    let mut child = spawn_server(data, port);
    let mut bob = connect_retrying(port).await;
    bob.hello("bob").await;
    let stored = all_texts(&mut bob).await;
    // More may have been stored than was acknowledged before the kill, never less: the server
    // keeps all 2000 in its history window (--history 5000), so every acknowledged message is
    // checked.
    assert!(acked.len() >= 500);
    for text in &acked {
        assert!(stored.contains(text), "acknowledged {text} was lost");
    }
    child.kill().unwrap();
    child.wait().unwrap();
}

#[tokio::test]
async fn sigterm_exits_zero_after_telling_clients() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut child = spawn_server(dir.path().to_str().unwrap(), port);
    let mut alice = connect_retrying(port).await;
    alice.hello("alice").await;
    stops_cleanly_on(&mut child, "TERM", &mut alice).await;
}

/// Every message in #lobby's history, oldest first, paging back from the newest.
async fn all_texts(client: &mut Client) -> Vec<String> {
    let mut stored = Vec::new();
    let mut before: Option<u64> = None;
    loop {
        client
            .send(json!({"type":"history","room":"#lobby","before":before,"limit":200}))
            .await;
        let page = client.expect("history").await;
        let messages = page["messages"].as_array().unwrap();
        for m in messages.iter().rev() {
            stored.push(m["text"].as_str().unwrap().to_string());
        }
        before = messages.first().and_then(|m| m["id"].as_u64());
        if page["more"] != true || messages.is_empty() {
            break;
        }
    }
    stored.reverse();
    stored
}

#[tokio::test]
async fn after_kill_9_a_client_that_resends_everything_gets_each_message_stored_once() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap();
    let port = free_port();
    let mut child = spawn_server(data, port);
    let mut alice = connect_retrying(port).await;
    alice.hello("alice").await;
    let says: Vec<u8> = (0..2000)
        .flat_map(|i| {
            let say =
                json!({"type":"say","room":"#lobby","text":format!("m{i}"),"cid":format!("c-{i}")});
            format!("{say}\n").into_bytes()
        })
        .collect();
    alice.raw(&says).await;
    let mut first_acks = std::collections::HashMap::new();
    while first_acks.len() < 300 {
        let ack = alice.expect("ack").await;
        first_acks.insert(
            ack["cid"].as_str().unwrap().to_string(),
            ack["id"].as_u64().unwrap(),
        );
    }
    child.kill().unwrap(); // SIGKILL, with messages stored but not yet acknowledged
    child.wait().unwrap();
    while let Some(v) = alice.next().await {
        if v["type"] == "ack" {
            first_acks.insert(
                v["cid"].as_str().unwrap().to_string(),
                v["id"].as_u64().unwrap(),
            );
        }
    }

    // The client does what a Session does after a reconnect: everything unacknowledged goes
    // again with the same cids. Here it resends all 2000, acknowledged or not.
    let mut child = spawn_server(data, port);
    let mut alice = connect_retrying(port).await;
    alice.hello("alice").await;
    alice.raw(&says).await;
    let mut acks = std::collections::HashMap::new();
    while acks.len() < 2000 {
        let ack = alice.expect("ack").await;
        acks.insert(
            ack["cid"].as_str().unwrap().to_string(),
            ack["id"].as_u64().unwrap(),
        );
    }
    for (cid, id) in &first_acks {
        assert_eq!(acks[cid], *id, "a repeat of {cid} gets its original id");
    }
    let stored = all_texts(&mut alice).await;
    let expected: Vec<String> = (0..2000).map(|i| format!("m{i}")).collect();
    assert_eq!(
        stored, expected,
        "each message stored exactly once, in order"
    );
    child.kill().unwrap();
    child.wait().unwrap();
}

/// Sends a `say` with a cid.
async fn say_cid(client: &mut Client, text: &str, cid: &str) {
    client
        .send(json!({"type":"say","room":"#lobby","text":text,"cid":cid}))
        .await;
}

/// Reads lines until `n` acks arrived, returning their cids; panics on an error line.
async fn acks(client: &mut Client, n: usize) -> Vec<String> {
    let mut got = Vec::new();
    while got.len() < n {
        let v = client.next().await.expect("connection open");
        assert_ne!(v["type"], "error", "{v}");
        if v["type"] == "ack" {
            got.push(v["cid"].as_str().unwrap().to_string());
        }
    }
    got
}

#[tokio::test]
async fn failed_commits_are_retried_never_acknowledged_early_and_nothing_acknowledged_is_lost() {
    use chat_server::store::Faults;
    use std::sync::Arc;
    use std::sync::atomic::Ordering;

    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap();
    let faults = Arc::new(Faults::default());
    let server = TestServer::start_with_faults(
        &["--data-dir", data, "--store-down-after", "0.5"],
        faults.clone(),
    )
    .await;
    let mut alice = server.client("alice").await;
    let mut acked = Vec::new();
    for i in 0..5 {
        say_cid(&mut alice, &format!("m{i}"), &format!("a-{i}")).await;
    }
    acked.extend(acks(&mut alice, 5).await);

    // A passing fault: the next two commits fail. The batch is retried, and acknowledged only
    // once it is in the database.
    faults.fail_commits.store(2, Ordering::Relaxed);
    for i in 5..10 {
        say_cid(&mut alice, &format!("m{i}"), &format!("a-{i}")).await;
    }
    acked.extend(acks(&mut alice, 5).await);

    // A lasting fault: nothing is acknowledged; after the patience, the sender hears why, and
    // new messages are refused by name.
    faults.fail_commits.store(usize::MAX, Ordering::Relaxed);
    for i in 10..15 {
        say_cid(&mut alice, &format!("m{i}"), &format!("a-{i}")).await;
    }
    let notice = alice.expect("error").await;
    assert_eq!(notice["code"], "store_unavailable");
    assert!(notice.get("cid").is_none(), "held, not refused: {notice}");
    say_cid(&mut alice, "refused", "a-refused").await;
    let refusal = alice.expect("error").await;
    assert_eq!(refusal["code"], "store_unavailable");
    assert_eq!(refusal["cid"], "a-refused");
    // Reading still works.
    alice.send(json!({"type":"who","room":"#lobby"})).await;
    alice.expect("members").await;

    // The fault goes away: the held messages are stored, delivered and acknowledged, in order.
    faults.fail_commits.store(0, Ordering::Relaxed);
    let late = acks(&mut alice, 5).await;
    assert_eq!(late, (10..15).map(|i| format!("a-{i}")).collect::<Vec<_>>());
    acked.extend(late);
    say_cid(&mut alice, "after", "a-after").await;
    acked.extend(acks(&mut alice, 1).await);
    server.stop().await;

    let db = rusqlite::Connection::open(dir.path().join("chat.sqlite3")).unwrap();
    let stored: Vec<String> = db
        .prepare("SELECT cid FROM messages WHERE cid IS NOT NULL ORDER BY id")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let missing: Vec<&String> = acked.iter().filter(|c| !stored.contains(c)).collect();
    assert_eq!(
        missing,
        Vec::<&String>::new(),
        "acknowledged but not stored"
    );
    assert_eq!(
        stored, acked,
        "stored exactly what was acknowledged, in order"
    );
}

#[tokio::test]
async fn every_flag_is_an_environment_variable_and_sigint_exits_zero() {
    let port = free_port();
    let child = Command::new(env!("CARGO_BIN_EXE_chat-server"))
        .env("CHAT_LISTEN", format!("127.0.0.1:{port}"))
        .env("CHAT_IN_MEMORY", "true")
        .env("CHAT_MOTD", "set from the environment")
        .env("CHAT_SERVER_NAME", "envserver")
        .env("CHAT_FLOOD_RATE", "0")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut child = ServerProcess(child);
    let mut alice = connect_retrying(port).await;
    alice
        .send(json!({"type":"hello","version":1,"name":"alice"}))
        .await;
    let welcome = alice.expect("welcome").await;
    assert_eq!(welcome["motd"], "set from the environment");
    assert_eq!(welcome["server"], "envserver");
    assert_eq!(welcome["limits"]["flood_rate"], 0);
    stops_cleanly_on(&mut child, "INT", &mut alice).await;
}

#[tokio::test]
async fn search_reaches_every_stored_message_through_the_index() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap();
    // Memory keeps two messages per room: the rest are only in SQLite.
    let server = TestServer::start(&["--data-dir", data, "--history", "2"]).await;
    let mut alice = server.client("alice").await;
    alice.send(json!({"type":"join","room":"#ops"})).await;
    for text in [
        "deploy one",
        "chatter",
        "Déploy two",
        "DEPLOYED three",
        "more",
        "even more",
    ] {
        alice.say("#ops", text).await;
        alice.expect("message").await;
    }
    server.stop().await;
    // After a restart too: the index is in the database.
    let server = TestServer::start(&["--data-dir", data, "--history", "2"]).await;
    let mut bob = server.client("bob").await;
    bob.send(json!({"type":"join","room":"#ops"})).await;
    bob.expect("history").await;
    bob.send(json!({"type":"search","room":"#ops","query":"deploy","limit":2}))
        .await;
    let page = bob.expect("search_results").await;
    let texts: Vec<&str> = page["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["text"].as_str().unwrap())
        .collect();
    assert_eq!(texts, vec!["DEPLOYED three", "Déploy two"]);
    assert_eq!(page["more"], true);
    let oldest = page["messages"][1]["id"].as_u64().unwrap();
    bob.send(json!({"type":"search","room":"#ops","query":"deploy","before":oldest}))
        .await;
    let page = bob.expect("search_results").await;
    assert_eq!(page["messages"][0]["text"], "deploy one");
    assert!(page.get("more").is_none());
    server.stop().await;
}
