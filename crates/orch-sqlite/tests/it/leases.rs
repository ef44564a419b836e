//! Leases across restarts: a previous boot's leases are reclaimed, and its late writes fenced.

use std::time::Duration;

use orch_core::domain::{JobOutput, JobResult, JobStatus};
use orch_core::ids::BootId;
use orch_core::ports::{ClaimKinds, ClaimRequest, Store, StoreError};
use orch_sqlite::SqliteStore;

use crate::support::{analyst, at, new_task, temp_store};

const AGENTS: ClaimKinds = ClaimKinds::Agents { per_repo_limit: 2 };

fn request(owner: &str, seconds: i64) -> ClaimRequest {
    ClaimRequest {
        owner: BootId::new(owner).expect("boot"),
        kinds: AGENTS,
        now: at(seconds),
        lease: Duration::from_secs(600),
    }
}

#[tokio::test]
async fn leases_of_a_previous_boot_are_reclaimed_after_reopening() {
    let fixture = temp_store();
    let path = fixture.db_path();
    fixture
        .create_task(new_task(1), vec![analyst()], at(0))
        .await
        .expect("create");
    let first_boot = SqliteStore::open_exclusive(&path).expect("first boot");
    let claimed = first_boot
        .claim_next(&request("boot-1", 1))
        .await
        .expect("claim")
        .expect("job");
    drop(first_boot);

    let second_boot = SqliteStore::open_exclusive(&path).expect("second boot");
    // The lease has not expired: only its owner marks it stale.
    let reclaimed = second_boot
        .reclaim_leases(&BootId::new("boot-2").expect("boot"), at(2))
        .await
        .expect("reclaim");
    assert_eq!(
        reclaimed.iter().map(|job| job.id).collect::<Vec<_>>(),
        vec![claimed.job.id]
    );
    let job = second_boot
        .job(claimed.job.id)
        .await
        .expect("job")
        .expect("exists");
    assert_eq!((job.status, job.lease), (JobStatus::Queued, None));
    let again = second_boot
        .claim_next(&request("boot-2", 3))
        .await
        .expect("claim")
        .expect("job");
    assert_eq!((again.job.id, again.job.attempts), (claimed.job.id, 2));

    // The first boot's worker finishing late is rejected; nothing changes.
    let late = second_boot
        .finish_job(
            claimed.job.id,
            &claimed.attempt,
            JobResult::Succeeded(JobOutput::default()),
            at(4),
        )
        .await;
    assert!(
        matches!(late, Err(StoreError::Conflict(_))),
        "late completion: {late:?}"
    );
    let job = second_boot
        .job(claimed.job.id)
        .await
        .expect("job")
        .expect("exists");
    assert_eq!(job.status, JobStatus::Running);
    assert_eq!(job.lease.map(|lease| lease.attempt), Some(again.attempt));
}

#[tokio::test]
async fn a_busy_database_is_reported_unavailable() {
    let fixture = temp_store();
    let options = orch_sqlite::StoreOptions {
        busy_timeout: Duration::from_millis(50),
        ..Default::default()
    };
    let store = SqliteStore::open_with(fixture.db_path(), options).expect("open");
    let blocker = rusqlite::Connection::open(fixture.db_path()).expect("raw connection");
    blocker
        .execute_batch("BEGIN IMMEDIATE")
        .expect("hold the write lock");
    let result = store.create_task(new_task(1), vec![analyst()], at(0)).await;
    assert!(
        matches!(result, Err(StoreError::Unavailable(_))),
        "got {result:?}"
    );
    blocker.execute_batch("ROLLBACK").expect("release");
    store
        .create_task(new_task(1), vec![analyst()], at(0))
        .await
        .expect("works once the lock is gone");
}
