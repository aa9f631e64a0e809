//! `cargo xtask demo`: a server with a temporary store, bots that chat, and the user's client,
//! all stopped together on exit or Ctrl-C.

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::sync::watch;

use crate::bots;

/// Which client the user gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Client {
    /// The desktop window (chat-egui).
    Gui,
    /// The terminal UI (chat-cursive).
    Tui,
    /// The line-oriented client (chat-cli).
    Cli,
}

/// `cargo xtask demo` options.
#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    /// Which client to open [default: gui with a display, else tui in a terminal, else cli].
    #[arg(long, value_enum)]
    client: Option<Client>,
    /// How many bots chat.
    #[arg(long, default_value_t = 4)]
    bots: usize,
    /// How many clients to open (GUI windows, or tmux panes when run inside tmux).
    #[arg(long, default_value_t = 1)]
    windows: usize,
    /// The port to listen on (0 for any free one) [default: 53000, or a free one if taken].
    #[arg(long)]
    port: Option<u16>,
    /// Build and run in release.
    #[arg(long)]
    release: bool,
    /// Run a CLI client for this many seconds and check that it saw the bots talk (for CI).
    #[arg(long, value_name = "SECONDS")]
    headless: Option<u64>,
}

pub fn run(args: &DemoArgs) -> anyhow::Result<()> {
    use std::io::IsTerminal;
    let has_display = std::env::var_os("DISPLAY").is_some_and(|d| !d.is_empty())
        || std::env::var_os("WAYLAND_DISPLAY").is_some_and(|d| !d.is_empty());
    let has_terminal = std::io::stdin().is_terminal() && std::io::stdout().is_terminal();
    let headless = args.headless;
    let client = match (args.client, headless) {
        (_, Some(_)) => Client::Cli,
        (Some(Client::Tui), _) if !has_terminal => anyhow::bail!(
            "the terminal UI needs a terminal (stdin and stdout are not one); try --client cli"
        ),
        (Some(client), _) => client,
        (None, _) if has_display => Client::Gui,
        (None, _) if has_terminal => Client::Tui,
        (None, _) => {
            eprintln!("xtask: no display and no terminal: using the CLI client (--client cli)");
            Client::Cli
        }
    };
    let bots = args.bots;
    let windows = args.windows.max(1);
    let release = args.release;
    anyhow::ensure!(
        bots <= bots::NAMES.len(),
        "at most {} bots",
        bots::NAMES.len()
    );

    let mut packages = vec!["chat-server", "chat-cli"];
    match client {
        Client::Gui => packages.push("chat-egui"),
        Client::Tui => packages.push("chat-cursive"),
        Client::Cli => {}
    }
    let bin = crate::build(&packages, release)?;

    // --port 0 asks for any free port; without --port, 53000 is preferred.
    let port = match args.port {
        Some(0) => TcpListener::bind("127.0.0.1:0")?.local_addr()?.port(),
        Some(p) => p,
        None => free_port()?,
    };
    let addr = format!("127.0.0.1:{port}");
    let store = tempfile::tempdir()?;
    let log = std::fs::File::create(store.path().join("server.log"))?;
    let mut server = Command::new(bin.join("chat-server"))
        .args(["--listen", &addr])
        .arg("--data-dir")
        .arg(store.path())
        .args([
            "--motd",
            "Welcome to the chat demo. Type /help for the commands.",
        ])
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .context("cannot start chat-server")?;
    let result = (|| {
        wait_for_port(&addr, &mut server)?;
        eprintln!(
            "xtask: server on {addr} (store {}, log server.log there), {bots} bots",
            store.path().display()
        );
        let runtime = tokio::runtime::Runtime::new()?;
        runtime.block_on(run_clients(&bin, &addr, client, bots, windows, headless))
    })();
    stop(&mut server);
    result
}

/// Port 53000 when free, as the original chat; any free port otherwise.
fn free_port() -> anyhow::Result<u16> {
    if TcpListener::bind("127.0.0.1:53000").is_ok() {
        return Ok(53000);
    }
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn wait_for_port(addr: &str, server: &mut Child) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if std::net::TcpStream::connect(addr).is_ok() {
            return Ok(());
        }
        if let Some(status) = server.try_wait()? {
            anyhow::bail!("chat-server exited early ({status})");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    anyhow::bail!("chat-server did not start listening on {addr}")
}

/// Asks the server to shut down gracefully (SIGTERM), then makes sure it is gone.
fn stop(server: &mut Child) {
    let _ = Command::new("kill")
        .args(["-TERM", &server.id().to_string()])
        .status();
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = server.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = server.kill();
    let _ = server.wait();
}

async fn run_clients(
    bin: &Path,
    addr: &str,
    client: Client,
    bots: usize,
    windows: usize,
    headless: Option<u64>,
) -> anyhow::Result<()> {
    let (stop_tx, stop_rx) = watch::channel(false);
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(1, |d| d.as_nanos() as u64);
    let mut tasks = Vec::new();
    for (i, name) in bots::NAMES.iter().take(bots).enumerate() {
        tasks.push(tokio::spawn(bots::run(
            addr.to_string(),
            name,
            seed.wrapping_add(i as u64),
            stop_rx.clone(),
        )));
    }
    let (host, port) = addr.rsplit_once(':').expect("host:port");
    let result = match headless {
        Some(secs) => headless_cli(bin, host, port, secs).await,
        None => interactive(bin, host, port, client, windows).await,
    };
    let _ = stop_tx.send(true);
    for t in tasks {
        let _ = tokio::time::timeout(Duration::from_secs(3), t).await;
    }
    result
}

/// Runs the user's client(s) until they exit or Ctrl-C.
async fn interactive(
    bin: &Path,
    host: &str,
    port: &str,
    client: Client,
    windows: usize,
) -> anyhow::Result<()> {
    let program = match client {
        Client::Gui => "chat-egui",
        Client::Tui => "chat-cursive",
        Client::Cli => "chat-cli",
    };
    let user = std::env::var("USER")
        .ok()
        .filter(|u| !u.is_empty() && u != "root");
    let name = |i: usize| {
        let base = user.clone().unwrap_or_else(|| "you".into());
        if i == 0 {
            base
        } else {
            format!("{base}{}", i + 1)
        }
    };
    let in_tmux = std::env::var_os("TMUX").is_some();
    let mut children = Vec::new();
    // The tmux panes opened for the extra clients, closed with the demo.
    let mut panes = Vec::new();
    for i in 0..windows.max(1) {
        let args = ["--host", host, "--port", port, "--name", &name(i)];
        if i > 0 && client == Client::Tui && in_tmux {
            // Extra terminal clients go into new tmux panes.
            let command = format!("{} {}", bin.join(program).display(), args.join(" "));
            let opened = Command::new("tmux")
                .args(["split-window", "-h", "-P", "-F", "#{pane_id}", &command])
                .output()
                .context("cannot open a tmux pane")?;
            let pane = String::from_utf8_lossy(&opened.stdout).trim().to_string();
            if !pane.is_empty() {
                panes.push(pane);
            }
            continue;
        }
        if i > 0 && client != Client::Gui {
            eprintln!("xtask: more than one terminal client needs tmux; starting one");
            break;
        }
        children.push(
            tokio::process::Command::new(bin.join(program))
                .args(args)
                .kill_on_drop(true)
                .spawn()
                .with_context(|| format!("cannot start {program}"))?,
        );
    }
    let all = async {
        for child in children.iter_mut() {
            let _ = child.wait().await;
        }
    };
    tokio::select! {
        () = all => {}
        _ = tokio::signal::ctrl_c() => eprintln!("xtask: stopping"),
    }
    for child in children.iter_mut() {
        let _ = child.start_kill();
    }
    for pane in &panes {
        let _ = Command::new("tmux")
            .args(["kill-pane", "-t", pane])
            .status();
    }
    Ok(())
}

/// A CLI client for `secs` seconds: checks that it saw the bots talk (CI's smoke test).
async fn headless_cli(bin: &Path, host: &str, port: &str, secs: u64) -> anyhow::Result<()> {
    let mut child = tokio::process::Command::new(bin.join("chat-cli"))
        .args(["--host", host, "--port", port, "--name", "smoke"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .context("cannot start chat-cli")?;
    let stdin = child.stdin.take().expect("piped");
    let mut lines = BufReader::new(child.stdout.take().expect("piped")).lines();
    let mut seen = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    loop {
        match tokio::time::timeout_at(deadline, lines.next_line()).await {
            Ok(Ok(Some(line))) => {
                println!("{line}");
                seen.push(line);
            }
            Ok(_) => break,
            Err(_) => break,
        }
    }
    drop(stdin);
    let status = tokio::time::timeout(Duration::from_secs(10), child.wait())
        .await
        .context("chat-cli did not exit after its input ended")??;
    anyhow::ensure!(status.success(), "chat-cli exited with {status}");
    let bot_lines = seen
        .iter()
        .filter(|l| {
            bots::NAMES
                .iter()
                .any(|b| l.contains(&format!("<{b}>")) || l.contains(&format!("* {b} ")))
        })
        .count();
    anyhow::ensure!(
        bot_lines > 0,
        "the CLI client saw no bot messages in {secs} s ({} lines)",
        seen.len()
    );
    eprintln!("xtask: smoke test passed: the CLI client saw {bot_lines} bot messages in {secs} s");
    Ok(())
}
