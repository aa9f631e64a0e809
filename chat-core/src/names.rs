//! Names are identities: validation, comparison and look-alike detection for user and room names.
//!
//! - **Display form**: what the user typed, in NFC ([`normalize_name`], [`normalize_room`]).
//! - **Validation** by Unicode properties (ICU4X data), never by a hand-kept list of bad
//!   characters: a name may not contain any character of the general categories Cc, Cf, Cs, Co,
//!   Cn, Zl, Zp or Zs, nor a default-ignorable code point; it may not start with a combining mark;
//!   and it must show something (a name of only blank glyphs such as U+2800 is refused).
//! - **Key** ([`key`]): what two names are compared by. Compatibility normalisation (NFKC) and
//!   full Unicode case folding, repeated to a fixed point, so `ΑΣ` = `ασ`, `ſam` = `sam`,
//!   `ＡＬＩＣＥ` = `alice`, and `key(key(x)) == key(x)`.
//! - **Skeleton** ([`skeleton`]): the UTS #39 confusable skeleton of the key. Two different
//!   names with the same skeleton look alike (`аlice` with a Cyrillic `а`, `alice`); the hub
//!   refuses a new name or room that looks like one in use.
//!
//! User names also keep clear of the characters IRC gives a meaning to (`,*?!@` anywhere, and
//! a leading `:$&#+%~`), so the same names work for IRC clients.

use icu_casemap::CaseMapper;
use icu_properties::props::{DefaultIgnorableCodePoint, GeneralCategory, SoftDotted};
use icu_properties::{CodePointMapData, CodePointSetData};
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
    /// Contains a space, a control, format or invisible character, or another forbidden one.
    #[error("name contains a forbidden character {:?} (U+{:04X})", .0, *.0 as u32)]
    ForbiddenChar(char),
    /// Starts with a combining mark, which would attach to whatever is shown before it.
    #[error("name starts with a combining mark {:?} (U+{:04X})", .0, *.0 as u32)]
    LeadingMark(char),
    /// Nothing in it would be visible.
    #[error("name has no visible character")]
    Invisible,
    /// A room name must start with `#`.
    #[error("room name must start with '#'")]
    MissingHash,
}

/// Characters no user name may contain: separators and wildcards in IRC.
const NAME_FORBIDDEN: &[char] = &[',', '*', '?', '!', '@'];
/// Characters a user name may not start with: rooms and IRC membership prefixes.
const NAME_FORBIDDEN_FIRST: &[char] = &[':', '$', '&', '#', '+', '%', '~'];

/// Normalises a user name to NFC and checks it (see the module documentation). Returns the
/// display form.
pub fn normalize_name(raw: &str) -> Result<String, NameError> {
    let name: String = raw.nfc().collect();
    check_chars(&name, MAX_NAME_CHARS)?;
    if let Some(c) = name.chars().find(|c| NAME_FORBIDDEN.contains(c)) {
        return Err(NameError::ForbiddenChar(c));
    }
    if let Some(c) = name
        .chars()
        .next()
        .filter(|c| NAME_FORBIDDEN_FIRST.contains(c))
    {
        return Err(NameError::ForbiddenChar(c));
    }
    Ok(name)
}

/// Normalises a room name to NFC and checks it: `#` then 1 to 49 characters under the same
/// rules as user names, and no comma. Returns the display form.
pub fn normalize_room(raw: &str) -> Result<String, NameError> {
    let room: String = raw.nfc().collect();
    let Some(rest) = room.strip_prefix('#') else {
        return Err(if room.is_empty() {
            NameError::Empty
        } else {
            NameError::MissingHash
        });
    };
    if room.chars().count() > MAX_ROOM_CHARS {
        return Err(NameError::TooLong {
            max: MAX_ROOM_CHARS,
        });
    }
    // The length is checked above, on the whole name.
    check_chars(rest, usize::MAX)?;
    if let Some(c) = room.chars().find(|&c| c == ',') {
        return Err(NameError::ForbiddenChar(c));
    }
    Ok(room)
}

/// The case-insensitive key of a name or room name: see the module documentation. Two names
/// with the same key are the same name.
pub fn key(name: &str) -> String {
    if name.is_ascii() {
        return name.to_ascii_lowercase();
    }
    let folder = CaseMapper::new();
    let mut current: String = name.nfkc().collect();
    // Folding can produce text that normalises into something foldable again (and back);
    // a few rounds reach the fixed point, which makes the key idempotent.
    for _ in 0..4 {
        let folded = folder.fold_string(&current);
        let next: String = folded.nfkc().collect();
        if next == current {
            break;
        }
        current = next;
    }
    current
}

/// The UTS #39 skeletons a name can be seen as: of the name as typed, of its key, and of its
/// key in capitals. Two names look alike when they share one. Case folding alone would hide
/// look-alikes: `I` (capital i) looks like `l`, but folds to `i`; so `aIice` is compared as
/// typed (`alice`), and `ALlCE` as `ALICE` would be written. Each skeleton is keyed again, so
/// case stays out of the comparison, and a combining dot above after a soft-dotted letter
/// (`i\u{307}`, `\u{131}\u{307}`) is the dot the letter already shows.
pub fn skeletons(name: &str) -> Vec<String> {
    let typed: String = name.nfc().collect();
    let folded = key(&typed);
    let capitals = folded.to_uppercase();
    let mut all = Vec::with_capacity(3);
    for form in [typed.as_str(), folded.as_str(), capitals.as_str()] {
        let s = skeleton_of(form);
        if !all.contains(&s) {
            all.push(s);
        }
    }
    all
}

/// Names IRC users write to as services (`/msg NickServ IDENTIFY password`): nobody may hold
/// one, or a look-alike of one, so that nobody can collect what is meant for them.
pub const SERVICE_NAMES: &[&str] = &[
    "NickServ", "ChanServ", "OperServ", "MemoServ", "HostServ", "BotServ", "SaslServ",
];

/// True when `name` is a service's name or looks like one ([`SERVICE_NAMES`]).
pub fn is_service(name: &str) -> bool {
    let mine = skeletons(name);
    SERVICE_NAMES
        .iter()
        .any(|s| skeletons(s).iter().any(|k| mine.contains(k)))
}

/// The one skeleton of a name's key, for rooms (whose names are compared as keys anyway) and
/// for name patterns (see [`skeleton_pattern`]).
pub fn skeleton(name: &str) -> String {
    skeleton_of(&key(name))
}

/// A name pattern (`*` any run, `?` one character) with its literal runs turned into
/// skeletons, so that it matches what [`skeletons`] gives of a look-alike name.
pub fn skeleton_pattern(pattern: &str) -> String {
    let mut out = String::with_capacity(pattern.len());
    let mut run = String::new();
    for c in pattern.chars() {
        if c == '*' || c == '?' {
            if !run.is_empty() {
                out.push_str(&skeleton_of(&std::mem::take(&mut run)));
            }
            out.push(c);
        } else {
            run.push(c);
        }
    }
    if !run.is_empty() {
        out.push_str(&skeleton_of(&run));
    }
    out
}

fn skeleton_of(form: &str) -> String {
    let soft_dotted = CodePointSetData::new::<SoftDotted>();
    let raw: String = unicode_security::confusable_detection::skeleton(form).collect();
    // The skeleton is in NFD: drop a dot above that follows a soft-dotted letter (or one the
    // skeleton turned into one), which draws no second dot.
    let mut undotted = String::with_capacity(raw.len());
    let mut after_soft = false;
    for c in raw.chars() {
        if c == '\u{307}' && after_soft {
            continue;
        }
        after_soft = soft_dotted.contains(c);
        undotted.push(c);
    }
    // The skeleton of `I` is `l`: keying it again keeps case out of the comparison.
    key(&undotted)
}

fn check_chars(s: &str, max: usize) -> Result<(), NameError> {
    if s.is_empty() {
        return Err(NameError::Empty);
    }
    if s.chars().count() > max {
        return Err(NameError::TooLong { max });
    }
    let category = CodePointMapData::<GeneralCategory>::new();
    let ignorable = CodePointSetData::new::<DefaultIgnorableCodePoint>();
    for (i, c) in s.chars().enumerate() {
        let gc = category.get(c);
        let forbidden = matches!(
            gc,
            GeneralCategory::Control
                | GeneralCategory::Format
                | GeneralCategory::Surrogate
                | GeneralCategory::PrivateUse
                | GeneralCategory::Unassigned
                | GeneralCategory::LineSeparator
                | GeneralCategory::ParagraphSeparator
                | GeneralCategory::SpaceSeparator
        ) || ignorable.contains(c)
            || c.is_whitespace();
        if forbidden {
            return Err(NameError::ForbiddenChar(c));
        }
        if i == 0
            && matches!(
                gc,
                GeneralCategory::NonspacingMark
                    | GeneralCategory::SpacingMark
                    | GeneralCategory::EnclosingMark
            )
        {
            return Err(NameError::LeadingMark(c));
        }
    }
    if s.chars().all(is_blank_glyph) {
        return Err(NameError::Invisible);
    }
    Ok(())
}

/// Graphic characters (by category) that draw nothing: a name must have something else.
fn is_blank_glyph(c: char) -> bool {
    let gc = CodePointMapData::<GeneralCategory>::new().get(c);
    matches!(
        gc,
        GeneralCategory::NonspacingMark | GeneralCategory::EnclosingMark
    ) || c == '\u{2800}'
}

/// `*` matches any run of characters, `?` one character.
pub fn glob(pattern: &str, text: &str) -> bool {
    let (p, t): (Vec<char>, Vec<char>) = (pattern.chars().collect(), text.chars().collect());
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ti));
            pi += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == '*')
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
        assert_eq!(
            normalize_name("ada_lovelace-2"),
            Ok("ada_lovelace-2".into())
        );
        assert_eq!(normalize_name("😀"), Ok("😀".into()));
        assert_eq!(normalize_name(&"a".repeat(32)).map(|n| n.len()), Ok(32));
    }

    #[test]
    fn keys_fold_case_fully() {
        assert_eq!(key("ΑΣ"), key("ασ"));
        assert_eq!(key("ΑΣ"), key("ας"));
        assert_eq!(key("ſam"), key("sam"));
        assert_eq!(key("STRASSE"), key("straße"));
        assert_eq!(key("ＡＬＩＣＥ"), key("alice"));
        assert_ne!(key("alice"), key("alicf"));
    }

    #[test]
    fn skeletons_catch_look_alikes() {
        assert_eq!(skeleton("\u{430}lice"), skeleton("alice"));
        assert_eq!(skeleton("paypa1"), skeleton("PAYPAL"));
        assert_ne!(skeleton("alice"), skeleton("bob"));
        let alike = |a: &str, b: &str| skeletons(a).iter().any(|s| skeletons(b).contains(s));
        for fake in [
            "aIice",
            "ALlCE",
            "ali\u{307}ce",
            "al\u{131}\u{307}ce",
            "al\u{131}ce",
            "\u{430}lice",
            "AL\u{406}CE",
        ] {
            assert!(alike(fake, "alice"), "{fake:?} passes for alice");
        }
        assert!(alike("BiII", "Bill"));
        assert!(alike("bIll", "Bill"));
        assert!(!alike("alice", "bob"));
        assert!(!alike("alina", "alice"));
        // Patterns: literal runs become skeletons, wildcards stay.
        let pattern = skeleton_pattern("spam*");
        assert!(
            skeletons("sp\u{430}mmer")
                .iter()
                .any(|s| s.starts_with(pattern.trim_end_matches('*')))
        );
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
        for c in [
            '\u{200B}',
            '\u{2066}',
            '\u{2069}',
            '\u{202E}',
            '\u{AD}',
            '\u{61C}',
            '\u{180E}',
            '\u{E0041}',
            '\u{3164}',
            '\u{115F}',
            '\u{FFA0}',
            '\u{34F}',
            '\u{FE0F}',
            '\u{E000}',
            '\u{2028}',
            '\u{2029}',
            '\u{3000}',
            '\u{A0}',
            '\u{378}',
        ] {
            assert_eq!(
                normalize_name(&format!("a{c}b")),
                Err(NameError::ForbiddenChar(c)),
                "U+{:04X}",
                c as u32
            );
        }
        assert_eq!(
            normalize_name("\u{301}"),
            Err(NameError::LeadingMark('\u{301}'))
        );
        assert_eq!(
            normalize_name("\u{301}abc"),
            Err(NameError::LeadingMark('\u{301}'))
        );
        assert_eq!(normalize_name("\u{2800}"), Err(NameError::Invisible));
        assert_eq!(normalize_name("#x"), Err(NameError::ForbiddenChar('#')));
        assert_eq!(normalize_name("a,b"), Err(NameError::ForbiddenChar(',')));
        assert_eq!(normalize_name("n!u@h"), Err(NameError::ForbiddenChar('!')));
        assert_eq!(normalize_name(":x"), Err(NameError::ForbiddenChar(':')));
    }

    #[test]
    fn rooms() {
        assert_eq!(normalize_room("#rust"), Ok("#rust".into()));
        assert_eq!(normalize_room("#c++"), Ok("#c++".into()));
        assert_eq!(normalize_room("rust"), Err(NameError::MissingHash));
        assert_eq!(normalize_room("#"), Err(NameError::Empty));
        assert_eq!(normalize_room("#a,b"), Err(NameError::ForbiddenChar(',')));
        assert_eq!(
            normalize_room("#\u{301}"),
            Err(NameError::LeadingMark('\u{301}'))
        );
        assert_eq!(
            normalize_room("#a\u{2066}b"),
            Err(NameError::ForbiddenChar('\u{2066}'))
        );
        assert_eq!(normalize_room("#\u{2800}"), Err(NameError::Invisible));
        let longest = format!("#{}", "r".repeat(49));
        assert_eq!(normalize_room(&longest), Ok(longest.clone()));
        assert_eq!(
            normalize_room(&format!("#{}", "r".repeat(50))),
            Err(NameError::TooLong { max: 50 })
        );
    }
}
