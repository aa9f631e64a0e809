//! IRC as a second wire format onto the same hub: a sans-IO codec and a per-connection
//! adapter, with nothing of IRC in the hub's rules.
//!
//! - [`line`]: one IRC line, parsed and written (message-tags escapes, 512/8191-byte limits).
//! - [`encode`]: hub messages as IRC lines. Room events (a message, a join, a mode change) are
//!   the same for every IRC client with the same [`Caps::encoding`], so the hub encodes each
//!   once per such flavour and shares the bytes; answers to one client (numerics) are rendered
//!   by that client's [`Adapter`].
//! - [`adapter`]: one IRC connection: registration (`CAP`, `NICK`, `USER`, `PASS`), commands
//!   translated to [`crate::protocol::ClientMsg`], and the hub's answers turned into numerics.
//!
//! Names need no translation: user names already keep clear of what IRC reserves
//! ([`crate::names`]) and room names start with `#`. Names compare by [`crate::names::key`]
//! (NFKC and full Unicode case folding), advertised as `CASEMAPPING=rfc8265`, the PRECIS
//! mapping it agrees with for every name the rules accept.

pub mod adapter;
pub mod encode;
pub mod line;

pub use adapter::{Action, Adapter};
pub use line::{LineError, Message};

/// A client capability the server offers (IRCv3 `CAP`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u16)]
pub enum Cap {
    /// `message-tags`: tags on messages, `msgid` among them.
    MessageTags = 1,
    /// `server-time`: a `time` tag with the server's timestamp on every event.
    ServerTime = 1 << 1,
    /// `echo-message`: a client gets its own messages back, once they are stored.
    EchoMessage = 1 << 2,
    /// `batch`: history sent on join is framed as a `chathistory` batch.
    Batch = 1 << 3,
    /// `multi-prefix`: every membership prefix in NAMES and WHO.
    MultiPrefix = 1 << 4,
    /// `cap-notify`: implied by `CAP LS 302`; nothing changes at run time.
    CapNotify = 1 << 5,
    /// `sasl`: log in to an account (PLAIN) before registration.
    Sasl = 1 << 6,
    /// `draft/chathistory`: the CHATHISTORY command, answered from the store.
    Chathistory = 1 << 7,
    /// `draft/multiline`: a message of several lines is one batch, both ways.
    Multiline = 1 << 8,
    /// `away-notify`: `AWAY` when someone sharing a channel goes away or comes back.
    AwayNotify = 1 << 9,
    /// `userhost-in-names`: NAMES lists `nick!user@host`.
    UserhostInNames = 1 << 10,
    /// `labeled-response`: a command's whole answer carries the client's label (one line
    /// labeled, several in a `labeled-response` batch, none an `ACK`).
    LabeledResponse = 1 << 11,
    /// `setname`: `SETNAME` changes one's real name, and tells those sharing a room.
    Setname = 1 << 12,
    /// `extended-monitor`: MONITOR also tells of the monitored nicks' away and real-name
    /// changes (with `away-notify` and `setname`), sharing a channel or not.
    ExtendedMonitor = 1 << 13,
}

impl Cap {
    /// Every capability offered, in the order `CAP LS` lists them.
    pub const ALL: [Cap; 14] = [
        Cap::AwayNotify,
        Cap::Batch,
        Cap::CapNotify,
        Cap::Chathistory,
        Cap::Multiline,
        Cap::EchoMessage,
        Cap::ExtendedMonitor,
        Cap::LabeledResponse,
        Cap::MessageTags,
        Cap::MultiPrefix,
        Cap::Sasl,
        Cap::ServerTime,
        Cap::Setname,
        Cap::UserhostInNames,
    ];

    /// Its name in `CAP`.
    pub fn name(self) -> &'static str {
        match self {
            Cap::MessageTags => "message-tags",
            Cap::ServerTime => "server-time",
            Cap::EchoMessage => "echo-message",
            Cap::Batch => "batch",
            Cap::MultiPrefix => "multi-prefix",
            Cap::CapNotify => "cap-notify",
            Cap::Sasl => "sasl",
            Cap::Chathistory => "draft/chathistory",
            Cap::Multiline => "draft/multiline",
            Cap::AwayNotify => "away-notify",
            Cap::UserhostInNames => "userhost-in-names",
            Cap::LabeledResponse => "labeled-response",
            Cap::Setname => "setname",
            Cap::ExtendedMonitor => "extended-monitor",
        }
    }

    /// The capability of that name, if offered.
    pub fn from_name(name: &str) -> Option<Cap> {
        Cap::ALL.into_iter().find(|c| c.name() == name)
    }
}

/// A set of capabilities.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Caps(u16);

impl Caps {
    /// Whether `cap` is in the set.
    pub fn has(self, cap: Cap) -> bool {
        self.0 & cap as u16 != 0
    }

    /// The set with `cap` added or removed.
    #[must_use]
    pub fn with(self, cap: Cap, on: bool) -> Caps {
        if on {
            Caps(self.0 | cap as u16)
        } else {
            Caps(self.0 & !(cap as u16))
        }
    }

    /// Only the capabilities that change how a room event is written: clients that agree on
    /// these get the same bytes.
    pub fn encoding(self) -> Caps {
        Caps(
            self.0
                & (Cap::MessageTags as u16
                    | Cap::ServerTime as u16
                    | Cap::Multiline as u16
                    | Cap::AwayNotify as u16
                    | Cap::Setname as u16),
        )
    }

    /// The names of the capabilities in the set, space-separated.
    pub fn names(self) -> String {
        Cap::ALL
            .into_iter()
            .filter(|c| self.has(*c))
            .map(Cap::name)
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// What the IRC side says about the server, fixed at start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerInfo {
    /// The server's name, the source of numerics (`:chat.example.org 001 ...`).
    pub name: String,
    /// The network name in 005 `NETWORK`.
    pub network: String,
    /// The software and version in 002 and 004.
    pub version: String,
    /// When the server started, shown in 003.
    pub created: String,
    /// Longest topic in bytes (005 `TOPICLEN`).
    pub topic_len: usize,
    /// Most rooms one connection may be in (005 `CHANLIMIT`).
    pub max_rooms: usize,
    /// Longest kick, ban or quit reason in characters (005 `KICKLEN`).
    pub reason_len: usize,
    /// Longest message text in bytes (`draft/multiline` `max-bytes`).
    pub max_text: usize,
    /// Most lines in one message (`draft/multiline` `max-lines`).
    pub max_lines: usize,
}

impl Default for ServerInfo {
    fn default() -> Self {
        Self {
            name: "chat-server".into(),
            network: "chat".into(),
            version: concat!("chat-server-", env!("CARGO_PKG_VERSION")).into(),
            created: "at start".into(),
            topic_len: 390,
            max_rooms: 50,
            reason_len: 300,
            max_text: 4096,
            max_lines: 20,
        }
    }
}

/// A user's source as IRC writes it: `nick!nick@host`. Addresses are not shown; the host is
/// the server's name.
pub fn mask(nick: &str, server: &ServerInfo) -> String {
    format!("{nick}!{nick}@{}", server.name)
}

/// A timestamp as the `time` tag writes it: `2026-11-26T07:00:00.123Z`.
pub fn time_tag(ts: crate::protocol::UnixMillis) -> String {
    let ts = i64::try_from(ts).unwrap_or(i64::MAX);
    match chrono::DateTime::from_timestamp_millis(ts) {
        Some(t) => t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string(),
        None => "1970-01-01T00:00:00.000Z".into(),
    }
}

/// Parses a `timestamp=` criterion of CHATHISTORY (or a `time` tag) into milliseconds.
pub fn parse_time(text: &str) -> Option<crate::protocol::UnixMillis> {
    let t = chrono::DateTime::parse_from_rfc3339(text).ok()?;
    u64::try_from(t.timestamp_millis()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_sets_and_names() {
        let caps = Caps::default()
            .with(Cap::ServerTime, true)
            .with(Cap::EchoMessage, true)
            .with(Cap::MultiPrefix, true);
        assert!(caps.has(Cap::EchoMessage));
        assert!(!caps.has(Cap::Batch));
        assert_eq!(caps.names(), "echo-message multi-prefix server-time");
        assert_eq!(caps.encoding(), Caps::default().with(Cap::ServerTime, true));
        assert_eq!(
            caps.with(Cap::EchoMessage, false).names(),
            "multi-prefix server-time"
        );
        for cap in Cap::ALL {
            assert_eq!(Cap::from_name(cap.name()), Some(cap));
        }
        assert_eq!(Cap::from_name("sasl"), Some(Cap::Sasl));
        assert_eq!(Cap::from_name("draft/bogus"), None);
    }

    #[test]
    fn times_both_ways() {
        assert_eq!(time_tag(1_764_140_400_123), "2025-11-26T07:00:00.123Z");
        assert_eq!(
            parse_time("2025-11-26T07:00:00.123Z"),
            Some(1_764_140_400_123)
        );
        assert_eq!(parse_time("yesterday"), None);
    }
}
