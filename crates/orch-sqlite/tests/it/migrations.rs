//! Migrations: from empty, re-run, and a too-new schema refused.

use orch_sqlite::{migrate, Migrated, OpenError, SqliteStore, LATEST_VERSION};
use rusqlite::Connection;

#[test]
fn migrating_an_empty_database_creates_every_table() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("new.db");
    assert_eq!(
        migrate(&path).expect("migrate"),
        Migrated {
            from: 0,
            to: LATEST_VERSION
        }
    );
    let conn = Connection::open(&path).expect("open");
    let version: i64 = conn
        .query_row("PRAGMA user_version", [], |row| row.get(0))
        .expect("version");
    assert_eq!(version, LATEST_VERSION);
    let mode: String = conn
        .query_row("PRAGMA journal_mode", [], |row| row.get(0))
        .expect("journal mode");
    assert_eq!(mode, "wal");
    for table in [
        "tasks",
        "jobs",
        "inbox",
        "task_history",
        "reconcile_totals",
        "reconcile_unblocked",
        "tracker_watermarks",
        "meta",
    ] {
        let found: i64 = conn
            .query_row(
                "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = ?1",
                [table],
                |row| row.get(0),
            )
            .expect("lookup");
        assert_eq!(found, 1, "table {table}");
    }
}

#[test]
fn rerunning_migrations_changes_nothing() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("again.db");
    migrate(&path).expect("first run");
    let conn = Connection::open(&path).expect("open");
    conn.execute("INSERT INTO meta (key, value) VALUES ('probe', 'kept')", [])
        .expect("insert");
    assert_eq!(
        migrate(&path).expect("second run"),
        Migrated {
            from: LATEST_VERSION,
            to: LATEST_VERSION
        }
    );
    SqliteStore::open(&path).expect("open migrates too, harmlessly");
    let kept: String = conn
        .query_row("SELECT value FROM meta WHERE key = 'probe'", [], |row| {
            row.get(0)
        })
        .expect("probe");
    assert_eq!(kept, "kept");
}

#[test]
fn a_database_newer_than_this_binary_is_refused() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("future.db");
    migrate(&path).expect("migrate");
    let conn = Connection::open(&path).expect("open");
    conn.pragma_update(None, "user_version", LATEST_VERSION + 1)
        .expect("bump");
    drop(conn);
    let err = SqliteStore::open(&path).expect_err("too new");
    assert!(
        matches!(err, OpenError::TooNew { found, supported, .. } if found == LATEST_VERSION + 1 && supported == LATEST_VERSION),
        "got {err:?}"
    );
    assert!(err.to_string().contains("newer than"), "message: {err}");
    assert!(matches!(migrate(&path), Err(OpenError::TooNew { .. })));
}

#[test]
fn a_file_that_is_not_a_database_is_refused() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("junk.db");
    std::fs::write(&path, vec![b'x'; 4096]).expect("write junk");
    let err = SqliteStore::open(&path).expect_err("not a database");
    assert!(
        matches!(err, OpenError::Sqlite { .. } | OpenError::Migration { .. }),
        "got {err:?}"
    );
}
