//! Test helpers: a served `AppState` on 127.0.0.1:0, a hyper client, contract samples, signing.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use hmac::{Hmac, Mac};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use orch_core::fakes::store::MemStore;
use orch_core::fakes::FakeClock;
use orch_core::ports::{Delivery, Store};
use orch_http::{AdminSocket, AppState, Limits, Listeners, WebhookEvents, WebhookSecrets};
use sha2::Sha256;
use tokio::net::{TcpListener, UnixStream};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// The Plane test secret of `contracts/plane/README.md`.
pub(crate) const PLANE_SECRET: &str = "plane_wh_0123456789abcdef0123456789abcdef";
/// The Gitea test secret of `contracts/gitea/headers.json`.
pub(crate) const GITEA_SECRET: &str = "s3cr3t-for-tests";
/// How long any test waits for something that should happen at once.
pub(crate) const DEADLINE: Duration = Duration::from_secs(10);

/// A running server over a `MemStore`, on TCP and an admin socket; shut down when dropped.
/// The event types the daemon passes to the ingress: the parsers' own lists.
pub(crate) fn webhook_events() -> WebhookEvents {
    WebhookEvents {
        plane: orch_plane::webhook::WEBHOOK_EVENTS,
        gitea: orch_gitea::webhook::WEBHOOK_EVENTS,
    }
}

pub(crate) struct TestServer {
    pub(crate) addr: SocketAddr,
    /// The admin socket, in its own temp directory.
    pub(crate) socket_path: PathBuf,
    _socket_dir: tempfile::TempDir,
    /// The `MemStore` behind the server (a fresh, unused one when it serves SQLite).
    pub(crate) store: Arc<MemStore>,
    /// The store the server writes to.
    pub(crate) served_store: Arc<dyn Store>,
    /// The temp directory of a SQLite database, removed on drop.
    _database: Option<tempfile::TempDir>,
    pub(crate) state: AppState,
    shutdown: Option<oneshot::Sender<()>>,
    handle: Option<JoinHandle<std::io::Result<()>>>,
}

impl TestServer {
    /// Serves the contract secrets, short limits for tests, and whatever `configure` sets.
    pub(crate) async fn start(configure: impl FnOnce(&mut AppState)) -> TestServer {
        let store = Arc::new(MemStore::new());
        TestServer::start_with(store.clone(), store, None, configure).await
    }

    /// The same over a `SqliteStore` in a fresh temp-file database.
    pub(crate) async fn start_on_sqlite(configure: impl FnOnce(&mut AppState)) -> TestServer {
        let database = tempfile::tempdir().expect("temp dir");
        let path = database.path().join("orch.db");
        let sqlite = tokio::task::spawn_blocking(move || orch_sqlite::SqliteStore::open(path))
            .await
            .expect("open task")
            .expect("open and migrate the database");
        TestServer::start_with(
            Arc::new(sqlite),
            Arc::new(MemStore::new()),
            Some(database),
            configure,
        )
        .await
    }

    async fn start_with(
        served_store: Arc<dyn Store>,
        store: Arc<MemStore>,
        database: Option<tempfile::TempDir>,
        configure: impl FnOnce(&mut AppState),
    ) -> TestServer {
        let mut state = AppState::new(
            served_store.clone(),
            Arc::new(FakeClock::new()),
            webhook_events(),
        );
        state.plane_secrets = WebhookSecrets::from_strings(&[PLANE_SECRET]);
        state.gitea_secrets = WebhookSecrets::from_strings(&[GITEA_SECRET]);
        state.limits = Limits {
            header_read_timeout: Duration::from_millis(300),
            body_read_timeout: Duration::from_millis(500),
            ..Limits::default()
        };
        configure(&mut state);
        let listener = TcpListener::bind(("127.0.0.1", 0))
            .await
            .expect("bind loopback");
        let addr = listener.local_addr().expect("bound address");
        let socket_dir = tempfile::tempdir().expect("temp dir");
        let socket_path = socket_dir.path().join("orch.db.sock");
        let admin_socket = AdminSocket::bind(&socket_path).expect("bind the admin socket");
        let (shutdown, stopped) = oneshot::channel::<()>();
        let served = state.clone();
        let listeners = Listeners {
            tcp: listener,
            admin_socket: Some(admin_socket),
        };
        let handle = tokio::spawn(orch_http::serve(listeners, served, async move {
            let _ = stopped.await;
        }));
        TestServer {
            addr,
            socket_path,
            _socket_dir: socket_dir,
            store,
            served_store,
            _database: database,
            state,
            shutdown: Some(shutdown),
            handle: Some(handle),
        }
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Asks the server to stop and waits for `serve` to return.
    pub(crate) async fn stop(mut self) -> std::io::Result<()> {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        let handle = self.handle.take().expect("stopped once");
        tokio::time::timeout(DEADLINE, handle)
            .await
            .expect("serve returns after shutdown")
            .expect("serve task")
    }

    /// Every stored delivery that is not processed yet, oldest first.
    pub(crate) async fn stored(&self) -> Vec<Delivery> {
        self.served_store
            .inbox_pending(u32::MAX)
            .await
            .expect("store reads")
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
    }
}

/// An HTTP answer with its whole body.
#[derive(Debug)]
pub(crate) struct Reply {
    pub(crate) status: u16,
    pub(crate) headers: hyper::HeaderMap,
    pub(crate) body: Bytes,
}

impl Reply {
    pub(crate) fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|err| {
            panic!(
                "reply is not JSON ({err}): {}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    pub(crate) fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// A hyper client with a connection pool, like a real sender.
#[derive(Clone)]
pub(crate) struct HttpClient {
    client: Client<HttpConnector, Full<Bytes>>,
}

impl HttpClient {
    pub(crate) fn new() -> HttpClient {
        HttpClient {
            client: Client::builder(TokioExecutor::new()).build_http(),
        }
    }

    pub(crate) async fn post(
        &self,
        url: &str,
        headers: &[(String, String)],
        body: impl Into<Bytes>,
    ) -> Reply {
        self.send("POST", url, headers, body.into()).await
    }

    pub(crate) async fn get(&self, url: &str, headers: &[(String, String)]) -> Reply {
        self.send("GET", url, headers, Bytes::new()).await
    }

    pub(crate) async fn send(
        &self,
        method: &str,
        url: &str,
        headers: &[(String, String)],
        body: Bytes,
    ) -> Reply {
        let mut request = hyper::Request::builder().method(method).uri(url);
        for (name, value) in headers {
            request = request.header(name.as_str(), value.as_str());
        }
        let request = request.body(Full::new(body)).expect("valid request");
        let response = tokio::time::timeout(DEADLINE, self.client.request(request))
            .await
            .expect("answer within the deadline")
            .expect("http request");
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let body = tokio::time::timeout(DEADLINE, response.into_body().collect())
            .await
            .expect("body within the deadline")
            .expect("response body")
            .to_bytes();
        Reply {
            status,
            headers,
            body,
        }
    }
}

/// A webhook sample of `contracts/`: its exact body and the headers it was sent with.
#[derive(Debug, Clone)]
pub(crate) struct Sample {
    pub(crate) name: String,
    pub(crate) path: &'static str,
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) body: Vec<u8>,
    pub(crate) event_type: String,
    pub(crate) delivery_header: &'static str,
}

impl Sample {
    /// The headers with one replaced (or added), compared case-insensitively.
    pub(crate) fn headers_with(&self, name: &str, value: &str) -> Vec<(String, String)> {
        let mut headers = self.headers_without(name);
        headers.push((name.to_owned(), value.to_owned()));
        headers
    }

    pub(crate) fn headers_without(&self, name: &str) -> Vec<(String, String)> {
        self.headers
            .iter()
            .filter(|(each, _)| !each.eq_ignore_ascii_case(name))
            .cloned()
            .collect()
    }
}

/// `contracts/` of the shared folder, or `$ORCH_CONTRACTS_DIR`.
pub(crate) fn contracts_dir() -> PathBuf {
    match std::env::var_os("ORCH_CONTRACTS_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/contracts"),
    }
}

fn read(path: PathBuf) -> Vec<u8> {
    std::fs::read(&path).unwrap_or_else(|err| panic!("reading {}: {err}", path.display()))
}

fn string_pairs(object: &serde_json::Value) -> Vec<(String, String)> {
    object
        .as_object()
        .expect("a headers object")
        .iter()
        .map(|(name, value)| {
            (
                name.clone(),
                value
                    .as_str()
                    .expect("header values are strings")
                    .to_owned(),
            )
        })
        .collect()
}

/// The Plane webhook samples (`*.body.json` with `*.headers.json`).
pub(crate) fn plane_samples() -> Vec<Sample> {
    let dir = contracts_dir().join("plane");
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap_or_else(|err| panic!("reading {}: {err}", dir.display()))
        .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
        .filter_map(|name| name.strip_suffix(".body.json").map(str::to_owned))
        .collect();
    names.sort();
    assert!(
        !names.is_empty(),
        "no plane webhook samples in {}",
        dir.display()
    );
    names
        .into_iter()
        .map(|name| {
            let body = read(dir.join(format!("{name}.body.json")));
            let headers: serde_json::Value =
                serde_json::from_slice(&read(dir.join(format!("{name}.headers.json"))))
                    .expect("headers json");
            let headers = string_pairs(&headers);
            let event_type = header_value(&headers, "X-Plane-Event");
            Sample {
                name,
                path: "/webhooks/plane",
                headers,
                body,
                event_type,
                delivery_header: "X-Plane-Delivery",
            }
        })
        .collect()
}

/// The Gitea webhook samples listed in `headers.json`.
pub(crate) fn gitea_samples() -> Vec<Sample> {
    let dir = contracts_dir().join("gitea");
    let index: serde_json::Value =
        serde_json::from_slice(&read(dir.join("headers.json"))).expect("headers.json");
    let files = index["files"].as_object().expect("headers.json has files");
    assert!(
        !files.is_empty(),
        "no gitea webhook samples in {}",
        dir.display()
    );
    files
        .iter()
        .map(|(file, headers)| {
            let headers = string_pairs(headers);
            let event_type = header_value(&headers, "X-Gitea-Event-Type");
            Sample {
                name: file.clone(),
                path: "/webhooks/gitea",
                headers,
                body: read(dir.join(file)),
                event_type,
                delivery_header: "X-Gitea-Delivery",
            }
        })
        .collect()
}

fn header_value(headers: &[(String, String)], name: &str) -> String {
    headers
        .iter()
        .find(|(each, _)| each.eq_ignore_ascii_case(name))
        .map(|(_, value)| value.clone())
        .unwrap_or_else(|| panic!("sample has no {name} header"))
}

/// Lowercase hex HMAC-SHA256, as Plane and Gitea sign.
pub(crate) fn sign(secret: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("any key length");
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

/// Lowercase hex HMAC-SHA1 (Gitea's `X-Hub-Signature`, never accepted by orch).
pub(crate) fn sign_sha1(secret: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<sha1::Sha1>::new_from_slice(secret.as_bytes()).expect("any key length");
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

/// Headers of a signed Plane `issue` delivery.
pub(crate) fn plane_headers(secret: &str, delivery: &str, body: &[u8]) -> Vec<(String, String)> {
    vec![
        ("Content-Type".to_owned(), "application/json".to_owned()),
        ("X-Plane-Event".to_owned(), "issue".to_owned()),
        ("X-Plane-Delivery".to_owned(), delivery.to_owned()),
        ("X-Plane-Signature".to_owned(), sign(secret, body)),
    ]
}

/// Headers of a signed Gitea `push` delivery, signed in `X-Gitea-Signature` only.
pub(crate) fn gitea_headers(secret: &str, delivery: &str, body: &[u8]) -> Vec<(String, String)> {
    vec![
        ("Content-Type".to_owned(), "application/json".to_owned()),
        ("X-Gitea-Event".to_owned(), "push".to_owned()),
        ("X-Gitea-Event-Type".to_owned(), "push".to_owned()),
        ("X-Gitea-Delivery".to_owned(), delivery.to_owned()),
        ("X-Gitea-Signature".to_owned(), sign(secret, body)),
    ]
}

/// Sends one request over the admin socket at `socket`, as the CLI does.
pub(crate) async fn over_socket(
    socket: &Path,
    method: &str,
    path: &str,
    headers: &[(String, String)],
) -> Reply {
    let exchange = async {
        let stream = UnixStream::connect(socket)
            .await
            .expect("connect to the admin socket");
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .expect("http handshake");
        tokio::spawn(connection);
        let mut request = hyper::Request::builder()
            .method(method)
            .uri(path)
            .header("Host", "localhost");
        for (name, value) in headers {
            request = request.header(name.as_str(), value.as_str());
        }
        let request = request
            .body(Full::new(Bytes::new()))
            .expect("valid request");
        let response = sender.send_request(request).await.expect("http request");
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let body = response
            .into_body()
            .collect()
            .await
            .expect("response body")
            .to_bytes();
        Reply {
            status,
            headers,
            body,
        }
    };
    tokio::time::timeout(DEADLINE, exchange)
        .await
        .expect("answer over the admin socket within the deadline")
}

impl TestServer {
    /// `GET path` over the admin socket.
    pub(crate) async fn local_get(&self, path: &str) -> Reply {
        over_socket(&self.socket_path, "GET", path, &[]).await
    }

    /// `POST path` (empty body) over the admin socket.
    pub(crate) async fn local_post(&self, path: &str) -> Reply {
        over_socket(&self.socket_path, "POST", path, &[]).await
    }
}

/// `Authorization: Bearer token`.
pub(crate) fn bearer(token: &str) -> Vec<(String, String)> {
    vec![("Authorization".to_owned(), format!("Bearer {token}"))]
}

/// Whether slow tests run (`RUN_SLOW_TESTS` is set).
pub(crate) fn run_slow_tests() -> bool {
    std::env::var_os("RUN_SLOW_TESTS").is_some()
}
