//! Wiring: real adapters built from the `Config`, the HTTP server and the runtime started
//! together as one `Daemon`.

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tracing::{info, warn};

use orch_core::domain::{Agent, JobKind};
use orch_core::event::Parsed;
use orch_core::ids::{BootId, UserId};
use orch_core::links::WebLinks;
use orch_core::orchestrator::Handled;
use orch_core::ports::{AgentOutcome, Clock, Notifier, NotifyError, Ports, Source, Store, Tracker};
use orch_core::reconciler::PassReport;
use orch_core::time::Timestamp;
use orch_http::{
    AppState, JobOutcome, LoopState, Metrics, Readiness, ReconcileSettings as HttpReconcile,
    ReconcileSwitches, WebhookEvents, WebhookSecrets,
};
use orch_sqlite::{OpenError, SqliteStore};

use crate::config::Config;
use crate::retention::RetentionSettings;
use crate::runtime::{
    DeliveryParser, Loop, Observer, ReconcileSettings, Reconfiguration, Runtime, RuntimeParts,
    RuntimeSettings, StartError,
};

/// Why the daemon could not start.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Store(#[from] OpenError),
    #[error("cannot listen on {addr}")]
    Listen {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot create the data directory {path}")]
    DataDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("invalid adapter configuration: {0}")]
    Adapter(String),
    #[error(transparent)]
    Runtime(#[from] StartError),
    #[error(transparent)]
    AdminSocket(#[from] orch_http::AdminSocketError),
    #[error("agents.sandbox: {0}")]
    Sandbox(String),
}

/// The admin socket of the database at `db_path`, `{db_path}.sock`: the daemon serves its
/// API there to orch's own user (mode 0600), and the CLI sends `task retry|cancel` there.
pub fn admin_socket_path(db_path: &Path) -> PathBuf {
    let mut name = db_path.as_os_str().to_owned();
    name.push(".sock");
    PathBuf::from(name)
}

/// The wall clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        let millis = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |elapsed| elapsed.as_millis());
        Timestamp::from_millis(i64::try_from(millis).unwrap_or(i64::MAX))
    }
}

/// Notifications without Telegram: each one is an info log line.
#[derive(Debug, Default)]
pub struct LogNotifier;

#[async_trait]
impl Notifier for LogNotifier {
    async fn notify(&self, text: &str) -> Result<(), NotifyError> {
        info!(text = %text, "notification (no [telegram] section)");
        Ok(())
    }
}

/// How long a git mirror is trusted without a fetch when no webhook named its repository.
const MIRROR_MAX_AGE: Duration = Duration::from_secs(300);

/// The adapters' webhook parsers, by source.
pub fn delivery_parser() -> DeliveryParser {
    Arc::new(|source, event_type, body| -> Parsed {
        match source {
            Source::Plane => orch_plane::webhook::parse(event_type, body),
            Source::Gitea => orch_gitea::webhook::parse(event_type, body),
        }
    })
}

/// The webhook event types the ingress stores: those the parsers of `delivery_parser` read.
pub fn webhook_events() -> WebhookEvents {
    WebhookEvents {
        plane: orch_plane::webhook::WEBHOOK_EVENTS,
        gitea: orch_gitea::webhook::WEBHOOK_EVENTS,
    }
}

/// Where logs and agent scratch files go: next to the database.
pub fn data_dir(config: &Config) -> PathBuf {
    data_dir_of(&config.storage.db_path)
}

/// The data directory of the database at `db_path`: the database's directory.
pub fn data_dir_of(db_path: &Path) -> PathBuf {
    match db_path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// A fresh boot id: the process id and the start time.
pub fn new_boot_id() -> BootId {
    let millis = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_millis());
    BootId::new(format!("boot-{}-{millis}", std::process::id()))
        .expect("digits and dashes form a valid id")
}

/// Every port, plus the concrete adapters whose own counters and budgets the daemon uses.
#[derive(Clone)]
pub struct Adapters {
    pub ports: Ports,
    pub plane: Arc<orch_plane::PlaneTracker>,
    pub gitea: Arc<orch_gitea::GiteaForge>,
}

/// Builds every port from the config. The store is opened by the caller.
pub fn build_ports(config: &Config, store: Arc<dyn Store>) -> Result<Ports, RunError> {
    build_adapters(config, store).map(|adapters| adapters.ports)
}

/// Builds every adapter from the config. The store is opened by the caller.
pub fn build_adapters(config: &Config, store: Arc<dyn Store>) -> Result<Adapters, RunError> {
    let (tls, trust) = crate::tls::client_tls(&config.tls);
    tracing::debug!(
        system = trust.system,
        ca_file = trust.ca_file,
        built_in = trust.built_in,
        "trusted certificates"
    );
    let mut plane = orch_plane::PlaneConfig::new(
        config.plane.base_url.as_str(),
        config.plane.workspace_slug.clone(),
        config.plane.api_token.expose(),
    );
    plane.rate_limit_per_min = config.plane.rate_limit_per_min;
    plane.tls = tls.clone();
    let tracker = Arc::new(orch_plane::PlaneTracker::new(&plane));

    let mut gitea =
        orch_gitea::GiteaConfig::new(config.gitea.base_url.as_str(), config.gitea.token.expose());
    gitea.merge_style =
        orch_gitea::MergeStyle::parse(config.gitea.merge_style.as_str()).unwrap_or_default();
    gitea.tls = tls.clone();
    let forge = Arc::new(
        orch_gitea::GiteaForge::new(gitea).map_err(|err| RunError::Adapter(err.to_string()))?,
    );

    let mut git = orch_git::GitConfig::new(
        config.workspace.repos_dir.clone(),
        config.gitea.base_url.as_str(),
    );
    git.token = Some(config.gitea.token.expose().to_owned());
    git.ca_file = config
        .tls
        .ca_file
        .as_ref()
        .map(|ca_file| ca_file.path.clone());
    // Pushes and CI statuses refresh the mirror off the dispatch path; this bounds how long
    // a missed webhook can leave it behind.
    git.warm = Some(MIRROR_MAX_AGE);
    let workspace =
        orch_git::GitWorkspace::new(git).map_err(|err| RunError::Adapter(err.to_string()))?;

    let agents = agent_runner(config)?;

    let notifier: Arc<dyn Notifier> = match &config.telegram {
        Some(telegram) => {
            let mut settings = orch_telegram::TelegramConfig::new(
                telegram.bot_token.expose(),
                telegram.chat_id.clone(),
            );
            settings.api_base = telegram.api_base.as_str().to_owned();
            settings.tls = tls;
            Arc::new(orch_telegram::TelegramNotifier::new(&settings).with_links(web_links(config)))
        }
        None => Arc::new(LogNotifier),
    };
    let mut ports = Ports {
        store,
        tracker: tracker.clone(),
        forge: forge.clone(),
        workspace: Arc::new(workspace),
        agents: Arc::new(agents),
        notifier,
        clock: Arc::new(SystemClock),
    };
    crate::failpoint::wrap_ports(&mut ports);
    Ok(Adapters {
        ports,
        plane: tracker,
        gitea: forge,
    })
}

/// Where the board's links point (Plane's and Gitea's web addresses) and where it reads the
/// agents' logs.
pub fn board_settings(config: &Config) -> orch_http::BoardSettings {
    orch_http::BoardSettings {
        links: Some(web_links(config)),
        logs_dir: Some(data_dir(config).join("logs")),
    }
}

/// Plane's and Gitea's web addresses, for the board's links and those under notifications.
fn web_links(config: &Config) -> WebLinks {
    WebLinks {
        plane_base: config.plane.base_url.as_str().to_owned(),
        plane_workspace: config.plane.workspace_slug.clone(),
        gitea_base: config.gitea.base_url.as_str().to_owned(),
    }
}

/// The agent runner's scratch directory; agents carry it as `ORCH_INSTANCE`, by which boot
/// finds those an earlier boot left (`orch_agent::reap_instance`).
fn agent_scratch_dir(data: &Path) -> PathBuf {
    data.join("scratch")
}

/// The agent runner the config describes (SPEC §5.4): logs, scratch files and the agents'
/// private homes under the data directory; no sandbox ever shows the data directory, the
/// database or the repositories.
pub fn agent_runner(config: &Config) -> Result<orch_agent::ProcessAgentRunner, RunError> {
    let data = data_dir(config);
    let runner = orch_agent::RunnerConfig {
        roles: Agent::ALL
            .into_iter()
            .map(|agent| (agent, config.agent(agent).role_config()))
            .collect(),
        stall_timeout: config.worker.stall_timeout,
        kill_grace: orch_agent::DEFAULT_KILL_GRACE,
        logs_dir: data.join("logs"),
        scratch_dir: agent_scratch_dir(&data),
        homes_dir: data.join("homes"),
        sandbox: config.agents.sandbox(),
        protected_paths: vec![
            data,
            config.storage.db_path.clone(),
            config.workspace.repos_dir.clone(),
        ],
    };
    orch_agent::ProcessAgentRunner::new(runner).map_err(|errors| {
        RunError::Adapter(
            errors
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("; "),
        )
    })
}

/// The host of a base URL, for metric labels (`https://plane.example.com/x` → `plane.example.com`).
fn host_of(base_url: &str) -> String {
    let rest = base_url
        .split_once("://")
        .map_or(base_url, |(_, rest)| rest);
    rest.split('/').next().unwrap_or(rest).to_owned()
}

/// How often the adapters' call counters are copied into the metrics.
const STATS_EVERY: Duration = Duration::from_secs(5);

/// Copies the adapters' API call and 429 counters into `metrics`, labelled by host.
fn spawn_api_stats(adapters: &Adapters, config: &Config, metrics: Metrics) -> JoinHandle<()> {
    let (plane, gitea) = (adapters.plane.clone(), adapters.gitea.clone());
    let (plane_host, gitea_host) = (
        host_of(config.plane.base_url.as_str()),
        host_of(config.gitea.base_url.as_str()),
    );
    // Counting starts from what the adapters have counted so far, so a restarted copier
    // (after a reload that kept an adapter) never counts a call twice.
    let (first_plane, first_gitea) = (plane.stats(), gitea.stats());
    tokio::spawn(async move {
        let mut plane_seen = (first_plane.calls, first_plane.rate_limited);
        let mut gitea_seen = (first_gitea.calls, first_gitea.rate_limited);
        loop {
            let stats = plane.stats();
            metrics.add_api_calls(
                &plane_host,
                stats.calls - plane_seen.0,
                stats.rate_limited - plane_seen.1,
            );
            plane_seen = (stats.calls, stats.rate_limited);
            let stats = gitea.stats();
            metrics.add_api_calls(
                &gitea_host,
                stats.calls - gitea_seen.0,
                stats.rate_limited - gitea_seen.1,
            );
            gitea_seen = (stats.calls, stats.rate_limited);
            tokio::time::sleep(STATS_EVERY).await;
        }
    })
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
struct Live {
    config: Config,
    adapters: Adapters,
    own_user: Option<UserId>,
    api_stats: JoinHandle<()>,
}

/// A running daemon: the HTTP server and the runtime.
pub struct Daemon {
    addr: SocketAddr,
    /// The config the daemon started with, to name what a reload cannot change.
    started_with: Config,
    /// What a reload replaces; never locked across an `.await`.
    live: std::sync::Mutex<Live>,
    metrics: Metrics,
    plane_secrets: WebhookSecrets,
    gitea_secrets: WebhookSecrets,
    admin_token: Option<String>,
    runtime: Runtime,
    http_stop: oneshot::Sender<()>,
    http: JoinHandle<std::io::Result<()>>,
    readiness: Readiness,
    store: Arc<SqliteStore>,
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
        state.admin_token = config
            .server
            .admin_token
            .as_ref()
            .map(|token| orch_http::Secret::new(token.expose()));
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

    /// Applies a reloaded config (`SIGHUP`): webhook secrets at once (rotation without a
    /// restart); projects, agents, Plane, Gitea, Telegram, rounds and grace for the next
    /// event, job and reconcile pass. The listen address, the database, concurrency, the
    /// reconcile switches, retention and the admin token keep their start-up values until a
    /// restart, and each such change is named in the log.
    pub async fn reload(&self, config: &Config) -> Result<(), RunError> {
        let (previous, previous_user) = {
            let live = self
                .live
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            (
                (live.config.clone(), live.adapters.clone()),
                live.own_user.clone(),
            )
        };
        let (previous_config, previous_adapters) = previous;
        let mut adapters = build_adapters(config, self.store.clone())?;
        // Unchanged adapters are kept: one call budget for Plane, one lock per git mirror.
        if same_plane(&previous_config, config) {
            adapters.plane = previous_adapters.plane.clone();
            adapters.ports.tracker = previous_adapters.ports.tracker.clone();
        }
        if same_gitea(&previous_config, config) {
            adapters.gitea = previous_adapters.gitea.clone();
            adapters.ports.forge = previous_adapters.ports.forge.clone();
            if config.workspace.repos_dir == previous_config.workspace.repos_dir {
                adapters.ports.workspace = previous_adapters.ports.workspace.clone();
            }
        }
        let own_user = own_user(adapters.ports.tracker.as_ref())
            .await
            .or(previous_user);
        self.runtime.reconfigure(Reconfiguration {
            ports: adapters.ports.clone(),
            reconciler_tracker: Some(Arc::new(adapters.plane.half_budget_share())),
            config: config.pipeline(),
            own_user: own_user.clone(),
        });
        {
            let mut live = self
                .live
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            live.api_stats.abort();
            live.api_stats = spawn_api_stats(&adapters, config, self.metrics.clone());
            live.config = config.clone();
            live.adapters = adapters;
            live.own_user = own_user;
        }
        self.plane_secrets
            .replace(&expose_all(&config.plane.webhook_secrets));
        self.gitea_secrets
            .replace(&expose_all(&config.gitea.webhook_secrets));
        let started = &self.started_with;
        let token = config
            .server
            .admin_token
            .as_ref()
            .map(|token| token.expose().to_owned());
        let needs_restart = [
            (
                "server.listen",
                config.server.listen != started.server.listen,
            ),
            ("server.admin_token", token != self.admin_token),
            (
                "server.max_body_bytes",
                config.server.max_body_bytes != started.server.max_body_bytes,
            ),
            (
                "storage.db_path",
                config.storage.db_path != started.storage.db_path,
            ),
            (
                "worker.concurrency",
                config.worker.concurrency != started.worker.concurrency,
            ),
            (
                "worker.per_repo_concurrency",
                config.worker.per_repo_concurrency != started.worker.per_repo_concurrency,
            ),
            (
                "reconcile",
                config.reconcile.enabled != started.reconcile.enabled
                    || config.reconcile.plane_enabled != started.reconcile.plane_enabled
                    || config.reconcile.interval != started.reconcile.interval,
            ),
            ("retention", config.retention != started.retention),
        ];
        for (key, changed) in needs_restart {
            if changed {
                warn!(
                    key,
                    "changed in the reloaded config; it takes effect after a restart"
                );
            }
        }
        info!("config reloaded");
        Ok(())
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
        self.runtime.shutdown().await;
        self.live
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .api_stats
            .abort();
    }
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

/// Whether two configs build the same Plane adapter.
fn same_plane(a: &Config, b: &Config) -> bool {
    a.plane.base_url == b.plane.base_url
        && a.plane.workspace_slug == b.plane.workspace_slug
        && a.plane.api_token.expose() == b.plane.api_token.expose()
        && a.plane.rate_limit_per_min == b.plane.rate_limit_per_min
}

/// Whether two configs build the same Gitea adapters (forge and git workspace).
fn same_gitea(a: &Config, b: &Config) -> bool {
    a.gitea.base_url == b.gitea.base_url
        && a.gitea.token.expose() == b.gitea.token.expose()
        && a.gitea.merge_style == b.gitea.merge_style
}

/// orch's own Plane user; its changes are ignored. Plane being down at boot is not fatal:
/// handlers are idempotent, so orch's own moves are then handled like anyone's, harmlessly.
async fn own_user(tracker: &dyn Tracker) -> Option<UserId> {
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

fn expose_all(secrets: &[crate::config::Secret]) -> Vec<String> {
    secrets
        .iter()
        .map(|secret| secret.expose().to_owned())
        .collect()
}

/// Metrics and readiness from the runtime's observations.
struct DaemonObserver {
    metrics: Metrics,
    readiness: Readiness,
    extra: Option<Arc<dyn Observer>>,
}

impl Observer for DaemonObserver {
    fn job_ended(&self, kind: JobKind, outcome: JobOutcome) {
        self.metrics.count_job(kind, outcome);
        if let Some(extra) = &self.extra {
            extra.job_ended(kind, outcome);
        }
    }

    fn reconciled(&self, report: &PassReport) {
        self.metrics
            .count_reconcile_run(report.unblocked.len() as u64, report.errors.len() as u64);
        if report.errors.is_empty() {
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0.0, |elapsed| elapsed.as_secs_f64());
            self.metrics.set_reconcile_success(now);
        }
        if let Some(extra) = &self.extra {
            extra.reconciled(report);
        }
    }

    fn agent_ran(&self, agent: Agent, outcome: &AgentOutcome, elapsed: Duration) {
        self.metrics.observe_agent_run(agent, outcome, elapsed);
        if let Some(extra) = &self.extra {
            extra.agent_ran(agent, outcome, elapsed);
        }
    }

    fn transition(&self, handled: &Handled) {
        if let Some(extra) = &self.extra {
            extra.transition(handled);
        }
    }

    fn loop_changed(&self, which: Loop, state: LoopState) {
        self.readiness.set_loop(which.as_str(), state);
    }

    fn loop_alive(&self, which: Loop) {
        if let Some(extra) = &self.extra {
            extra.loop_alive(which);
        }
    }
}
