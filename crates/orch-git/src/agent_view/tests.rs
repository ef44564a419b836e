//! Tests of the agent's view of the mirror: git inside a bubblewrap sandbox that shows only
//! what `prepare` asks for, and orch taking the agent's commits afterwards.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use orch_core::domain::Agent;
use orch_core::ids::{BranchName, RepoSlug, WorkItemId};
use orch_core::ports::{MountAccess, PreparedWorktree, Workspace, WorktreeSpec};

use crate::{GitConfig, GitWorkspace};

/// A remote `acme/widgets` with one commit on `main`, and a workspace over it.
struct Fixture {
    dir: tempfile::TempDir,
    workspace: GitWorkspace,
}

impl Fixture {
    fn new() -> Fixture {
        let dir = tempfile::tempdir().expect("temp dir");
        let remote = dir.path().join("remotes/acme/widgets.git");
        std::fs::create_dir_all(&remote).expect("remote dir");
        git(&remote, &["init", "--bare", "--quiet"]);
        let seed = dir.path().join("seed");
        std::fs::create_dir_all(&seed).expect("seed dir");
        git(&seed, &["init", "--quiet"]);
        std::fs::write(seed.join("README.md"), "widgets\n").expect("readme");
        git(&seed, &["add", "README.md"]);
        git(&seed, &["commit", "--quiet", "-m", "initial"]);
        git(
            &seed,
            &[
                "push",
                "--quiet",
                remote.to_str().expect("utf-8"),
                "HEAD:refs/heads/main",
            ],
        );
        let config = GitConfig::new(
            dir.path().join("repos"),
            dir.path().join("remotes").display().to_string(),
        );
        let workspace = GitWorkspace::new(config).expect("workspace");
        Fixture { dir, workspace }
    }

    fn mirror(&self) -> PathBuf {
        self.workspace.repos_dir().join("acme/widgets/mirror.git")
    }

    fn remote(&self) -> PathBuf {
        self.dir.path().join("remotes/acme/widgets.git")
    }

    async fn prepare(&self, spec: &WorktreeSpec) -> PreparedWorktree {
        self.workspace
            .prepare(spec, Agent::Developer)
            .await
            .expect("prepare")
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

/// Runs git for the test itself; returns trimmed stdout.
fn git(cwd: &Path, args: &[&str]) -> String {
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
        .expect("git runs");
    assert!(
        output.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

/// Runs `script` with sh in a bubblewrap sandbox that shows the system, the worktree and the
/// mounts `prepare` returned, the way orch-agent's sandbox does.
fn in_sandbox(prepared: &PreparedWorktree, script: &str) -> Output {
    let mut args: Vec<OsString> = [
        "--die-with-parent",
        "--unshare-pid",
        "--cap-drop",
        "ALL",
        "--ro-bind",
        "/usr",
        "/usr",
        "--proc",
        "/proc",
        "--dev",
        "/dev",
        "--tmpfs",
        "/tmp",
    ]
    .into_iter()
    .map(OsString::from)
    .collect();
    for link in ["/bin", "/lib", "/lib64", "/sbin"] {
        if let Ok(target) = std::fs::read_link(link) {
            args.extend([
                "--symlink".into(),
                target.into_os_string(),
                OsString::from(link),
            ]);
        } else if Path::new(link).is_dir() {
            args.extend(["--ro-bind".into(), link.into(), link.into()]);
        }
    }
    let mut mounts = prepared.mounts.clone();
    mounts.push(orch_core::ports::SandboxMount {
        source: prepared.path.clone(),
        target: prepared.path.clone(),
        access: MountAccess::Writable,
    });
    mounts.sort_by_key(|mount| mount.target.components().count());
    for mount in mounts {
        let flag = match mount.access {
            MountAccess::ReadOnly => "--ro-bind",
            MountAccess::Writable => "--bind",
        };
        args.extend([
            flag.into(),
            mount.source.into_os_string(),
            mount.target.into_os_string(),
        ]);
    }
    args.extend([
        "--chdir".into(),
        prepared.path.clone().into_os_string(),
        "--".into(),
        "/bin/sh".into(),
        "-c".into(),
        script.into(),
    ]);
    Command::new("bwrap")
        .args(args)
        .env_clear()
        .env("PATH", "/usr/local/bin:/usr/bin:/bin")
        .env("HOME", "/tmp")
        .env("GIT_AUTHOR_NAME", "agent")
        .env("GIT_AUTHOR_EMAIL", "agent@localhost")
        .env("GIT_COMMITTER_NAME", "agent")
        .env("GIT_COMMITTER_EMAIL", "agent@localhost")
        .env("MIRROR", prepared.mounts[0].target.as_os_str())
        .output()
        .expect("bwrap runs")
}

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

#[tokio::test]
async fn an_agent_commits_on_its_branch_in_a_sandbox_and_orch_takes_the_commits() {
    let fixture = Fixture::new();
    let spec = spec("ET-001");
    let prepared = fixture.prepare(&spec).await;
    let before = fixture.workspace.head_sha(&spec).await.expect("head");

    let output = in_sandbox(
        &prepared,
        r#"set -e
        git status --short --branch
        echo feature > feature.txt
        git add feature.txt
        git commit --quiet -m 'agent: add the feature'
        git log --oneline -2
        git diff HEAD~1 --stat
        git status --short"#,
    );
    assert!(output.status.success(), "{}", text(&output));
    assert!(
        text(&output).contains("## feature/ET-001-add-a-thing"),
        "{}",
        text(&output)
    );

    let head = fixture.workspace.head_sha(&spec).await.expect("head");
    assert_ne!(head, before, "orch sees the agent's commit");
    assert_eq!(
        git(
            &fixture.mirror(),
            &["log", "--format=%s", "-1", head.as_str()]
        ),
        "agent: add the feature"
    );
    assert_eq!(
        fixture.workspace.commits_ahead(&spec).await.expect("ahead"),
        1
    );
    assert_eq!(
        fixture
            .workspace
            .commit_leftovers(&spec, "leftovers")
            .await
            .expect("commit"),
        None,
        "the worktree is clean for orch too"
    );
    let pushed = fixture.workspace.push(&spec).await.expect("push");
    assert_eq!(pushed, head);
    assert_eq!(
        git(
            &fixture.remote(),
            &["rev-parse", "refs/heads/feature/ET-001-add-a-thing"]
        ),
        head.as_str()
    );

    // The next run starts from the adopted commit.
    let again = fixture.prepare(&spec).await;
    let output = in_sandbox(&again, "git log --format=%s -1");
    assert_eq!(
        String::from_utf8_lossy(&output.stdout).trim(),
        "agent: add the feature"
    );
}

#[tokio::test]
async fn an_agent_cannot_touch_other_branches_orch_refs_the_config_or_hooks() {
    let fixture = Fixture::new();
    let ours = spec("ET-001");
    let theirs = spec("ET-002");
    let prepared = fixture.prepare(&ours).await;
    let other = fixture.prepare(&theirs).await;
    fixture.workspace.push(&ours).await.expect("push");
    let config_before = std::fs::read_to_string(fixture.mirror().join("config")).expect("config");
    let refs_before = git(&fixture.mirror(), &["for-each-ref"]);
    let hooks_before = std::fs::read_dir(fixture.mirror().join("hooks"))
        .map(|entries| entries.count())
        .unwrap_or(0);

    let script = format!(
        r#"
        git branch --list --all
        echo listed
        git commit --quiet --allow-empty -m mine
        git update-ref refs/heads/feature/ET-002-add-a-thing HEAD && echo wrote-other-branch
        git update-ref refs/orch/pushed/feature/ET-001-add-a-thing HEAD && echo wrote-lease
        git update-ref refs/remotes/origin/main HEAD && echo wrote-remote-ref
        git config core.hooksPath /tmp/evil && echo wrote-config
        printf '[core]\n\tfsmonitor = /tmp/evil\n' >> "$MIRROR/config"
        mkdir -p "$MIRROR/hooks" && printf '#!/bin/sh\ntouch /tmp/pwned\n' > "$MIRROR/hooks/pre-commit"
        ls "$MIRROR"
        test -e {other} && echo sees-other-worktree
        test -e "$MIRROR/worktrees/ET-002" && echo sees-other-admin
        "#,
        other = other.path.display()
    );
    let output = in_sandbox(&prepared, &script);
    let said = text(&output);
    assert!(!said.contains("sees-other"), "{said}");
    let listed = said.split("listed").next().unwrap_or_default();
    assert!(
        listed.contains("feature/ET-001") && !listed.contains("feature/ET-002"),
        "{said}"
    );

    assert_eq!(
        std::fs::read_to_string(fixture.mirror().join("config")).expect("config"),
        config_before
    );
    assert_eq!(
        std::fs::read_dir(fixture.mirror().join("hooks"))
            .map(|entries| entries.count())
            .unwrap_or(0),
        hooks_before
    );
    let refs_after = git(&fixture.mirror(), &["for-each-ref"]);
    for name in [
        "refs/heads/feature/ET-002-add-a-thing",
        "refs/orch/pushed/feature/ET-001-add-a-thing",
        "refs/remotes/origin/main",
    ] {
        let line = |refs: &str| {
            refs.lines()
                .find(|line| line.ends_with(name))
                .map(str::to_owned)
        };
        assert_eq!(line(&refs_after), line(&refs_before), "{name} changed");
    }
    // The agent's own branch moved: its commit is taken, nothing else.
    fixture.workspace.head_sha(&ours).await.expect("head");
    assert_eq!(
        git(
            &fixture.mirror(),
            &[
                "log",
                "--format=%s",
                "-1",
                "refs/heads/feature/ET-001-add-a-thing"
            ]
        ),
        "mine"
    );
}

#[tokio::test]
async fn orch_commits_leftovers_with_its_own_repository_whatever_the_worktree_points_at() {
    let fixture = Fixture::new();
    let spec = spec("ET-001");
    let prepared = fixture.prepare(&spec).await;
    let pwned = fixture.dir.path().join("pwned");
    // The agent builds a repository whose config runs a filter, points the worktree's `.git`
    // at it, and asks for the filter on every file; it also sets the filter in its own copy
    // of the mirror's config.
    let script = format!(
        r#"set -e
        git init --quiet --bare .evil
        git -C .evil symbolic-ref HEAD refs/heads/feature/ET-001-add-a-thing
        git -C .evil config core.bare false
        printf '[filter "x"]\n\tclean = touch {pwned}; cat\n' >> .evil/config
        git config filter.x.clean 'touch {pwned}; cat'
        printf '* filter=x\n' > .gitattributes
        echo leftover > leftover.txt
        printf 'gitdir: %s/.evil\n' "$PWD" > .git
        "#,
        pwned = pwned.display()
    );
    let output = in_sandbox(&prepared, &script);
    assert!(output.status.success(), "{}", text(&output));

    let committed = fixture
        .workspace
        .commit_leftovers(&spec, "leftovers")
        .await
        .expect("orch commits in its own repository");
    assert!(committed.is_some());
    assert!(!pwned.exists(), "orch's git ran the agent's filter");
    assert_eq!(
        git(
            &fixture.mirror(),
            &[
                "show",
                "--format=",
                "--name-only",
                "refs/heads/feature/ET-001-add-a-thing"
            ]
        )
        .lines()
        .filter(|name| name.starts_with("leftover"))
        .count(),
        1
    );
    // The next prepare gives the agent a working checkout again.
    let again = fixture.prepare(&spec).await;
    let output = in_sandbox(&again, "git status --short --branch");
    assert!(output.status.success(), "{}", text(&output));
}

#[tokio::test]
async fn commits_the_agent_packed_away_are_taken_too() {
    let fixture = Fixture::new();
    let spec = spec("ET-001");
    let prepared = fixture.prepare(&spec).await;
    let output = in_sandbox(
        &prepared,
        "git commit --quiet --allow-empty -m packed && git pack-refs --all --prune && git gc --quiet",
    );
    assert!(output.status.success(), "{}", text(&output));
    let head = fixture.workspace.head_sha(&spec).await.expect("head");
    assert_eq!(
        git(
            &fixture.mirror(),
            &["log", "--format=%s", "-1", head.as_str()]
        ),
        "packed"
    );
}

#[tokio::test]
async fn a_branch_the_agent_set_to_no_commit_is_not_taken() {
    let fixture = Fixture::new();
    let spec = spec("ET-001");
    fixture.prepare(&spec).await;
    let before = fixture.workspace.head_sha(&spec).await.expect("head");
    let view = fixture
        .workspace
        .repos_dir()
        .join("acme/widgets/agent-git/ET-001");
    std::fs::write(
        view.join("refs/heads/feature/ET-001-add-a-thing"),
        "0123456789abcdef0123456789abcdef01234567\n",
    )
    .expect("written");
    assert_eq!(
        fixture.workspace.head_sha(&spec).await.expect("head"),
        before
    );
    // A link in its place is not followed.
    std::fs::remove_file(view.join("refs/heads/feature/ET-001-add-a-thing")).expect("removed");
    std::os::unix::fs::symlink(
        fixture.mirror().join("refs/remotes/origin/main"),
        view.join("refs/heads/feature/ET-001-add-a-thing"),
    )
    .expect("link");
    assert_eq!(
        fixture.workspace.head_sha(&spec).await.expect("head"),
        before
    );
}

#[tokio::test]
async fn without_a_sandbox_the_agent_commits_directly_and_nothing_is_taken_back() {
    let fixture = Fixture::new();
    let spec = spec("ET-001");
    let prepared = fixture.prepare(&spec).await;
    git(
        &prepared.path,
        &["commit", "--quiet", "--allow-empty", "-m", "direct"],
    );
    let head = fixture.workspace.head_sha(&spec).await.expect("head");
    fixture.prepare(&spec).await;
    assert_eq!(
        fixture.workspace.head_sha(&spec).await.expect("head"),
        head,
        "the untouched copy did not revert the branch"
    );
    assert_eq!(
        git(
            &fixture.mirror(),
            &["log", "--format=%s", "-1", head.as_str()]
        ),
        "direct"
    );
}

#[tokio::test]
async fn remove_takes_the_agent_copy_and_its_record_away() {
    let fixture = Fixture::new();
    let spec = spec("ET-001");
    fixture.prepare(&spec).await;
    let view = fixture
        .workspace
        .repos_dir()
        .join("acme/widgets/agent-git/ET-001");
    assert!(view.join("HEAD").is_file());
    fixture.workspace.remove(&spec).await.expect("remove");
    assert!(!view.exists());
    assert!(!git(&fixture.mirror(), &["for-each-ref", "refs/orch/agent/"]).contains("ET-001"));
}
