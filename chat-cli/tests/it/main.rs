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
    let mut args = vec!["chat-server", "--listen", listen, "--flood-rate", "0"];
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
    server.stop().await;
}
