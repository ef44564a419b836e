//! Tests of `GiteaSim`: git hosting, the CI, deliveries and faults.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::gitea::{CiOutcome, DeliveryOutcome, GiteaSim, LocalClone, Mutation};
use crate::server::{empty, sync_handler, Reply, SimServer};
use crate::webhook::{hmac_sha1_hex, hmac_sha256_hex};

/// How long a test waits for something asynchronous (CI, deliveries) before failing.
const WAIT: Duration = Duration::from_secs(20);
const SECRET: &str = "s3cr3t-for-tests";

async fn wait_for<T>(mut probe: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(value) = probe() {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "condition not met within {WAIT:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A receiver that answers 200 and keeps (headers, body) of every request.
type Received = Arc<Mutex<Vec<(Vec<(String, String)>, bytes::Bytes)>>>;

async fn receiver() -> (SimServer, Received) {
    let received: Received = Arc::default();
    let sink = received.clone();
    let server = SimServer::start(sync_handler(move |request| {
        let headers = request
            .headers()
            .iter()
            .map(|(name, value)| {
                (
                    name.as_str().to_owned(),
                    value.to_str().unwrap_or_default().to_owned(),
                )
            })
            .collect();
        sink.lock()
            .expect("lock")
            .push((headers, request.body().clone()));
        Reply::Respond(empty(200))
    }))
    .await
    .expect("receiver starts");
    (server, received)
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> &'a str {
    headers
        .iter()
        .find(|(key, _)| key.eq_ignore_ascii_case(name))
        .map(|(_, value)| value.as_str())
        .unwrap_or_default()
}

#[tokio::test]
async fn git_http_refuses_a_missing_token_and_accepts_the_configured_one() {
    let sim = GiteaSim::start().await.expect("sim starts");
    sim.create_repo("acme", "widgets").await.expect("repo");
    let dir = tempfile::tempdir().expect("tempdir");
    let target = dir.path().join("anon");
    let out = crate::gitea::git::run(
        dir.path(),
        &[
            "clone",
            "--quiet",
            &sim.clone_url("acme/widgets"),
            target.to_str().expect("utf-8 path"),
        ],
        &[],
        None,
    )
    .await
    .expect("git runs");
    assert_ne!(out.code, 0, "a clone without the token must fail");

    let clone = LocalClone::new(&sim, "acme/widgets")
        .await
        .expect("clone with the token");
    let sha = clone
        .commit_file("src/lib.rs", "fn main() {}\n", "Add lib")
        .await
        .expect("commit");
    clone.push("HEAD:refs/heads/feature/x").await.expect("push");
    assert_eq!(
        sim.branch_tip("acme/widgets", "feature/x")
            .await
            .expect("tip"),
        Some(sha)
    );
    let requests = sim.git_requests();
    assert!(requests
        .iter()
        .any(|request| request.uri.contains("git-receive-pack")));
    assert!(
        requests
            .iter()
            .all(|request| !request.uri.contains(sim.token())),
        "the token is never in a URL"
    );
    assert!(requests
        .iter()
        .any(|request| request.header("authorization") == Some("token gitea-sim-token")));
}

#[tokio::test]
async fn ci_posts_pending_then_failure_and_a_signed_status_delivery_without_branches() {
    let sim = GiteaSim::start().await.expect("sim starts");
    sim.create_repo("acme", "widgets").await.expect("repo");
    let (hook, received) = receiver().await;
    sim.set_webhook(&format!("{}/hook", hook.base_url()), SECRET);
    sim.set_ci_delay(Duration::from_millis(1));
    let clone = LocalClone::new(&sim, "acme/widgets").await.expect("clone");
    let sha = clone
        .commit_file("CI_FAIL", "x\n", "Break the build")
        .await
        .expect("commit");
    clone
        .push("HEAD:refs/heads/feature/broken")
        .await
        .expect("push");

    wait_for(|| (sim.combined_state("acme/widgets", &sha) == "failure").then_some(())).await;
    let states: Vec<String> = sim
        .mutations()
        .into_iter()
        .filter_map(|mutation| match mutation {
            Mutation::StatusCreated {
                sha: status_sha,
                state,
                ..
            } if status_sha == sha => Some(state),
            _ => None,
        })
        .collect();
    assert_eq!(states, ["pending", "failure"]);

    let (headers, body) = wait_for(|| {
        let received = received.lock().expect("lock");
        received
            .iter()
            .find(|(headers, body)| {
                header(headers, "x-gitea-event-type") == "status"
                    && String::from_utf8_lossy(body).contains("\"failure\"")
            })
            .cloned()
    })
    .await;
    let signature = hmac_sha256_hex(SECRET.as_bytes(), &body);
    assert_eq!(header(&headers, "x-gitea-signature"), signature);
    assert_eq!(
        header(&headers, "x-hub-signature-256"),
        format!("sha256={signature}")
    );
    assert_eq!(
        header(&headers, "x-hub-signature"),
        format!("sha1={}", hmac_sha1_hex(SECRET.as_bytes(), &body))
    );
    assert_eq!(header(&headers, "x-gitea-event"), "status");
    assert!(!body.ends_with(b"\n"), "Gitea sends no trailing newline");
    let payload: serde_json::Value = serde_json::from_slice(&body).expect("json");
    assert!(payload.get("branches").is_none());
    assert_eq!(payload["sha"], sha.as_str());
    assert_eq!(payload["commit"]["id"], sha.as_str());
}

#[tokio::test]
async fn scripted_ci_outcome_wins_over_the_ci_fail_file() {
    let sim = GiteaSim::start().await.expect("sim starts");
    sim.create_repo("acme", "widgets").await.expect("repo");
    sim.set_ci_delay(Duration::from_millis(1));
    sim.script_ci("feature/ok", CiOutcome::Success);
    let clone = LocalClone::new(&sim, "acme/widgets").await.expect("clone");
    let sha = clone
        .commit_file("CI_FAIL", "x\n", "Would fail")
        .await
        .expect("commit");
    clone
        .push("HEAD:refs/heads/feature/ok")
        .await
        .expect("push");
    wait_for(|| (sim.combined_state("acme/widgets", &sha) == "success").then_some(())).await;
}

#[tokio::test]
async fn pushing_a_pull_request_head_synchronizes_it_and_a_dropped_delivery_is_recorded() {
    let sim = GiteaSim::start().await.expect("sim starts");
    sim.create_repo("acme", "widgets").await.expect("repo");
    sim.set_ci_enabled(false);
    let (hook, received) = receiver().await;
    sim.set_webhook(&hook.base_url(), SECRET);
    let clone = LocalClone::new(&sim, "acme/widgets").await.expect("clone");
    clone
        .commit_file("a.txt", "a\n", "A")
        .await
        .expect("commit");
    clone
        .push("HEAD:refs/heads/feature/sync")
        .await
        .expect("push");
    let number = create_pull(&sim, "feature/sync").await;
    let moved = clone
        .commit_file("a.txt", "b\n", "B")
        .await
        .expect("commit");
    sim.drop_next_deliveries(1);
    clone
        .push("HEAD:refs/heads/feature/sync")
        .await
        .expect("push");
    assert_eq!(sim.pulls("acme/widgets")[0].head_sha, moved);
    assert_eq!(sim.pulls("acme/widgets")[0].number, number);
    let sync = wait_for(|| {
        sim.deliveries()
            .into_iter()
            .find(|delivery| delivery.event_type == "pull_request_sync")
    })
    .await;
    assert_eq!(
        sim.deliveries()
            .iter()
            .find(|delivery| delivery.event_type == "push"
                && delivery
                    .body
                    .windows(moved.len())
                    .any(|w| w == moved.as_bytes()))
            .map(|delivery| delivery.outcome.clone()),
        Some(DeliveryOutcome::Dropped)
    );
    assert_eq!(sync.outcome, DeliveryOutcome::Answered(200));
    let payload: serde_json::Value = serde_json::from_slice(&sync.body).expect("json");
    assert_eq!(payload["action"], "synchronized");
    assert_eq!(payload["pull_request"]["head"]["sha"], moved.as_str());

    let replayed = sim.redeliver(&sync.delivery_id).expect("known delivery");
    assert_ne!(replayed, sync.delivery_id);
    wait_for(|| {
        let received = received.lock().expect("lock");
        received
            .iter()
            .any(|(headers, _)| header(headers, "x-gitea-delivery") == replayed)
            .then_some(())
    })
    .await;
}

async fn create_pull(sim: &GiteaSim, head: &str) -> u64 {
    let body = serde_json::json!({ "head": head, "base": "main", "title": "T" }).to_string();
    let (status, answer) = api(sim, "POST", "/api/v1/repos/acme/widgets/pulls", Some(body)).await;
    assert_eq!(status, 201, "{answer}");
    answer["number"].as_u64().expect("number")
}

/// A raw API call with the token; returns (status, JSON body or Null).
async fn api(
    sim: &GiteaSim,
    method: &str,
    path: &str,
    body: Option<String>,
) -> (u16, serde_json::Value) {
    use http_body_util::{BodyExt, Full};
    use hyper_util::client::legacy::Client;
    use hyper_util::rt::TokioExecutor;
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<bytes::Bytes>>();
    let request = hyper::Request::builder()
        .method(method)
        .uri(format!("{}{path}", sim.base_url()))
        .header("authorization", format!("token {}", sim.token()))
        .header("content-type", "application/json")
        .body(Full::new(bytes::Bytes::from(body.unwrap_or_default())))
        .expect("request");
    let response = client.request(request).await.expect("answer");
    let status = response.status().as_u16();
    let bytes = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null),
    )
}

#[tokio::test]
async fn pull_creation_refuses_duplicates_and_empty_changes() {
    let sim = GiteaSim::start().await.expect("sim starts");
    sim.create_repo("acme", "widgets").await.expect("repo");
    sim.set_ci_enabled(false);
    let clone = LocalClone::new(&sim, "acme/widgets").await.expect("clone");
    clone
        .commit_file("a.txt", "a\n", "A")
        .await
        .expect("commit");
    clone.push("HEAD:refs/heads/feature/a").await.expect("push");
    create_pull(&sim, "feature/a").await;
    let body = serde_json::json!({ "head": "feature/a", "base": "main", "title": "T" }).to_string();
    let (status, answer) = api(&sim, "POST", "/api/v1/repos/acme/widgets/pulls", Some(body)).await;
    assert_eq!(status, 409);
    assert!(answer["message"]
        .as_str()
        .unwrap_or_default()
        .contains("already exists"));
    let body = serde_json::json!({ "head": "main", "base": "main", "title": "T" }).to_string();
    let (status, _) = api(&sim, "POST", "/api/v1/repos/acme/widgets/pulls", Some(body)).await;
    assert_eq!(status, 422);
    let (status, answer) = api(
        &sim,
        "GET",
        "/api/v1/repos/acme/widgets/pulls?limit=1",
        None,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(answer.as_array().map(Vec::len), Some(1));
    let (status, answer) = api(
        &sim,
        "GET",
        "/api/v1/repos/acme/widgets/branches/feature/a",
        None,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(answer["name"], "feature/a");
}

#[tokio::test]
async fn api_needs_the_token_and_answers_injected_faults_with_gitea_error_bodies() {
    let sim = GiteaSim::start().await.expect("sim starts");
    sim.create_repo("acme", "widgets").await.expect("repo");
    sim.rate_limit_next_requests(1, 7);
    sim.fail_next_requests_with(503, 1);
    let (status, answer) = api(&sim, "GET", "/api/v1/repos/acme/widgets", None).await;
    assert_eq!(status, 503);
    assert!(answer.get("message").is_some() && answer.get("url").is_some());
    let (status, _) = api(&sim, "GET", "/api/v1/repos/acme/widgets", None).await;
    assert_eq!(status, 429);
    let (status, answer) = api(&sim, "GET", "/api/v1/repos/acme/widgets", None).await;
    assert_eq!(status, 200);
    assert_eq!(answer["clone_url"], sim.clone_url("acme/widgets").as_str());
}

/// `shared/contracts/gitea`, or `$ORCH_CONTRACTS_DIR/gitea`.
fn contract(name: &str) -> serde_json::Value {
    let dir = match std::env::var_os("ORCH_CONTRACTS_DIR") {
        Some(dir) => std::path::PathBuf::from(dir),
        None => std::path::PathBuf::from(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../../shared/contracts"
        )),
    };
    let path = dir.join("gitea").join(name);
    let bytes =
        std::fs::read(&path).unwrap_or_else(|err| panic!("reading {}: {err}", path.display()));
    serde_json::from_slice(&bytes).expect("contract files are JSON")
}

fn keys(value: &serde_json::Value) -> std::collections::BTreeSet<String> {
    value
        .as_object()
        .map(|object| object.keys().cloned().collect())
        .unwrap_or_default()
}

#[tokio::test]
async fn deliveries_carry_the_contract_headers_and_payload_shapes() {
    let sim = GiteaSim::start().await.expect("sim starts");
    sim.create_repo("acme", "widgets").await.expect("repo");
    let (hook, _received) = receiver().await;
    sim.set_webhook(&hook.base_url(), SECRET);
    sim.set_ci_delay(Duration::from_millis(1));
    let clone = LocalClone::new(&sim, "acme/widgets").await.expect("clone");
    clone
        .commit_file("a.txt", "a\n", "A")
        .await
        .expect("commit");
    clone
        .push("HEAD:refs/heads/feature/shape")
        .await
        .expect("push");
    let number = create_pull(&sim, "feature/shape").await;
    wait_for(|| {
        sim.deliveries()
            .iter()
            .any(|delivery| {
                delivery.event_type == "status"
                    && delivery.body.windows(9).any(|w| w == b"\"success\"")
            })
            .then_some(())
    })
    .await;
    sim.merge_as_person("acme/widgets", number)
        .await
        .expect("merged");
    wait_for(|| {
        sim.deliveries()
            .iter()
            .any(|delivery| {
                String::from_utf8_lossy(&delivery.body).contains("\"action\": \"closed\"")
            })
            .then_some(())
    })
    .await;

    let headers = contract("headers.json");
    let deliveries = sim.deliveries();
    let cases = [
        ("status.success.json", "status", ""),
        ("push.json", "push", ""),
        (
            "pull_request.opened.json",
            "pull_request",
            "\"action\": \"opened\"",
        ),
        (
            "pull_request.closed_merged.json",
            "pull_request",
            "\"action\": \"closed\"",
        ),
    ];
    for (file, event_type, marker) in cases {
        let delivery = deliveries
            .iter()
            .find(|delivery| {
                delivery.event_type == event_type
                    && String::from_utf8_lossy(&delivery.body).contains(marker)
            })
            .unwrap_or_else(|| panic!("no delivery like {file}"));
        let expected = &headers["files"][file];
        for (name, value) in expected.as_object().expect("header map") {
            let sent = header(&delivery.headers, name);
            assert!(!sent.is_empty(), "{file}: header {name} missing");
            if name.ends_with("-Event") || name.ends_with("-Event-Type") || name == "Content-Type" {
                assert_eq!(sent, value.as_str().unwrap_or_default(), "{file}: {name}");
            }
        }
        let sample = contract(file);
        let body: serde_json::Value = serde_json::from_slice(&delivery.body).expect("json");
        assert_eq!(keys(&body), keys(&sample), "{file}: top-level fields");
        assert_eq!(
            keys(&body["repository"]),
            keys(&sample["repository"]),
            "{file}: repository fields"
        );
        assert_eq!(
            keys(&body["sender"]),
            keys(&sample["sender"]),
            "{file}: sender fields"
        );
        if event_type == "pull_request" {
            assert_eq!(
                keys(&body["pull_request"]),
                keys(&sample["pull_request"]),
                "{file}: pull_request fields"
            );
            assert_eq!(
                keys(&body["pull_request"]["head"]),
                keys(&sample["pull_request"]["head"]),
                "{file}: head fields"
            );
        }
        if event_type == "push" {
            assert_eq!(
                keys(&body["head_commit"]),
                keys(&sample["head_commit"]),
                "{file}: commit fields"
            );
        }
    }
}

#[tokio::test]
async fn merge_answers_use_gitea_statuses_and_bodies() {
    let sim = GiteaSim::start().await.expect("sim starts");
    sim.create_repo("acme", "widgets").await.expect("repo");
    sim.set_ci_enabled(false);
    let clone = LocalClone::new(&sim, "acme/widgets").await.expect("clone");
    let sha = clone
        .commit_file("a.txt", "a\n", "A")
        .await
        .expect("commit");
    clone.push("HEAD:refs/heads/feature/m").await.expect("push");
    let number = create_pull(&sim, "feature/m").await;
    let path = format!("/api/v1/repos/acme/widgets/pulls/{number}/merge");
    let merge = |body: serde_json::Value| api(&sim, "POST", &path, Some(body.to_string()));

    let (status, _) = merge(serde_json::json!({ "head_commit_id": sha })).await;
    assert_eq!(status, 422, "Do is required");
    let (status, answer) =
        merge(serde_json::json!({ "Do": "merge", "head_commit_id": "0".repeat(40) })).await;
    assert_eq!(
        (status, answer["message"].as_str()),
        (409, Some("head out of date"))
    );
    let (status, _) = merge(serde_json::json!({ "Do": "merge", "head_commit_id": sha })).await;
    assert_eq!(status, 200);
    let (status, answer) = merge(serde_json::json!({ "do": "merge", "head_commit_id": sha })).await;
    assert_eq!(
        (status, answer["message"].as_str()),
        (405, Some("")),
        "already merged: 405 with an empty message"
    );
    let (status, answer) = api(
        &sim,
        "GET",
        &format!("/api/v1/repos/acme/widgets/pulls/{number}"),
        None,
    )
    .await;
    assert_eq!(
        (status, &answer["merged"], &answer["state"]),
        (200, &serde_json::json!(true), &serde_json::json!("closed"))
    );
    let (status, answer) = api(
        &sim,
        "GET",
        &format!("/api/v1/repos/acme/widgets/commits/{sha}/status"),
        None,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        (&answer["state"], &answer["statuses"]),
        (&serde_json::json!("pending"), &serde_json::Value::Null)
    );
}

/// Two open PRs `feature/a` and `feature/b` that both change README.md: merging one makes the
/// other conflict. Returns (clone, number of a, head of a, number of b, head of b).
async fn two_conflicting_pulls(sim: &GiteaSim) -> (LocalClone, u64, String, u64, String) {
    sim.create_repo("acme", "widgets").await.expect("repo");
    sim.set_ci_enabled(false);
    let clone = LocalClone::new(sim, "acme/widgets").await.expect("clone");
    let mut heads = Vec::new();
    for side in ["a", "b"] {
        clone
            .checkout_new(&format!("feature/{side}"), "origin/main")
            .await
            .expect("branch");
        let sha = clone
            .commit_file("README.md", &format!("# widgets, said {side}\n"), side)
            .await
            .expect("commit");
        clone
            .push(&format!("HEAD:refs/heads/feature/{side}"))
            .await
            .expect("push");
        heads.push(sha);
    }
    let first = create_pull(sim, "feature/a").await;
    let second = create_pull(sim, "feature/b").await;
    let second_head = heads.pop().expect("two heads");
    let first_head = heads.pop().expect("two heads");
    (clone, first, first_head, second, second_head)
}

async fn merge_call(sim: &GiteaSim, number: u64, sha: &str) -> (u16, serde_json::Value) {
    let body = serde_json::json!({ "Do": "merge", "head_commit_id": sha }).to_string();
    api(
        sim,
        "POST",
        &format!("/api/v1/repos/acme/widgets/pulls/{number}/merge"),
        Some(body),
    )
    .await
}

async fn mergeable(sim: &GiteaSim, number: u64) -> serde_json::Value {
    let (status, answer) = api(
        sim,
        "GET",
        &format!("/api/v1/repos/acme/widgets/pulls/{number}"),
        None,
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    answer["mergeable"].clone()
}

fn merged_count(sim: &GiteaSim) -> usize {
    sim.mutations()
        .iter()
        .filter(|mutation| matches!(mutation, Mutation::PullMerged { .. }))
        .count()
}

#[tokio::test]
async fn a_pull_request_known_to_conflict_answers_405_try_again_later_until_its_head_is_fixed() {
    let sim = GiteaSim::start().await.expect("sim starts");
    let (clone, first, first_head, second, second_head) = two_conflicting_pulls(&sim).await;
    assert_eq!(mergeable(&sim, second).await, serde_json::json!(true));
    let (status, _) = merge_call(&sim, first, &first_head).await;
    assert_eq!(status, 200);

    assert_eq!(
        mergeable(&sim, second).await,
        serde_json::json!(false),
        "the checker re-checked the PR after the push to its base"
    );
    let (status, answer) = merge_call(&sim, second, &second_head).await;
    assert_eq!(
        (status, answer["message"].as_str()),
        (405, Some("Please try again later"))
    );
    assert_eq!(merged_count(&sim), 1, "nothing was merged");

    clone
        .git(&["fetch", "--quiet", "origin"])
        .await
        .expect("fetch");
    clone
        .git(&["merge", "--quiet", "--no-edit", "-X", "ours", "origin/main"])
        .await
        .expect("resolve");
    let fixed = clone.git(&["rev-parse", "HEAD"]).await.expect("head");
    clone.push("HEAD:refs/heads/feature/b").await.expect("push");
    assert_eq!(mergeable(&sim, second).await, serde_json::json!(true));
    let (status, _) = merge_call(&sim, second, &fixed).await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn while_the_checker_runs_a_pull_request_is_not_mergeable_and_merges_answer_405() {
    let sim = GiteaSim::start().await.expect("sim starts");
    sim.create_repo("acme", "widgets").await.expect("repo");
    sim.set_ci_enabled(false);
    sim.set_mergeability_check_delay(Duration::from_millis(1500));
    let clone = LocalClone::new(&sim, "acme/widgets").await.expect("clone");
    let sha = clone
        .commit_file("a.txt", "a\n", "A")
        .await
        .expect("commit");
    clone.push("HEAD:refs/heads/feature/a").await.expect("push");
    let number = create_pull(&sim, "feature/a").await;
    assert_eq!(mergeable(&sim, number).await, serde_json::json!(false));
    let (status, answer) = merge_call(&sim, number, &sha).await;
    assert_eq!(
        (status, answer["message"].as_str()),
        (405, Some("Please try again later"))
    );
    wait_for(|| {
        sim.pulls("acme/widgets")
            .iter()
            .any(|pull| pull.number == number && pull.mergeable)
            .then_some(())
    })
    .await;
    let (status, _) = merge_call(&sim, number, &sha).await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn a_conflict_the_checker_has_not_seen_is_found_while_merging_with_409() {
    let sim = GiteaSim::start().await.expect("sim starts");
    let (_clone, first, first_head, second, second_head) = two_conflicting_pulls(&sim).await;
    sim.set_mergeability_checker_enabled(false);
    let (status, _) = merge_call(&sim, first, &first_head).await;
    assert_eq!(status, 200);
    assert_eq!(mergeable(&sim, second).await, serde_json::json!(true));
    let (status, answer) = merge_call(&sim, second, &second_head).await;
    assert_eq!(status, 409, "{answer}");
    assert!(
        answer["StdOut"]
            .as_str()
            .is_some_and(|out| out.contains("README.md")),
        "{answer}"
    );
    assert_eq!(merged_count(&sim), 1);
}
