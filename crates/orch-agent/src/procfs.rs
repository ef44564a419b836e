//! What orch reads from Linux's `/proc`: a process's group, state and start time.

use std::fs;
use std::io;

use orch_core::domain::ProcessRecord;

/// The fields of `/proc/{pid}/stat` orch uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ProcStat {
    /// Field 3: `R`, `S`, `Z` (zombie), ….
    pub(crate) state: char,
    /// Field 5.
    pub(crate) pgrp: u32,
    /// Field 22: clock ticks after boot.
    pub(crate) start_time: u64,
}

impl ProcStat {
    /// A zombie has ended; it only waits for its parent to reap it.
    pub(crate) fn is_alive(self) -> bool {
        self.state != 'Z' && self.state != 'X'
    }
}

/// The record of a running process `pid`, or `None` when there is no such process.
pub fn process_record(pid: u32) -> Option<ProcessRecord> {
    let stat = read_stat(pid).ok().flatten()?;
    Some(ProcessRecord {
        pid,
        pgid: stat.pgrp,
        start_time: stat.start_time,
    })
}

/// Reads `/proc/{pid}/stat`; `Ok(None)` when the process does not exist.
pub(crate) fn read_stat(pid: u32) -> io::Result<Option<ProcStat>> {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(text) => Ok(parse_stat(&text)),
        Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(None),
        // A process that ended between listing and reading.
        Err(err) if err.raw_os_error() == Some(nix::libc::ESRCH) => Ok(None),
        Err(err) => Err(err),
    }
}

/// Parses a stat line. The command name (field 2) is in parentheses and may itself contain
/// spaces and parentheses, so the fields after it are counted from the last `)`.
pub(crate) fn parse_stat(text: &str) -> Option<ProcStat> {
    let after_name = &text[text.rfind(')')? + 1..];
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    // `fields[0]` is field 3.
    let state = fields.first()?.chars().next()?;
    let pgrp = fields.get(5 - 3)?.parse().ok()?;
    let start_time = fields.get(22 - 3)?.parse().ok()?;
    Some(ProcStat {
        state,
        pgrp,
        start_time,
    })
}

/// The pids `/proc` lists.
pub(crate) fn process_ids() -> io::Result<Vec<u32>> {
    let mut pids = Vec::new();
    for entry in fs::read_dir("/proc")? {
        if let Some(pid) = entry?
            .file_name()
            .to_str()
            .and_then(|name| name.parse::<u32>().ok())
        {
            pids.push(pid);
        }
    }
    Ok(pids)
}

/// Every live process whose process group is `pgid`, with its stat.
pub(crate) fn group_members(pgid: u32) -> io::Result<Vec<(u32, ProcStat)>> {
    let mut members = Vec::new();
    for pid in process_ids()? {
        if let Ok(Some(stat)) = read_stat(pid) {
            if stat.pgrp == pgid && stat.is_alive() {
                members.push((pid, stat));
            }
        }
    }
    Ok(members)
}

/// The children of `pid` (from `/proc/{pid}/task/{pid}/children`, else by a scan of `/proc`).
pub(crate) fn children(pid: u32) -> Vec<u32> {
    if let Ok(text) = fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")) {
        let listed: Vec<u32> = text
            .split_whitespace()
            .filter_map(|child| child.parse().ok())
            .collect();
        if !listed.is_empty() {
            return listed;
        }
    }
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|candidate| parent_of(*candidate) == Some(pid))
        .collect()
}

/// Field 4 of `/proc/{pid}/stat`.
fn parent_of(pid: u32) -> Option<u32> {
    let text = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after_name = &text[text.rfind(')')? + 1..];
    after_name.split_whitespace().nth(1)?.parse().ok()
}

/// Whether `pid`'s environment shows it was started by orch's agent contract. `false` when
/// the environment cannot be read (another user's process).
pub(crate) fn has_agent_environment(pid: u32) -> bool {
    environment_has(pid, |entry| entry.starts_with(b"ORCH_AGENT="))
}

/// Whether `pid`'s environment holds exactly the entry `name_value` (`NAME=value`). `false`
/// when the environment cannot be read.
pub(crate) fn has_variable(pid: u32, name_value: &[u8]) -> bool {
    environment_has(pid, |entry| entry == name_value)
}

fn environment_has(pid: u32, wanted: impl Fn(&[u8]) -> bool) -> bool {
    match fs::read(format!("/proc/{pid}/environ")) {
        Ok(environ) => environ.split(|byte| *byte == 0).any(wanted),
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests;
