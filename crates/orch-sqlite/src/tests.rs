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
