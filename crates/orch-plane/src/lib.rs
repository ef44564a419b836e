//! orch's adapter for Plane: `PlaneTracker` implements the core's `Tracker` port over Plane's
//! REST API v1, and `webhook::parse` turns Plane's webhook deliveries into core events.
//!
//! This crate translates; it decides nothing. Plane's JSON shapes stay private here and never
//! reach the core, every blocking HTTP call runs on tokio's blocking pool with a timeout, and
//! the API token never reaches a log. Main types: `PlaneTracker`, its `PlaneSettings` (with
//! orch-core's `RetryPolicy`), `PlaneStats` (call counters for `/metrics`), and the pure `webhook::parse`.

#![forbid(unsafe_code)]

mod budget;
mod client;
mod config;
pub mod html;
mod tracker;
pub mod webhook;
mod wire;

pub use client::PlaneStats;
pub use config::PlaneSettings;
pub use tracker::PlaneTracker;
