//! Concurrency: the database, not a process lock, keeps one task per issue and one active
//! agent job per task.

use std::sync::{Arc, Barrier};

use orch_core::domain::{Agent, JobSpec};
use orch_core::ports::{Store, StoreError, Transition};
use rusqlite::Connection;

use crate::support::{analyst, at, new_task, temp_store};

/// TC-15 (AC-4) on the real database: 8 threads race `create_task` for one Plane issue.
#[test]
fn eight_threads_racing_create_task_make_one_row_and_one_created() {
    let fixture = temp_store();
    let store = Arc::new(orch_sqlite::SqliteStore::open(fixture.db_path()).expect("second handle"));
    let barrier = Arc::new(Barrier::new(8));
    let threads: Vec<_> = (0..8)
        .map(|_| {
            let (store, barrier) = (Arc::clone(&store), Arc::clone(&barrier));
            std::thread::spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("runtime");
                barrier.wait();
                runtime
                    .block_on(store.create_task(new_task(99), vec![analyst()], at(0)))
                    .expect("create_task")
            })
        })
        .collect();
    let results: Vec<_> = threads
        .into_iter()
        .map(|thread| thread.join().expect("thread"))
        .collect();
    assert_eq!(
        results.iter().filter(|created| created.created).count(),
        1,
        "exactly one winner"
    );
    assert_eq!(
        results.iter().filter(|created| !created.created).count(),
        7,
        "the rest see the row"
    );
    let id = results[0].task.id;
    assert!(
        results.iter().all(|created| created.task.id == id),
        "all callers see the same task"
    );
    let conn = Connection::open(fixture.db_path()).expect("raw connection");
    let rows: i64 = conn
        .query_row(
            "SELECT count(*) FROM tasks WHERE issue_id = 'plane-99'",
            [],
            |row| row.get(0),
        )
        .expect("count");
    assert_eq!(rows, 1);
    let jobs: i64 = conn
        .query_row("SELECT count(*) FROM jobs", [], |row| row.get(0))
        .expect("count");
    assert_eq!(jobs, 1, "only the winner's job is written");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sixty_four_concurrent_agent_enqueues_leave_one_active_job() {
    let fixture = temp_store();
    let store: Arc<dyn Store> =
        Arc::new(orch_sqlite::SqliteStore::open(fixture.db_path()).expect("open"));
    let task = store
        .create_task(new_task(1), vec![JobSpec::new(notify(), "first")], at(0))
        .await
        .expect("create")
        .task;
    let handles: Vec<_> = (0..64)
        .map(|n| {
            let store = Arc::clone(&store);
            let task = task.clone();
            tokio::spawn(async move {
                let spec = JobSpec::agent(Agent::Developer, Some(format!("attempt {n}")));
                let tr = Transition {
                    next: task,
                    jobs: vec![spec],
                    cancel_active_work: false,
                    consumes_job: None,
                    note: "enqueue".to_owned(),
                    now: at(1),
                };
                store.transition(tr).await
            })
        })
        .collect();
    let mut won = 0;
    for handle in handles {
        match handle.await.expect("task") {
            Ok(_) => won += 1,
            Err(StoreError::Conflict(_)) => {}
            Err(err) => panic!("unexpected error: {err}"),
        }
    }
    assert_eq!(won, 1);
    let active = store
        .jobs_of_task(task.id)
        .await
        .expect("jobs")
        .into_iter()
        .filter(|job| job.kind().is_agent() && job.status.is_active())
        .count();
    assert_eq!(active, 1);
}

#[test]
fn partial_unique_index_refuses_a_second_active_agent_job_written_behind_the_store() {
    let fixture = temp_store();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let task = runtime
        .block_on(fixture.create_task(new_task(1), vec![analyst()], at(0)))
        .expect("create")
        .task;
    let conn = Connection::open(fixture.db_path()).expect("raw connection");
    let insert = |status: &str| {
        conn.execute(
            "INSERT INTO jobs (task_id, repo, kind, is_agent, payload, status, not_before, created_at, updated_at) \
             VALUES (?1, 'acme/enduro-trails', 'developer', 1, '{\"action\":\"cleanup\"}', ?2, 0, 0, 0)",
            rusqlite::params![task.id.0, status],
        )
    };
    let refused = insert("running").expect_err("a second active agent job");
    assert_eq!(
        refused.sqlite_error_code(),
        Some(rusqlite::ErrorCode::ConstraintViolation)
    );
    insert("succeeded").expect("an ended agent job is no obstacle");
}

fn notify() -> orch_core::domain::Action {
    orch_core::domain::Action::Notify {
        text: "hi".to_owned(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_inbox_inserts_are_group_committed_without_losing_or_doubling_any() {
    let fixture = temp_store();
    let store: Arc<dyn Store> =
        Arc::new(orch_sqlite::SqliteStore::open(fixture.db_path()).expect("open"));
    let handles: Vec<_> = (0..200)
        .map(|n| {
            let store = Arc::clone(&store);
            tokio::spawn(async move {
                // Every delivery comes twice, as a redelivery would.
                let id = n % 100;
                let delivery = orch_core::ports::NewDelivery {
                    source: orch_core::ports::Source::Plane,
                    delivery_id: format!("d{id}"),
                    event_type: "issue".to_owned(),
                    body_sha256: format!("sha{id}"),
                    body: vec![b'x'; 100],
                    received_at: at(0),
                };
                store.inbox_insert(delivery).await.expect("insert")
            })
        })
        .collect();
    let mut queued = std::collections::BTreeSet::new();
    let mut duplicates = 0;
    for handle in handles {
        match handle.await.expect("task") {
            orch_core::ports::InboxInsert::Queued(id) => {
                assert!(queued.insert(id), "row id {id} given twice")
            }
            orch_core::ports::InboxInsert::Duplicate => duplicates += 1,
        }
    }
    assert_eq!((queued.len(), duplicates), (100, 100));
    assert_eq!(store.inbox_pending(1000).await.expect("pending").len(), 100);
}
