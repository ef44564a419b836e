//! A minimal loopback HTTP/1 server the simulators share: collect the body, call a handler.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// A request with its whole body.
pub type Request = hyper::Request<Bytes>;
/// A response with its whole body.
pub type Response = hyper::Response<Full<Bytes>>;

/// What a handler returns: a response, or `Drop` to close the connection without answering
/// (fault injection: "apply the change, then drop the response").
pub enum Reply {
    Respond(Response),
    Drop,
}

impl From<Response> for Reply {
    fn from(response: Response) -> Reply {
        Reply::Respond(response)
    }
}

/// A boxed future returned by handlers.
pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// A request handler.
pub type Handler = Arc<dyn Fn(Request) -> BoxFuture<Reply> + Send + Sync>;

/// A running server; stops when dropped.
pub struct SimServer {
    addr: SocketAddr,
    stop: watch::Sender<bool>,
}

impl SimServer {
    /// Binds `127.0.0.1:0` and serves `handler` until the `SimServer` is dropped.
    pub async fn start(handler: Handler) -> std::io::Result<SimServer> {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
        let addr = listener.local_addr()?;
        let stop = accept_until_stopped(listener, move |stream| {
            let handler = handler.clone();
            let service = service_fn(move |request: hyper::Request<Incoming>| {
                let handler = handler.clone();
                async move {
                    let (parts, body) = request.into_parts();
                    let body = match body.collect().await {
                        Ok(collected) => collected.to_bytes(),
                        Err(err) => return Err(Dropped(err.to_string())),
                    };
                    match handler(hyper::Request::from_parts(parts, body)).await {
                        Reply::Respond(response) => Ok::<_, Dropped>(response),
                        Reply::Drop => Err(Dropped("dropped by fault injection".to_owned())),
                    }
                }
            });
            async move {
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            }
        });
        Ok(SimServer { addr, stop })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT` with no trailing slash.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for SimServer {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}

/// Accepts connections on `listener` and runs `serve` on each in a task of its own, until the
/// returned sender sends `true` (or is dropped): then the loop and every connection end.
pub(crate) fn accept_until_stopped<Serve, Served>(
    listener: TcpListener,
    serve: Serve,
) -> watch::Sender<bool>
where
    Serve: Fn(TcpStream) -> Served + Send + 'static,
    Served: Future<Output = ()> + Send + 'static,
{
    let (stop, mut stopped) = watch::channel(false);
    tokio::spawn(async move {
        loop {
            let (stream, _) = tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok(accepted) => accepted,
                    Err(_) => continue,
                },
                _ = stopped.changed() => return,
            };
            let connection = serve(stream);
            let mut conn_stopped = stopped.clone();
            tokio::spawn(async move {
                tokio::select! {
                    () = connection => {}
                    _ = conn_stopped.changed() => {}
                }
            });
        }
    });
    stop
}

/// The error a handler's `Reply::Drop` becomes, so hyper closes the connection.
#[derive(Debug)]
struct Dropped(String);

impl std::fmt::Display for Dropped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Dropped {}

/// A JSON response with `status` and `body`.
pub fn json(status: u16, body: &serde_json::Value) -> Response {
    let bytes = serde_json::to_vec(body).expect("a serde_json::Value always serialises");
    hyper::Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(bytes)))
        .expect("status and header are valid")
}

/// An empty response with `status`.
pub fn empty(status: u16) -> Response {
    hyper::Response::builder()
        .status(status)
        .body(Full::new(Bytes::new()))
        .expect("status is valid")
}

/// Wraps a synchronous handler.
pub fn sync_handler(handler: impl Fn(Request) -> Reply + Send + Sync + 'static) -> Handler {
    let handler = Arc::new(handler);
    Arc::new(move |request| {
        let handler = handler.clone();
        Box::pin(async move { handler(request) })
    })
}
