//! orch's HTTP server: the webhook ingress and the status API, on hyper 1.
//!
//! The ingress verifies a delivery's HMAC-SHA256 signature over the raw body (in constant
//! time, before anything else looks at the body), classifies it by its event header, checks
//! that it is JSON, writes it to the inbox through the `Store` port and answers only after the
//! commit. It deliberately does not parse payloads into events and never calls Plane or Gitea:
//! the daemon's event loop does that later with the adapters' parsers. The status API serves
//! `/healthz`, `/readyz`, `/queue`, `/metrics` and `/api/tasks[/{id}]` from the `Store`; the
//! admin commands `POST /api/tasks/{id}/retry|cancel` decide nothing here: they are submitted
//! to the daemon's serial event loop through `AppState::admin` (an `EventSink`). The board
//! (`/`, `/tasks/{id}`, `/events`, `/login`) renders the same facts for people as askama
//! pages, live over server-sent events, with links from `BoardSettings`.
//!
//! A source address is never a credential. Webhooks prove themselves by signature; work
//! items, tasks and commands need the admin token (Bearer) or come over the `AdminSocket`
//! (`{db_path}.sock`, mode 0600), which the CLI uses; requests relayed by a proxy (forwarding
//! headers) get no trust from the socket. Slow or stalled clients cannot hold the server:
//! heads, bodies and answers have deadlines, connections a maximum age, and when the global
//! or per-peer cap is reached the connection stalled the longest makes room (`Limits`).
//! Main items: `serve` (on `Listeners`), `AdminSocket`, `AppState` (with `WebhookSecrets`,
//! `Readiness`, `ReconcileSwitches`, `Limits`) and `Metrics`, the Prometheus registry the
//! daemon updates too.

#![forbid(unsafe_code)]

mod access;
mod api;
mod board;
mod connections;
pub mod failpoint;
mod ingress;
mod metrics;
mod process;
mod server;
mod signature;
mod socket;
mod state;

pub use metrics::{DeliveryOutcome, JobOutcome, Metrics, SignatureFailure, METRICS_CONTENT_TYPE};
pub use server::{serve, Listeners};
pub use socket::{AdminSocket, AdminSocketError};
pub use state::{
    AppState, BoardSettings, Limits, LoopState, Readiness, ReconcileSettings, ReconcileSwitches,
    Secret, WebhookEvents, WebhookSecrets, DEFAULT_MAX_BODY_BYTES,
};
