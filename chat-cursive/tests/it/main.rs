//! Drives the real chat-cursive views through cursive's puppet backend, with a real session fed
//! by the test in place of a server, and snapshots the screens.

use chat_core::client::{self, LocalDriver};
use chat_core::codec::decode_server;
use chat_core::protocol::ClientMsg;
use chat_core::session::Output;
use chat_core::{Session, SessionConfig};
use chat_cursive::Clock;
use cursive::backends::puppet::Backend;
use cursive::backends::puppet::observed::ObservedScreen;
use cursive::event::{Event, Key};
use cursive::{Cursive, CursiveRunner, Vec2};

const T: u64 = 1_700_000_000_000;

struct Tui {
    runner: CursiveRunner<Cursive>,
    input: cursive::reexports::crossbeam_channel::Sender<Option<Event>>,
    frames: cursive::reexports::crossbeam_channel::Receiver<ObservedScreen>,
    driver: LocalDriver,
}

impl Tui {
    fn new(width: usize, height: usize) -> Tui {
        let backend = Backend::init(Some(Vec2::new(width, height)));
        let input = backend.input();
        let frames = backend.stream();
        let (handle, mut driver) = client::local(
            Session::new(
                SessionConfig {
                    cid_prefix: "t".into(),
                    ..SessionConfig::default()
                },
                "alice",
            ),
            T,
        );
        let mut siv = Cursive::new();
        chat_cursive::build(&mut siv, handle, Clock::Utc);
        let mut runner = siv.into_runner(backend);
        // The first draw tells the views the terminal's size.
        runner.refresh();
        driver.connected();
        let mut tui = Tui {
            runner,
            input,
            frames,
            driver,
        };
        tui.server(&[
            r#"{"type":"welcome","version":1,"name":"alice","server":"t","limits":{"max_line":100,"max_text":100,"max_text_lines":2,"max_name":32}}"#,
            r##"{"type":"join","room":"#lobby","name":"alice","ts":1700000000000}"##,
            r##"{"type":"topic","room":"#lobby","topic":"welcome all"}"##,
            r##"{"type":"members","room":"#lobby","names":["alice","bob","Zoë"]}"##,
            r##"{"type":"history","room":"#lobby","messages":[{"id":1,"ts":1699999940000,"room":"#lobby","from":"bob","text":"earlier"}],"more":false}"##,
        ]);
        tui
    }

    /// Feeds server messages to the session and redraws, as the driver's notify would.
    fn server(&mut self, lines: &[&str]) -> Vec<Output> {
        let mut out = Vec::new();
        for line in lines {
            let msg = decode_server(line.as_bytes()).unwrap_or_else(|e| panic!("{line}: {e}"));
            out.extend(self.driver.server(msg));
        }
        chat_cursive::refresh(&mut self.runner);
        out
    }

    fn keys(&mut self, events: impl IntoIterator<Item = Event>) {
        for e in events {
            self.input.send(Some(e)).unwrap();
            self.runner.step();
        }
    }

    fn type_text(&mut self, text: &str) {
        self.keys(text.chars().map(Event::Char));
    }

    /// Runs what the UI submitted and returns the protocol messages the session sent.
    fn sent(&mut self) -> Vec<ClientMsg> {
        let out = self.driver.run_pending();
        chat_cursive::refresh(&mut self.runner);
        out.into_iter()
            .filter_map(|o| match o {
                Output::Send(m) => Some(m),
                _ => None,
            })
            .collect()
    }

    fn screen(&mut self) -> String {
        self.runner.refresh();
        let frame = self.frames.try_iter().last().expect("a frame was drawn");
        frame.to_string()
    }

    fn input_text(&mut self) -> String {
        self.runner
            .call_on_name("input", |v: &mut cursive::views::EditView| {
                v.get_content().to_string()
            })
            .unwrap()
    }
}

#[test]
fn main_screen_shows_rooms_scrollback_members_and_status() {
    let mut tui = Tui::new(80, 16);
    tui.server(&[
        r##"{"type":"message","id":2,"ts":1700000000000,"room":"#lobby","from":"bob","text":"hi alice, café ☕ 日本語"}"##,
        r##"{"type":"message","id":3,"ts":1700000001000,"room":"#lobby","from":"Zoë","text":"waves","action":true}"##,
    ]);
    insta::assert_snapshot!(tui.screen());
}

#[test]
fn typing_sends_and_the_echo_appears() {
    let mut tui = Tui::new(80, 16);
    tui.type_text("hello everyone");
    tui.keys([Event::Key(Key::Enter)]);
    assert_eq!(
        tui.sent(),
        vec![ClientMsg::Say {
            room: "#lobby".into(),
            text: "hello everyone".into(),
            cid: Some("t-1".into()),
        }]
    );
    assert_eq!(tui.input_text(), "");
    tui.server(&[r##"{"type":"message","id":5,"ts":1700000002000,"room":"#lobby","from":"alice","text":"hello everyone"}"##]);
    assert!(tui.screen().contains("<alice> hello everyone"));
    // Up brings the line back from the input history.
    tui.keys([Event::Key(Key::Up)]);
    assert_eq!(tui.input_text(), "hello everyone");
    tui.keys([Event::Key(Key::Down)]);
    assert_eq!(tui.input_text(), "");
}

#[test]
fn switching_rooms_and_unread_counts() {
    let mut tui = Tui::new(80, 16);
    tui.type_text("/join #rust");
    tui.keys([Event::Key(Key::Enter)]);
    assert_eq!(
        tui.sent(),
        vec![ClientMsg::Join {
            room: "#rust".into(),
            since: None,
            key: None
        }]
    );
    tui.server(&[
        r##"{"type":"join","room":"#rust","name":"alice","ts":1700000003000}"##,
        r##"{"type":"members","room":"#rust","names":["alice"]}"##,
        r##"{"type":"history","room":"#rust","messages":[],"more":false}"##,
        r##"{"type":"message","id":6,"ts":1700000004000,"room":"#lobby","from":"bob","text":"one"}"##,
        r##"{"type":"message","id":7,"ts":1700000005000,"room":"#lobby","from":"bob","text":"alice: two"}"##,
        r##"{"type":"direct","id":8,"ts":1700000006000,"from":"bob","to":"alice","text":"psst"}"##,
    ]);
    let screen = tui.screen();
    assert!(screen.contains("1 #lobby (2)"), "{screen}");
    assert!(screen.contains("3 @bob (1)"), "{screen}");
    insta::assert_snapshot!("unread", screen);
    tui.keys([Event::AltChar('1')]);
    tui.sent();
    let screen = tui.screen();
    assert!(screen.contains("<bob> alice: two"), "{screen}");
    assert!(screen.contains("1 #lobby  "), "unread cleared: {screen}");
    tui.keys([Event::CtrlChar('p')]);
    tui.sent();
    assert!(tui.screen().contains("direct: bob"));
    tui.keys([Event::CtrlChar('n')]);
    tui.sent();
    assert!(tui.screen().contains("#lobby — welcome all"));
}

#[test]
fn tab_completes_nicks_and_commands() {
    let mut tui = Tui::new(80, 16);
    tui.type_text("zo");
    tui.keys([Event::Key(Key::Tab)]);
    assert_eq!(tui.input_text(), "Zoë: ");
    tui.keys([Event::CtrlChar('u')]);
    tui.runner
        .call_on_name("input", |v: &mut cursive::views::EditView| {
            v.set_content("")
        });
    tui.type_text("/he");
    tui.keys([Event::Key(Key::Tab)]);
    // /help and /history share "/h"; "/he" is unique.
    assert_eq!(tui.input_text(), "/help ");
}

#[test]
fn a_taken_name_is_asked_again_in_place() {
    let backend = Backend::init(Some(Vec2::new(70, 14)));
    let frames = backend.stream();
    let input = backend.input();
    let (handle, mut driver) = client::local(
        Session::new(
            SessionConfig {
                cid_prefix: "t".into(),
                ..SessionConfig::default()
            },
            "bob",
        ),
        T,
    );
    let mut siv = Cursive::new();
    chat_cursive::build(&mut siv, handle, Clock::Utc);
    let mut runner = siv.into_runner(backend);
    runner.refresh();
    driver.connected();
    driver.server(decode_server(br#"{"type":"error","code":"name_taken","message":"the name bob is taken; pick another"}"#).unwrap());
    chat_cursive::refresh(&mut runner);
    runner.refresh();
    let screen = frames.try_iter().last().unwrap().to_string();
    assert!(screen.contains("Name refused"), "{screen}");
    insta::assert_snapshot!("name_taken", screen);
    for c in "bobby".chars() {
        input.send(Some(Event::Char(c))).unwrap();
        runner.step();
    }
    input.send(Some(Event::Key(Key::Enter))).unwrap();
    runner.step();
    let sent: Vec<_> = driver
        .run_pending()
        .into_iter()
        .filter_map(|o| match o {
            Output::Send(m) => Some(m),
            _ => None,
        })
        .collect();
    assert_eq!(
        sent,
        vec![ClientMsg::Hello {
            version: 1,
            name: "bobby".into(),
            password: None
        }]
    );
}

#[test]
fn a_small_terminal_stays_usable() {
    let mut tui = Tui::new(40, 12);
    tui.server(&[r##"{"type":"message","id":2,"ts":1700000000000,"room":"#lobby","from":"bob","text":"a long line that has to wrap inside a narrow terminal without breaking anything"}"##]);
    let screen = tui.screen();
    assert!(
        !screen.contains("┤ members ├") && !screen.contains("┤ rooms ├"),
        "side panels hide when narrow: {screen}"
    );
    assert!(
        screen.contains("breaking anything"),
        "long lines wrap: {screen}"
    );
    insta::assert_snapshot!("small", screen);
}

#[test]
fn ctrl_q_quits_and_tells_the_server() {
    let mut tui = Tui::new(80, 16);
    tui.keys([Event::CtrlChar('q')]);
    assert_eq!(tui.sent(), vec![ClientMsg::Quit { reason: None }]);
    assert!(
        !tui.runner.is_running(),
        "the UI stops once the session is closed"
    );
}

#[test]
fn without_a_terminal_it_says_so_in_one_line_and_exits_1() {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_chat-cursive"))
        .args(["--host", "127.0.0.1", "--port", "1", "--name", "x"])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("needs a terminal"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(output.stdout.is_empty());
}

#[test]
fn control_characters_from_others_show_as_symbols() {
    let mut tui = Tui::new(80, 16);
    tui.server(&[
        r##"{"type":"message","id":2,"ts":1700000000000,"room":"#lobby","from":"bob","text":"\u001b]2;PWNED\u0007 \u001b[2J"}"##,
        r##"{"type":"topic","room":"#lobby","topic":"\u009b31mred","by":"bob","ts":1700000000000}"##,
    ]);
    let screen = tui.screen();
    assert!(screen.contains("<bob> ␛]2;PWNED␇ ␛[2J"), "{screen}");
    assert!(screen.contains("<U+009B>31mred"), "{screen}");
    assert!(!screen.contains('\u{1b}') && !screen.contains('\u{9b}'));
}

#[test]
fn a_burst_of_events_queues_one_redraw() {
    let (sink, queue) = cursive::reexports::crossbeam_channel::unbounded();
    let redraw = chat_cursive::refresher(sink);
    for _ in 0..1000 {
        redraw();
    }
    assert_eq!(queue.len(), 1, "one redraw for the whole burst");
    let mut siv = Cursive::new();
    (queue.try_recv().unwrap())(&mut siv);
    redraw();
    assert_eq!(
        queue.len(),
        1,
        "after it ran, the next event queues another"
    );
}

#[test]
fn roles_show_in_the_member_list_and_moderation_reads_as_lines() {
    let mut tui = Tui::new(120, 20);
    tui.server(&[
        r##"{"type":"members","room":"#lobby","names":["alice","bob","Zoë"],"roles":{"Zoë":"owner","bob":"op"}}"##,
        r##"{"type":"role","room":"#lobby","name":"alice","role":"voice","by":"Zoë","ts":1700000001000}"##,
        r##"{"type":"kick","room":"#lobby","name":"bob","by":"Zoë","reason":"enough","ts":1700000002000}"##,
    ]);
    let screen = tui.screen();
    // Owner first, then the voiced; bob left with the kick.
    let owner = screen.find("~Zoë").expect("the owner is listed with ~");
    let voiced = screen
        .find("+alice")
        .expect("the voiced member is listed with +");
    assert!(owner < voiced, "{screen}");
    assert!(screen.contains("││~Zoë"), "{screen}");
    assert!(!screen.contains("││@bob"), "bob left the panel: {screen}");
    assert!(
        screen.contains("Zoë made alice voiced of #lobby"),
        "{screen}"
    );
    assert!(
        screen.contains("Zoë removed bob from #lobby: enough"),
        "{screen}"
    );
    // The commands go to the active room.
    tui.type_text("/kick carol be nice");
    tui.keys([Event::Key(Key::Enter)]);
    tui.type_text("/op alice");
    tui.keys([Event::Key(Key::Enter)]);
    tui.type_text("/mode +m");
    tui.keys([Event::Key(Key::Enter)]);
    assert_eq!(
        tui.sent(),
        vec![
            ClientMsg::Kick {
                room: "#lobby".into(),
                name: "carol".into(),
                reason: Some("be nice".into()),
            },
            ClientMsg::Role {
                room: "#lobby".into(),
                name: "alice".into(),
                role: chat_core::protocol::Role::Op,
            },
            ClientMsg::Mode {
                room: "#lobby".into(),
                moderated: Some(true),
                invite_only: None,
                topic_lock: None,
                registered_only: None,
                key: None,
            },
        ]
    );
}
