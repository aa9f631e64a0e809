//! Runs the real `chat-cli` binary against a real server on 127.0.0.1: piped input, `--json`,
//! refusals, and a reconnect across a server restart with catch-up.

use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::Duration;

use clap::Parser;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt};

struct Server {
    addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

async fn start(listen: &str, data: Option<&str>) -> Server {
    start_with(listen, data, &["--flood-rate", "0"]).await
}

async fn start_with(listen: &str, data: Option<&str>, extra: &[&str]) -> Server {
    let mut args = vec!["chat-server", "--listen", listen, "--metrics-listen", "off"];
    args.extend(extra);
    match data {
        Some(dir) => args.extend(["--data-dir", dir]),
        None => args.push("--in-memory"),
    }
    let config = chat_server::Config::parse_from(args);
    let listener = chat_server::bind(&config).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel();
    let task = tokio::spawn(chat_server::serve(config, listener, async {
        let _ = stopped.await;
    }));
    Server {
        addr,
        stop: Some(stop),
        task,
    }
}

impl Server {
    async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        self.task.await.unwrap().unwrap();
    }
}

fn cli(addr: SocketAddr, args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_chat-cli"));
    cmd.args(["--host", "127.0.0.1", "--port", &addr.port().to_string()])
        .args(args)
        .env_remove("CHAT_NAME")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd
}

/// A raw protocol client that watches #lobby.
async fn observer(
    addr: SocketAddr,
    name: &str,
) -> tokio::io::Lines<tokio::io::BufReader<tokio::net::TcpStream>> {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(format!("{{\"type\":\"hello\",\"version\":1,\"name\":\"{name}\"}}\n").as_bytes())
        .await
        .unwrap();
    tokio::io::BufReader::new(stream).lines()
}

async fn wait_for(
    lines: &mut tokio::io::Lines<tokio::io::BufReader<tokio::net::TcpStream>>,
    needle: &str,
) -> String {
    let found = tokio::time::timeout(Duration::from_secs(20), async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if line.contains(needle) {
                return line;
            }
        }
        panic!("connection closed before {needle}");
    })
    .await;
    found.unwrap_or_else(|_| panic!("timed out waiting for {needle}"))
}

fn run_with_input(mut cmd: Command, input: &str) -> std::process::Output {
    let mut child = cmd.spawn().unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn piped_lines_are_all_delivered_then_it_exits_zero() {
    let server = start("127.0.0.1:0", None).await;
    let mut watch = observer(server.addr, "watch").await;
    wait_for(&mut watch, "\"history\"").await;
    let addr = server.addr;
    let output = tokio::task::spawn_blocking(move || {
        run_with_input(
            cli(addr, &["--name", "ci"]),
            "deploy done\nsecond\n/me ships it\n",
        )
    })
    .await
    .unwrap();
    assert!(output.status.success(), "{output:?}");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("<ci> deploy done"), "{stdout}");
    assert!(stdout.contains("* ci ships it"), "{stdout}");
    assert!(
        wait_for(&mut watch, "deploy done")
            .await
            .contains("\"from\":\"ci\"")
    );
    wait_for(&mut watch, "second").await;
    wait_for(&mut watch, "ships it").await;
    let quit = wait_for(&mut watch, "\"quit\"").await;
    assert!(quit.contains("\"name\":\"ci\""), "{quit}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn json_output_is_the_servers_messages() {
    let server = start("127.0.0.1:0", None).await;
    let addr = server.addr;
    let output = tokio::task::spawn_blocking(move || {
        run_with_input(
            cli(addr, &["--name", "bot", "--json", "--room", "#ops"]),
            "hi\n",
        )
    })
    .await
    .unwrap();
    assert!(output.status.success(), "{output:?}");
    let types: Vec<String> = String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["type"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(types.first().map(String::as_str), Some("welcome"));
    assert!(types.iter().any(|t| t == "message"), "{types:?}");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.contains(r##""room":"#ops","from":"bot","text":"hi""##),
        "{stdout}"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn refusals_exit_non_zero_with_a_reason() {
    // Nothing listens on this port.
    let free = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let output =
        tokio::task::spawn_blocking(move || run_with_input(cli(free, &["--name", "x"]), ""))
            .await
            .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(&format!("cannot connect to {free}")),
        "{stderr}"
    );

    let server = start("127.0.0.1:0", None).await;
    let mut taken = observer(server.addr, "taken").await;
    wait_for(&mut taken, "welcome").await;
    let addr = server.addr;
    let output = tokio::task::spawn_blocking(move || {
        run_with_input(cli(addr, &["--name", "TAKEN"]), "hi\n")
    })
    .await
    .unwrap();
    assert_eq!(output.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("name rejected"),
        "{output:?}"
    );
    let output = tokio::task::spawn_blocking(move || run_with_input(cli(addr, &[]), "hi\n"))
        .await
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("--name"),
        "{output:?}"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn survives_a_server_restart_and_catches_up() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap().to_string();
    let server = start("127.0.0.1:0", Some(&data)).await;
    let addr = server.addr;
    let mut child = cli(addr, &["--name", "stay"]).spawn().unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let stdout = child.stdout.take().unwrap();
    let (line_tx, mut line_rx) = tokio::sync::mpsc::unbounded_channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let _ = line_tx.send(line.unwrap());
        }
    });
    let mut seen = Vec::new();
    let mut expect = async |needle: &str, seen: &mut Vec<String>| {
        tokio::time::timeout(Duration::from_secs(20), async {
            loop {
                let line = line_rx.recv().await.expect("cli output ended");
                seen.push(line.clone());
                if line.contains(needle) {
                    return;
                }
            }
        })
        .await
        .unwrap_or_else(|_| panic!("no {needle:?} in {seen:#?}"));
    };
    expect("joined #lobby", &mut seen).await;
    // Something is seen before the restart, so that the reconnect catches up from its id
    // (`since`) rather than starting over.
    writeln!(stdin, "before the restart").unwrap();
    expect("<stay> before the restart", &mut seen).await;
    server.stop().await;
    expect("reconnecting", &mut seen).await;

    // Someone speaks while the client is away; it must see that exactly once after reconnecting.
    let server = start(&addr.to_string(), Some(&data)).await;
    let mut other = observer(addr, "other").await;
    wait_for(&mut other, "\"history\"").await;
    other
        .get_mut()
        .write_all(b"{\"type\":\"say\",\"room\":\"#lobby\",\"text\":\"while you were away\"}\n")
        .await
        .unwrap();
    wait_for(&mut other, "while you were away").await;
    expect("connected to", &mut seen).await;
    writeln!(stdin, "back again").unwrap();
    wait_for(&mut other, "back again").await;
    expect("back again", &mut seen).await;
    drop(stdin);
    let status = tokio::task::spawn_blocking(move || child.wait().unwrap())
        .await
        .unwrap();
    assert!(status.success());
    while let Ok(line) = line_rx.try_recv() {
        seen.push(line);
    }
    let away = seen
        .iter()
        .filter(|l| l.contains("while you were away"))
        .count();
    assert_eq!(away, 1, "caught up exactly once: {seen:#?}");
    let before = seen
        .iter()
        .filter(|l| l.contains("before the restart"))
        .count();
    assert_eq!(before, 1, "nothing seen twice: {seen:#?}");
    server.stop().await;
}

/// Bytes a terminal acts on: ESC, BEL, CR, other C0 controls but newline and tab, DEL, and C1
/// controls (U+0080..U+009F, encoded as C2 80..C2 9F in UTF-8).
fn terminal_controls(bytes: &[u8]) -> Vec<String> {
    let mut found = Vec::new();
    for (i, &b) in bytes.iter().enumerate() {
        if (b < 0x20 && b != b'\n' && b != b'\t') || b == 0x7f {
            found.push(format!("{b:#04x} at {i}"));
        }
        if b == 0xc2 && bytes.get(i + 1).is_some_and(|n| (0x80..=0x9f).contains(n)) {
            found.push(format!("C1 U+00{:02X} at {i}", bytes[i + 1]));
        }
    }
    found
}

/// A peer that says, acts, sets a topic, messages directly, parts and quits with hostile text.
async fn hostile_peer(addr: SocketAddr, target: &str) {
    let mut mallory = observer(addr, "mallory").await;
    wait_for(&mut mallory, "\"history\"").await;
    let evil = "\u{1b}]2;PWNED\u{7}\u{1b}[2J\u{1b}]52;c;ZXZpbA==\u{7}bob\r<alice> fake\u{9b}31m";
    for msg in [
        serde_json::json!({"type":"say","room":"#lobby","text":evil}),
        serde_json::json!({"type":"me","room":"#lobby","text":evil}),
        serde_json::json!({"type":"topic","room":"#lobby","topic":evil.replace('\r', "")}),
        serde_json::json!({"type":"msg","to":target,"text":evil}),
        serde_json::json!({"type":"join","room":"#side"}),
        serde_json::json!({"type":"part","room":"#lobby","reason":evil}),
        serde_json::json!({"type":"join","room":"#lobby"}),
        serde_json::json!({"type":"say","room":"#lobby","text":"done\u{1b}[0m"}),
        serde_json::json!({"type":"quit","reason":evil}),
    ] {
        mallory
            .get_mut()
            .write_all(format!("{msg}\n").as_bytes())
            .await
            .unwrap();
    }
    wait_for(&mut mallory, "\"bye\"").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn other_peoples_control_characters_never_reach_the_terminal() {
    let evil_motd = "welcome\u{1b}]2;MOTD\u{7}";
    let server = start_with(
        "127.0.0.1:0",
        None,
        &[
            "--flood-rate",
            "0",
            "--motd",
            evil_motd,
            "--server-name",
            "s\u{1b}[1m",
        ],
    )
    .await;
    let addr = server.addr;
    for json in [false, true] {
        let mut args = vec!["--name", "victim"];
        if json {
            args.push("--json");
        }
        let mut child = cli(addr, &args).spawn().unwrap();
        let stdin = child.stdin.take().unwrap();
        let mut watch = observer(addr, "watch").await;
        wait_for(&mut watch, "\"history\"").await;
        // The victim is in the room before the peer starts.
        tokio::time::timeout(Duration::from_secs(20), async {
            loop {
                watch
                    .get_mut()
                    .write_all(b"{\"type\":\"who\",\"room\":\"#lobby\"}\n")
                    .await
                    .unwrap();
                if wait_for(&mut watch, "\"members\"").await.contains("victim") {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
        .await
        .expect("the victim joins");
        hostile_peer(addr, "victim").await;
        wait_for(&mut watch, "\"quit\"").await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        drop(stdin);
        drop(watch);
        let output = tokio::task::spawn_blocking(move || child.wait_with_output().unwrap())
            .await
            .unwrap();
        assert!(output.status.success(), "{output:?}");
        let stdout = &output.stdout;
        assert_eq!(
            terminal_controls(stdout),
            Vec::<String>::new(),
            "json={json}: {}",
            String::from_utf8_lossy(stdout)
        );
        assert_eq!(terminal_controls(&output.stderr), Vec::<String>::new());
        let text = String::from_utf8_lossy(stdout);
        if json {
            // Still exact JSON: the escapes decode to the very same text.
            let said = text
                .lines()
                .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
                .find(|v| v["type"] == "message" && v["from"] == "mallory")
                .expect("mallory's message");
            assert!(
                said["text"]
                    .as_str()
                    .unwrap()
                    .contains("\u{1b}]2;PWNED\u{7}")
            );
        } else {
            // Visible, not acted on: every kind of line shows the symbols.
            for needle in [
                "<mallory> \u{241b}]2;PWNED\u{2407}",
                "* mallory \u{241b}]2;PWNED",
                "topic set by mallory: \u{241b}]2;PWNED",
                "[mallory] <mallory> \u{241b}]2;PWNED",
                "left #lobby (\u{241b}]2;PWNED",
                "quit (\u{241b}]2;PWNED",
                "bob\u{240d}<alice> fake<U+009B>31m",
                "welcome\u{241b}]2;MOTD\u{2407}",
                "connected to s\u{241b}[1m",
            ] {
                assert!(text.contains(needle), "{needle:?} not in {text}");
            }
        }
    }
    server.stop().await;
}

/// Reads a whole room's history through a raw client, oldest first.
async fn room_texts(addr: SocketAddr, room: &str) -> Vec<String> {
    let mut reader = observer(addr, "reader").await;
    wait_for(&mut reader, "\"history\"").await;
    let mut texts = Vec::new();
    let mut before: Option<u64> = None;
    loop {
        let ask = serde_json::json!({"type":"history","room":room,"before":before,"limit":200});
        reader
            .get_mut()
            .write_all(format!("{ask}\n").as_bytes())
            .await
            .unwrap();
        let page: serde_json::Value =
            serde_json::from_str(&wait_for(&mut reader, "\"history\"").await).unwrap();
        let messages = page["messages"].as_array().unwrap().clone();
        for m in messages.iter().rev() {
            texts.push(m["text"].as_str().unwrap().to_string());
        }
        before = messages.first().and_then(|m| m["id"].as_u64());
        if page["more"] != true || messages.is_empty() {
            break;
        }
    }
    texts.reverse();
    texts
}

#[tokio::test(flavor = "multi_thread")]
async fn a_pipe_of_1000_lines_is_delivered_whole_in_order_at_default_limits() {
    // The server's default flood control (a burst of 10, then 5 a second): the client paces
    // itself, so this takes about 200 s and nothing is dropped, refused or repeated.
    // (The raw observer answers no pings: keep the server from dropping it meanwhile.)
    let server = start_with(
        "127.0.0.1:0",
        None,
        &["--history", "2000", "--ping-interval", "3600"],
    )
    .await;
    let mut watch = observer(server.addr, "watch").await;
    wait_for(&mut watch, "\"history\"").await;
    let addr = server.addr;
    let input: String = (1..=1000).map(|i| format!("line {i}\n")).collect();
    let output =
        tokio::task::spawn_blocking(move || run_with_input(cli(addr, &["--name", "pipe"]), &input))
            .await
            .unwrap();
    assert!(output.status.success(), "{output:?}");
    let mut got = Vec::new();
    while got.len() < 1000 {
        let line = wait_for(&mut watch, "\"from\":\"pipe\"").await;
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        got.push(v["text"].as_str().unwrap().to_string());
    }
    let expected: Vec<String> = (1..=1000).map(|i| format!("line {i}")).collect();
    assert_eq!(got, expected);
    assert!(
        !String::from_utf8_lossy(&output.stdout).contains("flooding"),
        "the client never tripped flood control"
    );
    let stored = room_texts(server.addr, "#lobby").await;
    assert_eq!(stored, expected, "exactly once in the room's history");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_server_restart_mid_pipe_still_delivers_every_line_once() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap().to_string();
    let limits = ["--flood-burst", "20", "--flood-rate", "50"];
    let server = start_with("127.0.0.1:0", Some(&data), &limits).await;
    let addr = server.addr;
    let mut watch = observer(addr, "watch").await;
    wait_for(&mut watch, "\"history\"").await;
    let mut child = cli(addr, &["--name", "pipe"]).spawn().unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let input: String = (1..=300).map(|i| format!("line {i}\n")).collect();
    stdin.write_all(input.as_bytes()).unwrap();
    drop(stdin);
    // Restart the server once a good part has arrived, the rest still in flight or queued.
    wait_for(&mut watch, "\"text\":\"line 60\"").await;
    server.stop().await;
    let server = start_with(&addr.to_string(), Some(&data), &limits).await;
    let output = tokio::task::spawn_blocking(move || child.wait_with_output().unwrap())
        .await
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    assert!(
        String::from_utf8_lossy(&output.stdout).contains("reconnecting"),
        "the connection really was cut: {output:?}"
    );
    let stored = room_texts(addr, "#lobby").await;
    let expected: Vec<String> = (1..=300).map(|i| format!("line {i}")).collect();
    assert_eq!(stored, expected, "every line once, in order");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_refused_line_is_named_and_the_exit_status_is_one() {
    let server = start("127.0.0.1:0", None).await;
    let addr = server.addr;
    // A line longer than one message is not refused: it goes out as several, in order.
    let long = "x".repeat(5000);
    let input = format!("fine\n/msg nobody_here hello\n{long}\nalso fine\n");
    let output =
        tokio::task::spawn_blocking(move || run_with_input(cli(addr, &["--name", "r"]), &input))
            .await
            .unwrap();
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("line 2 was refused"), "{stderr}");
    let stored = room_texts(addr, "#lobby").await;
    assert_eq!(stored.first().map(String::as_str), Some("fine"));
    assert_eq!(stored.last().map(String::as_str), Some("also fine"));
    assert!(stored.len() > 3, "the long line was split: {stored:?}");
    assert_eq!(stored[1..stored.len() - 1].concat(), long);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn roles_show_in_member_lists_and_moderation_refusals_are_printed() {
    let server = start_with(
        "127.0.0.1:0",
        None,
        &[
            "--flood-rate",
            "0",
            "--password-memory-kib",
            "8",
            "--password-iterations",
            "1",
        ],
    )
    .await;
    // alice registers and makes #den, which she owns.
    let mut alice = observer(server.addr, "alice").await;
    wait_for(&mut alice, "\"history\"").await;
    let writer = alice.get_mut().get_mut();
    writer
        .write_all(b"{\"type\":\"register\",\"password\":\"alice's password\"}\n{\"type\":\"join\",\"room\":\"#den\"}\n")
        .await
        .unwrap();
    wait_for(&mut alice, "\"owner\"").await;
    let addr = server.addr;
    let output = tokio::task::spawn_blocking(move || {
        run_with_input(
            cli(addr, &["--name", "bob", "--room", "#den", "--no-color"]),
            "/who\n/kick alice\nhello\n",
        )
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.contains("members of #den (2): ~alice, bob"),
        "{stdout}"
    );
    assert!(
        stdout.contains("you need to be an operator of #den for that"),
        "{stdout}"
    );
    assert!(output.status.success(), "{output:?}");
    server.stop().await;
}

/// chat-cli on a pseudo-terminal, as a person runs it: what it prints is collected by a thread,
/// keys are written to the terminal.
struct Pty {
    child: std::process::Child,
    keys: std::fs::File,
    seen: std::sync::Arc<std::sync::Mutex<Vec<u8>>>,
}

impl Drop for Pty {
    /// A failed test leaves no client behind.
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Pty {
    fn spawn(addr: SocketAddr, name: &str) -> Pty {
        let size = nix::pty::Winsize {
            ws_row: 30,
            ws_col: 60,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        let pty = nix::pty::openpty(Some(&size), None).unwrap();
        let slave = std::fs::File::from(pty.slave);
        let mut cmd = cli(addr, &["--name", name]);
        cmd.stdin(slave.try_clone().unwrap())
            .stdout(slave.try_clone().unwrap())
            .stderr(slave)
            .env("TERM", "xterm")
            .env_remove("NO_COLOR");
        let child = cmd.spawn().unwrap();
        let master = std::fs::File::from(pty.master);
        let keys = master.try_clone().unwrap();
        let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let sink = seen.clone();
        std::thread::spawn(move || {
            use std::io::Read;
            let mut master = master;
            let mut buf = [0u8; 4096];
            while let Ok(n) = master.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock().unwrap().extend_from_slice(&buf[..n]);
            }
        });
        Pty { child, keys, seen }
    }

    fn output(&self) -> String {
        String::from_utf8_lossy(&self.seen.lock().unwrap()).into_owned()
    }

    /// Waits until the terminal has shown `needle` (after `from` bytes of output).
    fn wait_for(&self, needle: &str) {
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while !self.output().contains(needle) {
            assert!(
                std::time::Instant::now() < deadline,
                "timed out waiting for {needle:?} in {:?}",
                self.output()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Types `keys` as a person does, one key at a time (an escape sequence or a bracketed
    /// paste is one key).
    fn type_keys(&mut self, keys: &str) {
        let mut rest = keys;
        while !rest.is_empty() {
            let len = if rest.starts_with("\u{1b}[200~") {
                rest.find("\u{1b}[201~").map_or(rest.len(), |i| i + 6)
            } else if rest.starts_with("\u{1b}[") {
                3
            } else {
                rest.chars().next().map_or(1, char::len_utf8)
            };
            self.keys.write_all(&rest.as_bytes()[..len]).unwrap();
            self.keys.flush().unwrap();
            rest = &rest[len..];
            std::thread::sleep(Duration::from_millis(30));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn in_a_terminal_the_line_editor_keeps_typing_whole_and_asks_before_a_paste() {
    let server = start("127.0.0.1:0", None).await;
    let addr = server.addr;
    let mut watch = observer(addr, "bob").await;
    wait_for(&mut watch, "\"members\"").await;
    let mut pty = tokio::task::spawn_blocking(move || {
        let pty = Pty::spawn(addr, "tess");
        pty.wait_for("members of #lobby");
        pty
    })
    .await
    .unwrap();
    wait_for(&mut watch, "tess").await;
    // Half a line typed, then someone mentions tess: the bell rings, their line is printed
    // above the prompt, and the half line is still there to finish.
    pty.type_keys("hel");
    watch
        .get_mut()
        .write_all(b"{\"type\":\"say\",\"room\":\"#lobby\",\"text\":\"tess: ping\"}\n")
        .await
        .unwrap();
    let mut pty = tokio::task::spawn_blocking(move || {
        pty.wait_for("tess: ping");
        pty.type_keys("lo\r");
        // Up brings the line back from the editor's history; it is not sent as an escape.
        pty.type_keys("\u{1b}[A\r");
        // A bracketed paste of three lines asks first, then goes out as one message.
        pty.type_keys("\u{1b}[200~one\ntwo\n/three\u{1b}[201~");
        pty.type_keys("\r");
        pty.wait_for("Send 3 lines as one message? [y/N]");
        pty.type_keys("y\r");
        // Keys that arrive together (typed fast, or sent by tmux) are all taken at once, not
        // left waiting for the next key.
        pty.keys.write_all(b"typed fast\r").unwrap();
        // Three lines in one burst, no bracketed paste (tmux send-keys): every one is sent,
        // in order, none lost with the line before.
        pty.keys
            .write_all(b"burst one\rburst two\rburst three\r")
            .unwrap();
        pty
    })
    .await
    .unwrap();
    wait_for(&mut watch, "/three").await;
    wait_for(&mut watch, "burst three").await;
    let output = pty.output();
    assert!(output.contains('\u{7}'), "the bell rang: {output:?}");
    assert!(!output.contains("^[[A"));
    let stored = room_texts(addr, "#lobby").await;
    assert_eq!(
        stored,
        vec![
            "tess: ping",
            "hello",
            "hello",
            "one\ntwo\n/three",
            "typed fast",
            "burst one",
            "burst two",
            "burst three"
        ]
    );
    // Ctrl-D leaves; the server announces the quit.
    pty.type_keys("\u{4}");
    let status = tokio::task::spawn_blocking(move || pty.child.wait().unwrap())
        .await
        .unwrap();
    assert!(status.success());
    wait_for(&mut watch, "\"quit\"").await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_pipe_that_only_sends_prints_no_history() {
    let server = start("127.0.0.1:0", None).await;
    let addr = server.addr;
    let input: String = (1..=5).map(|i| format!("old {i}\n")).collect();
    let first = tokio::task::spawn_blocking(move || {
        run_with_input(cli(addr, &["--name", "early"]), &input)
    })
    .await
    .unwrap();
    assert!(first.status.success());
    let output =
        tokio::task::spawn_blocking(move || run_with_input(cli(addr, &["--name", "late"]), "hi\n"))
            .await
            .unwrap();
    assert!(output.status.success(), "{output:?}");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(!stdout.contains("old "), "no history in a pipe: {stdout}");
    assert!(stdout.contains("<late> hi"), "{stdout}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn log_dir_keeps_a_plain_text_log_per_conversation() {
    let server = start("127.0.0.1:0", None).await;
    let addr = server.addr;
    let logs = tempfile::tempdir().unwrap();
    let dir = logs.path().to_str().unwrap().to_string();
    let output = tokio::task::spawn_blocking(move || {
        run_with_input(
            cli(addr, &["--name", "logger", "--log-dir", &dir]),
            "first line\n/me logs off\n",
        )
    })
    .await
    .unwrap();
    assert!(output.status.success(), "{output:?}");
    let file = logs
        .path()
        .join(format!("127_0_0_1_{}", addr.port()))
        .join("#lobby.log");
    let log = std::fs::read_to_string(&file).unwrap_or_else(|e| panic!("{file:?}: {e}"));
    let lines: Vec<&str> = log.lines().collect();
    assert!(
        lines.iter().any(|l| l.ends_with("\t-->\tlogger joined")),
        "{log}"
    );
    assert!(
        lines.iter().any(|l| l.ends_with("\tlogger\tfirst line")),
        "{log}"
    );
    assert!(
        lines.iter().any(|l| l.ends_with("\t*\tlogger logs off")),
        "{log}"
    );
    // Every line starts with a date and a time.
    for line in lines {
        assert!(
            line.len() > 20 && line.as_bytes()[4] == b'-' && line.as_bytes()[10] == b' ',
            "{line:?}"
        );
    }
    server.stop().await;
}
