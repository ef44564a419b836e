//! The embedded, versioned migrations and the code that applies them (`PRAGMA user_version`).

use std::path::Path;
use std::time::Duration;

use rusqlite::{Connection, TransactionBehavior};

use crate::open::open_connection;
use crate::OpenError;

/// The schema version this binary writes.
pub const LATEST_VERSION: i64 = MIGRATIONS.len() as i64;

/// What `migrate` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Migrated {
    pub from: i64,
    pub to: i64,
}

/// Migration `n` (1-based) is `MIGRATIONS[n - 1]`. Never edit a released one; append.
const MIGRATIONS: &[&str] = &[V1, V2, V3, V4];

/// Retention (`SqliteStore::prune`) finds processed deliveries by when they were processed
/// without reading their bodies.
const V4: &str = "
CREATE INDEX inbox_processed ON inbox (processed_at, id) WHERE processed_at IS NOT NULL;
";

/// What orch knows of each work item by Plane's clock (`Task::tracker_state`, …), the stage a
/// job was written for (`Job::stage`), and outage waits (`Job::waits`, `Job::waiting`).
/// Tasks waiting for a verdict or blocked at the upgrade accept any later verdict, as before.
const V3: &str = "
ALTER TABLE tasks ADD COLUMN tracker_state TEXT;
ALTER TABLE tasks ADD COLUMN tracker_seen_at INTEGER;
ALTER TABLE tasks ADD COLUMN verdicts_after INTEGER;
ALTER TABLE tasks ADD COLUMN feedback_after INTEGER;
UPDATE tasks SET verdicts_after = 0, feedback_after = gate_opened_at
    WHERE status IN ('awaiting_verdict', 'blocked');
ALTER TABLE jobs ADD COLUMN stage TEXT NOT NULL DEFAULT 'analysis';
UPDATE jobs SET stage = (SELECT tasks.stage FROM tasks WHERE tasks.id = jobs.task_id);
ALTER TABLE jobs ADD COLUMN waits INTEGER NOT NULL DEFAULT 0;
ALTER TABLE jobs ADD COLUMN waiting_service TEXT;
ALTER TABLE jobs ADD COLUMN waiting_since INTEGER;
CREATE INDEX jobs_waiting ON jobs (waiting_service, waiting_since, id)
    WHERE waiting_service IS NOT NULL AND status IN ('queued', 'running');
";

/// A head sent back to development can no longer pass the gate (`Task::sent_back_sha`).
const V2: &str = "ALTER TABLE tasks ADD COLUMN sent_back_sha TEXT;";

const V1: &str = "
CREATE TABLE tasks (
    id              INTEGER PRIMARY KEY,
    version         INTEGER NOT NULL,
    issue_id        TEXT NOT NULL UNIQUE,
    project_id      TEXT NOT NULL,
    work_item       TEXT NOT NULL,
    title           TEXT NOT NULL,
    description     TEXT NOT NULL,
    repo            TEXT NOT NULL,
    base_branch     TEXT NOT NULL,
    branch          TEXT NOT NULL,
    stage           TEXT NOT NULL,
    status          TEXT NOT NULL,
    blocked_reason  TEXT,
    head_sha        TEXT,
    pr_number       INTEGER,
    fix_rounds      INTEGER NOT NULL DEFAULT 0,
    review_rounds   INTEGER NOT NULL DEFAULT 0,
    last_fix_sha    TEXT,
    gate_opened_at  INTEGER,
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL
);
-- F-1 candidates: one stage, oldest update first.
CREATE INDEX tasks_stage_updated ON tasks (stage, updated_at, id);
CREATE INDEX tasks_repo_stage ON tasks (repo, stage);
CREATE INDEX tasks_work_item ON tasks (work_item);
CREATE INDEX tasks_head_sha ON tasks (repo, head_sha) WHERE head_sha IS NOT NULL;
CREATE INDEX tasks_pr ON tasks (repo, pr_number) WHERE pr_number IS NOT NULL;

CREATE TABLE jobs (
    id                  INTEGER PRIMARY KEY,
    task_id             INTEGER NOT NULL REFERENCES tasks (id),
    repo                TEXT NOT NULL,
    kind                TEXT NOT NULL,
    is_agent            INTEGER NOT NULL,
    -- orch_core::domain::Action as JSON.
    payload             TEXT NOT NULL,
    idem_key            TEXT UNIQUE,
    status              TEXT NOT NULL,
    attempts            INTEGER NOT NULL DEFAULT 0,
    not_before          INTEGER NOT NULL,
    attempt_id          TEXT,
    lease_owner         TEXT,
    lease_expires_at    INTEGER,
    heartbeat_at        INTEGER,
    claimed_at          INTEGER,
    process_pid         INTEGER,
    process_pgid        INTEGER,
    process_start_time  INTEGER,
    last_error          TEXT,
    -- orch_core::domain::JobOutput as JSON.
    output              TEXT,
    handled             INTEGER NOT NULL DEFAULT 0,
    created_at          INTEGER NOT NULL,
    updated_at          INTEGER NOT NULL
);
-- At most one active (queued or running) agent job per task.
CREATE UNIQUE INDEX jobs_one_active_agent ON jobs (task_id)
    WHERE is_agent = 1 AND status IN ('queued', 'running');
CREATE INDEX jobs_task_status ON jobs (task_id, status);
CREATE INDEX jobs_due ON jobs (is_agent, not_before, id) WHERE status = 'queued';
CREATE INDEX jobs_running ON jobs (repo, is_agent) WHERE status = 'running';
CREATE INDEX jobs_unhandled ON jobs (updated_at, id)
    WHERE handled = 0 AND status IN ('succeeded', 'failed');

CREATE TABLE inbox (
    id              INTEGER PRIMARY KEY,
    source          TEXT NOT NULL,
    delivery_id     TEXT NOT NULL,
    event_type      TEXT NOT NULL,
    body_sha256     TEXT NOT NULL,
    body            BLOB NOT NULL,
    received_at     INTEGER NOT NULL,
    processed_at    INTEGER,
    outcome         TEXT,
    UNIQUE (source, delivery_id)
);
-- The 7-day body dedupe looks up (source, sha) and compares received_at.
CREATE INDEX inbox_body ON inbox (source, body_sha256, received_at);
CREATE INDEX inbox_pending ON inbox (id) WHERE processed_at IS NULL;

CREATE TABLE task_history (
    id          INTEGER PRIMARY KEY,
    task_id     INTEGER NOT NULL REFERENCES tasks (id),
    at          INTEGER NOT NULL,
    stage       TEXT NOT NULL,
    status      TEXT NOT NULL,
    message     TEXT NOT NULL
);
CREATE INDEX task_history_task ON task_history (task_id, id);

CREATE TABLE reconcile_totals (
    id                  INTEGER PRIMARY KEY CHECK (id = 1),
    runs_total          INTEGER NOT NULL,
    unblocked_total     INTEGER NOT NULL,
    errors_total        INTEGER NOT NULL,
    last_run_at         INTEGER,
    last_duration_ms    INTEGER,
    last_error          TEXT
);
-- The most recent unblocked tasks (pruned to 20).
CREATE TABLE reconcile_unblocked (
    id          INTEGER PRIMARY KEY,
    task_id     INTEGER NOT NULL,
    work_item   TEXT NOT NULL,
    stage       TEXT NOT NULL,
    via         TEXT NOT NULL,
    at          INTEGER NOT NULL
);
CREATE TABLE tracker_watermarks (
    project_id  TEXT PRIMARY KEY,
    at          INTEGER NOT NULL
);
CREATE TABLE meta (
    key     TEXT PRIMARY KEY,
    value   TEXT NOT NULL
);
";

/// Opens `path`, switches it to WAL and applies every pending migration, each in its own
/// `BEGIN IMMEDIATE` transaction together with its `user_version` bump.
pub(crate) fn migrate_path(path: &Path) -> Result<Migrated, OpenError> {
    let mut conn = open_connection(path)?;
    let sqlite = |source| OpenError::Sqlite {
        path: path.to_path_buf(),
        source,
    };
    conn.busy_timeout(Duration::from_secs(5)).map_err(sqlite)?;
    conn.query_row("PRAGMA journal_mode = WAL", [], |row| {
        row.get::<_, String>(0)
    })
    .map_err(sqlite)?;
    conn.execute_batch("PRAGMA foreign_keys = ON; PRAGMA synchronous = FULL;")
        .map_err(sqlite)?;
    migrate_connection(&mut conn, path)
}

pub(crate) fn migrate_connection(
    conn: &mut Connection,
    path: &Path,
) -> Result<Migrated, OpenError> {
    let from = user_version(conn).map_err(|source| OpenError::Sqlite {
        path: path.to_path_buf(),
        source,
    })?;
    if from > LATEST_VERSION {
        return Err(OpenError::TooNew {
            path: path.to_path_buf(),
            found: from,
            supported: LATEST_VERSION,
        });
    }
    if from == LATEST_VERSION {
        // Up to date: no write lock needed (a reader such as `orch status` opens this way).
        return Ok(Migrated { from, to: from });
    }
    let mut current = from;
    for (index, sql) in MIGRATIONS.iter().enumerate() {
        let version = index as i64 + 1;
        let failed = |source| OpenError::Migration {
            path: path.to_path_buf(),
            version,
            source,
        };
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(failed)?;
        // Re-read inside the write lock: another process may have migrated meanwhile.
        let now_at = user_version(&tx).map_err(failed)?;
        if now_at > LATEST_VERSION {
            return Err(OpenError::TooNew {
                path: path.to_path_buf(),
                found: now_at,
                supported: LATEST_VERSION,
            });
        }
        if now_at >= version {
            current = now_at;
            continue;
        }
        tx.execute_batch(sql).map_err(failed)?;
        tx.pragma_update(None, "user_version", version)
            .map_err(failed)?;
        tx.commit().map_err(failed)?;
        tracing::info!(path = %path.display(), version, "store migrated");
        current = version;
        if version < LATEST_VERSION {
            crate::failpoint::hit(crate::failpoint::MIGRATE_BETWEEN_STEPS);
        }
    }
    Ok(Migrated { from, to: current })
}

fn user_version(conn: &Connection) -> Result<i64, rusqlite::Error> {
    conn.query_row("PRAGMA user_version", [], |row| row.get(0))
}
