//! `DaemonClient`, the HTTP client of `orch task retry|cancel`, against a scripted server.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use orch_daemon::commands::{AdminCommand, DaemonClient, RemoteAnswer, RemoteError};
use orch_sim::server::{empty, json, sync_handler, Reply, SimServer};
use serde_json::json as json_value;

/// What the scripted server saw: method, path and the Authorization header.
type Seen = Arc<Mutex<Vec<(String, String, Option<String>)>>>;

/// A server answering every request with `reply()`, recording what it got.
async fn scripted(reply: impl Fn() -> Reply + Send + Sync + 'static) -> (SimServer, Seen) {
    let seen: Seen = Arc::new(Mutex::new(Vec::new()));
    let record = seen.clone();
    let server = SimServer::start(sync_handler(move |request| {
        let authorization = request
            .headers()
            .get("authorization")
            .and_then(|value| value.to_str().ok())
            .map(str::to_owned);
        record.lock().unwrap_or_else(PoisonError::into_inner).push((
            request.method().to_string(),
            request.uri().path().to_owned(),
            authorization,
        ));
        reply()
    }))
    .await
    .expect("server starts");
    (server, seen)
}

fn seen(seen: &Seen) -> Vec<(String, String, Option<String>)> {
    seen.lock().unwrap_or_else(PoisonError::into_inner).clone()
}

fn answered(body: serde_json::Value) -> impl Fn() -> Reply + Send + Sync + 'static {
    move || Reply::Respond(json(200, &body))
}

#[tokio::test]
async fn a_command_is_posted_to_its_route_with_the_bearer_token_and_the_answer_is_read() {
    let (server, requests) = scripted(answered(
        json_value!({"task": "ET-001", "changed": true, "note": "analysis restarted"}),
    ))
    .await;
    let client = DaemonClient::new(server.addr(), Some("the-admin-token"));
    let answer = client
        .send(AdminCommand::Retry, "ET-001")
        .await
        .expect("answer");
    assert_eq!(
        answer,
        RemoteAnswer {
            task: "ET-001".to_owned(),
            changed: true,
            note: "analysis restarted".to_owned(),
        }
    );
    client
        .send(AdminCommand::Cancel, "ET 1/..")
        .await
        .expect("answer");
    assert_eq!(
        seen(&requests),
        vec![
            (
                "POST".to_owned(),
                "/api/tasks/ET-001/retry".to_owned(),
                Some("Bearer the-admin-token".to_owned())
            ),
            (
                "POST".to_owned(),
                "/api/tasks/ET%201%2F../cancel".to_owned(),
                Some("Bearer the-admin-token".to_owned())
            ),
        ]
    );
}

#[tokio::test]
async fn without_a_token_no_authorization_header_is_sent() {
    let (server, requests) = scripted(answered(
        json_value!({"task": "ET-002", "changed": false, "note": "nothing to retry"}),
    ))
    .await;
    for token in [None, Some("")] {
        let answer = DaemonClient::new(server.addr(), token)
            .send(AdminCommand::Retry, "2")
            .await
            .expect("answer");
        assert!(!answer.changed);
    }
    assert!(seen(&requests)
        .iter()
        .all(|(_, path, authorization)| path == "/api/tasks/2/retry" && authorization.is_none()));
}

#[tokio::test]
async fn an_unspecified_listen_address_is_reached_on_loopback() {
    let (server, _) = scripted(answered(
        json_value!({"task": "ET-001", "changed": true, "note": "cancelled"}),
    ))
    .await;
    let listen = SocketAddr::from(([0, 0, 0, 0], server.addr().port()));
    let client = DaemonClient::new(listen, None);
    assert_eq!(client.addr(), server.addr());
    client
        .send(AdminCommand::Cancel, "ET-001")
        .await
        .expect("answer");
}

#[tokio::test]
async fn refusals_are_usage_errors_and_failures_are_not() {
    let cases: Vec<(u16, &str, bool)> = vec![
        (404, "no such task", true),
        (400, "task id must be a number", true),
        (401, "missing or wrong admin token", true),
        (503, "the event loop has stopped", false),
        (500, "boom", false),
    ];
    for (status, message, usage) in cases {
        let (server, _) =
            scripted(move || Reply::Respond(json(status, &json_value!({ "error": message }))))
                .await;
        let err = DaemonClient::new(server.addr(), Some("secret-token"))
            .send(AdminCommand::Retry, "ET-001")
            .await
            .expect_err("refused");
        assert_eq!(err.is_usage(), usage, "{status}: {err}");
        let text = err.to_string();
        assert!(text.contains(message), "{status}: {text}");
        assert!(!text.contains("secret-token"), "{text}");
        if status == 401 {
            assert!(text.contains("server.admin_token"), "{text}");
        }
    }
}

#[tokio::test]
async fn an_answer_without_the_expected_fields_is_a_failure() {
    let (server, _) = scripted(|| Reply::Respond(empty(200))).await;
    let err = DaemonClient::new(server.addr(), None)
        .send(AdminCommand::Cancel, "ET-001")
        .await
        .expect_err("no body");
    assert!(
        matches!(err, RemoteError::Failed { status: 200, .. }),
        "{err:?}"
    );
}

#[tokio::test]
async fn a_closed_port_a_dropped_connection_and_a_slow_daemon_are_unreachable() {
    let listener = std::net::TcpListener::bind(("127.0.0.1", 0)).expect("bind");
    let closed = listener.local_addr().expect("address");
    drop(listener);
    let err = DaemonClient::new(closed, None)
        .send(AdminCommand::Retry, "ET-001")
        .await
        .expect_err("nothing listens");
    assert!(matches!(err, RemoteError::Unreachable { .. }), "{err:?}");
    assert!(!err.is_usage());

    let (server, _) = scripted(|| Reply::Drop).await;
    let err = DaemonClient::new(server.addr(), None)
        .send(AdminCommand::Retry, "ET-001")
        .await
        .expect_err("dropped");
    assert!(matches!(err, RemoteError::Unreachable { .. }), "{err:?}");

    // A daemon that never answers: the client gives up at its deadline.
    let silent = tokio::net::TcpListener::bind(("127.0.0.1", 0))
        .await
        .expect("bind");
    let err = DaemonClient::new(silent.local_addr().expect("address"), None)
        .with_timeout(Duration::from_millis(200))
        .send(AdminCommand::Retry, "ET-001")
        .await
        .expect_err("timed out");
    assert!(matches!(err, RemoteError::Unreachable { .. }), "{err:?}");
}
