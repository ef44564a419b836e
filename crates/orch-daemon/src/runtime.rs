//! The running daemon over any adapters: the serial event loop, the worker and the
//! reconciler loop, with boot-time lease reclaim and orphan reaping, and graceful shutdown.
//!
//! Only the event loop calls the `Orchestrator`; the inbox, the worker, the reconciler and
//! admin commands feed it. The worker is woken when a transition writes jobs, never polled.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::{mpsc, oneshot, watch, Notify, Semaphore};
use tokio::task::JoinSet;
use tracing::{debug, error, info, warn};

use orch_core::config::PipelineConfig;
use orch_core::domain::{Agent, ClaimedJob, JobKind, JobResult, ProcessRecord};
use orch_core::event::{Event, Origin, Parsed};
use orch_core::ids::{BootId, UserId};
use orch_core::orchestrator::{EventSink, HandleError, Handled, Orchestrator};
use orch_core::ports::{
    AgentOutcome, ClaimKinds, ClaimRequest, InboxOutcome, Ports, Source, StoreError,
};
use orch_core::reconciler::{PassReport, Reconciler, TrackerSide};
use orch_core::retries::{AfterFailure, EventKey, GivenUp, HandlingRetries};
use orch_core::Executor;
use orch_http::{JobOutcome, LoopState};

use crate::retention::{retention_loop, RetentionSettings};

/// Turns a stored delivery into an event: the adapters' webhook parsers.
pub type DeliveryParser = Arc<dyn Fn(Source, &str, &[u8]) -> Parsed + Send + Sync>;

/// Kills agent process groups left by an earlier boot (`orch_agent::reap_orphans`).
pub type Reaper = Arc<dyn Fn(&[ProcessRecord]) + Send + Sync>;

/// What the runtime tells the outside (metrics, readiness, progress lines).
pub trait Observer: Send + Sync {
    /// A job attempt ended with `outcome`.
    fn job_ended(&self, kind: JobKind, outcome: JobOutcome) {
        let _ = (kind, outcome);
    }

    /// A reconcile pass ended.
    fn reconciled(&self, report: &PassReport) {
        let _ = report;
    }

    /// An agent's process ended with `outcome` after running for `elapsed`.
    fn agent_ran(&self, agent: Agent, outcome: &AgentOutcome, elapsed: Duration) {
        let _ = (agent, outcome, elapsed);
    }

    /// An event changed a task.
    fn transition(&self, handled: &Handled) {
        let _ = handled;
    }

    /// A loop started, ended, or is switched off, for `/readyz`.
    fn loop_changed(&self, which: Loop, state: LoopState) {
        let _ = (which, state);
    }

    /// A loop is making progress: the event loop says so between events and at least every
    /// `RuntimeSettings::alive_every` while idle (systemd's watchdog listens).
    fn loop_alive(&self, which: Loop) {
        let _ = which;
    }
}

/// The runtime's long-running loops.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Loop {
    Events,
    AgentDispatcher,
    ActionDispatcher,
    LeaseKeeper,
    Reconciler,
    Retention,
}

impl Loop {
    pub fn as_str(self) -> &'static str {
        match self {
            Loop::Events => "event_loop",
            Loop::AgentDispatcher => "agent_dispatcher",
            Loop::ActionDispatcher => "action_dispatcher",
            Loop::LeaseKeeper => "lease_keeper",
            Loop::Reconciler => "reconciler",
            Loop::Retention => "retention",
        }
    }
}

/// Reports its loop running while it lives, and stopped when it is dropped: when the loop
/// ends for any reason, a panic included, `/readyz` goes 503.
struct Liveness {
    observer: Arc<dyn Observer>,
    which: Loop,
}

impl Liveness {
    fn running(observer: &Arc<dyn Observer>, which: Loop) -> Liveness {
        observer.loop_changed(which, LoopState::Running);
        Liveness {
            observer: observer.clone(),
            which,
        }
    }
}

impl Drop for Liveness {
    fn drop(&mut self) {
        self.observer.loop_changed(self.which, LoopState::Stopped);
    }
}

/// An observer that observes nothing.
pub struct NoObserver;

impl Observer for NoObserver {}

/// The reconciler's switches (`[reconcile]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReconcileSettings {
    pub enabled: bool,
    pub plane_enabled: bool,
    pub interval: Duration,
}

/// How the runtime runs.
#[derive(Debug, Clone)]
pub struct RuntimeSettings {
    pub boot: BootId,
    /// `worker.concurrency`: agent jobs at once.
    pub agent_concurrency: usize,
    /// `worker.per_repo_concurrency`.
    pub per_repo_concurrency: u32,
    /// Action jobs at once.
    pub action_concurrency: usize,
    pub lease: Duration,
    pub heartbeat_every: Duration,
    pub reconcile: ReconcileSettings,
    /// How long running agents may finish after a shutdown request.
    pub shutdown_grace: Duration,
    /// A safety sweep of the inbox and ended jobs, in case a wake-up was missed.
    pub sweep_every: Duration,
    /// `[retention]`; `None` deletes nothing.
    pub retention: Option<RetentionSettings>,
    /// How often an idle event loop reports itself alive (`Observer::loop_alive`) at least;
    /// `None`: every `sweep_every`.
    pub alive_every: Option<Duration>,
}

impl RuntimeSettings {
    pub fn new(boot: BootId) -> RuntimeSettings {
        RuntimeSettings {
            boot,
            agent_concurrency: 2,
            per_repo_concurrency: 1,
            action_concurrency: 4,
            lease: Duration::from_secs(60),
            heartbeat_every: Duration::from_secs(15),
            reconcile: ReconcileSettings {
                enabled: true,
                plane_enabled: true,
                interval: Duration::from_secs(60),
            },
            shutdown_grace: Duration::from_secs(30),
            sweep_every: Duration::from_secs(5),
            retention: None,
            alive_every: None,
        }
    }
}

/// Everything the runtime is built from.
pub struct RuntimeParts {
    pub ports: Ports,
    /// The reconciler's own tracker, when it should use a smaller share of Plane's budget.
    pub reconciler_tracker: Option<Arc<dyn orch_core::ports::Tracker>>,
    pub config: PipelineConfig,
    pub own_user: Option<UserId>,
    pub parser: DeliveryParser,
    pub reaper: Reaper,
    pub observer: Arc<dyn Observer>,
    pub settings: RuntimeSettings,
}

/// Why the runtime could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot reclaim the leases of earlier boots")]
    Reclaim(#[source] StoreError),
}

/// A running daemon core. Drop-safe, but call `shutdown` to finish cleanly.
pub struct Runtime {
    sink: Arc<LoopSink>,
    inbox_wake: Arc<Notify>,
    services: watch::Sender<Arc<Services>>,
    stop: watch::Sender<bool>,
    tasks: JoinSet<()>,
    ports: Ports,
}

/// The services the loops use, replaced as a whole when the configuration is reloaded.
struct Services {
    orchestrator: Orchestrator,
    executor: Executor,
    reconciler: Reconciler,
}

/// What a configuration reload replaces (everything else needs a restart).
pub struct Reconfiguration {
    pub ports: Ports,
    pub reconciler_tracker: Option<Arc<dyn orch_core::ports::Tracker>>,
    pub config: PipelineConfig,
    pub own_user: Option<UserId>,
}

impl Services {
    fn build(parts: Reconfiguration, sink: Arc<LoopSink>) -> Services {
        let Reconfiguration {
            ports,
            reconciler_tracker,
            config,
            own_user,
        } = parts;
        let mut orchestrator = Orchestrator::new(ports.clone(), config.clone());
        if let Some(user) = own_user {
            orchestrator = orchestrator.with_own_user(user);
        }
        let executor = Executor::new(ports.clone(), config.clone());
        let mut reconciler_ports = ports;
        if let Some(tracker) = reconciler_tracker {
            reconciler_ports.tracker = tracker;
        }
        let reconciler = Reconciler::new(reconciler_ports, config, sink);
        Services {
            orchestrator,
            executor,
            reconciler,
        }
    }
}

/// One command for the event loop, with a place for the answer.
struct Command {
    event: Event,
    origin: Origin,
    reply: oneshot::Sender<Result<Handled, HandleError>>,
}

/// The wake-ups shared by the loops.
#[derive(Default)]
struct Wakes {
    inbox: Arc<Notify>,
    ended: Notify,
    agents: Notify,
    actions: Notify,
}

impl Wakes {
    fn work(&self) {
        self.agents.notify_one();
        self.actions.notify_one();
    }
}

impl Runtime {
    /// Reclaims earlier boots' leases and reaps their agents, then starts the loops.
    pub async fn start(parts: RuntimeParts) -> Result<Runtime, StartError> {
        let RuntimeParts {
            ports,
            reconciler_tracker,
            config,
            own_user,
            parser,
            reaper,
            observer,
            settings,
        } = parts;
        reclaim(&ports, &settings.boot, &reaper)
            .await
            .map_err(StartError::Reclaim)?;

        let wakes = Arc::new(Wakes::default());
        let (stop, stopped) = watch::channel(false);
        let stopped_for_loop = stopped.clone();
        let (commands, receiver) = mpsc::channel(256);
        let sink = Arc::new(LoopSink { commands });
        let services = Services::build(
            Reconfiguration {
                ports: ports.clone(),
                reconciler_tracker,
                config,
                own_user,
            },
            sink.clone(),
        );
        let (services, services_watch) = watch::channel(Arc::new(services));
        let mut tasks = JoinSet::new();

        let event_loop = EventLoop {
            services: services_watch.clone(),
            ports: ports.clone(),
            parser,
            wakes: wakes.clone(),
            observer: observer.clone(),
            retries: HandlingRetries::new(),
            idle_look: settings.alive_every.map_or(settings.sweep_every, |every| {
                every.min(settings.sweep_every)
            }),
        };
        let liveness = Liveness::running(&observer, Loop::Events);
        tasks.spawn(async move {
            let _liveness = liveness;
            event_loop.run(receiver, stopped_for_loop).await;
        });

        let worker = Arc::new(Worker {
            ports: ports.clone(),
            services: services_watch.clone(),
            wakes: wakes.clone(),
            observer: observer.clone(),
            settings: settings.clone(),
            stopped: stopped.clone(),
            reaper: reaper.clone(),
        });
        let agent_slots = Arc::new(Semaphore::new(settings.agent_concurrency.max(1)));
        let action_slots = Arc::new(Semaphore::new(settings.action_concurrency.max(1)));
        let liveness = Liveness::running(&observer, Loop::AgentDispatcher);
        let agents = worker.clone().dispatch(
            ClaimKinds::Agents {
                per_repo_limit: settings.per_repo_concurrency.max(1),
            },
            agent_slots,
        );
        tasks.spawn(async move {
            let _liveness = liveness;
            agents.await;
        });
        let liveness = Liveness::running(&observer, Loop::ActionDispatcher);
        let actions = worker.dispatch(ClaimKinds::Actions, action_slots);
        tasks.spawn(async move {
            let _liveness = liveness;
            actions.await;
        });

        let liveness = Liveness::running(&observer, Loop::LeaseKeeper);
        let keeping = keep_leases(
            ports.clone(),
            settings.clone(),
            reaper,
            wakes.clone(),
            stopped.clone(),
        );
        tasks.spawn(async move {
            let _liveness = liveness;
            keeping.await;
        });

        match settings.retention.clone() {
            Some(retention) => {
                let liveness = Liveness::running(&observer, Loop::Retention);
                let pruning = retention_loop(ports.clone(), retention, stopped.clone());
                tasks.spawn(async move {
                    let _liveness = liveness;
                    pruning.await;
                });
            }
            None => observer.loop_changed(Loop::Retention, LoopState::Disabled),
        }

        if settings.reconcile.enabled {
            let liveness = Liveness::running(&observer, Loop::Reconciler);
            let reconciling = reconcile_loop(
                services_watch,
                settings.reconcile,
                observer.clone(),
                stopped,
            );
            tasks.spawn(async move {
                let _liveness = liveness;
                reconciling.await;
            });
        } else {
            // A kill switch is not a failure: the loop does not run and readiness holds.
            observer.loop_changed(Loop::Reconciler, LoopState::Disabled);
        }
        wakes.work();
        Ok(Runtime {
            sink,
            services,
            inbox_wake: wakes.inbox.clone(),
            stop,
            tasks,
            ports,
        })
    }

    /// Replaces the orchestrator, the executor and the reconciler with ones built from a
    /// reloaded configuration. The event loop switches between two events, a job already
    /// running finishes with what it started with, and the next reconcile pass uses the new
    /// projects. Concurrency and the reconcile switches keep their start-up values.
    pub fn reconfigure(&self, parts: Reconfiguration) {
        let services = Services::build(parts, self.sink.clone());
        crate::failpoint::hit(crate::failpoint::RELOAD_MID_SWAP);
        self.services.send_replace(Arc::new(services));
    }

    /// The way into the serial loop for admin commands and reconciler replays.
    pub fn sink(&self) -> Arc<dyn EventSink> {
        self.sink.clone()
    }

    /// Wake this after a delivery is stored (the HTTP ingress does).
    pub fn inbox_wake(&self) -> Arc<Notify> {
        self.inbox_wake.clone()
    }

    /// Stops intake and dispatch, lets running agents finish within the grace, hands back
    /// the rest, and records a clean shutdown.
    pub async fn shutdown(mut self) {
        let _ = self.stop.send(true);
        while self.tasks.join_next().await.is_some() {}
        let now = self.ports.clock.now();
        if let Err(err) = self.ports.store.set_last_clean_shutdown(now).await {
            warn!(error = %err, "could not record the clean shutdown");
        }
        info!("runtime stopped");
    }
}

/// The event loop's end of the command channel.
struct LoopSink {
    commands: mpsc::Sender<Command>,
}

#[async_trait]
impl EventSink for LoopSink {
    async fn submit(&self, event: Event, origin: Origin) -> Result<Handled, HandleError> {
        let (reply, answer) = oneshot::channel();
        self.commands
            .send(Command {
                event,
                origin,
                reply,
            })
            .await
            .map_err(|_| HandleError::LoopStopped)?;
        answer.await.map_err(|_| HandleError::LoopStopped)?
    }
}

/// The longest one event may be handled before it counts as failed.
/// Longer than an adapter's own call timeout (30 s), so one slow call does not trip it.
pub const HANDLE_DEADLINE: Duration = Duration::from_secs(90);

/// The serial event loop: the one place that calls the orchestrator.
struct EventLoop {
    services: watch::Receiver<Arc<Services>>,
    ports: Ports,
    parser: DeliveryParser,
    wakes: Arc<Wakes>,
    observer: Arc<dyn Observer>,
    /// Deliveries and job ends whose handling failed, and when to try each again.
    retries: HandlingRetries,
    /// The longest the loop sleeps without a wake-up: the safety sweep, or more often when
    /// a watchdog needs to hear from it.
    idle_look: Duration,
}

impl EventLoop {
    async fn run(
        mut self,
        mut commands: mpsc::Receiver<Command>,
        mut stopped: watch::Receiver<bool>,
    ) {
        loop {
            self.sweep().await;
            self.observer.loop_alive(Loop::Events);
            tokio::select! {
                command = commands.recv() => match command {
                    Some(command) => {
                        let result = self.handle(&command.event, command.origin).await;
                        let _ = command.reply.send(result);
                    }
                    None => return,
                },
                _ = self.wakes.inbox.notified() => {}
                _ = self.wakes.ended.notified() => {}
                _ = tokio::time::sleep(self.idle_look) => {}
                _ = stopped.changed() => return,
            }
        }
    }

    async fn handle(&mut self, event: &Event, origin: Origin) -> Result<Handled, HandleError> {
        // One slow outside call (Plane or Gitea retrying through an outage) must not hold the
        // serial loop: past the deadline the event counts as failed and is tried again later.
        // Whatever it had already committed stays; handlers are idempotent.
        let services = self.services.borrow().clone();
        let result = match tokio::time::timeout(
            HANDLE_DEADLINE,
            services.orchestrator.handle(event, origin),
        )
        .await
        {
            Ok(result) => result,
            Err(_) => Err(HandleError::DeadlineExceeded(HANDLE_DEADLINE)),
        };
        // A long sweep is progress too: each handled event counts.
        self.observer.loop_alive(Loop::Events);
        if let Ok(handled) = &result {
            if handled.changed {
                self.observer.transition(handled);
                self.wakes.work();
            }
        }
        result
    }

    /// Handles every pending delivery and every unhandled job end.
    async fn sweep(&mut self) {
        let store = self.ports.store.clone();
        match store.inbox_pending(500).await {
            Ok(deliveries) => {
                for delivery in deliveries {
                    let key = EventKey::Delivery(delivery.id);
                    if !self.retries.is_due(key, self.ports.clock.now()) {
                        continue;
                    }
                    let outcome = match (self.parser)(
                        delivery.source,
                        &delivery.event_type,
                        &delivery.body,
                    ) {
                        Parsed::Ignored(reason) => Some(InboxOutcome::Ignored(reason)),
                        Parsed::Event(event) => {
                            self.remote_named(&event);
                            match self.handle(&event, Origin::Webhook).await {
                                Ok(handled) if handled.changed => Some(InboxOutcome::Applied),
                                Ok(handled) => Some(InboxOutcome::NoChange(handled.note)),
                                Err(err) => self.failed(key, &err),
                            }
                        }
                    };
                    if let Some(outcome) = outcome {
                        let now = self.ports.clock.now();
                        if let Err(err) =
                            store.inbox_mark_processed(delivery.id, &outcome, now).await
                        {
                            warn!(delivery = delivery.id, error = %err, "could not mark a delivery processed");
                        }
                        self.retries.done(key);
                    }
                }
            }
            Err(err) => warn!(error = %err, "inbox not readable"),
        }
        match store.unhandled_finished_jobs(500).await {
            Ok(jobs) => {
                for job in jobs {
                    let key = EventKey::JobEnd(job.id);
                    if !self.retries.is_due(key, self.ports.clock.now()) {
                        continue;
                    }
                    match self
                        .handle(&Event::JobFinished { job: job.id }, Origin::Worker)
                        .await
                    {
                        Ok(_) => self.retries.done(key),
                        // A job's end is never given up: the task's next step depends on it.
                        Err(err) => {
                            self.failed(key, &err);
                        }
                    }
                }
            }
            Err(err) => warn!(error = %err, "ended jobs not readable"),
        }
    }

    /// A push names a repository: unless orch pushed that head itself, its mirror is marked
    /// stale before the event is handled (so a dispatch it causes fetches first) and refreshed
    /// in the background, off the dispatch path.
    fn remote_named(&self, event: &Event) {
        let Event::BranchPushed {
            repo,
            branch,
            head_sha,
        } = event
        else {
            return;
        };
        let workspace = self.ports.workspace.clone();
        if !workspace.remote_changed(repo, branch, head_sha) {
            return;
        }
        let repo = repo.clone();
        tokio::spawn(async move {
            if let Err(err) = workspace.refresh(&repo).await {
                warn!(repo = %repo, error = %err, "mirror refresh failed; the next dispatch fetches");
            }
        });
    }

    /// Records a failed handling; `Some(outcome)` when the delivery is given up.
    fn failed(&mut self, key: EventKey, err: &HandleError) -> Option<InboxOutcome> {
        let (source, id) = (key.source(), key.id());
        match self.retries.failed(key, err, self.ports.clock.now()) {
            AfterFailure::RetryAt(_) if matches!(err, HandleError::TooEarly(_)) => {
                debug!(source, id, reason = %err, "event came too early; handling it again shortly");
                None
            }
            AfterFailure::RetryAt(_) => {
                warn!(source, id, error = %err, "event not handled; will try again");
                None
            }
            AfterFailure::GiveUp(given_up @ GivenUp::Ignored(_)) => {
                // The reconciler reads the fact again from the outside when it matters.
                info!(source, id, reason = %err, "event still too early; left to the reconciler");
                Some(given_up.outcome())
            }
            AfterFailure::GiveUp(given_up) => {
                error!(source, id, error = %err, "event given up after repeated failures");
                Some(given_up.outcome())
            }
        }
    }
}

/// Claims and runs jobs.
struct Worker {
    ports: Ports,
    services: watch::Receiver<Arc<Services>>,
    wakes: Arc<Wakes>,
    observer: Arc<dyn Observer>,
    settings: RuntimeSettings,
    stopped: watch::Receiver<bool>,
    reaper: Reaper,
}

/// How often a dispatcher looks again while a due job waits for its repository's limit.
const HELD_BACK_LOOK: Duration = Duration::from_secs(2);

/// How long an idle dispatcher sleeps at most before looking again.
const IDLE_LOOK: Duration = Duration::from_secs(30);

impl Worker {
    async fn dispatch(self: Arc<Self>, kinds: ClaimKinds, slots: Arc<Semaphore>) {
        let mut stopped = self.stopped.clone();
        let mut running = JoinSet::new();
        let wake = match kinds {
            ClaimKinds::Agents { .. } => &self.wakes.agents,
            ClaimKinds::Actions => &self.wakes.actions,
        };
        loop {
            if *stopped.borrow() {
                break;
            }
            let permit = tokio::select! {
                permit = slots.clone().acquire_owned() => permit.expect("the semaphore is never closed"),
                _ = stopped.changed() => break,
            };
            let now = self.ports.clock.now();
            let request = ClaimRequest {
                owner: self.settings.boot.clone(),
                kinds,
                now,
                lease: self.settings.lease,
            };
            match self.ports.store.claim_next(&request).await {
                Ok(Some(claimed)) => {
                    let worker = self.clone();
                    running.spawn(async move {
                        let job = claimed.job.clone();
                        let attempt = claimed.attempt.clone();
                        // A panic in a job's run is a bug: it must not leave the job running
                        // until its lease expires, nor its agent behind.
                        let run = tokio::spawn({
                            let worker = worker.clone();
                            async move { worker.run(claimed).await }
                        });
                        if let Err(err) = run.await {
                            if err.is_panic() {
                                worker.panicked(&job, &attempt).await;
                            }
                        }
                        drop(permit);
                    });
                    while running.try_join_next().is_some() {}
                }
                Ok(None) => {
                    drop(permit);
                    // A job due already but not claimed waits for its repository's running
                    // agent to end, which wakes this dispatcher; meanwhile another repository's
                    // retry may come due, so look again now and then, not every few ms.
                    let now = self.ports.clock.now();
                    let wait = match self.ports.store.next_due(kinds).await {
                        Ok(Some(due)) if due > now => due.since(now).min(IDLE_LOOK),
                        Ok(Some(_)) => HELD_BACK_LOOK,
                        _ => IDLE_LOOK,
                    };
                    tokio::select! {
                        _ = wake.notified() => {}
                        _ = tokio::time::sleep(wait.max(Duration::from_millis(5))) => {}
                        _ = stopped.changed() => break,
                    }
                }
                Err(err) => {
                    drop(permit);
                    warn!(error = %err, "no job could be claimed");
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                        _ = stopped.changed() => break,
                    }
                }
            }
        }
        while running.join_next().await.is_some() {}
    }

    async fn run(&self, claimed: ClaimedJob) {
        let job = &claimed.job;
        // A job runs to its end with the services it started with, even across a reload.
        let services = self.services.borrow().clone();
        let task = match self.ports.store.task(job.task).await {
            Ok(Some(task)) => task,
            Ok(None) => {
                self.finish(
                    &claimed,
                    JobResult::Failed {
                        error: "the job's task is gone".to_owned(),
                    },
                )
                .await;
                return;
            }
            Err(err) => {
                let not_before = self.ports.clock.now() + Duration::from_secs(5);
                self.finish(
                    &claimed,
                    JobResult::Retry {
                        not_before,
                        error: err.to_string(),
                    },
                )
                .await;
                return;
            }
        };
        debug!(job = %job.id, kind = %job.kind(), task = %task.work_item, "job started");
        crate::failpoint::hit(crate::failpoint::WORKER_AFTER_CLAIM_BEFORE_SPAWN);
        let result = if job.kind().is_agent() {
            match services.executor.start_agent(&claimed, &task).await {
                Err(result) => Some(result),
                Ok(running) => {
                    crate::failpoint::hit(crate::failpoint::WORKER_AFTER_SPAWN_BEFORE_RECORD);
                    if let Some(process) = running.process() {
                        if let Err(err) = self
                            .ports
                            .store
                            .record_process(job.id, &claimed.attempt, process)
                            .await
                        {
                            warn!(job = %job.id, error = %err, "agent process not recorded");
                        }
                    }
                    let cancel = running.cancel_handle();
                    let started = tokio::time::Instant::now();
                    let outcome = self
                        .with_heartbeat(&claimed, Some(&cancel), running.wait())
                        .await;
                    match outcome {
                        Watched::Done(outcome) => {
                            crate::failpoint::hit(crate::failpoint::AGENT_AFTER_EXIT_BEFORE_RESULT);
                            if let JobKind::Agent(agent) = job.kind() {
                                self.observer.agent_ran(agent, &outcome, started.elapsed());
                            }
                            Some(
                                services
                                    .executor
                                    .finish_agent(&claimed, &task, outcome)
                                    .await,
                            )
                        }
                        Watched::Lost => None,
                        Watched::Interrupted => Some(self.hand_back()),
                    }
                }
            }
        } else {
            match self
                .with_heartbeat(
                    &claimed,
                    None,
                    services.executor.run_action(&claimed, &task),
                )
                .await
            {
                Watched::Done(result) => Some(result),
                Watched::Lost => None,
                Watched::Interrupted => Some(self.hand_back()),
            }
        };
        match result {
            Some(result) => self.finish(&claimed, result).await,
            None => {
                info!(job = %job.id, kind = %job.kind(), "job lease lost (cancelled or reclaimed); its result is dropped");
                self.wakes.work();
            }
        }
    }

    /// The run of `job` panicked: its agent (if any) is killed and the attempt ends as a
    /// failure, retried later like any other (three panics fail the job for good).
    async fn panicked(&self, job: &orch_core::domain::Job, attempt: &orch_core::ids::AttemptId) {
        error!(job = %job.id, kind = %job.kind(), "a job's worker panicked; its attempt ends as failed");
        if let Ok(Some(current)) = self.ports.store.job(job.id).await {
            if let Some(process) = current.process {
                (self.reaper)(&[process]);
            }
        }
        let error = "orch's worker panicked while running this job".to_owned();
        let result = if job.attempts >= PANICS_BEFORE_FAILING {
            JobResult::Failed { error }
        } else {
            JobResult::Retry {
                not_before: self.ports.clock.now() + self.settings.lease,
                error,
            }
        };
        let claimed = ClaimedJob {
            job: job.clone(),
            attempt: attempt.clone(),
        };
        self.finish(&claimed, result).await;
    }

    fn hand_back(&self) -> JobResult {
        JobResult::HandBack {
            error: "interrupted by shutdown".to_owned(),
        }
    }

    /// Runs `work` while extending the lease. A lost lease (the job was cancelled or
    /// reclaimed) cancels an agent; a shutdown past the grace cancels it too.
    async fn with_heartbeat<T>(
        &self,
        claimed: &ClaimedJob,
        cancel: Option<&orch_core::ports::CancelHandle>,
        work: impl std::future::Future<Output = T>,
    ) -> Watched<T> {
        tokio::pin!(work);
        let mut stopped = self.stopped.clone();
        let mut lost = false;
        let mut interrupted = false;
        let mut deadline: Option<tokio::time::Instant> = None;
        loop {
            let beat = tokio::time::sleep(self.settings.heartbeat_every);
            let grace_over = async {
                match deadline {
                    Some(deadline) => tokio::time::sleep_until(deadline).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                output = &mut work => {
                    return if lost {
                        Watched::Lost
                    } else if interrupted {
                        Watched::Interrupted
                    } else {
                        Watched::Done(output)
                    };
                }
                _ = beat => {
                    let now = self.ports.clock.now();
                    match self.ports.store.heartbeat(claimed.job.id, &claimed.attempt, now, self.settings.lease).await {
                        Ok(()) => {}
                        Err(StoreError::Conflict(_)) => {
                            lost = true;
                            match cancel {
                                Some(cancel) => cancel.cancel(),
                                None => return Watched::Lost,
                            }
                        }
                        Err(err) => warn!(job = %claimed.job.id, error = %err, "heartbeat failed"),
                    }
                }
                _ = stopped.changed(), if deadline.is_none() && cancel.is_some() => {
                    deadline = Some(tokio::time::Instant::now() + self.settings.shutdown_grace);
                }
                _ = grace_over => {
                    interrupted = true;
                    deadline = None;
                    if let Some(cancel) = cancel {
                        cancel.cancel();
                    }
                }
            }
        }
    }

    async fn finish(&self, claimed: &ClaimedJob, result: JobResult) {
        let kind = claimed.job.kind();
        let outcome = match &result {
            JobResult::Succeeded(_) => JobOutcome::Succeeded,
            JobResult::Retry { .. } | JobResult::HandBack { .. } => JobOutcome::Retried,
            JobResult::Wait { .. } => JobOutcome::Waited,
            JobResult::Failed { .. } => JobOutcome::Failed,
            JobResult::Obsolete { .. } => JobOutcome::Skipped,
        };
        match &result {
            JobResult::Retry { error, .. }
            | JobResult::Failed { error }
            | JobResult::HandBack { error } => {
                warn!(job = %claimed.job.id, kind = %kind, outcome = outcome.as_str(), error = %error, "job attempt did not succeed");
            }
            JobResult::Wait { error, service, .. } => {
                warn!(job = %claimed.job.id, kind = %kind, service = %service, error = %error, "job waits for a service to come back");
            }
            JobResult::Obsolete { reason } => {
                info!(job = %claimed.job.id, kind = %kind, reason = %reason, "job skipped: its task moved on");
            }
            JobResult::Succeeded(_) => {}
        }
        let ended = result.is_end();
        let now = self.ports.clock.now();
        match self
            .ports
            .store
            .finish_job(claimed.job.id, &claimed.attempt, result, now)
            .await
        {
            Ok(()) => {
                self.observer.job_ended(kind, outcome);
                if ended {
                    self.wakes.ended.notify_one();
                }
                // A slot (and maybe a repository's agent limit) is free, and a retry may be due.
                self.wakes.work();
            }
            Err(StoreError::Conflict(reason)) => {
                info!(job = %claimed.job.id, reason = %reason, "a stale attempt's result was rejected");
            }
            Err(err) => {
                error!(job = %claimed.job.id, error = %err, "job result not recorded; the lease will expire and the job run again")
            }
        }
    }
}

/// Attempts after which a job whose worker keeps panicking fails for good.
const PANICS_BEFORE_FAILING: u32 = 3;

/// Re-queues jobs whose lease expired or belongs to an earlier boot, and kills the agent
/// process groups they left: at start-up, and while running (a worker died, or a result
/// could not be recorded), so no job stays `running` for ever.
async fn reclaim(ports: &Ports, boot: &BootId, reaper: &Reaper) -> Result<usize, StoreError> {
    let now = ports.clock.now();
    let reclaimed = ports.store.reclaim_leases(boot, now).await?;
    let orphans: Vec<ProcessRecord> = reclaimed.iter().filter_map(|job| job.process).collect();
    if !reclaimed.is_empty() {
        info!(
            jobs = reclaimed.len(),
            orphans = orphans.len(),
            "reclaimed jobs whose lease expired or belonged to an earlier boot"
        );
    }
    reaper(&orphans);
    Ok(reclaimed.len())
}

/// Reclaims expired leases every half lease, so a job whose worker is gone runs again
/// within about one and a half leases (SPEC §4.1: within 2 × lease).
async fn keep_leases(
    ports: Ports,
    settings: RuntimeSettings,
    reaper: Reaper,
    wakes: Arc<Wakes>,
    mut stopped: watch::Receiver<bool>,
) {
    let every = (settings.lease / 2).max(Duration::from_millis(10));
    loop {
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = stopped.changed() => return,
        }
        match reclaim(&ports, &settings.boot, &reaper).await {
            Ok(0) => {}
            Ok(_) => wakes.work(),
            Err(err) => warn!(error = %err, "expired leases not reclaimed; trying again"),
        }
    }
}

/// How watched work ended.
enum Watched<T> {
    Done(T),
    /// The lease was lost: the result must not be recorded.
    Lost,
    /// Shutdown cut it short: hand the job back.
    Interrupted,
}

async fn reconcile_loop(
    services: watch::Receiver<Arc<Services>>,
    settings: ReconcileSettings,
    observer: Arc<dyn Observer>,
    mut stopped: watch::Receiver<bool>,
) {
    let side = if settings.plane_enabled {
        TrackerSide::Enabled
    } else {
        TrackerSide::Disabled
    };
    loop {
        let current = services.borrow().clone();
        let report = current.reconciler.run_once(side).await;
        info!(
            unblocked = report.unblocked.len(),
            replays = report.replays.len(),
            errors = report.errors.len(),
            "reconcile pass"
        );
        observer.reconciled(&report);
        tokio::select! {
            _ = tokio::time::sleep(settings.interval) => {}
            _ = stopped.changed() => return,
        }
    }
}

#[cfg(test)]
mod tests;
