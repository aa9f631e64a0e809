//! Property tests of the codec: every message survives an encode/decode round trip, and no
//! sequence of bytes makes the decoder panic or hand out a line over the limit.

use bytes::BytesMut;
use chat_core::codec::{LineDecoder, SERVER_TYPES, decode_client, decode_server, encode};
use chat_core::protocol::{ChatMessage, ClientMsg, ErrorCode, Limits, RoomInfo, Secret, ServerMsg};
use proptest::prelude::*;

fn text() -> impl Strategy<Value = String> {
    // Any Unicode, newlines and quotes included: the JSON encoding must escape them.
    proptest::string::string_regex("(?s).{0,40}").unwrap()
}

fn client_msg() -> impl Strategy<Value = ClientMsg> {
    prop_oneof![
        (any::<u32>(), text(), proptest::option::of(secret())).prop_map(
            |(version, name, password)| ClientMsg::Hello {
                version,
                name,
                password
            }
        ),
        account_msg(),
        text().prop_map(|name| ClientMsg::Nick { name }),
        (text(), proptest::option::of(any::<u64>())).prop_map(|(room, since)| ClientMsg::Join {
            room,
            since,
            key: None
        }),
        (text(), proptest::option::of(text()))
            .prop_map(|(room, reason)| ClientMsg::Part { room, reason }),
        (text(), text(), proptest::option::of(text())).prop_map(|(room, text, cid)| {
            ClientMsg::Say {
                room,
                text,
                cid,
                notice: false,
                tags: Default::default(),
            }
        }),
        (text(), text(), proptest::option::of(text())).prop_map(|(room, text, cid)| {
            ClientMsg::Me {
                room,
                text,
                cid,
                tags: Default::default(),
            }
        }),
        (text(), text(), any::<bool>(), proptest::option::of(text())).prop_map(
            |(to, text, action, cid)| ClientMsg::Msg {
                to,
                text,
                action,
                cid,
                notice: false,
                tags: Default::default(),
            }
        ),
        (text(), proptest::option::of(text()))
            .prop_map(|(room, topic)| ClientMsg::Topic { room, topic }),
        (text(), proptest::option::of(text()))
            .prop_map(|(room, after)| ClientMsg::Who { room, after }),
        proptest::option::of(text()).prop_map(|after| ClientMsg::Rooms { after }),
        (
            text(),
            proptest::option::of(any::<u64>()),
            proptest::option::of(any::<u64>()),
            any::<u32>()
        )
            .prop_map(|(room, before, after, limit)| ClientMsg::History {
                room,
                before,
                after,
                before_ts: after,
                after_ts: before,
                latest: limit % 2 == 0,
                limit
            }),
        text().prop_map(|token| ClientMsg::Ping { token }),
        proptest::option::of(text()).prop_map(|reason| ClientMsg::Quit { reason }),
        proptest::option::of(text()).prop_map(|reason| ClientMsg::Away { reason }),
        (text(), any::<u64>()).prop_map(|(target, id)| ClientMsg::MarkRead { target, id }),
        (
            text(),
            text(),
            proptest::option::of(any::<u64>()),
            any::<u32>()
        )
            .prop_map(|(room, query, before, limit)| ClientMsg::Search {
                room,
                query,
                before,
                limit
            }),
    ]
}

fn secret() -> impl Strategy<Value = Secret> {
    text().prop_map(Secret::new)
}

/// The account commands.
fn account_msg() -> impl Strategy<Value = ClientMsg> {
    prop_oneof![
        secret().prop_map(|password| ClientMsg::Register { password }),
        (text(), secret()).prop_map(|(account, password)| ClientMsg::Login { account, password }),
        Just(ClientMsg::Logout {}),
        (secret(), secret()).prop_map(|(old, new)| ClientMsg::Passwd { old, new }),
        secret().prop_map(|password| ClientMsg::Unregister { password }),
    ]
}

fn chat() -> impl Strategy<Value = ChatMessage> {
    (
        any::<u64>(),
        any::<u64>(),
        text(),
        text(),
        text(),
        any::<bool>(),
    )
        .prop_map(|(id, ts, room, from, text, action)| ChatMessage {
            id,
            ts,
            room,
            from,
            text,
            action,
            notice: false,
            tags: Default::default(),
            bot: false,
        })
}

fn server_msg() -> impl Strategy<Value = ServerMsg> {
    prop_oneof![
        server_msg_more(),
        (
            text(),
            text(),
            proptest::option::of(text()),
            any::<[u32; 6]>(),
            proptest::option::of(text())
        )
            .prop_map(|(name, server, motd, l, account)| ServerMsg::Welcome {
                version: 1,
                name,
                server,
                motd,
                limits: Limits {
                    max_line: l[0],
                    max_text: l[1],
                    max_text_lines: l[2],
                    max_name: l[3],
                    flood_burst: l[4],
                    flood_rate: l[5],
                },
                account,
            }),
        text().prop_map(|account| ServerMsg::LoggedIn { account }),
        text().prop_map(|account| ServerMsg::LoggedOut { account }),
        text().prop_map(|account| ServerMsg::PasswordChanged { account }),
        text().prop_map(|account| ServerMsg::AccountDeleted { account }),
        (text(), text(), proptest::option::of(text()), any::<u64>()).prop_map(
            |(room, name, reason, ts)| ServerMsg::Part {
                room,
                name,
                reason,
                ts
            }
        ),
        (text(), text(), any::<u64>()).prop_map(|(old, new, ts)| ServerMsg::Nick { old, new, ts }),
        (
            any::<u64>(),
            any::<u64>(),
            text(),
            text(),
            text(),
            any::<bool>()
        )
            .prop_map(|(id, ts, from, to, text, action)| ServerMsg::Direct {
                id,
                ts,
                from,
                to,
                text,
                action,
                notice: false,
                tags: Default::default(),
                bot: false,
            }),
        (
            text(),
            text(),
            proptest::option::of(text()),
            proptest::option::of(any::<u64>())
        )
            .prop_map(|(room, topic, by, ts)| ServerMsg::Topic {
                room,
                topic,
                by,
                ts
            }),
    ]
}

/// The rest of the server messages (one `prop_oneof!` holds only so many).
fn server_msg_more() -> impl Strategy<Value = ServerMsg> {
    prop_oneof![
        (
            text(),
            proptest::collection::vec(text(), 0..4),
            any::<bool>(),
            proptest::option::of(text())
        )
            .prop_map(|(room, names, more, after)| ServerMsg::Members {
                roles: Default::default(),
                secret: more,
                away: names
                    .iter()
                    .take(1)
                    .map(|n| (n.clone(), "lunch".into()))
                    .collect(),
                room,
                names,
                more,
                after
            }),
        (text(), proptest::option::of(text()))
            .prop_map(|(name, reason)| ServerMsg::Away { name, reason }),
        (text(), any::<u64>()).prop_map(|(target, id)| ServerMsg::ReadMarker { target, id }),
        text().prop_map(|name| ServerMsg::Offline { name }),
        (text(), text(), any::<bool>()).prop_map(|(room, query, more)| {
            ServerMsg::SearchResults {
                room,
                query,
                messages: Vec::new(),
                more,
            }
        }),
        (
            proptest::collection::vec((text(), any::<u32>(), text()), 0..3),
            any::<bool>(),
            proptest::option::of(text())
        )
            .prop_map(|(rooms, more, after)| ServerMsg::RoomList {
                rooms: rooms
                    .into_iter()
                    .map(|(name, members, topic)| RoomInfo {
                        name,
                        members,
                        topic
                    })
                    .collect(),
                more,
                after
            }),
        text().prop_map(|token| ServerMsg::Ping { token }),
        text().prop_map(|token| ServerMsg::Pong { token }),
        chat().prop_map(ServerMsg::Message),
        (
            text(),
            proptest::collection::vec(chat(), 0..4),
            any::<bool>(),
            any::<bool>(),
            any::<bool>()
        )
            .prop_map(|(room, messages, more, newer, gap)| ServerMsg::History {
                room,
                messages,
                more,
                newer,
                gap
            }),
        (text(), text(), any::<u64>()).prop_map(|(room, name, ts)| ServerMsg::Join {
            room,
            name,
            ts
        }),
        (text(), text(), any::<u64>()).prop_map(|(name, reason, ts)| ServerMsg::Quit {
            name,
            reason,
            ts
        }),
        (text(), proptest::option::of(text())).prop_map(|(message, cid)| ServerMsg::Error {
            code: ErrorCode::Malformed,
            message,
            cid
        }),
        (text(), any::<u64>()).prop_map(|(cid, id)| ServerMsg::Ack { cid, id }),
        text().prop_map(|reason| ServerMsg::Bye { reason }),
    ]
}

proptest! {
    #[test]
    fn client_messages_round_trip(msgs in proptest::collection::vec(client_msg(), 1..8)) {
        let mut buf = BytesMut::new();
        for msg in &msgs {
            encode(msg, &mut buf);
        }
        let mut decoder = LineDecoder::new(1 << 20);
        let mut decoded = Vec::new();
        while let Some(line) = decoder.next_line(&mut buf) {
            decoded.push(decode_client(&line.unwrap()).unwrap());
        }
        prop_assert_eq!(decoded, msgs);
        prop_assert!(buf.is_empty());
    }

    #[test]
    fn server_messages_round_trip(msg in server_msg()) {
        let mut buf = BytesMut::new();
        encode(&msg, &mut buf);
        prop_assert_eq!(buf.iter().filter(|&&b| b == b'\n').count(), 1);
        let mut decoder = LineDecoder::new(1 << 20);
        let line = decoder.next_line(&mut buf).unwrap().unwrap();
        let kind = serde_json::from_slice::<serde_json::Value>(&line).unwrap()["type"]
            .as_str()
            .unwrap()
            .to_string();
        prop_assert!(SERVER_TYPES.contains(&kind.as_str()), "{} is not a known type", kind);
        prop_assert_eq!(decode_server(&line).unwrap(), msg);
    }

    #[test]
    fn decoder_never_panics_and_respects_the_limit(
        chunks in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..64), 0..32),
        max in 2usize..48,
    ) {
        let mut decoder = LineDecoder::new(max);
        let mut buf = BytesMut::new();
        for chunk in chunks {
            buf.extend_from_slice(&chunk);
            while let Some(line) = decoder.next_line(&mut buf) {
                if let Ok(line) = line {
                    prop_assert!(line.len() < max);
                    prop_assert!(!line.contains(&b'\n'));
                    let _ = decode_client(&line);
                    let _ = decode_server(&line);
                }
            }
            prop_assert!(buf.len() < max);
        }
    }

    #[test]
    fn json_shaped_garbage_never_panics(s in "\\{\"type\":\"[a-z_]{0,10}\"(,\"[a-z]{1,6}\":(\"[^\"]{0,5}\"|[0-9]{1,3}|null|true|\\[\\]))*\\}") {
        let _ = decode_client(s.as_bytes());
        let _ = decode_server(s.as_bytes());
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    /// The hub driven by arbitrary operations keeps its invariants (the fuzz target's driver).
    #[test]
    fn the_hub_keeps_its_invariants_under_arbitrary_operations(
        data in proptest::collection::vec(any::<u8>(), 0..400)
    ) {
        chat_core::fuzz::hub(&data);
    }

    /// The codec's fuzz driver, on proptest's inputs.
    #[test]
    fn the_codec_driver_holds(data in proptest::collection::vec(any::<u8>(), 0..300)) {
        chat_core::fuzz::codec(&data);
    }

    /// The IRC codec's fuzz driver, on proptest's inputs.
    #[test]
    fn the_irc_codec_driver_holds(data in proptest::collection::vec(any::<u8>(), 0..600)) {
        chat_core::fuzz::irc_codec(&data);
    }
}

/// Inputs the fuzzers once found a fault with; each stays a test.
#[test]
fn the_hub_driver_holds_on_inputs_that_once_failed() {
    let cases: &[&[u8]] = &[&[
        247, 48, 227, 26, 49, 0, 26, 49, 0, 26, 74, 63, 0, 0, 106, 96, 97, 110, 110, 255, 255, 255,
        255, 255, 255, 73, 26, 243, 26, 74, 249, 255, 255, 150, 77, 0, 96, 101, 110, 110, 255, 255,
        250, 250, 250, 250, 248, 250, 250, 72, 2, 255, 255, 255, 73, 26, 243, 152, 243, 255, 255,
        255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 243, 242, 243, 241,
        243, 0, 26, 74, 69, 255, 255, 150, 69, 69, 69, 118,
    ]];
    for case in cases {
        chat_core::fuzz::hub(case);
    }
}
