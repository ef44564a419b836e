//! `orch backup` while `orch serve` runs with webhooks arriving; the copy restored in place of
//! the database, and the pipeline finished on it.

use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use orch_core::domain::Stage;
use orch_core::ports::Store;
use orch_daemon::sandbox::{self, Approver, PLANE_SECRET};
use rusqlite::Connection;

use crate::harness::{orch_binary, sandbox, wait_for, CONVERGE};
use crate::process::{fix_port, post_plane_delivery, serve, wait_ready};

/// Deliveries accepted before the backup starts.
const LOAD_BEFORE: u64 = 30;

fn inbox_rows(path: &std::path::Path) -> u64 {
    Connection::open(path)
        .expect("open")
        .query_row("SELECT count(*) FROM inbox", [], |row| row.get(0))
        .expect("count")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_taken_under_load_restores_and_the_pipeline_finishes_on_it() {
    if std::env::var_os("RUN_SLOW_TESTS").is_none() {
        return;
    }
    let (sandbox, dir) = sandbox(r#"{"default": {}, "items": {}}"#).await;
    let port = fix_port(&sandbox);
    let mut daemon = serve(&sandbox);
    wait_ready(port).await;
    let db_path = sandbox.config.storage.db_path.clone();
    let store = orch_sqlite::SqliteStore::open(&db_path).expect("store opens");
    let mut items = Vec::new();
    for title in ["Back me up", "And me"] {
        let (item, _) = sandbox.create_item(title).await.expect("item");
        sandbox
            .move_item(&item, "In Progress")
            .await
            .expect("moved");
        items.push(item);
    }
    for item in &items {
        wait_for("the task to exist", || async {
            sandbox.task(&store, item).await.ok()?.map(|_| ())
        })
        .await;
    }

    // Webhooks keep arriving while the backup runs.
    let accepted = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let load = std::thread::spawn({
        let (accepted, stop) = (accepted.clone(), stop.clone());
        move || {
            let mut n = 0;
            while !stop.load(Ordering::SeqCst) {
                n += 1;
                if post_plane_delivery(port, PLANE_SECRET, &format!("load-{n}")) == Some(202) {
                    accepted.fetch_add(1, Ordering::SeqCst);
                }
            }
        }
    });
    let loaded = accepted.clone();
    wait_for("webhook load", || {
        let count = loaded.load(Ordering::SeqCst);
        async move { (count >= LOAD_BEFORE).then_some(()) }
    })
    .await;
    let copy = dir.path().join("backup.db");
    let started = Instant::now();
    let output = Command::new(orch_binary())
        .args(["backup", "--config"])
        .arg(&sandbox.config_path)
        .arg(&copy)
        .env("RUST_LOG", "warn")
        .output()
        .expect("orch backup runs");
    let took = started.elapsed();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "orch backup failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("backed up to"), "{stdout}");
    #[allow(clippy::print_stderr)]
    {
        // The figure the release notes quote: backup time under webhook load.
        eprintln!(
            "backup under load: {} ms wall ({})",
            took.as_millis(),
            stdout.trim()
        );
    }
    let during = accepted.load(Ordering::SeqCst);
    wait_for("webhooks to go on after the backup", || {
        let count = loaded.load(Ordering::SeqCst);
        async move { (count > during).then_some(()) }
    })
    .await;
    stop.store(true, Ordering::SeqCst);
    load.join().expect("load thread");
    assert!(
        inbox_rows(&copy) >= LOAD_BEFORE,
        "the copy holds the deliveries accepted before it"
    );

    // Disaster: the database is lost. Restore: orch stopped, the copy put in its place.
    daemon.kill().expect("stop orch");
    let _ = daemon.wait();
    drop(store);
    for suffix in ["", "-wal", "-shm"] {
        let mut name = db_path.as_os_str().to_owned();
        name.push(suffix);
        let _ = std::fs::remove_file(std::path::PathBuf::from(name));
    }
    std::fs::copy(&copy, &db_path).expect("restore the copy");

    let mut restored = serve(&sandbox);
    wait_ready(port).await;
    let store = orch_sqlite::SqliteStore::open(&db_path).expect("restored store opens");
    let ended = sandbox::play_person(
        &sandbox,
        &store,
        &items,
        &mut Approver,
        CONVERGE,
        &mut |_, _| {},
    )
    .await
    .expect("person plays");
    restored.kill().expect("stop orch");
    let _ = restored.wait();
    for end in &ended {
        let task = end.task.clone().expect("task");
        assert_eq!(task.stage, Stage::Done, "{}", task.work_item);
        assert!(sandbox::merged(&sandbox, Some(&task)));
    }
    assert_eq!(
        sandbox.gitea.pulls(sandbox::REPO).len(),
        items.len(),
        "one pull request per item"
    );
    assert!(store.list_tasks(10).await.expect("tasks").len() == items.len());
}
