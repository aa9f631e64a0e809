//! chat-cursive: the full-screen terminal client's views, on chat-core's session.
//!
//! [`build`] lays out the screen (rooms, scrollback, members, status line, input) and installs
//! the keys; [`refresh`] redraws everything from the session's state and is called whenever the
//! driver reports news. No protocol logic lives here: input goes to the session, and the views
//! only render what it holds. The binary (`main.rs`) adds the connect form and the runtime.

use chat_core::client::ClientHandle;
use chat_core::input::InputHistory;
use chat_core::protocol::Secret;
use chat_core::session::{
    ConnState, Conversation, ConversationKind, Line, LineKind, Session, nick_colour,
};
use cursive::Cursive;
use cursive::event::{Event, EventResult, EventTrigger, Key, MouseButton, MouseEvent};
use cursive::theme::{
    BaseColor, BorderStyle, Color, ColorStyle, Effect, Palette, PaletteColor, Style, Theme,
};
use cursive::traits::{Nameable, Resizable};
use cursive::utils::markup::StyledString;
use cursive::view::scroll::Scroller;
use cursive::view::{ScrollStrategy, SizeConstraint};
pub mod terminal;

use cursive::views::{
    Dialog, EditView, HideableView, LinearLayout, NamedView, OnEventView, Panel, ResizedView,
    ScrollView, TextView,
};

/// The room list and the member list: a named text in a fixed-width panel that can hide.
type SidePanel = HideableView<ResizedView<Panel<NamedView<TextView>>>>;
/// The scrollback panel with its size constraint.
type CentrePanel = ResizedView<NamedView<Panel<NamedView<ScrollView<NamedView<TextView>>>>>>;

/// Width of the room list panel.
const ROOMS_WIDTH: usize = 18;
/// Width of the member list panel.
const MEMBERS_WIDTH: usize = 16;
/// Terminal width below which the member list is hidden.
const MEMBERS_MIN_WIDTH: usize = 70;
/// Terminal width below which the room list is hidden too (the status line still shows the room).
const ROOMS_MIN_WIDTH: usize = 50;

/// How timestamps are shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Clock {
    /// The machine's local time zone.
    Local,
    /// UTC, for reproducible screens in tests.
    Utc,
}

/// Front-end state that is not the session's: typed-input history and hints.
pub struct App {
    /// The running client.
    pub handle: ClientHandle,
    /// Time zone for timestamps.
    pub clock: Clock,
    /// Lines the user entered, for Up/Down.
    history: InputHistory,
    /// Completion candidates shown in the status line after an ambiguous Tab.
    hint: Option<String>,
    /// The terminal size the panels were last sized for.
    laid_out_for: cursive::Vec2,
    /// While the user reads further up: the conversation and its newest line then, so the
    /// status line can say how many arrived since (`-- MORE (3) --`).
    reading_up: Option<(String, Option<Line>)>,
}

/// The colours: the terminal's own background and text colour everywhere (as weechat and
/// irssi draw), so nothing is drawn in a colour on the same colour, on dark and light
/// terminals alike. Secondary text is bright black (grey), which reads on both.
pub fn theme() -> Theme {
    let mut palette = Palette::terminal_default();
    palette[PaletteColor::Highlight] = Color::Dark(BaseColor::Blue);
    palette[PaletteColor::HighlightInactive] = Color::Dark(BaseColor::Blue);
    palette[PaletteColor::HighlightText] = Color::Light(BaseColor::White);
    palette[PaletteColor::TitlePrimary] = Color::Light(BaseColor::Cyan);
    palette[PaletteColor::TitleSecondary] = Color::Light(BaseColor::Cyan);
    palette[PaletteColor::Secondary] = DIM;
    Theme {
        shadow: false,
        borders: BorderStyle::Simple,
        palette,
    }
}

/// Timestamps and system lines: bright black, a grey on dark and light backgrounds.
const DIM: Color = Color::Light(BaseColor::Black);

/// Text pasted into the terminal: one line goes into the input at the cursor; several lines
/// ask first, and then go out as one multi-line message (split only where the server's limits
/// demand), never as one message per line.
pub fn paste(siv: &mut Cursive, text: &str) {
    let text = text.replace("\r\n", "\n").replace('\r', "\n");
    let text = text.trim_end_matches('\n');
    if !text.contains('\n') {
        siv.call_on_name("input", |v: &mut EditView| {
            for c in text.chars() {
                // The callback is the view's on_edit, which the input does not set.
                let _ = v.insert(c);
            }
        });
        return;
    }
    let count = text.lines().count();
    let preview: String = text
        .lines()
        .take(6)
        .map(|l| format!("{l}\n"))
        .collect::<String>()
        + if count > 6 { "…\n" } else { "" };
    let message = text.to_string();
    let dialog = Dialog::around(TextView::new(preview))
        .title(format!("Send {count} lines as one message?"))
        .button("Send", move |siv| {
            siv.pop_layer();
            let message = message.clone();
            act(siv, move |h| {
                h.act(move |s, now| s.handle_paste(now, &message))
            });
            siv.focus_name("input").ok();
        })
        .button("Cancel", cancel_dialog)
        .with_name("paste_dialog");
    siv.add_layer(OnEventView::new(dialog).on_event(Key::Esc, cancel_dialog));
}

/// A left click at `at` (relative to the panels): a room in the room list becomes active.
/// Whatever was clicked, the input keeps the focus.
fn click(siv: &mut Cursive, at: cursive::Vec2) {
    let rooms_shown = siv
        .call_on_name("rooms_panel", |v: &mut SidePanel| v.is_visible())
        .unwrap_or(false);
    // Inside the room list's border: one line per conversation.
    if rooms_shown && at.x > 0 && at.x < ROOMS_WIDTH - 1 && at.y > 0 {
        let index = at.y - 1;
        act(siv, move |h| h.act(move |s, _| s.switch_to_index(index)));
    }
    siv.focus_name("input").ok();
}

/// Ctrl+O: the newest web address in the conversation, to open in the browser. An address
/// whose host name could imitate another says so first.
fn open_url_dialog(siv: &mut Cursive) {
    let Some(app) = siv.user_data::<App>() else {
        return;
    };
    let found = app.handle.with_session(|s| {
        let c = s.active()?;
        c.lines.iter().rev().find_map(|l| match &l.kind {
            LineKind::Message { text, .. } | LineKind::Action { text, .. } => {
                chat_core::text::urls(text)
                    .last()
                    .map(|u| (u.url.to_string(), u.lookalike.clone()))
            }
            _ => None,
        })
    });
    let Some((url, lookalike)) = found else {
        app.hint = Some("no web address in this conversation".into());
        refresh(siv);
        return;
    };
    let mut text = format!("Open {url} in the browser?");
    if let Some(warning) = &lookalike {
        text.push_str(&format!("\n\nCareful: {warning}."));
    }
    let open = url.clone();
    siv.add_layer(
        Dialog::around(TextView::new(text))
            .title("Open link")
            .button("Open", move |siv| {
                siv.pop_layer();
                if let Err(err) = open::that_detached(&open)
                    && let Some(app) = siv.user_data::<App>()
                {
                    app.hint = Some(format!("cannot open {open}: {err}"));
                }
                siv.focus_name("input").ok();
            })
            .button("Cancel", cancel_dialog)
            .with_name("url_dialog"),
    );
}

/// Closes a question without doing anything, back to the input.
fn cancel_dialog(siv: &mut Cursive) {
    siv.pop_layer();
    siv.focus_name("input").ok();
}

/// Builds the chat screen and its keys, and stores the [`App`] as the Cursive user data.
pub fn build(siv: &mut Cursive, handle: ClientHandle, clock: Clock) {
    siv.set_theme(theme());
    siv.set_user_data(App {
        handle,
        clock,
        history: InputHistory::default(),
        hint: None,
        laid_out_for: cursive::Vec2::zero(),
        reading_up: None,
    });
    let rooms = HideableView::new(
        Panel::new(TextView::new("").with_name("rooms"))
            .title("rooms")
            .fixed_width(ROOMS_WIDTH),
    )
    .with_name("rooms_panel");
    let scrollback = ScrollView::new(TextView::new("").no_wrap().with_name("lines"))
        .scroll_strategy(ScrollStrategy::StickToBottom)
        .with_name("scroll");
    // Sized by `refresh` to what the side panels leave, so they always keep their width.
    let centre = Panel::new(scrollback)
        .title("chat")
        .with_name("centre")
        .full_width()
        .with_name("centre_size");
    let members = HideableView::new(
        Panel::new(TextView::new("").with_name("members"))
            .title("members")
            .fixed_width(MEMBERS_WIDTH),
    )
    .with_name("members_panel");
    let input = EditView::new()
        .on_submit(submit)
        .with_name("input")
        .full_width();
    let input = OnEventView::new(input)
        .on_pre_event(Key::Up, |siv| walk_history(siv, -1))
        .on_pre_event(Key::Down, |siv| walk_history(siv, 1))
        .on_pre_event(Key::Tab, complete);
    // A click never takes the focus from the input (typed text stays where it is typed); a
    // click on a room in the list switches to it. The wheel still scrolls.
    let panels = OnEventView::new(
        LinearLayout::horizontal()
            .child(rooms)
            .child(centre)
            .child(members),
    )
    .on_pre_event_inner(EventTrigger::mouse(), |_, event| match event {
        Event::Mouse {
            event: MouseEvent::Press(MouseButton::Left),
            position,
            offset,
        } => {
            let at = position.saturating_sub(*offset);
            Some(EventResult::with_cb_once(move |siv| click(siv, at)))
        }
        Event::Mouse {
            event: MouseEvent::WheelUp | MouseEvent::WheelDown,
            ..
        } => None,
        _ => Some(EventResult::Consumed(None)),
    });
    let layout = LinearLayout::vertical()
        .child(panels.full_height())
        .child(TextView::new("").no_wrap().with_name("status"))
        .child(input);
    siv.add_fullscreen_layer(layout);
    siv.focus_name("input").ok();

    siv.add_global_callback(Event::CtrlChar('q'), |siv| {
        act(siv, |h| h.submit("/quit"));
    });
    siv.add_global_callback(Event::CtrlChar('n'), |siv| {
        act(siv, |h| h.act(|s, _| s.switch_relative(1)));
    });
    siv.add_global_callback(Event::CtrlChar('p'), |siv| {
        act(siv, |h| h.act(|s, _| s.switch_relative(-1)));
    });
    for n in 1..=9u8 {
        let c = char::from(b'0' + n);
        siv.add_global_callback(Event::AltChar(c), move |siv| {
            act(siv, move |h| {
                h.act(move |s, _| s.switch_to_index(usize::from(n - 1)))
            });
        });
    }
    siv.add_global_callback(Event::CtrlChar('o'), open_url_dialog);
    siv.add_global_callback(Key::PageUp, |siv| scroll(siv, -1));
    siv.add_global_callback(Key::PageDown, |siv| scroll(siv, 1));
    // Ctrl+End jumps to the newest line and follows again (End alone moves in the input).
    siv.add_global_callback(Event::Ctrl(Key::End), |siv| scroll(siv, 0));
    siv.add_global_callback(Event::WindowResize, |siv| {
        // Lay out again once the new size is in effect, and draw every cell again.
        siv.clear();
        let _ = siv.cb_sink().send(Box::new(refresh));
    });
    // Ctrl+L draws the whole screen again, as in every terminal program.
    siv.add_global_callback(Event::CtrlChar('l'), |siv| {
        siv.clear();
        refresh(siv);
    });
    // Some terminals report the new size only after the resize event: with a frame rate set
    // (the binary sets one), each refresh tick checks whether the size changed since the last
    // layout.
    siv.add_global_callback(Event::Refresh, |siv| {
        let size = siv.screen_size();
        if siv
            .user_data::<App>()
            .is_some_and(|app| app.laid_out_for != size)
        {
            refresh(siv);
        }
    });
    refresh(siv);
}

fn act(siv: &mut Cursive, f: impl FnOnce(&ClientHandle)) {
    if let Some(app) = siv.user_data::<App>() {
        f(&app.handle);
    }
}

fn submit(siv: &mut Cursive, text: &str) {
    let text = text.to_string();
    siv.call_on_name("input", |v: &mut EditView| v.set_content(""));
    if let Some(app) = siv.user_data::<App>() {
        app.history.push(&text);
        app.hint = None;
        app.handle.submit(text);
    }
}

fn walk_history(siv: &mut Cursive, step: isize) {
    let Some(text) = siv
        .user_data::<App>()
        .and_then(|app| app.history.walk(step).map(String::from))
    else {
        return;
    };
    siv.call_on_name("input", |v: &mut EditView| {
        v.set_content(text);
    });
}

/// Tab: completes the word before the cursor from the session's nicks, rooms and commands.
fn complete(siv: &mut Cursive) {
    let Some((content, cursor)) = siv.call_on_name("input", |v: &mut EditView| {
        (v.get_content().to_string(), v.get_cursor())
    }) else {
        return;
    };
    let cursor = cursor.min(content.len());
    let Some(app) = siv.user_data::<App>() else {
        return;
    };
    let Some(done) = app
        .handle
        .with_session(|s| chat_core::input::complete(s, &content[..cursor]))
    else {
        return;
    };
    app.hint = (!done.candidates.is_empty()).then(|| done.candidates.join(" "));
    let new = format!(
        "{}{}{}",
        &content[..done.start],
        done.replacement,
        &content[cursor..]
    );
    let new_cursor = done.start + done.replacement.len();
    siv.call_on_name("input", |v: &mut EditView| {
        v.set_content(new);
        v.set_cursor(new_cursor);
    });
    refresh(siv);
}

/// Scrolls a page up (`direction` < 0) or down (> 0), or to the end (0).
fn scroll(siv: &mut Cursive, direction: isize) {
    let page = siv.screen_size().y.saturating_sub(6).max(1);
    let at_bottom = siv
        .call_on_name("scroll", |v: &mut ScrollView<NamedView<TextView>>| {
            if direction < 0 {
                // Stop following new lines while the user reads further up.
                let _ = v.set_scroll_strategy(ScrollStrategy::KeepRow);
                v.get_scroller_mut().scroll_up(page);
            } else if direction > 0 {
                v.get_scroller_mut().scroll_down(page);
            } else {
                v.scroll_to_bottom();
            }
            if v.is_at_bottom() {
                v.set_scroll_strategy(ScrollStrategy::StickToBottom);
            }
            v.is_at_bottom()
        })
        .unwrap_or(true);
    if let Some(app) = siv.user_data::<App>() {
        if at_bottom {
            app.reading_up = None;
        } else if app.reading_up.is_none() {
            app.reading_up = app.handle.with_session(|s| {
                s.active()
                    .map(|c| (c.name.clone(), c.lines.back().cloned()))
            });
        }
    }
    refresh(siv);
}

/// True when these session events should ring the terminal bell: a mention or a direct
/// message arrived (live, or caught up after a reconnect).
pub fn rings_bell(events: &[chat_core::session::Event]) -> bool {
    events
        .iter()
        .any(|e| matches!(e, chat_core::session::Event::Notify { .. }))
}

/// Redraws every view from the session. Quits when the session is closed.
/// What the client driver calls with each batch of session events: asks cursive to redraw,
/// but coalesces: while one redraw is queued, later events add none (the queued one draws the
/// latest state). A busy room therefore costs at most one redraw per turn of the UI loop, not
/// one per message.
pub fn refresher(sink: cursive::CbSink) -> impl Fn() + Send + 'static {
    let queued = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    move || {
        if queued.swap(true, std::sync::atomic::Ordering::AcqRel) {
            return;
        }
        let queued = queued.clone();
        let _ = sink.send(Box::new(move |siv: &mut Cursive| {
            queued.store(false, std::sync::atomic::Ordering::Release);
            refresh(siv);
        }));
    }
}

/// Redraws the chat screen from the session's state.
pub fn refresh(siv: &mut Cursive) {
    let size = siv.screen_size();
    let Some(app) = siv.user_data::<App>() else {
        return;
    };
    app.laid_out_for = size;
    let clock = app.clock;
    let hint = app.hint.clone();
    let handle = app.handle.clone();
    let reading_up = app.reading_up.clone();
    // The scrollback's text width: the centre panel less its borders, the scroll bar and its
    // padding.
    let text_width = if size.x == 0 {
        None
    } else {
        let sides = if size.x >= MEMBERS_MIN_WIDTH {
            MEMBERS_WIDTH
        } else {
            0
        } + if size.x >= ROOMS_MIN_WIDTH {
            ROOMS_WIDTH
        } else {
            0
        };
        Some(size.x.saturating_sub(sides + 4))
    };
    let view = handle.with_session(|s| Rendered::from_session(s, clock, text_width));
    if matches!(view.state, ConnState::Closed { .. }) {
        siv.quit();
        return;
    }
    siv.call_on_name("rooms", |v: &mut TextView| {
        v.set_content(view.rooms.clone())
    });
    siv.call_on_name("lines", |v: &mut TextView| {
        v.set_content(view.lines.clone())
    });
    siv.call_on_name("members", |v: &mut TextView| {
        v.set_content(view.members.clone())
    });
    siv.call_on_name(
        "centre",
        |v: &mut Panel<NamedView<ScrollView<NamedView<TextView>>>>| v.set_title(view.title.clone()),
    );
    // Read further up while lines arrive: say how many, as weechat and irssi do.
    let more = reading_up.and_then(|(name, newest)| {
        handle.with_session(|s| {
            let c = s.active().filter(|c| c.name == name)?;
            Some(c.lines_after(newest.as_ref())).filter(|&n| n > 0)
        })
    });
    let status = match (hint, more) {
        (Some(hint), _) => StyledString::plain(hint),
        (None, Some(n)) => {
            let mut status = view.status.clone();
            status.append_styled(
                format!(" -- MORE ({n}) -- Ctrl+End: newest"),
                Effect::Reverse,
            );
            status
        }
        (None, None) => view.status.clone(),
    };
    siv.call_on_name("status", |v: &mut TextView| v.set_content(status));
    // Before the first layout the size is unknown: lay out as for a wide terminal.
    let show_members = size.x == 0 || size.x >= MEMBERS_MIN_WIDTH;
    let show_rooms = size.x == 0 || size.x >= ROOMS_MIN_WIDTH;
    siv.call_on_name("members_panel", |v: &mut SidePanel| {
        v.set_visible(show_members)
    });
    siv.call_on_name("rooms_panel", |v: &mut SidePanel| v.set_visible(show_rooms));
    let sides =
        if show_members { MEMBERS_WIDTH } else { 0 } + if show_rooms { ROOMS_WIDTH } else { 0 };
    let centre_width = size.x.saturating_sub(sides);
    let constraint = if size.x == 0 {
        SizeConstraint::Full
    } else {
        SizeConstraint::Fixed(centre_width.max(1))
    };
    siv.call_on_name("centre_size", |v: &mut CentrePanel| v.set_width(constraint));
    name_dialog(siv, &view.state, handle);
}

/// Shows a name prompt while the server refuses the name, and removes it once accepted. When
/// the name is an account's, the prompt also asks for its password: given, it logs in; left
/// empty, the name typed is tried as a guest's.
fn name_dialog(siv: &mut Cursive, state: &ConnState, handle: ClientHandle) {
    let shown = siv.find_name::<Dialog>("name_dialog").is_some();
    match state {
        ConnState::NameRejected { reason, account } if !shown => {
            let retry = move |siv: &mut Cursive| {
                let name = siv
                    .call_on_name("new_name", |v: &mut EditView| v.get_content())
                    .unwrap_or_default();
                let password = siv
                    .call_on_name("password", |v: &mut EditView| v.get_content())
                    .unwrap_or_default();
                let name = name.trim().to_string();
                if name.is_empty() {
                    return;
                }
                if password.is_empty() {
                    handle.set_name(name);
                } else {
                    let password = Secret::new(password.to_string());
                    handle.act(move |s, _now| s.set_account(&name, password));
                }
                siv.pop_layer();
            };
            let retry_button = retry.clone();
            let retry_name = retry.clone();
            let mut fields = LinearLayout::vertical();
            match account {
                Some(account) => {
                    fields.add_child(TextView::new(format!("{reason}\n\nName (or another one):")));
                    fields.add_child(
                        EditView::new()
                            .content(account.clone())
                            .on_submit(move |siv, _| retry_name(siv))
                            .with_name("new_name"),
                    );
                    fields.add_child(TextView::new(format!(
                        "Password of {account} (empty to use the name as a guest):"
                    )));
                    fields.add_child(
                        EditView::new()
                            .secret()
                            .on_submit(move |siv, _| retry(siv))
                            .with_name("password"),
                    );
                }
                None => {
                    fields.add_child(TextView::new(format!("{reason}\n\nAnother name:")));
                    fields.add_child(
                        EditView::new()
                            .on_submit(move |siv, _| retry(siv))
                            .with_name("new_name"),
                    );
                }
            }
            let mut dialog = Dialog::around(fields)
                .title("Name refused")
                .button("OK", retry_button);
            if account.is_some() {
                // The password is what is missing: the keyboard starts there.
                dialog.set_focus(cursive::views::DialogFocus::Content);
            }
            siv.add_layer(dialog.with_name("name_dialog"));
            if account.is_some() {
                siv.focus_name("password").ok();
            }
        }
        ConnState::NameRejected { .. } => {}
        _ if shown => {
            siv.pop_layer();
        }
        _ => {}
    }
}

/// Everything the screen shows, computed from the session in one lock.
struct Rendered {
    state: ConnState,
    rooms: StyledString,
    lines: StyledString,
    members: StyledString,
    title: String,
    status: StyledString,
}

impl Rendered {
    fn from_session(s: &Session, clock: Clock, width: Option<usize>) -> Self {
        let active = s.active();
        let mut rooms = StyledString::new();
        for (i, c) in s.conversations().enumerate() {
            let label = match c.kind {
                ConversationKind::Room => c.name.clone(),
                // A person's name alone: `@` is an operator's mark in member lists.
                ConversationKind::Direct => c.name.clone(),
            };
            let unread = if c.unread > 0 {
                format!(" ({})", c.unread)
            } else {
                String::new()
            };
            // One line per conversation, so a click's row is its index.
            let room = ROOMS_WIDTH - 2 - unread.chars().count() - (i + 1).to_string().len() - 1;
            let label: String = if label.chars().count() > room {
                label
                    .chars()
                    .take(room.saturating_sub(1))
                    .chain(['…'])
                    .collect()
            } else {
                label
            };
            let entry = format!("{} {label}{unread}", i + 1);
            let style = if active.is_some_and(|a| a.name == c.name) {
                Style::from(Effect::Reverse)
            } else if c.mentions > 0 {
                Style::from(Color::Light(BaseColor::Red)).combine(Effect::Bold)
            } else if c.unread > 0 {
                Style::from(Effect::Bold)
            } else {
                Style::default()
            };
            rooms.append_styled(entry, style);
            rooms.append_plain("\n");
        }
        let mut lines = StyledString::new();
        let source: Vec<&Line> = match active {
            Some(c) => c.lines.iter().collect(),
            None => s.status_lines().iter().collect(),
        };
        let marker = active.and_then(Conversation::marker_position);
        for (i, line) in source.into_iter().enumerate() {
            if marker == Some(i) {
                lines.append_styled(
                    "────────── new since you last read ──────────\n",
                    Color::Light(BaseColor::Red),
                );
            }
            render_line(&mut lines, line, clock, width, s.name());
        }
        let mut members = StyledString::new();
        if let Some(c) = active {
            for (role, m) in c.members_by_role() {
                members.append_styled(role.prefix(), Effect::Bold);
                // Someone away is listed in grey, as weechat does.
                if s.away_reason(m).is_some() {
                    members.append_styled(m, DIM);
                } else {
                    members.append_styled(m, nick_style(m, s.name()));
                }
                members.append_plain("\n");
            }
        }
        let title = active.map_or_else(|| "chat".to_string(), title_of);
        let status = status_line(s, active);
        Rendered {
            state: s.state().clone(),
            rooms,
            lines,
            members,
            title,
            status,
        }
    }
}

fn title_of(c: &Conversation) -> String {
    match c.kind {
        ConversationKind::Room if !c.topic.is_empty() => format!("{} — {}", c.name, c.topic),
        ConversationKind::Room => c.name.clone(),
        ConversationKind::Direct => format!("direct: {}", c.name),
    }
}

fn status_line(s: &Session, active: Option<&Conversation>) -> StyledString {
    let (text, colour) = match s.state() {
        ConnState::Online => ("online".to_string(), BaseColor::Green),
        ConnState::Connecting => ("connecting".to_string(), BaseColor::Yellow),
        ConnState::Registering => ("registering".to_string(), BaseColor::Yellow),
        ConnState::NameRejected { .. } => ("name refused".to_string(), BaseColor::Red),
        ConnState::Reconnecting {
            attempt, reason, ..
        } => (
            format!("reconnecting (attempt {attempt}): {reason}"),
            BaseColor::Red,
        ),
        ConnState::Closed { reason } => (format!("closed: {reason}"), BaseColor::Red),
    };
    let mut out =
        StyledString::styled(format!("[{text}]"), ColorStyle::front(Color::Light(colour)));
    out.append_plain(format!(" {}", s.name().unwrap_or(s.wanted_name())));
    if let Some(c) = active {
        out.append_plain(format!(" │ {}", c.name));
        if !c.topic.is_empty() {
            out.append_plain(format!(" │ {}", c.topic));
        }
    }
    // Where the unread messages are, as weechat's `Act:`: the numbers Alt+N goes to, those
    // with a mention in red.
    let active_name = active.map(|a| a.name.as_str());
    let mut act = s
        .conversations()
        .enumerate()
        .filter(|(_, c)| c.unread > 0 && Some(c.name.as_str()) != active_name)
        .peekable();
    if act.peek().is_some() {
        out.append_styled(" │ Act: ", Effect::Bold);
        let mut first = true;
        for (i, c) in act {
            if !first {
                out.append_plain(",");
            }
            first = false;
            let style = if c.mentions > 0 {
                Style::from(Color::Light(BaseColor::Red)).combine(Effect::Bold)
            } else {
                Style::from(Effect::Bold)
            };
            out.append_styled((i + 1).to_string(), style);
        }
    }
    out
}

/// A nick in the palette every client shares; your own in bold text colour, like no one else.
fn nick_style(name: &str, me: Option<&str>) -> Style {
    match nick_colour(name, me) {
        Some(c) => Style::from(Color::from_256colors(c.xterm)).combine(Effect::Bold),
        None => Style::from(Effect::Bold),
    }
}

/// Message text, with web addresses underlined.
/// How the terminal draws emoji sequences, measured at start ([`terminal::probe`]); cursive's
/// own assumption until then, and in tests.
static CLUSTERS: std::sync::OnceLock<terminal::Clusters> = std::sync::OnceLock::new();

/// Tells the screen how the terminal draws emoji sequences (once, before the UI starts).
pub fn set_clusters(clusters: terminal::Clusters) {
    let _ = CLUSTERS.set(clusters);
}

/// Text as the terminal will draw it as wide as it is laid out ([`terminal::fit`]).
fn fitted(text: &str) -> std::borrow::Cow<'_, str> {
    terminal::fit(text, CLUSTERS.get().copied().unwrap_or_default())
}

fn append_text(out: &mut StyledString, text: &str, style: Style) {
    let text = &*fitted(text);
    let mut at = 0;
    for url in chat_core::text::urls(text) {
        out.append_styled(&text[at..url.range.start], style);
        out.append_styled(url.url, style.combine(Effect::Underline));
        at = url.range.end;
    }
    out.append_styled(&text[at..], style);
}

/// Width of the `HH:MM ` column that wrapped lines continue under.
const TIME_WIDTH: usize = 6;

/// Appends `body` wrapped to `width` after `time`: continuation rows (wrapped, or the next
/// line of a multi-line message) start under the text, as in weechat, never at column 0.
fn append_hanging(
    out: &mut StyledString,
    time: StyledString,
    body: &StyledString,
    width: Option<usize>,
) {
    use cursive::utils::lines::spans::LinesIterator;
    out.append(time);
    let Some(width) = width.filter(|w| *w > TIME_WIDTH + 10) else {
        out.append(body.clone());
        out.append_plain("\n");
        return;
    };
    for (i, row) in LinesIterator::new(body, width - TIME_WIDTH).enumerate() {
        if i > 0 {
            out.append_plain(" ".repeat(TIME_WIDTH));
        }
        let spans: Vec<_> = row.resolve_stream(body).collect();
        for (j, span) in spans.iter().enumerate() {
            // The space a row was broken at stays behind: it would wrap the row again.
            let content = if j + 1 == spans.len() {
                span.content.trim_end()
            } else {
                span.content
            };
            out.append_styled(content, *span.attr);
        }
        out.append_plain("\n");
    }
}

fn render_line(
    out: &mut StyledString,
    line: &Line,
    clock: Clock,
    width: Option<usize>,
    me: Option<&str>,
) {
    let time = StyledString::styled(format!("{} ", clock_time(line.ts, clock)), DIM);
    let mut body = StyledString::new();
    render_body(&mut body, line, me);
    append_hanging(out, time, &body, width);
}

fn clock_time(ts: u64, clock: Clock) -> String {
    chrono::DateTime::from_timestamp_millis(ts as i64)
        .map(|t| match clock {
            Clock::Local => t.with_timezone(&chrono::Local).format("%H:%M").to_string(),
            Clock::Utc => t.format("%H:%M").to_string(),
        })
        .unwrap_or_default()
}

fn render_body(out: &mut StyledString, line: &Line, me: Option<&str>) {
    let dim = Style::from(DIM);
    // A mention is a whole highlighted line, as in weechat: the text in bold yellow.
    let body = if line.mention {
        Style::from(Color::Light(BaseColor::Yellow)).combine(Effect::Bold)
    } else {
        Style::default()
    };
    // A reply: what it answers, dim, before its text.
    if let Some(quote) = &line.reply {
        out.append_styled(format!("↳ {} · ", fitted(&quote.describe())), dim);
    }
    match &line.kind {
        LineKind::Message { from, text } => {
            let nick = if line.notice {
                format!("-{from}-")
            } else {
                format!("<{from}>")
            };
            out.append_styled(nick, nick_style(from, me));
            out.append_styled(" ", body);
            append_text(out, text, body);
        }
        LineKind::Action { from, text } => {
            out.append_styled("* ", body);
            out.append_styled(from.clone(), nick_style(from, me));
            out.append_styled(" ", body);
            append_text(out, text, body);
        }
        LineKind::Join { name } => out.append_styled(format!("→ {name} joined"), dim),
        LineKind::Part { name, reason } => out.append_styled(
            format!(
                "← {name} left{}",
                reason
                    .as_ref()
                    .map(|r| format!(" ({r})"))
                    .unwrap_or_default()
            ),
            dim,
        ),
        LineKind::Quit { name, reason } => {
            out.append_styled(format!("← {name} quit ({reason})"), dim)
        }
        LineKind::Nick { old, new } => {
            out.append_styled(format!("{old} is now known as {new}"), dim)
        }
        LineKind::Topic { by, topic } => out.append_styled(
            match by {
                Some(by) => format!("topic set by {by}: {}", fitted(topic)),
                None => format!("topic: {}", fitted(topic)),
            },
            dim,
        ),
        LineKind::Notice(text) => out.append_styled(format!("-- {}", fitted(text)), dim),
        LineKind::Error(text) => {
            out.append_styled(format!("!! {text}"), Color::Light(BaseColor::Red))
        }
    }
    // Reactions, counted, after the message.
    if !line.reactions.is_empty() {
        out.append_styled(format!("  [{}]", line.reaction_counts()), dim);
    }
}
