//! `AppState`: what the server needs from the daemon, with the handles the daemon keeps updating.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;

use orch_core::links::WebLinks;
use orch_core::orchestrator::EventSink;
use orch_core::ports::{Clock, Store};
use tokio::sync::Notify;

use crate::metrics::Metrics;

/// Everything the server reads. Cheap to clone: every field is shared.
#[derive(Clone)]
pub struct AppState {
    pub store: Arc<dyn Store>,
    pub clock: Arc<dyn Clock>,
    /// `plane.webhook_secrets`: a delivery signed with any of them is accepted.
    pub plane_secrets: WebhookSecrets,
    /// `gitea.webhook_secrets`: a delivery signed with any of them is accepted.
    pub gitea_secrets: WebhookSecrets,
    /// The event types stored for each source's parser; the others are answered `ignored`.
    pub webhook_events: WebhookEvents,
    /// `server.max_body_bytes`: a longer webhook body is refused with 413 and not read further.
    pub max_body_bytes: usize,
    /// `server.admin_token`: over TCP, `/queue` and `/api/*` need
    /// `Authorization: Bearer <token>` and are refused without one set; `/metrics` needs it
    /// when it is set. The admin socket needs no token.
    pub admin_token: Option<Secret>,
    pub readiness: Readiness,
    pub reconcile: ReconcileSwitches,
    pub metrics: Metrics,
    /// Woken (`notify_one`) after each delivery committed as `queued`.
    pub wake: Option<Arc<Notify>>,
    /// The way into the daemon's serial event loop for `POST /api/tasks/{id}/retry|cancel`;
    /// without it those routes answer 503.
    pub admin: Option<Arc<dyn EventSink>>,
    pub limits: Limits,
    /// Where the board's links point and where it reads agent logs from.
    pub board: BoardSettings,
}

impl AppState {
    /// A state with no secrets (every webhook is refused until some are set), a 1 MiB body
    /// cap, no admin token, no event loop for admin commands, nothing ready, reconcile
    /// switches off and default limits.
    pub fn new(
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        webhook_events: WebhookEvents,
    ) -> AppState {
        AppState {
            store,
            clock,
            plane_secrets: WebhookSecrets::default(),
            gitea_secrets: WebhookSecrets::default(),
            webhook_events,
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            admin_token: None,
            readiness: Readiness::default(),
            reconcile: ReconcileSwitches::default(),
            metrics: Metrics::new(),
            wake: None,
            admin: None,
            limits: Limits::default(),
            board: BoardSettings::default(),
        }
    }
}

impl fmt::Debug for AppState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AppState")
            .field("plane_secrets", &self.plane_secrets)
            .field("gitea_secrets", &self.gitea_secrets)
            .field("webhook_events", &self.webhook_events)
            .field("max_body_bytes", &self.max_body_bytes)
            .field("admin_token", &self.admin_token)
            .field("readiness", &self.readiness)
            .field("reconcile", &self.reconcile.get())
            .field("admin", &self.admin.is_some())
            .field("limits", &self.limits)
            .field("board", &self.board)
            .finish_non_exhaustive()
    }
}

/// The webhook event types the ingress stores, per source. Each list belongs to that source's
/// parser (`orch_plane::webhook::WEBHOOK_EVENTS`, `orch_gitea::webhook::WEBHOOK_EVENTS`),
/// which orch-http does not depend on: the daemon passes them in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WebhookEvents {
    /// `X-Plane-Event` values.
    pub plane: &'static [&'static str],
    /// `X-Gitea-Event-Type` (or, from very old Gitea, `X-Gitea-Event`) values.
    pub gitea: &'static [&'static str],
}

/// What the board (`/`, `/tasks/{id}`) needs besides the store: the web addresses of Plane
/// and Gitea for its links, and the agents' log directory for the log tails. Without them
/// the board shows the same facts without links or logs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BoardSettings {
    /// Plane's and Gitea's web addresses (`plane.base_url`, `plane.workspace_slug`,
    /// `gitea.base_url`).
    pub links: Option<WebLinks>,
    /// `{data}/logs`: an agent run's log is `{logs_dir}/{work item}/{job}-{agent}.log`.
    pub logs_dir: Option<PathBuf>,
}

/// `server.max_body_bytes`'s default, 1 MiB.
pub const DEFAULT_MAX_BODY_BYTES: usize = 1024 * 1024;

/// Timeouts and bounds of the server itself (SPEC §5.3, reliability anchor S2). They are not
/// configuration keys: the defaults are the contract, and tests shorten them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// A request head (line and headers) must arrive within this time of the connection
    /// becoming ready for it; the connection is closed otherwise. The wait for the next
    /// request on a kept-alive connection counts too, so this is also the idle keep-alive
    /// timeout.
    pub header_read_timeout: Duration,
    /// A request body must arrive in full within this time of its head; 408 otherwise.
    pub body_read_timeout: Duration,
    /// An answer that cannot be handed to the kernel within this time of its first blocked
    /// write (the client does not read) closes the connection.
    pub write_timeout: Duration,
    /// A connection is asked to close after its current answer once it is this old, and is
    /// dropped `write_timeout` later if it has not.
    pub max_connection_age: Duration,
    /// TCP connections served at once. When the table is full, a new connection takes the
    /// place of the one that has been stalled (blocked writing) or idle the longest; only when
    /// every connection is busy handling a request does it wait in the listen backlog.
    pub max_connections: usize,
    /// TCP connections one peer address may hold at once. When a peer reaches it, its own
    /// most stalled or idle connection makes room, and a new connection is refused only when
    /// all of the peer's connections are busy handling requests. Behind a reverse proxy every
    /// connection has the proxy's address, so this is then the whole server's effective cap.
    pub max_connections_per_peer: usize,
    /// How long `serve` lets open requests finish after the shutdown future completes.
    pub shutdown_grace: Duration,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            header_read_timeout: Duration::from_secs(5),
            body_read_timeout: Duration::from_secs(10),
            write_timeout: Duration::from_secs(10),
            max_connection_age: Duration::from_secs(120),
            max_connections: 256,
            max_connections_per_peer: 128,
            shutdown_grace: Duration::from_secs(5),
        }
    }
}

/// A secret string; its `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// The webhook secrets of one source. Several at once support rotation; `replace` swaps
/// them at run time (configuration reload) for every clone of the handle.
#[derive(Clone, Default)]
pub struct WebhookSecrets {
    current: Arc<RwLock<Arc<[Secret]>>>,
}

impl WebhookSecrets {
    pub fn new(secrets: Vec<Secret>) -> WebhookSecrets {
        WebhookSecrets {
            current: Arc::new(RwLock::new(secrets.into())),
        }
    }

    /// Secrets from plain strings; empty strings are dropped (they would sign nothing).
    pub fn from_strings<S: AsRef<str>>(secrets: &[S]) -> WebhookSecrets {
        WebhookSecrets::new(Self::non_empty(secrets))
    }

    pub fn replace<S: AsRef<str>>(&self, secrets: &[S]) {
        let secrets: Arc<[Secret]> = Self::non_empty(secrets).into();
        *self.current.write().unwrap_or_else(PoisonError::into_inner) = secrets;
    }

    pub fn len(&self) -> usize {
        self.snapshot().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub(crate) fn snapshot(&self) -> Arc<[Secret]> {
        self.current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn non_empty<S: AsRef<str>>(secrets: &[S]) -> Vec<Secret> {
        secrets
            .iter()
            .map(AsRef::as_ref)
            .filter(|secret| !secret.is_empty())
            .map(Secret::new)
            .collect()
    }
}

impl fmt::Debug for WebhookSecrets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebhookSecrets")
            .field("count", &self.len())
            .finish_non_exhaustive()
    }
}

/// The state of one of the daemon's loops, as `/readyz` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoopState {
    /// Configured to run, and running.
    Running,
    /// Configured not to run (a kill switch such as `reconcile.enabled = false`): it never
    /// makes orch unready.
    Disabled,
    /// Configured to run, but it ended (a panic, or the runtime stopping).
    Stopped,
}

impl LoopState {
    pub fn as_str(self) -> &'static str {
        match self {
            LoopState::Running => "running",
            LoopState::Disabled => "disabled",
            LoopState::Stopped => "stopped",
        }
    }
}

/// What `/readyz` answers from, set by the daemon: ready when migrations are applied, the
/// daemon is not stopping, every loop it reported is running or disabled, and the storage
/// check (if set) reports no fault.
#[derive(Debug, Clone, Default)]
pub struct Readiness {
    migrations_applied: Arc<AtomicBool>,
    stopping: Arc<AtomicBool>,
    loops: Arc<Mutex<BTreeMap<&'static str, LoopState>>>,
    storage: Arc<RwLock<Option<StorageCheck>>>,
}

/// Says the storage fault that stops writes now (a full disk, a read-only database), if any.
#[derive(Clone)]
struct StorageCheck(Arc<dyn Fn() -> Option<String> + Send + Sync>);

impl fmt::Debug for StorageCheck {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("StorageCheck")
    }
}

impl Readiness {
    pub fn set_migrations_applied(&self, value: bool) {
        self.migrations_applied.store(value, Ordering::Release);
    }

    /// Records the state of the loop `name`; a loop never reported does not count.
    pub fn set_loop(&self, name: &'static str, state: LoopState) {
        self.loops
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(name, state);
    }

    /// How to tell whether the database can be written; while `check` returns a fault,
    /// orch is not ready.
    pub fn set_storage_check(&self, check: impl Fn() -> Option<String> + Send + Sync + 'static) {
        *self.storage.write().unwrap_or_else(PoisonError::into_inner) =
            Some(StorageCheck(Arc::new(check)));
    }

    /// The storage fault that stops writes now, if the check says so.
    pub fn storage_fault(&self) -> Option<String> {
        let check = self
            .storage
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        check.and_then(|check| (check.0)())
    }

    /// The daemon is shutting down: not ready from now on.
    pub fn set_stopping(&self) {
        self.stopping.store(true, Ordering::Release);
    }

    pub fn migrations_applied(&self) -> bool {
        self.migrations_applied.load(Ordering::Acquire)
    }

    /// Every reported loop with its state, by name.
    pub fn loops(&self) -> Vec<(&'static str, LoopState)> {
        self.loops
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .map(|(name, state)| (*name, *state))
            .collect()
    }

    pub fn is_ready(&self) -> bool {
        let loops = self.loops();
        self.migrations_applied()
            && !self.stopping.load(Ordering::Acquire)
            && !loops.is_empty()
            && loops.iter().all(|(_, state)| *state != LoopState::Stopped)
            && self.storage_fault().is_none()
    }
}

/// The `[reconcile]` switches shown in `/queue`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReconcileSettings {
    pub enabled: bool,
    pub plane_enabled: bool,
    pub interval: Duration,
}

impl Default for ReconcileSettings {
    fn default() -> ReconcileSettings {
        ReconcileSettings {
            enabled: false,
            plane_enabled: false,
            interval: Duration::from_secs(60),
        }
    }
}

/// A shared, replaceable `ReconcileSettings` (the daemon updates it on reload).
#[derive(Debug, Clone, Default)]
pub struct ReconcileSwitches {
    current: Arc<RwLock<ReconcileSettings>>,
}

impl ReconcileSwitches {
    pub fn new(settings: ReconcileSettings) -> ReconcileSwitches {
        ReconcileSwitches {
            current: Arc::new(RwLock::new(settings)),
        }
    }

    pub fn set(&self, settings: ReconcileSettings) {
        *self.current.write().unwrap_or_else(PoisonError::into_inner) = settings;
    }

    pub fn get(&self) -> ReconcileSettings {
        *self.current.read().unwrap_or_else(PoisonError::into_inner)
    }
}
