//! Wiring: real adapters built from the `Config`, the HTTP server and the runtime started
//! together as one `Daemon`.
//!
//! This file holds what every part shares: `RunError` and where the daemon's files go
//! (`data_dir`, `admin_socket_path`). The parts:
//! - `adapters`: every port built from the config (`build_adapters`), the agent runner,
//!   the webhook parsers, the board's links, and the copier of the adapters' call counters
//!   into the metrics;
//! - `daemon`: `Daemon::start` (the single-writer lock, the admin socket, the runtime and
//!   the HTTP server), `shutdown`, and `run`;
//! - `reload`: `Daemon::reload` on `SIGHUP`, which keeps unchanged adapters and names what
//!   needs a restart;
//! - `observer`: the runtime's observations turned into metrics and readiness.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use orch_sqlite::OpenError;

use crate::config::Config;
use crate::runtime::StartError;

mod adapters;
mod daemon;
mod observer;
mod reload;

pub use crate::wiring::adapters::{
    agent_runner, board_settings, build_adapters, build_ports, delivery_parser, webhook_events,
    Adapters, LogNotifier, SystemClock,
};
pub use crate::wiring::daemon::{
    new_boot_id, run, Daemon, DaemonOptions, ReplacePorts, TuneSettings,
};

/// Why the daemon could not start.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Store(#[from] OpenError),
    #[error("cannot listen on {addr}")]
    Listen {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot create the data directory {path}")]
    DataDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("invalid adapter configuration: {0}")]
    Adapter(String),
    #[error(transparent)]
    Runtime(#[from] StartError),
    #[error(transparent)]
    AdminSocket(#[from] orch_http::AdminSocketError),
    #[error("agents.sandbox: {0}")]
    Sandbox(String),
}

/// The admin socket of the database at `db_path`, `{db_path}.sock`: the daemon serves its
/// API there to orch's own user (mode 0600), and the CLI sends `task retry|cancel` there.
pub fn admin_socket_path(db_path: &Path) -> PathBuf {
    let mut name = db_path.as_os_str().to_owned();
    name.push(".sock");
    PathBuf::from(name)
}

/// Where logs and agent scratch files go: next to the database.
pub fn data_dir(config: &Config) -> PathBuf {
    data_dir_of(&config.storage.db_path)
}

/// The data directory of the database at `db_path`: the database's directory.
pub fn data_dir_of(db_path: &Path) -> PathBuf {
    match db_path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
        _ => PathBuf::from("."),
    }
}
