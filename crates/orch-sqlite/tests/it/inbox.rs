//! The inbox against rows orch did not write itself.

use orch_core::ports::{InboxInsert, InboxOutcome, NewDelivery, Source, Store};

use crate::support::{at, temp_store};

fn delivery(id: &str, body: &str) -> NewDelivery {
    NewDelivery {
        source: Source::Gitea,
        delivery_id: id.to_owned(),
        event_type: "status".to_owned(),
        body_sha256: format!("{:0>64}", id),
        body: body.as_bytes().to_vec(),
        received_at: at(1),
    }
}

#[tokio::test]
async fn an_unreadable_inbox_row_is_set_aside_and_does_not_stall_the_others() {
    let store = temp_store();
    let InboxInsert::Queued(first) = store
        .inbox_insert(delivery("1", "{\"a\": 1}"))
        .await
        .expect("insert")
    else {
        panic!("queued");
    };
    // What a process that could write the file might insert: a text body, and a source
    // orch does not know.
    let conn = rusqlite::Connection::open(store.db_path()).expect("open");
    conn.execute(
        "INSERT INTO inbox (source, delivery_id, event_type, body_sha256, body, received_at) \
         VALUES ('gitea', 'text-body', 'status', 'x', '{}', 1), \
                ('nobody', 'odd-source', 'status', 'y', X'00', 2)",
        [],
    )
    .expect("hand-written rows");
    store
        .inbox_insert(delivery("2", "{\"b\": 2}"))
        .await
        .expect("insert");

    let pending = store.inbox_pending(10).await.expect("pending is readable");
    let ids: Vec<&str> = pending.iter().map(|d| d.delivery_id.as_str()).collect();
    assert_eq!(ids, ["1", "text-body", "2"]);
    assert_eq!(pending[1].body, b"{}", "a text body is read as its bytes");
    assert_eq!(pending[0].id, first);

    let outcome: String = conn
        .query_row(
            "SELECT outcome FROM inbox WHERE delivery_id = 'odd-source'",
            [],
            |row| row.get(0),
        )
        .expect("set aside");
    assert!(outcome.starts_with("error: unreadable row"), "{outcome}");
    assert_eq!(
        store.inbox_pending(10).await.expect("pending").len(),
        3,
        "the unreadable row is not offered again"
    );
}

fn sized_delivery(n: usize, bytes: usize) -> NewDelivery {
    NewDelivery {
        source: Source::Plane,
        delivery_id: format!("sized-{n}"),
        event_type: "issue".to_owned(),
        body_sha256: format!("{n:0>64}"),
        body: vec![b' '; bytes],
        received_at: at(1),
    }
}

/// The size of the WAL file of the database at `db`.
fn wal_bytes(db: &std::path::Path) -> u64 {
    let mut wal = db.as_os_str().to_owned();
    wal.push("-wal");
    std::fs::metadata(std::path::PathBuf::from(wal))
        .expect("WAL file")
        .len()
}

/// Inserts `count` deliveries at once, numbered from `first`; returns their row ids.
async fn insert_concurrently(
    store: &std::sync::Arc<orch_sqlite::SqliteStore>,
    first: usize,
    count: usize,
    bytes: usize,
) -> Vec<i64> {
    let inserts: Vec<_> = (first..first + count)
        .map(|n| {
            let store = store.clone();
            tokio::spawn(async move { store.inbox_insert(sized_delivery(n, bytes)).await })
        })
        .collect();
    let mut ids = Vec::with_capacity(count);
    for insert in inserts {
        match insert.await.expect("task").expect("insert") {
            InboxInsert::Queued(id) => ids.push(id),
            InboxInsert::Duplicate => panic!("every delivery is distinct"),
        }
    }
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn marks_share_the_writers_commits_with_inserts_and_lose_nothing() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = std::sync::Arc::new(
        orch_sqlite::SqliteStore::open(dir.path().join("orch.db")).expect("open"),
    );
    let first = insert_concurrently(&store, 0, 100, 100).await;
    // Marks of the first hundred while a second hundred arrives: one writer takes both.
    let marks: Vec<_> = first
        .iter()
        .map(|&id| {
            let store = store.clone();
            tokio::spawn(async move {
                store
                    .inbox_mark_processed(id, &InboxOutcome::Applied, at(2))
                    .await
            })
        })
        .collect();
    let mut second = insert_concurrently(&store, 100, 100, 100).await;
    second.sort_unstable();
    for mark in marks {
        mark.await.expect("task").expect("mark");
    }
    let pending: Vec<i64> = store
        .inbox_pending(1000)
        .await
        .expect("pending")
        .iter()
        .map(|delivery| delivery.id)
        .collect();
    assert_eq!(pending, second);
    let missing = store
        .inbox_mark_processed(i64::MAX, &InboxOutcome::Applied, at(3))
        .await;
    assert!(
        matches!(missing, Err(orch_core::ports::StoreError::NotFound(_))),
        "{missing:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_of_marks_is_one_transaction() {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = dir.path().join("orch.db");
    let store = std::sync::Arc::new(orch_sqlite::SqliteStore::open(&db).expect("open"));
    let ids = insert_concurrently(&store, 0, 50, 100).await;
    let last = *ids.iter().max().expect("ids");
    // A trigger that rolls back the transaction the last mark is in: with one transaction
    // per page, none of the page's marks survives; one per mark would keep the others.
    let conn = rusqlite::Connection::open(&db).expect("open");
    conn.execute_batch(&format!(
        "CREATE TRIGGER refuse_last AFTER UPDATE OF processed_at ON inbox \
         WHEN new.id = {last} BEGIN SELECT RAISE(ROLLBACK, 'refused'); END;"
    ))
    .expect("trigger");
    let page: Vec<(i64, InboxOutcome)> = ids
        .iter()
        .map(|&id| (id, InboxOutcome::Ignored("a page".to_owned())))
        .collect();
    let refused = store.inbox_mark_processed_all(&page, at(2)).await;
    assert!(refused.is_err(), "{refused:?}");
    assert_eq!(
        store.inbox_pending(100).await.expect("pending").len(),
        50,
        "a mark of the page was committed without the others"
    );

    conn.execute_batch("DROP TRIGGER refuse_last")
        .expect("drop trigger");
    store
        .inbox_mark_processed_all(&page, at(3))
        .await
        .expect("marks");
    assert!(store.inbox_pending(100).await.expect("pending").is_empty());
    let outcomes: i64 = conn
        .query_row(
            "SELECT count(*) FROM inbox WHERE outcome = 'ignored: a page' AND processed_at = ?1",
            [at(3).as_millis()],
            |row| row.get(0),
        )
        .expect("outcomes");
    assert_eq!(outcomes, 50, "each mark keeps its outcome and time");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_wal_is_checkpointed_beside_the_writer_so_it_stays_small() {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = dir.path().join("orch.db");
    let store = std::sync::Arc::new(orch_sqlite::SqliteStore::open(&db).expect("open"));
    // 20 rounds of 50 deliveries of 4 KiB: more than 4 MiB of pages in all. The writer never
    // checkpoints itself, so only the checkpointer keeps the WAL from holding all of it.
    for round in 0..20 {
        insert_concurrently(&store, round * 50, 50, 4096).await;
        tokio::time::sleep(std::time::Duration::from_millis(150)).await;
    }
    let wal_bytes = wal_bytes(&db);
    assert!(
        wal_bytes < 2 * 1024 * 1024,
        "the WAL holds {wal_bytes} bytes: it was not checkpointed while the writer ran"
    );
    assert_eq!(
        store.inbox_pending(2000).await.expect("pending").len(),
        1000
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_wal_restarts_under_writes_that_never_pause() {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = dir.path().join("orch.db");
    let options = orch_sqlite::StoreOptions {
        wal_restart_bytes: 4 * 1024 * 1024,
        ..orch_sqlite::StoreOptions::default()
    };
    let store =
        std::sync::Arc::new(orch_sqlite::SqliteStore::open_with(&db, options).expect("open"));
    // 8 senders, each with its next delivery ready when the last is answered: the writer
    // always has one waiting, so no checkpoint ever catches up with it by itself. 1 600
    // deliveries of 64 KiB: more than 100 MiB of WAL frames, against a restart every 4 MiB.
    let (senders, per_sender, bytes) = (8, 200, 64 * 1024);
    let inserts: Vec<_> = (0..senders)
        .map(|sender| {
            let store = store.clone();
            tokio::spawn(async move {
                for n in 0..per_sender {
                    let delivery = sized_delivery(sender * per_sender + n, bytes);
                    let inserted = store.inbox_insert(delivery).await.expect("insert");
                    assert!(matches!(inserted, InboxInsert::Queued(_)));
                }
            })
        })
        .collect();
    for insert in inserts {
        insert.await.expect("task");
    }
    let wal_bytes = wal_bytes(&db);
    // Restarted past 4 MiB, cut back to 8 MiB at a restart; the checkpointer notices a long
    // WAL within about 100 ms, so the last round may have grown past 8 MiB, not to 64.
    assert!(
        wal_bytes <= 64 * 1024 * 1024,
        "the WAL holds {wal_bytes} bytes: it never restarted"
    );
    assert_eq!(
        store.inbox_pending(2000).await.expect("pending").len(),
        senders * per_sender
    );
}
