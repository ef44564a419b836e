//! The `Workspace` contract suite of orch-core, run against `GitWorkspace` with real git and
//! `GiteaSim` as the remote.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use async_trait::async_trait;
use orch_core::domain::Agent;
use orch_core::fakes::contract::{self, WorkspaceFixture};
use orch_core::ids::CommitSha;
use orch_core::ports::{PreparedWorktree, Workspace, WorktreeSpec};
use orch_git::{GitConfig, GitWorkspace};
use orch_sim::gitea::{GiteaSim, LocalClone};
use tempfile::TempDir;

const GIT_TIMEOUT: Duration = Duration::from_secs(60);

#[tokio::test]
async fn git_workspace_keeps_the_workspace_contract() {
    contract::workspace(|_case| GitFixture::start()).await;
}

/// A workspace in a temporary directory whose remote is `acme/widgets` on a `GiteaSim`.
struct GitFixture {
    sim: GiteaSim,
    workspace: GitWorkspace,
    _dir: TempDir,
}

impl GitFixture {
    async fn start() -> GitFixture {
        let sim = GiteaSim::start().await.expect("sim");
        sim.create_repo("acme", "widgets").await.expect("repo");
        let dir = tempfile::tempdir().expect("temp dir");
        let mut config = GitConfig::new(dir.path().join("repos"), sim.base_url());
        config.token = Some(sim.token().to_owned());
        config.command_timeout = GIT_TIMEOUT;
        let workspace = GitWorkspace::new(config).expect("workspace");
        GitFixture {
            sim,
            workspace,
            _dir: dir,
        }
    }
}

/// What an agent's own git does in its worktree; returns what git printed.
fn agent_git(worktree: &Path, args: &[&str]) -> String {
    let output = Command::new("git")
        .args([
            "-c",
            "user.name=Agent",
            "-c",
            "user.email=agent@example.invalid",
        ])
        .args(args)
        .current_dir(worktree)
        .output()
        .expect("git runs");
    assert!(
        output.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("git prints text")
}

#[async_trait]
impl WorkspaceFixture for GitFixture {
    fn workspace(&self) -> &dyn Workspace {
        &self.workspace
    }

    async fn agent_writes_output(
        &self,
        _spec: &WorktreeSpec,
        prepared: &PreparedWorktree,
        _agent: Agent,
        name: &str,
        text: &str,
    ) {
        std::fs::create_dir_all(&prepared.output_dir).expect("the output dir exists");
        std::fs::write(prepared.output_dir.join(name), text).expect("the output is written");
    }

    async fn agent_commits(&self, spec: &WorktreeSpec, prepared: &PreparedWorktree) -> CommitSha {
        let file = format!("{}.md", spec.work_item);
        std::fs::write(prepared.path.join(&file), "work\n").expect("written");
        agent_git(&prepared.path, &["add", "--", &file]);
        agent_git(&prepared.path, &["commit", "--quiet", "-m", "Agent's work"]);
        let head = agent_git(&prepared.path, &["rev-parse", "HEAD"]);
        CommitSha::new(head.trim()).expect("git prints a sha")
    }

    async fn agent_leaves_uncommitted(&self, spec: &WorktreeSpec, prepared: &PreparedWorktree) {
        let file = format!("{}-leftover.md", spec.work_item);
        std::fs::write(prepared.path.join(file), "left over\n").expect("written");
    }

    async fn base_conflicts_with_the_agents_commit(&self, spec: &WorktreeSpec) {
        let person = LocalClone::new(&self.sim, &spec.repo.to_string())
            .await
            .expect("clone");
        person
            .checkout_new("main", "origin/main")
            .await
            .expect("checkout");
        person
            .commit_file(
                &format!("{}.md", spec.work_item),
                "the base's own version\n",
                "Change the same file on main",
            )
            .await
            .expect("commit");
        person.push("HEAD:refs/heads/main").await.expect("push");
    }

    async fn remote_head(&self, spec: &WorktreeSpec) -> Option<CommitSha> {
        self.sim
            .branch_tip(&spec.repo.to_string(), spec.branch.as_str())
            .await
            .expect("the remote answers")
            .map(|tip| CommitSha::new(tip).expect("git prints a sha"))
    }
}
