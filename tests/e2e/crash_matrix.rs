//! Issue 14's crash matrix: `orch serve` dies like `kill -9` at a named failpoint
//! (`orch_daemon::failpoint`), starts again, and the item still ends merged and Done with one
//! pull request and no agent left over. Slow: set `RUN_SLOW_TESTS=1`.

use std::os::unix::process::ExitStatusExt;
use std::time::{Duration, Instant};

use orch_core::domain::Stage;
use orch_daemon::failpoint;
use orch_daemon::sandbox;

use crate::harness::{alive, approve_to_the_end_then_stop, sandbox, wait_for};
use crate::process::{fix_port, serve_command, wait_ready};

/// How long each analyst run takes: long enough that an agent orphaned by the crash would
/// still run when orch is back, so only the boot's reaping can explain its end.
const ANALYST_RUN: Duration = Duration::from_secs(15);

/// One matrix case: `orch serve` killed at failpoint `$point`, see [`crash_at`].
macro_rules! case {
    ($name:ident, $point:ident, $orphaned:expr) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $name() {
            if std::env::var_os("RUN_SLOW_TESTS").is_none() {
                return;
            }
            crash_at(failpoint::$point, $orphaned).await;
        }
    };
}

case!(
    killed_after_a_notification_before_recording_it,
    NOTIFY_AFTER_SEND_BEFORE_RECORD,
    None
);
case!(
    killed_after_claiming_before_spawning_recovers,
    WORKER_AFTER_CLAIM_BEFORE_SPAWN,
    Some(false)
);
case!(
    killed_after_spawning_before_recording_leaves_no_orphan,
    WORKER_AFTER_SPAWN_BEFORE_RECORD,
    Some(true)
);
case!(
    killed_after_opening_the_pull_request_before_recording_it,
    PUBLISH_AFTER_PR_CREATE_BEFORE_RECORD,
    None
);
case!(
    killed_after_merging_before_recording_the_merge,
    MERGE_AFTER_MERGE_BEFORE_RECORD,
    None
);
case!(
    killed_after_a_plane_comment_before_recording_it,
    TRACKER_AFTER_COMMENT_BEFORE_RECORD,
    None
);
case!(
    killed_after_a_plane_state_change_before_recording_it,
    TRACKER_AFTER_STATE_BEFORE_RECORD,
    None
);
case!(
    killed_after_pushing_before_recording_the_push,
    PUBLISH_AFTER_PUSH_BEFORE_RECORD,
    None
);
case!(
    killed_after_an_agent_exits_before_its_result,
    AGENT_AFTER_EXIT_BEFORE_RESULT,
    None
);

/// The pids of live processes carrying `ORCH_INSTANCE={instance}`.
fn marked(instance: &std::path::Path) -> Vec<u32> {
    let mut wanted = format!("{}=", orch_agent::INSTANCE_VARIABLE).into_bytes();
    wanted.extend_from_slice(instance.as_os_str().as_encoded_bytes());
    std::fs::read_dir("/proc")
        .expect("/proc")
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/environ")).is_ok_and(|environ| {
                environ
                    .split(|byte| *byte == 0)
                    .any(|entry| entry == wanted.as_slice())
            })
        })
        .filter(|pid| alive(*pid))
        .collect()
}

/// Runs one item with `point` armed in the first `orch serve`, then without it in a second.
/// `orphaned`: `Some(true)` when the point lies after an agent's spawn, so the agent must
/// outlive the crash (its own process group, no sandbox) and be killed by the second boot;
/// `Some(false)` when no agent can run yet; `None` when the point is passed at several
/// moments of the flow, with or without an agent running (any survivor must still be reaped).
async fn crash_at(point: &str, orphaned: Option<bool>) {
    let script = format!(
        r#"{{"default": {{"analyst": {{"run_for_ms": {}}}}}, "items": {{}}}}"#,
        ANALYST_RUN.as_millis()
    );
    let (mut sandbox, _dir) = sandbox(&script).await;
    sandbox.set_agent_sandbox("none").expect("sandbox mode set");
    let port = fix_port(&sandbox);
    let instance = orch_daemon::wiring::data_dir(&sandbox.config).join("scratch");
    let mut first = serve_command(&sandbox)
        .env(failpoint::ENV, format!("{point}=kill"))
        .spawn()
        .expect("orch serve starts");
    wait_ready(port).await;
    let (item, _) = sandbox
        .create_item("Survive a failpoint")
        .await
        .expect("item");
    sandbox
        .move_item(&item, "In Progress")
        .await
        .expect("moved");
    let store =
        orch_sqlite::SqliteStore::open(&sandbox.config.storage.db_path).expect("store opens");
    // A person approves along the way, so points past an approval are reached too.
    let items = [item.clone()];
    let mut approver = sandbox::Approver;
    let mut on_act = |_: &orch_core::domain::Task, _: &_| {};
    // The person may see the item end (the PR merged) before the death is seen: the
    // point is then still to be waited for, and a point never passed still times out.
    let status = tokio::select! {
        status = wait_for("orch to die at the failpoint", || {
            let status = first.try_wait().expect("try_wait");
            async move { status }
        }) => status,
        _ = sandbox::play_person(
            &sandbox,
            &store,
            &items,
            &mut approver,
            ANALYST_RUN * 6,
            &mut on_act,
        ) => wait_for("orch to die at the failpoint", || {
            let status = first.try_wait().expect("try_wait");
            async move { status }
        }).await,
    };
    assert_eq!(
        status.signal(),
        Some(9),
        "{point}: orch ended with {status:?}"
    );

    let orphans = marked(&instance);
    match orphaned {
        Some(true) => assert!(!orphans.is_empty(), "{point}: the agent outlives orch"),
        Some(false) => assert!(
            orphans.is_empty(),
            "{point}: no agent was spawned: {orphans:?}"
        ),
        None => {}
    }
    let second = serve_command(&sandbox).spawn().expect("orch serve starts");
    let restarted = Instant::now();
    wait_ready(port).await;
    for orphan in &orphans {
        while alive(*orphan) {
            assert!(
                restarted.elapsed() < ANALYST_RUN / 2,
                "{point}: the orphan agent {orphan} still runs after the restart"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    let task = approve_to_the_end_then_stop(&sandbox, &store, &item, second).await;
    assert_eq!(task.stage, Stage::Done, "{point}");
    assert!(sandbox::merged(&sandbox, Some(&task)), "{point}");
    assert_eq!(
        sandbox.gitea.pulls(orch_daemon::sandbox::REPO).len(),
        1,
        "{point}: exactly one pull request"
    );
    let merges = sandbox
        .gitea
        .mutations()
        .into_iter()
        .filter(|mutation| matches!(mutation, orch_sim::gitea::Mutation::PullMerged { .. }))
        .count();
    assert_eq!(merges, 1, "{point}: exactly one merge");
    assert!(marked(&instance).is_empty(), "{point}: no agent left");
}
