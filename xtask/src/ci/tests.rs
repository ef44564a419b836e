//! Tests of the CI driver's output handling.

use crate::ci::summarize;

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
