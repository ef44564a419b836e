//! The single-writer lock on `{db_path}.lock`.

use orch_core::ports::Store;
use orch_sqlite::{lock_path, OpenError, SqliteStore};

use crate::support::{at, temp_store};

#[tokio::test]
async fn second_exclusive_opener_is_refused_at_once_with_a_clear_error() {
    let fixture = temp_store();
    let path = fixture.db_path();
    let daemon = SqliteStore::open_exclusive(&path).expect("first opener");
    let err = SqliteStore::open_exclusive(&path).expect_err("second opener");
    assert!(matches!(err, OpenError::Locked { .. }), "got {err:?}");
    let message = err.to_string();
    assert!(
        message.contains("already in use by another orch process"),
        "message: {message}"
    );
    assert!(
        message.contains(&lock_path(&path).display().to_string()),
        "message names the lock: {message}"
    );

    // A reader (`orch status`) may open while the daemon runs.
    let reader = SqliteStore::open(&path).expect("reader");
    daemon
        .set_last_clean_shutdown(at(1))
        .await
        .expect("daemon writes");
    assert_eq!(
        reader.last_clean_shutdown().await.expect("reader reads"),
        Some(at(1))
    );

    drop(daemon);
    SqliteStore::open_exclusive(&path).expect("the lock is released when the holder goes away");
}
