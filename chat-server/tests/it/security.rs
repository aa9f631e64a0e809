//! What strangers on the network try: dual-stack addresses, slow HTTP clients, file modes,
//! and the TLS port's refusals.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use serde_json::json;

use crate::harness::{Client, TestServer};

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
    server.stop().await;
}
