//! Reads: the API user, states by name, work item pages, one work item, comments.

use std::collections::HashSet;

use orch_core::ids::{IssueId, StateId};
use orch_core::ports::{StateNames, Tracker, TrackerError};
use orch_core::time::Timestamp;

use crate::setup;

#[tokio::test]
async fn me_is_the_api_tokens_user() {
    let setup = setup().await;
    let me = setup.tracker.me().await.expect("users/me answers");
    assert_eq!(me.as_str(), setup.sim.bot_user().id);
}

#[tokio::test]
async fn state_names_resolve_to_this_projects_ids_and_are_cached() {
    let setup = setup().await;
    let other = orch_core::ids::ProjectId::new(setup.sim.add_project("OT")).expect("valid id");
    let states = setup
        .tracker
        .project_states(&setup.project, &StateNames::default())
        .await
        .expect("states resolve");
    let id = |name: &str| {
        StateId::new(
            setup
                .sim
                .state_id(setup.project.as_str(), name)
                .expect("state exists"),
        )
        .expect("valid")
    };
    assert_eq!(states.in_progress, id("In Progress"));
    assert_eq!(states.approved, id("Approved"));
    assert_eq!(states.rejected, id("Rejected"));
    assert_eq!(states.awaiting, Some(id("In Review")));
    assert_eq!(states.done, id("Done"));
    assert_eq!(states.cancelled, Some(id("Cancelled")));
    let other_states = setup
        .tracker
        .project_states(&other, &StateNames::default())
        .await
        .expect("states resolve");
    assert_ne!(
        other_states.done, states.done,
        "each project has its own state ids"
    );

    setup
        .tracker
        .project_states(&setup.project, &StateNames::default())
        .await
        .expect("cached");
    let state_calls = setup
        .sim
        .requests()
        .iter()
        .filter(|request| request.path.ends_with("/states/"))
        .count();
    assert_eq!(state_calls, 2, "one call per project, then the cache");
}

#[tokio::test]
async fn unknown_state_name_is_not_found_naming_it_and_a_new_state_is_found_after_a_refresh() {
    let setup = setup().await;
    setup
        .tracker
        .project_states(&setup.project, &StateNames::default())
        .await
        .expect("fills the cache");
    let names = StateNames {
        approved: "Ship It".to_owned(),
        ..StateNames::default()
    };
    match setup.tracker.project_states(&setup.project, &names).await {
        Err(TrackerError::NotFound(message)) => {
            assert!(
                message.contains("\"Ship It\"") && message.contains(setup.project.as_str()),
                "{message}"
            );
        }
        other => panic!("expected NotFound, got {other:?}"),
    }
    let added = setup
        .sim
        .add_state(setup.project.as_str(), "Ship It", "started")
        .expect("project exists");
    let states = setup
        .tracker
        .project_states(&setup.project, &names)
        .await
        .expect("found after a refresh");
    assert_eq!(states.approved.as_str(), added);
}

#[tokio::test]
async fn work_items_page_through_three_pages_newest_update_first() {
    let setup = setup().await;
    for idx in 0..250 {
        setup
            .sim
            .create_item(setup.project.as_str(), &format!("Item {idx}"), "Todo")
            .await
            .expect("created");
    }
    let mut pages = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let page = setup
            .tracker
            .list_work_items(&setup.project, cursor.as_deref())
            .await
            .expect("page answers");
        pages.push(page.items);
        match page.next_cursor {
            Some(next) => cursor = Some(next),
            None => break,
        }
        assert!(pages.len() < 10, "pagination must end");
    }
    let sizes: Vec<usize> = pages.iter().map(Vec::len).collect();
    assert_eq!(sizes, [100, 100, 50]);
    let items: Vec<_> = pages.into_iter().flatten().collect();
    let ids: HashSet<&IssueId> = items.iter().map(|item| &item.id).collect();
    assert_eq!(ids.len(), 250, "every item exactly once");
    assert!(
        items
            .windows(2)
            .all(|pair| pair[0].updated_at >= pair[1].updated_at),
        "ordered by -updated_at"
    );
    let lists: Vec<_> = setup
        .sim
        .requests()
        .into_iter()
        .filter(|request| request.path.ends_with("/work-items/"))
        .collect();
    assert_eq!(lists.len(), 3);
    for request in &lists {
        assert!(
            request.query.contains("per_page=100")
                && request.query.contains("order_by=-updated_at"),
            "{}",
            request.query
        );
    }
    assert!(
        lists[1].query.contains("cursor=100%3A1%3A0") || lists[1].query.contains("cursor=100:1:0"),
        "{}",
        lists[1].query
    );
}

#[tokio::test]
async fn work_item_reads_its_expanded_state_title_and_offset_time() {
    let setup = setup().await;
    let created = setup
        .sim
        .create_item(setup.project.as_str(), "Fix <login> & loop", "In Progress")
        .await
        .expect("created");
    setup.sim.set_user_timezone(5, 30);
    let issue = IssueId::new(created.id.clone()).expect("valid id");
    let item = setup
        .tracker
        .work_item(&setup.project, &issue)
        .await
        .expect("item answers");
    assert_eq!(item.state.as_str(), created.state_id);
    assert_eq!(item.title, "Fix <login> & loop");
    assert_eq!(item.description, "Fix <login> & loop");
    assert_eq!(item.sequence_id, created.sequence_id);
    assert_eq!(
        Some(item.updated_at),
        Timestamp::parse_rfc3339(&created.updated_at),
        "+05:30 is the same instant"
    );
    let get = setup.sim.requests().into_iter().last().expect("a request");
    assert!(get.query.contains("expand=state"), "{}", get.query);

    let listed = setup
        .tracker
        .list_work_items(&setup.project, None)
        .await
        .expect("list answers");
    assert_eq!(
        listed.items,
        vec![item],
        "the bare-uuid state of lists reads the same"
    );
}

#[tokio::test]
async fn unknown_work_item_is_not_found() {
    let setup = setup().await;
    let missing = IssueId::new("5a6b7c8d-0000-4000-8000-000000000000").expect("valid id");
    let result = setup.tracker.work_item(&setup.project, &missing).await;
    assert!(
        matches!(result, Err(TrackerError::NotFound(_))),
        "{result:?}"
    );
}

#[tokio::test]
async fn comments_are_newest_first_as_text_with_authors() {
    let setup = setup().await;
    let created = setup
        .sim
        .create_item(setup.project.as_str(), "One", "Todo")
        .await
        .expect("created");
    setup
        .sim
        .add_comment(&created.id, "first & older")
        .await
        .expect("commented");
    let issue = IssueId::new(created.id.clone()).expect("valid id");
    setup
        .tracker
        .add_comment(&setup.project, &issue, "7:analysis:0", "newer")
        .await
        .expect("posted");
    let comments = setup
        .tracker
        .comments(&setup.project, &issue)
        .await
        .expect("comments answer");
    let summary: Vec<(String, Option<String>, Option<String>)> = comments
        .iter()
        .map(|comment| {
            (
                comment.text.clone(),
                comment.author.as_ref().map(ToString::to_string),
                comment.external_source.clone(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            (
                "newer".to_owned(),
                Some(setup.sim.bot_user().id.clone()),
                Some("orch".to_owned())
            ),
            (
                "first & older".to_owned(),
                Some(setup.sim.human_user().id.clone()),
                None
            ),
        ]
    );
    assert!(comments[0].created_at >= comments[1].created_at);
}
