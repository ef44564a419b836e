//! R1, acknowledged means durable: signed deliveries at a steady rate while `orch serve` is
//! `SIGKILL`ed at random moments and started again. Every delivery answered `202` must be in
//! the inbox afterwards, processed once, with no effect (the deliveries concern no work item).
//! The end-to-end test runs it with a few kills, `cargo xtask bench crash` with 1 000.

use std::collections::BTreeSet;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use bytes::Bytes;
use orch_daemon::sandbox::{Sandbox, SandboxSetup, GITEA_SECRET, PLANE_SECRET};
use orch_sim::webhook::{hmac_sha256_hex, post};

pub type CrashError = Box<dyn std::error::Error + Send + Sync>;

/// How a crash run is driven.
#[derive(Debug, Clone, Copy)]
pub struct CrashRun {
    /// `SIGKILL`s of the daemon.
    pub kills: u32,
    /// Deliveries sent per second, whether the daemon is up or not.
    pub rate_per_s: u32,
    /// A kill comes a random time up to this long after the daemon answered `/readyz`.
    pub max_uptime: Duration,
    /// Seed of the kill times (printed by the callers, so a run can be told apart).
    pub seed: u64,
    /// How long the daemon may take to become ready, and the last one to drain the inbox.
    pub deadline: Duration,
}

/// What a crash run saw.
#[derive(Debug, Clone)]
pub struct CrashReport {
    pub kills: u32,
    pub sent: usize,
    /// Answered `202`.
    pub acknowledged: usize,
    /// No answer: refused while the daemon was down, or reset by a kill.
    pub unanswered: usize,
    /// Answered with another status (each one is a failure of the run).
    pub other_answers: Vec<(String, u16)>,
    /// Acknowledged deliveries missing from the inbox after the last restart.
    pub lost: Vec<String>,
    /// Acknowledged deliveries in the inbox but never processed.
    pub unprocessed: Vec<String>,
    /// Tasks and jobs in the database: the deliveries concern no work item, so any is a
    /// duplicate or stray effect.
    pub effects: u64,
    /// From the first start to the last kill.
    pub killing: Duration,
    /// The whole run, with the final drain.
    pub elapsed: Duration,
}

impl CrashReport {
    pub fn kills_per_s(&self) -> f64 {
        f64::from(self.kills) / self.killing.as_secs_f64().max(f64::EPSILON)
    }

    /// Whether R1 held: nothing acknowledged was lost or left unprocessed, no stray effect,
    /// and every answer was `202`.
    pub fn held(&self) -> bool {
        self.lost.is_empty()
            && self.unprocessed.is_empty()
            && self.effects == 0
            && self.other_answers.is_empty()
    }
}

impl std::fmt::Display for CrashReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} kills in {:.1} s ({:.2} kills/s); {} deliveries sent, {} acknowledged, {} unanswered, \
             {} other answers; lost acknowledged: {}; unprocessed: {}; stray effects: {}; {:.1} s in all",
            self.kills,
            self.killing.as_secs_f64(),
            self.kills_per_s(),
            self.sent,
            self.acknowledged,
            self.unanswered,
            self.other_answers.len(),
            self.lost.len(),
            self.unprocessed.len(),
            self.effects,
            self.elapsed.as_secs_f64(),
        )
    }
}

/// The `orch` binary next to the running test or example (`target/{profile}/deps/…` or
/// `target/{profile}/examples/…` → `target/{profile}/orch`).
pub fn orch_binary() -> Result<PathBuf, CrashError> {
    let exe = std::env::current_exe()?;
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .ok_or("cannot find the target directory")?;
    let orch = profile_dir.join("orch");
    if !orch.is_file() {
        return Err(format!(
            "{} is missing: build it with `cargo build -p orch-daemon --bin orch`",
            orch.display()
        )
        .into());
    }
    Ok(orch)
}

/// The `orch` binary of this profile, brought up to date with cargo when cargo started the
/// caller (cargo builds an example's own package, not orch-daemon's binary).
pub fn built_orch() -> Result<PathBuf, CrashError> {
    if let Some(cargo) = std::env::var_os("CARGO") {
        let mut build = Command::new(cargo);
        build.args(["build", "--quiet", "-p", "orch-daemon", "--bin", "orch"]);
        if !cfg!(debug_assertions) {
            build.arg("--release");
        }
        let status = build.current_dir(env!("CARGO_MANIFEST_DIR")).status()?;
        if !status.success() {
            return Err(format!("building the orch binary failed ({status})").into());
        }
    }
    orch_binary()
}

/// Runs `run` against a fresh sandbox in `dir`, with the `orch` binary at `orch`.
pub async fn crash_run(orch: &Path, dir: &Path, run: CrashRun) -> Result<CrashReport, CrashError> {
    let started = Instant::now();
    let sandbox = Sandbox::new(SandboxSetup {
        dir,
        orch_binary: orch,
        agent_script: r#"{"default": {}, "items": {}}"#,
        reconcile_interval_s: 1,
    })
    .await?;
    let port = fixed_port(&sandbox)?;
    let log = dir.join("orch-crash.log");
    let serve = || -> Result<Child, CrashError> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)?;
        Ok(Command::new(orch)
            .args(["serve", "--config"])
            .arg(&sandbox.config_path)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()?)
    };

    let answers: Arc<Mutex<Vec<Answer>>> = Arc::default();
    let sending = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let sender = tokio::spawn(send_deliveries(
        port,
        run.rate_per_s,
        answers.clone(),
        sending.clone(),
    ));

    let mut random = XorShift::new(run.seed);
    let killing_started = Instant::now();
    for _ in 0..run.kills {
        let mut daemon = serve()?;
        let ready = wait_ready(port, &mut daemon, run.deadline).await;
        if let Err(err) = ready {
            let _ = daemon.kill();
            let _ = daemon.wait();
            return Err(err);
        }
        let uptime_ms = random.below(u64::try_from(run.max_uptime.as_millis())?.max(1));
        tokio::time::sleep(Duration::from_millis(uptime_ms)).await;
        daemon.kill()?;
        daemon.wait()?;
    }
    let killing = killing_started.elapsed();
    sending.store(false, std::sync::atomic::Ordering::Release);
    sender.await?;

    // The last start: everything acknowledged must be there and get processed.
    let mut daemon = serve()?;
    let drained = async {
        wait_ready(port, &mut daemon, run.deadline).await?;
        let db = sandbox.config.storage.db_path.clone();
        let deadline = Instant::now() + run.deadline;
        loop {
            if pending(&db)? == 0 {
                return Ok::<PathBuf, CrashError>(db);
            }
            if Instant::now() > deadline {
                return Err("the inbox did not drain after the last restart".into());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    .await;
    let _ = daemon.kill();
    let _ = daemon.wait();
    let db = drained?;

    let answers = std::mem::take(&mut *answers.lock().unwrap_or_else(PoisonError::into_inner));
    let stored = inbox(&db)?;
    let mut report = CrashReport {
        kills: run.kills,
        sent: answers.len(),
        acknowledged: 0,
        unanswered: 0,
        other_answers: Vec::new(),
        lost: Vec::new(),
        unprocessed: Vec::new(),
        effects: effects(&db)?,
        killing,
        elapsed: Duration::ZERO,
    };
    for answer in answers {
        match answer.status {
            Some(202) => {
                report.acknowledged += 1;
                let key = (answer.source.to_owned(), answer.delivery.clone());
                if !stored.all.contains(&key) {
                    report.lost.push(answer.delivery);
                } else if !stored.processed.contains(&key) {
                    report.unprocessed.push(answer.delivery);
                }
            }
            Some(status) => report.other_answers.push((answer.delivery, status)),
            None => report.unanswered += 1,
        }
    }
    report.elapsed = started.elapsed();
    Ok(report)
}

/// One delivery and how orch answered it (`None`: no answer).
struct Answer {
    source: &'static str,
    delivery: String,
    status: Option<u16>,
}

/// Sends deliveries at `rate_per_s`, each on its own connection, until `sending` goes false,
/// and waits for every one to be answered or to fail.
async fn send_deliveries(
    port: u16,
    rate_per_s: u32,
    answers: Arc<Mutex<Vec<Answer>>>,
    sending: Arc<std::sync::atomic::AtomicBool>,
) {
    let mut ticks = tokio::time::interval(Duration::from_secs(1) / rate_per_s.max(1));
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut in_flight = tokio::task::JoinSet::new();
    let mut index = 0_u64;
    while sending.load(std::sync::atomic::Ordering::Acquire) {
        ticks.tick().await;
        let (source, delivery, url, headers, body) = delivery(port, index);
        index += 1;
        let answers = answers.clone();
        in_flight.spawn(async move {
            let status = tokio::time::timeout(ANSWER_TIMEOUT, post(&url, &headers, body))
                .await
                .ok()
                .and_then(Result::ok);
            answers
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(Answer {
                    source,
                    delivery,
                    status,
                });
        });
        while in_flight.try_join_next().is_some() {}
    }
    while in_flight.join_next().await.is_some() {}
}

/// How long one delivery waits for its answer.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(10);

type Delivery = (&'static str, String, String, Vec<(String, String)>, Bytes);

/// Delivery `index`: Gitea CI statuses for commits of no task, and every third one a Plane
/// comment on an item orch does not track, each signed as its sender signs it.
fn delivery(port: u16, index: u64) -> Delivery {
    let id = format!("crash-{index}");
    if index % 3 == 2 {
        let body = serde_json::json!({
            "event": "issue_comment",
            "action": "created",
            "webhook_id": "crash",
            "workspace_id": "crash",
            "data": {"id": id, "issue": "00000000-0000-0000-0000-000000000000", "comment_stripped": "hello"},
        })
        .to_string();
        let headers = vec![
            ("Content-Type".to_owned(), "application/json".to_owned()),
            ("X-Plane-Event".to_owned(), "issue_comment".to_owned()),
            ("X-Plane-Delivery".to_owned(), id.clone()),
            (
                "X-Plane-Signature".to_owned(),
                hmac_sha256_hex(PLANE_SECRET.as_bytes(), body.as_bytes()),
            ),
        ];
        let url = format!("http://127.0.0.1:{port}/webhooks/plane");
        return ("plane", id, url, headers, Bytes::from(body));
    }
    let sha = format!("{:040x}", 0x00c4_a540_0000_0000_u64 + index);
    let body = serde_json::json!({
        "commit": {"id": sha, "message": "unrelated work\n", "url": ""},
        "context": "ci/build",
        "created_at": "2026-12-03T08:00:00Z",
        "description": "Build passed",
        "id": index,
        "repository": {"id": 42, "full_name": "acme/elsewhere", "name": "elsewhere"},
        "sender": {"id": 9, "login": "ci-bot"},
        "sha": sha,
        "state": "success",
        "target_url": "",
        "updated_at": "2026-12-03T08:00:00Z",
    })
    .to_string();
    let headers = vec![
        ("Content-Type".to_owned(), "application/json".to_owned()),
        ("X-Gitea-Delivery".to_owned(), id.clone()),
        ("X-Gitea-Event".to_owned(), "status".to_owned()),
        ("X-Gitea-Event-Type".to_owned(), "status".to_owned()),
        (
            "X-Gitea-Signature".to_owned(),
            hmac_sha256_hex(GITEA_SECRET.as_bytes(), body.as_bytes()),
        ),
    ];
    let url = format!("http://127.0.0.1:{port}/webhooks/gitea");
    ("gitea", id, url, headers, Bytes::from(body))
}

/// Gives the sandbox's config a fixed free port, so every start listens where the deliveries
/// go.
pub fn fixed_port(sandbox: &Sandbox) -> Result<u16, CrashError> {
    let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let text = std::fs::read_to_string(&sandbox.config_path)?;
    let fixed = text.replace(
        "listen = \"127.0.0.1:0\"",
        &format!("listen = \"127.0.0.1:{port}\""),
    );
    if fixed == text {
        return Err("the sandbox config has no `listen = \"127.0.0.1:0\"` to fix".into());
    }
    std::fs::write(&sandbox.config_path, fixed)?;
    Ok(port)
}

/// Waits until `/readyz` answers 200, failing if the daemon exits or `deadline` passes.
pub async fn wait_ready(
    port: u16,
    daemon: &mut Child,
    deadline: Duration,
) -> Result<(), CrashError> {
    let until = Instant::now() + deadline;
    loop {
        if let Some(status) = daemon.try_wait()? {
            return Err(format!("orch serve exited before it was ready ({status})").into());
        }
        if readyz(port).is_some_and(|answer| answer.starts_with("HTTP/1.1 200")) {
            return Ok(());
        }
        if Instant::now() > until {
            return Err(format!("orch was not ready within {deadline:?}").into());
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The whole answer to `GET /readyz`, if there was one.
pub fn readyz(port: u16) -> Option<String> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(ANSWER_TIMEOUT)).ok()?;
    stream
        .write_all(b"GET /readyz HTTP/1.1\r\nHost: orch\r\nConnection: close\r\n\r\n")
        .ok()?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer).ok()?;
    Some(answer)
}

fn read_only(db: &Path) -> rusqlite::Result<rusqlite::Connection> {
    rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
}

fn pending(db: &Path) -> Result<u64, CrashError> {
    Ok(read_only(db)?.query_row(
        "SELECT count(*) FROM inbox WHERE processed_at IS NULL",
        [],
        |row| row.get(0),
    )?)
}

/// The inbox's (source, delivery id) pairs: all, and those processed with an outcome.
struct Stored {
    all: BTreeSet<(String, String)>,
    processed: BTreeSet<(String, String)>,
}

fn inbox(db: &Path) -> Result<Stored, CrashError> {
    let conn = read_only(db)?;
    let mut statement = conn.prepare(
        "SELECT source, delivery_id, processed_at IS NOT NULL AND outcome IS NOT NULL FROM inbox",
    )?;
    let mut stored = Stored {
        all: BTreeSet::new(),
        processed: BTreeSet::new(),
    };
    let rows = statement.query_map([], |row| {
        Ok((
            row.get::<_, String>(0)?,
            row.get::<_, String>(1)?,
            row.get::<_, bool>(2)?,
        ))
    })?;
    for row in rows {
        let (source, delivery, processed) = row?;
        if processed {
            stored.processed.insert((source.clone(), delivery.clone()));
        }
        stored.all.insert((source, delivery));
    }
    Ok(stored)
}

fn effects(db: &Path) -> Result<u64, CrashError> {
    Ok(read_only(db)?.query_row(
        "SELECT (SELECT count(*) FROM tasks) + (SELECT count(*) FROM jobs)",
        [],
        |row| row.get(0),
    )?)
}

/// A small xorshift generator for the kill times: no dependency, and a seed to print.
struct XorShift(u64);

impl XorShift {
    fn new(seed: u64) -> XorShift {
        XorShift(seed.max(1))
    }

    fn below(&mut self, bound: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % bound
    }
}

/// A seed from the clock.
pub fn clock_seed() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(1, |since| since.as_nanos() as u64)
}
