//! Tests of the Gitea webhook parser: every contract sample, and garbage.

use orch_core::domain::CiState;
use orch_core::event::{Event, Parsed};
use orch_core::ids::{BranchName, CommitSha, PrNumber, RepoSlug};
use rand::{Rng, SeedableRng};

use crate::webhook::parse;

const STATUS_SUCCESS: &[u8] = include_bytes!("../../test_data/status.success.json");
const STATUS_FAILURE: &[u8] = include_bytes!("../../test_data/status.failure.json");
const PR_OPENED: &[u8] = include_bytes!("../../test_data/pull_request.opened.json");
const PR_CLOSED_MERGED: &[u8] = include_bytes!("../../test_data/pull_request.closed_merged.json");
const REVIEW_APPROVED: &[u8] = include_bytes!("../../test_data/pull_request_review.approved.json");
const PUSH: &[u8] = include_bytes!("../../test_data/push.json");
const HEADERS: &[u8] = include_bytes!("../../test_data/headers.json");

const HEAD_SHA: &str = "e4b8a0c2d6f1e3a5b7c9d1f3a5c7e9b1d3f5a7c9";

fn repo() -> RepoSlug {
    RepoSlug::new("acme/widgets").expect("valid slug")
}

fn sha() -> CommitSha {
    CommitSha::new(HEAD_SHA).expect("valid sha")
}

/// The `X-Gitea-Event-Type` the contract gives for a sample file.
fn event_type_of(file: &str) -> String {
    let headers: serde_json::Value = serde_json::from_slice(HEADERS).expect("headers.json is JSON");
    headers["files"][file]["X-Gitea-Event-Type"]
        .as_str()
        .expect("the sample has an event type")
        .to_owned()
}

fn check(file: &str, body: &[u8], expected: Parsed) {
    assert_eq!(parse(&event_type_of(file), body), expected, "{file}");
}

fn is_ignored(parsed: &Parsed) -> bool {
    matches!(parsed, Parsed::Ignored(reason) if !reason.is_empty())
}

#[test]
fn every_contract_sample_parses_to_its_event() {
    check(
        "status.success.json",
        STATUS_SUCCESS,
        Parsed::Event(Event::CiStatusReported {
            repo: repo(),
            sha: sha(),
            state: CiState::Success,
        }),
    );
    check(
        "status.failure.json",
        STATUS_FAILURE,
        Parsed::Event(Event::CiStatusReported {
            repo: repo(),
            sha: sha(),
            state: CiState::Failure,
        }),
    );
    check(
        "pull_request.closed_merged.json",
        PR_CLOSED_MERGED,
        Parsed::Event(Event::PullRequestClosed {
            repo: repo(),
            number: PrNumber::new(17).expect("number"),
            merged: true,
        }),
    );
    check(
        "push.json",
        PUSH,
        Parsed::Event(Event::BranchPushed {
            repo: repo(),
            branch: BranchName::new("feature/retry-backoff").expect("branch"),
            head_sha: sha(),
        }),
    );
    assert!(is_ignored(&parse(
        &event_type_of("pull_request.opened.json"),
        PR_OPENED
    )));
    assert!(is_ignored(&parse(
        &event_type_of("pull_request_review.approved.json"),
        REVIEW_APPROVED
    )));
}

#[test]
fn status_states_map_error_and_warning_to_failure_and_skipped_is_ignored() {
    let with_state = |state: &str| {
        let text = String::from_utf8_lossy(STATUS_SUCCESS)
            .replace("\"state\": \"success\"", &format!("\"state\": \"{state}\""));
        parse("status", text.as_bytes())
    };
    let state_of = |parsed: Parsed| match parsed {
        Parsed::Event(Event::CiStatusReported { state, .. }) => Some(state),
        _ => None,
    };
    assert_eq!(state_of(with_state("pending")), Some(CiState::Pending));
    assert_eq!(state_of(with_state("error")), Some(CiState::Failure));
    assert_eq!(state_of(with_state("warning")), Some(CiState::Failure));
    assert!(is_ignored(&with_state("skipped")));
}

#[test]
fn a_closed_unmerged_pull_request_is_reported_as_not_merged() {
    let text =
        String::from_utf8_lossy(PR_CLOSED_MERGED).replace("\"merged\": true", "\"merged\": false");
    assert_eq!(
        parse("pull_request", text.as_bytes()),
        Parsed::Event(Event::PullRequestClosed {
            repo: repo(),
            number: PrNumber::new(17).expect("number"),
            merged: false
        })
    );
}

#[test]
fn tag_pushes_and_branch_deletions_are_ignored() {
    let text = String::from_utf8_lossy(PUSH).into_owned();
    let tag = text.replace(
        "\"ref\": \"refs/heads/feature/retry-backoff\"",
        "\"ref\": \"refs/tags/v1.0\"",
    );
    assert!(is_ignored(&parse("push", tag.as_bytes())));
    let deleted = text.replace(
        &format!("\"after\": \"{HEAD_SHA}\""),
        "\"after\": \"0000000000000000000000000000000000000000\"",
    );
    assert!(is_ignored(&parse("push", deleted.as_bytes())));
}

#[test]
fn dispatch_uses_the_event_type_and_ignores_unknown_or_missing_types() {
    assert!(is_ignored(&parse("", STATUS_SUCCESS)));
    assert!(is_ignored(&parse("issue_comment", STATUS_SUCCESS)));
    assert!(is_ignored(&parse("pull_request_sync", PR_OPENED)));
    assert!(is_ignored(&parse(
        "pull_request_review_comment",
        REVIEW_APPROVED
    )));
    // A status body sent under another type is not read as a status.
    assert!(is_ignored(&parse("push", STATUS_SUCCESS)));
}

#[test]
fn garbage_truncated_and_mutated_bodies_never_panic() {
    let types = [
        "status",
        "pull_request",
        "push",
        "pull_request_review_approved",
        "",
        "delete",
    ];
    let samples = [
        STATUS_SUCCESS,
        STATUS_FAILURE,
        PR_OPENED,
        PR_CLOSED_MERGED,
        REVIEW_APPROVED,
        PUSH,
    ];
    let mut rng = rand::rngs::StdRng::seed_from_u64(0x6174_6561);
    for sample in samples {
        for cut in (0..sample.len()).step_by(97) {
            for event_type in types {
                let _ = parse(event_type, &sample[..cut]);
            }
        }
        for _ in 0..200 {
            let mut mutated = sample.to_vec();
            for _ in 0..rng.random_range(1..8) {
                let at = rng.random_range(0..mutated.len());
                mutated[at] = rng.random();
            }
            for event_type in types {
                let _ = parse(event_type, &mutated);
            }
        }
    }
    for _ in 0..500 {
        let len = rng.random_range(0..256);
        let noise: Vec<u8> = (0..len).map(|_| rng.random()).collect();
        for event_type in types {
            assert!(is_ignored(&parse(event_type, &noise)));
        }
    }
    let odd = [
        r#"{"sha": "zz", "state": "success", "repository": {"full_name": "acme/widgets"}}"#,
        r#"{"sha": 5, "state": null}"#,
        r#"{"action": "closed", "number": 0, "pull_request": {}, "repository": {"full_name": "acme/widgets"}}"#,
        r#"{"action": "closed", "number": -1, "pull_request": {"merged": true}, "repository": {"full_name": "x"}}"#,
        r#"{"ref": "refs/heads/-rf", "after": "e4b8a0c2d6f1e3a5b7c9d1f3a5c7e9b1d3f5a7c9", "repository": {"full_name": "acme/widgets"}}"#,
        r#"{"ref": "refs/heads/ok", "after": "", "repository": {"full_name": "../.."}}"#,
        "[]",
        "null",
    ];
    for body in odd {
        for event_type in types {
            assert!(
                is_ignored(&parse(event_type, body.as_bytes())),
                "{event_type}: {body}"
            );
        }
    }
}
