//! `cargo xtask ci`: the one command CI runs, step by step, stopping at the first failure.
//!
//! clippy and the tests run in the same profile with the same features, so they share the
//! target directory and dependencies are built once.

use std::path::Path;
use std::time::Duration;

use crate::process::{self, cargo, seconds, timed};
use crate::{codegen, tidy, Result};

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
            "--workspace",
            "--all-targets",
            "--",
            "-D",
            "warnings",
        ]))
    })?;
    step("test", &|| test(root))?;
    step("tidy", &|| tidy::run(root))?;
    step("codegen --check", &|| {
        codegen::run(root, codegen::Mode::Check)
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
        command.args(["nextest", "run", "--workspace"]);
    } else {
        println!("cargo-nextest is not installed: using cargo test");
        command.args(["test", "--workspace"]);
    }
    command.env("RUN_SLOW_TESTS", "1");
    let kept = process::run_streaming(&mut command, is_summary_line)?;
    println!("{}", summarize(&kept));
    Ok(())
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
