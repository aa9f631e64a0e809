//! Long lists come in pages that each fit the line limit, and following `after` yields every
//! entry exactly once.

use chat_core::hub::{ConnId, Hub, HubConfig, Input, Output};
use chat_core::protocol::{ClientMsg, ServerMsg};

fn replies(hub: &mut Hub, to: ConnId) -> Vec<(usize, ServerMsg)> {
    let mut out = Vec::new();
    while let Some(o) = hub.poll_output() {
        if let Output::Transmit { to: who, bytes } = o
            && who.contains(&to)
        {
            for line in bytes.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
                out.push((
                    line.len() + 1,
                    chat_core::codec::decode_server(line).unwrap(),
                ));
            }
        }
    }
    out
}

fn send(hub: &mut Hub, conn: ConnId, msg: ClientMsg) {
    hub.handle(
        0,
        Input::Frame {
            conn,
            frame: Ok(msg),
        },
    );
}

#[test]
fn members_and_rooms_page_within_the_line_limit() {
    let max_line = 400;
    let mut hub = Hub::new(HubConfig {
        max_line,
        flood_rate: 0,
        room_create_per_minute: 0,
        ..HubConfig::default()
    });
    for i in 1..=60u64 {
        let conn = ConnId(i);
        hub.handle(
            0,
            Input::Connect {
                conn,
                addr: std::net::Ipv4Addr::LOCALHOST.into(),
                wire: Default::default(),
            },
        );
        send(
            &mut hub,
            conn,
            ClientMsg::Hello {
                version: 1,
                name: format!("member{i:02}"),
                password: None,
            },
        );
        send(
            &mut hub,
            conn,
            ClientMsg::Join {
                room: format!("#room{i:02}"),
                since: None,
                key: None,
            },
        );
    }
    let me = ConnId(1);
    replies(&mut hub, me);

    let mut names = Vec::new();
    let mut after = None;
    let mut pages = 0;
    loop {
        send(
            &mut hub,
            me,
            ClientMsg::Who {
                room: "#lobby".into(),
                after: after.clone(),
            },
        );
        let got = replies(&mut hub, me);
        let [
            (
                len,
                ServerMsg::Members {
                    names: page, more, ..
                },
            ),
        ] = &got[..]
        else {
            panic!("{got:?}");
        };
        assert!(*len <= max_line, "a members line of {len} bytes");
        names.extend(page.iter().cloned());
        pages += 1;
        if !more {
            break;
        }
        after = page.last().cloned();
    }
    assert!(pages > 1, "the list needed several pages");
    let expected: Vec<String> = (1..=60).map(|i| format!("member{i:02}")).collect();
    assert_eq!(names, expected);

    let mut rooms = Vec::new();
    let mut after = None;
    loop {
        send(
            &mut hub,
            me,
            ClientMsg::Rooms {
                after: after.clone(),
            },
        );
        let got = replies(&mut hub, me);
        let [
            (
                len,
                ServerMsg::RoomList {
                    rooms: page, more, ..
                },
            ),
        ] = &got[..]
        else {
            panic!("{got:?}");
        };
        assert!(*len <= max_line, "a room list line of {len} bytes");
        rooms.extend(page.iter().map(|r| r.name.clone()));
        if !more {
            break;
        }
        after = page.last().map(|r| r.name.clone());
    }
    assert_eq!(rooms.len(), 61, "60 rooms and #lobby, each once: {rooms:?}");
}

#[test]
fn history_pages_are_capped_at_200_and_default_to_50() {
    let mut hub = Hub::new(HubConfig {
        flood_rate: 0,
        history: 1000,
        ..HubConfig::default()
    });
    let me = ConnId(1);
    hub.handle(
        0,
        Input::Connect {
            conn: me,
            addr: std::net::Ipv4Addr::LOCALHOST.into(),
            wire: Default::default(),
        },
    );
    send(
        &mut hub,
        me,
        ClientMsg::Hello {
            version: 1,
            name: "pager".into(),
            password: None,
        },
    );
    for i in 0..250 {
        send(
            &mut hub,
            me,
            ClientMsg::Say {
                room: "#lobby".into(),
                text: format!("m{i}"),
                cid: None,
                notice: false,
                tags: Default::default(),
            },
        );
    }
    replies(&mut hub, me);
    let mut count = |limit: u32| {
        send(
            &mut hub,
            me,
            ClientMsg::History {
                room: "#lobby".into(),
                before: None,
                after: None,
                before_ts: None,
                after_ts: None,
                latest: false,
                limit,
            },
        );
        match &replies(&mut hub, me)[..] {
            [(_, ServerMsg::History { messages, more, .. })] => (messages.len(), *more),
            other => panic!("{other:?}"),
        }
    };
    assert_eq!(count(1000), (200, true), "capped at 200");
    assert_eq!(count(7), (7, true));
    let default = chat_core::codec::decode_client(br##"{"type":"history","room":"#lobby"}"##);
    hub.handle(
        0,
        Input::Frame {
            conn: me,
            frame: default,
        },
    );
    match &replies(&mut hub, me)[..] {
        [(_, ServerMsg::History { messages, .. })] => assert_eq!(messages.len(), 50),
        other => panic!("{other:?}"),
    }
}
