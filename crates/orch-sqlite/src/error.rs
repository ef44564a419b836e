//! The crate's private error, mapped to `StoreError` at the port boundary.

use orch_core::ports::StoreError;
use rusqlite::ErrorCode;

#[derive(Debug, thiserror::Error)]
pub(crate) enum Error {
    #[error("not found: {0}")]
    NotFound(String),
    #[error("conflict: {0}")]
    Conflict(String),
    #[error("sqlite")]
    Sqlite(#[from] rusqlite::Error),
    #[error("no pooled connection")]
    Pool(#[from] r2d2::Error),
    #[error("stored json")]
    Json(#[from] serde_json::Error),
    /// A stored value that does not parse back into a domain type.
    #[error("corrupt row: {0}")]
    Corrupt(String),
    #[error("blocking task failed")]
    Join(#[from] tokio::task::JoinError),
}

impl Error {
    pub(crate) fn corrupt(what: &str, err: impl std::fmt::Display) -> Error {
        Error::Corrupt(format!("{what}: {err}"))
    }

    /// The storage fault this is (disk full, read-only, I/O), if it is one.
    pub(crate) fn storage_fault(&self) -> Option<String> {
        match self {
            Error::Sqlite(err) => crate::health::storage_fault(err),
            _ => None,
        }
    }
}

impl From<Error> for StoreError {
    fn from(err: Error) -> StoreError {
        // A storage fault ends when the disk has room or the file is writable again: retrying
        // helps, and nothing was half-written (the transaction rolled back).
        if let Some(fault) = err.storage_fault() {
            return StoreError::Unavailable(format!("storage fault: {fault}"));
        }
        match err {
            Error::NotFound(what) => StoreError::NotFound(what),
            Error::Conflict(what) => StoreError::Conflict(what),
            Error::Sqlite(rusqlite::Error::SqliteFailure(failure, message)) => match failure.code {
                ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked => StoreError::Unavailable(
                    format!("database busy: {}", message.unwrap_or_default()),
                ),
                ErrorCode::ConstraintViolation => {
                    StoreError::Conflict(format!("constraint: {}", message.unwrap_or_default()))
                }
                _ => StoreError::Other(Box::new(rusqlite::Error::SqliteFailure(failure, message))),
            },
            Error::Pool(err) => StoreError::Unavailable(format!("no database connection: {err}")),
            other => StoreError::Other(Box::new(other)),
        }
    }
}
