//! Retention passes over the fakes: batches until nothing old is left, and agent logs.

use std::fs::File;
use std::path::Path;
use std::time::{Duration, SystemTime};

use orch_core::domain::{NewTask, Stage};
use orch_core::fakes::World;
use orch_core::ids::{BranchName, IssueId, ProjectId, RepoSlug, WorkItemId};
use orch_core::ports::{InboxInsert, InboxOutcome, NewDelivery, Source, Store, Transition};

use crate::retention::{run_once, PassTotals, RetentionSettings, BATCH};

const DAY: Duration = Duration::from_secs(24 * 60 * 60);

fn settings(logs_dir: Option<&Path>) -> RetentionSettings {
    RetentionSettings {
        interval: Duration::from_secs(3600),
        deliveries: 30 * DAY,
        jobs: 30 * DAY,
        history: 30 * DAY,
        agent_logs: 30 * DAY,
        logs_dir: logs_dir.map(Path::to_path_buf),
    }
}

async fn add_task(world: &World, number: u32, stage: Stage) {
    let work_item = WorkItemId::new("ET", number).expect("work item");
    let new = NewTask {
        issue: IssueId::new(format!("issue-{number}")).expect("issue"),
        project: ProjectId::new("proj-1").expect("project"),
        branch: BranchName::for_work_item(&work_item, "Retention"),
        work_item,
        title: "Retention".to_owned(),
        description: String::new(),
        repo: RepoSlug::new("acme/widgets").expect("repo"),
        base_branch: BranchName::new("main").expect("branch"),
        stage: Stage::Analysis,
        tracker_state: None,
        tracker_seen_at: None,
    };
    let task = world
        .store
        .create_task(new, vec![], world.clock_now())
        .await
        .expect("create")
        .task;
    if stage != Stage::Analysis {
        let mut next = task.clone();
        next.stage = stage;
        world
            .store
            .transition(Transition {
                next,
                jobs: vec![],
                cancel_active_work: false,
                consumes_job: None,
                note: "moved".to_owned(),
                now: world.clock_now(),
            })
            .await
            .expect("move");
    }
}

/// A log file last modified `age` ago.
fn log_file(dir: &Path, name: &str, age: Duration) {
    std::fs::create_dir_all(dir).expect("log dir");
    let file = File::create(dir.join(name)).expect("log file");
    file.set_modified(SystemTime::now() - age)
        .expect("set mtime");
}

#[tokio::test]
async fn a_pass_prunes_old_deliveries_in_batches_until_none_is_left() {
    let world = World::new();
    let total = BATCH * 2 + 7;
    for n in 0..total {
        let inserted = world
            .store
            .inbox_insert(NewDelivery {
                source: Source::Gitea,
                delivery_id: format!("d{n}"),
                event_type: "push".to_owned(),
                body_sha256: format!("{n:064x}"),
                body: vec![b'x'; 64],
                received_at: world.clock_now(),
            })
            .await
            .expect("insert");
        let InboxInsert::Queued(id) = inserted else {
            panic!("d{n} should be queued");
        };
        world
            .store
            .inbox_mark_processed(id, &InboxOutcome::Applied, world.clock_now())
            .await
            .expect("processed");
    }
    world.clock.advance(29 * DAY);
    let totals = run_once(&world.ports, &settings(None)).await.expect("pass");
    assert_eq!(totals, PassTotals::default(), "nothing is 30 days old yet");

    world.clock.advance(2 * DAY);
    let totals = run_once(&world.ports, &settings(None)).await.expect("pass");
    assert_eq!(totals.deliveries, u64::from(total));
    let totals = run_once(&world.ports, &settings(None)).await.expect("pass");
    assert_eq!(totals, PassTotals::default());
}

#[tokio::test]
async fn old_agent_logs_go_unless_their_task_is_unfinished() {
    let world = World::new();
    add_task(&world, 1, Stage::Development).await;
    add_task(&world, 2, Stage::Done).await;
    let logs = tempfile::tempdir().expect("logs dir");
    let old = 40 * DAY;
    let recent = DAY;
    log_file(&logs.path().join("ET-001"), "1-analyst.log", old);
    log_file(&logs.path().join("ET-002"), "2-analyst.log", old);
    log_file(&logs.path().join("ET-002"), "3-developer.log", recent);
    // No task, or not a work item at all: judged by age alone.
    log_file(&logs.path().join("ET-009"), "4-reviewer.log", old);
    log_file(&logs.path().join("notes"), "old.txt", old);

    let totals = run_once(&world.ports, &settings(Some(logs.path())))
        .await
        .expect("pass");
    assert_eq!(totals.log_files, 3);
    assert!(
        logs.path().join("ET-001/1-analyst.log").exists(),
        "unfinished task"
    );
    assert!(!logs.path().join("ET-002/2-analyst.log").exists());
    assert!(
        logs.path().join("ET-002/3-developer.log").exists(),
        "recent"
    );
    assert!(
        !logs.path().join("ET-009").exists(),
        "emptied directories go"
    );
    assert!(!logs.path().join("notes").exists());
}

#[tokio::test]
async fn a_missing_logs_directory_prunes_nothing() {
    let world = World::new();
    let logs = tempfile::tempdir().expect("temp dir");
    let missing = logs.path().join("not-yet");
    let totals = run_once(&world.ports, &settings(Some(&missing)))
        .await
        .expect("pass");
    assert_eq!(totals, PassTotals::default());
}
