//! orch's domain: the delivery pipeline, its quality gates and reconciliation rules, and the
//! ports through which adapters give it the outside world.
//!
//! This crate decides; it does no I/O and uses no runtime. Time comes from the `Clock` port,
//! everything else from `Tracker` (Plane), `Forge` (Gitea), `Workspace` (git), `AgentRunner`,
//! `Notifier` and `Store`. Its main types are `Orchestrator` (the handlers of the serial event
//! loop), `Executor` (what one job does through the ports), `Reconciler` (F-1, F-2) and the
//! data tables `STAGE_TRANSITIONS` and `QG_CHECKS`. With feature `fakes`, `orch_core::fakes`
//! has behaving in-memory implementations of every port and the port contract suites.

#![forbid(unsafe_code)]

pub mod backoff;
pub mod config;
pub mod domain;
pub mod event;
pub mod executor;
pub mod failpoint;
pub mod ids;
pub mod links;
pub mod orchestrator;
pub mod pipeline;
pub mod ports;
pub mod reconciler;
pub mod retries;
pub mod secret;
pub mod time;

#[cfg(feature = "fakes")]
pub mod fakes;

pub use crate::executor::Executor;
pub use crate::orchestrator::{EventSink, HandleError, Handled, Orchestrator};
pub use crate::reconciler::{PassReport, ReconcileMode, Reconciler, TrackerSide};
