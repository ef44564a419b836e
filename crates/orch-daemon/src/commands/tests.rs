//! The admin socket client's pure parts: reading an answer and naming a failed connect.

use std::io;
use std::path::Path;

use crate::commands::{connect_error, parse_answer, RemoteError};

fn check(raw: &str, expected: Option<(u16, &str)>) {
    let parsed = parse_answer(raw.as_bytes());
    assert_eq!(
        parsed
            .as_ref()
            .map(|(status, body)| (*status, body.as_str())),
        expected,
        "{raw:?}"
    );
}

#[test]
fn an_answer_is_its_status_and_its_body_cut_to_the_content_length() {
    check(
        "HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}",
        Some((200, "{}")),
    );
    check(
        "HTTP/1.1 404 Not Found\r\nContent-Length: 4\r\nconnection: close\r\n\r\nnopeEXTRA",
        Some((404, "nope")),
    );
    check(
        "HTTP/1.0 503 x\r\n\r\nbody to the end",
        Some((503, "body to the end")),
    );
    check("HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nshort", None);
    check("HTTP/1.1 200 OK\r\ncontent-length: 2\r\n", None);
    check("SSH-2.0-OpenSSH\r\n\r\n", None);
    check("HTTP/1.1 abc OK\r\n\r\n", None);
}

#[test]
fn a_socket_that_is_not_ours_is_named_as_such_and_anything_else_is_unreachable() {
    let socket = Path::new("/var/lib/orch/orch.db.sock");
    let denied = connect_error(socket, &io::Error::from(io::ErrorKind::PermissionDenied));
    assert!(
        matches!(denied, RemoteError::NotPermitted { .. }),
        "{denied:?}"
    );
    assert!(denied.is_usage());
    assert_eq!(
        denied.to_string(),
        "the admin socket /var/lib/orch/orch.db.sock belongs to the daemon's user: run orch as that user"
    );
    for kind in [io::ErrorKind::NotFound, io::ErrorKind::ConnectionRefused] {
        let err = connect_error(socket, &io::Error::from(kind));
        assert!(matches!(err, RemoteError::Unreachable { .. }), "{err:?}");
        assert!(!err.is_usage());
    }
}
