//! Validation and comparison of user names and room names.
//!
//! Names are compared case-insensitively after Unicode NFC normalisation, so `Zoë` typed with a
//! combining diaeresis and `zoë` typed precomposed are the same user. The key form is what the hub
//! indexes by; the display form is what everyone sees.

use unicode_normalization::UnicodeNormalization;

/// Longest user name, in characters after normalisation.
pub const MAX_NAME_CHARS: usize = 32;
/// Longest room name, in characters, the leading `#` included.
pub const MAX_ROOM_CHARS: usize = 50;

/// Why a name was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    /// Nothing left after normalisation.
    #[error("name is empty")]
    Empty,
    /// Over the character limit.
    #[error("name is longer than {max} characters")]
    TooLong {
        /// The limit.
        max: usize,
    },
    /// Contains a space, a control character or another forbidden character.
    #[error("name contains a forbidden character {0:?}")]
    ForbiddenChar(char),
    /// A room name must start with `#`.
    #[error("room name must start with '#'")]
    MissingHash,
}

/// Normalises a user name to NFC and checks it: 1 to 32 characters, no whitespace, no control
/// characters, and not starting with `#` (which marks rooms). Returns the display form.
pub fn normalize_name(raw: &str) -> Result<String, NameError> {
    let name: String = raw.nfc().collect();
    check_chars(&name, MAX_NAME_CHARS)?;
    if name.starts_with('#') {
        return Err(NameError::ForbiddenChar('#'));
    }
    Ok(name)
}

/// Normalises a room name to NFC and checks it: `#` then 1 to 49 characters, no whitespace,
/// control characters or commas. Returns the display form.
pub fn normalize_room(raw: &str) -> Result<String, NameError> {
    let room: String = raw.nfc().collect();
    if !room.starts_with('#') {
        return Err(if room.is_empty() {
            NameError::Empty
        } else {
            NameError::MissingHash
        });
    }
    if room.chars().count() < 2 {
        return Err(NameError::Empty);
    }
    check_chars(&room, MAX_ROOM_CHARS)?;
    if let Some(c) = room.chars().find(|&c| c == ',') {
        return Err(NameError::ForbiddenChar(c));
    }
    Ok(room)
}

/// The case-insensitive key of an already normalised name or room name.
pub fn key(normalized: &str) -> String {
    normalized.to_lowercase()
}

fn check_chars(s: &str, max: usize) -> Result<(), NameError> {
    if s.is_empty() {
        return Err(NameError::Empty);
    }
    if s.chars().count() > max {
        return Err(NameError::TooLong { max });
    }
    if let Some(c) = s
        .chars()
        .find(|c| c.is_whitespace() || c.is_control() || is_invisible(*c))
    {
        return Err(NameError::ForbiddenChar(c));
    }
    Ok(())
}

/// Format characters that would let two different names look identical.
fn is_invisible(c: char) -> bool {
    matches!(c, '\u{200B}'..='\u{200F}' | '\u{2028}'..='\u{202E}' | '\u{2060}'..='\u{2064}' | '\u{FEFF}')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_and_normalises_names() {
        assert_eq!(normalize_name("alice"), Ok("alice".into()));
        // "Zoe" + combining diaeresis becomes the precomposed form.
        assert_eq!(normalize_name("Zoe\u{308}"), Ok("Zo\u{eb}".into()));
        assert_eq!(key("Zo\u{eb}"), key(&normalize_name("ZOE\u{308}").unwrap()));
        assert_eq!(normalize_name("日本語"), Ok("日本語".into()));
        assert_eq!(normalize_name(&"a".repeat(32)).map(|n| n.len()), Ok(32));
    }

    #[test]
    fn rejects_bad_names() {
        assert_eq!(normalize_name(""), Err(NameError::Empty));
        assert_eq!(
            normalize_name(&"a".repeat(33)),
            Err(NameError::TooLong { max: 32 })
        );
        assert_eq!(normalize_name("a b"), Err(NameError::ForbiddenChar(' ')));
        assert_eq!(
            normalize_name("a\u{7}"),
            Err(NameError::ForbiddenChar('\u{7}'))
        );
        assert_eq!(
            normalize_name("a\u{200B}b"),
            Err(NameError::ForbiddenChar('\u{200B}'))
        );
        assert_eq!(normalize_name("#x"), Err(NameError::ForbiddenChar('#')));
    }

    #[test]
    fn rooms() {
        assert_eq!(normalize_room("#rust"), Ok("#rust".into()));
        assert_eq!(normalize_room("rust"), Err(NameError::MissingHash));
        assert_eq!(normalize_room("#"), Err(NameError::Empty));
        assert_eq!(normalize_room("#a,b"), Err(NameError::ForbiddenChar(',')));
        assert_eq!(
            normalize_room(&format!("#{}", "r".repeat(50))),
            Err(NameError::TooLong { max: 50 })
        );
    }
}
