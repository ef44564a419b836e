//! Running cargo and other programs: echo the command, stream its output, time it.

use std::ffi::OsStr;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use crate::Result;

/// A `cargo` command for the workspace at `root`, with the cargo that runs xtask.
pub(crate) fn cargo(root: &Path) -> Command {
    let program = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut command = Command::new(program);
    command.current_dir(root);
    command
}

/// Runs `command` with inherited output; an unsuccessful exit is an error naming the command.
pub(crate) fn run(command: &mut Command) -> Result<()> {
    let shown = show(command);
    println!("$ {shown}");
    let status = command
        .status()
        .map_err(|err| format!("could not start `{shown}`: {err}"))?;
    if !status.success() {
        return Err(format!("`{shown}` failed ({status})").into());
    }
    Ok(())
}

/// Runs `command` and returns its stdout; stderr is passed through.
pub(crate) fn output(command: &mut Command) -> Result<std::process::Output> {
    let shown = show(command);
    command
        .stderr(Stdio::inherit())
        .output()
        .map_err(|err| format!("could not start `{shown}`: {err}").into())
}

/// What `run_streaming` saw.
pub(crate) struct Streamed {
    /// The lines (from either stream) that `keep` accepted, in arrival order.
    pub(crate) kept: Vec<String>,
    /// `Err` naming the command if it exited unsuccessfully.
    pub(crate) status: Result<()>,
}

/// Runs `command`, echoing its stdout and stderr line by line as they come, and keeps the
/// lines for which `keep` is true, also when the command fails.
pub(crate) fn run_streaming(command: &mut Command, keep: fn(&str) -> bool) -> Result<Streamed> {
    let shown = show(command);
    println!("$ {shown}");
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|err| format!("could not start `{shown}`: {err}"))?;
    let (sender, receiver) = mpsc::channel();
    let stdout = child.stdout.take().expect("stdout is piped");
    let stderr = child.stderr.take().expect("stderr is piped");
    let readers = [
        echo_lines(stdout, Stream::Out, keep, sender.clone()),
        echo_lines(stderr, Stream::Err, keep, sender),
    ];
    let kept: Vec<String> = receiver.iter().collect();
    for reader in readers {
        reader.join().expect("an output echo thread does not panic");
    }
    let exit = child
        .wait()
        .map_err(|err| format!("could not wait for `{shown}`: {err}"))?;
    let status = if exit.success() {
        Ok(())
    } else {
        Err(format!("`{shown}` failed ({exit})").into())
    };
    Ok(Streamed { kept, status })
}

/// Whether a program answers `args` successfully (used to detect optional tools).
pub(crate) fn succeeds(mut command: Command) -> bool {
    command
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success())
}

/// Runs `step`, printing its name before and its duration after.
pub(crate) fn timed<T>(name: &str, step: impl FnOnce() -> Result<T>) -> Result<(T, Duration)> {
    println!("\n=== {name}");
    let started = Instant::now();
    let res = step();
    let elapsed = started.elapsed();
    match &res {
        Ok(_) => println!("=== {name}: ok in {}", seconds(elapsed)),
        Err(_) => println!("=== {name}: FAILED after {}", seconds(elapsed)),
    }
    res.map(|value| (value, elapsed))
}

pub(crate) fn seconds(duration: Duration) -> String {
    format!("{:.1}s", duration.as_secs_f64())
}

#[derive(Clone, Copy)]
enum Stream {
    Out,
    Err,
}

fn echo_lines(
    source: impl Read + Send + 'static,
    stream: Stream,
    keep: fn(&str) -> bool,
    kept: mpsc::Sender<String>,
) -> thread::JoinHandle<()> {
    thread::spawn(move || {
        let reader = BufReader::new(source);
        for line in reader.split(b'\n') {
            let Ok(bytes) = line else { break };
            let line = String::from_utf8_lossy(&bytes);
            let line = line.trim_end_matches('\r');
            // Echo failures (a closed terminal) must not stop the child from being drained.
            let _ = match stream {
                Stream::Out => writeln!(std::io::stdout().lock(), "{line}"),
                Stream::Err => writeln!(std::io::stderr().lock(), "{line}"),
            };
            if keep(line) {
                let _ = kept.send(line.to_owned());
            }
        }
    })
}

fn show(command: &Command) -> String {
    let mut words = vec![display(command.get_program())];
    words.extend(command.get_args().map(display));
    let envs: Vec<String> = command
        .get_envs()
        .filter_map(|(key, value)| Some(format!("{}={}", display(key), display(value?))))
        .collect();
    if envs.is_empty() {
        words.join(" ")
    } else {
        format!("{} {}", envs.join(" "), words.join(" "))
    }
}

fn display(text: &OsStr) -> String {
    let text = text.to_string_lossy();
    // Show `cargo` rather than the full path of the cargo binary.
    match Path::new(text.as_ref()).file_name() {
        Some(name) if name == "cargo" || name == "cargo.exe" => "cargo".to_owned(),
        _ => text.into_owned(),
    }
}
