//! The simulated orch process: the serial event loop, the worker and the reconcile loop of
//! `orch-daemon`'s runtime, run step by step on simulated time.
//!
//! This mirrors `crates/orch-daemon/src/runtime.rs`: the inbox sweep with its retry map and
//! give-up rule, job ends handled as `Event::JobFinished`, leases with heartbeats, a lost
//! lease dropping the result, `reclaim_leases` at boot. A restart drops everything here and
//! keeps the store.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use crate::domain::{ClaimedJob, JobResult, Task};
use crate::event::{Event, Origin, Parsed};
use crate::executor::Executor;
use crate::fakes::sim::exec::{block_on, poll_once};
use crate::fakes::sim::faults::FaultKind;
use crate::fakes::sim::scheduler::{describe_event, Delivery, Ev, Orphaned, Phase, Sim};
use crate::fakes::FakeStep;
use crate::ids::{BootId, JobId};
use crate::orchestrator::{HandleError, Handled, Orchestrator};
use crate::ports::{
    AgentOutcome, CancelHandle, ClaimKinds, ClaimRequest, InboxInsert, InboxOutcome, NewDelivery,
    Source, Store, StoreError,
};
use crate::reconciler::{Reconciler, TrackerSide};
use crate::retries::{AfterFailure, EventKey, HandlingRetries};

/// What a restart loses: the services, the event loop's retries, the running jobs.
pub(crate) struct Node {
    pub(crate) generation: u64,
    pub(crate) boot: BootId,
    pub(crate) orchestrator: Arc<Orchestrator>,
    pub(crate) executor: Executor,
    pub(crate) reconciler: Reconciler,
    /// Deliveries (`'d'`) and job ends (`'j'`) whose handling failed: attempts, next try.
    pub(crate) retries: HandlingRetries,
    pub(crate) running: BTreeMap<i64, Running>,
}

/// A claimed job in the worker.
pub(crate) struct Running {
    pub(crate) claimed: ClaimedJob,
    pub(crate) task: Task,
    pub(crate) work: Work,
    /// A heartbeat found the lease gone: the result must not be recorded.
    pub(crate) lost: bool,
}

/// What a running job is doing.
pub(crate) enum Work {
    Agent {
        wait: Pin<Box<dyn Future<Output = AgentOutcome> + Send>>,
        cancel: CancelHandle,
    },
    /// The action's calls were made at the claim; its answer arrives later.
    Action { result: JobResult },
}

impl Sim {
    // --- process life ---

    /// `Runtime::start`: reclaim earlier boots' leases, then the loops (the event loop sweeps,
    /// the reconciler runs a pass at once).
    pub(crate) fn boot(&mut self) {
        self.generation += 1;
        let generation = self.generation;
        let boot = BootId::new(format!("boot-{generation}")).expect("valid id");
        let orchestrator = Arc::new(
            Orchestrator::new(self.ports.clone(), self.pipeline.clone())
                .with_own_user(self.tracker.own_user()),
        );
        let executor = Executor::new(self.ports.clone(), self.pipeline.clone());
        let reconciler = Reconciler::new(
            self.ports.clone(),
            self.pipeline.clone(),
            orchestrator.clone(),
        );
        let reclaimed =
            block_on(self.store.reclaim_leases(&boot, self.now())).expect("the fake store works");
        self.note(format!(
            "boot {generation}: {} leases reclaimed",
            reclaimed.len()
        ));
        self.node = Some(Node {
            generation,
            boot,
            orchestrator,
            executor,
            reconciler,
            retries: HandlingRetries::new(),
            running: BTreeMap::new(),
        });
        self.sweep();
        self.reconcile();
        let next = self.now() + self.settings.reconcile_interval;
        self.schedule(next, Ev::Reconcile { generation });
        let keep = self.now() + self.settings.lease / 2;
        self.schedule(keep, Ev::KeepLeases { generation });
    }

    /// The runtime's lease keeper (`keep_leases`): every half lease, jobs whose lease expired
    /// are queued again, so a job whose result could not be recorded runs again.
    pub(crate) fn keep_leases(&mut self, generation: u64) {
        let Some(node) = &self.node else {
            return;
        };
        if node.generation != generation {
            return;
        }
        let boot = node.boot.clone();
        let reclaimed =
            block_on(self.store.reclaim_leases(&boot, self.now())).expect("the fake store works");
        if !reclaimed.is_empty() {
            let jobs: Vec<String> = reclaimed.iter().map(|job| job.id.to_string()).collect();
            self.note(format!(
                "expired leases reclaimed: jobs {}",
                jobs.join(", ")
            ));
        }
        let next = self.now() + self.settings.lease / 2;
        self.schedule(next, Ev::KeepLeases { generation });
    }

    /// `kill -9`: everything in memory is gone, running leases are left to expire.
    pub(crate) fn crash(&mut self) {
        if self.phase != Phase::Chaos {
            return;
        }
        let Some(node) = self.node.take() else {
            return;
        };
        self.crashes += 1;
        self.count_fault(FaultKind::Restart);
        let now = self.now();
        for job in node.running.keys() {
            self.orphaned.insert(*job, (now, Orphaned::Restart));
        }
        self.note(format!(
            "crash: {} running jobs lost, {} retries forgotten",
            node.running.len(),
            node.retries.len()
        ));
        let down = self
            .rng
            .between(Duration::from_secs(5), Duration::from_secs(180));
        let at = self.now() + down;
        self.schedule(at, Ev::Boot);
    }

    // --- ingress and the serial event loop ---

    /// The webhook ingress: store the delivery, then wake the loop. While orch is down, Plane
    /// retries (a network error) and Gitea gives up.
    pub(crate) fn ingress(&mut self, delivery: Delivery) {
        if self.node.is_none() {
            match delivery.source {
                Source::Plane if delivery.attempts < 5 => {
                    let backoff = Duration::from_secs(10) * (1 << delivery.attempts);
                    self.note(format!(
                        "plane delivery {} refused (orch is down); plane retries",
                        delivery.delivery_id
                    ));
                    let at = self.now() + backoff;
                    self.schedule(
                        at,
                        Ev::Deliver(Delivery {
                            attempts: delivery.attempts + 1,
                            ..delivery
                        }),
                    );
                }
                source => self.note(format!(
                    "{} delivery {} refused (orch is down); lost",
                    source.as_str(),
                    delivery.delivery_id
                )),
            }
            return;
        }
        let inserted = block_on(self.store.inbox_insert(NewDelivery {
            source: delivery.source,
            delivery_id: delivery.delivery_id.clone(),
            event_type: "sim".to_owned(),
            body_sha256: format!("{:016x}", delivery.body),
            body: delivery.body.to_string().into_bytes(),
            received_at: self.now(),
        }))
        .expect("the fake store works");
        match inserted {
            InboxInsert::Queued(id) => {
                let what =
                    crate::fakes::sim::scheduler::describe_parsed(&self.bodies[delivery.body]);
                self.note(format!(
                    "delivery {id} ({}) stored: {what}",
                    delivery.delivery_id
                ));
                self.sweep();
            }
            InboxInsert::Duplicate => {
                self.note(format!("delivery {} is a duplicate", delivery.delivery_id))
            }
        }
    }

    /// `EventLoop::sweep`: every pending delivery and every unhandled job end, unless its
    /// retry is not due yet.
    pub(crate) fn sweep(&mut self) {
        if self.node.is_none() {
            return;
        }
        let deliveries = block_on(self.store.inbox_pending(500)).expect("the fake store works");
        for delivery in deliveries {
            let key = EventKey::Delivery(delivery.id);
            if !self.due(key) {
                continue;
            }
            let body: usize = std::str::from_utf8(&delivery.body)
                .ok()
                .and_then(|text| text.parse().ok())
                .expect("the simulation wrote the body");
            let outcome = match self.bodies[body].clone() {
                Parsed::Ignored(reason) => Some(InboxOutcome::Ignored(reason)),
                Parsed::Event(event) => match self.handle(&event, Origin::Webhook) {
                    Ok(handled) if handled.changed => Some(InboxOutcome::Applied),
                    Ok(handled) => Some(InboxOutcome::NoChange(handled.note)),
                    Err(err) => self.failed(key, &err),
                },
            };
            if let Some(outcome) = outcome {
                if matches!(outcome, InboxOutcome::Failed(_)) {
                    self.given_up
                        .push(format!("delivery {}: {outcome}", delivery.id));
                }
                block_on(
                    self.store
                        .inbox_mark_processed(delivery.id, &outcome, self.now()),
                )
                .expect("the fake store works");
                self.node_mut().retries.done(key);
            }
        }
        let jobs = block_on(self.store.unhandled_finished_jobs(500)).expect("the fake store works");
        for job in jobs {
            let key = EventKey::JobEnd(job.id);
            if !self.due(key) {
                continue;
            }
            match self.handle(&Event::JobFinished { job: job.id }, Origin::Worker) {
                Ok(_) => self.node_mut().retries.done(key),
                // A job's end is never given up (the runtime's rule).
                Err(err) => {
                    self.failed(key, &err);
                }
            }
        }
        let next_retry = self.node.as_ref().and_then(|node| node.retries.next_due());
        if let Some(at) = next_retry {
            self.wake(at.max(self.now()), Ev::Sweep);
        }
    }

    fn node_mut(&mut self) -> &mut Node {
        self.node.as_mut().expect("the node is up")
    }

    /// One event through the orchestrator, traced.
    pub(crate) fn handle(&mut self, event: &Event, origin: Origin) -> Result<Handled, HandleError> {
        let orchestrator = self.node_mut().orchestrator.clone();
        let result = block_on(orchestrator.handle(event, origin));
        let what = describe_event(event);
        match &result {
            Ok(handled) if handled.changed => {
                self.note(format!("handled {what}: {}", handled.note))
            }
            Ok(handled) => self.note(format!("handled {what}: nothing ({})", handled.note)),
            Err(err) => self.note(format!("handling {what} failed: {err}")),
        }
        result
    }

    fn due(&self, key: EventKey) -> bool {
        let now = self.now();
        self.node
            .as_ref()
            .is_none_or(|node| node.retries.is_due(key, now))
    }

    /// `EventLoop::failed`: `Some(outcome)` when the delivery is given up (one policy,
    /// `orch_core::retries`, for both).
    fn failed(&mut self, key: EventKey, err: &HandleError) -> Option<InboxOutcome> {
        let now = self.now();
        match self.node_mut().retries.failed(key, err, now) {
            AfterFailure::RetryAt(_) => None,
            AfterFailure::GiveUp(given_up) => Some(given_up.outcome()),
        }
    }

    // --- the worker ---

    /// The two dispatchers: claim due jobs while slots are free. Returns whether it claimed.
    pub(crate) fn dispatch(&mut self) -> bool {
        let mut claimed_any = false;
        loop {
            let Some(node) = &self.node else {
                return claimed_any;
            };
            let agents = node
                .running
                .values()
                .filter(|running| running.claimed.job.kind().is_agent())
                .count();
            let actions = node.running.len() - agents;
            let boot = node.boot.clone();
            let mut claimed = None;
            let mut choices = Vec::with_capacity(2);
            if actions < self.settings.action_concurrency {
                choices.push(ClaimKinds::Actions);
            }
            if agents < self.settings.agent_concurrency {
                choices.push(ClaimKinds::Agents {
                    per_repo_limit: self.settings.per_repo_concurrency,
                });
            }
            for kinds in choices {
                let request = ClaimRequest {
                    owner: boot.clone(),
                    kinds,
                    now: self.now(),
                    lease: self.settings.lease,
                };
                claimed = block_on(self.store.claim_next(&request)).expect("the fake store works");
                if claimed.is_some() {
                    break;
                }
            }
            let Some(claimed) = claimed else {
                return claimed_any;
            };
            claimed_any = true;
            self.start_job(claimed);
        }
    }

    /// A dispatcher sleeps until the next job is due.
    pub(crate) fn schedule_dispatch_wake(&mut self) {
        if self.node.is_none() {
            return;
        }
        let now = self.now();
        for kinds in [
            ClaimKinds::Actions,
            ClaimKinds::Agents {
                per_repo_limit: self.settings.per_repo_concurrency,
            },
        ] {
            if let Some(due) = block_on(self.store.next_due(kinds)).expect("the fake store works") {
                if due > now {
                    self.wake(due, Ev::Dispatch);
                }
            }
        }
    }

    /// `Worker::run` up to the wait: an agent is started, an action makes its calls.
    fn start_job(&mut self, claimed: ClaimedJob) {
        let job = claimed.job.clone();
        let task = block_on(self.store.task(job.task)).expect("the fake store works");
        let Some(task) = task else {
            self.finish(
                claimed,
                JobResult::Failed {
                    error: "the job's task is gone".to_owned(),
                },
            );
            return;
        };
        if let Some((lost_at, cause)) = self.orphaned.remove(&job.id.0) {
            let waited = self.now().since(lost_at);
            self.orphan_recoveries
                .entry(cause)
                .or_default()
                .push(waited);
        }
        self.note(format!(
            "job {} {} of {} claimed (attempt {})",
            job.id,
            job.kind(),
            task.work_item,
            job.attempts
        ));
        let node = self.node.as_ref().expect("dispatch runs on a live node");
        let generation = node.generation;
        if job.kind().is_agent() {
            match block_on(node.executor.start_agent(&claimed, &task)) {
                Err(result) => self.finish(claimed, result),
                Ok(running) => {
                    let step = self.shared.lock().last_step.take();
                    let cancel = running.cancel_handle();
                    let wait = running.wait();
                    self.note(format!("agent of job {} runs: {step:?}", job.id));
                    if step != Some(FakeStep::Hang) {
                        let takes = self
                            .rng
                            .between(Duration::from_secs(30), Duration::from_secs(20 * 60));
                        let at = self.now() + takes;
                        self.schedule(
                            at,
                            Ev::JobAnswer {
                                generation,
                                job: job.id,
                            },
                        );
                    }
                    let timeout = self.now() + self.settings.agent_timeout;
                    self.schedule(
                        timeout,
                        Ev::AgentTimeout {
                            generation,
                            job: job.id,
                        },
                    );
                    let beat = self.now() + self.settings.heartbeat_every;
                    self.schedule(
                        beat,
                        Ev::Heartbeat {
                            generation,
                            job: job.id,
                        },
                    );
                    self.node_mut().running.insert(
                        job.id.0,
                        Running {
                            claimed,
                            task,
                            work: Work::Agent { wait, cancel },
                            lost: false,
                        },
                    );
                }
            }
            return;
        }
        {
            let mut ledger = self.shared.lock();
            ledger.job = Some((job.id, job.created_at));
            ledger.latency = Duration::ZERO;
        }
        let result = block_on(node.executor.run_action(&claimed, &task));
        let extra = {
            let mut ledger = self.shared.lock();
            ledger.job = None;
            std::mem::take(&mut ledger.latency)
        };
        let takes = self
            .rng
            .between(Duration::from_millis(20), Duration::from_secs(2))
            + extra;
        let at = self.now() + takes;
        self.schedule(
            at,
            Ev::JobAnswer {
                generation,
                job: job.id,
            },
        );
        if takes > self.settings.heartbeat_every {
            let beat = self.now() + self.settings.heartbeat_every;
            self.schedule(
                beat,
                Ev::Heartbeat {
                    generation,
                    job: job.id,
                },
            );
        }
        self.node_mut().running.insert(
            job.id.0,
            Running {
                claimed,
                task,
                work: Work::Action { result },
                lost: false,
            },
        );
    }

    fn running_of(&mut self, generation: u64, job: JobId) -> Option<Running> {
        let node = self.node.as_mut()?;
        if node.generation != generation {
            return None;
        }
        node.running.remove(&job.0)
    }

    /// An action's answer arrived, or an agent process ended.
    pub(crate) fn job_answer(&mut self, generation: u64, job: JobId) {
        let Some(mut running) = self.running_of(generation, job) else {
            return;
        };
        match &mut running.work {
            Work::Agent { wait, .. } => match poll_once(wait.as_mut()) {
                Poll::Ready(outcome) => self.agent_ended(running, outcome),
                Poll::Pending => {
                    self.node_mut().running.insert(job.0, running);
                }
            },
            Work::Action { result } => {
                let result = result.clone();
                self.finish(running.claimed, result);
            }
        }
    }

    /// The runner's timeout ends a hanging agent.
    pub(crate) fn agent_timeout(&mut self, generation: u64, job: JobId) {
        let Some(running) = self.running_of(generation, job) else {
            return;
        };
        if let Work::Agent { cancel, .. } = &running.work {
            cancel.cancel();
            self.note(format!("agent of job {job} timed out"));
            self.agent_ended(running, AgentOutcome::TimedOut);
        }
    }

    fn agent_ended(&mut self, running: Running, outcome: AgentOutcome) {
        if running.lost {
            self.note(format!(
                "agent of job {} ended ({outcome}) after its lease was lost; result dropped",
                running.claimed.job.id
            ));
            return;
        }
        let node = self.node.as_ref().expect("the node is up");
        let result = block_on(
            node.executor
                .finish_agent(&running.claimed, &running.task, outcome),
        );
        self.finish(running.claimed, result);
    }

    /// `Worker::with_heartbeat`: extend the lease; a lost lease cancels the agent and drops
    /// the result.
    pub(crate) fn heartbeat(&mut self, generation: u64, job: JobId) {
        let Some(mut running) = self.running_of(generation, job) else {
            return;
        };
        let beat = block_on(self.store.heartbeat(
            job,
            &running.claimed.attempt,
            self.now(),
            self.settings.lease,
        ));
        match beat {
            Ok(())
            | Err(StoreError::Unavailable(_) | StoreError::NotFound(_) | StoreError::Other(_)) => {
                let next = self.now() + self.settings.heartbeat_every;
                self.schedule(next, Ev::Heartbeat { generation, job });
                self.node_mut().running.insert(job.0, running);
            }
            Err(StoreError::Conflict(_)) => {
                running.lost = true;
                match &mut running.work {
                    Work::Agent { wait, cancel } => {
                        cancel.cancel();
                        match poll_once(wait.as_mut()) {
                            Poll::Ready(outcome) => self.agent_ended(running, outcome),
                            Poll::Pending => {
                                self.node_mut().running.insert(job.0, running);
                            }
                        }
                    }
                    Work::Action { .. } => {
                        self.note(format!("job {job} lost its lease; result dropped"));
                    }
                }
            }
        }
    }

    /// `Worker::finish`: record the result (unless the store is made to lose it); an end
    /// wakes the event loop.
    fn finish(&mut self, claimed: ClaimedJob, result: JobResult) {
        let job = &claimed.job;
        let lose = {
            let mut ledger = self.shared.lock();
            let rate = if ledger.faults_on {
                ledger.plan.result_lost_rate
            } else {
                0.0
            };
            ledger.rng.chance(rate)
        };
        if lose {
            self.count_fault(FaultKind::ResultLost);
            let now = self.now();
            self.orphaned.insert(job.id.0, (now, Orphaned::ResultLost));
            self.note(format!(
                "job {} {}: result not recorded (store busy); the lease will expire",
                job.id,
                job.kind()
            ));
            return;
        }
        let outcome = match &result {
            JobResult::Succeeded(_) => "succeeded".to_owned(),
            JobResult::Retry { error, .. } => format!("retry: {error}"),
            JobResult::Failed { error } => format!("failed: {error}"),
            JobResult::HandBack { error } => format!("handed back: {error}"),
            JobResult::Wait { error, service, .. } => format!("waits for {service}: {error}"),
            JobResult::Obsolete { reason } => format!("obsolete: {reason}"),
        };
        let ended = result.is_end();
        match block_on(
            self.store
                .finish_job(job.id, &claimed.attempt, result, self.now()),
        ) {
            Ok(()) => {
                self.note(format!("job {} {} {outcome}", job.id, job.kind()));
                if ended {
                    self.sweep();
                }
            }
            Err(err) => self.note(format!(
                "job {} {}: result rejected ({err})",
                job.id,
                job.kind()
            )),
        }
    }

    // --- the reconcile loop ---

    pub(crate) fn reconcile(&mut self) {
        let Some(node) = &self.node else {
            return;
        };
        let report = block_on(node.reconciler.run_once(TrackerSide::Enabled));
        if !report.unblocked.is_empty() {
            let replays: Vec<String> = report.replays.iter().map(describe_event).collect();
            self.note(format!(
                "reconcile: replayed [{}], {} unblocked, {} errors",
                replays.join("; "),
                report.unblocked.len(),
                report.errors.len()
            ));
        }
    }
}
