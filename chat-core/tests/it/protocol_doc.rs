//! Every example in `docs/protocol.md` parses as the message kind its block says, and every
//! message type of the protocol has at least one example there.

use std::collections::BTreeSet;

use chat_core::codec::{decode_client, decode_server};

const DOC: &str = include_str!("../../../docs/protocol.md");

const CLIENT_TYPES: &[&str] = &[
    "hello", "nick", "join", "part", "say", "me", "msg", "topic", "who", "rooms", "history",
    "ping", "pong", "quit",
];
const SERVER_TYPES: &[&str] = &[
    "welcome",
    "join",
    "part",
    "quit",
    "nick",
    "message",
    "direct",
    "ack",
    "topic",
    "members",
    "room_list",
    "history",
    "ping",
    "pong",
    "error",
    "bye",
];

/// (side, line) for every line inside a ```jsonl client / ```jsonl server block.
fn examples() -> Vec<(&'static str, &'static str)> {
    let mut out = Vec::new();
    let mut side = None;
    for line in DOC.lines() {
        match (side, line.trim()) {
            (None, "```jsonl client") => side = Some("client"),
            (None, "```jsonl server") => side = Some("server"),
            (Some(_), "```") => side = None,
            (Some(s), l) if !l.is_empty() => out.push((s, l)),
            _ => {}
        }
    }
    out
}

#[test]
fn every_example_parses_and_every_type_is_documented() {
    let examples = examples();
    assert!(
        examples.len() > 30,
        "found only {} examples",
        examples.len()
    );
    let mut seen = BTreeSet::new();
    for (side, line) in examples {
        let kind = serde_json::from_str::<serde_json::Value>(line).unwrap()["type"]
            .as_str()
            .unwrap()
            .to_string();
        match side {
            "client" => {
                decode_client(line.as_bytes()).unwrap_or_else(|e| panic!("{line}: {e}"));
            }
            _ => {
                decode_server(line.as_bytes()).unwrap_or_else(|e| panic!("{line}: {e}"));
            }
        }
        seen.insert(format!("{side}:{kind}"));
    }
    for t in CLIENT_TYPES {
        assert!(
            seen.contains(&format!("client:{t}")),
            "client message {t} has no example"
        );
    }
    for t in SERVER_TYPES {
        assert!(
            seen.contains(&format!("server:{t}")),
            "server message {t} has no example"
        );
    }
}
