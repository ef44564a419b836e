//! Unit tests of the adapter's pure parts: error classes, state mapping, retries, redaction.

use std::time::Duration;

use orch_core::domain::CiState;
use orch_core::ports::ForgeError;

use crate::client::{encode_branch_path, encode_segment, ApiError};
use crate::config::{GiteaConfig, MergeStyle, RetryPolicy};
use crate::forge::{ci_state, PullDto};

fn status(status: u16) -> ApiError {
    ApiError::Status {
        status,
        message: "m".to_owned(),
        retry_after: Some(Duration::from_secs(3)),
    }
}

#[test]
fn answers_are_classified_into_the_port_error_classes() {
    assert!(matches!(
        status(429).into_forge(),
        ForgeError::Unavailable { retry_after: Some(wait), .. } if wait == Duration::from_secs(3)
    ));
    assert!(matches!(
        status(502).into_forge(),
        ForgeError::Unavailable { .. }
    ));
    assert!(matches!(
        ApiError::Transport("reset".to_owned()).into_forge(),
        ForgeError::Unavailable { .. }
    ));
    assert!(matches!(status(404).into_forge(), ForgeError::NotFound(_)));
    assert!(matches!(status(409).into_forge(), ForgeError::Conflict(_)));
    assert!(matches!(status(422).into_forge(), ForgeError::Invalid(_)));
    for code in [401, 403] {
        match status(code).into_forge() {
            ForgeError::Unauthorized(message) => {
                assert!(
                    message.contains("gitea.token") && message.contains("ORCH_GITEA_TOKEN"),
                    "{message}"
                );
            }
            other => panic!("{code} gave {other:?}"),
        }
    }
    assert!(status(429).is_retryable() && status(500).is_retryable());
    assert!(
        !status(403).is_retryable() && !status(404).is_retryable() && !status(422).is_retryable()
    );
}

#[test]
fn combined_state_words_map_to_ci_states() {
    let cases = [
        ("success", Some(CiState::Success)),
        ("failure", Some(CiState::Failure)),
        ("error", Some(CiState::Failure)),
        ("warning", Some(CiState::Failure)),
        ("pending", Some(CiState::Pending)),
        ("", None),
        ("skipped", None),
    ];
    for (word, expected) in cases {
        assert_eq!(ci_state(word), expected, "{word:?}");
    }
}

#[test]
fn backoff_is_full_jitter_under_the_cap_and_honours_retry_after() {
    let policy = RetryPolicy {
        max_attempts: 5,
        base: Duration::from_millis(100),
        cap: Duration::from_millis(350),
    };
    for attempt in 1..10 {
        let ceiling = Duration::from_millis(100 * (1 << (attempt - 1).min(10))).min(policy.cap);
        assert!(policy.delay(attempt, None) <= ceiling);
    }
    assert_eq!(
        policy.delay(1, Some(Duration::from_millis(300))),
        Duration::from_millis(300)
    );
    assert_eq!(policy.delay(1, Some(Duration::from_secs(60))), policy.cap);
    let production = RetryPolicy::production();
    assert_eq!(
        (production.base, production.cap),
        (Duration::from_secs(1), Duration::from_secs(300))
    );
}

#[test]
fn config_debug_never_shows_the_token() {
    let config = GiteaConfig::new("https://gitea.example.com", "secret-token-value");
    let shown = format!("{config:?}");
    assert!(!shown.contains("secret-token-value"), "{shown}");
    assert!(shown.contains("redacted"));
}

#[test]
fn merge_styles_round_trip_their_config_words() {
    for word in ["merge", "squash", "rebase", "rebase-merge"] {
        assert_eq!(MergeStyle::parse(word).map(MergeStyle::as_str), Some(word));
    }
    assert_eq!(MergeStyle::parse("fast-forward-only"), None);
}

#[test]
fn path_pieces_are_percent_encoded() {
    assert_eq!(
        encode_branch_path("feature/ET-001-a b"),
        "feature/ET-001-a%20b"
    );
    assert_eq!(encode_segment("release/1.0"), "release%2F1.0");
    assert_eq!(encode_segment("ü~-._"), "%C3%BC~-._");
}

#[test]
fn a_pull_requests_mergeable_is_read_and_a_missing_or_null_one_is_unknown() {
    let read = |mergeable: Option<serde_json::Value>| {
        let mut pull = serde_json::json!({
            "number": 3,
            "state": "open",
            "head": { "ref": "feature/x", "sha": "ab".repeat(20) },
            "base": { "ref": "main", "sha": "cd".repeat(20) },
        });
        if let Some(value) = mergeable {
            pull["mergeable"] = value;
        }
        serde_json::from_value::<PullDto>(pull)
            .expect("decodes")
            .into_domain()
            .expect("valid")
            .mergeable
    };
    assert_eq!(read(Some(serde_json::json!(false))), Some(false));
    assert_eq!(read(Some(serde_json::json!(true))), Some(true));
    assert_eq!(read(Some(serde_json::Value::Null)), None);
    assert_eq!(read(None), None);
}
