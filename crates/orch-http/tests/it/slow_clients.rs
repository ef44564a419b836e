//! Slow and stalled clients: the write deadline, the connection age, and never-reading
//! connections that must not keep a webhook out.

use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use orch_http::Limits;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpSocket, TcpStream};

use crate::support::{plane_headers, HttpClient, TestServer, DEADLINE, PLANE_SECRET};

/// A request whose answer is a few hundred bytes: the refusal of a work item read.
const PIPELINED: &[u8] = b"GET /api/tasks HTTP/1.1\r\nHost: orch.test\r\n\r\n";
/// Requests each connection of the slow-reader test pipelines. Their answers (about 45 KiB)
/// back up in the kernel's buffers; whether the server is still writing them or waiting for
/// the next request, the connection holds a place without ever reading.
const PIPELINE_DEPTH: usize = 128;
/// The never-reading connections of the slow-reader test (more than the global cap, 256).
const STALLED_CONNECTIONS: usize = 300;
/// How long the webhook may take while they hang on. This is a liveness bound, not a
/// latency measurement: a webhook is normally answered in milliseconds, and without room
/// being made for it, it would wait for the idle or write deadlines (5 s and 10 s) at best and
/// forever at worst. 2 s sits far from both, so only a server that lets a new connection
/// take a stalled one's place passes, on a fast machine or a slow one.
const LIVENESS_BOUND: Duration = Duration::from_secs(2);

/// Writes pipelined requests, never reading, until a write stays blocked for a while (the
/// server stopped reading because it cannot write its answers) or fails (it closed).
async fn pipeline_until_stuck(stream: &mut TcpStream) {
    let batch = PIPELINED.repeat(64);
    let deadline = Instant::now() + DEADLINE;
    loop {
        let write = tokio::time::timeout(Duration::from_millis(200), stream.write_all(&batch));
        if !matches!(write.await, Ok(Ok(()))) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the server never stopped reading"
        );
    }
}

/// Connects with a tiny receive buffer, so the server's answers back up quickly.
async fn connect_small_window(server: &TestServer) -> TcpStream {
    let socket = TcpSocket::new_v4().expect("socket");
    socket.set_recv_buffer_size(4096).expect("receive buffer");
    socket.connect(server.addr).await.expect("connect")
}

/// Production limits, with shorter ones from `adjust`.
fn limits(adjust: impl FnOnce(&mut Limits)) -> Limits {
    let mut limits = Limits::default();
    adjust(&mut limits);
    limits
}

/// The value of `orch_http_connections_shed_total{reason}`, 0 when absent.
fn shed(server: &TestServer, reason: &str) -> u64 {
    let prefix = format!("orch_http_connections_shed_total{{reason=\"{reason}\"}} ");
    server
        .state
        .metrics
        .encode()
        .lines()
        .find_map(|line| line.strip_prefix(prefix.as_str())?.trim().parse().ok())
        .unwrap_or(0)
}

/// Waits until `check` holds, at most `DEADLINE`.
async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + DEADLINE;
    while !check() {
        assert!(Instant::now() < deadline, "{what}: not within {DEADLINE:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Whether the server has closed `stream`: a write fails once its reset arrives. Writes
/// that stay blocked count as not closed yet.
async fn closed_by_the_server(stream: &mut TcpStream) -> bool {
    let deadline = Instant::now() + DEADLINE;
    while Instant::now() < deadline {
        let write = tokio::time::timeout(Duration::from_millis(50), stream.write_all(PIPELINED));
        if let Ok(Err(_)) = write.await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    false
}

#[tokio::test]
async fn a_client_that_never_reads_its_answers_is_disconnected_at_the_write_deadline() {
    let server = TestServer::start(|state| {
        state.limits = limits(|limits| limits.write_timeout = Duration::from_millis(300));
    })
    .await;
    let mut stream = connect_small_window(&server).await;
    // The kernel holds megabytes of answers before the server's writes block, so pipeline
    // until the server stops reading: its writes are blocked then.
    pipeline_until_stuck(&mut stream).await;
    eventually("the write deadline closes the connection", || {
        shed(&server, "write_timeout") == 1
    })
    .await;
    assert!(
        closed_by_the_server(&mut stream).await,
        "the connection is closed"
    );
}

#[tokio::test]
async fn a_connection_is_closed_after_its_answer_once_it_reaches_its_maximum_age() {
    let max_age = Duration::from_millis(300);
    let server = TestServer::start(|state| {
        state.limits = limits(|limits| limits.max_connection_age = max_age);
    })
    .await;
    let stream = TcpStream::connect(server.addr).await.expect("connect");
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .expect("handshake");
    let driver = tokio::spawn(connection);
    let opened = Instant::now();
    let mut answered = 0;
    // A client that keeps the connection busy: it is never idle, only too old.
    while sender.ready().await.is_ok() {
        let request = hyper::Request::get("/healthz")
            .header("Host", "orch.test")
            .body(Empty::<Bytes>::new())
            .expect("request");
        let Ok(response) = sender.send_request(request).await else {
            break;
        };
        assert_eq!(response.status(), 200, "every answer is whole");
        response.into_body().collect().await.expect("body");
        answered += 1;
        assert!(
            opened.elapsed() < DEADLINE,
            "the connection stayed open for {DEADLINE:?}"
        );
    }
    assert!(answered > 0);
    assert!(
        opened.elapsed() >= max_age,
        "closed after {:?}, before its age",
        opened.elapsed()
    );
    let ended = tokio::time::timeout(DEADLINE, driver)
        .await
        .expect("the connection ends");
    assert!(
        matches!(ended, Ok(Ok(()))),
        "closed cleanly after an answer: {ended:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_hundred_connections_that_never_read_do_not_keep_a_signed_webhook_out() {
    // Production limits: only making room, not a short deadline, can let the webhook in.
    let server = TestServer::start(|state| state.limits = Limits::default()).await;
    let mut stalled = Vec::with_capacity(STALLED_CONNECTIONS);
    for _ in 0..STALLED_CONNECTIONS {
        let mut stream = connect_small_window(&server).await;
        stream
            .write_all(&PIPELINED.repeat(PIPELINE_DEPTH))
            .await
            .expect("send pipelined requests");
        stalled.push(stream);
    }
    // Every one of them is from 127.0.0.1, like the webhook sender (and like everything
    // behind a reverse proxy on the same host).
    let body = br#"{"event": "issue", "data": {"id": "slow-readers"}}"#.to_vec();
    let headers = plane_headers(PLANE_SECRET, "behind-slow-readers", &body);
    let reply = tokio::time::timeout(
        LIVENESS_BOUND,
        HttpClient::new().post(&server.url("/webhooks/plane"), &headers, body),
    )
    .await
    .unwrap_or_else(|_| panic!("the webhook was not answered within {LIVENESS_BOUND:?}"));
    assert_eq!(reply.status, 202, "{}", reply.text());
    assert_eq!(server.stored().await.len(), 1);
    assert!(
        shed(&server, "evicted") > 0,
        "stalled connections made room"
    );
    drop(stalled);
}
