//! Writes: state changes and idempotent comments.

use orch_core::ids::{IssueId, StateId};
use orch_core::ports::{Tracker, TrackerError};
use orch_sim::plane::MutationKind;

use crate::setup;

#[tokio::test]
async fn set_state_moves_the_item_with_one_patch() {
    let setup = setup().await;
    let created = setup
        .sim
        .create_item(setup.project.as_str(), "One", "Todo")
        .await
        .expect("created");
    let issue = IssueId::new(created.id.clone()).expect("valid id");
    let done = StateId::new(
        setup
            .sim
            .state_id(setup.project.as_str(), "Done")
            .expect("Done"),
    )
    .expect("valid");
    setup
        .tracker
        .set_state(&setup.project, &issue, &done)
        .await
        .expect("moved");
    assert_eq!(
        setup.sim.item(&created.id).expect("item").state_name,
        "Done"
    );
    let mutations = setup.sim.mutations();
    assert_eq!(mutations.len(), 1);
    assert_eq!(
        mutations[0].kind,
        MutationKind::StateSet {
            from: created.state_id,
            to: done.to_string()
        }
    );
    assert_eq!(mutations[0].actor, setup.sim.bot_user().id);
}

#[tokio::test]
async fn state_of_another_project_is_refused_for_good() {
    let setup = setup().await;
    let other = setup.sim.add_project("OT");
    let created = setup
        .sim
        .create_item(setup.project.as_str(), "One", "Todo")
        .await
        .expect("created");
    let issue = IssueId::new(created.id).expect("valid id");
    let foreign = StateId::new(setup.sim.state_id(&other, "Done").expect("Done")).expect("valid");
    let result = setup
        .tracker
        .set_state(&setup.project, &issue, &foreign)
        .await;
    assert!(
        matches!(&result, Err(TrackerError::Invalid(message)) if message.contains("State is not valid")),
        "{result:?}"
    );
    assert_eq!(setup.sim.requests().len(), 1, "a 400 is not retried");
}

#[tokio::test]
async fn comment_is_posted_as_html_rendered_from_markdown_with_orchs_external_id() {
    let setup = setup().await;
    let created = setup
        .sim
        .create_item(setup.project.as_str(), "One", "Todo")
        .await
        .expect("created");
    let issue = IssueId::new(created.id.clone()).expect("valid id");
    setup
        .tracker
        .add_comment(
            &setup.project,
            &issue,
            "7:analysis:0",
            "**Plan:**\n\n<b>bold</b> & [more](javascript:alert(1))",
        )
        .await
        .expect("posted");
    let comments = setup.sim.comments(&created.id);
    assert_eq!(comments.len(), 1);
    assert_eq!(
        comments[0].html,
        "<p><strong>Plan:</strong></p>\n<p>&lt;b&gt;bold&lt;/b&gt; &amp; more</p>"
    );
    assert_eq!(comments[0].external_source.as_deref(), Some("orch"));
    assert_eq!(comments[0].external_id.as_deref(), Some("7:analysis:0"));
}

#[tokio::test]
async fn comment_conflict_409_means_already_posted() {
    let setup = setup().await;
    let created = setup
        .sim
        .create_item(setup.project.as_str(), "One", "Todo")
        .await
        .expect("created");
    let issue = IssueId::new(created.id.clone()).expect("valid id");
    setup
        .tracker
        .add_comment(&setup.project, &issue, "7:analysis:0", "once")
        .await
        .expect("posted");
    setup
        .tracker
        .add_comment(&setup.project, &issue, "7:analysis:0", "once")
        .await
        .expect("a 409 is success");
    assert_eq!(setup.sim.comments(&created.id).len(), 1);
    let statuses: Vec<Option<u16>> = setup
        .sim
        .requests()
        .iter()
        .map(|request| request.status)
        .collect();
    assert_eq!(statuses, [Some(201), Some(409)]);
    assert_eq!(setup.tracker.stats().errors, 0);
}

#[tokio::test]
async fn comment_whose_answer_was_lost_is_retried_without_a_duplicate() {
    let setup = setup().await;
    let created = setup
        .sim
        .create_item(setup.project.as_str(), "One", "Todo")
        .await
        .expect("created");
    let issue = IssueId::new(created.id.clone()).expect("valid id");
    setup.sim.drop_next_responses(1);
    setup
        .tracker
        .add_comment(&setup.project, &issue, "7:review:1", "once")
        .await
        .expect("the retry sees 409");
    assert_eq!(setup.sim.comments(&created.id).len(), 1);
    let statuses: Vec<Option<u16>> = setup
        .sim
        .requests()
        .iter()
        .map(|request| request.status)
        .collect();
    assert_eq!(statuses, [None, Some(409)]);
}
