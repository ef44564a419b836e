//! `launch`: the one place an agent process is started, for runs and for `orch check`'s
//! probes alike, with or without a sandbox; and `Unit`, what orch signals to end it.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use nix::errno::Errno;
use nix::sys::signal::{kill, killpg, Signal};
use nix::unistd::Pid;
use orch_core::ports::SandboxMount;
use tokio::process::{Child, Command};

use crate::config::{AgentSandbox, SandboxPath};
use crate::procfs::{children, group_members};
use crate::reap::safe_group;
use crate::sandbox::{self, Isolation, View, ViewRequest};

/// `setpriv` (util-linux) drops every capability before an unsandboxed agent starts.
const SETPRIV: &str = "setpriv";
const SETPRIV_ARGS: [&str; 5] = [
    "--bounding-set=-all",
    "--inh-caps=-all",
    "--ambient-caps=-all",
    "--no-new-privs",
    "--",
];
/// `nice` (coreutils) starts agents at a lower CPU priority than orch's.
const NICE: &str = "nice";

/// Everything one agent process is started with.
#[derive(Debug, Clone)]
pub(crate) struct LaunchSpec<'a> {
    pub(crate) sandbox: &'a AgentSandbox,
    /// The program as configured (a name found on the agent's `PATH`, or a path).
    pub(crate) program: &'a str,
    /// What the program is started with.
    pub(crate) args: &'a [String],
    /// The configured command's arguments, whose absolute paths the sandbox shows (for a
    /// probe they differ from `args`).
    pub(crate) command_args: &'a [String],
    /// The whole environment; `PATH` in it is where the program is looked up.
    pub(crate) env: BTreeMap<String, OsString>,
    /// The worktree: the working directory.
    pub(crate) worktree: &'a Path,
    pub(crate) output_dir: &'a Path,
    /// The private home (the sandbox's `HOME`).
    pub(crate) home: &'a Path,
    pub(crate) run_dir: Option<&'a Path>,
    pub(crate) analysis_file: Option<&'a Path>,
    pub(crate) worktree_mounts: &'a [SandboxMount],
    pub(crate) network: bool,
    pub(crate) read_only_paths: &'a [SandboxPath],
    pub(crate) writable_paths: &'a [SandboxPath],
    pub(crate) protected: &'a [PathBuf],
    /// Added to orch's niceness for the process (through `nice`); 0 starts it at orch's.
    pub(crate) nice: u8,
}

/// A started agent process and how to end it.
pub(crate) struct Launched {
    pub(crate) child: Child,
    pub(crate) unit: Option<Unit>,
    /// What the sandbox leaves out, and why.
    pub(crate) notes: Vec<String>,
}

/// An agent's command, built and checked, not started yet.
pub(crate) struct Planned {
    command: Command,
    /// The program as configured, for errors.
    program: String,
    sandboxed: bool,
    /// What the sandbox leaves out, and why.
    notes: Vec<String>,
}

/// Starts the agent of `spec` with stdin, stdout and stderr piped, in a process group of its
/// own, never killed by a drop. `Err` says why it could not start (nothing was started).
///
/// With `AgentSandbox::Bwrap` the process is `bwrap`, which runs the agent in a new PID
/// namespace: when the agent ends, everything it started ends with it (`setsid` escapes
/// nothing), and when `bwrap` dies (orch killed it, or orch itself died: `--die-with-parent`)
/// the whole sandbox dies. Without a sandbox, an orch holding capabilities starts the agent
/// through `setpriv` with none of them.
pub(crate) fn launch(spec: LaunchSpec<'_>) -> Result<Launched, String> {
    plan(spec)?.spawn()
}

/// Everything of `launch` but the spawn: finds the programs, checks the worktree, computes the
/// sandbox's view. It only reads the file system, so it may run on a blocking thread.
pub(crate) fn plan(spec: LaunchSpec<'_>) -> Result<Planned, String> {
    let search_path = spec.env.get("PATH").cloned();
    let program = sandbox::find_program(spec.program, search_path.as_deref())?;
    if !spec.worktree.is_dir() {
        return Err(format!(
            "{}: the worktree is not a directory",
            spec.worktree.display()
        ));
    }
    let privileged = sandbox::orch_is_privileged();
    let (program_to_run, args, notes, sandboxed): (PathBuf, Vec<OsString>, _, _) = match spec
        .sandbox
    {
        AgentSandbox::Bwrap { program: bwrap } => {
            let bwrap = sandbox::find_bwrap(bwrap.as_deref())?;
            let real_home = std::env::var_os("HOME").map(PathBuf::from);
            let view = sandbox::view(&ViewRequest {
                program: &program,
                args: spec.command_args,
                worktree: spec.worktree,
                output_dir: spec.output_dir,
                home: spec.home,
                run_dir: spec.run_dir,
                analysis_file: spec.analysis_file,
                worktree_mounts: spec.worktree_mounts,
                read_only_paths: spec.read_only_paths,
                writable_paths: spec.writable_paths,
                real_home: real_home.as_deref(),
                search_path: search_path.as_deref(),
                protected: spec.protected,
            })?;
            let args = sandbox::bwrap_args(
                &view,
                Isolation {
                    network: spec.network,
                    privileged,
                },
                spec.worktree,
                &program,
                spec.args,
            );
            let View { notes, .. } = view;
            (bwrap, args, notes, true)
        }
        AgentSandbox::None if privileged => {
            let setpriv = sandbox::find_program(SETPRIV, search_path.as_deref())
                .or_else(|_| sandbox::find_program(&format!("/usr/bin/{SETPRIV}"), None))
                .map_err(|err| {
                    format!("{err}: orch holds capabilities (it runs as root) and needs setpriv (util-linux) to start agents without them")
                })?;
            let args = SETPRIV_ARGS
                .iter()
                .map(OsString::from)
                .chain([program.into_os_string()])
                .chain(spec.args.iter().map(OsString::from))
                .collect();
            (setpriv, args, Vec::new(), false)
        }
        AgentSandbox::None => {
            let args = spec.args.iter().map(OsString::from).collect();
            (program, args, Vec::new(), false)
        }
    };
    let mut command = match spec.nice {
        0 => Command::new(program_to_run),
        nice => {
            // `nice` execs the sandbox (or the agent) unchanged: only its CPU priority differs.
            let nice_program = sandbox::find_system_program(NICE).map_err(|err| {
                format!("{err}: agents.nice needs nice (coreutils); agents.nice = 0 starts agents without it")
            })?;
            let mut command = Command::new(nice_program);
            command.arg("-n").arg(nice.to_string()).arg(program_to_run);
            command
        }
    };
    command
        .args(args)
        .env_clear()
        .envs(&spec.env)
        .current_dir(spec.worktree)
        .process_group(0)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(false);
    Ok(Planned {
        command,
        program: spec.program.to_owned(),
        sandboxed,
        notes,
    })
}

impl Planned {
    /// Starts the planned process. `--die-with-parent` ties a sandbox to the *thread* that
    /// spawns it (Linux's parent-death signal): call this on a thread that lives as long as
    /// orch (a runtime worker), never on a blocking-pool thread, which ends when idle.
    pub(crate) fn spawn(self) -> Result<Launched, String> {
        let Planned {
            mut command,
            program,
            sandboxed,
            notes,
        } = self;
        let child = command.spawn().map_err(|err| format!("{program}: {err}"))?;
        // `process_group(0)` made the child the leader of a group named by its pid.
        let unit = child.id().and_then(safe_group).map(|leader| {
            if sandboxed {
                Unit::Sandbox { outer: leader }
            } else {
                Unit::Group(leader)
            }
        });
        Ok(Launched { child, unit, notes })
    }
}

/// What orch signals to end an agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Unit {
    /// The agent's process group (no sandbox).
    Group(Pid),
    /// `bwrap`, the group leader outside the sandbox. Inside, bwrap's init (pid 1 of the
    /// namespace, its only child) leads the session the agent runs in.
    Sandbox { outer: Pid },
}

impl Unit {
    /// Asks the agent to end: SIGTERM to its group. In a sandbox the signal goes to the
    /// session inside (the namespace's init ignores it, the agent gets it). While `bwrap` is
    /// still setting the sandbox up there is no session yet, and nothing is sent: `bwrap`
    /// must not die before the namespace's init has tied itself to it (`--die-with-parent`),
    /// or the sandbox would outlive it. `kill` after the grace ends it in any case.
    pub(crate) fn terminate(self) {
        match self {
            Unit::Group(group) => signal_group(group, Signal::SIGTERM),
            Unit::Sandbox { outer } => match inner_init(outer) {
                Some(init) => signal_group(init, Signal::SIGTERM),
                None => tracing::debug!("sandbox not set up yet; it gets sigkill after the grace"),
            },
        }
    }

    /// Ends everything: SIGKILL to the group; in a sandbox, to the namespace's init first (the
    /// kernel then kills every process of the namespace, and `bwrap` exits), then to `bwrap`.
    pub(crate) fn kill(self) {
        match self {
            Unit::Group(group) => signal_group(group, Signal::SIGKILL),
            Unit::Sandbox { outer } => {
                if let Some(init) = inner_init(outer) {
                    signal_process(init, Signal::SIGKILL);
                }
                signal_group(outer, Signal::SIGKILL);
            }
        }
    }

    /// Whether nothing of the agent runs any more. Linux does not reuse a pid that is still a
    /// group's id, so this holds even after the leader is reaped. Zombies count as ended.
    /// A sandbox has ended when `bwrap` has: it exits only after its namespace is empty.
    pub(crate) fn has_ended(self) -> bool {
        let group = match self {
            Unit::Group(group) | Unit::Sandbox { outer: group } => group,
        };
        if matches!(killpg(group, None), Err(Errno::ESRCH)) {
            return true;
        }
        let Ok(pgid) = u32::try_from(group.as_raw()) else {
            return true;
        };
        group_members(pgid)
            .map(|members| members.is_empty())
            .unwrap_or(false)
    }
}

/// The sandbox's init: `bwrap`'s only child.
fn inner_init(outer: Pid) -> Option<Pid> {
    let pid = u32::try_from(outer.as_raw()).ok()?;
    let child = children(pid).into_iter().next()?;
    safe_group(child)
}

fn signal_group(group: Pid, signal: Signal) {
    match killpg(group, signal) {
        Ok(()) | Err(Errno::ESRCH) => {}
        Err(errno) => {
            tracing::warn!(error = %errno, signal = %signal, "signalling the agent group failed")
        }
    }
}

fn signal_process(pid: Pid, signal: Signal) {
    match kill(pid, signal) {
        Ok(()) | Err(Errno::ESRCH) => {}
        Err(errno) => {
            tracing::warn!(error = %errno, signal = %signal, "signalling the agent sandbox failed")
        }
    }
}
