//! A server on 127.0.0.1:0 in this process, and a line-oriented test client.

use std::net::SocketAddr;
use std::time::Duration;

use clap::Parser;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// How long a test waits for any one expected line.
pub const WAIT: Duration = Duration::from_secs(10);

/// A port on 127.0.0.1 that was free a moment ago, for a server started as a process.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The real `chat-server` binary, in memory on a free port with these extra flags and its log
/// (at info) piped, and a client connected to it once it is up. Kill the child and read its
/// stderr to see the log.
pub async fn spawn_binary(flags: &[&str]) -> (std::process::Child, Client) {
    let port = free_port();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_chat-server"))
        .args(["--listen", &format!("127.0.0.1:{port}"), "--in-memory"])
        .args(["--metrics-listen", "off"])
        .args(flags)
        .env("RUST_LOG", "info")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    for _ in 0..200 {
        if TcpStream::connect(("127.0.0.1", port)).await.is_ok() {
            return (child, Client::connect(([127, 0, 0, 1], port).into()).await);
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let _ = child.kill();
    let _ = child.wait();
    panic!("the server did not come up on port {port}");
}

pub struct TestServer {
    pub addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<anyhow::Result<()>>>,
}

impl TestServer {
    /// Starts a server with these extra flags (in memory unless `--data-dir` is given).
    pub async fn start(flags: &[&str]) -> TestServer {
        Self::start_with_faults(flags, std::sync::Arc::default()).await
    }

    /// [`TestServer::start`], with storage faults the test can switch on and off.
    pub async fn start_with_faults(
        flags: &[&str],
        faults: std::sync::Arc<chat_server::store::Faults>,
    ) -> TestServer {
        let mut args = vec!["chat-server"];
        if !flags.contains(&"--listen") {
            args.extend(["--listen", "127.0.0.1:0"]);
        }
        if !flags.contains(&"--data-dir") {
            args.push("--in-memory");
        }
        if !flags.contains(&"--flood-rate") {
            args.extend(["--flood-rate", "0"]);
        }
        if !flags.contains(&"--connect-rate") {
            args.extend(["--connect-rate", "0"]);
        }
        if !flags.contains(&"--metrics-listen") {
            args.extend(["--metrics-listen", "off"]);
        }
        args.extend_from_slice(flags);
        let config = chat_server::Config::parse_from(args);
        let listener = chat_server::bind(&config).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel();
        let task = tokio::spawn(chat_server::serve_with_faults(
            config,
            listener,
            async {
                let _ = stopped.await;
            },
            faults,
        ));
        TestServer {
            addr,
            stop: Some(stop),
            task: Some(task),
        }
    }

    /// Shuts the server down as SIGTERM would, and waits for it.
    pub async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        let result = tokio::time::timeout(WAIT, self.task.take().unwrap())
            .await
            .expect("server stops in time");
        result.unwrap().unwrap();
    }

    pub async fn client(&self, name: &str) -> Client {
        let mut c = Client::connect(self.addr).await;
        c.hello(name).await;
        c
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

pub struct Client {
    pub reader: BufReader<OwnedReadHalf>,
    pub writer: OwnedWriteHalf,
}

impl Client {
    pub async fn connect(addr: SocketAddr) -> Client {
        let stream = TcpStream::connect(addr).await.unwrap();
        let (rd, wr) = stream.into_split();
        Client {
            reader: BufReader::new(rd),
            writer: wr,
        }
    }

    /// Connects from a chosen local address (any of 127.0.0.0/8 is this machine).
    pub async fn connect_from(from: std::net::IpAddr, addr: SocketAddr) -> Client {
        let socket = if from.is_ipv4() {
            tokio::net::TcpSocket::new_v4()
        } else {
            tokio::net::TcpSocket::new_v6()
        }
        .unwrap();
        socket.bind(SocketAddr::new(from, 0)).unwrap();
        let stream = socket.connect(addr).await.unwrap();
        let (rd, wr) = stream.into_split();
        Client {
            reader: BufReader::new(rd),
            writer: wr,
        }
    }

    pub async fn raw(&mut self, bytes: &[u8]) {
        self.writer.write_all(bytes).await.unwrap();
    }

    pub async fn send(&mut self, msg: Value) {
        let mut line = msg.to_string();
        line.push('\n');
        self.raw(line.as_bytes()).await;
    }

    pub async fn hello(&mut self, name: &str) {
        self.send(json!({"type":"hello","version":1,"name":name}))
            .await;
        let welcome = self.expect("welcome").await;
        assert_eq!(welcome["name"], name);
        self.expect("history").await;
    }

    pub async fn say(&mut self, room: &str, text: &str) {
        self.send(json!({"type":"say","room":room,"text":text}))
            .await;
    }

    /// The next line, or None at end of stream.
    pub async fn next(&mut self) -> Option<Value> {
        let mut line = String::new();
        let n = tokio::time::timeout(WAIT, self.reader.read_line(&mut line))
            .await
            .expect("a line arrives in time")
            .ok()?;
        if n == 0 {
            return None;
        }
        Some(serde_json::from_str(&line).unwrap_or_else(|e| panic!("{line:?}: {e}")))
    }

    /// Skips lines until one of this type arrives, and returns it.
    pub async fn expect(&mut self, kind: &str) -> Value {
        loop {
            match self.next().await {
                Some(v) if v["type"] == kind => return v,
                Some(_) => {}
                None => panic!("connection closed while waiting for {kind}"),
            }
        }
    }

    /// Skips lines until an error arrives, and returns its code.
    pub async fn expect_error(&mut self) -> String {
        self.expect("error").await["code"]
            .as_str()
            .unwrap()
            .to_string()
    }

    /// Reads until the server closes the connection; returns the last `bye` reason seen.
    pub async fn expect_closed(&mut self) -> Option<String> {
        let mut bye = None;
        while let Some(v) = self.next().await {
            if v["type"] == "bye" {
                bye = v["reason"].as_str().map(String::from);
            }
        }
        bye
    }

    /// Proves the connection is alive and in order: ping, and wait for the pong.
    pub async fn sync(&mut self) {
        self.send(json!({"type":"ping","token":"sync"})).await;
        loop {
            let v = self.expect("pong").await;
            if v["token"] == "sync" {
                return;
            }
        }
    }
}
