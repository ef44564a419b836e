//! `orch serve` under systemd's notify protocol: a test plays the service manager on a
//! `NOTIFY_SOCKET` (a Unix datagram socket) and reads what a real child process says.

use std::process::{Command, ExitStatus};
use std::time::{Duration, Instant};

use tokio::net::UnixDatagram;

use crate::harness::{orch_binary, sandbox, wait_for, CONVERGE};
use crate::process::{fix_port, get};

/// `WatchdogSec=` given to the child: orch must pet at least every half of it.
const WATCHDOG: Duration = Duration::from_secs(1);

/// Reads datagrams until one holds `line`; returns every message read, that one last.
async fn read_until(socket: &UnixDatagram, line: &str) -> Vec<String> {
    let deadline = Instant::now() + CONVERGE;
    let mut seen = Vec::new();
    let mut buffer = vec![0_u8; 4096];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let read = tokio::time::timeout(left, socket.recv(&mut buffer))
            .await
            .unwrap_or_else(|_| panic!("no {line} within {CONVERGE:?}; read {seen:?}"))
            .expect("datagram");
        let message = String::from_utf8_lossy(&buffer[..read]).into_owned();
        let found = message.lines().any(|got| got == line);
        seen.push(message);
        if found {
            return seen;
        }
    }
}

fn signal(pid: u32, name: &str) {
    let status = Command::new("kill")
        .args([format!("-{name}"), pid.to_string()])
        .status()
        .expect("kill runs");
    assert!(status.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_tells_systemd_ready_pets_the_watchdog_reloads_and_stops() {
    let (sandbox, dir) = sandbox(r#"{"default": {}, "items": {}}"#).await;
    let port = fix_port(&sandbox);
    let socket_path = dir.path().join("notify.sock");
    let socket = UnixDatagram::bind(&socket_path).expect("notify socket");
    let mut daemon = Command::new(orch_binary())
        .args(["serve", "--config"])
        .arg(&sandbox.config_path)
        .env("RUST_LOG", "warn")
        .env("NOTIFY_SOCKET", &socket_path)
        .env("WATCHDOG_USEC", WATCHDOG.as_micros().to_string())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("orch serve starts");

    let before_ready = read_until(&socket, "READY=1").await;
    // READY=1 comes once orch is migrated, its loops run and it serves: no wait needed.
    let ready = get(port, "/readyz");
    assert!(ready.starts_with("HTTP/1.1 200"), "{ready}");
    assert!(
        before_ready
            .last()
            .is_some_and(|ready| ready.contains("STATUS=serving")),
        "{before_ready:?}"
    );

    // The event loop pets the watchdog at least every half timeout while idle.
    let started = Instant::now();
    for _ in 0..3 {
        read_until(&socket, "WATCHDOG=1").await;
    }
    assert!(
        started.elapsed() < WATCHDOG * 3,
        "three pets took {:?}",
        started.elapsed()
    );

    signal(daemon.id(), "HUP");
    let reload = read_until(&socket, "READY=1").await;
    assert!(
        reload
            .iter()
            .any(|message| message.lines().any(|line| line == "RELOADING=1")),
        "{reload:?}"
    );

    signal(daemon.id(), "TERM");
    read_until(&socket, "STOPPING=1").await;
    let status: ExitStatus = wait_for("orch to exit", || {
        let exited = daemon.try_wait().expect("wait");
        async move { exited }
    })
    .await;
    assert!(status.success(), "{status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_notify_socket_serve_runs_as_before() {
    let (sandbox, _dir) = sandbox(r#"{"default": {}, "items": {}}"#).await;
    let port = fix_port(&sandbox);
    let mut daemon = Command::new(orch_binary())
        .args(["serve", "--config"])
        .arg(&sandbox.config_path)
        .env("RUST_LOG", "warn")
        .env_remove("NOTIFY_SOCKET")
        .env("WATCHDOG_USEC", "1000")
        // Another process's watchdog: orch must not take it for its own.
        .env("WATCHDOG_PID", "1")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("orch serve starts");
    crate::process::wait_ready(port).await;
    signal(daemon.id(), "TERM");
    let status: ExitStatus = wait_for("orch to exit", || {
        let exited = daemon.try_wait().expect("wait");
        async move { exited }
    })
    .await;
    assert!(status.success(), "{status}");
}
