//! The `Workspace` contract suite, run against `FakeWorkspace` and `GitWorkspace` on real git.

use std::future::Future;

use async_trait::async_trait;

use crate::domain::Agent;
use crate::fakes::contract::{case, run_suite, Case};
use crate::ids::{BranchName, CommitSha, RepoSlug, WorkItemId};
use crate::ports::{PreparedWorktree, Workspace, WorktreeSpec};

/// A workspace over a remote repository `acme/widgets` with a `main` branch, and what agents
/// do in its worktrees.
#[async_trait]
pub trait WorkspaceFixture: Send + Sync {
    fn workspace(&self) -> &dyn Workspace;

    /// An agent writes `text` into file `name` of its output directory.
    async fn agent_writes_output(
        &self,
        spec: &WorktreeSpec,
        prepared: &PreparedWorktree,
        agent: Agent,
        name: &str,
        text: &str,
    );

    /// A developer commits a change in the worktree; returns the commit.
    async fn agent_commits(&self, spec: &WorktreeSpec, prepared: &PreparedWorktree) -> CommitSha;

    /// A developer changes a file in the worktree and leaves it uncommitted.
    async fn agent_leaves_uncommitted(&self, spec: &WorktreeSpec, prepared: &PreparedWorktree);

    /// Someone pushes to the base branch another version of the file `agent_commits` wrote,
    /// so the task branch no longer merges cleanly.
    async fn base_conflicts_with_the_agents_commit(&self, spec: &WorktreeSpec);

    /// Where the task branch points on the remote, if it exists there.
    async fn remote_head(&self, spec: &WorktreeSpec) -> Option<CommitSha>;
}

/// Runs the `Workspace` contract on a fresh fixture per case from `make` (given the case's
/// name).
pub async fn workspace<F, Fut>(make: impl FnMut(&'static str) -> Fut)
where
    F: WorkspaceFixture + 'static,
    Fut: Future<Output = F>,
{
    let cases: Vec<&Case<dyn WorkspaceFixture>> = CASES.iter().collect();
    run_suite("Workspace", &cases, make, as_fixture::<F>).await;
}

fn as_fixture<F: WorkspaceFixture + 'static>(fixture: &F) -> &(dyn WorkspaceFixture + 'static) {
    fixture
}

fn task_spec(number: u32) -> WorktreeSpec {
    let work_item = WorkItemId::new("ET", number).expect("valid work item");
    WorktreeSpec {
        repo: RepoSlug::new("acme/widgets").expect("valid repo"),
        base_branch: BranchName::new("main").expect("valid branch"),
        branch: BranchName::for_work_item(&work_item, "Contract work"),
        work_item,
    }
}

async fn prepare(
    fixture: &dyn WorkspaceFixture,
    spec: &WorktreeSpec,
    agent: Agent,
) -> PreparedWorktree {
    fixture
        .workspace()
        .prepare(spec, agent)
        .await
        .expect("prepared")
}

async fn ahead(fixture: &dyn WorkspaceFixture, spec: &WorktreeSpec) -> u32 {
    fixture
        .workspace()
        .commits_ahead(spec)
        .await
        .expect("counted")
}

async fn output(
    fixture: &dyn WorkspaceFixture,
    spec: &WorktreeSpec,
    agent: Agent,
    name: &str,
) -> Option<String> {
    fixture
        .workspace()
        .read_output(spec, agent, name)
        .await
        .expect("read")
}

async fn head(fixture: &dyn WorkspaceFixture, spec: &WorktreeSpec) -> CommitSha {
    fixture.workspace().head_sha(spec).await.expect("head")
}

pub(super) const CASES: &[Case<dyn WorkspaceFixture>] = &[
    case!(preparing_twice_gives_the_same_worktree, |fixture| {
        let spec = task_spec(1);
        let first = prepare(fixture, &spec, Agent::Developer).await;
        let commit = fixture.agent_commits(&spec, &first).await;
        let second = prepare(fixture, &spec, Agent::Developer).await;
        assert_eq!(first.path, second.path);
        assert_eq!(first.output_dir, second.output_dir);
        assert_eq!(
            head(fixture, &spec).await,
            commit,
            "the work done so far stays"
        );
        let other = prepare(fixture, &task_spec(2), Agent::Developer).await;
        assert_ne!(
            other.path, first.path,
            "another work item, another worktree"
        );
    }),
    case!(
        preparing_empties_that_agents_outputs_and_keeps_the_others,
        |fixture| {
            let spec = task_spec(1);
            let analyst = prepare(fixture, &spec, Agent::Analyst).await;
            fixture
                .agent_writes_output(&spec, &analyst, Agent::Analyst, "analysis.md", "The plan.")
                .await;
            let reviewer = prepare(fixture, &spec, Agent::Reviewer).await;
            fixture
                .agent_writes_output(&spec, &reviewer, Agent::Reviewer, "verdict", "approve")
                .await;
            assert_eq!(
                output(fixture, &spec, Agent::Reviewer, "verdict")
                    .await
                    .as_deref(),
                Some("approve")
            );
            assert_eq!(
                output(fixture, &spec, Agent::Reviewer, "review.md").await,
                None
            );
            prepare(fixture, &spec, Agent::Reviewer).await;
            assert_eq!(
                output(fixture, &spec, Agent::Reviewer, "verdict").await,
                None,
                "the reviewer's next run starts empty"
            );
            assert_eq!(
                output(fixture, &spec, Agent::Analyst, "analysis.md")
                    .await
                    .as_deref(),
                Some("The plan."),
                "another agent's outputs stay"
            );
        }
    ),
    case!(
        a_commit_in_the_worktree_moves_the_head_and_counts_as_ahead,
        |fixture| {
            let spec = task_spec(1);
            let prepared = prepare(fixture, &spec, Agent::Developer).await;
            assert_eq!(
                ahead(fixture, &spec).await,
                0,
                "a new branch is at its base"
            );
            let base = head(fixture, &spec).await;
            let commit = fixture.agent_commits(&spec, &prepared).await;
            assert_ne!(commit, base);
            assert_eq!(head(fixture, &spec).await, commit);
            assert_eq!(ahead(fixture, &spec).await, 1);
            let merges = fixture
                .workspace()
                .merges_cleanly(&spec, &commit)
                .await
                .expect("tested");
            assert!(merges, "a branch on an unmoved base merges cleanly");
        }
    ),
    case!(
        leftovers_are_committed_once_and_nothing_is_no_commit,
        |fixture| {
            let spec = task_spec(1);
            let prepared = prepare(fixture, &spec, Agent::Developer).await;
            let workspace = fixture.workspace();
            assert_eq!(
                workspace
                    .commit_leftovers(&spec, "ET-1: leftovers")
                    .await
                    .expect("ran"),
                None
            );
            fixture.agent_leaves_uncommitted(&spec, &prepared).await;
            let commit = workspace
                .commit_leftovers(&spec, "ET-1: leftovers")
                .await
                .expect("ran")
                .expect("the change is committed");
            assert_eq!(head(fixture, &spec).await, commit);
            assert_eq!(ahead(fixture, &spec).await, 1);
            assert_eq!(
                workspace
                    .commit_leftovers(&spec, "ET-1: leftovers")
                    .await
                    .expect("ran"),
                None,
                "nothing is left"
            );
        }
    ),
    case!(
        push_returns_the_head_and_the_remote_branch_points_at_it,
        |fixture| {
            let spec = task_spec(1);
            let prepared = prepare(fixture, &spec, Agent::Developer).await;
            let commit = fixture.agent_commits(&spec, &prepared).await;
            let pushed = fixture.workspace().push(&spec).await.expect("pushed");
            assert_eq!(pushed, commit);
            assert_eq!(fixture.remote_head(&spec).await, Some(commit.clone()));
            let again = fixture.workspace().push(&spec).await.expect("pushed again");
            assert_eq!(again, commit, "pushing an unchanged branch changes nothing");
        }
    ),
    case!(
        removing_twice_is_fine_and_a_removed_worktree_can_be_prepared_again,
        |fixture| {
            let spec = task_spec(1);
            let prepared = prepare(fixture, &spec, Agent::Developer).await;
            let commit = fixture.agent_commits(&spec, &prepared).await;
            fixture.workspace().push(&spec).await.expect("pushed");
            for _ in 0..2 {
                fixture.workspace().remove(&spec).await.expect("removed");
            }
            let again = prepare(fixture, &spec, Agent::Developer).await;
            assert_eq!(again.path, prepared.path);
            assert_eq!(
                head(fixture, &spec).await,
                commit,
                "the pushed branch is where work goes on"
            );
        }
    ),
    case!(
        the_analysis_the_analyst_wrote_is_given_to_the_next_agents,
        |fixture| {
            let spec = task_spec(1);
            let analyst = prepare(fixture, &spec, Agent::Analyst).await;
            assert_eq!(analyst.analysis_file, None, "no analysis yet");
            fixture
                .agent_writes_output(&spec, &analyst, Agent::Analyst, "analysis.md", "The plan.")
                .await;
            assert_eq!(
                output(fixture, &spec, Agent::Analyst, "analysis.md")
                    .await
                    .as_deref(),
                Some("The plan.")
            );
            let developer = prepare(fixture, &spec, Agent::Developer).await;
            assert!(developer.analysis_file.is_some(), "{developer:?}");
        }
    ),
    case!(
        a_branch_whose_base_changed_the_same_file_does_not_merge_cleanly,
        |fixture| {
            let spec = task_spec(1);
            let prepared = prepare(fixture, &spec, Agent::Developer).await;
            let commit = fixture.agent_commits(&spec, &prepared).await;
            fixture.base_conflicts_with_the_agents_commit(&spec).await;
            let merges = fixture
                .workspace()
                .merges_cleanly(&spec, &commit)
                .await
                .expect("tested");
            assert!(!merges, "the base changed the same file");
            assert_eq!(head(fixture, &spec).await, commit, "testing moves no ref");
            assert_eq!(ahead(fixture, &spec).await, 1);
        }
    ),
];
