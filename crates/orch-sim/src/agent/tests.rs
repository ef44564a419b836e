//! Unit tests of the scripted agent's script and counters.

use crate::agent::{Counters, Role, Script};

#[test]
fn a_listed_item_uses_its_own_entry_and_others_the_default() {
    let script: Script = serde_json::from_str(
        r#"{ "default": { "developer": { "run_for_ms": 5 } },
             "items": { "ET-001": { "reviewer": { "request_changes_once": true } } } }"#,
    )
    .expect("valid script");
    assert_eq!(
        script
            .item("ET-001")
            .role(Role::Reviewer)
            .request_changes_runs(),
        1
    );
    assert_eq!(script.item("ET-001").role(Role::Developer).run_for_ms, 0);
    assert_eq!(script.item("ET-002").role(Role::Developer).run_for_ms, 5);
    assert_eq!(
        script
            .item("ET-002")
            .role(Role::Reviewer)
            .request_changes_runs(),
        0
    );
}

#[test]
fn unknown_keys_in_a_script_are_an_error() {
    for text in [
        r#"{ "itemz": {} }"#,
        r#"{ "items": { "ET-1": { "tester": {} } } }"#,
        r#"{ "items": { "ET-1": { "developer": { "fail_time": 1 } } } }"#,
    ] {
        assert!(
            serde_json::from_str::<Script>(text).is_err(),
            "{text} accepted"
        );
    }
}

#[test]
fn request_changes_times_wins_over_once_when_larger() {
    let script: Script = serde_json::from_str(
        r#"{ "default": { "reviewer": { "request_changes_once": true, "request_changes_times": 3 } } }"#,
    )
    .expect("valid script");
    assert_eq!(
        script
            .item("X-1")
            .role(Role::Reviewer)
            .request_changes_runs(),
        3
    );
}

#[test]
fn counters_persist_per_item_and_role() {
    let dir = tempfile::tempdir().expect("temp dir");
    let counters = Counters::new(Some(dir.path().join("state")));
    assert_eq!(
        counters
            .bump("ET-001", Role::Developer, "runs")
            .expect("bump"),
        0
    );
    assert_eq!(
        counters
            .bump("ET-001", Role::Developer, "runs")
            .expect("bump"),
        1
    );
    assert_eq!(
        counters
            .bump("ET-001", Role::Reviewer, "runs")
            .expect("bump"),
        0
    );
    assert_eq!(
        counters
            .bump("ET-002", Role::Developer, "runs")
            .expect("bump"),
        0
    );
    let again = Counters::new(Some(dir.path().join("state")));
    assert_eq!(
        again.get("ET-001", Role::Developer, "runs").expect("get"),
        2
    );
}

#[test]
fn counters_without_a_state_dir_always_read_zero() {
    let counters = Counters::new(None);
    assert_eq!(
        counters
            .bump("ET-001", Role::Analyst, "runs")
            .expect("bump"),
        0
    );
    assert_eq!(
        counters
            .bump("ET-001", Role::Analyst, "runs")
            .expect("bump"),
        0
    );
}

#[test]
fn a_script_built_in_code_round_trips_through_json() {
    let mut script = Script::default();
    let item = script.items.entry("ET-001".to_owned()).or_default();
    item.developer.ci_fail_times = 1;
    item.developer.conflict_file = Some("shared.md".to_owned());
    item.reviewer.request_changes_once = true;
    let text = serde_json::to_string(&script).expect("serialize");
    assert_eq!(
        serde_json::from_str::<Script>(&text).expect("parse"),
        script
    );
}
