//! `orch check`'s look at the agents (SPEC §5.4): the sandbox can start on this machine, and
//! each role's program starts inside it with its probe (`--version` unless configured), with
//! what the sandbox leaves out. It starts programs but reaches no network.

use orch_agent::{check_sandbox, AgentSandbox};
use orch_core::domain::Agent;

use crate::config::Config;
use crate::{preflight, wiring};

/// What `check_agents` found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AgentCheck {
    /// One line per thing that works.
    pub ok: Vec<String>,
    /// Worth knowing, never a failure: no sandbox, a path left out, a variable missing.
    pub warnings: Vec<String>,
    /// What keeps agents from running; `orch check` exits 2 when there is any.
    pub problems: Vec<String>,
}

/// The warning `orch check` gives for `agents.sandbox = "none"`.
pub const NO_SANDBOX_WARNING: &str = "agents.sandbox = \"none\": agents run as orch's user and can read and change what it can (its config, database, logs and other tasks' worktrees); orch keeps its memory unreadable and starts them without capabilities, but only the sandbox keeps them out";

/// The warnings the config alone gives about agents (without starting anything).
pub fn config_warnings(config: &Config) -> Vec<String> {
    match config.agents.sandbox() {
        AgentSandbox::None => vec![NO_SANDBOX_WARNING.to_owned()],
        AgentSandbox::Bwrap { .. } => Vec::new(),
    }
}

/// Looks each program up on orch's `PATH`, starts the sandbox once, then the probe of each
/// role whose program was found in it.
pub async fn check_agents(config: &Config) -> AgentCheck {
    let mut check = AgentCheck::default();
    let path = std::env::var_os("PATH");
    if let Err(problem) = preflight::check_bubblewrap(config, path.as_deref()) {
        check.problems.push(problem);
    }
    let mut missing = Vec::new();
    for agent in Agent::ALL {
        if let Err(problem) = preflight::check_agent_program(config, agent, path.as_deref()) {
            missing.push(agent);
            check.problems.push(problem);
        }
    }
    let sandbox = config.agents.sandbox();
    if check
        .problems
        .iter()
        .any(|problem| problem.contains("bubblewrap"))
    {
        // Without bubblewrap no probe can start: what to do is already said.
        return check;
    }
    match check_sandbox(&sandbox).await {
        Ok(used) => check.ok.push(format!("sandbox: {used}")),
        Err(err) => {
            check.problems.push(format!("agents.sandbox: {err}"));
            return check;
        }
    }
    let runner = match wiring::agent_runner(config) {
        Ok(runner) => runner,
        Err(err) => {
            check.problems.push(err.to_string());
            return check;
        }
    };
    for agent in Agent::ALL {
        let Some(report) = runner.probe(agent).await else {
            continue;
        };
        let command = report.command.join(" ");
        for note in &report.notes {
            check.warnings.push(format!("agents.{agent}: {note}"));
        }
        if report.succeeded() {
            check
                .ok
                .push(format!("agent {agent}: {command}: {}", report.outcome));
        } else if !missing.contains(&agent) {
            // A program not on PATH was reported above, with what to do.
            check
                .problems
                .push(format!("agents.{agent}: {command}: {}", report.outcome));
        }
    }
    check
}
