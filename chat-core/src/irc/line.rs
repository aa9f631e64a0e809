//! One IRC line: parsing what a client sends and writing what the server sends, per RFC 1459 /
//! 2812 as modern.ircdocs.horse describes them, with the IRCv3 message-tags syntax and escapes.
//!
//! Strict where it matters and lenient where clients differ: a line is UTF-8 or it is refused;
//! the tag section may take [`MAX_TAGS`] bytes and the rest [`MAX_BODY`] (both counting what
//! the spec counts); runs of spaces between parameters count as one.

use bytes::{BufMut, BytesMut};

/// Most bytes of a line after its tags, `\r\n` included (RFC 1459's 512).
pub const MAX_BODY: usize = 512;
/// Most bytes of a line's tag section, its `@` and the space after it included.
pub const MAX_TAGS: usize = 8191;
/// Most bytes of the tag section of a line a client sends (IRCv3 message-tags: 4094 bytes of
/// tag data, with its `@` and the space after it).
pub const MAX_CLIENT_TAGS: usize = 4096;
/// Most bytes a line may take on the wire, to size the line decoder.
pub const MAX_LINE: usize = MAX_TAGS + MAX_BODY;
/// Most parameters a message has; further words belong to the last one (RFC 2812).
pub const MAX_PARAMS: usize = 15;

/// Why a line could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LineError {
    /// The line, or its tag section, is over the limit.
    #[error("input line was too long")]
    TooLong,
    /// The line is not UTF-8.
    #[error("line is not valid UTF-8")]
    InvalidUtf8,
    /// No command (an empty line, a source or tags with nothing after them).
    #[error("line has no command")]
    NoCommand,
    /// The command is neither a word (a letter, then letters, digits and `_`) nor a
    /// three-digit number.
    #[error("invalid command {0:?}")]
    BadCommand(String),
}

/// One IRC message.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Message {
    /// Tags, unescaped, in order: key and value (`None` for a tag without `=`).
    pub tags: Vec<(String, Option<String>)>,
    /// The source (`nick!user@host` or a server name), without its `:`.
    pub source: Option<String>,
    /// The command, upper-cased (`PRIVMSG`, `001`).
    pub command: String,
    /// The parameters, the trailing one included, without its `:`.
    pub params: Vec<String>,
}

impl Message {
    /// A message with this command and these parameters.
    pub fn new(command: &str, params: &[&str]) -> Self {
        Self {
            tags: Vec::new(),
            source: None,
            command: command.to_string(),
            params: params.iter().map(|p| (*p).to_string()).collect(),
        }
    }

    /// The value of a tag, if present (a tag without a value gives `Some("")`).
    pub fn tag(&self, key: &str) -> Option<&str> {
        self.tags
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_deref().unwrap_or(""))
    }

    /// Parameter `i`, if there.
    pub fn param(&self, i: usize) -> Option<&str> {
        self.params.get(i).map(String::as_str)
    }
}

/// Parses one line a client sent, without its line ending: [`parse`], with the tag section held
/// to what a client may send ([`MAX_CLIENT_TAGS`]).
pub fn parse_client(line: &[u8]) -> Result<Message, LineError> {
    if line.first() == Some(&b'@') {
        let tags = line.iter().position(|&b| b == b' ').unwrap_or(line.len()) + 1;
        if tags > MAX_CLIENT_TAGS {
            return Err(LineError::TooLong);
        }
    }
    parse(line)
}

/// Parses one line without its line ending (as [`crate::codec::LineDecoder`] yields it).
pub fn parse(line: &[u8]) -> Result<Message, LineError> {
    parse_with(line, true)
}

/// Parses a line the server wrote, which may pass 512 bytes by its source (see
/// [`crate::irc::encode`]): [`parse`] without the length limits.
pub fn parse_sent(line: &[u8]) -> Result<Message, LineError> {
    parse_with(line, false)
}

fn parse_with(line: &[u8], limits: bool) -> Result<Message, LineError> {
    let (tag_part, body) = match line.first() {
        Some(b'@') => match line.iter().position(|&b| b == b' ') {
            Some(space) => (&line[1..space], &line[space + 1..]),
            None => (&line[1..], &line[line.len()..]),
        },
        _ => (&line[..0], line),
    };
    if limits && !tag_part.is_empty() && tag_part.len() + 2 > MAX_TAGS {
        return Err(LineError::TooLong);
    }
    if limits && body.len() + 2 > MAX_BODY {
        return Err(LineError::TooLong);
    }
    let tag_part = std::str::from_utf8(tag_part).map_err(|_| LineError::InvalidUtf8)?;
    let body = std::str::from_utf8(body).map_err(|_| LineError::InvalidUtf8)?;
    let mut msg = Message::default();
    for tag in tag_part.split(';').filter(|t| !t.is_empty()) {
        let (key, value) = match tag.split_once('=') {
            // A value that unescapes to nothing (`a=`, or `a=\` with a lone backslash) is no value.
            Some((k, v)) => (k, Some(unescape(v)).filter(|u| !u.is_empty())),
            None => (tag, None),
        };
        // A key is `[+][vendor/]name` of letters, digits, `-`, `.` and `/`; others are dropped.
        let name = key.strip_prefix('+').unwrap_or(key);
        let valid = !name.is_empty()
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'/'));
        if !valid {
            continue;
        }
        // A later tag with the same key replaces an earlier one (message-tags).
        msg.tags.retain(|(k, _)| k != key);
        msg.tags.push((key.to_string(), value));
    }
    let mut rest = body.trim_start_matches(' ');
    if let Some(source) = rest.strip_prefix(':') {
        let (src, after) = source.split_once(' ').unwrap_or((source, ""));
        msg.source = Some(src.to_string());
        rest = after.trim_start_matches(' ');
    }
    let (command, mut rest) = rest.split_once(' ').unwrap_or((rest, ""));
    if command.is_empty() {
        return Err(LineError::NoCommand);
    }
    let numeric = command.len() == 3 && command.bytes().all(|b| b.is_ascii_digit());
    let word = command
        .bytes()
        .next()
        .is_some_and(|b| b.is_ascii_alphabetic())
        && command
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_');
    if !numeric && !word {
        return Err(LineError::BadCommand(command.chars().take(32).collect()));
    }
    msg.command = command.to_ascii_uppercase();
    loop {
        rest = rest.trim_start_matches(' ');
        if rest.is_empty() {
            break;
        }
        if let Some(trailing) = rest.strip_prefix(':') {
            msg.params.push(trailing.to_string());
            break;
        }
        if msg.params.len() == MAX_PARAMS - 1 {
            msg.params.push(rest.to_string());
            break;
        }
        let (param, after) = rest.split_once(' ').unwrap_or((rest, ""));
        msg.params.push(param.to_string());
        rest = after;
    }
    Ok(msg)
}

/// Appends `msg` to `out` as one line ending in `\r\n`. The last parameter is written as a
/// trailing one (`:`) when it must be (empty, has a space, starts with `:`) or always when
/// `msg.params` says so through [`write_with_trailing`].
pub fn write(msg: &Message, out: &mut BytesMut) {
    write_with_trailing(msg, false, out);
}

/// [`write`], with the last parameter always written as a trailing one when `trailing` is set
/// (text such as a PRIVMSG body, so clients see the same shape whatever the text).
pub fn write_with_trailing(msg: &Message, trailing: bool, out: &mut BytesMut) {
    if !msg.tags.is_empty() {
        out.put_u8(b'@');
        for (i, (key, value)) in msg.tags.iter().enumerate() {
            if i > 0 {
                out.put_u8(b';');
            }
            out.put_slice(key.as_bytes());
            if let Some(value) = value.as_deref().filter(|v| !v.is_empty()) {
                out.put_u8(b'=');
                escape_into(value, out);
            }
        }
        out.put_u8(b' ');
    }
    if let Some(source) = &msg.source {
        out.put_u8(b':');
        out.put_slice(source.as_bytes());
        out.put_u8(b' ');
    }
    out.put_slice(msg.command.as_bytes());
    let last = msg.params.len().saturating_sub(1);
    for (i, param) in msg.params.iter().enumerate() {
        out.put_u8(b' ');
        let needs = param.is_empty() || param.contains(' ') || param.starts_with(':');
        if i == last && (trailing || needs) {
            out.put_u8(b':');
        }
        out.put_slice(param.as_bytes());
    }
    out.put_slice(b"\r\n");
}

/// Escapes a tag value (message-tags: `;` space `\` CR LF).
pub fn escape_into(value: &str, out: &mut BytesMut) {
    for c in value.chars() {
        match c {
            ';' => out.put_slice(b"\\:"),
            ' ' => out.put_slice(b"\\s"),
            '\\' => out.put_slice(b"\\\\"),
            '\r' => out.put_slice(b"\\r"),
            '\n' => out.put_slice(b"\\n"),
            c => {
                let mut buf = [0u8; 4];
                out.put_slice(c.encode_utf8(&mut buf).as_bytes());
            }
        }
    }
}

/// Unescapes a tag value: the inverse of [`escape_into`]; an unknown escape is the character
/// itself and a lone `\` at the end is dropped, as the spec says.
pub fn unescape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    let mut chars = value.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some(':') => out.push(';'),
            Some('s') => out.push(' '),
            Some('r') => out.push('\r'),
            Some('n') => out.push('\n'),
            Some(other) => out.push(other),
            None => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn line(msg: &Message) -> String {
        let mut out = BytesMut::new();
        write(msg, &mut out);
        String::from_utf8(out.to_vec()).unwrap()
    }

    #[test]
    fn parses_the_parts() {
        let m =
            parse(b"@label=a\\sb;+draft/x;time=1 :nick!u@h privmsg #room :hello there").unwrap();
        assert_eq!(m.tag("label"), Some("a b"));
        assert_eq!(m.tag("+draft/x"), Some(""));
        assert_eq!(m.source.as_deref(), Some("nick!u@h"));
        assert_eq!(m.command, "PRIVMSG");
        assert_eq!(m.params, vec!["#room", "hello there"]);
        let m = parse(b"JOIN  #a,#b   key").unwrap();
        assert_eq!(m.params, vec!["#a,#b", "key"]);
        let m = parse(b"PRIVMSG #r ::-) ok").unwrap();
        assert_eq!(m.params, vec!["#r", ":-) ok"]);
        let m = parse(b"TOPIC #r :").unwrap();
        assert_eq!(m.params, vec!["#r", ""]);
        let m = parse(b"001").unwrap();
        assert_eq!(m.command, "001");
        // Tags with empty or malformed keys are dropped.
        let m = parse(b"@=x;;a*b;+;ok=1 PING t").unwrap();
        assert_eq!(m.tags, vec![("ok".to_string(), Some("1".to_string()))]);
        // A value that unescapes to nothing is no value, as `a=` is.
        let m = parse(b"@a=\\;b= PING t").unwrap();
        assert_eq!(
            m.tags,
            vec![("a".to_string(), None), ("b".to_string(), None)]
        );
    }

    #[test]
    fn refuses_bad_lines() {
        assert_eq!(parse(b""), Err(LineError::NoCommand));
        assert_eq!(parse(b"@a=b"), Err(LineError::NoCommand));
        assert_eq!(parse(b":src"), Err(LineError::NoCommand));
        assert_eq!(
            parse(b"PRIV-MSG x"),
            Err(LineError::BadCommand("PRIV-MSG".into()))
        );
        assert_eq!(parse(b"12 x"), Err(LineError::BadCommand("12".into())));
        assert_eq!(parse(b"PRIVMSG #r :\xff"), Err(LineError::InvalidUtf8));
        let long = format!("PRIVMSG #r :{}", "x".repeat(498));
        assert_eq!(long.len(), 510);
        assert!(parse(long.as_bytes()).is_ok());
        let longer = format!("{long}x");
        assert_eq!(parse(longer.as_bytes()), Err(LineError::TooLong));
        // A client's tags: 4096 bytes with the `@` and the space, no more.
        let client = format!("@+a={} PING x", "v".repeat(MAX_CLIENT_TAGS - 5));
        assert!(parse_client(client.as_bytes()).is_ok());
        let client = format!("@+a={} PING x", "v".repeat(MAX_CLIENT_TAGS - 4));
        assert_eq!(parse_client(client.as_bytes()), Err(LineError::TooLong));
        // "@a=" and the space after the tags count too: 8191 bytes in all is the most.
        let tags = format!("@a={} PING x", "v".repeat(MAX_TAGS - 4));
        assert!(parse(tags.as_bytes()).is_ok());
        let tags = format!("@a={} PING x", "v".repeat(MAX_TAGS - 3));
        assert!(parse(tags.as_bytes()) == Err(LineError::TooLong));
    }

    #[test]
    fn fifteen_parameters_at_most() {
        let words: Vec<String> = (0..20).map(|i| i.to_string()).collect();
        let m = parse(format!("CMD {}", words.join(" ")).as_bytes()).unwrap();
        assert_eq!(m.params.len(), MAX_PARAMS);
        assert_eq!(m.params[14], "14 15 16 17 18 19");
    }

    #[test]
    fn writes_trailing_only_when_needed() {
        assert_eq!(line(&Message::new("JOIN", &["#a"])), "JOIN #a\r\n");
        assert_eq!(line(&Message::new("TOPIC", &["#a", ""])), "TOPIC #a :\r\n");
        assert_eq!(
            line(&Message::new("PRIVMSG", &["#a", "hi there"])),
            "PRIVMSG #a :hi there\r\n"
        );
        let mut m = Message::new("PRIVMSG", &["#a", ":)"]);
        m.tags.push(("time".into(), Some("x;y z\\".into())));
        m.tags.push(("flag".into(), None));
        m.source = Some("srv".into());
        assert_eq!(line(&m), "@time=x\\:y\\sz\\\\;flag :srv PRIVMSG #a ::)\r\n");
    }

    #[test]
    fn unescapes_per_spec() {
        assert_eq!(unescape("a\\:b\\sc\\\\d\\re\\nf"), "a;b c\\d\re\nf");
        assert_eq!(unescape("\\b"), "b");
        assert_eq!(unescape("end\\"), "end");
    }

    fn param() -> impl Strategy<Value = String> {
        "[^ \r\n\0:][^ \r\n\0]{0,20}"
    }

    proptest! {
        #[test]
        fn round_trips(
            tags in proptest::collection::vec(("\\+?[a-z][a-z0-9./-]{0,9}", proptest::option::of("[^\0]{1,20}")), 0..4),
            source in proptest::option::of("[a-z]{1,8}![a-z]{1,8}@[a-z.]{1,12}"),
            command in "[A-Z]{1,10}|[0-9]{3}",
            middle in proptest::collection::vec(param(), 0..8),
            trailing in proptest::option::of("[^\r\n\0]{0,40}"),
        ) {
            let mut tag_list: Vec<(String, Option<String>)> = Vec::new();
            for (k, v) in tags {
                tag_list.retain(|(key, _)| *key != k);
                tag_list.push((k, v));
            }
            let mut params = middle;
            params.extend(trailing);
            let msg = Message { tags: tag_list, source, command, params };
            let mut out = BytesMut::new();
            write(&msg, &mut out);
            prop_assert!(out.ends_with(b"\r\n"));
            let back = parse(&out[..out.len() - 2]).unwrap();
            prop_assert_eq!(back, msg);
        }

        #[test]
        fn never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
            let _ = parse(&bytes);
        }

        #[test]
        fn parsed_lines_write_back_to_the_same_message(text in "[ -~]{0,200}") {
            if let Ok(msg) = parse(text.as_bytes()) {
                let mut out = BytesMut::new();
                write(&msg, &mut out);
                prop_assert_eq!(parse(&out[..out.len() - 2]).unwrap(), msg);
            }
        }
    }
}
