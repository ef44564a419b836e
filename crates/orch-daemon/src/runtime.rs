//! The running daemon over any adapters: the serial event loop, the worker and the
//! reconciler loop, with boot-time lease reclaim and orphan reaping, and graceful shutdown.
//!
//! Only the event loop calls the `Orchestrator`; the inbox, the worker, the reconciler and
//! admin commands feed it. The worker is woken when a transition writes jobs, never polled.
//!
//! This file holds what the loops share and how they start: the public types (`Runtime`,
//! `RuntimeParts`, `RuntimeSettings`, `Observer`, `Loop`), each loop's `Liveness`, the
//! `Services` a reload swaps and the `Wakes` between the loops. The loops themselves:
//! - `event_loop`: the serial event loop, the only caller of the orchestrator, and the
//!   `LoopSink` through which admin commands and reconciler replays reach it;
//! - `worker`: the dispatchers that claim and run jobs under a heartbeat, the boot-time
//!   `reclaim` and the lease keeper (`keep_leases`);
//! - `reconcile`: the reconciler loop.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch, Notify, Semaphore};
use tokio::task::JoinSet;
use tracing::{info, warn};

use orch_core::config::PipelineConfig;
use orch_core::domain::{Agent, JobKind, ProcessRecord};
use orch_core::event::Parsed;
use orch_core::ids::{BootId, UserId};
use orch_core::orchestrator::{EventSink, Handled, Orchestrator};
use orch_core::ports::{AgentOutcome, ClaimKinds, Ports, Source, StoreError};
use orch_core::reconciler::{PassReport, Reconciler};
use orch_core::retries::HandlingRetries;
use orch_core::Executor;
use orch_http::{JobOutcome, LoopState};

use crate::retention::{retention_loop, RetentionSettings};

mod event_loop;
mod reconcile;
mod worker;

pub use crate::runtime::event_loop::HANDLE_DEADLINE;
use crate::runtime::event_loop::{EventLoop, LoopSink};
use crate::runtime::reconcile::reconcile_loop;
use crate::runtime::worker::{keep_leases, reclaim, Worker};

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
            refreshes: tokio::task::JoinSet::new(),
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

#[cfg(test)]
mod tests;
