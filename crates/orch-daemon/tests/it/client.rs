//! `DaemonClient`, the admin socket client of `orch task retry|cancel`, against a scripted
//! socket server.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use orch_daemon::commands::{AdminCommand, DaemonClient, RemoteAnswer, RemoteError};
use orch_daemon::wiring::admin_socket_path;
use serde_json::json as json_value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixListener;

/// The request heads the scripted server saw.
type Seen = Arc<Mutex<Vec<String>>>;

/// What the scripted server does with each request.
#[derive(Debug, Clone)]
enum Script {
    /// Answers with this status and body.
    Answer(u16, String),
    /// Closes the connection without an answer.
    Drop,
    /// Reads the request and never answers.
    Silent,
}

/// A socket server in a temp dir following `script`, recording request heads.
struct Scripted {
    _dir: tempfile::TempDir,
    socket: PathBuf,
    seen: Seen,
}

impl Scripted {
    async fn start(script: Script) -> Scripted {
        let dir = tempfile::tempdir().expect("temp dir");
        let socket = dir.path().join("orch.db.sock");
        let listener = UnixListener::bind(&socket).expect("bind");
        let seen: Seen = Arc::new(Mutex::new(Vec::new()));
        let record = seen.clone();
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let record = record.clone();
                let script = script.clone();
                tokio::spawn(async move {
                    let mut head = Vec::new();
                    let mut buffer = [0u8; 1024];
                    while !head.windows(4).any(|window| window == b"\r\n\r\n") {
                        match stream.read(&mut buffer).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => head.extend_from_slice(&buffer[..n]),
                        }
                    }
                    record
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .push(String::from_utf8_lossy(&head).into_owned());
                    match script {
                        Script::Answer(status, body) => {
                            let answer = format!(
                                "HTTP/1.1 {status} Whatever\r\ncontent-type: application/json\r\n\
                                 content-length: {}\r\nconnection: close\r\n\r\n{body}",
                                body.len()
                            );
                            let _ = stream.write_all(answer.as_bytes()).await;
                        }
                        Script::Drop => {}
                        Script::Silent => {
                            let _ = stream.read(&mut buffer).await;
                        }
                    }
                });
            }
        });
        Scripted {
            _dir: dir,
            socket,
            seen,
        }
    }

    fn answering(status: u16, body: serde_json::Value) -> Script {
        Script::Answer(status, body.to_string())
    }

    fn client(&self) -> DaemonClient {
        DaemonClient::new(&self.socket)
    }

    fn seen(&self) -> Vec<String> {
        self.seen
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

#[test]
fn the_admin_socket_sits_next_to_the_database() {
    assert_eq!(
        admin_socket_path(Path::new("/var/lib/orch/orch.db")),
        PathBuf::from("/var/lib/orch/orch.db.sock")
    );
    assert_eq!(
        DaemonClient::for_database(Path::new("data/orch.db")).socket(),
        Path::new("data/orch.db.sock")
    );
}

#[tokio::test]
async fn a_command_is_posted_to_its_route_without_any_token_and_the_answer_is_read() {
    let server = Scripted::start(Scripted::answering(
        200,
        json_value!({"task": "ET-001", "changed": true, "note": "analysis restarted"}),
    ))
    .await;
    let answer = server
        .client()
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
    server
        .client()
        .send(AdminCommand::Cancel, "ET 1/..")
        .await
        .expect("answer");
    let seen = server.seen();
    let request_lines: Vec<&str> = seen
        .iter()
        .map(|head| head.lines().next().unwrap_or_default())
        .collect();
    assert_eq!(
        request_lines,
        [
            "POST /api/tasks/ET-001/retry HTTP/1.1",
            "POST /api/tasks/ET%201%2F../cancel HTTP/1.1",
        ]
    );
    assert!(
        seen.iter()
            .all(|head| !head.to_ascii_lowercase().contains("authorization")),
        "{seen:?}"
    );
}

#[tokio::test]
async fn refusals_are_usage_errors_and_failures_are_not() {
    let cases: Vec<(u16, &str, bool)> = vec![
        (404, "no such task", true),
        (400, "task id must be a number", true),
        (403, "this route needs server.admin_token", true),
        (503, "the event loop has stopped", false),
        (500, "boom", false),
    ];
    for (status, message, usage) in cases {
        let server = Scripted::start(Scripted::answering(
            status,
            json_value!({ "error": message }),
        ))
        .await;
        let err = server
            .client()
            .send(AdminCommand::Retry, "ET-001")
            .await
            .expect_err("refused");
        assert_eq!(err.is_usage(), usage, "{status}: {err}");
        assert!(err.to_string().contains(message), "{status}: {err}");
    }
}

#[tokio::test]
async fn an_answer_without_the_expected_fields_is_a_failure() {
    let server = Scripted::start(Script::Answer(200, String::new())).await;
    let err = server
        .client()
        .send(AdminCommand::Cancel, "ET-001")
        .await
        .expect_err("no body");
    assert!(
        matches!(err, RemoteError::Failed { status: 200, .. }),
        "{err:?}"
    );
}

#[tokio::test]
async fn no_socket_a_dead_socket_a_dropped_connection_and_a_silent_daemon_are_unreachable() {
    let dir = tempfile::tempdir().expect("temp dir");
    let missing = dir.path().join("orch.db.sock");
    let err = DaemonClient::new(&missing)
        .send(AdminCommand::Retry, "ET-001")
        .await
        .expect_err("no socket");
    assert!(matches!(err, RemoteError::Unreachable { .. }), "{err:?}");
    assert!(!err.is_usage());
    assert!(
        err.to_string().contains(&missing.display().to_string()),
        "{err}"
    );

    // A socket file whose daemon is gone.
    drop(std::os::unix::net::UnixListener::bind(&missing).expect("bind"));
    let err = DaemonClient::new(&missing)
        .send(AdminCommand::Retry, "ET-001")
        .await
        .expect_err("nothing accepts");
    assert!(matches!(err, RemoteError::Unreachable { .. }), "{err:?}");

    let server = Scripted::start(Script::Drop).await;
    let err = server
        .client()
        .send(AdminCommand::Retry, "ET-001")
        .await
        .expect_err("dropped");
    assert!(matches!(err, RemoteError::Unreachable { .. }), "{err:?}");

    let server = Scripted::start(Script::Silent).await;
    let err = server
        .client()
        .with_timeout(Duration::from_millis(200))
        .send(AdminCommand::Retry, "ET-001")
        .await
        .expect_err("timed out");
    assert!(matches!(err, RemoteError::Unreachable { .. }), "{err:?}");
}
