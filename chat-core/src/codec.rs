//! JSON Lines framing: one JSON object per `\n`-terminated line, with a bounded line length.
//!
//! The decoder reads from the caller's buffer and the encoder writes into the caller's buffer, so
//! the same code serves the tokio server, the client driver, and tests that feed raw bytes. A bad
//! line is reported as a [`FrameError`] and skipped: the connection can carry on with the next one.

use bytes::{Buf, BytesMut};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::protocol::{ClientMsg, ErrorCode, ServerMsg};

/// Default maximum line length in bytes, newline included.
pub const DEFAULT_MAX_LINE: usize = 16 * 1024;

/// Why one line could not become a message. The line is skipped; the stream stays usable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// The line exceeded the limit; everything up to its newline is discarded.
    #[error("line longer than {limit} bytes")]
    LineTooLong {
        /// The limit in force.
        limit: usize,
    },
    /// The line was not UTF-8.
    #[error("line is not valid UTF-8")]
    InvalidUtf8,
    /// The line was not JSON, not an object, lacked a `type`, or had fields of the wrong shape.
    #[error("malformed message: {0}")]
    Malformed(String),
    /// The `type` named no known message.
    #[error("unknown message type {0:?}")]
    UnknownType(String),
}

impl FrameError {
    /// The protocol error code that reports this failure to the peer.
    pub fn code(&self) -> ErrorCode {
        match self {
            FrameError::LineTooLong { .. } => ErrorCode::LineTooLong,
            FrameError::InvalidUtf8 => ErrorCode::InvalidUtf8,
            FrameError::Malformed(_) => ErrorCode::Malformed,
            FrameError::UnknownType(_) => ErrorCode::UnknownType,
        }
    }
}

/// Splits a byte stream into lines of bounded length.
///
/// Feed it the connection's read buffer; it consumes complete lines and leaves a partial line in
/// place. It holds no buffer of its own.
#[derive(Debug, Clone)]
pub struct LineDecoder {
    max_line: usize,
    /// True while skipping the rest of an oversized line whose newline has not arrived yet.
    discarding: bool,
    /// How far the buffer has been scanned for a newline, so a slowly arriving long line is not
    /// rescanned from the start on every read.
    scanned: usize,
}

impl LineDecoder {
    /// A decoder accepting lines of at most `max_line` bytes, newline included.
    pub fn new(max_line: usize) -> Self {
        Self {
            max_line: max_line.max(2),
            discarding: false,
            scanned: 0,
        }
    }

    /// The limit in force.
    pub fn max_line(&self) -> usize {
        self.max_line
    }

    /// Takes the next complete line out of `buf`, without its `\n` (and a `\r` before it).
    ///
    /// Returns `None` when no complete line is buffered yet. Blank lines are skipped. An
    /// oversized line yields one `Err(LineTooLong)` and is discarded through its newline, even if
    /// that newline arrives in later reads.
    pub fn next_line(&mut self, buf: &mut BytesMut) -> Option<Result<BytesMut, FrameError>> {
        loop {
            let start = self.scanned.min(buf.len());
            match buf[start..].iter().position(|&b| b == b'\n') {
                None => {
                    if self.discarding {
                        buf.clear();
                        self.scanned = 0;
                        return None;
                    }
                    if buf.len() >= self.max_line {
                        buf.clear();
                        self.scanned = 0;
                        self.discarding = true;
                        return Some(Err(FrameError::LineTooLong {
                            limit: self.max_line,
                        }));
                    }
                    self.scanned = buf.len();
                    return None;
                }
                Some(offset) => {
                    let end = start + offset;
                    self.scanned = 0;
                    if self.discarding {
                        buf.advance(end + 1);
                        self.discarding = false;
                        continue;
                    }
                    if end + 1 > self.max_line {
                        buf.advance(end + 1);
                        return Some(Err(FrameError::LineTooLong {
                            limit: self.max_line,
                        }));
                    }
                    let mut line = buf.split_to(end + 1);
                    line.truncate(end);
                    if line.last() == Some(&b'\r') {
                        line.truncate(end - 1);
                    }
                    if line.iter().all(|b| b.is_ascii_whitespace()) {
                        continue;
                    }
                    return Some(Ok(line));
                }
            }
        }
    }
}

impl Default for LineDecoder {
    fn default() -> Self {
        Self::new(DEFAULT_MAX_LINE)
    }
}

/// Message types a client may send, used to tell an unknown type from a malformed known one.
pub const CLIENT_TYPES: &[&str] = &[
    "hello",
    "nick",
    "join",
    "part",
    "say",
    "me",
    "msg",
    "topic",
    "who",
    "whois",
    "whowas",
    "people",
    "stats",
    "profile",
    "oper",
    "rooms",
    "history",
    "ping",
    "pong",
    "quit",
    "register",
    "login",
    "logout",
    "passwd",
    "unregister",
    "kick",
    "ban",
    "unban",
    "bans",
    "role",
    "mode",
    "invite",
    "kill",
    "server_ban",
    "server_unban",
    "server_bans",
    "close_room",
    "open_room",
    "connections",
    "away",
    "mark_read",
    "search",
];

/// Message types a server may send.
pub const SERVER_TYPES: &[&str] = &[
    "welcome",
    "logged_in",
    "logged_out",
    "operator",
    "whois",
    "whowas",
    "people",
    "stats",
    "password_changed",
    "account_deleted",
    "ack",
    "join",
    "part",
    "quit",
    "nick",
    "message",
    "direct",
    "topic",
    "members",
    "away",
    "read_marker",
    "search_results",
    "offline",
    "room_list",
    "history",
    "ping",
    "pong",
    "error",
    "bye",
    "kick",
    "ban",
    "unban",
    "ban_list",
    "role",
    "mode",
    "invite",
    "room_closed",
    "connections",
];

/// Parses one line (as returned by [`LineDecoder::next_line`]) as a client message.
pub fn decode_client(line: &[u8]) -> Result<ClientMsg, FrameError> {
    decode(line, CLIENT_TYPES)
}

/// Parses one line as a server message.
pub fn decode_server(line: &[u8]) -> Result<ServerMsg, FrameError> {
    decode(line, SERVER_TYPES)
}

fn decode<T: DeserializeOwned>(line: &[u8], known: &[&str]) -> Result<T, FrameError> {
    let text = std::str::from_utf8(line).map_err(|_| FrameError::InvalidUtf8)?;
    match serde_json::from_str::<T>(text) {
        Ok(msg) => Ok(msg),
        Err(err) => Err(classify(text, err, known)),
    }
}

/// Works out why a line failed to parse. Only runs on the error path.
fn classify(text: &str, err: serde_json::Error, known: &[&str]) -> FrameError {
    let value: serde_json::Value = match serde_json::from_str(text) {
        Ok(value) => value,
        Err(_) => return FrameError::Malformed(format!("not JSON: {err}")),
    };
    let Some(object) = value.as_object() else {
        return FrameError::Malformed("expected a JSON object".into());
    };
    match object.get("type").and_then(|t| t.as_str()) {
        None => FrameError::Malformed("missing string field \"type\"".into()),
        Some(kind) if !known.contains(&kind) => FrameError::UnknownType(truncate(kind, 64)),
        Some(_) => FrameError::Malformed(err.to_string()),
    }
}

fn truncate(s: &str, max_chars: usize) -> String {
    s.chars().take(max_chars).collect()
}

/// Appends `msg` to `out` as one JSON line.
pub fn encode<T: Serialize>(msg: &T, out: &mut BytesMut) {
    use bytes::BufMut;
    let mut writer = out.writer();
    // Serializing our own protocol types into memory cannot fail: they hold only strings,
    // integers, booleans and sequences of them.
    serde_json::to_writer(&mut writer, msg).expect("protocol types always serialize");
    writer.into_inner().put_u8(b'\n');
}

/// The wire format a connection speaks. The hub encodes each outgoing event once per format
/// in use among its recipients and shares the bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum Wire {
    /// The native JSON Lines protocol.
    #[default]
    Json,
    /// IRC, with these capabilities.
    Irc(crate::irc::Caps),
}

impl Wire {
    /// Whether a sender gets its own messages back (IRC only with `echo-message`; it gets
    /// nothing else in place of them).
    pub fn echoes(self) -> bool {
        match self {
            Wire::Json => true,
            Wire::Irc(caps) => caps.has(crate::irc::Cap::EchoMessage),
        }
    }

    /// Whether a client of this format is put in the default room when it registers. Native
    /// clients are; IRC clients pick their rooms themselves (autojoin), as IRC servers expect.
    pub fn joins_default_room(self) -> bool {
        matches!(self, Wire::Json)
    }

    /// The format with only what changes the bytes of a room event: connections with the same
    /// `encoding` share them.
    pub fn encoding(self) -> Wire {
        match self {
            Wire::Json => Wire::Json,
            Wire::Irc(caps) => Wire::Irc(caps.encoding()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(decoder: &mut LineDecoder, buf: &mut BytesMut) -> Vec<Result<String, FrameError>> {
        std::iter::from_fn(|| decoder.next_line(buf))
            .map(|r| r.map(|l| String::from_utf8(l.to_vec()).unwrap()))
            .collect()
    }

    #[test]
    fn splits_lines_and_keeps_partial_tail() {
        let mut d = LineDecoder::new(64);
        let mut buf = BytesMut::from(&b"one\r\ntwo\n\n  \nthr"[..]);
        assert_eq!(
            lines(&mut d, &mut buf),
            vec![Ok("one".into()), Ok("two".into())]
        );
        assert_eq!(&buf[..], b"thr");
        buf.extend_from_slice(b"ee\n");
        assert_eq!(lines(&mut d, &mut buf), vec![Ok("three".into())]);
    }

    #[test]
    fn oversized_line_is_reported_once_and_skipped_across_reads() {
        let mut d = LineDecoder::new(8);
        let mut buf = BytesMut::from(&b"0123456789"[..]);
        assert_eq!(
            lines(&mut d, &mut buf),
            vec![Err(FrameError::LineTooLong { limit: 8 })]
        );
        buf.extend_from_slice(b"abcdef");
        assert_eq!(lines(&mut d, &mut buf), vec![]);
        buf.extend_from_slice(b"gh\nok\n");
        assert_eq!(lines(&mut d, &mut buf), vec![Ok("ok".into())]);
    }

    #[test]
    fn oversized_complete_line_is_skipped() {
        let mut d = LineDecoder::new(8);
        let mut buf = BytesMut::from(&b"0123456789\nshort\n"[..]);
        assert_eq!(
            lines(&mut d, &mut buf),
            vec![
                Err(FrameError::LineTooLong { limit: 8 }),
                Ok("short".into())
            ]
        );
    }

    #[test]
    fn classifies_bad_lines() {
        assert_eq!(decode_client(b"\xff\xfe"), Err(FrameError::InvalidUtf8));
        assert!(matches!(
            decode_client(b"not json"),
            Err(FrameError::Malformed(_))
        ));
        assert!(matches!(
            decode_client(b"[1]"),
            Err(FrameError::Malformed(_))
        ));
        assert!(matches!(
            decode_client(br#"{"name":"x"}"#),
            Err(FrameError::Malformed(_))
        ));
        assert_eq!(
            decode_client(br#"{"type":"dance"}"#),
            Err(FrameError::UnknownType("dance".into()))
        );
        assert!(matches!(
            decode_client(br#"{"type":"say","room":5}"#),
            Err(FrameError::Malformed(_))
        ));
    }

    #[test]
    fn type_lists_match_the_enums() {
        use crate::protocol::*;
        let client = [
            ClientMsg::Rooms { after: None },
            ClientMsg::Quit { reason: None },
            ClientMsg::Ping { token: "t".into() },
        ];
        for msg in client {
            let mut out = BytesMut::new();
            encode(&msg, &mut out);
            let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
            assert!(CLIENT_TYPES.contains(&v["type"].as_str().unwrap()));
        }
        let mut out = BytesMut::new();
        encode(
            &ServerMsg::RoomList {
                rooms: vec![],
                more: false,
                after: None,
            },
            &mut out,
        );
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert!(SERVER_TYPES.contains(&v["type"].as_str().unwrap()));
    }
}
