//! The terminal backend: cursive's crossterm backend for drawing, with bracketed paste turned on.
//!
//! cursive 0.21 reads keys itself and does not ask the terminal for bracketed paste, so a pasted
//! text arrives as typed keys: every line break an Enter, every line a message. This backend
//! draws through cursive's own crossterm backend but reads the events itself: with bracketed
//! paste on, a paste arrives whole. It is queued, and cursive is told with [`PASTE`] (an event no
//! key makes), for [`crate::paste`] to take it. Other events are translated as cursive does.

use std::collections::VecDeque;
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crossterm::event::{
    self as ct, Event as CEvent, KeyCode, KeyEvent, KeyEventKind, KeyModifiers,
    MouseButton as CButton, MouseEventKind,
};
use cursive::Vec2;
use cursive::backend::Backend;
use cursive::event::{Event, Key, MouseButton, MouseEvent};
use cursive::theme::{Color, ColorPair, Effect};

/// The event that says a paste is waiting in the queue.
pub fn paste_event() -> Event {
    Event::Unknown(PASTE.to_vec())
}

/// Bytes no terminal sends as a key: the marker of a queued paste.
pub const PASTE: &[u8] = b"\0chat-paste";

/// Pastes read from the terminal, waiting for the UI.
pub type Pastes = Arc<Mutex<VecDeque<String>>>;

/// cursive's crossterm backend with bracketed paste.
pub struct PasteBackend {
    inner: Box<dyn Backend>,
    pastes: Pastes,
}

impl PasteBackend {
    /// Opens the terminal and turns bracketed paste on.
    pub fn init(pastes: Pastes) -> std::io::Result<Box<dyn Backend>> {
        let inner = cursive::backends::crossterm::Backend::init()?;
        let mut tty = std::fs::OpenOptions::new().write(true).open("/dev/tty")?;
        crossterm::execute!(tty, ct::EnableBracketedPaste)?;
        Ok(Box::new(PasteBackend { inner, pastes }))
    }
}

impl Drop for PasteBackend {
    fn drop(&mut self) {
        if let Ok(mut tty) = std::fs::OpenOptions::new().write(true).open("/dev/tty") {
            let _ = crossterm::execute!(tty, ct::DisableBracketedPaste);
            let _ = tty.flush();
        }
    }
}

impl Backend for PasteBackend {
    fn poll_event(&mut self) -> Option<Event> {
        while let Ok(true) = ct::poll(Duration::from_millis(1)) {
            let Ok(event) = ct::read() else {
                return None;
            };
            if let CEvent::Paste(text) = event {
                if let Ok(mut queue) = self.pastes.lock() {
                    queue.push_back(text);
                }
                return Some(paste_event());
            }
            if let Some(event) = translate(event) {
                return Some(event);
            }
        }
        None
    }
    fn set_title(&mut self, title: String) {
        self.inner.set_title(title);
    }
    fn refresh(&mut self) {
        self.inner.refresh();
    }
    fn has_colors(&self) -> bool {
        self.inner.has_colors()
    }
    fn screen_size(&self) -> Vec2 {
        self.inner.screen_size()
    }
    fn move_to(&self, pos: Vec2) {
        self.inner.move_to(pos);
    }
    fn print(&self, text: &str) {
        self.inner.print(text);
    }
    fn clear(&self, color: Color) {
        self.inner.clear(color);
    }
    fn set_color(&self, colors: ColorPair) -> ColorPair {
        self.inner.set_color(colors)
    }
    fn set_effect(&self, effect: Effect) {
        self.inner.set_effect(effect);
    }
    fn unset_effect(&self, effect: Effect) {
        self.inner.unset_effect(effect);
    }
    fn is_persistent(&self) -> bool {
        self.inner.is_persistent()
    }
    fn name(&self) -> &str {
        "crossterm with bracketed paste"
    }
}

/// A crossterm event as cursive's crossterm backend translates it.
pub fn translate(event: CEvent) -> Option<Event> {
    match event {
        CEvent::Key(key) => translate_key_event(key),
        CEvent::Mouse(m) => {
            let event = match m.kind {
                MouseEventKind::Down(b) => MouseEvent::Press(button(b)),
                MouseEventKind::Up(b) => MouseEvent::Release(button(b)),
                MouseEventKind::Drag(b) => MouseEvent::Hold(button(b)),
                MouseEventKind::ScrollDown => MouseEvent::WheelDown,
                MouseEventKind::ScrollUp => MouseEvent::WheelUp,
                _ => return None,
            };
            Some(Event::Mouse {
                event,
                position: Vec2::new(m.column.into(), m.row.into()),
                offset: Vec2::zero(),
            })
        }
        CEvent::Resize(..) => Some(Event::WindowResize),
        CEvent::Paste(_) | CEvent::FocusGained | CEvent::FocusLost => None,
    }
}

fn button(b: CButton) -> MouseButton {
    match b {
        CButton::Left => MouseButton::Left,
        CButton::Right => MouseButton::Right,
        CButton::Middle => MouseButton::Middle,
    }
}

fn key(code: KeyCode) -> Option<Key> {
    Some(match code {
        KeyCode::Esc => Key::Esc,
        KeyCode::Backspace => Key::Backspace,
        KeyCode::Left => Key::Left,
        KeyCode::Right => Key::Right,
        KeyCode::Up => Key::Up,
        KeyCode::Down => Key::Down,
        KeyCode::Home => Key::Home,
        KeyCode::End => Key::End,
        KeyCode::PageUp => Key::PageUp,
        KeyCode::PageDown => Key::PageDown,
        KeyCode::Delete => Key::Del,
        KeyCode::Insert => Key::Ins,
        KeyCode::Enter => Key::Enter,
        KeyCode::Tab | KeyCode::BackTab => Key::Tab,
        KeyCode::F(n) => Key::from_f(n),
        _ => return None,
    })
}

fn translate_key_event(e: KeyEvent) -> Option<Event> {
    if e.kind != KeyEventKind::Press {
        return None;
    }
    let ctrl = e.modifiers.contains(KeyModifiers::CONTROL);
    let alt = e.modifiers.contains(KeyModifiers::ALT);
    let shift = e.modifiers.contains(KeyModifiers::SHIFT);
    if let KeyCode::Char(c) = e.code {
        return Some(match (ctrl, alt) {
            (true, false) => Event::CtrlChar(c),
            (false, true) => Event::AltChar(c),
            _ => Event::Char(c),
        });
    }
    if e.code == KeyCode::BackTab {
        return Some(Event::Shift(Key::Tab));
    }
    let k = key(e.code)?;
    Some(match (ctrl, alt, shift) {
        (true, true, _) => Event::CtrlAlt(k),
        (true, _, true) => Event::CtrlShift(k),
        (_, true, true) => Event::AltShift(k),
        (true, _, _) => Event::Ctrl(k),
        (_, true, _) => Event::Alt(k),
        (_, _, true) => Event::Shift(k),
        _ => Event::Key(k),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_translate_as_cursive_does() {
        let k = |code, modifiers| CEvent::Key(KeyEvent::new(code, modifiers));
        assert_eq!(
            translate(k(KeyCode::Char('q'), KeyModifiers::CONTROL)),
            Some(Event::CtrlChar('q'))
        );
        assert_eq!(
            translate(k(KeyCode::Char('1'), KeyModifiers::ALT)),
            Some(Event::AltChar('1'))
        );
        assert_eq!(
            translate(k(KeyCode::Char('Z'), KeyModifiers::SHIFT)),
            Some(Event::Char('Z'))
        );
        assert_eq!(
            translate(k(KeyCode::Up, KeyModifiers::NONE)),
            Some(Event::Key(Key::Up))
        );
        assert_eq!(
            translate(k(KeyCode::BackTab, KeyModifiers::SHIFT)),
            Some(Event::Shift(Key::Tab))
        );
        assert_eq!(translate(CEvent::Paste("x".into())), None);
        assert_eq!(translate(CEvent::Resize(80, 24)), Some(Event::WindowResize));
    }
}

/// How this terminal draws the emoji sequences whose width terminals disagree on. cursive lays
/// them out by the widths of `unicode-width`: a family joined by ZWJ (U+200D) takes the columns
/// of its members (6), a thumb with a skin tone 2, a heart with the emoji selector (U+FE0F) 2.
/// xterm and tmux 3.3 draw the thumb in 4 columns and the heart in 1; kitty, WezTerm, foot and
/// Windows Terminal draw the family in 2. Where cursive and the terminal disagree, a row is
/// drawn wider or narrower than laid out: letters after it are lost, the right border moves,
/// and cells of an earlier row are left behind. [`probe`] asks the terminal, and [`fit`] writes
/// such sequences so that both agree.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Clusters {
    /// Emoji joined by ZWJ are drawn as one (2 columns).
    pub zwj: bool,
    /// A skin-tone modifier (U+1F3FB..U+1F3FF) is drawn with the emoji before it.
    pub modifiers: bool,
    /// The emoji presentation selector makes a character two columns wide.
    pub vs16: bool,
}

impl Default for Clusters {
    /// What cursive's layout assumes, which [`fit`] leaves as it is.
    fn default() -> Self {
        Clusters {
            zwj: false,
            modifiers: true,
            vs16: true,
        }
    }
}

/// Measures how the terminal draws each kind of sequence: it is printed at the start of a line
/// and the terminal is asked where the cursor went (`CSI 6n`). A terminal that does not answer
/// (within crossterm's two seconds) is taken to draw as cursive lays out. The line is cleared
/// afterwards; this runs before the UI takes the screen.
pub fn probe() -> Clusters {
    let Ok(mut tty) = std::fs::OpenOptions::new().write(true).open("/dev/tty") else {
        return Clusters::default();
    };
    if crossterm::terminal::enable_raw_mode().is_err() {
        return Clusters::default();
    }
    let mut width = |sample: &str| -> Option<u16> {
        write!(tty, "\r{sample}").ok()?;
        tty.flush().ok()?;
        let (column, _) = crossterm::cursor::position().ok()?;
        write!(tty, "\r\x1b[2K").ok()?;
        tty.flush().ok()?;
        Some(column)
    };
    let assumed = Clusters::default();
    let clusters = match width("\u{1F468}\u{200D}\u{1F469}\u{200D}\u{1F467}") {
        None => assumed,
        Some(family) => Clusters {
            zwj: family == 2,
            modifiers: width("\u{1F44D}\u{1F3FD}").map_or(assumed.modifiers, |w| w == 2),
            vs16: width("\u{2764}\u{FE0F}").map_or(assumed.vs16, |w| w == 2),
        },
    };
    let _ = crossterm::terminal::disable_raw_mode();
    clusters
}

/// True for the characters emoji sequences are made of (pictographs, dingbats, symbols),
/// where a ZWJ joins emoji rather than letters of a script that uses it (Indic, Arabic).
fn emoji_part(c: char) -> bool {
    matches!(u32::from(c), 0x2190..=0x2BFF | 0x1F000..=0x1FAFF | 0xFE0F | 0x3030 | 0x303D)
}

/// `text` written so that the terminal draws it as wide as cursive lays it out. On a terminal
/// that joins ZWJ sequences, the joiners between emoji are dropped (the emoji stand side by
/// side, in the columns cursive gives them). On one that draws a skin tone by itself, the tone
/// is set apart by a zero-width space (its own cluster, its own swatch). On one that ignores
/// the emoji selector, the selector is dropped (the character keeps its text width). All other
/// text is unchanged.
pub fn fit(text: &str, clusters: Clusters) -> std::borrow::Cow<'_, str> {
    let skin = |c: char| ('\u{1F3FB}'..='\u{1F3FF}').contains(&c);
    let touched = text.chars().any(|c| {
        (clusters.zwj && c == '\u{200D}')
            || (!clusters.modifiers && skin(c))
            || (!clusters.vs16 && c == '\u{FE0F}')
    });
    if !touched {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    let mut before: Option<char> = None;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        let after = chars.peek().copied();
        if clusters.zwj
            && c == '\u{200D}'
            && before.is_some_and(emoji_part)
            && after.is_some_and(emoji_part)
        {
            continue;
        }
        if !clusters.vs16 && c == '\u{FE0F}' {
            before = Some(c);
            continue;
        }
        if !clusters.modifiers && skin(c) && before.is_some_and(|b| !b.is_whitespace()) {
            out.push('\u{200B}');
        }
        out.push(c);
        before = Some(c);
    }
    std::borrow::Cow::Owned(out)
}

#[cfg(test)]
mod width_tests {
    use super::*;
    use cursive::utils::lines::spans::LinesIterator;
    use cursive::utils::markup::StyledString;

    /// The columns cursive gives a line of text.
    fn laid_out(text: &str) -> usize {
        let styled = StyledString::plain(text);
        LinesIterator::new(&styled, 200).map(|row| row.width).sum()
    }

    const FAMILY: &str = "\u{1F468}\u{200D}\u{1F469}\u{200D}\u{1F467}";
    const THUMB: &str = "\u{1F44D}\u{1F3FD}";
    const HEART: &str = "\u{2764}\u{FE0F}";

    #[test]
    fn what_cursive_assumes_is_left_alone() {
        let line = format!("שלום {THUMB} {FAMILY} {HEART} עולם");
        assert_eq!(fit(&line, Clusters::default()), line.as_str());
        assert_eq!(
            (laid_out(FAMILY), laid_out(THUMB), laid_out(HEART)),
            (6, 2, 2)
        );
    }

    #[test]
    fn a_terminal_that_draws_code_points_gets_their_widths() {
        // xterm, tmux 3.3: family 6, thumb 4, heart 1.
        let points = Clusters {
            zwj: false,
            modifiers: false,
            vs16: false,
        };
        assert_eq!(laid_out(&fit(FAMILY, points)), 6);
        assert_eq!(laid_out(&fit(THUMB, points)), 4);
        assert_eq!(laid_out(&fit(HEART, points)), 1);
        let line = format!("שלום {THUMB} {FAMILY} {HEART} עולם");
        let shown = fit(&line, points);
        assert!(
            shown.starts_with("שלום ") && shown.ends_with(" עולם"),
            "{shown}"
        );
        assert_eq!(
            shown
                .chars()
                .filter(|c| ('\u{1F3FB}'..='\u{1F3FF}').contains(c))
                .count(),
            1,
            "the skin tone stays, as its own swatch"
        );
    }

    #[test]
    fn a_terminal_that_joins_sequences_gets_emoji_side_by_side() {
        // kitty, WezTerm, foot: the family would take 2 columns of the 6 laid out.
        let clusters = Clusters {
            zwj: true,
            modifiers: true,
            vs16: true,
        };
        let shown = fit(FAMILY, clusters);
        assert_eq!(shown, "\u{1F468}\u{1F469}\u{1F467}");
        assert_eq!(laid_out(&shown), 6);
        assert_eq!(fit(THUMB, clusters), THUMB);
        // A ZWJ between letters of a script (Devanagari's half forms) is left alone.
        let hindi = "क्\u{200D}ष";
        assert_eq!(fit(hindi, clusters), hindi);
    }
}
