//! Boot-time reaping of agent groups an earlier boot left behind.

use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};

use orch_agent::{process_record, reap_orphans, ReapOutcome};
use orch_core::domain::ProcessRecord;

use crate::{eventually, is_running};

/// Starts `sh -c script` in a group of its own, like an agent of an earlier boot, and
/// returns it with the pid the script prints first.
fn start_orphan(script: &str, with_agent_environment: bool) -> (Child, u32) {
    let agent: &[(&str, &std::ffi::OsStr)] = &[("ORCH_AGENT", "developer".as_ref())];
    start_in_own_group(script, if with_agent_environment { agent } else { &[] })
}

/// Starts `sh -c script` in a group of its own with `env` added, and returns it with the pid
/// the script prints first.
fn start_in_own_group(script: &str, env: &[(&str, &std::ffi::OsStr)]) -> (Child, u32) {
    let mut command = Command::new("/bin/sh");
    command
        .args(["-c", script])
        .process_group(0)
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::piped());
    let mut child = command.spawn().expect("sh starts");
    let stdout = child.stdout.take().expect("piped");
    let mut line = String::new();
    BufReader::new(stdout)
        .read_line(&mut line)
        .expect("the script prints a pid");
    let pid = line.trim().parse().expect("a pid");
    (child, pid)
}

fn record_of(child: &Child) -> ProcessRecord {
    process_record(child.id()).expect("the leader runs")
}

fn stop(mut child: Child, stray: u32) {
    let _ = Command::new("/bin/kill")
        .args(["-KILL", &stray.to_string()])
        .status();
    let _ = child.kill();
    let _ = child.wait();
}

#[tokio::test]
async fn an_orphan_group_from_a_previous_boot_is_killed() {
    let (mut leader, grandchild) = start_orphan("sleep 1000 & echo $!; wait", true);
    let record = record_of(&leader);

    let report = reap_orphans(&[record]);

    assert_eq!(report.entries.len(), 1);
    assert_eq!(report.entries[0].outcome, ReapOutcome::KilledGroup);
    assert_eq!(report.killed(), 1);
    let status = leader.wait().expect("the leader can be waited for");
    assert!(!status.success());
    assert!(
        eventually(|| !is_running(grandchild)).await,
        "the grandchild survived"
    );
}

#[tokio::test]
async fn a_record_whose_pid_was_reused_is_left_alone() {
    let (leader, grandchild) = start_orphan("sleep 1000 & echo $!; wait", true);
    let record = record_of(&leader);
    // The same pid with another start time is another process.
    let stale = ProcessRecord {
        start_time: record.start_time - 1,
        ..record
    };

    let report = reap_orphans(&[stale]);

    assert_eq!(report.entries[0].outcome, ReapOutcome::PidReused);
    assert_eq!(report.killed(), 0);
    assert!(
        is_running(leader.id()) && is_running(grandchild),
        "a reused pid was signalled"
    );
    stop(leader, grandchild);
}

#[tokio::test]
async fn members_of_a_group_whose_leader_died_are_killed() {
    let (mut leader, grandchild) = start_orphan("sleep 1000 > /dev/null & echo $!", true);
    let record = record_of(&leader);
    leader.wait().expect("the leader ends by itself");
    assert!(is_running(grandchild));

    let report = reap_orphans(&[record]);

    assert_eq!(
        report.entries[0].outcome,
        ReapOutcome::KilledMembers {
            pids: vec![grandchild]
        }
    );
    assert!(
        eventually(|| !is_running(grandchild)).await,
        "the member survived"
    );
}

#[tokio::test]
async fn members_without_the_agent_environment_are_left_alone() {
    let (mut leader, grandchild) = start_orphan("sleep 1000 > /dev/null & echo $!", false);
    let record = record_of(&leader);
    leader.wait().expect("the leader ends by itself");

    let report = reap_orphans(&[record]);

    assert_eq!(report.entries[0].outcome, ReapOutcome::Gone);
    assert!(
        is_running(grandchild),
        "a process that is not an agent was signalled"
    );
    let _ = Command::new("/bin/kill")
        .args(["-KILL", &grandchild.to_string()])
        .status();
}

#[tokio::test]
async fn a_group_that_ended_is_reported_gone() {
    let mut child = Command::new("/bin/sh")
        .args(["-c", "exit 0"])
        .process_group(0)
        .spawn()
        .expect("sh starts");
    let record = ProcessRecord {
        pid: child.id(),
        pgid: child.id(),
        start_time: 1,
    };
    child.wait().expect("sh ends");

    let report = reap_orphans(&[record]);

    assert_eq!(report.entries[0].outcome, ReapOutcome::Gone);
}

#[test]
fn orch_never_signals_its_own_group_or_init() {
    let own = process_record(std::process::id()).expect("this process exists");
    let records = [
        ProcessRecord {
            pid: own.pid,
            pgid: own.pgid,
            start_time: own.start_time,
        },
        ProcessRecord {
            pid: 1,
            pgid: 1,
            start_time: 0,
        },
        ProcessRecord {
            pid: 0,
            pgid: 0,
            start_time: 0,
        },
    ];
    let report = reap_orphans(&records);
    for entry in &report.entries {
        assert!(
            matches!(entry.outcome, ReapOutcome::Failed { .. }),
            "{entry:?}"
        );
    }
}

/// Starts `sh -c script` in a group of its own with `ORCH_INSTANCE={instance}`, like an
/// agent a boot spawned and died before recording; returns it with the pid it prints first.
fn start_unrecorded(script: &str, instance: &std::path::Path) -> (Child, u32) {
    start_in_own_group(
        script,
        &[(orch_agent::INSTANCE_VARIABLE, instance.as_os_str())],
    )
}

#[tokio::test]
async fn an_unrecorded_agent_of_this_instance_is_killed_and_another_instances_is_not() {
    let ours = tempfile::tempdir().unwrap();
    let theirs = tempfile::tempdir().unwrap();
    let (mut orphan, grandchild) =
        start_unrecorded("sleep 1000 & echo $!; wait", &ours.path().join("scratch"));
    let (other, other_grandchild) =
        start_unrecorded("sleep 1000 & echo $!; wait", &theirs.path().join("scratch"));

    let killed = orch_agent::reap_instance(&ours.path().join("scratch")).unwrap();

    assert!(killed.contains(&orphan.id()), "{killed:?}");
    assert!(!killed.contains(&other.id()), "{killed:?}");
    let status = orphan.wait().expect("the orphan can be waited for");
    assert!(!status.success());
    assert!(
        eventually(|| !is_running(grandchild)).await,
        "the orphan's grandchild survived"
    );
    assert!(is_running(other.id()) && is_running(other_grandchild));
    // A prefix of the marker is not the marker.
    assert!(orch_agent::reap_instance(theirs.path()).unwrap().is_empty());
    assert!(is_running(other.id()));
    stop(other, other_grandchild);
}
