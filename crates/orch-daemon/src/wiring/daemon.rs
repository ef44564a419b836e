//! The running daemon: `Daemon::start` builds the adapters, takes the single-writer lock,
//! binds the admin socket and starts the runtime and the HTTP server; `shutdown` stops them
//! in order; `run` serves until asked to stop.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tracing::{info, warn};

use orch_core::ids::{BootId, UserId};
use orch_core::ports::{Ports, Tracker};
use orch_http::{
    AppState, Metrics, Readiness, ReconcileSettings as HttpReconcile, ReconcileSwitches,
    WebhookSecrets,
};
use orch_sqlite::SqliteStore;

use crate::config::Config;
use crate::retention::RetentionSettings;
use crate::runtime::{Observer, ReconcileSettings, Runtime, RuntimeParts, RuntimeSettings};
use crate::wiring::adapters::{
    agent_scratch_dir, board_settings, build_adapters, delivery_parser, spawn_api_stats,
    webhook_events, Adapters,
};
use crate::wiring::observer::DaemonObserver;
use crate::wiring::{admin_socket_path, data_dir, RunError};

/// A fresh boot id: the process id and the start time.
pub fn new_boot_id() -> BootId {
    let millis = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_millis());
    BootId::new(format!("boot-{}-{millis}", std::process::id()))
        .expect("digits and dashes form a valid id")
}

/// Adjusts the runtime settings derived from the config.
pub type TuneSettings = Box<dyn FnOnce(&mut RuntimeSettings) + Send>;

/// Replaces some of the ports built from the config.
pub type ReplacePorts = Box<dyn FnOnce(Ports) -> Ports + Send>;

/// Options a caller (tests, the demo) may set; the defaults are the production ones.
#[derive(Default)]
pub struct DaemonOptions {
    /// Serve on this listener instead of binding `server.listen`.
    pub listener: Option<TcpListener>,
    /// Extra observer of transitions and passes (the demo prints progress with it).
    pub observer: Option<Arc<dyn Observer>>,
    /// Adjusts the runtime settings derived from the config.
    pub tune: Option<TuneSettings>,
    /// Replaces adapters built from the config (the demo and tests swap in simulators).
    pub ports: Option<ReplacePorts>,
}

/// The adapters and config a reload replaces.
pub(super) struct Live {
    pub(super) config: Config,
    pub(super) adapters: Adapters,
    pub(super) own_user: Option<UserId>,
    pub(super) api_stats: JoinHandle<()>,
}

/// A running daemon: the HTTP server and the runtime.
pub struct Daemon {
    addr: SocketAddr,
    /// The config the daemon started with, to name what a reload cannot change.
    pub(super) started_with: Config,
    /// What a reload replaces; never locked across an `.await`.
    pub(super) live: std::sync::Mutex<Live>,
    pub(super) metrics: Metrics,
    pub(super) plane_secrets: WebhookSecrets,
    pub(super) gitea_secrets: WebhookSecrets,
    pub(super) admin_token: Option<String>,
    pub(super) runtime: Runtime,
    http_stop: oneshot::Sender<()>,
    http: JoinHandle<std::io::Result<()>>,
    /// The start's background fetch of every project's mirror (`warm_mirrors`).
    warm_up: JoinHandle<()>,
    readiness: Readiness,
    pub(super) store: Arc<SqliteStore>,
}

impl Daemon {
    /// Takes the single-writer lock, migrates, builds the adapters, reclaims earlier boots'
    /// work, and starts serving.
    pub async fn start(config: &Config, options: DaemonOptions) -> Result<Daemon, RunError> {
        let data = data_dir(config);
        std::fs::create_dir_all(&data).map_err(|source| RunError::DataDir {
            path: data.clone(),
            source,
        })?;
        let store = Arc::new(SqliteStore::open_exclusive(&config.storage.db_path)?);
        // With the database lock held, a socket file left at the path is stale.
        let admin_socket =
            orch_http::AdminSocket::bind(admin_socket_path(&config.storage.db_path))?;
        // With the lock held no other daemon runs agents of this data directory: any left are
        // an earlier boot's, including one it spawned and died before recording (issue 14).
        match orch_agent::reap_instance(&agent_scratch_dir(&data)) {
            Ok(killed) if !killed.is_empty() => {
                info!(pids = ?killed, "killed agents an earlier boot left running");
            }
            Ok(_) => {}
            Err(err) => warn!(error = %err, "looking for agents of an earlier boot failed"),
        }
        let adapters = build_adapters(config, store.clone())?;
        // Agents are untrusted: with the sandbox configured, orch does not start without one.
        orch_agent::check_sandbox(&config.agents.sandbox())
            .await
            .map_err(RunError::Sandbox)?;
        let mut ports = adapters.ports.clone();
        let mut reconciler_tracker: Option<Arc<dyn Tracker>> =
            Some(Arc::new(adapters.plane.half_budget_share()));
        if let Some(replace) = options.ports {
            ports = replace(ports);
            reconciler_tracker = None;
        }
        let own_user = own_user(ports.tracker.as_ref()).await;
        let own_user_now = own_user.clone();

        let readiness = Readiness::default();
        readiness.set_migrations_applied(true);
        // A full disk or a read-only database makes orch unready until writes succeed again.
        let health = store.health();
        readiness.set_storage_check(move || health.fault());
        let metrics = Metrics::new();
        let switches = ReconcileSwitches::new(HttpReconcile {
            enabled: config.reconcile.enabled,
            plane_enabled: config.reconcile.plane_enabled,
            interval: config.reconcile.interval,
        });

        let mut settings = RuntimeSettings::new(new_boot_id());
        settings.agent_concurrency = usize::try_from(config.worker.concurrency).unwrap_or(1);
        settings.per_repo_concurrency = config.worker.per_repo_concurrency;
        settings.reconcile = ReconcileSettings {
            enabled: config.reconcile.enabled,
            plane_enabled: config.reconcile.plane_enabled,
            interval: config.reconcile.interval,
        };
        settings.retention = config.retention.enabled.then(|| RetentionSettings {
            interval: config.retention.interval,
            deliveries: config.retention.deliveries,
            jobs: config.retention.jobs,
            history: config.retention.history,
            agent_logs: config.retention.agent_logs,
            logs_dir: Some(data.join("logs")),
        });
        if let Some(tune) = options.tune {
            tune(&mut settings);
        }
        let observer = Arc::new(DaemonObserver {
            metrics: metrics.clone(),
            readiness: readiness.clone(),
            extra: options.observer,
        });
        let runtime = Runtime::start(RuntimeParts {
            ports: ports.clone(),
            reconciler_tracker,
            config: config.pipeline(),
            own_user,
            parser: delivery_parser(),
            reaper: Arc::new(|records| {
                let report = orch_agent::reap_orphans(records);
                info!(report = ?report, "reaped agents of an earlier boot");
            }),
            observer,
            settings,
        })
        .await?;

        let warm_up = warm_mirrors(&ports, config);

        let listener = match options.listener {
            Some(listener) => listener,
            None => TcpListener::bind(config.server.listen)
                .await
                .map_err(|source| RunError::Listen {
                    addr: config.server.listen,
                    source,
                })?,
        };
        let addr = listener.local_addr().map_err(|source| RunError::Listen {
            addr: config.server.listen,
            source,
        })?;
        let mut state = AppState::new(store.clone(), ports.clock.clone(), webhook_events());
        state.plane_secrets =
            WebhookSecrets::from_strings(&expose_all(&config.plane.webhook_secrets));
        state.gitea_secrets =
            WebhookSecrets::from_strings(&expose_all(&config.gitea.webhook_secrets));
        let (plane_secrets, gitea_secrets) =
            (state.plane_secrets.clone(), state.gitea_secrets.clone());
        let admin_token = config
            .server
            .admin_token
            .as_ref()
            .map(|token| token.expose().to_owned());
        state.max_body_bytes = usize::try_from(config.server.max_body_bytes).unwrap_or(usize::MAX);
        state.admin_token = config.server.admin_token.clone();
        state.readiness = readiness.clone();
        state.reconcile = switches;
        state.board = board_settings(config);
        let api_stats = spawn_api_stats(&adapters, config, metrics.clone());
        let metrics_handle = metrics.clone();
        state.metrics = metrics;
        state.wake = Some(runtime.inbox_wake());
        state.admin = Some(runtime.sink());
        let (http_stop, stopped) = oneshot::channel::<()>();
        let socket_path = admin_socket.path().to_path_buf();
        let listeners = orch_http::Listeners {
            tcp: listener,
            admin_socket: Some(admin_socket),
        };
        let http = tokio::spawn(orch_http::serve(listeners, state, async move {
            let _ = stopped.await;
        }));
        info!(addr = %addr, admin_socket = %socket_path.display(), "orch is serving");
        Ok(Daemon {
            addr,
            started_with: config.clone(),
            live: std::sync::Mutex::new(Live {
                config: config.clone(),
                adapters,
                own_user: own_user_now,
                api_stats,
            }),
            metrics: metrics_handle,
            plane_secrets,
            gitea_secrets,
            admin_token,
            runtime,
            http_stop,
            http,
            warm_up,
            readiness,
            store,
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn store(&self) -> Arc<SqliteStore> {
        self.store.clone()
    }

    /// The way into the serial loop (admin commands).
    pub fn sink(&self) -> Arc<dyn orch_core::orchestrator::EventSink> {
        self.runtime.sink()
    }

    /// Stops intake first, then the runtime (agents get their grace), then records a clean
    /// shutdown.
    pub async fn shutdown(self) {
        self.readiness.set_stopping();
        let _ = self.http_stop.send(());
        match self.http.await {
            Ok(Ok(())) => {}
            Ok(Err(err)) => warn!(error = %err, "http server ended with an error"),
            Err(err) => warn!(error = %err, "http server task failed"),
        }
        self.warm_up.abort();
        self.runtime.shutdown().await;
        self.live
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .api_stats
            .abort();
    }
}

/// Fetches every project's repository into its mirror in the background, one after another:
/// the first dispatches after a start then find their mirror fetched since the start and
/// prepare without the network (orch-git `Freshness`); one that comes sooner waits for this
/// fetch instead of starting its own.
fn warm_mirrors(ports: &Ports, config: &Config) -> JoinHandle<()> {
    let workspace = ports.workspace.clone();
    let mut repos: Vec<_> = config
        .projects
        .iter()
        .map(|project| project.repo.clone())
        .collect();
    // Projects sharing a repository need one fetch, wherever they stand in the config.
    repos.sort_unstable();
    repos.dedup();
    tokio::spawn(async move {
        for repo in repos {
            if let Err(err) = workspace.refresh(&repo).await {
                warn!(repo = %repo, error = %err, "fetching a mirror at start failed; the first dispatch fetches");
            }
        }
    })
}

/// Runs the daemon until `shutdown` resolves.
pub async fn run(config: &Config, shutdown: impl Future<Output = ()>) -> Result<(), RunError> {
    let daemon = Daemon::start(config, DaemonOptions::default()).await?;
    shutdown.await;
    info!("shutting down");
    daemon.shutdown().await;
    Ok(())
}

/// How long start-up waits for Plane's `users/me` (webhooks queue in the backlog meanwhile).
const OWN_USER_DEADLINE: Duration = Duration::from_secs(5);

/// orch's own Plane user; its changes are ignored. Plane being down at boot is not fatal:
/// handlers are idempotent, so orch's own moves are then handled like anyone's, harmlessly.
pub(super) async fn own_user(tracker: &dyn Tracker) -> Option<UserId> {
    match tokio::time::timeout(OWN_USER_DEADLINE, tracker.me()).await {
        Ok(Ok(user)) => Some(user),
        Ok(Err(err)) => {
            warn!(error = %err, "orch's own plane user is unknown; its own changes will be handled like anyone's");
            None
        }
        Err(_) => {
            warn!("plane did not answer users/me in time; orch's own changes will be handled like anyone's");
            None
        }
    }
}

pub(super) fn expose_all(secrets: &[orch_core::secret::Secret]) -> Vec<String> {
    secrets
        .iter()
        .map(|secret| secret.expose().to_owned())
        .collect()
}
