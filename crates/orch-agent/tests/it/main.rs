//! Integration tests of orch-agent: real processes started with `/bin/sh` and coreutils.

mod config;
mod contract;
mod environment;
mod lifecycle;
mod priority;
mod reap;
mod sandbox;

use std::collections::BTreeMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::Duration;

use orch_agent::{AgentSandbox, ProcessAgentRunner, RoleConfig, RunnerConfig};
use orch_core::domain::{Agent, Stage};
use orch_core::ids::{BranchName, JobId, RepoSlug, TaskId, WorkItemId};
use orch_core::ports::AgentRequest;
use tempfile::TempDir;

/// How long a condition that should hold soon may take.
pub(crate) const CONDITION_TIMEOUT: Duration = Duration::from_secs(5);
/// How often a condition is looked at.
const POLL_INTERVAL: Duration = Duration::from_millis(10);

/// A temp directory with a worktree, an output dir, logs and scratch.
pub(crate) struct Fixture {
    pub(crate) dir: TempDir,
}

impl Fixture {
    pub(crate) fn new() -> Fixture {
        let dir = tempfile::tempdir().expect("a temp dir can be created");
        std::fs::create_dir_all(dir.path().join("worktree")).expect("the worktree can be created");
        Fixture { dir }
    }

    pub(crate) fn worktree(&self) -> PathBuf {
        self.dir.path().join("worktree")
    }

    pub(crate) fn output_dir(&self) -> PathBuf {
        self.dir.path().join("output")
    }

    pub(crate) fn logs_dir(&self) -> PathBuf {
        self.dir.path().join("logs")
    }

    pub(crate) fn log_file(&self, agent: Agent) -> PathBuf {
        self.logs_dir()
            .join("ET-001")
            .join(format!("42-{agent}.log"))
    }

    pub(crate) fn log_text(&self, agent: Agent) -> String {
        std::fs::read_to_string(self.log_file(agent)).expect("the log file exists")
    }

    /// `{dir}/data`: where orch's database would be; no sandbox may show it.
    pub(crate) fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    pub(crate) fn homes_dir(&self) -> PathBuf {
        self.dir.path().join("homes")
    }

    /// A runner for `agent` without a sandbox.
    pub(crate) fn config(&self, agent: Agent, command: &[&str]) -> RunnerConfig {
        let role = RoleConfig::new(
            command.iter().map(|arg| (*arg).to_owned()).collect(),
            "Work on {{task}}: {{title}} in {{repo}} on {{branch}}.".to_owned(),
            Duration::from_secs(20),
        );
        RunnerConfig {
            roles: BTreeMap::from([(agent, role)]),
            stall_timeout: Duration::from_secs(20),
            kill_grace: Duration::from_secs(2),
            logs_dir: self.logs_dir(),
            scratch_dir: self.dir.path().join("scratch"),
            homes_dir: self.homes_dir(),
            sandbox: AgentSandbox::None,
            protected_paths: vec![self.data_dir()],
            nice: 0,
        }
    }

    /// A runner for `agent` with each run in a bubblewrap sandbox.
    pub(crate) fn sandboxed(&self, agent: Agent, command: &[&str]) -> RunnerConfig {
        RunnerConfig {
            sandbox: AgentSandbox::Bwrap { program: None },
            ..self.config(agent, command)
        }
    }

    pub(crate) fn runner(&self, config: RunnerConfig) -> ProcessAgentRunner {
        ProcessAgentRunner::new(config).expect("the test config is valid")
    }

    pub(crate) fn request(&self, agent: Agent) -> AgentRequest {
        AgentRequest {
            agent,
            task: TaskId(7),
            job: JobId(42),
            attempt: 2,
            work_item: WorkItemId::parse("ET-001").expect("valid id"),
            stage: match agent {
                Agent::Analyst => Stage::Analysis,
                Agent::Developer => Stage::Development,
                Agent::Reviewer => Stage::Review,
            },
            repo: RepoSlug::new("acme/enduro-trails").expect("valid slug"),
            branch: BranchName::new("feature/ET-001-trail-map").expect("valid branch"),
            base_branch: BranchName::new("main").expect("valid branch"),
            title: "Add a trail map".to_owned(),
            description: "Show the trails on a map.".to_owned(),
            analysis: None,
            feedback: None,
            worktree: self.worktree(),
            output_dir: self.output_dir(),
            analysis_file: None,
            mounts: Vec::new(),
        }
    }
}

/// Runs `config`'s developer to its end; returns the outcome and the log.
pub(crate) async fn run_developer(
    fixture: &Fixture,
    config: RunnerConfig,
) -> (orch_core::ports::AgentOutcome, String) {
    use orch_core::ports::AgentRunner as _;
    let runner = fixture.runner(config);
    let agent = runner
        .start(fixture.request(Agent::Developer))
        .await
        .expect("the agent starts");
    let outcome = agent.wait().await;
    let log = std::fs::read_to_string(fixture.log_file(Agent::Developer)).unwrap_or_default();
    (outcome, log)
}

/// Whether `pid` runs (a zombie has ended and only waits to be reaped).
pub(crate) fn is_running(pid: u32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    let state = stat
        .rfind(')')
        .and_then(|close| stat[close + 1..].split_whitespace().next());
    !matches!(state, Some("Z") | Some("X") | None)
}

/// Polls `condition` until it holds or `CONDITION_TIMEOUT` passes; returns whether it held.
pub(crate) async fn eventually(mut condition: impl FnMut() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + CONDITION_TIMEOUT;
    while tokio::time::Instant::now() < deadline {
        if condition() {
            return true;
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
    condition()
}

/// Polls until `path` holds a pid and returns it.
pub(crate) async fn read_pid_file(path: &Path) -> u32 {
    let mut pid = None;
    let found = eventually(|| {
        pid = std::fs::read_to_string(path)
            .ok()
            .and_then(|text| text.trim().parse().ok());
        pid.is_some()
    })
    .await;
    assert!(found, "{} was not written", path.display());
    pid.expect("found above")
}

/// Runs `future` and returns its output with how long it took.
pub(crate) async fn timed<T>(future: impl Future<Output = T>) -> (T, Duration) {
    let started = std::time::Instant::now();
    let output = future.await;
    (output, started.elapsed())
}

/// Slow tests run only when `RUN_SLOW_TESTS` is set.
pub(crate) fn slow_tests_enabled() -> bool {
    std::env::var_os("RUN_SLOW_TESTS").is_some()
}
