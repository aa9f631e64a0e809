//! Unit tests of the hub's parts that transcripts cannot reach: getters, restoring from the
//! store, accounts loaded at run time, throttles, and `check_invariants` finding broken state.

use super::*;

fn hello(hub: &mut Hub, conn: u64, name: &str) {
    let conn = ConnId(conn);
    hub.handle(
        0,
        Input::Connect {
            conn,
            addr: std::net::Ipv4Addr::LOCALHOST.into(),
            wire: Default::default(),
        },
    );
    hub.handle(
        0,
        Input::Frame {
            conn,
            frame: Ok(ClientMsg::Hello {
                version: 1,
                name: name.into(),
                password: None,
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
        notice: false,
        tags: Default::default(),
        bot: false,
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
    hub.handle(
        0,
        Input::Connect {
            conn: ConnId(3),
            addr: std::net::Ipv4Addr::LOCALHOST.into(),
            wire: Default::default(),
        },
    );
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
            settings: RoomSettings::default(),
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
                notice: false,
                tags: Default::default(),
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
                    notice: false,
                    tags: Default::default(),
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
    hub.names.insert("carol".into(), vec![ConnId(1)]);
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

/// Everything sent to `conn` since the last call, as text.
fn sent_to(hub: &mut Hub, conn: u64) -> String {
    let mut out = String::new();
    while let Some(output) = hub.poll_output() {
        if let Output::Transmit { to, bytes } = output
            && to.contains(&ConnId(conn))
        {
            out.push_str(std::str::from_utf8(&bytes).unwrap());
        }
    }
    out
}

#[test]
fn the_owner_logging_in_displaces_a_guest_using_the_name() {
    let mut hub = Hub::new(HubConfig::default());
    hello(&mut hub, 1, "zed");
    hello(&mut hub, 2, "amy");
    // The account arrives while a guest holds its name (an import at run time).
    let hash = crate::password::hash("zed's password", &crate::password::PasswordCost::TEST);
    let refused = hub.restore_accounts(vec![
        StoredAccount {
            name: "zed".into(),
            hash,
            rooms: vec!["#lobby".into()],
            ..StoredAccount::default()
        },
        StoredAccount {
            name: "ZED".into(),
            hash: "$argon2id$v=19$m=8,t=1,p=1$AAAAAAAAAAA$AAAAAAAAAAA".into(),
            rooms: vec![],
            ..StoredAccount::default()
        },
        StoredAccount {
            name: "no spaces allowed".into(),
            ..StoredAccount::default()
        },
    ]);
    assert_eq!(refused, ["ZED", "no spaces allowed"]);
    assert_eq!(hub.account_count(), 1);
    hub.handle(
        0,
        Input::Frame {
            conn: ConnId(2),
            frame: Ok(ClientMsg::Login {
                account: "zed".into(),
                password: Secret::new("zed's password"),
            }),
        },
    );
    let Some(Output::Password { conn, work, .. }) = hub.poll_output() else {
        panic!("no password work asked for");
    };
    let (verified, hash) = work.perform(&crate::password::PasswordCost::TEST);
    hub.handle(
        0,
        Input::PasswordDone {
            conn,
            verified,
            hash,
        },
    );
    let guest = sent_to(&mut hub, 1);
    assert!(
        guest.contains(r#""code":"name_reserved""#) && guest.contains("you are now Guest1"),
        "{guest}"
    );
    assert!(
        guest.contains(r#"{"type":"nick","old":"zed","new":"Guest1""#),
        "{guest}"
    );
    assert!(
        guest.contains(r#"{"type":"nick","old":"amy","new":"zed""#),
        "{guest}"
    );
    assert_eq!(hub.check_invariants(), Ok(()));
    // The guest cannot take the name back.
    hub.handle(
        0,
        Input::Frame {
            conn: ConnId(1),
            frame: Ok(ClientMsg::Nick { name: "zed".into() }),
        },
    );
    assert!(sent_to(&mut hub, 1).contains(r#""code":"name_reserved""#));
}

#[test]
fn throttles_lock_for_longer_each_time_and_forget_when_idle() {
    let mut t = Throttle::default();
    for at in [0, 1, 2] {
        assert_eq!(t.wait(at), None);
        t.fail(at, 3);
    }
    assert_eq!(t.wait(2), Some(60_000));
    assert!(!t.idle(30_000));
    for at in [62_002, 62_003, 62_004] {
        t.fail(at, 3);
    }
    assert_eq!(t.wait(62_004), Some(120_000));
    // Fewer than three failures within any minute never lock.
    let mut slow = Throttle::default();
    for n in 0..10 {
        slow.fail(n * 30_001, 3);
        assert_eq!(slow.wait(n * 30_001), None, "failure {n}");
    }
    assert!(!slow.idle(9 * 30_001 + 59_999));
    assert!(slow.idle(9 * 30_001 + 60_000));
    // Lockouts stop growing at an hour.
    let mut t = Throttle::default();
    let mut now = 0;
    for _ in 0..12 {
        for _ in 0..3 {
            t.fail(now, 3);
        }
        now += t.wait(now).unwrap();
    }
    t.fail(now, 3);
    t.fail(now, 3);
    t.fail(now, 3);
    assert_eq!(t.wait(now), Some(3_600_000));
}

#[test]
fn ipv6_addresses_count_by_their_64() {
    let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
    let b: IpAddr = "2001:db8:1:2:bbbb::2".parse().unwrap();
    let c: IpAddr = "2001:db8:1:3::1".parse().unwrap();
    assert_eq!(addr_key(a), addr_key(b));
    assert_ne!(addr_key(a), addr_key(c));
    let v4: IpAddr = "192.0.2.7".parse().unwrap();
    assert_eq!(addr_key(v4), v4);
}

#[test]
fn throttle_memory_lets_idle_entries_go_past_its_bound() {
    let mut hub = Hub::new(HubConfig::default());
    hello(&mut hub, 1, "ann");
    let stale: IpAddr = "198.51.100.1".parse().unwrap();
    for n in 0..10_001u32 {
        let addr = IpAddr::V4(std::net::Ipv4Addr::from(0x0a00_0000 + n));
        hub.addr_throttles.insert(addr, Throttle::default());
    }
    // A lockout still running stays.
    let mut locked = Throttle::default();
    for _ in 0..10 {
        locked.fail(0, 10);
    }
    hub.addr_throttles.insert(stale, locked);
    hub.handle(
        0,
        Input::Frame {
            conn: ConnId(1),
            frame: Ok(ClientMsg::Login {
                account: "nobody".into(),
                password: Secret::new("wrong"),
            }),
        },
    );
    assert!(sent_to(&mut hub, 1).contains("bad_credentials"));
    // Only the failing address and the running lockout are left.
    assert_eq!(hub.addr_throttles.len(), 2, "{}", hub.addr_throttles.len());
    assert!(hub.addr_throttles.contains_key(&stale));
}

#[test]
fn server_bans_restored_from_the_store_hold_at_connect() {
    let mut hub = Hub::new(HubConfig::default());
    let bans: Vec<Ban> = serde_json::from_str(
        r#"[{"rule":{"addr":{"addr":"192.0.2.0","bits":24}},"info":{"target":"addr:192.0.2.0/24","by":"root","ts":1}}]"#,
    )
    .unwrap();
    hub.restore_server_bans(bans);
    assert_eq!(hub.server_bans().len(), 1);
    hub.handle(
        0,
        Input::Connect {
            conn: ConnId(1),
            addr: "192.0.2.77".parse().unwrap(),
            wire: Default::default(),
        },
    );
    let mut closed = false;
    while let Some(out) = hub.poll_output() {
        closed |= matches!(
            out,
            Output::Close {
                conn: ConnId(1),
                ..
            }
        );
    }
    assert!(closed, "a restored ban closes a connection it matches");
    assert_eq!(hub.connection_count(), 0);
}

/// Logs `conn` in to `account` with `password`, doing the password work here.
fn log_in(hub: &mut Hub, conn: u64, account: &str, password: &str) -> String {
    hub.handle(
        0,
        Input::Frame {
            conn: ConnId(conn),
            frame: Ok(ClientMsg::Login {
                account: account.into(),
                password: Secret::new(password),
            }),
        },
    );
    let mut work = None;
    let mut out = String::new();
    while let Some(output) = hub.poll_output() {
        match output {
            Output::Password { conn, work: w, .. } => work = Some((conn, w)),
            Output::Transmit { to, bytes } if to.contains(&ConnId(conn)) => {
                out.push_str(std::str::from_utf8(&bytes).unwrap());
            }
            _ => {}
        }
    }
    if let Some((conn, work)) = work {
        let (verified, hash) = work.perform(&crate::password::PasswordCost::TEST);
        hub.handle(
            0,
            Input::PasswordDone {
                conn,
                verified,
                hash,
            },
        );
    }
    out + &sent_to(hub, conn)
}

#[test]
fn the_servers_operator_resets_a_password_and_deletes_an_account() {
    let mut hub = Hub::new(HubConfig {
        durable: true,
        ..HubConfig::default()
    });
    let cost = crate::password::PasswordCost::TEST;
    hub.restore_accounts(vec![StoredAccount {
        name: "zed".into(),
        hash: crate::password::hash("old password", &cost),
        ..StoredAccount::default()
    }]);
    hello(&mut hub, 1, "zed-phone");
    assert!(log_in(&mut hub, 1, "zed", "old password").contains(r#""type":"logged_in""#));
    hello(&mut hub, 2, "amy");

    let new_hash = crate::password::hash("new password", &cost);
    let id = hub.reset_password(0, "ZED", new_hash.clone()).unwrap();
    let mut stored = None;
    let mut bye = String::new();
    while let Some(output) = hub.poll_output() {
        match output {
            Output::Store(Record::Account { id: at, hash, .. }) => stored = Some((at, hash)),
            Output::Transmit { to, bytes } if to.contains(&ConnId(1)) => {
                bye.push_str(std::str::from_utf8(&bytes).unwrap());
            }
            _ => {}
        }
    }
    assert_eq!(
        stored,
        Some((id, new_hash)),
        "the new hash goes to the store"
    );
    assert!(
        bye.contains(r#""reason":"password reset by the server's operator""#),
        "{bye}"
    );
    assert!(
        log_in(&mut hub, 2, "zed", "old password").contains(r#""code":"bad_credentials""#),
        "the old password is refused"
    );
    let out = log_in(&mut hub, 2, "zed", "new password");
    assert!(out.contains(r#""type":"logged_in""#), "{out}");

    let deleted = hub.remove_account(0, "zed").unwrap();
    let mut records = Vec::new();
    let mut to_amy = String::new();
    while let Some(output) = hub.poll_output() {
        match output {
            Output::Store(record) => records.push(record),
            Output::Transmit { to, bytes } if to.contains(&ConnId(2)) => {
                to_amy.push_str(std::str::from_utf8(&bytes).unwrap());
            }
            _ => {}
        }
    }
    assert!(records.contains(&Record::AccountDeleted {
        id: deleted,
        account: "zed".into()
    }));
    assert!(
        to_amy.contains("account deleted by the server's operator"),
        "{to_amy}"
    );
    assert!(!hub.account_exists("zed"));
    assert_eq!(
        hub.remove_account(0, "zed"),
        Err("there is no account called zed".into())
    );
    assert_eq!(
        hub.reset_password(0, "nobody", String::new()),
        Err("there is no account called nobody".into())
    );
    assert_eq!(hub.check_invariants(), Ok(()));
}

#[test]
fn a_reload_changes_limits_and_operators_but_not_what_state_is_built_on() {
    let mut hub = Hub::new(HubConfig::default());
    hello(&mut hub, 1, "ann");
    hub.reconfigure(HubConfig {
        server_name: "renamed".into(),
        default_room: "#elsewhere".into(),
        history: 3,
        durable: true,
        motd: Some("new rules".into()),
        flood_rate: 1,
        operators: vec!["Ann".into()],
        ..HubConfig::default()
    });
    let config = hub.config();
    assert_eq!(
        (config.server_name.as_str(), config.default_room.as_str()),
        ("chat", "#lobby")
    );
    assert_eq!((config.history, config.durable), (1000, false));
    assert_eq!(
        (config.motd.as_deref(), config.flood_rate),
        (Some("new rules"), 1)
    );
    assert!(hub.operators.contains("ann"));
    // The new MOTD greets the next connection.
    hub.handle(
        0,
        Input::Connect {
            conn: ConnId(2),
            addr: std::net::Ipv4Addr::LOCALHOST.into(),
            wire: Default::default(),
        },
    );
    hub.handle(
        0,
        Input::Frame {
            conn: ConnId(2),
            frame: Ok(ClientMsg::Hello {
                version: 1,
                name: "bob".into(),
                password: None,
            }),
        },
    );
    assert!(sent_to(&mut hub, 2).contains(r#""motd":"new rules""#));
}

#[test]
fn counters_count_accepted_messages_and_flood_kicks() {
    let mut hub = Hub::new(HubConfig {
        // hello takes one token, the first message the other.
        flood_burst: 2,
        flood_rate: 1,
        flood_queue: 2,
        ..HubConfig::default()
    });
    hello(&mut hub, 1, "ann");
    let say = |hub: &mut Hub, text: &str| {
        hub.handle(
            0,
            Input::Frame {
                conn: ConnId(1),
                frame: Ok(ClientMsg::Say {
                    room: "#lobby".into(),
                    text: text.into(),
                    cid: None,
                    notice: false,
                    tags: Default::default(),
                }),
            },
        );
    };
    say(&mut hub, "one");
    assert_eq!(hub.counters().messages, 1);
    for _ in 0..5 {
        say(&mut hub, "more");
    }
    while hub.poll_output().is_some() {}
    assert_eq!(
        hub.counters(),
        Counters {
            messages: 1,
            flood_kicks: 1
        }
    );
    assert_eq!(hub.connection_count(), 0);
}

#[test]
fn a_mailbox_gives_each_sender_a_share_and_new_senders_meet_the_new_sender_limit() {
    let mut hub = Hub::new(HubConfig {
        flood_rate: 0,
        ..HubConfig::default()
    });
    let (_, hash) = PasswordWork::Hash {
        password: Secret::new("a password"),
    }
    .perform(&crate::password::PasswordCost::TEST);
    let names: Vec<String> = ["bob".to_string()]
        .into_iter()
        .chain((0..12).map(|i| format!("s{i}")))
        .collect();
    let accounts = names
        .iter()
        .map(|n| StoredAccount {
            name: n.clone(),
            hash: hash.clone().unwrap(),
            ..StoredAccount::default()
        })
        .collect();
    assert!(hub.restore_accounts(accounts).is_empty());
    for i in 0..12u64 {
        hello(&mut hub, i + 1, &format!("guest{i}"));
        log_in(&mut hub, i + 1, &format!("s{i}"), "a password");
    }
    let write = |hub: &mut Hub, now: UnixMillis, conn: u64, text: &str| {
        hub.handle(
            now,
            Input::Frame {
                conn: ConnId(conn),
                frame: Ok(ClientMsg::Msg {
                    to: "bob".into(),
                    text: text.into(),
                    action: false,
                    cid: None,
                    notice: false,
                    tags: Default::default(),
                }),
            },
        );
        sent_to(hub, conn)
    };
    // One sender: 20 wait, the 21st is refused, and nobody else is kept out by it.
    for n in 0..20 {
        let got = write(&mut hub, 0, 1, &format!("spam {n}"));
        assert!(got.contains(r#""type":"offline""#), "{n}: {got}");
    }
    let got = write(&mut hub, 0, 1, "spam 20");
    assert!(
        got.contains("list_full") && got.contains("you have 20"),
        "{got}"
    );
    // Nine more new senders within the minute make ten; the eleventh waits a minute.
    for conn in 2..=10 {
        let got = write(&mut hub, 1_000, conn, "hello bob");
        assert!(got.contains(r#""type":"offline""#), "sender {conn}: {got}");
    }
    let got = write(&mut hub, 2_000, 11, "me too");
    assert!(got.contains("direct_throttled"), "{got}");
    // A sender already in the mailbox is not new.
    let got = write(&mut hub, 2_000, 2, "again");
    assert!(got.contains(r#""type":"offline""#), "{got}");
    let got = write(&mut hub, 61_000, 11, "me too");
    assert!(got.contains(r#""type":"offline""#), "{got}");
    hub.check_invariants().unwrap();
}

#[test]
fn without_a_default_room_nobody_is_put_anywhere() {
    let mut hub = Hub::new(HubConfig {
        default_room: String::new(),
        ..HubConfig::default()
    });
    assert_eq!(hub.room_count(), 0, "no room is made for it");
    hello(&mut hub, 1, "ann");
    assert!(hub.conns[&ConnId(1)].rooms.is_empty(), "ann is in no room");
    // Rooms are made and joined as usual, and the list shows only them.
    hub.handle(
        0,
        Input::Frame {
            conn: ConnId(1),
            frame: Ok(ClientMsg::Join {
                room: "#den".into(),
                since: None,
                key: None,
            }),
        },
    );
    hub.handle(
        0,
        Input::Frame {
            conn: ConnId(1),
            frame: Ok(ClientMsg::Rooms { after: None }),
        },
    );
    let sent = sent_to(&mut hub, 1);
    assert!(sent.contains(r##""rooms":[{"name":"#den""##), "{sent}");
    assert!(!sent.contains("#lobby"), "{sent}");
    assert_eq!(hub.check_invariants(), Ok(()));
}
