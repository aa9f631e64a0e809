//! `cargo xtask irctest`: the IRC conformance suite every serious IRC server runs in its CI
//! (irctest), against our IRC listener through our controller (`xtask/irctest/chatserver.py`),
//! or against ngIRCd through irctest's own controller for comparison.
//!
//! The suite comes from `IRCTEST_DIR`, else `../shared/irctest` beside the clone, else a clone of
//! github progval/irctest at [`IRCTEST_COMMIT`]. Its Python requirements go into a virtualenv
//! under `target/irctest`. Each test starts a fresh server. The selection is the one servers are
//! compared by: `irctest/server_tests`, markers [`SELECTION`].
//!
//! Tests we know fail are listed, one pytest id per line, in `xtask/irctest/known-failures.txt`:
//! the run fails on any other failure (a regression), and names the listed tests that passed
//! (to take off the list). Skips are counted and grouped by reason.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::Context;

use crate::{cargo, root};

/// The commit of irctest whose tree `../shared/irctest` holds.
const IRCTEST_COMMIT: &str = "6b30309777b1070276b46fd3fb4f8d4d2376e557";

/// The markers servers are compared by (ergo, ngIRCd and ours, the same).
const SELECTION: &str =
    "not services and not implementation-specific and not deprecated and not strict";

/// Which server the suite runs against.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Server {
    /// chat-server's IRC listener, through our controller.
    Chat,
    /// ngIRCd (Debian's), through irctest's own controller.
    Ngircd,
}

/// Options of `cargo xtask irctest`.
#[derive(Debug, Clone, clap::Args)]
pub struct IrctestArgs {
    /// The server under test.
    #[arg(long, value_enum, default_value_t = Server::Chat)]
    server: Server,
    /// Only tests whose names match this pytest `-k` expression.
    #[arg(short = 'k', long)]
    select: Option<String>,
    /// Tests run at once (pytest-xdist workers); each starts its own server.
    #[arg(long, default_value_t = 2)]
    jobs: usize,
}

/// Runs the suite and prints pytest's summary and ours.
pub fn run(args: &IrctestArgs) -> anyhow::Result<()> {
    let work = root().join("target/irctest");
    std::fs::create_dir_all(&work)?;
    let server = format!("{:?}", args.server).to_lowercase();
    let report = work.join(format!("report-{server}.xml"));
    let suite = suite(&work)?;
    let python = venv(&work, &suite)?;
    let mut pytest = Command::new(&python);
    pytest
        .current_dir(&suite)
        .args(["-m", "pytest", "-p", "no:cacheprovider", "-q", "-rfE"])
        .arg("-m")
        .arg(SELECTION)
        .arg(format!("--junitxml={}", report.display()))
        .env("PYTHONDONTWRITEBYTECODE", "1")
        // The servers' temporary directories, not the read-only suite.
        .env("TMPDIR", std::env::temp_dir());
    if args.jobs > 1 {
        pytest.arg(format!("-n{}", args.jobs));
    }
    if let Some(k) = &args.select {
        pytest.args(["-k", k]);
    }
    match args.server {
        Server::Chat => {
            let status = cargo()
                .current_dir(root())
                .args(["build", "-q", "-p", "chat-server"])
                .status()?;
            anyhow::ensure!(status.success(), "cannot build chat-server");
            pytest
                .arg("--controller=chatserver")
                .env("PYTHONPATH", root().join("xtask/irctest"))
                .env("CHAT_SERVER_BIN", root().join("target/debug/chat-server"));
        }
        Server::Ngircd => {
            ngircd()?;
            pytest.arg("--controller=irctest.controllers.ngircd");
        }
    }
    pytest.arg("irctest/server_tests/");
    eprintln!(
        "xtask: irctest against {:?} from {}",
        args.server,
        suite.display()
    );
    // pytest's exit status says whether anything failed; the report says what.
    let _ = pytest.status()?;
    let report = std::fs::read_to_string(&report)
        .with_context(|| format!("pytest wrote no {} (did it start?)", report.display()))?;
    let mut results = parse_report(&report);
    // A failure not known is run again, alone: the machine is shared and a test that timed out
    // under load is not a regression. One that fails twice is.
    if args.server == Server::Chat && args.select.is_none() {
        let known = known_failures()?;
        let again: Vec<String> = results
            .iter()
            .filter(|(id, o)| **o == Outcome::Failed && !known.contains(*id))
            .map(|(id, _)| id.clone())
            .collect();
        if !again.is_empty() {
            eprintln!(
                "xtask: running {} unexpected failures again, one at a time",
                again.len()
            );
            let rerun = work.join("rerun.xml");
            let _ = Command::new(&python)
                .current_dir(&suite)
                .args(["-m", "pytest", "-p", "no:cacheprovider", "-q", "-rfE"])
                .arg(format!("--junitxml={}", rerun.display()))
                .arg("--controller=chatserver")
                .env("PYTHONDONTWRITEBYTECODE", "1")
                .env("PYTHONPATH", root().join("xtask/irctest"))
                .env("CHAT_SERVER_BIN", root().join("target/debug/chat-server"))
                .args(&again)
                .status()?;
            let second = parse_report(&std::fs::read_to_string(&rerun).unwrap_or_default());
            for id in again {
                if second.get(&id) == Some(&Outcome::Passed) {
                    eprintln!("xtask: {id} passed when run again");
                    results.insert(id, Outcome::Passed);
                }
            }
        }
    }
    summarize(&results, args)
}

/// The suite's directory: `IRCTEST_DIR`, `../shared/irctest`, or a clone at the pinned commit.
fn suite(work: &Path) -> anyhow::Result<PathBuf> {
    if let Some(dir) = std::env::var_os("IRCTEST_DIR") {
        return Ok(PathBuf::from(dir));
    }
    let shared = root().join("../shared/irctest");
    if shared.join("irctest/server_tests").is_dir() {
        return Ok(shared.canonicalize()?);
    }
    let clone = work.join("src");
    if !clone.join("irctest/server_tests").is_dir() {
        eprintln!("xtask: cloning irctest at {IRCTEST_COMMIT}");
        let git = |args: &[&str]| Command::new("git").args(args).status();
        let cloned = git(&[
            "clone",
            "-q",
            "https://github.com/progval/irctest",
            &clone.to_string_lossy(),
        ])?
        .success()
            && git(&[
                "-C",
                &clone.to_string_lossy(),
                "checkout",
                "-q",
                IRCTEST_COMMIT,
            ])?
            .success();
        anyhow::ensure!(cloned, "cannot clone irctest (set IRCTEST_DIR to a copy)");
    }
    Ok(clone)
}

/// A virtualenv with the suite's requirements and pytest-xdist; returns its python.
fn venv(work: &Path, suite: &Path) -> anyhow::Result<PathBuf> {
    let venv = work.join("venv");
    let python = venv.join("bin/python");
    let ready = venv.join(".installed");
    let requirements = std::fs::read_to_string(suite.join("requirements.txt"))?;
    if std::fs::read_to_string(&ready).ok().as_deref() == Some(requirements.as_str()) {
        return Ok(python);
    }
    eprintln!(
        "xtask: installing irctest's requirements in {}",
        venv.display()
    );
    let status = Command::new("python3")
        .args(["-m", "venv"])
        .arg(&venv)
        .status()?;
    anyhow::ensure!(status.success(), "python3 -m venv failed");
    let status = Command::new(&python)
        .args(["-m", "pip", "install", "-q", "-r"])
        .arg(suite.join("requirements.txt"))
        .arg("pytest-xdist")
        .status()?;
    anyhow::ensure!(status.success(), "cannot install irctest's requirements");
    std::fs::write(&ready, requirements)?;
    Ok(python)
}

/// ngIRCd from Debian, installed when missing (as root).
fn ngircd() -> anyhow::Result<()> {
    let present = Command::new("ngircd")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success() || !o.stdout.is_empty());
    if present {
        return Ok(());
    }
    eprintln!("xtask: installing ngircd (Debian)");
    crate::apt_install(&["ngircd"])
}

/// One test's outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Outcome {
    Passed,
    Failed,
    Skipped(String),
}

/// Test ids (`file::Class::test[param]`) and outcomes from pytest's JUnit XML.
fn parse_report(xml: &str) -> BTreeMap<String, Outcome> {
    let mut results = BTreeMap::new();
    for case in xml.split("<testcase ").skip(1) {
        // ` name=` with its space: `classname=` holds `name=` too.
        let attr = |name: &str| {
            let start = format!(" {case}").find(&format!(" {name}=\""))? + name.len() + 2;
            let end = case[start..].find('"')? + start;
            Some(unescape(&case[start..end]))
        };
        let (Some(class), Some(name)) = (attr("classname"), attr("name")) else {
            continue;
        };
        // classname is `irctest.server_tests.whois.WhoisTestCase`.
        let (module, class) = class.rsplit_once('.').unwrap_or(("", &class));
        let file = format!("{}.py", module.replace('.', "/"));
        let id = format!("{file}::{class}::{name}");
        let end = case.find("</testcase>").unwrap_or(case.len());
        let body = &case[..end];
        let outcome = if body.contains("<failure") || body.contains("<error") {
            Outcome::Failed
        } else if let Some(at) = body.find("<skipped") {
            let reason = body[at..]
                .find("message=\"")
                .map(|m| {
                    let rest = &body[at + m + 9..];
                    unescape(&rest[..rest.find('"').unwrap_or(0)])
                })
                .unwrap_or_default();
            Outcome::Skipped(reason)
        } else {
            Outcome::Passed
        };
        results.insert(id, outcome);
    }
    results
}

fn unescape(s: &str) -> String {
    s.replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

/// The known failures: one pytest id per line, `#` comments.
fn known_failures() -> anyhow::Result<BTreeSet<String>> {
    let path = root().join("xtask/irctest/known-failures.txt");
    let text = std::fs::read_to_string(&path).unwrap_or_default();
    Ok(text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_string)
        .collect())
}

fn summarize(results: &BTreeMap<String, Outcome>, args: &IrctestArgs) -> anyhow::Result<()> {
    let count = |f: fn(&Outcome) -> bool| results.values().filter(|o| f(o)).count();
    let passed = count(|o| *o == Outcome::Passed);
    let failed = count(|o| *o == Outcome::Failed);
    let skipped = count(|o| matches!(o, Outcome::Skipped(_)));
    let mut reasons: BTreeMap<&str, usize> = BTreeMap::new();
    for outcome in results.values() {
        if let Outcome::Skipped(why) = outcome {
            *reasons.entry(why.as_str()).or_default() += 1;
        }
    }
    let server = format!("{:?}", args.server).to_lowercase();
    println!("irctest ({server}): {passed} passed, {failed} failed, {skipped} skipped");
    println!("skipped, by reason:");
    let mut by_count: Vec<_> = reasons.into_iter().collect();
    by_count.sort_by_key(|(why, n)| (std::cmp::Reverse(*n), *why));
    for (why, n) in by_count {
        println!("  {n:4}  {why}");
    }
    if args.server != Server::Chat || args.select.is_some() {
        return Ok(());
    }
    let known = known_failures()?;
    let failures: BTreeSet<&String> = results
        .iter()
        .filter(|(_, o)| **o == Outcome::Failed)
        .map(|(id, _)| id)
        .collect();
    let new: Vec<&&String> = failures.iter().filter(|id| !known.contains(**id)).collect();
    let fixed: Vec<&String> = known
        .iter()
        .filter(|id| results.get(*id).is_some_and(|o| *o == Outcome::Passed))
        .collect();
    if !fixed.is_empty() {
        println!("passing now, to take off xtask/irctest/known-failures.txt:");
        for id in &fixed {
            println!("  {id}");
        }
    }
    if !new.is_empty() {
        println!("failing, and not known to fail:");
        for id in &new {
            println!("  {id}");
        }
        anyhow::bail!("{} irctest tests failed that passed before", new.len());
    }
    println!(
        "{} known failures ({} of them failed in this run)",
        known.len(),
        failures.len()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_report_gives_each_test_its_outcome() {
        let xml = r#"<testsuite><testcase classname="irctest.server_tests.whois.WhoisTestCase" name="testWhoisUser[no-target]" time="0.1"></testcase><testcase classname="irctest.server_tests.cap.CapTestCase" name="testNoReq" time="0.1"><failure message="boom">x</failure></testcase><testcase classname="irctest.server_tests.cap.CapTestCase" name="testSts" time="0"><skipped type="pytest.skip" message="Unsupported by controller: &quot;sts&quot;">y</skipped></testcase></testsuite>"#;
        let results = parse_report(xml);
        assert_eq!(
            results.get("irctest/server_tests/whois.py::WhoisTestCase::testWhoisUser[no-target]"),
            Some(&Outcome::Passed)
        );
        assert_eq!(
            results.get("irctest/server_tests/cap.py::CapTestCase::testNoReq"),
            Some(&Outcome::Failed)
        );
        assert_eq!(
            results.get("irctest/server_tests/cap.py::CapTestCase::testSts"),
            Some(&Outcome::Skipped(
                "Unsupported by controller: \"sts\"".into()
            ))
        );
    }
}
