//! The reconnecting driver over the in-memory transport: it connects, registers, reconnects
//! with backoff when the connection drops, and catches up with `since`.

use std::time::Duration;

use chat_core::client::{self, MemoryConnector, MemoryPeer};
use chat_core::protocol::{ChatMessage, ClientMsg, Limits, ServerMsg};
use chat_core::{ConnState, Session, SessionConfig};

async fn next(peer: &mut MemoryPeer) -> ClientMsg {
    tokio::time::timeout(Duration::from_secs(5), peer.rx.recv())
        .await
        .expect("the client sends in time")
        .expect("the client is connected")
}

fn welcome() -> ServerMsg {
    ServerMsg::Welcome {
        version: 1,
        name: "alice".into(),
        server: "mem".into(),
        motd: None,
        limits: Limits {
            max_line: 1024,
            max_text: 100,
            max_text_lines: 2,
            max_name: 32,
            flood_burst: 0,
            flood_rate: 0,
        },
        account: None,
    }
}

#[tokio::test]
async fn reconnects_and_catches_up_over_the_memory_transport() {
    let (connector, mut incoming) = MemoryConnector::new();
    let config = SessionConfig {
        backoff_min: 50,
        cid_prefix: "d".into(),
        ..SessionConfig::default()
    };
    let (handle, task) = client::spawn(connector, Session::new(config, "alice"), |_| {});
    let mut peer = incoming.recv().await.unwrap();
    assert_eq!(
        next(&mut peer).await,
        ClientMsg::Hello {
            version: 1,
            name: "alice".into(),
            password: None
        }
    );
    for msg in [
        welcome(),
        ServerMsg::Join {
            room: "#lobby".into(),
            name: "alice".into(),
            ts: 1,
        },
        ServerMsg::Message(ChatMessage {
            id: 7,
            ts: 2,
            room: "#lobby".into(),
            from: "bob".into(),
            text: "hi".into(),
            action: false,
            notice: false,
            tags: Default::default(),
            bot: false,
        }),
    ] {
        peer.tx.send(msg).unwrap();
    }
    while !handle.with_session(|s| s.active().is_some()) {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    handle.submit("hello bob");
    assert_eq!(
        next(&mut peer).await,
        ClientMsg::Say {
            room: "#lobby".into(),
            text: "hello bob".into(),
            cid: Some("d-1".into()),
            notice: false,
            tags: Default::default(),
        }
    );
    // The server goes away before acknowledging: the driver reconnects by itself.
    let dropped = std::time::Instant::now();
    drop(peer);
    let mut peer = tokio::time::timeout(Duration::from_secs(5), incoming.recv())
        .await
        .expect("reconnects in time")
        .unwrap();
    // Not at once: after the backoff (50 ms here).
    assert!(
        dropped.elapsed() >= Duration::from_millis(45),
        "reconnected after {:?}",
        dropped.elapsed()
    );
    assert!(matches!(next(&mut peer).await, ClientMsg::Hello { .. }));
    peer.tx.send(welcome()).unwrap();
    assert_eq!(
        next(&mut peer).await,
        ClientMsg::Join {
            room: "#lobby".into(),
            since: Some(7),
            key: None
        }
    );
    // What was not acknowledged goes again, under the same cid, until it is.
    assert_eq!(
        next(&mut peer).await,
        ClientMsg::Say {
            room: "#lobby".into(),
            text: "hello bob".into(),
            cid: Some("d-1".into()),
            notice: false,
            tags: Default::default(),
        }
    );
    assert_eq!(handle.with_session(Session::unacked), 1);
    peer.tx
        .send(ServerMsg::Ack {
            cid: "d-1".into(),
            id: 8,
        })
        .unwrap();
    tokio::time::timeout(Duration::from_secs(5), async {
        while handle.with_session(Session::unacked) > 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("the ack arrives");
    assert!(handle.with_session(|s| s.is_online()));
    handle.submit("/quit");
    assert_eq!(next(&mut peer).await, ClientMsg::Quit { reason: None });
    drop(peer);
    tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .expect("the driver ends after quit")
        .unwrap();
    assert!(handle.with_session(|s| matches!(s.state(), ConnState::Closed { .. })));
}
