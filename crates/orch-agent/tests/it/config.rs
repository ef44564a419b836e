//! Configuration checks done when the runner is built or a role is started.

use orch_agent::{ConfigError, ProcessAgentRunner};
use orch_core::domain::Agent;
use orch_core::ports::{AgentError, AgentRunner};

use crate::Fixture;

#[test]
fn unknown_placeholder_is_a_config_error_naming_the_role_and_placeholder() {
    let fixture = Fixture::new();
    let mut config = fixture.config(Agent::Reviewer, &["/bin/true"]);
    config
        .roles
        .get_mut(&Agent::Reviewer)
        .expect("configured")
        .prompt_template = "Review {{task}} for {{assignee}}.".to_owned();
    let errors = ProcessAgentRunner::new(config).expect_err("assignee is not a placeholder");
    assert_eq!(errors.len(), 1);
    let message = errors[0].to_string();
    assert!(
        message.starts_with("agents.reviewer.prompt: unknown placeholder {{assignee}}"),
        "{message}"
    );
}

#[test]
fn every_config_problem_is_reported_at_once() {
    let fixture = Fixture::new();
    let mut config = fixture.config(Agent::Analyst, &[]);
    config.stall_timeout = std::time::Duration::ZERO;
    config
        .roles
        .get_mut(&Agent::Analyst)
        .expect("configured")
        .prompt_template = "{{nope}}".to_owned();
    let errors = ProcessAgentRunner::new(config).expect_err("three problems");
    let messages: Vec<String> = errors.iter().map(ToString::to_string).collect();
    assert!(
        errors.contains(&ConfigError::ZeroStallTimeout),
        "{messages:?}"
    );
    assert!(
        errors.contains(&ConfigError::EmptyCommand {
            role: Agent::Analyst
        }),
        "{messages:?}"
    );
    assert!(
        messages.iter().any(|message| message.contains("{{nope}}")),
        "{messages:?}"
    );
}

#[tokio::test]
async fn starting_an_unconfigured_role_is_invalid() {
    let fixture = Fixture::new();
    let runner = fixture.runner(fixture.config(Agent::Analyst, &["/bin/true"]));
    let err = match runner.start(fixture.request(Agent::Developer)).await {
        Ok(_) => panic!("the developer role is not configured"),
        Err(err) => err,
    };
    assert!(
        matches!(&err, AgentError::Invalid(message) if message.contains("agents.developer")),
        "{err}"
    );
}

#[test]
fn passing_an_orch_variable_through_is_refused() {
    let fixture = Fixture::new();
    let mut config = fixture.sandboxed(Agent::Developer, &["/bin/true"]);
    config
        .roles
        .get_mut(&Agent::Developer)
        .expect("configured")
        .pass_env = vec![
        "ANTHROPIC_API_KEY".to_owned(),
        "ORCH_GITEA_TOKEN".to_owned(),
    ];
    let errors = ProcessAgentRunner::new(config).expect_err("ORCH_ names are orch's own");
    assert_eq!(
        errors,
        vec![ConfigError::ReservedPassEnv {
            role: Agent::Developer,
            name: "ORCH_GITEA_TOKEN".to_owned()
        }]
    );
    assert!(errors[0]
        .to_string()
        .starts_with("agents.developer.pass_env: ORCH_GITEA_TOKEN: "));
}
