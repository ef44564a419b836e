//! The simulation's own tests: a seed replays exactly, the invariants fire on a world that
//! does not converge, and a batch of seeds (the regression seeds first) finds no violation.

use std::time::Duration;

use crate::fakes::sim::invariants::check;
use crate::fakes::sim::rng::SimRng;
use crate::fakes::sim::scheduler::Sim;
use crate::fakes::sim::trace::Trace;
use crate::fakes::sim::{run_seed, SimConfig, REGRESSION_SEEDS};
use crate::time::Timestamp;

/// Seeds `cargo test` runs besides the regression seeds; `cargo xtask ci` runs thousands.
const QUICK_SEEDS: u64 = 100;

#[test]
fn one_seed_run_twice_gives_the_same_trace() {
    let config = SimConfig {
        keep_trace: true,
        ..SimConfig::default()
    };
    let first = run_seed(7, &config);
    let second = run_seed(7, &config);
    assert_eq!(first.trace_hash, second.trace_hash);
    assert_eq!(first.trace, second.trace);
    assert!(first.trace_lines > 100, "the seed did something");
}

#[test]
fn different_seeds_give_different_worlds() {
    let config = SimConfig::default();
    assert_ne!(
        run_seed(1, &config).trace_hash,
        run_seed(2, &config).trace_hash
    );
}

#[test]
fn a_world_without_orch_reports_the_started_items_as_stalled() {
    let mut sim = Sim::new(3, SimConfig::default());
    sim.orch_runs = false;
    sim.run();
    let violations = check(&sim);
    let in_progress = sim
        .people
        .iter()
        .filter(|person| {
            let item = sim.tracker.item(&person.issue).expect("the item exists");
            item.state.as_str().ends_with("in-progress")
        })
        .count();
    assert!(in_progress > 0, "people started items");
    let stalled = violations
        .iter()
        .filter(|violation| violation.class == "stalled")
        .count();
    assert_eq!(stalled, in_progress, "{violations:?}");
    assert!(
        sim.settled_at.is_none(),
        "a world without orch never settles"
    );
}

#[test]
fn regression_seeds_find_no_violation() {
    assert_no_violation(REGRESSION_SEEDS.iter().copied());
}

#[test]
fn a_quick_batch_of_seeds_finds_no_violation() {
    assert_no_violation(0..QUICK_SEEDS);
}

/// Runs `seeds`; a failure names every failing seed, and shows the first one's trace tail.
fn assert_no_violation(seeds: impl Iterator<Item = u64>) {
    let config = SimConfig::default();
    let failed: Vec<_> = seeds
        .map(|seed| run_seed(seed, &config))
        .filter(|report| !report.passed())
        .collect();
    let Some(first) = failed.first() else {
        return;
    };
    let lines: Vec<String> = failed
        .iter()
        .flat_map(|report| {
            report
                .violations
                .iter()
                .map(move |violation| format!("seed {}: {violation}", report.seed))
        })
        .collect();
    panic!(
        "{}

seed {}'s last trace lines:
{}
replay: cargo xtask sim --seed {} --trace",
        lines.join("\n"),
        first.seed,
        first.trace_tail.join("\n"),
        first.seed
    );
}

#[test]
fn the_rng_is_deterministic_and_stays_in_range() {
    let mut first = SimRng::new(42);
    let mut second = SimRng::new(42);
    for _ in 0..1000 {
        assert_eq!(first.next_u64(), second.next_u64());
        second.next_u64();
        second.next_u64();
        second.next_u64();
        let unit = first.unit();
        assert!((0.0..1.0).contains(&unit));
        assert!(first.below(7) < 7);
        let span = first.between(Duration::from_secs(2), Duration::from_secs(3));
        assert!((Duration::from_secs(2)..=Duration::from_secs(3)).contains(&span));
    }
    assert_eq!(SimRng::new(1).below(0), 0);
}

#[test]
fn the_trace_keeps_its_tail_and_hashes_every_line() {
    let start = Timestamp::from_millis(0);
    let mut trace = Trace::new(start, 2, false);
    trace.push(Timestamp::from_millis(3_723_004), "one");
    let after_one = trace.hash();
    trace.push(start, "two");
    trace.push(start, "three");
    assert_eq!(trace.lines(), 3);
    assert_eq!(
        trace.tail(),
        vec!["+00:00:00.000 two", "+00:00:00.000 three"]
    );
    assert_ne!(trace.hash(), after_one);
    assert_eq!(
        trace.offset(Timestamp::from_millis(3_723_004)),
        "+01:02:03.004"
    );
}
