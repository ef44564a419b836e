//! `backup`: a sound copy of a database that is being written, never over an existing file.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use orch_core::ports::{InboxInsert, NewDelivery, Source, Store};
use orch_sqlite::{backup, BackupError, SqliteStore, LATEST_VERSION};
use rusqlite::Connection;

use crate::support::{analyst, at, new_task, temp_store};

fn delivery(n: u64) -> NewDelivery {
    NewDelivery {
        source: Source::Gitea,
        delivery_id: format!("load-{n}"),
        event_type: "status".to_owned(),
        body_sha256: format!("{n:064x}"),
        body: vec![b'x'; 4096],
        received_at: at(0),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_taken_while_writers_run_holds_every_row_committed_before_it() {
    let store = temp_store();
    let writer = Arc::new(SqliteStore::open(store.db_path()).expect("second handle"));
    let committed = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let load = tokio::spawn({
        let (writer, committed, stop) = (writer.clone(), committed.clone(), stop.clone());
        async move {
            let mut n = 0;
            while !stop.load(Ordering::SeqCst) {
                let inserted = writer.inbox_insert(delivery(n)).await.expect("insert");
                assert!(matches!(inserted, InboxInsert::Queued(_)));
                if n % 50 == 0 {
                    writer
                        .create_task(
                            new_task(u32::try_from(n).expect("small")),
                            vec![analyst()],
                            at(0),
                        )
                        .await
                        .expect("task");
                }
                n += 1;
                committed.store(n, Ordering::SeqCst);
            }
        }
    });
    while committed.load(Ordering::SeqCst) < 200 {
        tokio::task::yield_now().await;
    }
    let before = committed.load(Ordering::SeqCst);
    let dest = store.dir.path().join("copy.db");
    let db_path = store.db_path();
    let written = tokio::task::spawn_blocking({
        let dest = dest.clone();
        move || backup(&db_path, &dest)
    })
    .await
    .expect("joined")
    .expect("backup");
    stop.store(true, Ordering::SeqCst);
    load.await.expect("load ends");
    assert!(
        committed.load(Ordering::SeqCst) > before,
        "writes went on while the backup ran"
    );

    assert_eq!(written.path, dest);
    assert_eq!(written.schema_version, LATEST_VERSION);
    assert_eq!(written.bytes, std::fs::metadata(&dest).expect("copy").len());
    assert!(!store.dir.path().join("copy.db.partial").exists());
    let copy = SqliteStore::open(&dest).expect("the copy opens as a store");
    let rows: u64 = Connection::open(&dest)
        .expect("open")
        .query_row("SELECT count(*) FROM inbox", [], |row| row.get(0))
        .expect("count");
    assert!(rows >= before, "{rows} rows, {before} committed before");
    let pending = copy.inbox_pending(1).await.expect("pending");
    assert_eq!(pending[0].delivery_id, "load-0");
}

#[test]
fn a_backup_never_replaces_an_existing_file() {
    let store = temp_store();
    let dest = store.dir.path().join("taken.db");
    std::fs::write(&dest, b"keep me").expect("write");
    let err = backup(&store.db_path(), &dest).expect_err("refused");
    assert!(matches!(err, BackupError::Exists(_)), "got {err:?}");
    assert!(err.to_string().contains("exists already"), "{err}");
    assert_eq!(std::fs::read(&dest).expect("read"), b"keep me");
}

#[test]
fn a_missing_database_is_named_and_not_created() {
    let dir = tempfile::tempdir().expect("temp dir");
    let missing = dir.path().join("absent.db");
    let err = backup(&missing, &dir.path().join("copy.db")).expect_err("refused");
    assert!(matches!(err, BackupError::NoDatabase(_)), "got {err:?}");
    assert!(!missing.exists());
}

#[test]
fn a_destination_that_cannot_be_written_leaves_nothing_behind() {
    let store = temp_store();
    let dest = store.dir.path().join("no-such-dir/copy.db");
    let err = backup(&store.db_path(), &dest).expect_err("refused");
    assert!(matches!(err, BackupError::Sqlite { .. }), "got {err:?}");
    assert!(!dest.exists());
    assert!(!store
        .dir
        .path()
        .join("no-such-dir/copy.db.partial")
        .exists());
}

#[test]
fn a_stale_partial_copy_is_replaced() {
    let store = temp_store();
    let dest = store.dir.path().join("copy.db");
    std::fs::write(store.dir.path().join("copy.db.partial"), b"half").expect("stale");
    let written = backup(&store.db_path(), &dest).expect("backup");
    assert_eq!(written.schema_version, LATEST_VERSION);
    assert!(!store.dir.path().join("copy.db.partial").exists());
}
