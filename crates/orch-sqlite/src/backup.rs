//! `backup`: a consistent copy of a live database with `VACUUM INTO`, for `orch backup`.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rusqlite::{Connection, OpenFlags};

/// What `backup` wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Backup {
    pub path: PathBuf,
    pub bytes: u64,
    pub schema_version: i64,
    pub duration: Duration,
}

/// Why a backup was not written.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error("backup destination {0} exists already; give a path that does not exist")]
    Exists(PathBuf),
    #[error("database {0} does not exist")]
    NoDatabase(PathBuf),
    #[error("cannot copy database {from} to {to}")]
    Sqlite {
        from: PathBuf,
        to: PathBuf,
        #[source]
        source: rusqlite::Error,
    },
    #[error("cannot check the copy {path}")]
    Check {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },
    #[error("the copy {path} failed its integrity check: {report}")]
    Corrupt { path: PathBuf, report: String },
    #[error("cannot finish the backup file {path}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// How long the copy waits for a writer that holds the database (WAL readers rarely wait).
const BUSY_TIMEOUT: Duration = Duration::from_secs(30);

/// Copies the database at `db_path` to `dest`, which must not exist, while orch may be running:
/// `VACUUM INTO` reads one snapshot (a WAL read transaction, which never blocks the daemon's
/// writers) and writes it compacted to `{dest}.partial`; the copy is integrity-checked,
/// synced, and only then renamed to `dest`, so `dest` is either a whole backup or absent.
/// Blocking: run it off the async threads.
pub fn backup(db_path: &Path, dest: &Path) -> Result<Backup, BackupError> {
    let started = Instant::now();
    if !db_path.is_file() {
        return Err(BackupError::NoDatabase(db_path.to_path_buf()));
    }
    if dest.exists() {
        return Err(BackupError::Exists(dest.to_path_buf()));
    }
    let mut partial_name = dest.as_os_str().to_owned();
    partial_name.push(".partial");
    let partial = PathBuf::from(partial_name);
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| BackupError::Io { path, source }
    };
    match std::fs::remove_file(&partial) {
        Ok(()) => {}
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
        Err(err) => return Err(io(&partial)(err)),
    }
    let sqlite = |source| BackupError::Sqlite {
        from: db_path.to_path_buf(),
        to: dest.to_path_buf(),
        source,
    };
    let source = Connection::open_with_flags(
        db_path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(sqlite)?;
    source.busy_timeout(BUSY_TIMEOUT).map_err(sqlite)?;
    let partial_text = partial.to_str().ok_or_else(|| {
        io(&partial)(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "the path is not UTF-8",
        ))
    })?;
    let copied = source.execute("VACUUM INTO ?1", [partial_text]);
    drop(source);
    if let Err(source) = copied {
        let _ = std::fs::remove_file(&partial);
        return Err(sqlite(source));
    }
    let checked = check_copy(&partial);
    let schema_version = match checked {
        Ok(version) => version,
        Err(err) => {
            let _ = std::fs::remove_file(&partial);
            return Err(err);
        }
    };
    File::open(&partial)
        .and_then(|file| file.sync_all())
        .map_err(io(&partial))?;
    std::fs::rename(&partial, dest).map_err(io(dest))?;
    if let Some(dir) = dest.parent().filter(|dir| !dir.as_os_str().is_empty()) {
        File::open(dir)
            .and_then(|dir| dir.sync_all())
            .map_err(io(dir))?;
    }
    let bytes = std::fs::metadata(dest).map_err(io(dest))?.len();
    let backup = Backup {
        path: dest.to_path_buf(),
        bytes,
        schema_version,
        duration: started.elapsed(),
    };
    tracing::info!(path = %dest.display(), bytes, schema_version, "database backed up");
    Ok(backup)
}

/// `PRAGMA quick_check` of the copy; its schema version when it is sound.
fn check_copy(path: &Path) -> Result<i64, BackupError> {
    let sqlite = |source| BackupError::Check {
        path: path.to_path_buf(),
        source,
    };
    let copy =
        Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY).map_err(sqlite)?;
    let report: Vec<String> = copy
        .prepare("PRAGMA quick_check")
        .and_then(|mut stmt| {
            stmt.query_map([], |row| row.get::<_, String>(0))?
                .collect::<Result<_, _>>()
        })
        .map_err(sqlite)?;
    if report != ["ok"] {
        return Err(BackupError::Corrupt {
            path: path.to_path_buf(),
            report: report.join("; "),
        });
    }
    copy.query_row("PRAGMA user_version", [], |row| row.get(0))
        .map_err(sqlite)
}
