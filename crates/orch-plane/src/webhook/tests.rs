//! Tests of the webhook parser: every contract sample, the ignored cases, and garbage input.

use std::path::PathBuf;

use orch_core::event::{Event, Parsed};

use crate::webhook::parse;

/// `shared/contracts` of the project, or `$ORCH_CONTRACTS_DIR`.
fn contracts_dir() -> PathBuf {
    match std::env::var_os("ORCH_CONTRACTS_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../../shared/contracts"
        )),
    }
}

fn sample(name: &str) -> Vec<u8> {
    let path = contracts_dir().join("plane").join(name);
    std::fs::read(&path).unwrap_or_else(|err| panic!("reading {}: {err}", path.display()))
}

/// The event header of a sample, from its `*.headers.json`.
fn sample_event(name: &str) -> String {
    let headers: serde_json::Value =
        serde_json::from_slice(&sample(&format!("{name}.headers.json")))
            .expect("headers sample is JSON");
    headers["X-Plane-Event"]
        .as_str()
        .expect("sample has X-Plane-Event")
        .to_owned()
}

/// A one-line summary of what `parse` made of a delivery, for data-driven comparisons.
fn summary(parsed: &Parsed) -> String {
    match parsed {
        Parsed::Event(Event::WorkItemMoved { item, actor }) => format!(
            "moved item={} project={} seq={} title={:?} description={:?} state={} updated_at={} actor={}",
            item.id,
            item.project,
            item.sequence_id,
            item.title,
            item.description,
            item.state,
            item.updated_at,
            actor.as_ref().map_or("none".to_owned(), ToString::to_string),
        ),
        Parsed::Event(Event::CommentAdded { project, issue, author }) => format!(
            "comment issue={issue} project={project} author={}",
            author.as_ref().map_or("none".to_owned(), ToString::to_string),
        ),
        Parsed::Event(other) => format!("unexpected event {other:?}"),
        Parsed::Ignored(reason) => format!("ignored: {reason}"),
    }
}

/// A sample of this crate's `test_data/` (shapes derived from the contracts, see its README).
fn test_data(name: &str) -> Vec<u8> {
    let path = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/test_data")).join(name);
    std::fs::read(&path).unwrap_or_else(|err| panic!("reading {}: {err}", path.display()))
}

fn check_sample(name: &str, expected: &str) {
    let body = sample(&format!("{name}.body.json"));
    let parsed = parse(&sample_event(name), &body);
    assert_eq!(summary(&parsed), expected, "sample {name}");
}

#[test]
fn web_ui_state_change_sample_becomes_work_item_moved_with_the_new_state_and_actor() {
    check_sample(
        "webhook_issue_state_updated",
        "moved item=b2f3a4b5-c6d7-4e8f-9a0b-1c2d3e4f5a02 project=4f9a2c71-3e5b-4d8a-b6c2-91e0f7a35d12 seq=2 \
         title=\"Fix login redirect loop\" description=\"Users bounce between /login and /.\" \
         state=2d8c9f5a-3b4e-4c7d-8a1f-5e6d7c8b9a03 updated_at=2026-05-19T10:15:30.482Z \
         actor=6a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c41",
    );
}

#[test]
fn api_state_change_sample_becomes_work_item_moved_with_the_api_users_actor() {
    check_sample(
        "webhook_issue_state_updated_via_api",
        "moved item=a1e2f3a4-b5c6-4d7e-8f9a-0b1c2d3e4f01 project=4f9a2c71-3e5b-4d8a-b6c2-91e0f7a35d12 seq=3 \
         title=\"Rotate signing keys\" description=\"Rotate the webhook signing keys.\" \
         state=3e9d0a6b-4c5f-4d8e-9b2a-6f7e8d9c0b04 updated_at=2026-05-19T11:00:04.120Z \
         actor=7b2c3d4e-5f6a-4b7c-9d8e-0f1a2b3c4d52",
    );
}

/// Both activity shapes Plane sends for a state change: ids in `new_value` (the contract
/// sample) and state names in `new_value` with the ids in `new_identifier`. The state always
/// comes from `data.state`.
#[test]
fn both_activity_shapes_of_a_state_change_give_the_state_of_data() {
    let moved_to_in_progress = "moved item=b2f3a4b5-c6d7-4e8f-9a0b-1c2d3e4f5a02 project=4f9a2c71-3e5b-4d8a-b6c2-91e0f7a35d12 seq=2 \
         title=\"Fix login redirect loop\" description=\"Users bounce between /login and /.\" \
         state=2d8c9f5a-3b4e-4c7d-8a1f-5e6d7c8b9a03 updated_at=2026-05-19T10:15:30.482Z \
         actor=6a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c41";
    let shapes = [
        ("state ids", sample("webhook_issue_state_updated.body.json")),
        (
            "state names",
            test_data("webhook_issue_state_updated_state_names.body.json"),
        ),
    ];
    for (shape, body) in shapes {
        assert_eq!(
            summary(&parse("issue", &body)),
            moved_to_in_progress,
            "activity with {shape}"
        );
    }
}

#[test]
fn the_state_is_never_taken_from_the_activity() {
    let body = String::from_utf8(sample("webhook_issue_state_updated.body.json")).expect("UTF-8");
    let body = body.replace(
        "\"new_value\": \"2d8c9f5a-3b4e-4c7d-8a1f-5e6d7c8b9a03\"",
        "\"new_value\": \"ffffffff-3b4e-4c7d-8a1f-5e6d7c8b9a03\"",
    );
    let summary = summary(&parse("issue", body.as_bytes()));
    assert!(
        summary.contains("state=2d8c9f5a-3b4e-4c7d-8a1f-5e6d7c8b9a03"),
        "{summary}"
    );
}

#[test]
fn comment_created_sample_becomes_comment_added_with_its_author() {
    check_sample(
        "webhook_issue_comment_created",
        "comment issue=b2f3a4b5-c6d7-4e8f-9a0b-1c2d3e4f5a02 project=4f9a2c71-3e5b-4d8a-b6c2-91e0f7a35d12 \
         author=6a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c41",
    );
}

/// The web UI sample with its `action` and `activity.field` replaced.
fn variant(action: &str, field: &str) -> Vec<u8> {
    let body = String::from_utf8(sample("webhook_issue_state_updated.body.json"))
        .expect("sample is UTF-8");
    body.replace(
        "\"action\": \"updated\"",
        &format!("\"action\": \"{action}\""),
    )
    .replace("\"field\": \"state_id\"", &format!("\"field\": {field}"))
    .into_bytes()
}

#[test]
fn actions_and_fields_are_classified() {
    let web_ui_state = "state=2d8c9f5a-3b4e-4c7d-8a1f-5e6d7c8b9a03";
    let cases: [(&str, &str, &str, &str); 8] = [
        ("issue", "updated", "\"state\"", web_ui_state),
        ("issue", "update", "\"state_id\"", web_ui_state),
        ("issue", "created", "null", web_ui_state),
        ("issue", "create", "null", web_ui_state),
        (
            "issue",
            "updated",
            "\"priority\"",
            "ignored: plane issue update of field \"priority\" is not a state change",
        ),
        (
            "issue",
            "updated",
            "null",
            "ignored: plane issue update of field \"\" is not a state change",
        ),
        (
            "issue",
            "deleted",
            "null",
            "ignored: plane issue action \"deleted\" is not used",
        ),
        (
            "project",
            "updated",
            "\"state\"",
            "ignored: plane event \"project\" is not used",
        ),
    ];
    for (event, action, field, expected) in cases {
        let summary = summary(&parse(event, &variant(action, field)));
        assert!(
            summary.contains(expected),
            "{event}/{action}/{field}: {summary}"
        );
    }
}

#[test]
fn created_item_is_moved_into_its_own_state_not_an_activity_value() {
    let body = String::from_utf8(variant("created", "null")).expect("UTF-8");
    let body = body.replace(
        "\"new_value\": \"2d8c9f5a-3b4e-4c7d-8a1f-5e6d7c8b9a03\"",
        "\"new_value\": \"ffffffff-3b4e-4c7d-8a1f-5e6d7c8b9a03\"",
    );
    let summary = summary(&parse("issue", body.as_bytes()));
    assert!(
        summary.contains("state=2d8c9f5a-3b4e-4c7d-8a1f-5e6d7c8b9a03"),
        "{summary}"
    );
}

#[test]
fn bare_uuid_state_and_offset_times_are_understood() {
    let body = r#"{"event": "issue", "action": "created", "data": {"id": "i-1", "project": "p-1",
        "sequence_id": 7, "name": "T", "description_html": "<p>a &amp; b</p>", "state": "s-1",
        "updated_at": "2026-05-19T15:45:30.482913+05:30"}, "activity": {"field": null, "actor": null}}"#;
    assert_eq!(
        summary(&parse("", body.as_bytes())),
        "moved item=i-1 project=p-1 seq=7 title=\"T\" description=\"a & b\" state=s-1 \
         updated_at=2026-05-19T10:15:30.482Z actor=none"
    );
}

#[test]
fn header_names_the_event_even_when_the_body_disagrees() {
    let body = sample("webhook_issue_state_updated.body.json");
    assert!(
        matches!(parse("issue_comment", &body), Parsed::Ignored(_)),
        "an issue body read as a comment has no issue id"
    );
}

#[test]
fn malformed_payloads_are_ignored_with_a_reason() {
    let cases: [&[u8]; 6] = [
        b"",
        b"not json",
        b"[1, 2]",
        br#"{"event": "issue", "action": "updated", "activity": {"field": "state"}}"#,
        br#"{"event": "issue", "action": "updated", "data": {"id": "has space"}, "activity": {"field": "state"}}"#,
        br#"{"event": "issue", "action": "created", "data": {"id": "i", "project": "p", "sequence_id": 1,
            "state": {"id": "s"}, "updated_at": "yesterday"}}"#,
    ];
    for body in cases {
        assert!(matches!(parse("issue", body), Parsed::Ignored(reason) if !reason.is_empty()));
    }
}

/// xorshift64*: a small deterministic generator, so a failure can be replayed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, bound: usize) -> usize {
        (self.next() % bound as u64) as usize
    }
}

#[test]
fn random_truncated_and_mutated_bytes_never_panic() {
    let samples = [
        sample("webhook_issue_state_updated.body.json"),
        sample("webhook_issue_state_updated_via_api.body.json"),
        sample("webhook_issue_comment_created.body.json"),
    ];
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut events = 0;
    for round in 0..3000 {
        let base = &samples[round % samples.len()];
        let body: Vec<u8> = match round % 3 {
            0 => base[..rng.below(base.len() + 1)].to_vec(),
            1 => {
                let mut mutated = base.clone();
                for _ in 0..=rng.below(4) {
                    let idx = rng.below(mutated.len());
                    mutated[idx] = rng.next() as u8;
                }
                mutated
            }
            _ => (0..rng.below(256)).map(|_| rng.next() as u8).collect(),
        };
        if let Parsed::Event(_) = parse("issue", &body) {
            events += 1;
        }
    }
    assert!(
        events > 0,
        "some lightly mutated samples should still parse"
    );
}
