//! Every example in `docs/protocol.md` parses as the message kind its block says, and every
//! message type of the protocol has at least one example there.

use std::collections::BTreeSet;

use bytes::BytesMut;
use chat_core::codec::{CLIENT_TYPES, SERVER_TYPES, decode_client, decode_server, encode};

const DOC: &str = include_str!("../../../docs/protocol.md");

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
        // Each example parses, and encoding what it parsed to gives the same message back.
        let mut out = BytesMut::new();
        match side {
            "client" => {
                let msg = decode_client(line.as_bytes()).unwrap_or_else(|e| panic!("{line}: {e}"));
                encode(&msg, &mut out);
                let again = decode_client(out.strip_suffix(b"\n").unwrap()).unwrap();
                assert_eq!(again, msg, "{line} does not survive encoding");
            }
            _ => {
                let msg = decode_server(line.as_bytes()).unwrap_or_else(|e| panic!("{line}: {e}"));
                encode(&msg, &mut out);
                let again = decode_server(out.strip_suffix(b"\n").unwrap()).unwrap();
                assert_eq!(again, msg, "{line} does not survive encoding");
                // What the server writes is what the document shows, field for field.
                let written: serde_json::Value = serde_json::from_slice(&out).unwrap();
                let shown: serde_json::Value = serde_json::from_str(line).unwrap();
                assert_eq!(written, shown, "the server would write {line} differently");
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
