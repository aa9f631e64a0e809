//! Accounts over real TCP: argon2id hashing off the hub task, names owned by their accounts,
//! several devices, throttled guessing, and accounts that survive a restart.

use std::time::Instant;

use serde_json::json;

use crate::harness::{Client, TestServer, spawn_binary};

/// Cheap hashing for the tests that do not measure it.
const CHEAP: &[&str] = &["--password-memory-kib", "8", "--password-iterations", "1"];

fn flags<'a>(extra: &[&'a str]) -> Vec<&'a str> {
    let mut v = CHEAP.to_vec();
    v.extend_from_slice(extra);
    v
}

/// Connects and logs in to `account` at hello; returns the client after its history.
async fn login(server: &TestServer, account: &str, password: &str) -> Client {
    let mut c = Client::connect(server.addr).await;
    c.send(json!({"type":"hello","version":1,"name":account,"password":password}))
        .await;
    let welcome = c.expect("welcome").await;
    assert_eq!(welcome["account"], account);
    c.expect("history").await;
    c
}

#[tokio::test]
async fn a_registered_name_is_its_owners_across_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap();
    let server = TestServer::start(&flags(&["--data-dir", data])).await;
    let mut alice = server.client("alice").await;
    alice
        .send(json!({"type":"register","password":"correct horse"}))
        .await;
    assert_eq!(alice.expect("logged_in").await["account"], "alice");
    alice.send(json!({"type":"join","room":"#garden"})).await;
    alice.expect("history").await;
    alice.sync().await;
    server.stop().await;

    let server = TestServer::start(&flags(&["--data-dir", data])).await;
    // A squatter cannot take the name while alice is away, nor a look-alike.
    let mut mallory = Client::connect(server.addr).await;
    mallory
        .send(json!({"type":"hello","version":1,"name":"Alice"}))
        .await;
    assert_eq!(mallory.expect_error().await, "name_reserved");
    mallory
        .send(json!({"type":"hello","version":1,"name":"\u{0430}lice"}))
        .await;
    assert_eq!(mallory.expect_error().await, "name_reserved");
    // A wrong password and an unknown account get the same answer.
    mallory
        .send(json!({"type":"hello","version":1,"name":"alice","password":"guess"}))
        .await;
    assert_eq!(mallory.expect_error().await, "bad_credentials");
    mallory
        .send(json!({"type":"hello","version":1,"name":"nobody","password":"guess"}))
        .await;
    assert_eq!(mallory.expect_error().await, "bad_credentials");
    // alice logs in and is put back in her rooms.
    let mut alice = Client::connect(server.addr).await;
    alice
        .send(json!({"type":"hello","version":1,"name":"alice","password":"correct horse"}))
        .await;
    assert_eq!(alice.expect("welcome").await["account"], "alice");
    loop {
        let join = alice.expect("join").await;
        if join["room"] == "#garden" {
            break;
        }
    }
    server.stop().await;
}

#[tokio::test]
async fn two_devices_share_the_name_and_see_what_the_account_does() {
    let server = TestServer::start(&flags(&[])).await;
    let mut bob = server.client("bob").await;
    let mut phone = server.client("alice").await;
    phone
        .send(json!({"type":"register","password":"correct horse"}))
        .await;
    phone.expect("logged_in").await;
    let mut laptop = login(&server, "alice", "correct horse").await;
    // One entry for alice in the member list, though two devices are connected.
    bob.send(json!({"type":"who","room":"#lobby"})).await;
    assert_eq!(
        bob.expect("members").await["names"],
        json!(["alice", "bob"])
    );
    // A direct message to alice reaches both devices; the laptop's reply shows on the phone.
    bob.send(json!({"type":"msg","to":"alice","text":"hi alice"}))
        .await;
    assert_eq!(phone.expect("direct").await["text"], "hi alice");
    assert_eq!(laptop.expect("direct").await["text"], "hi alice");
    // (bob's own copy)
    assert_eq!(bob.expect("direct").await["text"], "hi alice");
    laptop
        .send(json!({"type":"msg","to":"bob","text":"hi bob"}))
        .await;
    assert_eq!(phone.expect("direct").await["text"], "hi bob");
    assert_eq!(bob.expect("direct").await["text"], "hi bob");
    // The laptop goes: bob sees no quit, since the phone is still there.
    drop(laptop);
    phone.say("#lobby", "still here").await;
    let next = loop {
        let v = bob.next().await.unwrap();
        if v["type"] == "message" || v["type"] == "quit" {
            break v;
        }
    };
    assert_eq!(next["type"], "message", "{next}");
    server.stop().await;
}

#[tokio::test]
async fn guessing_is_throttled_even_with_the_right_password_after() {
    let server = TestServer::start(&flags(&[])).await;
    let mut owner = server.client("carol").await;
    owner
        .send(json!({"type":"register","password":"carol's secret"}))
        .await;
    owner.expect("logged_in").await;
    let mut x = Client::connect(server.addr).await;
    for n in 0..3 {
        x.send(json!({"type":"hello","version":1,"name":"carol","password":format!("guess {n}")}))
            .await;
        assert_eq!(x.expect_error().await, "bad_credentials");
    }
    // Locked now, even with the right password.
    x.send(json!({"type":"hello","version":1,"name":"carol","password":"carol's secret"}))
        .await;
    let refusal = x.expect("error").await;
    assert_eq!(refusal["code"], "login_throttled", "{refusal}");
    assert!(
        refusal["message"].as_str().unwrap().contains("60 s"),
        "{refusal}"
    );
    server.stop().await;
}

#[tokio::test]
async fn hashing_runs_off_the_hub_so_others_keep_chatting() {
    // Real cost: 19 MiB and 2 passes per hash. While logins are being checked, a message
    // between two other clients still goes through at once.
    let server = TestServer::start(&[]).await;
    let mut owner = server.client("dave").await;
    let started = Instant::now();
    owner
        .send(json!({"type":"register","password":"dave's password"}))
        .await;
    owner.expect("logged_in").await;
    let hash_time = started.elapsed();
    let mut ann = server.client("ann").await;
    let mut ben = server.client("ben").await;
    let mut guessers = Vec::new();
    for n in 0..4 {
        let mut g = Client::connect(server.addr).await;
        g.send(json!({"type":"hello","version":1,"name":"dave","password":format!("nope {n}")}))
            .await;
        guessers.push(g);
    }
    ann.say("#lobby", "are you there?").await;
    assert_eq!(ben.expect("message").await["text"], "are you there?");
    for g in &mut guessers {
        let code = g.expect_error().await;
        assert!(
            code == "bad_credentials" || code == "login_throttled",
            "{code}"
        );
    }
    eprintln!("one registration with the default cost took {hash_time:?}");
    server.stop().await;
}

#[tokio::test]
async fn accounts_only_servers_refuse_guests() {
    let server = TestServer::start(&flags(&["--require-account"])).await;
    let mut guest = Client::connect(server.addr).await;
    guest
        .send(json!({"type":"hello","version":1,"name":"guest"}))
        .await;
    assert_eq!(guest.expect_error().await, "account_required");
    server.stop().await;
}

#[tokio::test]
async fn a_failed_login_is_logged_with_the_account_and_never_the_password() {
    let (mut child, mut owner) = spawn_binary(CHEAP).await;
    owner.hello("erin").await;
    owner
        .send(json!({"type":"register","password":"erin's real password"}))
        .await;
    owner.expect("logged_in").await;
    let mut guesser = Client::connect(owner.writer.peer_addr().unwrap()).await;
    guesser
        .send(json!({"type":"hello","version":1,"name":"erin","password":"guessed-SECRET-1"}))
        .await;
    assert_eq!(guesser.expect_error().await, "bad_credentials");
    guesser.sync().await;
    let _ = child.kill();
    let output = child.wait_with_output().unwrap();
    let log = String::from_utf8_lossy(&output.stderr);
    let line = log
        .lines()
        .find(|l| l.contains("failed login"))
        .unwrap_or_else(|| panic!("no failed login in the log:\n{log}"));
    assert!(
        line.contains("erin") && line.contains("127.0.0.1"),
        "{line}"
    );
    assert!(!log.contains("guessed-SECRET-1"), "{log}");
    assert!(!log.contains("erin's real password"), "{log}");
}

#[tokio::test]
async fn a_direct_message_to_an_offline_account_waits_across_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap();
    let server = TestServer::start(&flags(&["--data-dir", data])).await;
    for name in ["bob", "ann"] {
        let mut c = server.client(name).await;
        c.send(json!({"type":"register","password":"correct horse"}))
            .await;
        c.expect("logged_in").await;
        if name == "bob" {
            c.send(json!({"type":"quit"})).await;
            c.expect_closed().await;
        } else {
            c.send(json!({"type":"msg","to":"bob","text":"call me","cid":"c1"}))
                .await;
            assert_eq!(c.expect("offline").await["name"], "bob");
            // Acknowledged once stored: it is the server's to deliver now.
            assert_eq!(c.expect("ack").await["cid"], "c1");
        }
    }
    server.stop().await;
    let server = TestServer::start(&flags(&["--data-dir", data])).await;
    let mut bob = login(&server, "bob", "correct horse").await;
    let direct = bob.expect("direct").await;
    assert_eq!(direct["from"], "ann");
    assert_eq!(direct["text"], "call me");
    bob.send(json!({"type":"quit"})).await;
    bob.expect_closed().await;
    // Delivered once: the next login finds nothing waiting.
    let mut bob = login(&server, "bob", "correct horse").await;
    bob.send(json!({"type":"ping","token":"end"})).await;
    loop {
        let next = bob.next().await.expect("the pong");
        assert_ne!(next["type"], "direct", "delivered twice: {next}");
        if next["type"] == "pong" {
            break;
        }
    }
    server.stop().await;
}
