//! Size and time limits: the body cap, huge streams, slow headers and slow bodies.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::{plane_headers, HttpClient, TestServer, DEADLINE, PLANE_SECRET};

const MIB: usize = 1024 * 1024;
/// What a misbehaving client tries to upload.
const HUGE_UPLOAD: usize = 25 * MIB;
const UPLOAD_CHUNK: usize = 64 * 1024;

/// A JSON document of exactly `len` bytes.
fn json_of_len(len: usize) -> Vec<u8> {
    let frame = br#"{"pad": ""}"#;
    let mut body = Vec::with_capacity(len);
    body.extend_from_slice(&frame[..9]);
    body.resize(len - 2, b'a');
    body.extend_from_slice(b"\"}");
    assert_eq!(body.len(), len);
    body
}

/// Reads an HTTP/1 response head from `stream` and returns its status code, or `None` if the
/// connection closed first.
async fn read_status(stream: &mut (impl AsyncReadExt + Unpin)) -> Option<u16> {
    let mut head = Vec::new();
    let mut buffer = [0u8; 1024];
    while !head.windows(4).any(|window| window == b"\r\n\r\n") {
        match stream.read(&mut buffer).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => head.extend_from_slice(&buffer[..n]),
        }
    }
    let line = String::from_utf8_lossy(&head);
    line.split_whitespace().nth(1)?.parse().ok()
}

fn request_head(path: &str, headers: &[(String, String)], framing: &str) -> String {
    let mut head = format!("POST {path} HTTP/1.1\r\nHost: orch.test\r\n{framing}\r\n");
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    head
}

#[tokio::test]
async fn a_body_one_byte_over_the_cap_is_refused_with_413_and_the_cap_itself_is_accepted() {
    let server = TestServer::start(|_| {}).await;
    let client = HttpClient::new();

    let over = json_of_len(MIB + 1);
    let headers = plane_headers(PLANE_SECRET, "over", &over);
    let reply = client
        .post(&server.url("/webhooks/plane"), &headers, over)
        .await;
    assert_eq!(
        (reply.status, reply.json()),
        (413, serde_json::json!({"error": "request body too large"}))
    );
    assert!(server.stored().await.is_empty());

    let exact = json_of_len(MIB);
    let headers = plane_headers(PLANE_SECRET, "exact", &exact);
    let reply = client
        .post(&server.url("/webhooks/plane"), &headers, exact)
        .await;
    assert_eq!(reply.status, 202);
    assert_eq!(server.stored().await.len(), 1);
}

#[tokio::test]
async fn a_declared_length_over_the_cap_is_refused_before_the_body_is_sent() {
    let server = TestServer::start(|_| {}).await;
    let mut stream = TcpStream::connect(server.addr).await.expect("connect");
    let headers = plane_headers(PLANE_SECRET, "declared", b"{}");
    let head = request_head(
        "/webhooks/plane",
        &headers,
        &format!("Content-Length: {HUGE_UPLOAD}"),
    );
    stream.write_all(head.as_bytes()).await.expect("send head");
    // No body byte is sent: the answer must come from the declared length alone.
    let status = tokio::time::timeout(DEADLINE, read_status(&mut stream))
        .await
        .expect("answer in time");
    assert_eq!(status, Some(413));
    assert!(server.stored().await.is_empty());
}

/// Streams `HUGE_UPLOAD` bytes after `head` while reading the answer. Returns the status, the
/// bytes sent when the answer arrived, and whether the whole upload went through.
async fn stream_huge_upload(
    server: &TestServer,
    head: String,
    chunked: bool,
) -> (Option<u16>, usize, bool) {
    let stream = TcpStream::connect(server.addr).await.expect("connect");
    let (mut reader, mut writer) = stream.into_split();
    let sent = Arc::new(AtomicUsize::new(0));
    let upload = tokio::spawn({
        let sent = sent.clone();
        async move {
            writer.write_all(head.as_bytes()).await?;
            let chunk = vec![b' '; UPLOAD_CHUNK];
            while sent.load(Ordering::SeqCst) < HUGE_UPLOAD {
                if chunked {
                    writer
                        .write_all(format!("{UPLOAD_CHUNK:x}\r\n").as_bytes())
                        .await?;
                    writer.write_all(&chunk).await?;
                    writer.write_all(b"\r\n").await?;
                } else {
                    writer.write_all(&chunk).await?;
                }
                sent.fetch_add(UPLOAD_CHUNK, Ordering::SeqCst);
            }
            if chunked {
                writer.write_all(b"0\r\n\r\n").await?;
            }
            writer.flush().await
        }
    });
    let status = tokio::time::timeout(DEADLINE, read_status(&mut reader))
        .await
        .expect("answer in time");
    let sent_when_answered = sent.load(Ordering::SeqCst);
    let finished = tokio::time::timeout(DEADLINE, upload)
        .await
        .expect("upload ends")
        .expect("upload task");
    (status, sent_when_answered, finished.is_ok())
}

#[tokio::test]
async fn a_25_mb_chunked_stream_gets_413_and_the_server_stops_reading() {
    let server = TestServer::start(|_| {}).await;
    let headers = plane_headers(PLANE_SECRET, "stream", b"{}");
    let head = request_head("/webhooks/plane", &headers, "Transfer-Encoding: chunked");
    let (status, sent_when_answered, finished) = stream_huge_upload(&server, head, true).await;
    assert_eq!(status, Some(413));
    assert!(
        sent_when_answered < HUGE_UPLOAD,
        "the server answered only after {sent_when_answered} bytes: it read the whole stream"
    );
    assert!(
        !finished,
        "the server kept reading: the client could upload all {HUGE_UPLOAD} bytes"
    );
    assert!(server.stored().await.is_empty());
}

#[tokio::test]
async fn a_content_length_that_lies_low_does_not_let_a_client_send_more_than_declared() {
    let server = TestServer::start(|_| {}).await;
    // The declared length fits the cap; everything after it is not this request's body.
    let headers = plane_headers(PLANE_SECRET, "liar", b"{}");
    let head = request_head("/webhooks/plane", &headers, "Content-Length: 2");
    let (status, _sent, finished) = stream_huge_upload(&server, head, false).await;
    // The two declared bytes are spaces, not the signed `{}`: refused for the signature, and
    // the rest of the stream is not a valid request, so the server closes the connection.
    assert_eq!(status, Some(401));
    assert!(!finished, "the server kept reading past a bogus request");
    assert!(server.stored().await.is_empty());
}

#[tokio::test]
async fn slow_request_headers_are_cut_off() {
    let server = TestServer::start(|_| {}).await;
    let mut stream = TcpStream::connect(server.addr).await.expect("connect");
    stream
        .write_all(b"POST /webhooks/plane HTTP/1.1\r\nHost: orch.test\r\n")
        .await
        .expect("send part of the head");
    // The head never completes; the server must close the connection (300 ms in tests).
    let mut buffer = [0u8; 256];
    let closed = tokio::time::timeout(DEADLINE, async {
        loop {
            match stream.read(&mut buffer).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await;
    assert!(
        closed.is_ok(),
        "the server kept a connection with an unfinished head open"
    );
}

#[tokio::test]
async fn a_slow_body_is_answered_408() {
    let server = TestServer::start(|_| {}).await;
    let mut stream = TcpStream::connect(server.addr).await.expect("connect");
    let headers = plane_headers(PLANE_SECRET, "slow", b"{}");
    let head = request_head("/webhooks/plane", &headers, "Content-Length: 100");
    stream.write_all(head.as_bytes()).await.expect("send head");
    stream
        .write_all(b"{\"event\"")
        .await
        .expect("send part of the body");
    let status = tokio::time::timeout(DEADLINE, read_status(&mut stream))
        .await
        .expect("answer in time");
    assert_eq!(status, Some(408));
    assert!(server.stored().await.is_empty());
    assert!(
        closed_within_deadline(&mut stream).await,
        "the server kept a connection with an unfinished body open"
    );
}

/// Reads (and drops) whatever `stream` still delivers until the server closes it; false if
/// it stays open for `DEADLINE`.
async fn closed_within_deadline(stream: &mut TcpStream) -> bool {
    let mut buffer = [0u8; 256];
    tokio::time::timeout(DEADLINE, async {
        loop {
            match stream.read(&mut buffer).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await
    .is_ok()
}

#[tokio::test]
async fn a_connection_that_never_sends_a_request_is_closed() {
    let server = TestServer::start(|_| {}).await;
    let mut stream = TcpStream::connect(server.addr).await.expect("connect");
    let mut buffer = [0u8; 16];
    let closed = tokio::time::timeout(DEADLINE, stream.read(&mut buffer)).await;
    assert!(
        matches!(closed, Ok(Ok(0) | Err(_))),
        "an idle connection stayed open: {closed:?}"
    );
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed_after_its_answer() {
    let server = TestServer::start(|_| {}).await;
    let mut stream = TcpStream::connect(server.addr).await.expect("connect");
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: orch.test\r\n\r\n")
        .await
        .expect("send request");
    let status = tokio::time::timeout(DEADLINE, read_status(&mut stream))
        .await
        .expect("answer in time");
    assert_eq!(status, Some(200));
    let mut buffer = [0u8; 256];
    let closed = tokio::time::timeout(DEADLINE, async {
        loop {
            match stream.read(&mut buffer).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "an idle keep-alive connection stayed open");
}
