//! Tests of the CI driver's output handling.

use crate::ci::{binary_artifact, summarize};

#[test]
fn libtest_results_are_added_up_into_one_line() {
    let kept = [
        "test result: ok. 3 passed; 0 failed; 0 ignored; 0 measured; 0 filtered out; finished in 0.01s".to_owned(),
        "test result: ok. 12 passed; 1 failed; 2 ignored; 0 measured; 0 filtered out; finished in 1.20s".to_owned(),
    ];
    assert_eq!(
        summarize(&kept),
        "tests: 15 passed, 1 failed, 2 ignored, in 2 test binaries"
    );
}

#[test]
fn the_nextest_summary_is_kept_as_it_is() {
    let kept = ["     Summary [   2.345s] 40 tests run: 40 passed, 0 skipped".to_owned()];
    assert_eq!(
        summarize(&kept),
        "tests: Summary [   2.345s] 40 tests run: 40 passed, 0 skipped"
    );
}

#[test]
fn the_built_binary_is_found_in_cargo_json_and_test_harnesses_are_skipped() {
    let harness = r#"{"reason":"compiler-artifact","target":{"kind":["bin"],"crate_types":["bin"],"name":"orch","test":true},"profile":{"opt_level":"0","test":true},"executable":"/w/target/debug/deps/orch-1a2b"}"#;
    let binary = r#"{"reason":"compiler-artifact","target":{"kind":["bin"],"crate_types":["bin"],"name":"orch","test":true},"profile":{"opt_level":"0","test":false},"executable":"/w/target/debug/orch","fresh":true}"#;
    let other = r#"{"reason":"compiler-artifact","target":{"kind":["bin"],"crate_types":["bin"],"name":"orchx"},"profile":{"test":false},"executable":"/w/target/debug/orchx"}"#;
    assert_eq!(binary_artifact(harness, "orch"), None);
    assert_eq!(binary_artifact(other, "orch"), None);
    assert_eq!(
        binary_artifact(binary, "orch"),
        Some(std::path::PathBuf::from("/w/target/debug/orch"))
    );
}
