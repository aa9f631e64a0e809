//! A real IRC client, weechat (headless, from Debian's `weechat-headless`), in the same room
//! as a native client, over plaintext and over TLS. It is driven through its fifo plugin and
//! read through its logger plugin's files.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;

use crate::harness::{Client, TestServer, WAIT, free_port};

struct Weechat {
    child: Child,
    dir: tempfile::TempDir,
}

impl Weechat {
    /// Starts weechat connected to our IRC listener as `nick`, auto-joining `#den`. `None`
    /// when weechat-headless is not installed and this is not CI (`cargo xtask test` installs
    /// it; CI must run this test).
    fn start(port: u16, nick: &str, tls: bool) -> Option<Weechat> {
        let version = Command::new("weechat-headless")
            .arg("--version")
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string());
        let Some(version) = version else {
            assert!(
                std::env::var_os("CI").is_none(),
                "weechat-headless is missing (cargo xtask test installs it)"
            );
            eprintln!("weechat-headless is not installed: skipping (cargo xtask test installs it)");
            return None;
        };
        // WeeChat 4 renamed its "ssl" options "tls"; Debian 12 has 3.8.
        let major: u32 = version
            .split('.')
            .next()
            .and_then(|m| m.parse().ok())
            .unwrap_or(4);
        let tls_word = if major >= 4 { "tls" } else { "ssl" };
        let dir = tempfile::tempdir().unwrap();
        let transport = if tls {
            format!("-{tls_word};/set irc.server.test.{tls_word}_verify off")
        } else {
            format!("-no{tls_word}")
        };
        let run = format!(
            "/set logger.file.flush_delay 0;/server add test 127.0.0.1/{port} {transport};\
             /set irc.server.test.nicks {nick};/set irc.server.test.autojoin #den;/connect test"
        );
        let child = Command::new("weechat-headless")
            .arg("--dir")
            .arg(dir.path())
            .args(["-P", "irc,logger,fifo", "--run", &run])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        Some(Weechat { child, dir })
    }

    /// Runs a command or says text in a buffer, through the fifo plugin.
    async fn input(&self, buffer: &str, text: &str) {
        let fifo = wait_for(|| {
            std::fs::read_dir(self.dir.path())
                .ok()?
                .flatten()
                .map(|e| e.path())
                .find(|p| {
                    p.file_name()
                        .unwrap()
                        .to_string_lossy()
                        .starts_with("weechat_fifo")
                })
        })
        .await;
        std::fs::write(fifo, format!("{buffer} *{text}\n")).unwrap();
    }

    fn log(&self, buffer: &str) -> PathBuf {
        self.dir
            .path()
            .join("logs")
            .join(format!("{buffer}.weechatlog"))
    }

    /// Waits until the buffer's log has a line containing `needle`; returns that line.
    async fn expect_logged(&self, buffer: &str, needle: &str) -> String {
        let path = self.log(buffer);
        let found = try_wait_for(|| {
            let text = std::fs::read_to_string(&path).ok()?;
            text.lines()
                .find(|l| l.contains(needle))
                .map(str::to_string)
        })
        .await;
        found.unwrap_or_else(|| {
            let log = std::fs::read_to_string(&path).unwrap_or_default();
            panic!("weechat never showed {needle:?} in {buffer}; its log:\n{log}")
        })
    }
}

impl Drop for Weechat {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn try_wait_for<T>(mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() > deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn wait_for<T>(f: impl FnMut() -> Option<T>) -> T {
    try_wait_for(f).await.expect("in time")
}

/// The native client waits for weechat's user to join, then they talk both ways.
async fn conversation(weechat: &Weechat, sam: &mut Client) {
    sam.send(json!({"type":"join","room":"#den"})).await;
    loop {
        let join = sam.expect("join").await;
        if join["name"] == "weebo" && join["room"] == "#den" {
            break;
        }
    }
    sam.say("#den", "hi weechat ☕ 日本語").await;
    sam.send(json!({"type":"me","room":"#den","text":"waves"}))
        .await;
    let line = weechat
        .expect_logged("irc.test.#den", "hi weechat ☕ 日本語")
        .await;
    // sam made #den, so weechat shows them as its operator.
    assert!(line.contains("\t@sam\t"), "{line:?}");
    let line = weechat.expect_logged("irc.test.#den", "sam waves").await;
    assert!(line.contains("\t *\t"), "an action: {line:?}");

    weechat.input("irc.test.#den", "hello native").await;
    weechat.input("irc.test.#den", "/me dances").await;
    weechat
        .input("irc.test.#den", "/topic set by weechat")
        .await;
    let mut seen = Vec::new();
    while seen.len() < 3 {
        let v = sam.next().await.expect("still connected");
        if v["type"] == "message" && v["from"] == "weebo" {
            seen.push((v["text"].to_string(), v["action"] == true));
        }
        if v["type"] == "topic" && v["by"] == "weebo" {
            seen.push((v["topic"].to_string(), false));
        }
    }
    assert_eq!(
        seen,
        vec![
            ("\"hello native\"".to_string(), false),
            ("\"dances\"".to_string(), true),
            ("\"set by weechat\"".to_string(), false),
        ]
    );
    // weechat saw the topic change it asked for come back from the server.
    weechat
        .expect_logged(
            "irc.test.#den",
            "changed topic for #den to \"set by weechat\"",
        )
        .await;
}

#[tokio::test]
async fn weechat_talks_with_a_native_client() {
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let server = TestServer::start(&["--irc-listen", &listen]).await;
    let Some(weechat) = Weechat::start(port, "weebo", false) else {
        return;
    };
    let mut sam = server.client("sam").await;
    conversation(&weechat, &mut sam).await;
    let line = weechat
        .expect_logged("irc.server.test", "server supports:")
        .await;
    assert!(line.contains("server-time"), "{line}");
    drop(weechat);
    server.stop().await;
}

#[tokio::test]
async fn weechat_over_tls() {
    let dir = tempfile::tempdir().unwrap();
    let (irc_port, plain_port) = (free_port(), free_port());
    let irc = format!("127.0.0.1:{irc_port}");
    let plain = format!("127.0.0.1:{plain_port}");
    let data = dir.path().to_str().unwrap();
    let server = TestServer::start(&[
        "--tls-self-signed",
        "--data-dir",
        data,
        "--plain-listen",
        &plain,
        "--irc-tls-listen",
        &irc,
    ])
    .await;
    let Some(weechat) = Weechat::start(irc_port, "weebo", true) else {
        return;
    };
    for _ in 0..100 {
        if tokio::net::TcpStream::connect(&plain).await.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut sam = Client::connect(plain.parse().unwrap()).await;
    sam.hello("sam").await;
    conversation(&weechat, &mut sam).await;
    let log = std::fs::read_to_string(weechat.log("irc.server.test")).unwrap();
    // weechat spoke TLS to the IRC listener and saw its self-signed certificate.
    assert!(log.contains("gnutls: receiving 1 certificate"), "{log}");
    assert!(log.contains("CN=rcgen self signed cert"), "{log}");
    drop(weechat);
    server.stop().await;
}
