//! The accept loop, per-connection limits, graceful shutdown and the route table.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{
    HeaderValue, ALLOW, AUTHORIZATION, CONNECTION, CONTENT_TYPE, ORIGIN, WWW_AUTHENTICATE,
};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use orch_core::ports::Source;
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};
use tracing::{debug, info, warn};

use crate::signature::tokens_match;
use crate::state::AppState;
use crate::{api, ingress};

/// Every response has a whole body.
pub(crate) type Response = hyper::Response<Full<Bytes>>;

/// The largest request head (and read buffer) of a connection.
const MAX_BUF_SIZE: usize = 64 * 1024;

/// How long to back off when `accept` fails (out of file descriptors, for instance).
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// Serves the webhook ingress and the status API on `listener` until `shutdown` completes,
/// then stops accepting, lets open requests finish for `state.limits.shutdown_grace`, and
/// returns.
///
/// Errors: none so far (a failing `accept` is logged and retried); the `Result` leaves room
/// for setup failures.
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let limits = state.limits;
    let max_connections = limits.max_connections.clamp(1, Semaphore::MAX_PERMITS);
    let connections = Arc::new(Semaphore::new(max_connections));
    let state = Arc::new(state);
    let (stop_sender, stop_receiver) = watch::channel(false);
    if let Ok(addr) = listener.local_addr() {
        info!(addr = %addr, "http server listening");
    }
    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            () = &mut shutdown => break,
            permit = connections.clone().acquire_owned() => permit.expect("the connection semaphore is never closed"),
        };
        let (stream, peer) = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(err) => {
                    warn!(error = %err, "accept failed");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let state = state.clone();
        let mut stop = stop_receiver.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let service = service_fn(move |request: Request<Incoming>| {
                let state = state.clone();
                async move { Ok::<_, Infallible>(route(&state, request, peer).await) }
            });
            let mut builder = http1::Builder::new();
            builder
                .timer(TokioTimer::new())
                .header_read_timeout(limits.header_read_timeout)
                .max_buf_size(MAX_BUF_SIZE);
            let connection = builder.serve_connection(TokioIo::new(stream), service);
            tokio::pin!(connection);
            let result = tokio::select! {
                result = connection.as_mut() => result,
                _ = stop.changed() => {
                    connection.as_mut().graceful_shutdown();
                    connection.await
                }
            };
            if let Err(err) = result {
                debug!(error = %err, "connection ended with an error");
            }
        });
    }
    drop(listener);
    let _ = stop_sender.send(true);
    let all = u32::try_from(max_connections).unwrap_or(u32::MAX);
    if tokio::time::timeout(limits.shutdown_grace, connections.acquire_many(all))
        .await
        .is_err()
    {
        warn!(
            grace_ms = limits.shutdown_grace.as_millis() as u64,
            "connections still open after the shutdown grace"
        );
    }
    info!("http server stopped");
    Ok(())
}

async fn route(
    state: &AppState,
    request: Request<Incoming>,
    peer: std::net::SocketAddr,
) -> Response {
    let path = request.uri().path();
    match path {
        "/webhooks/plane" | "/webhooks/gitea" => {
            if request.method() != Method::POST {
                return method_not_allowed("POST");
            }
            let source = if path == "/webhooks/plane" {
                Source::Plane
            } else {
                Source::Gitea
            };
            ingress::handle(state, source, request).await
        }
        "/healthz" | "/readyz" => {
            if request.method() != Method::GET {
                return method_not_allowed("GET");
            }
            if path == "/healthz" {
                json(StatusCode::OK, &serde_json::json!({ "status": "ok" }))
            } else {
                api::readyz(state)
            }
        }
        _ if api::is_admin_path(path) => {
            if !authorized(state, &request) {
                let mut response = error(StatusCode::UNAUTHORIZED, "missing or wrong admin token");
                response
                    .headers_mut()
                    .insert(WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
                return response;
            }
            if let Some((id, command)) = api::admin_command(path) {
                if request.method() != Method::POST {
                    return method_not_allowed("POST");
                }
                // Browsers send `Origin` with every POST; orch's CLI and scripts do not. A
                // cross-site form must not be able to retry or cancel tasks of an open server.
                if request.headers().contains_key(ORIGIN) {
                    return error(
                        StatusCode::FORBIDDEN,
                        "admin commands are not accepted from browsers",
                    );
                }
                // The server must be reachable by Plane and Gitea; without an admin token,
                // only this machine may change tasks.
                if !commands_allowed_from(state.admin_token.is_some(), peer) {
                    return error(
                        StatusCode::FORBIDDEN,
                        "admin commands from other hosts need server.admin_token to be set",
                    );
                }
                return api::command(state, id, command).await;
            }
            if request.method() != Method::GET {
                return method_not_allowed("GET");
            }
            api::handle(state, &request).await
        }
        _ => error(StatusCode::NOT_FOUND, "no such route"),
    }
}

/// Whether admin commands may come from `peer`: from anywhere with an admin token set (the
/// token is checked before this), else only from this machine.
fn commands_allowed_from(has_admin_token: bool, peer: std::net::SocketAddr) -> bool {
    has_admin_token || peer.ip().is_loopback()
}

/// Whether the request may see the admin routes: always without a token, else only with
/// `Authorization: Bearer <token>` (compared in constant time).
fn authorized(state: &AppState, request: &Request<Incoming>) -> bool {
    let Some(expected) = &state.admin_token else {
        return true;
    };
    let Some(value) = request
        .headers()
        .get(AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
    else {
        return false;
    };
    let Some((scheme, token)) = value.trim().split_once(' ') else {
        return false;
    };
    scheme.eq_ignore_ascii_case("bearer")
        && tokens_match(token.trim().as_bytes(), expected.expose().as_bytes())
}

/// A JSON response.
pub(crate) fn json(status: StatusCode, body: &serde_json::Value) -> Response {
    let bytes = serde_json::to_vec(body).expect("a serde_json::Value always serialises");
    let mut response = hyper::Response::new(Full::new(Bytes::from(bytes)));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

/// `{"error": message}` with `status`.
pub(crate) fn error(status: StatusCode, message: &str) -> Response {
    json(status, &serde_json::json!({ "error": message }))
}

/// `error`, and the connection is closed after it (the rest of the request is not read).
pub(crate) fn error_and_close(status: StatusCode, message: &str) -> Response {
    let mut response = error(status, message);
    response
        .headers_mut()
        .insert(CONNECTION, HeaderValue::from_static("close"));
    response
}

/// A plain-text response with a content type.
pub(crate) fn text(status: StatusCode, content_type: &'static str, body: String) -> Response {
    let mut response = hyper::Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

fn method_not_allowed(allow: &'static str) -> Response {
    let mut response = error(StatusCode::METHOD_NOT_ALLOWED, "method not allowed");
    response
        .headers_mut()
        .insert(ALLOW, HeaderValue::from_static(allow));
    response
}

#[cfg(test)]
mod tests;
