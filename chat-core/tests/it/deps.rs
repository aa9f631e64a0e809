//! Checks the crate's dependency boundary mechanically: without default features chat-core
//! must not pull in tokio (or any async runtime), so a sans-IO embedder gets none.

use std::process::Command;

#[test]
fn no_tokio_without_default_features() {
    let manifest = concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let output = Command::new(cargo)
        .args(["tree", "--offline", "--manifest-path", manifest])
        .args(["-p", "chat-core", "--no-default-features", "-e", "normal"])
        .args(["--prefix", "none", "--format", "{p}"])
        .output()
        .expect("cargo tree runs");
    assert!(
        output.status.success(),
        "cargo tree failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let tree = String::from_utf8(output.stdout).unwrap();
    assert!(tree.starts_with("chat-core"), "unexpected tree:\n{tree}");
    for forbidden in ["tokio", "async-trait", "mio"] {
        assert!(
            !tree
                .lines()
                .any(|l| l.starts_with(&format!("{forbidden} "))),
            "{forbidden} is a dependency without default features:\n{tree}"
        );
    }
    // And with default features the async pieces are there, so the check above is meaningful.
    let output = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args(["tree", "--offline", "--manifest-path", manifest])
        .args([
            "-p",
            "chat-core",
            "-e",
            "normal",
            "--prefix",
            "none",
            "--format",
            "{p}",
        ])
        .output()
        .expect("cargo tree runs");
    let tree = String::from_utf8(output.stdout).unwrap();
    assert!(
        tree.lines().any(|l| l.starts_with("tokio ")),
        "tokio missing with defaults:\n{tree}"
    );
}
