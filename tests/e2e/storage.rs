//! Storage faults on the real binary, while `orch serve` runs: the disk under the database
//! fills up, or the database's write-ahead log becomes read-only (immutable, which stops root
//! too). Webhooks get 503 with `Retry-After` (never 202 without a durable write), `/readyz`
//! turns 503, nothing is half-written, and when the fault ends orch recovers by itself.
//!
//! The database lives on a small file system mounted in a private mount namespace
//! (`unshare -m`) that only the daemon sees: a tmpfs, or an ext4 image on a loop device. The
//! test reaches its files through `/proc/{pid}/root`. That needs the right to mount (root in
//! CI); without it, or without loop devices or `mkfs.ext4`, a test says so and does nothing.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use orch_daemon::sandbox::GITEA_SECRET;
use orch_e2e::crash::{fixed_port, readyz};
use orch_sim::webhook::hmac_sha256_hex;

use crate::harness::{sandbox, wait_for};

/// Padding in each delivery sent during a fault, so the WAL must grow.
const PADDING: usize = 200 * 1024;
/// Deliveries sent into a fault before one must be refused.
const MAX_ATTEMPTS: usize = 200;

/// Mounts a file system on `"$0"` (a shell command run in the daemon's namespace).
const TMPFS: &str = "mount -t tmpfs -o size=8m orch-e2e-disk \"$0\"";

#[expect(
    clippy::print_stderr,
    reason = "a skipped test says why, or a run without the right to mount would pass silently"
)]
fn say_skipped(why: &str) {
    eprintln!("skipped: {why}");
}

/// Runs `mount` (see `TMPFS`) on `disk` in a private mount namespace; whether it worked.
fn can_mount(mount: &str, disk: &Path) -> bool {
    Command::new("unshare")
        .args(["-m", "--propagation", "private", "sh", "-c", mount])
        .arg(disk)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success())
}

/// `orch serve` in its own mount namespace, its database on the file system `mount` mounts
/// on `disk`.
fn serve_on(mount: &str, config: &Path, disk: &Path) -> Child {
    Command::new("unshare")
        .args(["-m", "--propagation", "private", "sh", "-c"])
        .arg(format!("{mount} && exec \"$@\""))
        .arg(disk)
        .arg(crate::harness::orch_binary())
        .args(["serve", "--config"])
        .arg(config)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("orch serve starts in its namespace")
}

/// A storage fault: how it starts and ends (given the database's path as the test sees it),
/// and how `/readyz` names it.
struct Fault {
    start: fn(&Path),
    end: fn(&Path),
    shown_as: &'static str,
}

/// The scenario of every fault: a delivery stored, the fault, deliveries until one is
/// refused, readiness lost, the fault ended, readiness back by itself, and in the inbox
/// exactly the acknowledged deliveries, every one processed.
async fn fault_and_recover(dir: &Path, mount: &str, fault: Fault) {
    let (sandbox, _sandbox_dir) = sandbox(r#"{"default": {}, "items": {}}"#).await;
    let disk = dir.join("disk");
    std::fs::create_dir(&disk).expect("disk mount point");
    if !can_mount(mount, &disk) {
        say_skipped(&format!(
            "this process cannot run `{mount}` in a private mount namespace \
             (`unshare -m` and `mount` need root or CAP_SYS_ADMIN)"
        ));
        return;
    }
    let port = fixed_port(&sandbox).expect("port");
    let text = std::fs::read_to_string(&sandbox.config_path).expect("config");
    let old = format!("db_path = {:?}", sandbox.config.storage.db_path);
    let db = disk.join("orch.db");
    let moved = text.replace(&old, &format!("db_path = {db:?}"));
    assert_ne!(moved, text, "the sandbox config names its db_path");
    std::fs::write(&sandbox.config_path, moved).expect("config written");

    let daemon = Killed(serve_on(mount, &sandbox.config_path, &disk));
    let relative = db.strip_prefix("/").expect("absolute");
    let db_inside = PathBuf::from(format!("/proc/{}/root", daemon.0.id())).join(relative);
    wait_for("orch to be ready", || async {
        readyz(port)
            .is_some_and(|answer| answer.starts_with("HTTP/1.1 200"))
            .then_some(())
    })
    .await;
    assert_eq!(status(&deliver(port, "before", 0)), 202);

    (fault.start)(&db_inside);
    let mut acknowledged = vec!["before".to_owned()];
    let mut refused = None;
    for attempt in 0..MAX_ATTEMPTS {
        let id = format!("fault-{attempt}");
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
    let (refused_id, answer) = refused.expect("a delivery during the fault is refused");
    assert!(
        answer
            .to_ascii_lowercase()
            .contains("\r\nretry-after: 10\r\n"),
        "{answer}"
    );
    let unready = readyz(port).expect("readyz answers");
    assert!(unready.starts_with("HTTP/1.1 503"), "{unready}");
    assert!(
        unready.contains(&format!("\"storage\":\"fault: {}", fault.shown_as)),
        "{unready}"
    );

    // The fault ends: orch sees it alone, with nothing else writing.
    (fault.end)(&db_inside);
    wait_for("orch to be ready again", || async {
        readyz(port)
            .is_some_and(|answer| answer.starts_with("HTTP/1.1 200"))
            .then_some(())
    })
    .await;
    assert_eq!(status(&deliver(port, "after", 0)), 202);
    acknowledged.push("after".to_owned());

    let scratch = dir.join("scratch");
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

/// The file next to the database with `suffix` (`-wal`).
fn beside(db: &Path, suffix: &str) -> PathBuf {
    let mut path = db.as_os_str().to_owned();
    path.push(suffix);
    PathBuf::from(path)
}

fn fill_disk(db: &Path) {
    let mut file = std::fs::File::create(beside(db, ".filler")).expect("filler");
    let chunk = vec![0_u8; 64 * 1024];
    while file.write_all(&chunk).is_ok() {}
}

fn free_disk(db: &Path) {
    std::fs::remove_file(beside(db, ".filler")).expect("filler removed");
}

fn chattr(flag: &str, path: &Path) {
    let status = Command::new("chattr")
        .arg(flag)
        .arg(path)
        .status()
        .expect("chattr runs");
    assert!(status.success(), "chattr {flag} {}", path.display());
}

fn freeze_wal(db: &Path) {
    chattr("+i", &beside(db, "-wal"));
}

fn thaw_wal(db: &Path) {
    chattr("-i", &beside(db, "-wal"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_refuses_webhooks_with_503_and_unreadies_orch_until_space_returns() {
    if std::env::var_os("RUN_SLOW_TESTS").is_none() {
        return;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let fault = Fault {
        start: fill_disk,
        end: free_disk,
        shown_as: "disk full",
    };
    fault_and_recover(dir.path(), TMPFS, fault).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_only_write_ahead_log_refuses_webhooks_with_503_until_it_is_writable_again() {
    if std::env::var_os("RUN_SLOW_TESTS").is_none() {
        return;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    // ext4, whose immutable flag stops writes through open files too (tmpfs's does not).
    let image = dir.path().join("disk.img");
    let made = Command::new("mkfs.ext4")
        .args(["-q", "-F"])
        .arg(&image)
        .arg("16M")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success());
    if !made {
        say_skipped("`mkfs.ext4` cannot make a file system image here");
        return;
    }
    let mount = format!("mount -o loop {} \"$0\"", image.display());
    let fault = Fault {
        start: freeze_wal,
        end: thaw_wal,
        shown_as: "i/o error",
    };
    fault_and_recover(dir.path(), &mount, fault).await;
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

/// The daemon, killed when the test ends, a failed assertion included.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
