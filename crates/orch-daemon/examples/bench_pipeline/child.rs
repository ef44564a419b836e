//! `orch serve` as a child process: time to ready, its resident memory, and a database
//! seeded with many finished tasks.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use orch_core::domain::{Agent, JobSpec, NewTask, Stage, TaskStatus};
use orch_core::ids::{BranchName, IssueId, PrNumber, ProjectId, RepoSlug, WorkItemId};
use orch_core::ports::{Store, Transition};
use orch_sqlite::SqliteStore;

use crate::probe::wall_ms;
use crate::{BenchResult, BoxError};

/// How long a child may take to answer `/readyz` before the bench gives up on it.
const READY_DEADLINE: Duration = Duration::from_secs(10);
/// How long a child may take to finish its first reconcile pass.
const PASS_DEADLINE: Duration = Duration::from_secs(30);
/// How long a child may take to exit after SIGTERM before it is killed.
const EXIT_DEADLINE: Duration = Duration::from_secs(10);
/// Between two tries while waiting for a child.
const RETRY: Duration = Duration::from_millis(1);
/// How long the memory is sampled once the child is idle, and how often.
const SAMPLE_FOR: Duration = Duration::from_millis(500);
const SAMPLE_EVERY: Duration = Duration::from_millis(50);

/// Resident memory as `/proc/{pid}/status` reports it, in KiB.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Rss {
    /// `VmRSS`: resident now.
    pub(crate) now_kib: u64,
    /// `VmHWM`: the peak so far.
    pub(crate) peak_kib: u64,
}

impl Rss {
    pub(crate) fn of(pid: &str) -> BenchResult<Rss> {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
        let field = |name: &str| -> u64 {
            status
                .lines()
                .find_map(|line| line.strip_prefix(name))
                .and_then(|rest| rest.split_whitespace().next())
                .and_then(|kib| kib.parse().ok())
                .unwrap_or(0)
        };
        Ok(Rss {
            now_kib: field("VmRSS:"),
            peak_kib: field("VmHWM:"),
        })
    }
}

/// A running `orch serve`.
pub(crate) struct Child {
    process: std::process::Child,
    /// The admin socket: `/queue` and `/api/*` show work items, so they are not open on TCP.
    socket: PathBuf,
    log: PathBuf,
}

/// Writes a copy of the sandbox's `orch.toml` with its own listen port, database and
/// repositories under `dir`; returns its path.
pub(crate) fn write_config(base: &Path, dir: &Path) -> BenchResult<(PathBuf, SocketAddr)> {
    std::fs::create_dir_all(dir)?;
    // A port the OS hands out now; it stays free until the child binds it.
    let addr = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?;
    let text = std::fs::read_to_string(base)?;
    let mut lines = Vec::new();
    for line in text.lines() {
        let line = if line.starts_with("listen = ") {
            format!("listen = \"{addr}\"")
        } else if line.starts_with("db_path = ") {
            format!("db_path = {:?}", db_path(dir).display().to_string())
        } else if line.starts_with("repos_dir = ") {
            format!("repos_dir = {:?}", dir.join("repos").display().to_string())
        } else if let Some(relative) = line
            .strip_prefix("prompt = \"")
            .and_then(|rest| rest.strip_suffix('"'))
        {
            // Prompt paths are relative to the config file, which moves.
            let prompt = base.parent().unwrap_or(dir).join(relative);
            format!("prompt = {:?}", prompt.display().to_string())
        } else {
            line.to_owned()
        };
        lines.push(line);
    }
    let path = dir.join("orch.toml");
    std::fs::write(&path, lines.join("\n") + "\n")?;
    Ok((path, addr))
}

/// The database of the config written by `write_config` for `dir`.
pub(crate) fn db_path(dir: &Path) -> PathBuf {
    dir.join("data").join("orch.db")
}

impl Child {
    /// Spawns `orch serve` and waits until `/readyz` answers 200; returns it with the time
    /// from spawn to ready.
    pub(crate) fn start(
        orch: &Path,
        config: &Path,
        addr: SocketAddr,
    ) -> BenchResult<(Child, Duration)> {
        let log = config.with_file_name("serve.log");
        let started = Instant::now();
        let process = Command::new(orch)
            .args(["serve", "--config"])
            .arg(config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log)?)
            .spawn()?;
        let dir = config.parent().unwrap_or(Path::new("."));
        let socket = orch_daemon::wiring::admin_socket_path(&db_path(dir));
        let mut child = Child {
            process,
            socket,
            log,
        };
        loop {
            if let Ok((200, _)) = get(addr, "/readyz") {
                return Ok((child, started.elapsed()));
            }
            if let Some(status) = child.process.try_wait()? {
                return Err(child.failure(&format!("orch serve exited with {status}")));
            }
            if started.elapsed() > READY_DEADLINE {
                child.stop();
                return Err(child.failure("orch serve was not ready in time"));
            }
            std::thread::sleep(RETRY);
        }
    }

    /// Waits for the first reconcile pass to end and the inbox to be empty.
    pub(crate) fn wait_reconciled(&mut self) -> BenchResult<serde_json::Value> {
        let started = Instant::now();
        loop {
            if let Ok((200, body)) = self.get("/queue") {
                let queue: serde_json::Value = serde_json::from_str(&body)?;
                let runs = queue["reconcile"]["runs_total"].as_u64().unwrap_or(0);
                let pending = queue["inbox"]["pending"].as_u64().unwrap_or(0);
                if runs >= 1 && pending == 0 {
                    return Ok(queue);
                }
            }
            if started.elapsed() > PASS_DEADLINE {
                self.stop();
                return Err(self.failure("orch serve did not finish a reconcile pass in time"));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Samples the child's memory for a moment; the largest `VmRSS` seen and the peak.
    pub(crate) fn rss(&self) -> BenchResult<Rss> {
        let pid = self.process.id().to_string();
        let started = Instant::now();
        let mut rss = Rss::default();
        while started.elapsed() < SAMPLE_FOR {
            let sample = Rss::of(&pid)?;
            rss.now_kib = rss.now_kib.max(sample.now_kib);
            rss.peak_kib = rss.peak_kib.max(sample.peak_kib);
            std::thread::sleep(SAMPLE_EVERY);
        }
        Ok(rss)
    }

    /// GETs `path` from the child; its status and body.
    /// `GET path` over the admin socket.
    pub(crate) fn get(&self, path: &str) -> BenchResult<(u16, String)> {
        let stream = UnixStream::connect(&self.socket)?;
        stream.set_read_timeout(Some(Duration::from_secs(5)))?;
        exchange(stream, path, "localhost")
    }

    /// SIGTERM, then SIGKILL if it does not exit in time.
    pub(crate) fn stop(&mut self) {
        let pid = self.process.id().to_string();
        // `kill` is the one way to send SIGTERM without a signal crate; SIGKILL follows if needed.
        let _ = Command::new("kill")
            .args(["-TERM", &pid])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let started = Instant::now();
        while started.elapsed() < EXIT_DEADLINE {
            if let Ok(Some(_)) = self.process.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = self.process.kill();
        let _ = self.process.wait();
    }

    fn failure(&self, what: &str) -> BoxError {
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        let tail: Vec<&str> = log.lines().rev().take(20).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        format!("{what}; the end of its log:\n{}", tail.join("\n")).into()
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        if let Ok(None) = self.process.try_wait() {
            self.stop();
        }
    }
}

/// A plain HTTP/1.0 GET on loopback (no client library needed): the status and the body.
fn get(addr: SocketAddr, path: &str) -> BenchResult<(u16, String)> {
    let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(1))?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    exchange(stream, path, &addr.to_string())
}

/// One HTTP/1.0 `GET` on `stream`: the status and the body.
fn exchange(mut stream: impl Read + Write, path: &str, host: &str) -> BenchResult<(u16, String)> {
    stream.write_all(format!("GET {path} HTTP/1.0\r\nHost: {host}\r\n\r\n").as_bytes())?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .ok_or("no HTTP status line")?;
    let body = response
        .split_once("\r\n\r\n")
        .map_or(String::new(), |(_, body)| body.to_owned());
    Ok((status, body))
}

/// Writes `count` finished tasks (stage done, a merged PR, their analyst job cancelled)
/// of the sandbox's project into the database at `path`; returns how long it took.
pub(crate) async fn seed_done_tasks(
    path: &Path,
    project: &str,
    repo: &str,
    count: u32,
) -> BenchResult<Duration> {
    let started = Instant::now();
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let store = SqliteStore::open(path)?;
    let project = ProjectId::new(project)?;
    let repo = RepoSlug::new(repo)?;
    let base_branch = BranchName::new("main")?;
    // Well past anything the pipeline run or the Plane simulator numbers.
    let first = 10_000;
    for number in first..first + count {
        let work_item = WorkItemId::new("ET", number)?;
        let title = format!("Historic change number {number}");
        let now = orch_core::time::Timestamp::from_millis(wall_ms() as i64);
        let new = NewTask {
            issue: IssueId::new(format!("historic-{number}"))?,
            project: project.clone(),
            branch: BranchName::for_work_item(&work_item, &title),
            work_item,
            title,
            description: "A task from before the benchmark, long since merged.".to_owned(),
            repo: repo.clone(),
            base_branch: base_branch.clone(),
            stage: Stage::Analysis,
            tracker_state: None,
            tracker_seen_at: None,
        };
        let created = store
            .create_task(new, vec![JobSpec::agent(Agent::Analyst, None)], now)
            .await?;
        let mut next = created.task;
        next.stage = Stage::Done;
        next.status = TaskStatus::Working;
        next.pr = Some(PrNumber::new(u64::from(number))?);
        store
            .transition(Transition {
                next,
                jobs: Vec::new(),
                cancel_active_work: true,
                consumes_job: None,
                note: "merged before the benchmark".to_owned(),
                now,
            })
            .await?;
    }
    Ok(started.elapsed())
}
