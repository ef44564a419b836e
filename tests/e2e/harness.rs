//! Shared setup: a sandbox per test, the `orch` binary, deadline-bounded waiting.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use orch_daemon::sandbox::{Sandbox, SandboxSetup};

/// How long any end-to-end wait may take before the test fails.
pub(crate) const CONVERGE: Duration = Duration::from_secs(60);
/// How often a wait looks again.
pub(crate) const POLL: Duration = Duration::from_millis(50);

/// The `orch` binary cargo built for this test run (next to this test's `deps/` folder).
pub(crate) fn orch_binary() -> PathBuf {
    let exe = std::env::current_exe().expect("the test binary has a path");
    let target = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("the test binary lives in target/<profile>/deps");
    let orch = target.join("orch");
    assert!(
        orch.exists(),
        "{} is missing: build it with `cargo build -p orch-daemon`",
        orch.display()
    );
    orch
}

/// A sandbox in a fresh temp dir, with `script` for the scripted agent and a 1 s reconciler.
pub(crate) async fn sandbox(script: &str) -> (Sandbox, tempfile::TempDir) {
    let dir = tempfile::Builder::new()
        .prefix("orch-e2e-")
        .tempdir()
        .expect("temp dir");
    let orch = orch_binary();
    let sandbox = Sandbox::new(SandboxSetup {
        dir: dir.path(),
        orch_binary: &orch,
        agent_script: script,
        reconcile_interval_s: 1,
    })
    .await
    .expect("sandbox starts");
    (sandbox, dir)
}

/// Waits until `check` returns `Some`, failing the test after `CONVERGE`.
pub(crate) async fn wait_for<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + CONVERGE;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {CONVERGE:?} waiting for {what}"
        );
        tokio::time::sleep(POLL).await;
    }
}

/// Whether a process is alive (not gone and not a zombie).
pub(crate) fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit_once(") ")
            .is_some_and(|(_, rest)| !rest.starts_with('Z') && !rest.starts_with('X')),
        Err(_) => false,
    }
}

/// A person approves `item` at every gate until it ends; then `orch`, a child process, is
/// stopped. Returns the item's task as it ended.
pub(crate) async fn approve_to_the_end_then_stop(
    sandbox: &Sandbox,
    store: &orch_sqlite::SqliteStore,
    item: &str,
    mut orch: std::process::Child,
) -> orch_core::domain::Task {
    let ended = orch_daemon::sandbox::play_person(
        sandbox,
        store,
        &[item.to_owned()],
        &mut orch_daemon::sandbox::Approver,
        CONVERGE,
        &mut |_, _| {},
    )
    .await
    .expect("person plays");
    orch.kill().expect("stop orch");
    let _ = orch.wait();
    ended[0].task.clone().expect("the item has a task")
}
