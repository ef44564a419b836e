//! The webhook ingress: samples, duplicates, signatures, classification, JSON, store failures.

use std::sync::Arc;

use orch_core::ports::Source;
use orch_http::WebhookSecrets;
use tokio::sync::Notify;

use crate::support::{
    gitea_headers, gitea_samples, plane_headers, plane_samples, sign, sign_sha1, HttpClient,
    Sample, TestServer, DEADLINE, GITEA_SECRET, PLANE_SECRET,
};

fn all_samples() -> Vec<Sample> {
    let mut samples = plane_samples();
    samples.extend(gitea_samples());
    samples
}

#[tokio::test]
async fn every_contract_sample_is_queued_then_refused_as_duplicate_by_id_and_by_body() {
    check_contract_samples(TestServer::start(|_| {}).await).await;
}

#[tokio::test]
async fn every_contract_sample_is_queued_then_refused_as_duplicate_on_sqlite() {
    check_contract_samples(TestServer::start_on_sqlite(|_| {}).await).await;
}

async fn check_contract_samples(server: TestServer) {
    let client = HttpClient::new();
    // Samples of events orch does not use (a review on the pull request) are answered
    // `ignored` and not stored; every other one is queued once.
    let events = crate::support::webhook_events();
    let (samples, unused): (Vec<Sample>, Vec<Sample>) =
        all_samples().into_iter().partition(|sample| {
            let used = if sample.path.ends_with("plane") {
                events.plane
            } else {
                events.gitea
            };
            used.contains(&sample.event_type.as_str())
        });
    assert!(
        unused
            .iter()
            .any(|sample| sample.event_type == "pull_request_review_approved"),
        "the contract's review sample is one orch does not use"
    );
    for sample in &unused {
        let reply = client
            .post(
                &server.url(sample.path),
                &sample.headers,
                sample.body.clone(),
            )
            .await;
        assert_eq!(
            (reply.status, reply.json()["status"].clone()),
            (200, serde_json::json!("ignored")),
            "{}",
            sample.name
        );
    }
    for sample in &samples {
        let url = server.url(sample.path);
        let first = client
            .post(&url, &sample.headers, sample.body.clone())
            .await;
        assert_eq!(
            (first.status, first.json()),
            (202, serde_json::json!({"status": "queued"})),
            "{}",
            sample.name
        );

        let again = client
            .post(&url, &sample.headers, sample.body.clone())
            .await;
        assert_eq!(
            (again.status, again.json()),
            (202, serde_json::json!({"status": "duplicate"})),
            "{}",
            sample.name
        );

        let retried =
            sample.headers_with(sample.delivery_header, &format!("retry-of-{}", sample.name));
        let retry = client.post(&url, &retried, sample.body.clone()).await;
        assert_eq!(
            (retry.status, retry.json()),
            (202, serde_json::json!({"status": "duplicate"})),
            "{}",
            sample.name
        );
    }

    let stored = server.stored().await;
    assert_eq!(stored.len(), samples.len(), "one row per sample");
    for (sample, delivery) in samples.iter().zip(&stored) {
        let source = if sample.path.ends_with("plane") {
            Source::Plane
        } else {
            Source::Gitea
        };
        let delivery_id = sample
            .headers
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case(sample.delivery_header))
            .map(|(_, value)| value.clone())
            .expect("samples carry a delivery id");
        assert_eq!(delivery.source, source, "{}", sample.name);
        assert_eq!(delivery.delivery_id, delivery_id, "{}", sample.name);
        assert_eq!(delivery.event_type, sample.event_type, "{}", sample.name);
        assert_eq!(
            delivery.body, sample.body,
            "{}: the raw bytes are stored unchanged",
            sample.name
        );
    }
}

#[tokio::test]
async fn gitea_delivery_signed_only_with_the_sha256_hub_header_is_queued() {
    let server = TestServer::start(|_| {}).await;
    let sample = gitea_samples().into_iter().next().expect("a gitea sample");
    let headers = sample.headers_without("X-Gitea-Signature");
    let headers: Vec<(String, String)> = headers
        .into_iter()
        .filter(|(name, _)| !name.eq_ignore_ascii_case("X-Gogs-Signature"))
        .collect();
    let reply = HttpClient::new()
        .post(&server.url(sample.path), &headers, sample.body.clone())
        .await;
    assert_eq!(
        (reply.status, reply.json()),
        (202, serde_json::json!({"status": "queued"}))
    );
}

/// One way of signing a delivery wrongly.
struct Forgery {
    name: &'static str,
    source: Source,
    headers: Vec<(String, String)>,
    reason: &'static str,
}

fn forgeries(body: &[u8]) -> Vec<Forgery> {
    let base_plane = |signature: Option<String>| {
        let mut headers = plane_headers(PLANE_SECRET, "forged-plane", body);
        headers.retain(|(name, _)| name != "X-Plane-Signature");
        if let Some(signature) = signature {
            headers.push(("X-Plane-Signature".to_owned(), signature));
        }
        headers
    };
    let base_gitea = |extra: &[(&str, String)]| {
        let mut headers = gitea_headers(GITEA_SECRET, "forged-gitea", body);
        headers.retain(|(name, _)| name != "X-Gitea-Signature");
        headers.extend(
            extra
                .iter()
                .map(|(name, value)| ((*name).to_owned(), value.clone())),
        );
        headers
    };
    let good_plane = sign(PLANE_SECRET, body);
    let good_gitea = sign(GITEA_SECRET, body);
    vec![
        Forgery {
            name: "plane missing",
            source: Source::Plane,
            headers: base_plane(None),
            reason: "missing",
        },
        Forgery {
            name: "plane other secret",
            source: Source::Plane,
            headers: base_plane(Some(sign("plane_wh_not_ours", body))),
            reason: "mismatch",
        },
        Forgery {
            name: "plane signature of another body",
            source: Source::Plane,
            headers: base_plane(Some(sign(PLANE_SECRET, b"{}"))),
            reason: "mismatch",
        },
        Forgery {
            name: "plane prefixed",
            source: Source::Plane,
            headers: base_plane(Some(format!("sha256={good_plane}"))),
            reason: "malformed",
        },
        Forgery {
            name: "plane not hex",
            source: Source::Plane,
            headers: base_plane(Some("not-a-signature".to_owned())),
            reason: "malformed",
        },
        Forgery {
            name: "gitea missing",
            source: Source::Gitea,
            headers: base_gitea(&[]),
            reason: "missing",
        },
        Forgery {
            name: "gitea other secret",
            source: Source::Gitea,
            headers: base_gitea(&[("X-Gitea-Signature", sign("not-our-secret", body))]),
            reason: "mismatch",
        },
        Forgery {
            name: "gitea hub header without prefix",
            source: Source::Gitea,
            headers: base_gitea(&[("X-Hub-Signature-256", good_gitea.clone())]),
            reason: "malformed",
        },
        Forgery {
            name: "gitea hub header with sha1 prefix",
            source: Source::Gitea,
            headers: base_gitea(&[("X-Hub-Signature-256", format!("sha1={good_gitea}"))]),
            reason: "malformed",
        },
        Forgery {
            name: "gitea sha1 only",
            source: Source::Gitea,
            headers: base_gitea(&[(
                "X-Hub-Signature",
                format!("sha1={}", sign_sha1(GITEA_SECRET, body)),
            )]),
            reason: "sha1_only",
        },
        Forgery {
            name: "gitea other secret in both headers",
            source: Source::Gitea,
            headers: base_gitea(&[
                ("X-Gitea-Signature", sign("not-our-secret", body)),
                (
                    "X-Hub-Signature-256",
                    format!("sha256={}", sign("not-our-secret", body)),
                ),
            ]),
            reason: "mismatch",
        },
    ]
}

#[tokio::test]
async fn forged_signatures_are_refused_with_401_and_nothing_is_stored() {
    let server = TestServer::start(|_| {}).await;
    let client = HttpClient::new();
    let body = br#"{"event": "issue", "action": "updated", "data": {}}"#;
    let forgeries = forgeries(body);
    for forgery in &forgeries {
        let path = match forgery.source {
            Source::Plane => "/webhooks/plane",
            Source::Gitea => "/webhooks/gitea",
        };
        let reply = client
            .post(&server.url(path), &forgery.headers, body.to_vec())
            .await;
        assert_eq!(reply.status, 401, "{}", forgery.name);
        assert_eq!(
            reply.json(),
            serde_json::json!({"error": "invalid webhook signature"}),
            "{}",
            forgery.name
        );
    }
    assert!(
        server.stored().await.is_empty(),
        "a forged delivery must never be stored"
    );

    let metrics = client.get(&server.url("/metrics"), &[]).await.text();
    for source in [Source::Plane, Source::Gitea] {
        for reason in ["missing", "mismatch", "malformed", "sha1_only"] {
            let expected = forgeries
                .iter()
                .filter(|each| each.source == source && each.reason == reason)
                .count();
            if expected == 0 {
                continue;
            }
            let line = format!(
                "orch_webhook_signature_failures_total{{source=\"{}\",reason=\"{reason}\"}} {expected}",
                source.as_str()
            );
            assert!(metrics.contains(&line), "metrics lack `{line}`:\n{metrics}");
        }
    }
}

#[tokio::test]
async fn a_source_without_secrets_refuses_every_delivery() {
    let server = TestServer::start(|state| state.plane_secrets = WebhookSecrets::default()).await;
    let body = br#"{"event": "issue"}"#.to_vec();
    let headers = plane_headers(PLANE_SECRET, "d-1", &body);
    let reply = HttpClient::new()
        .post(&server.url("/webhooks/plane"), &headers, body)
        .await;
    assert_eq!(reply.status, 401);
    assert!(server.stored().await.is_empty());
}

#[tokio::test]
async fn both_secrets_are_accepted_during_a_rotation() {
    const NEW_PLANE: &str = "plane_wh_new_secret_after_rotation";
    const NEW_GITEA: &str = "gitea-new-secret";
    let server = TestServer::start(|state| {
        state.plane_secrets = WebhookSecrets::from_strings(&[PLANE_SECRET, NEW_PLANE]);
        state.gitea_secrets = WebhookSecrets::from_strings(&[NEW_GITEA, GITEA_SECRET]);
    })
    .await;
    let client = HttpClient::new();
    for (index, secret) in [PLANE_SECRET, NEW_PLANE].into_iter().enumerate() {
        let body = format!(r#"{{"event": "issue", "n": {index}}}"#).into_bytes();
        let headers = plane_headers(secret, &format!("plane-{index}"), &body);
        let reply = client
            .post(&server.url("/webhooks/plane"), &headers, body)
            .await;
        assert_eq!(
            (reply.status, reply.json()),
            (202, serde_json::json!({"status": "queued"})),
            "plane {index}"
        );
    }
    for (index, secret) in [GITEA_SECRET, NEW_GITEA].into_iter().enumerate() {
        let body = format!(r#"{{"ref": "refs/heads/main", "n": {index}}}"#).into_bytes();
        let headers = gitea_headers(secret, &format!("gitea-{index}"), &body);
        let reply = client
            .post(&server.url("/webhooks/gitea"), &headers, body)
            .await;
        assert_eq!(
            (reply.status, reply.json()),
            (202, serde_json::json!({"status": "queued"})),
            "gitea {index}"
        );
    }
    assert_eq!(server.stored().await.len(), 4);

    // After the rotation ends, the old secret no longer signs.
    server.state.plane_secrets.replace(&[NEW_PLANE]);
    let body = br#"{"event": "issue", "n": 9}"#.to_vec();
    let headers = plane_headers(PLANE_SECRET, "plane-9", &body);
    let reply = client
        .post(&server.url("/webhooks/plane"), &headers, body)
        .await;
    assert_eq!(reply.status, 401);
}

#[tokio::test]
async fn events_orch_does_not_use_are_answered_200_ignored_and_not_stored() {
    let server = TestServer::start(|_| {}).await;
    let client = HttpClient::new();
    let body = br#"{"event": "project", "action": "updated"}"#.to_vec();

    let mut plane = plane_headers(PLANE_SECRET, "p-1", &body);
    plane.retain(|(name, _)| name != "X-Plane-Event");
    plane.push(("X-Plane-Event".to_owned(), "project".to_owned()));
    let reply = client
        .post(&server.url("/webhooks/plane"), &plane, body.clone())
        .await;
    assert_eq!(
        (reply.status, reply.json()),
        (
            200,
            serde_json::json!({"status": "ignored", "reason": "plane event \"project\" is not used"})
        )
    );

    let mut gitea = gitea_headers(GITEA_SECRET, "g-1", &body);
    gitea.retain(|(name, _)| !name.starts_with("X-Gitea-Event"));
    gitea.push(("X-Gitea-Event".to_owned(), "pull_request".to_owned()));
    gitea.push((
        "X-Gitea-Event-Type".to_owned(),
        "pull_request_review_request".to_owned(),
    ));
    let reply = client
        .post(&server.url("/webhooks/gitea"), &gitea, body.clone())
        .await;
    assert_eq!(
        (reply.status, reply.json()),
        (
            200,
            serde_json::json!({"status": "ignored", "reason": "gitea event \"pull_request_review_request\" is not used"})
        )
    );
    // A review on the pull request never decides anything (verdicts come from Plane): it is
    // not stored either.
    let mut review = gitea_headers(GITEA_SECRET, "g-2", &body);
    review.retain(|(name, _)| name != "X-Gitea-Event-Type");
    review.push((
        "X-Gitea-Event-Type".to_owned(),
        "pull_request_review_approved".to_owned(),
    ));
    let reply = client
        .post(&server.url("/webhooks/gitea"), &review, body.clone())
        .await;
    assert_eq!(
        (reply.status, reply.json()),
        (
            200,
            serde_json::json!({"status": "ignored", "reason": "gitea event \"pull_request_review_approved\" is not used"})
        )
    );

    let mut no_event = plane_headers(PLANE_SECRET, "p-2", &body);
    no_event.retain(|(name, _)| name != "X-Plane-Event");
    let reply = client
        .post(&server.url("/webhooks/plane"), &no_event, body.clone())
        .await;
    assert_eq!(
        (reply.status, reply.json()),
        (
            200,
            serde_json::json!({"status": "ignored", "reason": "no x-plane-event header"})
        )
    );

    assert!(server.stored().await.is_empty());
}

#[tokio::test]
async fn an_ignored_event_still_needs_a_valid_signature() {
    let server = TestServer::start(|_| {}).await;
    let body = br#"{"event": "project"}"#.to_vec();
    let mut headers = plane_headers("plane_wh_not_ours", "p-1", &body);
    headers.retain(|(name, _)| name != "X-Plane-Event");
    headers.push(("X-Plane-Event".to_owned(), "project".to_owned()));
    let reply = HttpClient::new()
        .post(&server.url("/webhooks/plane"), &headers, body)
        .await;
    assert_eq!(reply.status, 401);
}

#[tokio::test]
async fn a_signed_body_that_is_not_json_is_refused_with_400_and_not_stored() {
    let server = TestServer::start(|_| {}).await;
    let client = HttpClient::new();
    for body in [
        &b"{\"event\": \"issue\""[..],
        b"not json at all",
        b"",
        b"{\"a\": 1} trailing",
    ] {
        let headers = plane_headers(PLANE_SECRET, "bad-json", body);
        let reply = client
            .post(&server.url("/webhooks/plane"), &headers, body.to_vec())
            .await;
        assert_eq!(
            (reply.status, reply.json()),
            (400, serde_json::json!({"error": "body is not valid JSON"})),
            "{}",
            String::from_utf8_lossy(body)
        );
    }
    assert!(server.stored().await.is_empty());
}

#[tokio::test]
async fn a_failing_inbox_commit_is_answered_503_and_a_retry_is_queued() {
    let server = TestServer::start(|_| {}).await;
    let client = HttpClient::new();
    let sample = plane_samples().into_iter().next().expect("a plane sample");
    server.store.fail_inbox_writes(true);
    let reply = client
        .post(
            &server.url(sample.path),
            &sample.headers,
            sample.body.clone(),
        )
        .await;
    assert_eq!(
        (reply.status, reply.json()),
        (503, serde_json::json!({"error": "inbox unavailable"}))
    );
    assert!(server.stored().await.is_empty());

    server.store.fail_inbox_writes(false);
    let reply = client
        .post(
            &server.url(sample.path),
            &sample.headers,
            sample.body.clone(),
        )
        .await;
    assert_eq!(
        (reply.status, reply.json()),
        (202, serde_json::json!({"status": "queued"}))
    );
    assert_eq!(server.stored().await.len(), 1);
}

#[tokio::test]
async fn a_delivery_without_an_id_is_stored_under_its_body_hash() {
    let server = TestServer::start(|_| {}).await;
    let body = br#"{"event": "issue", "id": "no-delivery-header"}"#.to_vec();
    let mut headers = plane_headers(PLANE_SECRET, "unused", &body);
    headers.retain(|(name, _)| name != "X-Plane-Delivery");
    let reply = HttpClient::new()
        .post(&server.url("/webhooks/plane"), &headers, body.clone())
        .await;
    assert_eq!(reply.status, 202);
    let stored = server.stored().await;
    let expected = {
        use sha2::Digest as _;
        hex::encode(sha2::Sha256::digest(&body))
    };
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].delivery_id, expected);
}

#[tokio::test]
async fn an_unusable_delivery_id_is_refused_with_400() {
    let server = TestServer::start(|_| {}).await;
    let body = br#"{"event": "issue"}"#.to_vec();
    let headers = plane_headers(PLANE_SECRET, &"x".repeat(129), &body);
    let reply = HttpClient::new()
        .post(&server.url("/webhooks/plane"), &headers, body)
        .await;
    assert_eq!(reply.status, 400);
    assert!(server.stored().await.is_empty());
}

#[tokio::test]
async fn a_queued_delivery_wakes_the_event_loop() {
    let wake = Arc::new(Notify::new());
    let server = TestServer::start({
        let wake = wake.clone();
        move |state| state.wake = Some(wake)
    })
    .await;
    let body = br#"{"event": "issue"}"#.to_vec();
    let headers = plane_headers(PLANE_SECRET, "wake-1", &body);
    let notified = wake.notified();
    tokio::pin!(notified);
    notified.as_mut().enable();
    let reply = HttpClient::new()
        .post(&server.url("/webhooks/plane"), &headers, body)
        .await;
    assert_eq!(reply.status, 202);
    tokio::time::timeout(DEADLINE, notified)
        .await
        .expect("the event loop is woken after the commit");
}

#[tokio::test]
async fn webhook_routes_accept_only_post() {
    let server = TestServer::start(|_| {}).await;
    let reply = HttpClient::new()
        .get(&server.url("/webhooks/plane"), &[])
        .await;
    assert_eq!(reply.status, 405);
    assert_eq!(
        reply.headers.get("allow").map(|value| value.as_bytes()),
        Some(&b"POST"[..])
    );
}
