//! Tests of `GitWorkspace` with the real git CLI and a local bare repository as the remote.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use orch_core::domain::Agent;
use orch_core::ids::{BranchName, RepoSlug, WorkItemId};
use orch_core::ports::{ErrorClass, Workspace, WorkspaceError, WorktreeSpec};

use crate::command::Invocation;
use crate::error::GitError;
use crate::{paths, GitConfig, GitWorkspace};

const TOKEN: &str = "tok-5ecret-0123456789";
/// How long a test waits for a git process that should fail fast on its deadline.
const DEADLINE_SLACK: Duration = Duration::from_secs(20);

/// A temp directory with a remote `acme/widgets` (branch `main` with one commit) and a workspace.
struct Fixture {
    dir: tempfile::TempDir,
    workspace: GitWorkspace,
    recorder: Arc<Mutex<Vec<Invocation>>>,
}

impl Fixture {
    fn new() -> Fixture {
        Fixture::with_remote_base(None, Duration::from_secs(30))
    }

    /// `remote_base` `None` means the local remotes directory.
    fn with_remote_base(remote_base: Option<String>, timeout: Duration) -> Fixture {
        Fixture::build(remote_base, timeout, None)
    }

    /// A workspace that keeps its mirror warm (`GitConfig::warm`).
    fn warm(max_age: Duration) -> Fixture {
        Fixture::build(None, Duration::from_secs(30), Some(max_age))
    }

    fn build(remote_base: Option<String>, timeout: Duration, warm: Option<Duration>) -> Fixture {
        captured_logs();
        let dir = tempfile::tempdir().expect("temp dir");
        let remotes = dir.path().join("remotes");
        let remote = remotes.join("acme").join("widgets.git");
        std::fs::create_dir_all(&remote).expect("create remote dir");
        sh(&remote, &["init", "--bare", "--quiet"]);
        let seed = dir.path().join("seed");
        std::fs::create_dir_all(&seed).expect("create seed dir");
        sh(&seed, &["init", "--quiet"]);
        std::fs::write(seed.join("README.md"), "widgets\n").expect("write readme");
        sh(&seed, &["add", "README.md"]);
        sh(&seed, &["commit", "--quiet", "-m", "initial"]);
        sh(
            &seed,
            &[
                "push",
                "--quiet",
                remote.to_str().expect("utf-8 path"),
                "HEAD:refs/heads/main",
            ],
        );
        let mut config = GitConfig::new(
            dir.path().join("repos"),
            remote_base.unwrap_or_else(|| remotes.display().to_string()),
        );
        config.token = Some(TOKEN.to_owned());
        config.command_timeout = timeout;
        config.warm = warm;
        let mut workspace = GitWorkspace::new(config).expect("workspace");
        let recorder = Arc::new(Mutex::new(Vec::new()));
        workspace.git.record_into(recorder.clone());
        Fixture {
            dir,
            workspace,
            recorder,
        }
    }

    fn remote(&self) -> PathBuf {
        self.dir
            .path()
            .join("remotes")
            .join("acme")
            .join("widgets.git")
    }

    fn repos(&self) -> PathBuf {
        self.workspace.repos_dir().to_path_buf()
    }

    fn invocations(&self) -> Vec<Invocation> {
        self.recorder.lock().expect("recorder").clone()
    }
}

fn spec(work_item: &str) -> WorktreeSpec {
    let work_item = WorkItemId::parse(work_item).expect("work item");
    WorktreeSpec {
        repo: RepoSlug::new("acme/widgets").expect("repo"),
        base_branch: BranchName::new("main").expect("base"),
        branch: BranchName::for_work_item(&work_item, "Add a thing"),
        work_item,
    }
}

/// Runs git for a test's own setup and checks; returns trimmed stdout.
fn sh(cwd: &Path, args: &[&str]) -> String {
    let output = Command::new("git")
        .args(args)
        .current_dir(cwd)
        .env("GIT_AUTHOR_NAME", "test")
        .env("GIT_AUTHOR_EMAIL", "test@localhost")
        .env("GIT_COMMITTER_NAME", "test")
        .env("GIT_COMMITTER_EMAIL", "test@localhost")
        .env("GIT_CONFIG_COUNT", "1")
        .env("GIT_CONFIG_KEY_0", "init.defaultBranch")
        .env("GIT_CONFIG_VALUE_0", "main")
        .output()
        .expect("run git");
    assert!(
        output.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

fn is_empty_dir(path: &Path) -> bool {
    std::fs::read_dir(path)
        .map(|mut entries| entries.next().is_none())
        .unwrap_or(false)
}

#[tokio::test]
async fn prepare_creates_the_layout_and_is_idempotent() {
    let fixture = Fixture::new();
    let spec = spec("ET-001");

    let first = fixture
        .workspace
        .prepare(&spec, Agent::Developer)
        .await
        .expect("first prepare");
    let repo_dir = fixture.repos().join("acme").join("widgets");
    assert_eq!(first.path, repo_dir.join("worktrees").join("ET-001"));
    assert_eq!(
        first.output_dir,
        first.path.join(".orch-output").join("developer")
    );
    assert!(first.output_dir.is_dir());
    assert_eq!(first.analysis_file, None);
    assert!(repo_dir.join("mirror.git").join("HEAD").is_file());
    assert!(first.path.join("README.md").is_file());
    assert_eq!(
        sh(&first.path, &["symbolic-ref", "--short", "HEAD"]),
        "feature/ET-001-add-a-thing"
    );
    assert!(is_empty_dir(&first.output_dir));

    // Work in progress survives a second prepare; the agent's output directory is emptied.
    std::fs::write(first.path.join("draft.txt"), "wip\n").expect("write draft");
    std::fs::write(first.output_dir.join("stale.md"), "old\n").expect("write stale output");
    let second = fixture
        .workspace
        .prepare(&spec, Agent::Developer)
        .await
        .expect("second prepare");
    assert_eq!(second, first);
    assert!(second.path.join("draft.txt").is_file());
    assert!(is_empty_dir(&second.output_dir));
    let mirror = repo_dir.join("mirror.git");
    assert_eq!(
        sh(&mirror, &["worktree", "list", "--porcelain"])
            .matches("worktree ")
            .count(),
        2
    );
}

#[tokio::test]
async fn mirror_fetches_heads_as_remote_tracking_refs_only() {
    let fixture = Fixture::new();
    let prepared = fixture
        .workspace
        .prepare(&spec("ET-001"), Agent::Analyst)
        .await
        .expect("prepare");
    let mirror = prepared
        .path
        .parent()
        .and_then(Path::parent)
        .expect("repo dir")
        .join("mirror.git");
    assert_eq!(
        sh(&mirror, &["config", "--get-all", "remote.origin.fetch"]),
        "+refs/heads/*:refs/remotes/origin/*"
    );
    assert!(
        !sh(&mirror, &["config", "--list"]).contains("remote.origin.mirror"),
        "not a --mirror clone"
    );
}

#[tokio::test]
async fn prepare_reports_the_analysis_and_read_output_returns_it() {
    let fixture = Fixture::new();
    let spec = spec("ET-002");
    let analyst = fixture
        .workspace
        .prepare(&spec, Agent::Analyst)
        .await
        .expect("prepare analyst");
    assert_eq!(
        fixture
            .workspace
            .read_output(&spec, Agent::Analyst, "analysis.md")
            .await
            .expect("read"),
        None
    );
    std::fs::write(analyst.output_dir.join("analysis.md"), "# plan\n").expect("write analysis");

    let developer = fixture
        .workspace
        .prepare(&spec, Agent::Developer)
        .await
        .expect("prepare developer");
    let kept = fixture
        .repos()
        .join("acme/widgets/outputs/ET-002/analyst/analysis.md");
    assert_eq!(developer.analysis_file, Some(kept.clone()));
    assert_eq!(std::fs::read_to_string(&kept).expect("kept"), "# plan\n");
    // The developer can write the analyst's directory in the worktree: orch keeps reading
    // what it read first, until the analyst runs again.
    std::fs::write(analyst.output_dir.join("analysis.md"), "# changed\n").expect("tamper");
    let text = fixture
        .workspace
        .read_output(&spec, Agent::Analyst, "analysis.md")
        .await
        .expect("read");
    assert_eq!(text.as_deref(), Some("# plan\n"));
    fixture
        .workspace
        .prepare(&spec, Agent::Analyst)
        .await
        .expect("prepare analyst again");
    assert!(
        !kept.exists(),
        "a new analyst run forgets the kept analysis"
    );
    assert_eq!(
        std::fs::read_dir(&analyst.output_dir).expect("dir").count(),
        0,
        "and starts with an empty output directory"
    );
}

#[tokio::test]
async fn the_output_directory_is_in_the_worktree_and_never_committed() {
    let fixture = Fixture::new();
    let spec = spec("ET-012");
    let developer = fixture
        .workspace
        .prepare(&spec, Agent::Developer)
        .await
        .expect("prepare");
    assert!(developer.output_dir.starts_with(&developer.path));
    std::fs::write(developer.output_dir.join("notes.md"), "scratch\n").expect("output");
    std::fs::write(developer.path.join("feature.txt"), "work\n").expect("work");
    // The developer commits everything it sees, as an agent's own git would.
    sh(&developer.path, &["add", "--all"]);
    sh(&developer.path, &["commit", "-qm", "feature"]);
    let files = sh(
        &developer.path,
        &["show", "--name-only", "--format=", "HEAD"],
    );
    assert_eq!(files.trim(), "feature.txt");
    std::fs::write(developer.output_dir.join("more.md"), "more\n").expect("output");
    let leftovers = fixture
        .workspace
        .commit_leftovers(&spec, "ET-012: leftovers")
        .await
        .expect("commit leftovers");
    assert_eq!(leftovers, None, "only the output directory changed");
    // A sandboxed agent's git reads the copy of the mirror the sandbox shows in its place.
    for git_dir in ["mirror.git", "agent-git/ET-012"] {
        let exclude = fixture
            .repos()
            .join("acme/widgets")
            .join(git_dir)
            .join("info/exclude");
        let text = std::fs::read_to_string(&exclude).expect("info/exclude");
        assert_eq!(
            text.lines()
                .filter(|line| *line == "/.orch-output/")
                .count(),
            1,
            "{git_dir}: {text}"
        );
    }

    // A symbolic link an agent left in place of the output directory is replaced.
    let reviewer_dir = developer.path.join(".orch-output").join("reviewer");
    let elsewhere = tempfile::tempdir().expect("temp dir");
    std::os::unix::fs::symlink(elsewhere.path(), &reviewer_dir).expect("symlink");
    let reviewer = fixture
        .workspace
        .prepare(&spec, Agent::Reviewer)
        .await
        .expect("prepare reviewer");
    assert_eq!(reviewer.output_dir, reviewer_dir);
    assert!(!std::fs::symlink_metadata(&reviewer_dir)
        .expect("dir")
        .file_type()
        .is_symlink());
}

#[tokio::test]
async fn remove_is_idempotent_and_prepare_works_again_afterwards() {
    let fixture = Fixture::new();
    let spec = spec("ET-003");
    let prepared = fixture
        .workspace
        .prepare(&spec, Agent::Developer)
        .await
        .expect("prepare");
    std::fs::write(prepared.path.join("dirty.txt"), "uncommitted\n").expect("dirty the worktree");

    fixture.workspace.remove(&spec).await.expect("first remove");
    assert!(!prepared.path.exists());
    assert!(!prepared.output_dir.exists());
    let mirror = fixture.repos().join("acme/widgets/mirror.git");
    assert_eq!(
        sh(&mirror, &["worktree", "list", "--porcelain"])
            .matches("worktree ")
            .count(),
        1
    );
    fixture
        .workspace
        .remove(&spec)
        .await
        .expect("second remove");

    let again = fixture
        .workspace
        .prepare(&spec, Agent::Developer)
        .await
        .expect("prepare after remove");
    assert!(again.path.join("README.md").is_file());
}

#[tokio::test]
async fn remove_of_a_never_prepared_item_succeeds() {
    let fixture = Fixture::new();
    fixture
        .workspace
        .remove(&spec("ET-404"))
        .await
        .expect("remove");
}

#[tokio::test]
async fn leftovers_are_committed_with_orch_identity_and_counted_ahead() {
    let fixture = Fixture::new();
    let spec = spec("ET-004");
    let prepared = fixture
        .workspace
        .prepare(&spec, Agent::Developer)
        .await
        .expect("prepare");
    assert_eq!(
        fixture.workspace.commits_ahead(&spec).await.expect("ahead"),
        0
    );
    assert_eq!(
        fixture
            .workspace
            .commit_leftovers(&spec, "ET-004: leftovers")
            .await
            .expect("commit"),
        None
    );

    std::fs::create_dir_all(prepared.path.join("src")).expect("mkdir");
    std::fs::write(prepared.path.join("src/new.rs"), "fn main() {}\n").expect("write new file");
    std::fs::write(prepared.path.join("README.md"), "widgets, changed\n").expect("change readme");
    let sha = fixture
        .workspace
        .commit_leftovers(&spec, "ET-004: leftovers")
        .await
        .expect("commit")
        .expect("something to commit");

    assert_eq!(fixture.workspace.head_sha(&spec).await.expect("head"), sha);
    assert_eq!(
        fixture.workspace.commits_ahead(&spec).await.expect("ahead"),
        1
    );
    assert_eq!(
        sh(
            &prepared.path,
            &["log", "-1", "--format=%an <%ae>|%cn <%ce>|%s"]
        ),
        "orch <orch@localhost>|orch <orch@localhost>|ET-004: leftovers"
    );
    assert_eq!(sh(&prepared.path, &["status", "--porcelain"]), "");
    assert_eq!(
        fixture
            .workspace
            .commit_leftovers(&spec, "ET-004: leftovers")
            .await
            .expect("commit"),
        None
    );
}

#[tokio::test]
async fn commits_ahead_counts_an_agents_own_commits() {
    let fixture = Fixture::new();
    let spec = spec("ET-005");
    let prepared = fixture
        .workspace
        .prepare(&spec, Agent::Developer)
        .await
        .expect("prepare");
    for round in 0..3 {
        std::fs::write(prepared.path.join("work.md"), format!("round {round}\n")).expect("write");
        sh(&prepared.path, &["add", "work.md"]);
        sh(&prepared.path, &["commit", "--quiet", "-m", "agent commit"]);
    }
    assert_eq!(
        fixture.workspace.commits_ahead(&spec).await.expect("ahead"),
        3
    );
}

#[tokio::test]
async fn push_reaches_the_remote_and_is_forced() {
    let fixture = Fixture::new();
    let spec = spec("ET-006");
    let prepared = fixture
        .workspace
        .prepare(&spec, Agent::Developer)
        .await
        .expect("prepare");
    std::fs::write(prepared.path.join("one.md"), "one\n").expect("write");
    fixture
        .workspace
        .commit_leftovers(&spec, "one")
        .await
        .expect("commit");
    let first = fixture.workspace.push(&spec).await.expect("push");
    let remote_ref = "refs/heads/feature/ET-006-add-a-thing";
    assert_eq!(
        sh(&fixture.remote(), &["rev-parse", remote_ref]),
        first.as_str()
    );

    // Rewritten history (not a fast-forward) still replaces the remote branch.
    sh(
        &prepared.path,
        &["reset", "--quiet", "--hard", "refs/remotes/origin/main"],
    );
    std::fs::write(prepared.path.join("two.md"), "two\n").expect("write");
    fixture
        .workspace
        .commit_leftovers(&spec, "two")
        .await
        .expect("commit");
    let second = fixture.workspace.push(&spec).await.expect("forced push");
    assert_ne!(second, first);
    assert_eq!(
        sh(&fixture.remote(), &["rev-parse", remote_ref]),
        second.as_str()
    );
    // Only the task branch was pushed.
    assert_eq!(
        sh(&fixture.remote(), &["for-each-ref", "--format=%(refname)"])
            .lines()
            .count(),
        2
    );
}

#[tokio::test]
async fn a_lost_repos_dir_resumes_from_the_pushed_branch() {
    let fixture = Fixture::new();
    let spec = spec("ET-007");
    let prepared = fixture
        .workspace
        .prepare(&spec, Agent::Developer)
        .await
        .expect("prepare");
    std::fs::write(prepared.path.join("kept.md"), "kept\n").expect("write");
    fixture
        .workspace
        .commit_leftovers(&spec, "kept")
        .await
        .expect("commit");
    let pushed = fixture.workspace.push(&spec).await.expect("push");
    std::fs::remove_dir_all(fixture.repos().join("acme")).expect("lose repos_dir");

    let again = fixture
        .workspace
        .prepare(&spec, Agent::Developer)
        .await
        .expect("prepare again");
    assert!(again.path.join("kept.md").is_file());
    assert_eq!(
        fixture.workspace.head_sha(&spec).await.expect("head"),
        pushed
    );
}

#[tokio::test]
async fn parallel_prepares_of_one_repository_all_succeed() {
    let fixture = Fixture::new();
    let specs: Vec<WorktreeSpec> = ["ET-010", "ET-011", "ET-012"]
        .into_iter()
        .map(spec)
        .collect();
    let (a, b, c) = tokio::join!(
        fixture.workspace.prepare(&specs[0], Agent::Analyst),
        fixture.workspace.prepare(&specs[1], Agent::Analyst),
        fixture.workspace.prepare(&specs[2], Agent::Analyst),
    );
    for prepared in [a, b, c] {
        assert!(prepared.expect("prepare").path.join("README.md").is_file());
    }
}

#[tokio::test]
async fn a_missing_base_branch_is_not_found() {
    let fixture = Fixture::new();
    let mut spec = spec("ET-013");
    spec.base_branch = BranchName::new("develop").expect("base");
    let err = fixture
        .workspace
        .prepare(&spec, Agent::Analyst)
        .await
        .expect_err("no develop branch");
    assert!(matches!(err, WorkspaceError::NotFound(_)), "{err}");
}

#[tokio::test]
async fn queries_before_prepare_are_not_found() {
    let fixture = Fixture::new();
    let spec = spec("ET-014");
    for err in [
        fixture
            .workspace
            .commits_ahead(&spec)
            .await
            .expect_err("no mirror"),
        fixture
            .workspace
            .head_sha(&spec)
            .await
            .map(drop)
            .expect_err("no mirror"),
        fixture
            .workspace
            .commit_leftovers(&spec, "x")
            .await
            .map(drop)
            .expect_err("no worktree"),
    ] {
        assert!(matches!(err, WorkspaceError::NotFound(_)), "{err}");
    }
}

#[tokio::test]
async fn a_missing_remote_repository_is_an_error_with_gits_message() {
    let fixture = Fixture::new();
    let mut spec = spec("ET-015");
    spec.repo = RepoSlug::new("acme/nothing").expect("repo");
    let err = fixture
        .workspace
        .prepare(&spec, Agent::Analyst)
        .await
        .expect_err("no such remote");
    let text = err.to_string();
    assert!(text.contains("git fetch failed"), "{text}");
    assert!(
        text.contains("does not appear to be a git repository"),
        "{text}"
    );
}

#[tokio::test]
async fn the_token_is_in_no_argv_url_or_log_only_in_the_config_environment_of_network_commands() {
    let fixture = Fixture::new();
    let spec = spec("ET-020");
    let prepared = fixture
        .workspace
        .prepare(&spec, Agent::Developer)
        .await
        .expect("prepare");
    std::fs::write(prepared.path.join("a.md"), "a\n").expect("write");
    fixture
        .workspace
        .commit_leftovers(&spec, "a")
        .await
        .expect("commit");
    fixture.workspace.push(&spec).await.expect("push");
    fixture.workspace.remove(&spec).await.expect("remove");

    let invocations = fixture.invocations();
    let subcommands: Vec<&str> = invocations.iter().map(|it| it.args[0].as_str()).collect();
    assert!(
        subcommands.contains(&"fetch") && subcommands.contains(&"push"),
        "{subcommands:?}"
    );
    for invocation in &invocations {
        assert_eq!(invocation.program, "git");
        assert!(
            invocation.args.iter().all(|arg| !arg.contains(TOKEN)),
            "token in argv: {invocation:?}"
        );
        assert!(
            invocation
                .cwd
                .as_ref()
                .is_some_and(|cwd| cwd.starts_with(fixture.repos())),
            "{invocation:?}"
        );
        for (name, _) in &invocation.envs {
            let allowed = ["PATH", "HOME", "LANG", "LC_ALL", "GCM_INTERACTIVE"]
                .contains(&name.as_str())
                || name.starts_with("GIT_");
            assert!(allowed, "unexpected variable {name} in {invocation:?}");
        }
        let env_of = |name: &str| {
            invocation
                .envs
                .iter()
                .find(|(var, _)| var == name)
                .map(|(_, value)| value.clone())
        };
        assert_eq!(
            env_of("HOME").map(PathBuf::from),
            Some(fixture.repos().join(".git-home")),
            "{invocation:?}"
        );
        assert_eq!(env_of("GIT_CONFIG_GLOBAL").as_deref(), Some("/dev/null"));
        assert_eq!(env_of("GIT_CONFIG_NOSYSTEM").as_deref(), Some("1"));
        let header_key = invocation
            .envs
            .iter()
            .find(|(_, value)| value.starts_with("http.") && value.ends_with("extraHeader"))
            .map(|(name, _)| name.replace("KEY", "VALUE"));
        let holders: Vec<&String> = invocation
            .envs
            .iter()
            .filter(|(_, value)| value.contains(TOKEN))
            .map(|(name, _)| name)
            .collect();
        let network = matches!(invocation.args[0].as_str(), "fetch" | "push");
        if network {
            assert_eq!(
                holders,
                vec![header_key.as_ref().expect("header configured")],
                "{invocation:?}"
            );
            let value = invocation
                .envs
                .iter()
                .find(|(name, _)| Some(name) == header_key.as_ref())
                .expect("value");
            assert_eq!(value.1, format!("Authorization: token {TOKEN}"));
        } else {
            assert!(
                holders.is_empty(),
                "a local command got the token: {invocation:?}"
            );
        }
    }
    let mirror = fixture.repos().join("acme/widgets/mirror.git");
    assert!(!sh(&mirror, &["config", "--get", "remote.origin.url"]).contains(TOKEN));
    let captured = String::from_utf8_lossy(&captured_logs().lock().expect("logs")).into_owned();
    assert!(
        captured.contains("running git"),
        "logs were not captured: {captured}"
    );
    assert!(!captured.contains(TOKEN), "token in logs");
    assert!(!format!("{:?}", fixture.workspace).contains(TOKEN));
}

/// The directory orch was started with as `HOME` (and `XDG_CONFIG_HOME`, and a system config),
/// written by someone who wants the token: `config` goes into `~/.gitconfig` through an
/// `[include]`, and into the XDG and system config files as it is.
struct HostileHome {
    dir: tempfile::TempDir,
}

impl HostileHome {
    fn new(config: &str) -> HostileHome {
        let dir = tempfile::tempdir().expect("temp dir");
        let home = dir.path().join("home");
        std::fs::create_dir_all(home.join(".config/git")).expect("home");
        let included = dir.path().join("included.gitconfig");
        std::fs::write(&included, config).expect("included config");
        std::fs::write(
            home.join(".gitconfig"),
            format!("[include]\n\tpath = {}\n", included.display()),
        )
        .expect(".gitconfig");
        std::fs::write(home.join(".config/git/config"), config).expect("xdg config");
        std::fs::write(dir.path().join("system.gitconfig"), config).expect("system config");
        HostileHome { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// The environment orch is started with: the real `PATH`, everything else hostile.
    fn process_env(&self) -> Vec<(&'static str, String)> {
        let root = self.path().display().to_string();
        vec![
            ("PATH", std::env::var("PATH").unwrap_or_default()),
            ("LANG", "C.UTF-8".to_owned()),
            ("HOME", format!("{root}/home")),
            ("XDG_CONFIG_HOME", format!("{root}/home/.config")),
            ("GIT_CONFIG_SYSTEM", format!("{root}/system.gitconfig")),
            ("GIT_CONFIG_GLOBAL", format!("{root}/home/.gitconfig")),
        ]
    }

    /// Writes an executable script that appends its environment to `dump` and then runs its
    /// arguments, if any.
    fn dumping_script(&self, path: &Path, dump: &Path) {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::write(
            path,
            format!(
                "#!/bin/sh\nenv >> '{}'\ncat > /dev/null\n[ $# -gt 0 ] && exec \"$@\" < /dev/null\nexit 0\n",
                dump.display()
            ),
        )
        .expect("script");
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    }
}

/// A workspace on `sim` whose git processes inherit `home`'s environment.
fn workspace_started_in(home: &HostileHome, sim: &orch_sim::gitea::GiteaSim) -> GitWorkspace {
    let mut config = GitConfig::new(home.path().join("repos"), sim.base_url());
    config.token = Some(TOKEN.to_owned());
    config.command_timeout = Duration::from_secs(60);
    let mut workspace = GitWorkspace::new(config).expect("workspace");
    let env = home.process_env();
    let vars: Vec<(&str, &str)> = env
        .iter()
        .map(|(name, value)| (*name, value.as_str()))
        .collect();
    workspace.git.set_process_env(&vars);
    workspace
}

/// Prepares, commits and pushes one task branch; returns the pushed sha.
async fn prepare_commit_push(
    workspace: &GitWorkspace,
    spec: &WorktreeSpec,
) -> Result<String, WorkspaceError> {
    let prepared = workspace.prepare(spec, Agent::Developer).await?;
    std::fs::write(prepared.path.join("change.md"), "a change\n").expect("write");
    workspace.commit_leftovers(spec, "a change").await?;
    Ok(workspace.push(spec).await?.as_str().to_owned())
}

#[tokio::test]
async fn a_hostile_user_git_config_cannot_reroute_orchs_git_to_a_local_repository_with_hooks() {
    let sim = orch_sim::gitea::GiteaSim::start_with_token(TOKEN)
        .await
        .expect("sim");
    sim.create_repo("acme", "widgets").await.expect("repo");
    let scratch = tempfile::tempdir().expect("temp dir");
    // A local copy of the repository whose every hook, and git's pack-objects hook, writes
    // the environment it gets (the config environment included) to a file.
    let evil_base = scratch.path().join("evil");
    let evil = evil_base.join("acme/widgets.git");
    let source = sim.repo_path("acme/widgets");
    sh(
        scratch.path(),
        &[
            "clone",
            "--bare",
            "--quiet",
            source.to_str().expect("utf-8"),
            evil.to_str().expect("utf-8"),
        ],
    );
    let dump = scratch.path().join("dumped-env");
    let pack_hook = scratch.path().join("pack-objects-hook");
    let config = format!(
        "[url \"{}/\"]\n\tinsteadOf = {}/\n[uploadpack]\n\tpackObjectsHook = {}\n",
        evil_base.display(),
        sim.base_url(),
        pack_hook.display()
    );
    let home = HostileHome::new(&config);
    home.dumping_script(&pack_hook, &dump);
    for hook in [
        "pre-receive",
        "update",
        "post-receive",
        "post-update",
        "reference-transaction",
        "proc-receive",
    ] {
        home.dumping_script(&evil.join("hooks").join(hook), &dump);
    }
    let workspace = workspace_started_in(&home, &sim);
    let spec = spec("ET-050");

    let pushed = prepare_commit_push(&workspace, &spec).await;

    let dumped = std::fs::read_to_string(&dump).unwrap_or_default();
    assert!(
        !dumped.contains(TOKEN),
        "a hook of the rerouted repository got the token"
    );
    assert!(dumped.is_empty(), "a hook ran: {dumped}");
    let pushed = pushed.expect("orch's git reached gitea");
    let tip = sim
        .branch_tip("acme/widgets", spec.branch.as_str())
        .await
        .expect("tip");
    assert_eq!(tip.as_deref(), Some(pushed.as_str()));
    assert!(sh(&evil, &["for-each-ref", "refs/heads/feature"]).is_empty());
}

#[tokio::test]
async fn a_hostile_user_git_config_cannot_send_orchs_traffic_through_a_proxy() {
    let sim = orch_sim::gitea::GiteaSim::start_with_token(TOKEN)
        .await
        .expect("sim");
    sim.create_repo("acme", "widgets").await.expect("repo");
    let proxy = OneShotHttp::start(
        "HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
    );
    let home = HostileHome::new(&format!(
        "[http \"{}/\"]\n\tproxy = {}\n[http]\n\tproxy = {}\n",
        sim.base_url(),
        proxy.base_url(),
        proxy.base_url()
    ));
    let workspace = workspace_started_in(&home, &sim);
    let spec = spec("ET-051");

    let pushed = prepare_commit_push(&workspace, &spec).await;

    let request = proxy.request();
    assert!(!request.contains(TOKEN), "the proxy got the token");
    assert!(request.is_empty(), "the proxy got a request: {request}");
    let pushed = pushed.expect("orch's git went straight to gitea");
    let tip = sim
        .branch_tip("acme/widgets", spec.branch.as_str())
        .await
        .expect("tip");
    assert_eq!(tip.as_deref(), Some(pushed.as_str()));
}

#[tokio::test]
async fn an_http_remote_turns_the_file_protocol_off_and_a_local_one_keeps_it() {
    let server = OneShotHttp::start(
        "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
    );
    for (fixture, expected) in [
        (
            Fixture::with_remote_base(Some(server.base_url()), Duration::from_secs(30)),
            "never",
        ),
        (Fixture::new(), "always"),
    ] {
        let _ = fixture
            .workspace
            .prepare(&spec("ET-052"), Agent::Analyst)
            .await;
        let invocations = fixture.invocations();
        assert!(!invocations.is_empty());
        for invocation in invocations {
            let key = invocation
                .envs
                .iter()
                .find(|(_, value)| value == "protocol.file.allow")
                .map(|(name, _)| name.replace("KEY", "VALUE"))
                .expect("protocol.file.allow is pinned");
            let value = invocation.envs.iter().find(|(name, _)| *name == key);
            assert_eq!(value.map(|(_, value)| value.as_str()), Some(expected));
        }
    }
}

#[test]
fn gits_home_is_private_and_replaces_whatever_took_its_place() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tempfile::tempdir().expect("temp dir");
    let repos = dir.path().join("repos");
    std::fs::create_dir_all(&repos).expect("repos");
    let elsewhere = dir.path().join("elsewhere");
    std::fs::create_dir_all(&elsewhere).expect("elsewhere");
    std::os::unix::fs::symlink(&elsewhere, repos.join(".git-home")).expect("symlink");

    GitWorkspace::new(GitConfig::new(&repos, "http://127.0.0.1:3000")).expect("workspace");

    let metadata = std::fs::symlink_metadata(repos.join(".git-home")).expect("home");
    assert!(metadata.is_dir(), "a real directory, not the link");
    assert_eq!(metadata.permissions().mode() & 0o777, 0o700);
    let err = paths::Layout::new(repos)
        .repo_dir(&RepoSlug::new(".git-home/x").expect("slug"))
        .expect_err("a dot owner");
    assert!(matches!(err, GitError::Refused { .. }), "{err}");
}

#[test]
fn config_debug_redacts_the_token() {
    let mut config = GitConfig::new("/tmp/repos", "http://127.0.0.1:3000");
    config.token = Some(TOKEN.to_owned());
    let text = format!("{config:?}");
    assert!(!text.contains(TOKEN), "{text}");
    assert!(text.contains("<redacted>"), "{text}");
}

#[tokio::test]
async fn the_token_reaches_an_http_remote_as_a_header_and_a_401_is_unauthorized() {
    let server = OneShotHttp::start(
        "HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
    );
    let fixture = Fixture::with_remote_base(Some(server.base_url()), Duration::from_secs(30));
    let err = fixture
        .workspace
        .prepare(&spec("ET-021"), Agent::Analyst)
        .await
        .expect_err("401");
    assert!(matches!(err, WorkspaceError::Unauthorized(_)), "{err}");
    assert!(!err.to_string().contains(TOKEN));
    let request = server.request();
    assert!(
        request.starts_with("GET /acme/widgets.git/info/refs"),
        "{request}"
    );
    assert!(
        request.contains(&format!("Authorization: token {TOKEN}")),
        "{request}"
    );
}

#[tokio::test]
async fn a_5xx_from_the_remote_is_unavailable() {
    let server = OneShotHttp::start(
        "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
    );
    let fixture = Fixture::with_remote_base(Some(server.base_url()), Duration::from_secs(30));
    let err = fixture
        .workspace
        .prepare(&spec("ET-022"), Agent::Analyst)
        .await
        .expect_err("503");
    assert!(
        matches!(err.class(), ErrorClass::Unavailable { .. }),
        "{err}"
    );
}

#[tokio::test]
async fn a_silent_remote_is_killed_at_the_deadline_and_unavailable() {
    // Reads the request but never answers; reports when the client hangs up.
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    let (hung_up, hang_up_seen) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        if let Ok((mut stream, _)) = listener.accept() {
            let mut sink = Vec::new();
            let _ = stream.read_to_end(&mut sink);
            let _ = hung_up.send(());
        }
    });
    let fixture = Fixture::with_remote_base(Some(base), Duration::from_secs(1));
    let started = Instant::now();
    let err = fixture
        .workspace
        .prepare(&spec("ET-023"), Agent::Analyst)
        .await
        .expect_err("timeout");
    assert!(
        started.elapsed() < DEADLINE_SLACK,
        "took {:?}",
        started.elapsed()
    );
    assert!(
        matches!(err.class(), ErrorClass::Unavailable { .. }),
        "{err}"
    );
    assert!(err.to_string().contains("timed out"), "{err}");
    // git's HTTP helper (in git's process group) is gone too: nothing holds the connection.
    hang_up_seen
        .recv_timeout(DEADLINE_SLACK)
        .expect("the connection was closed");
}

#[tokio::test]
async fn output_names_that_leave_the_output_directory_are_refused() {
    let fixture = Fixture::new();
    let spec = spec("ET-030");
    let prepared = fixture
        .workspace
        .prepare(&spec, Agent::Reviewer)
        .await
        .expect("prepare");
    for name in [
        "../developer/review.md",
        "../../../../../etc/passwd",
        "/etc/passwd",
        "..",
        ".",
        "",
        "a/b",
    ] {
        let err = fixture
            .workspace
            .read_output(&spec, Agent::Reviewer, name)
            .await
            .expect_err(name);
        assert!(matches!(err, WorkspaceError::Invalid(_)), "{name}: {err}");
    }
    // A symbolic link an agent left pointing outside repos_dir is not followed.
    let outside = fixture.dir.path().join("secret.txt");
    std::fs::write(&outside, "secret\n").expect("write secret");
    std::os::unix::fs::symlink(&outside, prepared.output_dir.join("review.md")).expect("symlink");
    let err = fixture
        .workspace
        .read_output(&spec, Agent::Reviewer, "review.md")
        .await
        .expect_err("escape");
    assert!(matches!(err, WorkspaceError::Invalid(_)), "{err}");
}

#[tokio::test]
async fn a_symlinked_directory_leading_outside_repos_dir_is_refused() {
    let fixture = Fixture::new();
    let repo_dir = fixture.repos().join("acme").join("widgets");
    std::fs::create_dir_all(&repo_dir).expect("repo dir");
    let elsewhere = fixture.dir.path().join("elsewhere");
    std::fs::create_dir_all(&elsewhere).expect("elsewhere");
    std::os::unix::fs::symlink(&elsewhere, repo_dir.join("outputs")).expect("symlink");
    let err = fixture
        .workspace
        .prepare(&spec("ET-031"), Agent::Analyst)
        .await
        .expect_err("escape");
    assert!(matches!(err, WorkspaceError::Invalid(_)), "{err}");
    assert!(is_empty_dir(&elsewhere));
}

#[test]
fn option_like_and_escaping_branch_names_are_refused() {
    for name in [
        "-f",
        "--upload-pack=evil",
        "feature/../../x",
        "..",
        "/abs",
        "a b",
        "a\\b",
        "",
    ] {
        let err = paths::branch(name).expect_err(name);
        assert!(matches!(err, GitError::Refused { .. }), "{name}: {err}");
        assert!(
            matches!(WorkspaceError::from(err), WorkspaceError::Invalid(_)),
            "{name}"
        );
    }
    assert_eq!(
        paths::branch("feature/ET-001-x").expect("valid"),
        "feature/ET-001-x"
    );
}

#[test]
fn path_components_must_be_plain_names() {
    for name in ["..", ".", "", "a/b", "/etc", "-rf", "a\\b", "x\0y"] {
        assert!(paths::component("name", name).is_err(), "{name:?} accepted");
    }
    assert_eq!(paths::component("name", "ET-001").expect("plain"), "ET-001");
}

#[test]
fn a_remote_base_with_credentials_is_refused() {
    let dir = tempfile::tempdir().expect("temp dir");
    for base in [
        "http://orch:secret@127.0.0.1:3000",
        "https://token@gitea.example.com",
        "--upload-pack=x",
    ] {
        let err = GitWorkspace::new(GitConfig::new(dir.path(), base)).expect_err(base);
        assert!(matches!(err, WorkspaceError::Invalid(_)), "{base}: {err}");
        assert!(!err.to_string().contains("secret"));
    }
    GitWorkspace::new(GitConfig::new(dir.path(), "http://127.0.0.1:3000/")).expect("plain url");
}

#[test]
fn git_stderr_is_scrubbed_of_the_token() {
    let git = crate::command::Git::new(
        Duration::from_secs(1),
        Some(TOKEN.to_owned()),
        PathBuf::from("/"),
        PathBuf::from("/nonexistent"),
        "http://127.0.0.1:3000",
    );
    assert_eq!(
        git.scrub(&format!("fatal: bad header token {TOKEN}")),
        "fatal: bad header token ***"
    );
}

/// Every test's log output, at every level, collected in memory by one global subscriber
/// (a per-test scoped subscriber misses events whose interest another thread cached).
fn captured_logs() -> &'static Arc<Mutex<Vec<u8>>> {
    static LOGS: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOGS.get_or_init(|| {
        let logs = Arc::new(Mutex::new(Vec::new()));
        let writer_logs = logs.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_ansi(false)
            .with_writer(move || CaptureWriter(writer_logs.clone()))
            .finish();
        tracing::subscriber::set_global_default(subscriber).expect("the only global subscriber");
        logs
    })
}

/// Collects log output in memory.
struct CaptureWriter(Arc<Mutex<Vec<u8>>>);

impl Write for CaptureWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .map_err(|_| std::io::Error::other("poisoned"))?
            .extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A loopback HTTP server that answers every request with one canned response and keeps the
/// first request's head.
struct OneShotHttp {
    addr: std::net::SocketAddr,
    first_request: Arc<Mutex<Option<String>>>,
}

impl OneShotHttp {
    fn start(response: &'static str) -> OneShotHttp {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        let first_request = Arc::new(Mutex::new(None));
        let store = first_request.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { return };
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") {
                    match stream.read(&mut byte) {
                        Ok(1) => head.push(byte[0]),
                        _ => break,
                    }
                }
                if let Ok(mut slot) = store.lock() {
                    slot.get_or_insert_with(|| String::from_utf8_lossy(&head).into_owned());
                }
                let _ = stream.write_all(response.as_bytes());
            }
        });
        OneShotHttp {
            addr,
            first_request,
        }
    }

    fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn request(&self) -> String {
        self.first_request
            .lock()
            .expect("request")
            .clone()
            .unwrap_or_default()
    }
}

#[test]
fn git_failures_are_classified_by_what_git_said() {
    let check = |stderr: &str, expected: ErrorClass| {
        let err = GitError::Failed {
            command: "fetch".to_owned(),
            code: Some(128),
            stderr: stderr.to_owned(),
        };
        assert_eq!(WorkspaceError::from(err).class(), expected, "{stderr}");
    };
    let unavailable = ErrorClass::Unavailable { retry_after: None };
    check(
        "fatal: unable to access 'http://x/': Failed to connect to x port 80",
        unavailable,
    );
    check(
        "fatal: unable to access 'http://x/': Could not resolve host: x",
        unavailable,
    );
    check(
        "fatal: unable to access 'http://x/': The requested URL returned error: 502",
        unavailable,
    );
    check(
        "error: RPC failed; curl 28 Operation too slow. Less than 1 bytes/sec",
        unavailable,
    );
    check("fatal: the remote end hung up unexpectedly", unavailable);
    check(
        "fatal: unable to access 'http://x/': The requested URL returned error: 401",
        ErrorClass::Unauthorized,
    );
    check(
        "fatal: could not read Username for 'http://x': terminal prompts disabled",
        ErrorClass::Unauthorized,
    );
    check(
        "fatal: '/x/acme/none.git' does not appear to be a git repository",
        ErrorClass::Other,
    );
    let timeout = GitError::Timeout {
        command: "push".to_owned(),
        seconds: 5,
    };
    assert_eq!(WorkspaceError::from(timeout).class(), unavailable);
    let spawn = GitError::Spawn(std::io::Error::from(std::io::ErrorKind::NotFound));
    assert_eq!(WorkspaceError::from(spawn).class(), ErrorClass::Other);
}

#[tokio::test]
async fn leftovers_on_another_branch_are_refused_and_prepare_restores_the_task_branch() {
    let fixture = Fixture::new();
    let spec = spec("ET-040");
    let prepared = fixture
        .workspace
        .prepare(&spec, Agent::Developer)
        .await
        .expect("prepare");
    sh(
        &prepared.path,
        &["switch", "--quiet", "--detach", "refs/remotes/origin/main"],
    );
    std::fs::write(prepared.path.join("stray.md"), "stray\n").expect("write");
    let err = fixture
        .workspace
        .commit_leftovers(&spec, "x")
        .await
        .expect_err("detached");
    assert!(matches!(err, WorkspaceError::Conflict(_)), "{err}");

    fixture
        .workspace
        .prepare(&spec, Agent::Developer)
        .await
        .expect("prepare again");
    assert_eq!(
        sh(&prepared.path, &["symbolic-ref", "HEAD"]),
        "refs/heads/feature/ET-040-add-a-thing"
    );
    let sha = fixture
        .workspace
        .commit_leftovers(&spec, "x")
        .await
        .expect("commit");
    assert!(sha.is_some());
    assert_eq!(
        fixture.workspace.commits_ahead(&spec).await.expect("ahead"),
        1
    );
}

#[tokio::test]
async fn a_worktree_whose_mirror_was_lost_is_made_anew() {
    let fixture = Fixture::new();
    let spec = spec("ET-041");
    let prepared = fixture
        .workspace
        .prepare(&spec, Agent::Developer)
        .await
        .expect("prepare");
    std::fs::remove_dir_all(fixture.repos().join("acme/widgets/mirror.git")).expect("lose mirror");

    let again = fixture
        .workspace
        .prepare(&spec, Agent::Developer)
        .await
        .expect("prepare again");
    assert_eq!(again.path, prepared.path);
    assert_eq!(
        sh(&again.path, &["symbolic-ref", "HEAD"]),
        "refs/heads/feature/ET-041-add-a-thing"
    );
}

/// A person commits `content` to `file` on the remote's `refspec` (from the seed clone, whose
/// HEAD follows `main`), and returns the new commit.
fn person_commits(fixture: &Fixture, file: &str, content: &str, refspec: &str) -> String {
    let seed = fixture.dir.path().join("seed");
    std::fs::write(seed.join(file), content).expect("write");
    sh(&seed, &["add", file]);
    sh(&seed, &["commit", "--quiet", "-m", "a person's change"]);
    let remote = fixture.remote();
    sh(
        &seed,
        &[
            "push",
            "--quiet",
            remote.to_str().expect("utf-8 path"),
            refspec,
        ],
    );
    sh(&seed, &["rev-parse", "HEAD"])
}

#[tokio::test]
async fn merges_cleanly_tells_a_clean_merge_from_a_conflict_and_moves_nothing() {
    let fixture = Fixture::new();
    let spec = spec("ET-050");
    let prepared = fixture
        .workspace
        .prepare(&spec, Agent::Developer)
        .await
        .expect("prepare");
    std::fs::write(prepared.path.join("README.md"), "widgets, said the task\n").expect("write");
    fixture
        .workspace
        .commit_leftovers(&spec, "task")
        .await
        .expect("commit");
    let head = fixture.workspace.push(&spec).await.expect("push");
    assert!(fixture
        .workspace
        .merges_cleanly(&spec, &head)
        .await
        .expect("checked"));

    person_commits(&fixture, "other.md", "other\n", "HEAD:refs/heads/main");
    assert!(
        fixture
            .workspace
            .merges_cleanly(&spec, &head)
            .await
            .expect("checked"),
        "the base moved without touching the task's file"
    );

    person_commits(
        &fixture,
        "README.md",
        "widgets, said a person\n",
        "HEAD:refs/heads/main",
    );
    let snapshot = || {
        (
            sh(&prepared.path, &["for-each-ref", "refs/heads"]),
            sh(&prepared.path, &["rev-parse", "HEAD"]),
            sh(&prepared.path, &["status", "--porcelain"]),
        )
    };
    let before = snapshot();
    assert!(
        !fixture
            .workspace
            .merges_cleanly(&spec, &head)
            .await
            .expect("checked"),
        "the base changed the task's file"
    );
    assert_eq!(snapshot(), before, "no branch, HEAD or file changed");
}

#[tokio::test]
async fn merges_cleanly_fetches_a_head_pushed_elsewhere_and_an_unknown_head_is_not_found() {
    let fixture = Fixture::new();
    let spec = spec("ET-051");
    let pushed = person_commits(
        &fixture,
        "pushed.md",
        "pushed\n",
        "HEAD:refs/heads/feature/ET-051-add-a-thing",
    );
    let pushed = orch_core::ids::CommitSha::new(pushed).expect("sha");
    assert!(fixture
        .workspace
        .merges_cleanly(&spec, &pushed)
        .await
        .expect("checked without a prepared mirror"));

    let unknown = orch_core::ids::CommitSha::new("1".repeat(40)).expect("sha");
    let err = fixture
        .workspace
        .merges_cleanly(&spec, &unknown)
        .await
        .expect_err("no such commit");
    assert!(matches!(err, WorkspaceError::NotFound(_)), "{err}");
}

mod pool;
mod warm;

/// The niceness a git alias's shell reports (`/proc/self/stat`, field 19): what its git got.
async fn niceness_of(git: &crate::command::Git, cwd: &Path) -> i32 {
    let args = crate::command::git_args![
        "-c",
        "alias.niceness=!f() { cut -d' ' -f19 /proc/$$/stat; }; f",
        "niceness"
    ];
    let output = git
        .run(cwd, &args, crate::command::Network::Local)
        .await
        .expect("run the alias");
    output.trim().parse().expect("a niceness")
}

#[tokio::test]
async fn background_git_runs_at_a_lower_cpu_priority() {
    let fixture = Fixture::new();
    let cwd = fixture.dir.path();
    let own = niceness_of(&fixture.workspace.git, cwd).await;
    let background = niceness_of(&fixture.workspace.git.background(), cwd).await;
    assert_eq!(background, (own + 10).min(19), "own {own}");
}
