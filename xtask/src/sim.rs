//! `cargo xtask sim [ARGS]`: the deterministic simulation of orch-core (`orch_core::fakes::sim`),
//! run by orch-core's `sim` example; `cargo xtask ci` runs a fixed batch of it.
//!
//! `--seed N` replays one seed and prints its trace, `--seeds N [--from S]` runs many and
//! prints seeds/s and the convergence times. By hand it runs in release mode (fast for big
//! batches); in CI in the dev profile, whose orch-core is built at opt-level 1 (root
//! `Cargo.toml`), so the test step's build is reused. A seed gives the same trace in both.

use std::path::Path;

use crate::process::{self, cargo};
use crate::Result;

/// The seeds `cargo xtask ci` runs, besides the regression seeds (SPEC §7: thousands per run).
pub(crate) const CI_SEEDS: u64 = 2000;

/// Which cargo profile builds the runner.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Profile {
    Dev,
    Release,
}

pub(crate) fn run(root: &Path, args: &[&str]) -> Result<()> {
    if args.is_empty() {
        return Err(
            "usage: cargo xtask sim (--seed N [--trace] | --seeds N [--from S]) [--items K]".into(),
        );
    }
    let mut command = cargo(root);
    command.args(cargo_args(Profile::Release, args));
    process::run(&mut command)
}

/// The CI batch: `CI_SEEDS` seeds; any violation fails CI with the seed and its trace.
pub(crate) fn ci(root: &Path) -> Result<()> {
    let seeds = CI_SEEDS.to_string();
    let mut command = cargo(root);
    command.arg("--locked");
    command.args(cargo_args(Profile::Dev, &["--seeds", &seeds]));
    process::run(&mut command)
}

/// `cargo run` of the runner with `args`.
pub(crate) fn cargo_args(profile: Profile, args: &[&str]) -> Vec<String> {
    let mut out: Vec<String> = [
        "run",
        "-p",
        "orch-core",
        "--features",
        "fakes",
        "--example",
        "sim",
    ]
    .iter()
    .map(|word| (*word).to_owned())
    .collect();
    if profile == Profile::Release {
        out.push("--release".to_owned());
    }
    out.push("--".to_owned());
    out.extend(args.iter().map(|arg| (*arg).to_owned()));
    out
}

#[cfg(test)]
mod tests;
