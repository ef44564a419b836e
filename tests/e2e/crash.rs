//! R1 on the real binary: `orch serve` killed 50 times under a stream of signed deliveries.

use std::time::Duration;

use orch_e2e::crash::{clock_seed, crash_run, orch_binary, CrashRun};

use crate::harness::CONVERGE;

/// Kills in CI; `cargo xtask bench crash` runs 1 000.
const KILLS: u32 = 50;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_delivery_acknowledged_before_a_kill_9_is_stored_and_processed_once() {
    if std::env::var_os("RUN_SLOW_TESTS").is_none() {
        return;
    }
    let dir = tempfile::Builder::new()
        .prefix("orch-e2e-crash-")
        .tempdir()
        .expect("temp dir");
    let seed = clock_seed();
    let report = crash_run(
        &orch_binary().expect("orch binary"),
        dir.path(),
        CrashRun {
            kills: KILLS,
            rate_per_s: 50,
            max_uptime: Duration::from_millis(300),
            seed,
            deadline: CONVERGE,
        },
    )
    .await
    .expect("crash run");
    let report_text = format!("seed {seed}: {report}");
    assert!(
        report.acknowledged > usize::try_from(KILLS).expect("small"),
        "too few deliveries were acknowledged to show anything: {report_text}"
    );
    assert!(
        report.lost.is_empty(),
        "lost {:?}: {report_text}",
        report.lost
    );
    assert!(
        report.unprocessed.is_empty(),
        "unprocessed {:?}: {report_text}",
        report.unprocessed
    );
    assert_eq!(
        report.effects, 0,
        "deliveries for no work item had effects: {report_text}"
    );
    assert!(
        report.other_answers.is_empty(),
        "answers other than 202: {:?}",
        report.other_answers
    );
}
