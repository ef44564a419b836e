//! The worktree pool (`pool`): entries made ahead, adopted, made stale, swept, kept from
//! `git worktree prune`, and every crash window of an adoption repaired by the next prepare.

use std::path::{Path, PathBuf};
use std::time::Duration;

use orch_core::domain::Agent;
use orch_core::ports::{Workspace, WorktreeSpec};

use super::warm::subcommands_since;
use super::{person_commits, sh, spec, Fixture};
use crate::pool::POOL_SIZE;
use crate::{GitConfig, GitWorkspace};

const LONG: Duration = Duration::from_secs(3600);

impl Fixture {
    fn mirror(&self) -> PathBuf {
        self.repos().join("acme/widgets/mirror.git")
    }

    fn pool_dir(&self) -> PathBuf {
        self.repos().join("acme/widgets/pool")
    }

    /// A warm fixture whose pool is full, made by preparing `warm_item` first.
    async fn with_full_pool(warm_item: &str) -> Fixture {
        let fixture = Fixture::warm(LONG);
        fixture
            .workspace
            .prepare(&spec(warm_item), Agent::Analyst)
            .await
            .expect("warm the mirror");
        fixture.workspace.pool_settled(&spec(warm_item).repo).await;
        fixture
    }

    /// A new `GitWorkspace` over the same `repos_dir`, as orch started again after a crash.
    fn restarted(&self) -> GitWorkspace {
        let mut config = GitConfig::new(
            self.repos(),
            self.dir.path().join("remotes").display().to_string(),
        );
        config.warm = Some(LONG);
        let mut workspace = GitWorkspace::new(config).expect("workspace");
        workspace.git.record_into(self.recorder.clone());
        workspace
    }
}

/// The names in `dir`, sorted.
fn names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .map(|entry| {
                    entry
                        .expect("entry")
                        .file_name()
                        .to_string_lossy()
                        .into_owned()
                })
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

fn pool_admins(fixture: &Fixture) -> Vec<String> {
    names(&fixture.mirror().join("worktrees"))
        .into_iter()
        .filter(|name| name.starts_with(".orch-pool-"))
        .collect()
}

/// Asserts the pool on disk is exactly the ready entries, each checked out at `head`.
fn assert_pool_is(fixture: &Fixture, workspace: &GitWorkspace, head: &str) {
    let entries = workspace.pool_entries(&spec("ET-001").repo);
    assert_eq!(entries.len(), POOL_SIZE);
    let numbers: Vec<String> = entries.iter().map(u64::to_string).collect();
    let mut sorted = numbers.clone();
    sorted.sort();
    assert_eq!(
        names(&fixture.pool_dir()),
        sorted,
        "nothing else in the pool"
    );
    let admins: Vec<String> = numbers.iter().map(|n| format!(".orch-pool-{n}")).collect();
    let mut admins_sorted = admins.clone();
    admins_sorted.sort();
    assert_eq!(
        pool_admins(fixture),
        admins_sorted,
        "no other pool registration"
    );
    for n in &numbers {
        let entry = fixture.pool_dir().join(n);
        assert_eq!(sh(&entry, &["rev-parse", "HEAD"]), head);
        assert!(entry.join("README.md").is_file());
    }
}

/// Asserts `spec`'s worktree is a whole checkout on its branch, unlocked, that git itself
/// (with the links as written) sees as registered.
fn assert_whole_worktree(fixture: &Fixture, path: &Path, spec: &WorktreeSpec) {
    assert_eq!(
        sh(path, &["symbolic-ref", "--short", "HEAD"]),
        spec.branch.as_str()
    );
    assert_eq!(
        sh(path, &["status", "--porcelain", "--untracked-files=no"]),
        ""
    );
    let admin = fixture
        .mirror()
        .join("worktrees")
        .join(spec.work_item.to_string());
    assert!(
        !admin.join("locked").exists(),
        "adopted worktrees are unlocked"
    );
    let list = sh(&fixture.mirror(), &["worktree", "list", "--porcelain"]);
    assert!(
        list.contains(&format!("worktree {}", path.display())),
        "{list}"
    );
}

#[tokio::test]
async fn an_adopted_worktree_is_the_items_own_and_the_pool_is_made_full_again() {
    let fixture = Fixture::with_full_pool("ET-400").await;
    let spec = spec("ET-401");
    let main = sh(&fixture.remote(), &["rev-parse", "main"]);
    assert_pool_is(&fixture, &fixture.workspace, &main);
    let taken = fixture.workspace.pool_entries(&spec.repo);

    let prepared = fixture
        .workspace
        .prepare(&spec, Agent::Analyst)
        .await
        .expect("prepare");
    assert_whole_worktree(&fixture, &prepared.path, &spec);
    // The sandbox mounts the item's own directories only: no pool entry is in its view.
    let pool = fixture.pool_dir();
    for mount in &prepared.mounts {
        assert!(!mount.source.starts_with(&pool), "{mount:?}");
        assert!(
            !mount.source.to_string_lossy().contains(".orch-pool-"),
            "{mount:?}"
        );
    }
    fixture.workspace.pool_settled(&spec.repo).await;
    assert_pool_is(&fixture, &fixture.workspace, &main);
    assert_ne!(fixture.workspace.pool_entries(&spec.repo), taken);

    // The adopted worktree works like any other: commit, push, remove.
    std::fs::write(prepared.path.join("new.md"), "new\n").expect("write");
    let committed = fixture
        .workspace
        .commit_leftovers(&spec, "orch")
        .await
        .expect("commit");
    assert!(committed.is_some());
    let pushed = fixture.workspace.push(&spec).await.expect("push");
    assert_eq!(Some(pushed), committed);
    fixture.workspace.remove(&spec).await.expect("remove");
    assert!(!prepared.path.exists());
    assert!(!fixture.mirror().join("worktrees/ET-401").exists());
    assert_pool_is(&fixture, &fixture.workspace, &main);
}

#[tokio::test]
async fn worktree_prune_keeps_the_pool_and_a_half_adopted_worktree() {
    let fixture = Fixture::with_full_pool("ET-410").await;
    let repo = spec("ET-410").repo;
    let main = sh(&fixture.remote(), &["rev-parse", "main"]);
    let entries = fixture.workspace.pool_entries(&repo);
    // The crash window with the links still naming the entry's old place.
    let n = entries[0];
    let admin = fixture.mirror().join("worktrees/ET-411");
    let worktree = fixture.repos().join("acme/widgets/worktrees/ET-411");
    std::fs::rename(
        fixture.mirror().join(format!("worktrees/.orch-pool-{n}")),
        &admin,
    )
    .expect("rename admin");
    std::fs::rename(fixture.pool_dir().join(n.to_string()), &worktree).expect("rename tree");

    sh(&fixture.mirror(), &["worktree", "prune"]);
    assert!(
        admin.join("index").is_file(),
        "a locked registration is kept"
    );
    assert_eq!(pool_admins(&fixture).len(), POOL_SIZE - 1);
    assert_eq!(
        sh(
            &fixture.pool_dir().join(entries[1].to_string()),
            &["rev-parse", "HEAD"]
        ),
        main
    );
}

/// Moves pool entry `n` to `item`'s paths as an adoption does, stopping after `steps` of its
/// steps: 1 admin renamed, 2 worktree renamed, 3 `HEAD` attached, 4 links rewritten.
fn adopt_partly(fixture: &Fixture, n: u64, item: &str, steps: usize) {
    let admin = fixture.mirror().join("worktrees").join(item);
    let worktree = fixture.repos().join("acme/widgets/worktrees").join(item);
    std::fs::create_dir_all(worktree.parent().expect("parent")).expect("worktrees dir");
    let branch = spec(item).branch;
    let head = sh(&fixture.remote(), &["rev-parse", "main"]);
    // `prepare` creates the branch before it looks for a worktree.
    sh(
        &fixture.mirror(),
        &["update-ref", &format!("refs/heads/{branch}"), &head, ""],
    );
    let actions: [&dyn Fn(); 4] = [
        &|| {
            std::fs::rename(
                fixture.mirror().join(format!("worktrees/.orch-pool-{n}")),
                &admin,
            )
            .expect("rename admin");
        },
        &|| std::fs::rename(fixture.pool_dir().join(n.to_string()), &worktree).expect("rename"),
        &|| {
            std::fs::write(admin.join("HEAD"), format!("ref: refs/heads/{branch}\n"))
                .expect("HEAD");
        },
        &|| {
            std::fs::write(
                worktree.join(".git"),
                format!("gitdir: {}\n", admin.display()),
            )
            .expect(".git");
            std::fs::write(
                admin.join("gitdir"),
                format!("{}\n", worktree.join(".git").display()),
            )
            .expect("gitdir");
        },
    ];
    for action in &actions[..steps] {
        action();
    }
}

#[tokio::test]
async fn every_crash_window_of_an_adoption_is_repaired_by_the_next_prepare() {
    for steps in 1..=4 {
        let fixture = Fixture::with_full_pool("ET-420").await;
        let repo = spec("ET-420").repo;
        let main = sh(&fixture.remote(), &["rev-parse", "main"]);
        let n = fixture.workspace.pool_entries(&repo)[0];
        adopt_partly(&fixture, n, "ET-421", steps);
        // orch crashed there; `git worktree prune` may run before it starts again.
        sh(&fixture.mirror(), &["worktree", "prune"]);

        let restarted = fixture.restarted();
        let spec = spec("ET-421");
        let prepared = restarted
            .prepare(&spec, Agent::Developer)
            .await
            .unwrap_or_else(|err| panic!("prepare after {steps} steps: {err}"));
        assert_whole_worktree(&fixture, &prepared.path, &spec);
        assert_eq!(sh(&prepared.path, &["rev-parse", "HEAD"]), main);
        assert_eq!(
            restarted
                .commit_leftovers(&spec, "nothing")
                .await
                .expect("commit"),
            None,
            "after {steps} steps the checkout is whole"
        );
        // The new process's pool: its own entries only, the earlier run's swept.
        restarted.refill_pool(&repo, Some("main"));
        restarted.pool_settled(&repo).await;
        assert_pool_is(&fixture, &restarted, &main);
    }
}

#[tokio::test]
async fn a_moved_base_is_not_served_from_a_stale_entry_and_the_pool_follows_it() {
    let fixture = Fixture::with_full_pool("ET-430").await;
    let repo = spec("ET-430").repo;
    let old = sh(&fixture.remote(), &["rev-parse", "main"]);
    let main = person_commits(&fixture, "new.md", "new\n", "HEAD:refs/heads/main");
    let base = spec("ET-430").base_branch;
    let sha = orch_core::ids::CommitSha::new(main.as_str()).expect("sha");
    assert!(fixture.workspace.remote_changed(&repo, &base, &sha));
    // Before the webhook's refresh: the base as the mirror has it, from the pool, no process.
    let before = fixture.invocations().len();
    let prepared = fixture
        .workspace
        .prepare(&spec("ET-431"), Agent::Analyst)
        .await
        .expect("prepare");
    assert_eq!(sh(&prepared.path, &["rev-parse", "HEAD"]), old);
    assert_eq!(subcommands_since(&fixture, before), Vec::<String>::new());
    fixture.workspace.pool_settled(&repo).await;

    // The refresh moves the mirror's base; its refill is held, so the entries are stale.
    let pool = fixture.workspace.pool(&repo);
    let filling = pool.filling.lock().await;
    fixture.workspace.refresh(&repo).await.expect("refresh");
    let before = fixture.invocations().len();
    let prepared = fixture
        .workspace
        .prepare(&spec("ET-432"), Agent::Analyst)
        .await
        .expect("prepare");
    assert_eq!(sh(&prepared.path, &["rev-parse", "HEAD"]), main);
    assert!(prepared.path.join("new.md").is_file());
    let started = subcommands_since(&fixture, before);
    assert!(
        started.iter().any(|args| args.starts_with("reset --hard")),
        "made, not adopted: {started:?}"
    );
    drop(filling);
    fixture.workspace.pool_settled(&repo).await;
    assert_pool_is(&fixture, &fixture.workspace, &main);

    // A refresh that brings a newer base makes the pool follow without a prepare.
    let newer = person_commits(&fixture, "newer.md", "newer\n", "HEAD:refs/heads/main");
    fixture.workspace.refresh(&repo).await.expect("refresh");
    fixture.workspace.pool_settled(&repo).await;
    assert_pool_is(&fixture, &fixture.workspace, &newer);
    let before = fixture.invocations().len();
    let prepared = fixture
        .workspace
        .prepare(&spec("ET-433"), Agent::Analyst)
        .await
        .expect("prepare");
    assert_eq!(sh(&prepared.path, &["rev-parse", "HEAD"]), newer);
    assert_eq!(subcommands_since(&fixture, before), Vec::<String>::new());
}

#[tokio::test]
async fn a_task_branch_already_on_the_remote_is_checked_out_not_a_pool_entry() {
    let fixture = Fixture::with_full_pool("ET-440").await;
    let spec = spec("ET-441");
    // A lost repos_dir, or a person: the task branch exists on the forge, ahead of main.
    let theirs = person_commits(
        &fixture,
        "theirs.md",
        "theirs\n",
        &format!("HEAD:refs/heads/{}", spec.branch),
    );
    let sha = orch_core::ids::CommitSha::new(theirs.as_str()).expect("sha");
    assert!(fixture
        .workspace
        .remote_changed(&spec.repo, &spec.branch, &sha));
    let prepared = fixture
        .workspace
        .prepare(&spec, Agent::Analyst)
        .await
        .expect("prepare");
    assert_eq!(sh(&prepared.path, &["rev-parse", "HEAD"]), theirs);
    assert!(prepared.path.join("theirs.md").is_file());
    assert_whole_worktree(&fixture, &prepared.path, &spec);
}

#[tokio::test]
async fn a_burst_of_prepares_shares_the_pool_and_keeps_it_bounded() {
    let fixture = std::sync::Arc::new(Fixture::with_full_pool("ET-450").await);
    let mut prepares = tokio::task::JoinSet::new();
    for n in 1..=6 {
        let fixture = fixture.clone();
        prepares.spawn(async move {
            let spec = spec(&format!("ET-45{n}"));
            let prepared = fixture
                .workspace
                .prepare(&spec, Agent::Analyst)
                .await
                .expect("prepare");
            (spec, prepared)
        });
    }
    let mut prepared = Vec::new();
    while let Some(joined) = prepares.join_next().await {
        prepared.push(joined.expect("joined"));
    }
    for (spec, prepared) in &prepared {
        assert_whole_worktree(&fixture, &prepared.path, spec);
    }
    let repo = spec("ET-450").repo;
    fixture.workspace.pool_settled(&repo).await;
    let main = sh(&fixture.remote(), &["rev-parse", "main"]);
    assert_pool_is(&fixture, &fixture.workspace, &main);
}

#[tokio::test]
async fn a_cold_workspace_keeps_no_pool() {
    let fixture = Fixture::new();
    fixture
        .workspace
        .prepare(&spec("ET-460"), Agent::Analyst)
        .await
        .expect("prepare");
    fixture.workspace.pool_settled(&spec("ET-460").repo).await;
    assert!(!fixture.pool_dir().exists());
    assert_eq!(pool_admins(&fixture), Vec::<String>::new());
}

#[tokio::test]
async fn a_workspace_after_a_reload_shares_the_pool_and_locks_of_the_one_it_succeeds() {
    let fixture = Fixture::with_full_pool("ET-470").await;
    let repo = spec("ET-470").repo;
    let main = sh(
        &fixture.mirror(),
        &["rev-parse", "refs/remotes/origin/main"],
    );
    // A reloaded config (a rotated token, say) builds a new workspace over the same repos_dir
    // while jobs given the old one still run.
    let mut config = GitConfig::new(
        fixture.repos(),
        fixture.dir.path().join("remotes").display().to_string(),
    );
    config.warm = Some(LONG);
    let mut next = fixture.workspace.succeeded_by(config).expect("successor");
    next.git.record_into(fixture.recorder.clone());
    let before = fixture.invocations().len();
    let prepared = next
        .prepare(&spec("ET-471"), Agent::Analyst)
        .await
        .expect("prepare");
    assert_eq!(sh(&prepared.path, &["rev-parse", "HEAD"]), main);
    assert_eq!(
        subcommands_since(&fixture, before),
        Vec::<String>::new(),
        "the entry the first workspace made is adopted"
    );
    next.pool_settled(&repo).await;
    fixture.workspace.pool_settled(&repo).await;
    assert_pool_is(&fixture, &fixture.workspace, &main);
    assert_pool_is(&fixture, &next, &main);
    // The old workspace's next prepare takes what the successor refilled, and vice versa.
    let prepared = fixture
        .workspace
        .prepare(&spec("ET-472"), Agent::Analyst)
        .await
        .expect("prepare");
    assert_whole_worktree(&fixture, &prepared.path, &spec("ET-472"));
}
