//! `orch demo`: the whole pipeline offline in a `Sandbox` — a person played by the demo, one
//! analysis rejected, one lost CI-status webhook recovered by the reconciler — with a line per
//! stage change as it happens and a summary table at the end.

use std::io::Write;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use orch_core::domain::{Stage, Task};
use orch_core::orchestrator::Handled;
use orch_core::reconciler::PassReport;

use crate::runtime::Observer;
use crate::sandbox::{self, Person, Sandbox, SandboxError, SandboxSetup, Verdict};

/// Where the demo writes its lines.
pub type Output = Arc<Mutex<dyn Write + Send>>;

/// `orch demo [--items N] [--keep DIR] [--board]`.
#[derive(Debug, Clone)]
pub struct DemoOptions {
    pub items: u32,
    pub keep: Option<PathBuf>,
    /// Keep the simulators and the daemon (its board at `/`) running after the items end,
    /// with an admin token to log in with, until `until` completes.
    pub board: bool,
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
    /// `merged`, or where the task was when the demo ended.
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

/// How long the demo waits for every item before it gives up.
const DEMO_DEADLINE: Duration = Duration::from_secs(120);

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
    Straight,
    /// The person rejects the analysis once, with a comment.
    RejectedOnce,
    /// Gitea's CI-status webhook is lost; F-1 recovers it.
    LostCiStatus,
}

impl Plot {
    fn of(index: u32) -> Plot {
        match index % 3 {
            0 => Plot::Straight,
            1 => Plot::RejectedOnce,
            _ => Plot::LostCiStatus,
        }
    }

    fn story(self) -> &'static str {
        match self {
            Plot::Straight => "straight through",
            Plot::RejectedOnce => "the person rejects the analysis once",
            Plot::LostCiStatus => "its CI-status webhook is lost; the reconciler recovers it",
        }
    }
}

/// Runs the demo, writing progress to `out`. With `options.board`, the daemon and the
/// simulators keep running after the items end until `until` completes (the caller's Ctrl-C).
pub async fn run(
    options: DemoOptions,
    out: Output,
    until: impl std::future::Future<Output = ()>,
) -> Result<DemoSummary, SandboxError> {
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
    let printer = Arc::new(Printer {
        out: out.clone(),
        started,
    });
    printer.say(&format!(
        "orch demo: {} item(s) · Plane, Gitea and Telegram simulated on loopback · real git and SQLite in {}",
        options.items,
        dir.display()
    ))?;
    let orch_binary = std::env::current_exe()
        .map_err(|err| SandboxError::Setup(format!("cannot find the orch binary: {err}")))?;
    let mut sandbox = Sandbox::new(SandboxSetup {
        dir: &dir,
        orch_binary: &orch_binary,
        agent_script: r#"{"default": {}, "items": {}}"#,
        reconcile_interval_s: 1,
    })
    .await?;
    match orch_agent::check_sandbox(&sandbox.config.agents.sandbox()).await {
        Ok(bwrap) => printer.say(&format!("agents run in a bubblewrap sandbox ({bwrap})"))?,
        Err(err) => {
            // The demo shows the pipeline; on a machine without bubblewrap it runs the scripted
            // agent unsandboxed rather than not at all (`orch serve` refuses instead).
            printer.say(&format!("agents run WITHOUT a sandbox: {err}"))?;
            sandbox.set_agent_sandbox("none")?;
        }
    }
    let admin_token = if options.board {
        let token = new_admin_token()?;
        sandbox.set_admin_token(&token)?;
        Some(token)
    } else {
        None
    };
    let daemon = sandbox.start_daemon(Some(printer.clone())).await?;
    printer.say(&format!(
        "orch serves on http://{} (webhooks, /metrics; /queue over its admin socket {})",
        daemon.addr(),
        crate::wiring::admin_socket_path(&sandbox.config.storage.db_path).display()
    ))?;

    let mut items = Vec::new();
    let mut plots = Vec::new();
    for index in 0..options.items {
        let title = TITLES[index as usize % TITLES.len()];
        let (item, work_item) = sandbox.create_item(title).await?;
        let plot = Plot::of(index);
        printer.say(&format!("{work_item}  {title:<33} {}", plot.story()))?;
        if plot == Plot::LostCiStatus {
            sandbox
                .gitea
                .drop_status_deliveries_for_branch_prefix(&format!("feature/{work_item}-"));
        }
        items.push(item);
        plots.push((work_item, title, plot));
    }
    for item in &items {
        sandbox.move_item(item, "In Progress").await?;
    }

    let mut person = DemoPerson {
        items: items.clone(),
        plots: plots.iter().map(|(_, _, plot)| *plot).collect(),
        rejected: Vec::new(),
    };
    let store = daemon.store();
    let mut on_act = |task: &Task, verdict: &Verdict| {
        let what = match verdict {
            Verdict::Approve => format!("approves the {}", task.stage),
            Verdict::Reject { .. } => format!("rejects the {} with a comment", task.stage),
            Verdict::Wait => return,
        };
        printer.line(&task.work_item.to_string(), "person", &what);
    };
    let mut until = std::pin::pin!(until);
    let played = sandbox::play_person(
        &sandbox,
        store.as_ref(),
        &items,
        &mut person,
        DEMO_DEADLINE,
        &mut on_act,
    );
    // With --board, Ctrl-C is caught from the start: before the items end it stops the demo.
    let ended = tokio::select! {
        ended = played => ended?,
        () = &mut until => {
            printer.say("stopping")?;
            daemon.shutdown().await;
            return Err(SandboxError::Setup("interrupted before the items ended".to_owned()));
        }
    };

    let mut rows = Vec::new();
    for (index, end) in ended.iter().enumerate() {
        let (work_item, title, _) = &plots[index];
        let task = end.task.as_ref();
        let result = if sandbox::merged(&sandbox, task) {
            "merged".to_owned()
        } else {
            task.map_or("never started".to_owned(), |task| {
                format!("{} / {}", task.stage, task.status)
            })
        };
        rows.push(DemoItem {
            work_item: work_item.clone(),
            title: (*title).to_owned(),
            pr: task.and_then(|task| task.pr.map(|pr| pr.get())),
            fix_rounds: task.map_or(0, |task| task.fix_rounds),
            review_rounds: task.map_or(0, |task| task.review_rounds),
            rejections: person
                .rejected
                .iter()
                .filter(|rejected| *rejected == &end.item)
                .count() as u32,
            result,
            elapsed: end.elapsed,
        });
    }
    let reconcile = orch_core::ports::Store::reconcile_stats(store.as_ref())
        .await
        .map_err(|err| SandboxError::Setup(err.to_string()))?;
    let summary = DemoSummary {
        items: rows,
        telegram_messages: sandbox.telegram.messages().len(),
        reconcile_unblocks: usize::try_from(reconcile.unblocked_total).unwrap_or(usize::MAX),
    };
    printer.say("")?;
    printer.say(&table(&summary))?;
    printer.say(&format!(
        "{} of {} merged in {:.1} s · {} Telegram message(s) · {} reconcile unblock(s)",
        summary.merged(),
        summary.items.len(),
        started.elapsed().as_secs_f64(),
        summary.telegram_messages,
        summary.reconcile_unblocks
    ))?;
    if let Some(token) = &admin_token {
        printer.say(&format!(
            "board: http://{}/ · log in with the admin token {token} · Ctrl-C stops the demo",
            daemon.addr()
        ))?;
        until.await;
        printer.say("stopping")?;
    }
    daemon.shutdown().await;
    if options.keep.is_some() {
        printer.say(&format!(
            "kept in {}: orch.toml, data/orch.db, data/logs, data/repos",
            dir.display()
        ))?;
    }
    Ok(summary)
}

/// A fresh admin token for the board: 128 random bits from the kernel, in hex.
fn new_admin_token() -> Result<String, SandboxError> {
    use std::io::Read as _;
    let mut bytes = [0u8; 16];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut random| random.read_exact(&mut bytes))
        .map_err(|err| SandboxError::Setup(format!("cannot read /dev/urandom: {err}")))?;
    Ok(bytes.iter().map(|byte| format!("{byte:02x}")).collect())
}

/// Approves every gate but rejects the analysis of a `RejectedOnce` item once.
struct DemoPerson {
    items: Vec<String>,
    plots: Vec<Plot>,
    rejected: Vec<String>,
}

impl Person for DemoPerson {
    fn verdict(&mut self, item: &str, task: &Task) -> Verdict {
        let plot = self
            .items
            .iter()
            .position(|known| known == item)
            .map(|index| self.plots[index]);
        if plot == Some(Plot::RejectedOnce)
            && task.stage == Stage::Analysis
            && !self.rejected.iter().any(|done| done == item)
        {
            self.rejected.push(item.to_owned());
            return Verdict::Reject {
                comment: "Please also cover what happens when the session has expired.".to_owned(),
            };
        }
        Verdict::Approve
    }
}

fn table(summary: &DemoSummary) -> String {
    let mut lines = vec![format!(
        "{:<8} {:<33} {:>4} {:>9}  {:<22} {:>6}",
        "item", "title", "PR", "rounds", "result", "time"
    )];
    for item in &summary.items {
        let rounds = format!(
            "{}r {}f {}c",
            item.rejections, item.fix_rounds, item.review_rounds
        );
        lines.push(format!(
            "{:<8} {:<33} {:>4} {:>9}  {:<22} {:>5.1}s",
            item.work_item,
            item.title,
            item.pr.map_or("-".to_owned(), |pr| format!("#{pr}")),
            rounds,
            item.result,
            item.elapsed.as_secs_f64()
        ));
    }
    lines.push(
        "rounds: r = analyses the person rejected, f = CI fix rounds, c = reviewer change requests"
            .to_owned(),
    );
    lines.join("\n")
}

/// Prints one line per stage change as it happens.
struct Printer {
    out: Output,
    started: Instant,
}

impl Printer {
    fn say(&self, text: &str) -> std::io::Result<()> {
        let mut out = self
            .out
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        writeln!(out, "{text}")?;
        out.flush()
    }

    fn line(&self, work_item: &str, what: &str, note: &str) {
        let text = format!(
            "{:>6.1}s  {work_item:<7} {what:<12} {note}",
            self.started.elapsed().as_secs_f64()
        );
        // A closed stdout must not stop the pipeline; the table reports the outcome anyway.
        let _ = self.say(&text);
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
            let note = format!(
                "the reconciler unblocked it (via {})",
                unblocked.via.as_str()
            );
            self.line(
                &unblocked.work_item.to_string(),
                unblocked.stage.as_str(),
                &note,
            );
        }
    }
}
