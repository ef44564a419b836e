//! The invariants of SPEC §4.1, checked on the world at the end of a seed.
//!
//! Each check reads the fakes (what Plane, Gitea and people ended up with), the store (what
//! orch decided) and the ledger (what orch did to the outside, and when), and reports a
//! `Violation` with a class name; the classes are listed in `docs/design/simulation.md`.

use std::collections::BTreeMap;

use crate::domain::{Agent, JobKind, JobStatus, Stage, StateRole, Task, TaskStatus};
use crate::fakes::sim::exec::block_on;
use crate::fakes::sim::faults::{Writer, INJECTED, INJECTED_4XX};
use crate::fakes::sim::scheduler::{state_name, Sim};
use crate::fakes::FakeTracker;
use crate::ports::{PrState, Store};
use crate::time::Timestamp;

/// One broken invariant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// A short stable name, e.g. `stalled`, `second_pr`, `person_overwritten`.
    pub class: &'static str,
    /// The work item it concerns, if one.
    pub item: Option<String>,
    pub detail: String,
}

impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.item {
            Some(item) => write!(f, "{} [{item}]: {}", self.class, self.detail),
            None => write!(f, "{}: {}", self.class, self.detail),
        }
    }
}

/// Every invariant, on the world as the seed left it.
pub(crate) fn check(sim: &Sim) -> Vec<Violation> {
    let mut out = Vec::new();
    let ledger = sim.shared.lock();
    let store = &sim.store;
    let state_id = |name: &str| FakeTracker::state_id_for(&sim.project.plane_project_id, name);
    let pulls = sim.forge.pulls();
    let mut tasks: Vec<Task> = Vec::new();
    for person in &sim.people {
        let item_name = person.work_item.to_string();
        let violation = |class: &'static str, detail: String| Violation {
            class,
            item: Some(item_name.clone()),
            detail,
        };
        let item = sim.tracker.item(&person.issue).expect("the item exists");
        let task = block_on(store.task_by_issue(&person.issue)).expect("the fake store works");
        let Some(task) = task else {
            if item.state == state_id(state_name(StateRole::InProgress)) {
                out.push(violation(
                    "stalled",
                    "the item is In Progress but has no task".to_owned(),
                ));
            }
            continue;
        };
        tasks.push(task.clone());
        let history = block_on(store.history(task.id)).expect("the fake store works");
        let jobs = block_on(store.jobs_of_task(task.id)).expect("the fake store works");
        let person_writes: Vec<_> = ledger
            .plane_writes
            .iter()
            .filter(|write| write.issue == person.issue && write.by == Writer::Person)
            .collect();
        let plane_state = item.state.as_str().trim_start_matches("proj-1-").to_owned();

        // Every task ends: done, cancelled, or blocked — or waits at a gate for a person who
        // was told and has not given a verdict.
        if !task.stage.is_terminal() && !task.status.is_blocked() {
            let active: Vec<String> = jobs
                .iter()
                .filter(|job| job.status.is_active())
                .map(|job| format!("{} {} {}", job.id, job.kind(), job.status.as_str()))
                .collect();
            let gate_opened = task.gate_opened_at.unwrap_or(task.updated_at);
            let is_verdict = |state: &crate::ids::StateId| {
                *state == state_id(state_name(StateRole::Approved))
                    || *state == state_id(state_name(StateRole::Rejected))
            };
            // The person's last move since the gate opened: a verdict they took back (moved
            // the item on again) is not one orch ignored.
            let last_move = person_writes.iter().rfind(|write| write.at >= gate_opened);
            let verdict_given = last_move.is_some_and(|write| is_verdict(&write.state));
            // A gate whose person was told, and who has not given a verdict, waits on them.
            let told_of_gate = ledger.notifications.iter().any(|(at, text)| {
                *at >= gate_opened && text.contains(&item_name) && text.contains("approve")
            });
            let waits_on_person =
                task.status == TaskStatus::AwaitingVerdict && !verdict_given && told_of_gate;
            let merged_by_person = sim
                .person_merges
                .iter()
                .any(|(_, branch, _)| branch == task.branch.as_str());
            let class = if waits_on_person {
                ""
            } else if merged_by_person {
                "person_merge_missed"
            } else if jobs.iter().any(|job| job.status == JobStatus::Running) {
                "stalled_job_running"
            } else if task.status == TaskStatus::AwaitingVerdict && verdict_given {
                "stalled_verdict_ignored"
            } else {
                "stalled"
            };
            if !class.is_empty() {
                out.push(violation(
                    class,
                    format!(
                        "task {} is {} {} at the end (Plane: {plane_state}; active jobs: [{}])",
                        task.id,
                        task.stage,
                        task.status,
                        active.join(", ")
                    ),
                ));
            }
        }

        // A block is told about, and an outage never blocks by itself.
        if let TaskStatus::Blocked { reason } = &task.status {
            let since = blocked_since(&history).unwrap_or(task.updated_at);
            let told = ledger.notifications.iter().any(|(at, text)| {
                *at >= since && text.contains(&item_name) && text.contains("blocked")
            });
            if !told && !task.stage.is_terminal() {
                out.push(violation(
                    "blocked_silently",
                    format!("blocked since {since} ({reason}) and nobody was told"),
                ));
            }
            if reason.to_lowercase().contains("try again later") && !reason.contains(INJECTED) {
                out.push(violation(
                    "conflict_blocked",
                    format!("a conflicting pull request blocked the task: {reason}"),
                ));
            }
            if reason.contains(INJECTED) && !reason.contains(INJECTED_4XX) {
                out.push(violation(
                    "outage_blocked",
                    format!("an outage blocked the task: {reason}"),
                ));
            }
        }
        // A person's Rejected unblocks a task into the same stage (its agent runs again); the
        // only other way on from a block is a green development gate (or the end).
        for pair in history.windows(2) {
            let (before, after) = (&pair[0], &pair[1]);
            let moved_on = before.stage != after.stage
                && !after.stage.is_terminal()
                && !(before.stage == Stage::Development && after.stage == Stage::Review);
            if before.status.starts_with("blocked")
                && !after.status.starts_with("blocked")
                && moved_on
            {
                out.push(violation(
                    "unblock_changed_stage",
                    format!(
                        "blocked in {}, then {} ({}) at {}",
                        before.stage, after.stage, after.message, after.at
                    ),
                ));
            }
        }
        for job in &jobs {
            let error = job.last_error.as_deref().unwrap_or("");
            // A 4xx is the service's final word: giving up on it is the core's right.
            let outage = error.contains(INJECTED) && !error.contains(INJECTED_4XX);
            if job.status != JobStatus::Failed || !outage {
                continue;
            }
            let class = if job.kind().is_agent() {
                "outage_used_agent_attempts"
            } else {
                "action_dropped"
            };
            out.push(violation(
                class,
                format!(
                    "job {} {} failed for good after {} attempts: {error}",
                    job.id,
                    job.kind(),
                    job.attempts
                ),
            ));
        }

        // Done means merged and Done in Plane (unless a person moved it since).
        let branch_pulls: Vec<_> = pulls
            .iter()
            .filter(|pull| pull.head_branch == task.branch.as_str())
            .collect();
        if task.stage == Stage::Done {
            if !branch_pulls.iter().any(|pull| pull.merged) {
                out.push(violation(
                    "done_unmerged",
                    "the task is done but no pull request of its branch is merged".to_owned(),
                ));
            }
            let done_at = history
                .iter()
                .find(|entry| entry.stage == Stage::Done)
                .map_or(task.updated_at, |entry| entry.at);
            let moved_since = person_writes.iter().any(|write| write.at > done_at);
            if !moved_since && item.state != state_id(state_name(StateRole::Done)) {
                out.push(violation(
                    "done_not_in_plane",
                    format!("the task is done but the item is {plane_state} in Plane"),
                ));
            }
        }
        if task.stage.is_terminal() {
            if let Some(open) = branch_pulls.iter().find(|pull| pull.state == PrState::Open) {
                out.push(violation(
                    "orphan_pr",
                    format!(
                        "the task is {} but pull {} is open",
                        task.stage, open.number
                    ),
                ));
            }
        }

        // A person's cancel ends the task.
        if let Some(last) = person_writes.last() {
            let done_before = history
                .iter()
                .any(|entry| entry.stage == Stage::Done && entry.at <= last.at);
            if last.state == state_id(state_name(StateRole::Cancelled))
                && task.stage != Stage::Cancelled
                && !done_before
            {
                out.push(violation(
                    "cancel_ignored",
                    format!(
                        "the person cancelled the item, the task is {} {}",
                        task.stage, task.status
                    ),
                ));
            }
        }

        // One PR per task: none after a merge or after the task ended.
        let ended_at = history
            .iter()
            .find(|entry| entry.stage.is_terminal())
            .map(|entry| entry.at);
        let merged_at = sim
            .person_merges
            .iter()
            .filter(|(_, branch, _)| branch == task.branch.as_str())
            .map(|(at, _, _)| *at)
            .chain(
                ledger
                    .merges
                    .iter()
                    .filter(|merge| branch_pulls.iter().any(|pull| pull.number == merge.number))
                    .map(|merge| merge.at),
            )
            .min();
        for opened in ledger
            .prs_opened
            .iter()
            .filter(|opened| opened.branch == task.branch.as_str())
        {
            if merged_at.is_some_and(|at| at < opened.at) {
                out.push(violation(
                    "second_pr",
                    format!(
                        "pull {} opened after the task's pull was merged",
                        opened.number
                    ),
                ));
            } else if ended_at.is_some_and(|at| at < opened.at) {
                out.push(violation(
                    "second_pr",
                    format!("pull {} opened after the task ended", opened.number),
                ));
            }
        }
        let merges = sim
            .person_merges
            .iter()
            .filter(|(_, branch, _)| branch == task.branch.as_str())
            .count()
            + ledger
                .merges
                .iter()
                .filter(|merge| branch_pulls.iter().any(|pull| pull.number == merge.number))
                .count();
        if merges > 1 {
            out.push(violation("double_merge", format!("{merges} merges")));
        }

        // orch merges only a green head, approved after the review gate opened.
        for merge in ledger
            .merges
            .iter()
            .filter(|merge| branch_pulls.iter().any(|pull| pull.number == merge.number))
        {
            if sim.statuses.get(&merge.sha) != Some(&crate::domain::CiState::Success) {
                out.push(violation(
                    "merge_without_green_ci",
                    format!("merged {} without a green CI status", merge.sha.short()),
                ));
            }
            let gate_opened = gate_opened_before(&history, merge.at);
            let approved = gate_opened.is_some_and(|gate| {
                person_writes.iter().any(|write| {
                    write.state == state_id(state_name(StateRole::Approved))
                        && write.at >= gate
                        && write.at <= merge.at
                })
            });
            if !approved {
                out.push(violation(
                    "merge_without_approval",
                    format!(
                        "merged {} at {} without an Approved given after the review gate opened ({:?})",
                        merge.sha.short(),
                        merge.at,
                        gate_opened
                    ),
                ));
            }
        }

        // One comment per external id, and no more comments than agent results to post.
        let mut ids: BTreeMap<String, u32> = BTreeMap::new();
        let comments = sim.tracker.orch_comments(&person.issue);
        let results = jobs
            .iter()
            .filter(|job| {
                job.status == JobStatus::Succeeded
                    && matches!(job.kind(), JobKind::Agent(Agent::Analyst | Agent::Reviewer))
            })
            .count();
        if comments.len() > results {
            out.push(violation(
                "duplicate_comment",
                format!(
                    "{} comments by orch for {results} analyses and reviews",
                    comments.len()
                ),
            ));
        }
        for comment in comments {
            *ids.entry(comment.id).or_default() += 1;
        }
        for (id, count) in ids.into_iter().filter(|(_, count)| *count > 1) {
            out.push(violation(
                "duplicate_comment",
                format!("{count} comments with external id {id}"),
            ));
        }
    }

    // One review per marker.
    let mut markers: BTreeMap<String, u32> = BTreeMap::new();
    for (_, _, text) in sim.forge.reviews() {
        let marker = text.rsplit("<!-- ").next().unwrap_or_default().to_owned();
        *markers.entry(marker).or_default() += 1;
    }
    for (marker, count) in markers.into_iter().filter(|(_, count)| *count > 1) {
        out.push(Violation {
            class: "duplicate_review",
            item: None,
            detail: format!("{count} reviews with marker {marker}"),
        });
    }

    // orch never overwrites a state a person set after orch decided the move (ADR 0005), with
    // the rule's stated exceptions: orch's move to Done after a merge; a verdict reset where
    // orch's move opens a gate, given before the gate's comment was in Plane; and a state orch
    // itself had put the item in before (orch cannot tell the person's from its own).
    let state_id = |name: &str| FakeTracker::state_id_for(&sim.project.plane_project_id, name);
    let awaiting = state_id(state_name(StateRole::Awaiting));
    let in_progress = state_id(state_name(StateRole::InProgress));
    let done = state_id(state_name(StateRole::Done));
    let is_verdict = |state: &crate::ids::StateId| {
        *state == state_id(state_name(StateRole::Approved))
            || *state == state_id(state_name(StateRole::Rejected))
    };
    let mut last: BTreeMap<&crate::ids::IssueId, &crate::fakes::sim::faults::PlaneWrite> =
        BTreeMap::new();
    let mut orch_states: BTreeMap<&crate::ids::IssueId, Vec<&crate::ids::StateId>> =
        BTreeMap::new();
    // Whether each issue's latest write left its state as it was (a no-op move).
    let mut no_op: BTreeMap<&crate::ids::IssueId, bool> = BTreeMap::new();
    for write in &ledger.plane_writes {
        let own_before = |state: &crate::ids::StateId| {
            orch_states
                .get(&write.issue)
                .is_some_and(|states| states.contains(&state))
        };
        if let (Writer::Orch { job, decided_at }, Some(previous)) =
            (write.by, last.get(&write.issue))
        {
            let done_after_merge = write.state == done
                && block_on(store.task_by_issue(&write.issue))
                    .expect("the fake store works")
                    .is_some_and(|task| {
                        pulls
                            .iter()
                            .any(|pull| pull.merged && pull.head_branch == task.branch.as_str())
                    });
            // A verdict means something only at an open gate: one given while the task was
            // working, or before the gate's comment was in Plane, is early and may be reset.
            let early_verdict = is_verdict(&previous.state)
                && (no_gate_open_at(store.as_ref(), &write.issue, previous.at)
                    || write.state == awaiting
                        && !gate_comment_posted_by(sim, store.as_ref(), job, previous.plane_at));
            if previous.by == Writer::Person
                && previous.at > decided_at
                && previous.state != write.state
                && !done_after_merge
                && !early_verdict
                && !own_before(&previous.state)
                && !no_op.get(&write.issue).copied().unwrap_or(false)
                // In Progress is the state orch works in: a person putting the item (back)
                // there decides nothing that orch's next move must keep.
                && previous.state != in_progress
            {
                let item = sim
                    .people
                    .iter()
                    .find(|person| person.issue == write.issue)
                    .map(|person| person.work_item.to_string());
                out.push(Violation {
                    class: "person_overwritten",
                    item,
                    detail: format!(
                        "job {job} (decided at {decided_at}) moved the item to {} at {}, over the person's {} of {}",
                        short_state(write.state.as_str()),
                        write.at,
                        short_state(previous.state.as_str()),
                        previous.at
                    ),
                });
            }
        }
        if matches!(write.by, Writer::Orch { .. }) {
            orch_states
                .entry(&write.issue)
                .or_default()
                .push(&write.state);
        }
        let unchanged = last
            .get(&write.issue)
            .is_some_and(|previous| previous.state == write.state);
        no_op.insert(&write.issue, unchanged);
        last.insert(&write.issue, write);
    }

    // Every delivery is processed or deliberately ignored.
    let pending = block_on(store.inbox_pending(1000)).expect("the fake store works");
    if !pending.is_empty() {
        out.push(Violation {
            class: "delivery_unprocessed",
            item: None,
            detail: format!("{} deliveries are still pending", pending.len()),
        });
    }
    for given_up in &sim.given_up {
        out.push(Violation {
            class: "delivery_given_up",
            item: None,
            detail: given_up.clone(),
        });
    }
    out
}

/// Whether the task of `issue` had no gate open (it was working) at `at`, by its history.
fn no_gate_open_at(store: &dyn Store, issue: &crate::ids::IssueId, at: Timestamp) -> bool {
    let Some(task) = block_on(store.task_by_issue(issue)).expect("the fake store works") else {
        return true;
    };
    let history = block_on(store.history(task.id)).expect("the fake store works");
    history
        .iter()
        .rfind(|entry| entry.at <= at)
        .is_none_or(|entry| entry.status == "working")
}

/// Whether the comment of the gate that orch's job `job` opens was in Plane, by Plane's clock,
/// at `at`.
fn gate_comment_posted_by(
    sim: &Sim,
    store: &dyn Store,
    job: crate::ids::JobId,
    at: Timestamp,
) -> bool {
    let Some(job) = block_on(store.job(job)).expect("the fake store works") else {
        return false;
    };
    let crate::domain::Action::TrackerState {
        gate_comment: Some(comment),
        ..
    } = &job.action
    else {
        return false;
    };
    let Some(task) = block_on(store.task(job.task)).expect("the fake store works") else {
        return false;
    };
    sim.tracker.orch_comments(&task.issue).iter().any(|posted| {
        posted.external_id.as_deref() == Some(comment.as_str()) && posted.created_at <= at
    })
}

/// When the task's current block began, from its history.
fn blocked_since(history: &[crate::domain::HistoryEntry]) -> Option<Timestamp> {
    let mut since = None;
    for entry in history {
        if entry.status.starts_with("blocked") {
            if since.is_none() {
                since = Some(entry.at);
            }
        } else {
            since = None;
        }
    }
    since
}

/// When the last review gate before `at` opened: the first line of the last run of history
/// lines in which the task awaited its final verdict.
fn gate_opened_before(history: &[crate::domain::HistoryEntry], at: Timestamp) -> Option<Timestamp> {
    let mut opened = None;
    let mut run_start = None;
    for entry in history.iter().filter(|entry| entry.at <= at) {
        if entry.stage == Stage::Review && entry.status == "awaiting_verdict" {
            let start = *run_start.get_or_insert(entry.at);
            opened = Some(start);
        } else {
            run_start = None;
        }
    }
    opened
}

fn short_state(state: &str) -> &str {
    state.trim_start_matches("proj-1-")
}
