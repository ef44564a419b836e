//! Row formats: reading tasks, jobs and deliveries back into domain types.

use std::str::FromStr;

use orch_core::domain::{
    Action, Job, JobOutput, JobStatus, Lease, ProcessRecord, Service, Stage, Task, TaskStatus,
    Waiting,
};
use orch_core::ids::{
    AttemptId, BootId, BranchName, CommitSha, IssueId, JobId, PrNumber, ProjectId, RepoSlug,
    StateId, TaskId, WorkItemId,
};
use orch_core::ports::{Delivery, Source};
use orch_core::time::Timestamp;
use rusqlite::Row;

use crate::error::Error;

pub(crate) const TASK_COLUMNS: &str = "id, version, issue_id, project_id, work_item, title, description, repo, \
     base_branch, branch, stage, status, blocked_reason, head_sha, pr_number, fix_rounds, review_rounds, \
     last_fix_sha, gate_opened_at, created_at, updated_at, sent_back_sha, tracker_state, tracker_seen_at, \
     verdicts_after, feedback_after";

pub(crate) const JOB_COLUMNS: &str = "id, task_id, repo, payload, idem_key, status, attempts, not_before, \
     attempt_id, lease_owner, lease_expires_at, heartbeat_at, process_pid, process_pgid, process_start_time, \
     last_error, output, handled, created_at, updated_at, stage, waits, waiting_service, waiting_since";

/// The body is read as bytes even if it was stored as text.
pub(crate) const DELIVERY_COLUMNS: &str =
    "id, source, delivery_id, event_type, CAST(body AS BLOB), received_at";

pub(crate) fn ts(millis: i64) -> Timestamp {
    Timestamp::from_millis(millis)
}

fn parse<T, E: std::fmt::Display>(what: &str, result: Result<T, E>) -> Result<T, Error> {
    result.map_err(|err| Error::corrupt(what, err))
}

fn optional<T, E: std::fmt::Display>(
    what: &str,
    value: Option<String>,
    make: impl FnOnce(String) -> Result<T, E>,
) -> Result<Option<T>, Error> {
    value.map(|value| parse(what, make(value))).transpose()
}

/// The stored name of a task status (its reason is a column of its own).
pub(crate) fn status_name(status: &TaskStatus) -> &'static str {
    status.name()
}

pub(crate) fn blocked_reason(status: &TaskStatus) -> Option<&str> {
    match status {
        TaskStatus::Blocked { reason } => Some(reason),
        _ => None,
    }
}

pub(crate) fn task(row: &Row<'_>) -> Result<Task, Error> {
    let status: String = row.get(11)?;
    let reason: Option<String> = row.get(12)?;
    let status = match status.as_str() {
        "working" => TaskStatus::Working,
        "awaiting_verdict" => TaskStatus::AwaitingVerdict,
        "blocked" => TaskStatus::Blocked {
            reason: reason.unwrap_or_default(),
        },
        other => return Err(Error::corrupt("task status", other)),
    };
    let pr: Option<i64> = row.get(14)?;
    let pr = pr
        .map(|number| {
            parse(
                "pr number",
                u64::try_from(number)
                    .map_err(|err| err.to_string())
                    .and_then(|n| PrNumber::new(n).map_err(|err| err.to_string())),
            )
        })
        .transpose()?;
    Ok(Task {
        id: TaskId(row.get(0)?),
        version: parse("task version", u64::try_from(row.get::<_, i64>(1)?))?,
        issue: parse("issue id", IssueId::new(row.get::<_, String>(2)?))?,
        project: parse("project id", ProjectId::new(row.get::<_, String>(3)?))?,
        work_item: parse("work item", WorkItemId::parse(&row.get::<_, String>(4)?))?,
        title: row.get(5)?,
        description: row.get(6)?,
        repo: parse("repo", RepoSlug::new(&row.get::<_, String>(7)?))?,
        base_branch: parse("base branch", BranchName::new(row.get::<_, String>(8)?))?,
        branch: parse("branch", BranchName::new(row.get::<_, String>(9)?))?,
        stage: parse("stage", Stage::from_str(&row.get::<_, String>(10)?))?,
        status,
        head_sha: optional("head sha", row.get(13)?, CommitSha::new)?,
        pr,
        fix_rounds: parse("fix rounds", u32::try_from(row.get::<_, i64>(15)?))?,
        review_rounds: parse("review rounds", u32::try_from(row.get::<_, i64>(16)?))?,
        last_fix_sha: optional("last fix sha", row.get(17)?, CommitSha::new)?,
        gate_opened_at: row.get::<_, Option<i64>>(18)?.map(ts),
        created_at: ts(row.get(19)?),
        updated_at: ts(row.get(20)?),
        sent_back_sha: optional("sent back sha", row.get(21)?, CommitSha::new)?,
        tracker_state: optional("tracker state", row.get(22)?, StateId::new)?,
        tracker_seen_at: row.get::<_, Option<i64>>(23)?.map(ts),
        verdicts_after: row.get::<_, Option<i64>>(24)?.map(ts),
        feedback_after: row.get::<_, Option<i64>>(25)?.map(ts),
    })
}

pub(crate) fn job(row: &Row<'_>) -> Result<Job, Error> {
    let action: Action = serde_json::from_str(&row.get::<_, String>(3)?)?;
    let status = parse("job status", JobStatus::from_str(&row.get::<_, String>(5)?))?;
    let attempt: Option<String> = row.get(8)?;
    let owner: Option<String> = row.get(9)?;
    let expires_at: Option<i64> = row.get(10)?;
    let heartbeat_at: Option<i64> = row.get(11)?;
    let lease = match (status, attempt, owner, expires_at, heartbeat_at) {
        (JobStatus::Running, Some(attempt), Some(owner), Some(expires_at), Some(heartbeat_at)) => {
            Some(Lease {
                owner: parse("lease owner", BootId::new(owner))?,
                attempt: parse("attempt id", AttemptId::new(attempt))?,
                expires_at: ts(expires_at),
                heartbeat_at: ts(heartbeat_at),
            })
        }
        _ => None,
    };
    let pid: Option<i64> = row.get(12)?;
    let pgid: Option<i64> = row.get(13)?;
    let start_time: Option<i64> = row.get(14)?;
    let process = match (pid, pgid, start_time) {
        (Some(pid), Some(pgid), Some(start_time)) => Some(ProcessRecord {
            pid: parse("pid", u32::try_from(pid))?,
            pgid: parse("pgid", u32::try_from(pgid))?,
            start_time: parse("process start time", u64::try_from(start_time))?,
        }),
        _ => None,
    };
    let output: Option<String> = row.get(16)?;
    let output: Option<JobOutput> = output.map(|text| serde_json::from_str(&text)).transpose()?;
    let service: Option<String> = row.get(22)?;
    let since: Option<i64> = row.get(23)?;
    let waiting = match (service, since) {
        (Some(service), Some(since)) => Some(Waiting {
            service: parse("waiting service", Service::from_str(&service))?,
            since: ts(since),
        }),
        _ => None,
    };
    Ok(Job {
        id: JobId(row.get(0)?),
        task: TaskId(row.get(1)?),
        repo: parse("repo", RepoSlug::new(&row.get::<_, String>(2)?))?,
        action,
        key: row.get(4)?,
        stage: parse("job stage", Stage::from_str(&row.get::<_, String>(20)?))?,
        status,
        attempts: parse("attempts", u32::try_from(row.get::<_, i64>(6)?))?,
        waits: parse("waits", u32::try_from(row.get::<_, i64>(21)?))?,
        waiting,
        not_before: ts(row.get(7)?),
        lease,
        process,
        last_error: row.get(15)?,
        output,
        handled: row.get(17)?,
        created_at: ts(row.get(18)?),
        updated_at: ts(row.get(19)?),
    })
}

pub(crate) fn delivery(row: &Row<'_>) -> Result<Delivery, Error> {
    let source: String = row.get(1)?;
    Ok(Delivery {
        id: row.get(0)?,
        source: Source::parse(&source).ok_or_else(|| Error::corrupt("inbox source", &source))?,
        delivery_id: row.get(2)?,
        event_type: row.get(3)?,
        body: row.get(4)?,
        received_at: ts(row.get(5)?),
    })
}

/// Runs `stmt` and reads every row with `read`.
pub(crate) fn collect<T>(
    stmt: &mut rusqlite::Statement<'_>,
    params: impl rusqlite::Params,
    read: impl Fn(&Row<'_>) -> Result<T, Error>,
) -> Result<Vec<T>, Error> {
    let mut rows = stmt.query(params)?;
    let mut out = Vec::new();
    while let Some(row) = rows.next()? {
        out.push(read(row)?);
    }
    Ok(out)
}
