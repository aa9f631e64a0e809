//! chat-egui: the desktop client's screens, on chat-core's session.
//!
//! [`ChatApp`] shows a connect screen until the session is online, then the chat window: rooms
//! with unread badges and a join field, the scrollback, members, a topic bar, and the input with
//! Send and Quit. It never touches the network: connecting goes through a [`Connect`] function
//! (a tokio driver in the binary, a [`chat_core::client::LocalDriver`] in tests) and the driver
//! asks egui to repaint when something arrives, so an idle window costs no CPU.

use chat_core::client::ClientHandle;
use chat_core::input::InputHistory;
use chat_core::protocol::{Role, Secret};
use chat_core::session::{
    ConnState, Conversation, ConversationKind, Line, LineKind, Session, nick_colour,
};
use chat_core::tls::{Untrusted, is_loopback};
use eframe::egui::{self, Color32, Key, RichText};

pub mod fonts;

/// What the connect screen asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectRequest {
    /// Server host.
    pub host: String,
    /// Server port.
    pub port: u16,
    /// The name, or the account when `password` is set.
    pub name: String,
    /// The account's password, to log in at hello.
    pub password: Option<Secret>,
    /// Encrypt the connection.
    pub tls: bool,
    /// A self-signed certificate's fingerprint the user agreed to trust.
    pub accept: Option<String>,
}

impl ConnectRequest {
    /// A session for this request: a guest with this name, or logging in to this account.
    pub fn session(&self, config: chat_core::SessionConfig) -> Session {
        let mut session = Session::new(config, &self.name);
        if let Some(password) = &self.password {
            session.set_account(&self.name, password.clone());
        }
        session
    }
}

/// What the connect screen starts with (from flags and the environment).
#[derive(Debug, Clone)]
pub struct Form {
    /// Server host.
    pub host: String,
    /// Server port.
    pub port: u16,
    /// Name, or account.
    pub name: String,
    /// The account's password (`CHAT_PASSWORD`), to log in.
    pub password: Option<Secret>,
    /// Encrypt (`--tls`, `--no-tls`); `None` follows the host: TLS except to loopback.
    pub tls: Option<bool>,
}

/// Opens a client, or says why the server's certificate is not trusted (for the connect
/// screen to ask about); the `egui::Context` is for repaints.
pub type Connect =
    Box<dyn FnMut(&ConnectRequest, &egui::Context) -> Result<ClientHandle, Untrusted>>;

/// How timestamps are shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Clock {
    /// The machine's local time zone.
    Local,
    /// UTC, for reproducible screenshots in tests.
    Utc,
}

/// The application: the connect screen, then the chat window.
pub struct ChatApp {
    connect: Connect,
    clock: Clock,
    /// Connect screen fields.
    host: String,
    port: String,
    name: String,
    /// An account password; empty to come as a guest.
    password: String,
    /// Encrypt: `None` follows the host (TLS except to loopback).
    tls: Option<bool>,
    /// The server's certificate is not trusted yet (or has changed): shown with its fingerprint.
    untrusted: Option<Untrusted>,
    /// A problem with the connect screen's fields.
    form_error: Option<String>,
    /// The client, once Connect was pressed.
    client: Option<ClientHandle>,
    /// True once the session has been online: from then on the chat window stays, even while
    /// reconnecting.
    chatting: bool,
    input: String,
    /// Lines entered, for Up/Down.
    history: InputHistory,
    join_field: String,
    /// Set when the window should close (Quit pressed, or the session ended).
    quitting: bool,
    /// Set once the system fonts for CJK, Hebrew and Arabic have been added.
    fonts_installed: bool,
    /// Set when a field should take the keyboard focus at the next frame.
    focus_next: Option<&'static str>,
    /// The digit of an Alt+digit switch whose text event has not come yet (it may come a
    /// frame after the key): it is kept out of the input.
    swallow: Option<String>,
    /// While the user reads further up: the conversation (its title) and its newest line
    /// then, to count what arrived since.
    reading_up: Option<(String, Option<Line>)>,
    /// Set by "jump to latest": the next frame scrolls to the newest line.
    jump_to_latest: bool,
    /// A multi-line paste waiting for the user to say it should go out as one message.
    paste: Option<String>,
    /// A link whose host could imitate another, waiting for a yes before it opens.
    link: Option<(String, String)>,
    /// Notifications (mentions, direct messages) already signalled to the window manager.
    notified: u64,
    /// Ask for attention on a notification.
    attention: bool,
    /// Shows a desktop notification (summary, body); the binary's uses notify-rust.
    notifier: Option<Box<dyn FnMut(String, String)>>,
    /// The window title last set, to set it only when it changes.
    title: String,
    /// The window size of the last frame: a resize draws one more frame (the scroll area
    /// settles at the bottom on the second).
    last_size: egui::Vec2,
}

impl ChatApp {
    /// A new app. With `auto` set (host, port and name given as flags) it connects at once.
    pub fn new(
        connect: Connect,
        clock: Clock,
        form: Form,
        auto: bool,
        ctx: &egui::Context,
    ) -> Self {
        let mut app = Self {
            connect,
            clock,
            host: form.host,
            port: form.port.to_string(),
            name: form.name,
            password: form
                .password
                .map(|p| p.expose().to_string())
                .unwrap_or_default(),
            tls: form.tls,
            untrusted: None,
            form_error: None,
            client: None,
            chatting: false,
            input: String::new(),
            history: InputHistory::default(),
            join_field: String::new(),
            quitting: false,
            fonts_installed: false,
            focus_next: Some("Name"),
            swallow: None,
            reading_up: None,
            jump_to_latest: false,
            paste: None,
            link: None,
            notified: 0,
            attention: true,
            notifier: None,
            title: String::new(),
            last_size: egui::Vec2::ZERO,
        };
        if auto {
            app.start(ctx);
        }
        app
    }

    /// Whether a mention or direct message in an unfocused window asks the window manager
    /// for attention (on by default; `--no-bell` turns it off).
    pub fn with_attention(mut self, on: bool) -> Self {
        self.attention = on;
        self
    }

    /// How to show a desktop notification for a mention or a direct message that arrives
    /// while the window is not focused (with `--no-bell`, none is shown).
    pub fn with_notifier(mut self, notify: impl FnMut(String, String) + 'static) -> Self {
        self.set_notifier(notify);
        self
    }

    /// [`ChatApp::with_notifier`] on an app already made.
    pub fn set_notifier(&mut self, notify: impl FnMut(String, String) + 'static) {
        self.notifier = Some(Box::new(notify));
    }

    /// The running client, if any.
    pub fn client(&self) -> Option<&ClientHandle> {
        self.client.as_ref()
    }

    /// True once the user asked to leave.
    pub fn is_quitting(&self) -> bool {
        self.quitting
    }

    /// Tells the server goodbye if that has not happened yet (window closed).
    pub fn leave(&mut self) {
        if let Some(client) = &self.client {
            let closed = client.with_session(|s| matches!(s.state(), ConnState::Closed { .. }));
            if !closed {
                client.submit("/quit");
            }
        }
        self.quitting = true;
    }

    /// Whether the connection will be encrypted.
    fn tls(&self) -> bool {
        self.tls.unwrap_or_else(|| !is_loopback(self.host.trim()))
    }

    fn start(&mut self, ctx: &egui::Context) {
        self.start_trusting(ctx, None);
    }

    fn start_trusting(&mut self, ctx: &egui::Context, accept: Option<String>) {
        let port = self.port.trim();
        self.form_error = match port.parse::<u16>() {
            _ if self.host.trim().is_empty() => Some("Enter the server's host.".into()),
            Err(_) => Some(format!("{port:?} is not a port number.")),
            _ if self.name.trim().is_empty() => Some("Choose a name.".into()),
            Ok(_) => None,
        };
        if self.form_error.is_some() {
            return;
        }
        let request = ConnectRequest {
            host: self.host.trim().to_string(),
            port: port.parse().unwrap_or_default(),
            name: self.name.trim().to_string(),
            password: (!self.password.is_empty()).then(|| Secret::new(self.password.clone())),
            tls: self.tls(),
            accept,
        };
        // A client still trying a previous address quits when its handle is dropped.
        self.client = None;
        match (self.connect)(&request, ctx) {
            Ok(client) => {
                self.untrusted = None;
                self.client = Some(client);
            }
            Err(why) => self.untrusted = Some(why),
        }
    }

    /// Draws one frame.
    pub fn show(&mut self, ui: &mut egui::Ui) {
        if !self.fonts_installed {
            self.fonts_installed = true;
            fonts::install(ui.ctx());
            ui.ctx().style_mut_of(egui::Theme::Dark, |s| {
                s.visuals.weak_text_color = Some(WEAK_DARK);
            });
            ui.ctx().style_mut_of(egui::Theme::Light, |s| {
                s.visuals.weak_text_color = Some(WEAK_LIGHT);
            });
        }
        let state = self
            .client
            .as_ref()
            .map(|c| c.with_session(|s| s.state().clone()));
        if matches!(state, Some(ConnState::Online)) && !self.chatting {
            self.chatting = true;
            self.focus_next = Some("input");
        }
        let size = ui.ctx().content_rect().size();
        if size != self.last_size {
            self.last_size = size;
            ui.ctx().request_repaint();
        }
        if matches!(state, Some(ConnState::Closed { .. })) && self.chatting {
            self.quitting = true;
        }
        if self.chatting {
            self.chat_window(ui);
        } else {
            self.connect_screen(ui, state);
        }
    }

    fn connect_screen(&mut self, ui: &mut egui::Ui, state: Option<ConnState>) {
        egui::CentralPanel::default().show(ui, |ui| {
            ui.vertical_centered(|ui| {
                ui.add_space(40.0);
                ui.heading("Connect to a chat server");
                ui.add_space(16.0);
            });
            // A centred column of fixed width.
            let width = 320.0;
            ui.horizontal(|ui| {
                ui.add_space(((ui.available_width() - width) / 2.0).max(0.0));
                ui.vertical(|ui| {
                    ui.set_width(width);
                    self.connect_fields(ui, state);
                });
            });
        });
    }

    fn connect_fields(&mut self, ui: &mut egui::Ui, state: Option<ConnState>) {
        let mut submit = false;
        egui::Grid::new("connect_form")
            .num_columns(2)
            .spacing([12.0, 8.0])
            .show(ui, |ui| {
                for (label, value) in [
                    ("Host", &mut self.host),
                    ("Port", &mut self.port),
                    ("Name", &mut self.name),
                ] {
                    let caption = ui.label(label);
                    let edit = ui
                        .add(
                            egui::TextEdit::singleline(value)
                                .desired_width(220.0)
                                .id_salt(label),
                        )
                        .labelled_by(caption.id);
                    if self.focus_next == Some(label) {
                        edit.request_focus();
                        self.focus_next = None;
                    }
                    submit |= edit.lost_focus() && ui.input(|i| i.key_pressed(Key::Enter));
                    ui.end_row();
                }
                let caption = ui.label("Password");
                let edit = ui
                    .add(
                        egui::TextEdit::singleline(&mut self.password)
                            .password(true)
                            .hint_text("only to log in to an account")
                            .desired_width(220.0)
                            .id_salt("Password"),
                    )
                    .labelled_by(caption.id);
                submit |= edit.lost_focus() && ui.input(|i| i.key_pressed(Key::Enter));
                ui.end_row();
                ui.label("");
                let mut tls = self.tls();
                if ui.checkbox(&mut tls, "Encrypt (TLS)").changed() {
                    self.tls = Some(tls);
                }
                ui.end_row();
            });
        ui.add_space(8.0);
        let rejected = matches!(state, Some(ConnState::NameRejected { .. }));
        ui.horizontal(|ui| {
            if ui.button("Connect").clicked() {
                submit = true;
            }
        });
        if submit {
            // The name field keeps the keyboard, so a refused name can be changed at once.
            self.focus_next = Some("Name");
            match (&self.client, rejected) {
                // Same connection: just try the new name, or the account with its password.
                (Some(client), true) if !self.name.trim().is_empty() => {
                    let name = self.name.trim().to_string();
                    if self.password.is_empty() {
                        client.set_name(&name);
                    } else {
                        let password = Secret::new(self.password.clone());
                        client.act(move |s, _now| s.set_account(&name, password));
                    }
                }
                _ => self.start(ui.ctx()),
            }
        }
        ui.add_space(8.0);
        match self.untrusted.clone() {
            Some(Untrusted::Unknown { fingerprint }) => {
                ui.label(
                    "The server's certificate is not signed by an authority you trust \
                     (self-signed, usually). Compare its fingerprint with the one the server \
                     printed at start:",
                );
                ui.monospace(&fingerprint);
                if ui.button("Trust and remember").clicked() {
                    self.start_trusting(ui.ctx(), Some(fingerprint));
                }
            }
            Some(Untrusted::Changed { known, offered }) => {
                ui.colored_label(
                    Color32::from_rgb(0xdc, 0x32, 0x2f),
                    format!(
                        "The server's certificate has CHANGED. Someone may be intercepting the \
                         connection. Trusted before: {known}. Offered now: {offered}. If the \
                         server's owner replaced it, remove its line from known_hosts."
                    ),
                );
            }
            None => {}
        }
        if let Some(error) = &self.form_error {
            ui.colored_label(Color32::from_rgb(0xdc, 0x32, 0x2f), error);
        }
        match state {
            Some(ConnState::NameRejected { reason, account }) => {
                let how = match account {
                    Some(account) => format!(
                        "To log in as {account}, give its password; or change the name. Then \
                         press Connect."
                    ),
                    None => "Change the name and press Connect.".to_string(),
                };
                ui.colored_label(
                    Color32::from_rgb(0xdc, 0x32, 0x2f),
                    format!("{reason}. {how}"),
                );
            }
            Some(ConnState::Reconnecting {
                reason, attempt, ..
            }) => {
                ui.colored_label(
                    Color32::from_rgb(0xdc, 0x32, 0x2f),
                    format!("{reason} (retrying, attempt {attempt})"),
                );
            }
            Some(ConnState::Connecting | ConnState::Registering) => {
                ui.label("Connecting…");
            }
            Some(ConnState::Closed { reason }) => {
                ui.colored_label(Color32::from_rgb(0xdc, 0x32, 0x2f), reason);
            }
            Some(ConnState::Online) | None => {}
        }
    }

    fn chat_window(&mut self, ui: &mut egui::Ui) {
        let Some(client) = self.client.clone() else {
            return;
        };
        let clock = self.clock;
        let view = client.with_session(View::from_session);
        self.window_hints(ui.ctx(), &client, &view);
        // Alt+1..9 and Ctrl+N/P switch conversations, as in the terminal clients.
        let mut swallow = self.swallow.take();
        let switch = ui.input_mut(|i| {
            // The text of the Alt+digit pressed a frame ago, if it comes now; any other key or
            // text means it is not coming.
            if let Some(digit) = swallow.take() {
                // A key pressed now is a new key: its text is the user's.
                let pressed = i
                    .events
                    .iter()
                    .any(|e| matches!(e, egui::Event::Key { pressed: true, .. }));
                let text = i.events.iter().any(|e| matches!(e, egui::Event::Text(_)));
                if !pressed && text {
                    let mut removed = false;
                    i.events.retain(|e| match e {
                        egui::Event::Text(t) if !removed && *t == digit => {
                            removed = true;
                            false
                        }
                        _ => true,
                    });
                } else if !pressed {
                    swallow = Some(digit);
                }
            }
            let keys = [
                Key::Num1,
                Key::Num2,
                Key::Num3,
                Key::Num4,
                Key::Num5,
                Key::Num6,
                Key::Num7,
                Key::Num8,
                Key::Num9,
            ];
            for (n, key) in keys.into_iter().enumerate() {
                if i.consume_key(egui::Modifiers::ALT, key) {
                    // The digit's text event of the same key press would reach the input: now,
                    // or in a frame to come.
                    let digit = (n + 1).to_string();
                    let before = i.events.len();
                    i.events
                        .retain(|e| !matches!(e, egui::Event::Text(t) if *t == digit));
                    if i.events.len() == before {
                        swallow = Some(digit);
                    }
                    return Some((Some(n), 0));
                }
            }
            if i.consume_key(egui::Modifiers::COMMAND, Key::N) {
                return Some((None, 1));
            }
            if i.consume_key(egui::Modifiers::COMMAND, Key::P) {
                return Some((None, -1));
            }
            None
        });
        self.swallow = swallow;
        match switch {
            Some((Some(index), _)) => client.act(move |s, _| s.switch_to_index(index)),
            Some((None, step)) => client.act(move |s, _| s.switch_relative(step)),
            None => {}
        }
        if switch.is_some() {
            self.focus_next = Some("input");
        }

        egui::Panel::top("topic_bar").show(ui, |ui| {
            if let ConnState::Reconnecting {
                reason, attempt, ..
            } = &view.state
            {
                egui::Frame::new()
                    .fill(Color32::from_rgb(0xfd, 0xf0, 0xc0))
                    .inner_margin(6.0)
                    .show(ui, |ui| {
                        ui.colored_label(
                            Color32::from_rgb(0x80, 0x40, 0x00),
                            format!("Connection lost: {reason}. Reconnecting (attempt {attempt})…"),
                        );
                    });
            }
            ui.horizontal(|ui| {
                ui.strong(&view.title);
                if !view.topic.is_empty() {
                    ui.separator();
                    ui.label(&view.topic);
                }
                ui.with_layout(egui::Layout::right_to_left(egui::Align::Center), |ui| {
                    ui.weak(format!("{} · {}", view.me, state_text(&view.state)));
                });
            });
        });

        egui::Panel::bottom("input_bar").show(ui, |ui| {
            ui.add_space(4.0);
            ui.horizontal(|ui| {
                if ui.button("Quit").clicked() {
                    client.submit("/quit");
                    self.quitting = true;
                }
                let send = ui.button("Send");
                let input_id = ui.make_persistent_id("input_field");
                let focused = ui.memory(|m| m.has_focus(input_id));
                // Taken before the field sees them: Tab completes (it does not leave the
                // field), and a paste of several lines waits for a yes instead of being
                // flattened into one line.
                let tab =
                    focused && ui.input_mut(|i| i.consume_key(egui::Modifiers::NONE, Key::Tab));
                if focused {
                    let pasted = ui.input_mut(|i| {
                        let mut found = None;
                        i.events.retain(|e| match e {
                            egui::Event::Paste(text) if text.trim_end().contains('\n') => {
                                found = Some(text.clone());
                                false
                            }
                            _ => true,
                        });
                        found
                    });
                    if let Some(text) = pasted {
                        self.paste = Some(text.trim_end().to_string());
                    }
                }
                if tab {
                    self.complete(&client);
                }
                // Shift+Enter starts a new line of the same message (taken first: a plain
                // Enter's pattern would match it too). A message of several lines is edited
                // in a field that grows with it, where Enter still sends.
                let newline =
                    focused && ui.input_mut(|i| i.consume_key(egui::Modifiers::SHIFT, Key::Enter));
                if newline {
                    self.insert_newline(ui.ctx(), input_id);
                }
                let lines = self.input.contains('\n');
                let send_lines = focused
                    && lines
                    && ui.input_mut(|i| i.consume_key(egui::Modifiers::NONE, Key::Enter));
                let field = if lines {
                    egui::TextEdit::multiline(&mut self.input).desired_rows(1)
                } else {
                    egui::TextEdit::singleline(&mut self.input)
                };
                let edit = ui
                    .add(
                        field
                            .id(input_id)
                            .lock_focus(true)
                            .hint_text("Message, or /help (Shift+Enter: new line)")
                            .desired_width(f32::INFINITY),
                    )
                    .labelled_by(send.id);
                if tab {
                    // The cursor goes to the end of the completed word.
                    if let Some(mut state) = egui::TextEdit::load_state(ui.ctx(), input_id) {
                        let end = egui::text::CCursor::new(self.input.chars().count());
                        state
                            .cursor
                            .set_char_range(Some(egui::text::CCursorRange::one(end)));
                        state.store(ui.ctx(), input_id);
                    }
                }
                // Read before the focus is given back below (losing it is how Enter shows).
                let entered =
                    send_lines || edit.lost_focus() && ui.input(|i| i.key_pressed(Key::Enter));
                // The input keeps the keyboard: after connecting, switching, joining, and
                // when Escape or a click elsewhere left nothing focused.
                let nothing_focused = ui.memory(|m| m.focused().is_none());
                if self.focus_next == Some("input")
                    || nothing_focused && self.paste.is_none() && self.link.is_none()
                {
                    edit.request_focus();
                    self.focus_next = None;
                }
                // Up and Down move between a message's lines while it has several.
                if edit.has_focus() && !lines {
                    let (up, down) =
                        ui.input(|i| (i.key_pressed(Key::ArrowUp), i.key_pressed(Key::ArrowDown)));
                    if up {
                        self.walk_history(-1);
                    } else if down {
                        self.walk_history(1);
                    }
                }
                if entered || send.clicked() {
                    let line = std::mem::take(&mut self.input);
                    self.history.push(&line);
                    if line.contains('\n') {
                        let text = line.trim_end().to_string();
                        if !text.trim().is_empty() {
                            client.act(move |s, now| s.handle_paste(now, &text));
                        }
                    } else if !line.trim().is_empty() {
                        client.submit(line);
                    }
                    edit.request_focus();
                }
            });
            ui.add_space(4.0);
        });

        // A narrow window keeps its width for the messages: the member list folds away first
        // (under 760 px), then the room list (under 560 px; Alt+1..9 and Ctrl+N/P still switch).
        let width = ui.available_width();
        if width >= NARROW_ROOMS {
            egui::Panel::left("rooms")
                .resizable(true)
                .default_size(170.0)
                .show(ui, |ui| {
                    ui.heading("Rooms");
                    for (i, (label, unread, mentions, active)) in view.rooms.iter().enumerate() {
                        let text = if *unread > 0 {
                            format!("{label} ({unread})")
                        } else {
                            label.clone()
                        };
                        let mut rich = RichText::new(text);
                        if *mentions > 0 {
                            rich = rich.color(Color32::from_rgb(0xdc, 0x32, 0x2f)).strong();
                        } else if *unread > 0 {
                            rich = rich.strong();
                        }
                        if ui.selectable_label(*active, rich).clicked() {
                            client.act(move |s, _| s.switch_to_index(i));
                            self.focus_next = Some("input");
                        }
                    }
                    ui.separator();
                    ui.horizontal(|ui| {
                        let edit = ui.add(
                            egui::TextEdit::singleline(&mut self.join_field)
                                .id_salt("join")
                                .hint_text("#room")
                                .desired_width(100.0),
                        );
                        let entered = edit.lost_focus() && ui.input(|i| i.key_pressed(Key::Enter));
                        let join = ui.button("Join");
                        // The button names the field for screen readers (and tests).
                        edit.labelled_by(join.id);
                        if (join.clicked() || entered) && !self.join_field.trim().is_empty() {
                            client.submit(format!("/join {}", self.join_field.trim()));
                            self.join_field.clear();
                            self.focus_next = Some("input");
                        }
                    });
                });
        }

        if width >= NARROW_MEMBERS {
            egui::Panel::right("members")
                .resizable(true)
                .default_size(140.0)
                .show(ui, |ui| {
                    ui.heading(format!("Members ({})", view.members.len()));
                    egui::ScrollArea::vertical()
                        .id_salt("members_scroll")
                        .show(ui, |ui| {
                            for (role, m, away) in &view.members {
                                ui.horizontal(|ui| {
                                    ui.spacing_mut().item_spacing.x = 0.0;
                                    if *role != Role::Member {
                                        ui.label(RichText::new(role.prefix()).strong());
                                    }
                                    match away {
                                        // Away: greyed, the reason on hover.
                                        Some(reason) => {
                                            ui.label(RichText::new(m).weak().italics())
                                                .on_hover_text(format!("away: {reason}"));
                                        }
                                        None => {
                                            ui.label(
                                                RichText::new(m).color(nick_color(m, &view.me)),
                                            );
                                        }
                                    }
                                });
                            }
                        });
                });
        }

        egui::CentralPanel::default().show(ui, |ui| {
            // Sticks to the bottom while the user is there; scrolling up pauses it.
            let jump = std::mem::take(&mut self.jump_to_latest);
            let scrolled = egui::ScrollArea::vertical()
                .id_salt("scrollback")
                .auto_shrink([false, false])
                .stick_to_bottom(true)
                .show(ui, |ui| {
                    for (i, line) in view.lines.iter().enumerate() {
                        if view.marker == Some(i) {
                            ui.horizontal(|ui| {
                                ui.colored_label(
                                    Color32::from_rgb(0xdc, 0x32, 0x2f),
                                    "new since you last read",
                                );
                                ui.separator();
                            });
                        }
                        if let Some(link) = render_line(ui, line, clock, &view.me) {
                            match link.1 {
                                Some(warning) => self.link = Some((link.0, warning)),
                                None => ui.ctx().open_url(egui::OpenUrl::new_tab(link.0)),
                            }
                        }
                    }
                    if jump {
                        ui.scroll_to_cursor(Some(egui::Align::BOTTOM));
                    }
                });
            // Read further up while lines arrive: a button says how many, and goes there.
            let bottom = (scrolled.content_size.y - scrolled.inner_rect.height()).max(0.0);
            if scrolled.state.clamped_offset().y >= bottom - 4.0 {
                self.reading_up = None;
            } else if self.reading_up.is_none() {
                self.reading_up = Some((view.title.clone(), view.lines.last().cloned()));
            }
            let arrived = self.reading_up.as_ref().and_then(|(title, newest)| {
                let n = client.with_session(|s| s.active().map(|c| c.lines_after(newest.as_ref())));
                n.filter(|&n| *title == view.title && n > 0)
            });
            if let Some(n) = arrived {
                let rect = scrolled.inner_rect;
                let at = egui::Rect::from_min_size(
                    rect.right_bottom() - egui::vec2(190.0, 34.0),
                    egui::vec2(180.0, 26.0),
                );
                if ui
                    .put(at, egui::Button::new(format!("↓ jump to latest ({n})")))
                    .clicked()
                {
                    self.jump_to_latest = true;
                    self.reading_up = None;
                    ui.ctx().request_repaint();
                }
            }
        });
        self.dialogs(ui, &client);
    }

    /// The questions that wait for a yes: a multi-line paste, a lookalike link.
    fn dialogs(&mut self, ui: &mut egui::Ui, client: &ClientHandle) {
        if let Some(text) = self.paste.clone() {
            let count = text.lines().count();
            let mut answer = None;
            egui::Modal::new(egui::Id::unique("paste_dialog")).show(ui.ctx(), |ui| {
                ui.heading(format!("Send {count} lines as one message?"));
                let preview: String = text.lines().take(6).collect::<Vec<_>>().join("\n");
                ui.label(if count > 6 {
                    format!("{preview}\n…")
                } else {
                    preview
                });
                ui.horizontal(|ui| {
                    if ui.button("Send as one message").clicked()
                        || ui.input(|i| i.key_pressed(Key::Enter))
                    {
                        answer = Some(true);
                    }
                    if ui.button("Cancel").clicked() || ui.input(|i| i.key_pressed(Key::Escape)) {
                        answer = Some(false);
                    }
                });
            });
            if let Some(send) = answer {
                if send {
                    client.act(move |s, now| s.handle_paste(now, &text));
                }
                self.paste = None;
                self.focus_next = Some("input");
            }
        }
        if let Some((url, warning)) = self.link.clone() {
            let mut answer = None;
            egui::Modal::new(egui::Id::unique("link_dialog")).show(ui.ctx(), |ui| {
                ui.heading("Open this link?");
                ui.monospace(&url);
                ui.colored_label(
                    Color32::from_rgb(0xdc, 0x32, 0x2f),
                    format!("Careful: {warning}."),
                );
                ui.horizontal(|ui| {
                    if ui.button("Open").clicked() {
                        answer = Some(true);
                    }
                    if ui.button("Cancel").clicked() || ui.input(|i| i.key_pressed(Key::Escape)) {
                        answer = Some(false);
                    }
                });
            });
            if let Some(open) = answer {
                if open {
                    ui.ctx().open_url(egui::OpenUrl::new_tab(url));
                }
                self.link = None;
                self.focus_next = Some("input");
            }
        }
    }

    /// Puts a line break where the input's cursor is (replacing a selection), and the cursor
    /// after it.
    fn insert_newline(&mut self, ctx: &egui::Context, id: egui::Id) {
        let chars = self.input.chars().count();
        let mut state = egui::TextEdit::load_state(ctx, id).unwrap_or_default();
        let (start, end) = state.cursor.char_range().map_or((chars, chars), |r| {
            let (a, b) = (r.primary.index.0.min(chars), r.secondary.index.0.min(chars));
            (a.min(b), a.max(b))
        });
        let byte = |i: usize| {
            self.input
                .char_indices()
                .nth(i)
                .map_or(self.input.len(), |(b, _)| b)
        };
        let (from, to) = (byte(start), byte(end));
        self.input.replace_range(from..to, "\n");
        let at = egui::text::CCursor::new(start + 1);
        state
            .cursor
            .set_char_range(Some(egui::text::CCursorRange::one(at)));
        state.store(ctx, id);
    }

    /// Tab in the input: completes the last word from nicks, rooms and commands.
    fn complete(&mut self, client: &ClientHandle) {
        let input = self.input.clone();
        if let Some(done) = client.with_session(|s| chat_core::input::complete(s, &input)) {
            self.input.truncate(done.start);
            self.input.push_str(&done.replacement);
        }
    }

    /// The window title carries the unread count, and a mention or direct message in an
    /// unfocused window asks the window manager for attention (the urgency hint).
    fn window_hints(&mut self, ctx: &egui::Context, client: &ClientHandle, view: &View) {
        let unread: usize = view.rooms.iter().filter(|r| !r.3).map(|r| r.1).sum();
        let title = match unread {
            0 => format!("{} — chat", view.title),
            n => format!("({n}) {} — chat", view.title),
        };
        if title != self.title {
            ctx.send_viewport_cmd(egui::ViewportCommand::Title(title.clone()));
            self.title = title;
        }
        let notified = client.with_session(|s| s.notifications());
        if notified <= self.notified {
            return;
        }
        let new = (notified - self.notified) as usize;
        self.notified = notified;
        let focused = ctx.input(|i| i.viewport().focused.unwrap_or(true));
        if focused || !self.attention {
            return;
        }
        ctx.send_viewport_cmd(egui::ViewportCommand::RequestUserAttention(
            egui::UserAttentionType::Informational,
        ));
        let Some(notify) = &mut self.notifier else {
            return;
        };
        // The newest few, oldest first: a burst makes three notifications, not fifty.
        let fresh: Vec<(String, String)> = client.with_session(|s| {
            let mut newest: Vec<_> = s
                .highlights()
                .rev()
                .take(new.min(3))
                .filter_map(|(place, line)| {
                    let (from, text) = match &line.kind {
                        LineKind::Message { from, text } => (from.clone(), text.clone()),
                        LineKind::Action { from, text } => {
                            (from.clone(), format!("* {from} {text}"))
                        }
                        _ => return None,
                    };
                    let summary = if place.starts_with('#') {
                        format!("{from} in {place}")
                    } else {
                        format!("{from} (direct message)")
                    };
                    Some((summary, text))
                })
                .collect();
            newest.reverse();
            newest
        });
        for (summary, body) in fresh {
            notify(summary, body);
        }
    }

    /// The window title, as last set.
    pub fn title(&self) -> &str {
        &self.title
    }

    fn walk_history(&mut self, step: isize) {
        if let Some(line) = self.history.walk(step) {
            self.input = line.to_string();
        }
    }
}

impl eframe::App for ChatApp {
    fn ui(&mut self, ui: &mut egui::Ui, _frame: &mut eframe::Frame) {
        self.show(ui);
        if self.quitting {
            ui.ctx().send_viewport_cmd(egui::ViewportCommand::Close);
        }
    }

    fn on_exit(&mut self) {
        self.leave();
    }
}

/// What the chat window shows, taken from the session under one lock.
struct View {
    state: ConnState,
    me: String,
    title: String,
    topic: String,
    /// (label, unread, mentions, active) per conversation.
    rooms: Vec<(String, usize, usize, bool)>,
    /// Members with their roles and away reasons, in the order shown.
    members: Vec<(Role, String, Option<String>)>,
    lines: Vec<Line>,
    /// Where the "new since you last read" line goes in `lines`.
    marker: Option<usize>,
}

impl View {
    fn from_session(s: &Session) -> View {
        let active = s.active();
        let rooms = s
            .conversations()
            .map(|c| {
                let label = match c.kind {
                    ConversationKind::Room => c.name.clone(),
                    // A person's name alone: `@` is an operator's mark in member lists.
                    ConversationKind::Direct => c.name.clone(),
                };
                (
                    label,
                    c.unread,
                    c.mentions,
                    active.is_some_and(|a| a.name == c.name),
                )
            })
            .collect();
        View {
            state: s.state().clone(),
            me: s.name().unwrap_or(s.wanted_name()).to_string(),
            title: active.map_or_else(|| "No room".into(), title_of),
            topic: active.map(|c| c.topic.clone()).unwrap_or_default(),
            rooms,
            members: active
                .map(|c| {
                    c.members_by_role()
                        .into_iter()
                        .map(|(role, m)| (role, m.to_string(), s.away_reason(m).map(String::from)))
                        .collect()
                })
                .unwrap_or_default(),
            marker: active.and_then(Conversation::marker_position),
            lines: match active {
                Some(c) => c.lines.iter().cloned().collect(),
                None => s.status_lines().iter().cloned().collect(),
            },
        }
    }
}

fn title_of(c: &Conversation) -> String {
    match c.kind {
        ConversationKind::Room => c.name.clone(),
        ConversationKind::Direct => format!("Direct messages with {}", c.name),
    }
}

fn state_text(state: &ConnState) -> &'static str {
    match state {
        ConnState::Online => "online",
        ConnState::Connecting | ConnState::Registering => "connecting",
        ConnState::NameRejected { .. } => "name refused",
        ConnState::Reconnecting { .. } => "reconnecting",
        ConnState::Closed { .. } => "disconnected",
    }
}

/// A nick in the palette every client shares; your own in the strong text colour.
fn nick_color(name: &str, me: &str) -> Color32 {
    match nick_colour(name, Some(me)) {
        Some(c) => Color32::from_rgb(c.rgb[0], c.rgb[1], c.rgb[2]),
        None => OWN_NICK,
    }
}

/// Narrower than this, the window shows no room list.
const NARROW_ROOMS: f32 = 560.0;
/// Narrower than this, the window shows no member list.
const NARROW_MEMBERS: f32 = 760.0;
/// Secondary text (times, notices, help) in the dark theme: 4.6:1 on its panels (grey 27),
/// where egui's own weak text is about 2.7:1.
const WEAK_DARK: Color32 = Color32::from_gray(132);
/// The same in the light theme: 4.8:1 on its panels (grey 248).
const WEAK_LIGHT: Color32 = Color32::from_gray(110);

/// Your own name: the strong text colour of the dark theme, in no one else's palette.
const OWN_NICK: Color32 = Color32::from_rgb(0xf0, 0xf0, 0xf0);

/// Text for a desktop notification's body, which notification servers read as markup:
/// someone's `<a href=...>` or `<img>` is shown as the characters they typed.
pub fn notification_markup(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// The mention colour: the whole line's text, as the terminal clients highlight it.
const MENTION: Color32 = Color32::from_rgb(0xcb, 0x4b, 0x16);

/// Message text in display order, links as links. Returns a link that was clicked, with the
/// warning to show first when its host could imitate another.
fn message_text(
    ui: &mut egui::Ui,
    text: &str,
    style: impl Fn(RichText) -> RichText,
) -> Option<(String, Option<String>)> {
    let mut clicked = None;
    let mut at = 0;
    for url in chat_core::text::urls(text) {
        let before = &text[at..url.range.start];
        if !before.trim().is_empty() {
            ui.label(style(RichText::new(fonts::visual(before.trim()))));
        }
        if ui.link(style(RichText::new(url.url))).clicked() {
            clicked = Some((url.url.to_string(), url.lookalike.clone()));
        }
        at = url.range.end;
    }
    let rest = &text[at..];
    if !rest.trim().is_empty() || at == 0 {
        ui.label(style(RichText::new(fonts::visual(rest.trim_start()))));
    }
    clicked
}

fn render_line(
    ui: &mut egui::Ui,
    line: &Line,
    clock: Clock,
    me: &str,
) -> Option<(String, Option<String>)> {
    let time = chrono::DateTime::from_timestamp_millis(line.ts as i64)
        .map(|t| match clock {
            Clock::Local => t.with_timezone(&chrono::Local).format("%H:%M").to_string(),
            Clock::Utc => t.format("%H:%M").to_string(),
        })
        .unwrap_or_default();
    let mut clicked = None;
    // The time in its own column: a wrapped line continues under the text, not under it.
    ui.horizontal_top(|ui| {
        ui.spacing_mut().item_spacing.x = 4.0;
        ui.label(RichText::new(time).weak().monospace());
        ui.horizontal_wrapped(|ui| render_body(ui, line, me, &mut clicked));
    });
    clicked
}

fn render_body(
    ui: &mut egui::Ui,
    line: &Line,
    me: &str,
    clicked: &mut Option<(String, Option<String>)>,
) {
    {
        ui.spacing_mut().item_spacing.x = 4.0;
        let system = |text: String| RichText::new(text).italics().weak();
        // A reply: what it answers, small and dim, before the sender.
        if let Some(quote) = &line.reply {
            ui.label(
                RichText::new(format!("↳ {}", quote.describe()))
                    .weak()
                    .small(),
            );
        }
        match &line.kind {
            LineKind::Message { from, text } => {
                let nick = if line.notice {
                    format!("-{from}-")
                } else {
                    format!("<{from}>")
                };
                ui.label(RichText::new(nick).color(nick_color(from, me)).strong());
                *clicked = message_text(ui, text, |t| {
                    if line.mention {
                        t.strong().color(MENTION)
                    } else {
                        t
                    }
                });
            }
            LineKind::Action { from, text } => {
                ui.label(
                    RichText::new(format!("* {from}"))
                        .color(nick_color(from, me))
                        .italics(),
                );
                *clicked = message_text(ui, text, |t| {
                    if line.mention {
                        t.italics().strong().color(MENTION)
                    } else {
                        t.italics()
                    }
                });
            }
            LineKind::Join { name } => {
                ui.label(system(format!("» {name} joined")));
            }
            LineKind::Part { name, reason } => {
                let why = reason
                    .as_ref()
                    .map(|r| format!(" ({r})"))
                    .unwrap_or_default();
                ui.label(system(format!("« {name} left{why}")));
            }
            LineKind::Quit { name, reason } => {
                ui.label(system(format!("« {name} quit ({reason})")));
            }
            LineKind::Nick { old, new } => {
                ui.label(system(format!("{old} is now known as {new}")));
            }
            LineKind::Topic { by, topic } => {
                let text = match by {
                    Some(by) => format!("{by} set the topic: {topic}"),
                    None => format!("Topic: {topic}"),
                };
                ui.label(system(text));
            }
            // A list laid out in columns (/help) keeps them: monospace.
            LineKind::Notice(text) if text.contains("\n  ") => {
                ui.label(RichText::new(text.clone()).monospace().weak());
            }
            LineKind::Notice(text) => {
                ui.label(system(text.clone()));
            }
            LineKind::Error(text) => {
                ui.colored_label(Color32::from_rgb(0xdc, 0x32, 0x2f), text);
            }
        }
        // Reactions, counted, after the message; who reacted shows on hover.
        if !line.reactions.is_empty() {
            let who: Vec<String> = line
                .reactions
                .iter()
                .map(|r| format!("{} {}", r.emoji, r.from.join(", ")))
                .collect();
            ui.label(RichText::new(line.reaction_counts()).weak())
                .on_hover_text(who.join("\n"));
        }
    }
}
