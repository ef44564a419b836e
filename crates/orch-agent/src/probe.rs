//! What `orch check` learns about the agents before any runs: whether this machine can start
//! a sandbox at all (`check_sandbox`), and whether each role's program starts inside one
//! (`ProcessAgentRunner::probe`), with what the sandbox leaves out.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use orch_core::domain::Agent;
use tokio::process::Command;

use crate::config::AgentSandbox;
use crate::launch::{launch, LaunchSpec, Launched};
use crate::runner::{base_environment, create_private_dir, ProcessAgentRunner};
use crate::sandbox::{self, Isolation, View};

/// How long a probe or the sandbox check may take.
const PROBE_TIMEOUT: Duration = Duration::from_secs(30);
/// How many lines of a probe's output a report keeps.
const SHOWN_LINES: usize = 5;

/// What starting one role's program with its probe arguments showed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeReport {
    pub agent: Agent,
    /// The program and the probe arguments it was started with.
    pub command: Vec<String>,
    pub outcome: ProbeOutcome,
    /// What the sandbox leaves out and why, and variables `pass_env` names that orch lacks.
    pub notes: Vec<String>,
}

/// How a probe ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProbeOutcome {
    /// Exit 0; the first line it printed.
    Ran {
        first_line: String,
    },
    /// A non-zero exit (`None`: ended by a signal) with the first lines of its output.
    Failed {
        code: Option<i32>,
        output: String,
    },
    CouldNotStart {
        reason: String,
    },
    TimedOut,
}

impl ProbeReport {
    pub fn succeeded(&self) -> bool {
        matches!(self.outcome, ProbeOutcome::Ran { .. })
    }
}

impl std::fmt::Display for ProbeOutcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ProbeOutcome::Ran { first_line } => write!(f, "ok: {first_line}"),
            ProbeOutcome::Failed {
                code: Some(code),
                output,
            } => write!(f, "exited with code {code}: {output}"),
            ProbeOutcome::Failed { code: None, output } => {
                write!(f, "ended by a signal: {output}")
            }
            ProbeOutcome::CouldNotStart { reason } => write!(f, "could not start: {reason}"),
            ProbeOutcome::TimedOut => write!(f, "did not end within {PROBE_TIMEOUT:?}"),
        }
    }
}

/// Starts `true` in an empty sandbox once: `Ok` with the `bwrap` used when this machine can
/// run sandboxes, `Err` saying why not (bubblewrap missing, user namespaces not allowed).
/// `AgentSandbox::None` is `Ok("none")`.
pub async fn check_sandbox(sandbox: &AgentSandbox) -> Result<String, String> {
    let AgentSandbox::Bwrap { program } = sandbox else {
        return Ok("none".to_owned());
    };
    let bwrap = sandbox::find_bwrap(program.as_deref())?;
    let truth = sandbox::find_program("true", Some(&OsString::from("/usr/bin:/bin")))?;
    let args = sandbox::bwrap_args(
        &View::default(),
        Isolation {
            network: false,
            privileged: sandbox::orch_is_privileged(),
        },
        Path::new("/"),
        &truth,
        &[],
    );
    let mut command = Command::new(&bwrap);
    command
        .args(args)
        .env_clear()
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let output = tokio::time::timeout(PROBE_TIMEOUT, command.output())
        .await
        .map_err(|_| format!("{}: did not end within {PROBE_TIMEOUT:?}", bwrap.display()))?
        .map_err(|err| format!("{}: {err}", bwrap.display()))?;
    if output.status.success() {
        Ok(bwrap.display().to_string())
    } else {
        Err(format!(
            "{} cannot create a sandbox here: {}",
            bwrap.display(),
            first_lines(&output.stderr)
        ))
    }
}

impl ProcessAgentRunner {
    /// Starts `agent`'s program with its probe arguments (`--version` unless configured) the
    /// way a run starts it, in an empty worktree and home under the system's temp directory
    /// (removed afterwards); `None` when the role is not configured.
    pub async fn probe(&self, agent: Agent) -> Option<ProbeReport> {
        let role = self.roles.get(&agent)?;
        let mut command = vec![role.command[0].clone()];
        command.extend(role.probe.iter().cloned());
        let mut notes: Vec<String> = role
            .pass_env
            .iter()
            .filter(|name| std::env::var_os(name).is_none())
            .map(|name| format!("pass_env: {name} is not set in orch's environment"))
            .collect();
        // Outside orch's data directory: `orch check` may run as another user than the daemon.
        let dir = std::env::temp_dir().join(format!(
            "orch-probe-{}-{}",
            std::process::id(),
            agent.as_str()
        ));
        let outcome = match self.probe_in(agent, &dir, &mut notes).await {
            Ok(outcome) => outcome,
            Err(reason) => ProbeOutcome::CouldNotStart { reason },
        };
        if let Err(err) = tokio::fs::remove_dir_all(&dir).await {
            tracing::debug!(error = %err, "removing the probe's directory failed");
        }
        Some(ProbeReport {
            agent,
            command,
            outcome,
            notes,
        })
    }

    async fn probe_in(
        &self,
        agent: Agent,
        dir: &Path,
        notes: &mut Vec<String>,
    ) -> Result<ProbeOutcome, String> {
        let role = &self.roles[&agent];
        let absolute = |path: PathBuf| std::path::absolute(path).map_err(|err| err.to_string());
        let worktree = absolute(dir.join("worktree"))?;
        let output_dir = absolute(dir.join("output"))?;
        let home = absolute(dir.join("home"))?;
        for path in [&worktree, &output_dir, &home] {
            create_private_dir(path)
                .await
                .map_err(|err| format!("{}: {err}", path.display()))?;
        }
        let mut env = base_environment(role, self.sandbox_home(&home));
        env.insert("ORCH_AGENT".to_owned(), agent.as_str().into());
        let launched = launch(LaunchSpec {
            sandbox: &self.sandbox,
            program: &role.command[0],
            args: &role.probe,
            command_args: &role.command[1..],
            env,
            worktree: &worktree,
            output_dir: &output_dir,
            home: &home,
            run_dir: None,
            analysis_file: None,
            worktree_mounts: &[],
            network: role.network,
            read_only_paths: &role.read_only_paths,
            writable_paths: &role.writable_paths,
            protected: &self.protected,
            nice: self.nice,
        })?;
        let Launched {
            mut child,
            unit,
            notes: left_out,
        } = launched;
        notes.extend(left_out);
        drop(child.stdin.take());
        match tokio::time::timeout(PROBE_TIMEOUT, child.wait_with_output()).await {
            Ok(Ok(output)) if output.status.success() => Ok(ProbeOutcome::Ran {
                first_line: String::from_utf8_lossy(&output.stdout)
                    .lines()
                    .map(str::trim)
                    .find(|line| !line.is_empty())
                    .unwrap_or_default()
                    .to_owned(),
            }),
            Ok(Ok(output)) => {
                let mut text = first_lines(&output.stderr);
                if text.is_empty() {
                    text = first_lines(&output.stdout);
                }
                Ok(ProbeOutcome::Failed {
                    code: output.status.code(),
                    output: text,
                })
            }
            Ok(Err(err)) => Err(err.to_string()),
            Err(_) => {
                if let Some(unit) = unit {
                    unit.kill();
                }
                Ok(ProbeOutcome::TimedOut)
            }
        }
    }
}

/// The first `SHOWN_LINES` non-empty lines of `bytes`, joined with " | ".
fn first_lines(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes)
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty())
        .take(SHOWN_LINES)
        .collect::<Vec<_>>()
        .join(" | ")
}
