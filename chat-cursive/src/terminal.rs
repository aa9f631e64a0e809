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
