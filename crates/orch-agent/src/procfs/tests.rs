//! Tests of the `/proc` parsing.

use crate::procfs::{parse_stat, process_record, ProcStat};

#[test]
fn stat_fields_are_counted_after_the_last_parenthesis() {
    let line = "4242 (we ird) (name) S 1 4240 4240 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 987654 1000 10 \
                18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0";
    assert_eq!(
        parse_stat(line),
        Some(ProcStat {
            state: 'S',
            pgrp: 4240,
            start_time: 987654
        })
    );
}

#[test]
fn a_truncated_stat_line_is_not_parsed() {
    assert_eq!(parse_stat("12 (sh) S 1 12"), None);
}

#[test]
fn the_current_process_has_a_record() {
    let record = process_record(std::process::id()).expect("this process exists");
    assert_eq!(record.pid, std::process::id());
    assert!(record.start_time > 0);
}

#[test]
fn a_missing_process_has_no_record() {
    // Linux never hands out pids above 2^22.
    assert_eq!(process_record(u32::MAX - 1), None);
}
