//! Agents' CPU priority (`RunnerConfig::nice`), and agents outliving the threads of their start.

use std::time::Duration;

use orch_agent::{ConfigError, ProcessAgentRunner, RunnerConfig, MAX_NICE};
use orch_core::domain::Agent;
use orch_core::ports::{AgentOutcome, AgentRunner};

use crate::{run_developer, Fixture};

/// Prints the agent's own niceness: field 19 of `/proc/self/stat` (`cut`'s own process; inside
/// a sandbox its `/proc` is the sandbox's).
const PRINT_NICENESS: [&str; 3] = ["/bin/sh", "-c", "cut -d' ' -f19 /proc/self/stat"];

/// The niceness of the calling thread (the one that starts agents in these tests).
fn own_niceness() -> u8 {
    let stat = std::fs::read_to_string("/proc/thread-self/stat").expect("/proc is readable");
    let after_name = &stat[stat.rfind(')').expect("a stat line") + 2..];
    // Field 19 of the line is the 17th after the name (field 2).
    after_name
        .split(' ')
        .nth(16)
        .and_then(|field| field.parse().ok())
        .expect("a niceness from 0 to 19 (tests do not run at a raised priority)")
}

/// Runs `config`'s developer and returns the niceness it printed.
async fn niceness_of_agent(fixture: &Fixture, config: RunnerConfig) -> u8 {
    let (outcome, log) = run_developer(fixture, config).await;
    assert_eq!(outcome, AgentOutcome::Succeeded, "{log}");
    log.trim()
        .parse()
        .unwrap_or_else(|_| panic!("a niceness, got {log:?}"))
}

/// The developer printing its niceness, sandboxed or not, with `nice`.
fn config(fixture: &Fixture, sandboxed: bool, nice: u8) -> RunnerConfig {
    let config = if sandboxed {
        fixture.sandboxed(Agent::Developer, &PRINT_NICENESS)
    } else {
        fixture.config(Agent::Developer, &PRINT_NICENESS)
    };
    RunnerConfig { nice, ..config }
}

#[tokio::test]
async fn agents_run_at_the_configured_lower_priority_sandboxed_or_not() {
    for sandboxed in [true, false] {
        let fixture = Fixture::new();
        let expected = (own_niceness() + 7).min(MAX_NICE);
        assert_eq!(
            niceness_of_agent(&fixture, config(&fixture, sandboxed, 7)).await,
            expected,
            "sandboxed: {sandboxed}"
        );
    }
}

#[tokio::test]
async fn with_nice_zero_agents_run_at_orchs_priority_sandboxed_or_not() {
    for sandboxed in [true, false] {
        let fixture = Fixture::new();
        assert_eq!(
            niceness_of_agent(&fixture, config(&fixture, sandboxed, 0)).await,
            own_niceness(),
            "sandboxed: {sandboxed}"
        );
    }
}

#[test]
fn a_niceness_over_the_maximum_is_refused() {
    let fixture = Fixture::new();
    let mut config = fixture.config(Agent::Developer, &["true"]);
    config.nice = MAX_NICE + 1;
    let errors = ProcessAgentRunner::new(config).expect_err("out of range");
    assert_eq!(errors, [ConfigError::Nice { nice: MAX_NICE + 1 }]);
    assert_eq!(
        errors[0].to_string(),
        "agents.nice: must be at most 19, got 20"
    );
}

/// Linux sends `--die-with-parent`'s signal when the *thread* that spawned `bwrap` ends. A
/// runtime whose idle blocking threads end after 50 ms must not kill a sandbox that runs
/// longer: the spawn happens on the thread that called `start`, not on a blocking thread.
#[test]
fn a_sandbox_outlives_the_blocking_threads_of_its_start() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .thread_keep_alive(Duration::from_millis(50))
        .build()
        .expect("a runtime");
    let fixture = Fixture::new();
    let runner = fixture.runner(fixture.sandboxed(
        Agent::Developer,
        &["/bin/sh", "-c", "sleep 1; echo still here"],
    ));
    let outcome = runtime.block_on(async {
        let agent = runner
            .start(fixture.request(Agent::Developer))
            .await
            .expect("the agent starts");
        agent.wait().await
    });
    let log = fixture.log_text(Agent::Developer);
    assert_eq!(outcome, AgentOutcome::Succeeded, "{log}");
    assert_eq!(log, "still here\n");
}
