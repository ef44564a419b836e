//! Store benchmark (`cargo xtask bench store`, release): inbox inserts/s, job claim+complete/s
//! with `synchronous=NORMAL` and `FULL`, and the F-1 candidate query over 100 000 tasks.

mod support;

use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use orch_core::domain::{Action, JobSpec, Stage};
use orch_core::ids::BootId;
use orch_core::ports::{ClaimKinds, ClaimRequest, NewDelivery, Source, Store};
use orch_core::time::Timestamp;
use orch_sqlite::{SqliteStore, StoreOptions, Synchronous};

use crate::support::{finish_next_job, new_task, run_on_runtime, BenchResult};

const INBOX_INSERTS: u32 = 3_000;
/// Concurrent callers in the second inbox run (the HTTP server's in-flight requests).
const INBOX_CALLERS: u32 = 16;
const JOBS: u32 = 2_000;
const TASKS: i64 = 100_000;
const STUCK: i64 = 1_000;
const QUERY_RUNS: usize = 20;

fn main() -> BenchResult {
    run_on_runtime(run())
}

async fn run() -> BenchResult {
    let dir = tempfile::tempdir()?;
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "store bench (SQLite WAL, temp dir {})",
        dir.path().display()
    )?;

    for callers in [1, INBOX_CALLERS] {
        let path = dir.path().join(format!("inbox-{callers}.db"));
        let rate = bench_inbox(&path, callers).await?;
        writeln!(
            out,
            "inbox inserts (synchronous=FULL, {callers} concurrent callers): {rate:.0}/s over {INBOX_INSERTS}"
        )?;
    }

    for synchronous in [Synchronous::Normal, Synchronous::Full] {
        let path = dir.path().join(format!("jobs-{synchronous:?}.db"));
        let rate = bench_jobs(&path, synchronous).await?;
        let target = if synchronous == Synchronous::Normal {
            1_000
        } else {
            200
        };
        writeln!(
            out,
            "job claim+complete (synchronous={synchronous:?}): {rate:.0}/s over {JOBS} (target >= {target})"
        )?;
    }

    let (median, max, found) = bench_gate_candidates(&dir.path().join("f1.db")).await?;
    writeln!(
        out,
        "F-1 candidates over {TASKS} tasks, {STUCK} stuck: median {:.2} ms, max {:.2} ms, {found} found (target < 50 ms)",
        median.as_secs_f64() * 1000.0,
        max.as_secs_f64() * 1000.0
    )?;
    Ok(())
}

fn now() -> Timestamp {
    Timestamp::from_millis(1_800_000_000_000)
}

async fn bench_inbox(path: &Path, callers: u32) -> BenchResult<f64> {
    let store = std::sync::Arc::new(SqliteStore::open(path)?);
    let started = Instant::now();
    let mut handles = Vec::new();
    for caller in 0..callers {
        let store = std::sync::Arc::clone(&store);
        handles.push(tokio::spawn(async move {
            let body = vec![b'x'; 2048];
            for n in (caller..INBOX_INSERTS).step_by(callers as usize) {
                let delivery = NewDelivery {
                    source: Source::Gitea,
                    delivery_id: format!("delivery-{n}"),
                    event_type: "status".to_owned(),
                    body_sha256: format!("{n:064x}"),
                    body: body.clone(),
                    received_at: now(),
                };
                store.inbox_insert(delivery).await?;
            }
            Ok::<(), orch_core::ports::StoreError>(())
        }));
    }
    for handle in handles {
        handle.await??;
    }
    Ok(f64::from(INBOX_INSERTS) / started.elapsed().as_secs_f64())
}

async fn bench_jobs(path: &Path, synchronous: Synchronous) -> BenchResult<f64> {
    let store = SqliteStore::open_with(
        path,
        StoreOptions {
            synchronous,
            ..StoreOptions::default()
        },
    )?;
    for number in 0..JOBS {
        let job = JobSpec::new(
            Action::Notify {
                text: "hello".to_owned(),
            },
            format!("notify-{number}"),
        );
        store
            .create_task(
                new_task("BN", number, "bench", String::new())?,
                vec![job],
                now(),
            )
            .await?;
    }
    let request = ClaimRequest {
        owner: BootId::new("bench")?,
        kinds: ClaimKinds::Actions,
        now: now(),
        lease: Duration::from_secs(60),
    };
    let started = Instant::now();
    let mut done = 0u32;
    while finish_next_job(&store, &request, now()).await?.is_some() {
        done += 1;
    }
    Ok(f64::from(done) / started.elapsed().as_secs_f64())
}

/// Fills 100 000 tasks (1 000 stuck in development, 500 old ones busy with a job, the rest
/// done or recently updated) and times the F-1 query.
async fn bench_gate_candidates(path: &Path) -> BenchResult<(Duration, Duration, usize)> {
    let store = SqliteStore::open(path)?;
    let grace = Duration::from_secs(600);
    let old = (now() - grace - Duration::from_secs(3600)).as_millis();
    let recent = now().as_millis();
    {
        let mut conn = rusqlite::Connection::open(path)?;
        let tx = conn.transaction()?;
        {
            let mut task = tx.prepare(
                "INSERT INTO tasks (id, version, issue_id, project_id, work_item, title, description, repo, \
                 base_branch, branch, stage, status, created_at, updated_at) \
                 VALUES (?1, 1, ?2, 'bench', ?3, 'bench', '', 'bench/repo', 'main', ?4, ?5, 'working', ?6, ?7)",
            )?;
            let mut job = tx.prepare(
                "INSERT INTO jobs (task_id, repo, kind, is_agent, payload, status, not_before, created_at, updated_at) \
                 VALUES (?1, 'bench/repo', 'developer', 1, '{\"action\":\"run_agent\",\"agent\":\"developer\",\"feedback\":null}', \
                 'running', 0, 0, 0)",
            )?;
            for id in 1..=TASKS {
                let (stage, updated_at, busy) = if id <= STUCK {
                    ("development", old + id, false)
                } else if id <= STUCK + 500 {
                    ("development", old + id, true)
                } else if id % 10 == 0 {
                    ("development", recent, false)
                } else if id % 10 == 1 {
                    ("review", old, false)
                } else {
                    ("done", old, false)
                };
                let work_item = format!("BN-{id:03}");
                task.execute(rusqlite::params![
                    id,
                    format!("issue-{id}"),
                    work_item,
                    format!("feature/{work_item}-bench"),
                    stage,
                    old,
                    updated_at
                ])?;
                if busy {
                    job.execute([id])?;
                }
            }
        }
        tx.commit()?;
        conn.execute_batch("ANALYZE")?;
    }
    let bound = now() - grace;
    let mut times = Vec::with_capacity(QUERY_RUNS);
    let mut found = 0;
    for _ in 0..QUERY_RUNS {
        let started = Instant::now();
        found = store
            .gate_candidates(Stage::Development, bound, 5_000)
            .await?
            .len();
        times.push(started.elapsed());
    }
    times.sort();
    Ok((times[times.len() / 2], times[times.len() - 1], found))
}
