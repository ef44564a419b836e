//! Retention soak (`cargo xtask bench retention`): 500 work items, one every 4 simulated hours
//! (83 days), each with the rows a real item leaves (about 20 webhook deliveries of 4 KiB, 20
//! jobs, 20 history lines), written through `SqliteStore` once with the daemon's retention
//! (30 days, a pass every simulated hour, batches of 500) and once without; prints the database
//! size as items go, and the time `backup` takes on each result while deliveries are written.

mod support;

use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use orch_core::domain::{Action, JobSpec, Stage, Task};
use orch_core::ids::BootId;
use orch_core::ports::{
    ClaimKinds, ClaimRequest, InboxInsert, InboxOutcome, NewDelivery, PruneRequest, Source, Store,
    Transition,
};
use orch_core::time::Timestamp;
use orch_sqlite::SqliteStore;

use crate::support::{finish_next_job, new_task, run_on_runtime, BenchResult};

const ITEMS: u32 = 500;
const ITEM_EVERY: Duration = Duration::from_secs(4 * 3600);
/// Deliveries, jobs and history lines per item (what `orch demo` leaves: 20 to 40 of each).
const STEPS: u32 = 20;
const BODY_BYTES: usize = 4096;
const KEEP: Duration = Duration::from_secs(30 * 24 * 3600);
const PASS_EVERY: Duration = Duration::from_secs(3600);
const BATCH: u32 = 500;
const REPORT_EVERY: u32 = 100;

fn main() -> BenchResult {
    run_on_runtime(run())
}

async fn run() -> BenchResult {
    let dir = tempfile::tempdir()?;
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "retention soak: {ITEMS} items, one every {} h, {STEPS} deliveries ({BODY_BYTES} B), jobs and history lines each; keep {} days, a pass every {} min",
        ITEM_EVERY.as_secs() / 3600,
        KEEP.as_secs() / 86_400,
        PASS_EVERY.as_secs() / 60
    )?;
    for retention in [true, false] {
        let path = dir.path().join(format!("soak-{retention}.db"));
        let started = Instant::now();
        let sizes = soak(&path, retention).await?;
        let label = if retention {
            "with retention"
        } else {
            "without retention"
        };
        let figures: Vec<String> = sizes
            .iter()
            .map(|(items, bytes)| format!("{items}: {:.1} MiB", mib(*bytes)))
            .collect();
        writeln!(
            out,
            "{label}: database size after {} (in {:.1} s)",
            figures.join(", "),
            started.elapsed().as_secs_f64()
        )?;
        let copy = dir.path().join(format!("backup-{retention}.db"));
        let (written, writes) = backup_under_load(&path, &copy).await?;
        writeln!(
            out,
            "{label}: backup of the soaked database under load: {:.1} MiB in {} ms, while {writes} deliveries were committed",
            mib(written.bytes),
            written.duration.as_millis()
        )?;
    }
    Ok(())
}

/// `backup` while a writer commits 4 KiB deliveries as fast as it can; returns the backup and
/// how many deliveries were committed while it ran.
async fn backup_under_load(path: &Path, copy: &Path) -> BenchResult<(orch_sqlite::Backup, u64)> {
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    use std::sync::Arc;

    let store = Arc::new(SqliteStore::open(path)?);
    let stop = Arc::new(AtomicBool::new(false));
    let committed = Arc::new(AtomicU64::new(0));
    let writer = tokio::spawn({
        let (store, stop, committed) = (store.clone(), stop.clone(), committed.clone());
        async move {
            let mut n: u64 = 0;
            while !stop.load(Ordering::SeqCst) {
                let delivery = NewDelivery {
                    source: Source::Gitea,
                    delivery_id: format!("load-{n}"),
                    event_type: "status".to_owned(),
                    body_sha256: format!("{n:064x}"),
                    body: vec![b'x'; BODY_BYTES],
                    received_at: Timestamp::from_millis(2_000_000_000_000),
                };
                if store.inbox_insert(delivery).await.is_err() {
                    break;
                }
                n += 1;
                committed.store(n, Ordering::SeqCst);
            }
        }
    });
    // Let the writer get going first.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let before = committed.load(Ordering::SeqCst);
    let (path, copy) = (path.to_path_buf(), copy.to_path_buf());
    let written = tokio::task::spawn_blocking(move || orch_sqlite::backup(&path, &copy)).await??;
    let during = committed.load(Ordering::SeqCst) - before;
    stop.store(true, Ordering::SeqCst);
    writer.await?;
    Ok((written, during))
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

/// Writes every item and returns the database size after every `REPORT_EVERY` items.
async fn soak(path: &Path, retention: bool) -> BenchResult<Vec<(u32, u64)>> {
    let store = SqliteStore::open(path)?;
    let start = Timestamp::from_millis(1_700_000_000_000);
    let mut next_pass = start + PASS_EVERY;
    let mut sizes = Vec::new();
    for item in 0..ITEMS {
        let began = start + ITEM_EVERY * item;
        while retention && next_pass <= began {
            prune(&store, next_pass).await?;
            next_pass = next_pass + PASS_EVERY;
        }
        one_item(&store, item, began).await?;
        if (item + 1) % REPORT_EVERY == 0 {
            sizes.push((item + 1, size_on_disk(path)?));
        }
    }
    Ok(sizes)
}

/// One retention pass as the daemon runs it: batches until none is full.
async fn prune(store: &SqliteStore, now: Timestamp) -> BenchResult {
    let request = PruneRequest {
        deliveries_before: Some(now - KEEP),
        jobs_before: Some(now - KEEP),
        history_before: Some(now - KEEP),
        limit: BATCH,
    };
    while store.prune(request).await?.hit_limit(BATCH) {}
    Ok(())
}

/// The database file after a checkpoint folds the WAL into it.
fn size_on_disk(path: &Path) -> BenchResult<u64> {
    let conn = rusqlite::Connection::open(path)?;
    conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))?;
    Ok(std::fs::metadata(path)?.len())
}

fn job(item: u32, step: u32) -> JobSpec {
    JobSpec::new(
        Action::Notify {
            text: format!("item {item} step {step}: ").repeat(40),
        },
        format!("soak-{item}-{step}"),
    )
}

/// An item's life over two hours: a delivery per step, handled into a transition that writes
/// one job, which runs and ends; the last step ends the task.
async fn one_item(store: &SqliteStore, item: u32, began: Timestamp) -> BenchResult {
    let mut task: Task = store
        .create_task(
            new_task(
                "SK",
                item + 1,
                "soak",
                "A work item of the retention soak.".repeat(20),
            )?,
            vec![job(item, 0)],
            began,
        )
        .await?
        .task;
    let boot = BootId::new("soak")?;
    for step in 1..=STEPS {
        let now = began + Duration::from_secs(u64::from(step) * 360);
        let body: Vec<u8> = (0..BODY_BYTES)
            .map(|n| b'a' + ((n as u32 + item * 7 + step) % 26) as u8)
            .collect();
        let inserted = store
            .inbox_insert(NewDelivery {
                source: Source::Plane,
                delivery_id: format!("soak-{item}-{step}"),
                event_type: "issue".to_owned(),
                body_sha256: format!("{item:032x}{step:032x}"),
                body,
                received_at: now,
            })
            .await?;
        let InboxInsert::Queued(delivery) = inserted else {
            return Err(format!("delivery {item}-{step} was a duplicate").into());
        };
        let mut next = task.clone();
        if step == STEPS {
            next.stage = Stage::Done;
        }
        let jobs = if step == STEPS {
            vec![]
        } else {
            vec![job(item, step)]
        };
        task = store
            .transition(Transition {
                next,
                jobs,
                cancel_active_work: false,
                consumes_job: None,
                note: format!("step {step}"),
                now,
            })
            .await?;
        store
            .inbox_mark_processed(delivery, &InboxOutcome::Applied, now)
            .await?;
        let request = ClaimRequest {
            owner: boot.clone(),
            kinds: ClaimKinds::Actions,
            now,
            lease: Duration::from_secs(60),
        };
        while let Some(job) = finish_next_job(store, &request, now).await? {
            store.mark_job_handled(job).await?;
        }
    }
    Ok(())
}
