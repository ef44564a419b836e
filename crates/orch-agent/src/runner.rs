//! `ProcessAgentRunner`: spawning an agent and supervising its process group.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use orch_core::domain::{Agent, ProcessRecord};
use orch_core::ids::{JobId, WorkItemId};
use orch_core::ports::{
    AgentError, AgentOutcome, AgentRequest, AgentRunner, CancelHandle, RunningAgent,
};
use tokio::fs::File;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::process::Child;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::{sleep, sleep_until, Instant};

use crate::config::{AgentSandbox, ConfigError, Role, RunnerConfig};
use crate::launch::{plan, LaunchSpec, Launched, Planned, Unit};
use crate::procfs::process_record;
use crate::prompt::PromptValues;

/// The variables taken from orch's own environment; everything else starts empty.
const INHERITED_VARIABLES: [&str; 3] = ["PATH", "HOME", "LANG"];
/// After SIGKILL, how long output is still read from pipes that something outside the group
/// may hold open.
const DRAIN_AFTER_KILL: Duration = Duration::from_millis(500);
/// While waiting for a signalled group to empty, how often to look.
const GROUP_POLL: Duration = Duration::from_millis(20);

/// Runs agents as child processes, each in a process group (or a sandbox) of its own.
#[derive(Debug)]
pub struct ProcessAgentRunner {
    pub(crate) roles: BTreeMap<Agent, Role>,
    stall_timeout: Duration,
    kill_grace: Duration,
    logs_dir: PathBuf,
    pub(crate) scratch_dir: PathBuf,
    pub(crate) homes_dir: PathBuf,
    pub(crate) sandbox: AgentSandbox,
    /// What no sandbox shows: the configured paths plus the runner's own directories.
    pub(crate) protected: Vec<PathBuf>,
    /// Added to orch's niceness for every agent.
    pub(crate) nice: u8,
}

impl ProcessAgentRunner {
    /// Validates `config` (commands, timeouts, every prompt template) and returns every
    /// problem at once.
    pub fn new(config: RunnerConfig) -> Result<ProcessAgentRunner, Vec<ConfigError>> {
        let roles = config.validate()?;
        let mut protected = config.protected_paths;
        protected.extend([
            config.logs_dir.clone(),
            config.scratch_dir.clone(),
            config.homes_dir.clone(),
        ]);
        Ok(ProcessAgentRunner {
            roles,
            stall_timeout: config.stall_timeout,
            kill_grace: config.kill_grace,
            logs_dir: config.logs_dir,
            scratch_dir: config.scratch_dir,
            homes_dir: config.homes_dir,
            sandbox: config.sandbox,
            protected,
            nice: config.nice,
        })
    }

    /// The `HOME` an agent gets: its private one in a sandbox, orch's own without.
    pub(crate) fn sandbox_home<'h>(&self, home: &'h Path) -> Option<&'h Path> {
        home_shown(&self.sandbox, home)
    }

    /// `{logs}/{work item}/{job}-{agent}.log`.
    pub fn log_path(&self, request: &AgentRequest) -> PathBuf {
        log_file(
            &self.logs_dir,
            &request.work_item,
            request.job,
            request.agent,
        )
    }
}

#[async_trait]
impl AgentRunner for ProcessAgentRunner {
    #[tracing::instrument(skip_all, fields(task = %request.task, job = %request.job, agent = %request.agent))]
    async fn start(&self, request: AgentRequest) -> Result<Box<dyn RunningAgent>, AgentError> {
        let role = self.roles.get(&request.agent).ok_or_else(|| {
            AgentError::Invalid(format!("agents.{}: not configured", request.agent))
        })?;
        // The file work and the sandbox's view in one blocking call (each `tokio::fs` step
        // would be a wait for a blocking thread of its own on a busy machine); the spawn
        // itself stays on this thread (`Planned::spawn`).
        let timeout = role.timeout;
        let start = Start {
            role: role.clone(),
            log_path: self.log_path(&request),
            request,
            scratch_dir: self.scratch_dir.clone(),
            homes_dir: self.homes_dir.clone(),
            sandbox: self.sandbox.clone(),
            protected: self.protected.clone(),
            nice: self.nice,
        };
        let Prepared { prompt, log, plan } = tokio::task::spawn_blocking(move || start.prepare())
            .await
            .map_err(|err| {
                AgentError::other(format!("preparing the agent's start failed: {err}"))
            })??;
        let launched = plan.and_then(Planned::spawn);
        let Launched {
            mut child,
            unit,
            notes,
        } = match launched {
            Ok(launched) => launched,
            Err(reason) => {
                tracing::warn!(reason = %reason, "agent could not start");
                return Ok(Box::new(NotStarted { reason }));
            }
        };
        for note in notes {
            tracing::debug!(note = %note, "the agent's sandbox leaves a path out");
        }
        let record = child.id().and_then(process_record);
        tracing::info!(pid = record.map(|record| record.pid), "agent started");

        if let Some(mut stdin) = child.stdin.take() {
            tokio::spawn(async move {
                // An agent that does not read its stdin closes the pipe early; that is fine.
                if let Err(err) = stdin.write_all(prompt.as_bytes()).await {
                    tracing::debug!(error = %err, "agent did not read its prompt from stdin");
                }
            });
        }
        let (cancel_sender, cancel_receiver) = watch::channel(false);
        let cancel_sender = Arc::new(cancel_sender);
        let cancel = CancelHandle::new({
            let cancel_sender = cancel_sender.clone();
            move || {
                cancel_sender.send_replace(true);
            }
        });
        let supervisor = Supervisor {
            unit,
            timeout,
            stall_timeout: self.stall_timeout,
            kill_grace: self.kill_grace,
            cancel: cancel_receiver,
            _cancel_sender: cancel_sender,
            log: File::from_std(log),
        };
        let outcome = tokio::spawn(supervisor.run(child));
        Ok(Box::new(RunningProcess {
            record,
            cancel,
            outcome,
        }))
    }
}

/// The files of one run, all absolute paths.
pub(crate) struct RunFiles {
    /// The directory of the files below (the sandbox shows it read-only).
    run_dir: PathBuf,
    prompt: String,
    prompt_file: PathBuf,
    description_file: PathBuf,
    feedback_file: Option<PathBuf>,
    analysis_file: Option<PathBuf>,
    worktree: PathBuf,
    output_dir: PathBuf,
}

/// What one start needs, owned, to prepare it on a blocking thread.
struct Start {
    role: Role,
    request: AgentRequest,
    log_path: PathBuf,
    scratch_dir: PathBuf,
    homes_dir: PathBuf,
    sandbox: AgentSandbox,
    protected: Vec<PathBuf>,
    nice: u8,
}

/// A start prepared: its files written, its log open, its process planned (`Err`: why it
/// cannot start).
struct Prepared {
    prompt: String,
    log: std::fs::File,
    plan: Result<Planned, String>,
}

impl Start {
    /// Writes the run's files, opens its log, makes the private home and plans the process;
    /// blocking.
    fn prepare(self) -> Result<Prepared, AgentError> {
        let Start {
            role,
            request,
            log_path,
            ..
        } = &self;
        let files = self.write_run_files().map_err(|err| {
            AgentError::other(format!("writing the agent's prompt files failed: {err}"))
        })?;
        let log = open_log(log_path).map_err(|err| {
            AgentError::other(format!("opening the agent's log file failed: {err}"))
        })?;
        let home = self
            .private_home()
            .map_err(|err| AgentError::other(format!("creating the agent's home failed: {err}")))?;
        let shown = home_shown(&self.sandbox, &home);
        let mut environment = agent_environment(role, request, &files, shown);
        // Set before the spawn, so an agent orch dies before recording is still found at boot.
        environment.insert(
            crate::reap::INSTANCE_VARIABLE.to_owned(),
            self.scratch_dir.clone().into(),
        );
        let plan = plan(LaunchSpec {
            sandbox: &self.sandbox,
            program: &role.command[0],
            args: &role.command[1..],
            command_args: &role.command[1..],
            env: environment,
            worktree: &files.worktree,
            output_dir: &files.output_dir,
            home: &home,
            run_dir: Some(&files.run_dir),
            analysis_file: files.analysis_file.as_deref(),
            worktree_mounts: &request.mounts,
            network: role.network,
            read_only_paths: &role.read_only_paths,
            writable_paths: &role.writable_paths,
            protected: &self.protected,
            nice: self.nice,
        });
        Ok(Prepared {
            prompt: files.prompt,
            log,
            plan,
        })
    }

    /// `{homes}/{work item}`: the private `HOME` of a work item's sandboxed agents, created
    /// (mode 0700) if missing. Without a sandbox it is not used.
    fn private_home(&self) -> io::Result<PathBuf> {
        let home = std::path::absolute(self.homes_dir.join(self.request.work_item.to_string()))?;
        if self.sandbox != AgentSandbox::None {
            make_private_dir(&home)?;
        }
        Ok(home)
    }

    fn write_run_files(&self) -> io::Result<RunFiles> {
        let (role, request) = (&self.role, &self.request);
        let dir = std::path::absolute(
            self.scratch_dir
                .join(request.work_item.to_string())
                .join(format!("{}-{}", request.job, request.agent)),
        )?;
        fs::create_dir_all(&dir)?;
        let work_item = request.work_item.to_string();
        let repo = request.repo.to_string();
        let feedback = request
            .feedback
            .as_deref()
            .filter(|feedback| !feedback.trim().is_empty());
        let prompt = role.template.render(&PromptValues {
            task: &work_item,
            title: &request.title,
            description: &request.description,
            feedback: feedback.unwrap_or(""),
            analysis: request.analysis.as_deref().unwrap_or(""),
            branch: request.branch.as_str(),
            base_branch: request.base_branch.as_str(),
            repo: &repo,
        });
        let prompt_file = dir.join("prompt.md");
        fs::write(&prompt_file, &prompt)?;
        let description_file = dir.join("description.md");
        fs::write(&description_file, &request.description)?;
        let feedback_file = match feedback {
            Some(feedback) => {
                let path = dir.join("feedback.md");
                fs::write(&path, feedback)?;
                Some(path)
            }
            None => None,
        };
        let analysis_file = match (request.agent, &request.analysis_file, &request.analysis) {
            (Agent::Analyst, _, _) => None,
            (_, Some(path), _) => Some(std::path::absolute(path)?),
            (_, None, Some(analysis)) => {
                let path = dir.join("analysis.md");
                fs::write(&path, analysis)?;
                Some(path)
            }
            (_, None, None) => None,
        };
        let output_dir = std::path::absolute(&request.output_dir)?;
        fs::create_dir_all(&output_dir)?;
        Ok(RunFiles {
            run_dir: dir,
            prompt,
            prompt_file,
            description_file,
            feedback_file,
            analysis_file,
            worktree: std::path::absolute(&request.worktree)?,
            output_dir,
        })
    }
}

/// The `HOME` an agent gets under `sandbox`: its private one in a sandbox, orch's own without.
fn home_shown<'h>(sandbox: &AgentSandbox, home: &'h Path) -> Option<&'h Path> {
    match sandbox {
        AgentSandbox::Bwrap { .. } => Some(home),
        AgentSandbox::None => None,
    }
}

/// Creates `dir` and its parents if missing; `dir` itself is made private (mode 0700).
pub(crate) async fn create_private_dir(dir: &Path) -> io::Result<()> {
    let dir = dir.to_path_buf();
    tokio::task::spawn_blocking(move || make_private_dir(&dir))
        .await
        .map_err(io::Error::other)?
}

/// `create_private_dir`, blocking.
fn make_private_dir(dir: &Path) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    fs::create_dir_all(dir)?;
    fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
}

/// Where the run of agent job `job` writes its output (every attempt appends):
/// `{logs_dir}/{work item}/{job}-{agent}.log`.
pub fn log_file(logs_dir: &Path, work_item: &WorkItemId, job: JobId, agent: Agent) -> PathBuf {
    logs_dir
        .join(work_item.to_string())
        .join(format!("{job}-{agent}.log"))
}

fn open_log(path: &Path) -> io::Result<std::fs::File> {
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent)?;
    }
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
}

/// The agent's whole environment (SPEC §5.4): inherited basics, the role's `env`, the
/// variables it passes through from orch's environment, the sandbox's private `HOME`, then the
/// contract's `ORCH_*` variables, later entries winning.
fn agent_environment(
    role: &Role,
    request: &AgentRequest,
    files: &RunFiles,
    home: Option<&Path>,
) -> BTreeMap<String, OsString> {
    let mut environment = base_environment(role, home);
    let mut contract = |name: &str, value: OsString| {
        environment.insert(name.to_owned(), value);
    };
    contract("ORCH_TASK", request.work_item.to_string().into());
    contract("ORCH_STAGE", request.stage.as_str().into());
    contract("ORCH_AGENT", request.agent.as_str().into());
    contract("ORCH_ATTEMPT", request.attempt.to_string().into());
    contract("ORCH_REPO", request.repo.to_string().into());
    contract("ORCH_BRANCH", request.branch.as_str().into());
    contract("ORCH_BASE_BRANCH", request.base_branch.as_str().into());
    contract("ORCH_WORKTREE", files.worktree.clone().into());
    contract("ORCH_TITLE", request.title.clone().into());
    contract(
        "ORCH_DESCRIPTION_FILE",
        files.description_file.clone().into(),
    );
    if let Some(path) = &files.analysis_file {
        contract("ORCH_ANALYSIS_FILE", path.clone().into());
    }
    if let Some(path) = &files.feedback_file {
        contract("ORCH_FEEDBACK_FILE", path.clone().into());
    }
    contract("ORCH_OUTPUT_DIR", files.output_dir.clone().into());
    contract("ORCH_PROMPT_FILE", files.prompt_file.clone().into());
    environment
}

/// Everything of the agent's environment but the contract's `ORCH_*` variables.
pub(crate) fn base_environment(role: &Role, home: Option<&Path>) -> BTreeMap<String, OsString> {
    let mut environment = BTreeMap::new();
    for name in INHERITED_VARIABLES {
        if let Some(value) = std::env::var_os(name) {
            environment.insert(name.to_owned(), value);
        }
    }
    for (name, value) in &role.env {
        environment.insert(name.clone(), OsString::from(value));
    }
    for name in &role.pass_env {
        if name.starts_with("ORCH_") {
            continue;
        }
        if let Some(value) = std::env::var_os(name) {
            environment.insert(name.clone(), value);
        }
    }
    if let Some(home) = home {
        environment.insert("HOME".to_owned(), home.as_os_str().to_owned());
    }
    environment
}

/// A started agent.
struct RunningProcess {
    record: Option<ProcessRecord>,
    cancel: CancelHandle,
    outcome: JoinHandle<AgentOutcome>,
}

#[async_trait]
impl RunningAgent for RunningProcess {
    fn process(&self) -> Option<ProcessRecord> {
        self.record
    }

    fn cancel_handle(&self) -> CancelHandle {
        self.cancel.clone()
    }

    async fn wait(self: Box<Self>) -> AgentOutcome {
        match self.outcome.await {
            Ok(outcome) => outcome,
            Err(err) => {
                tracing::error!(error = %err, "agent supervisor ended abnormally");
                AgentOutcome::Failed { code: None }
            }
        }
    }
}

/// A program that could not be spawned.
struct NotStarted {
    reason: String,
}

#[async_trait]
impl RunningAgent for NotStarted {
    fn process(&self) -> Option<ProcessRecord> {
        None
    }

    fn cancel_handle(&self) -> CancelHandle {
        CancelHandle::new(|| {})
    }

    async fn wait(self: Box<Self>) -> AgentOutcome {
        AgentOutcome::CouldNotStart {
            reason: self.reason,
        }
    }
}

/// Watches one agent: copies its output to the log, enforces the timeouts and the cancel
/// request, and ends its process group.
struct Supervisor {
    unit: Option<Unit>,
    timeout: Duration,
    stall_timeout: Duration,
    kill_grace: Duration,
    cancel: watch::Receiver<bool>,
    /// Keeps the channel open, so `cancel.changed()` never fails.
    _cancel_sender: Arc<watch::Sender<bool>>,
    log: File,
}

impl Supervisor {
    async fn run(mut self, mut child: Child) -> AgentOutcome {
        let started = Instant::now();
        let deadline = started + self.timeout;
        let mut stdout = child.stdout.take();
        let mut stderr = child.stderr.take();
        let mut stdout_buffer = vec![0u8; 8192];
        let mut stderr_buffer = vec![0u8; 8192];
        let mut last_output = started;
        let mut reason: Option<AgentOutcome> = None;
        let mut exit: Option<io::Result<ExitStatus>> = None;
        let mut terminated_at: Option<Instant> = None;
        let mut killed_at: Option<Instant> = None;

        loop {
            let pipes_closed = stdout.is_none() && stderr.is_none();
            if exit.is_some() && pipes_closed && (killed_at.is_some() || self.group_is_empty()) {
                break;
            }
            let running = exit.is_none() && reason.is_none();
            let kill_at = terminated_at.map(|at| at + self.kill_grace);
            tokio::select! {
                status = child.wait(), if exit.is_none() => {
                    exit = Some(status);
                    // The leader is gone: end what it left behind in its group.
                    if terminated_at.is_none() {
                        self.terminate();
                        terminated_at = Some(Instant::now());
                    }
                }
                read = read_some(&mut stdout, &mut stdout_buffer) => match read {
                    Ok(n_bytes) if n_bytes > 0 => {
                        self.append(&stdout_buffer[..n_bytes]).await;
                        last_output = Instant::now();
                    }
                    _ => stdout = None,
                },
                read = read_some(&mut stderr, &mut stderr_buffer) => match read {
                    Ok(n_bytes) if n_bytes > 0 => {
                        self.append(&stderr_buffer[..n_bytes]).await;
                        last_output = Instant::now();
                    }
                    _ => stderr = None,
                },
                () = sleep_until(deadline), if running => {
                    reason = Some(AgentOutcome::TimedOut);
                }
                () = sleep_until(last_output + self.stall_timeout), if running => {
                    reason = Some(AgentOutcome::Stalled);
                }
                changed = self.cancel.changed(), if running => {
                    if changed.is_ok() && *self.cancel.borrow_and_update() {
                        reason = Some(AgentOutcome::Cancelled);
                    }
                }
                () = sleep_until(kill_at.unwrap_or(deadline)), if kill_at.is_some() && killed_at.is_none() => {
                    self.kill();
                    killed_at = Some(Instant::now());
                }
                () = sleep(GROUP_POLL), if exit.is_some() && pipes_closed && killed_at.is_none() => {}
                () = sleep_until(killed_at.unwrap_or(deadline) + DRAIN_AFTER_KILL), if killed_at.is_some() => {
                    tracing::warn!("agent output still open after sigkill; stopped reading it");
                    break;
                }
            }
            if let (Some(reason), None) = (&reason, terminated_at) {
                tracing::info!(reason = %reason, "ending agent process group");
                self.terminate();
                terminated_at = Some(Instant::now());
            }
        }
        let _ = self.log.flush().await;
        let outcome = match (reason, exit) {
            (Some(reason), _) => reason,
            (None, Some(Ok(status))) if status.success() => AgentOutcome::Succeeded,
            (None, Some(Ok(status))) => AgentOutcome::Failed {
                code: status.code(),
            },
            (None, Some(Err(err))) => {
                tracing::error!(error = %err, "waiting for the agent failed");
                AgentOutcome::Failed { code: None }
            }
            (None, None) => AgentOutcome::Failed { code: None },
        };
        tracing::info!(outcome = %outcome, elapsed_ms = started.elapsed().as_millis() as u64, "agent ended");
        outcome
    }

    async fn append(&mut self, bytes: &[u8]) {
        if let Err(err) = self.log.write_all(bytes).await {
            tracing::warn!(error = %err, "writing the agent log failed");
        }
    }

    fn terminate(&self) {
        if let Some(unit) = self.unit {
            unit.terminate();
        }
    }

    fn kill(&self) {
        if let Some(unit) = self.unit {
            unit.kill();
        }
    }

    fn group_is_empty(&self) -> bool {
        self.unit.is_none_or(Unit::has_ended)
    }
}

/// Reads from `pipe`, or waits forever once it is closed.
async fn read_some(
    pipe: &mut Option<impl AsyncRead + Unpin>,
    buffer: &mut [u8],
) -> io::Result<usize> {
    match pipe {
        Some(pipe) => pipe.read(buffer).await,
        None => std::future::pending().await,
    }
}
