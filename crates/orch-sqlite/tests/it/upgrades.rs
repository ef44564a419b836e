//! Upgrades: databases written by earlier orch versions (`tests/fixtures/vN.db`, see its
//! README) are migrated to the current schema and keep every task, job, delivery and history
//! line, readable through the `Store` port and writable afterwards.

use std::path::{Path, PathBuf};

use orch_core::domain::{JobStatus, Stage};
use orch_core::ports::Store;
use orch_sqlite::{migrate, Migrated, SqliteStore, LATEST_VERSION};
use rusqlite::Connection;

use crate::support::{analyst, at, new_task};

/// What each fixture holds: two work items of `orch demo --items 2`, both merged; the rows of
/// `tasks`, `jobs`, `inbox` and `task_history`.
fn rows_of(version: i64) -> [i64; 4] {
    match version {
        // V3's orch writes a history line for more of its transitions.
        3 => [2, 39, 41, 30],
        _ => [2, 39, 41, 20],
    }
}

fn fixture(version: i64) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("tests/fixtures/v{version}.db"))
}

/// A copy of the fixture in a temp directory (the committed file is never written).
fn copy_of(version: i64) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("orch.db");
    std::fs::copy(fixture(version), &path).expect("copy the fixture");
    (dir, path)
}

fn counts(path: &Path) -> [i64; 4] {
    let conn = Connection::open(path).expect("open");
    ["tasks", "jobs", "inbox", "task_history"].map(|table| {
        conn.query_row(&format!("SELECT count(*) FROM {table}"), [], |row| {
            row.get(0)
        })
        .expect("count")
    })
}

async fn check_upgrade(version: i64) {
    let (_dir, path) = copy_of(version);
    assert_eq!(
        counts(&path),
        rows_of(version),
        "fixture v{version} as committed"
    );
    assert_eq!(
        migrate(&path).expect("migrate"),
        Migrated {
            from: version,
            to: LATEST_VERSION
        }
    );
    assert_eq!(
        counts(&path),
        rows_of(version),
        "rows after migrating v{version}"
    );

    let store = SqliteStore::open(&path).expect("open the migrated database");
    let tasks = store.list_tasks(10).await.expect("tasks");
    let items: Vec<String> = tasks
        .iter()
        .map(|task| task.work_item.to_string())
        .collect();
    assert_eq!(items, ["ET-002", "ET-001"]);
    for task in &tasks {
        assert_eq!(task.stage, Stage::Done, "{}", task.work_item);
        assert!(task.head_sha.is_some(), "{}", task.work_item);
        assert!(task.pr.is_some(), "{}", task.work_item);
        // Columns added after the fixture's version read as unset.
        assert_eq!(task.sent_back_sha, None);
        let jobs = store.jobs_of_task(task.id).await.expect("jobs");
        assert!(!jobs.is_empty(), "{}", task.work_item);
        for job in &jobs {
            assert_eq!(job.status, JobStatus::Succeeded, "job {}", job.id);
            assert!(job.handled, "job {}", job.id);
            if version < 3 {
                // V3 gives every earlier job its task's stage.
                assert_eq!(job.stage, Stage::Done, "job {}", job.id);
            }
            assert_eq!(job.waiting, None, "job {}", job.id);
        }
        let history = store.history(task.id).await.expect("history");
        assert_eq!(
            history.first().map(|line| line.message.as_str()),
            Some("created")
        );
    }
    assert!(store.inbox_pending(10).await.expect("inbox").is_empty());

    // The upgraded database takes new work.
    let created = store
        .create_task(new_task(77), vec![analyst()], at(0))
        .await
        .expect("create after the upgrade");
    assert!(created.created);
    assert_eq!(
        store
            .jobs_of_task(created.task.id)
            .await
            .expect("jobs")
            .len(),
        1
    );
}

#[tokio::test]
async fn a_version_1_database_is_migrated_and_keeps_its_data() {
    check_upgrade(1).await;
}

#[tokio::test]
async fn a_version_2_database_is_migrated_and_keeps_its_data() {
    check_upgrade(2).await;
}

#[tokio::test]
async fn a_version_3_database_is_migrated_and_keeps_its_data() {
    check_upgrade(3).await;
}

#[test]
fn every_earlier_schema_version_has_a_fixture() {
    for version in 1..LATEST_VERSION {
        assert!(
            fixture(version).is_file(),
            "tests/fixtures/v{version}.db is missing: commit the database of the last orch of schema version {version}"
        );
    }
}
