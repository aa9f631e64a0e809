//! Client session tests: every command becomes the right protocol message (or a local error),
//! server messages build the view model (scrollback, members, unread counts), and a reconnect
//! catches up with no gap and no duplicate.

use chat_core::codec::decode_server;
use chat_core::protocol::{ClientMsg, Role, Secret, ServerMsg};
use chat_core::session::{
    ConnState, ConversationKind, Event, LineKind, Output, Session, SessionConfig,
};

const T: u64 = 1_700_000_000_000;

fn server(json: &str) -> ServerMsg {
    decode_server(json.as_bytes()).unwrap_or_else(|e| panic!("{json}: {e}"))
}

/// What the session sent, with client message ids left out (tests of cids use [`sent_raw`]).
fn sent(s: &mut Session) -> Vec<ClientMsg> {
    let mut out = sent_raw(s);
    for m in &mut out {
        if let ClientMsg::Say { cid, .. }
        | ClientMsg::Me { cid, .. }
        | ClientMsg::Msg { cid, .. }
        | ClientMsg::Tag { cid, .. } = m
        {
            *cid = None;
        }
    }
    out
}

fn sent_raw(s: &mut Session) -> Vec<ClientMsg> {
    let mut out = Vec::new();
    while let Some(o) = s.poll_output() {
        if let Output::Send(m) = o {
            out.push(m);
        }
    }
    out
}

/// A session configuration with predictable cids (`t-1`, `t-2`, ...).
fn config() -> SessionConfig {
    SessionConfig {
        cid_prefix: "t".into(),
        ..SessionConfig::default()
    }
}

fn feed(s: &mut Session, lines: &[&str]) {
    for l in lines {
        s.handle_server(T, server(l));
    }
}

fn msg(id: u64, room: &str, from: &str, text: &str) -> String {
    format!(
        r##"{{"type":"message","id":{id},"ts":{},"room":"{room}","from":"{from}","text":"{text}"}}"##,
        T + id
    )
}

/// The server's welcome for `name`.
fn welcome(name: &str) -> String {
    format!(
        r#"{{"type":"welcome","version":1,"name":"{name}","server":"t","limits":{{"max_line":1000,"max_text":400,"max_text_lines":4,"max_name":32}}}}"#
    )
}

/// A session that has been welcomed as `name` but is in no room yet.
fn welcomed(name: &str) -> Session {
    let mut s = Session::new(config(), name);
    s.start(T);
    s.handle_connected(T);
    feed(&mut s, &[&welcome(name)]);
    sent(&mut s);
    s
}

/// A session with this configuration, welcomed as alice and put in #lobby.
fn in_lobby(config: SessionConfig) -> Session {
    let mut s = Session::new(config, "alice");
    s.start(T);
    s.handle_connected(T);
    feed(
        &mut s,
        &[
            &welcome("alice"),
            r##"{"type":"join","room":"#lobby","name":"alice","ts":1}"##,
        ],
    );
    s
}

/// A session registered as alice and in #lobby with bob.
fn online() -> Session {
    let mut s = Session::new(config(), "alice");
    assert_eq!(s.state(), &ConnState::Connecting);
    s.start(T);
    assert_eq!(s.poll_output(), Some(Output::Connect));
    s.handle_connected(T);
    assert_eq!(
        sent(&mut s),
        vec![ClientMsg::Hello {
            version: 1,
            name: "alice".into(),
            password: None
        }]
    );
    feed(
        &mut s,
        &[
            &welcome("alice"),
            r##"{"type":"join","room":"#lobby","name":"alice","ts":1}"##,
            r##"{"type":"topic","room":"#lobby","topic":"hi"}"##,
            r##"{"type":"members","room":"#lobby","names":["bob","alice"]}"##,
            r##"{"type":"history","room":"#lobby","messages":[],"more":false}"##,
        ],
    );
    sent(&mut s);
    assert!(s.is_online());
    s
}

/// The connection drops for `why` and the session connects again a minute later, before
/// the server's welcome.
fn reconnect(s: &mut Session, why: &str) {
    s.handle_disconnected(T, why);
    s.handle_timeout(T + 60_000);
    s.handle_connected(T + 60_000);
}

/// The notices shown in a conversation, oldest first.
fn notices(s: &Session, room: &str) -> Vec<String> {
    s.conversation(room)
        .unwrap()
        .lines
        .iter()
        .filter_map(|l| match &l.kind {
            LineKind::Notice(n) => Some(n.clone()),
            _ => None,
        })
        .collect()
}

fn texts(s: &Session, room: &str) -> Vec<String> {
    s.conversation(room)
        .unwrap()
        .lines
        .iter()
        .filter_map(|l| match &l.kind {
            LineKind::Message { from, text } => Some(format!("<{from}> {text}")),
            LineKind::Action { from, text } => Some(format!("* {from} {text}")),
            _ => None,
        })
        .collect()
}

#[test]
fn registers_and_builds_the_lobby() {
    let s = online();
    assert_eq!(s.name(), Some("alice"));
    let lobby = s.active().unwrap();
    assert_eq!(lobby.name, "#lobby");
    assert_eq!(lobby.topic, "hi");
    assert_eq!(lobby.members, vec!["alice", "bob"]);
}

#[test]
fn every_command_sends_the_right_message() {
    let mut s = online();
    let cases: Vec<(&str, ClientMsg)> = vec![
        (
            "hello",
            ClientMsg::Say {
                room: "#lobby".into(),
                text: "hello".into(),
                cid: None,
                notice: false,
                tags: Default::default(),
            },
        ),
        (
            "/me waves",
            ClientMsg::Me {
                room: "#lobby".into(),
                text: "waves".into(),
                cid: None,
                tags: Default::default(),
            },
        ),
        (
            "/part",
            ClientMsg::Part {
                room: "#lobby".into(),
                reason: None,
            },
        ),
        (
            "/msg bob hi",
            ClientMsg::Msg {
                to: "bob".into(),
                text: "hi".into(),
                action: false,
                cid: None,
                notice: false,
                tags: Default::default(),
            },
        ),
        ("/nick zed", ClientMsg::Nick { name: "zed".into() }),
        (
            "/who",
            ClientMsg::Who {
                room: "#lobby".into(),
                after: None,
            },
        ),
        ("/rooms", ClientMsg::Rooms { after: None }),
        (
            "/topic",
            ClientMsg::Topic {
                room: "#lobby".into(),
                topic: None,
            },
        ),
        (
            "/topic new",
            ClientMsg::Topic {
                room: "#lobby".into(),
                topic: Some("new".into()),
            },
        ),
        (
            "/history 5",
            ClientMsg::History {
                room: "#lobby".into(),
                before: None,
                after: None,
                before_ts: None,
                after_ts: None,
                latest: false,
                limit: 5,
            },
        ),
        (
            "/join #rust",
            ClientMsg::Join {
                room: "#rust".into(),
                since: None,
                key: None,
            },
        ),
    ];
    for (line, expected) in cases {
        s.handle_input(T, line);
        assert_eq!(sent(&mut s), vec![expected], "for {line}");
    }
    // Text typed before the server confirms the join waits for the new room.
    s.handle_input(T, "first words in rust");
    assert!(sent(&mut s).is_empty());
    feed(
        &mut s,
        &[r##"{"type":"join","room":"#rust","name":"alice","ts":1}"##],
    );
    assert_eq!(
        sent(&mut s),
        vec![ClientMsg::Say {
            room: "#rust".into(),
            text: "first words in rust".into(),
            cid: None,
            notice: false,
            tags: Default::default(),
        }]
    );
    s.handle_input(T, "/quit bye");
    assert_eq!(
        sent(&mut s),
        vec![ClientMsg::Quit {
            reason: Some("bye".into())
        }]
    );
    assert!(matches!(s.state(), ConnState::Closed { .. }));
}

#[test]
fn help_and_bad_commands_stay_local() {
    let mut s = online();
    for line in ["/help", "/dance", "/msg bob", "/switch #nowhere"] {
        s.handle_input(T, line);
        assert!(sent(&mut s).is_empty(), "{line} sent something");
    }
    let lines: Vec<String> = s
        .active()
        .unwrap()
        .lines
        .iter()
        .map(|l| format!("{:?}", l.kind))
        .collect();
    let all = lines.join("\n");
    assert!(all.contains("/join #room"), "help lists commands: {all}");
    assert!(all.contains("unknown command /dance"));
    assert!(all.contains("usage: /msg name text"));
    assert!(all.contains("no conversation #nowhere"));
}

#[test]
fn direct_messages_get_their_own_conversation() {
    let mut s = online();
    feed(
        &mut s,
        &[r##"{"type":"direct","id":7,"ts":1,"from":"bob","to":"alice","text":"psst alice"}"##],
    );
    let bob = s.conversation("bob").unwrap();
    assert_eq!(bob.kind, ConversationKind::Direct);
    assert_eq!((bob.unread, bob.mentions), (1, 1));
    s.handle_input(T, "/switch bob");
    assert_eq!(s.active().unwrap().name, "bob");
    assert_eq!(s.active().unwrap().unread, 0);
    s.handle_input(T, "reply");
    s.handle_input(T, "/me nods");
    assert_eq!(
        sent(&mut s),
        vec![
            ClientMsg::Msg {
                to: "bob".into(),
                text: "reply".into(),
                action: false,
                cid: None,
                notice: false,
                tags: Default::default(),
            },
            ClientMsg::Msg {
                to: "bob".into(),
                text: "nods".into(),
                action: true,
                cid: None,
                notice: false,
                tags: Default::default(),
            },
        ]
    );
    // bob renames: the conversation follows him.
    feed(
        &mut s,
        &[r##"{"type":"nick","old":"bob","new":"robert","ts":2}"##],
    );
    assert!(s.conversation("bob").is_none());
    assert_eq!(s.active().unwrap().name, "robert");
    s.handle_input(T, "/close");
    assert_eq!(s.active().unwrap().name, "#lobby");
}

#[test]
fn unread_counts_and_mentions() {
    let mut s = online();
    feed(
        &mut s,
        &[
            r##"{"type":"join","room":"#rust","name":"alice","ts":1}"##,
            r##"{"type":"history","room":"#rust","messages":[],"more":false}"##,
        ],
    );
    // Joining a second room keeps #lobby active.
    assert_eq!(s.active().unwrap().name, "#lobby");
    feed(
        &mut s,
        &[
            &msg(1, "#rust", "bob", "hi"),
            &msg(2, "#rust", "bob", "hey Alice!"),
            &msg(3, "#rust", "alice", "mine"),
        ],
    );
    let rust = s.conversation("#rust").unwrap();
    assert_eq!((rust.unread, rust.mentions), (2, 1));
    feed(&mut s, &[&msg(4, "#lobby", "bob", "in the active room")]);
    assert_eq!(s.conversation("#lobby").unwrap().unread, 0);
    s.switch_relative(1);
    assert_eq!(s.active().unwrap().name, "#rust");
    assert_eq!(s.active().unwrap().unread, 0);
    s.handle_input(T, "/switch 1");
    assert_eq!(s.active().unwrap().name, "#lobby");
}

#[test]
fn scrollback_is_bounded_and_history_pages_in_order() {
    let config = SessionConfig {
        scrollback: 3,
        ..config()
    };
    let mut s = in_lobby(config);
    for id in 10..15 {
        feed(&mut s, &[&msg(id, "#lobby", "bob", &format!("m{id}"))]);
    }
    assert_eq!(
        texts(&s, "#lobby"),
        vec!["<bob> m12", "<bob> m13", "<bob> m14"]
    );
    assert!(s.active().unwrap().more_history);
    sent(&mut s);
    s.handle_input(T, "/history 2");
    assert_eq!(
        sent(&mut s),
        vec![ClientMsg::History {
            room: "#lobby".into(),
            before: Some(12),
            after: None,
            before_ts: None,
            after_ts: None,
            latest: false,
            limit: 2
        }]
    );
    let mut s = online();
    feed(
        &mut s,
        &[
            &msg(5, "#lobby", "bob", "five"),
            &msg(6, "#lobby", "bob", "six"),
        ],
    );
    feed(
        &mut s,
        &[&format!(
            r##"{{"type":"history","room":"#lobby","messages":[{},{}],"more":false}}"##,
            msg(3, "#lobby", "bob", "three").replace(r##""type":"message","##, ""),
            msg(5, "#lobby", "bob", "five").replace(r##""type":"message","##, ""),
        )],
    );
    assert_eq!(
        texts(&s, "#lobby"),
        vec!["<bob> three", "<bob> five", "<bob> six"]
    );
    assert!(!s.active().unwrap().more_history);
}

#[test]
fn reconnect_backs_off_then_catches_up_without_gap_or_duplicate() {
    let mut s = online();
    feed(
        &mut s,
        &[
            r##"{"type":"join","room":"#rust","name":"alice","ts":1}"##,
            &msg(1, "#lobby", "bob", "one"),
            &msg(2, "#rust", "bob", "two"),
        ],
    );
    s.handle_input(T, "pending");
    assert_eq!(s.unacked(), 1);
    sent(&mut s);
    s.handle_disconnected(T + 10, "connection reset");
    assert_eq!(s.unacked(), 1, "kept until the server acknowledges it");
    match s.state() {
        ConnState::Reconnecting { attempt: 1, at, .. } => assert_eq!(*at, T + 10 + 500),
        other => panic!("{other:?}"),
    }
    // Typing while offline is kept for the reconnect, and says so.
    s.handle_input(T + 20, "while away");
    assert!(sent(&mut s).is_empty());
    assert_eq!(s.unacked(), 2);
    assert!(matches!(
        s.active().unwrap().lines.back().unwrap().kind,
        LineKind::Notice(ref e) if e.contains("sent on reconnect")
    ));
    // The first attempt fails: the delay doubles.
    s.handle_timeout(T + 510);
    assert_eq!(
        s.poll_output(),
        Some(Output::Event(Event::State(ConnState::Connecting)))
    );
    assert_eq!(s.poll_output(), Some(Output::Connect));
    s.handle_connect_failed(T + 600, "refused");
    assert!(
        matches!(s.state(), ConnState::Reconnecting { attempt: 2, at, .. } if *at == T + 600 + 1000)
    );
    s.handle_timeout(T + 1600);
    s.handle_connected(T + 1700);
    // The old connection still holds the name on the server: the session takes a variant.
    sent(&mut s);
    feed(
        &mut s,
        &[r##"{"type":"error","code":"name_taken","message":"taken"}"##],
    );
    assert_eq!(
        sent(&mut s),
        vec![ClientMsg::Hello {
            version: 1,
            name: "alice_".into(),
            password: None
        }]
    );
    feed(&mut s, &[&welcome("alice_")]);
    // Rejoin with catch-up, then resend what was not acknowledged, in order, same cids.
    assert_eq!(
        sent_raw(&mut s),
        vec![
            ClientMsg::Join {
                room: "#lobby".into(),
                since: Some(2),
                key: None
            },
            ClientMsg::Join {
                room: "#rust".into(),
                since: Some(2),
                key: None
            },
            ClientMsg::Say {
                room: "#lobby".into(),
                text: "pending".into(),
                cid: Some("t-1".into()),
                notice: false,
                tags: Default::default(),
            },
            ClientMsg::Say {
                room: "#lobby".into(),
                text: "while away".into(),
                cid: Some("t-2".into()),
                notice: false,
                tags: Default::default(),
            },
        ]
    );
    // The server replays what was missed; overlapping ids are dropped.
    feed(
        &mut s,
        &[&format!(
            r##"{{"type":"history","room":"#lobby","messages":[{},{}],"more":false}}"##,
            msg(1, "#lobby", "bob", "one").replace(r##""type":"message","##, ""),
            msg(3, "#lobby", "bob", "three").replace(r##""type":"message","##, ""),
        )],
    );
    assert_eq!(texts(&s, "#lobby"), vec!["<bob> one", "<bob> three"]);
    assert_eq!(s.last_id(), Some(3));
}

#[test]
fn a_refused_name_can_be_changed_without_restarting() {
    let mut s = Session::new(config(), "bob");
    s.start(T);
    s.handle_connected(T);
    sent(&mut s);
    feed(
        &mut s,
        &[r##"{"type":"error","code":"name_taken","message":"the name bob is taken"}"##],
    );
    assert!(
        matches!(s.state(), ConnState::NameRejected { reason, account: None } if reason.contains("taken"))
    );
    s.set_name(T, "bobby");
    assert_eq!(
        sent(&mut s),
        vec![ClientMsg::Hello {
            version: 1,
            name: "bobby".into(),
            password: None
        }]
    );
    feed(
        &mut s,
        &[r##"{"type":"error","code":"invalid_name","message":"bad"}"##],
    );
    s.handle_input(T, "/nick robert");
    assert_eq!(
        sent(&mut s),
        vec![ClientMsg::Hello {
            version: 1,
            name: "robert".into(),
            password: None
        }]
    );
}

#[test]
fn a_refused_account_name_asks_for_its_password_and_takes_a_login_or_a_name() {
    let mut s = Session::new(config(), "alice");
    s.start(T);
    s.handle_connected(T);
    sent(&mut s);
    feed(
        &mut s,
        &[
            r##"{"type":"error","code":"name_reserved","message":"the name alice belongs to a registered account: log in to use it, or pick another"}"##,
        ],
    );
    assert!(matches!(
        s.state(),
        ConnState::NameRejected { account: Some(a), .. } if a == "alice"
    ));
    // A sentence is not a name: nothing is sent, and the user is told what to type.
    s.handle_input(T, "hello everyone");
    assert!(sent(&mut s).is_empty());
    // `/login` logs in, with the password it names.
    s.handle_input(T, "/login alice hunter22");
    assert_eq!(
        sent(&mut s),
        vec![ClientMsg::Hello {
            version: 1,
            name: "alice".into(),
            password: Some(Secret::new("hunter22"))
        }]
    );
    // A wrong password: asked again, for the same account.
    feed(
        &mut s,
        &[
            r##"{"type":"error","code":"bad_credentials","message":"wrong account name or password"}"##,
        ],
    );
    assert!(matches!(
        s.state(),
        ConnState::NameRejected { account: Some(a), .. } if a == "alice"
    ));
    // A bare name is a guest's: no password goes with it.
    s.handle_input(T, "alice2");
    assert_eq!(
        sent(&mut s),
        vec![ClientMsg::Hello {
            version: 1,
            name: "alice2".into(),
            password: None
        }]
    );
}

#[test]
fn quits_parts_and_acks() {
    let mut s = online();
    s.handle_input(T, "hi");
    assert_eq!(s.unacked(), 1);
    // The echo alone is not the acknowledgement; the ack naming the cid is.
    feed(&mut s, &[&msg(9, "#lobby", "alice", "hi")]);
    assert_eq!(s.unacked(), 1);
    feed(&mut s, &[r#"{"type":"ack","cid":"t-1","id":9}"#]);
    assert_eq!(s.unacked(), 0);
    s.handle_input(T, "   ");
    s.handle_input(T, "again");
    assert_eq!(s.unacked(), 1);
    // An error about something else does not settle it; one naming its cid does.
    feed(
        &mut s,
        &[r#"{"type":"error","code":"no_such_room","message":"no room"}"#],
    );
    assert_eq!(s.unacked(), 1);
    feed(
        &mut s,
        &[r#"{"type":"error","code":"text_too_long","message":"too long","cid":"t-2"}"#],
    );
    assert_eq!(s.unacked(), 0);
    feed(
        &mut s,
        &[r##"{"type":"quit","name":"bob","reason":"ping timeout","ts":5}"##],
    );
    assert_eq!(s.active().unwrap().members, vec!["alice"]);
    assert!(matches!(
        &s.active().unwrap().lines.back().unwrap().kind,
        LineKind::Quit { name, reason } if name == "bob" && reason == "ping timeout"
    ));
    feed(
        &mut s,
        &[r##"{"type":"part","room":"#lobby","name":"alice","ts":6}"##],
    );
    assert!(s.conversation("#lobby").is_none());
    assert!(s.active().is_none());
    sent(&mut s);
    s.handle_input(T, "into the void");
    assert!(sent(&mut s).is_empty());
}

#[test]
fn pings_a_silent_server_and_gives_up_on_a_dead_one() {
    let mut s = online();
    assert_eq!(s.poll_timeout(), Some(T + 45_000));
    s.handle_timeout(T + 45_000);
    assert_eq!(
        sent(&mut s),
        vec![ClientMsg::Ping {
            token: (T + 45_000).to_string()
        }]
    );
    s.handle_timeout(T + 75_000);
    assert_eq!(s.poll_output(), Some(Output::Disconnect));
    // And a server ping is answered.
    let mut s = online();
    feed(&mut s, &[r##"{"type":"ping","token":"x"}"##]);
    assert_eq!(sent(&mut s), vec![ClientMsg::Pong { token: "x".into() }]);
}

#[test]
fn completes_nicks_and_commands() {
    let s = online();
    assert_eq!(s.completions("b"), vec!["bob"]);
    assert_eq!(s.completions("/jo"), vec!["/join"]);
    assert_eq!(s.completions("#lo"), vec!["#lobby"]);
}

#[test]
fn lines_typed_between_welcome_and_the_first_room_are_held_not_lost() {
    let mut s = welcomed("alice");
    s.handle_input(T, "early bird");
    assert!(
        sent(&mut s).is_empty(),
        "held until the server puts us in a room"
    );
    feed(
        &mut s,
        &[r##"{"type":"join","room":"#lobby","name":"alice","ts":1}"##],
    );
    assert_eq!(
        sent(&mut s),
        vec![ClientMsg::Say {
            room: "#lobby".into(),
            text: "early bird".into(),
            cid: None,
            notice: false,
            tags: Default::default(),
        }]
    );
}

#[test]
fn a_room_joined_right_after_welcome_gets_the_text_typed_for_it() {
    // chat-cli --room #ops: "/join #ops" goes out before the server's default room arrives.
    let mut s = welcomed("bot");
    s.handle_input(T, "/join #ops");
    s.handle_input(T, "hi");
    assert_eq!(
        sent(&mut s),
        vec![ClientMsg::Join {
            room: "#ops".into(),
            since: None,
            key: None
        }]
    );
    feed(
        &mut s,
        &[r##"{"type":"join","room":"#lobby","name":"bot","ts":1}"##],
    );
    assert!(sent(&mut s).is_empty(), "still waiting for #ops");
    feed(
        &mut s,
        &[r##"{"type":"join","room":"#ops","name":"bot","ts":2}"##],
    );
    assert_eq!(
        sent(&mut s),
        vec![ClientMsg::Say {
            room: "#ops".into(),
            text: "hi".into(),
            cid: None,
            notice: false,
            tags: Default::default(),
        }]
    );
    assert_eq!(s.active().unwrap().name, "#ops");
}

#[test]
fn autojoin_rooms_are_joined_once_and_the_last_becomes_active() {
    let config = SessionConfig {
        autojoin: vec!["#ops".into()],
        ..config()
    };
    let mut s = Session::new(config, "bot");
    s.start(T);
    s.handle_connected(T);
    sent(&mut s);
    feed(&mut s, &[&welcome("bot")]);
    assert_eq!(
        sent(&mut s),
        vec![ClientMsg::Join {
            room: "#ops".into(),
            since: None,
            key: None
        }]
    );
    feed(
        &mut s,
        &[
            r##"{"type":"join","room":"#lobby","name":"bot","ts":1}"##,
            r##"{"type":"join","room":"#ops","name":"bot","ts":2}"##,
        ],
    );
    assert_eq!(s.active().unwrap().name, "#ops");
}

/// The server's welcome with flood limits.
fn welcome_limited(name: &str, burst: u32, rate: u32) -> String {
    format!(
        r#"{{"type":"welcome","version":1,"name":"{name}","server":"t","limits":{{"max_line":100,"max_text":10,"max_text_lines":2,"max_name":32,"flood_burst":{burst},"flood_rate":{rate}}}}}"#
    )
}

#[test]
fn sending_is_paced_to_the_announced_flood_limits() {
    let mut s = Session::new(config(), "alice");
    s.start(T);
    s.handle_connected(T);
    feed(
        &mut s,
        &[
            &welcome_limited("alice", 10, 5),
            r##"{"type":"join","room":"#lobby","name":"alice","ts":1}"##,
        ],
    );
    sent(&mut s);
    for i in 0..20 {
        s.handle_input(T, &format!("m{i}"));
    }
    // The server's bucket holds 10, hello took one, and two are kept in reserve.
    assert_eq!(sent(&mut s).len(), 7);
    assert_eq!(s.unacked(), 20);
    // Then one every 200 ms, when the session's deadline says so.
    let mut times = Vec::new();
    while times.len() < 13 {
        let now = s.poll_timeout().expect("a pacing deadline");
        assert!(now < T + 5_000, "paced, not stalled");
        s.handle_timeout(now);
        let out = sent_raw(&mut s);
        for m in &out {
            let ClientMsg::Say { cid: Some(cid), .. } = m else {
                panic!("{m:?}");
            };
            s.handle_server(
                now,
                server(&format!(r#"{{"type":"ack","cid":"{cid}","id":1}}"#)),
            );
            times.push(now);
        }
    }
    assert_eq!(times.len(), 13);
    assert!(times.windows(2).all(|w| w[1] - w[0] >= 200), "{times:?}");
    assert_eq!(
        s.unacked(),
        7,
        "the first seven were never acknowledged here"
    );
}

#[test]
fn a_refusal_names_the_input_it_came_from() {
    let mut s = online();
    s.handle_input(T, "/who");
    s.handle_input(T, "fine");
    s.handle_input(T, "too long for the limit");
    let cids: Vec<String> = sent_raw(&mut s)
        .into_iter()
        .filter_map(|m| match m {
            ClientMsg::Say { cid, .. } => cid,
            _ => None,
        })
        .collect();
    assert_eq!(cids, ["t-1", "t-2"]);
    feed(
        &mut s,
        &[
            r#"{"type":"error","code":"text_too_long","message":"the message is 22 bytes; the limit is 10","cid":"t-2"}"#,
        ],
    );
    let refused: Vec<Event> = std::iter::from_fn(|| s.poll_output())
        .filter_map(|o| match o {
            Output::Event(e @ Event::Refused { .. }) => Some(e),
            _ => None,
        })
        .collect();
    assert_eq!(
        refused,
        vec![Event::Refused {
            input: 3,
            code: Some(chat_core::ErrorCode::TextTooLong),
            reason: "the message is 22 bytes; the limit is 10".into(),
        }]
    );
    assert_eq!(s.unacked(), 1);
}

#[test]
fn other_peoples_text_reaches_the_view_with_controls_made_visible() {
    let mut s = online();
    feed(
        &mut s,
        &[
            r##"{"type":"message","id":2,"ts":1,"room":"#lobby","from":"bob","text":"a\u001b[2Jb\r\nc\td"}"##,
            r##"{"type":"topic","room":"#lobby","topic":"\u009b31m","by":"bob\u0007"}"##,
            r##"{"type":"quit","name":"bob","reason":"\u001b]52;c;eA==\u0007","ts":2}"##,
        ],
    );
    let c = s.active().unwrap();
    assert_eq!(c.topic, "<U+009B>31m");
    let kinds: Vec<String> = c.lines.iter().map(|l| format!("{:?}", l.kind)).collect();
    let all = kinds.join("\n");
    assert!(all.contains(r#"text: "a␛[2Jb␍\nc\td""#), "{all}");
    assert!(all.contains(r#"by: Some("bob␇")"#), "{all}");
    assert!(all.contains(r#"reason: "␛]52;c;eA==␇""#), "{all}");
    assert!(
        !all.chars()
            .any(|ch| ch == '\u{1b}' || ch == '\u{9b}' || ch == '\u{7}')
    );
}

#[test]
fn direct_conversations_are_capped_by_closing_the_quietest() {
    let config = SessionConfig {
        max_direct: 3,
        ..config()
    };
    let mut s = in_lobby(config);
    for i in 0..10u64 {
        let dm = format!(
            r#"{{"type":"direct","id":{},"ts":{},"from":"spam{i}","to":"alice","text":"hi"}}"#,
            10 + i,
            100 + i
        );
        feed(&mut s, &[&dm]);
        if i == 0 {
            // The user is reading the first one: it stays.
            s.handle_input(T, "/switch spam0");
        }
    }
    let directs: Vec<String> = s
        .conversations()
        .filter(|c| c.kind == ConversationKind::Direct)
        .map(|c| c.name.clone())
        .collect();
    assert_eq!(directs, ["spam0", "spam8", "spam9"]);
    assert!(s.conversation("#lobby").is_some(), "rooms are not touched");
}

#[test]
fn an_unreadable_line_is_reported_not_dropped() {
    let mut s = online();
    s.handle_unreadable(T, "line too long\u{1b}[2J");
    let last = &s.active().unwrap().lines.back().unwrap().kind;
    assert!(
        matches!(last, LineKind::Error(e) if e.contains("cannot read (line too long␛[2J)")),
        "{last:?}"
    );
}

#[test]
fn after_an_unreadable_line_what_may_be_missing_is_asked_for_again_but_not_in_a_loop() {
    let mut s = online();
    feed(&mut s, &[&msg(5, "#lobby", "bob", "five")]);
    sent(&mut s);
    s.handle_unreadable(T, "line too long");
    assert_eq!(
        sent(&mut s),
        vec![ClientMsg::History {
            room: "#lobby".into(),
            before: None,
            after: Some(5),
            before_ts: None,
            after_ts: None,
            latest: false,
            limit: 200,
        }]
    );
    s.handle_unreadable(T + 1000, "line too long");
    assert!(sent(&mut s).is_empty(), "not again within ten seconds");
    s.handle_unreadable(T + 11_000, "line too long");
    assert_eq!(sent(&mut s).len(), 1);
}

#[test]
fn a_paged_catch_up_asks_for_the_rest_and_a_gap_is_told() {
    let mut s = online();
    feed(&mut s, &[&msg(3, "#lobby", "bob", "three")]);
    reconnect(&mut s, "reset");
    feed(&mut s, &[&welcome("alice")]);
    sent(&mut s);
    // The server replays what fits, says newer ones follow, and that some are gone.
    feed(
        &mut s,
        &[&format!(
            r##"{{"type":"history","room":"#lobby","messages":[{}],"more":true,"newer":true,"gap":true}}"##,
            msg(9, "#lobby", "bob", "nine").replace(r##""type":"message","##, ""),
        )],
    );
    assert_eq!(
        sent(&mut s),
        vec![ClientMsg::History {
            room: "#lobby".into(),
            before: None,
            after: Some(9),
            before_ts: None,
            after_ts: None,
            latest: false,
            limit: 200,
        }]
    );
    let notices = notices(&s, "#lobby");
    assert!(
        notices.iter().any(|n| n.contains("no longer kept")),
        "{notices:?}"
    );
    // The next page: no more continuation, no second notice.
    feed(
        &mut s,
        &[&format!(
            r##"{{"type":"history","room":"#lobby","messages":[{}],"more":true}}"##,
            msg(10, "#lobby", "bob", "ten").replace(r##""type":"message","##, ""),
        )],
    );
    assert!(sent(&mut s).is_empty());
    assert_eq!(
        texts(&s, "#lobby"),
        vec!["<bob> three", "<bob> nine", "<bob> ten"]
    );
}

#[test]
fn a_reconnect_warns_of_lost_messages_only_when_the_server_says_some_are_gone() {
    let mut s = online();
    feed(&mut s, &[&msg(3, "#lobby", "bob", "three")]);
    reconnect(&mut s, "server restarting");
    feed(&mut s, &[&welcome("alice")]);
    sent(&mut s);
    // The room's history after a restart: older messages exist (`more`), none is lost.
    feed(
        &mut s,
        &[&format!(
            r##"{{"type":"history","room":"#lobby","messages":[{},{}],"more":true}}"##,
            msg(3, "#lobby", "bob", "three").replace(r##""type":"message","##, ""),
            msg(4, "#lobby", "bob", "four").replace(r##""type":"message","##, ""),
        )],
    );
    let notices = notices(&s, "#lobby");
    assert!(
        !notices.iter().any(|n| n.contains("no longer kept")),
        "{notices:?}"
    );
    assert_eq!(texts(&s, "#lobby"), vec!["<bob> three", "<bob> four"]);
}

#[test]
fn a_member_list_in_pages_is_fetched_whole() {
    let mut s = online();
    feed(
        &mut s,
        &[r##"{"type":"members","room":"#lobby","names":["alice","bob"],"more":true}"##],
    );
    assert_eq!(
        sent(&mut s),
        vec![ClientMsg::Who {
            room: "#lobby".into(),
            after: Some("bob".into()),
        }]
    );
    feed(
        &mut s,
        &[r##"{"type":"members","room":"#lobby","names":["carol"],"after":"bob"}"##],
    );
    assert!(sent(&mut s).is_empty());
    assert_eq!(s.active().unwrap().members, vec!["alice", "bob", "carol"]);
}

#[test]
fn register_then_reconnect_logs_in_again_with_the_same_password() {
    let mut s = online();
    s.handle_input(T, "/register hunter2hunter2");
    assert_eq!(
        sent(&mut s),
        vec![ClientMsg::Register {
            password: Secret::new("hunter2hunter2")
        }]
    );
    // Nothing of the password shows in what the session can be asked to print.
    assert!(!format!("{s:?}").contains("hunter2"));
    feed(&mut s, &[r#"{"type":"logged_in","account":"alice"}"#]);
    assert_eq!(s.account(), Some("alice"));
    reconnect(&mut s, "reset");
    assert_eq!(
        sent(&mut s),
        vec![ClientMsg::Hello {
            version: 1,
            name: "alice".into(),
            password: Some(Secret::new("hunter2hunter2")),
        }]
    );
}

#[test]
fn a_refused_nick_changes_nothing_the_next_login_uses() {
    let mut s = online();
    s.handle_input(T, "/register hunter2hunter2");
    feed(&mut s, &[r#"{"type":"logged_in","account":"alice"}"#]);
    sent(&mut s);
    s.handle_input(T, "/nick bob");
    assert_eq!(sent(&mut s), vec![ClientMsg::Nick { name: "bob".into() }]);
    feed(
        &mut s,
        &[
            r#"{"type":"error","code":"name_reserved","message":"you are logged in as alice: your name is your account's"}"#,
        ],
    );
    assert_eq!(s.wanted_name(), "alice");
    // After a restart the session logs in to its own account, never to the name refused.
    reconnect(&mut s, "server restarting");
    assert_eq!(
        sent(&mut s),
        vec![ClientMsg::Hello {
            version: 1,
            name: "alice".into(),
            password: Some(Secret::new("hunter2hunter2")),
        }]
    );
    // A rename the server agrees to is the name from then on.
    let mut g = online();
    g.handle_input(T, "/nick carol");
    feed(
        &mut g,
        &[r#"{"type":"nick","old":"alice","new":"carol","ts":1700000000001}"#],
    );
    assert_eq!(g.wanted_name(), "carol");
}

#[test]
fn account_commands_and_their_answers() {
    let mut s = online();
    s.handle_input(T, "/login");
    s.handle_input(T, "/login bob");
    assert!(sent(&mut s).is_empty(), "a bad /login sends nothing");
    s.handle_input(T, "/login Bob his password");
    assert_eq!(
        sent(&mut s),
        vec![ClientMsg::Login {
            account: "Bob".into(),
            password: Secret::new("his")
        }]
    );
    // A refusal leaves no password in force.
    feed(
        &mut s,
        &[
            r#"{"type":"error","code":"bad_credentials","message":"wrong account name or password"}"#,
        ],
    );
    assert_eq!(s.account(), None);
    s.handle_input(T, "/login bob right-password");
    sent(&mut s);
    feed(
        &mut s,
        &[
            r#"{"type":"nick","old":"alice","new":"bob","ts":1}"#,
            r#"{"type":"logged_in","account":"bob"}"#,
        ],
    );
    assert_eq!((s.account(), s.name()), (Some("bob"), Some("bob")));
    s.handle_input(T, "/passwd right-password newer-password");
    assert_eq!(
        sent(&mut s),
        vec![ClientMsg::Passwd {
            old: Secret::new("right-password"),
            new: Secret::new("newer-password")
        }]
    );
    feed(&mut s, &[r#"{"type":"password_changed","account":"bob"}"#]);
    s.handle_input(T, "/unregister newer-password");
    assert_eq!(
        sent(&mut s),
        vec![ClientMsg::Unregister {
            password: Secret::new("newer-password")
        }]
    );
    feed(&mut s, &[r#"{"type":"account_deleted","account":"bob"}"#]);
    assert_eq!(s.account(), None);
    s.handle_input(T, "/logout");
    assert_eq!(sent(&mut s), vec![ClientMsg::Logout {}]);
    feed(
        &mut s,
        &[
            r#"{"type":"logged_out","account":"bob"}"#,
            r#"{"type":"bye","reason":"logged out"}"#,
        ],
    );
    // Logged out is final: no reconnect.
    s.handle_disconnected(T, "closed");
    assert!(
        matches!(s.state(), ConnState::Closed { .. }),
        "{:?}",
        s.state()
    );
    s.handle_timeout(T + 600_000);
    assert!(!std::iter::from_fn(|| s.poll_output()).any(|o| o == Output::Connect));
}

#[test]
fn a_reserved_name_or_a_wrong_password_at_hello_waits_for_the_user() {
    let mut s = Session::new(config(), "carol");
    s.set_account("carol", Secret::new("wrong one"));
    s.start(T);
    s.handle_connected(T);
    assert_eq!(
        sent(&mut s),
        vec![ClientMsg::Hello {
            version: 1,
            name: "carol".into(),
            password: Some(Secret::new("wrong one")),
        }]
    );
    feed(
        &mut s,
        &[
            r#"{"type":"error","code":"bad_credentials","message":"wrong account name or password"}"#,
        ],
    );
    assert!(matches!(s.state(), ConnState::NameRejected { .. }));
    // Trying the right password goes straight out.
    s.set_account("carol", Secret::new("right one"));
    assert_eq!(
        sent(&mut s),
        vec![ClientMsg::Hello {
            version: 1,
            name: "carol".into(),
            password: Some(Secret::new("right one")),
        }]
    );
    feed(
        &mut s,
        &[
            r#"{"type":"error","code":"name_reserved","message":"the name carol belongs to a registered account"}"#,
        ],
    );
    // Picking another name goes as a guest: no password.
    s.set_name(T, "carol2");
    assert_eq!(
        sent(&mut s),
        vec![ClientMsg::Hello {
            version: 1,
            name: "carol2".into(),
            password: None,
        }]
    );
}

#[test]
fn moderation_commands_roles_and_refused_joins() {
    let mut s = online();
    let cases: Vec<(&str, ClientMsg)> = vec![
        (
            "/kick bob too loud",
            ClientMsg::Kick {
                room: "#lobby".into(),
                name: "bob".into(),
                reason: Some("too loud".into()),
            },
        ),
        (
            "/ban name:spam* 7d bots",
            ClientMsg::Ban {
                room: "#lobby".into(),
                target: "name:spam*".into(),
                duration: Some(604_800),
                reason: Some("bots".into()),
                mute: false,
            },
        ),
        (
            "/unmute bob",
            ClientMsg::Unban {
                room: "#lobby".into(),
                target: "bob".into(),
                mute: true,
            },
        ),
        (
            "/bans",
            ClientMsg::Bans {
                room: "#lobby".into(),
                after: None,
            },
        ),
        (
            "/voice carol",
            ClientMsg::Role {
                room: "#lobby".into(),
                name: "carol".into(),
                role: Role::Voice,
                at_least: false,
            },
        ),
        (
            "/invite dave 2h",
            ClientMsg::Invite {
                room: "#lobby".into(),
                name: "dave".into(),
                duration: Some(7_200),
            },
        ),
        (
            "/mode -k",
            ClientMsg::Mode {
                room: "#lobby".into(),
                moderated: None,
                invite_only: None,
                topic_lock: None,
                registered_only: None,
                secret: None,
                key: Some(Secret::new("")),
                limit: None,
                open: None,
            },
        ),
        (
            "/closeroom #spam gone",
            ClientMsg::CloseRoom {
                room: "#spam".into(),
                reason: Some("gone".into()),
            },
        ),
        ("/gbans", ClientMsg::ServerBans { after: None }),
        ("/connections", ClientMsg::Connections { after: None }),
    ];
    for (line, expected) in cases {
        s.handle_input(T, line);
        assert_eq!(sent(&mut s), vec![expected], "for {line}");
    }
    // Roles arrive with the member list and change with `role`; the list shows them first.
    feed(
        &mut s,
        &[
            r##"{"type":"members","room":"#lobby","names":["alice","bob","carol"],"roles":{"carol":"op"}}"##,
            r##"{"type":"role","room":"#lobby","name":"bob","role":"voice","by":"carol","ts":1}"##,
        ],
    );
    let lobby = s.conversation("#lobby").unwrap();
    assert_eq!(lobby.member_labels(), ["@carol", "+bob", "alice"]);
    assert_eq!(lobby.role_of("BOB"), Role::Voice);
    // A kick of someone else takes them off the list; a kick of us leaves the room where it
    // is, marked as left, with the reason in it.
    feed(
        &mut s,
        &[r##"{"type":"kick","room":"#lobby","name":"bob","by":"carol","ts":2}"##],
    );
    assert_eq!(
        s.conversation("#lobby").unwrap().member_labels(),
        ["@carol", "alice"]
    );
    feed(
        &mut s,
        &[r##"{"type":"kick","room":"#lobby","name":"alice","by":"carol","reason":"bye","ts":3}"##],
    );
    let lobby = s.conversation("#lobby").unwrap();
    assert!(lobby.left && lobby.members.is_empty());
    assert!(
        lobby
            .lines
            .iter()
            .any(|l| l.kind == LineKind::Error("you were removed from #lobby by carol: bye".into())),
        "{:?}",
        lobby.lines
    );
    // A refused join does not leave what is typed next waiting for a room that never comes.
    s.handle_input(T, "/join #vault sesame");
    assert_eq!(
        sent(&mut s),
        vec![ClientMsg::Join {
            room: "#vault".into(),
            since: None,
            key: Some(Secret::new("sesame")),
        }]
    );
    feed(
        &mut s,
        &[r#"{"type":"error","code":"banned","message":"you are banned from #vault"}"#],
    );
    s.handle_input(T, "/join #other");
    s.handle_input(T, "/rooms");
    assert_eq!(sent(&mut s).len(), 2, "nothing is held after the refusal");
}

#[test]
fn a_server_ban_at_hello_stops_reconnecting() {
    let mut s = Session::new(config(), "troll");
    s.start(T);
    s.handle_connected(T);
    sent(&mut s);
    feed(
        &mut s,
        &[r#"{"type":"error","code":"banned","message":"you are banned from this server (spam)"}"#],
    );
    assert!(
        matches!(s.state(), ConnState::Closed { .. }),
        "{:?}",
        s.state()
    );
}

#[test]
fn a_ban_list_in_pages_is_fetched_whole() {
    let mut s = online();
    feed(
        &mut s,
        &[
            r##"{"type":"ban_list","room":"#lobby","bans":[{"target":"name:a*","by":"op","ts":1},{"target":"name:b*","by":"op","ts":1}],"more":true}"##,
        ],
    );
    assert_eq!(
        sent(&mut s),
        vec![ClientMsg::Bans {
            room: "#lobby".into(),
            after: Some(2),
        }]
    );
    feed(
        &mut s,
        &[
            r##"{"type":"ban_list","room":"#lobby","bans":[{"target":"name:c*","mute":true,"by":"op","ts":1}],"more":true,"after":2}"##,
            r#"{"type":"ban_list","bans":[],"more":true,"after":7}"#,
        ],
    );
    assert_eq!(
        sent(&mut s),
        vec![
            ClientMsg::Bans {
                room: "#lobby".into(),
                after: Some(3),
            },
            ClientMsg::ServerBans { after: Some(7) },
        ]
    );
    let shown = notices(&s, "#lobby").join("\n");
    assert!(shown.contains("op banned name:a*"), "{shown}");
    assert!(shown.contains("op muted name:c*"), "{shown}");
}

/// Everything the session told the front-end since the last call.
fn events(s: &mut Session) -> Vec<Event> {
    let mut out = Vec::new();
    while let Some(o) = s.poll_output() {
        if let Output::Event(e) = o {
            out.push(e);
        }
    }
    out
}

#[test]
fn a_reconnect_is_quiet_and_what_it_caught_up_counts_as_unread() {
    let mut s = online();
    feed(
        &mut s,
        &[
            r##"{"type":"join","room":"#rust","name":"alice","ts":1}"##,
            r##"{"type":"topic","room":"#rust","topic":"crabs"}"##,
            r##"{"type":"members","room":"#rust","names":["alice","bob"]}"##,
            r##"{"type":"history","room":"#rust","messages":[],"more":false}"##,
            &msg(1, "#lobby", "bob", "one"),
        ],
    );
    events(&mut s);
    let lines_before = s.conversation("#lobby").unwrap().lines.len();
    s.handle_disconnected(T + 10, "connection reset");
    // Line-oriented front-ends hear about the disconnect once, not once per conversation.
    let news: Vec<_> = events(&mut s)
        .into_iter()
        .filter(|e| matches!(e, Event::Line { .. }))
        .collect();
    assert_eq!(news.len(), 1, "{news:?}");
    assert!(
        matches!(&news[0], Event::Line { conversation: None, line, .. } if matches!(&line.kind, LineKind::Notice(t) if t.contains("connection reset")))
    );
    // ...while every conversation keeps the notice for whoever looks at it.
    for room in ["#lobby", "#rust"] {
        assert!(
            s.conversation(room)
                .unwrap()
                .lines
                .iter()
                .any(|l| matches!(&l.kind, LineKind::Notice(t) if t.contains("connection reset")))
        );
    }
    s.handle_timeout(T + 600);
    s.handle_connected(T + 600);
    feed(
        &mut s,
        &[
            &welcome("alice"),
            r##"{"type":"join","room":"#lobby","name":"alice","ts":2}"##,
            r##"{"type":"topic","room":"#lobby","topic":"hi"}"##,
            r##"{"type":"members","room":"#lobby","names":["bob","alice"]}"##,
            r##"{"type":"history","room":"#lobby","messages":[],"more":false,"newer":false}"##,
            r##"{"type":"join","room":"#rust","name":"alice","ts":2}"##,
            r##"{"type":"topic","room":"#rust","topic":"crabs and ferris"}"##,
            r##"{"type":"members","room":"#rust","names":["alice","bob"]}"##,
        ],
    );
    let lobby = s.conversation("#lobby").unwrap();
    let added: Vec<&LineKind> = lobby
        .lines
        .iter()
        .skip(lines_before)
        .map(|l| &l.kind)
        .collect();
    // The disconnect notice and "connected": no second join line, topic or member list.
    assert_eq!(added.len(), 2, "{added:?}");
    assert!(
        matches!(added[1], LineKind::Notice(t) if t == "reconnected to t as alice"),
        "{added:?}"
    );
    // A topic that changed while away is news.
    assert!(
        s.conversation("#rust").unwrap().lines.iter().any(
            |l| matches!(&l.kind, LineKind::Topic { topic, .. } if topic == "crabs and ferris")
        )
    );
    events(&mut s);
    // The catch-up for #rust (not active) comes in two replies: both count as unread, and the
    // mention in it notifies.
    feed(
        &mut s,
        &[&format!(
            r##"{{"type":"history","room":"#rust","messages":[{}],"more":false,"newer":true}}"##,
            msg(2, "#rust", "bob", "missed").replace(r##""type":"message","##, ""),
        )],
    );
    feed(
        &mut s,
        &[&format!(
            r##"{{"type":"history","room":"#rust","messages":[{}],"more":false,"newer":false}}"##,
            msg(3, "#rust", "bob", "alice: you there?").replace(r##""type":"message","##, ""),
        )],
    );
    let rust = s.conversation("#rust").unwrap();
    assert_eq!((rust.unread, rust.mentions), (2, 1));
    let notified: Vec<_> = events(&mut s)
        .into_iter()
        .filter_map(|e| match e {
            Event::Notify { conversation, line } => Some((conversation, line.id)),
            _ => None,
        })
        .collect();
    assert_eq!(notified, vec![("#rust".to_string(), Some(3))]);
    // History asked for later is old news: not unread, no notification.
    feed(
        &mut s,
        &[&format!(
            r##"{{"type":"history","room":"#rust","messages":[{}],"more":false}}"##,
            msg(0, "#rust", "bob", "alice: ancient").replace(r##""type":"message","##, ""),
        )],
    );
    assert_eq!(s.conversation("#rust").unwrap().unread, 2);
    assert!(
        !events(&mut s)
            .iter()
            .any(|e| matches!(e, Event::Notify { .. }))
    );
}

#[test]
fn highlight_words_actions_and_direct_messages_notify() {
    let mut s = in_lobby(SessionConfig {
        highlights: vec!["deploy".into()],
        ..config()
    });
    events(&mut s);
    feed(
        &mut s,
        &[
            &msg(1, "#lobby", "bob", "the Deploy is done"),
            &msg(2, "#lobby", "bob", "nothing to see"),
            r##"{"type":"message","id":3,"ts":1,"room":"#lobby","from":"bob","text":"waves at alice","action":true}"##,
            r##"{"type":"direct","id":4,"ts":1,"from":"carol","to":"alice","text":"psst"}"##,
            // Your own words never notify you.
            &msg(5, "#lobby", "alice", "alice deploy"),
        ],
    );
    let notified: Vec<_> = events(&mut s)
        .into_iter()
        .filter_map(|e| match e {
            Event::Notify { conversation, line } => Some((conversation, line.id, line.mention)),
            _ => None,
        })
        .collect();
    assert_eq!(
        notified,
        vec![
            ("#lobby".to_string(), Some(1), true),
            ("#lobby".to_string(), Some(3), true),
            ("carol".to_string(), Some(4), false),
        ]
    );
}

#[test]
fn a_paste_longer_than_one_message_goes_out_as_several_in_order() {
    let mut s = online();
    // The welcome allows 4 lines and 400 bytes per message.
    let paste: String = (1..=10).map(|i| format!("line {i}\n")).collect();
    s.handle_input(T, paste.trim_end());
    let said: Vec<String> = sent(&mut s)
        .into_iter()
        .map(|m| match m {
            ClientMsg::Say { text, .. } => text,
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(
        said,
        vec![
            "line 1\nline 2\nline 3\nline 4",
            "line 5\nline 6\nline 7\nline 8",
            "line 9\nline 10",
        ]
    );
    // Each is one exactly-once message of its own.
    assert_eq!(s.unacked(), 3);
    // Windows and old Mac line breaks are line breaks too.
    s.handle_paste(T, "one\r\ntwo\rthree\r\n");
    assert_eq!(
        sent(&mut s),
        vec![ClientMsg::Say {
            room: "#lobby".into(),
            text: "one\ntwo\nthree".into(),
            cid: None,
            notice: false,
            tags: Default::default(),
        }]
    );
    s.handle_input(T, &format!("/me {}", "ab ".repeat(200)));
    let acts = sent(&mut s);
    assert_eq!(acts.len(), 2);
    assert!(
        acts.iter()
            .all(|m| matches!(m, ClientMsg::Me { text, .. } if text.len() <= 400))
    );
}

#[test]
fn away_is_sent_shown_and_answered_and_highlights_are_listed() {
    let mut s = online();
    s.handle_input(T, "/away lunch");
    s.handle_input(T, "/back");
    assert_eq!(
        sent(&mut s),
        vec![
            ClientMsg::Away {
                reason: Some("lunch".into())
            },
            ClientMsg::Away { reason: None },
        ]
    );
    feed(
        &mut s,
        &[
            r#"{"type":"away","name":"alice","reason":"lunch"}"#,
            r##"{"type":"members","room":"#lobby","names":["alice","bob"],"away":{"bob":"in a meeting"}}"##,
            r#"{"type":"direct","id":9,"ts":1,"from":"alice","to":"bob","text":"ping"}"#,
            r#"{"type":"away","name":"bob","reason":"in a meeting"}"#,
        ],
    );
    assert_eq!(s.away_reason("BOB"), Some("in a meeting"));
    assert!(notices(&s, "#lobby").contains(&"you are marked away: lunch".to_string()));
    assert!(
        notices(&s, "#lobby")
            .iter()
            .any(|t| t.contains("bob (away)")),
        "{:?}",
        notices(&s, "#lobby")
    );
    assert!(notices(&s, "bob").contains(&"bob is away: in a meeting".to_string()));
    // Back: the list forgets it.
    feed(&mut s, &[r#"{"type":"away","name":"bob"}"#]);
    assert_eq!(s.away_reason("bob"), None);
    // The highlights view lists mentions and direct messages from every conversation.
    feed(
        &mut s,
        &[
            &msg(20, "#lobby", "bob", "alice: lunch?"),
            r#"{"type":"direct","id":21,"ts":5,"from":"carol","to":"alice","text":"hi"}"#,
        ],
    );
    assert_eq!(s.highlights().count(), 2);
    s.handle_input(T, "/highlights");
    let shown = notices(&s, s.active().unwrap().name.clone().as_str());
    assert!(
        shown.iter().any(|t| t == "the last 2 highlights:"),
        "{shown:?}"
    );
    assert!(shown.iter().any(|t| t == "#lobby <bob> alice: lunch?"));
    assert!(shown.iter().any(|t| t == "carol <carol> hi"));
}

#[test]
fn read_markers_go_to_the_server_for_accounts_and_clear_unread_from_other_devices() {
    let mut s = online();
    s.handle_input(T, "/register hunter2hunter2");
    feed(
        &mut s,
        &[
            r#"{"type":"logged_in","account":"alice"}"#,
            &msg(1, "#lobby", "bob", "one"),
            &msg(2, "#lobby", "bob", "two"),
            r##"{"type":"join","room":"#rust","name":"alice","ts":1}"##,
        ],
    );
    sent(&mut s);
    // Leaving #lobby for #rust reads it up to its newest message.
    s.handle_input(T, "/switch #rust");
    assert_eq!(
        sent(&mut s),
        vec![ClientMsg::MarkRead {
            target: "#lobby".into(),
            id: 2
        }]
    );
    assert_eq!(s.conversation("#lobby").unwrap().read_marker, Some(2));
    // Nothing new: coming back and leaving again sends nothing.
    s.handle_input(T, "/switch #lobby");
    s.handle_input(T, "/switch #rust");
    assert!(sent(&mut s).is_empty());
    // New lines while away, then the phone reads #lobby up to 4: one line is left unread.
    feed(
        &mut s,
        &[
            &msg(3, "#lobby", "bob", "three"),
            &msg(4, "#lobby", "bob", "alice: four"),
            &msg(5, "#lobby", "bob", "five"),
        ],
    );
    let lobby = s.conversation("#lobby").unwrap();
    assert_eq!((lobby.unread, lobby.mentions), (3, 1));
    // The "new" line sits before the first message after the marker.
    let at = lobby.marker_position().unwrap();
    assert_eq!(lobby.lines[at].id, Some(3));
    events(&mut s);
    feed(
        &mut s,
        &[r##"{"type":"read_marker","target":"#LOBBY","id":4}"##],
    );
    let lobby = s.conversation("#lobby").unwrap();
    assert_eq!((lobby.unread, lobby.mentions), (1, 0));
    assert_eq!(lobby.lines[lobby.marker_position().unwrap()].id, Some(5));
    // The front-end is told, so a screen showing the counts redraws them.
    assert_eq!(events(&mut s), vec![Event::Read("#lobby".into())]);
    // An older marker changes nothing, and says nothing.
    feed(
        &mut s,
        &[r##"{"type":"read_marker","target":"#lobby","id":1}"##],
    );
    assert_eq!(s.conversation("#lobby").unwrap().read_marker, Some(4));
    assert!(events(&mut s).is_empty());
}

#[test]
fn a_guest_keeps_its_read_marker_locally() {
    let mut s = online();
    feed(
        &mut s,
        &[
            &msg(1, "#lobby", "bob", "one"),
            r##"{"type":"join","room":"#rust","name":"alice","ts":1}"##,
        ],
    );
    sent(&mut s);
    s.handle_input(T, "/switch #rust");
    assert!(sent(&mut s).is_empty(), "no account: nothing to sync");
    assert_eq!(s.conversation("#lobby").unwrap().read_marker, Some(1));
}

#[test]
fn search_asks_the_server_and_shows_the_results_with_their_ids_and_times() {
    let mut s = online();
    s.handle_input(T, "/search deploy disk");
    assert_eq!(
        sent(&mut s),
        vec![ClientMsg::Search {
            room: "#lobby".into(),
            query: "deploy disk".into(),
            before: None,
            limit: 20
        }]
    );
    feed(
        &mut s,
        &[
            r##"{"type":"search_results","room":"#lobby","query":"deploy disk","messages":[{"id":9,"ts":1700000000500,"room":"#lobby","from":"bob","text":"the deploy filled the disk"}],"more":true}"##,
        ],
    );
    let lines: Vec<(u64, String)> = s
        .conversation("#lobby")
        .unwrap()
        .lines
        .iter()
        .filter_map(|l| match &l.kind {
            LineKind::Notice(t) => Some((l.ts, t.clone())),
            _ => None,
        })
        .collect();
    assert!(
        lines
            .iter()
            .any(|(_, t)| t
                == "the 1 newest messages in #lobby with \"deploy disk\" (older ones too):"),
        "{lines:?}"
    );
    assert!(lines.contains(&(
        1_700_000_000_500,
        "#9 <bob> the deploy filled the disk".to_string()
    )));
    s.handle_input(T, "/search");
    assert!(sent(&mut s).is_empty(), "usage, not a request");
}

#[test]
fn a_message_that_waits_for_someone_offline_says_so_in_the_conversation() {
    let mut s = online();
    s.handle_input(T, "/msg bob see you tomorrow");
    sent(&mut s);
    feed(&mut s, &[r#"{"type":"offline","name":"bob"}"#]);
    let bob = s.conversation("bob").unwrap();
    assert!(bob.lines.iter().any(|l| matches!(&l.kind,
        LineKind::Notice(t) if t == "bob is not connected; they will get it when they next connect")));
}

#[test]
fn history_with_nothing_older_says_so() {
    let mut s = online();
    s.handle_input(T, "/history 5");
    sent(&mut s);
    feed(
        &mut s,
        &[r##"{"type":"history","room":"#lobby","messages":[],"more":false}"##],
    );
    assert!(
        s.active().unwrap().lines.iter().any(
            |l| matches!(&l.kind, LineKind::Notice(t) if t == "no earlier messages in #lobby")
        )
    );
}

#[test]
fn nick_colours_come_from_one_palette_none_is_red_or_yellow_and_your_own_is_none_of_them() {
    use chat_core::session::{NICK_COLOURS, nick_colour};
    assert!(NICK_COLOURS.len() >= 10);
    let mut seen = std::collections::HashSet::new();
    for c in NICK_COLOURS {
        assert!(seen.insert(c.rgb), "{c:?} twice");
        let [r, g, b] = c.rgb.map(i32::from);
        // Not red (errors, the read marker), not yellow (mentions in the terminals), not the
        // GUI's mention orange (#cb4b16).
        assert!(!(r > 150 && g < 100 && b < 100), "{c:?} is red");
        assert!(!(r > 200 && g > 200 && b < 100), "{c:?} is yellow");
        assert!(
            (r - 0xcb).abs() + (g - 0x4b).abs() + (b - 0x16).abs() > 120,
            "{c:?} is the mention orange"
        );
        // The xterm index stands for that RGB in the 6x6x6 cube.
        let level = |v: i32| {
            [0, 95, 135, 175, 215, 255]
                .iter()
                .position(|&l| l == v)
                .unwrap() as u8
        };
        assert_eq!(
            c.xterm,
            16 + 36 * level(r) + 6 * level(g) + level(b),
            "{c:?}"
        );
    }
    // The same person is the same colour whatever the case; you are none of them.
    assert_eq!(
        nick_colour("Alice", None),
        nick_colour("alice", Some("bob"))
    );
    assert_eq!(nick_colour("ALICE", Some("alice")), None);
    // Many names use most of the palette.
    let used: std::collections::HashSet<_> = (0..200)
        .filter_map(|i| nick_colour(&format!("user{i}"), None))
        .map(|c| c.xterm)
        .collect();
    assert!(used.len() >= NICK_COLOURS.len() - 1, "{used:?}");
}

#[test]
fn a_room_one_was_removed_from_stays_the_target_and_refuses_what_is_typed_there() {
    let mut s = online();
    feed(
        &mut s,
        &[
            r##"{"type":"join","room":"#mod","name":"alice","ts":1}"##,
            r##"{"type":"members","room":"#mod","names":["alice","op"]}"##,
            r##"{"type":"direct","id":5,"ts":1700000000005,"from":"bob","to":"alice","text":"psst"}"##,
        ],
    );
    s.handle_input(T, "/switch #mod");
    sent(&mut s);
    feed(
        &mut s,
        &[
            r##"{"type":"kick","room":"#mod","name":"alice","by":"op","reason":"off topic","ts":2}"##,
        ],
    );
    // Still where the user is, marked as left, with the reason in it.
    assert_eq!(s.active().map(|c| c.name.as_str()), Some("#mod"));
    assert!(s.active().unwrap().left);
    s.handle_input(T, "this was meant for #mod");
    assert!(
        sent(&mut s).is_empty(),
        "nothing goes to bob or anywhere else"
    );
    let last = s.active().unwrap().lines.back().unwrap();
    assert!(
        matches!(&last.kind, LineKind::Error(t) if t.contains("you are not in #mod")),
        "{last:?}"
    );
    // After a reconnect the room is not joined again behind the user's back...
    reconnect(&mut s, "reset");
    feed(&mut s, &[&welcome("alice")]);
    let rejoins: Vec<ClientMsg> = sent(&mut s)
        .into_iter()
        .filter(|m| matches!(m, ClientMsg::Join { room, .. } if room == "#mod"))
        .collect();
    assert!(rejoins.is_empty(), "{rejoins:?}");
    // ...and joining it again makes it a room to talk in.
    feed(
        &mut s,
        &[r##"{"type":"join","room":"#mod","name":"alice","ts":3}"##],
    );
    s.handle_input(T, "back");
    assert!(matches!(&sent(&mut s)[..], [ClientMsg::Say { room, .. }] if room == "#mod"));
}

#[test]
fn a_direct_message_is_echoed_where_the_user_is_and_an_away_answer_shows_once() {
    let mut s = online();
    s.handle_input(T, "/msg bob are you there?");
    assert!(matches!(&sent(&mut s)[..], [ClientMsg::Msg { to, .. }] if to == "bob"));
    assert!(notices(&s, "#lobby").contains(&"-> *bob* are you there?".to_string()));
    // A line for NickServ is sent, but its password is echoed nowhere.
    s.handle_input(T, "/msg NickServ IDENTIFY alice hunter2hunter2");
    assert!(matches!(&sent(&mut s)[..], [ClientMsg::Msg { to, .. }] if to == "NickServ"));
    assert!(
        !format!("{:?}", s.conversation("#lobby").unwrap().lines).contains("hunter2"),
        "the password was echoed"
    );
    // The server answers every message to someone away; the user hears it once, here.
    let away = r#"{"type":"away","name":"bob","reason":"lunch"}"#;
    feed(&mut s, &[away]);
    s.handle_input(T, "/msg bob still there?");
    sent(&mut s);
    feed(&mut s, &[away]);
    let said: Vec<String> = notices(&s, "#lobby")
        .into_iter()
        .filter(|t| t.contains("bob is away"))
        .collect();
    assert_eq!(said, ["bob is away: lunch"]);
}

#[test]
fn a_first_connection_that_fails_says_why_where_the_messages_go_once_per_reason() {
    let mut s = Session::new(config(), "alice");
    s.start(T);
    let why = "cannot connect to 127.0.0.1:1: Connection refused (os error 111)";
    s.handle_connect_failed(T, why);
    s.handle_timeout(T + 60_000);
    s.handle_connect_failed(T + 60_000, why);
    let errors: Vec<&LineKind> = s
        .status_lines()
        .iter()
        .map(|l| &l.kind)
        .filter(|k| matches!(k, LineKind::Error(_)))
        .collect();
    assert_eq!(errors, [&LineKind::Error(format!("{why}; trying again"))]);
}

#[test]
fn replies_quote_their_parent_and_reactions_count_under_it() {
    let mut s = online();
    feed(&mut s, &[&msg(10, "#lobby", "bob", "lunch at noon?")]);
    // /reply and /react answer the newest message from someone else.
    s.handle_input(T, "/reply sounds good");
    s.handle_input(T, "/react 👍");
    let tags = |pairs: &[(&str, &str)]| {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    };
    assert_eq!(
        sent(&mut s),
        vec![
            ClientMsg::Say {
                room: "#lobby".into(),
                text: "sounds good".into(),
                cid: None,
                notice: false,
                tags: tags(&[("draft/reply", "10")]),
            },
            ClientMsg::Tag {
                to: "#lobby".into(),
                tags: tags(&[("draft/react", "👍"), ("draft/reply", "10")]),
                cid: None,
            },
        ]
    );
    // What comes back: a reply (quoting bob's line), reactions from two people (one of them
    // twice, counted once), a notice, a reaction to something no longer in the scrollback
    // (nothing to count it under), and a typing notice (nothing shown).
    let said = |id: u64, from: &str, text: &str, extra: &str| {
        format!(
            r##"{{"type":"message","id":{id},"ts":{},"room":"#lobby","from":"{from}","text":"{text}"{extra}}}"##,
            T + id
        )
    };
    feed(
        &mut s,
        &[
            &said(
                11,
                "alice",
                "sounds good",
                r#","tags":{"draft/reply":"10"}"#,
            ),
            &said(
                12,
                "alice",
                "",
                r#","tags":{"draft/react":"👍","draft/reply":"10"}"#,
            ),
            &said(
                13,
                "carol",
                "",
                r#","tags":{"draft/react":"👍","draft/reply":"10"}"#,
            ),
            &said(
                14,
                "carol",
                "",
                r#","tags":{"draft/react":"👍","draft/reply":"10"}"#,
            ),
            &said(
                15,
                "carol",
                "",
                r#","tags":{"draft/react":"🎉","draft/reply":"10"}"#,
            ),
            &said(16, "bot", "build green", r#","notice":true"#),
            &said(
                17,
                "carol",
                "",
                r#","tags":{"draft/react":"👍","draft/reply":"3"}"#,
            ),
            &said(18, "carol", "", r#","tags":{"typing":"active"}"#),
        ],
    );
    let lobby = s.active().unwrap();
    let messages: Vec<_> = lobby.lines.iter().filter(|l| l.id.is_some()).collect();
    assert_eq!(messages.len(), 3, "{messages:#?}");
    let parent = messages[0];
    assert_eq!(parent.reaction_counts(), "👍 2  🎉 1");
    assert_eq!(parent.reactions[0].from, vec!["alice", "carol"]);
    let reply = messages[1].reply.as_ref().expect("a reply");
    assert_eq!(reply.id, 10);
    assert_eq!(reply.describe(), "<bob> lunch at noon?");
    assert!(messages[2].notice);
    let reacted: Vec<String> = std::iter::from_fn(|| s.poll_output())
        .filter_map(|o| match o {
            Output::Event(Event::Reacted {
                from, emoji, to, ..
            }) => Some(format!("{from} {emoji} {}", to.describe())),
            _ => None,
        })
        .collect();
    assert_eq!(
        reacted,
        vec![
            "alice 👍 <bob> lunch at noon?",
            "carol 👍 <bob> lunch at noon?",
            "carol 🎉 <bob> lunch at noon?"
        ]
    );
    // A typing notice is not a place to catch up from (it is not kept); a reaction is.
    reconnect(&mut s, "connection lost");
    feed(&mut s, &[&welcome("alice")]);
    let since = sent(&mut s).into_iter().find_map(|m| match m {
        ClientMsg::Join { since, .. } => since,
        _ => None,
    });
    assert_eq!(since, Some(17));
}

#[test]
fn reply_and_react_need_a_message_from_someone_else() {
    let mut s = online();
    s.handle_input(T, "/reply hello?");
    s.handle_input(T, "/react 👍");
    assert!(sent(&mut s).is_empty());
    let errors: Vec<String> = s
        .active()
        .unwrap()
        .lines
        .iter()
        .map(|l| format!("{:?}", l.kind))
        .collect();
    let errors = errors.join("\n");
    assert!(
        errors.contains("no message from someone else here to reply to"),
        "{errors}"
    );
    assert!(
        errors.contains("no message from someone else here to react to"),
        "{errors}"
    );
}
