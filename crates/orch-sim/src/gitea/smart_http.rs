//! Git smart HTTP for `GiteaSim`: runs `git http-backend` as a CGI program per request.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use tokio::io::AsyncWriteExt;
use tokio::process::Command;

use crate::server::{Request, Response};

/// The longest one git HTTP request may take.
const BACKEND_TIMEOUT: Duration = Duration::from_secs(120);

/// Serves one git smart-HTTP request for `path_info` (e.g. `/acme/widgets.git/info/refs`) out of
/// `project_root`, as user `remote_user`.
pub(crate) async fn serve(
    project_root: &Path,
    path_info: &str,
    request: &Request,
    remote_user: &str,
) -> Result<Response, String> {
    let header = |name: &str| {
        request
            .headers()
            .get(name)
            .and_then(|value| value.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    let mut cmd = Command::new("git");
    cmd.arg("http-backend")
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_PROJECT_ROOT", project_root)
        .env("GIT_HTTP_EXPORT_ALL", "1")
        .env("GATEWAY_INTERFACE", "CGI/1.1")
        .env("PATH_INFO", path_info)
        .env("REQUEST_METHOD", request.method().as_str())
        .env("QUERY_STRING", request.uri().query().unwrap_or_default())
        .env("CONTENT_TYPE", header("content-type"))
        .env("CONTENT_LENGTH", request.body().len().to_string())
        .env("HTTP_CONTENT_ENCODING", header("content-encoding"))
        .env("HTTP_GIT_PROTOCOL", header("git-protocol"))
        .env("REMOTE_USER", remote_user)
        .env("REMOTE_ADDR", "127.0.0.1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child = cmd
        .spawn()
        .map_err(|err| format!("spawn git http-backend: {err}"))?;
    let body = request.body().clone();
    let stdin = child.stdin.take();
    let writer = tokio::spawn(async move {
        if let Some(mut stdin) = stdin {
            // A backend that stops reading early (an error answer) closes the pipe; that is fine.
            let _ = stdin.write_all(&body).await;
        }
    });
    let output = tokio::time::timeout(BACKEND_TIMEOUT, child.wait_with_output())
        .await
        .map_err(|_| "git http-backend timed out".to_owned())?
        .map_err(|err| format!("git http-backend: {err}"))?;
    let _ = writer.await;
    parse_cgi(&output.stdout)
}

/// Turns CGI output (headers, a blank line, the body) into a response.
fn parse_cgi(raw: &[u8]) -> Result<Response, String> {
    let (head_len, sep_len) = find_blank_line(raw)
        .ok_or_else(|| "git http-backend printed no header block".to_owned())?;
    let head = String::from_utf8_lossy(&raw[..head_len]);
    let body = Bytes::copy_from_slice(&raw[head_len + sep_len..]);
    let mut builder = hyper::Response::builder().status(200);
    for line in head.lines() {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("status") {
            let code: u16 = value
                .split_whitespace()
                .next()
                .and_then(|code| code.parse().ok())
                .unwrap_or(500);
            builder = builder.status(code);
        } else {
            builder = builder.header(name.trim(), value);
        }
    }
    builder
        .body(Full::new(body))
        .map_err(|err| format!("bad CGI header: {err}"))
}

fn find_blank_line(raw: &[u8]) -> Option<(usize, usize)> {
    let crlf = raw
        .windows(4)
        .position(|window| window == b"\r\n\r\n")
        .map(|at| (at, 4));
    let lf = raw
        .windows(2)
        .position(|window| window == b"\n\n")
        .map(|at| (at, 2));
    match (crlf, lf) {
        (Some(crlf), Some(lf)) => Some(if crlf.0 <= lf.0 { crlf } else { lf }),
        (one, other) => one.or(other),
    }
}
