//! The board over a real server: nothing about work items without a credential, the login
//! form and its session cookie, commands only from orch's own pages, and live `/events`.

use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use orch_core::event::{Event, Origin};
use orch_core::secret::Secret;

use crate::admin::{add_task, RecordingSink};
use crate::support::{bearer, HttpClient, Reply, TestServer, DEADLINE};

const TOKEN: &str = "board-token-for-tests";

async fn serve(token: Option<&str>) -> (TestServer, std::sync::Arc<RecordingSink>) {
    let sink = RecordingSink::changing();
    let token = token.map(Secret::new);
    let admin = sink.clone();
    let server = TestServer::start(move |state| {
        state.admin = Some(admin);
        state.admin_token = token;
    })
    .await;
    add_task(server.served_store.as_ref(), 1).await;
    (server, sink)
}

fn header(reply: &Reply, name: &str) -> String {
    reply
        .headers
        .get(name)
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default()
        .to_owned()
}

/// Logs in with `token` and returns the session cookie (`name=value`), if one was set.
async fn log_in(server: &TestServer, token: &str) -> (Reply, Option<String>) {
    let client = HttpClient::new();
    let headers = vec![(
        "content-type".to_owned(),
        "application/x-www-form-urlencoded".to_owned(),
    )];
    let reply = client
        .post(&server.url("/login"), &headers, format!("token={token}"))
        .await;
    let cookie = reply
        .headers
        .get("set-cookie")
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.split(';').next())
        .map(str::to_owned);
    (reply, cookie)
}

fn with_cookie(cookie: &str, extra: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut headers = vec![("cookie".to_owned(), cookie.to_owned())];
    headers.extend(
        extra
            .iter()
            .map(|(name, value)| ((*name).to_owned(), (*value).to_owned())),
    );
    headers
}

/// Asserts no work item (its id or title) shows in any answer to `headers`.
async fn shows_no_work_item(server: &TestServer, headers: &[(String, String)]) {
    let client = HttpClient::new();
    for path in ["/", "/tasks/ET-001", "/tasks/1", "/events"] {
        let reply = client.get(&server.url(path), headers).await;
        assert!(
            matches!(reply.status, 303 | 401 | 403),
            "{path}: {} {}",
            reply.status,
            reply.text()
        );
        if reply.status == 303 {
            assert_eq!(header(&reply, "location"), "/login", "{path}");
        }
        for secret in ["ET-001", "Task 1"] {
            assert!(!reply.text().contains(secret), "{path}: {}", reply.text());
        }
    }
}

#[tokio::test]
async fn without_a_credential_the_board_shows_no_work_item() {
    let (server, _) = serve(Some(TOKEN)).await;
    shows_no_work_item(&server, &[]).await;
    shows_no_work_item(&server, &bearer("wrong")).await;
    let forged = with_cookie("orch_session=v1.99999999999.00ff", &[]);
    shows_no_work_item(&server, &forged).await;
    // An address is no credential, whatever a proxy claims.
    let relayed = vec![("x-forwarded-for".to_owned(), "127.0.0.1".to_owned())];
    shows_no_work_item(&server, &relayed).await;
    let login = HttpClient::new().get(&server.url("/login"), &[]).await;
    assert_eq!(login.status, 200);
    assert!(login.text().contains("name=\"token\""), "{}", login.text());
}

#[tokio::test]
async fn without_an_admin_token_the_board_cannot_be_opened_over_tcp() {
    let (server, _) = serve(None).await;
    shows_no_work_item(&server, &[]).await;
    let (reply, cookie) = log_in(&server, "anything").await;
    assert_eq!((reply.status, cookie), (403, None));
    assert!(
        reply.text().contains("server.admin_token"),
        "{}",
        reply.text()
    );
}

#[tokio::test]
async fn the_login_form_sets_a_strict_http_only_cookie_that_opens_the_board() {
    let (server, _) = serve(Some(TOKEN)).await;
    let (wrong, cookie) = log_in(&server, "wrong").await;
    assert_eq!((wrong.status, cookie), (401, None));
    assert!(wrong.text().contains("wrong token"));

    let (reply, cookie) = log_in(&server, TOKEN).await;
    assert_eq!(
        (reply.status, header(&reply, "location").as_str()),
        (303, "/")
    );
    let set_cookie = header(&reply, "set-cookie");
    assert!(set_cookie.contains("HttpOnly"), "{set_cookie}");
    assert!(set_cookie.contains("SameSite=Strict"), "{set_cookie}");
    let cookie = cookie.expect("a session cookie");

    let client = HttpClient::new();
    let board = client
        .get(&server.url("/"), &with_cookie(&cookie, &[]))
        .await;
    assert_eq!(board.status, 200, "{}", board.text());
    assert!(
        board.text().contains("data-task=\"ET-001\""),
        "{}",
        board.text()
    );
    assert!(header(&board, "content-security-policy").contains("script-src 'self'"));
    let page = client
        .get(&server.url("/tasks/ET-001"), &with_cookie(&cookie, &[]))
        .await;
    assert_eq!(page.status, 200);
    assert!(page.text().contains("Task 1"), "{}", page.text());
    // Bearer opens it too.
    let board = client.get(&server.url("/"), &bearer(TOKEN)).await;
    assert_eq!(board.status, 200);
    // A task that does not exist is a 404.
    let missing = client
        .get(&server.url("/tasks/ET-404"), &bearer(TOKEN))
        .await;
    assert_eq!(missing.status, 404);
    // A login from another site's page is refused.
    let headers = vec![("origin".to_owned(), "http://evil.example".to_owned())];
    let foreign = client
        .post(&server.url("/login"), &headers, format!("token={TOKEN}"))
        .await;
    assert_eq!(foreign.status, 403);
}

#[tokio::test]
async fn board_commands_need_a_page_of_orch_and_reach_the_event_loop() {
    let (server, sink) = serve(Some(TOKEN)).await;
    let (_, cookie) = log_in(&server, TOKEN).await;
    let cookie = cookie.expect("a session cookie");
    let client = HttpClient::new();
    let url = server.url("/tasks/ET-001/retry");
    let host = server.addr.to_string();
    let own_origin = format!("http://{host}");

    let no_origin = client.post(&url, &with_cookie(&cookie, &[]), "").await;
    assert_eq!(no_origin.status, 403);
    let foreign = with_cookie(&cookie, &[("origin", "http://evil.example")]);
    assert_eq!(client.post(&url, &foreign, "").await.status, 403);
    let anonymous = vec![("origin".to_owned(), own_origin.clone())];
    assert_eq!(client.post(&url, &anonymous, "").await.status, 401);
    assert!(sink.events().is_empty());

    let own = with_cookie(&cookie, &[("origin", own_origin.as_str())]);
    let reply = client.post(&url, &own, "").await;
    assert_eq!(reply.status, 303, "{}", reply.text());
    let location = header(&reply, "location");
    assert!(
        location.starts_with("/tasks/ET-001?said=retry%20of%20ET-001"),
        "{location}"
    );
    let page = client
        .get(&server.url(&location), &with_cookie(&cookie, &[]))
        .await;
    assert!(
        page.text().contains("retry of ET-001: handled retry"),
        "{}",
        page.text()
    );

    // A script with the token needs no page.
    let cancel = client
        .post(&server.url("/tasks/1/cancel"), &bearer(TOKEN), "")
        .await;
    assert_eq!(cancel.status, 303);
    let events: Vec<(bool, Origin)> = sink
        .events()
        .into_iter()
        .map(|(event, origin)| (matches!(event, Event::RetryRequested { .. }), origin))
        .collect();
    assert_eq!(events, vec![(true, Origin::Admin), (false, Origin::Admin)]);
}

/// Reads the `/events` stream until `wanted` has arrived; panics after the deadline.
async fn read_events_until(body: &mut hyper::body::Incoming, seen: &mut String, wanted: &str) {
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while !seen.contains(wanted) {
        let frame = tokio::time::timeout_at(deadline, body.frame())
            .await
            .unwrap_or_else(|_| panic!("no {wanted:?} in the stream: {seen}"))
            .expect("the stream goes on")
            .expect("a frame");
        if let Ok(data) = frame.into_data() {
            seen.push_str(&String::from_utf8_lossy(&data));
        }
    }
}

#[tokio::test]
async fn events_stream_the_board_again_when_a_task_appears() {
    let (server, _) = serve(Some(TOKEN)).await;
    let client: Client<_, Empty<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let request = hyper::Request::get(server.url("/events"))
        .header("authorization", format!("Bearer {TOKEN}"))
        .body(Empty::new())
        .expect("valid request");
    let response = tokio::time::timeout(DEADLINE, client.request(request))
        .await
        .expect("an answer")
        .expect("a response");
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers().get("content-type").map(|v| v.as_bytes()),
        Some(&b"text/event-stream"[..])
    );
    let mut body = response.into_body();
    let mut seen = String::new();
    read_events_until(&mut body, &mut seen, "data-task=\"ET-001\"").await;
    assert!(seen.starts_with("retry: "), "{seen}");
    assert!(!seen.contains("ET-002"));
    add_task(server.served_store.as_ref(), 2).await;
    read_events_until(&mut body, &mut seen, "data-task=\"ET-002\"").await;
    assert_eq!(seen.matches("event: board").count(), 2, "{seen}");
}

#[tokio::test]
async fn board_errors_answer_with_their_status_and_submit_nothing() {
    let (server, sink) = serve(Some(TOKEN)).await;
    let client = HttpClient::new();
    let auth = bearer(TOKEN);
    let status = |reply: Reply| reply.status;
    assert_eq!(
        status(client.get(&server.url("/tasks/not%20an%20id"), &auth).await),
        400
    );
    assert_eq!(
        status(
            client
                .post(&server.url("/tasks/ET-001/frobnicate"), &auth, "")
                .await
        ),
        404
    );
    assert_eq!(
        status(
            client
                .post(&server.url("/tasks/ET-404/retry"), &auth, "")
                .await
        ),
        404
    );
    assert_eq!(
        status(
            client
                .send("PUT", &server.url("/"), &auth, Bytes::new())
                .await
        ),
        405
    );
    let huge = format!("token={}", "x".repeat(10_000));
    assert_eq!(
        status(client.post(&server.url("/login"), &[], huge).await),
        413
    );
    assert!(sink.events().is_empty());
    // Its script and style sheet hold no work item and need no credential.
    for (path, kind) in [("/board.js", "text/javascript"), ("/board.css", "text/css")] {
        let reply = client.get(&server.url(path), &[]).await;
        assert_eq!(reply.status, 200, "{path}");
        assert!(header(&reply, "content-type").starts_with(kind), "{path}");
    }
}

#[tokio::test]
async fn board_commands_without_an_event_loop_answer_503() {
    let server = TestServer::start(|state| state.admin_token = Some(Secret::new(TOKEN))).await;
    add_task(server.served_store.as_ref(), 1).await;
    let reply = HttpClient::new()
        .post(&server.url("/tasks/ET-001/retry"), &bearer(TOKEN), "")
        .await;
    assert_eq!(reply.status, 503, "{}", reply.text());
}

#[tokio::test]
async fn logging_out_clears_the_cookie() {
    let (server, _) = serve(Some(TOKEN)).await;
    let reply = HttpClient::new()
        .post(&server.url("/logout"), &[], "")
        .await;
    assert_eq!(
        (reply.status, header(&reply, "location").as_str()),
        (303, "/login")
    );
    assert!(header(&reply, "set-cookie").contains("Max-Age=0"));
}
