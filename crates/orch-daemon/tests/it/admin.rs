//! `orch task retry|cancel` while the daemon runs: sent over its admin socket to its serial
//! event loop, with no admin token configured; over TCP the same commands are refused.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Output;
use std::time::{Duration, Instant};

use orch_core::domain::Stage;
use orch_daemon::config;
use orch_daemon::sandbox::{Sandbox, SandboxSetup};
use orch_daemon::wiring::{admin_socket_path, Daemon, DaemonOptions};
use tokio::net::TcpListener;

use crate::{orch, text};

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

/// `POST path` over TCP with no credentials (and a forwarding header, as a same-host proxy
/// would add); the answer's raw text.
fn post_over_tcp(addr: SocketAddr, path: &str) -> String {
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("read timeout");
    let request = format!(
        "POST {path} HTTP/1.1\r\nHost: orch\r\nX-Forwarded-For: 127.0.0.1\r\n\
         Content-Length: 0\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).expect("send");
    let mut answer = String::new();
    stream.read_to_string(&mut answer).expect("answer");
    answer
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
async fn task_commands_reach_the_running_daemon_over_its_socket_without_any_token() {
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
    let with_server = written.replace("listen = \"127.0.0.1:0\"", &format!("listen = \"{addr}\""));
    assert_ne!(written, with_server, "the sandbox config has a listen line");
    assert!(
        !with_server.contains("admin_token"),
        "no admin token is set"
    );
    std::fs::write(&sandbox.config_path, with_server).expect("config");
    let config_path = sandbox.config_path.clone();
    let config = config::load(&config_path, &BTreeMap::new()).expect("config loads");
    let socket = admin_socket_path(&config.storage.db_path);
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

    // The socket is the daemon user's alone.
    let mode = std::fs::symlink_metadata(&socket)
        .expect("the daemon made its admin socket")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "{}", socket.display());

    // Over TCP, from this very machine and without a token, the command is refused.
    let path = format!("/api/tasks/{work_item}/cancel");
    let refused = tokio::task::spawn_blocking(move || post_over_tcp(addr, &path))
        .await
        .expect("request ran");
    assert!(refused.starts_with("HTTP/1.1 403"), "{refused}");

    // An unknown task is bad usage.
    let output = run_orch(
        task_args("retry", "ET-999", &config_path),
        vec![],
        dir.path(),
    )
    .await;
    assert_eq!(output.status.code(), Some(2), "{}", text(&output.stderr));
    assert!(text(&output.stderr).contains("no task"));

    // A retry goes through the daemon's loop too (whatever it decides about a running agent).
    let output = run_orch(
        task_args("retry", &work_item, &config_path),
        vec![],
        dir.path(),
    )
    .await;
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    assert!(
        text(&output.stdout).contains("handled by the running daemon"),
        "{}",
        text(&output.stdout)
    );

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
    assert!(stdout.contains("handled by the running daemon"), "{stdout}");
    let task = sandbox
        .task(store.as_ref(), &item)
        .await
        .expect("store")
        .expect("task");
    assert_eq!(task.stage, Stage::Cancelled);

    // The store handle holds the database lock too.
    drop(store);
    daemon.shutdown().await;
    assert!(!socket.exists(), "the socket is removed on shutdown");

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
