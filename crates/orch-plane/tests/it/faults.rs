//! Failures: 429, 5xx, timeouts, refused connections, bad tokens, and the call budget.

use std::time::{Duration, Instant};

use orch_core::backoff::{Backoff, RetryPolicy};
use orch_core::ports::{Tracker, TrackerError};
use orch_plane::{PlaneSettings, PlaneStats, PlaneTracker};
use orch_sim::plane::PlaneSim;

use crate::{fast_config, setup};

#[tokio::test]
async fn rate_limited_call_waits_for_retry_after_then_succeeds() {
    let setup = setup().await;
    setup.sim.rate_limit_next_requests(1, 1);
    setup.tracker.me().await.expect("succeeds after the wait");
    let requests = setup.sim.requests();
    let statuses: Vec<Option<u16>> = requests.iter().map(|request| request.status).collect();
    assert_eq!(statuses, [Some(429), Some(200)]);
    let waited = requests[1].at.duration_since(requests[0].at);
    assert!(
        waited >= Duration::from_millis(990),
        "Retry-After: 1 honoured, waited {waited:?}"
    );
    assert_eq!(
        setup.tracker.stats(),
        PlaneStats {
            calls: 2,
            rate_limited: 1,
            retries: 1,
            errors: 0
        }
    );
}

#[tokio::test]
async fn retry_after_beyond_the_backoff_cap_is_unavailable_with_the_servers_delay() {
    let setup = setup().await;
    setup.sim.rate_limit_next_requests(1, 37);
    match setup.tracker.me().await {
        Err(TrackerError::Unavailable { retry_after, .. }) => {
            assert_eq!(retry_after, Some(Duration::from_secs(37)))
        }
        other => panic!("expected Unavailable, got {other:?}"),
    }
    assert_eq!(
        setup.sim.requests().len(),
        1,
        "no call inside the server's wait"
    );
}

#[tokio::test]
async fn server_errors_then_success_is_retried_to_success() {
    let setup = setup().await;
    setup.sim.fail_next_requests(2);
    setup.tracker.me().await.expect("third attempt succeeds");
    assert_eq!(
        setup.tracker.stats(),
        PlaneStats {
            calls: 3,
            rate_limited: 0,
            retries: 2,
            errors: 0
        }
    );
}

#[tokio::test]
async fn persistent_errors_become_unavailable_and_are_counted() {
    // TC-16 at the port level: the reconciler turns this error into an empty list.
    let setup = setup().await;
    setup.sim.set_error_rate(1.0);
    let result = setup.tracker.list_work_items(&setup.project, None).await;
    match &result {
        Err(TrackerError::Unavailable {
            message,
            retry_after: None,
        }) => assert!(message.contains("HTTP 500"), "{message}"),
        other => panic!("expected Unavailable, got {other:?}"),
    }
    assert_eq!(
        setup.tracker.stats(),
        PlaneStats {
            calls: 4,
            rate_limited: 0,
            retries: 3,
            errors: 1
        }
    );
}

#[tokio::test]
async fn forbidden_token_is_unauthorized_naming_the_setting_without_retries() {
    let setup = setup().await;
    let tracker = PlaneTracker::new(&fast_config(&setup.sim, "plane_api_wrong"));
    match tracker.me().await {
        Err(TrackerError::Unauthorized(message)) => {
            assert!(
                message.contains("plane.api_token") && message.contains("ORCH_PLANE_API_TOKEN"),
                "{message}"
            );
            assert!(
                !message.contains("plane_api_wrong"),
                "the token is never in a message"
            );
        }
        other => panic!("expected Unauthorized, got {other:?}"),
    }
    assert_eq!(setup.sim.requests().len(), 1);
    assert_eq!(tracker.stats().errors, 1);
}

#[tokio::test]
async fn missing_token_is_unauthorized() {
    let setup = setup().await;
    let tracker = PlaneTracker::new(&fast_config(&setup.sim, ""));
    let result = tracker.me().await;
    assert!(
        matches!(&result, Err(TrackerError::Unauthorized(message)) if message.contains("plane.api_token")),
        "{result:?}"
    );
}

#[tokio::test]
async fn project_the_user_cannot_see_is_unauthorized_naming_the_project_setting() {
    let setup = setup().await;
    let unknown =
        orch_core::ids::ProjectId::new("5a6b7c8d-0000-4000-8000-000000000000").expect("valid id");
    let result = setup.tracker.list_work_items(&unknown, None).await;
    assert!(
        matches!(&result, Err(TrackerError::Unauthorized(message)) if message.contains("plane_project_id")),
        "{result:?}"
    );
}

#[tokio::test]
async fn slow_answers_time_out_as_unavailable() {
    let setup = setup().await;
    setup.sim.set_latency(Duration::from_millis(400));
    let mut config = fast_config(&setup.sim, setup.sim.api_token());
    config.request_timeout = Duration::from_millis(100);
    config.retry.max_attempts = 2;
    let tracker = PlaneTracker::new(&config);
    let result = tracker.me().await;
    assert!(
        matches!(&result, Err(TrackerError::Unavailable { message, .. }) if message.contains("timed out")),
        "{result:?}"
    );
    assert_eq!(tracker.stats().calls, 2);
}

#[tokio::test]
async fn refused_connection_is_unavailable() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let base_url = format!("http://{}", closed.local_addr().expect("addr"));
    drop(closed);
    let mut config = PlaneSettings::new(base_url, "acme", "token");
    config.retry = RetryPolicy {
        max_attempts: 2,
        backoff: Backoff {
            base: Duration::from_millis(1),
            cap: Duration::from_secs(1),
        },
    };
    let tracker = PlaneTracker::new(&config);
    let result = tracker.me().await;
    assert!(
        matches!(result, Err(TrackerError::Unavailable { .. })),
        "{result:?}"
    );
}

/// How long the burst test's rate window is (production: one minute).
const BURST_WINDOW: Duration = Duration::from_millis(500);

#[tokio::test]
async fn call_budget_keeps_a_burst_under_80_percent_of_the_rate_limit() {
    let sim = PlaneSim::start().await.expect("plane sim starts");
    sim.set_rate_limit(10, BURST_WINDOW);
    let mut config = fast_config(&sim, sim.api_token());
    config.rate_limit_per_min = 10;
    config.rate_window = BURST_WINDOW;
    assert_eq!(config.call_budget(), 8);
    let tracker = std::sync::Arc::new(PlaneTracker::new(&config));
    let started = Instant::now();
    let mut calls = Vec::new();
    for _ in 0..20 {
        let tracker = tracker.clone();
        calls.push(tokio::spawn(async move { tracker.me().await }));
    }
    for call in calls {
        call.await.expect("task runs").expect("every call succeeds");
    }
    assert!(
        started.elapsed() >= BURST_WINDOW * 2,
        "20 calls at 8 per window need two waits"
    );
    let requests = sim.requests();
    let statuses: Vec<Option<u16>> = requests.iter().map(|request| request.status).collect();
    assert_eq!(requests.len(), 20, "{statuses:?} {:?}", tracker.stats());
    assert!(
        requests.iter().all(|request| request.status == Some(200)),
        "never rate limited"
    );
    assert_eq!(tracker.stats().rate_limited, 0);
    // Server-side view: no window saw more than the budget (a token counts from the end of
    // its call, and the server sees a call before it ends).
    let most = requests
        .iter()
        .map(|first| {
            requests
                .iter()
                .filter(|other| other.at >= first.at && other.at < first.at + BURST_WINDOW)
                .count()
        })
        .max()
        .unwrap_or(0);
    assert!(most <= 8, "{most} calls in one window");
}

#[test]
fn debug_output_redacts_the_token() {
    let config = PlaneSettings::new(
        "https://plane.example.com",
        "acme",
        "plane_api_secret_value",
    );
    let text = format!("{config:?}");
    assert!(
        !text.contains("plane_api_secret_value") && text.contains("<redacted>"),
        "{text}"
    );
}

#[test]
fn settings_try_a_call_four_times_with_the_specs_backoff() {
    let settings = PlaneSettings::new("https://plane.example.com", "acme", "token");
    assert_eq!(
        settings.retry,
        RetryPolicy {
            max_attempts: 4,
            backoff: Backoff::default(),
        }
    );
}

/// How long a test waits for the simulator to see requests.
const SEEN_DEADLINE: Duration = Duration::from_secs(5);

#[tokio::test]
async fn reconciler_share_uses_at_most_half_the_budget_and_never_starves_the_pipeline() {
    let sim = PlaneSim::start().await.expect("plane sim starts");
    let project = orch_core::ids::ProjectId::new(sim.add_project("ET")).expect("valid id");
    let mut config = fast_config(&sim, sim.api_token());
    config.rate_limit_per_min = 10;
    config.rate_window = BURST_WINDOW;
    let pipeline = PlaneTracker::new(&config);
    let reconciler = std::sync::Arc::new(pipeline.half_budget_share());
    let started = Instant::now();
    let mut calls = Vec::new();
    for _ in 0..12 {
        let reconciler = reconciler.clone();
        calls.push(tokio::spawn(async move { reconciler.me().await }));
    }
    let deadline = Instant::now() + SEEN_DEADLINE;
    while sim.requests().len() < 4 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    pipeline
        .list_work_items(&project, None)
        .await
        .expect("the pipeline is not starved");
    for call in calls {
        call.await.expect("task runs").expect("every call succeeds");
    }
    assert!(
        started.elapsed() >= BURST_WINDOW * 2,
        "12 calls at 4 per window need two waits"
    );
    let requests = sim.requests();
    let list_idx = requests
        .iter()
        .position(|request| request.path.ends_with("/work-items/"))
        .expect("listed");
    assert_eq!(
        list_idx, 4,
        "the pipeline's call went ahead of the reconciler's fifth"
    );
    let me_calls: Vec<Instant> = requests
        .iter()
        .filter(|request| request.path.ends_with("/me/"))
        .map(|request| request.at)
        .collect();
    let most = me_calls
        .iter()
        .map(|first| {
            me_calls
                .iter()
                .filter(|at| **at >= *first && **at < *first + BURST_WINDOW)
                .count()
        })
        .max()
        .unwrap_or(0);
    assert!(most <= 4, "{most} reconciler calls in one window");
    assert_eq!(
        pipeline.stats().calls,
        13,
        "the share counts into the same stats"
    );
}
