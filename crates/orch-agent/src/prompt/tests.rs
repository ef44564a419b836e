//! Tests of template parsing and rendering.

use crate::prompt::{PromptError, PromptTemplate, PromptValues, PLACEHOLDERS};

const VALUES: PromptValues<'static> = PromptValues {
    task: "ET-001",
    title: "Add a trail map",
    description: "Show the map.",
    feedback: "",
    analysis: "Use leaflet.",
    branch: "orch/et-001",
    base_branch: "main",
    repo: "acme/enduro-trails",
};

fn check(template: &str, expected: &str) {
    let parsed = PromptTemplate::parse(template).expect("the template is valid");
    assert_eq!(parsed.render(&VALUES), expected);
}

#[test]
fn every_known_placeholder_is_rendered() {
    check(
        "{{task}}|{{title}}|{{description}}|{{feedback}}|{{analysis}}|{{branch}}|{{base_branch}}|{{repo}}",
        "ET-001|Add a trail map|Show the map.||Use leaflet.|orch/et-001|main|acme/enduro-trails",
    );
}

#[test]
fn spaces_inside_the_braces_are_allowed() {
    check("Work on {{ task }} now.", "Work on ET-001 now.");
}

#[test]
fn text_without_placeholders_is_kept_verbatim() {
    check(
        "plain { braces } and }} stay",
        "plain { braces } and }} stay",
    );
}

#[test]
fn rendered_values_are_not_expanded_again() {
    let values = PromptValues {
        title: "{{repo}}",
        ..VALUES
    };
    let parsed = PromptTemplate::parse("{{title}}").expect("the template is valid");
    assert_eq!(parsed.render(&values), "{{repo}}");
}

#[test]
fn unknown_placeholder_is_an_error_naming_it() {
    let err =
        PromptTemplate::parse("Hello {{assignee}}!").expect_err("assignee is not a placeholder");
    assert_eq!(
        err,
        PromptError::UnknownPlaceholder {
            name: "assignee".to_owned()
        }
    );
    assert!(
        err.to_string()
            .starts_with("unknown placeholder {{assignee}}"),
        "{err}"
    );
}

#[test]
fn unclosed_placeholder_is_an_error() {
    let err =
        PromptTemplate::parse("ok {{task}} then {{title").expect_err("the second is unclosed");
    assert_eq!(err, PromptError::Unclosed { offset: 17 });
}

#[test]
fn the_placeholder_list_matches_the_parser() {
    for name in PLACEHOLDERS {
        assert!(
            PromptTemplate::parse(&format!("{{{{{name}}}}}")).is_ok(),
            "{name}"
        );
    }
}
