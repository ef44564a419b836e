//! Shared fixtures: a fresh migrated database in a temp directory per test.

use std::ops::Deref;
use std::path::PathBuf;

use orch_core::domain::{Agent, JobSpec, NewTask, Stage};
use orch_core::ids::{BranchName, IssueId, ProjectId, RepoSlug, WorkItemId};
use orch_core::time::Timestamp;
use orch_sqlite::SqliteStore;
use tempfile::TempDir;

/// A store on a database file that lives as long as this value.
pub(crate) struct TempStore {
    pub(crate) store: SqliteStore,
    pub(crate) dir: TempDir,
}

impl TempStore {
    pub(crate) fn db_path(&self) -> PathBuf {
        self.dir.path().join("orch.db")
    }
}

impl Deref for TempStore {
    type Target = SqliteStore;
    fn deref(&self) -> &SqliteStore {
        &self.store
    }
}

pub(crate) fn temp_store() -> TempStore {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = SqliteStore::open(dir.path().join("orch.db")).expect("open store");
    TempStore { store, dir }
}

pub(crate) fn at(seconds: i64) -> Timestamp {
    Timestamp::from_millis(1_700_000_000_000 + seconds * 1000)
}

pub(crate) fn new_task(number: u32) -> NewTask {
    let work_item = WorkItemId::new("ET", number).expect("work item");
    NewTask {
        issue: IssueId::new(format!("plane-{number}")).expect("issue"),
        project: ProjectId::new("proj-1").expect("project"),
        branch: BranchName::for_work_item(&work_item, "Dup race"),
        work_item,
        title: "Dup race".to_owned(),
        description: String::new(),
        repo: RepoSlug::new("acme/enduro-trails").expect("repo"),
        base_branch: BranchName::new("main").expect("branch"),
        stage: Stage::Analysis,
        tracker_state: None,
        tracker_seen_at: None,
    }
}

pub(crate) fn analyst() -> JobSpec {
    JobSpec::agent(Agent::Analyst, None)
}
