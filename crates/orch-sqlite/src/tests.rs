//! Unit tests of the schema: the query plans of F-1 and of retention.

use rusqlite::{Connection, Params};

use crate::schema::migrate_connection;
use crate::store::{gate_candidates_sql, PRUNABLE_DELIVERIES_SQL};

/// SQLite's plan of `sql` on a freshly migrated database, one line per step.
fn query_plan(sql: &str, params: impl Params) -> String {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("plan.db");
    let mut conn = Connection::open(&path).expect("open");
    migrate_connection(&mut conn, &path).expect("migrate");
    let mut stmt = conn
        .prepare(&format!("EXPLAIN QUERY PLAN {sql}"))
        .expect("prepare");
    let plan: Vec<String> = stmt
        .query_map(params, |row| row.get::<_, String>(3))
        .expect("explain")
        .collect::<Result<_, _>>()
        .expect("rows");
    plan.join("\n")
}

#[test]
fn gate_candidate_query_uses_the_stage_updated_index() {
    let plan = query_plan(
        &gate_candidates_sql(),
        rusqlite::params!["development", 0_i64, 10_i64],
    );
    assert!(
        plan.contains("USING INDEX tasks_stage_updated"),
        "plan: {plan}"
    );
    assert!(
        plan.contains("USING INDEX jobs_task_status")
            || plan.contains("USING COVERING INDEX jobs_task_status"),
        "plan: {plan}"
    );
    assert!(
        !plan.contains("SCAN t\n") && !plan.ends_with("SCAN t"),
        "no full scan of tasks: {plan}"
    );
    assert!(
        !plan.contains("TEMP B-TREE"),
        "the index gives the order: {plan}"
    );
}

#[test]
fn pruning_deliveries_reads_the_processed_index_not_the_bodies() {
    let plan = query_plan(PRUNABLE_DELIVERIES_SQL, rusqlite::params![0_i64, 500_i64]);
    assert!(
        plan.contains("COVERING INDEX inbox_processed"),
        "plan: {plan}"
    );
    assert!(
        !plan.contains("TEMP B-TREE"),
        "the index gives the order: {plan}"
    );
}

mod storage_faults {
    //! Storage faults from real SQLite errors, and a store that recovers by itself.

    use std::time::{Duration, Instant};

    use orch_core::ports::{InboxInsert, NewDelivery, Source, Store, StoreError};
    use orch_core::time::Timestamp;
    use rusqlite::{Connection, OpenFlags};

    use crate::error::Error;
    use crate::{SqliteStore, StorageHealth};

    /// How long the probe may take to see a fault end.
    const RECOVERY: Duration = Duration::from_secs(10);

    /// What `err` becomes at the port, and the fault `StorageHealth` records for it.
    fn check(err: rusqlite::Error, fault: Option<&str>, port: &str) {
        let err = Error::from(err);
        let seen = err.storage_fault();
        assert_eq!(
            seen.as_deref()
                .map(|seen| seen.split(':').next().unwrap_or(seen)),
            fault,
            "{seen:?}"
        );
        let port_error = StoreError::from(err).to_string();
        assert!(port_error.starts_with(port), "{port_error}");
    }

    #[test]
    fn a_full_disk_a_read_only_database_and_a_missing_file_are_storage_faults_and_a_conflict_is_not(
    ) {
        check(
            full_disk_error(),
            Some("disk full"),
            "store: unavailable: storage fault: disk full",
        );

        let read_only = Connection::open_in_memory().expect("open");
        read_only
            .execute_batch("CREATE TABLE t (b BLOB); PRAGMA query_only = 1;")
            .expect("setup");
        let err = read_only
            .execute("INSERT INTO t VALUES (1)", [])
            .expect_err("read-only");
        check(
            err,
            Some("read-only"),
            "store: unavailable: storage fault: read-only",
        );

        let dir = tempfile::tempdir().expect("temp dir");
        let err = Connection::open_with_flags(
            dir.path().join("missing.db"),
            OpenFlags::SQLITE_OPEN_READ_WRITE,
        )
        .expect_err("no such file");
        check(
            err,
            Some("cannot open the database file"),
            "store: unavailable: storage fault: cannot open",
        );

        let unique = Connection::open_in_memory().expect("open");
        unique
            .execute_batch("CREATE TABLE t (k INTEGER UNIQUE); INSERT INTO t VALUES (1);")
            .expect("setup");
        let err = unique
            .execute("INSERT INTO t VALUES (1)", [])
            .expect_err("duplicate");
        check(err, None, "store: conflict");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_storage_fault_lasts_while_the_probe_cannot_write_and_ends_alone_when_it_can() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("later.db");
        let health = StorageHealth::new(&path, Duration::from_secs(1));
        let missing =
            Connection::open_with_flags(&path, OpenFlags::SQLITE_OPEN_READ_WRITE).map(|_| ());
        health.observe_write(&missing.map_err(Error::from));
        let fault = health.fault().expect("the fault is recorded");
        assert!(
            fault.starts_with("cannot open the database file"),
            "{fault}"
        );

        // The probe keeps failing while the file is missing (it never creates it).
        tokio::time::sleep(Duration::from_millis(600)).await;
        assert!(health.fault().is_some());
        assert!(!path.exists(), "the probe created the database file");

        let store = SqliteStore::open(&path).expect("the database appears");
        let deadline = Instant::now() + RECOVERY;
        while health.fault().is_some() {
            assert!(Instant::now() < deadline, "the fault never cleared");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // A committed write also ends a fault, at once.
        health.observe_write(&Err::<(), _>(Error::from(full_disk_error())));
        assert!(health
            .fault()
            .is_some_and(|fault| fault.starts_with("disk full")));
        assert!(matches!(
            store.inbox_insert(delivery("after")).await,
            Ok(InboxInsert::Queued(_))
        ));
        health.observe_write(&Ok::<(), Error>(()));
        assert_eq!(health.fault(), None);
    }

    fn full_disk_error() -> rusqlite::Error {
        let full = Connection::open_in_memory().expect("open");
        full.execute_batch("CREATE TABLE t (b BLOB); PRAGMA max_page_count = 3;")
            .expect("setup");
        full.execute("INSERT INTO t VALUES (zeroblob(100000))", [])
            .expect_err("the database is full")
    }

    fn delivery(id: &str) -> NewDelivery {
        NewDelivery {
            source: Source::Gitea,
            delivery_id: id.to_owned(),
            event_type: "status".to_owned(),
            body_sha256: format!("sha-of-{id}"),
            body: br#"{"state": "success"}"#.to_vec(),
            received_at: Timestamp::from_millis(1_000),
        }
    }
}
