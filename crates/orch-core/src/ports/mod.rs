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
pub use error::ErrorClass;
pub use forge::{
    CombinedStatus, Forge, ForgeError, NewPullRequest, PrState, PullRequest, StatusCheck,
};
pub use notifier::{NotifyError, Notifier};
pub use store::{
    ClaimKinds, ClaimRequest, Created, Delivery, InboxInsert, InboxStats, NewDelivery,
    QueueSnapshot, ReconcileRun, ReconcileStats, RunningJobInfo, Source, Store, StoreError,
    Transition, Unblocked, Via,
};
pub use tracker::{
    Comment, ProjectStates, StateNames, Tracker, TrackerError, WorkItem, WorkItemPage,
};
pub use workspace::{PreparedWorktree, Workspace, WorkspaceError, WorktreeSpec};
