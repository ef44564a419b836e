//! The runtime over the fakes: webhooks through the inbox, jobs through the worker.

use std::sync::Arc;
use std::time::{Duration, Instant};

use orch_core::domain::{CiState, Stage, StateRole, TaskStatus};
use orch_core::event::{Event, Origin, Parsed};
use orch_core::fakes::World;
use orch_core::ids::{BootId, IssueId};
use orch_core::ports::{InboxOutcome, NewDelivery, Source, Store};

use crate::runtime::{NoObserver, Runtime, RuntimeParts, RuntimeSettings};

/// How long a test waits for the runtime to converge.
const CONVERGE: Duration = Duration::from_secs(10);

/// A parser for test deliveries: `issue-id role` moves the item in the fake tracker.
fn parser(world: &World) -> crate::runtime::DeliveryParser {
    let tracker = world.tracker.clone();
    let person = world.person.clone();
    Arc::new(move |_source, _event_type, body| {
        let text = String::from_utf8_lossy(body);
        let Some((issue, state)) = text.split_once(' ') else {
            return Parsed::Ignored("not a test delivery".to_owned());
        };
        let issue = IssueId::new(issue).expect("test issue id");
        let mut item = tracker.item(&issue).expect("item exists");
        item.state = orch_core::ids::StateId::new(state).expect("state id");
        Parsed::Event(Event::WorkItemMoved {
            item,
            actor: Some(person.clone()),
        })
    })
}

fn start_parts(world: &World) -> RuntimeParts {
    let mut settings = RuntimeSettings::new(BootId::new("test-boot").expect("valid"));
    settings.reconcile.enabled = false;
    settings.sweep_every = Duration::from_millis(50);
    RuntimeParts {
        ports: world.ports.clone(),
        reconciler_tracker: None,
        config: world.config.clone(),
        own_user: Some(world.tracker.own_user()),
        parser: parser(world),
        reaper: Arc::new(|_| {}),
        observer: Arc::new(NoObserver),
        settings,
    }
}

async fn deliver(
    world: &World,
    runtime: &Runtime,
    item: &orch_core::ports::WorkItem,
    role: StateRole,
    n: u32,
) {
    let state = world.state_of_role(item, role);
    world
        .tracker
        .move_item(&item.id, state.clone(), world.clock_now());
    let body = format!("{} {}", item.id, state).into_bytes();
    let delivery = NewDelivery {
        source: Source::Plane,
        delivery_id: format!("delivery-{n}"),
        event_type: "issue".to_owned(),
        body_sha256: format!("{:064x}", n),
        body,
        received_at: world.clock_now(),
    };
    world.store.inbox_insert(delivery).await.expect("stored");
    runtime.inbox_wake().notify_one();
}

async fn wait_for(
    world: &World,
    item: &orch_core::ports::WorkItem,
    what: &str,
    done: impl Fn(&orch_core::domain::Task) -> bool,
) {
    let deadline = Instant::now() + CONVERGE;
    loop {
        if let Some(task) = world
            .store
            .task_by_issue(&item.id)
            .await
            .expect("store works")
        {
            if done(&task) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}: {:?} {:?}",
                task.stage,
                task.status
            );
        } else {
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}: no task"
            );
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deliveries_in_the_inbox_drive_an_item_to_merged_through_the_worker() {
    let world = World::new();
    let item = world.add_item(1, "Through the runtime");
    let runtime = Runtime::start(start_parts(&world)).await.expect("starts");
    deliver(&world, &runtime, &item, StateRole::InProgress, 1).await;
    wait_for(&world, &item, "the analysis", |task| {
        task.status == TaskStatus::AwaitingVerdict
    })
    .await;
    deliver(&world, &runtime, &item, StateRole::Approved, 2).await;
    wait_for(&world, &item, "the pull request", |task| task.pr.is_some()).await;
    let task = world.task(&item).await;
    world.forge.set_status(
        &task.repo,
        task.head_sha.as_ref().expect("head"),
        CiState::Success,
    );
    let sink = runtime.sink();
    let event = Event::CiStatusReported {
        repo: task.repo.clone(),
        sha: task.head_sha.clone().expect("head"),
        state: CiState::Success,
    };
    sink.submit(event, Origin::Webhook).await.expect("handled");
    wait_for(&world, &item, "the review", |task| {
        task.stage == Stage::Review && task.status == TaskStatus::AwaitingVerdict
    })
    .await;
    deliver(&world, &runtime, &item, StateRole::Approved, 3).await;
    wait_for(&world, &item, "the merge", |task| task.stage == Stage::Done).await;
    runtime.shutdown().await;
    assert_eq!(world.forge.merges().len(), 1);
    assert_eq!(
        world
            .store
            .inbox_stats(world.clock_now())
            .await
            .expect("store works")
            .pending,
        0
    );
    assert!(world
        .store
        .last_clean_shutdown()
        .await
        .expect("store works")
        .is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_duplicate_delivery_is_processed_and_changes_nothing() {
    let world = World::new();
    let item = world.add_item(1, "Duplicate");
    let runtime = Runtime::start(start_parts(&world)).await.expect("starts");
    deliver(&world, &runtime, &item, StateRole::InProgress, 1).await;
    wait_for(&world, &item, "the analysis", |task| {
        task.status == TaskStatus::AwaitingVerdict
    })
    .await;
    deliver(&world, &runtime, &item, StateRole::Approved, 2).await;
    deliver(&world, &runtime, &item, StateRole::Approved, 3).await;
    wait_for(&world, &item, "the pull request", |task| task.pr.is_some()).await;
    runtime.shutdown().await;
    let developers = world
        .agents
        .requests()
        .iter()
        .filter(|r| r.agent == orch_core::domain::Agent::Developer)
        .count();
    assert_eq!(developers, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reloaded_config_applies_to_the_next_event() {
    let world = World::with_projects(2);
    let mut parts = start_parts(&world);
    let full_config = parts.config.clone();
    parts.config.projects.truncate(1);
    let runtime = Runtime::start(parts).await.expect("starts");
    let item = world.add_item_in(1, 1, "In the second project");
    let state = world.state_of_role(&item, StateRole::InProgress);
    let moved = world
        .tracker
        .move_item(&item.id, state, world.clock_now())
        .expect("moved");
    let event = Event::WorkItemMoved {
        item: moved.clone(),
        actor: Some(world.person.clone()),
    };
    let before = runtime
        .sink()
        .submit(event.clone(), Origin::Webhook)
        .await
        .expect("handled");
    assert!(!before.changed, "the second project is not configured yet");
    runtime.reconfigure(crate::runtime::Reconfiguration {
        ports: world.ports.clone(),
        reconciler_tracker: None,
        config: full_config,
        own_user: Some(world.tracker.own_user()),
    });
    let after = runtime
        .sink()
        .submit(event, Origin::Webhook)
        .await
        .expect("handled");
    assert!(after.changed, "{}", after.note);
    runtime.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_hands_an_interrupted_agent_job_back_without_counting_the_attempt() {
    let world = World::new();
    let item = world.add_item(1, "Long analysis");
    world.agents.script(
        &world.task_work_item(1),
        orch_core::domain::Agent::Analyst,
        &[orch_core::fakes::FakeStep::Hang],
    );
    let mut parts = start_parts(&world);
    parts.settings.shutdown_grace = Duration::from_millis(100);
    let runtime = Runtime::start(parts).await.expect("starts");
    deliver(&world, &runtime, &item, StateRole::InProgress, 1).await;
    let deadline = Instant::now() + CONVERGE;
    let job = loop {
        let task = world
            .store
            .task_by_issue(&item.id)
            .await
            .expect("store works");
        if let Some(task) = task {
            let jobs = world.store.jobs_of_task(task.id).await.expect("jobs");
            if let Some(job) = jobs
                .into_iter()
                .find(|job| job.status == orch_core::domain::JobStatus::Running)
            {
                break job;
            }
        }
        assert!(Instant::now() < deadline, "the analyst never ran");
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    runtime.shutdown().await;
    let after = world
        .store
        .job(job.id)
        .await
        .expect("store works")
        .expect("job");
    assert_eq!(after.status, orch_core::domain::JobStatus::Queued);
    assert_eq!(
        after.attempts, 0,
        "a shutdown does not use up one of the agent's attempts"
    );
}

/// Readiness as the daemon keeps it, fed by the runtime's loop reports.
struct ReadinessObserver(orch_http::Readiness);

impl crate::runtime::Observer for ReadinessObserver {
    fn loop_changed(&self, which: crate::runtime::Loop, state: orch_http::LoopState) {
        self.0.set_loop(which.as_str(), state);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_reconciler_switched_off_keeps_orch_ready_and_a_loop_that_dies_does_not() {
    let world = World::new();
    let readiness = orch_http::Readiness::default();
    readiness.set_migrations_applied(true);
    let mut parts = start_parts(&world);
    assert!(!parts.settings.reconcile.enabled);
    parts.observer = Arc::new(ReadinessObserver(readiness.clone()));
    // A parser bug: this delivery makes the event loop panic.
    parts.parser = Arc::new(|_source, _event_type, body| {
        assert!(body != b"boom", "a parser bug");
        Parsed::Ignored("test delivery".to_owned())
    });
    let runtime = Runtime::start(parts).await.expect("starts");
    assert!(
        readiness.is_ready(),
        "every configured loop runs: {:?}",
        readiness.loops()
    );
    assert!(readiness
        .loops()
        .contains(&("reconciler", orch_http::LoopState::Disabled)));

    let delivery = NewDelivery {
        source: Source::Plane,
        delivery_id: "boom".to_owned(),
        event_type: "issue".to_owned(),
        body_sha256: format!("{:064x}", 1),
        body: b"boom".to_vec(),
        received_at: world.clock_now(),
    };
    world.store.inbox_insert(delivery).await.expect("stored");
    runtime.inbox_wake().notify_one();
    let deadline = Instant::now() + CONVERGE;
    while readiness.is_ready() {
        assert!(
            Instant::now() < deadline,
            "the event loop died but readiness holds"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(readiness
        .loops()
        .contains(&("event_loop", orch_http::LoopState::Stopped)));
    runtime.shutdown().await;
}

/// Waits until `item`'s task awaits its analysis verdict, moving the fake clock on 50 ms
/// at each look so leases expire and backoffs come due; fails after `CONVERGE`.
async fn converge(world: &World, item: &orch_core::ports::WorkItem, what: &str) {
    let deadline = Instant::now() + CONVERGE;
    loop {
        let task = world
            .store
            .task_by_issue(&item.id)
            .await
            .expect("store works");
        if task
            .as_ref()
            .is_some_and(|task| task.status == TaskStatus::AwaitingVerdict)
        {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}: {:?}",
            task.map(|task| (task.stage, task.status))
        );
        world.clock.advance(Duration::from_millis(50));
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_whose_result_could_not_be_recorded_runs_again_while_the_daemon_runs() {
    let world = World::new();
    let item = world.add_item(1, "Result lost once");
    let mut parts = start_parts(&world);
    parts.settings.lease = Duration::from_millis(300);
    parts.settings.heartbeat_every = Duration::from_millis(100);
    // The analyst's result cannot be written: the job stays `running` with a lease nobody
    // renews. The lease keeper reclaims it without a restart.
    world.store.fail_next_job_finishes(1);
    let runtime = Runtime::start(parts).await.expect("starts");
    deliver(&world, &runtime, &item, StateRole::InProgress, 1).await;
    converge(&world, &item, "the analyst to run again and succeed").await;
    let task = world.task(&item).await;
    let analyst = world
        .store
        .jobs_of_task(task.id)
        .await
        .expect("jobs")
        .into_iter()
        .find(|job| {
            job.kind() == orch_core::domain::JobKind::Agent(orch_core::domain::Agent::Analyst)
        })
        .expect("analyst job");
    assert_eq!(analyst.status, orch_core::domain::JobStatus::Succeeded);
    assert_eq!(
        analyst.attempts, 2,
        "the lost attempt and the one that counted"
    );
    runtime.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_worker_ends_its_attempt_and_the_job_runs_again() {
    let world = World::new();
    let item = world.add_item(1, "Worker panics once");
    world.agents.script(
        &world.task_work_item(1),
        orch_core::domain::Agent::Analyst,
        &[orch_core::fakes::FakeStep::Panic],
    );
    let mut parts = start_parts(&world);
    parts.settings.lease = Duration::from_millis(300);
    let readiness = orch_http::Readiness::default();
    readiness.set_migrations_applied(true);
    parts.observer = Arc::new(ReadinessObserver(readiness.clone()));
    let runtime = Runtime::start(parts).await.expect("starts");
    deliver(&world, &runtime, &item, StateRole::InProgress, 1).await;
    converge(&world, &item, "the analyst to run again after the panic").await;
    assert!(
        readiness.is_ready(),
        "a job's panic does not take a loop down: {:?}",
        readiness.loops()
    );
    runtime.shutdown().await;
}

/// Counts the event loop's signs of life (what systemd's watchdog hears).
#[derive(Default)]
struct AliveCounter {
    events: std::sync::atomic::AtomicU32,
}

impl crate::runtime::Observer for AliveCounter {
    fn loop_alive(&self, which: crate::runtime::Loop) {
        if which == crate::runtime::Loop::Events {
            self.events
                .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_event_loop_reports_itself_alive_every_alive_every() {
    let world = World::new();
    let counter = Arc::new(AliveCounter::default());
    let mut parts = start_parts(&world);
    parts.settings.sweep_every = Duration::from_secs(600);
    parts.settings.alive_every = Some(Duration::from_millis(20));
    parts.observer = counter.clone();
    let runtime = Runtime::start(parts).await.expect("starts");
    let deadline = Instant::now() + CONVERGE;
    while counter.events.load(std::sync::atomic::Ordering::SeqCst) < 5 {
        assert!(
            Instant::now() < deadline,
            "the idle loop fell silent: its sweep is 10 minutes away"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    runtime.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_retention_loop_prunes_at_start_up() {
    use orch_core::ports::InboxInsert;

    let world = World::new();
    let delivery = || NewDelivery {
        source: Source::Gitea,
        delivery_id: "old".to_owned(),
        event_type: "push".to_owned(),
        body_sha256: format!("{:064x}", 7),
        body: b"not a test delivery".to_vec(),
        received_at: world.clock_now(),
    };
    let InboxInsert::Queued(id) = world.store.inbox_insert(delivery()).await.expect("insert")
    else {
        panic!("a new delivery is queued");
    };
    world
        .store
        .inbox_mark_processed(id, &InboxOutcome::Applied, world.clock_now())
        .await
        .expect("processed");
    world.clock.advance(Duration::from_secs(1));
    let mut parts = start_parts(&world);
    parts.settings.retention = Some(crate::retention::RetentionSettings {
        interval: Duration::from_secs(3600),
        deliveries: Duration::from_millis(500),
        jobs: Duration::from_millis(500),
        history: Duration::from_millis(500),
        agent_logs: Duration::from_millis(500),
        logs_dir: None,
    });
    let runtime = Runtime::start(parts).await.expect("starts");
    let deadline = Instant::now() + CONVERGE;
    // While the processed delivery is kept, the same one is a duplicate.
    while world.store.inbox_insert(delivery()).await.expect("insert") == InboxInsert::Duplicate {
        assert!(Instant::now() < deadline, "the delivery was never pruned");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    runtime.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backlog_longer_than_a_sweep_is_processed_without_waiting_for_the_safety_sweep() {
    let world = World::new();
    // Stored before the loop starts and never woken for: more than two sweeps' pages of 500.
    store_ignored_backlog(&world).await;
    let mut parts = start_parts(&world);
    parts.settings.sweep_every = Duration::from_secs(3600);
    let runtime = Runtime::start(parts).await.expect("starts");
    wait_until_processed(&world, "the backlog waited for the safety sweep").await;
    runtime.shutdown().await;
}

/// Stores 1 200 deliveries the parser ignores.
async fn store_ignored_backlog(world: &World) {
    for n in 0..1200_u32 {
        let delivery = NewDelivery {
            source: Source::Plane,
            delivery_id: format!("backlog-{n}"),
            event_type: "issue".to_owned(),
            body_sha256: format!("{n:064x}"),
            body: b"ignored".to_vec(),
            received_at: world.clock_now(),
        };
        world.store.inbox_insert(delivery).await.expect("stored");
    }
}

/// Waits until the inbox holds no pending delivery; panics with `failure` past `CONVERGE`.
async fn wait_until_processed(world: &World, failure: &str) {
    let deadline = Instant::now() + CONVERGE;
    while !world
        .store
        .inbox_pending(1)
        .await
        .expect("pending")
        .is_empty()
    {
        assert!(Instant::now() < deadline, "{failure}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_of_processed_deliveries_is_marked_in_one_store_write() {
    let world = World::new();
    // Three sweeps' pages of at most 500.
    store_ignored_backlog(&world).await;
    let runtime = Runtime::start(start_parts(&world)).await.expect("starts");
    wait_until_processed(&world, "the backlog was not processed").await;
    runtime.shutdown().await;
    // One write per page (three), and a few more when a page took longer than the marks
    // may wait; one write per delivery would be 1 200.
    let writes = world.store.inbox_mark_writes();
    assert!(
        (3..=30).contains(&writes),
        "{writes} writes marked 1 200 deliveries"
    );
}
