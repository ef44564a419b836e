//! Unit tests of the schema: the F-1 query plan.

use rusqlite::Connection;

use crate::schema::migrate_connection;
use crate::store::gate_candidates_sql;

#[test]
fn gate_candidate_query_uses_the_stage_updated_index() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("plan.db");
    let mut conn = Connection::open(&path).expect("open");
    migrate_connection(&mut conn, &path).expect("migrate");
    let sql = format!("EXPLAIN QUERY PLAN {}", gate_candidates_sql());
    let mut stmt = conn.prepare(&sql).expect("prepare");
    let plan: Vec<String> = stmt
        .query_map(rusqlite::params!["development", 0_i64, 10_i64], |row| {
            row.get::<_, String>(3)
        })
        .expect("explain")
        .collect::<Result<_, _>>()
        .expect("rows");
    let plan = plan.join("\n");
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
