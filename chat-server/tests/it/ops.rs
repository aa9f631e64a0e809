//! Operations, tried on the real binary as the person running it would: the configuration file
//! and its precedence, `--check-config`, SIGHUP reloads, `/metrics` scraped under load, JSON
//! logs, backups taken under load and restored, and the account and export subcommands on a
//! running and a stopped server.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::harness::{Client, WAIT, free_port};

/// Cheap password hashing for tests.
const CHEAP: &[&str] = &["--password-memory-kib", "8", "--password-iterations", "1"];

/// The server binary as a child process whose log goes to a file; killed when dropped.
struct Server {
    child: std::process::Child,
    log: PathBuf,
    port: u16,
}

impl Server {
    /// Starts `chat-server` with these arguments on a free port; waits until it accepts.
    async fn start(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Server {
        let port = free_port();
        let log = dir.join(format!("server-{port}.log"));
        let child = Command::new(env!("CARGO_BIN_EXE_chat-server"))
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .args(args)
            .envs(env.iter().copied())
            .env_remove("RUST_LOG")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let mut server = Server { child, log, port };
        for _ in 0..400 {
            if tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
            {
                return server;
            }
            if let Ok(Some(status)) = server.child.try_wait() {
                panic!("the server exited ({status}): {}", server.log_text());
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("the server did not come up: {}", server.log_text());
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until the log holds `needle` `times` times.
    async fn wait_log(&self, needle: &str, times: usize) {
        for _ in 0..400 {
            if self.log_text().matches(needle).count() >= times {
                return;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("{needle:?} never logged:\n{}", self.log_text());
    }

    fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([&format!("-{signal}"), &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    async fn client(&self, name: &str) -> Client {
        let mut c = Client::connect(([127, 0, 0, 1], self.port).into()).await;
        c.hello(name).await;
        c
    }

    /// Stops it with SIGTERM and waits.
    fn stop(mut self) {
        self.signal("TERM");
        let status = self.child.wait().unwrap();
        assert!(status.success(), "{status}: {}", self.log_text());
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs the binary to completion: (exit code, stdout, stderr).
fn run(args: &[&str], env: &[(&str, &str)], stdin: &str) -> (i32, String, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_chat-server"))
        .args(args)
        .envs(env.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), stdin.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The value a rendered configuration gives `key`.
fn setting<'a>(rendered: &'a str, key: &str) -> &'a str {
    let prefix = format!("{key} = ");
    rendered
        .lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .unwrap_or_else(|| panic!("no {key} in\n{rendered}"))
}

#[test]
fn a_flag_beats_the_environment_which_beats_the_file_which_beats_the_default() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("chat.toml");
    std::fs::write(
        &file,
        "# a team's server\nhistory = 5\nmotd = \"from the file\"\nmax-per-ip = 3\n\
         flood-rate = 2\noperators = [\"ada\"]\n",
    )
    .unwrap();
    let file = file.to_str().unwrap();
    let (code, out, err) = run(
        &["--config", file, "--flood-rate", "4", "--print-config"],
        &[("CHAT_MAX_PER_IP", "7")],
        "",
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(setting(&out, "flood-rate"), "4", "the flag");
    assert_eq!(setting(&out, "max-per-ip"), "7", "the environment");
    assert_eq!(setting(&out, "history"), "5", "the file");
    assert_eq!(setting(&out, "motd"), "\"from the file\"");
    assert_eq!(setting(&out, "operators"), "[\"ada\"]");
    assert_eq!(setting(&out, "max-connections"), "10000", "the default");
    // CHAT_CONFIG names the file as well as --config does.
    let (code, out, _) = run(&["--print-config"], &[("CHAT_CONFIG", file)], "");
    assert_eq!((code, setting(&out, "history")), (0, "5"));
}

#[test]
fn the_example_in_the_repository_is_what_print_config_writes() {
    let (code, defaults, err) = run(&["--print-config"], &[], "");
    assert_eq!(code, 0, "{err}");
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../packaging/chat-server.toml");
    let example = std::fs::read_to_string(&example).unwrap();
    assert!(
        example == defaults,
        "packaging/chat-server.toml is out of date: write it with \
         `chat-server --print-config > packaging/chat-server.toml`"
    );
    // And it reads back as the defaults, checked.
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../packaging/chat-server.toml");
    let (code, out, err) = run(
        &["--config", path.to_str().unwrap(), "--check-config"],
        &[],
        "",
    );
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("the configuration is fine"), "{out}");
}

#[test]
fn a_bad_file_names_its_line_and_key_and_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    let cases: &[(&str, &str)] = &[
        (
            "motd = \"hi\"\n\nhistory = \"lots\"\n",
            "chat.toml:3: `history`: invalid value 'lots'",
        ),
        (
            "listen = \"127.0.0.1:1\"\nmax_per_ip = 3\n",
            "chat.toml:2: `max_per_ip` is not a setting (did you mean `max-per-ip`?)",
        ),
        ("motd = \"unterminated\n", "chat.toml:1: "),
        (
            "require-account = \"yes\"\n",
            "chat.toml:1: `require-account` is true or false, not a string",
        ),
        (
            "log-format = \"xml\"\n",
            "chat.toml:1: `log-format`: invalid value 'xml'",
        ),
    ];
    for (text, expected) in cases {
        let file = dir.path().join("chat.toml");
        std::fs::write(&file, text).unwrap();
        for extra in [&[][..], &["--check-config"][..]] {
            let mut args = vec!["--config", file.to_str().unwrap(), "--in-memory"];
            args.extend_from_slice(extra);
            let (code, _, err) = run(&args, &[], "");
            assert_eq!(code, 2, "{text:?}: {err}");
            assert!(
                err.contains(expected),
                "{text:?}: expected {expected:?} in {err}"
            );
        }
    }
    // A file that parses but would not start: --check-config says why, and exits 2.
    let file = dir.path().join("chat.toml");
    std::fs::write(
        &file,
        "listen = \"0.0.0.0:53000\"\nirc-tls-listen = \"127.0.0.1:6697\"\n",
    )
    .unwrap();
    let (code, _, err) = run(
        &["--config", file.to_str().unwrap(), "--check-config"],
        &[],
        "",
    );
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("serves plaintext on an address that is not loopback"),
        "{err}"
    );
    assert!(err.contains("irc-tls-listen needs a certificate"), "{err}");
    assert!(err.contains("2 problem(s)"), "{err}");
}

#[tokio::test]
async fn sighup_applies_the_motd_limits_and_operators_and_says_what_needs_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let file = dir.path().join("chat.toml");
    let write = |text: String| std::fs::write(&file, text).unwrap();
    let base = format!(
        "data-dir = {data:?}\nmetrics-listen = \"off\"\npassword-memory-kib = 8\n\
         password-iterations = 1\nflood-rate = 0\nconnect-rate = 0\n"
    );
    write(format!("{base}motd = \"first\"\n"));
    let server = Server::start(dir.path(), &["--config", file.to_str().unwrap()], &[]).await;
    let mut boss = Client::connect(([127, 0, 0, 1], server.port).into()).await;
    boss.send(json!({"type":"hello","version":1,"name":"boss"}))
        .await;
    assert_eq!(boss.expect("welcome").await["motd"], "first");
    boss.send(json!({"type":"register","password":"correct horse"}))
        .await;
    boss.expect("logged_in").await;
    boss.send(json!({"type":"connections"})).await;
    assert_eq!(boss.expect_error().await, "not_permitted");

    write(format!(
        "{base}motd = \"second\"\noperators = [\"boss\"]\nmax-per-ip = 2\n\
         server-name = \"renamed\"\n"
    ));
    server.signal("HUP");
    server.wait_log("only a restart applies it", 1).await;
    let log = server.log_text();
    assert!(
        log.contains("changed=[\"max-per-ip\", \"motd\", \"operators\"]"),
        "{log}"
    );
    assert!(
        log.contains("only a restart applies it") && log.contains("setting=server-name"),
        "{log}"
    );
    // The MOTD greets the next client; the server's name stays until a restart.
    let mut second = Client::connect(([127, 0, 0, 1], server.port).into()).await;
    second
        .send(json!({"type":"hello","version":1,"name":"amy"}))
        .await;
    let welcome = second.expect("welcome").await;
    assert_eq!(
        (welcome["motd"].as_str(), welcome["server"].as_str()),
        (Some("second"), Some("chat"))
    );
    // Operators: the same connection may now list connections.
    boss.send(json!({"type":"connections"})).await;
    let list = boss.expect("connections").await;
    assert_eq!(list["conns"].as_array().unwrap().len(), 2, "{list}");
    // Limits: a third connection from this address is one too many.
    let mut third = Client::connect(([127, 0, 0, 1], server.port).into()).await;
    assert_eq!(third.expect_error().await, "too_many_connections");

    // A broken file changes nothing, and says so.
    write(format!("{base}motd = \"third\nhistory = oops\n"));
    server.signal("HUP");
    server.wait_log("configuration not reloaded", 1).await;
    assert!(server.log_text().contains("chat.toml:"), "names the file");
    drop(second);
    drop(third);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut again = Client::connect(([127, 0, 0, 1], server.port).into()).await;
    again
        .send(json!({"type":"hello","version":1,"name":"cid"}))
        .await;
    assert_eq!(again.expect("welcome").await["motd"], "second");
    server.stop();
}

/// GET `path` from 127.0.0.1:`port`: (status code, body).
async fn http_get(port: u16, path: &str) -> (u16, String) {
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    stream
        .write_all(
            format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
                .as_bytes(),
        )
        .await
        .unwrap();
    let mut response = String::new();
    tokio::time::timeout(WAIT, stream.read_to_string(&mut response))
        .await
        .unwrap()
        .unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    (status, body.to_string())
}

/// Scrapes /metrics and parses it: each sample's name (with its labels) and value.
async fn scrape(port: u16) -> std::collections::BTreeMap<String, f64> {
    let (status, body) = http_get(port, "/metrics").await;
    assert_eq!(status, 200);
    let lines = body.lines().map(|l| Ok(l.to_string()));
    let scrape = prometheus_parse::Scrape::parse(lines).expect("Prometheus text format");
    let mut samples = std::collections::BTreeMap::new();
    for sample in scrape.samples {
        let value = match sample.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => v,
            prometheus_parse::Value::Histogram(buckets) => {
                buckets.iter().map(|b| b.count).fold(0.0, f64::max)
            }
            prometheus_parse::Value::Summary(_) => continue,
        };
        let mut labels: Vec<String> = sample
            .labels
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        labels.sort();
        let name = if labels.is_empty() {
            sample.metric
        } else {
            format!("{}{{{}}}", sample.metric, labels.join(","))
        };
        samples.insert(name, value);
    }
    samples
}

#[tokio::test]
async fn metrics_are_scraped_and_parsed_while_load_runs() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut args = vec![
        "--data-dir",
        data.to_str().unwrap(),
        "--flood-rate",
        "0",
        "--connect-rate",
        "0",
    ];
    // Port 0: the kernel picks one no other test holds, and the log says which.
    args.extend(["--metrics-listen", "127.0.0.1:0"]);
    args.extend_from_slice(CHEAP);
    let server = Server::start(dir.path(), &args, &[]).await;
    server.wait_log("/metrics", 1).await;
    let log = server.log_text();
    let metrics_port: u16 = log
        .split("metrics on http://127.0.0.1:")
        .nth(1)
        .and_then(|rest| rest.split('/').next())
        .and_then(|port| port.parse().ok())
        .unwrap_or_else(|| panic!("no metrics address in {log}"));
    assert_eq!(
        http_get(metrics_port, "/healthz").await,
        (200, "ok\n".into())
    );
    assert_eq!(
        http_get(metrics_port, "/readyz").await,
        (200, "ready\n".into())
    );
    assert_eq!(http_get(metrics_port, "/nothing").await.0, 404);

    // Load: 4 senders, 250 messages each, to a room of 5 (the senders and a reader).
    const SENDERS: usize = 4;
    const EACH: usize = 250;
    let mut reader = server.client("reader").await;
    let mut clients = Vec::new();
    for s in 0..SENDERS {
        clients.push(server.client(&format!("sender{s}")).await);
    }
    let mut tasks = Vec::new();
    for (s, mut client) in clients.into_iter().enumerate() {
        tasks.push(tokio::spawn(async move {
            for i in 0..EACH {
                client.say("#lobby", &format!("s{s} m{i}")).await;
                if i % 50 == 49 {
                    client.sync().await;
                }
            }
            client.sync().await;
            client
        }));
    }
    // Scrape while they send: every scrape parses, and the counters only grow.
    let mut last = 0.0;
    let mut scrapes = 0;
    while !tasks.iter().all(|t| t.is_finished()) || scrapes < 3 {
        let samples = scrape(metrics_port).await;
        let received = samples["chat_messages_received_total"];
        assert!(received >= last, "{received} < {last}");
        last = received;
        assert!(samples["chat_connections"] >= 1.0);
        scrapes += 1;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut senders = Vec::new();
    for task in tasks {
        senders.push(task.await.unwrap());
    }
    // The reader has seen them all, so every count is final.
    let mut seen = 0;
    while seen < SENDERS * EACH {
        if reader.expect("message").await["from"]
            .as_str()
            .unwrap()
            .starts_with("sender")
        {
            seen += 1;
        }
    }
    // One failed login, one flood... and the counts.
    let mut wrong = Client::connect(([127, 0, 0, 1], server.port).into()).await;
    wrong
        .send(json!({"type":"hello","version":1,"name":"ghost","password":"wrong password"}))
        .await;
    wrong.expect_error().await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let samples = scrape(metrics_port).await;
    let total = (SENDERS * EACH) as f64;
    assert_eq!(samples["chat_messages_received_total"], total);
    // Each message reached the 5 members of #lobby.
    assert!(
        samples["chat_deliveries_total"] >= total * 5.0,
        "{samples:?}"
    );
    assert_eq!(samples["chat_connections"], 6.0, "{samples:?}");
    assert_eq!(samples["chat_rooms"], 1.0);
    assert_eq!(samples["chat_login_failures_total"], 1.0, "{samples:?}");
    assert_eq!(samples["chat_queue_drops_total"], 0.0);
    assert_eq!(samples["chat_flood_kicks_total"], 0.0);
    assert_eq!(samples["chat_store_up"], 1.0);
    // Every message was committed by some transaction, each one timed.
    let commits = samples["chat_store_commit_seconds_count"];
    assert!(commits >= 1.0 && commits <= total + 10.0, "{commits}");
    // The buckets, read as one histogram: its +Inf bucket holds every commit.
    assert_eq!(samples["chat_store_commit_seconds"], commits);
    drop(senders);
    server.stop();
}

#[tokio::test]
async fn json_logs_are_one_object_per_line_without_message_text_or_passwords() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut args = vec![
        "--data-dir",
        data.to_str().unwrap(),
        "--log-format",
        "json",
        "--metrics-listen",
        "off",
    ];
    args.extend_from_slice(CHEAP);
    let server = Server::start(dir.path(), &args, &[]).await;
    let mut ann = server.client("ann").await;
    ann.send(json!({"type":"register","password":"hunter2-secret-pw"}))
        .await;
    ann.expect("logged_in").await;
    ann.say("#lobby", "a very private sentence").await;
    ann.expect("message").await;
    let mut wrong = Client::connect(([127, 0, 0, 1], server.port).into()).await;
    wrong
        .send(json!({"type":"hello","version":1,"name":"ann","password":"guessed-password-1"}))
        .await;
    wrong.expect_error().await;
    server.wait_log("failed login", 1).await;
    let log = server.log_text();
    server.stop();
    let mut levels = std::collections::BTreeSet::new();
    for line in log.lines() {
        let entry: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{line}: {e}"));
        assert!(
            entry["timestamp"].is_string() && entry["target"].is_string(),
            "{line}"
        );
        levels.insert(entry["level"].as_str().unwrap().to_string());
    }
    assert!(
        levels.contains("INFO") && levels.contains("WARN"),
        "{levels:?}"
    );
    for secret in [
        "a very private sentence",
        "hunter2-secret-pw",
        "guessed-password-1",
    ] {
        assert!(!log.contains(secret), "{secret} is in the log:\n{log}");
    }
}

/// Reads messages and acks until `n` of this client's messages are acknowledged; returns
/// their texts.
async fn acknowledged(client: &mut Client, n: usize) -> Vec<String> {
    let mut acked = Vec::new();
    while acked.len() < n {
        let v = client.next().await.expect("connection open");
        assert_ne!(v["type"], "error", "{v}");
        if v["type"] == "message" && v["from"] == "writer" {
            acked.push(v["text"].as_str().unwrap().to_string());
        }
    }
    acked
}

#[tokio::test]
async fn a_backup_taken_under_load_restores_every_message_acknowledged_before_it() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let data_arg = data.to_str().unwrap().to_string();
    let args = [
        "--data-dir",
        &data_arg,
        "--flood-rate",
        "0",
        "--metrics-listen",
        "off",
        "--history",
        "10000",
    ];
    let server = Server::start(dir.path(), &args, &[]).await;
    let mut writer = server.client("writer").await;
    // A writer that keeps sending, 20 messages at a time, until told to stop; what it has had
    // acknowledged is in `acked`, in order.
    let acked = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let writing = tokio::spawn({
        let acked = acked.clone();
        async move {
            let mut i = 0;
            while !*stopped.borrow() {
                let mut burst = Vec::new();
                for _ in 0..20 {
                    let line = json!({"type":"say","room":"#lobby","text":format!("w{i}")});
                    burst.extend_from_slice(format!("{line}\n").as_bytes());
                    i += 1;
                }
                writer.raw(&burst).await;
                let got = acknowledged(&mut writer, 20).await;
                acked.lock().unwrap().extend(got);
            }
        }
    });
    let count = || acked.lock().unwrap().len();
    while count() < 500 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let before = acked.lock().unwrap().clone();
    let backup = dir.path().join("backup.sqlite3");
    let (code, out, err) = tokio::task::spawn_blocking({
        let backup = backup.to_str().unwrap().to_string();
        move || run(&["--data-dir", &data_arg, "backup", &backup], &[], "")
    })
    .await
    .unwrap();
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("backed up") && out.contains("backup.sqlite3"),
        "{out}"
    );
    // The writer went on during the backup, and goes on after it.
    let after_backup = count();
    while count() < after_backup + 200 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    stop.send(true).unwrap();
    writing.await.unwrap();
    let total = count();
    server.stop();

    // Restore into the stopped server's data directory and start it again.
    let data_arg = data.to_str().unwrap();
    let (code, out, err) = run(
        &["--data-dir", data_arg, "restore", backup.to_str().unwrap()],
        &[],
        "",
    );
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("restored"), "{out}");
    let exported = dir.path().join("lobby.jsonl");
    let (code, _, err) = run(
        &[
            "--data-dir",
            data_arg,
            "export",
            "#lobby",
            "--output",
            exported.to_str().unwrap(),
        ],
        &[],
        "",
    );
    assert_eq!(code, 0, "{err}");
    let texts: Vec<String> = std::fs::read_to_string(&exported)
        .unwrap()
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["text"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    // Every message acknowledged before the backup started is there, in order, once; the
    // backup is one instant, so it holds a prefix of the stream, without a gap.
    assert!(
        texts.len() >= before.len(),
        "{} < {}",
        texts.len(),
        before.len()
    );
    assert_eq!(&texts[..before.len()], &before[..]);
    assert!(
        texts.len() < total,
        "the backup is from before the end: {}",
        texts.len()
    );
    for (i, text) in texts.iter().enumerate() {
        assert_eq!(text, &format!("w{i}"));
    }
    eprintln!(
        "backup: {} acknowledged before it, {} in it, {total} sent in all",
        before.len(),
        texts.len()
    );
    // And the restored server serves them.
    let server = Server::start(
        dir.path(),
        &[
            "--data-dir",
            data_arg,
            "--metrics-listen",
            "off",
            "--history",
            "10000",
        ],
        &[],
    )
    .await;
    let mut reader = Client::connect(([127, 0, 0, 1], server.port).into()).await;
    reader
        .send(json!({"type":"hello","version":1,"name":"reader"}))
        .await;
    reader.expect("welcome").await;
    let history = reader.expect("history").await;
    let shown = history["messages"].as_array().unwrap();
    assert_eq!(
        shown.last().unwrap()["text"],
        texts.last().unwrap().as_str()
    );
    server.stop();
}

#[tokio::test]
async fn account_subcommands_work_on_a_running_and_on_a_stopped_server() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let data_arg = data.to_str().unwrap();
    let mut args = vec![
        "--data-dir",
        data_arg,
        "--metrics-listen",
        "off",
        "--operator",
        "ada",
    ];
    args.extend_from_slice(CHEAP);
    let server = Server::start(dir.path(), &args, &[]).await;
    let login = |port: u16, name: &'static str, password: &'static str| async move {
        let mut c = Client::connect(([127, 0, 0, 1], port).into()).await;
        c.send(json!({"type":"hello","version":1,"name":name,"password":password}))
            .await;
        c
    };
    for name in ["ada", "bob"] {
        let mut c = server.client(name).await;
        c.send(json!({"type":"register","password":"first password"}))
            .await;
        c.expect("logged_in").await;
    }
    let mut bob = login(server.port, "bob", "first password").await;
    bob.expect("welcome").await;
    bob.say("#lobby", "bob was here").await;
    bob.expect("message").await;

    let admin = |extra: &[&str], stdin: &str| {
        // The same settings as the server (in production: the same configuration file).
        let mut all = vec!["--data-dir", data_arg, "--operator", "ada"];
        all.extend_from_slice(CHEAP);
        all.extend_from_slice(extra);
        run(&all, &[], stdin)
    };
    let (code, out, err) = admin(&["accounts", "list"], "");
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("ada   yes") && out.contains("bob") && out.contains("(2 accounts)"),
        "{out}"
    );
    let (_, json_list, _) = admin(&["accounts", "list", "--json"], "");
    let first: Value = serde_json::from_str(json_list.lines().next().unwrap()).unwrap();
    assert_eq!(
        first,
        json!({"name":"ada","rooms":["#lobby"],"owned":[],"operator":true})
    );

    // Running: the reset goes through the server, which disconnects bob's device.
    let (code, _, err) = admin(
        &["accounts", "reset-password", "bob", "--password-stdin"],
        "second password\n",
    );
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("through the running server"), "{err}");
    assert_eq!(
        bob.expect_closed().await.as_deref(),
        Some("password reset by the server's operator")
    );
    let mut old = login(server.port, "bob", "first password").await;
    assert_eq!(old.expect_error().await, "bad_credentials");
    let mut new = login(server.port, "bob", "second password").await;
    assert_eq!(new.expect("welcome").await["account"], "bob");
    let (code, _, err) = admin(
        &["accounts", "reset-password", "bob", "--password-stdin"],
        "short\n",
    );
    assert_eq!(code, 1);
    assert!(err.contains("at least 8 characters"), "{err}");
    let (code, _, err) = admin(&["accounts", "delete", "nobody"], "");
    assert_eq!(code, 1);
    assert!(err.contains("no account called nobody"), "{err}");

    // Running: an account is added through the server, and logs in at once.
    let (code, _, err) = admin(
        &["accounts", "add", "carol", "--password-stdin"],
        "carol's password\n",
    );
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("through the running server"), "{err}");
    let mut carol = login(server.port, "carol", "carol's password").await;
    assert_eq!(carol.expect("welcome").await["account"], "carol");
    // Taken, looking like one (capital I for l), a service's, or not a name: refused.
    for (name, why) in [
        ("Carol", "exists already"),
        ("caroI", "looks like the account carol"),
        ("NickServ", "a service's name"),
        ("no spaces", "\"no spaces\""),
    ] {
        let (code, _, err) = admin(
            &["accounts", "add", name, "--password-stdin"],
            "a good password\n",
        );
        assert_eq!(code, 1, "{name}");
        assert!(err.contains(why), "{name}: {err}");
    }
    drop(carol);

    // Export while running: JSON Lines.
    let (code, out, err) = admin(&["export", "#LOBBY"], "");
    assert_eq!(code, 0, "{err}");
    let line: Value = serde_json::from_str(out.lines().last().unwrap()).unwrap();
    assert_eq!(
        (line["from"].as_str(), line["text"].as_str()),
        (Some("bob"), Some("bob was here"))
    );
    assert!(line["time"].as_str().unwrap().ends_with('Z'));
    let (code, _, err) = admin(&["export", "#nowhere"], "");
    assert_eq!(code, 1);
    assert!(err.contains("nothing of #nowhere"), "{err}");
    let (code, _, err) = admin(&["restore", "/nonexistent"], "");
    assert_eq!(code, 1);
    assert!(err.contains("is running: stop it first"), "{err}");
    drop((old, new));
    server.stop();

    // Stopped: the same commands change the file, and the server starts with the change.
    let (code, _, err) = admin(
        &["accounts", "reset-password", "bob", "--password-stdin"],
        "third password\n",
    );
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("the server is stopped"), "{err}");
    let (code, _, err) = admin(&["accounts", "delete", "ada"], "");
    assert_eq!(code, 0, "{err}");
    let (code, _, err) = admin(
        &["accounts", "add", "dave", "--password-stdin"],
        "dave's password\n",
    );
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("the server is stopped"), "{err}");
    let (code, _, err) = admin(
        &["accounts", "add", "BOB", "--password-stdin"],
        "dave's password\n",
    );
    assert_eq!(code, 1);
    assert!(err.contains("exists already"), "{err}");
    let server = Server::start(dir.path(), &args, &[]).await;
    let mut dave = login(server.port, "dave", "dave's password").await;
    assert_eq!(dave.expect("welcome").await["account"], "dave");
    drop(dave);
    let mut bob = login(server.port, "bob", "third password").await;
    assert_eq!(bob.expect("welcome").await["account"], "bob");
    let (_, out, _) = admin(&["accounts", "list"], "");
    assert!(
        !out.contains("ada") && out.contains("(3 accounts)"),
        "{out}"
    );
    // Running, a delete goes through the server.
    let (code, _, err) = admin(&["accounts", "delete", "bob"], "");
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        bob.expect_closed().await.as_deref(),
        Some("account deleted by the server's operator")
    );
    // A second server on the same data directory is refused.
    let port = free_port();
    let (code, _, err) = run(
        &[
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--data-dir",
            data_arg,
            "--metrics-listen",
            "off",
        ],
        &[],
        "",
    );
    assert_eq!(code, 1);
    assert!(
        err.contains("another chat-server is using the data directory"),
        "{err}"
    );
    server.stop();
}

/// The packaging directory.
fn packaging() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../packaging")
}

#[test]
fn the_systemd_units_pass_systemd_analyze() {
    let dir = tempfile::tempdir().unwrap();
    let units = [
        "chat-server.service",
        "chat-server-backup.service",
        "chat-server-backup.timer",
    ];
    // The units name the installed binary; here it is the one just built.
    for unit in units {
        let text = std::fs::read_to_string(packaging().join(unit)).unwrap();
        let text = text.replace(
            "/usr/local/bin/chat-server",
            env!("CARGO_BIN_EXE_chat-server"),
        );
        std::fs::write(dir.path().join(unit), text).unwrap();
    }
    let analyze = |args: &[&str]| {
        Command::new("systemd-analyze")
            .args(args)
            .current_dir(dir.path())
            .output()
            .expect("systemd-analyze (Debian's systemd; cargo xtask test installs it)")
    };
    let mut verify = vec!["verify"];
    let paths: Vec<String> = units.iter().map(|u| format!("./{u}")).collect();
    verify.extend(paths.iter().map(String::as_str));
    let out = analyze(&verify);
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success() && said.trim().is_empty(), "{said}");
    // The hardening options hold: systemd rates the exposure from 0 (none) to 10; "OK" is below
    // 4.5, and this unit must stay at 2 or below.
    let out = analyze(&[
        "security",
        "--offline=yes",
        "--threshold=20",
        "./chat-server.service",
    ]);
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{said}");
    let level = said
        .lines()
        .find_map(|l| {
            l.split("Overall exposure level for chat-server.service: ")
                .nth(1)
        })
        .unwrap_or_else(|| panic!("no overall level in {said}"));
    eprintln!("systemd-analyze security: {level}");
}

#[test]
fn the_container_file_passes_hadolint() {
    let file = packaging().join("Containerfile");
    // cargo xtask test names it (installing it into target/tools if it is not on PATH).
    let installed =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/tools/hadolint/bin/hadolint");
    let hadolint = std::env::var("HADOLINT").unwrap_or_else(|_| {
        if installed.exists() {
            installed.display().to_string()
        } else {
            "hadolint".into()
        }
    });
    let out = Command::new(&hadolint)
        .args(["--no-color"])
        .arg(&file)
        .output()
        .unwrap_or_else(|e| panic!("{hadolint} ({e}): cargo xtask test installs it"));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    // The image runs as a user with a number, from the defaults the binary checks fine.
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(text.contains("USER 10001:10001"));
    let env: Vec<(String, String)> = text
        .lines()
        .filter_map(|l| {
            let l = l.trim().trim_start_matches("ENV ").trim_end_matches(" \\");
            let (k, v) = l.split_once('=')?;
            k.starts_with("CHAT_")
                .then(|| (k.to_string(), v.to_string()))
        })
        .collect();
    assert!(env.len() >= 5, "{env:?}");
    let dir = tempfile::tempdir().unwrap();
    let mut env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let data = dir.path().to_str().unwrap();
    env.retain(|(k, _)| *k != "CHAT_DATA_DIR");
    env.push(("CHAT_DATA_DIR", data));
    let (code, out, err) = run(&["--check-config"], &env, "");
    assert_eq!(code, 0, "{out}{err}");
}
