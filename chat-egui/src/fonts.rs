//! Fonts for every script people write in: egui's built-in fonts cover Latin, Greek, Cyrillic
//! and many emoji, not CJK, Hebrew or Arabic. [`install`] asks fontconfig (`fc-list`, present
//! wherever there is a desktop) for a system font that has a character of each missing script,
//! and adds each one found as a fallback after egui's own fonts, so text that egui can draw
//! looks as before and the rest is drawn instead of shown as empty boxes. Nothing is bundled:
//! a CJK font alone is several megabytes, and the system's is the one its user reads.
//!
//! Right-to-left text: egui lays text out left to right, so [`visual`] reorders a line with
//! right-to-left runs (Hebrew, Arabic) into display order with the Unicode bidirectional
//! algorithm. Numbers inside such a run keep their own left-to-right order.
//!
//! Arabic: egui draws one glyph per character and does no shaping, so Arabic letters would
//! stand apart in their isolated forms. [`visual`] first replaces each letter with its joined
//! form for its place in the word (initial, medial, final, and the lam-alef ligatures) from
//! Unicode's Arabic presentation forms, with `ar-reshaper` (a port of python-arabic-reshaper,
//! the usual answer for renderers without a shaper); the fonts found for Arabic carry those
//! forms. A full shaper (rustybuzz) would need egui to lay out glyph runs it does not accept.

use std::borrow::Cow;
use std::process::Command;

use eframe::egui;

/// One character of each script to cover, with the script's name.
const SCRIPTS: [(char, &str); 8] = [
    ('日', "CJK"),
    ('한', "Hangul"),
    ('א', "Hebrew"),
    ('ا', "Arabic"),
    // The joined forms that `visual` draws Arabic with (lam-alef, a final alef).
    ('\u{FEFB}', "Arabic forms"),
    ('\u{FE8E}', "Arabic forms"),
    ('🎉', "emoji"),
    ('✅', "symbols"),
];

/// Largest font file loaded (a full CJK collection is about 20 MB; anything bigger is skipped).
const MAX_FONT_BYTES: u64 = 40 * 1024 * 1024;

/// Adds system fonts for the scripts egui's own fonts lack. Returns the files added.
pub fn install(ctx: &egui::Context) -> Vec<String> {
    let mut defs = egui::FontDefinitions::default();
    let added = add_system_fonts(&mut defs);
    ctx.set_fonts(defs);
    added
}

/// Adds to `defs` a system font for each script they cannot draw. Returns the files added.
pub fn add_system_fonts(defs: &mut egui::FontDefinitions) -> Vec<String> {
    let mut added: Vec<String> = Vec::new();
    for (probe, script) in SCRIPTS {
        if covered(defs, probe) {
            continue;
        }
        let Some((file, index)) = font_for(probe) else {
            continue;
        };
        if added.contains(&file) {
            continue;
        }
        let too_big = std::fs::metadata(&file).map_or(true, |m| m.len() > MAX_FONT_BYTES);
        if too_big {
            continue;
        }
        let Ok(bytes) = std::fs::read(&file) else {
            continue;
        };
        let mut data = egui::FontData::from_owned(bytes);
        data.index = index;
        let name = format!("system {script}");
        defs.font_data.insert(name.clone(), data.into());
        for family in [egui::FontFamily::Proportional, egui::FontFamily::Monospace] {
            defs.families.entry(family).or_default().push(name.clone());
        }
        added.push(file);
    }
    added
}

/// True when one of egui's built-in fonts already has `c` (checked by parsing them).
fn covered(defs: &egui::FontDefinitions, c: char) -> bool {
    use skrifa::MetadataProvider;
    defs.font_data.values().any(|data| {
        let bytes: &[u8] = (*data.font).as_ref();
        skrifa::FontRef::from_index(bytes, data.index).is_ok_and(|f| f.charmap().map(c).is_some())
    })
}

/// A regular-weight system font that has `c`: its file and its index in a collection.
fn font_for(c: char) -> Option<(String, u32)> {
    let output = Command::new("fc-list")
        .arg("-f")
        .arg("%{file}|%{index}\n")
        .arg(format!(":charset={:x}", c as u32))
        .output()
        .ok()?;
    let list = String::from_utf8_lossy(&output.stdout);
    let mut fonts: Vec<(String, u32)> = list
        .lines()
        .filter_map(|l| {
            let (file, index) = l.rsplit_once('|')?;
            Some((file.to_string(), index.parse().unwrap_or(0)))
        })
        .filter(|(file, _)| {
            file.ends_with(".ttf") || file.ends_with(".otf") || file.ends_with(".ttc")
        })
        .collect();
    // Plain styles first; then a stable order.
    fonts.sort_by_key(|(file, _)| {
        let styled = ["Bold", "Italic", "Oblique", "Condensed", "Light", "Mono"]
            .iter()
            .filter(|s| file.contains(*s))
            .count();
        (styled, file.clone())
    });
    fonts.into_iter().next()
}

/// True for characters written right to left (bidirectional class R or AL).
fn is_rtl(c: char) -> bool {
    use unicode_bidi::BidiClass;
    matches!(unicode_bidi::bidi_class(c), BidiClass::R | BidiClass::AL)
}

/// `text` in display order: unchanged unless it has right-to-left characters, otherwise each
/// line shaped (Arabic letters in their joined forms) and reordered by the Unicode
/// bidirectional algorithm, each line with its own direction.
pub fn visual(text: &str) -> Cow<'_, str> {
    if !text.chars().any(is_rtl) {
        return Cow::Borrowed(text);
    }
    let reshaper = ar_reshaper::ArabicReshaper::default();
    let lines: Vec<String> = text
        .split('\n')
        .map(|line| {
            let shaped;
            let line = if reshaper.need_reshape(line) {
                shaped = reshaper.reshape(line);
                shaped.as_str()
            } else {
                line
            };
            let info = unicode_bidi::BidiInfo::new(line, None);
            match info.paragraphs.first() {
                Some(p) => info.reorder_line(p, p.range.clone()).into_owned(),
                None => line.to_string(),
            }
        })
        .collect();
    Cow::Owned(lines.join("\n"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hebrew_is_shown_right_to_left_with_numbers_left_to_right() {
        assert_eq!(visual("plain text 123"), "plain text 123");
        // "shalom 2026" in Hebrew: the letters reverse, the number does not.
        assert_eq!(visual("שלום 2026"), "2026 םולש");
        // A Hebrew word inside English stays in place, itself reversed.
        assert_eq!(visual("say שלום now"), "say םולש now");
        // A Hebrew sentence with a version number: words right to left, each word's letters
        // in reading order on screen, the number as written.
        assert_eq!(
            visual("שלום לכולם, גרסה 2.1 יצאה"),
            "האצי 2.1 הסרג ,םלוכל םולש"
        );
        // Each line of a message has its own direction.
        assert_eq!(visual("hello\nשלום 1"), "hello\n1 םולש");
    }

    #[test]
    fn arabic_letters_are_joined_then_shown_right_to_left() {
        // "salam" (seen, lam, alef, meem), on screen left to right: meem isolated (alef never
        // joins the letter after it), the lam-alef ligature in its final form (joined to the
        // seen), seen in its initial form.
        let shown: Vec<u32> = visual("سلام").chars().map(u32::from).collect();
        assert_eq!(shown, [0xFEE1, 0xFEFC, 0xFEB3]);
        // Numbers in Arabic text keep their order, and Latin stays as typed.
        let mixed = visual("مرحبا 2026 ok");
        assert!(mixed.contains("2026"), "{mixed}");
        assert!(mixed.ends_with("ok") || mixed.starts_with("ok"), "{mixed}");
        // No letter is left in its unjoined (base) form.
        assert!(
            !visual("مرحبا بالعالم")
                .chars()
                .any(|c| ('\u{0621}'..='\u{064A}').contains(&c)),
            "an unshaped letter"
        );
    }
}
