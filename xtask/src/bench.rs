//! `cargo xtask bench [NAME]`: the release-mode benchmarks of SPEC §7, as cargo examples.
//!
//! Each benchmark is an example of the crate it measures, so it builds with that crate's
//! dev-dependencies and prints its own figures. A benchmark whose example does not exist yet
//! is reported and skipped.

use std::path::Path;

use crate::process::{self, cargo, timed};
use crate::Result;

/// A benchmark: its name, and the package (in folder `dir`) and example that implement it.
struct Bench {
    name: &'static str,
    package: &'static str,
    dir: &'static str,
    example: &'static str,
    measures: &'static str,
}

const BENCHES: &[Bench] = &[
    Bench {
        name: "store",
        package: "orch-sqlite",
        dir: "crates/orch-sqlite",
        example: "bench_store",
        measures: "F-1 candidate selection, claims and transitions on SQLite",
    },
    Bench {
        name: "retention",
        package: "orch-sqlite",
        dir: "crates/orch-sqlite",
        example: "bench_retention",
        measures: "database size over a soak of 500 items with and without retention",
    },
    Bench {
        name: "ingest",
        package: "orch-e2e",
        dir: "tests",
        example: "bench_ingest",
        measures: "orch serve against a plain Python receiver and its own /healthz, under wrk and at 500 deliveries/s",
    },
    Bench {
        name: "pipeline",
        package: "orch-daemon",
        dir: "crates/orch-daemon",
        example: "bench_pipeline",
        measures: "50 items through the whole pipeline, and dispatch latency",
    },
    Bench {
        name: "crash",
        package: "orch-e2e",
        dir: "tests",
        example: "bench_crash",
        measures:
            "R1: 1 000 kill -9 of orch serve under 50 deliveries/s, lost acknowledged deliveries",
    },
];

pub(crate) fn run(root: &Path, name: Option<&str>) -> Result<()> {
    let selected: Vec<&Bench> = match name {
        None => BENCHES.iter().collect(),
        Some(name) => {
            let Some(bench) = BENCHES.iter().find(|bench| bench.name == name) else {
                let known: Vec<&str> = BENCHES.iter().map(|bench| bench.name).collect();
                return Err(
                    format!("unknown benchmark `{name}`; known: {}", known.join(", ")).into(),
                );
            };
            vec![bench]
        }
    };
    let mut missing = Vec::new();
    for bench in selected {
        if !example_exists(root, bench) {
            println!(
                "bench {}: {}/examples/{}.rs does not exist yet: skipped",
                bench.name, bench.dir, bench.example
            );
            missing.push(bench.name);
            continue;
        }
        let title = format!("bench {} ({})", bench.name, bench.measures);
        timed(&title, || {
            process::run(cargo(root).args([
                "run",
                "--release",
                "-p",
                bench.package,
                "--example",
                bench.example,
            ]))
        })?;
    }
    if name.is_some() && !missing.is_empty() {
        return Err(format!("benchmark `{}` is not implemented yet", missing.join(", ")).into());
    }
    Ok(())
}

/// Whether the example is in one of cargo's auto-discovered places, or declared by name.
fn example_exists(root: &Path, bench: &Bench) -> bool {
    let dir = root.join(bench.dir);
    let examples = dir.join("examples");
    if examples.join(format!("{}.rs", bench.example)).is_file()
        || examples.join(bench.example).join("main.rs").is_file()
    {
        return true;
    }
    let manifest = std::fs::read_to_string(dir.join("Cargo.toml")).unwrap_or_default();
    let manifest = crate::manifest::Manifest::parse(&manifest);
    manifest
        .tables
        .iter()
        .filter(|table| table.path == ["example"])
        .any(|table| {
            table.entries.iter().any(|entry| {
                entry.key == ["name"]
                    && crate::manifest::unquote(&entry.value).as_deref() == Some(bench.example)
            })
        })
}
