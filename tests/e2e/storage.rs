//! Storage faults on the real binary: the disk under the database fills up while `orch serve`
//! runs. Webhooks get 503 with `Retry-After` (never 202 without a durable write), `/readyz`
//! turns 503, nothing is half-written, and when space returns orch recovers by itself.
//!
//! The database lives on a small tmpfs mounted in a private mount namespace (`unshare -m`)
//! that only the daemon sees; the test reaches its files through `/proc/{pid}/root`. That needs
//! the right to mount (root in CI); without it the test says so and does nothing.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use orch_daemon::sandbox::{Sandbox, GITEA_SECRET};
use orch_e2e::crash::{fixed_port, readyz};
use orch_sim::webhook::hmac_sha256_hex;

use crate::harness::{sandbox, wait_for};

/// The tmpfs the database lives on.
const DISK_SIZE: &str = "size=8m";
/// Padding in each delivery sent while the disk is full, so the WAL must grow.
const PADDING: usize = 200 * 1024;
/// Deliveries sent into the full disk before one must be refused.
const MAX_ATTEMPTS: usize = 200;

/// Whether this process may mount a tmpfs in a private mount namespace.
fn can_mount(dir: &Path) -> bool {
    Command::new("unshare")
        .args([
            "-m",
            "--propagation",
            "private",
            "mount",
            "-t",
            "tmpfs",
            "-o",
            "size=1m",
            "probe",
        ])
        .arg(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success())
}

#[expect(
    clippy::print_stderr,
    reason = "a skipped test says why, or a run without the right to mount would pass silently"
)]
fn say_skipped() {
    eprintln!(
        "skipped: this process cannot mount a tmpfs in a private mount namespace \
         (`unshare -m` and `mount` need root or CAP_SYS_ADMIN)"
    );
}

/// `orch serve` in its own mount namespace, with `disk` a fresh tmpfs.
fn serve_on_small_disk(sandbox: &Sandbox, disk: &Path) -> Child {
    Command::new("unshare")
        .args(["-m", "--propagation", "private", "sh", "-c"])
        .arg(format!(
            "mount -t tmpfs -o {DISK_SIZE} orch-e2e-disk \"$0\" && exec \"$@\""
        ))
        .arg(disk)
        .arg(crate::harness::orch_binary())
        .args(["serve", "--config"])
        .arg(&sandbox.config_path)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("orch serve starts in its namespace")
}

/// POSTs a signed Gitea status delivery with `padding` extra bytes; the whole answer.
fn deliver(port: u16, id: &str, padding: usize) -> String {
    let body = serde_json::json!({
        "commit": {"id": format!("{:0>40}", id.len()), "message": "work\n", "url": ""},
        "context": "ci/build",
        "description": "x".repeat(padding),
        "id": 1,
        "repository": {"id": 42, "full_name": "acme/elsewhere", "name": "elsewhere"},
        "sender": {"id": 9, "login": "ci-bot"},
        "sha": format!("{:0>40}", id.len()),
        "state": "success",
        "target_url": "",
    })
    .to_string();
    let signature = hmac_sha256_hex(GITEA_SECRET.as_bytes(), body.as_bytes());
    let request = format!(
        "POST /webhooks/gitea HTTP/1.1\r\nHost: orch\r\nContent-Type: application/json\r\n\
         X-Gitea-Event: status\r\nX-Gitea-Event-Type: status\r\nX-Gitea-Delivery: {id}\r\n\
         X-Gitea-Signature: {signature}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connects");
    stream
        .write_all(request.as_bytes())
        .expect("request written");
    let mut answer = String::new();
    stream.read_to_string(&mut answer).expect("answer read");
    answer
}

fn status(answer: &str) -> u16 {
    answer
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("no status line: {answer}"))
}

/// A copy of the database (and its WAL) seen through `/proc/{pid}/root`: SQLite resolves
/// that link to our own namespace, where the tmpfs is not mounted, so it cannot open it there.
fn copy_of(db: &Path, into: &Path) -> rusqlite::Connection {
    let copy = into.join("copy.db");
    let _ = std::fs::remove_file(into.join("copy.db-wal"));
    let _ = std::fs::remove_file(into.join("copy.db-shm"));
    std::fs::copy(db, &copy).expect("database copied");
    let mut wal = db.as_os_str().to_owned();
    wal.push("-wal");
    if Path::new(&wal).exists() {
        std::fs::copy(&wal, into.join("copy.db-wal")).expect("wal copied");
    }
    rusqlite::Connection::open(&copy).expect("copy opens")
}

/// Inbox rows by delivery id: whether each was processed with an outcome.
fn inbox(db: &Path, scratch: &Path) -> Vec<(String, bool)> {
    let conn = copy_of(db, scratch);
    let mut statement = conn
        .prepare("SELECT delivery_id, processed_at IS NOT NULL AND outcome IS NOT NULL FROM inbox ORDER BY id")
        .expect("prepare");
    statement
        .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))
        .expect("query")
        .collect::<Result<_, _>>()
        .expect("rows")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_refuses_webhooks_with_503_and_unreadies_orch_until_space_returns() {
    if std::env::var_os("RUN_SLOW_TESTS").is_none() {
        return;
    }
    let (sandbox, dir) = sandbox(r#"{"default": {}, "items": {}}"#).await;
    let disk = dir.path().join("disk");
    std::fs::create_dir(&disk).expect("disk mount point");
    if !can_mount(&disk) {
        say_skipped();
        return;
    }
    let port = fixed_port(&sandbox).expect("port");
    let text = std::fs::read_to_string(&sandbox.config_path).expect("config");
    let old = format!("db_path = {:?}", sandbox.config.storage.db_path);
    let db = disk.join("orch.db");
    let moved = text.replace(&old, &format!("db_path = {db:?}"));
    assert_ne!(moved, text, "the sandbox config names its db_path");
    std::fs::write(&sandbox.config_path, moved).expect("config written");

    let daemon = Killed(serve_on_small_disk(&sandbox, &disk));
    let daemon_pid = daemon.0.id();
    let inside = |path: &Path| -> PathBuf {
        let relative = path.strip_prefix("/").expect("absolute");
        PathBuf::from(format!("/proc/{daemon_pid}/root")).join(relative)
    };
    let (db_inside, filler) = (inside(&db), inside(&disk.join("filler")));
    wait_for("orch to be ready", || async {
        readyz(port)
            .is_some_and(|answer| answer.starts_with("HTTP/1.1 200"))
            .then_some(())
    })
    .await;
    assert_eq!(status(&deliver(port, "before", 0)), 202);

    // Fill the disk.
    {
        let mut file = std::fs::File::create(&filler).expect("filler");
        let chunk = vec![0_u8; 64 * 1024];
        while file.write_all(&chunk).is_ok() {}
    }
    let mut acknowledged = vec!["before".to_owned()];
    let mut refused = None;
    for attempt in 0..MAX_ATTEMPTS {
        let id = format!("full-{attempt}");
        let answer = deliver(port, &id, PADDING);
        match status(&answer) {
            202 => acknowledged.push(id),
            503 => {
                refused = Some((id, answer));
                break;
            }
            other => panic!("unexpected {other}: {answer}"),
        }
    }
    let (refused_id, answer) = refused.expect("a delivery into a full disk is refused");
    assert!(
        answer
            .to_ascii_lowercase()
            .contains("\r\nretry-after: 10\r\n"),
        "{answer}"
    );
    let unready = readyz(port).expect("readyz answers");
    assert!(unready.starts_with("HTTP/1.1 503"), "{unready}");
    assert!(
        unready.contains("\"storage\":\"fault: disk full"),
        "{unready}"
    );

    // Space returns: orch sees it alone, with nothing else writing.
    std::fs::remove_file(&filler).expect("filler removed");
    wait_for("orch to be ready again", || async {
        readyz(port)
            .is_some_and(|answer| answer.starts_with("HTTP/1.1 200"))
            .then_some(())
    })
    .await;
    assert_eq!(status(&deliver(port, "after", 0)), 202);
    acknowledged.push("after".to_owned());

    let scratch = dir.path().join("scratch");
    std::fs::create_dir(&scratch).expect("scratch dir");
    let rows = wait_for("every stored delivery to be processed", || {
        let rows = inbox(&db_inside, &scratch);
        async move { rows.iter().all(|(_, processed)| *processed).then_some(rows) }
    })
    .await;
    let stored: Vec<&str> = rows.iter().map(|(id, _)| id.as_str()).collect();
    let expected: Vec<&str> = acknowledged.iter().map(String::as_str).collect();
    assert_eq!(
        stored, expected,
        "exactly the acknowledged deliveries are stored; {refused_id} is not"
    );
    let conn = copy_of(&db_inside, &scratch);
    let integrity: String = conn
        .query_row("PRAGMA integrity_check", [], |row| row.get(0))
        .expect("integrity check");
    assert_eq!(integrity, "ok");
    drop(conn);
    drop(daemon);
}

/// The daemon, killed when the test ends, a failed assertion included.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
