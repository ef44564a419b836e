//! orch's adapter to Gitea: `GiteaForge` implements the `Forge` port over Gitea's REST API v1
//! (pull requests, combined commit statuses, merges pinned to a head sha, reviews, comments),
//! and `webhook::parse` turns Gitea webhook deliveries into core `Event`s.
//!
//! It deliberately decides nothing: it classifies Gitea's answers (merge outcomes of SPEC §1.1,
//! error classes: 429/5xx/timeouts `Unavailable`, 401/403 `Unauthorized`, 404 `NotFound`) and
//! leaves every decision to orch-core. Every blocking ureq call runs on tokio's blocking pool
//! with a deadline; writes are idempotent (look up before create, hidden markers in bodies,
//! re-read after an ambiguous merge). Main types: `GiteaForge`, `GiteaSettings` (with
//! orch-core's `RetryPolicy`), `MergeStyle`, `ForgeStats`, and the pure function `webhook::parse`.

#![forbid(unsafe_code)]

mod client;
mod config;
mod forge;
pub mod webhook;

pub use client::ForgeStats;
pub use config::{GiteaSettings, MergeStyle};
pub use forge::GiteaForge;

#[cfg(test)]
mod tests;
