//! Retention (`[retention]`): a periodic pass that prunes processed deliveries, ended jobs and
//! the history of ended tasks from the store in small batches, and agent logs from disk.
//!
//! Nothing a pending delivery or an unfinished task needs is pruned: the store keeps those
//! rows whatever their age (`Store::prune`), and the logs of a work item whose task has not
//! ended are kept. Tasks themselves are never pruned.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use tokio::sync::watch;
use tracing::{info, warn};

use orch_core::ids::WorkItemId;
use orch_core::ports::{Ports, PruneRequest, Pruned, StoreError};

/// Rows of each kind one store transaction deletes at most, so the write lock is held only
/// for a few milliseconds and the event loop and the inbox writer barely wait.
pub const BATCH: u32 = 500;

/// The pause between two batches, which lets other writers in.
const BETWEEN_BATCHES: Duration = Duration::from_millis(20);

/// How long each kind is kept, and how often a pass runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetentionSettings {
    pub interval: Duration,
    pub deliveries: Duration,
    pub jobs: Duration,
    pub history: Duration,
    pub agent_logs: Duration,
    /// `{data}/logs`: `{work item}/{job}-{agent}.log` files; `None` prunes no files.
    pub logs_dir: Option<PathBuf>,
}

/// What one pass removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PassTotals {
    pub deliveries: u64,
    pub jobs: u64,
    pub history: u64,
    pub log_files: u64,
}

impl PassTotals {
    fn add(&mut self, pruned: Pruned) {
        self.deliveries += pruned.deliveries;
        self.jobs += pruned.jobs;
        self.history += pruned.history;
    }
}

/// One retention pass: store batches until none is full, then the agent logs.
/// Errors: the store's, after what was pruned before it stays pruned.
pub async fn run_once(
    ports: &Ports,
    settings: &RetentionSettings,
) -> Result<PassTotals, StoreError> {
    let now = ports.clock.now();
    let request = PruneRequest {
        deliveries_before: Some(now - settings.deliveries),
        jobs_before: Some(now - settings.jobs),
        history_before: Some(now - settings.history),
        limit: BATCH,
    };
    let mut totals = PassTotals::default();
    loop {
        let pruned = ports.store.prune(request).await?;
        totals.add(pruned);
        if !pruned.hit_limit(BATCH) {
            break;
        }
        tokio::time::sleep(BETWEEN_BATCHES).await;
    }
    if let Some(logs_dir) = &settings.logs_dir {
        totals.log_files = prune_agent_logs(ports, logs_dir, settings.agent_logs).await?;
    }
    Ok(totals)
}

/// Runs a pass at start-up and then every `interval` until `stopped`.
pub(crate) async fn retention_loop(
    ports: Ports,
    settings: RetentionSettings,
    mut stopped: watch::Receiver<bool>,
) {
    loop {
        match run_once(&ports, &settings).await {
            Ok(totals) if totals == PassTotals::default() => {}
            Ok(totals) => info!(
                deliveries = totals.deliveries,
                jobs = totals.jobs,
                history = totals.history,
                log_files = totals.log_files,
                "retention pruned"
            ),
            Err(err) => warn!(error = %err, "retention pass failed; trying again next pass"),
        }
        tokio::select! {
            _ = tokio::time::sleep(settings.interval) => {}
            _ = stopped.changed() => return,
        }
    }
}

/// Deletes agent log files not modified for `max_age`, except those of work items whose task
/// has not ended, and the directories left empty. Returns how many files went.
async fn prune_agent_logs(
    ports: &Ports,
    logs_dir: &Path,
    max_age: Duration,
) -> Result<u64, StoreError> {
    let dirs = {
        let logs_dir = logs_dir.to_path_buf();
        tokio::task::spawn_blocking(move || work_item_dirs(&logs_dir))
            .await
            .unwrap_or_default()
    };
    let mut removed = 0;
    for (name, dir) in dirs {
        // A directory orch did not name is not orch's to judge by its task: age alone.
        if let Ok(work_item) = WorkItemId::parse(&name) {
            let task = ports.store.task_by_work_item(&work_item).await?;
            if task.is_some_and(|task| !task.stage.is_terminal()) {
                continue;
            }
        }
        let Some(cutoff) = SystemTime::now().checked_sub(max_age) else {
            continue;
        };
        removed += tokio::task::spawn_blocking(move || prune_dir(&dir, cutoff))
            .await
            .unwrap_or(0);
    }
    Ok(removed)
}

/// The work item directories under `logs_dir` (none if it does not exist yet).
fn work_item_dirs(logs_dir: &Path) -> Vec<(String, PathBuf)> {
    let Ok(entries) = std::fs::read_dir(logs_dir) else {
        return Vec::new();
    };
    entries
        .filter_map(Result::ok)
        .filter(|entry| entry.file_type().is_ok_and(|kind| kind.is_dir()))
        .filter_map(|entry| Some((entry.file_name().into_string().ok()?, entry.path())))
        .collect()
}

/// Removes the plain files of `dir` last modified before `cutoff`, then `dir` if it is empty.
fn prune_dir(dir: &Path, cutoff: SystemTime) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    let mut removed = 0;
    for entry in entries.filter_map(Result::ok) {
        let Ok(metadata) = entry.metadata() else {
            continue;
        };
        let old = metadata.modified().is_ok_and(|modified| modified < cutoff);
        if metadata.is_file() && old {
            match std::fs::remove_file(entry.path()) {
                Ok(()) => removed += 1,
                Err(err) => {
                    warn!(path = %entry.path().display(), error = %err, "agent log not pruned")
                }
            }
        }
    }
    // Fails harmlessly while files remain.
    let _ = std::fs::remove_dir(dir);
    removed
}

#[cfg(test)]
mod tests;
