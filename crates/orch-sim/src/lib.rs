//! Loopback simulators of the systems orch talks to, faithful to `shared/contracts/`:
//! `PlaneSim` (Plane API v1 and its webhook sender), `GiteaSim` (Gitea API v1 with real bare
//! git repositories, a CI that posts commit statuses, and its webhook sender), `TelegramSim`
//! (Bot API), with fault injection; and the scripted agent used by tests and `orch demo`. With feature `tls`,
//! `tls::TlsFront` serves any of them over HTTPS with a certificate of a private `tls::TestCa`.
//!
//! This crate speaks only HTTP and git: it does not depend on orch-core, so a simulator can
//! never share a bug with the adapter it tests. Every server binds `127.0.0.1:0`.

#![forbid(unsafe_code)]

pub mod agent;
pub mod gitea;
pub mod plane;
pub mod server;
pub mod telegram;
#[cfg(feature = "tls")]
pub mod tls;
pub mod webhook;
