//! `GitWorkspace` with a warm mirror (`GitConfig::warm`): prepares without the network, and
//! what makes them fetch again.

use std::time::Duration;

use orch_core::domain::Agent;
use orch_core::ids::CommitSha;
use orch_core::ports::{Workspace, WorkspaceError};

use super::{person_commits, spec, Fixture};

const LONG: Duration = Duration::from_secs(3600);

fn fetches(fixture: &Fixture) -> usize {
    fixture
        .invocations()
        .iter()
        .filter(|invocation| invocation.args.first().map(String::as_str) == Some("fetch"))
        .count()
}

/// Prepares the task's worktree, commits a file in it and pushes; returns the pushed head.
async fn orch_pushes(fixture: &Fixture, spec: &orch_core::ports::WorktreeSpec) -> CommitSha {
    let prepared = fixture
        .workspace
        .prepare(spec, Agent::Developer)
        .await
        .expect("prepare");
    std::fs::write(prepared.path.join("orch.md"), "orch\n").expect("write");
    fixture
        .workspace
        .commit_leftovers(spec, "orch")
        .await
        .expect("commit");
    fixture.workspace.push(spec).await.expect("push")
}

#[tokio::test]
async fn a_fresh_mirror_serves_a_burst_of_prepares_with_one_fetch() {
    let fixture = std::sync::Arc::new(Fixture::warm(LONG));
    let mut prepares = tokio::task::JoinSet::new();
    for n in 0..8 {
        let fixture = fixture.clone();
        prepares.spawn(async move {
            fixture
                .workspace
                .prepare(&spec(&format!("ET-2{n:02}")), Agent::Analyst)
                .await
        });
    }
    while let Some(prepared) = prepares.join_next().await {
        let prepared = prepared.expect("joined").expect("prepare");
        assert!(prepared.path.join("README.md").is_file());
    }
    assert_eq!(fetches(&fixture), 1, "{:?}", fixture.invocations());

    fixture
        .workspace
        .prepare(&spec("ET-299"), Agent::Analyst)
        .await
        .expect("one more");
    assert_eq!(fetches(&fixture), 1, "a fresh mirror needs no fetch");
}

#[tokio::test]
async fn a_persons_push_named_by_the_forge_is_fetched_built_on_and_kept_by_the_lease() {
    let fixture = Fixture::warm(LONG);
    let spec = spec("ET-210");
    let ours = orch_pushes(&fixture, &spec).await;
    assert!(
        !fixture
            .workspace
            .remote_changed(&spec.repo, &spec.branch, &ours),
        "orch's own push is no news"
    );

    // A person builds on orch's commit and pushes to the task branch.
    let seed = fixture.dir.path().join("seed");
    super::sh(
        &seed,
        &[
            "fetch",
            "--quiet",
            fixture.remote().to_str().expect("utf-8"),
            spec.branch.as_str(),
        ],
    );
    super::sh(&seed, &["reset", "--quiet", "--hard", "FETCH_HEAD"]);
    let refspec = format!("HEAD:refs/heads/{}", spec.branch.as_str());
    let theirs = person_commits(&fixture, "person.md", "a person's fix\n", &refspec);
    let theirs = CommitSha::new(theirs).expect("sha");

    let before = fetches(&fixture);
    assert!(fixture
        .workspace
        .remote_changed(&spec.repo, &spec.branch, &theirs));
    let prepared = fixture
        .workspace
        .prepare(&spec, Agent::Developer)
        .await
        .expect("prepare again");
    assert_eq!(fetches(&fixture), before + 1, "a named change is fetched");
    assert!(
        prepared.path.join("person.md").is_file(),
        "the next agent builds on the person's commit"
    );
    std::fs::write(prepared.path.join("orch2.md"), "more\n").expect("write");
    fixture
        .workspace
        .commit_leftovers(&spec, "more")
        .await
        .expect("commit");
    let pushed = fixture.workspace.push(&spec).await.expect("push");
    let remote = fixture.remote();
    super::sh(
        &remote,
        &[
            "merge-base",
            "--is-ancestor",
            theirs.as_str(),
            pushed.as_str(),
        ],
    );
}

#[tokio::test]
async fn an_unseen_push_is_overwritten_by_no_forced_push() {
    let fixture = Fixture::warm(LONG);
    let spec = spec("ET-220");
    orch_pushes(&fixture, &spec).await;
    // A person force-pushes the task branch and the webhook is lost: the mirror does not know.
    let refspec = format!("+HEAD:refs/heads/{}", spec.branch.as_str());
    let theirs = person_commits(&fixture, "person.md", "theirs\n", &refspec);
    let prepared = fixture
        .workspace
        .prepare(&spec, Agent::Developer)
        .await
        .expect("prepare from the warm mirror");
    std::fs::write(prepared.path.join("orch2.md"), "more\n").expect("write");
    fixture
        .workspace
        .commit_leftovers(&spec, "more")
        .await
        .expect("commit");
    fixture
        .workspace
        .push(&spec)
        .await
        .expect_err("the lease refuses to drop the person's commit");
    let tip = super::sh(&fixture.remote(), &["rev-parse", spec.branch.as_str()]);
    assert_eq!(tip, theirs);
}

#[tokio::test]
async fn an_aged_mirror_is_fetched_again() {
    let fixture = Fixture::warm(Duration::from_millis(50));
    fixture
        .workspace
        .prepare(&spec("ET-230"), Agent::Analyst)
        .await
        .expect("prepare");
    tokio::time::sleep(Duration::from_millis(100)).await;
    let main = person_commits(&fixture, "new.md", "new\n", "HEAD:refs/heads/main");
    let prepared = fixture
        .workspace
        .prepare(&spec("ET-231"), Agent::Analyst)
        .await
        .expect("prepare");
    assert_eq!(fetches(&fixture), 2);
    assert_eq!(super::sh(&prepared.path, &["rev-parse", "HEAD"]), main);
}

#[tokio::test]
async fn refresh_brings_the_base_in_so_a_prepare_needs_no_fetch() {
    let fixture = Fixture::warm(LONG);
    let repo = spec("ET-240").repo;
    fixture.workspace.refresh(&repo).await.expect("refresh");
    let main = person_commits(&fixture, "new.md", "new\n", "HEAD:refs/heads/main");
    fixture.workspace.refresh(&repo).await.expect("refresh");
    let prepared = fixture
        .workspace
        .prepare(&spec("ET-240"), Agent::Analyst)
        .await
        .expect("prepare");
    assert_eq!(fetches(&fixture), 2, "the two refreshes only");
    assert_eq!(super::sh(&prepared.path, &["rev-parse", "HEAD"]), main);
}

#[tokio::test]
async fn a_base_missing_from_a_fresh_mirror_is_fetched_then_not_found() {
    let fixture = Fixture::warm(LONG);
    fixture
        .workspace
        .prepare(&spec("ET-250"), Agent::Analyst)
        .await
        .expect("prepare");
    let mut other = spec("ET-251");
    other.base_branch = orch_core::ids::BranchName::new("release").expect("branch");
    let err = fixture
        .workspace
        .prepare(&other, Agent::Analyst)
        .await
        .expect_err("no such base");
    assert!(matches!(err, WorkspaceError::NotFound(_)), "{err}");
    assert_eq!(fetches(&fixture), 2, "the missing ref made it fetch");
}

#[tokio::test]
async fn a_mirror_config_changed_behind_orchs_back_is_rewritten_before_use() {
    let fixture = Fixture::warm(LONG);
    fixture
        .workspace
        .prepare(&spec("ET-260"), Agent::Analyst)
        .await
        .expect("prepare");
    let config = fixture.repos().join("acme/widgets/mirror.git/config");
    let original = std::fs::read_to_string(&config).expect("config");
    std::fs::write(&config, format!("{original}[core]\n\thooksPath = /tmp\n")).expect("write");
    fixture
        .workspace
        .prepare(&spec("ET-261"), Agent::Analyst)
        .await
        .expect("prepare");
    assert_eq!(std::fs::read_to_string(&config).expect("config"), original);
}
