//! The accept loops (TCP and the admin socket), connection limits, graceful shutdown and the
//! route table with its access checks (the board's routes are in `board`).

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{Either, Full};
use hyper::body::Incoming;
use hyper::header::{HeaderValue, ALLOW, CONNECTION, CONTENT_TYPE, ORIGIN};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use orch_core::ports::Source;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream, UnixStream};
use tokio::sync::watch;
use tracing::{debug, info, warn};

use crate::access::{self, Need, Transport};
use crate::connections::{Admission, Connections, DeadlineIo, Registration, Worker};
use crate::metrics::ConnectionShed;
use crate::socket::AdminSocket;
use crate::state::AppState;
use crate::{api, board, ingress};

/// Every response has a whole body.
pub(crate) type Response = hyper::Response<Full<Bytes>>;

/// What `serve` listens on.
#[derive(Debug)]
pub struct Listeners {
    /// `server.listen`: webhooks, health, and the other routes for requests with credentials.
    pub tcp: TcpListener,
    /// `{db_path}.sock`: orch's own user (the CLI), admitted to every route without a token.
    pub admin_socket: Option<AdminSocket>,
}

impl From<TcpListener> for Listeners {
    fn from(tcp: TcpListener) -> Listeners {
        Listeners {
            tcp,
            admin_socket: None,
        }
    }
}

/// The largest request head (and read buffer) of a connection.
const MAX_BUF_SIZE: usize = 64 * 1024;

/// How long to back off when `accept` fails (out of file descriptors, for instance).
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// Connections served at once on the admin socket (only orch's own user can open them).
const MAX_SOCKET_CONNECTIONS: usize = 32;

/// Serves the webhook ingress and the status API on `listeners` until `shutdown` completes,
/// then stops accepting (removing the admin socket file), lets open requests finish for
/// `state.limits.shutdown_grace`, closes what is left, and returns.
///
/// Errors: none so far (a failing `accept` is logged and retried); the `Result` leaves room
/// for setup failures.
pub async fn serve(
    listeners: impl Into<Listeners>,
    state: AppState,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let Listeners { tcp, admin_socket } = listeners.into();
    let limits = state.limits;
    let tcp_connections = Connections::new(limits.max_connections, limits.max_connections_per_peer);
    let socket_connections = Connections::new(MAX_SOCKET_CONNECTIONS, MAX_SOCKET_CONNECTIONS);
    let state = Arc::new(state);
    let (stop_sender, stop_receiver) = watch::channel(false);
    if let Ok(addr) = tcp.local_addr() {
        info!(addr = %addr, "http server listening");
    }
    if let Some(socket) = &admin_socket {
        info!(path = %socket.path().display(), "admin socket listening");
    }
    tokio::pin!(shutdown);
    // A TCP connection accepted while every place is taken by a connection that is handling
    // a request; it waits here (and further ones in the listen backlog) for a place.
    let mut waiting: Option<(TcpStream, SocketAddr)> = None;
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            accepted = tcp.accept(), if waiting.is_none() => match accepted {
                Ok(accepted) => waiting = Some(accepted),
                Err(err) => {
                    warn!(error = %err, "accept failed");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                }
            },
            () = tcp_connections.changed(), if waiting.is_some() => {}
            accepted = accept_local(admin_socket.as_ref()) => match accepted {
                Ok(stream) => match socket_connections.admit(None) {
                    Admission::Admitted { registration, .. } => spawn_connection(
                        stream,
                        registration,
                        Transport::AdminSocket,
                        state.clone(),
                        stop_receiver.clone(),
                    ),
                    Admission::Refused | Admission::Full => {
                        warn!("admin socket connection refused: every place is busy");
                    }
                },
                Err(err) => {
                    warn!(error = %err, "admin socket accept failed");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                }
            },
        }
        if let Some((stream, peer)) = waiting.take() {
            match tcp_connections.admit(Some(peer.ip())) {
                Admission::Admitted {
                    registration,
                    evicted,
                } => {
                    if evicted {
                        state.metrics.count_connection_shed(ConnectionShed::Evicted);
                    }
                    let _ = stream.set_nodelay(true);
                    spawn_connection(
                        stream,
                        registration,
                        Transport::Tcp,
                        state.clone(),
                        stop_receiver.clone(),
                    );
                }
                Admission::Refused => {
                    state.metrics.count_connection_shed(ConnectionShed::Refused);
                    debug!(peer = %peer.ip(), "connection refused: its peer is at its cap and busy");
                }
                Admission::Full => waiting = Some((stream, peer)),
            }
        }
    }
    drop(waiting);
    drop(tcp);
    drop(admin_socket);
    let _ = stop_sender.send(true);
    let drained = tokio::time::timeout(limits.shutdown_grace, async {
        tcp_connections.emptied().await;
        socket_connections.emptied().await;
    })
    .await;
    if drained.is_err() {
        warn!(
            grace_ms = limits.shutdown_grace.as_millis() as u64,
            open = tcp_connections.len() + socket_connections.len(),
            "connections still open after the shutdown grace are closed"
        );
        tcp_connections.close_all();
        socket_connections.close_all();
    }
    info!("http server stopped");
    Ok(())
}

/// The next connection on the admin socket; never completes without one.
async fn accept_local(socket: Option<&AdminSocket>) -> std::io::Result<UnixStream> {
    match socket {
        Some(socket) => socket.listener().accept().await.map(|(stream, _)| stream),
        None => std::future::pending().await,
    }
}

/// Serves one connection until it ends, is chosen to close, or outlives its limits.
fn spawn_connection<S>(
    stream: S,
    registration: Registration,
    transport: Transport,
    state: Arc<AppState>,
    mut stop: watch::Receiver<bool>,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    tokio::spawn(async move {
        let limits = state.limits;
        let metrics = state.metrics.clone();
        let activity = registration.activity().clone();
        let worker = registration.worker();
        let io = DeadlineIo::new(stream, &registration, limits.write_timeout);
        let board_stop = stop.clone();
        let service = service_fn(move |request: Request<Incoming>| {
            let state = state.clone();
            let worker = worker.clone();
            let board_stop = board_stop.clone();
            async move {
                let response = if board::is_board_path(request.uri().path()) {
                    board::handle(state, request, transport, &worker, board_stop).await
                } else {
                    route(&state, request, transport, &worker)
                        .await
                        .map(Either::Left)
                };
                Ok::<_, Infallible>(response)
            }
        });
        let mut builder = http1::Builder::new();
        builder
            .timer(TokioTimer::new())
            .header_read_timeout(limits.header_read_timeout)
            .max_buf_size(MAX_BUF_SIZE);
        let connection = builder.serve_connection(TokioIo::new(io), service);
        tokio::pin!(connection);
        let too_old = tokio::time::sleep(limits.max_connection_age);
        tokio::pin!(too_old);
        let mut winding_down = false;
        let result = loop {
            tokio::select! {
                result = connection.as_mut() => break result,
                () = activity.closed() => {
                    debug!("connection closed to make room or at shutdown");
                    break Ok(());
                }
                _ = stop.changed(), if !winding_down => {
                    connection.as_mut().graceful_shutdown();
                    winding_down = true;
                }
                () = &mut too_old => {
                    if winding_down {
                        debug!("connection dropped: it did not close after its last answer");
                        break Ok(());
                    }
                    // Close after the answer in progress; drop it if that takes too long.
                    connection.as_mut().graceful_shutdown();
                    winding_down = true;
                    too_old.as_mut().reset(tokio::time::Instant::now() + limits.write_timeout);
                }
            }
        };
        if activity.write_timed_out() {
            metrics.count_connection_shed(ConnectionShed::WriteTimeout);
        }
        if let Err(err) = result {
            debug!(error = %err, "connection ended with an error");
        }
        drop(registration);
    });
}

async fn route(
    state: &AppState,
    request: Request<Incoming>,
    transport: Transport,
    worker: &Worker,
) -> Response {
    let path = request.uri().path();
    if let Some(source) = webhook_source(path) {
        if request.method() != Method::POST {
            return method_not_allowed("POST");
        }
        // The ingress marks the request as work once its body has arrived.
        worker.request_arrived();
        return ingress::handle(state, source, request, worker).await;
    }
    let Some(_work) = worker.begin_work() else {
        return error_and_close(StatusCode::SERVICE_UNAVAILABLE, "the connection is closing");
    };
    match path {
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
        "/metrics" => {
            let token = state.admin_token.as_ref();
            if let Err(refusal) = access::check(token, transport, request.headers(), Need::Metrics)
            {
                return access::refusal_response(refusal);
            }
            if request.method() != Method::GET {
                return method_not_allowed("GET");
            }
            api::handle(state, &request).await
        }
        _ if api::is_work_item_path(path) => {
            let token = state.admin_token.as_ref();
            let admitted = match access::check(token, transport, request.headers(), Need::Admin) {
                Ok(admitted) => admitted,
                Err(refusal) => return access::refusal_response(refusal),
            };
            if let Some((id, command)) = api::admin_command(path) {
                if request.method() != Method::POST {
                    return method_not_allowed("POST");
                }
                // Browsers send `Origin` with every POST; orch's CLI and scripts do not. A
                // cross-site form must not be able to retry or cancel tasks.
                if request.headers().contains_key(ORIGIN) {
                    return error(
                        StatusCode::FORBIDDEN,
                        "admin commands are not accepted from browsers",
                    );
                }
                return api::command(state, id, command, admitted.as_str()).await;
            }
            if request.method() != Method::GET {
                return method_not_allowed("GET");
            }
            api::handle(state, &request).await
        }
        _ => error(StatusCode::NOT_FOUND, "no such route"),
    }
}

fn webhook_source(path: &str) -> Option<Source> {
    match path {
        "/webhooks/plane" => Some(Source::Plane),
        "/webhooks/gitea" => Some(Source::Gitea),
        _ => None,
    }
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
