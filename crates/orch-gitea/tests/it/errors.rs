//! Error classes, retries and counters: 429, 5xx, 401/403, 404, timeouts.

use std::time::Duration;

use orch_core::ports::{Forge, ForgeError};

use crate::Fixture;

#[tokio::test]
async fn a_short_429_burst_is_retried_and_counted() {
    let fixture = Fixture::start().await;
    fixture.sim.rate_limit_next_requests(2, 1);
    let missing = orch_core::ids::PrNumber::new(5).expect("number");
    let err = fixture
        .forge
        .pull_request(&fixture.repo, missing)
        .await
        .expect_err("no such PR");
    assert!(matches!(err, ForgeError::NotFound(_)), "{err:?}");
    let stats = fixture.forge.stats();
    assert_eq!(stats.rate_limited, 2);
    assert_eq!(stats.calls, 3);
}

#[tokio::test]
async fn persistent_429_is_unavailable_with_retry_after() {
    let fixture = Fixture::start().await;
    fixture.sim.rate_limit_next_requests(10, 7);
    let sha = orch_core::ids::CommitSha::new("ab".repeat(20)).expect("sha");
    let err = fixture
        .forge
        .combined_status(&fixture.repo, &sha)
        .await
        .expect_err("rate limited");
    assert!(
        matches!(err, ForgeError::Unavailable { retry_after: Some(wait), .. } if wait == Duration::from_secs(7)),
        "{err:?}"
    );
    assert_eq!(
        fixture.forge.stats().calls,
        3,
        "three attempts, as configured"
    );
}

#[tokio::test]
async fn persistent_5xx_is_unavailable() {
    let fixture = Fixture::start().await;
    fixture.sim.fail_next_requests_with(502, 3);
    let sha = orch_core::ids::CommitSha::new("ab".repeat(20)).expect("sha");
    let err = fixture
        .forge
        .combined_status(&fixture.repo, &sha)
        .await
        .expect_err("bad gateway");
    assert!(matches!(err, ForgeError::Unavailable { .. }), "{err:?}");
    assert_eq!(fixture.forge.stats().errors, 3);
}

#[tokio::test]
async fn forbidden_is_unauthorized_naming_the_setting_and_is_not_retried() {
    let fixture = Fixture::start().await;
    fixture.sim.fail_next_requests_with(403, 1);
    let sha = orch_core::ids::CommitSha::new("ab".repeat(20)).expect("sha");
    let err = fixture
        .forge
        .combined_status(&fixture.repo, &sha)
        .await
        .expect_err("forbidden");
    match err {
        ForgeError::Unauthorized(message) => {
            assert!(message.contains("gitea.token") && message.contains("ORCH_GITEA_TOKEN"))
        }
        other => panic!("expected Unauthorized, got {other:?}"),
    }
    assert_eq!(fixture.forge.stats().calls, 1);
}

#[tokio::test]
async fn a_wrong_token_is_unauthorized() {
    let fixture = Fixture::start_with(|config| orch_gitea::GiteaSettings {
        token: orch_core::secret::Secret::new("wrong"),
        ..config
    })
    .await;
    let sha = orch_core::ids::CommitSha::new("ab".repeat(20)).expect("sha");
    let err = fixture
        .forge
        .combined_status(&fixture.repo, &sha)
        .await
        .expect_err("401");
    assert!(matches!(err, ForgeError::Unauthorized(_)), "{err:?}");
}

#[tokio::test]
async fn an_unknown_repository_is_not_found() {
    let fixture = Fixture::start().await;
    let repo = orch_core::ids::RepoSlug::new("acme/nothing").expect("slug");
    let err = fixture
        .forge
        .pull_request(&repo, orch_core::ids::PrNumber::new(1).expect("n"))
        .await
        .expect_err("404");
    assert!(matches!(err, ForgeError::NotFound(_)), "{err:?}");
}

#[tokio::test]
async fn a_slow_answer_past_the_timeout_is_unavailable() {
    let fixture = Fixture::start_with(|config| orch_gitea::GiteaSettings {
        request_timeout: Duration::from_millis(100),
        retry: orch_core::backoff::RetryPolicy {
            max_attempts: 2,
            ..config.retry
        },
        ..config
    })
    .await;
    fixture.sim.set_latency(Duration::from_millis(400));
    let sha = orch_core::ids::CommitSha::new("ab".repeat(20)).expect("sha");
    let err = fixture
        .forge
        .combined_status(&fixture.repo, &sha)
        .await
        .expect_err("timed out");
    assert!(matches!(err, ForgeError::Unavailable { .. }), "{err:?}");
    assert_eq!(fixture.forge.stats().errors, 2);
}

#[tokio::test]
async fn a_base_url_without_http_scheme_is_refused() {
    let err = orch_gitea::GiteaForge::new(orch_gitea::GiteaSettings::new("gitea.example.com", "t"))
        .expect_err("no scheme");
    assert!(matches!(err, ForgeError::Invalid(_)), "{err:?}");
}
