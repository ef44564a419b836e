//! `orch demo --board`: after the items merge, orch keeps serving with an admin token until
//! it is signalled, then stops cleanly; signalled earlier, it stops at once.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::Duration;

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

/// How long the demo may take to merge its one item and print the board line.
const BOARD_READY: Duration = Duration::from_secs(90);
/// How long the demo may take to stop once signalled.
const STOPPED: Duration = Duration::from_secs(30);

/// `GET path` with an optional Bearer token; the status code of the answer.
fn get_status(addr: &str, path: &str, token: Option<&str>) -> std::io::Result<u16> {
    let mut stream = TcpStream::connect(addr)?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let auth = token.map_or(String::new(), |token| {
        format!("Authorization: Bearer {token}\r\n")
    });
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\n{auth}Connection: close\r\n\r\n"
    )?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer)?;
    let code = answer
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or(0);
    Ok(code)
}

/// Starts `orch demo --board` with `items` items; the child, its stdout lines, and its
/// stderr once it has exited (drained meanwhile, so a full pipe never blocks the demo).
fn start_demo(dir: &Path, items: &str) -> (Child, mpsc::Receiver<String>, JoinHandle<String>) {
    let path = std::env::var("PATH").unwrap_or_default();
    let mut child = Command::new(env!("CARGO_BIN_EXE_orch"))
        .args(["demo", "--items", items, "--board"])
        .env_clear()
        .env("PATH", path)
        .current_dir(dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("orch demo starts");
    let mut stderr = child.stderr.take().expect("piped stderr");
    let stderr = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });
    let stdout = child.stdout.take().expect("piped stdout");
    let (lines_tx, lines) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if lines_tx.send(line).is_err() {
                break;
            }
        }
    });
    (child, lines, stderr)
}

/// The first line starting with `prefix`, within `BOARD_READY`.
fn wait_for_line(child: &mut Child, lines: &mpsc::Receiver<String>, prefix: &str) -> String {
    loop {
        match lines.recv_timeout(BOARD_READY) {
            Ok(line) if line.starts_with(prefix) => return line,
            Ok(_) => continue,
            Err(err) => {
                let _ = child.kill();
                panic!("no line starting with {prefix:?}: {err}");
            }
        }
    }
}

/// Sends SIGINT and waits for the exit, within `STOPPED`.
fn interrupt(child: &mut Child) -> ExitStatus {
    let pid = Pid::from_raw(i32::try_from(child.id()).expect("pid fits"));
    kill(pid, Signal::SIGINT).expect("signalled");
    let deadline = std::time::Instant::now() + STOPPED;
    loop {
        if let Some(status) = child.try_wait().expect("status") {
            return status;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("the demo did not stop on SIGINT");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn demo_board_keeps_serving_with_a_token_until_signalled() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (mut child, lines, _stderr) = start_demo(dir.path(), "1");
    let board_line = wait_for_line(&mut child, &lines, "board: ");
    // "board: http://ADDR/ · log in with the admin token TOKEN · Ctrl-C stops the demo"
    let addr = board_line
        .strip_prefix("board: http://")
        .and_then(|rest| rest.split('/').next())
        .expect("an address")
        .to_owned();
    let token = board_line
        .split("admin token ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .expect("a token")
        .to_owned();
    assert_eq!(token.len(), 32, "{board_line}");

    // Serving after the items ended, and the token is the admin's.
    assert_eq!(get_status(&addr, "/healthz", None).expect("served"), 200);
    assert_eq!(
        get_status(&addr, "/queue", Some(&token)).expect("served"),
        200
    );
    assert_eq!(
        get_status(&addr, "/queue", Some("wrong")).expect("served"),
        401
    );
    assert!(
        child.try_wait().expect("status").is_none(),
        "the demo keeps running"
    );

    let status = interrupt(&mut child);
    assert_eq!(
        status.code(),
        Some(0),
        "a clean stop after all items merged"
    );
    // The reader ends at the end of the output, which the exit has closed.
    let rest: Vec<String> = lines.iter().collect();
    assert!(rest.iter().any(|line| line == "stopping"), "{rest:?}");
    assert!(
        get_status(&addr, "/healthz", None).is_err(),
        "nothing serves after the stop"
    );
}

#[test]
fn demo_board_interrupted_before_the_items_end_stops_at_once() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (mut child, lines, stderr) = start_demo(dir.path(), "6");
    let serving = wait_for_line(&mut child, &lines, "orch serves on http://");
    let addr = serving
        .strip_prefix("orch serves on http://")
        .and_then(|rest| rest.split_whitespace().next())
        .expect("an address")
        .to_owned();
    let status = interrupt(&mut child);
    let stderr = stderr.join().expect("stderr read");
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("interrupted before the items ended"),
        "{stderr}"
    );
    let rest: Vec<String> = lines.iter().collect();
    assert!(
        !rest.iter().any(|line| line.starts_with("board: ")),
        "{rest:?}"
    );
    assert!(
        get_status(&addr, "/healthz", None).is_err(),
        "nothing serves after the stop"
    );
}
