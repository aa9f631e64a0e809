//! Drives the real chat-egui screens headless with egui_kittest: the connect form, typing and
//! sending, receiving, switching rooms, unread badges, the reconnect banner and quitting, with
//! PNG snapshots of the main screens (rendered by wgpu; Mesa's software drivers do it headless).

use std::cell::RefCell;
use std::rc::Rc;

use chat_core::SessionConfig;
use chat_core::client::{self, LocalDriver};
use chat_core::codec::decode_server;
use chat_core::protocol::ClientMsg;
use chat_core::protocol::Secret;
use chat_core::session::Output;
use chat_core::tls::Untrusted;
use chat_egui::{ChatApp, Clock, ConnectRequest, Form};
use eframe::egui;
use eframe::egui::accesskit::Role;
use egui_kittest::Harness;
use egui_kittest::kittest::Queryable;

const T: u64 = 1_700_000_000_000;

/// The app plus what its connect function handed out.
struct Gui {
    harness: Harness<'static, ChatApp>,
    driver: Rc<RefCell<Option<LocalDriver>>>,
    connects: Rc<RefCell<Vec<(String, String)>>>,
    /// Every request the connect screen made, in full.
    requests: Rc<RefCell<Vec<ConnectRequest>>>,
    /// Answers the next requests with "not trusted" while set.
    refuse: Rc<RefCell<Option<Untrusted>>>,
}

impl Gui {
    fn new() -> Gui {
        Gui::at("127.0.0.1")
    }

    /// The app with `host` in its connect screen.
    fn at(host: &str) -> Gui {
        let driver = Rc::new(RefCell::new(None));
        let connects = Rc::new(RefCell::new(Vec::new()));
        let requests = Rc::new(RefCell::new(Vec::new()));
        let refuse = Rc::new(RefCell::new(None));
        let (d, c, r, no) = (
            driver.clone(),
            connects.clone(),
            requests.clone(),
            refuse.clone(),
        );
        let connect: chat_egui::Connect = Box::new(move |request, _ctx| {
            r.borrow_mut().push(request.clone());
            if let Some(why) = no.borrow_mut().take() {
                return Err(why);
            }
            let name = request.name.as_str();
            c.borrow_mut().push((
                format!("{}:{}", request.host, request.port),
                name.to_string(),
            ));
            let (handle, local) = client::local(
                request.session(SessionConfig {
                    cid_prefix: "t".into(),
                    ..SessionConfig::default()
                }),
                T,
            );
            *d.borrow_mut() = Some(local);
            Ok(handle)
        });
        let app = ChatApp::new(
            connect,
            Clock::Utc,
            Form {
                host: host.into(),
                port: 53000,
                name: String::new(),
                password: None,
                tls: None,
            },
            false,
            &egui::Context::default(),
        );
        let harness = Harness::builder()
            .with_size([900.0, 560.0])
            .build_ui_state(|ui, app: &mut ChatApp| app.show(ui), app);
        Gui {
            harness,
            driver,
            connects,
            requests,
            refuse,
        }
    }

    fn with_driver<R>(&mut self, f: impl FnOnce(&mut LocalDriver) -> R) -> R {
        let r = f(self.driver.borrow_mut().as_mut().expect("connected"));
        self.harness.run();
        r
    }

    fn server(&mut self, lines: &[&str]) {
        self.with_driver(|d| {
            for line in lines {
                d.server(decode_server(line.as_bytes()).unwrap());
            }
        });
    }

    fn sent(&mut self) -> Vec<ClientMsg> {
        self.with_driver(|d| {
            d.run_pending()
                .into_iter()
                .filter_map(|o| match o {
                    Output::Send(m) => Some(m),
                    _ => None,
                })
                .collect()
        })
    }

    fn click_button(&mut self, label: &str) {
        self.harness
            .get_by_role_and_label(Role::Button, label)
            .click();
        self.harness.run();
    }

    /// The current text of the input labelled `label`.
    /// The text of a field, of one line or of several.
    fn input_value(&self, label: &str) -> Option<String> {
        self.harness
            .query_by_role_and_label(Role::TextInput, label)
            .or_else(|| {
                self.harness
                    .query_by_role_and_label(Role::MultilineTextInput, label)
            })
            .expect("no such field")
            .value()
    }

    fn type_into(&mut self, label: &str, text: &str) {
        // A password field is its own kind of input, so that screen readers do not read it.
        let role = if label == "Password" {
            Role::PasswordInput
        } else {
            Role::TextInput
        };
        self.harness.get_by_role_and_label(role, label).click();
        self.harness.run();
        self.harness
            .get_by_role_and_label(role, label)
            .type_text(text);
        self.harness.run();
    }

    /// Connects as alice and receives the usual welcome into #lobby.
    fn online() -> Gui {
        let mut gui = Gui::new();
        gui.type_into("Name", "alice");
        gui.click_button("Connect");
        gui.with_driver(|d| d.connected());
        gui.server(&[
            r#"{"type":"welcome","version":1,"name":"alice","server":"t","limits":{"max_line":100,"max_text":100,"max_text_lines":2,"max_name":32}}"#,
            r##"{"type":"join","room":"#lobby","name":"alice","ts":1700000000000}"##,
            r##"{"type":"topic","room":"#lobby","topic":"Be excellent to each other"}"##,
            r##"{"type":"members","room":"#lobby","names":["alice","bob","carol"]}"##,
            r##"{"type":"history","room":"#lobby","messages":[{"id":1,"ts":1699999940000,"room":"#lobby","from":"bob","text":"morning all"}],"more":false}"##,
        ]);
        gui.sent();
        gui
    }
}

#[test]
fn connect_form_validates_connects_and_retries_a_taken_name() {
    let mut gui = Gui::new();
    gui.click_button("Connect");
    gui.harness.get_by_label("Choose a name.");
    gui.type_into("Name", "alice");
    gui.harness.snapshot("connect_form");
    gui.click_button("Connect");
    assert_eq!(
        *gui.connects.borrow(),
        vec![("127.0.0.1:53000".to_string(), "alice".to_string())]
    );
    let hello = gui.with_driver(|d| d.connected());
    assert!(hello.contains(&Output::Send(ClientMsg::Hello {
        version: 1,
        name: "alice".into(),
        password: None
    })));
    gui.server(&[
        r#"{"type":"error","code":"name_taken","message":"the name alice is taken; pick another"}"#,
    ]);
    gui.harness.get_by_label_contains("the name alice is taken");
    // The name field has the keyboard again, to type another name at once.
    assert!(
        gui.harness
            .get_by_role_and_label(Role::TextInput, "Name")
            .is_focused(),
        "the name field is focused after a refusal"
    );
    gui.type_into("Name", "2");
    gui.click_button("Connect");
    assert_eq!(
        gui.sent(),
        vec![ClientMsg::Hello {
            version: 1,
            name: "alice2".into(),
            password: None
        }]
    );
    // Still one connection: the new name went over the same one.
    assert_eq!(gui.connects.borrow().len(), 1);
}

#[test]
fn typing_sending_and_receiving() {
    let mut gui = Gui::online();
    gui.harness.get_by_label("Be excellent to each other");
    gui.harness.get_by_label("morning all");
    gui.type_into("Send", "hello from the window");
    gui.harness.key_press(egui::Key::Enter);
    gui.harness.run();
    assert_eq!(
        gui.sent(),
        vec![ClientMsg::Say {
            room: "#lobby".into(),
            text: "hello from the window".into(),
            cid: Some("t-1".into()),
            notice: false,
            tags: Default::default(),
        }]
    );
    gui.server(&[
        r##"{"type":"message","id":2,"ts":1700000001000,"room":"#lobby","from":"alice","text":"hello from the window"}"##,
        r##"{"type":"message","id":3,"ts":1700000002000,"room":"#lobby","from":"carol","text":"waves back","action":true}"##,
        r##"{"type":"join","room":"#lobby","name":"dave","ts":1700000003000}"##,
    ]);
    gui.harness.get_by_label("hello from the window");
    gui.harness.get_by_label("waves back");
    gui.harness.get_by_label("» dave joined");
    gui.harness.get_by_label("Members (4)");
    gui.harness.snapshot("chat_window");
}

#[test]
fn rooms_unread_badges_and_switching() {
    let mut gui = Gui::online();
    gui.type_into("Join", "#rust");
    gui.click_button("Join");
    assert_eq!(
        gui.sent(),
        vec![ClientMsg::Join {
            room: "#rust".into(),
            since: None,
            key: None
        }]
    );
    gui.server(&[
        r##"{"type":"join","room":"#rust","name":"alice","ts":1700000003000}"##,
        r##"{"type":"history","room":"#rust","messages":[],"more":false}"##,
        r##"{"type":"message","id":4,"ts":1700000004000,"room":"#lobby","from":"bob","text":"one"}"##,
        r##"{"type":"message","id":5,"ts":1700000005000,"room":"#lobby","from":"bob","text":"two"}"##,
        r##"{"type":"direct","id":6,"ts":1700000006000,"from":"carol","to":"alice","text":"psst"}"##,
    ]);
    gui.harness.get_by_label("#lobby (2)");
    gui.harness.get_by_label("carol (1)");
    gui.harness.get_by_label("#lobby (2)").click();
    gui.harness.run();
    gui.sent();
    assert!(
        gui.harness.query_by_label("#lobby (2)").is_none(),
        "badge cleared"
    );
    gui.harness.get_by_label("two");
    gui.harness.get_by_label("carol (1)").click();
    gui.harness.run();
    gui.sent();
    gui.harness.get_by_label("Direct messages with carol");
    gui.type_into("Send", "hi carol");
    gui.harness.key_press(egui::Key::Enter);
    gui.harness.run();
    assert_eq!(
        gui.sent(),
        vec![ClientMsg::Msg {
            to: "carol".into(),
            text: "hi carol".into(),
            action: false,
            cid: Some("t-1".into()),
            notice: false,
            tags: Default::default(),
        }]
    );
}

#[test]
fn input_history_walks_with_the_arrow_keys() {
    let mut gui = Gui::online();
    for line in ["first", "second"] {
        gui.type_into("Send", line);
        gui.harness.key_press(egui::Key::Enter);
        gui.harness.run();
    }
    assert_eq!(gui.sent().len(), 2);
    gui.type_into("Send", "");
    gui.harness.key_press(egui::Key::ArrowUp);
    gui.harness.run();
    assert_eq!(gui.input_value("Send").as_deref(), Some("second"));
    gui.harness.key_press(egui::Key::ArrowUp);
    gui.harness.run();
    assert_eq!(gui.input_value("Send").as_deref(), Some("first"));
    gui.harness.key_press(egui::Key::ArrowDown);
    gui.harness.key_press(egui::Key::ArrowDown);
    gui.harness.run();
    assert_eq!(gui.input_value("Send").as_deref(), Some(""));
}

#[test]
fn a_lost_connection_shows_a_banner_and_quit_leaves_cleanly() {
    let mut gui = Gui::online();
    gui.with_driver(|d| d.disconnected("connection reset"));
    gui.harness
        .get_by_label_contains("Connection lost: connection reset");
    gui.harness.snapshot("reconnecting");
    gui.with_driver(|d| d.connected());
    let welcome = r#"{"type":"welcome","version":1,"name":"alice","server":"t","limits":{"max_line":100,"max_text":100,"max_text_lines":2,"max_name":32}}"#;
    let out = gui.with_driver(|d| d.server(decode_server(welcome.as_bytes()).unwrap()));
    assert!(
        gui.harness
            .query_by_label_contains("Connection lost")
            .is_none()
    );
    // Catch-up: the session rejoins with the last id it saw.
    assert!(out.contains(&Output::Send(ClientMsg::Join {
        room: "#lobby".into(),
        since: Some(1),
        key: None
    })));
    gui.click_button("Quit");
    assert_eq!(gui.sent(), vec![ClientMsg::Quit { reason: None }]);
    assert!(gui.harness.state().is_quitting());
}

#[test]
fn the_connect_screen_asks_about_an_unknown_certificate_and_sends_the_password() {
    let mut gui = Gui::new();
    gui.type_into("Name", "alice");
    gui.type_into("Password", "hunter2hunter2");
    // Loopback: no TLS unless asked.
    *gui.refuse.borrow_mut() = Some(Untrusted::Unknown {
        fingerprint: "AB:CD:EF".into(),
    });
    gui.harness.get_by_label("Encrypt (TLS)").click();
    gui.harness.run();
    gui.click_button("Connect");
    gui.harness.get_by_label("AB:CD:EF");
    gui.harness.snapshot("connect_untrusted");
    gui.click_button("Trust and remember");
    let requests = gui.requests.borrow().clone();
    assert_eq!(requests.len(), 2, "{requests:?}");
    assert!(requests.iter().all(|r| r.tls), "{requests:?}");
    assert_eq!(requests[0].accept, None);
    assert_eq!(requests[1].accept.as_deref(), Some("AB:CD:EF"));
    assert_eq!(requests[1].password, Some(Secret::new("hunter2hunter2")));
    // The session logs in at hello with that password.
    let hello = gui.with_driver(|d| d.connected());
    assert!(hello.contains(&Output::Send(ClientMsg::Hello {
        version: 1,
        name: "alice".into(),
        password: Some(Secret::new("hunter2hunter2")),
    })));
    // A changed certificate is a warning, not a question.
    let mut gui = Gui::at("chat.example.org");
    gui.type_into("Name", "bob");
    *gui.refuse.borrow_mut() = Some(Untrusted::Changed {
        known: "11:22".into(),
        offered: "33:44".into(),
    });
    gui.click_button("Connect");
    assert!(gui.requests.borrow()[0].tls, "TLS by default off loopback");
    gui.harness.get_by_label_contains("has CHANGED");
    assert!(gui.harness.query_by_label("Trust and remember").is_none());
}

#[test]
fn a_wrong_password_can_be_corrected_on_the_same_connection() {
    let mut gui = Gui::new();
    gui.type_into("Name", "alice");
    gui.type_into("Password", "wrong");
    gui.click_button("Connect");
    gui.with_driver(|d| d.connected());
    gui.server(&[
        r#"{"type":"error","code":"bad_credentials","message":"wrong account name or password"}"#,
    ]);
    gui.harness
        .get_by_label_contains("wrong account name or password");
    gui.type_into("Password", "-fixed");
    gui.click_button("Connect");
    assert_eq!(
        gui.sent(),
        vec![ClientMsg::Hello {
            version: 1,
            name: "alice".into(),
            password: Some(Secret::new("wrong-fixed")),
        }]
    );
    assert_eq!(gui.connects.borrow().len(), 1, "no second connection");
}

#[test]
fn the_member_list_shows_roles_and_moderation_shows_in_the_room() {
    let mut gui = Gui::online();
    gui.server(&[
        r##"{"type":"members","room":"#lobby","names":["alice","bob","carol"],"roles":{"alice":"owner","bob":"op"}}"##,
        r##"{"type":"role","room":"#lobby","name":"carol","role":"voice","by":"alice","ts":1700000001000}"##,
        r##"{"type":"ban","room":"#lobby","ban":{"target":"name:troll*","by":"bob","reason":"spam","ts":1700000002000}}"##,
    ]);
    gui.harness.get_by_label("~");
    gui.harness.get_by_label("@");
    gui.harness.get_by_label("+");
    gui.harness
        .get_by_label("alice made carol voiced of #lobby");
    gui.harness
        .get_by_label("bob banned name:troll* in #lobby: spam");
    gui.harness.snapshot("member_roles");
    gui.type_into("Send", "/ban troll 1h flooding");
    gui.harness.key_press(egui::Key::Enter);
    gui.harness.run();
    assert_eq!(
        gui.sent(),
        vec![ClientMsg::Ban {
            room: "#lobby".into(),
            target: "troll".into(),
            duration: Some(3600),
            reason: Some("flooding".into()),
            mute: false,
        }]
    );
}

#[test]
fn cjk_emoji_and_right_to_left_text_are_drawn() {
    let mut gui = Gui::online();
    let text = "日本語 🎉 ✅ ☕ שלום 2026";
    gui.server(&[
        &format!(r##"{{"type":"message","id":2,"ts":1700000000000,"room":"#lobby","from":"bob","text":"{text}"}}"##),
        r##"{"type":"message","id":3,"ts":1700000001000,"room":"#lobby","from":"carol","text":"עברית עם מספר 123 ו-English"}"##,
        r##"{"type":"message","id":4,"ts":1700000002000,"room":"#lobby","from":"dana","text":"سلام عليكم"}"##,
    ]);
    // Arabic is drawn joined: seen-lam-alef-meem as meem, lam-alef, seen (right to left),
    // each in its presentation form, then the second word.
    let arabic = "\u{FEE1}\u{FEFC}\u{FEB3}";
    gui.harness.get_by_label_contains(arabic);
    // Every character has a glyph in the fonts the app installed (no empty boxes), the joined
    // Arabic forms included.
    let missing: Vec<char> = gui.harness.ctx.fonts_mut(|f| {
        text.chars()
            .chain(arabic.chars())
            .filter(|c| !c.is_whitespace())
            .filter(|c| !f.has_glyph(&egui::FontId::proportional(14.0), *c))
            .collect()
    });
    assert!(missing.is_empty(), "no glyph for {missing:?}");
    // Hebrew reads right to left, its number left to right.
    gui.harness.get_by_label_contains("2026 םולש");
    gui.harness.snapshot("scripts");
}

#[test]
fn the_keyboard_reaches_the_right_field_everywhere() {
    // Typing at once on the connect screen goes into the name field.
    let mut gui = Gui::new();
    gui.harness.run();
    gui.harness
        .get_by_role_and_label(Role::TextInput, "Name")
        .type_text("alice");
    gui.harness.run();
    assert_eq!(gui.input_value("Name").as_deref(), Some("alice"));
    gui.harness.key_press(egui::Key::Enter);
    gui.harness.run();
    assert_eq!(
        gui.connects.borrow().len(),
        1,
        "Enter in the name field connects"
    );
    gui.with_driver(|d| d.connected());
    gui.server(&[
        r#"{"type":"welcome","version":1,"name":"alice","server":"t","limits":{"max_line":1000,"max_text":400,"max_text_lines":20,"max_name":32}}"#,
        r##"{"type":"join","room":"#lobby","name":"alice","ts":1700000000000}"##,
        r##"{"type":"members","room":"#lobby","names":["alice","bob","Zoë"]}"##,
        r##"{"type":"join","room":"#rust","name":"alice","ts":1700000000000}"##,
    ]);
    gui.sent();
    gui.harness.run();
    // Online: the input has the keyboard without a click.
    let focused = |gui: &Gui| {
        gui.harness
            .get_by_role_and_label(Role::TextInput, "Send")
            .is_focused()
    };
    assert!(focused(&gui), "the input is focused after connecting");
    // Escape does not leave the keyboard nowhere.
    gui.harness.key_press(egui::Key::Escape);
    gui.harness.run();
    gui.harness.run();
    assert!(focused(&gui), "the input is focused again after Escape");
    // Alt+1 switches to the first conversation, Ctrl+N to the next.
    let active = |gui: &mut Gui| {
        gui.sent();
        gui.harness
            .state()
            .client()
            .unwrap()
            .with_session(|s| s.active().unwrap().name.clone())
    };
    assert_eq!(active(&mut gui), "#lobby");
    gui.harness
        .key_press_modifiers(egui::Modifiers::ALT, egui::Key::Num2);
    gui.harness.run();
    assert_eq!(active(&mut gui), "#rust");
    gui.harness
        .key_press_modifiers(egui::Modifiers::COMMAND, egui::Key::P);
    gui.harness.run();
    assert_eq!(active(&mut gui), "#lobby");
    gui.harness
        .key_press_modifiers(egui::Modifiers::COMMAND, egui::Key::N);
    gui.harness.run();
    assert_eq!(active(&mut gui), "#rust");
    gui.harness
        .key_press_modifiers(egui::Modifiers::ALT, egui::Key::Num1);
    gui.harness.run();
    assert_eq!(active(&mut gui), "#lobby");
    assert!(focused(&gui), "switching keeps the input focused");
    // A real keyboard sends the digit's text with Alt+2: it does not land in the input.
    let alt = egui::Modifiers::ALT;
    gui.harness.event(egui::Event::ModifiersChanged(alt));
    gui.harness.event(egui::Event::Key {
        key: egui::Key::Num2,
        physical_key: None,
        pressed: true,
        repeat: false,
        modifiers: alt,
    });
    gui.harness.event(egui::Event::Text("2".into()));
    gui.harness.event(egui::Event::Key {
        key: egui::Key::Num2,
        physical_key: None,
        pressed: false,
        repeat: false,
        modifiers: alt,
    });
    gui.harness
        .event(egui::Event::ModifiersChanged(egui::Modifiers::NONE));
    gui.harness.run();
    assert_eq!(active(&mut gui), "#rust");
    assert_eq!(gui.input_value("Send").as_deref(), Some(""));
    gui.harness
        .key_press_modifiers(egui::Modifiers::ALT, egui::Key::Num1);
    gui.harness.run();
    assert_eq!(active(&mut gui), "#lobby");
    // Tab completes a nick and stays in the field.
    gui.harness
        .get_by_role_and_label(Role::TextInput, "Send")
        .type_text("zo");
    gui.harness.run();
    gui.harness.key_press(egui::Key::Tab);
    gui.harness.run();
    assert_eq!(gui.input_value("Send").as_deref(), Some("Zoë: "));
    assert!(focused(&gui), "Tab does not leave the input");
}

#[test]
fn a_multi_line_paste_asks_then_goes_out_as_one_message() {
    let mut gui = Gui::online();
    gui.harness.run();
    gui.harness
        .input_mut()
        .events
        .push(egui::Event::Paste("first line\nsecond line\n".into()));
    gui.harness.run();
    gui.harness.get_by_label("Send 2 lines as one message?");
    assert!(gui.sent().is_empty(), "nothing goes out before the answer");
    assert_eq!(
        gui.input_value("Send").as_deref(),
        Some(""),
        "not flattened into the input"
    );
    gui.click_button("Send as one message");
    assert_eq!(
        gui.sent(),
        vec![ClientMsg::Say {
            room: "#lobby".into(),
            text: "first line\nsecond line".into(),
            cid: Some("t-1".into()),
            notice: false,
            tags: Default::default(),
        }]
    );
    assert!(
        gui.harness
            .query_by_label("Send 2 lines as one message?")
            .is_none()
    );
}

#[test]
fn shift_enter_starts_a_new_line_and_enter_sends_them_as_one_message() {
    let mut gui = Gui::online();
    gui.type_into("Send", "first line");
    gui.harness
        .key_press_modifiers(egui::Modifiers::SHIFT, egui::Key::Enter);
    gui.harness.run();
    assert!(gui.sent().is_empty(), "Shift+Enter does not send");
    let field = gui
        .harness
        .get_by_role_and_label(Role::MultilineTextInput, "Send");
    assert!(field.is_focused(), "the input keeps the keyboard");
    field.type_text("second line");
    gui.harness.run();
    assert_eq!(
        gui.input_value("Send").as_deref(),
        Some("first line\nsecond line")
    );
    gui.harness.key_press(egui::Key::Enter);
    gui.harness.run();
    assert_eq!(
        gui.sent(),
        vec![ClientMsg::Say {
            room: "#lobby".into(),
            text: "first line\nsecond line".into(),
            cid: Some("t-1".into()),
            notice: false,
            tags: Default::default(),
        }]
    );
    assert_eq!(gui.input_value("Send").as_deref(), Some(""));
    // Back to one line: Up recalls the message sent, whole.
    gui.harness.key_press(egui::Key::ArrowUp);
    gui.harness.run();
    assert_eq!(
        gui.input_value("Send").as_deref(),
        Some("first line\nsecond line")
    );
}

#[test]
fn the_title_counts_unread_and_links_are_links() {
    let mut gui = Gui::online();
    gui.server(&[
        r##"{"type":"join","room":"#rust","name":"alice","ts":1700000000000}"##,
        r##"{"type":"message","id":4,"ts":1700000000000,"room":"#rust","from":"bob","text":"one"}"##,
        r##"{"type":"message","id":5,"ts":1700000000000,"room":"#rust","from":"bob","text":"two"}"##,
        r##"{"type":"message","id":6,"ts":1700000000000,"room":"#lobby","from":"bob","text":"alice: see https://example.org/docs"}"##,
        r##"{"type":"message","id":7,"ts":1700000000000,"room":"#lobby","from":"bob","text":"and https://\u0430pple.com/login"}"##,
    ]);
    assert_eq!(gui.harness.state().title(), "(2) #lobby — chat");
    gui.harness.snapshot("links_and_mentions");
    gui.harness
        .get_by_role_and_label(Role::Link, "https://example.org/docs");
    // A lookalike host asks before opening.
    gui.harness
        .get_by_role_and_label(Role::Link, "https://\u{430}pple.com/login")
        .click();
    gui.harness.run();
    gui.harness.get_by_label("Open this link?");
    gui.harness.get_by_label_contains("mixes alphabets");
    gui.click_button("Cancel");
    assert!(gui.harness.query_by_label("Open this link?").is_none());
}

#[test]
fn a_notification_body_shows_markup_as_text() {
    assert_eq!(
        chat_egui::notification_markup("<a href=\"x\">click</a> & <img src=/etc>"),
        "&lt;a href=\"x\"&gt;click&lt;/a&gt; &amp; &lt;img src=/etc&gt;"
    );
}

#[test]
fn a_mention_in_an_unfocused_window_makes_a_desktop_notification() {
    let mut gui = Gui::online();
    let shown: Rc<RefCell<Vec<(String, String)>>> = Rc::default();
    let record = shown.clone();
    gui.harness
        .state_mut()
        .set_notifier(move |summary, body| record.borrow_mut().push((summary, body)));
    // Focused: the user sees it already; no notification.
    gui.server(&[r##"{"type":"message","id":7,"ts":1700000000000,"room":"#lobby","from":"bob","text":"alice: first"}"##]);
    assert!(shown.borrow().is_empty());
    let unfocus = |gui: &mut Gui| {
        gui.harness
            .input_mut()
            .viewports
            .entry(egui::ViewportId::ROOT)
            .or_default()
            .focused = Some(false);
    };
    unfocus(&mut gui);
    gui.harness.run();
    unfocus(&mut gui);
    gui.server(&[
        r##"{"type":"message","id":8,"ts":1700000000000,"room":"#lobby","from":"bob","text":"alice: are you there?"}"##,
        r##"{"type":"message","id":9,"ts":1700000000000,"room":"#lobby","from":"bob","text":"not for you"}"##,
        r#"{"type":"direct","id":10,"ts":1700000000000,"from":"carol","to":"alice","text":"psst"}"#,
    ]);
    assert_eq!(
        *shown.borrow(),
        vec![
            (
                "bob in #lobby".to_string(),
                "alice: are you there?".to_string()
            ),
            ("carol (direct message)".to_string(), "psst".to_string()),
        ]
    );
}

/// WCAG contrast ratio of two colours.
fn contrast(a: egui::Color32, b: egui::Color32) -> f32 {
    let luminance = |c: egui::Color32| {
        let lin = |v: u8| {
            let v = f32::from(v) / 255.0;
            if v <= 0.04045 {
                v / 12.92
            } else {
                ((v + 0.055) / 1.055).powf(2.4)
            }
        };
        0.2126 * lin(c.r()) + 0.7152 * lin(c.g()) + 0.0722 * lin(c.b())
    };
    let (x, y) = (luminance(a), luminance(b));
    (x.max(y) + 0.05) / (x.min(y) + 0.05)
}

#[test]
fn system_text_is_readable_and_a_narrow_window_keeps_its_width_for_messages() {
    let mut gui = Gui::online();
    for theme in [egui::Theme::Dark, egui::Theme::Light] {
        let visuals = gui.harness.ctx.style_of(theme).visuals.clone();
        let ratio = contrast(visuals.weak_text_color(), visuals.panel_fill);
        assert!(ratio >= 4.5, "{theme:?}: secondary text at {ratio:.2}:1");
    }
    gui.harness.get_by_label("Members (3)");
    gui.harness.get_by_label("Rooms");
    gui.harness.set_size(egui::vec2(480.0, 560.0));
    gui.harness.run();
    assert!(gui.harness.query_by_label("Members (3)").is_none());
    assert!(gui.harness.query_by_label("Rooms").is_none());
    gui.harness.get_by_label("morning all");
    gui.type_into("Send", "still typing");
    assert_eq!(gui.input_value("Send").as_deref(), Some("still typing"));
    gui.harness.set_size(egui::vec2(900.0, 560.0));
    gui.harness.run();
    gui.harness.get_by_label("Members (3)");
}

#[test]
fn reading_further_up_while_lines_arrive_offers_to_jump_to_the_latest() {
    let mut gui = Gui::online();
    let many: Vec<String> = (0..60)
        .map(|i| format!(r##"{{"type":"message","id":{},"ts":1700000000000,"room":"#lobby","from":"bob","text":"line {i}"}}"##, 10 + i))
        .collect();
    gui.server(&many.iter().map(String::as_str).collect::<Vec<_>>());
    // The wheel over the messages, upwards.
    gui.harness
        .event(egui::Event::PointerMoved(egui::pos2(450.0, 250.0)));
    for _ in 0..5 {
        gui.harness.event(egui::Event::MouseWheel {
            unit: egui::MouseWheelUnit::Point,
            delta: egui::vec2(0.0, 200.0),
            phase: egui::TouchPhase::Move,
            source: egui::MouseWheelSource::Unknown,
            modifiers: egui::Modifiers::NONE,
        });
    }
    gui.harness.run();
    assert!(
        gui.harness
            .query_by_label_contains("jump to latest")
            .is_none()
    );
    gui.server(&[
        r##"{"type":"message","id":80,"ts":1700000001000,"room":"#lobby","from":"bob","text":"new one"}"##,
        r##"{"type":"message","id":81,"ts":1700000002000,"room":"#lobby","from":"bob","text":"new two"}"##,
    ]);
    gui.harness.get_by_label("↓ jump to latest (2)").click();
    gui.harness.run();
    gui.harness.run();
    let button = |gui: &Gui| {
        gui.harness
            .query_by_label_contains("jump to latest")
            .is_some()
    };
    assert!(!button(&gui));
    // At the newest line again, and following: what comes next needs no button.
    gui.server(&[
        r##"{"type":"message","id":82,"ts":1700000003000,"room":"#lobby","from":"bob","text":"new three"}"##,
    ]);
    gui.harness.run();
    assert!(!button(&gui));
}
