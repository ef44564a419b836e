//! orch's HTTP server: the webhook ingress and the status API, on hyper 1.
//!
//! The ingress verifies a delivery's HMAC-SHA256 signature over the raw body (in constant
//! time, before anything else looks at the body), classifies it by its event header, checks
//! that it is JSON, writes it to the inbox through the `Store` port and answers only after the
//! commit. It deliberately does not parse payloads into events and never calls Plane or Gitea:
//! the daemon's event loop does that later with the adapters' parsers. The status API serves
//! `/healthz`, `/readyz`, `/queue`, `/metrics` and `/api/tasks[/{id}]` from the `Store`; the
//! admin commands `POST /api/tasks/{id}/retry|cancel` decide nothing here: they are submitted
//! to the daemon's serial event loop through `AppState::admin` (an `EventSink`).
//! Main items: `serve`, `AppState` (with `WebhookSecrets`, `Readiness`, `ReconcileSwitches`,
//! `Limits`) and `Metrics`, the Prometheus registry the daemon updates too.

#![forbid(unsafe_code)]

mod api;
mod ingress;
mod metrics;
mod server;
mod signature;
mod state;

pub use ingress::{GITEA_EVENTS, PLANE_EVENTS};
pub use metrics::{DeliveryOutcome, JobOutcome, Metrics, SignatureFailure, METRICS_CONTENT_TYPE};
pub use server::serve;
pub use state::{
    AppState, Limits, LoopState, Readiness, ReconcileSettings, ReconcileSwitches, Secret,
    WebhookSecrets, DEFAULT_MAX_BODY_BYTES,
};
