//! The simulated world and its timeline: one seed's fakes, faults and people, a queue of
//! timed events, and the simulated services (Plane's and Gitea's webhooks, a CI).
//!
//! Every event happens at a simulated time; the scheduler pops the earliest, moves
//! `FakeClock` there, and lets it act. After each event the worker dispatches what is due
//! and the outside effects of the core's calls become webhooks. Nothing here reads a wall
//! clock or starts a thread, so a seed replays exactly.

use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap};
use std::sync::Arc;
use std::time::Duration;

use crate::config::{Grace, PipelineConfig, ProjectConfig};
use crate::domain::{CiState, StateRole};
use crate::event::{Event, Parsed};
use crate::fakes::sim::exec::block_on;
use crate::fakes::sim::faults::{
    Effect, FaultKind, FaultPlan, FaultyForge, FaultyNotifier, FaultyTracker, FaultyWorkspace,
    Ledger, Outage, Port, Shared, SimAgents,
};
use crate::fakes::sim::node::Node;
use crate::fakes::sim::people::{LostMove, Person};
use crate::fakes::sim::rng::SimRng;
use crate::fakes::sim::trace::Trace;
use crate::fakes::sim::SimConfig;
use crate::fakes::store::MemStore;
use crate::fakes::{FakeAgentRunner, FakeClock, FakeForge, FakeTracker, FakeWorkspace};
use crate::ids::{BranchName, CommitSha, IssueId, JobId, PrNumber, ProjectId, RepoSlug, UserId};
use crate::ports::{Clock, Ports, Source, StateNames, Store, WorkItem};
use crate::time::Timestamp;

/// The runtime's settings the simulation mirrors (`RuntimeSettings` in orch-daemon).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Settings {
    pub(crate) lease: Duration,
    pub(crate) heartbeat_every: Duration,
    pub(crate) agent_concurrency: usize,
    pub(crate) per_repo_concurrency: u32,
    pub(crate) action_concurrency: usize,
    pub(crate) reconcile_interval: Duration,
    /// The agent timeout (`agents.timeout_s`): a hanging agent is ended after it.
    pub(crate) agent_timeout: Duration,
}

impl Default for Settings {
    fn default() -> Settings {
        Settings {
            lease: Duration::from_secs(60),
            heartbeat_every: Duration::from_secs(15),
            agent_concurrency: 2,
            per_repo_concurrency: 1,
            action_concurrency: 4,
            reconcile_interval: Duration::from_secs(60),
            agent_timeout: Duration::from_secs(30 * 60),
        }
    }
}

/// How a seed's simulated services treat webhooks.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Webhooks {
    /// The chance a webhook never arrives.
    pub(crate) loss: f64,
    /// The chance it arrives twice (Plane: same body, new delivery id; Gitea: a redelivery).
    pub(crate) duplicate: f64,
    /// The chance it is held up (seconds to a quarter of an hour), which also reorders.
    pub(crate) delay: f64,
}

/// Where the world is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
    /// Faults, restarts and people acting at any time.
    Chaos,
    /// Faults and restarts have stopped; people only give their gate decisions; webhooks are
    /// still lost and delayed. The world must settle within the bound.
    Quiet,
}

/// One webhook on its way to orch's ingress.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Delivery {
    pub(crate) source: Source,
    pub(crate) delivery_id: String,
    /// Index into `Sim::bodies`.
    pub(crate) body: usize,
    /// Plane retries a delivery that could not reach orch (up to 5 times).
    pub(crate) attempts: u32,
}

/// What can happen at a point of simulated time.
#[derive(Debug)]
pub(crate) enum Ev {
    Boot,
    Crash,
    Deliver(Delivery),
    /// The event loop looks at the inbox and ended jobs (a retry is due).
    Sweep,
    /// A dispatcher looks for due jobs.
    Dispatch,
    /// An action's calls returned, or an agent process ended.
    JobAnswer {
        generation: u64,
        job: JobId,
    },
    AgentTimeout {
        generation: u64,
        job: JobId,
    },
    Heartbeat {
        generation: u64,
        job: JobId,
    },
    Reconcile {
        generation: u64,
    },
    KeepLeases {
        generation: u64,
    },
    PersonLooks {
        person: usize,
    },
    CiFinishes {
        repo: RepoSlug,
        sha: CommitSha,
    },
    Quiet,
}

struct Scheduled {
    at: Timestamp,
    seq: u64,
    ev: Ev,
}

impl PartialEq for Scheduled {
    fn eq(&self, other: &Scheduled) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}

impl Eq for Scheduled {}

impl PartialOrd for Scheduled {
    fn partial_cmp(&self, other: &Scheduled) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Scheduled {
    /// Reversed: `BinaryHeap` pops the earliest, and among equal times the first scheduled.
    fn cmp(&self, other: &Scheduled) -> Ordering {
        (other.at, other.seq).cmp(&(self.at, self.seq))
    }
}

/// One seed's world.
pub(crate) struct Sim {
    pub(crate) seed: u64,
    pub(crate) config: SimConfig,
    pub(crate) settings: Settings,
    pub(crate) rng: SimRng,
    pub(crate) clock: Arc<FakeClock>,
    pub(crate) start: Timestamp,
    pub(crate) quiet_at: Timestamp,
    pub(crate) deadline: Timestamp,
    pub(crate) phase: Phase,
    pub(crate) store: Arc<MemStore>,
    pub(crate) tracker: Arc<FakeTracker>,
    pub(crate) forge: Arc<FakeForge>,
    pub(crate) workspace: Arc<FakeWorkspace>,
    pub(crate) shared: Shared,
    pub(crate) ports: Ports,
    pub(crate) pipeline: PipelineConfig,
    pub(crate) project: ProjectConfig,
    pub(crate) person_user: UserId,
    pub(crate) webhooks: Webhooks,
    pub(crate) ci_failure_rate: f64,
    pub(crate) skew_ms: i64,
    pub(crate) crashes: u32,
    pub(crate) node: Option<Node>,
    pub(crate) generation: u64,
    queue: BinaryHeap<Scheduled>,
    seq: u64,
    pub(crate) trace: Trace,
    /// Every webhook body ever sent, by index (the inbox row's body names its index).
    pub(crate) bodies: Vec<Parsed>,
    next_delivery: u64,
    /// Webhooks and CI runs on their way (the world is not quiet while any is).
    pub(crate) in_flight: u64,
    pub(crate) ci_started: BTreeSet<CommitSha>,
    /// The final status CI posted for each sha.
    pub(crate) statuses: BTreeMap<CommitSha, CiState>,
    pub(crate) people: Vec<Person>,
    pub(crate) person_merges: Vec<(Timestamp, String, PrNumber)>,
    pub(crate) lost_moves: Vec<LostMove>,
    pub(crate) given_up: Vec<String>,
    pub(crate) events: u64,
    wakes: BTreeSet<(Timestamp, u8)>,
    pub(crate) settled_at: Option<Timestamp>,
    pub(crate) person_shas: u64,
    /// Jobs whose worker was lost (a crash, or a result the store could not record), and when.
    pub(crate) orphaned: BTreeMap<i64, (Timestamp, Orphaned)>,
    /// For each such job, by cause: the time until a worker claimed it again.
    pub(crate) orphan_recoveries: BTreeMap<Orphaned, Vec<Duration>>,
    /// Whether orch runs at all (a test turns it off to see the invariants fire).
    pub(crate) orch_runs: bool,
}

/// Why a job lost its worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Orphaned {
    /// The daemon was killed: the next boot reclaims the lease.
    Restart,
    /// The result could not be recorded: the lease expires while the daemon runs.
    ResultLost,
}

/// The Plane state name of `role` in a project with the default names.
pub(crate) fn state_name(role: StateRole) -> &'static str {
    match role {
        StateRole::InProgress => "In Progress",
        StateRole::Approved => "Approved",
        StateRole::Rejected => "Rejected",
        StateRole::Awaiting => "In Review",
        StateRole::Done => "Done",
        StateRole::Cancelled => "Cancelled",
    }
}

impl Sim {
    /// Builds seed `seed`'s world: the fakes behind faults, the plan, the people.
    pub(crate) fn new(seed: u64, config: SimConfig) -> Sim {
        let mut root = SimRng::new(seed);
        let mut rng = root.fork();
        let fault_rng = root.fork();
        let clock = Arc::new(FakeClock::new());
        let start = clock.now();
        let quiet_at = start + config.chaos;
        let deadline = quiet_at + config.bound;
        let project = ProjectConfig {
            key: "widgets".to_owned(),
            plane_project_id: ProjectId::new("proj-1").expect("valid id"),
            repo: RepoSlug::new("acme/widgets").expect("valid repo"),
            work_item_prefix: "ET".to_owned(),
            base_branch: BranchName::new("main").expect("valid branch"),
            states: StateNames::default(),
        };
        let pipeline = PipelineConfig {
            projects: vec![project.clone()],
            grace: Grace::uniform(Duration::from_secs(300)),
            ..PipelineConfig::default()
        };
        let plan = plan_faults(&mut rng, start, config.chaos);
        let webhooks = Webhooks {
            loss: pick_rate(&mut rng, 0.6, 0.3),
            duplicate: pick_rate(&mut rng, 0.5, 0.2),
            delay: pick_rate(&mut rng, 0.5, 0.3),
        };
        let ci_failure_rate = pick_rate(&mut rng, 0.7, 0.35);
        let skew_ms = if rng.chance(0.5) {
            rng.below(20 * 60 * 1000) as i64 - 10 * 60 * 1000
        } else {
            0
        };
        let store = Arc::new(MemStore::new());
        let tracker = Arc::new(FakeTracker::new());
        tracker.set_clock(clock.clone());
        tracker.set_skew_ms(skew_ms);
        tracker.add_project(&project.plane_project_id, &project.states);
        let forge = Arc::new(FakeForge::new());
        let workspace = Arc::new(FakeWorkspace::new().with_forge(forge.clone()));
        let agents = Arc::new(FakeAgentRunner::new(workspace.clone()));
        let shared = Shared::new(Ledger::new(plan, fault_rng), clock.clone());
        let ports = Ports {
            store: store.clone(),
            tracker: Arc::new(FaultyTracker {
                inner: tracker.clone(),
                shared: shared.clone(),
            }),
            forge: Arc::new(FaultyForge {
                inner: forge.clone(),
                shared: shared.clone(),
            }),
            workspace: Arc::new(FaultyWorkspace {
                inner: workspace.clone(),
                forge: Some(forge.clone()),
                shared: shared.clone(),
            }),
            agents: Arc::new(SimAgents {
                inner: agents,
                shared: shared.clone(),
            }),
            notifier: Arc::new(FaultyNotifier {
                shared: shared.clone(),
            }),
            clock: clock.clone(),
        };
        let trace = Trace::new(start, config.trace_tail, config.keep_trace);
        Sim {
            seed,
            settings: Settings::default(),
            rng,
            clock,
            start,
            quiet_at,
            deadline,
            phase: Phase::Chaos,
            store,
            tracker,
            forge,
            workspace,
            shared,
            ports,
            pipeline,
            project,
            person_user: UserId::new("ada").expect("valid id"),
            webhooks,
            ci_failure_rate,
            skew_ms,
            crashes: 0,
            node: None,
            generation: 0,
            queue: BinaryHeap::new(),
            seq: 0,
            trace,
            bodies: Vec::new(),
            next_delivery: 0,
            in_flight: 0,
            ci_started: BTreeSet::new(),
            statuses: BTreeMap::new(),
            people: Vec::new(),
            person_merges: Vec::new(),
            lost_moves: Vec::new(),
            given_up: Vec::new(),
            events: 0,
            wakes: BTreeSet::new(),
            settled_at: None,
            person_shas: 0,
            orphaned: BTreeMap::new(),
            orphan_recoveries: BTreeMap::new(),
            orch_runs: true,
            config,
        }
    }

    pub(crate) fn now(&self) -> Timestamp {
        self.clock.now()
    }

    pub(crate) fn schedule(&mut self, at: Timestamp, ev: Ev) {
        if matches!(ev, Ev::Deliver(_) | Ev::CiFinishes { .. }) {
            self.in_flight += 1;
        }
        self.seq += 1;
        self.queue.push(Scheduled {
            at,
            seq: self.seq,
            ev,
        });
    }

    /// Schedules a sweep or dispatch at `at` unless one is scheduled for then already.
    pub(crate) fn wake(&mut self, at: Timestamp, ev: Ev) {
        let kind = match ev {
            Ev::Sweep => 0,
            _ => 1,
        };
        if self.wakes.insert((at, kind)) {
            self.schedule(at, ev);
        }
    }

    /// Adds a trace line (after the fault notes the wrappers left, which happened first).
    pub(crate) fn note(&mut self, text: impl AsRef<str>) {
        let now = self.now();
        let notes = std::mem::take(&mut self.shared.lock().notes);
        for note in notes {
            self.trace.push(now, note);
        }
        self.trace.push(now, text);
    }

    /// Runs the seed to its end: settled after the chaos phase, or the bound passed.
    pub(crate) fn run(&mut self) {
        self.setup();
        while let Some(next) = self.queue.pop() {
            if next.at > self.deadline {
                break;
            }
            if next.at > self.now() {
                self.clock.set(next.at);
            }
            self.events += 1;
            // Only these can write jobs (or make one due): the others skip the dispatcher.
            let may_write_jobs = !matches!(
                next.ev,
                Ev::PersonLooks { .. } | Ev::CiFinishes { .. } | Ev::Quiet | Ev::Crash
            );
            self.step(next.ev);
            if may_write_jobs {
                self.after_step();
            } else {
                self.drain_ledger();
            }
            if self.settled_at.is_some() {
                break;
            }
        }
    }

    fn setup(&mut self) {
        self.note(format!(
            "seed {}: {} items, skew {} s, webhooks lost {:.2} duplicated {:.2} delayed {:.2}, ci failures {:.2}",
            self.seed,
            self.config.items,
            self.skew_ms / 1000,
            self.webhooks.loss,
            self.webhooks.duplicate,
            self.webhooks.delay,
            self.ci_failure_rate
        ));
        let plan = self.shared.lock().plan.clone();
        for outage in &plan.outages {
            let text = format!(
                "planned outage of {} from {} to {}",
                outage.port.as_str(),
                self.trace.offset(outage.from),
                self.trace.offset(outage.until)
            );
            self.note(text);
        }
        let backlog = FakeTracker::state_id_for(&self.project.plane_project_id, "Backlog");
        for index in 0..self.config.items {
            let sequence = u32::try_from(index + 1).expect("few items");
            let item = WorkItem {
                id: IssueId::new(format!("issue-{sequence}")).expect("valid id"),
                project: self.project.plane_project_id.clone(),
                sequence_id: sequence,
                title: format!("Item number {sequence}"),
                description: format!("Do thing {sequence}"),
                state: backlog.clone(),
                updated_at: self.tracker.plane_now(),
            };
            self.tracker.put_item(item.clone());
            self.people.push(Person::new(&item, &self.project));
            let first = self.start + self.rng.exp(Duration::from_secs(10 * 60));
            self.schedule(first, Ev::PersonLooks { person: index });
        }
        if self.rng.chance(0.5) {
            let crashes = 1 + self.rng.below(3);
            for _ in 0..crashes {
                let at = self.start + self.rng.between(Duration::ZERO, self.config.chaos);
                self.schedule(at, Ev::Crash);
            }
        }
        self.schedule(self.quiet_at, Ev::Quiet);
        if self.orch_runs {
            self.schedule(self.start, Ev::Boot);
        }
    }

    fn step(&mut self, ev: Ev) {
        match ev {
            Ev::Boot => self.boot(),
            Ev::Crash => self.crash(),
            Ev::Deliver(delivery) => {
                self.in_flight -= 1;
                self.ingress(delivery);
            }
            Ev::Sweep => {
                self.wakes.remove(&(self.now(), 0));
                self.sweep();
            }
            Ev::Dispatch => {
                self.wakes.remove(&(self.now(), 1));
            }
            Ev::JobAnswer { generation, job } => self.job_answer(generation, job),
            Ev::AgentTimeout { generation, job } => self.agent_timeout(generation, job),
            Ev::Heartbeat { generation, job } => self.heartbeat(generation, job),
            Ev::Reconcile { generation } => {
                if self.node_generation() == Some(generation) {
                    self.reconcile();
                    let next = self.now() + self.settings.reconcile_interval;
                    self.schedule(next, Ev::Reconcile { generation });
                    // The reconciler gets one full tracker pass after the chaos before the
                    // world counts as settled: a lost webhook is found by then.
                    let patience = self.pipeline.full_pass_every
                        + self.pipeline.grace.largest()
                        + self.settings.reconcile_interval * 2;
                    let waited = self.now().since(self.quiet_at) >= patience;
                    if self.phase == Phase::Quiet && waited && self.settled() {
                        self.settled_at = Some(self.now());
                        self.note("settled");
                    }
                }
            }
            Ev::KeepLeases { generation } => self.keep_leases(generation),
            Ev::PersonLooks { person } => {
                self.person_looks(person);
                let mean = match self.phase {
                    Phase::Chaos => Duration::from_secs(20 * 60),
                    Phase::Quiet => Duration::from_secs(10 * 60),
                };
                let next = self.now() + self.rng.exp(mean).max(Duration::from_secs(1));
                self.schedule(next, Ev::PersonLooks { person });
            }
            Ev::CiFinishes { repo, sha } => {
                self.in_flight -= 1;
                self.ci_finishes(repo, sha);
            }
            Ev::Quiet => {
                self.phase = Phase::Quiet;
                self.shared.lock().faults_on = false;
                self.note("quiet: faults, restarts and people's chaos stop");
            }
        }
    }

    fn node_generation(&self) -> Option<u64> {
        self.node.as_ref().map(|node| node.generation)
    }

    /// Moves the wrappers' notes into the trace, turns outside effects into webhooks, and
    /// lets the worker claim what is due, until nothing new happens.
    fn after_step(&mut self) {
        loop {
            self.drain_ledger();
            if !self.dispatch() {
                break;
            }
        }
        self.drain_ledger();
        self.schedule_dispatch_wake();
    }

    pub(crate) fn drain_ledger(&mut self) {
        let (notes, effects) = {
            let mut ledger = self.shared.lock();
            (
                std::mem::take(&mut ledger.notes),
                std::mem::take(&mut ledger.effects),
            )
        };
        for note in notes {
            self.note(note);
        }
        for effect in effects {
            match effect {
                Effect::Pushed { repo, branch, sha } => {
                    self.emit(
                        Source::Gitea,
                        Parsed::Event(Event::BranchPushed {
                            repo: repo.clone(),
                            branch,
                            head_sha: sha.clone(),
                        }),
                    );
                    self.ci_starts(repo, sha);
                }
                Effect::PullClosed {
                    repo,
                    number,
                    merged,
                } => {
                    self.emit(
                        Source::Gitea,
                        Parsed::Event(Event::PullRequestClosed {
                            repo,
                            number,
                            merged,
                        }),
                    );
                }
                Effect::PlaneMoved { item } => {
                    let own = self.tracker.own_user();
                    self.emit(
                        Source::Plane,
                        Parsed::Event(Event::WorkItemMoved {
                            item,
                            actor: Some(own),
                        }),
                    );
                }
            }
        }
    }

    // --- the simulated services ---

    /// A service sends a webhook: lost, delayed, duplicated as the seed says. Returns whether
    /// at least one delivery is on its way.
    pub(crate) fn emit(&mut self, source: Source, parsed: Parsed) -> bool {
        let body = self.bodies.len();
        let what = describe_parsed(&parsed);
        self.bodies.push(parsed);
        if self.rng.chance(self.webhooks.loss) {
            self.note(format!("webhook lost: {} {what}", source.as_str()));
            return false;
        }
        let delay = if self.rng.chance(self.webhooks.delay) {
            self.rng
                .between(Duration::from_secs(10), Duration::from_secs(15 * 60))
        } else {
            self.rng
                .between(Duration::from_millis(20), Duration::from_millis(800))
        };
        let delivery_id = self.delivery_id(source);
        let at = self.now() + delay;
        self.schedule(
            at,
            Ev::Deliver(Delivery {
                source,
                delivery_id: delivery_id.clone(),
                body,
                attempts: 1,
            }),
        );
        if self.rng.chance(self.webhooks.duplicate) {
            let again = match source {
                // Plane retries the same body under a new delivery id.
                Source::Plane => self.delivery_id(source),
                // A manual redelivery in Gitea keeps the id.
                Source::Gitea => delivery_id,
            };
            let later = at
                + self
                    .rng
                    .between(Duration::from_secs(1), Duration::from_secs(600));
            self.schedule(
                later,
                Ev::Deliver(Delivery {
                    source,
                    delivery_id: again,
                    body,
                    attempts: 1,
                }),
            );
        }
        true
    }

    fn delivery_id(&mut self, source: Source) -> String {
        self.next_delivery += 1;
        format!("{}-{}", source.as_str(), self.next_delivery)
    }

    /// CI starts on a pushed head (once per sha) and reports pending.
    pub(crate) fn ci_starts(&mut self, repo: RepoSlug, sha: CommitSha) {
        if !self.ci_started.insert(sha.clone()) {
            return;
        }
        self.forge.set_status(&repo, &sha, CiState::Pending);
        self.emit(
            Source::Gitea,
            Parsed::Event(Event::CiStatusReported {
                repo: repo.clone(),
                sha: sha.clone(),
                state: CiState::Pending,
            }),
        );
        let at = self.now()
            + self
                .rng
                .between(Duration::from_secs(60), Duration::from_secs(15 * 60));
        self.schedule(at, Ev::CiFinishes { repo, sha });
    }

    fn ci_finishes(&mut self, repo: RepoSlug, sha: CommitSha) {
        let state = if self.rng.chance(self.ci_failure_rate) {
            CiState::Failure
        } else {
            CiState::Success
        };
        self.note(format!("ci {} at {}", ci_word(state), sha.short()));
        self.forge.set_status(&repo, &sha, state);
        self.statuses.insert(sha.clone(), state);
        self.emit(
            Source::Gitea,
            Parsed::Event(Event::CiStatusReported { repo, sha, state }),
        );
    }

    /// Whether nothing is left to happen: every item has ended, no job or delivery waits.
    pub(crate) fn settled(&mut self) -> bool {
        if self.in_flight > 0 {
            return false;
        }
        let Some(node) = &self.node else {
            return false;
        };
        if !node.running.is_empty() || !node.retries.is_empty() {
            return false;
        }
        let pending = block_on(self.store.inbox_pending(1)).expect("the fake store works");
        if !pending.is_empty() {
            return false;
        }
        let snapshot = block_on(self.store.queue_snapshot()).expect("the fake store works");
        if snapshot.queued > 0 || !snapshot.running.is_empty() {
            return false;
        }
        (0..self.people.len()).all(|index| self.item_has_ended(index))
    }

    fn item_has_ended(&self, index: usize) -> bool {
        let person = &self.people[index];
        let task = block_on(self.store.task_by_issue(&person.issue)).expect("the fake store works");
        match task {
            None => {
                let in_progress = FakeTracker::state_id_for(
                    &self.project.plane_project_id,
                    state_name(StateRole::InProgress),
                );
                self.tracker
                    .item(&person.issue)
                    .is_none_or(|item| item.state != in_progress)
            }
            Some(task) => task.stage.is_terminal() || task.status.is_blocked(),
        }
    }

    pub(crate) fn count_fault(&self, kind: FaultKind) {
        self.shared.lock().count(kind);
    }
}

/// A rate in `[0, high]` with probability `p`, else 0.
fn pick_rate(rng: &mut SimRng, p: f64, high: f64) -> f64 {
    if rng.chance(p) {
        rng.unit() * high
    } else {
        0.0
    }
}

/// The seed's faults: per-port rates, outage windows, lost results, 405s, agent trouble.
fn plan_faults(rng: &mut SimRng, start: Timestamp, chaos: Duration) -> FaultPlan {
    let mut plan = FaultPlan::default();
    for port in Port::ALL {
        plan.rates.insert(port, pick_rate(rng, 0.5, 0.2));
        if rng.chance(0.35) {
            let length = if rng.chance(0.15) {
                rng.between(Duration::from_secs(2 * 3600), Duration::from_secs(4 * 3600))
            } else {
                rng.exp(Duration::from_secs(20 * 60))
                    .clamp(Duration::from_secs(60), Duration::from_secs(2 * 3600))
            };
            let from = start + rng.between(Duration::ZERO, chaos);
            let retry_after = rng
                .chance(0.5)
                .then(|| rng.between(Duration::from_secs(30), Duration::from_secs(300)));
            plan.outages.push(Outage {
                port,
                from,
                until: from + length,
                retry_after,
            });
        }
    }
    plan.result_lost_rate = pick_rate(rng, 0.3, 0.03);
    plan.try_later_rate = pick_rate(rng, 0.3, 0.4);
    plan.agent_bad_rate = pick_rate(rng, 0.7, 0.15);
    plan
}

fn ci_word(state: CiState) -> &'static str {
    match state {
        CiState::Pending => "pending",
        CiState::Success => "success",
        CiState::Failure => "failure",
    }
}

/// A short description of a webhook's content, for the trace.
pub(crate) fn describe_parsed(parsed: &Parsed) -> String {
    match parsed {
        Parsed::Ignored(reason) => format!("(ignored: {reason})"),
        Parsed::Event(event) => describe_event(event),
    }
}

/// A short description of an event, for the trace.
pub(crate) fn describe_event(event: &Event) -> String {
    match event {
        Event::WorkItemMoved { item, actor } => format!(
            "#{} moved to {} by {}",
            item.sequence_id,
            item.state.as_str().trim_start_matches("proj-1-"),
            actor.as_ref().map_or("?", |actor| actor.as_str())
        ),
        Event::CommentAdded { issue, .. } => format!("comment on {issue}"),
        Event::CiStatusReported { sha, state, .. } => {
            format!("status {} at {}", ci_word(*state), sha.short())
        }
        Event::BranchPushed {
            branch, head_sha, ..
        } => format!("push {branch} at {}", head_sha.short()),
        Event::PullRequestClosed { number, merged, .. } => {
            format!("pull {number} closed (merged: {merged})")
        }
        Event::JobFinished { job } => format!("job {job} finished"),
        Event::ForgeObserved {
            task,
            head_sha,
            report,
        } => format!(
            "forge observed for task {task} at {}: gate {}",
            head_sha.as_ref().map_or("-", CommitSha::short),
            if report.green { "green" } else { "red" }
        ),
        Event::ServiceDegraded { service, jobs, .. } => {
            format!("{service} degraded ({jobs} jobs waiting)")
        }
        other => format!("{other:?}"),
    }
}
