//! Retention on SQLite beyond the contract: a busy database.

use std::time::Duration;

use orch_core::ports::{PruneRequest, Store, StoreError};
use orch_sqlite::{SqliteStore, StoreOptions};
use rusqlite::Connection;

use crate::support::{at, temp_store};

#[tokio::test]
async fn prune_while_another_process_holds_the_write_lock_is_unavailable() {
    let held = temp_store();
    let store = SqliteStore::open_with(
        held.db_path(),
        StoreOptions {
            busy_timeout: Duration::from_millis(50),
            ..StoreOptions::default()
        },
    )
    .expect("second store");
    let blocker = Connection::open(held.db_path()).expect("open");
    blocker
        .execute_batch("BEGIN IMMEDIATE")
        .expect("take the write lock");
    let request = PruneRequest {
        deliveries_before: Some(at(100)),
        jobs_before: None,
        history_before: None,
        limit: 10,
    };
    let err = store.prune(request).await.expect_err("busy");
    assert!(matches!(err, StoreError::Unavailable(_)), "got {err:?}");
    blocker.execute_batch("ROLLBACK").expect("release");
    assert_eq!(
        store.prune(request).await.expect("free again").deliveries,
        0
    );
}
