//! Drives the real chat-cursive views through cursive's puppet backend, with a real session fed
//! by the test in place of a server, and snapshots the screens.

use chat_core::client::{self, LocalDriver};
use chat_core::codec::decode_server;
use chat_core::protocol::{ClientMsg, Secret};
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
            r#"{"type":"welcome","version":1,"name":"alice","server":"t","limits":{"max_line":1000,"max_text":400,"max_text_lines":20,"max_name":32}}"#,
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
            notice: false,
            tags: Default::default(),
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
    assert!(screen.contains("3 bob (1)"), "{screen}");
    // The status line says where the unread messages are (the mention in #lobby, and bob).
    assert!(screen.contains("Act: 1,3"), "{screen}");
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
fn a_name_that_is_an_account_asks_for_its_password_in_the_dialog() {
    let backend = Backend::init(Some(Vec2::new(80, 16)));
    let frames = backend.stream();
    let input = backend.input();
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
    runner.refresh();
    driver.connected();
    driver.run_pending();
    driver.server(decode_server(br#"{"type":"error","code":"name_reserved","message":"the name alice belongs to a registered account: log in to use it, or pick another"}"#).unwrap());
    chat_cursive::refresh(&mut runner);
    runner.refresh();
    let screen = frames.try_iter().last().unwrap().to_string();
    assert!(screen.contains("Name refused"), "{screen}");
    assert!(screen.contains("Password of alice"), "{screen}");
    // The keyboard is in the password field; what is typed there is not drawn.
    for c in "hunter22".chars() {
        input.send(Some(Event::Char(c))).unwrap();
        runner.step();
    }
    runner.refresh();
    let screen = frames.try_iter().last().unwrap().to_string();
    assert!(!screen.contains("hunter22"), "{screen}");
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
            name: "alice".into(),
            password: Some(Secret::new("hunter22"))
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
fn continuation_rows_of_long_words_links_and_help_stay_under_the_text() {
    let mut tui = Tui::new(60, 40);
    let word = "x".repeat(4500);
    let url = format!("https://example.com/{}", "a".repeat(120));
    let text = format!("see {url} and then {word}");
    tui.server(&[&format!(
        r##"{{"type":"message","id":2,"ts":1700000000000,"room":"#lobby","from":"bob","text":"{text}"}}"##
    )]);
    // From the top of the message: the link's rows and the word's.
    tui.keys((0..5).map(|_| Event::Key(Key::PageUp)));
    let screen = tui.screen();
    // The scrollback's rows: inside its borders, right of the room list when it is shown.
    let rows: Vec<&str> = screen
        .lines()
        .filter(|l| l.contains("xxxx") || l.contains("aaaa"))
        .collect();
    assert!(rows.len() > 5, "{screen}");
    for row in &rows {
        let text_column = row
            .split('│')
            .find(|cell| cell.contains("xx") || cell.contains("aa"));
        let cell = text_column.expect("a row of the scrollback");

        // Every row, first or continued, starts under the text: after the time's six columns.
        assert!(
            cell.starts_with("00:00 ") || cell.starts_with("      "),
            "a row left the text column: {cell:?}"
        );
    }
    // No blank row between continued rows.
    let lines: Vec<&str> = screen.lines().collect();
    let first = lines
        .iter()
        .position(|l| l.contains("xxxx") || l.contains("aaaa"))
        .unwrap();
    let last = lines.iter().rposition(|l| l.contains("xxxx")).unwrap();
    let blank = |l: &&str| {
        l.split('│')
            .nth(3)
            .is_some_and(|cell| cell.trim().is_empty())
    };
    assert!(!lines[first..=last].iter().any(blank), "{screen}");
    // /help's rows too.
    tui.keys([Event::Ctrl(Key::End)]);
    tui.type_text("/help");
    tui.keys([Event::Key(Key::Enter)]);
    assert!(tui.sent().is_empty(), "/help is answered by the client");
    chat_cursive::refresh(&mut tui.runner);
    let screen = tui.screen();
    let cells: Vec<&str> = screen.lines().filter_map(|l| l.split('│').nth(3)).collect();
    assert!(cells.iter().any(|c| c.contains("/help")), "{screen}");
    for cell in cells.iter().filter(|c| !c.trim().is_empty()) {
        assert!(
            cell.starts_with(|c: char| c.is_ascii_digit()) || cell.starts_with("      "),
            "a row of /help left the text column: {cell:?}\n{screen}"
        );
    }
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
                at_least: false,
            },
            ClientMsg::Mode {
                room: "#lobby".into(),
                moderated: Some(true),
                invite_only: None,
                topic_lock: None,
                registered_only: None,
                secret: None,
                key: None,
                limit: None,
                open: None,
            },
        ]
    );
}

/// The screen with its colours: each row's text, then a row naming each cell's colours by a
/// letter from the legend below (a blank cell is a space). The legend lists front/back pairs.
fn colour_map(frame: &ObservedScreen) -> String {
    let size = frame.size();
    let mut legend: Vec<String> = Vec::new();
    let mut out = String::new();
    for y in 0..size.y {
        let mut text = String::new();
        let mut colours = String::new();
        for x in 0..size.x {
            let Some(cell) = &frame[Vec2::new(x, y)] else {
                text.push(' ');
                colours.push(' ');
                continue;
            };
            if cell.letter.is_continuation() {
                continue;
            }
            let letter = cell.letter.unwrap();
            text.push_str(&letter);
            if letter.trim().is_empty() {
                colours.push(' ');
                continue;
            }
            let pair = format!("{:?}/{:?}", cell.style.colors.front, cell.style.colors.back);
            let index = legend.iter().position(|l| *l == pair).unwrap_or_else(|| {
                legend.push(pair);
                legend.len() - 1
            });
            colours.push(char::from(b'a' + index as u8));
        }
        out.push_str(&format!("{}\n{}\n", text.trim_end(), colours.trim_end()));
    }
    for (i, pair) in legend.iter().enumerate() {
        out.push_str(&format!("{} = {pair}\n", char::from(b'a' + i as u8)));
    }
    out
}

/// Every visible character is drawn on the terminal's own background, in a colour other than
/// that background.
fn assert_readable(frame: &ObservedScreen) {
    use cursive::theme::Color;
    let size = frame.size();
    for y in 0..size.y {
        for x in 0..size.x {
            let Some(cell) = &frame[Vec2::new(x, y)] else {
                continue;
            };
            if cell.letter.is_continuation() || cell.letter.unwrap().trim().is_empty() {
                continue;
            }
            let c = cell.style.colors;
            let reversed = cell.style.effects.contains(cursive::theme::Effect::Reverse);
            assert!(
                c.front != c.back || c.front == Color::TerminalDefault,
                "{:?} at {x},{y} is drawn in its own background colour {c:?}",
                cell.letter
            );
            assert!(
                c.back == Color::TerminalDefault
                    || reversed
                    || c.back == Color::Dark(cursive::theme::BaseColor::Blue),
                "{:?} at {x},{y} has a background of its own: {c:?}",
                cell.letter
            );
        }
    }
}

impl Tui {
    fn frame(&mut self) -> ObservedScreen {
        self.runner.refresh();
        self.frames.try_iter().last().expect("a frame was drawn")
    }
}

#[test]
fn colours_read_on_the_terminal_background_and_mentions_stand_out() {
    let mut tui = Tui::new(80, 14);
    tui.server(&[
        r##"{"type":"join","room":"#lobby","name":"sam","ts":1700000000000}"##,
        r##"{"type":"message","id":2,"ts":1700000000000,"room":"#lobby","from":"bob","text":"alice: look at https://example.org/x"}"##,
        r##"{"type":"message","id":3,"ts":1700000001000,"room":"#lobby","from":"Zoë","text":"pokes alice","action":true}"##,
        r##"{"type":"message","id":4,"ts":1700000002000,"room":"#lobby","from":"alice","text":"mine"}"##,
    ]);
    let frame = tui.frame();
    assert_readable(&frame);
    let map = colour_map(&frame);
    insta::assert_snapshot!("colours", map);
    // The timestamp and the join line are grey (bright black), the mention lines yellow, /me too.
    let row = |needle: &str| {
        let lines: Vec<&str> = map.lines().collect();
        let i = lines.iter().position(|l| l.contains(needle)).unwrap();
        (lines[i].to_string(), lines[i + 1].to_string())
    };
    let legend = |map: &str, letter: char| {
        map.lines()
            .find(|l| l.starts_with(&format!("{letter} = ")))
            .unwrap()
            .to_string()
    };
    for needle in ["look at", "pokes alice"] {
        let (text, colours) = row(needle);
        let at = text.find(needle).unwrap();
        let column = text[..at].chars().count();
        let letter = colours.chars().nth(column).unwrap();
        assert!(
            legend(&map, letter).contains("Light(Yellow)"),
            "{needle}: {}",
            legend(&map, letter)
        );
    }
    let (text, colours) = row("sam joined");
    let column = text[..text.find("sam joined").unwrap()].chars().count();
    assert!(legend(&map, colours.chars().nth(column).unwrap()).contains("Light(Black)"));
}

#[test]
fn a_multi_line_paste_asks_then_goes_out_as_one_message() {
    let mut tui = Tui::new(80, 16);
    chat_cursive::paste(&mut tui.runner, "first line\n/not a command\nthird\n");
    let screen = tui.screen();
    assert!(screen.contains("Send 3 lines as one message?"), "{screen}");
    assert!(tui.sent().is_empty(), "nothing goes out before the answer");
    tui.keys([Event::Key(Key::Enter)]);
    assert_eq!(
        tui.sent(),
        vec![ClientMsg::Say {
            room: "#lobby".into(),
            text: "first line\n/not a command\nthird".into(),
            cid: Some("t-1".into()),
            notice: false,
            tags: Default::default(),
        }]
    );
    // Escape cancels and sends nothing; a one-line paste lands in the input at the cursor.
    chat_cursive::paste(&mut tui.runner, "a\nb");
    tui.keys([Event::Key(Key::Esc)]);
    assert!(!tui.screen().contains("Send 2 lines"));
    assert!(tui.sent().is_empty());
    tui.type_text("say ");
    chat_cursive::paste(&mut tui.runner, "pasted words\n");
    assert_eq!(tui.input_text(), "say pasted words");
}

#[test]
fn clicks_keep_the_input_focused_and_a_room_click_switches() {
    let mut tui = Tui::new(80, 16);
    tui.type_text("/join #rust");
    tui.keys([Event::Key(Key::Enter)]);
    tui.sent();
    tui.server(&[
        r##"{"type":"join","room":"#rust","name":"alice","ts":1700000003000}"##,
        r##"{"type":"history","room":"#rust","messages":[],"more":false}"##,
    ]);
    let long: Vec<String> = (10..40)
        .map(|i| format!(r##"{{"type":"message","id":{i},"ts":1700000004000,"room":"#rust","from":"bob","text":"line {i}"}}"##))
        .collect();
    let long: Vec<&str> = long.iter().map(String::as_str).collect();
    tui.server(&long);
    tui.screen();
    tui.type_text("half");
    // A click in the scrollback (which can scroll, so could take focus).
    let press = |x, y| Event::Mouse {
        event: cursive::event::MouseEvent::Press(cursive::event::MouseButton::Left),
        position: Vec2::new(x, y),
        offset: Vec2::zero(),
    };
    tui.keys([press(40, 5)]);
    tui.type_text(" typed");
    assert_eq!(tui.input_text(), "half typed");
    // Row 1 inside the room list's border is the first conversation.
    tui.keys([press(4, 1)]);
    tui.sent();
    assert!(tui.screen().contains("#lobby — welcome all"));
    tui.type_text("!");
    assert_eq!(tui.input_text(), "half typed!");
}

#[test]
fn the_status_line_stays_one_line_while_reconnecting() {
    let mut tui = Tui::new(60, 12);
    tui.driver.disconnected(
        "the server closed the connection because of a very long reason that goes on and on",
    );
    chat_cursive::refresh(&mut tui.runner);
    let screen = tui.screen();
    let status: Vec<&str> = screen
        .lines()
        .filter(|l| l.contains("[reconnecting"))
        .collect();
    assert_eq!(status.len(), 1, "{screen}");
    // The row under it is the input, not the rest of the status.
    let rows: Vec<&str> = screen.lines().collect();
    let at = rows
        .iter()
        .position(|l| l.contains("[reconnecting"))
        .unwrap();
    assert!(!rows[at + 1].contains("on and on"), "{screen}");
}

#[test]
fn a_line_marks_what_is_new_since_you_last_read() {
    let mut tui = Tui::new(80, 16);
    tui.type_text("/join #rust");
    tui.keys([Event::Key(Key::Enter)]);
    tui.sent();
    tui.server(&[
        r##"{"type":"join","room":"#rust","name":"alice","ts":1700000003000}"##,
        r##"{"type":"history","room":"#rust","messages":[],"more":false}"##,
        r##"{"type":"message","id":6,"ts":1700000004000,"room":"#lobby","from":"bob","text":"while you were in #rust"}"##,
    ]);
    tui.keys([Event::AltChar('1')]);
    tui.sent();
    let screen = tui.screen();
    let marker = screen.find("new since you last read").expect(&screen);
    let earlier = screen.find("<bob> earlier").unwrap();
    let new = screen.find("while you were in #rust").unwrap();
    assert!(earlier < marker && marker < new, "{screen}");
}

#[test]
fn reading_further_up_while_lines_arrive_says_how_many_and_ctrl_end_goes_back() {
    let mut tui = Tui::new(80, 14);
    let many: Vec<String> = (0..30)
        .map(|i| format!(r##"{{"type":"message","id":{},"ts":1700000000000,"room":"#lobby","from":"bob","text":"line {i}"}}"##, 10 + i))
        .collect();
    tui.server(&many.iter().map(String::as_str).collect::<Vec<_>>());
    tui.keys([Event::Key(Key::PageUp)]);
    assert!(!tui.screen().contains("MORE"), "nothing new yet");
    tui.server(&[
        r##"{"type":"message","id":50,"ts":1700000001000,"room":"#lobby","from":"bob","text":"new one"}"##,
        r##"{"type":"message","id":51,"ts":1700000002000,"room":"#lobby","from":"bob","text":"new two"}"##,
    ]);
    let screen = tui.screen();
    assert!(screen.contains("-- MORE (2) --"), "{screen}");
    assert!(
        !screen.contains("new two"),
        "still reading further up: {screen}"
    );
    tui.keys([Event::Ctrl(Key::End)]);
    let screen = tui.screen();
    assert!(!screen.contains("MORE"), "{screen}");
    assert!(screen.contains("new two"), "{screen}");
}
