//! `orch status`, `orch task show` and `orch task logs` read the database only: they work
//! with a config whose secret files are missing or unreadable, or with `--db` alone.

use std::path::{Path, PathBuf};

use orch_core::domain::{Action, Agent, JobSpec, NewTask, Stage};
use orch_core::ids::{BranchName, IssueId, JobId, ProjectId, RepoSlug, WorkItemId};
use orch_core::ports::Store;
use orch_core::time::Timestamp;
use orch_sqlite::SqliteStore;

use crate::{orch, text, write_prompts};

/// A config whose every secret is in a file, and no file is there (the Telegram one is a
/// directory, which cannot be read as a file).
fn config_without_secrets(dir: &Path) -> PathBuf {
    let data = dir.join("data");
    std::fs::create_dir_all(dir.join("secrets/telegram.bot_token")).expect("unreadable secret");
    write_prompts(dir);
    let text = format!(
        r#"
[storage]
db_path = "{data}/orch.db"

[workspace]
repos_dir = "{data}/repos"

[plane]
base_url = "https://plane.test"
workspace_slug = "acme"
api_token_file = "secrets/plane.api_token"
webhook_secrets_file = "secrets/plane.webhook_secrets"

[gitea]
base_url = "https://gitea.test"
token_file = "secrets/gitea.token"
webhook_secrets_file = "secrets/gitea.webhook_secrets"

[telegram]
chat_id = "42"
bot_token_file = "secrets/telegram.bot_token"

[reconcile]
interval_s = 77

[[projects]]
key = "widgets"
plane_project_id = "p1"
repo = "acme/widgets"
work_item_prefix = "ET"
"#,
        data = data.display(),
    );
    let path = dir.join("orch.toml");
    std::fs::write(&path, text).expect("config");
    path
}

/// Writes task ET-007 in analysis, with its analyst job and what the analyst logged.
async fn database_with_a_task(dir: &Path) -> PathBuf {
    let data = dir.join("data");
    std::fs::create_dir_all(&data).expect("data dir");
    let db_path = data.join("orch.db");
    let store = SqliteStore::open(&db_path).expect("database");
    let work_item = WorkItemId::new("ET", 7).expect("valid work item");
    let new = NewTask {
        issue: IssueId::new("issue-7").expect("valid issue"),
        project: ProjectId::new("p1").expect("valid project"),
        branch: BranchName::for_work_item(&work_item, "Readable logs"),
        work_item: work_item.clone(),
        title: "Readable logs".to_owned(),
        description: "Show them.".to_owned(),
        repo: RepoSlug::new("acme/widgets").expect("valid repo"),
        base_branch: BranchName::new("main").expect("valid branch"),
        stage: Stage::Analysis,
        tracker_state: None,
        tracker_seen_at: None,
    };
    let analyst = JobSpec {
        action: Action::RunAgent {
            agent: Agent::Analyst,
            feedback: None,
        },
        key: None,
        not_before: None,
    };
    let created = store
        .create_task(new, vec![analyst], Timestamp::from_millis(1_000))
        .await
        .expect("task");
    let job: JobId = store.jobs_of_task(created.task.id).await.expect("jobs")[0].id;
    let log = orch_agent::log_file(&data.join("logs"), &work_item, job, Agent::Analyst);
    std::fs::create_dir_all(log.parent().expect("parent")).expect("log dir");
    std::fs::write(&log, "reading the code\n\x1b[2Jstill here\n").expect("log");
    db_path
}

fn run(args: &[&str], dir: &Path) -> (Option<i32>, String, String) {
    let output = orch(args, &[], dir);
    (
        output.status.code(),
        text(&output.stdout),
        text(&output.stderr),
    )
}

#[tokio::test]
async fn reading_commands_work_with_the_secret_files_missing() {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = config_without_secrets(dir.path());
    database_with_a_task(dir.path()).await;
    let config = config.to_str().expect("utf-8 path");

    // The same config is refused where secrets are needed.
    let (code, _, stderr) = run(&["check", "--no-probe", "--config", config], dir.path());
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("plane.api_token_file"), "{stderr}");

    let (code, stdout, stderr) = run(&["status", "--config", config], dir.path());
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stdout.starts_with("tasks: analysis 1\n"), "{stdout}");

    let (code, stdout, stderr) = run(&["status", "--json", "--config", config], dir.path());
    assert_eq!(code, Some(0), "{stderr}");
    let json: serde_json::Value = serde_json::from_str(&stdout).expect("json");
    assert_eq!(json["reconcile"]["interval_s"], 77, "{stdout}");

    let (code, stdout, stderr) = run(&["task", "show", "ET-007", "--config", config], dir.path());
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        stdout.starts_with("ET-007 Readable logs (acme/widgets)\n"),
        "{stdout}"
    );

    let (code, stdout, stderr) = run(&["task", "logs", "ET-007", "--config", config], dir.path());
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(
        stdout,
        "==> #1 analyst (queued, attempt 0) <==\nreading the code\n\u{fffd}[2Jstill here\n"
    );
}

#[tokio::test]
async fn reading_commands_work_with_the_database_alone() {
    let dir = tempfile::tempdir().expect("temp dir");
    let db_path = database_with_a_task(dir.path()).await;
    let db = db_path.to_str().expect("utf-8 path");

    let (code, stdout, stderr) = run(&["status", "--json", "--db", db], dir.path());
    assert_eq!(code, Some(0), "{stderr}");
    let json: serde_json::Value = serde_json::from_str(&stdout).expect("json");
    assert_eq!(json["tasks"]["by_stage"]["analysis"], 1, "{stdout}");
    assert!(json["reconcile"]["interval_s"].is_null(), "{stdout}");

    let (code, stdout, stderr) = run(&["task", "show", "1", "--db", db], dir.path());
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stdout.contains("history:"), "{stdout}");

    let (code, stdout, stderr) = run(&["task", "logs", "ET-007", "--db", db], dir.path());
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stdout.contains("reading the code\n"), "{stdout}");

    let (code, _, stderr) = run(&["task", "logs", "ET-999", "--db", db], dir.path());
    assert_eq!(code, Some(2));
    assert!(stderr.starts_with("task: no task \"ET-999\""), "{stderr}");

    let missing = dir.path().join("nowhere.db");
    let (code, _, stderr) = run(
        &["status", "--db", missing.to_str().expect("utf-8")],
        dir.path(),
    );
    assert_eq!(code, Some(2));
    assert!(stderr.starts_with("no database at "), "{stderr}");
    assert!(!missing.exists(), "reading never creates a database");

    let (code, _, stderr) = run(&["status", "--db", db, "--config", "orch.toml"], dir.path());
    assert_eq!(
        code,
        Some(2),
        "--db and --config together are refused: {stderr}"
    );
}
