//! The `Tracker` contract suite, run against `FakeTracker` and `PlaneTracker` on `PlaneSim`.

use std::collections::BTreeSet;
use std::future::Future;

use async_trait::async_trait;

use crate::domain::StateRole;
use crate::fakes::contract::{case, run_suite, Case};
use crate::ids::{IssueId, ProjectId, StateId};
use crate::ports::{ProjectStates, StateNames, Tracker, TrackerError, WorkItem};

/// A tracker with one project, and what a person does in it.
#[async_trait]
pub trait TrackerFixture: Send + Sync {
    fn tracker(&self) -> &dyn Tracker;

    /// A project with a state for every name of `StateNames::default()`.
    fn project(&self) -> ProjectId;

    /// An id no work item has (in the tracker's own id format).
    fn unknown_issue(&self) -> IssueId;

    /// A person creates a work item titled `title` in the state named `state_name`.
    async fn create_item(&self, title: &str, state_name: &str) -> IssueId;

    /// A person comments `text` on the item.
    async fn person_comments(&self, issue: &IssueId, text: &str);
}

/// Runs the `Tracker` contract on a fresh fixture per case from `make` (given the case's name).
pub async fn tracker<F, Fut>(make: impl FnMut(&'static str) -> Fut)
where
    F: TrackerFixture + 'static,
    Fut: Future<Output = F>,
{
    let cases: Vec<&Case<dyn TrackerFixture>> = CASES.iter().collect();
    run_suite("Tracker", &cases, make, as_fixture::<F>).await;
}

fn as_fixture<F: TrackerFixture + 'static>(fixture: &F) -> &(dyn TrackerFixture + 'static) {
    fixture
}

async fn states(fixture: &dyn TrackerFixture) -> ProjectStates {
    fixture
        .tracker()
        .project_states(&fixture.project(), &StateNames::default())
        .await
        .expect("the default state names resolve")
}

async fn read(fixture: &dyn TrackerFixture, issue: &IssueId) -> WorkItem {
    fixture
        .tracker()
        .work_item(&fixture.project(), issue)
        .await
        .expect("the work item reads")
}

const ROLES: [StateRole; 6] = [
    StateRole::InProgress,
    StateRole::Approved,
    StateRole::Rejected,
    StateRole::Awaiting,
    StateRole::Done,
    StateRole::Cancelled,
];

pub(super) const CASES: &[Case<dyn TrackerFixture>] = &[
    case!(
        project_states_resolve_each_configured_name_to_its_own_state,
        |fixture| {
            let states = states(fixture).await;
            let ids: BTreeSet<&StateId> = ROLES
                .iter()
                .map(|role| {
                    states
                        .id_of(*role)
                        .expect("every default name is configured")
                })
                .collect();
            assert_eq!(ids.len(), ROLES.len(), "six names, six states: {states:?}");
            for role in ROLES {
                let id = states.id_of(role).expect("configured");
                assert_eq!(states.role_of(id), Some(role));
            }
        }
    ),
    case!(a_state_name_the_project_lacks_is_not_found, |fixture| {
        let names = StateNames {
            done: "Shipped To The Moon".to_owned(),
            ..StateNames::default()
        };
        let result = fixture
            .tracker()
            .project_states(&fixture.project(), &names)
            .await;
        assert!(
            matches!(&result, Err(TrackerError::NotFound(message)) if message.contains("Moon")),
            "{result:?}"
        );
    }),
    case!(
        listing_pages_through_every_item_once_newest_first,
        |fixture| {
            let mut created = BTreeSet::new();
            for title in ["First", "Second", "Third"] {
                created.insert(fixture.create_item(title, "In Progress").await);
            }
            let mut listed = Vec::new();
            let mut cursor: Option<String> = None;
            loop {
                let page = fixture
                    .tracker()
                    .list_work_items(&fixture.project(), cursor.as_deref())
                    .await
                    .expect("a page lists");
                listed.extend(page.items);
                match page.next_cursor {
                    Some(next) => cursor = Some(next),
                    None => break,
                }
            }
            let ids: Vec<&IssueId> = listed.iter().map(|item| &item.id).collect();
            let unique: BTreeSet<&IssueId> = ids.iter().copied().collect();
            assert_eq!(unique.len(), ids.len(), "an item is listed once: {ids:?}");
            assert_eq!(
                unique,
                created.iter().collect(),
                "every item and nothing else"
            );
            assert!(
                listed
                    .windows(2)
                    .all(|pair| pair[0].updated_at >= pair[1].updated_at),
                "newest first: {listed:?}"
            );
        }
    ),
    case!(
        a_work_item_reads_back_with_its_title_project_and_state,
        |fixture| {
            let issue = fixture.create_item("Add a thing", "In Progress").await;
            let states = states(fixture).await;
            let item = read(fixture, &issue).await;
            assert_eq!(item.id, issue);
            assert_eq!(item.project, fixture.project());
            assert_eq!(item.title, "Add a thing");
            assert_eq!(item.state, states.in_progress);
            assert!(item.sequence_id >= 1, "{item:?}");
            let missing = fixture
                .tracker()
                .work_item(&fixture.project(), &fixture.unknown_issue())
                .await;
            assert!(
                matches!(missing, Err(TrackerError::NotFound(_))),
                "{missing:?}"
            );
        }
    ),
    case!(
        set_state_moves_the_item_and_moving_it_again_succeeds,
        |fixture| {
            let issue = fixture.create_item("Move me", "In Progress").await;
            let states = states(fixture).await;
            let project = fixture.project();
            for _ in 0..2 {
                let updated_at = fixture
                    .tracker()
                    .set_state(&project, &issue, &states.approved)
                    .await
                    .expect("the move succeeds, also to the state the item is in");
                let item = read(fixture, &issue).await;
                assert_eq!(item.state, states.approved);
                assert_eq!(
                    item.updated_at, updated_at,
                    "the answer is the item's updated_at by the tracker's clock"
                );
            }
            let missing = fixture
                .tracker()
                .set_state(&project, &fixture.unknown_issue(), &states.done)
                .await;
            assert!(
                matches!(missing, Err(TrackerError::NotFound(_))),
                "{missing:?}"
            );
        }
    ),
    case!(
        comments_come_back_newest_first_with_orchs_marks_on_its_own,
        |fixture| {
            let issue = fixture.create_item("Talk about it", "In Progress").await;
            let me = fixture.tracker().me().await.expect("me");
            fixture.person_comments(&issue, "Please hurry.").await;
            fixture
                .tracker()
                .add_comment(
                    &fixture.project(),
                    &issue,
                    "t1:analysis:1",
                    "Analysis *done*.",
                )
                .await
                .expect("posted");
            let comments = fixture
                .tracker()
                .comments(&fixture.project(), &issue)
                .await
                .expect("listed");
            assert_eq!(comments.len(), 2, "{comments:?}");
            let (orchs, persons) = (&comments[0], &comments[1]);
            assert!(orchs.created_at >= persons.created_at, "{comments:?}");
            assert_eq!(orchs.external_source.as_deref(), Some("orch"));
            assert_eq!(orchs.external_id.as_deref(), Some("t1:analysis:1"));
            assert_eq!(orchs.author.as_ref(), Some(&me));
            assert!(orchs.text.contains("Analysis"), "{orchs:?}");
            assert_eq!(persons.external_source, None);
            assert_eq!(persons.external_id, None);
            assert!(persons.author.is_some() && persons.author.as_ref() != Some(&me));
            assert!(persons.text.contains("Please hurry."), "{persons:?}");
        }
    ),
    case!(
        a_comment_posted_twice_with_one_external_id_is_there_once,
        |fixture| {
            let issue = fixture.create_item("Say it once", "In Progress").await;
            for _ in 0..2 {
                fixture
                    .tracker()
                    .add_comment(&fixture.project(), &issue, "t1:review:2", "Looks good.")
                    .await
                    .expect("posting again is Ok");
            }
            fixture
                .tracker()
                .add_comment(&fixture.project(), &issue, "t1:review:20", "Another round.")
                .await
                .expect("another external id is another comment");
            let comments = fixture
                .tracker()
                .comments(&fixture.project(), &issue)
                .await
                .expect("listed");
            let mut ids: Vec<Option<&str>> = comments
                .iter()
                .map(|comment| comment.external_id.as_deref())
                .collect();
            ids.sort_unstable();
            assert_eq!(ids, [Some("t1:review:2"), Some("t1:review:20")]);
        }
    ),
    case!(
        a_missing_work_item_has_no_comments_to_list_or_add_to,
        |fixture| {
            let project = fixture.project();
            let missing = fixture.unknown_issue();
            let listed = fixture.tracker().comments(&project, &missing).await;
            assert!(
                matches!(listed, Err(TrackerError::NotFound(_))),
                "{listed:?}"
            );
            let added = fixture
                .tracker()
                .add_comment(&project, &missing, "t1:analysis:1", "Into the void.")
                .await;
            assert!(matches!(added, Err(TrackerError::NotFound(_))), "{added:?}");
        }
    ),
    // Plane checks membership first: an unknown project is refused like a foreign one.
    case!(a_project_orchs_user_cannot_see_is_unauthorized, |fixture| {
        let unknown = ProjectId::new("0c4f1b9e-5d2a-4e7b-9f3c-000000000405").expect("valid");
        let states = fixture
            .tracker()
            .project_states(&unknown, &StateNames::default())
            .await;
        assert!(
            matches!(states, Err(TrackerError::Unauthorized(_))),
            "{states:?}"
        );
        let listed = fixture.tracker().list_work_items(&unknown, None).await;
        assert!(
            matches!(listed, Err(TrackerError::Unauthorized(_))),
            "{listed:?}"
        );
    }),
];
