//! Tests of `orch task logs`: headers, growth, the end of `--follow` and escaping.

use std::path::Path;

use orch_core::domain::{Action, Agent, JobSpec, NewTask, Stage, Task};
use orch_core::fakes::store::MemStore;
use orch_core::ids::{BranchName, IssueId, ProjectId, RepoSlug, WorkItemId};
use orch_core::ports::{Store, Transition};
use orch_core::time::Timestamp;

use crate::task_logs::{printable, TaskLogs};

fn agent_job(agent: Agent) -> JobSpec {
    JobSpec {
        action: Action::RunAgent {
            agent,
            feedback: None,
        },
        key: None,
        not_before: None,
    }
}

async fn task_with_analyst(store: &MemStore) -> Task {
    let work_item = WorkItemId::new("ET", 7).expect("valid work item");
    let new = NewTask {
        issue: IssueId::new("issue-7").expect("valid issue"),
        project: ProjectId::new("project-1").expect("valid project"),
        branch: BranchName::for_work_item(&work_item, "Logs"),
        work_item,
        title: "Logs".to_owned(),
        description: "Show them.".to_owned(),
        repo: RepoSlug::new("acme/app").expect("valid repo"),
        base_branch: BranchName::new("main").expect("valid branch"),
        stage: Stage::Analysis,
        tracker_state: None,
        tracker_seen_at: None,
    };
    store
        .create_task(
            new,
            vec![agent_job(Agent::Analyst)],
            Timestamp::from_millis(1_000),
        )
        .await
        .expect("created")
        .task
}

fn append(logs: &Path, task: &Task, job: i64, agent: Agent, text: &[u8]) {
    use std::io::Write as _;
    let path = orch_agent::log_file(logs, &task.work_item, orch_core::ids::JobId(job), agent);
    std::fs::create_dir_all(path.parent().expect("has a parent")).expect("log dir");
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .expect("log opens")
        .write_all(text)
        .expect("log written");
}

async fn next(logs: &mut TaskLogs, store: &MemStore) -> (String, bool) {
    let mut out = Vec::new();
    let more = logs.write_new(store, &mut out).await.expect("logs shown");
    (String::from_utf8(out).expect("utf-8 output"), more)
}

#[tokio::test]
async fn logs_appear_with_a_header_then_only_what_is_new_until_the_task_ends() {
    let store = MemStore::new();
    let dir = tempfile::tempdir().expect("temp dir");
    let task = task_with_analyst(&store).await;
    let job = store.jobs_of_task(task.id).await.expect("jobs")[0].id;
    let mut logs = TaskLogs::new(dir.path().to_path_buf(), task.clone());

    assert_eq!(next(&mut logs, &store).await, (String::new(), true));
    assert!(logs.nothing_found());

    append(
        dir.path(),
        &task,
        job.0,
        Agent::Analyst,
        b"reading the code\n",
    );
    let (text, more) = next(&mut logs, &store).await;
    assert_eq!(
        text,
        format!("==> #{job} analyst (queued, attempt 0) <==\nreading the code\n")
    );
    assert!(more);
    assert!(!logs.nothing_found());

    append(
        dir.path(),
        &task,
        job.0,
        Agent::Analyst,
        b"writing analysis.md\n",
    );
    assert_eq!(
        next(&mut logs, &store).await,
        ("writing analysis.md\n".to_owned(), true)
    );

    let mut done = task.clone();
    done.stage = Stage::Done;
    store
        .transition(Transition {
            next: done,
            jobs: Vec::new(),
            cancel_active_work: true,
            consumes_job: None,
            note: "merged".to_owned(),
            now: Timestamp::from_millis(2_000),
        })
        .await
        .expect("moved");
    assert_eq!(
        next(&mut logs, &store).await,
        (String::new(), false),
        "an ended task with no running agent has no more to show"
    );
}

#[tokio::test]
async fn follow_returns_once_the_task_has_ended() {
    let store = MemStore::new();
    let dir = tempfile::tempdir().expect("temp dir");
    let task = task_with_analyst(&store).await;
    let job = store.jobs_of_task(task.id).await.expect("jobs")[0].id;
    append(dir.path(), &task, job.0, Agent::Analyst, b"all done\n");
    let mut cancelled = task.clone();
    cancelled.stage = Stage::Cancelled;
    store
        .transition(Transition {
            next: cancelled,
            jobs: Vec::new(),
            cancel_active_work: true,
            consumes_job: None,
            note: "cancelled".to_owned(),
            now: Timestamp::from_millis(2_000),
        })
        .await
        .expect("moved");
    let mut logs = TaskLogs::new(dir.path().to_path_buf(), task);
    let mut out = Vec::new();
    tokio::time::timeout(
        std::time::Duration::from_secs(10),
        logs.follow(&store, &mut out),
    )
    .await
    .expect("follow ends")
    .expect("logs shown");
    let text = String::from_utf8(out).expect("utf-8");
    assert!(
        text.starts_with(&format!("==> #{job} analyst (cancelled")) && text.ends_with("all done\n"),
        "{text}"
    );
}

#[tokio::test]
async fn an_unreadable_log_is_an_error_naming_the_file() {
    let store = MemStore::new();
    let dir = tempfile::tempdir().expect("temp dir");
    let task = task_with_analyst(&store).await;
    let job = store.jobs_of_task(task.id).await.expect("jobs")[0].id;
    // A directory where the log file should be cannot be read as a file.
    let path = orch_agent::log_file(dir.path(), &task.work_item, job, Agent::Analyst);
    std::fs::create_dir_all(&path).expect("dir in the way");
    let mut logs = TaskLogs::new(dir.path().to_path_buf(), task);
    let err = logs
        .write_new(&store, &mut Vec::new())
        .await
        .expect_err("a directory is no log");
    assert!(
        err.to_string().starts_with("cannot read the agent log ")
            && err.to_string().contains(&path.display().to_string()),
        "{err}"
    );
}

#[test]
fn control_characters_and_bad_utf8_never_reach_the_terminal() {
    let check = |bytes: &[u8], growing: bool, expected: &str, used: usize| {
        assert_eq!(
            printable(bytes, growing),
            (expected.to_owned(), used),
            "{bytes:?}"
        );
    };
    check(b"plain\ttext\n", false, "plain\ttext\n", 11);
    check(
        b"\x1b]0;pwned\x07\x1b[2Jhidden\rshown\x7f",
        false,
        "\u{fffd}]0;pwned\u{fffd}\u{fffd}[2Jhidden\u{fffd}shown\u{fffd}",
        27,
    );
    check("c\u{9b}31m".as_bytes(), false, "c\u{fffd}31m", 6);
    check(b"bad \xff byte", false, "bad \u{fffd} byte", 10);
    // "é" is 0xC3 0xA9: cut after its first byte.
    check(b"caf\xc3", true, "caf", 3);
    check(b"caf\xc3", false, "caf\u{fffd}", 4);
}
