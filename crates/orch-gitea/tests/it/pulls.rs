//! Pull requests: ensure (exactly once), get, find by sha, review, comment, close.

use orch_core::ids::PrNumber;
use orch_core::ports::{Forge, ForgeError, PrState, PullRequest};
use orch_sim::gitea::Mutation;

use crate::{Fixture, REPO};

fn created(fixture: &Fixture) -> usize {
    fixture
        .sim
        .mutations()
        .iter()
        .filter(|mutation| matches!(mutation, Mutation::PullCreated { .. }))
        .count()
}

#[tokio::test]
async fn ensure_pull_request_twice_opens_exactly_one_pull_request() {
    let fixture = Fixture::start().await;
    let sha = fixture
        .push_branch("feature/ET-001-one", "one.txt", "1\n")
        .await;
    let first = fixture
        .forge
        .ensure_pull_request(&fixture.new_pull("feature/ET-001-one"))
        .await
        .expect("opened");
    let second = fixture
        .forge
        .ensure_pull_request(&fixture.new_pull("feature/ET-001-one"))
        .await
        .expect("found");
    assert_eq!(
        first.mergeable,
        Some(false),
        "gitea answers a new pull request before its mergeability check ran"
    );
    assert_eq!(second.mergeable, Some(true));
    assert_eq!(
        PullRequest {
            mergeable: None,
            ..first.clone()
        },
        PullRequest {
            mergeable: None,
            ..second.clone()
        }
    );
    assert_eq!(first.state, PrState::Open);
    assert_eq!(first.head_sha, sha);
    assert_eq!(
        (first.head_branch.as_str(), first.base_branch.as_str()),
        ("feature/ET-001-one", "main")
    );
    assert_eq!(created(&fixture), 1);
    assert_eq!(
        fixture
            .forge
            .pull_request(&fixture.repo, first.number)
            .await
            .expect("get"),
        second
    );
}

#[tokio::test]
async fn ensure_pull_request_of_a_new_branch_costs_one_lookup_and_one_create() {
    let fixture = Fixture::start().await;
    fixture
        .push_branch("feature/ET-004-calls", "four.txt", "4\n")
        .await;
    let before = fixture.sim.api_requests().len();
    fixture
        .forge
        .ensure_pull_request(&fixture.new_pull("feature/ET-004-calls"))
        .await
        .expect("opened");
    let calls: Vec<String> = fixture.sim.api_requests()[before..]
        .iter()
        .map(|request| format!("{} {}", request.method, request.uri))
        .collect();
    assert_eq!(calls.len(), 2, "a 404 lookup means none exists: {calls:#?}");
    assert!(
        calls[0].starts_with("GET ") && calls[0].contains("/pulls/main/"),
        "{calls:#?}"
    );
    assert!(
        calls[1].starts_with("POST ") && calls[1].ends_with("/pulls"),
        "{calls:#?}"
    );
}

#[tokio::test]
async fn ensure_pull_request_does_not_reuse_an_old_closed_pull_request_of_the_branch() {
    let fixture = Fixture::start().await;
    fixture
        .push_branch("feature/ET-002-again", "two.txt", "2\n")
        .await;
    let old = fixture
        .forge
        .ensure_pull_request(&fixture.new_pull("feature/ET-002-again"))
        .await
        .expect("opened");
    fixture
        .sim
        .close_as_person(REPO, old.number.get())
        .await
        .expect("closed");
    let new = fixture
        .forge
        .ensure_pull_request(&fixture.new_pull("feature/ET-002-again"))
        .await
        .expect("opened");
    assert_ne!(new.number, old.number);
    assert_eq!(new.state, PrState::Open);
    assert_eq!(created(&fixture), 2);
}

#[tokio::test]
async fn ensure_pull_request_after_a_lost_create_answer_finds_the_created_pull_request() {
    let fixture = Fixture::start().await;
    fixture
        .push_branch("feature/ET-003-lost", "three.txt", "3\n")
        .await;
    // The create is applied, then the connection is dropped: the retry must look up, not create.
    fixture.sim.drop_next_responses(1);
    let pull = fixture
        .forge
        .ensure_pull_request(&fixture.new_pull("feature/ET-003-lost"))
        .await
        .expect("found");
    assert_eq!(pull.state, PrState::Open);
    assert_eq!(created(&fixture), 1);
}

#[tokio::test]
async fn ensure_pull_request_of_a_branch_without_changes_is_invalid() {
    let fixture = Fixture::start().await;
    let mut new = fixture.new_pull("main");
    new.head = new.base.clone();
    let err = fixture
        .forge
        .ensure_pull_request(&new)
        .await
        .expect_err("nothing to merge");
    assert!(matches!(err, ForgeError::Invalid(_)), "{err:?}");
}

#[tokio::test]
async fn a_missing_pull_request_is_not_found() {
    let fixture = Fixture::start().await;
    let err = fixture
        .forge
        .pull_request(&fixture.repo, PrNumber::new(99).expect("number"))
        .await
        .expect_err("none");
    assert!(matches!(err, ForgeError::NotFound(_)), "{err:?}");
}

#[tokio::test]
async fn open_pull_request_for_sha_finds_the_pull_request_on_a_later_page() {
    // Opening 51 pull requests takes a few seconds.
    if std::env::var_os("RUN_SLOW_TESTS").is_none() {
        return;
    }
    let fixture = Fixture::start().await;
    let target = fixture
        .push_branch("feature/ET-004-target", "target.txt", "t\n")
        .await;
    let opened = fixture
        .forge
        .ensure_pull_request(&fixture.new_pull("feature/ET-004-target"))
        .await
        .expect("opened");
    // 50 newer open PRs push the target onto page 2 of `pulls?state=open` (newest first).
    fixture
        .clone
        .checkout_new("filler", "origin/main")
        .await
        .expect("checkout");
    fixture
        .clone
        .commit_file("filler.txt", "f\n", "Filler")
        .await
        .expect("commit");
    let refspecs: Vec<String> = (0..50)
        .map(|idx| format!("HEAD:refs/heads/feature/filler-{idx:02}"))
        .collect();
    let mut args = vec!["push", "--quiet", "origin"];
    args.extend(refspecs.iter().map(String::as_str));
    fixture.clone.git(&args).await.expect("push fillers");
    for idx in 0..50 {
        fixture
            .forge
            .ensure_pull_request(&fixture.new_pull(&format!("feature/filler-{idx:02}")))
            .await
            .expect("filler");
    }
    let found = fixture
        .forge
        .open_pull_request_for_sha(&fixture.repo, &target)
        .await
        .expect("listed");
    assert_eq!(found.map(|pull| pull.number), Some(opened.number));
    let pages = fixture
        .sim
        .api_requests()
        .iter()
        .filter(|request| {
            request.uri.contains("/pulls?state=open") && request.uri.contains("page=2")
        })
        .count();
    assert!(pages >= 1, "the listing went to page 2");
    let unknown = orch_core::ids::CommitSha::new("ab".repeat(20)).expect("sha");
    assert_eq!(
        fixture
            .forge
            .open_pull_request_for_sha(&fixture.repo, &unknown)
            .await
            .expect("listed"),
        None
    );
}

#[tokio::test]
async fn review_and_comment_are_posted_once_per_marker() {
    let fixture = Fixture::start().await;
    fixture
        .push_branch("feature/ET-005-talk", "talk.txt", "t\n")
        .await;
    let pull = fixture
        .forge
        .ensure_pull_request(&fixture.new_pull("feature/ET-005-talk"))
        .await
        .expect("opened");
    // A marker that extends another one is a different marker: posted first, it must not
    // make the shorter one look done.
    fixture
        .forge
        .comment(
            &fixture.repo,
            pull.number,
            "orch:7:comment:10",
            "Round ten.",
        )
        .await
        .expect("comment");
    for _ in 0..2 {
        fixture
            .forge
            .review(&fixture.repo, pull.number, "orch:7:review:1", "Looks fine.")
            .await
            .expect("review");
        fixture
            .forge
            .comment(
                &fixture.repo,
                pull.number,
                "orch:7:comment:1",
                "Closing soon.",
            )
            .await
            .expect("comment");
    }
    let mutations = fixture.sim.mutations();
    let reviews: Vec<_> = mutations
        .iter()
        .filter_map(|mutation| match mutation {
            Mutation::ReviewPosted { event, body, .. } => Some((event.clone(), body.clone())),
            _ => None,
        })
        .collect();
    assert_eq!(reviews.len(), 1);
    assert_eq!(reviews[0].0, "COMMENT");
    assert!(reviews[0].1.starts_with("Looks fine.") && reviews[0].1.contains("orch:7:review:1"));
    let comments = mutations
        .iter()
        .filter(|mutation| matches!(mutation, Mutation::CommentPosted { .. }))
        .count();
    assert_eq!(comments, 2);
}

#[tokio::test]
async fn review_is_posted_as_the_agents_markdown_for_gitea_to_render() {
    let fixture = Fixture::start().await;
    fixture
        .push_branch("feature/ET-006-markdown", "md.txt", "m\n")
        .await;
    let pull = fixture
        .forge
        .ensure_pull_request(&fixture.new_pull("feature/ET-006-markdown"))
        .await
        .expect("opened");
    let markdown = "## Findings\n\n- **tests** pass\n- `a < b` & [docs](https://x.example)";
    fixture
        .forge
        .review(&fixture.repo, pull.number, "orch:8:review:2", markdown)
        .await
        .expect("review");
    let bodies: Vec<String> = fixture
        .sim
        .mutations()
        .into_iter()
        .filter_map(|mutation| match mutation {
            Mutation::ReviewPosted { body, .. } => Some(body),
            _ => None,
        })
        .collect();
    assert_eq!(
        bodies,
        [format!("{markdown}\n\n<!-- orch:8:review:2 -->")],
        "the Markdown goes to Gitea unchanged, not escaped nor rendered"
    );
}

#[tokio::test]
async fn closing_a_pull_request_twice_closes_it_once() {
    let fixture = Fixture::start().await;
    fixture
        .push_branch("feature/ET-006-close", "close.txt", "c\n")
        .await;
    let pull = fixture
        .forge
        .ensure_pull_request(&fixture.new_pull("feature/ET-006-close"))
        .await
        .expect("opened");
    fixture
        .forge
        .close_pull_request(&fixture.repo, pull.number)
        .await
        .expect("closed");
    fixture
        .forge
        .close_pull_request(&fixture.repo, pull.number)
        .await
        .expect("still closed");
    let closes = fixture
        .sim
        .mutations()
        .iter()
        .filter(|mutation| matches!(mutation, Mutation::PullClosed { .. }))
        .count();
    assert_eq!(closes, 1);
    let read = fixture
        .forge
        .pull_request(&fixture.repo, pull.number)
        .await
        .expect("get");
    assert_eq!((read.state, read.merged), (PrState::Closed, false));
}

#[tokio::test]
async fn concurrent_ensures_of_one_branch_open_one_pull_request() {
    let fixture = Fixture::start().await;
    fixture
        .push_branch("feature/ET-007-race", "race.txt", "r\n")
        .await;
    let new = fixture.new_pull("feature/ET-007-race");
    let tasks: Vec<_> = (0..4)
        .map(|_| {
            let (forge, new) = (fixture.forge.clone(), new.clone());
            tokio::spawn(async move { forge.ensure_pull_request(&new).await })
        })
        .collect();
    let mut numbers = std::collections::BTreeSet::new();
    for task in tasks {
        numbers.insert(task.await.expect("task ran").expect("ensured").number.get());
    }
    assert_eq!(numbers.len(), 1, "{numbers:?}");
    assert_eq!(created(&fixture), 1);
}

#[tokio::test]
async fn the_token_travels_only_in_the_authorization_header() {
    let fixture = Fixture::start().await;
    fixture
        .push_branch("feature/ET-008-token", "token.txt", "t\n")
        .await;
    fixture
        .forge
        .ensure_pull_request(&fixture.new_pull("feature/ET-008-token"))
        .await
        .expect("opened");
    let requests = fixture.sim.api_requests();
    assert!(!requests.is_empty());
    for request in requests {
        assert!(
            !request.uri.contains(fixture.sim.token()),
            "{}",
            request.uri
        );
        assert_eq!(
            request.header("authorization"),
            Some(format!("token {}", fixture.sim.token()).as_str())
        );
    }
    assert_eq!(fixture.forge.stats().errors, 0);
}
