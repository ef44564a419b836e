//! The ports: one trait per outside system, each with its error enum next to it.
//!
//! Every port is an `async` trait (see `docs/adr/0001-async-ports.md`), `Send + Sync` and
//! dyn-compatible. Adapters classify failures into the named variants; the core decides what
//! to do about them.

mod agent;
mod clock;
mod error;
mod forge;
mod notifier;
mod store;
mod tracker;
mod workspace;

pub use agent::{AgentError, AgentOutcome, AgentRequest, AgentRunner, CancelHandle, RunningAgent};
pub use clock::Clock;
pub use error::{ErrorClass, UNTRUSTED_CERTIFICATE_HINT};
pub use forge::{
    CombinedStatus, Forge, ForgeError, NewPullRequest, PrState, PullRequest, StatusCheck,
};
pub use notifier::{fit_text, Notifier, NotifyError, Subject, CUT_MARK};
pub use store::{
    ClaimKinds, ClaimRequest, Created, Delivery, InboxInsert, InboxOutcome, InboxStats,
    NewDelivery, PruneRequest, Pruned, QueueSnapshot, ReconcileRun, ReconcileStats, RunningJobInfo,
    ServiceWait, Source, Store, StoreError, Transition, Unblocked, Via,
};
pub use tracker::{
    Comment, ProjectStates, StateNames, Tracker, TrackerError, WorkItem, WorkItemPage,
};
pub use workspace::{
    MountAccess, PreparedWorktree, SandboxMount, Workspace, WorkspaceError, WorktreeSpec,
};

use std::sync::Arc;

/// Every port, as the services hold them.
#[derive(Clone)]
pub struct Ports {
    pub store: Arc<dyn Store>,
    pub tracker: Arc<dyn Tracker>,
    pub forge: Arc<dyn Forge>,
    pub workspace: Arc<dyn Workspace>,
    pub agents: Arc<dyn AgentRunner>,
    pub notifier: Arc<dyn Notifier>,
    pub clock: Arc<dyn Clock>,
}
