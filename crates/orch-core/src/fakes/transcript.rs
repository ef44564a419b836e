//! `World`'s transcript: what happened (events in, effects out) as text a test can snapshot.
//!
//! The transcript is a list of steps, each a header and indented lines. A `World` step
//! (a person's move, a delivered event, a job run) is recorded with what it changed in the
//! fakes: Plane's items and comments, Gitea's pull requests, reviews and merges, pushes and
//! worktrees, agent runs, Telegram messages, and the store's tasks and jobs. Changes a test
//! makes to the fakes directly are recorded as an "outside orch" step before the next one, so
//! nothing happens off the record.

use std::collections::{BTreeMap, BTreeSet};

use crate::config::PipelineConfig;
use crate::domain::{Action, CiState, Job, JobResult, JobStatus, StateRole, Task};
use crate::event::{Event, Origin};
use crate::fakes::FakeTracker;
use crate::fakes::World;
use crate::ids::{CommitSha, IssueId, JobId, ProjectId, RepoSlug, StateId, TaskId, WorkItemId};
use crate::orchestrator::{HandleError, Handled};
use crate::ports::{Comment, PrState, PullRequest, StateNames, Store, WorkItem};
use crate::reconciler::PassReport;
use crate::time::Timestamp;

/// The steps recorded so far, and the fakes as the last step left them.
#[derive(Debug, Default)]
pub(crate) struct Log {
    lines: Vec<String>,
    seen: Snapshot,
}

/// What the fakes hold at one moment, as far as the transcript tells it.
#[derive(Debug, Default, Clone)]
pub(crate) struct Snapshot {
    now: Option<Timestamp>,
    items: BTreeMap<IssueId, WorkItem>,
    comments: BTreeMap<IssueId, Vec<Comment>>,
    pulls: BTreeMap<u64, PullRequest>,
    statuses: BTreeMap<(RepoSlug, CommitSha), CiState>,
    reviews: Vec<String>,
    pull_comments: Vec<String>,
    merges: Vec<String>,
    pushes: Vec<(WorkItemId, CommitSha)>,
    worktrees: BTreeSet<WorkItemId>,
    agent_runs: Vec<String>,
    messages: Vec<String>,
    tasks: BTreeMap<TaskId, Task>,
    jobs: BTreeMap<JobId, Job>,
    /// State id → configured state name, for every project.
    state_names: BTreeMap<StateId, String>,
    /// Issue → work item, for items of configured projects.
    work_items: BTreeMap<IssueId, WorkItemId>,
    prefixes: BTreeMap<ProjectId, String>,
    projects: BTreeMap<ProjectId, StateNames>,
}

impl Log {
    /// Records what changed since the last step as a step of its own: what the test did to
    /// the fakes directly.
    pub(crate) fn outside(&mut self, now: Snapshot) {
        let (effects, store) = changes(&self.seen, &now, None);
        if !effects.is_empty() || !store.is_empty() {
            self.push_step("outside orch:".to_owned(), [effects, store]);
        }
        self.seen = now;
    }

    /// Takes `now` as seen, without recording what changed (the step's header says it).
    pub(crate) fn absorb(&mut self, now: Snapshot) {
        self.seen = now;
    }

    /// Records a step: `header`, `notes` about it, and what it changed in the fakes.
    /// `job` is the job the step ran: its own end is in the header.
    pub(crate) fn step(
        &mut self,
        header: String,
        notes: Vec<String>,
        now: Snapshot,
        job: Option<JobId>,
    ) {
        let (effects, store) = changes(&self.seen, &now, job);
        self.push_step(header, [effects, notes, store]);
        self.seen = now;
    }

    /// The steps recorded since the last call, one line each, details indented.
    pub(crate) fn take(&mut self) -> String {
        let mut text = std::mem::take(&mut self.lines).join("\n");
        text.push('\n');
        text
    }

    fn push_step<const N: usize>(&mut self, header: String, parts: [Vec<String>; N]) {
        self.lines.push(header);
        for line in parts.into_iter().flatten() {
            self.lines.push(format!("  {line}"));
        }
    }

    /// The work item of `task`, as the last step left the store.
    pub(crate) fn work_item_of(&self, task: TaskId) -> String {
        self.seen
            .tasks
            .get(&task)
            .map_or_else(|| format!("task {task}"), |task| task.work_item.to_string())
    }

    /// The configured name of `state`.
    pub(crate) fn state_name(&self, state: &StateId) -> String {
        self.seen.state_name(state)
    }

    /// The work item id of `item`.
    pub(crate) fn item_name(&self, item: &WorkItem) -> String {
        self.seen.item_name(item)
    }
}

impl Snapshot {
    /// Reads the fakes of `world` (never through a port: no call is counted or failed).
    pub(crate) async fn of(world: &World) -> Snapshot {
        let tasks: BTreeMap<TaskId, Task> = world
            .store
            .list_tasks(u32::MAX)
            .await
            .expect("the fake store lists tasks")
            .into_iter()
            .map(|task| (task.id, task))
            .collect();
        let mut jobs = BTreeMap::new();
        for task in tasks.keys() {
            for job in world
                .store
                .jobs_of_task(*task)
                .await
                .expect("the fake store lists jobs")
            {
                jobs.insert(job.id, job);
            }
        }
        let items: BTreeMap<IssueId, WorkItem> = world
            .tracker
            .items()
            .into_iter()
            .map(|item| (item.id.clone(), item))
            .collect();
        Snapshot {
            now: Some(world.clock_now()),
            comments: world.tracker.all_comments(),
            pulls: world
                .forge
                .pulls()
                .into_iter()
                .map(|pull| (pull.number.get(), pull))
                .collect(),
            statuses: world.forge.statuses(),
            reviews: world
                .forge
                .reviews()
                .into_iter()
                .map(|(_, pr, body)| format!("gitea: review on PR {pr}: {}", one_line(&body)))
                .collect(),
            pull_comments: world
                .forge
                .comments()
                .into_iter()
                .map(|(_, pr, body)| format!("gitea: comment on PR {pr}: {}", one_line(&body)))
                .collect(),
            merges: world
                .forge
                .merges()
                .into_iter()
                .map(|(_, pr, sha)| format!("gitea: PR {pr} merged at {}", short(&sha)))
                .collect(),
            pushes: world.workspace.pushes(),
            worktrees: world.workspace.worktrees().into_iter().collect(),
            agent_runs: world
                .agents
                .requests()
                .iter()
                .map(|request| {
                    let feedback = request
                        .feedback
                        .as_deref()
                        .map(|feedback| format!(", feedback: {}", one_line(feedback)))
                        .unwrap_or_default();
                    format!(
                        "agent: {} runs for {}, attempt {}{feedback}",
                        request.agent, request.work_item, request.attempt
                    )
                })
                .collect(),
            messages: world.messages(),
            state_names: state_names(&world.config),
            work_items: items
                .values()
                .filter_map(|item| Some((item.id.clone(), work_item(&world.config, item)?)))
                .collect(),
            prefixes: world
                .config
                .projects
                .iter()
                .map(|project| {
                    (
                        project.plane_project_id.clone(),
                        project.work_item_prefix.clone(),
                    )
                })
                .collect(),
            projects: world
                .config
                .projects
                .iter()
                .map(|project| (project.plane_project_id.clone(), project.states.clone()))
                .collect(),
            items,
            tasks,
            jobs,
        }
    }

    fn state_name(&self, state: &StateId) -> String {
        self.state_names
            .get(state)
            .cloned()
            .unwrap_or_else(|| state.to_string())
    }

    fn item_name(&self, item: &WorkItem) -> String {
        self.prefixes
            .get(&item.project)
            .and_then(|prefix| WorkItemId::new(prefix, item.sequence_id).ok())
            .map_or_else(|| item.id.to_string(), |work_item| work_item.to_string())
    }

    fn issue_name(&self, issue: &IssueId) -> String {
        self.work_items
            .get(issue)
            .map_or_else(|| issue.to_string(), ToString::to_string)
    }

    /// What a job does, in a few words, with its task's work item.
    fn job_name(&self, job: &Job) -> String {
        let task = self.tasks.get(&job.task);
        let work_item = task.map_or_else(|| job.task.to_string(), |t| t.work_item.to_string());
        let what = match &job.action {
            Action::RunAgent { agent, .. } => agent.to_string(),
            Action::PublishBranch => "publish".to_owned(),
            Action::TrackerComment { .. } => "comment in Plane".to_owned(),
            Action::TrackerState { state, .. } => {
                let name = task
                    .and_then(|task| self.role_name(&task.project, *state))
                    .unwrap_or_else(|| format!("{state:?}"));
                format!("move to {name}")
            }
            Action::ForgeReview { .. } => "review on the PR".to_owned(),
            Action::Merge { head_sha } => format!("merge at {}", short(head_sha)),
            Action::ClosePr { .. } => "close the PR".to_owned(),
            Action::Notify { .. } => "notify".to_owned(),
            Action::Cleanup => "remove the worktree".to_owned(),
        };
        format!("{work_item} {what}")
    }

    fn role_name(&self, project: &ProjectId, role: StateRole) -> Option<String> {
        self.projects
            .get(project)
            .and_then(|names| state_name_of_role(names, role))
            .cloned()
    }
}

/// How a job's run ended, for a step header.
pub(crate) fn result_text(result: &JobResult) -> String {
    match result {
        JobResult::Succeeded(_) => "succeeded".to_owned(),
        JobResult::Retry { error, .. } => format!("retries later: {error}"),
        JobResult::Failed { error } => format!("failed: {error}"),
        JobResult::Wait { error, service, .. } => format!("waits on {service}: {error}"),
        JobResult::HandBack { error } => format!("handed back: {error}"),
        JobResult::Obsolete { reason } => format!("obsolete: {reason}"),
    }
}

/// The header of a job's run.
pub(crate) fn job_header(log: &Log, job: &Job, result: &JobResult) -> String {
    format!("run {}: {}", log.seen.job_name(job), result_text(result))
}

/// What handling an event said, when it says something: a change, a refusal, an error.
pub(crate) fn handled_text(handled: &Result<Handled, HandleError>) -> String {
    match handled {
        Ok(handled) if handled.changed => format!("handled: {}", handled.note),
        Ok(handled) => format!("no change: {}", handled.note),
        Err(err) => format!("error: {err}"),
    }
}

/// An event, as the step header of its delivery from `origin`.
pub(crate) fn event_header(log: &Log, event: &Event, origin: Origin) -> String {
    let from = match origin {
        Origin::Webhook => "webhook".to_owned(),
        Origin::Worker => "worker".to_owned(),
        Origin::Reconciler(via) => format!("reconciler ({})", via.as_str()),
        Origin::Admin => "admin".to_owned(),
    };
    format!("{from}: {}", event_text(log, event))
}

/// What a reconciler pass did besides its changes: the events it replayed, its errors.
pub(crate) fn pass_notes(log: &Log, report: &PassReport) -> Vec<String> {
    let replays = report
        .replays
        .iter()
        .map(|event| format!("replays: {}", event_text(log, event)));
    let errors = report.errors.iter().map(|error| format!("error: {error}"));
    replays.chain(errors).collect()
}

/// An event, in a few words.
fn event_text(log: &Log, event: &Event) -> String {
    match event {
        Event::WorkItemMoved { item, actor } => {
            let by = actor
                .as_ref()
                .map(|actor| format!(" by {actor}"))
                .unwrap_or_default();
            format!(
                "{} moved to {}{by}",
                log.item_name(item),
                log.state_name(&item.state)
            )
        }
        Event::CommentAdded { issue, .. } => {
            format!("comment on {}", log.seen.issue_name(issue))
        }
        Event::CiStatusReported { repo, sha, state } => {
            format!("CI {} at {} in {repo}", ci_name(*state), short(sha))
        }
        Event::BranchPushed {
            branch, head_sha, ..
        } => format!("{branch} pushed at {}", short(head_sha)),
        Event::PullRequestClosed { number, merged, .. } => {
            let how = if *merged {
                "merged"
            } else {
                "closed without merge"
            };
            format!("PR {number} {how}")
        }
        Event::JobFinished { job } => format!("job {job} finished"),
        Event::ForgeObserved {
            task,
            head_sha,
            report,
        } => format!(
            "forge facts of {} at {}: {}",
            log.work_item_of(*task),
            head_sha
                .as_ref()
                .map_or_else(|| "no head".to_owned(), short),
            if report.green { "green" } else { "not green" }
        ),
        Event::ServiceDegraded {
            service,
            task,
            jobs,
            ..
        } => format!(
            "{service} is out, {jobs} job(s) of {} wait",
            log.work_item_of(*task)
        ),
        Event::RetryRequested { task } => format!("retry {}", log.work_item_of(*task)),
        Event::CancelRequested { task } => format!("cancel {}", log.work_item_of(*task)),
    }
}

/// What changed from `before` to `after`: outward effects, and the store's tasks and jobs.
/// `ran` is a job whose end the step's header tells.
fn changes(before: &Snapshot, after: &Snapshot, ran: Option<JobId>) -> (Vec<String>, Vec<String>) {
    let mut lines = Vec::new();
    if let (Some(then), Some(now)) = (before.now, after.now) {
        if now != then {
            let seconds = (now.as_millis() - then.as_millis()) / 1000;
            lines.push(format!("clock: {seconds} s later"));
        }
    }
    for (issue, item) in &after.items {
        let moved = before
            .items
            .get(issue)
            .is_some_and(|old| old.state != item.state);
        if moved {
            lines.push(format!(
                "plane: {} is in {}",
                after.item_name(item),
                after.state_name(&item.state)
            ));
        }
    }
    for (issue, comments) in &after.comments {
        let old = before.comments.get(issue).map_or(0, Vec::len);
        for comment in comments.iter().skip(old) {
            let author = if comment.external_source.as_deref() == Some("orch") {
                "orch".to_owned()
            } else {
                comment
                    .author
                    .as_ref()
                    .map_or_else(|| "someone".to_owned(), ToString::to_string)
            };
            lines.push(format!(
                "plane: {author} comments on {}: {}",
                after.issue_name(issue),
                one_line(&comment.text)
            ));
        }
    }
    for (number, pull) in &after.pulls {
        match before.pulls.get(number) {
            None => lines.push(format!(
                "gitea: PR {} opened, {} into {}",
                pull.number, pull.head_branch, pull.base_branch
            )),
            Some(old) => {
                if old.state != pull.state || old.merged != pull.merged {
                    let how = match (pull.state, pull.merged) {
                        (PrState::Closed, true) => "is merged",
                        (PrState::Closed, false) => "is closed",
                        (PrState::Open, _) => "is open again",
                    };
                    lines.push(format!("gitea: PR {} {how}", pull.number));
                }
                // A head that moved without orch's push: someone pushed.
                let pushed_by_orch = after
                    .pushes
                    .iter()
                    .skip(before.pushes.len())
                    .any(|(_, sha)| sha == &pull.head_sha);
                if old.head_sha != pull.head_sha && !pushed_by_orch {
                    lines.push(format!(
                        "gitea: PR {} head is {}",
                        pull.number,
                        short(&pull.head_sha)
                    ));
                }
            }
        }
    }
    for ((repo, sha), state) in &after.statuses {
        if before.statuses.get(&(repo.clone(), sha.clone())) != Some(state) {
            lines.push(format!(
                "gitea: CI {} at {} in {repo}",
                ci_name(*state),
                short(sha)
            ));
        }
    }
    for list in [
        (&before.reviews, &after.reviews),
        (&before.pull_comments, &after.pull_comments),
        (&before.merges, &after.merges),
    ] {
        lines.extend(list.1.iter().skip(list.0.len()).cloned());
    }
    for (work_item, sha) in after.pushes.iter().skip(before.pushes.len()) {
        lines.push(format!("git: {work_item} pushed at {}", short(sha)));
    }
    for work_item in after.worktrees.difference(&before.worktrees) {
        lines.push(format!("git: worktree of {work_item} created"));
    }
    for work_item in before.worktrees.difference(&after.worktrees) {
        lines.push(format!("git: worktree of {work_item} removed"));
    }
    lines.extend(
        after
            .agent_runs
            .iter()
            .skip(before.agent_runs.len())
            .cloned(),
    );
    for message in after.messages.iter().skip(before.messages.len()) {
        lines.push(format!("telegram: {}", one_line(message)));
    }
    let effects = std::mem::take(&mut lines);
    for (id, task) in &after.tasks {
        match before.tasks.get(id) {
            None => lines.push(format!(
                "task {}: new on {}, {}",
                task.work_item,
                task.branch,
                task_parts(task).join(", ")
            )),
            Some(old) => {
                let change = task_change(old, task);
                if !change.is_empty() {
                    lines.push(format!("task {}: {change}", task.work_item));
                }
            }
        }
    }
    for (id, job) in &after.jobs {
        if Some(*id) == ran {
            continue;
        }
        match before.jobs.get(id) {
            None => lines.push(format!("job {}: {}", after.job_name(job), job_status(job))),
            Some(old) if job_status(old) != job_status(job) => {
                lines.push(format!("job {}: {}", after.job_name(job), job_status(job)));
            }
            Some(_) => {}
        }
    }
    (effects, lines)
}

/// A task's stage and status, and what it has on the forge and its rounds, as far as set.
fn task_parts(task: &Task) -> Vec<String> {
    [
        Some(format!("{}, {}", task.stage, task.status)),
        task.pr.map(|pr| format!("PR {pr}")),
        task.head_sha
            .as_ref()
            .map(|head| format!("head {}", short(head))),
        (task.fix_rounds > 0).then(|| format!("fix round {}", task.fix_rounds)),
        (task.review_rounds > 0).then(|| format!("review round {}", task.review_rounds)),
    ]
    .into_iter()
    .flatten()
    .collect()
}

/// What changed in a task: its stage and status as `old → new`, then what else is new.
fn task_change(old: &Task, new: &Task) -> String {
    let mut parts = Vec::new();
    let (was, is) = (
        format!("{}, {}", old.stage, old.status),
        format!("{}, {}", new.stage, new.status),
    );
    if was != is {
        parts.push(format!("{was} → {is}"));
    }
    if old.pr != new.pr {
        parts.push(
            new.pr
                .map_or_else(|| "no PR".to_owned(), |pr| format!("PR {pr}")),
        );
    }
    if old.head_sha != new.head_sha {
        parts.push(new.head_sha.as_ref().map_or_else(
            || "no head".to_owned(),
            |head| format!("head {}", short(head)),
        ));
    }
    if old.fix_rounds != new.fix_rounds {
        parts.push(format!("fix round {}", new.fix_rounds));
    }
    if old.review_rounds != new.review_rounds {
        parts.push(format!("review round {}", new.review_rounds));
    }
    parts.join(", ")
}

fn job_status(job: &Job) -> String {
    match (job.status, &job.waiting) {
        (JobStatus::Queued, Some(waiting)) => format!("waits on {}", waiting.service),
        (status, _) => status.as_str().to_owned(),
    }
}

fn ci_name(state: CiState) -> &'static str {
    match state {
        CiState::Pending => "pending",
        CiState::Success => "success",
        CiState::Failure => "failure",
    }
}

/// The state `names` configure for `role`, if any.
pub(crate) fn state_name_of_role(names: &StateNames, role: StateRole) -> Option<&String> {
    match role {
        StateRole::InProgress => Some(&names.in_progress),
        StateRole::Approved => Some(&names.approved),
        StateRole::Rejected => Some(&names.rejected),
        StateRole::Awaiting => names.awaiting.as_ref(),
        StateRole::Done => Some(&names.done),
        StateRole::Cancelled => names.cancelled.as_ref(),
    }
}

fn state_names(config: &PipelineConfig) -> BTreeMap<StateId, String> {
    let mut names = BTreeMap::new();
    for project in &config.projects {
        for name in FakeTracker::state_names(&project.states) {
            names.insert(
                FakeTracker::state_id_for(&project.plane_project_id, &name),
                name,
            );
        }
    }
    names
}

fn work_item(config: &PipelineConfig, item: &WorkItem) -> Option<WorkItemId> {
    let project = config.project(&item.project)?;
    WorkItemId::new(&project.work_item_prefix, item.sequence_id).ok()
}

/// A commit, by its last 7 characters: the fakes' commits count up from `000…0`.
fn short(sha: &CommitSha) -> String {
    let text = sha.as_str();
    format!("@{}", &text[text.len() - 7..])
}

/// A text on one line: its non-empty lines, joined by ` / `.
fn one_line(text: &str) -> String {
    text.lines()
        .map(str::trim)
        .filter(|line| !line.is_empty())
        .collect::<Vec<_>>()
        .join(" / ")
}
