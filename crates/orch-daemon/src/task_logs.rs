//! `orch task logs`: the agent logs of one task, read from the data directory next to the database.
//!
//! The logs are the output of untrusted agents and go to a person's terminal, so every control
//! character but line feed and tab is replaced: an agent cannot move the cursor, retitle the
//! window or hide lines with escape sequences.

use std::collections::BTreeMap;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncSeekExt};

use orch_core::domain::{Job, JobKind, JobStatus, Task};
use orch_core::ids::JobId;
use orch_core::ports::{Store, StoreError};

/// How often `--follow` looks for new output.
pub const FOLLOW_POLL: Duration = Duration::from_millis(500);

/// Why the logs could not be shown.
#[derive(Debug, thiserror::Error)]
pub enum LogsError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the task {0} is gone from the database")]
    TaskGone(String),
    #[error("cannot read the agent log {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot write the logs: {0}")]
    Write(#[source] io::Error),
}

/// The agent logs of one task, written out as they grow.
pub struct TaskLogs {
    logs_dir: PathBuf,
    task: Task,
    /// Per agent job whose log was found: how many bytes of it are written out.
    written: BTreeMap<JobId, u64>,
}

impl TaskLogs {
    /// The logs of `task`, under `logs_dir` (`{data}/logs`).
    pub fn new(logs_dir: PathBuf, task: Task) -> TaskLogs {
        TaskLogs {
            logs_dir,
            task,
            written: BTreeMap::new(),
        }
    }

    /// Whether no agent log of the task has been found yet.
    pub fn nothing_found(&self) -> bool {
        self.written.is_empty()
    }

    /// Writes to `out` what the task's agent logs hold beyond what was written before, in job
    /// order, each log after a `==> …` header the first time. Returns whether more may come:
    /// the task has not ended, or one of its agent jobs is still queued or running.
    pub async fn write_new(
        &mut self,
        store: &dyn Store,
        out: &mut dyn Write,
    ) -> Result<bool, LogsError> {
        let task = store
            .task(self.task.id)
            .await?
            .ok_or_else(|| LogsError::TaskGone(self.task.work_item.to_string()))?;
        let jobs = store.jobs_of_task(task.id).await?;
        for job in &jobs {
            let JobKind::Agent(agent) = job.kind() else {
                continue;
            };
            let path = orch_agent::log_file(&self.logs_dir, &task.work_item, job.id, agent);
            let offset = self.written.get(&job.id).copied();
            let Some(bytes) = read_from(&path, offset.unwrap_or(0)).await? else {
                continue;
            };
            if offset.is_none() {
                writeln!(out, "==> {} <==", header(job)).map_err(LogsError::Write)?;
            }
            let (text, used) = printable(&bytes, is_active(job));
            out.write_all(text.as_bytes()).map_err(LogsError::Write)?;
            *self.written.entry(job.id).or_insert(0) += used as u64;
        }
        out.flush().map_err(LogsError::Write)?;
        let more = !task.stage.is_terminal() || jobs.iter().any(is_active_agent);
        self.task = task;
        Ok(more)
    }

    /// Writes the logs as they grow until the task has ended and its agents are done.
    pub async fn follow(
        &mut self,
        store: &dyn Store,
        out: &mut dyn Write,
    ) -> Result<(), LogsError> {
        while self.write_new(store, out).await? {
            tokio::time::sleep(FOLLOW_POLL).await;
        }
        Ok(())
    }
}

/// The agent logs directory of the database at `db_path`: `{data}/logs`, where the data
/// directory is the database's directory.
pub fn logs_dir(db_path: &Path) -> PathBuf {
    crate::wiring::data_dir_of(db_path).join("logs")
}

fn header(job: &Job) -> String {
    format!(
        "#{} {} ({}, attempt {})",
        job.id,
        job.kind(),
        job.status.as_str(),
        job.attempts
    )
}

fn is_active(job: &Job) -> bool {
    matches!(job.status, JobStatus::Queued | JobStatus::Running)
}

fn is_active_agent(job: &Job) -> bool {
    matches!(job.kind(), JobKind::Agent(_)) && is_active(job)
}

/// The bytes of `path` from `offset` on; `None` when the file does not exist (the agent has
/// not started). A file shorter than `offset` (rewritten) is read from its start.
async fn read_from(path: &Path, offset: u64) -> Result<Option<Vec<u8>>, LogsError> {
    let failed = |source| LogsError::Read {
        path: path.to_path_buf(),
        source,
    };
    let mut file = match tokio::fs::File::open(path).await {
        Ok(file) => file,
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(err) => return Err(failed(err)),
    };
    let len = file.metadata().await.map_err(failed)?.len();
    let start = if len < offset { 0 } else { offset };
    file.seek(io::SeekFrom::Start(start))
        .await
        .map_err(failed)?;
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes).await.map_err(failed)?;
    Ok(Some(bytes))
}

/// `bytes` as text for a terminal, and how many bytes that used: invalid UTF-8 and control
/// characters (but `\n` and `\t`) become U+FFFD. With `growing`, a UTF-8 sequence cut at the
/// end is left for the next read.
fn printable(bytes: &[u8], growing: bool) -> (String, usize) {
    let mut text = String::with_capacity(bytes.len());
    let mut rest = bytes;
    loop {
        match std::str::from_utf8(rest) {
            Ok(valid) => {
                push_printable(&mut text, valid);
                return (text, bytes.len());
            }
            Err(err) => {
                let (valid, after) = rest.split_at(err.valid_up_to());
                push_printable(
                    &mut text,
                    std::str::from_utf8(valid).expect("checked by from_utf8"),
                );
                match err.error_len() {
                    Some(bad) => {
                        text.push(char::REPLACEMENT_CHARACTER);
                        rest = &after[bad..];
                    }
                    // The sequence is cut at the end: it may be completed later.
                    None if growing => return (text, bytes.len() - after.len()),
                    None => {
                        text.push(char::REPLACEMENT_CHARACTER);
                        return (text, bytes.len());
                    }
                }
            }
        }
    }
}

fn push_printable(out: &mut String, text: &str) {
    out.extend(text.chars().map(|c| match c {
        '\n' | '\t' => c,
        c if c.is_control() => char::REPLACEMENT_CHARACTER,
        c => c,
    }));
}

#[cfg(test)]
mod tests;
