//! `orch task retry|cancel` while the daemon runs: sent over HTTP to its serial event loop.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Output;
use std::time::{Duration, Instant};

use orch_core::domain::Stage;
use orch_daemon::config;
use orch_daemon::sandbox::{Sandbox, SandboxSetup};
use orch_daemon::wiring::{Daemon, DaemonOptions};
use tokio::net::TcpListener;

use crate::{orch, text};

const ADMIN_TOKEN: &str = "admin-token-of-the-running-daemon";
/// The analyst hangs, so the task stays in analysis with a running agent until cancelled.
const HANGING_ANALYST: &str = r#"{"default": {"analyst": {"hang": true}}, "items": {}}"#;
/// How long the test waits for the daemon to create the task.
const TASK_CREATED: Duration = Duration::from_secs(30);

/// Runs `orch` off the async runtime (the daemon under test lives on it).
async fn run_orch(args: Vec<String>, env: Vec<(String, String)>, cwd: &Path) -> Output {
    let cwd = cwd.to_path_buf();
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let env: Vec<(&str, &str)> = env
            .iter()
            .map(|(name, value)| (name.as_str(), value.as_str()))
            .collect();
        orch(&args, &env, &cwd)
    })
    .await
    .expect("orch ran")
}

fn task_args(command: &str, id: &str, config: &Path) -> Vec<String> {
    vec![
        "task".to_owned(),
        command.to_owned(),
        id.to_owned(),
        "--config".to_owned(),
        config.display().to_string(),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn task_commands_go_to_the_running_daemon_with_its_admin_token() {
    let dir = tempfile::tempdir().expect("temp dir");
    let sandbox = Sandbox::new(SandboxSetup {
        dir: dir.path(),
        orch_binary: Path::new(env!("CARGO_BIN_EXE_orch")),
        agent_script: HANGING_ANALYST,
        reconcile_interval_s: 60,
    })
    .await
    .expect("sandbox");
    let listener = TcpListener::bind(("127.0.0.1", 0)).await.expect("bind");
    let addr = listener.local_addr().expect("address");
    let written = std::fs::read_to_string(&sandbox.config_path).expect("config");
    let with_server = written.replace(
        "listen = \"127.0.0.1:0\"",
        &format!("listen = \"{addr}\"\nadmin_token = \"{ADMIN_TOKEN}\""),
    );
    assert_ne!(written, with_server, "the sandbox config has a listen line");
    std::fs::write(&sandbox.config_path, with_server).expect("config");
    let config_path = sandbox.config_path.clone();
    let config = config::load(&config_path, &BTreeMap::new()).expect("config loads");
    let options = DaemonOptions {
        listener: Some(listener),
        ..DaemonOptions::default()
    };
    let daemon = Daemon::start(&config, options)
        .await
        .expect("daemon starts");
    sandbox.point_webhooks_at(&format!("http://{addr}"));

    let (item, work_item) = sandbox.create_item("Add a button").await.expect("item");
    sandbox.move_item(&item, "In Progress").await.expect("move");
    let store = daemon.store();
    let deadline = Instant::now() + TASK_CREATED;
    while sandbox
        .task(store.as_ref(), &item)
        .await
        .expect("store")
        .is_none()
    {
        assert!(Instant::now() < deadline, "no task within {TASK_CREATED:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // A wrong token is refused (exit 2) and named by its setting, never printed.
    let wrong = vec![(
        "ORCH_ADMIN_TOKEN".to_owned(),
        "not-the-daemon-token".to_owned(),
    )];
    let output = run_orch(
        task_args("cancel", &work_item, &config_path),
        wrong,
        dir.path(),
    )
    .await;
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("server.admin_token"), "{stderr}");
    assert!(
        !stderr.contains("not-the-daemon-token") && !stderr.contains(ADMIN_TOKEN),
        "{stderr}"
    );

    // An unknown task is bad usage.
    let output = run_orch(
        task_args("retry", "ET-999", &config_path),
        vec![],
        dir.path(),
    )
    .await;
    assert_eq!(output.status.code(), Some(2), "{}", text(&output.stderr));
    assert!(text(&output.stderr).contains("no task"));

    // The cancel goes through the daemon's loop while the analyst runs.
    let output = run_orch(
        task_args("cancel", &work_item, &config_path),
        vec![],
        dir.path(),
    )
    .await;
    let stdout = text(&output.stdout);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    assert!(
        stdout.starts_with(&format!("{work_item}: done: ")),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!("handled by the running daemon at {addr}")),
        "{stdout}"
    );
    let task = sandbox
        .task(store.as_ref(), &item)
        .await
        .expect("store")
        .expect("task");
    assert_eq!(task.stage, Stage::Cancelled);

    // The store handle holds the database lock too.
    drop(store);
    daemon.shutdown().await;

    // Without a daemon the command runs in-process again.
    let output = run_orch(
        task_args("cancel", &work_item, &config_path),
        vec![],
        dir.path(),
    )
    .await;
    let stdout = text(&output.stdout);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    assert!(
        stdout.starts_with(&format!("{work_item}: nothing to do: "))
            && stdout.contains("the daemon runs the jobs when it starts"),
        "{stdout}"
    );
}
