//! Ingest benchmark (`cargo xtask bench ingest`, release): orch against a plain Python
//! receiver, side by side in one run, driven from outside.
//!
//! Three servers, each its own process: `orch serve` (the release binary, on the sandbox's
//! config: SQLite, inbox commits with `synchronous=FULL`, the event loop draining the inbox
//! as in production), `bench/python_receiver.py` (ThreadingHTTPServer, HMAC, one sqlite3
//! commit per delivery, WAL, `synchronous=FULL`), and orch's own `/healthz` as the HTTP floor.
//! Two load generators, each its own process:
//! 1. saturation, closed loop: `wrk` (installed with apt-get when missing and root) with
//!    `bench/ingest.lua`, which sends pre-signed distinct Plane deliveries from files written
//!    before the clock starts, over keep-alive connections;
//! 2. 500 deliveries/s, open loop: this program started again as `bench_ingest paced`, which
//!    sends each delivery at its scheduled time on a new connection (as Plane's `requests.post`
//!    does) and measures latency from that time, so a slow answer cannot hide later ones; the
//!    same load to orch's `/healthz` (a `POST`, answered 405 without the store) is the floor
//!    of what the machine and the HTTP stack cost at that rate.
//!
//! It prints each figure, the ratios orch/Python and orch/healthz, and each target with
//! pass or fail; it fails (exit code 1) when a figure is not valid: an acknowledged delivery
//! missing from a database, an answer other than 202, or a wrk thread that ran out of distinct
//! deliveries. Options: `--seconds N` (5) per saturation run, `--connections N` (16),
//! `--threads N` (2), `--rate N` (500), `--perf FILE` (records orch with `perf record -g`
//! during its saturation run), `--orch PATH` (another `orch` binary, e.g. an earlier build
//! to measure; by default cargo builds this tree's), `--baseline PATH` (a second `orch`
//! binary measured the same way in the same run, between orch and Python, for before/after),
//! `--drain-seconds N` (60: how long it waits, after each orch saturation run and again before
//! each orch 500/s run, for orch's event loop to process what was stored).
//!
//! After each orch saturation run it measures the event loop: how many of the stored
//! deliveries it processes per second while draining the backlog wrk left (no load then), and
//! waits for the inbox to drain before the 500/s runs, so that their p99 measures ingest, not
//! a backlog sharing the disk and the cores; what was still unprocessed is printed.

#![allow(clippy::print_stdout)]

use std::collections::BTreeMap;
use std::io::{BufRead as _, BufReader, BufWriter, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use bytes::Bytes;
use orch_daemon::sandbox::{Sandbox, SandboxSetup, PLANE_SECRET};
use orch_e2e::crash::{built_orch, fixed_port, wait_ready, CrashError};
use orch_sim::webhook::{hmac_sha256_hex, post};

type BenchError = CrashError;

/// Plane's `issue_comment` sample (contracts/plane/webhook_issue_comment_created.body.json,
/// 1 153 bytes) with the comment's id made distinct: a comment on an item orch does not track.
const BODY_PREFIX: &str = r#"{"event": "issue_comment", "action": "created", "webhook_id": "e5f6a7b8-c9d0-4e1f-8a2b-3c4d5e6f7a81", "workspace_id": "8c3f1e2a-5b7d-4c1e-9a0f-2d6b4e8a1c30", "data": {"id": "d4b5c6d7-e8f9-4a0b-9c1d-"#;
const BODY_SUFFIX: &str = r#"", "created_at": "2026-05-19T10:20:01.000042Z", "updated_at": "2026-05-19T10:20:01.000042Z", "deleted_at": null, "comment_html": "<p>Reproduced on Safari \u2014 caf\u00e9 wifi only</p>", "attachments": [], "access": "INTERNAL", "external_source": null, "external_id": null, "edited_at": null, "created_by": "6a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c41", "updated_by": null, "project": "4f9a2c71-3e5b-4d8a-b6c2-91e0f7a35d12", "workspace": "8c3f1e2a-5b7d-4c1e-9a0f-2d6b4e8a1c30", "description": "d4b5c6d7-e8f9-4a0b-9c1d-3e4f5a6b7d03", "issue": "b2f3a4b5-c6d7-4e8f-9a0b-1c2d3e4f5a02", "actor": "6a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c41", "parent": null}, "activity": {"field": null, "new_value": null, "old_value": null, "actor": {"id": "6a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c41", "first_name": "Ada", "last_name": "Lovelace", "email": "ada@example.com", "avatar": "", "avatar_url": null, "display_name": "ada"}, "old_identifier": null, "new_identifier": null}}"#;
const EVENT: &str = "issue_comment";

/// Targets of SPEC §7 and issue 18.
const TARGET_RATIO: f64 = 10.0;
const TARGET_P99_MS: f64 = 10.0;

/// Delivery `index` of the run named `run`: its id, body and signature. The id looks like
/// Plane's (a random-looking uuid4 per delivery), so both receivers' indexes see keys in no
/// order, as in production.
fn delivery(run: &str, index: u64) -> (String, String, String) {
    // The comment id's last group is 12 hex digits; the run's name keeps runs apart.
    let tag = u64::from(run.bytes().fold(0_u8, u8::wrapping_add)) << 40;
    let body = format!("{BODY_PREFIX}{:012x}{BODY_SUFFIX}", tag | index);
    let signature = hmac_sha256_hex(PLANE_SECRET.as_bytes(), body.as_bytes());
    let (high, low) = (mix(tag | index), mix(!(tag | index)));
    let id = format!(
        "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
        high >> 32,
        (high >> 16) & 0xffff,
        high & 0xfff,
        0x8000 | (low >> 48) & 0x3fff,
        low & 0xffff_ffff_ffff
    );
    (id, body, signature)
}

/// splitmix64: a fixed, well-spread function of `value`.
fn mix(value: u64) -> u64 {
    let mut z = value.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

struct Options {
    seconds: u64,
    connections: u64,
    threads: u64,
    rate: u64,
    perf: Option<PathBuf>,
    orch: Option<PathBuf>,
    baseline: Option<PathBuf>,
    drain: Duration,
}

fn options(mut args: impl Iterator<Item = String>) -> Result<Options, BenchError> {
    let mut options = Options {
        seconds: 5,
        connections: 16,
        threads: 2,
        rate: 500,
        perf: None,
        orch: None,
        baseline: None,
        drain: Duration::from_secs(60),
    };
    while let Some(flag) = args.next() {
        let value = args.next().ok_or_else(|| format!("{flag} needs a value"))?;
        let number = || -> Result<u64, BenchError> {
            Ok(value
                .parse::<u64>()
                .map_err(|_| format!("{flag}: expected a number, got {value:?}"))?
                .max(1))
        };
        match flag.as_str() {
            "--seconds" => options.seconds = number()?,
            "--connections" => options.connections = number()?,
            "--threads" => options.threads = number()?,
            "--rate" => options.rate = number()?,
            "--perf" => options.perf = Some(PathBuf::from(&value)),
            "--orch" => options.orch = Some(PathBuf::from(&value)),
            "--baseline" => options.baseline = Some(PathBuf::from(&value)),
            "--drain-seconds" => options.drain = Duration::from_secs(number()?),
            _ => return Err(format!("unknown option {flag} {value}").into()),
        }
    }
    options.connections = options.connections.max(options.threads);
    Ok(options)
}

/// One load generator's figures (the `RESULT` line both generators print).
#[derive(Debug, Default, Clone)]
struct Figures {
    requests: u64,
    seconds: f64,
    p50_us: u64,
    p99_us: u64,
    max_us: u64,
    errors: u64,
    wrapped: u64,
    statuses: BTreeMap<u16, u64>,
}

impl Figures {
    fn parse(output: &str) -> Result<Figures, BenchError> {
        let line = output
            .lines()
            .find_map(|line| line.strip_prefix("RESULT "))
            .ok_or_else(|| format!("no RESULT line in:\n{output}"))?;
        let mut figures = Figures::default();
        for pair in line.split_whitespace() {
            let (key, value) = pair
                .split_once('=')
                .ok_or_else(|| format!("bad RESULT field {pair:?}"))?;
            let bad = || format!("bad RESULT value {pair:?}");
            let number = || value.parse::<u64>().map_err(|_| bad());
            match key {
                "requests" => figures.requests = number()?,
                "seconds" => figures.seconds = value.parse().map_err(|_| bad())?,
                "p50_us" => figures.p50_us = number()?,
                "p99_us" => figures.p99_us = number()?,
                "max_us" => figures.max_us = number()?,
                "errors" => figures.errors = number()?,
                "wrapped" => figures.wrapped = number()?,
                _ => {
                    let status = key
                        .strip_prefix("status_")
                        .and_then(|status| status.parse().ok())
                        .ok_or_else(bad)?;
                    figures.statuses.insert(status, number()?);
                }
            }
        }
        Ok(figures)
    }

    fn line(&self) -> String {
        let mut line = format!(
            "RESULT requests={} seconds={:.6} p50_us={} p99_us={} max_us={} errors={} wrapped={}",
            self.requests,
            self.seconds,
            self.p50_us,
            self.p99_us,
            self.max_us,
            self.errors,
            self.wrapped
        );
        for (status, count) in &self.statuses {
            line.push_str(&format!(" status_{status}={count}"));
        }
        line
    }

    fn status(&self, status: u16) -> u64 {
        self.statuses.get(&status).copied().unwrap_or(0)
    }

    /// Answers with `status` per second.
    fn rate(&self, status: u16) -> f64 {
        self.status(status) as f64 / self.seconds.max(f64::EPSILON)
    }

    fn others(&self, expected: u16) -> u64 {
        self.statuses
            .iter()
            .filter(|(status, _)| **status != expected)
            .map(|(_, count)| count)
            .sum::<u64>()
            + self.errors
    }

    /// Answers with another status than `expected` (unanswered requests not counted).
    fn others_answered(&self, expected: u16) -> u64 {
        self.others(expected) - self.errors
    }

    fn summary(&self, expected: u16) -> String {
        format!(
            "{:>7.0}/s  p50 {:>7.2} ms  p99 {:>8.2} ms  max {:>8.2} ms  ({} × {expected}, {} other answers, {} unanswered)",
            self.rate(expected),
            ms(self.p50_us),
            ms(self.p99_us),
            ms(self.max_us),
            self.status(expected),
            self.others_answered(expected),
            self.errors,
        )
    }
}

fn ms(us: u64) -> f64 {
    us as f64 / 1000.0
}

fn main() -> Result<(), BenchError> {
    let mut args = std::env::args().skip(1).peekable();
    if args.peek().map(String::as_str) == Some("paced") {
        args.next();
        return paced_main(args);
    }
    let options = options(args)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    runtime.block_on(run(&options))
}

async fn run(options: &Options) -> Result<(), BenchError> {
    let wrk = wrk()?;
    let bench_dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .ok_or("no repository root")?
        .join("bench");
    let orch = match &options.orch {
        Some(orch) => orch.clone(),
        None => built_orch()?,
    };
    let dir = tempfile::Builder::new()
        .prefix("orch-bench-ingest-")
        .tempdir()?;
    println!(
        "ingest bench: {} cores; wrk {} threads × {} connections for {} s per saturation run; \
         open loop at {}/s; in {}",
        std::thread::available_parallelism().map_or(0, std::num::NonZero::get),
        options.threads,
        options.connections,
        options.seconds,
        options.rate,
        dir.path().display()
    );

    let mut targets = vec![Target::orch("orch", &orch, dir.path()).await?];
    if let Some(baseline) = &options.baseline {
        targets.push(Target::orch("baseline", baseline, dir.path()).await?);
    }
    targets.push(Target::python(&bench_dir, dir.path())?);

    let script = bench_dir.join("ingest.lua");
    let wrk_run = |url: String, prefix: Option<&Path>| {
        let mut command = Command::new(&wrk);
        command
            .arg(format!("-t{}", options.threads))
            .arg(format!("-c{}", options.connections))
            .arg(format!("-d{}s", options.seconds))
            .arg("--timeout")
            .arg(format!("{}s", ANSWER_TIMEOUT.as_secs()))
            .arg("-s")
            .arg(&script)
            .arg(url);
        if let Some(prefix) = prefix {
            command.arg("--").arg(prefix);
        }
        command
    };

    let healthz = measure(wrk_run(format!("{}/healthz", targets[0].base), None))?;
    println!("{:<34}{}", "orch /healthz (wrk)", healthz.summary(200));
    // Enough distinct deliveries for a server as fast as its own /healthz, with room.
    let per_thread = ((healthz.rate(200) * options.seconds as f64 * 1.25) as u64)
        .div_ceil(options.threads)
        .max(10_000);
    let prefix = dir.path().join("deliveries");
    write_deliveries(&prefix, options.threads, per_thread)?;

    for target in &mut targets {
        let perf = match (&options.perf, &target.server) {
            (Some(file), Some(server)) if target.name == "orch" => Some(Server::new(
                Command::new("perf")
                    .args(["record", "-g", "-o"])
                    .arg(file)
                    .args(["-p", &server.0.id().to_string()])
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()
                    .map_err(|err| format!("cannot start perf: {err}"))?,
            )),
            _ => None,
        };
        target.saturated = measure(wrk_run(
            format!("{}/webhooks/plane", target.base),
            Some(&prefix),
        ))?;
        if let Some(mut perf) = perf {
            // perf writes its file on SIGINT.
            Command::new("kill")
                .args(["-INT", &perf.0.id().to_string()])
                .status()?;
            perf.0.wait()?;
            perf.1 = false;
        }
        println!(
            "{:<34}{}",
            format!("{} ingest (wrk)", target.name),
            target.saturated.summary(202)
        );
        if target._sandbox.is_some() {
            // Before the next receiver's run, so that a backlog does not share its cores.
            let mut drained = drain(&target.db, options.drain).await?;
            drained.after_load = Some((stored(&target.db)?, target.saturated.seconds));
            target.drained = Some(drained);
            println!(
                "{:<34}{}",
                format!("{} event loop, draining", target.name),
                target
                    .drained
                    .as_ref()
                    .map(Drain::summary)
                    .unwrap_or_default()
            );
        }
    }
    let paced = |url: String| {
        let mut command = Command::new(std::env::current_exe()?);
        command.args([
            "paced",
            &url,
            "paced",
            &options.rate.to_string(),
            &options.seconds.to_string(),
        ]);
        measure(command)
    };
    // The same open loop against a route that touches no store: what the machine and the
    // HTTP stack alone cost at this rate (orch answers a POST to /healthz with 405).
    let floor = paced(format!("{}/healthz", targets[0].base))?;
    println!(
        "{:<34}{}",
        format!("orch POST /healthz at {}/s", options.rate),
        floor.summary(405)
    );
    for target in &mut targets {
        if target._sandbox.is_some() {
            // A backlog the event loop has not processed yet would share the disk and the
            // cores with the 500/s run: wait for it (bounded) and say what is left.
            let before = unprocessed(&target.db)?;
            let left = if before > 0 {
                drain(&target.db, options.drain).await?.left
            } else {
                0
            };
            println!(
                "{:<34}{left} deliveries not processed yet ({before} when the wait began)",
                format!("{} before its 500/s run", target.name),
            );
        }
        target.paced = paced(format!("{}/webhooks/plane", target.base))?;
        println!(
            "{:<34}{}",
            format!("{} at {}/s (open loop)", target.name, options.rate),
            target.paced.summary(202)
        );
    }

    let mut invalid = Vec::new();
    if healthz.others(200) > 0 {
        invalid.push(format!("orch /healthz: {}", healthz.line()));
    }
    if floor.others_answered(405) > 0 {
        invalid.push(format!("orch POST /healthz: {}", floor.line()));
    }
    for target in &mut targets {
        target.server = None;
        let stored = stored(&target.db)?;
        let acknowledged = target.saturated.status(202) + target.paced.status(202);
        println!(
            "{}: {stored} deliveries stored, {acknowledged} acknowledged",
            target.name
        );
        if stored < acknowledged {
            invalid.push(format!(
                "{} stored {stored} deliveries but acknowledged {acknowledged}",
                target.name
            ));
        }
        for (run, figures) in [("wrk", &target.saturated), ("paced", &target.paced)] {
            if figures.wrapped > 0 {
                invalid.push(format!(
                    "{} {run}: wrk ran out of distinct deliveries",
                    target.name
                ));
            }
            if figures.others_answered(202) > 0 {
                invalid.push(format!("{} {run}: {}", target.name, figures.line()));
            }
        }
    }

    let (orch, python) = (&targets[0], &targets[targets.len() - 1]);
    let verdict = |pass: bool| if pass { "pass" } else { "FAIL" };
    let ratio = orch.saturated.rate(202) / python.saturated.rate(202).max(f64::EPSILON);
    println!(
        "ratio orch/python (saturation):   {ratio:.1} × (target ≥ {TARGET_RATIO} ×: {})",
        verdict(ratio >= TARGET_RATIO)
    );
    let of_healthz = orch.saturated.rate(202) / healthz.rate(200).max(f64::EPSILON);
    println!(
        "ratio orch/healthz:               {:.1} % of orch's own /healthz throughput",
        of_healthz * 100.0
    );
    let p99 = ms(orch.paced.p99_us);
    println!(
        "orch p99 at {}/s:                {p99:.2} ms (target < {TARGET_P99_MS} ms: {}); python {:.2} ms \
         ({:.2} × orch's); the HTTP floor (POST /healthz) {:.2} ms (orch {:.2} × the floor)",
        options.rate,
        verdict(p99 < TARGET_P99_MS),
        ms(python.paced.p99_us),
        python.paced.p99_us as f64 / (orch.paced.p99_us as f64).max(1.0),
        ms(floor.p99_us),
        orch.paced.p99_us as f64 / (floor.p99_us as f64).max(1.0),
    );
    let drain_rate = orch.drained.as_ref().map_or(0.0, Drain::rate);
    println!(
        "orch event loop drain:            {drain_rate:.0} deliveries/s (no SPEC target; below \
         {} /s a steady {}/s flood leaves a growing backlog: {})",
        options.rate,
        options.rate,
        if drain_rate >= options.rate as f64 {
            "keeps up"
        } else {
            "falls behind"
        }
    );
    if targets.len() == 3 {
        let baseline = &targets[1];
        println!(
            "ratio orch/baseline:              throughput {:.2} ×, p99 at {}/s {:.2} ×, drain {:.2} ×, python/baseline {:.1} ×",
            orch.saturated.rate(202) / baseline.saturated.rate(202).max(f64::EPSILON),
            options.rate,
            orch.paced.p99_us as f64 / (baseline.paced.p99_us as f64).max(1.0),
            drain_rate / baseline.drained.as_ref().map_or(0.0, Drain::rate).max(f64::EPSILON),
            baseline.saturated.rate(202) / python.saturated.rate(202).max(f64::EPSILON),
        );
    }
    if !invalid.is_empty() {
        return Err(format!("the run is not valid:\n{}", invalid.join("\n")).into());
    }
    Ok(())
}

/// How long a load generator waits for one answer; a delivery not answered by then counts
/// as an error, and in the open loop as a latency of this long.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(10);

/// A receiver under test and what was measured of it.
struct Target {
    name: &'static str,
    base: String,
    db: PathBuf,
    server: Option<Server>,
    saturated: Figures,
    paced: Figures,
    /// orch's event loop draining what its saturation run stored.
    drained: Option<Drain>,
    /// The simulators of orch's config (kept running while orch is).
    _sandbox: Option<Sandbox>,
}

impl Target {
    /// `orch serve` from `binary` on a fresh sandbox in `{dir}/{name}`.
    async fn orch(name: &'static str, binary: &Path, dir: &Path) -> Result<Target, BenchError> {
        let sandbox = Sandbox::new(SandboxSetup {
            dir: &dir.join(name),
            orch_binary: binary,
            agent_script: r#"{"default": {}, "items": {}}"#,
            reconcile_interval_s: 3600,
        })
        .await?;
        let port = fixed_port(&sandbox)?;
        let mut server = Server::new(
            Command::new(binary)
                .args(["serve", "--config"])
                .arg(&sandbox.config_path)
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(dir.join(format!("{name}.log")))?)
                .spawn()?,
        );
        wait_ready(port, &mut server.0, Duration::from_secs(60)).await?;
        Ok(Target {
            name,
            base: format!("http://127.0.0.1:{port}"),
            db: sandbox.config.storage.db_path.clone(),
            server: Some(server),
            saturated: Figures::default(),
            paced: Figures::default(),
            drained: None,
            _sandbox: Some(sandbox),
        })
    }

    /// `bench/python_receiver.py` with its database in `dir`.
    fn python(bench_dir: &Path, dir: &Path) -> Result<Target, BenchError> {
        let db = dir.join("python.db");
        let mut server = Server::new(
            Command::new("python3")
                .arg(bench_dir.join("python_receiver.py"))
                .args(["--port", "0", "--secret", PLANE_SECRET, "--db"])
                .arg(&db)
                .stdout(Stdio::piped())
                .stderr(std::fs::File::create(dir.join("python.log"))?)
                .spawn()
                .map_err(|err| format!("cannot start python3 (install Python 3): {err}"))?,
        );
        let port = python_port(&mut server.0)?;
        Ok(Target {
            name: "python",
            base: format!("http://127.0.0.1:{port}"),
            db,
            server: Some(server),
            saturated: Figures::default(),
            paced: Figures::default(),
            drained: None,
            _sandbox: None,
        })
    }
}

/// A child process killed when dropped (unless `.1` was cleared after it was waited for).
struct Server(Child, bool);

impl Server {
    fn new(child: Child) -> Server {
        Server(child, true)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if self.1 {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// `wrk`, installed with apt-get when it is missing and this runs as root.
fn wrk() -> Result<PathBuf, BenchError> {
    let found = || {
        std::env::var_os("PATH").and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|dir| dir.join("wrk"))
                .find(|path| path.is_file())
        })
    };
    if let Some(wrk) = found() {
        return Ok(wrk);
    }
    let uid = Command::new("id").arg("-u").output()?;
    if String::from_utf8_lossy(&uid.stdout).trim() != "0" {
        return Err("wrk is not installed: install it (Debian: `sudo apt-get install wrk`) and run the bench again".into());
    }
    println!("wrk is not installed: apt-get install -y wrk");
    for args in [&["update", "-qq"][..], &["install", "-y", "-qq", "wrk"]] {
        let status = Command::new("apt-get")
            .args(args)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .status()?;
        if !status.success() {
            return Err(format!(
                "apt-get {} failed ({status}): install wrk by hand",
                args.join(" ")
            )
            .into());
        }
    }
    found().ok_or_else(|| "apt-get installed wrk, but it is not on PATH".into())
}

/// Runs a load generator to its end and reads its `RESULT` line.
fn measure(mut command: Command) -> Result<Figures, BenchError> {
    let output = command.stdin(Stdio::null()).output()?;
    let text = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        return Err(format!(
            "load generator failed ({}):\n{text}\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        )
        .into());
    }
    Figures::parse(&text)
}

/// The port the Python receiver says it listens on.
fn python_port(python: &mut Child) -> Result<u16, BenchError> {
    let stdout = python.stdout.take().ok_or("python's stdout is not piped")?;
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line)?;
    line.trim()
        .strip_prefix("listening on ")
        .and_then(|port| port.parse().ok())
        .ok_or_else(|| format!("the Python receiver did not start: {line:?}").into())
}

/// `threads` files `{prefix}-{i}.tsv` of `per_thread` distinct signed deliveries each.
fn write_deliveries(prefix: &Path, threads: u64, per_thread: u64) -> Result<(), BenchError> {
    for thread in 0..threads {
        let mut name = prefix.as_os_str().to_owned();
        name.push(format!("-{thread}.tsv"));
        let mut file = BufWriter::new(std::fs::File::create(PathBuf::from(name))?);
        for index in 0..per_thread {
            let (id, body, signature) = delivery("wrk", index * threads + thread);
            writeln!(file, "{id}\t{signature}\t{EVENT}\t{body}")?;
        }
        file.flush()?;
    }
    Ok(())
}

/// orch's event loop working through a backlog: how many deliveries were unprocessed when the
/// wait began, how many were left when it ended, and how long it took; with `after_load`, how
/// many the inbox held and how long the load before the wait ran.
#[derive(Debug, Clone)]
struct Drain {
    backlog: u64,
    left: u64,
    seconds: f64,
    after_load: Option<(u64, f64)>,
}

impl Drain {
    /// Deliveries processed per second from the start of the load to the end of the wait:
    /// how fast orch processes what a flood stored (the time it took to drain it).
    fn rate(&self) -> f64 {
        let (stored, load_seconds) = self.after_load.unwrap_or((self.backlog, 0.0));
        (stored - self.left) as f64 / (load_seconds + self.seconds).max(f64::EPSILON)
    }

    /// Deliveries processed per second during the wait alone, with no load.
    fn backlog_rate(&self) -> f64 {
        (self.backlog - self.left) as f64 / self.seconds.max(f64::EPSILON)
    }

    fn summary(&self) -> String {
        let (stored, load_seconds) = self.after_load.unwrap_or((self.backlog, 0.0));
        format!(
            "{:>7.0}/s  ({} of {stored} stored processed {:.1} s after the load began; \
             {} left then; the backlog alone: {} at the load's end, {:.0}/s)",
            self.rate(),
            stored - self.left,
            load_seconds + self.seconds,
            self.left,
            self.backlog,
            self.backlog_rate(),
        )
    }
}

/// Waits until orch's inbox at `db` has no unprocessed delivery, or `limit`.
async fn drain(db: &Path, limit: Duration) -> Result<Drain, BenchError> {
    let started = tokio::time::Instant::now();
    let backlog = unprocessed(db)?;
    let mut left = backlog;
    while left > 0 && started.elapsed() < limit {
        tokio::time::sleep(Duration::from_millis(20)).await;
        left = unprocessed(db)?;
    }
    Ok(Drain {
        backlog,
        left,
        seconds: started.elapsed().as_secs_f64(),
        after_load: None,
    })
}

/// Deliveries in orch's inbox at `db` that its event loop has not processed yet.
fn unprocessed(db: &Path) -> Result<u64, BenchError> {
    let conn =
        rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    Ok(conn.query_row(
        "SELECT count(*) FROM inbox WHERE processed_at IS NULL",
        [],
        |row| row.get(0),
    )?)
}

/// Deliveries in a database, orch's or the Python receiver's (the same table name).
fn stored(db: &Path) -> Result<u64, BenchError> {
    let conn =
        rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    Ok(conn.query_row("SELECT count(*) FROM inbox", [], |row| row.get(0))?)
}

/// `bench_ingest paced URL RUN RATE SECONDS`: the open-loop load generator. Sends delivery
/// `i` of run `RUN` at `i / RATE` s on a new connection and prints a `RESULT` line; a
/// delivery's latency counts from its scheduled time (an unanswered one's as `ANSWER_TIMEOUT`).
fn paced_main(mut args: impl Iterator<Item = String>) -> Result<(), BenchError> {
    let mut next = |what: &str| args.next().ok_or_else(|| format!("paced: {what} missing"));
    let url = next("URL")?;
    let run = next("RUN")?;
    let rate: u64 = next("RATE")?.parse()?;
    let seconds: u64 = next("SECONDS")?.parse()?;
    let total = rate.max(1) * seconds.max(1);
    let deliveries: Vec<(Vec<(String, String)>, Bytes)> = (0..total)
        .map(|index| {
            let (id, body, signature) = delivery(&run, index);
            let headers = vec![
                ("Content-Type".to_owned(), "application/json".to_owned()),
                ("User-Agent".to_owned(), "Autopilot".to_owned()),
                ("X-Plane-Delivery".to_owned(), id),
                ("X-Plane-Event".to_owned(), EVENT.to_owned()),
                ("X-Plane-Signature".to_owned(), signature),
            ];
            (headers, Bytes::from(body))
        })
        .collect();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    let figures = runtime.block_on(async move {
        let interval = Duration::from_secs(1) / u32::try_from(rate.max(1)).unwrap_or(u32::MAX);
        let started = tokio::time::Instant::now();
        let mut sends = tokio::task::JoinSet::new();
        for (index, (headers, body)) in deliveries.into_iter().enumerate() {
            let at = started + interval * u32::try_from(index).unwrap_or(u32::MAX);
            tokio::time::sleep_until(at).await;
            let url = url.clone();
            sends.spawn(async move {
                let status = post(&url, &headers, body).await.ok();
                (status, at.elapsed())
            });
        }
        let mut figures = Figures::default();
        let mut latencies = Vec::with_capacity(sends.len());
        while let Some(sent) = sends.join_next().await {
            let (status, latency) = sent.unwrap_or((None, Duration::ZERO));
            match status {
                Some(status) => {
                    *figures.statuses.entry(status).or_default() += 1;
                    figures.requests += 1;
                    latencies.push(latency);
                }
                None => {
                    figures.errors += 1;
                    latencies.push(ANSWER_TIMEOUT.max(latency));
                }
            }
        }
        figures.seconds = started.elapsed().as_secs_f64();
        latencies.sort();
        let at = |fraction: f64| {
            let index = ((latencies.len() as f64 * fraction).ceil() as usize)
                .clamp(1, latencies.len().max(1))
                - 1;
            latencies.get(index).map_or(0, |latency| {
                u64::try_from(latency.as_micros()).unwrap_or(u64::MAX)
            })
        };
        figures.p50_us = at(0.50);
        figures.p99_us = at(0.99);
        figures.max_us = at(1.0);
        figures
    });
    println!("{}", figures.line());
    Ok(())
}
