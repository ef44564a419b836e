//! The deterministic simulation's runner: `--seed N` replays one seed with its trace,
//! `--seeds N [--from S]` runs many and prints seeds/s; a failing seed prints its violations
//! and the tail of its trace. `cargo xtask sim ...` runs it in release mode.

#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use orch_core::fakes::sim::{run_seed, SeedReport, SimConfig, REGRESSION_SEEDS};

const USAGE: &str = "usage: sim (--seed N [--trace] | --seeds N [--from S] [--no-regressions] [--stop-on-failure] [--list]) [--items K]";

struct Args {
    seed: Option<u64>,
    seeds: Option<u64>,
    from: u64,
    items: usize,
    trace: bool,
    regressions: bool,
    stop_on_failure: bool,
    list: bool,
}

fn parse(args: &[String]) -> Result<Args, String> {
    let mut parsed = Args {
        seed: None,
        seeds: None,
        from: 0,
        items: SimConfig::default().items,
        trace: false,
        regressions: true,
        stop_on_failure: false,
        list: false,
    };
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let mut number = |name: &str| -> Result<u64, String> {
            it.next()
                .and_then(|value| value.parse().ok())
                .ok_or_else(|| format!("{name} needs a number"))
        };
        match arg.as_str() {
            "--seed" => parsed.seed = Some(number("--seed")?),
            "--seeds" => parsed.seeds = Some(number("--seeds")?),
            "--from" => parsed.from = number("--from")?,
            "--items" => parsed.items = number("--items")? as usize,
            "--trace" => parsed.trace = true,
            "--no-regressions" => parsed.regressions = false,
            "--stop-on-failure" => parsed.stop_on_failure = true,
            "--list" => parsed.list = true,
            other => return Err(format!("unknown argument {other}")),
        }
    }
    if parsed.seed.is_none() && parsed.seeds.is_none() {
        return Err("give --seed or --seeds".to_owned());
    }
    Ok(parsed)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let args = match parse(&args) {
        Ok(args) => args,
        Err(err) => {
            eprintln!("sim: {err}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let config = SimConfig {
        items: args.items,
        keep_trace: args.trace,
        ..SimConfig::default()
    };
    if let Some(seed) = args.seed {
        let report = run_seed(seed, &config);
        if let Some(trace) = &report.trace {
            for line in trace {
                println!("{line}");
            }
        }
        print_summary(&report);
        if report.passed() {
            println!("seed {seed}: ok ({} events)", report.events);
            return ExitCode::SUCCESS;
        }
        print_failure(&report, !args.trace);
        return ExitCode::FAILURE;
    }
    let count = args.seeds.unwrap_or(0);
    let mut seeds: Vec<u64> = Vec::new();
    if args.regressions {
        seeds.extend(REGRESSION_SEEDS);
    }
    seeds.extend(args.from..args.from + count);
    let started = Instant::now();
    let mut failures: Vec<SeedReport> = Vec::new();
    let mut by_class: BTreeMap<&'static str, (u64, u64)> = BTreeMap::new();
    let mut settle: Vec<Duration> = Vec::new();
    let mut recoveries: Vec<Duration> = Vec::new();
    let mut restarts: Vec<Duration> = Vec::new();
    let mut leases: Vec<Duration> = Vec::new();
    let mut unsettled = 0u64;
    let mut events = 0u64;
    let mut ends: BTreeMap<&'static str, u64> = BTreeMap::new();
    let mut faults: BTreeMap<&'static str, u64> = BTreeMap::new();
    for seed in &seeds {
        let report = run_seed(*seed, &config);
        events += report.events;
        match report.settled_after {
            Some(after) => settle.push(after),
            None => unsettled += 1,
        }
        recoveries.extend(&report.lost_webhook_recoveries);
        restarts.extend(&report.restart_recoveries);
        leases.extend(&report.lease_recoveries);
        for (end, n) in &report.ends {
            *ends.entry(end).or_default() += u64::from(*n);
        }
        for (kind, n) in &report.faults {
            *faults.entry(kind.as_str()).or_default() += n;
        }
        let mut seen = std::collections::BTreeSet::new();
        for violation in &report.violations {
            let entry = by_class.entry(violation.class).or_insert((0, *seed));
            if seen.insert(violation.class) {
                entry.0 += 1;
            }
        }
        if args.list {
            for violation in &report.violations {
                println!("seed {seed}: {violation}");
            }
        }
        if !report.passed() {
            if failures.is_empty() && !args.list {
                print_failure(&report, true);
            }
            failures.push(report);
            if args.stop_on_failure {
                break;
            }
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    let ran = seeds.len() as f64;
    println!(
        "sim: {} seeds in {elapsed:.1} s ({:.0} seeds/s, {:.0} events/seed), {} failed",
        seeds.len(),
        ran / elapsed.max(1e-9),
        events as f64 / ran.max(1.0),
        failures.len()
    );
    println!(
        "settled after the chaos: p50 {} p99 {} max {} (never: {unsettled})",
        percentile(&mut settle, 0.5),
        percentile(&mut settle, 0.99),
        percentile(&mut settle, 1.0)
    );
    for (what, values) in [
        (
            "lost webhook of a person's move -> orch acted",
            &mut recoveries,
        ),
        ("job lost to a restart -> claimed again", &mut restarts),
        (
            "job whose result was not recorded -> claimed again",
            &mut leases,
        ),
    ] {
        println!(
            "{what}: p50 {} p99 {} max {} (n = {})",
            percentile(values, 0.5),
            percentile(values, 0.99),
            percentile(values, 1.0),
            values.len()
        );
    }
    println!("items ended: {ends:?}");
    println!("faults injected: {faults:?}");
    if !by_class.is_empty() {
        println!("violations by class (seeds, first seed):");
        for (class, (n, first)) in &by_class {
            println!("  {class:<28} {n:>6}  seed {first}");
        }
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}

fn print_summary(report: &SeedReport) {
    println!(
        "seed {}: {} events, settled after the chaos: {}, ends {:?}, faults {:?}",
        report.seed,
        report.events,
        report
            .settled_after
            .map_or("never".to_owned(), |after| format!("{after:?}")),
        report.ends,
        report.faults
    );
}

fn print_failure(report: &SeedReport, with_tail: bool) {
    println!("seed {} FAILED:", report.seed);
    for violation in &report.violations {
        println!("  {violation}");
    }
    if with_tail {
        println!("last {} trace lines:", report.trace_tail.len());
        for line in &report.trace_tail {
            println!("  {line}");
        }
    }
    println!("replay: cargo xtask sim --seed {}", report.seed);
}

fn percentile(values: &mut [Duration], p: f64) -> String {
    if values.is_empty() {
        return "-".to_owned();
    }
    values.sort();
    let index = ((values.len() - 1) as f64 * p).round() as usize;
    let secs = values[index].as_secs();
    format!("{}h{:02}m{:02}s", secs / 3600, secs / 60 % 60, secs % 60)
}
