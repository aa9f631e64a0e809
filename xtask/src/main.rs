//! `cargo xtask`: the project's automation. `demo` starts a server, chatty bots and a client in
//! one command; `bench` measures the server under load and prints a markdown report.

mod bench;
mod bots;
mod demo;

use std::path::PathBuf;
use std::process::Command;

const USAGE: &str = "usage:
  cargo xtask demo [--client gui|tui|cli] [--bots N] [--windows N] [--port P] [--release]
                   [--headless SECONDS]
  cargo xtask bench [--quick] [--out FILE] [--only PARTS] [--sizes N,N] [--rates D,D]
                    [--secs S] [--target ADDR [--target-pid PID]] [--wire native|irc]
                    [--parallel N]
  cargo xtask test [cargo test arguments]

demo   starts a server with a temporary store, N bots that chat, and your client
       (gui when a display is available, else tui). Ctrl-C stops everything.
       --windows N opens N clients (GUI windows, or tmux panes when run inside tmux).
       --headless S runs a CLI client for S seconds and checks that it saw the bots (for CI).
bench  builds in release, runs the standard load suite and prints a markdown table.
       --only picks parts of the suite (fanout,senders,talk,floor,rooms,slow,churn,idle);
       --sizes picks room sizes for the fan-out runs and --rates their offered deliveries/s.
       --target runs the load against a server that is already running (its CPU and memory
       are sampled when --target-pid is given); --wire irc speaks IRC to it. --parallel
       sets how many clients register at once (256).
test   installs the software renderer the GUI tests draw with (Debian, as root) if it is
       missing, then runs cargo test --workspace.";

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("demo") => demo::run(&args[1..]),
        Some("bench") => bench::run(&args[1..]),
        Some("test") => test(&args[1..]),
        Some("bench-run") => bench::run_suite(&args[1..]),
        Some("bench-floor") => bench::run_floor(&args[1..]),
        Some("-h" | "--help" | "help") | None => {
            println!("{USAGE}");
            Ok(())
        }
        Some(other) => Err(anyhow::anyhow!("unknown task {other:?}\n\n{USAGE}")),
    };
    if let Err(err) = result {
        eprintln!("xtask: {err:#}");
        std::process::exit(1);
    }
}

/// Where Mesa's software Vulkan driver (lavapipe) registers itself.
const LAVAPIPE_ICD: &str = "/usr/share/vulkan/icd.d";

/// `cargo xtask test`: the whole test suite, after making sure the GUI tests can render.
fn test(extra: &[String]) -> anyhow::Result<()> {
    let has_renderer = std::fs::read_dir(LAVAPIPE_ICD)
        .map(|dir| {
            dir.flatten()
                .any(|e| e.file_name().to_string_lossy().starts_with("lvp"))
        })
        .unwrap_or(false);
    if !has_renderer {
        eprintln!("xtask: installing Mesa's software renderer for the GUI snapshot tests");
        let apt = |args: &[&str]| {
            Command::new("apt-get")
                .args(args)
                .env("DEBIAN_FRONTEND", "noninteractive")
                .status()
        };
        let installed = apt(&["update", "-qq"]).is_ok_and(|s| s.success())
            && apt(&["install", "-y", "-qq", "mesa-vulkan-drivers", "libvulkan1"])
                .is_ok_and(|s| s.success());
        anyhow::ensure!(
            installed,
            "could not install mesa-vulkan-drivers and libvulkan1 (run as root, or install them)"
        );
    }
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(cargo)
        .current_dir(root())
        .args(["test", "--workspace"])
        .args(extra)
        .status()?;
    anyhow::ensure!(status.success(), "tests failed");
    Ok(())
}

/// The workspace root (the parent of this crate's directory).
fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the workspace")
        .to_path_buf()
}

/// Builds the given packages' binaries, in release or debug.
fn build(packages: &[&str], release: bool) -> anyhow::Result<PathBuf> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(root()).arg("build").arg("--quiet");
    if release {
        cmd.arg("--release");
    }
    for p in packages {
        cmd.args(["-p", p]);
    }
    eprintln!(
        "xtask: building {} ({})",
        packages.join(", "),
        if release { "release" } else { "debug" }
    );
    let status = cmd.status()?;
    anyhow::ensure!(status.success(), "cargo build failed");
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("target"));
    Ok(target.join(if release { "release" } else { "debug" }))
}

/// Parses `--flag value` pairs and bare `--switch`es.
struct Flags<'a> {
    args: &'a [String],
}

impl<'a> Flags<'a> {
    fn new(args: &'a [String]) -> anyhow::Result<Self> {
        if let Some(bad) = args.iter().find(|a| a.is_empty()) {
            anyhow::bail!("bad argument {bad:?}");
        }
        Ok(Self { args })
    }

    fn value(&self, name: &str) -> Option<&'a str> {
        self.args
            .iter()
            .position(|a| a == name)
            .and_then(|i| self.args.get(i + 1))
            .map(String::as_str)
    }

    fn parsed<T: std::str::FromStr>(&self, name: &str, default: T) -> anyhow::Result<T> {
        match self.value(name) {
            Some(v) => v
                .parse()
                .map_err(|_| anyhow::anyhow!("{name} takes a number, not {v:?}")),
            None => Ok(default),
        }
    }

    fn has(&self, name: &str) -> bool {
        self.args.iter().any(|a| a == name)
    }
}
