//! The `orch` binary: parses the command line and runs one subcommand.
//!
//! Exit codes (SPEC §5.1): 0 ok, 1 runtime failure, 2 bad usage or bad config.

#![forbid(unsafe_code)]

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

use orch_daemon::config;

#[derive(Debug, Parser)]
#[command(
    name = "orch",
    version,
    about = "Runs AI coding agents through a Plane and Gitea delivery pipeline"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Validate the configuration offline and report every error at once.
    Check(CheckArgs),
    /// Print the generated configuration reference (docs/config.md) to stdout.
    #[command(hide = true)]
    ConfigReference,
}

/// Where the config file is: `--config`, else `$ORCH_CONFIG`, else `./orch.toml`.
#[derive(Debug, Args)]
struct ConfigArgs {
    /// The config file (default: $ORCH_CONFIG, else ./orch.toml).
    #[arg(long, value_name = "PATH")]
    config: Option<PathBuf>,
}

#[derive(Debug, Args)]
struct CheckArgs {
    #[command(flatten)]
    config: ConfigArgs,
}

/// How a command failed, which decides the exit code.
#[derive(Debug)]
enum Failure {
    /// Bad usage or bad config: exit 2. The text is printed as is, one error per line.
    Usage(String),
    /// Anything that went wrong while running: exit 1.
    Runtime(String),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let outcome = match cli.command {
        Command::Check(args) => check(&args),
        Command::ConfigReference => config_reference(),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            let (code, text) = match failure {
                Failure::Usage(text) => (2, text),
                Failure::Runtime(text) => (1, text),
            };
            // Nothing more can be done if stderr is gone; the exit code still tells.
            let _ = writeln!(std::io::stderr().lock(), "{text}");
            ExitCode::from(code)
        }
    }
}

/// Loads the config named by `args` with this process's `ORCH_*` environment.
fn load_config(args: &ConfigArgs) -> Result<(PathBuf, config::Config), Failure> {
    let env = config::process_env();
    let path = config::resolve_path(args.config.as_deref(), &env);
    let loaded = config::load(&path, &env).map_err(|errors| Failure::Usage(errors.to_string()))?;
    Ok((path, loaded))
}

fn check(args: &CheckArgs) -> Result<(), Failure> {
    let (path, loaded) = load_config(&args.config)?;
    let projects: Vec<&str> = loaded
        .projects
        .iter()
        .map(|project| project.key.as_str())
        .collect();
    let telegram = if loaded.telegram.is_some() {
        "telegram on"
    } else {
        "telegram off (notifications logged)"
    };
    print_stdout(&format!(
        "config ok: {} ({} project(s): {}; listen {}; {telegram})\n",
        path.display(),
        projects.len(),
        projects.join(", "),
        loaded.server.listen,
    ))
}

fn config_reference() -> Result<(), Failure> {
    print_stdout(&config::reference_markdown())
}

fn print_stdout(text: &str) -> Result<(), Failure> {
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
        .map_err(|err| Failure::Runtime(format!("cannot write to stdout: {err}")))
}
