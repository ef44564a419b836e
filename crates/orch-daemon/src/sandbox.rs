//! `Sandbox`: orch wired to the loopback simulators in one directory — what `orch demo` and
//! the end-to-end tests run. Plane, Gitea (with git hosting and a CI) and Telegram are
//! `orch_sim` servers; git and SQLite are real; the agents are the scripted agent.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::net::TcpListener;

use orch_core::domain::{JobStatus, Stage, Task, TaskStatus};
use orch_core::ids::IssueId;
use orch_core::ports::Store;
use orch_sim::gitea::GiteaSim;
use orch_sim::plane::PlaneSim;
use orch_sim::telegram::TelegramSim;

use crate::config::{self, Config};
use crate::runtime::{Observer, RuntimeSettings};
use crate::wiring::{Daemon, DaemonOptions, RunError};

/// The Plane webhook secret the sandbox configures.
pub const PLANE_SECRET: &str = "sandbox-plane-webhook-secret";
/// The Gitea webhook secret the sandbox configures.
pub const GITEA_SECRET: &str = "sandbox-gitea-webhook-secret";
pub const TELEGRAM_TOKEN: &str = "123456:sandbox-bot-token";
pub const TELEGRAM_CHAT: &str = "4242";
pub const REPO: &str = "acme/demo-app";
/// The `[server]` line of the written config that the admin token is added after.
const SERVER_LISTEN: &str = "listen = \"127.0.0.1:0\"";

/// Why a sandbox could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    #[error("sandbox: {0}")]
    Setup(String),
    #[error("sandbox: the config the sandbox wrote is invalid: {0}")]
    Config(String),
    #[error(transparent)]
    Daemon(#[from] RunError),
    #[error("sandbox: {0}")]
    Io(#[from] std::io::Error),
}

fn setup(err: impl std::fmt::Display) -> SandboxError {
    SandboxError::Setup(err.to_string())
}

/// The simulators and orch's config in one directory.
pub struct Sandbox {
    pub dir: PathBuf,
    pub plane: PlaneSim,
    /// The Plane project's id.
    pub project: String,
    pub gitea: GiteaSim,
    pub telegram: TelegramSim,
    pub config_path: PathBuf,
    pub config: Config,
}

/// What the sandbox needs to know.
pub struct SandboxSetup<'a> {
    pub dir: &'a Path,
    /// The program that runs `scripted-agent` (the `orch` binary).
    pub orch_binary: &'a Path,
    /// The scripted agent's script (JSON, see `orch_sim::agent::Script`).
    pub agent_script: &'a str,
    /// Seconds between reconcile passes and the grace of every stage.
    pub reconcile_interval_s: u32,
}

impl Sandbox {
    /// Starts the simulators, creates the repository and the Plane project, and writes
    /// prompts, the agent script and `orch.toml` into `setup.dir`.
    pub async fn new(setup_: SandboxSetup<'_>) -> Result<Sandbox, SandboxError> {
        let dir = setup_.dir.to_path_buf();
        std::fs::create_dir_all(&dir)?;
        let plane = PlaneSim::start().await?;
        plane.set_rate_limit(100_000, Duration::from_secs(60));
        let project = plane.add_project("ET");
        let gitea = GiteaSim::start().await?;
        let (owner, name) = REPO.split_once('/').expect("REPO is owner/name");
        gitea.create_repo(owner, name).await.map_err(setup)?;
        gitea.set_ci_delay(Duration::from_millis(150));
        let telegram = TelegramSim::start(TELEGRAM_TOKEN, TELEGRAM_CHAT).await?;
        let config_path = write_config(&setup_, &plane, &project, &gitea, &telegram)?;
        let config = config::load(&config_path, &BTreeMap::new())
            .map_err(|errors| SandboxError::Config(errors.to_string()))?;
        Ok(Sandbox {
            dir,
            plane,
            project,
            gitea,
            telegram,
            config_path,
            config,
        })
    }

    /// Starts orch in-process on a loopback port and points the simulators' webhooks at it.
    pub async fn start_daemon(
        &self,
        observer: Option<Arc<dyn Observer>>,
    ) -> Result<Daemon, SandboxError> {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
        let options = DaemonOptions {
            listener: Some(listener),
            observer,
            tune: Some(Box::new(|settings: &mut RuntimeSettings| {
                settings.sweep_every = Duration::from_millis(200);
                settings.heartbeat_every = Duration::from_secs(1);
                settings.lease = Duration::from_secs(10);
            })),
            ports: None,
        };
        let daemon = Daemon::start(&self.config, options).await?;
        self.point_webhooks_at(&format!("http://{}", daemon.addr()));
        Ok(daemon)
    }

    /// Sets `agents.sandbox` (`"bwrap"` or `"none"`) in the written config and reloads it.
    pub fn set_agent_sandbox(&mut self, mode: &str) -> Result<(), SandboxError> {
        self.rewrite_config(|line| {
            line.starts_with("sandbox = ")
                .then(|| format!("sandbox = {mode:?}"))
        })
    }

    /// Sets `server.admin_token` in the written config and reloads it: the board and the
    /// admin API then answer a person who gives it (before the daemon starts).
    pub fn set_admin_token(&mut self, token: &str) -> Result<(), SandboxError> {
        self.rewrite_config(|line| {
            (line == SERVER_LISTEN).then(|| format!("{SERVER_LISTEN}\nadmin_token = {token:?}"))
        })
    }

    /// Replaces each line of the written config for which `edit` gives a text, and reloads it.
    fn rewrite_config(
        &mut self,
        edit: impl Fn(&str) -> Option<String>,
    ) -> Result<(), SandboxError> {
        let text = std::fs::read_to_string(&self.config_path)?;
        let mut rewritten = String::with_capacity(text.len());
        for line in text.lines() {
            match edit(line) {
                Some(replacement) => rewritten.push_str(&replacement),
                None => rewritten.push_str(line),
            }
            rewritten.push('\n');
        }
        std::fs::write(&self.config_path, rewritten)?;
        self.config = config::load(&self.config_path, &BTreeMap::new())
            .map_err(|errors| SandboxError::Config(errors.to_string()))?;
        Ok(())
    }

    /// Points Plane's and Gitea's webhooks at `base` (`http://127.0.0.1:PORT`).
    pub fn point_webhooks_at(&self, base: &str) {
        self.plane
            .set_webhook(&format!("{base}/webhooks/plane"), PLANE_SECRET);
        self.gitea
            .set_webhook(&format!("{base}/webhooks/gitea"), GITEA_SECRET);
    }

    /// Creates a work item in Backlog; returns its Plane id and work item id (`ET-001`).
    pub async fn create_item(&self, title: &str) -> Result<(String, String), SandboxError> {
        let item = self
            .plane
            .create_item(&self.project, title, "Backlog")
            .await
            .map_err(setup)?;
        Ok((item.id, format!("ET-{:03}", item.sequence_id)))
    }

    /// A person moves the item (its webhook is sent, unless a fault drops it).
    pub async fn move_item(&self, item: &str, state: &str) -> Result<(), SandboxError> {
        self.plane.move_item(item, state).await.map_err(setup)
    }

    /// orch's task for a Plane item, read from the database.
    pub async fn task(&self, store: &dyn Store, item: &str) -> Result<Option<Task>, SandboxError> {
        let issue = IssueId::new(item).map_err(setup)?;
        store.task_by_issue(&issue).await.map_err(setup)
    }
}

/// What the sandbox's person does at a gate.
pub trait Person {
    /// Called once per open gate of `item`; `Some((state, comment))` answers it.
    fn verdict(&mut self, item: &str, task: &Task) -> Verdict;
}

/// A person's answer at a gate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Approve,
    Reject {
        comment: String,
    },
    /// Leave the gate open.
    Wait,
}

/// A person who approves everything.
pub struct Approver;

impl Person for Approver {
    fn verdict(&mut self, _item: &str, _task: &Task) -> Verdict {
        Verdict::Approve
    }
}

/// How a watched item ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ended {
    pub item: String,
    pub task: Option<Task>,
    pub elapsed: Duration,
}

/// Plays the person until every item's task has ended (done, cancelled or blocked) or the
/// deadline passes: at each open gate (the task awaits a verdict and orch has moved the item
/// to In Review) it asks `person`, comments and moves the item. `on_act` hears each act.
pub async fn play_person(
    sandbox: &Sandbox,
    store: &dyn Store,
    items: &[String],
    person: &mut dyn Person,
    deadline: Duration,
    on_act: &mut dyn FnMut(&Task, &Verdict),
) -> Result<Vec<Ended>, SandboxError> {
    let started = Instant::now();
    let mut acted: BTreeSet<(String, u64)> = BTreeSet::new();
    let mut ended: BTreeMap<String, Ended> = BTreeMap::new();
    while ended.len() < items.len() && started.elapsed() < deadline {
        for item in items {
            if ended.contains_key(item) {
                continue;
            }
            let Some(task) = sandbox.task(store, item).await? else {
                continue;
            };
            if task.stage.is_terminal() || task.status.is_blocked() {
                ended.insert(
                    item.clone(),
                    Ended {
                        item: item.clone(),
                        task: Some(task),
                        elapsed: started.elapsed(),
                    },
                );
                continue;
            }
            let in_review = sandbox
                .plane
                .item(item)
                .is_some_and(|sim_item| sim_item.state_name == "In Review");
            if task.status != TaskStatus::AwaitingVerdict
                || !in_review
                || acted.contains(&(item.clone(), task.version))
            {
                continue;
            }
            let verdict = person.verdict(item, &task);
            match &verdict {
                Verdict::Approve => sandbox.move_item(item, "Approved").await?,
                Verdict::Reject { comment } => {
                    sandbox
                        .plane
                        .add_comment(item, comment)
                        .await
                        .map_err(setup)?;
                    sandbox.move_item(item, "Rejected").await?;
                }
                Verdict::Wait => continue,
            }
            acted.insert((item.clone(), task.version));
            on_act(&task, &verdict);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // A task's stage turns terminal before its last outside effects run (the move to Done,
    // the notification): wait for them, so whoever reads Plane, Gitea or Telegram next sees
    // the whole run.
    settle(store, &ended, started, deadline).await?;
    let mut result = Vec::new();
    for item in items {
        match ended.remove(item) {
            Some(done) => result.push(done),
            None => result.push(Ended {
                item: item.clone(),
                task: sandbox.task(store, item).await?,
                elapsed: started.elapsed(),
            }),
        }
    }
    Ok(result)
}

/// Waits until no job of an ended task is queued or running, or `deadline` (counted from
/// `started`) passes.
async fn settle(
    store: &dyn Store,
    ended: &BTreeMap<String, Ended>,
    started: Instant,
    deadline: Duration,
) -> Result<(), SandboxError> {
    let finished = ended
        .values()
        .filter_map(|end| end.task.as_ref())
        .filter(|task| task.stage.is_terminal());
    for task in finished {
        loop {
            let jobs = store
                .jobs_of_task(task.id)
                .await
                .map_err(|err| SandboxError::Setup(err.to_string()))?;
            let pending = jobs
                .iter()
                .any(|job| matches!(job.status, JobStatus::Queued | JobStatus::Running));
            if !pending || started.elapsed() >= deadline {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    Ok(())
}

/// Whether the task ended merged: stage done, and Gitea says its pull request is merged.
pub fn merged(sandbox: &Sandbox, task: Option<&Task>) -> bool {
    let pulls = sandbox.gitea.pulls(REPO);
    task.is_some_and(|task| {
        task.stage == Stage::Done
            && task.pr.is_some_and(|pr| {
                pulls
                    .iter()
                    .any(|pull| pull.number == pr.get() && pull.merged)
            })
    })
}

/// Writes the prompts, the agent script and `orch.toml`.
fn write_config(
    setup_: &SandboxSetup<'_>,
    plane: &PlaneSim,
    project: &str,
    gitea: &GiteaSim,
    telegram: &TelegramSim,
) -> Result<PathBuf, SandboxError> {
    let dir = setup_.dir;
    let prompts = dir.join("prompts");
    std::fs::create_dir_all(&prompts)?;
    for role in ["analyst", "developer", "reviewer"] {
        std::fs::write(
            prompts.join(format!("{role}.md")),
            format!(
                "You are the {role} for {{{{task}}}} in {{{{repo}}}}: {{{{title}}}}.\n\n{{{{description}}}}\n\nFeedback: {{{{feedback}}}}\n"
            ),
        )?;
    }
    let script = dir.join("agent-script.json");
    std::fs::write(&script, setup_.agent_script)?;
    let agent_state = dir.join("agent-state");
    std::fs::create_dir_all(&agent_state)?;
    let agent = |role: &str| {
        format!(
            "[agents.{role}]\ncommand = [{exe:?}, \"scripted-agent\"]\nprompt = \"prompts/{role}.md\"\ntimeout_s = 120\nenv = {{ SIM_AGENT_SCRIPT = {script:?}, SIM_AGENT_STATE_DIR = {state:?} }}\nread_only_paths = [{script:?}]\nwritable_paths = [{state:?}]\n",
            exe = setup_.orch_binary.display().to_string(),
            script = script.display().to_string(),
            state = agent_state.display().to_string(),
        )
    };
    let data = dir.join("data");
    let grace = setup_.reconcile_interval_s;
    let text = format!(
        r#"# Written by orch's sandbox (`orch demo`): every outside system is a simulator on loopback.
[server]
{listen}

[storage]
db_path = {db:?}

[workspace]
repos_dir = {repos:?}

[plane]
base_url = {plane_url:?}
workspace_slug = {slug:?}
api_token = {plane_token:?}
webhook_secrets = [{plane_secret:?}]
rate_limit_per_min = 100000

[gitea]
base_url = {gitea_url:?}
token = {gitea_token:?}
webhook_secrets = [{gitea_secret:?}]
merge_style = "merge"

[telegram]
bot_token = {telegram_token:?}
chat_id = {telegram_chat:?}
api_base = {telegram_base:?}

[worker]
concurrency = 2
per_repo_concurrency = 2
stall_timeout_s = 60
max_attempts = 3
max_fix_rounds = 3

[reconcile]
interval_s = {grace}
grace_s = {{ analysis = {grace}, development = {grace}, review = {grace} }}

[agents]
sandbox = "bwrap"

{analyst}
{developer}
{reviewer}
[[projects]]
key = "demo"
plane_project_id = {project:?}
repo = {repo:?}
work_item_prefix = "ET"
base_branch = "main"

[projects.states]
in_progress = "In Progress"
approved = "Approved"
rejected = "Rejected"
awaiting = "In Review"
done = "Done"
cancelled = "Cancelled"
"#,
        listen = SERVER_LISTEN,
        db = data.join("orch.db").display().to_string(),
        repos = data.join("repos").display().to_string(),
        plane_url = plane.base_url(),
        slug = plane.workspace_slug(),
        plane_token = plane.api_token(),
        plane_secret = PLANE_SECRET,
        gitea_url = gitea.base_url(),
        gitea_token = gitea.token(),
        gitea_secret = GITEA_SECRET,
        telegram_token = TELEGRAM_TOKEN,
        telegram_chat = TELEGRAM_CHAT,
        telegram_base = telegram.api_base(),
        analyst = agent("analyst"),
        developer = agent("developer"),
        reviewer = agent("reviewer"),
        repo = REPO,
    );
    let path = dir.join("orch.toml");
    std::fs::write(&path, text)?;
    Ok(path)
}
