//! The scripted agent binary, run as orch runs it: each scripted behaviour works.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const AGENT_BIN: &str = env!("CARGO_BIN_EXE_orch-scripted-agent");
/// How long a run that should finish promptly may take.
const RUN_DEADLINE: Duration = Duration::from_secs(20);

/// A repository with one commit on `main`, a worktree per work item, output dirs and a script.
struct Setup {
    dir: tempfile::TempDir,
}

/// What one finished run left.
#[derive(Debug)]
struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Setup {
    fn new(script: &str) -> Setup {
        let dir = tempfile::tempdir().expect("temp dir");
        let repo = dir.path().join("repo");
        std::fs::create_dir_all(&repo).expect("repo dir");
        git(&repo, &["init", "--quiet"]);
        std::fs::write(repo.join("README.md"), "demo\n").expect("readme");
        std::fs::write(repo.join("shared.md"), "nobody was here\n").expect("shared file");
        git(&repo, &["add", "."]);
        git(&repo, &["commit", "--quiet", "-m", "initial"]);
        std::fs::write(dir.path().join("script.json"), script).expect("script");
        Setup { dir }
    }

    fn repo(&self) -> PathBuf {
        self.dir.path().join("repo")
    }

    /// The worktree of `task` on branch `feature/{task}`, created on first use.
    fn worktree(&self, task: &str) -> PathBuf {
        let path = self.dir.path().join("worktrees").join(task);
        if !path.exists() {
            let branch = format!("feature/{task}");
            git(
                &self.repo(),
                &[
                    "worktree",
                    "add",
                    "--quiet",
                    "-b",
                    &branch,
                    path.to_str().expect("utf-8"),
                    "main",
                ],
            );
        }
        path
    }

    fn output_dir(&self, task: &str, agent: &str) -> PathBuf {
        let path = self.dir.path().join("outputs").join(task).join(agent);
        std::fs::create_dir_all(&path).expect("output dir");
        path
    }

    fn script_path(&self) -> PathBuf {
        self.dir.path().join("script.json")
    }

    /// The agent command with the contract's environment, built from nothing.
    fn command(&self, agent: &str, task: &str, extra: &[(&str, &str)]) -> Command {
        let worktree = self.worktree(task);
        let mut command = Command::new(AGENT_BIN);
        command
            .current_dir(&worktree)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("ORCH_AGENT", agent)
            .env("ORCH_TASK", task)
            .env("ORCH_ATTEMPT", "1")
            .env("ORCH_TITLE", "Demo item")
            .env("ORCH_WORKTREE", &worktree)
            .env("ORCH_OUTPUT_DIR", self.output_dir(task, agent))
            .env("SIM_AGENT_SCRIPT", self.script_path())
            .env("SIM_AGENT_STATE_DIR", self.dir.path().join("state"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (name, value) in extra {
            command.env(name, value);
        }
        command
    }

    fn run(&self, agent: &str, task: &str) -> Run {
        self.run_with(agent, task, &[])
    }

    fn run_with(&self, agent: &str, task: &str, extra: &[(&str, &str)]) -> Run {
        let child = spawn_with_prompt(self.command(agent, task, extra));
        wait(child)
    }
}

fn spawn_with_prompt(mut command: Command) -> Child {
    let mut child = command.spawn().expect("spawn the scripted agent");
    let mut stdin = child.stdin.take().expect("stdin");
    stdin
        .write_all(b"You are the agent. Do the work.\n")
        .expect("write the prompt");
    drop(stdin);
    child
}

fn wait(mut child: Child) -> Run {
    let started = Instant::now();
    loop {
        if child.try_wait().expect("try_wait").is_some() {
            break;
        }
        if started.elapsed() > RUN_DEADLINE {
            let _ = child.kill();
            panic!("the scripted agent did not finish within {RUN_DEADLINE:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let output = child.wait_with_output().expect("output");
    Run {
        code: output.status.code(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

fn git(cwd: &Path, args: &[&str]) -> String {
    let output = git_output(cwd, args);
    assert!(
        output.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

fn git_output(cwd: &Path, args: &[&str]) -> std::process::Output {
    Command::new("git")
        .args([
            "-c",
            "init.defaultBranch=main",
            "-c",
            "commit.gpgsign=false",
        ])
        .args(args)
        .current_dir(cwd)
        .env("GIT_AUTHOR_NAME", "test")
        .env("GIT_AUTHOR_EMAIL", "test@localhost")
        .env("GIT_COMMITTER_NAME", "test")
        .env("GIT_COMMITTER_EMAIL", "test@localhost")
        .output()
        .expect("run git")
}

fn commits_ahead(worktree: &Path) -> u32 {
    git(worktree, &["rev-list", "--count", "main..HEAD"])
        .parse()
        .expect("count")
}

fn head_has(worktree: &Path, path: &str) -> bool {
    git_output(worktree, &["cat-file", "-e", &format!("HEAD:{path}")])
        .status
        .success()
}

#[test]
fn analyst_writes_analysis_md_with_the_feedback() {
    let setup = Setup::new("{}");
    let feedback = setup.dir.path().join("feedback.md");
    std::fs::write(&feedback, "Please also cover the edge case.\n").expect("feedback");
    let run = setup.run_with(
        "analyst",
        "ET-001",
        &[("ORCH_FEEDBACK_FILE", feedback.to_str().expect("utf-8"))],
    );
    assert_eq!(run.code, Some(0), "{run:?}");
    assert!(run.stdout.contains("prompt 32 bytes"), "{run:?}");
    let analysis =
        std::fs::read_to_string(setup.output_dir("ET-001", "analyst").join("analysis.md"))
            .expect("analysis");
    assert!(analysis.starts_with("# Analysis of ET-001"), "{analysis}");
    assert!(
        analysis.contains("Please also cover the edge case."),
        "{analysis}"
    );
    assert_eq!(commits_ahead(&setup.worktree("ET-001")), 0);
}

#[test]
fn developer_commits_a_change_to_a_file_of_its_own() {
    let setup = Setup::new("{}");
    let first = setup.run("developer", "ET-001");
    assert_eq!(first.code, Some(0), "{first:?}");
    let second = setup.run("developer", "ET-002");
    assert_eq!(second.code, Some(0), "{second:?}");

    for task in ["ET-001", "ET-002"] {
        let worktree = setup.worktree(task);
        assert_eq!(commits_ahead(&worktree), 1);
        assert_eq!(git(&worktree, &["status", "--porcelain"]), "");
        assert_eq!(
            git(&worktree, &["diff", "--name-only", "main..HEAD"]),
            format!("work/{task}.md")
        );
        assert_eq!(
            git(&worktree, &["log", "-1", "--format=%an"]),
            "scripted agent"
        );
    }
    // A later run (a fix round) changes the file again.
    assert_eq!(setup.run("developer", "ET-001").code, Some(0));
    assert_eq!(commits_ahead(&setup.worktree("ET-001")), 2);
}

#[test]
fn developer_can_leave_its_change_uncommitted() {
    let setup =
        Setup::new(r#"{ "items": { "ET-003": { "developer": { "leave_uncommitted": true } } } }"#);
    let run = setup.run("developer", "ET-003");
    assert_eq!(run.code, Some(0), "{run:?}");
    let worktree = setup.worktree("ET-003");
    assert_eq!(commits_ahead(&worktree), 0);
    assert_eq!(
        git(
            &worktree,
            &["status", "--porcelain", "--untracked-files=all"]
        ),
        "?? work/ET-003.md"
    );
}

#[test]
fn developer_can_change_nothing() {
    let setup = Setup::new(r#"{ "default": { "developer": { "no_changes": true } } }"#);
    assert_eq!(setup.run("developer", "ET-004").code, Some(0));
    let worktree = setup.worktree("ET-004");
    assert_eq!(commits_ahead(&worktree), 0);
    assert_eq!(git(&worktree, &["status", "--porcelain"]), "");
}

#[test]
fn ci_fail_is_committed_on_the_first_run_and_removed_on_the_next() {
    let setup = Setup::new(r#"{ "items": { "ET-005": { "developer": { "ci_fail_times": 1 } } } }"#);
    let worktree = setup.worktree("ET-005");
    assert_eq!(setup.run("developer", "ET-005").code, Some(0));
    assert!(head_has(&worktree, "CI_FAIL"));
    assert_eq!(setup.run("developer", "ET-005").code, Some(0));
    assert!(!head_has(&worktree, "CI_FAIL"));
    assert!(head_has(&worktree, "work/ET-005.md"));
    assert_eq!(git(&worktree, &["status", "--porcelain"]), "");
    // Items without the script never write it.
    assert_eq!(setup.run("developer", "ET-006").code, Some(0));
    assert!(!head_has(&setup.worktree("ET-006"), "CI_FAIL"));
}

#[test]
fn two_items_touching_the_shared_file_conflict_at_merge() {
    let setup = Setup::new(r#"{ "default": { "developer": { "conflict_file": "shared.md" } } }"#);
    assert_eq!(setup.run("developer", "ET-007").code, Some(0));
    assert_eq!(setup.run("developer", "ET-008").code, Some(0));
    let first = setup.worktree("ET-007");
    assert_eq!(
        std::fs::read_to_string(first.join("shared.md")).expect("shared"),
        "ET-007 was here\n"
    );
    let merge = git_output(&first, &["merge", "--no-edit", "feature/ET-008"]);
    assert!(!merge.status.success(), "the merge should conflict");
    assert!(
        String::from_utf8_lossy(&merge.stdout).contains("CONFLICT"),
        "{merge:?}"
    );
}

#[test]
fn a_conflict_file_outside_the_worktree_is_refused() {
    let setup =
        Setup::new(r#"{ "default": { "developer": { "conflict_file": "../escape.md" } } }"#);
    let run = setup.run("developer", "ET-009");
    assert_eq!(run.code, Some(2), "{run:?}");
    assert!(!setup
        .dir
        .path()
        .join("worktrees")
        .join("escape.md")
        .exists());
}

#[test]
fn fail_times_fails_the_first_runs_then_succeeds() {
    let setup = Setup::new(r#"{ "items": { "ET-010": { "analyst": { "fail_times": 2 } } } }"#);
    for attempt in 1..=2 {
        let run = setup.run("analyst", "ET-010");
        assert_eq!(run.code, Some(1), "attempt {attempt}: {run:?}");
        assert!(
            run.stderr
                .contains(&format!("scripted failure {attempt} of 2")),
            "{run:?}"
        );
    }
    assert!(!setup
        .output_dir("ET-010", "analyst")
        .join("analysis.md")
        .exists());
    let run = setup.run("analyst", "ET-010");
    assert_eq!(run.code, Some(0), "{run:?}");
    assert!(setup
        .output_dir("ET-010", "analyst")
        .join("analysis.md")
        .is_file());
    // Other items and roles are unaffected.
    assert_eq!(setup.run("analyst", "ET-011").code, Some(0));
    assert_eq!(setup.run("developer", "ET-010").code, Some(0));
}

#[test]
fn hang_keeps_running_after_its_line_until_killed() {
    let setup = Setup::new(r#"{ "items": { "ET-012": { "developer": { "hang": true } } } }"#);
    let mut child = spawn_with_prompt(setup.command("developer", "ET-012", &[]));
    let stdout = child.stdout.take().expect("stdout");
    let lines: Vec<String> = BufReader::new(stdout)
        .lines()
        .map_while(Result::ok)
        .take_while(|line| line != "hanging")
        .collect();
    assert!(
        lines
            .iter()
            .any(|line| line.contains("scripted developer for ET-012")),
        "{lines:?}"
    );
    assert!(
        child.try_wait().expect("try_wait").is_none(),
        "a hanging agent exited by itself"
    );
    child.kill().expect("kill");
    child.wait().expect("wait");
    assert_eq!(commits_ahead(&setup.worktree("ET-012")), 0);
}

#[test]
fn hang_times_hangs_only_the_first_runs() {
    let setup = Setup::new(r#"{ "items": { "ET-013": { "reviewer": { "hang_times": 1 } } } }"#);
    let mut child = spawn_with_prompt(setup.command("reviewer", "ET-013", &[]));
    let stdout = child.stdout.take().expect("stdout");
    let hung = BufReader::new(stdout)
        .lines()
        .map_while(Result::ok)
        .any(|line| line == "hanging");
    assert!(hung);
    child.kill().expect("kill");
    child.wait().expect("wait");
    let run = setup.run("reviewer", "ET-013");
    assert_eq!(run.code, Some(0), "{run:?}");
    assert!(!run.stdout.contains("hanging"), "{run:?}");
}

#[test]
fn run_for_ms_takes_at_least_that_long_and_shows_progress() {
    let setup = Setup::new(r#"{ "items": { "ET-014": { "analyst": { "run_for_ms": 1100 } } } }"#);
    let started = Instant::now();
    let run = setup.run("analyst", "ET-014");
    assert!(
        started.elapsed() >= Duration::from_millis(1100),
        "took {:?}",
        started.elapsed()
    );
    assert_eq!(run.code, Some(0), "{run:?}");
    assert!(
        run.stdout.lines().filter(|line| *line == "working").count() >= 1,
        "{run:?}"
    );
}

#[test]
fn reviewer_requests_changes_once_then_approves() {
    let setup = Setup::new(
        r#"{ "items": { "ET-015": { "reviewer": { "request_changes_once": true } } } }"#,
    );
    let output_dir = setup.output_dir("ET-015", "reviewer");
    let read = |name: &str| std::fs::read_to_string(output_dir.join(name)).expect("output file");
    assert_eq!(setup.run("reviewer", "ET-015").code, Some(0));
    assert_eq!(read("verdict"), "request_changes\n");
    assert!(read("review.md").contains("Verdict: request_changes"));
    assert_eq!(setup.run("reviewer", "ET-015").code, Some(0));
    assert_eq!(read("verdict"), "approve\n");
    // Unlisted items approve at once.
    assert_eq!(setup.run("reviewer", "ET-016").code, Some(0));
    let verdict = std::fs::read_to_string(setup.output_dir("ET-016", "reviewer").join("verdict"))
        .expect("verdict");
    assert_eq!(verdict, "approve\n");
}

#[test]
fn empty_output_writes_an_empty_report() {
    let setup = Setup::new(
        r#"{ "default": { "analyst": { "empty_output": true }, "reviewer": { "empty_output": true } } }"#,
    );
    assert_eq!(setup.run("analyst", "ET-017").code, Some(0));
    assert_eq!(setup.run("reviewer", "ET-017").code, Some(0));
    let analysis =
        std::fs::read_to_string(setup.output_dir("ET-017", "analyst").join("analysis.md"))
            .expect("analysis");
    assert_eq!(analysis, "");
    let review = std::fs::read_to_string(setup.output_dir("ET-017", "reviewer").join("review.md"))
        .expect("review");
    assert_eq!(review, "");
}

#[test]
fn counters_default_to_a_state_dir_beside_the_script() {
    let setup = Setup::new(r#"{ "items": { "ET-018": { "analyst": { "fail_times": 1 } } } }"#);
    let mut command = setup.command("analyst", "ET-018", &[]);
    command.env_remove("SIM_AGENT_STATE_DIR");
    assert_eq!(wait(spawn_with_prompt(command)).code, Some(1));
    let mut command = setup.command("analyst", "ET-018", &[]);
    command.env_remove("SIM_AGENT_STATE_DIR");
    assert_eq!(wait(spawn_with_prompt(command)).code, Some(0));
    assert!(setup
        .dir
        .path()
        .join("script.json.state")
        .join("ET-018.analyst.runs")
        .is_file());
}

#[test]
fn the_prompt_file_is_read_when_stdin_is_empty() {
    let setup = Setup::new("{}");
    let prompt = setup.dir.path().join("prompt.md");
    std::fs::write(&prompt, "0123456789").expect("prompt");
    let mut command = setup.command(
        "analyst",
        "ET-019",
        &[("ORCH_PROMPT_FILE", prompt.to_str().expect("utf-8"))],
    );
    command.stdin(Stdio::null());
    let run = wait(command.spawn().expect("spawn"));
    assert_eq!(run.code, Some(0), "{run:?}");
    assert!(run.stdout.contains("prompt 10 bytes"), "{run:?}");
}

#[test]
fn a_bad_environment_or_script_exits_with_usage_code() {
    let setup = Setup::new(r#"{ "items": { "ET-020": { "developer": { "fail_tims": 1 } } } }"#);
    let run = setup.run("developer", "ET-020");
    assert_eq!(run.code, Some(2), "{run:?}");
    assert!(run.stderr.contains("parse script"), "{run:?}");

    let setup = Setup::new("{}");
    let run = setup.run("tester", "ET-021");
    assert_eq!(run.code, Some(2), "{run:?}");
    assert!(run.stderr.contains("unknown ORCH_AGENT"), "{run:?}");

    let mut command = setup.command("developer", "ET-022", &[]);
    command.env("ORCH_TASK", "../ET-022");
    let run = wait(spawn_with_prompt(command));
    assert_eq!(run.code, Some(2), "{run:?}");
    assert!(run.stderr.contains("is not a work item id"), "{run:?}");

    let mut command = setup.command("developer", "ET-023", &[]);
    command.env_remove("ORCH_OUTPUT_DIR");
    let run = wait(spawn_with_prompt(command));
    assert_eq!(run.code, Some(2), "{run:?}");
    assert!(run.stderr.contains("ORCH_OUTPUT_DIR is not set"), "{run:?}");
}

#[test]
fn rebase_feedback_makes_the_developer_catch_up_with_a_conflicting_base() {
    let setup = Setup::new(r#"{ "default": { "developer": { "conflict_file": "shared.md" } } }"#);
    assert_eq!(setup.run("developer", "ET-030").code, Some(0));
    assert_eq!(setup.run("developer", "ET-031").code, Some(0));
    // ET-031 is merged first; orch's fetch would bring the new base as origin/main.
    let repo = setup.repo();
    git(&repo, &["merge", "--quiet", "--no-edit", "feature/ET-031"]);
    let base = git(&repo, &["rev-parse", "main"]);
    git(&repo, &["update-ref", "refs/remotes/origin/main", &base]);

    let feedback = setup.dir.path().join("feedback.md");
    std::fs::write(&feedback, "The merge conflicts: rebase onto main.\n").expect("feedback");
    let run = setup.run_with(
        "developer",
        "ET-030",
        &[
            ("ORCH_FEEDBACK_FILE", feedback.to_str().expect("utf-8")),
            ("ORCH_BASE_BRANCH", "main"),
        ],
    );
    assert_eq!(run.code, Some(0), "{run:?}");
    let worktree = setup.worktree("ET-030");
    assert!(
        git_output(&worktree, &["merge-base", "--is-ancestor", &base, "HEAD"])
            .status
            .success()
    );
    assert_eq!(git(&worktree, &["status", "--porcelain"]), "");
    // The pull request now merges cleanly.
    let merge = git_output(&repo, &["merge", "--no-edit", "feature/ET-030"]);
    assert!(merge.status.success(), "{merge:?}");
}
