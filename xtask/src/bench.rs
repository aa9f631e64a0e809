//! `cargo xtask bench`: not yet.
pub fn run(_args: &[String]) -> anyhow::Result<()> {
    anyhow::bail!("bench is being written")
}
