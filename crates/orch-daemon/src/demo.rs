//! `orch demo`: the whole pipeline offline — Plane, Gitea (with git hosting and CI) and
//! Telegram simulators on loopback, real git, real SQLite, the scripted agent — with a person
//! played by the demo itself, one lost webhook recovered by the reconciler, and a summary table.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::net::TcpListener;

use orch_core::domain::{Stage, TaskStatus};
use orch_core::orchestrator::Handled;
use orch_core::ports::Store;
use orch_core::reconciler::PassReport;
use orch_sim::gitea::GiteaSim;
use orch_sim::plane::PlaneSim;
use orch_sim::telegram::TelegramSim;

use crate::config;
use crate::runtime::Observer;
use crate::wiring::{Daemon, DaemonOptions, RunError};

/// Where the demo writes its lines.
pub type Output = Arc<Mutex<dyn Write + Send>>;

/// `orch demo [--items N] [--keep DIR]`.
#[derive(Debug, Clone)]
pub struct DemoOptions {
    pub items: u32,
    pub keep: Option<PathBuf>,
}

/// One row of the final table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DemoItem {
    pub work_item: String,
    pub title: String,
    pub pr: Option<u64>,
    pub fix_rounds: u32,
    pub review_rounds: u32,
    pub rejections: u32,
    /// `merged`, or what the task was doing when the demo gave up.
    pub result: String,
    pub elapsed: Duration,
}

/// What the demo did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DemoSummary {
    pub items: Vec<DemoItem>,
    pub telegram_messages: usize,
    pub reconcile_unblocks: usize,
}

impl DemoSummary {
    pub fn merged(&self) -> usize {
        self.items
            .iter()
            .filter(|item| item.result == "merged")
            .count()
    }

    pub fn all_merged(&self) -> bool {
        self.merged() == self.items.len()
    }
}

/// Why the demo could not run.
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error("demo: {0}")]
    Setup(String),
    #[error("demo: the config the demo wrote is invalid: {0}")]
    Config(String),
    #[error(transparent)]
    Daemon(#[from] RunError),
    #[error("demo: cannot write the output: {0}")]
    Output(#[from] std::io::Error),
}

/// How long the demo waits for every item before it gives up.
const DEMO_DEADLINE: Duration = Duration::from_secs(120);
/// How often the demo's person looks at the board.
const PERSON_LOOKS_EVERY: Duration = Duration::from_millis(50);

const PLANE_SECRET: &str = "demo-plane-webhook-secret";
const GITEA_SECRET: &str = "demo-gitea-webhook-secret";
const TELEGRAM_TOKEN: &str = "123456:demo-bot-token";
const TELEGRAM_CHAT: &str = "4242";
const REPO_OWNER: &str = "acme";
const REPO_NAME: &str = "demo-app";

const TITLES: [&str; 6] = [
    "Fix login redirect loop",
    "Add dark mode toggle",
    "Rate-limit the export endpoint",
    "Show build number in footer",
    "Retry failed webhook deliveries",
    "Translate the settings page",
];

/// The role each demo item plays.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Plot {
    /// Straight through.
    Straight,
    /// The person rejects the analysis once, with a comment.
    RejectedOnce,
    /// Gitea's CI-status webhook is lost; F-1 recovers it.
    LostCiStatus,
}

fn plot(index: u32) -> Plot {
    match index % 3 {
        0 => Plot::Straight,
        1 => Plot::RejectedOnce,
        _ => Plot::LostCiStatus,
    }
}

/// Runs the demo, writing progress to `out`.
pub async fn run(options: DemoOptions, out: Output) -> Result<DemoSummary, DemoError> {
    let started = Instant::now();
    let (dir, _temp) = match &options.keep {
        Some(keep) => {
            std::fs::create_dir_all(keep)?;
            (keep.canonicalize()?, None)
        }
        None => {
            let temp = tempfile::Builder::new().prefix("orch-demo-").tempdir()?;
            (temp.path().to_path_buf(), Some(temp))
        }
    };
    let say = |line: String| -> std::io::Result<()> {
        let mut out = out
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        writeln!(out, "{line}")?;
        out.flush()
    };
    say(format!(
        "orch demo: {} item(s); simulators on loopback, real git and SQLite in {}",
        options.items,
        dir.display()
    ))?;

    // The outside world.
    let plane = PlaneSim::start().await?;
    plane.set_rate_limit(100_000, Duration::from_secs(60));
    let project = plane.add_project("ET");
    let gitea = GiteaSim::start().await?;
    gitea
        .create_repo(REPO_OWNER, REPO_NAME)
        .await
        .map_err(|err| DemoError::Setup(err.to_string()))?;
    gitea.set_ci_delay(Duration::from_millis(150));
    let telegram = TelegramSim::start(TELEGRAM_TOKEN, TELEGRAM_CHAT).await?;

    // orch's config, as a user would write it.
    let config_path = write_config(&dir, &plane, &project, &gitea, &telegram)?;
    let loaded = config::load(&config_path, &BTreeMap::new())
        .map_err(|errors| DemoError::Config(errors.to_string()))?;

    let printer = Arc::new(Printer {
        out: out.clone(),
        started,
    });
    let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
    let options_for_daemon = DaemonOptions {
        listener: Some(listener),
        observer: Some(printer.clone()),
        tune: Some(Box::new(|settings| {
            settings.sweep_every = Duration::from_millis(200);
            settings.heartbeat_every = Duration::from_secs(2);
        })),
        ports: None,
    };
    let daemon = Daemon::start(&loaded, options_for_daemon).await?;
    let addr = daemon.addr();
    plane.set_webhook(&format!("http://{addr}/webhooks/plane"), PLANE_SECRET);
    gitea.set_webhook(&format!("http://{addr}/webhooks/gitea"), GITEA_SECRET);
    say(format!(
        "orch is serving on http://{addr} (webhooks, /queue, /metrics)"
    ))?;

    // The board: every item starts in Backlog, then a person moves it to In Progress.
    let mut items = Vec::new();
    for index in 0..options.items {
        let title = TITLES[index as usize % TITLES.len()];
        let item = plane
            .create_item(&project, title, "Backlog")
            .await
            .map_err(|err| DemoError::Setup(err.to_string()))?;
        let work_item = format!("ET-{:03}", item.sequence_id);
        let story = match plot(index) {
            Plot::Straight => "straight through",
            Plot::RejectedOnce => "the analysis is rejected once",
            Plot::LostCiStatus => "its CI-status webhook is lost; the reconciler recovers it",
        };
        say(format!("{work_item}  {title:<34} {story}"))?;
        if plot(index) == Plot::LostCiStatus {
            gitea.drop_status_deliveries_for_branch_prefix(&format!("feature/{work_item}-"));
        }
        items.push(Tracked {
            id: item.id,
            work_item,
            title: title.to_owned(),
            plot: plot(index),
            rejections: 0,
        });
    }
    let start_times: Vec<Instant> = {
        let mut times = Vec::new();
        for item in &items {
            plane
                .move_item(&item.id, "In Progress")
                .await
                .map_err(|err| DemoError::Setup(err.to_string()))?;
            times.push(Instant::now());
        }
        times
    };

    // The person: approves every gate, rejects one analysis once.
    let store = daemon.store();
    let mut acted: BTreeSet<(String, u64)> = BTreeSet::new();
    let mut finished: BTreeMap<String, Duration> = BTreeMap::new();
    let deadline = Instant::now() + DEMO_DEADLINE;
    while finished.len() < items.len() && Instant::now() < deadline {
        for (index, item) in items.iter_mut().enumerate() {
            let issue = orch_core::ids::IssueId::new(item.id.clone())
                .map_err(|err| DemoError::Setup(err.to_string()))?;
            let Some(task) = store
                .task_by_issue(&issue)
                .await
                .map_err(|err| DemoError::Setup(err.to_string()))?
            else {
                continue;
            };
            if task.stage.is_terminal() || task.status.is_blocked() {
                finished
                    .entry(item.work_item.clone())
                    .or_insert_with(|| start_times[index].elapsed());
                continue;
            }
            if task.status != TaskStatus::AwaitingVerdict
                || !acted.insert((item.work_item.clone(), task.version))
            {
                continue;
            }
            let in_review = plane
                .item(&item.id)
                .is_some_and(|sim_item| sim_item.state_name == "In Review");
            if !in_review {
                acted.remove(&(item.work_item.clone(), task.version));
                continue;
            }
            if item.plot == Plot::RejectedOnce
                && task.stage == Stage::Analysis
                && item.rejections == 0
            {
                item.rejections += 1;
                plane
                    .add_comment(
                        &item.id,
                        "Please also cover what happens when the session has expired.",
                    )
                    .await
                    .map_err(|err| DemoError::Setup(err.to_string()))?;
                plane
                    .move_item(&item.id, "Rejected")
                    .await
                    .map_err(|err| DemoError::Setup(err.to_string()))?;
                printer.line(
                    &item.work_item,
                    "person",
                    "rejects the analysis with a comment",
                );
            } else {
                plane
                    .move_item(&item.id, "Approved")
                    .await
                    .map_err(|err| DemoError::Setup(err.to_string()))?;
                printer.line(
                    &item.work_item,
                    "person",
                    &format!("approves the {}", task.stage),
                );
            }
        }
        tokio::time::sleep(PERSON_LOOKS_EVERY).await;
    }

    // The result, read back from orch's database and from Gitea itself.
    let pulls = gitea.pulls(&format!("{REPO_OWNER}/{REPO_NAME}"));
    let mut rows = Vec::new();
    for (index, item) in items.iter().enumerate() {
        let issue = orch_core::ids::IssueId::new(item.id.clone())
            .map_err(|err| DemoError::Setup(err.to_string()))?;
        let task = store
            .task_by_issue(&issue)
            .await
            .map_err(|err| DemoError::Setup(err.to_string()))?;
        let (pr, fix_rounds, review_rounds, result) = match &task {
            Some(task) => {
                let merged = task.stage == Stage::Done
                    && task.pr.is_some_and(|pr| {
                        pulls
                            .iter()
                            .any(|pull| pull.number == pr.get() && pull.merged)
                    });
                let result = if merged {
                    "merged".to_owned()
                } else {
                    format!("{} / {}", task.stage, task.status)
                };
                (
                    task.pr.map(|pr| pr.get()),
                    task.fix_rounds,
                    task.review_rounds,
                    result,
                )
            }
            None => (None, 0, 0, "never started".to_owned()),
        };
        rows.push(DemoItem {
            work_item: item.work_item.clone(),
            title: item.title.clone(),
            pr,
            fix_rounds,
            review_rounds,
            rejections: item.rejections,
            result,
            elapsed: finished
                .get(&item.work_item)
                .copied()
                .unwrap_or_else(|| start_times[index].elapsed()),
        });
    }
    let reconcile = store
        .reconcile_stats()
        .await
        .map_err(|err| DemoError::Setup(err.to_string()))?;
    daemon.shutdown().await;
    let summary = DemoSummary {
        items: rows,
        telegram_messages: telegram.messages().len(),
        reconcile_unblocks: usize::try_from(reconcile.unblocked_total).unwrap_or(usize::MAX),
    };
    say(String::new())?;
    say(table(&summary))?;
    say(format!(
        "{} of {} merged in {:.1} s · {} Telegram message(s) · {} reconcile unblock(s) · one webhook lost on purpose",
        summary.merged(),
        summary.items.len(),
        started.elapsed().as_secs_f64(),
        summary.telegram_messages,
        summary.reconcile_unblocks
    ))?;
    if options.keep.is_some() {
        say(format!(
            "kept: {} (orch.toml, data/orch.db, data/logs, data/repos)",
            dir.display()
        ))?;
    }
    Ok(summary)
}

struct Tracked {
    id: String,
    work_item: String,
    title: String,
    plot: Plot,
    rejections: u32,
}

fn table(summary: &DemoSummary) -> String {
    let mut lines = vec![format!(
        "{:<8} {:<34} {:>4} {:>12} {:<24} {:>7}",
        "item", "title", "PR", "rounds", "result", "time"
    )];
    for item in &summary.items {
        let rounds = format!(
            "{}r {}f {}c",
            item.rejections, item.fix_rounds, item.review_rounds
        );
        lines.push(format!(
            "{:<8} {:<34} {:>4} {:>12} {:<24} {:>6.1}s",
            item.work_item,
            item.title,
            item.pr.map_or("-".to_owned(), |pr| format!("#{pr}")),
            rounds,
            item.result,
            item.elapsed.as_secs_f64()
        ));
    }
    lines.push("rounds: r = analyses rejected by the person, f = CI fix rounds, c = reviewer change requests".to_owned());
    lines.join("\n")
}

/// Prints one line per stage change as it happens.
struct Printer {
    out: Output,
    started: Instant,
}

impl Printer {
    fn line(&self, work_item: &str, what: &str, note: &str) {
        let mut out = self
            .out
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let _ = writeln!(
            out,
            "{:>6.1}s  {work_item:<7} {what:<12} {note}",
            self.started.elapsed().as_secs_f64()
        );
        let _ = out.flush();
    }
}

impl Observer for Printer {
    fn transition(&self, handled: &Handled) {
        let (Some(work_item), Some(stage)) = (&handled.work_item, handled.stage) else {
            return;
        };
        self.line(&work_item.to_string(), stage.as_str(), &handled.note);
    }

    fn reconciled(&self, report: &PassReport) {
        for unblocked in &report.unblocked {
            let note = format!("reconciler unblocked it (via {})", unblocked.via.as_str());
            self.line(
                &unblocked.work_item.to_string(),
                unblocked.stage.as_str(),
                &note,
            );
        }
    }
}

/// Writes the prompts, the scripted agent's script and `orch.toml` into `dir`.
fn write_config(
    dir: &Path,
    plane: &PlaneSim,
    project: &str,
    gitea: &GiteaSim,
    telegram: &TelegramSim,
) -> Result<PathBuf, DemoError> {
    let prompts = dir.join("prompts");
    std::fs::create_dir_all(&prompts)?;
    for role in ["analyst", "developer", "reviewer"] {
        std::fs::write(
            prompts.join(format!("{role}.md")),
            format!("You are the {role} for {{{{task}}}} in {{{{repo}}}}: {{{{title}}}}.\n\n{{{{description}}}}\n\nFeedback: {{{{feedback}}}}\n"),
        )?;
    }
    let script = dir.join("agent-script.json");
    std::fs::write(&script, r#"{"default": {}, "items": {}}"#)?;
    let agent_state = dir.join("agent-state");
    std::fs::create_dir_all(&agent_state)?;
    let exe = std::env::current_exe()
        .map_err(|err| DemoError::Setup(format!("cannot find the orch binary: {err}")))?;
    let agent = |role: &str| {
        format!(
            "[agents.{role}]\ncommand = [{exe:?}, \"scripted-agent\"]\nprompt = \"prompts/{role}.md\"\ntimeout_s = 60\nenv = {{ SIM_AGENT_SCRIPT = {script:?}, SIM_AGENT_STATE_DIR = {state:?} }}\n",
            exe = exe.display().to_string(),
            script = script.display().to_string(),
            state = agent_state.display().to_string(),
        )
    };
    let data = dir.join("data");
    let text = format!(
        r#"# Written by `orch demo`: every outside system is a simulator on loopback.
[server]
listen = "127.0.0.1:0"

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
max_attempts = 3
max_fix_rounds = 3

[reconcile]
interval_s = 1
grace_s = {{ analysis = 1, development = 1, review = 1 }}

{analyst}
{developer}
{reviewer}
[[projects]]
key = "demo"
plane_project_id = {project:?}
repo = "{owner}/{name}"
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
        project = project,
        owner = REPO_OWNER,
        name = REPO_NAME,
    );
    let path = dir.join("orch.toml");
    std::fs::write(&path, text)?;
    Ok(path)
}
