//! The agent contract's environment, arguments, prompt and files (SPEC §5.4).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Once;

use orch_core::domain::Agent;
use orch_core::ports::{AgentOutcome, AgentRunner};

use crate::Fixture;

/// A secret in orch's own environment that must never reach an agent.
const PARENT_SECRET_NAME: &str = "ORCH_GITEA_TOKEN";
const PARENT_SECRET_VALUE: &str = "s3cret-gitea-token-of-the-daemon";

fn put_secret_in_parent_environment() {
    static ONCE: Once = Once::new();
    // Set once, before any agent of this test binary reads it; std serialises environment
    // access with `Command::spawn`.
    ONCE.call_once(|| std::env::set_var(PARENT_SECRET_NAME, PARENT_SECRET_VALUE));
}

/// Parses `env` output (one `NAME=value` a line).
fn parse_env(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter_map(|line| line.split_once('='))
        .map(|(name, value)| (name.to_owned(), value.to_owned()))
        .collect()
}

#[tokio::test]
async fn agent_environment_holds_exactly_the_allowed_variables() {
    put_secret_in_parent_environment();
    let fixture = Fixture::new();
    let mut config = fixture.config(Agent::Developer, &["/usr/bin/env"]);
    config
        .roles
        .get_mut(&Agent::Developer)
        .expect("configured")
        .env
        .insert("AGENT_MODEL".to_owned(), "sonnet".to_owned());
    let runner = fixture.runner(config);
    let mut request = fixture.request(Agent::Developer);
    request.analysis = Some("Use leaflet.".to_owned());
    request.feedback = Some("Please add tests.".to_owned());

    let agent = runner.start(request).await.expect("the agent starts");
    assert_eq!(agent.wait().await, AgentOutcome::Succeeded);

    let log = fixture.log_text(Agent::Developer);
    let environment = parse_env(&log);
    let mut expected: BTreeSet<&str> = ["PATH", "HOME", "LANG"]
        .into_iter()
        .filter(|name| std::env::var_os(name).is_some())
        .collect();
    expected.extend([
        "AGENT_MODEL",
        "ORCH_TASK",
        "ORCH_STAGE",
        "ORCH_AGENT",
        "ORCH_ATTEMPT",
        "ORCH_REPO",
        "ORCH_BRANCH",
        "ORCH_BASE_BRANCH",
        "ORCH_WORKTREE",
        "ORCH_TITLE",
        "ORCH_DESCRIPTION_FILE",
        "ORCH_ANALYSIS_FILE",
        "ORCH_FEEDBACK_FILE",
        "ORCH_OUTPUT_DIR",
        "ORCH_PROMPT_FILE",
        "ORCH_INSTANCE",
    ]);
    let actual: BTreeSet<&str> = environment.keys().map(String::as_str).collect();
    assert_eq!(actual, expected);
    // The marker boot looks for agents an earlier boot left by (`reap_instance`).
    assert_eq!(
        environment["ORCH_INSTANCE"],
        fixture.dir.path().join("scratch").display().to_string()
    );
    assert!(
        !log.contains(PARENT_SECRET_VALUE),
        "the parent's secret leaked: {log}"
    );

    let value = |name: &str| {
        environment
            .get(name)
            .map(String::as_str)
            .unwrap_or_default()
    };
    assert_eq!(value("ORCH_TASK"), "ET-001");
    assert_eq!(value("ORCH_STAGE"), "development");
    assert_eq!(value("ORCH_AGENT"), "developer");
    assert_eq!(value("ORCH_ATTEMPT"), "2");
    assert_eq!(value("ORCH_REPO"), "acme/enduro-trails");
    assert_eq!(value("ORCH_BRANCH"), "feature/ET-001-trail-map");
    assert_eq!(value("ORCH_BASE_BRANCH"), "main");
    assert_eq!(value("ORCH_TITLE"), "Add a trail map");
    assert_eq!(
        value("ORCH_WORKTREE"),
        fixture.worktree().to_str().expect("utf-8 temp path")
    );
    assert_eq!(
        value("ORCH_OUTPUT_DIR"),
        fixture.output_dir().to_str().expect("utf-8 temp path")
    );
    let file = |name: &str| std::fs::read_to_string(value(name)).expect("the file exists");
    assert_eq!(file("ORCH_DESCRIPTION_FILE"), "Show the trails on a map.");
    assert_eq!(file("ORCH_ANALYSIS_FILE"), "Use leaflet.");
    assert_eq!(file("ORCH_FEEDBACK_FILE"), "Please add tests.");
    assert_eq!(
        file("ORCH_PROMPT_FILE"),
        "Work on ET-001: Add a trail map in acme/enduro-trails on feature/ET-001-trail-map."
    );
}

#[tokio::test]
async fn analyst_gets_neither_analysis_nor_feedback_file_without_them() {
    let fixture = Fixture::new();
    let runner = fixture.runner(fixture.config(Agent::Analyst, &["/usr/bin/env"]));
    let mut request = fixture.request(Agent::Analyst);
    // An analysis is never the analyst's input, and blank feedback is no feedback.
    request.analysis = Some("stale".to_owned());
    request.feedback = Some("  \n".to_owned());

    let agent = runner.start(request).await.expect("the agent starts");
    assert_eq!(agent.wait().await, AgentOutcome::Succeeded);

    let environment = parse_env(&fixture.log_text(Agent::Analyst));
    assert!(
        !environment.contains_key("ORCH_ANALYSIS_FILE"),
        "{environment:?}"
    );
    assert!(
        !environment.contains_key("ORCH_FEEDBACK_FILE"),
        "{environment:?}"
    );
    assert_eq!(
        environment.get("ORCH_STAGE").map(String::as_str),
        Some("analysis")
    );
}

#[tokio::test]
async fn reviewer_gets_the_given_analysis_file() {
    let fixture = Fixture::new();
    let analysis_file = fixture.dir.path().join("analysis.md");
    std::fs::write(&analysis_file, "From the analyst.").expect("written");
    let runner = fixture.runner(fixture.config(Agent::Reviewer, &["/usr/bin/env"]));
    let mut request = fixture.request(Agent::Reviewer);
    request.analysis_file = Some(analysis_file.clone());

    let agent = runner.start(request).await.expect("the agent starts");
    assert_eq!(agent.wait().await, AgentOutcome::Succeeded);

    let environment = parse_env(&fixture.log_text(Agent::Reviewer));
    assert_eq!(
        environment.get("ORCH_ANALYSIS_FILE").map(String::as_str),
        analysis_file.to_str()
    );
}

#[tokio::test]
async fn shell_syntax_in_arguments_reaches_the_agent_literally() {
    let fixture = Fixture::new();
    let arguments = [
        "$(touch pwned)",
        "a; touch pwned-too",
        "`touch pwned-three`",
        "$HOME",
        "*",
    ];
    let mut command = vec!["/usr/bin/printf", "%s\\n"];
    command.extend(arguments);
    let runner = fixture.runner(fixture.config(Agent::Developer, &command));

    let agent = runner
        .start(fixture.request(Agent::Developer))
        .await
        .expect("the agent starts");
    assert_eq!(agent.wait().await, AgentOutcome::Succeeded);

    let lines: Vec<String> = fixture
        .log_text(Agent::Developer)
        .lines()
        .map(str::to_owned)
        .collect();
    assert_eq!(lines, arguments);
    let created: Vec<_> = std::fs::read_dir(fixture.worktree())
        .expect("readable")
        .collect();
    assert!(
        created.is_empty(),
        "the arguments ran as shell code: {created:?}"
    );
}

#[tokio::test]
async fn prompt_arrives_on_stdin_and_in_the_prompt_file() {
    let fixture = Fixture::new();
    let script = r#"cat > "$ORCH_OUTPUT_DIR/stdin.txt" && cp "$ORCH_PROMPT_FILE" "$ORCH_OUTPUT_DIR/file.txt" && pwd > "$ORCH_OUTPUT_DIR/cwd.txt""#;
    let runner = fixture.runner(fixture.config(Agent::Developer, &["/bin/sh", "-c", script]));

    let agent = runner
        .start(fixture.request(Agent::Developer))
        .await
        .expect("the agent starts");
    assert_eq!(agent.wait().await, AgentOutcome::Succeeded);

    let expected =
        "Work on ET-001: Add a trail map in acme/enduro-trails on feature/ET-001-trail-map.";
    let read = |name: &str| {
        std::fs::read_to_string(fixture.output_dir().join(name)).expect("written by the agent")
    };
    assert_eq!(read("stdin.txt"), expected);
    assert_eq!(read("file.txt"), expected);
    assert_eq!(
        read("cwd.txt").trim(),
        fixture.worktree().to_str().expect("utf-8 temp path")
    );
}

#[tokio::test]
async fn output_lands_in_the_log_file() {
    let fixture = Fixture::new();
    let runner = fixture.runner(fixture.config(
        Agent::Developer,
        &["/bin/sh", "-c", "echo to-stdout; echo to-stderr >&2"],
    ));
    let request = fixture.request(Agent::Developer);
    assert_eq!(
        runner.log_path(&request),
        fixture.log_file(Agent::Developer)
    );

    let agent = runner.start(request).await.expect("the agent starts");
    assert_eq!(agent.wait().await, AgentOutcome::Succeeded);

    let log = fixture.log_text(Agent::Developer);
    assert!(log.contains("to-stdout\n"), "{log}");
    assert!(log.contains("to-stderr\n"), "{log}");
}

#[tokio::test]
async fn a_second_attempt_appends_to_the_log() {
    let fixture = Fixture::new();
    let runner = fixture.runner(fixture.config(
        Agent::Developer,
        &["/bin/sh", "-c", "echo attempt $ORCH_ATTEMPT"],
    ));
    for attempt in [1, 2] {
        let mut request = fixture.request(Agent::Developer);
        request.attempt = attempt;
        let agent = runner.start(request).await.expect("the agent starts");
        assert_eq!(agent.wait().await, AgentOutcome::Succeeded);
    }
    assert_eq!(fixture.log_text(Agent::Developer), "attempt 1\nattempt 2\n");
}
