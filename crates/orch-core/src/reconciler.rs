//! The `Reconciler`: F-1 (forge side) and F-2 (tracker side) passes that find candidates and
//! forward the outside facts they read through the same handlers as webhooks, plus the
//! outage watch. It decides nothing and changes no state itself, and it never raises: every
//! unit of work that fails is counted and the pass goes on.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tracing::{info, instrument, warn};

use crate::config::{PipelineConfig, ProjectConfig};
use crate::domain::{Stage, StateRole, DEGRADED_AFTER};
use crate::event::{Event, Origin};
use crate::ids::ProjectId;
use crate::orchestrator::{EventSink, HandleError, Handled};
use crate::pipeline::{evaluate_exit_gate, read_pull_request, transition_of, ExitGate};
use crate::ports::{Ports, ProjectStates, ReconcileRun, Unblocked, Via, WorkItem};
use crate::time::Timestamp;

/// Whether a pass replays events or only says what it would replay.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReconcileMode {
    Apply,
    /// Replays nothing and writes nothing (no watermark either); `PassReport::replays` lists
    /// what would have been replayed.
    DryRun,
}

/// What one pass did (F-4).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PassReport {
    pub unblocked: Vec<Unblocked>,
    /// Every replayed (or, in a dry run, would-be replayed) event.
    pub replays: Vec<Event>,
    pub errors: Vec<String>,
    /// Tracker API calls that failed (TC-16 counts them).
    pub tracker_errors: u64,
    pub candidates_checked: u64,
}

impl PassReport {
    fn merge(&mut self, other: PassReport) {
        self.unblocked.extend(other.unblocked);
        self.replays.extend(other.replays);
        self.errors.extend(other.errors);
        self.tracker_errors += other.tracker_errors;
        self.candidates_checked += other.candidates_checked;
    }
}

/// The most F-1 candidates one pass looks at per stage.
const GATE_CANDIDATE_LIMIT: u32 = 1000;
/// The most work-item pages one project's F-2 pass reads (100 000 items).
const MAX_PAGES: u32 = 1000;

/// F-1 and F-2 over the ports, replaying into an `EventSink`.
pub struct Reconciler {
    ports: Ports,
    config: PipelineConfig,
    sink: Arc<dyn EventSink>,
    mode: ReconcileMode,
    last_full_pass: Mutex<HashMap<ProjectId, Timestamp>>,
}

impl Reconciler {
    pub fn new(ports: Ports, config: PipelineConfig, sink: Arc<dyn EventSink>) -> Reconciler {
        Reconciler {
            ports,
            config,
            sink,
            mode: ReconcileMode::Apply,
            last_full_pass: Mutex::new(HashMap::new()),
        }
    }

    pub fn with_mode(mut self, mode: ReconcileMode) -> Reconciler {
        self.mode = mode;
        self
    }

    /// One whole pass: F-1, then F-2 when `tracker_enabled`, recorded in the store.
    pub async fn run_once(&self, tracker: TrackerSide) -> PassReport {
        let started_at = self.ports.clock.now();
        let mut report = self.reconcile_gates_once().await;
        if tracker == TrackerSide::Enabled {
            report.merge(self.reconcile_tracker_once().await);
        }
        report.merge(self.watch_outages_once().await);
        if self.mode == ReconcileMode::Apply {
            let run = ReconcileRun {
                started_at,
                duration: self.ports.clock.now().since(started_at),
                unblocked: report.unblocked.clone(),
                errors: report.errors.clone(),
            };
            if let Err(err) = self.ports.store.record_reconcile_run(run).await {
                warn!(error = %err, "could not record the reconcile run");
            }
        }
        report
    }

    /// F-1: every active task without pipeline work in flight, past its stage's grace, gets
    /// its forge facts read again — its pull request (merged or closed by a person, a head
    /// someone pushed) and, behind an automatic gate, the gate's checks — and forwarded to
    /// the orchestrator, which decides what they mean (the same rules as the webhooks).
    #[instrument(skip_all)]
    pub async fn reconcile_gates_once(&self) -> PassReport {
        let mut report = PassReport::default();
        let now = self.ports.clock.now();
        for row in crate::pipeline::STAGE_TRANSITIONS {
            if row.stage.is_terminal() {
                continue;
            }
            let cutoff = now - self.config.grace.of(row.stage);
            let candidates = match self
                .ports
                .store
                .gate_candidates(row.stage, cutoff, GATE_CANDIDATE_LIMIT)
                .await
            {
                Ok(candidates) => candidates,
                Err(err) => {
                    report
                        .errors
                        .push(format!("gate candidates of {}: {err}", row.stage));
                    continue;
                }
            };
            for task in candidates {
                let facts = match row.exit_gate {
                    ExitGate::Automatic(_) => {
                        evaluate_exit_gate(&task, self.ports.forge.as_ref(), self.config.require_ci)
                            .await
                            .map(Some)
                    }
                    ExitGate::Human | ExitGate::Terminal => {
                        read_pull_request(&task, self.ports.forge.as_ref()).await
                    }
                };
                let facts = match facts {
                    Ok(Some(facts)) => facts,
                    // Nothing of the task is in the forge yet.
                    Ok(None) => continue,
                    Err(err) => {
                        warn!(task = %task.work_item, error = %err, "forge facts not readable");
                        report
                            .errors
                            .push(format!("forge facts of {}: {err}", task.work_item));
                        continue;
                    }
                };
                report.candidates_checked += 1;
                let event = Event::ForgeObserved {
                    task: task.id,
                    head_sha: task.head_sha.clone(),
                    report: facts,
                };
                self.replay(event, Via::Gate, &mut report).await;
            }
        }
        report
    }

    /// Services that jobs have waited on for longer than `DEGRADED_AFTER` (an outage): the
    /// orchestrator tells people, once per outage.
    #[instrument(skip_all)]
    pub async fn watch_outages_once(&self) -> PassReport {
        let mut report = PassReport::default();
        let now = self.ports.clock.now();
        let snapshot = match self.ports.store.queue_snapshot().await {
            Ok(snapshot) => snapshot,
            Err(err) => {
                report.errors.push(format!("waiting jobs: {err}"));
                return report;
            }
        };
        for wait in snapshot.waiting {
            if now.since(wait.since) < DEGRADED_AFTER {
                continue;
            }
            warn!(service = %wait.service, since = %wait.since, jobs = wait.jobs, "service out; jobs wait for it");
            let event = Event::ServiceDegraded {
                service: wait.service,
                since: wait.since,
                task: wait.oldest_task,
                jobs: wait.jobs,
                error: wait.last_error,
            };
            report.replays.push(event.clone());
            if self.mode == ReconcileMode::DryRun {
                continue;
            }
            if let Err(err) = self.sink.submit(event, Origin::Worker).await {
                report
                    .errors
                    .push(format!("outage of {}: {err}", wait.service));
            }
        }
        report
    }

    /// F-2: every configured project's work items, compared with the tasks.
    #[instrument(skip_all)]
    pub async fn reconcile_tracker_once(&self) -> PassReport {
        let mut report = PassReport::default();
        for project in &self.config.projects {
            self.reconcile_project(project, &mut report).await;
        }
        report
    }

    async fn reconcile_project(&self, project: &ProjectConfig, report: &mut PassReport) {
        let started_at = self.ports.clock.now();
        let project_id = &project.plane_project_id;
        let states = match self
            .ports
            .tracker
            .project_states(project_id, &project.states)
            .await
        {
            Ok(states) => states,
            Err(err) => {
                report.tracker_errors += 1;
                report
                    .errors
                    .push(format!("states of project {}: {err}", project.key));
                return;
            }
        };
        let stop_at = self.stop_at(project_id, started_at).await;
        let mut cursor: Option<String> = None;
        let mut complete = true;
        'pages: for _ in 0..MAX_PAGES {
            let page = match self
                .ports
                .tracker
                .list_work_items(project_id, cursor.as_deref())
                .await
            {
                Ok(page) => page,
                Err(err) => {
                    // Never raise: an error is an empty listing and a counted error (TC-16).
                    warn!(project = %project.key, error = %err, "work items not listed");
                    report.tracker_errors += 1;
                    report
                        .errors
                        .push(format!("work items of project {}: {err}", project.key));
                    complete = false;
                    break;
                }
            };
            for item in &page.items {
                if stop_at.is_some_and(|stop_at| item.updated_at < stop_at) {
                    break 'pages;
                }
                self.consider(item, &states, report).await;
            }
            match page.next_cursor {
                Some(next) => cursor = Some(next),
                None => break,
            }
        }
        if complete && self.mode == ReconcileMode::Apply {
            if stop_at.is_none() {
                self.last_full_pass
                    .lock()
                    .expect("reconciler mutex is never poisoned")
                    .insert(project_id.clone(), started_at);
            }
            if let Err(err) = self
                .ports
                .store
                .set_tracker_watermark(project_id, started_at)
                .await
            {
                report
                    .errors
                    .push(format!("watermark of project {}: {err}", project.key));
            }
        }
    }

    /// Where listing may stop: the last complete pass minus the largest grace, unless a full
    /// pass is due.
    async fn stop_at(&self, project: &ProjectId, now: Timestamp) -> Option<Timestamp> {
        let last_full = self
            .last_full_pass
            .lock()
            .expect("reconciler mutex is never poisoned")
            .get(project)
            .copied();
        let full_due = last_full.is_none_or(|at| now.since(at) >= self.config.full_pass_every);
        if full_due {
            return None;
        }
        match self.ports.store.tracker_watermark(project).await {
            Ok(watermark) => watermark.map(|at| at - self.config.grace.largest()),
            Err(_) => None,
        }
    }

    async fn consider(&self, item: &WorkItem, states: &ProjectStates, report: &mut PassReport) {
        let Some(role) = states.role_of(&item.state) else {
            return;
        };
        if !matches!(
            role,
            StateRole::InProgress
                | StateRole::Approved
                | StateRole::Rejected
                | StateRole::Cancelled
                | StateRole::Done
        ) {
            return;
        }
        let now = self.ports.clock.now();
        let task = match self.ports.store.task_by_issue(&item.id).await {
            Ok(task) => task,
            Err(err) => {
                report
                    .errors
                    .push(format!("task of issue {}: {err}", item.id));
                return;
            }
        };
        let stage = task.as_ref().map_or(Stage::Analysis, |task| task.stage);
        if now.since(item.updated_at) < self.config.grace.of(stage) {
            // Within grace: the webhook may merely be late (TC-14b).
            return;
        }
        let wanted = match (role, &task) {
            (StateRole::InProgress, None) => true,
            (StateRole::Approved | StateRole::Rejected, Some(task)) => {
                transition_of(task.stage).exit_gate == ExitGate::Human || task.status.is_blocked()
            }
            (StateRole::Cancelled | StateRole::Done, Some(task)) => !task.stage.is_terminal(),
            _ => false,
        };
        if !wanted {
            return;
        }
        // A verdict waits while pipeline work runs (TC-14: its webhook may be in flight, and a
        // verdict needs an open gate); a cancel or a person's Done ends that work instead.
        let verdict = matches!(role, StateRole::Approved | StateRole::Rejected);
        if let Some(task) = task.as_ref().filter(|_| verdict) {
            match self.ports.store.has_active_job(task.id).await {
                // A live webhook is in flight (TC-14).
                Ok(true) => return,
                Ok(false) => {}
                Err(err) => {
                    report
                        .errors
                        .push(format!("jobs of {}: {err}", task.work_item));
                    return;
                }
            }
        }
        self.replay(
            Event::WorkItemMoved {
                item: item.clone(),
                actor: None,
            },
            Via::Tracker,
            report,
        )
        .await;
    }

    async fn replay(&self, event: Event, via: Via, report: &mut PassReport) {
        report.replays.push(event.clone());
        if self.mode == ReconcileMode::DryRun {
            return;
        }
        match self.sink.submit(event, Origin::Reconciler(via)).await {
            Ok(Handled {
                changed: true,
                task: Some(task),
                work_item: Some(work_item),
                stage: Some(stage),
                ..
            }) => {
                info!(task = %work_item, stage = %stage, via = via.as_str(), "reconcile replay applied");
                report.unblocked.push(Unblocked {
                    task,
                    work_item,
                    stage,
                    via,
                    at: self.ports.clock.now(),
                });
            }
            // The next pass replays it again.
            Ok(_) | Err(HandleError::TooEarly(_)) => {}
            Err(err) => {
                warn!(via = via.as_str(), error = %err, "reconcile replay failed");
                report
                    .errors
                    .push(format!("replay via {}: {err}", via.as_str()));
            }
        }
    }
}

/// Whether a pass includes F-2 (`reconcile.plane_enabled`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrackerSide {
    Enabled,
    Disabled,
}

#[cfg(test)]
mod tests;
