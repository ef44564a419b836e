//! Crash benchmark (`cargo xtask bench crash`, release): R1 under 1 000 `SIGKILL`s of
//! `orch serve` while signed deliveries arrive at 50/s. Prints the count of acknowledged
//! deliveries lost (the bar is 0) and the kills per second; exits non-zero if R1 did not hold.

#![allow(clippy::print_stdout)]

use std::time::Duration;

use orch_e2e::crash::{built_orch, clock_seed, crash_run, CrashError, CrashRun};

const KILLS: u32 = 1_000;
const RATE_PER_S: u32 = 50;
const MAX_UPTIME: Duration = Duration::from_millis(200);
const DEADLINE: Duration = Duration::from_secs(60);

fn main() -> Result<(), CrashError> {
    let orch = built_orch()?;
    let dir = tempfile::Builder::new()
        .prefix("orch-bench-crash-")
        .tempdir()?;
    let seed = clock_seed();
    println!(
        "crash bench: {KILLS} kills of {} at {RATE_PER_S} deliveries/s in {} (seed {seed})",
        orch.display(),
        dir.path().display()
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let report = runtime.block_on(crash_run(
        &orch,
        dir.path(),
        CrashRun {
            kills: KILLS,
            rate_per_s: RATE_PER_S,
            max_uptime: MAX_UPTIME,
            seed,
            deadline: DEADLINE,
        },
    ))?;
    println!("{report}");
    println!(
        "lost acknowledged deliveries: {} (bar: 0); {:.2} kills/s",
        report.lost.len(),
        report.kills_per_s()
    );
    if !report.held() {
        return Err(format!("R1 did not hold: {report}").into());
    }
    Ok(())
}
