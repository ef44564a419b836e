//! orch's automation, in Rust so it runs wherever cargo runs: `cargo xtask ci`, `tidy`,
//! `codegen [--check]`, `bench [name]`, `sim ...`, `dist` and `screenshot`.
//!
//! This crate is std-only on purpose (no dependencies to build before CI can start), and it
//! is the only crate allowed to print. It is not a build system: it runs cargo and checks the
//! repository's rules; everything it enforces is also a `#[test]`, so `cargo test` alone
//! catches a broken rule. Main pieces: `ci` (the one CI entry point), `tidy` (the structural
//! rules of SPEC §6 and STYLE.md), `codegen` (generated docs with a drift check), `manifest`
//! (a small reader for the TOML subset our `Cargo.toml` files use).

#![forbid(unsafe_code)]
#![allow(clippy::print_stdout, clippy::print_stderr)]

mod bench;
mod ci;
mod codegen;
mod dist;
mod manifest;
mod process;
mod screenshot;
mod sim;
mod tidy;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

const HELP: &str = "\
usage: cargo xtask <command>

commands:
  ci                 fmt check, clippy -D warnings, tests (RUN_SLOW_TESTS=1), the simulation batch,
                     tidy, codegen --check
  tidy               check the workspace's structural rules (SPEC.md §6, STYLE.md)
  codegen [--check]  regenerate docs/adr/README.md and docs/config.md; --check fails on drift
  bench [NAME]       run a release-mode benchmark: store, ingest, pipeline, crash (default: all)
  sim --seed N [--trace] | --seeds N [--from S] [--items K]
                     the deterministic simulation of orch-core: replay one seed, or run many
  dist               target/dist/orch-<version>-<arch>-<os>.tar.gz (binary, deploy/, docs)
                     and its .sha256
  screenshot         regenerate docs/board.png with the board's browser test (needs chromium,
                     chromium-driver)
";

/// What a failed command reports; it is printed once, by `main`.
type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let root = project_root();
    let res = match args.as_slice() {
        ["ci"] => ci::run(&root),
        ["tidy"] => tidy::run(&root),
        ["codegen"] => codegen::run(&root, codegen::Mode::Write),
        ["codegen", "--check"] => codegen::run(&root, codegen::Mode::Check),
        ["bench"] => bench::run(&root, None),
        ["bench", name] => bench::run(&root, Some(name)),
        ["dist"] => dist::run(&root),
        ["screenshot"] => screenshot::run(&root),
        ["sim", rest @ ..] => sim::run(&root, rest),
        [] | ["help" | "--help" | "-h"] => {
            print!("{HELP}");
            return ExitCode::SUCCESS;
        }
        _ => {
            eprint!("xtask: unknown command: {}\n\n{HELP}", args.join(" "));
            return ExitCode::from(2);
        }
    };
    match res {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("xtask: {err}");
            ExitCode::FAILURE
        }
    }
}

/// The workspace root: xtask lives one level below it.
fn project_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask's manifest dir has a parent")
        .to_path_buf()
}
