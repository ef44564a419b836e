//! Boot-time reaping of agent process groups an earlier boot of orch left running.
//!
//! A record names the group's leader by pid and start time. Linux does not hand out a pid
//! again while it is still in use as a process-group id, so:
//! - leader alive (or a zombie) with the recorded start time: it is our group, SIGKILL it;
//! - a process with the pid but another start time: the pid was reused, which also means the
//!   old group has no members left; leave it alone;
//! - no process with the pid: the leader died; members of its group may still run (an
//!   agent's `sleep 1000 &`). Processes in group `pgid` that started no earlier than the
//!   leader and carry the agent contract's `ORCH_AGENT` variable are killed one by one. The
//!   environment check guards records from before a reboot, when start times mean nothing.
//!
//! Reaping sends SIGKILL at once, without the SIGTERM grace: the daemon that owned these
//! agents is gone, their jobs are reclaimed and run again, and boot must not wait.

use std::io;

use nix::errno::Errno;
use nix::sys::signal::{kill, killpg, Signal};
use nix::unistd::{getpgrp, Pid};
use orch_core::domain::ProcessRecord;

use std::path::Path;

use crate::procfs::{group_members, has_agent_environment, has_variable, process_ids, read_stat};

/// Every agent a runner starts carries `ORCH_INSTANCE={scratch_dir}`: the runner's own scratch
/// directory under orch's data directory, which only one daemon at a time uses (it holds the
/// database's lock). An agent spawned by a boot that died before storing its process record
/// is found by this variable alone (issue 14's crash window, see [`reap_instance`]).
pub const INSTANCE_VARIABLE: &str = "ORCH_INSTANCE";

/// What reaping did with each record.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReapReport {
    pub entries: Vec<ReapEntry>,
}

/// One record and what became of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReapEntry {
    pub record: ProcessRecord,
    pub outcome: ReapOutcome,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReapOutcome {
    /// The leader still ran with the recorded start time: its whole group got SIGKILL.
    KilledGroup,
    /// The leader was gone but members of its group ran: each of these got SIGKILL.
    KilledMembers { pids: Vec<u32> },
    /// The pid belongs to another process now: nothing was signalled.
    PidReused,
    /// Nothing of the group is left.
    Gone,
    /// Refused or failed; nothing more was done for this record.
    Failed { error: String },
}

impl ReapReport {
    /// How many records had something killed.
    pub fn killed(&self) -> usize {
        self.entries
            .iter()
            .filter(|entry| {
                matches!(
                    entry.outcome,
                    ReapOutcome::KilledGroup | ReapOutcome::KilledMembers { .. }
                )
            })
            .count()
    }
}

/// Kills what is left of the agent process groups in `records` (see the module docs for the
/// rules). Call it at boot, before any agent of this boot is started.
pub fn reap_orphans(records: &[ProcessRecord]) -> ReapReport {
    let entries = records
        .iter()
        .map(|record| {
            let outcome = reap_one(record).unwrap_or_else(|err| ReapOutcome::Failed { error: err.to_string() });
            match &outcome {
                ReapOutcome::KilledGroup | ReapOutcome::KilledMembers { .. } => {
                    tracing::info!(pid = record.pid, pgid = record.pgid, "orphan agent group killed");
                }
                ReapOutcome::Failed { error } => {
                    tracing::warn!(pid = record.pid, pgid = record.pgid, error = %error, "orphan agent group not reaped");
                }
                ReapOutcome::PidReused | ReapOutcome::Gone => {
                    tracing::debug!(pid = record.pid, pgid = record.pgid, outcome = ?outcome, "orphan agent group left alone");
                }
            }
            ReapEntry { record: *record, outcome }
        })
        .collect();
    ReapReport { entries }
}

fn reap_one(record: &ProcessRecord) -> io::Result<ReapOutcome> {
    let Some(pgid) = safe_group(record.pgid) else {
        return Ok(ReapOutcome::Failed {
            error: format!("refusing to signal process group {}", record.pgid),
        });
    };
    match read_stat(record.pid)? {
        Some(stat) if stat.start_time != record.start_time => Ok(ReapOutcome::PidReused),
        Some(_) => match killpg(pgid, Signal::SIGKILL) {
            Ok(()) => Ok(ReapOutcome::KilledGroup),
            Err(Errno::ESRCH) => Ok(ReapOutcome::Gone),
            Err(errno) => Err(io::Error::from(errno)),
        },
        None => {
            let mut pids = Vec::new();
            for (pid, stat) in group_members(record.pgid)? {
                if stat.start_time < record.start_time || !has_agent_environment(pid) {
                    continue;
                }
                let Ok(raw) = i32::try_from(pid) else {
                    continue;
                };
                match kill(Pid::from_raw(raw), Signal::SIGKILL) {
                    Ok(()) => pids.push(pid),
                    Err(Errno::ESRCH) => {}
                    Err(errno) => return Err(io::Error::from(errno)),
                }
            }
            Ok(if pids.is_empty() {
                ReapOutcome::Gone
            } else {
                ReapOutcome::KilledMembers { pids }
            })
        }
    }
}

/// Kills every process whose environment has `ORCH_INSTANCE={instance}`, with its process
/// group: agents of an earlier boot of the daemon that owns `instance` (the runner's scratch
/// directory), recorded or not. Call it at boot, after the database's lock is held and before
/// any agent of this boot starts; orch's own process is never signalled. Returns the pids
/// that got SIGKILL.
pub fn reap_instance(instance: &Path) -> io::Result<Vec<u32>> {
    let mut marker = format!("{INSTANCE_VARIABLE}=").into_bytes();
    marker.extend_from_slice(instance.as_os_str().as_encoded_bytes());
    let own = std::process::id();
    let mut killed = Vec::new();
    for pid in process_ids()? {
        if pid == own || !has_variable(pid, &marker) {
            continue;
        }
        let Some(stat) = read_stat(pid)?.filter(|stat| stat.is_alive()) else {
            continue;
        };
        let signalled = match safe_group(stat.pgrp) {
            Some(group) => killpg(group, Signal::SIGKILL),
            None => match i32::try_from(pid) {
                Ok(raw) => kill(Pid::from_raw(raw), Signal::SIGKILL),
                Err(_) => continue,
            },
        };
        match signalled {
            Ok(()) => {
                tracing::info!(
                    pid,
                    pgid = stat.pgrp,
                    "unrecorded agent of an earlier boot killed"
                );
                killed.push(pid);
            }
            Err(Errno::ESRCH) => {}
            Err(errno) => return Err(io::Error::from(errno)),
        }
    }
    Ok(killed)
}

/// The group as a `Pid`, unless signalling it would hit init, "every process", or orch itself.
pub(crate) fn safe_group(pgid: u32) -> Option<Pid> {
    let raw = i32::try_from(pgid).ok().filter(|raw| *raw > 1)?;
    let group = Pid::from_raw(raw);
    (group != getpgrp()).then_some(group)
}
