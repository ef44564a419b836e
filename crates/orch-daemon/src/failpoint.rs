//! Named failpoints: places where a test build of `orch` can be told to die like `kill -9`.
//!
//! Only a build with the `failpoints` feature reads `ORCH_FAILPOINTS`; without it (every
//! `--release` build of the shipped binary) [`hit`] is an empty inline function and the names
//! below are the only trace. The end-to-end test crate enables the feature through its
//! dev-dependency on this crate, so the `orch` binary the tests run has it (see
//! docs/adr/0009-failpoints.md).
//!
//! Points in orch-http and orch-sqlite use this same mechanism: the feature turns on theirs,
//! and [`install`] (the first thing `main` does) hands them [`hit`].
//!
//! `ORCH_FAILPOINTS` is a comma-separated list of `name=action`; the only action is `kill`
//! (SIGKILL to orch itself: no destructor, no flush, no graceful shutdown). It is read once,
//! at the first hit; an unknown name or action makes that first hit panic, so a typo in a
//! test cannot pass as "the point was never reached".

use std::sync::Arc;

use async_trait::async_trait;
use orch_core::domain::{Agent, MergeOutcome};
use orch_core::ids::{
    BranchName, CommitSha, IssueId, PrNumber, ProjectId, RepoSlug, StateId, UserId,
};
use orch_core::ports::{
    CombinedStatus, Comment, Forge, ForgeError, NewPullRequest, Notifier, NotifyError, Ports,
    PreparedWorktree, ProjectStates, PullRequest, StateNames, Subject, Tracker, TrackerError,
    WorkItem, WorkItemPage, Workspace, WorkspaceError, WorktreeSpec,
};
use orch_core::time::Timestamp;

/// The environment variable a test build reads its armed failpoints from.
pub const ENV: &str = "ORCH_FAILPOINTS";

/// Every failpoint orch has. A test iterates this list; [`hit`] refuses names not in it.
pub const NAMES: &[&str] = &[
    WORKER_AFTER_CLAIM_BEFORE_SPAWN,
    WORKER_AFTER_SPAWN_BEFORE_RECORD,
    RELOAD_MID_SWAP,
    PUBLISH_AFTER_PR_CREATE_BEFORE_RECORD,
    MERGE_AFTER_MERGE_BEFORE_RECORD,
    TRACKER_AFTER_COMMENT_BEFORE_RECORD,
    TRACKER_AFTER_STATE_BEFORE_RECORD,
    NOTIFY_AFTER_SEND_BEFORE_RECORD,
    PUBLISH_AFTER_PUSH_BEFORE_RECORD,
    AGENT_AFTER_EXIT_BEFORE_RESULT,
    INGRESS_AFTER_COMMIT_BEFORE_ANSWER,
    MIGRATE_BETWEEN_STEPS,
];

/// A delivery's inbox write committed; its `202` is not written yet (placed in orch-http).
pub const INGRESS_AFTER_COMMIT_BEFORE_ANSWER: &str =
    orch_http::failpoint::INGRESS_AFTER_COMMIT_BEFORE_ANSWER;
/// A schema migration step committed, the next one has not started (placed in orch-sqlite).
pub const MIGRATE_BETWEEN_STEPS: &str = orch_sqlite::failpoint::MIGRATE_BETWEEN_STEPS;

/// A job was claimed (its lease and attempt are stored) and nothing of it has run yet.
pub const WORKER_AFTER_CLAIM_BEFORE_SPAWN: &str = "worker.after_claim_before_spawn";
/// The agent's process group runs, its process record is not stored yet.
pub const WORKER_AFTER_SPAWN_BEFORE_RECORD: &str = "worker.after_spawn_before_record";
/// A reload built the new services and has not published them yet.
pub const RELOAD_MID_SWAP: &str = "reload.mid_swap";
/// `Workspace::push` pushed the task branch; the caller has not recorded the pushed sha yet.
pub const PUBLISH_AFTER_PUSH_BEFORE_RECORD: &str = "publish.after_push_before_record";
/// An agent's process ended; the executor has not turned its outcome into the job's result.
pub const AGENT_AFTER_EXIT_BEFORE_RESULT: &str = "agent.after_exit_before_result";
/// `Forge::ensure_pull_request` returned a pull request; the caller has not stored it yet.
pub const PUBLISH_AFTER_PR_CREATE_BEFORE_RECORD: &str = "publish.after_pr_create_before_record";
/// `Forge::merge` answered; the caller has not recorded the outcome yet.
pub const MERGE_AFTER_MERGE_BEFORE_RECORD: &str = "merge.after_merge_before_record";
/// `Tracker::add_comment` succeeded; the caller has not recorded it yet.
pub const TRACKER_AFTER_COMMENT_BEFORE_RECORD: &str = "tracker.after_comment_before_record";
/// `Tracker::set_state` succeeded; the caller has not recorded it yet.
pub const TRACKER_AFTER_STATE_BEFORE_RECORD: &str = "tracker.after_state_before_record";
/// A notification was delivered; the caller has not recorded it yet.
pub const NOTIFY_AFTER_SEND_BEFORE_RECORD: &str = "notify.after_send_before_record";

/// Passes the failpoint `name`: kills orch if a test armed it, does nothing otherwise.
#[inline]
pub fn hit(name: &'static str) {
    #[cfg(feature = "failpoints")]
    armed::hit(name);
    #[cfg(not(feature = "failpoints"))]
    let _ = name;
}

/// Hands [`hit`] to the crates whose points lie below the daemon (orch-http, orch-sqlite), so
/// one mechanism serves them all. `main` calls it first; without the feature it does nothing.
pub fn install() {
    #[cfg(feature = "failpoints")]
    {
        orch_core::failpoint::install(hit);
    }
}

/// What an armed failpoint does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// SIGKILL to orch itself.
    Kill,
}

/// Reads an `ORCH_FAILPOINTS` value: `name=kill` pairs separated by commas, blanks ignored.
pub fn parse(spec: &str) -> Result<Vec<(&'static str, Action)>, String> {
    let mut armed = Vec::new();
    for entry in spec
        .split(',')
        .map(str::trim)
        .filter(|entry| !entry.is_empty())
    {
        let (name, action) = entry
            .split_once('=')
            .ok_or_else(|| format!("failpoint `{entry}` has no `=action`"))?;
        let name = NAMES
            .iter()
            .copied()
            .find(|known| *known == name.trim())
            .ok_or_else(|| format!("no failpoint is named `{}`", name.trim()))?;
        let action = match action.trim() {
            "kill" => Action::Kill,
            other => return Err(format!("failpoint `{name}`: unknown action `{other}`")),
        };
        armed.push((name, action));
    }
    Ok(armed)
}

/// The forge of `ports`, its tracker, its notifier and its workspace, each behind a wrapper that passes the
/// matching `…_before_record` point right after a call with an outside effect returned `Ok`,
/// before the caller (orch-core, which has no failpoints) can record anything of it.
pub fn wrap_ports(ports: &mut Ports) {
    ports.forge = Arc::new(PointedForge(ports.forge.clone()));
    ports.tracker = Arc::new(PointedTracker(ports.tracker.clone()));
    ports.notifier = Arc::new(PointedNotifier(ports.notifier.clone()));
    ports.workspace = Arc::new(PointedWorkspace(ports.workspace.clone()));
}

/// Passes `name` when `result` is `Ok`, then hands `result` back.
fn after_ok<T, E>(name: &'static str, result: Result<T, E>) -> Result<T, E> {
    if result.is_ok() {
        hit(name);
    }
    result
}

struct PointedForge(Arc<dyn Forge>);

#[async_trait]
impl Forge for PointedForge {
    async fn ensure_pull_request(&self, new: &NewPullRequest) -> Result<PullRequest, ForgeError> {
        after_ok(
            PUBLISH_AFTER_PR_CREATE_BEFORE_RECORD,
            self.0.ensure_pull_request(new).await,
        )
    }

    async fn pull_request(
        &self,
        repo: &RepoSlug,
        number: PrNumber,
    ) -> Result<PullRequest, ForgeError> {
        self.0.pull_request(repo, number).await
    }

    async fn open_pull_request_for_branch(
        &self,
        repo: &RepoSlug,
        head: &BranchName,
        base: &BranchName,
    ) -> Result<Option<PullRequest>, ForgeError> {
        self.0.open_pull_request_for_branch(repo, head, base).await
    }

    async fn open_pull_request_for_sha(
        &self,
        repo: &RepoSlug,
        sha: &CommitSha,
    ) -> Result<Option<PullRequest>, ForgeError> {
        self.0.open_pull_request_for_sha(repo, sha).await
    }

    async fn combined_status(
        &self,
        repo: &RepoSlug,
        sha: &CommitSha,
    ) -> Result<CombinedStatus, ForgeError> {
        self.0.combined_status(repo, sha).await
    }

    async fn merge(
        &self,
        repo: &RepoSlug,
        number: PrNumber,
        head_sha: &CommitSha,
    ) -> Result<MergeOutcome, ForgeError> {
        let outcome = self.0.merge(repo, number, head_sha).await;
        if matches!(outcome, Ok(MergeOutcome::Merged)) {
            hit(MERGE_AFTER_MERGE_BEFORE_RECORD);
        }
        outcome
    }

    async fn review(
        &self,
        repo: &RepoSlug,
        number: PrNumber,
        marker: &str,
        body: &str,
    ) -> Result<(), ForgeError> {
        self.0.review(repo, number, marker, body).await
    }

    async fn comment(
        &self,
        repo: &RepoSlug,
        number: PrNumber,
        marker: &str,
        body: &str,
    ) -> Result<(), ForgeError> {
        self.0.comment(repo, number, marker, body).await
    }

    async fn close_pull_request(
        &self,
        repo: &RepoSlug,
        number: PrNumber,
    ) -> Result<(), ForgeError> {
        self.0.close_pull_request(repo, number).await
    }
}

struct PointedTracker(Arc<dyn Tracker>);

#[async_trait]
impl Tracker for PointedTracker {
    async fn me(&self) -> Result<UserId, TrackerError> {
        self.0.me().await
    }

    async fn project_states(
        &self,
        project: &ProjectId,
        names: &StateNames,
    ) -> Result<ProjectStates, TrackerError> {
        self.0.project_states(project, names).await
    }

    async fn list_work_items(
        &self,
        project: &ProjectId,
        cursor: Option<&str>,
    ) -> Result<WorkItemPage, TrackerError> {
        self.0.list_work_items(project, cursor).await
    }

    async fn work_item(
        &self,
        project: &ProjectId,
        issue: &IssueId,
    ) -> Result<WorkItem, TrackerError> {
        self.0.work_item(project, issue).await
    }

    async fn set_state(
        &self,
        project: &ProjectId,
        issue: &IssueId,
        state: &StateId,
    ) -> Result<Timestamp, TrackerError> {
        after_ok(
            TRACKER_AFTER_STATE_BEFORE_RECORD,
            self.0.set_state(project, issue, state).await,
        )
    }

    async fn comments(
        &self,
        project: &ProjectId,
        issue: &IssueId,
    ) -> Result<Vec<Comment>, TrackerError> {
        self.0.comments(project, issue).await
    }

    async fn add_comment(
        &self,
        project: &ProjectId,
        issue: &IssueId,
        external_id: &str,
        text: &str,
    ) -> Result<(), TrackerError> {
        after_ok(
            TRACKER_AFTER_COMMENT_BEFORE_RECORD,
            self.0.add_comment(project, issue, external_id, text).await,
        )
    }
}

struct PointedNotifier(Arc<dyn Notifier>);

#[async_trait]
impl Notifier for PointedNotifier {
    async fn notify(&self, text: &str) -> Result<(), NotifyError> {
        after_ok(NOTIFY_AFTER_SEND_BEFORE_RECORD, self.0.notify(text).await)
    }

    async fn notify_about(&self, text: &str, subject: &Subject) -> Result<(), NotifyError> {
        after_ok(
            NOTIFY_AFTER_SEND_BEFORE_RECORD,
            self.0.notify_about(text, subject).await,
        )
    }
}

struct PointedWorkspace(Arc<dyn Workspace>);

#[async_trait]
impl Workspace for PointedWorkspace {
    async fn prepare(
        &self,
        spec: &WorktreeSpec,
        agent: Agent,
    ) -> Result<PreparedWorktree, WorkspaceError> {
        self.0.prepare(spec, agent).await
    }

    async fn read_output(
        &self,
        spec: &WorktreeSpec,
        agent: Agent,
        name: &str,
    ) -> Result<Option<String>, WorkspaceError> {
        self.0.read_output(spec, agent, name).await
    }

    async fn commit_leftovers(
        &self,
        spec: &WorktreeSpec,
        message: &str,
    ) -> Result<Option<CommitSha>, WorkspaceError> {
        self.0.commit_leftovers(spec, message).await
    }

    async fn commits_ahead(&self, spec: &WorktreeSpec) -> Result<u32, WorkspaceError> {
        self.0.commits_ahead(spec).await
    }

    async fn head_sha(&self, spec: &WorktreeSpec) -> Result<CommitSha, WorkspaceError> {
        self.0.head_sha(spec).await
    }

    async fn merges_cleanly(
        &self,
        spec: &WorktreeSpec,
        head: &CommitSha,
    ) -> Result<bool, WorkspaceError> {
        self.0.merges_cleanly(spec, head).await
    }

    async fn push(&self, spec: &WorktreeSpec) -> Result<CommitSha, WorkspaceError> {
        after_ok(PUBLISH_AFTER_PUSH_BEFORE_RECORD, self.0.push(spec).await)
    }

    async fn remove(&self, spec: &WorktreeSpec) -> Result<(), WorkspaceError> {
        self.0.remove(spec).await
    }

    fn remote_changed(&self, repo: &RepoSlug, branch: &BranchName, head: &CommitSha) -> bool {
        self.0.remote_changed(repo, branch, head)
    }

    async fn refresh(&self, repo: &RepoSlug) -> Result<(), WorkspaceError> {
        self.0.refresh(repo).await
    }
}

#[cfg(feature = "failpoints")]
mod armed {
    use std::sync::OnceLock;

    use nix::sys::signal::{kill, Signal};
    use nix::unistd::getpid;

    use super::{parse, Action, ENV, NAMES};

    static ARMED: OnceLock<Vec<(&'static str, Action)>> = OnceLock::new();

    pub(super) fn hit(name: &'static str) {
        assert!(
            NAMES.contains(&name),
            "failpoint `{name}` is not listed in NAMES"
        );
        let armed = ARMED.get_or_init(|| {
            let spec = std::env::var(ENV).unwrap_or_default();
            parse(&spec).unwrap_or_else(|err| panic!("{ENV}: {err}"))
        });
        if armed
            .iter()
            .any(|(armed, action)| *armed == name && *action == Action::Kill)
        {
            tracing::warn!(failpoint = name, "failpoint armed: orch kills itself");
            // SIGKILL cannot be caught: nothing after this line runs, like `kill -9`.
            let _ = kill(getpid(), Signal::SIGKILL);
            std::process::abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_list_of_known_names_parses() {
        let spec = format!(" {WORKER_AFTER_CLAIM_BEFORE_SPAWN}=kill ,, {RELOAD_MID_SWAP} = kill ");
        assert_eq!(
            parse(&spec),
            Ok(vec![
                (WORKER_AFTER_CLAIM_BEFORE_SPAWN, Action::Kill),
                (RELOAD_MID_SWAP, Action::Kill),
            ])
        );
        assert_eq!(parse(""), Ok(vec![]));
    }

    #[test]
    fn typos_are_errors() {
        assert!(parse("worker.after_claim=kill")
            .unwrap_err()
            .contains("no failpoint is named"));
        assert!(parse(&format!("{RELOAD_MID_SWAP}=abort"))
            .unwrap_err()
            .contains("unknown action"));
        assert!(parse(RELOAD_MID_SWAP).unwrap_err().contains("no `=action`"));
    }

    #[test]
    fn names_are_unique() {
        let mut names = NAMES.to_vec();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), NAMES.len());
    }

    #[test]
    fn an_unarmed_point_returns() {
        // The test process has no ORCH_FAILPOINTS: passing every point must not kill it.
        assert!(std::env::var(ENV).is_err());
        for name in NAMES {
            hit(name);
        }
    }

    /// Set in the child run of [`an_armed_point_kills_orch_like_kill_9`].
    #[cfg(feature = "failpoints")]
    const CHILD: &str = "ORCH_FAILPOINT_TEST_CHILD";

    #[cfg(feature = "failpoints")]
    #[test]
    fn an_armed_point_kills_orch_like_kill_9() {
        use std::os::unix::process::ExitStatusExt;
        let output = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "failpoint::tests::child_passes_an_armed_point",
                "--nocapture",
            ])
            .env(CHILD, "1")
            .env(ENV, format!("{WORKER_AFTER_SPAWN_BEFORE_RECORD}=kill"))
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert_eq!(output.status.signal(), Some(9), "{stdout}");
        assert!(stdout.contains("before the armed point"), "{stdout}");
        assert!(!stdout.contains("after the armed point"), "{stdout}");
    }

    /// Runs only as the child of the test above: an unarmed point passes, the armed one kills.
    #[cfg(feature = "failpoints")]
    #[test]
    fn child_passes_an_armed_point() {
        if std::env::var(CHILD).is_err() {
            return;
        }
        use std::io::Write;
        let say = |line: &str| {
            let mut out = std::io::stdout();
            writeln!(out, "{line}").and_then(|()| out.flush()).unwrap();
        };
        hit(RELOAD_MID_SWAP);
        say("before the armed point");
        hit(WORKER_AFTER_SPAWN_BEFORE_RECORD);
        say("after the armed point");
    }
}
