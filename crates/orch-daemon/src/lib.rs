//! orch's composition root: the configuration, the wiring of every adapter, the serial event
//! loop, the worker and the reconciler loop, and the `orch` command line.
//!
//! This is the only crate that names more than one adapter; it decides nothing about the
//! pipeline itself (that is `orch_core`'s `Orchestrator`). Its main types are `config::Config`
//! (SPEC §5.2, loaded by `config::load` from TOML plus environment variables, every error
//! reported at once) and the generated reference `config::reference_markdown`.

#![forbid(unsafe_code)]

pub mod agent_check;
pub mod commands;
pub mod config;
pub mod demo;
pub mod failpoint;
pub mod online;
pub mod preflight;
pub mod retention;
pub mod runtime;
pub mod sandbox;
pub mod systemd;
pub mod task_logs;
pub mod telemetry;
pub mod tls;
pub mod wiring;
