//! `orch check`'s look at this machine: each agent's program and git on `PATH`, git's version, bubblewrap when the sandbox is on, and the data directories writable.
//!
//! Every check runs, and every problem is one line naming the setting or tool and what to do,
//! so one `orch check` lists everything to fix. Nothing here starts an agent or reaches the
//! network; `agent_check` starts the agents' probes and `online` calls the outside systems.

use std::ffi::OsStr;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use orch_agent::AgentSandbox;
use orch_core::domain::Agent;

use crate::config::Config;
use crate::wiring;

/// The oldest git orch works with: 2.32 gives the config environment (`GIT_CONFIG_COUNT`)
/// through which orch passes its token and pins settings, and 2.38 `merge-tree --write-tree`,
/// with which it checks a merge without touching a worktree.
pub const MIN_GIT_VERSION: (u32, u32) = (2, 38);

/// Where programs are looked up when `PATH` is not set, as `execvp` does.
const DEFAULT_PATH: &str = "/bin:/usr/bin";

/// Checks what orch itself needs on this machine: git on `path` (orch's `PATH`) and new
/// enough, and the data directories writable. One line per problem, each saying what to do.
pub fn check_machine(config: &Config, path: Option<&OsStr>) -> Vec<String> {
    let mut problems = Vec::new();
    if let Err(problem) = check_git(path) {
        problems.push(problem);
    }
    let data = wiring::data_dir(config);
    for (setting, dir) in [
        ("storage.db_path", data.as_path()),
        ("workspace.repos_dir", config.workspace.repos_dir.as_path()),
    ] {
        if let Err(reason) = check_writable(dir) {
            problems.push(format!(
                "{setting}: {reason}: orch keeps its data there; make it writable by orch's user, or choose another directory"
            ));
        }
    }
    problems
}

/// Checks that each agent's program, and bubblewrap when the sandbox is on, are found on
/// `path` (orch's `PATH`), without starting them.
pub fn check_agent_programs(config: &Config, path: Option<&OsStr>) -> Vec<String> {
    let mut problems: Vec<String> = Agent::ALL
        .into_iter()
        .filter_map(|agent| check_agent_program(config, agent, path).err())
        .collect();
    problems.extend(check_bubblewrap(config, path).err());
    problems
}

/// The program of `agent`'s command is found on `path`.
pub fn check_agent_program(
    config: &Config,
    agent: Agent,
    path: Option<&OsStr>,
) -> Result<(), String> {
    let Some(program) = config.agent(agent).command.first() else {
        return Ok(());
    };
    resolve_program(program, path)
        .map(|_| ())
        .map_err(|reason| {
            format!("agents.{agent}.command: {reason}: install it, or give its absolute path")
        })
}

/// bubblewrap is found when the sandbox is on.
pub fn check_bubblewrap(config: &Config, path: Option<&OsStr>) -> Result<(), String> {
    let AgentSandbox::Bwrap { program } = config.agents.sandbox() else {
        return Ok(());
    };
    let (setting, found) = match &program {
        Some(program) => (
            "agents.bwrap_path",
            resolve_program(&program.display().to_string(), path),
        ),
        None => ("agents.sandbox", resolve_program("bwrap", path)),
    };
    found.map(|_| ()).map_err(|reason| {
        format!(
            "{setting}: the sandbox needs bubblewrap, and {reason}: install it (apt-get install bubblewrap) \
             or set agents.bwrap_path; agents.sandbox = \"none\" runs agents unconfined"
        )
    })
}

/// The file `program` names: itself when it holds a `/`, else the first executable of that
/// name in `path`. The reason is a lowercase phrase naming what was looked for.
pub fn resolve_program(program: &str, path: Option<&OsStr>) -> Result<PathBuf, String> {
    if program.contains('/') {
        let file = PathBuf::from(program);
        return match is_executable(&file) {
            true => Ok(file),
            false => Err(format!("{program} is not an executable file")),
        };
    }
    let path = path.unwrap_or(OsStr::new(DEFAULT_PATH));
    let dirs: Vec<PathBuf> = std::env::split_paths(path).collect();
    dirs.iter()
        .map(|dir| dir.join(program))
        .find(|candidate| is_executable(candidate))
        .ok_or_else(|| format!("{program:?} is not on PATH ({})", path.to_string_lossy()))
}

fn is_executable(file: &Path) -> bool {
    std::fs::metadata(file)
        .map(|metadata| metadata.is_file() && metadata.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

/// git is on `path` and at least `MIN_GIT_VERSION`.
fn check_git(path: Option<&OsStr>) -> Result<(), String> {
    let (major, minor) = MIN_GIT_VERSION;
    let git = resolve_program("git", path)
        .map_err(|reason| format!("git: {reason}: install git {major}.{minor} or newer"))?;
    let output = Command::new(&git)
        .arg("--version")
        .env_clear()
        .env("LC_ALL", "C")
        .stdin(Stdio::null())
        .output()
        .map_err(|err| format!("git: {} --version failed: {err}", git.display()))?;
    let text = String::from_utf8_lossy(&output.stdout);
    let version = parse_git_version(&text).ok_or_else(|| {
        format!(
            "git: {} --version printed {:?}, not a version",
            git.display(),
            text.trim()
        )
    })?;
    if version < MIN_GIT_VERSION {
        return Err(format!(
            "git: {} is version {}.{}, older than {major}.{minor}: orch needs 2.32 for its config environment \
             and 2.38 for merge-tree --write-tree; install a newer git first on PATH",
            git.display(),
            version.0,
            version.1
        ));
    }
    Ok(())
}

/// `(major, minor)` of `git version 2.39.5` (and of vendor suffixes such as `(Apple Git-146)`).
pub fn parse_git_version(text: &str) -> Option<(u32, u32)> {
    let rest = text.trim().strip_prefix("git version ")?;
    let mut numbers = rest.split(|c: char| !c.is_ascii_digit());
    let major = numbers.next()?.parse().ok()?;
    let minor = numbers.next()?.parse().ok()?;
    Some((major, minor))
}

/// `dir` can be written by this process: it exists and a file can be made in it, or the
/// nearest directory above it that exists lets orch create it.
fn check_writable(dir: &Path) -> Result<(), String> {
    let mut existing = dir;
    while !existing.exists() {
        match existing.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => existing = parent,
            _ => {
                existing = Path::new(".");
                break;
            }
        }
    }
    if !existing.is_dir() {
        return Err(format!(
            "{} cannot be created: {} is not a directory",
            dir.display(),
            existing.display()
        ));
    }
    let probe = tempfile::Builder::new()
        .prefix(".orch-check-")
        .tempdir_in(existing)
        .map_err(|err| {
            if existing == dir {
                format!("{} is not writable ({err})", dir.display())
            } else {
                format!(
                    "{} cannot be created: {} is not writable ({err})",
                    dir.display(),
                    existing.display()
                )
            }
        })?;
    drop(probe);
    Ok(())
}

#[cfg(test)]
mod tests;
