use super::*;

fn hello(hub: &mut Hub, conn: u64, name: &str) {
    let conn = ConnId(conn);
    hub.handle(0, Input::Connect { conn });
    hub.handle(
        0,
        Input::Frame {
            conn,
            frame: Ok(ClientMsg::Hello {
                version: 1,
                name: name.into(),
            }),
        },
    );
    while hub.poll_output().is_some() {}
}

fn message(id: MsgId, room: &str) -> ChatMessage {
    ChatMessage {
        id,
        ts: id,
        room: room.into(),
        from: "old".into(),
        text: format!("m{id}"),
        action: false,
    }
}

#[test]
fn getters_say_what_the_hub_holds() {
    let mut hub = Hub::new(HubConfig {
        server_name: "here".into(),
        ..HubConfig::default()
    });
    assert_eq!(hub.config().server_name, "here");
    hello(&mut hub, 1, "ann");
    hello(&mut hub, 2, "bob");
    hub.handle(0, Input::Connect { conn: ConnId(3) });
    assert_eq!(hub.connection_count(), 3);
    assert_eq!(hub.user_count(), 2);
    let lobby = hub.room("#LOBBY").expect("the default room");
    assert_eq!((lobby.name(), lobby.member_count()), ("#lobby", 2));
    assert_eq!(hub.next_id(), 1);
    assert_eq!(ConnId(7).to_string(), "c7");
}

#[test]
fn restore_fills_rooms_and_refuses_what_the_rules_refuse() {
    let mut hub = Hub::new(HubConfig {
        history: 2,
        ..HubConfig::default()
    });
    let rooms = vec![
        RestoredRoom {
            name: "#lobby".into(),
            history: vec![message(1, "#lobby")],
            ..RestoredRoom::default()
        },
        RestoredRoom {
            name: "#kept".into(),
            topic: "still".into(),
            topic_set: Some(("old".into(), 5)),
            history: vec![
                message(2, "#kept"),
                message(3, "#kept"),
                message(4, "#kept"),
            ],
            more: false,
        },
        RestoredRoom {
            name: "#KEPT".into(),
            ..RestoredRoom::default()
        },
        RestoredRoom {
            name: "#k\u{435}pt".into(),
            ..RestoredRoom::default()
        },
        RestoredRoom {
            name: "#bad\u{2066}".into(),
            ..RestoredRoom::default()
        },
    ];
    let refused = hub.restore(0, rooms, 10);
    assert_eq!(refused, ["#KEPT", "#k\u{435}pt", "#bad\u{2066}"]);
    assert_eq!(hub.next_id(), 10);
    assert_eq!(hub.room("#lobby").unwrap().history.len(), 1);
    let kept = hub.room("#kept").unwrap();
    assert_eq!(kept.topic, "still");
    // Only the newest `history` messages are kept, and catch-up knows older ones existed.
    let ids: Vec<MsgId> = kept.history.iter().map(|m| m.id).collect();
    assert_eq!(ids, [3, 4]);
    assert_eq!(kept.evicted_through, 2);
    // A restored room nobody is in expires like any other.
    assert!(kept.empty_since.is_some());
    hub.check_invariants().unwrap();
}

#[test]
fn restored_cids_answer_repeats() {
    let mut hub = Hub::new(HubConfig::default());
    hub.restore_cids(vec![("c-1".into(), 41)]);
    hello(&mut hub, 1, "ann");
    hub.handle(
        0,
        Input::Frame {
            conn: ConnId(1),
            frame: Ok(ClientMsg::Say {
                room: "#lobby".into(),
                text: "again".into(),
                cid: Some("c-1".into()),
            }),
        },
    );
    let out: Vec<Output> = std::iter::from_fn(|| hub.poll_output()).collect();
    assert_eq!(out.len(), 1);
    let Output::Transmit { bytes, .. } = &out[0] else {
        panic!("{out:?}");
    };
    assert_eq!(
        &bytes[..],
        b"{\"type\":\"ack\",\"cid\":\"c-1\",\"id\":41}\n"
    );
}

#[test]
fn the_held_bytes_limit_counts_text() {
    let mut hub = Hub::new(HubConfig {
        durable: true,
        max_held_bytes: 64 + 100 + 6 + 3 + 64 + 10,
        ..HubConfig::default()
    });
    hello(&mut hub, 1, "ann");
    let say = |hub: &mut Hub, text: String| {
        hub.handle(
            0,
            Input::Frame {
                conn: ConnId(1),
                frame: Ok(ClientMsg::Say {
                    room: "#lobby".into(),
                    text,
                    cid: None,
                }),
            },
        );
        std::iter::from_fn(|| hub.poll_output()).any(|o| matches!(o, Output::Store(_)))
    };
    assert!(say(&mut hub, "x".repeat(100)), "the first fits");
    assert!(!say(&mut hub, "y".repeat(200)), "over the bytes: refused");
    assert!(say(&mut hub, "z".repeat(10)), "a small one still fits");
    assert_eq!(hub.held, 2);
    assert_eq!(hub.held_bytes, 64 + 100 + 6 + 3 + 64 + 10 + 6 + 3);
    hub.handle(0, Input::Committed { through: 2 });
    assert_eq!((hub.held, hub.held_bytes), (0, 0));
}

#[test]
fn check_invariants_finds_broken_state() {
    let healthy = || {
        let mut hub = Hub::new(HubConfig::default());
        hello(&mut hub, 1, "ann");
        hello(&mut hub, 2, "bob");
        hub.check_invariants().unwrap();
        hub
    };
    let mut hub = healthy();
    hub.conns.get_mut(&ConnId(1)).unwrap().rooms.clear();
    assert!(
        hub.check_invariants().is_err(),
        "a member that does not know it"
    );
    let mut hub = healthy();
    hub.rooms
        .get_mut("#lobby")
        .unwrap()
        .members
        .insert(ConnId(9));
    assert!(
        hub.check_invariants().is_err(),
        "a member that is not a connection"
    );
    let mut hub = healthy();
    hub.timers.clear();
    assert!(hub.check_invariants().is_err(), "no liveness timers");
    let mut hub = healthy();
    hub.names.insert("carol".into(), ConnId(1));
    assert!(
        hub.check_invariants().is_err(),
        "a name pointing at someone else"
    );
    let mut hub = healthy();
    hub.held = 3;
    assert!(hub.check_invariants().is_err(), "held count out of step");
    let mut hub = healthy();
    hub.cid_order.push_back("x".into());
    assert!(hub.check_invariants().is_err(), "cid memory out of step");
    let mut hub = healthy();
    hub.rooms.get_mut("#lobby").unwrap().empty_since = Some(1);
    assert!(hub.check_invariants().is_err(), "an expiry out of step");
}
