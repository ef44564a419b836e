//! Issue 14's crash matrix: `orch serve` dies like `kill -9` at a named failpoint
//! (`orch_daemon::failpoint`), starts again, and the item still ends merged and Done with every
//! outside effect exactly once, counted from the simulators' records (one pull request, one
//! merge, one COMMENT review, one analysis and one review comment, no Telegram message twice
//! unless the repeat says it may be one) and no agent left over. Slow: set `RUN_SLOW_TESTS=1`.

use std::collections::BTreeMap;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use orch_core::domain::{JobStatus, Stage};
use orch_core::executor::MAY_REPEAT;
use orch_core::ports::Store;
use orch_daemon::failpoint;
use orch_daemon::sandbox::{self, Sandbox};
use orch_sim::plane::{DeliveryOutcome, DeliveryRecord};

use crate::harness::{alive, approve_to_the_end_then_stop, sandbox, wait_for};
use crate::process::{fix_port, serve_command, wait_ready};

/// How long each analyst run takes: long enough that an agent orphaned by the crash would
/// still run when orch is back, so only the boot's reaping can explain its end.
const ANALYST_RUN: Duration = Duration::from_secs(15);

/// How a case brings the first `orch serve` to its failpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Way {
    /// The item's flow passes the point.
    Flow,
    /// A `SIGHUP` while the analyst runs: the reload passes the point.
    Hangup,
    /// orch starts on a database of schema version 1 (an upgrade fixture) and migrates it.
    OldSchema,
    /// The first webhook's inbox commit passes the point; after the restart the test sends
    /// every Plane delivery that got no answer again, as Plane does: same body and signature,
    /// a new delivery id.
    Webhook,
}

/// One matrix case: `orch serve` killed at failpoint `$point`, see [`crash_at`].
macro_rules! case {
    ($name:ident, $point:ident, $orphaned:expr) => {
        case!($name, $point, $orphaned, Way::Flow);
    };
    ($name:ident, $point:ident, $orphaned:expr, $way:expr) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $name() {
            if std::env::var_os("RUN_SLOW_TESTS").is_none() {
                return;
            }
            crash_at(failpoint::$point, $orphaned, $way).await;
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
case!(
    killed_mid_reload_recovers,
    RELOAD_MID_SWAP,
    Some(true),
    Way::Hangup
);
case!(
    killed_between_two_migration_steps_finishes_the_migration,
    MIGRATE_BETWEEN_STEPS,
    Some(false),
    Way::OldSchema
);
case!(
    killed_after_committing_a_webhook_before_answering_it_processes_it_once,
    INGRESS_AFTER_COMMIT_BEFORE_ANSWER,
    Some(false),
    Way::Webhook
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
async fn crash_at(point: &str, orphaned: Option<bool>, way: Way) {
    let script = format!(
        r#"{{"default": {{"analyst": {{"run_for_ms": {}}}}}, "items": {{}}}}"#,
        ANALYST_RUN.as_millis()
    );
    let (mut sandbox, _dir) = sandbox(&script).await;
    sandbox.set_agent_sandbox("none").expect("sandbox mode set");
    let port = fix_port(&sandbox);
    let instance = orch_daemon::wiring::data_dir(&sandbox.config).join("scratch");
    let db = sandbox.config.storage.db_path.clone();
    if way == Way::OldSchema {
        put_old_schema(&db);
    }
    let mut first = serve_command(&sandbox)
        .env(failpoint::ENV, format!("{point}=kill"))
        .spawn()
        .expect("orch serve starts");
    let pid = first.id();
    let mut died = || {
        let status = first.try_wait().expect("try_wait");
        async move { status }
    };
    let (status, item) = if way == Way::OldSchema {
        // The migration runs before orch is ready: it dies on the way.
        (
            wait_for("orch to die at the failpoint", &mut died).await,
            None,
        )
    } else {
        wait_ready(port).await;
        let item = start_item(&sandbox).await;
        if way == Way::Hangup {
            hang_up_while_the_analyst_runs(&sandbox, &item, pid).await;
        }
        let store = orch_sqlite::SqliteStore::open(&db).expect("store opens");
        // A person approves along the way, so points past an approval are reached too.
        let items = [item.clone()];
        let mut approver = sandbox::Approver;
        let mut on_act = |_: &orch_core::domain::Task, _: &_| {};
        // The person may see the item end (the PR merged) before the death is seen: the
        // point is then still to be waited for, and a point never passed still times out.
        let status = tokio::select! {
            status = wait_for("orch to die at the failpoint", &mut died) => status,
            _ = sandbox::play_person(
                &sandbox,
                &store,
                &items,
                &mut approver,
                ANALYST_RUN * 6,
                &mut on_act,
            ) => wait_for("orch to die at the failpoint", &mut died).await,
        };
        (status, Some(item))
    };
    assert_eq!(
        status.signal(),
        Some(9),
        "{point}: orch ended with {status:?}"
    );
    if way == Way::OldSchema {
        assert_eq!(
            schema_version(&db),
            2,
            "{point}: the first step (to version 2) committed, the next did not start"
        );
    }

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
    let resent = if way == Way::Webhook {
        send_unanswered_again(&sandbox, port).await
    } else {
        Vec::new()
    };
    if way == Way::OldSchema {
        assert_eq!(schema_version(&db), orch_sqlite::LATEST_VERSION, "{point}");
        assert_eq!(integrity(&db), "ok", "{point}");
    }
    let item = match item {
        Some(item) => item,
        None => start_item(&sandbox).await,
    };
    let store = orch_sqlite::SqliteStore::open(&db).expect("store opens");
    let task = approve_to_the_end_then_stop(&sandbox, &store, &item, second).await;
    assert_eq!(task.stage, Stage::Done, "{point}");
    assert!(sandbox::merged(&sandbox, Some(&task)), "{point}");
    assert_effects_once(&sandbox, &item, point);
    assert!(marked(&instance).is_empty(), "{point}: no agent left");
    if way == Way::OldSchema {
        assert_eq!(integrity(&db), "ok", "{point}: after the item's whole flow");
    }
    if way == Way::Webhook {
        assert_stored_once(&db, &resent, point);
    }
}

/// Creates a work item and moves it to In Progress; returns its Plane id.
async fn start_item(sandbox: &Sandbox) -> String {
    let (item, _) = sandbox
        .create_item("Survive a failpoint")
        .await
        .expect("item");
    sandbox
        .move_item(&item, "In Progress")
        .await
        .expect("moved");
    item
}

/// Sends `SIGHUP` to orch (`pid`) once the analyst of `item` runs, so the reload swaps the
/// services under a running job.
async fn hang_up_while_the_analyst_runs(sandbox: &Sandbox, item: &str, pid: u32) {
    let store =
        orch_sqlite::SqliteStore::open(&sandbox.config.storage.db_path).expect("store opens");
    wait_for("the analyst to run", || async {
        let task = sandbox.task(&store, item).await.ok()??;
        let jobs = store.jobs_of_task(task.id).await.ok()?;
        jobs.iter()
            .any(|job| {
                job.status == JobStatus::Running && job.kind().is_agent() && job.process.is_some()
            })
            .then_some(())
    })
    .await;
    let sent = Command::new("kill")
        .args(["-HUP", &pid.to_string()])
        .status()
        .expect("kill runs");
    assert!(sent.success(), "SIGHUP sent");
}

/// Exactly one of each outside effect of the item, counted from the simulators' records.
/// Telegram has no idempotency key: a message orch sent but could not record before
/// `notify.after_send_before_record` is sent again, and the repeat says it may be one; no
/// other message is sent twice.
fn assert_effects_once(sandbox: &Sandbox, item: &str, point: &str) {
    assert_eq!(
        sandbox.gitea.pulls(orch_daemon::sandbox::REPO).len(),
        1,
        "{point}: exactly one pull request"
    );
    let gitea = sandbox.gitea.mutations();
    let merges = gitea
        .iter()
        .filter(|mutation| matches!(mutation, orch_sim::gitea::Mutation::PullMerged { .. }))
        .count();
    assert_eq!(merges, 1, "{point}: exactly one merge");
    let reviews: Vec<&String> = gitea
        .iter()
        .filter_map(|mutation| match mutation {
            orch_sim::gitea::Mutation::ReviewPosted { event, .. } => Some(event),
            _ => None,
        })
        .collect();
    assert_eq!(reviews, ["COMMENT"], "{point}: exactly one COMMENT review");
    let comments = sandbox.plane.comments(item);
    let count = |title: &str| {
        comments
            .iter()
            .filter(|comment| comment.html.contains(title))
            .count()
    };
    assert_eq!(
        (count("Analysis by orch"), count("Review by orch")),
        (1, 1),
        "{point}: one analysis and one review comment: {comments:#?}"
    );

    // Each message's own text (before the links), and how often it came plain and marked.
    let mut sent: BTreeMap<String, (u32, u32)> = BTreeMap::new();
    for message in sandbox.telegram.messages() {
        let visible = message.visible_text();
        let text = visible.split("\n\n").next().unwrap_or_default();
        match text.strip_suffix(&format!(" {MAY_REPEAT}")) {
            Some(text) => sent.entry(text.to_owned()).or_default().1 += 1,
            None => sent.entry(text.to_owned()).or_default().0 += 1,
        }
    }
    for (text, (plain, marked)) in &sent {
        assert!(
            *plain <= 1 && *marked <= 1,
            "{point}: {text:?} sent {plain} times plain and {marked} times marked"
        );
    }
    if point == failpoint::NOTIFY_AFTER_SEND_BEFORE_RECORD {
        assert!(
            sent.values().any(|counts| *counts == (1, 1)),
            "{point}: the message orch sent before dying is sent again, saying it may repeat: {sent:#?}"
        );
    }
}

/// Sends every Plane delivery that got no answer (orch was dead) again, as Plane retries:
/// same body and signature under a new delivery id. Each is answered `202` now.
async fn send_unanswered_again(sandbox: &Sandbox, port: u16) -> Vec<DeliveryRecord> {
    let unanswered: Vec<DeliveryRecord> = sandbox
        .plane
        .deliveries()
        .into_iter()
        .filter(|delivery| matches!(delivery.outcome, DeliveryOutcome::NetworkError(_)))
        .collect();
    assert!(!unanswered.is_empty(), "the killed delivery got no answer");
    let url = format!("http://127.0.0.1:{port}/webhooks/plane");
    for (attempt, delivery) in unanswered.iter().enumerate() {
        let headers = [
            ("Content-Type", "application/json".to_owned()),
            (
                "X-Plane-Delivery",
                format!("{}-retry-{attempt}", delivery.delivery_id),
            ),
            ("X-Plane-Event", delivery.event.clone()),
            ("X-Plane-Signature", delivery.signature.clone()),
        ]
        .map(|(name, value)| (name.to_owned(), value));
        let answer =
            orch_sim::webhook::post(&url, &headers, bytes::Bytes::from(delivery.body.clone()))
                .await;
        assert_eq!(answer.ok(), Some(202), "{}", delivery.delivery_id);
    }
    unanswered
}

/// Each resent delivery is in the inbox once, processed: the first one under the id it had
/// when orch died after committing it (its retry was a duplicate), the others under their
/// retry's id.
fn assert_stored_once(db: &Path, resent: &[DeliveryRecord], point: &str) {
    let conn = rusqlite::Connection::open(db).expect("database opens");
    for (index, delivery) in resent.iter().enumerate() {
        let rows: Vec<(String, Option<i64>)> = conn
            .prepare(
                "SELECT delivery_id, processed_at FROM inbox WHERE source = 'plane' AND body = ?1",
            )
            .expect("query")
            .query_map([&delivery.body], |row| Ok((row.get(0)?, row.get(1)?)))
            .expect("rows")
            .collect::<Result<_, _>>()
            .expect("rows read");
        assert_eq!(rows.len(), 1, "{point}: stored once: {rows:?}");
        assert!(rows[0].1.is_some(), "{point}: processed: {rows:?}");
        if index == 0 {
            assert_eq!(
                rows[0].0, delivery.delivery_id,
                "{point}: the delivery orch committed before dying"
            );
        }
    }
}

/// Replaces the sandbox's database with the upgrade fixture of schema version 1.
fn put_old_schema(db: &Path) {
    for suffix in ["", "-wal", "-shm"] {
        let mut path = db.as_os_str().to_owned();
        path.push(suffix);
        match std::fs::remove_file(PathBuf::from(path)) {
            Ok(()) => {}
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
            Err(err) => panic!("cannot remove the sandbox's database: {err}"),
        }
    }
    let fixture =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../crates/orch-sqlite/tests/fixtures/v1.db");
    if let Some(dir) = db.parent() {
        std::fs::create_dir_all(dir).expect("the database's directory");
    }
    std::fs::copy(&fixture, db).expect("the v1 fixture is copied");
    assert_eq!(schema_version(db), 1);
}

fn schema_version(db: &Path) -> i64 {
    rusqlite::Connection::open(db)
        .expect("database opens")
        .query_row("PRAGMA user_version", [], |row| row.get(0))
        .expect("user_version")
}

fn integrity(db: &Path) -> String {
    rusqlite::Connection::open(db)
        .expect("database opens")
        .query_row("PRAGMA integrity_check", [], |row| row.get(0))
        .expect("integrity_check")
}
