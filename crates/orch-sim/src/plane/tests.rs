//! Tests of `PlaneSim`: contract shapes, wire bytes and signatures, API behaviour, faults.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::{json, Value};

use crate::plane::hooks::signature;
use crate::plane::pyjson::{self, empty_obj, float, obj, text};
use crate::plane::{DeliveryOutcome, MutationKind, PlaneSim};
use crate::server::{sync_handler, Reply, SimServer};

/// How long a test waits for an asynchronous webhook.
const DELIVERY_DEADLINE: Duration = Duration::from_secs(5);
const SECRET: &str = "plane_wh_0123456789abcdef0123456789abcdef";

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

fn contract_bytes(name: &str) -> Vec<u8> {
    let path = contracts_dir().join("plane").join(name);
    std::fs::read(&path).unwrap_or_else(|err| panic!("reading {}: {err}", path.display()))
}

fn contract(name: &str) -> Value {
    serde_json::from_slice(&contract_bytes(name)).expect("contract files are JSON")
}

/// The contract's error case whose description starts with `case`.
fn contract_error(case: &str) -> Value {
    let cases = contract("error_responses.json");
    cases
        .as_array()
        .expect("error_responses.json is a list")
        .iter()
        .find(|entry| {
            entry["case"]
                .as_str()
                .is_some_and(|name| name.starts_with(case))
        })
        .unwrap_or_else(|| panic!("no error case {case:?}"))
        .clone()
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(number) if number.is_f64() => "float",
        Value::Number(_) => "int",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// Differences of key sets and value types between a contract value and a simulator value.
/// `null` matches any type (Plane's nullable fields); arrays compare every simulator element
/// with the contract's first element.
fn shape_diff(path: &str, contract: &Value, sim: &Value, out: &mut Vec<String>) {
    match (contract, sim) {
        (Value::Null, _) | (_, Value::Null) => {}
        (Value::Object(expected), Value::Object(actual)) => {
            for key in expected.keys() {
                if !actual.contains_key(key) {
                    out.push(format!("{path}.{key}: missing in the simulator"));
                }
            }
            for (key, value) in actual {
                match expected.get(key) {
                    Some(expected_value) => {
                        shape_diff(&format!("{path}.{key}"), expected_value, value, out)
                    }
                    None => out.push(format!("{path}.{key}: not in the contract")),
                }
            }
        }
        (Value::Array(expected), Value::Array(actual)) => {
            if let Some(first) = expected.first() {
                for (item_idx, item) in actual.iter().enumerate() {
                    shape_diff(&format!("{path}[{item_idx}]"), first, item, out);
                }
            }
        }
        (expected, actual) if kind(expected) != kind(actual) => {
            out.push(format!(
                "{path}: contract has {}, simulator has {}",
                kind(expected),
                kind(actual)
            ));
        }
        _ => {}
    }
}

fn assert_same_shape(what: &str, contract: &Value, sim: &Value) {
    let mut diffs = Vec::new();
    shape_diff(what, contract, sim, &mut diffs);
    assert!(
        diffs.is_empty(),
        "{what} drifted from the contract:\n{}",
        diffs.join("\n")
    );
}

/// Every object's keys in order, depth first, for comparing Python dict order.
fn key_order(value: &Value, path: &str, out: &mut Vec<String>) {
    match value {
        Value::Object(fields) => {
            for (key, field) in fields {
                out.push(format!("{path}.{key}"));
                key_order(field, &format!("{path}.{key}"), out);
            }
        }
        Value::Array(items) => {
            if let Some(first) = items.first() {
                key_order(first, &format!("{path}[]"), out);
            }
        }
        _ => {}
    }
}

struct Answer {
    status: u16,
    headers: hyper::HeaderMap,
    body: Value,
}

/// One HTTP request to the simulator; `Err` when the connection closed unanswered.
async fn call(
    method: &str,
    url: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> Result<Answer, String> {
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let mut request = hyper::Request::builder().method(method).uri(url);
    if let Some(token) = token {
        request = request.header("X-Api-Key", token);
    }
    let payload = body
        .map(|body| Bytes::from(body.to_string()))
        .unwrap_or_default();
    let request = request
        .header("content-type", "application/json")
        .body(Full::new(payload))
        .map_err(|err| err.to_string())?;
    let response = client
        .request(request)
        .await
        .map_err(|err| err.to_string())?;
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let bytes = response
        .into_body()
        .collect()
        .await
        .map_err(|err| err.to_string())?
        .to_bytes();
    let body = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes).map_err(|err| err.to_string())?
    };
    Ok(Answer {
        status,
        headers,
        body,
    })
}

async fn get(sim: &PlaneSim, path: &str) -> Answer {
    call(
        "GET",
        &format!("{}/api/v1/{path}", sim.base_url()),
        Some(sim.api_token()),
        None,
    )
    .await
    .expect("sim answers")
}

async fn send(sim: &PlaneSim, method: &str, path: &str, body: Value) -> Answer {
    call(
        method,
        &format!("{}/api/v1/{path}", sim.base_url()),
        Some(sim.api_token()),
        Some(body),
    )
    .await
    .expect("sim answers")
}

fn project_path(sim: &PlaneSim, project: &str) -> String {
    format!("workspaces/{}/projects/{project}/", sim.workspace_slug())
}

/// A webhook receiver that records what it gets and answers `status`.
struct Receiver {
    server: SimServer,
    got: Arc<Mutex<Vec<(hyper::HeaderMap, Bytes)>>>,
}

impl Receiver {
    async fn start(status: u16) -> Receiver {
        let got: Arc<Mutex<Vec<(hyper::HeaderMap, Bytes)>>> = Arc::default();
        let sink = got.clone();
        let server = SimServer::start(sync_handler(move |request| {
            sink.lock()
                .expect("receiver lock")
                .push((request.headers().clone(), request.body().clone()));
            Reply::Respond(crate::server::empty(status))
        }))
        .await
        .expect("receiver starts");
        Receiver { server, got }
    }

    fn url(&self) -> String {
        format!("{}/webhooks/plane", self.server.base_url())
    }

    fn received(&self) -> Vec<(hyper::HeaderMap, Bytes)> {
        self.got.lock().expect("receiver lock").clone()
    }

    /// Waits until `count` deliveries arrived.
    async fn wait_for(&self, count: usize) -> Vec<(hyper::HeaderMap, Bytes)> {
        let deadline = Instant::now() + DELIVERY_DEADLINE;
        loop {
            let received = self.received();
            if received.len() >= count || Instant::now() > deadline {
                return received;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

fn header(headers: &hyper::HeaderMap, name: &str) -> String {
    headers
        .get(name)
        .and_then(|value| value.to_str().ok())
        .unwrap_or("")
        .to_owned()
}

#[test]
fn python_serialiser_reproduces_each_contract_body_byte_for_byte() {
    for name in [
        "webhook_issue_state_updated.body.json",
        "webhook_issue_state_updated_via_api.body.json",
        "webhook_issue_comment_created.body.json",
    ] {
        let bytes = contract_bytes(name);
        let text = String::from_utf8(bytes.clone()).expect("bodies are ASCII");
        let value: Value = serde_json::from_str(&text).expect("bodies are JSON");
        assert_eq!(pyjson::to_python_json(&value).into_bytes(), bytes, "{name}");
    }
}

#[test]
fn python_serialiser_escapes_like_json_dumps() {
    let value = obj(vec![
        (
            "text",
            text("caf\u{e9} \u{2014} \u{1f600} \"q\" \\ \n\t\u{1}\u{7f}"),
        ),
        ("float", float(65535.0)),
        ("fraction", float(0.5)),
        (
            "list",
            Value::Array(vec![Value::from(1), Value::Null, Value::Bool(true)]),
        ),
        ("empty", empty_obj()),
    ]);
    assert_eq!(
        pyjson::to_python_json(&value),
        r#"{"text": "caf\u00e9 \u2014 \ud83d\ude00 \"q\" \\ \n\t\u0001\u007f", "float": 65535.0, "fraction": 0.5, "list": [1, null, true], "empty": {}}"#
    );
    assert_eq!(
        pyjson::to_compact_json(&value),
        "{\"text\":\"caf\u{e9} \u{2014} \u{1f600} \\\"q\\\" \\\\ \\n\\t\\u0001\u{7f}\",\"float\":65535.0,\"fraction\":0.5,\"list\":[1,null,true],\"empty\":{}}"
    );
}

#[test]
fn signature_equals_each_contract_samples_signature() {
    for name in [
        "webhook_issue_state_updated",
        "webhook_issue_state_updated_via_api",
        "webhook_issue_comment_created",
    ] {
        let body = contract_bytes(&format!("{name}.body.json"));
        let headers = contract(&format!("{name}.headers.json"));
        assert_eq!(
            signature(SECRET, &body),
            headers["X-Plane-Signature"]
                .as_str()
                .expect("has a signature"),
            "{name}"
        );
    }
}

#[tokio::test]
async fn rest_answers_have_the_key_sets_and_value_types_of_the_contract_files() {
    let sim = PlaneSim::start().await.expect("sim starts");
    let project = sim.add_project("ET");
    let base = project_path(&sim, &project);
    let mut items = Vec::new();
    for title in [
        "Set up CI pipeline",
        "Fix login redirect loop",
        "Rotate signing keys",
    ] {
        items.push(
            sim.create_item(&project, title, "Todo")
                .await
                .expect("item created"),
        );
    }
    let item = &items[0].id;
    sim.add_comment(item, "Keys live in the vault.")
        .await
        .expect("comment added");

    let states = get(&sim, &format!("{base}states/")).await;
    assert_same_shape("states", &contract("states_list.json"), &states.body);

    let page1 = get(&sim, &format!("{base}work-items/?per_page=2")).await;
    assert_same_shape("page1", &contract("issues_list_page1.json"), &page1.body);
    let page2 = get(
        &sim,
        &format!("{base}work-items/?per_page=2&cursor=2%3A1%3A0"),
    )
    .await;
    assert_same_shape("page2", &contract("issues_list_page2.json"), &page2.body);
    for (answer, name) in [
        (&page1, "issues_list_page1.json"),
        (&page2, "issues_list_page2.json"),
    ] {
        let mut envelope = answer.body.clone();
        let mut expected = contract(name);
        envelope["results"] = Value::Null;
        expected["results"] = Value::Null;
        assert_eq!(envelope, expected, "the envelope of {name}");
    }

    let expanded = get(
        &sim,
        &format!("{base}work-items/{item}/?expand=state,assignees,labels"),
    )
    .await;
    assert_same_shape(
        "expanded",
        &contract("issue_get_expanded.json"),
        &expanded.body,
    );
    assert_eq!(expanded.body["state"]["name"], "Todo");

    let done = sim.state_id(&project, "Done").expect("Done exists");
    let patched = send(
        &sim,
        "PATCH",
        &format!("{base}work-items/{item}/"),
        json!({ "state": done }),
    )
    .await;
    assert_eq!(patched.status, 200);
    assert_same_shape(
        "patch",
        &contract("issue_patch_state_response.json"),
        &patched.body,
    );
    assert!(
        patched.body["completed_at"].is_string(),
        "moving to a completed state sets completed_at"
    );

    let body = json!({"comment_html": "<p>Deployed in build 1234.</p>", "external_source": "orch", "external_id": "build-1234"});
    let created = send(
        &sim,
        "POST",
        &format!("{base}work-items/{item}/comments/"),
        body,
    )
    .await;
    assert_eq!(created.status, 201);
    assert_same_shape(
        "comment",
        &contract("comment_create_response.json"),
        &created.body,
    );

    let comments = get(&sim, &format!("{base}work-items/{item}/comments/")).await;
    assert_same_shape("comments", &contract("comments_list.json"), &comments.body);

    let me = get(&sim, "users/me/").await;
    assert_eq!(me.body["id"], sim.bot_user().id.as_str());
    let lite = contract("issue_get_expanded.json")["assignees"][0].clone();
    assert_same_shape("users/me", &lite, &me.body);
}

#[tokio::test]
async fn error_answers_match_the_contract_cases() {
    let sim = PlaneSim::start().await.expect("sim starts");
    let project = sim.add_project("ET");
    let other = sim.add_project("OT");
    let base = project_path(&sim, &project);
    let item = sim
        .create_item(&project, "One", "Todo")
        .await
        .expect("item created")
        .id;
    let item_path = format!("{base}work-items/{item}/");
    let url = |path: &str| format!("{}/api/v1/{path}", sim.base_url());
    let stranger_state = sim.state_id(&other, "Done").expect("Done exists");
    let missing = "5a6b7c8d-0000-4000-8000-000000000000";
    let body = json!({"comment_html": "<p>x</p>", "external_source": "orch", "external_id": "k"});
    send(&sim, "POST", &format!("{item_path}comments/"), body.clone()).await;

    let cases: Vec<(&str, Answer)> = vec![
        (
            "missing X-API-Key",
            call("GET", &url("users/me/"), None, None)
                .await
                .expect("answer"),
        ),
        (
            "invalid/expired",
            call("GET", &url("users/me/"), Some("nope"), None)
                .await
                .expect("answer"),
        ),
        (
            "authenticated but not",
            get(&sim, &format!("workspaces/acme/projects/{missing}/states/")).await,
        ),
        (
            "object lookup failed",
            get(&sim, &format!("{base}work-items/{missing}/")).await,
        ),
        (
            "URL did not match",
            get(&sim, &format!("{base}work-items/not-a-uuid/")).await,
        ),
        (
            "HTTP method not routed",
            send(&sim, "PUT", &item_path, json!({})).await,
        ),
        (
            "PATCH state that belongs",
            send(
                &sim,
                "PATCH",
                &item_path,
                json!({ "state": stranger_state }),
            )
            .await,
        ),
        (
            "PATCH state uuid that does not",
            send(&sim, "PATCH", &item_path, json!({ "state": missing })).await,
        ),
        (
            "per_page > 1000",
            get(&sim, &format!("{base}work-items/?per_page=1001")).await,
        ),
        (
            "per_page not an integer",
            get(&sim, &format!("{base}work-items/?per_page=ten")).await,
        ),
        (
            "cursor not",
            get(&sim, &format!("{base}work-items/?cursor=abc")).await,
        ),
        (
            "comment external_id",
            send(&sim, "POST", &format!("{item_path}comments/"), body).await,
        ),
    ];
    for (case, answer) in cases {
        let expected = contract_error(case);
        assert_eq!(
            u64::from(answer.status),
            expected["status"].as_u64().expect("status"),
            "{case}"
        );
        let mut expected_body = expected["body"].clone();
        let mut actual_body = answer.body.clone();
        if case == "comment external_id" {
            assert!(
                actual_body["id"].is_string(),
                "409 names the existing comment"
            );
            expected_body["id"] = Value::Null;
            actual_body["id"] = Value::Null;
        }
        assert_eq!(actual_body, expected_body, "{case}");
    }

    sim.fail_next_requests(1);
    let failed = get(&sim, "users/me/").await;
    assert_eq!(
        (failed.status, failed.body.clone()),
        (500, contract_error("unhandled")["body"].clone())
    );

    sim.rate_limit_next_requests(1, 37);
    let limited = get(&sim, "users/me/").await;
    let expected = contract_error("rate limited");
    assert_eq!(
        (limited.status, limited.body.clone()),
        (429, expected["body"].clone())
    );
    assert_eq!(header(&limited.headers, "retry-after"), "37");
}

#[tokio::test]
async fn throttle_counts_requests_per_key_and_reports_the_remaining_budget() {
    let sim = PlaneSim::start().await.expect("sim starts");
    sim.set_rate_limit(3, Duration::from_secs(60));
    let mut remaining = Vec::new();
    for _ in 0..3 {
        let answer = get(&sim, "users/me/").await;
        assert_eq!(answer.status, 200);
        assert!(header(&answer.headers, "x-ratelimit-reset")
            .parse::<u64>()
            .is_ok());
        remaining.push(header(&answer.headers, "x-ratelimit-remaining"));
    }
    assert_eq!(remaining, ["2", "1", "0"]);
    let limited = get(&sim, "users/me/").await;
    assert_eq!(limited.status, 429);
    let retry_after: u64 = header(&limited.headers, "retry-after")
        .parse()
        .expect("Retry-After is seconds");
    assert!((1..=60).contains(&retry_after), "{retry_after}");
    let other = sim.add_user("Grace", "Hopper", "grace");
    let url = format!("{}/api/v1/users/me/", sim.base_url());
    let answer = call("GET", &url, Some(&other.token), None)
        .await
        .expect("answer");
    assert_eq!(answer.status, 200, "another key has its own budget");
}

#[tokio::test]
async fn pagination_walks_every_item_once_newest_update_first() {
    let sim = PlaneSim::start().await.expect("sim starts");
    let project = sim.add_project("ET");
    let base = project_path(&sim, &project);
    let mut created = Vec::new();
    for idx in 0..5 {
        created.push(
            sim.create_item(&project, &format!("Item {idx}"), "Todo")
                .await
                .expect("created")
                .id,
        );
    }
    sim.move_item(&created[1], "In Progress")
        .await
        .expect("moved");
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let query = match &cursor {
            Some(cursor) => format!("per_page=2&order_by=-updated_at&cursor={cursor}"),
            None => "per_page=2&order_by=-updated_at".to_owned(),
        };
        let page = get(&sim, &format!("{base}work-items/?{query}")).await;
        for item in page.body["results"].as_array().expect("results") {
            seen.push(item["id"].as_str().expect("id").to_owned());
        }
        if page.body["next_page_results"] != true {
            break;
        }
        cursor = page.body["next_cursor"].as_str().map(str::to_owned);
    }
    let mut expected = vec![created[1].clone()];
    expected.extend(
        created
            .iter()
            .rev()
            .filter(|id| **id != created[1])
            .cloned(),
    );
    assert_eq!(seen, expected);
}

#[tokio::test]
async fn patch_ignores_state_id_changes_state_records_the_mutation_and_sends_an_api_webhook() {
    let sim = PlaneSim::start().await.expect("sim starts");
    let receiver = Receiver::start(202).await;
    let project = sim.add_project("ET");
    let item = sim
        .create_item(&project, "One", "Todo")
        .await
        .expect("created");
    sim.set_webhook(&receiver.url(), SECRET);
    let path = format!("{}work-items/{}/", project_path(&sim, &project), item.id);
    let approved = sim.state_id(&project, "Approved").expect("Approved exists");

    let ignored = send(&sim, "PATCH", &path, json!({ "state_id": approved })).await;
    assert_eq!(
        (ignored.status, ignored.body["state"].as_str()),
        (200, Some(item.state_id.as_str()))
    );
    let moved = send(&sim, "PATCH", &path, json!({ "state": approved })).await;
    assert_eq!(
        (moved.status, moved.body["state"].as_str()),
        (200, Some(approved.as_str()))
    );
    assert_eq!(sim.item(&item.id).expect("item").state_name, "Approved");

    let received = receiver.wait_for(1).await;
    assert_eq!(received.len(), 1, "one webhook for one state change");
    let (headers, body) = &received[0];
    assert_eq!(header(headers, "x-plane-event"), "issue");
    assert_eq!(
        header(headers, "x-plane-signature"),
        signature(SECRET, body)
    );
    let payload: Value = serde_json::from_slice(body).expect("JSON");
    assert_eq!(payload["activity"]["field"], "state");
    assert_eq!(payload["activity"]["new_value"], approved.as_str());
    assert_eq!(payload["activity"]["old_value"], item.state_id.as_str());
    assert_eq!(
        payload["activity"]["actor"]["id"],
        sim.bot_user().id.as_str()
    );
    assert_same_shape(
        "api webhook",
        &contract("webhook_issue_state_updated_via_api.body.json"),
        &payload,
    );

    let mutations = sim.mutations();
    assert_eq!(mutations.len(), 1, "{mutations:?}");
    assert_eq!(mutations[0].actor, sim.bot_user().id);
    assert_eq!(
        mutations[0].kind,
        MutationKind::StateSet {
            from: item.state_id.clone(),
            to: approved
        }
    );
}

#[tokio::test]
async fn webhooks_have_plane_headers_shapes_and_key_order() {
    let sim = PlaneSim::start().await.expect("sim starts");
    let receiver = Receiver::start(202).await;
    sim.set_webhook(&receiver.url(), SECRET);
    let project = sim.add_project("ET");
    let item = sim
        .create_item(&project, "Caf\u{e9} \u{2014} one", "Todo")
        .await
        .expect("created");
    sim.move_item(&item.id, "In Progress").await.expect("moved");
    sim.move_item(&item.id, "In Progress")
        .await
        .expect("a no-op move");
    sim.add_comment(&item.id, "Reproduced \u{2014} caf\u{e9}")
        .await
        .expect("commented");

    let received = receiver.wait_for(3).await;
    let events: Vec<String> = received
        .iter()
        .map(|(headers, _)| header(headers, "x-plane-event"))
        .collect();
    assert_eq!(
        events,
        ["issue", "issue", "issue_comment"],
        "a no-op move sends nothing"
    );
    let samples = [
        None,
        Some("webhook_issue_state_updated.body.json"),
        Some("webhook_issue_comment_created.body.json"),
    ];
    for ((headers, body), sample) in received.iter().zip(samples) {
        assert_eq!(header(headers, "content-type"), "application/json");
        assert_eq!(header(headers, "user-agent"), "Autopilot");
        assert!(uuid::Uuid::parse_str(&header(headers, "x-plane-delivery")).is_ok());
        assert_eq!(
            header(headers, "x-plane-signature"),
            signature(SECRET, body)
        );
        assert!(body.is_ascii(), "non-ASCII is escaped");
        let text = std::str::from_utf8(body).expect("ASCII");
        assert!(
            text.contains("\", \"") && !text.ends_with('\n'),
            "json.dumps separators, no newline"
        );
        let Some(sample) = sample else { continue };
        let payload: Value = serde_json::from_slice(body).expect("JSON");
        assert_same_shape(sample, &contract(sample), &payload);
        let mut expected_order = Vec::new();
        let sample_text = String::from_utf8(contract_bytes(sample)).expect("ASCII");
        key_order(
            &serde_json::from_str(&sample_text).expect("JSON"),
            "",
            &mut expected_order,
        );
        let mut actual_order = Vec::new();
        let actual: Value = serde_json::from_str(text).expect("JSON");
        key_order(&actual, "", &mut actual_order);
        // The simulator keeps no labels, so `labels` is always empty there.
        expected_order.retain(|key| !key.starts_with(".data.labels[]"));
        assert_eq!(actual_order, expected_order, "key order of {sample}");
    }
    let created: Value = serde_json::from_slice(&received[0].1).expect("JSON");
    assert_eq!(
        (
            created["action"].as_str(),
            created["activity"]["field"].as_str()
        ),
        (Some("created"), None)
    );
    let moved: Value = serde_json::from_slice(&received[1].1).expect("JSON");
    assert_eq!(moved["activity"]["field"], "state_id");
    assert_eq!(
        moved["activity"]["actor"]["id"],
        sim.human_user().id.as_str()
    );
    assert!(
        sim.mutations().is_empty(),
        "test-API changes are not API mutations"
    );
}

#[tokio::test]
async fn comments_list_newest_first_and_external_ids_are_unique_per_project() {
    let sim = PlaneSim::start().await.expect("sim starts");
    let project = sim.add_project("ET");
    let first = sim
        .create_item(&project, "One", "Todo")
        .await
        .expect("created")
        .id;
    let second = sim
        .create_item(&project, "Two", "Todo")
        .await
        .expect("created")
        .id;
    let base = project_path(&sim, &project);
    sim.add_comment(&first, "older").await.expect("commented");
    let body = json!({"comment_html": "<p>newer</p>", "external_source": "orch", "external_id": "7:analysis:0"});
    assert_eq!(
        send(
            &sim,
            "POST",
            &format!("{base}work-items/{first}/comments/"),
            body.clone()
        )
        .await
        .status,
        201
    );
    let list = get(&sim, &format!("{base}work-items/{first}/comments/")).await;
    let texts: Vec<&str> = list.body["results"]
        .as_array()
        .expect("results")
        .iter()
        .filter_map(|c| c["comment_html"].as_str())
        .collect();
    assert_eq!(texts, ["<p>newer</p>", "<p>older</p>"]);
    let reused = send(
        &sim,
        "POST",
        &format!("{base}work-items/{second}/comments/"),
        body,
    )
    .await;
    assert_eq!(
        reused.status, 409,
        "the pair is unique in the whole project"
    );
    assert_eq!(sim.comments(&second).len(), 0);
    assert_eq!(sim.mutations().len(), 1);
}

#[tokio::test]
async fn delivery_faults_drop_duplicate_and_retry_only_network_errors() {
    let sim = PlaneSim::start().await.expect("sim starts");
    let receiver = Receiver::start(500).await;
    let project = sim.add_project("ET");
    let item = sim
        .create_item(&project, "One", "Todo")
        .await
        .expect("created")
        .id;
    sim.set_webhook(&receiver.url(), SECRET);

    sim.drop_next_deliveries(1);
    sim.move_item(&item, "In Progress").await.expect("moved");
    assert!(
        receiver.received().is_empty(),
        "a dropped delivery is never sent"
    );

    sim.move_item(&item, "In Review").await.expect("moved");
    assert_eq!(receiver.received().len(), 1, "a 500 answer is not retried");

    sim.duplicate_next_deliveries(1);
    sim.move_item(&item, "Approved").await.expect("moved");
    let received = receiver.received();
    assert_eq!(received.len(), 3);
    let (first, second) = (&received[1], &received[2]);
    assert_eq!(first.1, second.1, "a duplicate has the same body");
    assert_eq!(
        header(&first.0, "x-plane-signature"),
        header(&second.0, "x-plane-signature")
    );
    assert_ne!(
        header(&first.0, "x-plane-delivery"),
        header(&second.0, "x-plane-delivery")
    );

    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let closed_url = format!(
        "http://{}/webhooks/plane",
        closed.local_addr().expect("addr")
    );
    drop(closed);
    sim.set_webhook(&closed_url, SECRET);
    sim.set_delivery_retries(2, Duration::from_millis(1));
    sim.move_item(&item, "Done").await.expect("moved");
    let attempts: Vec<_> = sim
        .deliveries()
        .into_iter()
        .filter(|d| matches!(d.outcome, DeliveryOutcome::NetworkError(_)))
        .collect();
    assert_eq!(
        attempts.len(),
        3,
        "network errors are retried, each attempt with a new delivery id"
    );
    assert!(attempts
        .windows(2)
        .all(|pair| pair[0].delivery_id != pair[1].delivery_id && pair[0].body == pair[1].body));
    let dropped = sim
        .deliveries()
        .iter()
        .filter(|d| d.outcome == DeliveryOutcome::DroppedByFault)
        .count();
    assert_eq!(dropped, 1);
}

#[tokio::test]
async fn api_faults_fail_slow_down_and_drop_applied_responses() {
    let sim = PlaneSim::start().await.expect("sim starts");
    let project = sim.add_project("ET");
    let item = sim
        .create_item(&project, "One", "Todo")
        .await
        .expect("created");
    let path = format!("{}work-items/{}/", project_path(&sim, &project), item.id);
    let done = sim.state_id(&project, "Done").expect("Done exists");

    sim.drop_next_responses(1);
    let url = format!("{}/api/v1/{path}", sim.base_url());
    let dropped = call(
        "PATCH",
        &url,
        Some(sim.api_token()),
        Some(json!({ "state": done })),
    )
    .await;
    assert!(dropped.is_err(), "the connection closes unanswered");
    assert_eq!(
        sim.item(&item.id).expect("item").state_name,
        "Done",
        "the change was applied"
    );
    assert_eq!(sim.mutations().len(), 1);
    assert_eq!(
        sim.requests().last().map(|request| request.status),
        Some(None)
    );

    sim.set_error_rate(1.0);
    assert_eq!(get(&sim, "users/me/").await.status, 500);
    sim.set_error_rate(0.0);
    assert_eq!(get(&sim, "users/me/").await.status, 200);

    sim.set_latency(Duration::from_millis(150));
    let started = Instant::now();
    assert_eq!(get(&sim, "users/me/").await.status, 200);
    assert!(started.elapsed() >= Duration::from_millis(150));
}

#[tokio::test]
async fn rest_times_follow_the_api_users_timezone() {
    let sim = PlaneSim::start().await.expect("sim starts");
    let project = sim.add_project("ET");
    let item = sim
        .create_item(&project, "One", "Todo")
        .await
        .expect("created");
    sim.set_user_timezone(5, 30);
    let answer = get(
        &sim,
        &format!("{}work-items/{}/", project_path(&sim, &project), item.id),
    )
    .await;
    let updated_at = answer.body["updated_at"].as_str().expect("updated_at");
    assert!(
        updated_at.ends_with("+05:30")
            && updated_at.len() == "2026-05-19T10:15:30.482913+05:30".len(),
        "{updated_at}"
    );
}

#[tokio::test]
async fn wait_for_state_sees_an_api_move_and_gives_up_at_the_deadline() {
    let sim = PlaneSim::start().await.expect("sim starts");
    let project = sim.add_project("ET");
    let item = sim
        .create_item(&project, "One", "Todo")
        .await
        .expect("created");
    assert!(
        !sim.wait_for_state(&item.id, "Done", Duration::from_millis(30))
            .await
    );
    let done = sim.state_id(&project, "Done").expect("Done exists");
    let path = format!("{}work-items/{}/", project_path(&sim, &project), item.id);
    send(&sim, "PATCH", &path, json!({ "state": done })).await;
    assert!(
        sim.wait_for_state(&item.id, "Done", DELIVERY_DEADLINE)
            .await
    );
}
