//! How runs end: exit codes, a program that cannot start, timeout, stall and cancel.

use std::time::Duration;

use orch_agent::process_record;
use orch_core::domain::Agent;
use orch_core::ports::{AgentOutcome, AgentRunner};

use crate::{eventually, is_running, read_pid_file, slow_tests_enabled, timed, Fixture};

/// Scheduling noise allowed on top of the timeout and grace a test configures (SPEC §5.4
/// allows the agent's timeout plus 10 s; the machine running the tests may be busy).
const SLACK: Duration = Duration::from_secs(3);

/// Starts a background `sleep` (its pid in `grandchild.pid`) and waits for it.
const WAITS_ON_A_GRANDCHILD: &str =
    r#"sleep 1000 & echo $! > "$ORCH_OUTPUT_DIR/grandchild.pid"; wait"#;
/// The same, but the shell and the sleep ignore SIGTERM, so only SIGKILL ends them.
const IGNORES_SIGTERM: &str =
    r#"trap "" TERM; sleep 1000 & echo $! > "$ORCH_OUTPUT_DIR/grandchild.pid"; wait"#;

#[tokio::test]
async fn non_zero_exit_is_failed_with_its_code() {
    let fixture = Fixture::new();
    let runner = fixture.runner(fixture.config(Agent::Developer, &["/bin/sh", "-c", "exit 3"]));
    let agent = runner
        .start(fixture.request(Agent::Developer))
        .await
        .expect("the agent starts");
    assert_eq!(agent.wait().await, AgentOutcome::Failed { code: Some(3) });
}

#[tokio::test]
async fn a_program_that_does_not_exist_could_not_start() {
    let fixture = Fixture::new();
    let runner = fixture.runner(fixture.config(Agent::Developer, &["/nonexistent/agent", "-p"]));
    let agent = runner
        .start(fixture.request(Agent::Developer))
        .await
        .expect("a handle even so");
    assert_eq!(agent.process(), None);
    agent.cancel_handle().cancel();
    match agent.wait().await {
        AgentOutcome::CouldNotStart { reason } => {
            assert!(reason.starts_with("/nonexistent/agent: "), "{reason}")
        }
        other => panic!("expected could not start, got {other:?}"),
    }
}

#[tokio::test]
async fn a_missing_worktree_could_not_start() {
    let fixture = Fixture::new();
    let runner = fixture.runner(fixture.config(Agent::Developer, &["/bin/true"]));
    let mut request = fixture.request(Agent::Developer);
    request.worktree = fixture.dir.path().join("no-such-worktree");
    let agent = runner.start(request).await.expect("a handle even so");
    assert!(matches!(
        agent.wait().await,
        AgentOutcome::CouldNotStart { .. }
    ));
}

#[tokio::test]
async fn the_process_record_names_the_group_leader_and_its_start_time() {
    let fixture = Fixture::new();
    let runner =
        fixture.runner(fixture.config(Agent::Developer, &["/bin/sh", "-c", "cat > /dev/null"]));
    let agent = runner
        .start(fixture.request(Agent::Developer))
        .await
        .expect("the agent starts");
    let record = agent.process().expect("a spawned agent has a record");
    assert_eq!(record.pgid, record.pid, "the agent leads its own group");
    assert_ne!(
        record.pgid,
        process_record(std::process::id())
            .expect("this process exists")
            .pgid
    );
    assert_eq!(process_record(record.pid), Some(record));
    // `cat` reads the prompt from stdin and ends.
    assert_eq!(agent.wait().await, AgentOutcome::Succeeded);
}

#[tokio::test]
async fn timeout_ends_a_cooperative_agent_and_its_grandchild_without_waiting_for_the_grace() {
    let fixture = Fixture::new();
    let mut config = fixture.config(Agent::Developer, &["/bin/sh", "-c", WAITS_ON_A_GRANDCHILD]);
    config
        .roles
        .get_mut(&Agent::Developer)
        .expect("configured")
        .timeout = Duration::from_millis(300);
    config.kill_grace = Duration::from_secs(30);
    let runner = fixture.runner(config);

    let agent = runner
        .start(fixture.request(Agent::Developer))
        .await
        .expect("the agent starts");
    let leader = agent.process().expect("spawned").pid;
    let (outcome, elapsed) = timed(agent.wait()).await;

    assert_eq!(outcome, AgentOutcome::TimedOut);
    assert!(
        elapsed < Duration::from_millis(300) + SLACK,
        "took {elapsed:?}"
    );
    let grandchild = read_pid_file(&fixture.output_dir().join("grandchild.pid")).await;
    assert!(
        eventually(|| !is_running(grandchild) && !is_running(leader)).await,
        "the group survived"
    );
}

#[tokio::test]
async fn timeout_ends_an_agent_and_its_grandchild_that_ignore_sigterm_within_timeout_and_grace() {
    if !slow_tests_enabled() {
        return;
    }
    let fixture = Fixture::new();
    let mut config = fixture.config(Agent::Developer, &["/bin/sh", "-c", IGNORES_SIGTERM]);
    let timeout = Duration::from_millis(500);
    let grace = Duration::from_millis(700);
    config
        .roles
        .get_mut(&Agent::Developer)
        .expect("configured")
        .timeout = timeout;
    config.kill_grace = grace;
    let runner = fixture.runner(config);

    let agent = runner
        .start(fixture.request(Agent::Developer))
        .await
        .expect("the agent starts");
    let leader = agent.process().expect("spawned").pid;
    let (outcome, elapsed) = timed(agent.wait()).await;

    assert_eq!(outcome, AgentOutcome::TimedOut);
    assert!(
        elapsed >= timeout + grace,
        "SIGKILL came before the grace ended: {elapsed:?}"
    );
    assert!(elapsed < timeout + grace + SLACK, "took {elapsed:?}");
    let grandchild = read_pid_file(&fixture.output_dir().join("grandchild.pid")).await;
    assert!(
        eventually(|| !is_running(grandchild) && !is_running(leader)).await,
        "the group survived"
    );
}

#[tokio::test]
async fn an_agent_silent_for_the_stall_timeout_is_ended_as_stalled() {
    let fixture = Fixture::new();
    let mut config = fixture.config(
        Agent::Developer,
        &["/bin/sh", "-c", "echo started; exec sleep 1000"],
    );
    config.stall_timeout = Duration::from_millis(300);
    let runner = fixture.runner(config);

    let agent = runner
        .start(fixture.request(Agent::Developer))
        .await
        .expect("the agent starts");
    let (outcome, elapsed) = timed(agent.wait()).await;

    assert_eq!(outcome, AgentOutcome::Stalled);
    assert!(
        elapsed < Duration::from_millis(300) + SLACK,
        "took {elapsed:?}"
    );
    assert_eq!(fixture.log_text(Agent::Developer), "started\n");
}

#[tokio::test]
async fn an_agent_that_keeps_talking_is_not_stalled() {
    let fixture = Fixture::new();
    let script = "for step in 1 2 3 4 5 6; do echo $step; sleep 0.1; done";
    let mut config = fixture.config(Agent::Developer, &["/bin/sh", "-c", script]);
    config.stall_timeout = Duration::from_millis(400);
    let runner = fixture.runner(config);

    let agent = runner
        .start(fixture.request(Agent::Developer))
        .await
        .expect("the agent starts");
    assert_eq!(agent.wait().await, AgentOutcome::Succeeded);
    assert_eq!(fixture.log_text(Agent::Developer), "1\n2\n3\n4\n5\n6\n");
}

#[tokio::test]
async fn cancel_ends_the_agent_and_its_grandchild() {
    let fixture = Fixture::new();
    let runner =
        fixture.runner(fixture.config(Agent::Developer, &["/bin/sh", "-c", WAITS_ON_A_GRANDCHILD]));

    let agent = runner
        .start(fixture.request(Agent::Developer))
        .await
        .expect("the agent starts");
    let leader = agent.process().expect("spawned").pid;
    let grandchild = read_pid_file(&fixture.output_dir().join("grandchild.pid")).await;
    let cancel = agent.cancel_handle();
    cancel.cancel();
    cancel.cancel();
    let (outcome, elapsed) = timed(agent.wait()).await;

    assert_eq!(outcome, AgentOutcome::Cancelled);
    assert!(elapsed < SLACK, "took {elapsed:?}");
    assert!(
        eventually(|| !is_running(grandchild) && !is_running(leader)).await,
        "the group survived"
    );
}

#[tokio::test]
async fn what_a_successful_agent_leaves_running_in_its_group_is_ended() {
    let fixture = Fixture::new();
    let script = r#"sleep 1000 > /dev/null 2>&1 & echo $! > "$ORCH_OUTPUT_DIR/grandchild.pid""#;
    let runner = fixture.runner(fixture.config(Agent::Developer, &["/bin/sh", "-c", script]));

    let agent = runner
        .start(fixture.request(Agent::Developer))
        .await
        .expect("the agent starts");
    assert_eq!(agent.wait().await, AgentOutcome::Succeeded);

    let grandchild = read_pid_file(&fixture.output_dir().join("grandchild.pid")).await;
    assert!(
        eventually(|| !is_running(grandchild)).await,
        "the leftover survived"
    );
}

#[tokio::test]
async fn a_leftover_that_ignores_sigterm_is_killed_after_the_grace() {
    let fixture = Fixture::new();
    let script = r#"trap "" TERM; sleep 1000 & echo $! > "$ORCH_OUTPUT_DIR/grandchild.pid""#;
    let mut config = fixture.config(Agent::Developer, &["/bin/sh", "-c", script]);
    let grace = Duration::from_millis(300);
    config.kill_grace = grace;
    let runner = fixture.runner(config);

    let agent = runner
        .start(fixture.request(Agent::Developer))
        .await
        .expect("the agent starts");
    let (outcome, elapsed) = timed(agent.wait()).await;

    assert_eq!(outcome, AgentOutcome::Succeeded);
    assert!(
        elapsed >= grace,
        "SIGKILL came before the grace ended: {elapsed:?}"
    );
    assert!(elapsed < grace + SLACK, "took {elapsed:?}");
    let grandchild = read_pid_file(&fixture.output_dir().join("grandchild.pid")).await;
    assert!(
        eventually(|| !is_running(grandchild)).await,
        "the leftover survived"
    );
}
