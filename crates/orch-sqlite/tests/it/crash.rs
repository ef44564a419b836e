//! Crash safety: a child process inserting inbox rows is SIGKILLed at random instants; every
//! insert that returned before the kill survives, and the database stays intact.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use orch_core::ports::{InboxInsert, NewDelivery, Source, Store};
use orch_sqlite::SqliteStore;
use rand::Rng;
use rusqlite::Connection;

use crate::support::at;

const CHILD_DB_ENV: &str = "ORCH_SQLITE_CRASH_CHILD_DB";
const CHILD_ROUND_ENV: &str = "ORCH_SQLITE_CRASH_CHILD_ROUND";
const TEST_NAME: &str = "crash::inbox_inserts_that_returned_survive_sigkill_at_random_instants";
/// How long the child may take to commit its first row.
const FIRST_COMMIT_DEADLINE: Duration = Duration::from_secs(20);
/// The child stops by itself after this long, should the parent vanish.
const CHILD_LIFETIME: Duration = Duration::from_secs(60);
const SLOW_ROUNDS: usize = 50;
const QUICK_ROUNDS: usize = 3;

#[test]
fn inbox_inserts_that_returned_survive_sigkill_at_random_instants() {
    if let Ok(db) = std::env::var(CHILD_DB_ENV) {
        let round = std::env::var(CHILD_ROUND_ENV).unwrap_or_default();
        run_child(Path::new(&db), &round);
        return;
    }
    // Without RUN_SLOW_TESTS, a few rounds still exercise the path quickly.
    let rounds = if std::env::var_os("RUN_SLOW_TESTS").is_some() {
        SLOW_ROUNDS
    } else {
        QUICK_ROUNDS
    };
    let dir = tempfile::tempdir().expect("temp dir");
    let db = dir.path().join("crash.db");
    let mut committed_total = Vec::new();
    for round in 0..rounds {
        let committed = kill_one_child(&db, round);
        committed_total.extend(committed);
        let conn = Connection::open(&db).expect("open after kill");
        let integrity: String = conn
            .query_row("PRAGMA integrity_check", [], |row| row.get(0))
            .expect("integrity");
        assert_eq!(integrity, "ok", "round {round}");
        let mut stmt = conn
            .prepare("SELECT count(*) FROM inbox WHERE delivery_id = ?1")
            .expect("prepare");
        for id in &committed_total {
            let found: i64 = stmt.query_row([id], |row| row.get(0)).expect("lookup");
            assert_eq!(
                found, 1,
                "delivery {id} returned before the kill (round {round}) but is missing"
            );
        }
    }
    assert!(
        committed_total.len() >= rounds,
        "every round committed at least one row"
    );
    SqliteStore::open_exclusive(&db).expect("the killed writer's lock is gone");
}

/// Runs one child until it has committed at least one row, kills it at a random instant, and
/// returns the delivery ids it reported committed.
fn kill_one_child(db: &Path, round: usize) -> Vec<String> {
    let exe = std::env::current_exe().expect("test binary");
    let mut child = Command::new(exe)
        .args([TEST_NAME, "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD_DB_ENV, db)
        .env(CHILD_ROUND_ENV, round.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn child");
    let stdout = child.stdout.take().expect("child stdout");
    let (sender, receiver) = mpsc::channel::<String>();
    let reader = std::thread::spawn(move || {
        let mut lines = BufReader::new(stdout);
        let mut line = String::new();
        while lines.read_line(&mut line).unwrap_or(0) > 0 {
            // A line cut by the kill has no newline and does not count.
            if let Some(id) = line
                .strip_suffix('\n')
                .and_then(|text| text.strip_prefix("committed "))
            {
                if sender.send(id.to_owned()).is_err() {
                    break;
                }
            }
            line.clear();
        }
    });
    let mut committed = Vec::new();
    match receiver.recv_timeout(FIRST_COMMIT_DEADLINE) {
        Ok(id) => committed.push(id),
        Err(err) => {
            let _ = child.kill();
            panic!("round {round}: the child committed nothing: {err}");
        }
    }
    let delay = Duration::from_micros(rand::rng().random_range(0..80_000));
    std::thread::sleep(delay);
    child.kill().expect("SIGKILL the child");
    child.wait().expect("reap the child");
    reader.join().expect("reader thread");
    committed.extend(receiver.try_iter());
    committed
}

fn run_child(db: &Path, round: &str) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let store = SqliteStore::open_exclusive(db).expect("child opens the database");
    let started = Instant::now();
    let mut stdout = std::io::stdout();
    let mut n: u64 = 0;
    while started.elapsed() < CHILD_LIFETIME {
        n += 1;
        let delivery_id = format!("r{round}-{n}");
        let body = format!("{{\"round\":\"{round}\",\"n\":{n}}}");
        let delivery = NewDelivery {
            source: Source::Gitea,
            delivery_id: delivery_id.clone(),
            event_type: "push".to_owned(),
            body_sha256: format!("sha-{delivery_id}"),
            body: body.into_bytes(),
            received_at: at(0),
        };
        match runtime
            .block_on(store.inbox_insert(delivery))
            .expect("insert")
        {
            InboxInsert::Queued(_) => writeln!(stdout, "committed {delivery_id}").expect("report"),
            InboxInsert::Duplicate => panic!("fresh delivery {delivery_id} reported duplicate"),
        }
    }
}
