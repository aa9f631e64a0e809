//! Chat behaviour over real sockets: ordering, presence, renames, direct messages, history,
//! catch-up, limits and churn.

use serde_json::json;
use std::time::Duration;

use crate::harness::{Client, TestServer};

#[tokio::test]
async fn many_clients_exchange_messages_in_order() {
    let server = TestServer::start(&[]).await;
    let mut alice = server.client("alice").await;
    let mut others = Vec::new();
    for i in 0..5 {
        let mut c = server.client(&format!("user{i}")).await;
        c.sync().await;
        others.push(c);
    }
    for i in 0..200 {
        alice.say("#lobby", &format!("message {i}")).await;
    }
    for c in others.iter_mut() {
        let mut last_id = 0;
        for i in 0..200 {
            let m = c.expect("message").await;
            assert_eq!(m["text"], format!("message {i}"));
            assert_eq!(m["from"], "alice");
            let id = m["id"].as_u64().unwrap();
            assert!(id > last_id, "ids increase");
            last_id = id;
        }
    }
    // The sender gets its own messages back as acknowledgements.
    for i in 0..200 {
        assert_eq!(
            alice.expect("message").await["text"],
            format!("message {i}")
        );
    }
    server.stop().await;
}

#[tokio::test]
async fn presence_renames_and_direct_messages() {
    let server = TestServer::start(&["--motd", "hello there"]).await;
    let mut alice = Client::connect(server.addr).await;
    alice
        .send(json!({"type":"hello","version":1,"name":"alice"}))
        .await;
    assert_eq!(alice.expect("welcome").await["motd"], "hello there");
    let mut bob = server.client("bob").await;
    let mut join = alice.expect("join").await;
    while join["name"] == "alice" {
        join = alice.expect("join").await;
    }
    assert_eq!(
        (join["name"].as_str(), join["room"].as_str()),
        (Some("bob"), Some("#lobby"))
    );

    // A second client cannot take a name in use, in any case, and may retry.
    let mut dup = Client::connect(server.addr).await;
    dup.send(json!({"type":"hello","version":1,"name":"ALICE"}))
        .await;
    assert_eq!(dup.expect_error().await, "name_taken");
    dup.hello("carol").await;

    bob.send(json!({"type":"nick","name":"robert"})).await;
    let nick = alice.expect("nick").await;
    assert_eq!(
        (nick["old"].as_str(), nick["new"].as_str()),
        (Some("bob"), Some("robert"))
    );

    alice
        .send(json!({"type":"msg","to":"Robert","text":"psst"}))
        .await;
    let dm = bob.expect("direct").await;
    assert_eq!(
        (dm["from"].as_str(), dm["text"].as_str()),
        (Some("alice"), Some("psst"))
    );
    assert_eq!(alice.expect("direct").await["id"], dm["id"]);
    dup.sync().await;

    bob.send(json!({"type":"quit","reason":"lunch"})).await;
    assert_eq!(bob.expect_closed().await.as_deref(), Some("lunch"));
    let quit = alice.expect("quit").await;
    assert_eq!(
        (quit["name"].as_str(), quit["reason"].as_str()),
        (Some("robert"), Some("lunch"))
    );
    server.stop().await;
}

#[tokio::test]
async fn rooms_topics_history_and_paging() {
    let server = TestServer::start(&[]).await;
    let mut alice = server.client("alice").await;
    alice.send(json!({"type":"join","room":"#rust"})).await;
    alice.expect("history").await;
    alice
        .send(json!({"type":"topic","room":"#rust","topic":"crabs"}))
        .await;
    alice.expect("topic").await;
    for i in 0..60 {
        alice.say("#rust", &format!("m{i}")).await;
    }
    alice.sync().await;
    let mut bob = server.client("bob").await;
    bob.send(json!({"type":"join","room":"#rust"})).await;
    assert_eq!(bob.expect("topic").await["topic"], "crabs");
    let history = bob.expect("history").await;
    let messages = history["messages"].as_array().unwrap();
    assert_eq!(messages.len(), 50, "recent history on join");
    assert_eq!(messages[0]["text"], "m10");
    assert_eq!(history["more"], true);
    let oldest = messages[0]["id"].as_u64().unwrap();
    bob.send(json!({"type":"history","room":"#rust","before":oldest,"limit":100}))
        .await;
    let page = bob.expect("history").await;
    let older = page["messages"].as_array().unwrap();
    assert_eq!(older.len(), 10);
    assert_eq!(older[9]["text"], "m9");
    assert_eq!(page["more"], false);
    bob.send(json!({"type":"rooms"})).await;
    let list = bob.expect("room_list").await;
    let rust = list["rooms"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "#rust")
        .unwrap();
    assert_eq!(rust["members"], 2);
    server.stop().await;
}

#[tokio::test]
async fn reconnect_catches_up_with_no_gap_and_no_duplicate() {
    let server = TestServer::start(&[]).await;
    let mut alice = server.client("alice").await;
    let mut bob = server.client("bob").await;
    alice.say("#lobby", "before").await;
    let seen = bob.expect("message").await["id"].as_u64().unwrap();
    drop(bob);
    alice.expect("quit").await;
    for i in 0..5 {
        alice.say("#lobby", &format!("missed {i}")).await;
    }
    alice.sync().await;
    let mut bob = server.client("bob").await;
    bob.send(json!({"type":"join","room":"#lobby","since":seen}))
        .await;
    let catch_up = bob.expect("history").await;
    let texts: Vec<&str> = catch_up["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["text"].as_str().unwrap())
        .collect();
    assert_eq!(
        texts,
        ["missed 0", "missed 1", "missed 2", "missed 3", "missed 4"]
    );
    assert_eq!(catch_up["more"], false);
    server.stop().await;
}

#[tokio::test]
async fn connection_limits_refuse_with_a_clear_error() {
    let server = TestServer::start(&["--max-connections", "3", "--max-per-ip", "2"]).await;
    let _a = server.client("a").await;
    let _b = server.client("b").await;
    let mut refused = Client::connect(server.addr).await;
    assert_eq!(refused.expect_error().await, "too_many_connections");
    assert_eq!(
        refused.expect_closed().await.as_deref(),
        Some("too_many_connections")
    );
    server.stop().await;

    let server = TestServer::start(&["--max-connections", "2"]).await;
    let _a = server.client("a").await;
    let _b = server.client("b").await;
    let mut refused = Client::connect(server.addr).await;
    assert_eq!(refused.expect_error().await, "server_full");
    assert_eq!(
        refused.expect_closed().await.as_deref(),
        Some("server_full")
    );
    server.stop().await;
}

#[tokio::test]
async fn a_thousand_connect_disconnect_cycles_leak_nothing() {
    // With a per-IP limit of 4, any leaked connection slot would soon refuse new clients.
    let server = TestServer::start(&["--max-per-ip", "4"]).await;
    let mut observer = server.client("observer").await;
    for i in 0..1000 {
        let mut c = Client::connect(server.addr).await;
        if i % 2 == 0 {
            c.hello(&format!("u{i}")).await;
        }
        // Odd ones hang up before saying hello.
    }
    observer.sync().await;
    // Disconnections are processed asynchronously; wait until the lobby is back to one.
    let mut members = 0;
    for _ in 0..200 {
        observer.send(json!({"type":"who","room":"#lobby"})).await;
        members = observer.expect("members").await["names"]
            .as_array()
            .unwrap()
            .len();
        if members == 1 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(members, 1);
    // All four per-IP slots are free again.
    let mut last = Vec::new();
    for i in 0..3 {
        last.push(server.client(&format!("again{i}")).await);
    }
    server.stop().await;
}

#[tokio::test]
async fn shutdown_tells_every_client() {
    let server = TestServer::start(&[]).await;
    let mut alice = server.client("alice").await;
    let mut anon = Client::connect(server.addr).await;
    alice.sync().await;
    server.stop().await;
    assert_eq!(
        alice.expect_closed().await.as_deref(),
        Some("server shutdown")
    );
    assert_eq!(
        anon.expect_closed().await.as_deref(),
        Some("server shutdown")
    );
}

#[tokio::test]
async fn room_limits_come_from_the_flags() {
    let server = TestServer::start(&[
        "--max-rooms",
        "3",
        "--room-create-burst",
        "1",
        "--room-create-rate",
        "1",
    ])
    .await;
    let mut alice = server.client("alice").await;
    alice.send(json!({"type":"join","room":"#a"})).await;
    alice.expect("history").await;
    alice.send(json!({"type":"join","room":"#b"})).await;
    assert_eq!(alice.expect_error().await, "room_creation_throttled");
    let mut bob = server.client("bob").await;
    bob.send(json!({"type":"join","room":"#b"})).await;
    bob.expect("history").await;
    let mut carol = server.client("carol").await;
    carol.send(json!({"type":"join","room":"#c"})).await;
    assert_eq!(carol.expect_error().await, "room_limit");
    server.stop().await;
}

#[tokio::test]
async fn a_room_that_left_memory_comes_back_with_its_history_and_topic() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap();
    let server = TestServer::start(&["--data-dir", data, "--room-expiry", "0.1"]).await;
    let mut alice = server.client("alice").await;
    alice.send(json!({"type":"join","room":"#gone"})).await;
    alice.expect("history").await;
    alice
        .send(json!({"type":"topic","room":"#gone","topic":"still here"}))
        .await;
    alice.expect("topic").await;
    alice.say("#gone", "remember me").await;
    alice.expect("message").await;
    alice.send(json!({"type":"part","room":"#gone"})).await;
    alice.expect("part").await;
    // Expired: the room list no longer has it.
    tokio::time::sleep(Duration::from_millis(400)).await;
    alice.send(json!({"type":"rooms"})).await;
    let list = alice.expect("room_list").await;
    assert!(
        !list.to_string().contains("#gone"),
        "expired from memory: {list}"
    );
    // Joining loads it back from the store, and what is sent right after the join waits.
    alice.send(json!({"type":"join","room":"#gone"})).await;
    alice.say("#gone", "and again").await;
    assert_eq!(alice.expect("topic").await["topic"], "still here");
    let history = alice.expect("history").await;
    assert_eq!(history["messages"][0]["text"], "remember me");
    assert_eq!(alice.expect("message").await["text"], "and again");
    server.stop().await;
}

#[tokio::test]
async fn an_address_that_reconnects_in_a_loop_is_throttled() {
    let server = TestServer::start(&["--connect-burst", "3", "--connect-rate", "1"]).await;
    let mut first = Vec::new();
    for i in 0..3 {
        first.push(server.client(&format!("loop{i}")).await);
    }
    // The fourth within the same second is refused with a reason, then closed.
    let mut fourth = Client::connect(server.addr).await;
    assert_eq!(fourth.expect_error().await, "connection_throttled");
    assert_eq!(
        fourth.expect_closed().await.as_deref(),
        Some("connection_throttled")
    );
    // A second later the bucket has a token again.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    server.client("later").await;
    server.stop().await;
}
