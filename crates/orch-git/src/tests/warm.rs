//! `GitWorkspace` with a warm mirror (`GitConfig::warm`): prepares without the network, and
//! what makes them fetch again.

use std::time::Duration;

use orch_core::domain::Agent;
use orch_core::ids::CommitSha;
use orch_core::ports::{Workspace, WorkspaceError};

use super::{person_commits, spec, Fixture};
use crate::pool::POOL_SIZE;

const LONG: Duration = Duration::from_secs(3600);

fn fetches(fixture: &Fixture) -> usize {
    fixture
        .invocations()
        .iter()
        .filter(|invocation| invocation.args.first().map(String::as_str) == Some("fetch"))
        .count()
}

/// Prepares the task's worktree and commits a file in it.
async fn orch_commits(fixture: &Fixture, spec: &orch_core::ports::WorktreeSpec) {
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
}

/// `orch_commits`, then pushes; returns the pushed head.
async fn orch_pushes(fixture: &Fixture, spec: &orch_core::ports::WorktreeSpec) -> CommitSha {
    orch_commits(fixture, spec).await;
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

/// The git subcommands run since `from` invocations, but for the pool's background refills
/// (which run in the pool's own directories).
pub(super) fn subcommands_since(fixture: &Fixture, from: usize) -> Vec<String> {
    let pool = fixture.repos().join("acme/widgets/pool");
    fixture.invocations()[from..]
        .iter()
        .filter(|invocation| {
            !invocation
                .cwd
                .as_ref()
                .is_some_and(|cwd| cwd.starts_with(&pool))
        })
        .map(|invocation| invocation.args.join(" "))
        .collect()
}

#[tokio::test]
async fn a_warm_prepare_starts_no_git_process_and_the_next_stage_none() {
    // The dispatch path (SPEC §7: an agent started within 25 ms of its job) reads and writes
    // refs as files and takes its worktree from the pool, made ahead in the background.
    let fixture = Fixture::warm(LONG);
    let repo = spec("ET-300").repo;
    fixture
        .workspace
        .prepare(&spec("ET-300"), Agent::Analyst)
        .await
        .expect("warm the mirror");
    fixture.workspace.pool_settled(&repo).await;
    assert_eq!(fixture.workspace.pool_entries(&repo).len(), POOL_SIZE);
    let before = fixture.invocations().len();
    let prepared = fixture
        .workspace
        .prepare(&spec("ET-301"), Agent::Analyst)
        .await
        .expect("first prepare");
    assert!(prepared.path.join("README.md").is_file());
    assert_eq!(subcommands_since(&fixture, before), Vec::<String>::new());
    let branch = spec("ET-301").branch;
    assert_eq!(
        super::sh(&prepared.path, &["symbolic-ref", "--short", "HEAD"]),
        branch.as_str()
    );
    assert_eq!(
        super::sh(
            &prepared.path,
            &["status", "--porcelain", "--untracked-files=no"]
        ),
        "",
        "the adopted checkout and its index are whole"
    );

    let before = fixture.invocations().len();
    let again = fixture
        .workspace
        .prepare(&spec("ET-301"), Agent::Developer)
        .await
        .expect("next stage");
    assert_eq!(again.path, prepared.path);
    assert_eq!(subcommands_since(&fixture, before), Vec::<String>::new());
}

#[tokio::test]
async fn without_a_pool_entry_a_new_worktree_starts_only_its_checkout() {
    // The first prepare of a repository: the pool is empty. Refs are written in process.
    let fixture = Fixture::warm(LONG);
    let before = fixture.invocations().len();
    fixture
        .workspace
        .prepare(&spec("ET-302"), Agent::Analyst)
        .await
        .expect("prepare");
    let started = subcommands_since(&fixture, before);
    let expected = ["init", "fetch", "reset --hard --quiet"];
    assert_eq!(started.len(), expected.len(), "{started:?}");
    for (args, start) in started.iter().zip(expected) {
        assert!(args.starts_with(start), "{started:?}");
    }
}

#[tokio::test]
async fn a_worktree_whose_directory_vanished_is_made_again() {
    let fixture = Fixture::warm(LONG);
    let prepared = fixture
        .workspace
        .prepare(&spec("ET-310"), Agent::Analyst)
        .await
        .expect("prepare");
    // Registered under another name whose directory is gone, as a crash or a person could
    // leave it: the branch's worktree is made again all the same.
    let admin = fixture
        .repos()
        .join("acme/widgets/mirror.git/worktrees/ET-310");
    let moved = fixture
        .repos()
        .join("acme/widgets/mirror.git/worktrees/ET-310-old");
    std::fs::rename(&admin, &moved).expect("rename the registration");
    std::fs::remove_dir_all(&prepared.path).expect("remove the worktree");
    let again = fixture
        .workspace
        .prepare(&spec("ET-310"), Agent::Developer)
        .await
        .expect("prepare again");
    assert!(again.path.join("README.md").is_file());
}

#[tokio::test]
async fn a_checkout_a_crash_left_unfinished_is_made_again() {
    let fixture = Fixture::warm(LONG);
    let prepared = fixture
        .workspace
        .prepare(&spec("ET-320"), Agent::Analyst)
        .await
        .expect("prepare");
    // As a crash between writing the registration and the checkout leaves it.
    let admin = fixture
        .repos()
        .join("acme/widgets/mirror.git/worktrees/ET-320");
    std::fs::remove_file(admin.join("index")).expect("remove the index");
    std::fs::remove_file(prepared.path.join("README.md")).expect("remove a file");
    let again = fixture
        .workspace
        .prepare(&spec("ET-320"), Agent::Developer)
        .await
        .expect("prepare again");
    assert!(again.path.join("README.md").is_file());
    assert!(admin.join("index").is_file());
    assert_eq!(
        fixture
            .workspace
            .commit_leftovers(&spec("ET-320"), "nothing")
            .await
            .expect("commit"),
        None,
        "the checkout is whole: nothing to commit"
    );
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

/// Waits until the background refresh a prepare started has ended, at most 10 s.
async fn refreshed(fixture: &Fixture) {
    let state = fixture.workspace.mirror_state(&spec("ET-200").repo);
    for _ in 0..1000 {
        if !state.freshness().refreshing {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("the background refresh did not end");
}

#[tokio::test]
async fn an_aged_mirror_is_refreshed_in_the_background_not_on_dispatch() {
    let fixture = Fixture::warm(Duration::from_millis(50));
    let old = fixture
        .workspace
        .prepare(&spec("ET-230"), Agent::Analyst)
        .await
        .expect("prepare");
    let old = super::sh(&old.path, &["rev-parse", "HEAD"]);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let main = person_commits(&fixture, "new.md", "new\n", "HEAD:refs/heads/main");
    // The forge's webhook was lost: only the age says the mirror may be behind. The test
    // holds the fetches' turn, so the refresh the prepare starts cannot end before it.
    let state = fixture.workspace.mirror_state(&spec("ET-231").repo);
    let gate = state.remote_refs.lock().await;
    let prepared = tokio::time::timeout(
        Duration::from_secs(10),
        fixture.workspace.prepare(&spec("ET-231"), Agent::Analyst),
    )
    .await
    .expect("the prepare does not wait for the refresh it started")
    .expect("prepare");
    assert_eq!(
        super::sh(&prepared.path, &["rev-parse", "HEAD"]),
        old,
        "the mirror as it was"
    );
    assert_eq!(fetches(&fixture), 1);
    assert!(state.freshness().refreshing, "a refresh was started");
    drop(gate);
    refreshed(&fixture).await;
    assert_eq!(fetches(&fixture), 2);
    let prepared = fixture
        .workspace
        .prepare(&spec("ET-232"), Agent::Analyst)
        .await
        .expect("prepare");
    assert_eq!(super::sh(&prepared.path, &["rev-parse", "HEAD"]), main);
}

/// Waits until the mirror is older than `Fixture::warm`'s 50 ms, at most 10 s.
async fn aged(fixture: &Fixture) {
    let state = fixture.workspace.mirror_state(&spec("ET-200").repo);
    for _ in 0..1000 {
        if state.is_aged(Duration::from_millis(50)) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("the mirror did not age");
}

#[tokio::test]
async fn a_background_refresh_that_never_ends_does_not_stop_later_ones() {
    let fixture = Fixture::warm(Duration::from_millis(50));
    fixture
        .workspace
        .prepare(&spec("ET-235"), Agent::Analyst)
        .await
        .expect("prepare");
    aged(&fixture).await;
    // The refresh the next prepare starts waits for the fetches' turn the test holds; then the
    // runtime it runs on shuts down under it, so its task never ends normally.
    let state = fixture.workspace.mirror_state(&spec("ET-236").repo);
    let gate = state.remote_refs.lock().await;
    let workspace = fixture.workspace.shared();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        runtime
            .block_on(workspace.prepare(&spec("ET-236"), Agent::Analyst))
            .expect("prepare");
    })
    .join()
    .expect("the prepare's thread");
    assert!(
        !state.freshness().refreshing,
        "a refresh whose task was dropped is no longer under way"
    );
    drop(gate);
    // So the next aged prepare starts a refresh again, which brings the person's commit in.
    let main = person_commits(&fixture, "later.md", "later\n", "HEAD:refs/heads/main");
    fixture
        .workspace
        .prepare(&spec("ET-237"), Agent::Analyst)
        .await
        .expect("prepare");
    refreshed(&fixture).await;
    let prepared = fixture
        .workspace
        .prepare(&spec("ET-238"), Agent::Analyst)
        .await
        .expect("prepare");
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

#[tokio::test]
async fn a_moved_base_makes_no_prepare_fetch_and_its_refresh_brings_it_to_new_branches() {
    let fixture = Fixture::warm(LONG);
    let existing = spec("ET-270");
    let first = fixture
        .workspace
        .prepare(&existing, Agent::Analyst)
        .await
        .expect("prepare");
    let old = super::sh(&first.path, &["rev-parse", "HEAD"]);
    assert_eq!(
        fetches(&fixture),
        1,
        "the first prepare since start fetches"
    );
    // A merge moves the base; its push webhook names it (the daemon then refreshes).
    let main = person_commits(&fixture, "merged.md", "merged\n", "HEAD:refs/heads/main");
    let main_sha = CommitSha::new(main.clone()).expect("sha");
    assert!(fixture
        .workspace
        .remote_changed(&existing.repo, &existing.base_branch, &main_sha));

    fixture
        .workspace
        .prepare(&existing, Agent::Developer)
        .await
        .expect("the next stage");
    let prepared = fixture
        .workspace
        .prepare(&spec("ET-271"), Agent::Analyst)
        .await
        .expect("a new task");
    assert_eq!(
        fetches(&fixture),
        1,
        "the base is in the mirror: neither prepare fetches"
    );
    assert_eq!(
        super::sh(&prepared.path, &["rev-parse", "HEAD"]),
        old,
        "a new branch starts from the base as the mirror has it"
    );

    fixture
        .workspace
        .refresh(&existing.repo)
        .await
        .expect("the webhook's refresh");
    let prepared = fixture
        .workspace
        .prepare(&spec("ET-272"), Agent::Analyst)
        .await
        .expect("a new task");
    assert_eq!(fetches(&fixture), 2, "the refresh only");
    assert_eq!(super::sh(&prepared.path, &["rev-parse", "HEAD"]), main);
}

#[tokio::test]
async fn a_burst_of_refreshes_is_served_by_at_most_two_fetches() {
    let fixture = std::sync::Arc::new(Fixture::warm(LONG));
    let repo = spec("ET-275").repo;
    let mut refreshes = tokio::task::JoinSet::new();
    for _ in 0..8 {
        let fixture = fixture.clone();
        let repo = repo.clone();
        refreshes.spawn(async move { fixture.workspace.refresh(&repo).await });
    }
    while let Some(refreshed) = refreshes.join_next().await {
        refreshed.expect("joined").expect("refresh");
    }
    // The one in flight, and one started after every refresh asked while it ran.
    assert!(fetches(&fixture) <= 2, "{:?}", fixture.invocations());

    // A refresh asked after the last fetch ended still fetches.
    let main = person_commits(&fixture, "new.md", "new\n", "HEAD:refs/heads/main");
    let before = fetches(&fixture);
    fixture.workspace.refresh(&repo).await.expect("refresh");
    assert_eq!(fetches(&fixture), before + 1);
    let prepared = fixture
        .workspace
        .prepare(&spec("ET-275"), Agent::Analyst)
        .await
        .expect("prepare");
    assert_eq!(super::sh(&prepared.path, &["rev-parse", "HEAD"]), main);
}

type HeldPush = tokio::task::JoinHandle<Result<CommitSha, WorkspaceError>>;

/// Pushes `spec`'s branch with the fixture's remote holding every push once it reached it
/// (a pre-receive hook), and returns when it got there: the push, and the file whose creation
/// lets it go on.
async fn held_push(
    fixture: &std::sync::Arc<Fixture>,
    spec: &orch_core::ports::WorktreeSpec,
) -> (HeldPush, std::path::PathBuf) {
    use std::os::unix::fs::PermissionsExt as _;
    let started = fixture.dir.path().join("push-started");
    let release = fixture.dir.path().join("push-release");
    let hook = fixture.remote().join("hooks").join("pre-receive");
    std::fs::create_dir_all(hook.parent().expect("hooks")).expect("hooks dir");
    std::fs::write(
        &hook,
        format!(
            "#!/bin/sh\ncat >/dev/null\ntouch '{}'\nwhile [ ! -e '{}' ]; do sleep 0.05; done\n",
            started.display(),
            release.display()
        ),
    )
    .expect("hook");
    std::fs::set_permissions(&hook, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let push = {
        let fixture = fixture.clone();
        let spec = spec.clone();
        tokio::spawn(async move { fixture.workspace.push(&spec).await })
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !started.exists() {
        assert!(
            std::time::Instant::now() < deadline,
            "the push never reached the remote"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    (push, release)
}

#[tokio::test]
async fn a_push_on_the_network_holds_up_no_prepare_of_another_branch() {
    let fixture = std::sync::Arc::new(Fixture::warm(LONG));
    let pushed = spec("ET-280");
    orch_commits(&fixture, &pushed).await;
    let (push, release) = held_push(&fixture, &pushed).await;

    // While the push waits on the remote: a new task, and the next stage of one.
    let other = tokio::time::timeout(
        Duration::from_secs(10),
        fixture.workspace.prepare(&spec("ET-281"), Agent::Analyst),
    )
    .await
    .expect("a prepare of another branch does not wait for the push")
    .expect("prepare");
    assert!(other.path.join("README.md").is_file());
    tokio::time::timeout(
        Duration::from_secs(10),
        fixture.workspace.prepare(&spec("ET-281"), Agent::Developer),
    )
    .await
    .expect("nor does its next stage")
    .expect("prepare");
    assert!(!push.is_finished(), "the push is still held by the remote");
    // A fetch waits for its turn: it and the push both write the remote-tracking refs.
    let refresh = {
        let fixture = fixture.clone();
        let repo = pushed.repo.clone();
        tokio::spawn(async move { fixture.workspace.refresh(&repo).await })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!refresh.is_finished(), "the fetch waits for the push");

    std::fs::write(&release, "").expect("release");
    let sha = push.await.expect("joined").expect("push");
    refresh.await.expect("joined").expect("refresh");
    let tip = super::sh(&fixture.remote(), &["rev-parse", pushed.branch.as_str()]);
    assert_eq!(tip, sha.as_str());
    let mirror = fixture.repos().join("acme/widgets/mirror.git");
    let tracking = format!("refs/remotes/origin/{}", pushed.branch.as_str());
    assert_eq!(super::sh(&mirror, &["rev-parse", &tracking]), sha.as_str());
}

#[tokio::test]
async fn a_prepare_of_a_branch_being_pushed_waits_for_the_push() {
    let fixture = std::sync::Arc::new(Fixture::warm(LONG));
    let pushed = spec("ET-285");
    orch_commits(&fixture, &pushed).await;
    let (push, release) = held_push(&fixture, &pushed).await;
    // The branch's turn: the next stage's prepare (which may adopt the agent's commits and
    // move the branch) starts once the push of the head it read has ended.
    let prepare = {
        let fixture = fixture.clone();
        let pushed = pushed.clone();
        tokio::spawn(async move { fixture.workspace.prepare(&pushed, Agent::Reviewer).await })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !prepare.is_finished(),
        "the prepare waits for the branch's push"
    );
    std::fs::write(&release, "").expect("release");
    let sha = push.await.expect("joined").expect("push");
    let prepared = prepare.await.expect("joined").expect("prepare");
    assert_eq!(
        super::sh(&prepared.path, &["rev-parse", "HEAD"]),
        sha.as_str()
    );
}

#[tokio::test]
async fn the_next_stage_of_a_whole_worktree_needs_no_registration_turn() {
    let fixture = Fixture::warm(LONG);
    let item = spec("ET-290");
    let first = fixture
        .workspace
        .prepare(&item, Agent::Analyst)
        .await
        .expect("prepare");
    // Another item's registration (or a pool refill) holds the turn.
    let state = fixture.workspace.mirror_state(&item.repo);
    let turn = state.worktrees.lock().await;
    let next = tokio::time::timeout(
        Duration::from_secs(10),
        fixture.workspace.prepare(&item, Agent::Developer),
    )
    .await
    .expect("the whole worktree is used as it is, without the turn")
    .expect("prepare");
    assert_eq!(next.path, first.path);

    // Nor does a new worktree no pool entry serves: a task branch a person pushed.
    let other = spec("ET-291");
    let theirs = person_commits(
        &fixture,
        "theirs.md",
        "theirs\n",
        &format!("HEAD:refs/heads/{}", other.branch),
    );
    let sha = CommitSha::new(theirs.clone()).expect("sha");
    assert!(fixture
        .workspace
        .remote_changed(&other.repo, &other.branch, &sha));
    let made = tokio::time::timeout(
        Duration::from_secs(10),
        fixture.workspace.prepare(&other, Agent::Analyst),
    )
    .await
    .expect("a new worktree is registered without the turn")
    .expect("prepare");
    assert_eq!(super::sh(&made.path, &["rev-parse", "HEAD"]), theirs);

    // A worktree that needs repair (an agent rewrote its `.git`) waits for the turn.
    std::fs::write(first.path.join(".git"), "gitdir: /elsewhere\n").expect("write");
    let waiting = tokio::time::timeout(
        Duration::from_millis(300),
        fixture.workspace.prepare(&item, Agent::Reviewer),
    )
    .await;
    assert!(waiting.is_err(), "a repair takes the turn");
    drop(turn);
    let repaired = fixture
        .workspace
        .prepare(&item, Agent::Reviewer)
        .await
        .expect("prepare");
    assert_eq!(
        std::fs::read_to_string(repaired.path.join(".git")).expect("read"),
        format!(
            "gitdir: {}\n",
            fixture
                .repos()
                .join("acme/widgets/mirror.git/worktrees/ET-290")
                .display()
        )
    );
}

#[tokio::test]
async fn what_orch_pushed_is_forgotten_when_the_items_worktree_is_removed() {
    let fixture = Fixture::warm(LONG);
    let spec = spec("ET-260");
    let head = orch_pushes(&fixture, &spec).await;
    let state = fixture.workspace.mirror_state(&spec.repo);
    assert!(
        !fixture
            .workspace
            .remote_changed(&spec.repo, &spec.branch, &head),
        "orch's own push is no news"
    );
    fixture.workspace.remove(&spec).await.expect("remove");
    assert!(
        state.freshness().pushed.is_empty(),
        "a daemon running for months keeps no record per finished item"
    );
}
