//! Opening the database: `SqliteStore::open*` (the writer lock `{db_path}.lock`, migrations,
//! the connection pool, the inbox writer), its options, `OpenError`, and `migrate` alone.

use std::fs::{File, OpenOptions, TryLockError};
use std::path::{Path, PathBuf};
use std::time::Duration;

use r2d2::Pool;
use r2d2_sqlite::SqliteConnectionManager;
use rusqlite::Connection;

use crate::inbox::InboxWriter;
use crate::schema::{self, Migrated};
use crate::StorageHealth;

/// Why the database could not be opened or migrated.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// Another process holds `{db_path}.lock` (a second daemon on the same database).
    #[error(
        "database {path} is already in use by another orch process (lock file {lock} is held)"
    )]
    Locked { path: PathBuf, lock: PathBuf },
    #[error("cannot open lock file {lock}")]
    LockFile {
        lock: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The database was written by a newer orch; this binary must not touch it.
    #[error(
        "database {path} has schema version {found}, newer than the {supported} this orch knows; upgrade orch"
    )]
    TooNew {
        path: PathBuf,
        found: i64,
        supported: i64,
    },
    #[error("cannot migrate database {path} to schema version {version}")]
    Migration {
        path: PathBuf,
        version: i64,
        #[source]
        source: rusqlite::Error,
    },
    #[error("cannot open database {path}")]
    Sqlite {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },
    #[error("cannot start the inbox writer thread")]
    Thread(#[source] std::io::Error),
    #[error("cannot open a connection pool on database {path}")]
    Pool {
        path: PathBuf,
        #[source]
        source: r2d2::Error,
    },
}

/// How `synchronous` is set for writes other than inbox inserts (which always use `FULL`,
/// group-committed by one writer thread).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Synchronous {
    /// Durable against a crash of the process (WAL); the last commits may be lost on power loss.
    #[default]
    Normal,
    /// Every commit is synced to disk.
    Full,
}

impl Synchronous {
    fn pragma(self) -> &'static str {
        match self {
            Synchronous::Normal => "NORMAL",
            Synchronous::Full => "FULL",
        }
    }
}

/// Knobs of `SqliteStore::open_with`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreOptions {
    /// Hold the exclusive lock on `{db_path}.lock` (the daemon); readers such as `orch status`
    /// leave it off.
    pub exclusive: bool,
    pub synchronous: Synchronous,
    /// How long a statement waits on another writer before failing with `Unavailable`.
    pub busy_timeout: Duration,
    /// How long a call waits for a free pooled connection.
    pub pool_timeout: Duration,
    pub pool_size: u32,
    /// The WAL's length past which the inbox writer checkpoints its last frames itself, so
    /// that the WAL restarts even under writes that never pause; a restart cuts the file back
    /// to twice this (`journal_size_limit`). Higher, the WAL grows; lower, the writer stops for
    /// a checkpoint (two fsyncs) more often.
    pub wal_restart_bytes: u64,
}

impl Default for StoreOptions {
    fn default() -> StoreOptions {
        StoreOptions {
            exclusive: false,
            synchronous: Synchronous::Normal,
            busy_timeout: Duration::from_secs(5),
            pool_timeout: Duration::from_secs(10),
            pool_size: 4,
            // About 7 500 deliveries, 15 s at a steady 500/s.
            wal_restart_bytes: 128 * 1024 * 1024,
        }
    }
}

/// The `Store` port on SQLite. Cheap to share behind an `Arc`; holds the writer lock (if
/// opened exclusively) until dropped.
pub struct SqliteStore {
    pub(crate) pool: Pool<SqliteConnectionManager>,
    pub(crate) inbox: InboxWriter,
    pub(crate) health: StorageHealth,
    pub(crate) path: PathBuf,
    _lock: Option<File>,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore")
            .field("path", &self.path)
            .field("exclusive", &self._lock.is_some())
            .finish_non_exhaustive()
    }
}

impl SqliteStore {
    /// Opens (creating if needed) and migrates the database, without the writer lock.
    /// Blocking: call it before the runtime serves traffic, or inside `spawn_blocking`.
    pub fn open(path: impl AsRef<Path>) -> Result<SqliteStore, OpenError> {
        SqliteStore::open_with(path, StoreOptions::default())
    }

    /// Takes the exclusive lock on `{path}.lock` first (failing at once with
    /// `OpenError::Locked` if another process holds it), then opens and migrates.
    pub fn open_exclusive(path: impl AsRef<Path>) -> Result<SqliteStore, OpenError> {
        SqliteStore::open_with(
            path,
            StoreOptions {
                exclusive: true,
                ..StoreOptions::default()
            },
        )
    }

    pub fn open_with(
        path: impl AsRef<Path>,
        options: StoreOptions,
    ) -> Result<SqliteStore, OpenError> {
        let path = path.as_ref().to_path_buf();
        let lock = if options.exclusive {
            Some(take_lock(&path)?)
        } else {
            None
        };
        schema::migrate_path(&path)?;
        let busy_ms = options.busy_timeout.as_millis();
        let init = format!(
            "PRAGMA busy_timeout = {busy_ms}; PRAGMA foreign_keys = ON; PRAGMA synchronous = {};",
            options.synchronous.pragma()
        );
        let manager =
            SqliteConnectionManager::file(&path).with_init(move |conn| conn.execute_batch(&init));
        let pool = Pool::builder()
            .max_size(options.pool_size.max(1))
            .min_idle(Some(1))
            .connection_timeout(options.pool_timeout)
            .build(manager)
            .map_err(|source| OpenError::Pool {
                path: path.clone(),
                source,
            })?;
        let health = StorageHealth::new(&path, options.busy_timeout);
        let inbox = InboxWriter::start(
            &path,
            options.busy_timeout,
            options.wal_restart_bytes,
            health.clone(),
        )?;
        tracing::debug!(path = %path.display(), exclusive = options.exclusive, "store opened");
        Ok(SqliteStore {
            pool,
            inbox,
            health,
            path,
            _lock: lock,
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether writes fail because of the disk or the file system (a storage fault), shared:
    /// `/readyz` reads it. A fault ends by itself when a write commits again.
    pub fn health(&self) -> StorageHealth {
        self.health.clone()
    }
}

/// Applies the pending migrations to the database at `path` (creating it if needed) and
/// says which versions it went from and to. `orch migrate` calls this.
pub fn migrate(path: impl AsRef<Path>) -> Result<Migrated, OpenError> {
    schema::migrate_path(path.as_ref())
}

/// The lock file of a database: `{db_path}.lock`.
pub fn lock_path(db_path: &Path) -> PathBuf {
    let mut name = db_path.as_os_str().to_owned();
    name.push(".lock");
    PathBuf::from(name)
}

fn take_lock(db_path: &Path) -> Result<File, OpenError> {
    let lock = lock_path(db_path);
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock)
        .map_err(|source| OpenError::LockFile {
            lock: lock.clone(),
            source,
        })?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(TryLockError::WouldBlock) => Err(OpenError::Locked {
            path: db_path.to_path_buf(),
            lock,
        }),
        Err(TryLockError::Error(source)) => Err(OpenError::LockFile { lock, source }),
    }
}

pub(crate) fn open_connection(path: &Path) -> Result<Connection, OpenError> {
    Connection::open(path).map_err(|source| OpenError::Sqlite {
        path: path.to_path_buf(),
        source,
    })
}
