//! `orch check --online` as a child process against the sandbox's simulators: exit codes and lines.

use std::path::{Path, PathBuf};
use std::process::Output;

use orch_daemon::sandbox::{Sandbox, SandboxSetup};

use crate::{orch, text};

async fn check_online(config: PathBuf, cwd: &Path) -> Output {
    let cwd = cwd.to_path_buf();
    tokio::task::spawn_blocking(move || {
        let config = config.display().to_string();
        orch(
            &["check", "--online", "--no-probe", "--config", &config],
            &[],
            &cwd,
        )
    })
    .await
    .expect("orch ran")
}

async fn sandbox(dir: &Path) -> Sandbox {
    Sandbox::new(SandboxSetup {
        dir,
        orch_binary: Path::new(env!("CARGO_BIN_EXE_orch")),
        agent_script: "{}",
        reconcile_interval_s: 60,
    })
    .await
    .expect("sandbox")
}

/// The sandbox's config with `from` replaced by `to`, written next to it.
fn variant(sandbox: &Sandbox, name: &str, from: &str, to: &str) -> PathBuf {
    let written = std::fs::read_to_string(&sandbox.config_path).expect("config");
    assert!(written.contains(from), "the sandbox config has {from}");
    let path = sandbox.dir.join(name);
    std::fs::write(&path, written.replace(from, to)).expect("write");
    path
}

fn online_lines(stderr: &str) -> Vec<&str> {
    stderr
        .lines()
        .filter(|line| line.starts_with("online: "))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_online_prints_an_ok_line_per_system_and_exits_0() {
    let dir = tempfile::tempdir().expect("temp dir");
    let sandbox = sandbox(dir.path()).await;
    let output = check_online(sandbox.config_path.clone(), dir.path()).await;
    let stdout = text(&output.stdout);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    let starts: Vec<&str> = stdout
        .lines()
        .map(|line| line.split(':').next().unwrap_or(line))
        .collect();
    assert_eq!(
        starts,
        ["config ok", "plane ok", "gitea ok", "telegram ok"],
        "{stdout}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_online_exits_2_for_a_wrong_setting_and_1_for_an_unreachable_system() {
    let dir = tempfile::tempdir().expect("temp dir");
    let sandbox = sandbox(dir.path()).await;

    let wrong_state = variant(
        &sandbox,
        "wrong-state.toml",
        "approved = \"Approved\"",
        "approved = \"Aproved\"",
    );
    let output = check_online(wrong_state, dir.path()).await;
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    let lines = online_lines(&stderr);
    assert_eq!(lines.len(), 1, "{stderr}");
    assert!(
        lines[0].starts_with("online: projects[0].states.approved: ")
            && lines[0].contains("demo")
            && lines[0].contains("\"Aproved\""),
        "{stderr}"
    );

    let listener = std::net::TcpListener::bind(("127.0.0.1", 0)).expect("bind");
    let closed = format!("http://{}", listener.local_addr().expect("address"));
    drop(listener);
    let telegram_down = variant(
        &sandbox,
        "telegram-down.toml",
        &format!("api_base = {:?}", sandbox.telegram.api_base()),
        &format!("api_base = {closed:?}"),
    );
    let output = check_online(telegram_down, dir.path()).await;
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    let lines = online_lines(&stderr);
    assert_eq!(lines.len(), 1, "{stderr}");
    assert!(
        lines[0].starts_with("online: telegram.api_base: "),
        "{stderr}"
    );
    assert!(
        !stderr.contains(orch_daemon::sandbox::TELEGRAM_TOKEN),
        "{stderr}"
    );
    assert!(
        text(&output.stdout).contains("plane ok") && text(&output.stdout).contains("gitea ok"),
        "the other systems still pass"
    );
}
