//! `cargo xtask ci`: the one command CI runs, step by step, stopping at the first failure.
//!
//! Nothing is built twice: clippy and the tests use the default dev profile with no feature
//! flags, so they share build scripts and proc macros in one target directory, and the
//! `codegen --check` step runs the `orch` binary the test build made rather than `cargo run`,
//! which would rebuild the daemon's graph without the dev-dependency features. The `sim`
//! step runs the simulation batch in the same dev profile, so it only links its runner.
//! Every build is `--locked`: CI builds exactly what `Cargo.lock` says.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use crate::process::{self, cargo, seconds, timed};
use crate::{codegen, sim, tidy, Result};

/// The daemon's binary (SPEC §5.1).
const ORCH_BINARY: &str = "orch";

pub(crate) fn run(root: &Path) -> Result<()> {
    let mut durations: Vec<(&str, Duration)> = Vec::new();
    let mut step = |name: &'static str, body: &dyn Fn() -> Result<()>| -> Result<()> {
        let ((), elapsed) = timed(name, body)?;
        durations.push((name, elapsed));
        Ok(())
    };

    step("fmt", &|| {
        process::run(cargo(root).args(["fmt", "--all", "--", "--check"]))
    })?;
    step("clippy", &|| {
        process::run(cargo(root).args([
            "clippy",
            "--locked",
            "--workspace",
            "--all-targets",
            "--",
            "-D",
            "warnings",
        ]))
    })?;
    step("test", &|| test(root))?;
    step("sim", &|| sim::ci(root))?;
    step("tidy", &|| tidy::run(root))?;
    step("codegen --check", &|| {
        let orch = built_binary(root, ORCH_BINARY);
        codegen::run_with(root, codegen::Mode::Check, orch.as_deref())
    })?;

    println!("\n=== ci passed");
    for (name, elapsed) in &durations {
        println!("    {name:<16} {:>8}", seconds(*elapsed));
    }
    let total: Duration = durations.iter().map(|(_, elapsed)| *elapsed).sum();
    println!("    {:<16} {:>8}", "total", seconds(total));
    Ok(())
}

/// Runs the whole test suite with slow tests on, with nextest when it is installed.
fn test(root: &Path) -> Result<()> {
    let mut probe = cargo(root);
    probe.args(["nextest", "--version"]);
    let nextest = process::succeeds(probe);
    let mut command = cargo(root);
    if nextest {
        command.args(["nextest", "run", "--locked", "--workspace"]);
    } else {
        println!("cargo-nextest is not installed: using cargo test");
        command.args(["test", "--locked", "--workspace"]);
    }
    command.env("RUN_SLOW_TESTS", "1");
    let streamed = process::run_streaming(&mut command, is_summary_line)?;
    println!("{}", summarize(&streamed.kept));
    streamed.status
}

/// Where the test build put the binary `name`, if it built it (a package's bin is built for
/// its integration tests). Asking cargo again with the same selection is a no-op build that
/// lists the artifacts; running that binary avoids a `cargo run` that would rebuild the
/// daemon without the dev-dependency features the test build unified.
fn built_binary(root: &Path, name: &str) -> Option<PathBuf> {
    let output = cargo(root)
        .args([
            "test",
            "--locked",
            "--workspace",
            "--no-run",
            "-q",
            "--message-format=json",
        ])
        .stderr(Stdio::null())
        .output()
        .ok()?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    stdout.lines().find_map(|line| binary_artifact(line, name))
}

/// The executable of a non-test `bin` artifact named `name`, from one line of cargo's JSON.
fn binary_artifact(line: &str, name: &str) -> Option<PathBuf> {
    let target_name = format!("\"kind\":[\"bin\"],\"crate_types\":[\"bin\"],\"name\":\"{name}\"");
    if !line.contains("\"reason\":\"compiler-artifact\"") || !line.contains(&target_name) {
        return None;
    }
    let profile = &line[line.find("\"profile\":{")?..];
    let profile = &profile[..profile.find('}')?];
    if !profile.contains("\"test\":false") {
        return None;
    }
    let key = "\"executable\":\"";
    let rest = &line[line.find(key)? + key.len()..];
    Some(PathBuf::from(&rest[..rest.find('"')?]))
}

/// nextest's final `Summary` line, or one of libtest's per-binary `test result:` lines.
fn is_summary_line(line: &str) -> bool {
    let line = line.trim_start();
    line.starts_with("Summary [") || line.starts_with("test result:")
}

/// One final line for the whole run, from the lines `is_summary_line` kept.
fn summarize(kept: &[String]) -> String {
    if let Some(summary) = kept
        .iter()
        .rev()
        .find(|line| line.trim_start().starts_with("Summary ["))
    {
        return format!("tests: {}", summary.trim());
    }
    let mut totals = [0u64; 3];
    let names = ["passed", "failed", "ignored"];
    for line in kept {
        for part in line.split([';', '.']) {
            let mut words = part.split_whitespace();
            let (Some(count), Some(word)) = (words.next(), words.next()) else {
                continue;
            };
            let (Ok(count), Some(slot)) = (
                count.parse::<u64>(),
                names.iter().position(|name| *name == word),
            ) else {
                continue;
            };
            totals[slot] += count;
        }
    }
    format!(
        "tests: {} passed, {} failed, {} ignored, in {} test binaries",
        totals[0],
        totals[1],
        totals[2],
        kept.len()
    )
}

#[cfg(test)]
mod tests;
