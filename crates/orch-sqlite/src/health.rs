//! Storage faults: the disk is full, the database or its file system is read-only, or I/O
//! fails. A failed call records the fault, a committed write clears it, and while it lasts a
//! probe thread tries a small write on a fresh connection, so orch notices by itself when the
//! fault ends even if nothing else writes.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::Duration;

use rusqlite::{params, Connection, ErrorCode, OpenFlags, TransactionBehavior};

use crate::error::Error;

/// How often the probe tries a write while a fault lasts.
const PROBE_INTERVAL: Duration = Duration::from_millis(250);

/// Whether the database can be written, shared by every clone. `fault` is the last storage
/// fault seen, until a write commits again.
#[derive(Clone)]
pub struct StorageHealth {
    inner: Arc<Inner>,
}

struct Inner {
    path: PathBuf,
    busy_timeout: Duration,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    fault: Option<String>,
    probing: bool,
}

impl std::fmt::Debug for StorageHealth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StorageHealth")
            .field("fault", &self.fault())
            .finish_non_exhaustive()
    }
}

impl StorageHealth {
    pub(crate) fn new(path: &Path, busy_timeout: Duration) -> StorageHealth {
        StorageHealth {
            inner: Arc::new(Inner {
                path: path.to_path_buf(),
                busy_timeout,
                state: Mutex::new(State::default()),
            }),
        }
    }

    /// The storage fault that stops writes now, if any (`disk full: …`, `read-only: …`,
    /// `i/o error: …`).
    pub fn fault(&self) -> Option<String> {
        self.state().fault.clone()
    }

    /// Records what a write transaction ended with: a committed write ends a fault, a storage
    /// fault starts (or continues) one.
    pub(crate) fn observe_write<T>(&self, result: &Result<T, Error>) {
        match result {
            Ok(_) => self.clear(),
            Err(err) => self.observe_error(err),
        }
    }

    /// Records what a read (or one item of a committed batch) ended with: only a storage fault
    /// counts, since nothing was written.
    pub(crate) fn observe_read<T>(&self, result: &Result<T, Error>) {
        if let Err(err) = result {
            self.observe_error(err);
        }
    }

    fn observe_error(&self, err: &Error) {
        if let Some(fault) = err.storage_fault() {
            self.record(fault);
        }
    }

    fn clear(&self) {
        let mut state = self.state();
        if let Some(fault) = state.fault.take() {
            tracing::warn!(fault = %fault, "storage fault ended: writes succeed again");
        }
    }

    fn record(&self, fault: String) {
        let mut state = self.state();
        if state.fault.is_none() {
            tracing::error!(fault = %fault, "storage fault: writes fail until it ends");
        }
        state.fault = Some(fault);
        if !state.probing {
            state.probing = true;
            let weak = Arc::downgrade(&self.inner);
            let spawned = std::thread::Builder::new()
                .name("orch-storage-probe".to_owned())
                .spawn(move || probe_until_writable(&weak));
            if let Err(err) = spawned {
                state.probing = false;
                tracing::warn!(error = %err, "cannot start the storage probe");
            }
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.inner
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

/// Tries a write every `PROBE_INTERVAL` until one commits (or the store is dropped, or the
/// fault was cleared by another write).
fn probe_until_writable(inner: &Weak<Inner>) {
    loop {
        std::thread::sleep(PROBE_INTERVAL);
        let Some(inner) = inner.upgrade() else {
            return;
        };
        let health = StorageHealth { inner };
        if health.fault().is_none() {
            health.state().probing = false;
            return;
        }
        let result = probe(&health.inner.path, health.inner.busy_timeout);
        let mut state = health.state();
        match result {
            Ok(()) => {
                state.probing = false;
                drop(state);
                health.clear();
                return;
            }
            Err(err) => {
                if let Some(fault) = err.storage_fault() {
                    state.fault = Some(fault);
                }
                tracing::debug!(error = %err, "storage probe failed");
            }
        }
    }
}

/// One small committed write on a fresh connection (which never creates the file): the
/// probe row in `meta`.
fn probe(path: &Path, busy_timeout: Duration) -> Result<(), Error> {
    let mut conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_timeout(busy_timeout)?;
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    tx.execute(
        "INSERT INTO meta (key, value) VALUES ('storage_probe', ?1) \
         ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        params![uuid::Uuid::new_v4().to_string()],
    )?;
    tx.commit()?;
    Ok(())
}

/// The storage fault an SQLite error is, if it is one.
pub(crate) fn storage_fault(err: &rusqlite::Error) -> Option<String> {
    let rusqlite::Error::SqliteFailure(failure, message) = err else {
        return None;
    };
    let kind = match failure.code {
        ErrorCode::DiskFull => "disk full",
        ErrorCode::ReadOnly => "read-only",
        ErrorCode::SystemIoFailure => "i/o error",
        ErrorCode::CannotOpen => "cannot open the database file",
        _ => return None,
    };
    let detail = message.clone().unwrap_or_else(|| failure.to_string());
    Some(format!("{kind}: {detail}"))
}
