//! The `orch` binary: parses the command line and runs one subcommand.
//!
//! Exit codes (SPEC §5.1): 0 ok, 1 runtime failure, 2 bad usage or bad config.

#![forbid(unsafe_code)]

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

use std::sync::Arc;

use tokio::signal::unix::{signal, SignalKind};

use orch_core::domain::Task;
use orch_core::ports::Clock;
use orch_core::reconciler::ReconcileMode;
use orch_core::Orchestrator;
use orch_daemon::systemd::SystemdNotifier;
use orch_daemon::task_logs::{self, TaskLogs};
use orch_daemon::telemetry::{self, LogFormat};
use orch_daemon::wiring::{self, Daemon, DaemonOptions, RunError, SystemClock};
use orch_daemon::{commands, config};
use orch_sqlite::SqliteStore;

#[derive(Debug, Parser)]
#[command(
    name = "orch",
    version,
    about = "Runs AI coding agents through a Plane and Gitea delivery pipeline"
)]
struct Cli {
    /// How log lines on stderr are written.
    #[arg(long, global = true, value_enum, default_value_t = LogFormatArg::Text)]
    log_format: LogFormatArg,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum LogFormatArg {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the daemon: webhooks, the event loop, the worker and the reconciler.
    Serve(ConfigArgs),
    /// Run the whole pipeline offline against built-in simulators, real git and SQLite.
    Demo(DemoArgs),
    /// Validate the configuration and report every error at once.
    Check(CheckArgs),
    /// Tasks by stage, jobs, blocked tasks and the reconciler; works while the daemon runs.
    Status(StatusArgs),
    /// Run one reconcile pass (F-1 and F-2).
    Reconcile(ReconcileArgs),
    /// Show, retry or cancel one task.
    #[command(subcommand)]
    Task(TaskCommand),
    /// Apply the database migrations and exit.
    Migrate(ConfigArgs),
    /// Write a consistent copy of the database to PATH; works while the daemon runs.
    Backup(BackupArgs),
    /// Print the generated configuration reference (docs/config.md) to stdout.
    #[command(hide = true)]
    ConfigReference,
    /// The scripted agent the demo runs (reads the ORCH_* agent contract variables).
    #[command(hide = true, name = "scripted-agent")]
    ScriptedAgent,
}

#[derive(Debug, Args)]
struct DemoArgs {
    /// How many work items to drive through the pipeline.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=50))]
    items: u32,
    /// Keep the simulators' repositories, the database and the logs in DIR.
    #[arg(long, value_name = "DIR")]
    keep: Option<PathBuf>,
    /// After the items end, keep the simulators and orch (its board at /) running, print the
    /// URL and an admin token to log in with, and stop on Ctrl-C (SIGINT or SIGTERM).
    #[arg(long)]
    board: bool,
}

#[derive(Debug, Args)]
struct BackupArgs {
    #[command(flatten)]
    config: ConfigArgs,
    /// Where the copy goes; it must not exist. Restore by putting the copy at
    /// `storage.db_path` while orch is stopped.
    path: PathBuf,
}

#[derive(Debug, Args)]
struct StatusArgs {
    #[command(flatten)]
    source: ReadArgs,
    /// Print JSON (the shape of GET /queue).
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
struct ReconcileArgs {
    #[command(flatten)]
    config: ConfigArgs,
    /// Run one pass and exit (the only mode; the daemon runs the loop).
    #[arg(long, required = true)]
    once: bool,
    /// Print what would be replayed and change nothing.
    #[arg(long)]
    dry_run: bool,
}

#[derive(Debug, Subcommand)]
enum TaskCommand {
    /// A task's state, history and jobs.
    Show(ShowArgs),
    /// The output of the task's agents, oldest first (from the data directory next to the
    /// database).
    Logs(LogsArgs),
    /// Run the task's stage agent again (through the running daemon, if there is one).
    Retry(TaskArgs),
    /// Cancel the task: stop its jobs, close its pull request, remove its worktree (through
    /// the running daemon, if there is one).
    Cancel(TaskArgs),
}

#[derive(Debug, Args)]
struct TaskArgs {
    #[command(flatten)]
    config: ConfigArgs,
    /// A work item id (ET-001) or a task number.
    id: String,
}

#[derive(Debug, Args)]
struct ShowArgs {
    #[command(flatten)]
    source: ReadArgs,
    /// A work item id (ET-001) or a task number.
    id: String,
}

#[derive(Debug, Args)]
struct LogsArgs {
    #[command(flatten)]
    source: ReadArgs,
    /// A work item id (ET-001) or a task number.
    id: String,
    /// Keep printing new output until the task has ended and its agents are done (or Ctrl-C).
    #[arg(long, short = 'f')]
    follow: bool,
}

/// For the commands that only read the database: `--db`, else the config's
/// `storage.db_path` (the config's secrets are not read).
#[derive(Debug, Args)]
struct ReadArgs {
    #[command(flatten)]
    config: ConfigArgs,
    /// The database file; the config file is then not read at all.
    #[arg(long, value_name = "PATH", conflicts_with = "config")]
    db: Option<PathBuf>,
}

/// Where the config file is: `--config`, else `$ORCH_CONFIG`, else `./orch.toml`.
#[derive(Debug, Args)]
struct ConfigArgs {
    /// The config file (default: $ORCH_CONFIG, else ./orch.toml).
    #[arg(long, value_name = "PATH")]
    config: Option<PathBuf>,
}

#[derive(Debug, Args)]
struct CheckArgs {
    #[command(flatten)]
    config: ConfigArgs,
    /// Also reach Plane (users/me, each project's states), Gitea (each repository) and
    /// Telegram (getMe). Exit 2 if a setting is wrong, 1 if a system is unreachable and
    /// no setting is wrong.
    #[arg(long)]
    online: bool,
    /// Validate the file only: do not start the sandbox or the agents' programs (by default
    /// each role's program is started in the sandbox with its probe, and a failure exits 2).
    #[arg(long)]
    no_probe: bool,
}

/// How a command failed, which decides the exit code.
#[derive(Debug)]
enum Failure {
    /// Bad usage or bad config: exit 2. The text is printed as is, one error per line.
    Usage(String),
    /// Anything that went wrong while running: exit 1.
    Runtime(String),
}

fn main() -> ExitCode {
    orch_daemon::failpoint::install();
    let cli = Cli::parse();
    if let Command::ScriptedAgent = cli.command {
        // Not orch but the demo's agent: orch reads its environment to reap it.
        return orch_sim::agent::run_from_env();
    }
    // Before any secret is read: other processes of orch's user (an agent running with
    // `sandbox = "none"`) can neither read orch's environment or memory nor ptrace it.
    let dumpable = nix::sys::prctl::set_dumpable(false);
    let format = match cli.log_format {
        LogFormatArg::Text => LogFormat::Text,
        LogFormatArg::Json => LogFormat::Json,
    };
    let default_filter = if matches!(cli.command, Command::Demo(_)) {
        "warn"
    } else {
        "info"
    };
    telemetry::init_subscriber(telemetry::get_subscriber(
        default_filter,
        format,
        telemetry::Colour::for_stderr(),
    ));
    if let Err(err) = dumpable {
        tracing::debug!(error = %err, "cannot make the process non-dumpable");
    }
    let outcome = match cli.command {
        Command::Check(args) => check(&args),
        Command::ConfigReference => config_reference(),
        Command::Serve(args) => block_on(serve(&args)),
        Command::Demo(args) => block_on(demo(&args)),
        Command::Status(args) => block_on(status(&args)),
        Command::Reconcile(args) => block_on(reconcile(&args)),
        Command::Task(command) => block_on(task(command)),
        Command::Migrate(args) => migrate(&args),
        Command::Backup(args) => backup(&args),
        Command::ScriptedAgent => Ok(()),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            let (code, text) = match failure {
                Failure::Usage(text) => (2, text),
                Failure::Runtime(text) => (1, text),
            };
            // Nothing more can be done if stderr is gone; the exit code still tells.
            let _ = writeln!(std::io::stderr().lock(), "{text}");
            ExitCode::from(code)
        }
    }
}

fn block_on<T>(work: impl std::future::Future<Output = Result<T, Failure>>) -> Result<T, Failure> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|err| Failure::Runtime(format!("cannot start the async runtime: {err}")))?;
    runtime.block_on(work)
}

async fn serve(args: &ConfigArgs) -> Result<(), Failure> {
    let (path, loaded) = load_config(args)?;
    let systemd = Arc::new(SystemdNotifier::from_env());
    let alive_every = systemd.alive_every();
    let options = DaemonOptions {
        observer: Some(systemd.clone()),
        tune: Some(Box::new(move |settings| settings.alive_every = alive_every)),
        ..DaemonOptions::default()
    };
    let daemon = Daemon::start(&loaded, options).await.map_err(run_failure)?;
    // Migrated, the loops running, the server listening.
    systemd.ready();
    let mut terminate = signal(SignalKind::terminate()).map_err(signal_failure)?;
    let mut interrupt = signal(SignalKind::interrupt()).map_err(signal_failure)?;
    let mut hangup = signal(SignalKind::hangup()).map_err(signal_failure)?;
    loop {
        tokio::select! {
            _ = terminate.recv() => break,
            _ = interrupt.recv() => break,
            _ = hangup.recv() => {
                systemd.reloading();
                match config::load(&path, &config::process_env()) {
                    Ok(reloaded) => {
                        if let Err(err) = daemon.reload(&reloaded).await {
                            tracing::error!(error = %err, "config reload refused; keeping the last good config");
                        }
                    }
                    Err(errors) => tracing::error!(errors = %errors, "config reload refused; keeping the last good config"),
                }
                systemd.ready();
            }
        }
    }
    tracing::info!("shutting down");
    systemd.stopping();
    daemon.shutdown().await;
    Ok(())
}

async fn demo(args: &DemoArgs) -> Result<(), Failure> {
    let options = orch_daemon::demo::DemoOptions {
        items: args.items,
        keep: args.keep.clone(),
        board: args.board,
    };
    // With --board, the handlers are installed before the demo starts, so a Ctrl-C at any
    // time stops it cleanly once the items have ended. Without it, no handler is installed
    // and Ctrl-C ends the process as usual.
    let until: std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>> = if args.board {
        let mut interrupt = signal(SignalKind::interrupt()).map_err(signal_failure)?;
        let mut terminate = signal(SignalKind::terminate()).map_err(signal_failure)?;
        Box::pin(async move {
            tokio::select! {
                _ = interrupt.recv() => {}
                _ = terminate.recv() => {}
            }
        })
    } else {
        Box::pin(std::future::pending())
    };
    let stdout: orch_daemon::demo::Output = Arc::new(std::sync::Mutex::new(std::io::stdout()));
    let summary = orch_daemon::demo::run(options, stdout, until)
        .await
        .map_err(|err| Failure::Runtime(err.to_string()))?;
    if summary.all_merged() {
        Ok(())
    } else {
        Err(Failure::Runtime(format!(
            "demo: {} of {} items merged",
            summary.merged(),
            summary.items.len()
        )))
    }
}

async fn status(args: &StatusArgs) -> Result<(), Failure> {
    let source = read_source(&args.source)?;
    let store = SqliteStore::open(&source.db_path).map_err(store_failure)?;
    let view = commands::status_view(&store, SystemClock.now())
        .await
        .map_err(|err| Failure::Runtime(err.to_string()))?;
    if args.json {
        let json = commands::status_json(&view, source.reconcile.as_ref());
        print_stdout(&format!("{json:#}\n"))
    } else {
        print_stdout(&commands::status_text(&view))
    }
}

/// The database a read-only command reads, and the reconciler's settings when a config
/// file gave it.
struct ReadSource {
    db_path: PathBuf,
    reconcile: Option<config::ReconcileConfig>,
}

/// Reading never creates a database: a path with none is a mistake to report.
fn read_source(args: &ReadArgs) -> Result<ReadSource, Failure> {
    let source = match &args.db {
        Some(db_path) => ReadSource {
            db_path: db_path.clone(),
            reconcile: None,
        },
        None => {
            let env = config::process_env();
            let path = config::resolve_path(args.config.config.as_deref(), &env);
            let loaded = config::load_for_reading(&path, &env)
                .map_err(|errors| Failure::Usage(errors.to_string()))?;
            ReadSource {
                db_path: loaded.db_path,
                reconcile: Some(loaded.reconcile),
            }
        }
    };
    if !source.db_path.is_file() {
        return Err(Failure::Usage(format!(
            "no database at {} (orch serve creates it)",
            source.db_path.display()
        )));
    }
    Ok(source)
}

/// The task `id` names in the database, with the store it was read from.
async fn read_task(db_path: &Path, id: &str) -> Result<(SqliteStore, Task), Failure> {
    let store = SqliteStore::open(db_path).map_err(store_failure)?;
    let found = commands::find_task(&store, id)
        .await
        .map_err(|err| Failure::Runtime(err.to_string()))?;
    match found {
        Some(task) => Ok((store, task)),
        None => Err(no_task(id)),
    }
}

fn no_task(id: &str) -> Failure {
    Failure::Usage(format!(
        "task: no task {id:?} (give a work item id like ET-001 or a task number)"
    ))
}

async fn task_logs(args: &LogsArgs) -> Result<(), Failure> {
    let source = read_source(&args.source)?;
    let (store, task) = read_task(&source.db_path, &args.id).await?;
    let work_item = task.work_item.clone();
    let mut logs = TaskLogs::new(task_logs::logs_dir(&source.db_path), task);
    let mut stdout = std::io::stdout();
    let shown = if args.follow {
        logs.follow(&store, &mut stdout).await
    } else {
        logs.write_new(&store, &mut stdout).await.map(drop)
    };
    shown.map_err(|err| Failure::Runtime(format!("task logs: {err}")))?;
    if logs.nothing_found() {
        print_stdout(&format!("{work_item}: no agent has written a log yet\n"))?;
    }
    Ok(())
}

async fn reconcile(args: &ReconcileArgs) -> Result<(), Failure> {
    let (_, loaded) = load_config(&args.config)?;
    let (mode, store) = if args.dry_run {
        (
            ReconcileMode::DryRun,
            SqliteStore::open(&loaded.storage.db_path),
        )
    } else {
        (
            ReconcileMode::Apply,
            SqliteStore::open_exclusive(&loaded.storage.db_path),
        )
    };
    let store = Arc::new(store.map_err(store_failure)?);
    let ports = wiring::build_ports(&loaded, store).map_err(run_failure)?;
    let orchestrator = Arc::new(Orchestrator::new(ports.clone(), loaded.pipeline()));
    let report = commands::reconcile_once(ports, &loaded, orchestrator, mode).await;
    print_stdout(&commands::pass_text(&report, mode))
}

async fn task(command: TaskCommand) -> Result<(), Failure> {
    let (args, action) = match &command {
        TaskCommand::Show(args) => {
            let source = read_source(&args.source)?;
            let (store, task) = read_task(&source.db_path, &args.id).await?;
            let text = commands::task_text(&store, &task)
                .await
                .map_err(|err| Failure::Runtime(err.to_string()))?;
            return print_stdout(&text);
        }
        TaskCommand::Logs(args) => return task_logs(args).await,
        TaskCommand::Retry(args) => (args, commands::AdminCommand::Retry),
        TaskCommand::Cancel(args) => (args, commands::AdminCommand::Cancel),
    };
    let (_, loaded) = load_config(&args.config)?;
    let store = match SqliteStore::open_exclusive(&loaded.storage.db_path) {
        // The daemon runs: the command must go through its serial event loop.
        Err(orch_sqlite::OpenError::Locked { .. }) => {
            return task_through_daemon(&loaded, action, &args.id).await;
        }
        other => other,
    };
    let store = Arc::new(store.map_err(store_failure)?);
    let found = commands::find_task(store.as_ref(), &args.id)
        .await
        .map_err(|err| Failure::Runtime(err.to_string()))?;
    let Some(found) = found else {
        return Err(no_task(&args.id));
    };
    let ports = wiring::build_ports(&loaded, store).map_err(run_failure)?;
    let orchestrator = Orchestrator::new(ports, loaded.pipeline());
    let text = commands::admin(&orchestrator, action.event(found.id))
        .await
        .map_err(|err| Failure::Runtime(err.to_string()))?;
    print_stdout(&format!(
        "{}: {text} (the daemon runs the jobs when it starts)\n",
        found.work_item
    ))
}

/// `orch task retry|cancel` while the daemon holds the database: sent over its admin socket
/// `{db_path}.sock` (no token: the socket is for the daemon's user only), handled by its
/// event loop.
async fn task_through_daemon(
    loaded: &config::Config,
    action: commands::AdminCommand,
    id: &str,
) -> Result<(), Failure> {
    let client = commands::DaemonClient::for_database(&loaded.storage.db_path);
    match client.send(action, id).await {
        Ok(answer) => print_stdout(&format!(
            "{}: {} (handled by the running daemon)\n",
            answer.task,
            commands::handled_text(answer.changed, &answer.note),
        )),
        Err(err) if err.is_usage() => Err(Failure::Usage(format!("task: {err}"))),
        Err(err @ commands::RemoteError::Unreachable { .. }) => Err(Failure::Runtime(format!(
            "task: the database is locked by another orch process, and {err}"
        ))),
        Err(err) => Err(Failure::Runtime(format!("task: {err}"))),
    }
}

fn migrate(args: &ConfigArgs) -> Result<(), Failure> {
    let (_, loaded) = load_config(args)?;
    let migrated = orch_sqlite::migrate(&loaded.storage.db_path).map_err(store_failure)?;
    print_stdout(&format!(
        "database {}: {migrated:?}\n",
        loaded.storage.db_path.display()
    ))
}

fn backup(args: &BackupArgs) -> Result<(), Failure> {
    let (_, loaded) = load_config(&args.config)?;
    let db_path = &loaded.storage.db_path;
    let written = orch_sqlite::backup(db_path, &args.path).map_err(|err| match err {
        orch_sqlite::BackupError::Exists(_) => Failure::Usage(format!("backup: {err}")),
        other => Failure::Runtime(format!("backup: {}", error_chain(&other))),
    })?;
    print_stdout(&format!(
        "database {} backed up to {}: {} bytes, schema version {}, in {} ms\n",
        db_path.display(),
        written.path.display(),
        written.bytes,
        written.schema_version,
        written.duration.as_millis()
    ))
}

fn run_failure(err: RunError) -> Failure {
    Failure::Runtime(format!("orch: {}", error_chain(&err)))
}

fn store_failure(err: orch_sqlite::OpenError) -> Failure {
    Failure::Runtime(format!("orch: {}", error_chain(&err)))
}

fn signal_failure(err: std::io::Error) -> Failure {
    Failure::Runtime(format!("orch: cannot install signal handlers: {err}"))
}

/// An error with its sources, `a: b: c`.
fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// Loads the config named by `args` with this process's `ORCH_*` environment.
fn load_config(args: &ConfigArgs) -> Result<(PathBuf, config::Config), Failure> {
    let env = config::process_env();
    let path = config::resolve_path(args.config.as_deref(), &env);
    let loaded = config::load(&path, &env).map_err(|errors| Failure::Usage(errors.to_string()))?;
    Ok((path, loaded))
}

fn check(args: &CheckArgs) -> Result<(), Failure> {
    let env = config::process_env();
    let path = config::resolve_path(args.config.config.as_deref(), &env);
    let (loaded, secret_files) = config::load_with_secret_files(&path, &env)
        .map_err(|errors| Failure::Usage(errors.to_string()))?;
    print_warnings(&config::permission_warnings(&secret_files));
    let projects: Vec<&str> = loaded
        .projects
        .iter()
        .map(|project| project.key.as_str())
        .collect();
    let telegram = if loaded.telegram.is_some() {
        "telegram on"
    } else {
        "telegram off (notifications logged)"
    };
    print_stdout(&format!(
        "config ok: {} ({} project(s): {}; listen {}; {telegram})\n",
        path.display(),
        projects.len(),
        projects.join(", "),
        loaded.server.listen,
    ))?;
    print_warnings(&orch_daemon::agent_check::config_warnings(&loaded));
    // Every problem of the machine, then of the agents, then online: one report.
    let path_var = std::env::var_os("PATH");
    let mut agent_problems = orch_daemon::preflight::check_machine(&loaded, path_var.as_deref());
    agent_problems.extend(if args.no_probe {
        Vec::new()
    } else {
        let agents = block_on(async { Ok(orch_daemon::agent_check::check_agents(&loaded).await) })?;
        print_warnings(&agents.warnings);
        print_stdout(
            &agents
                .ok
                .iter()
                .map(|line| format!("{line}\n"))
                .collect::<String>(),
        )?;
        agents.problems
    });
    if !args.online {
        return match agent_problems.is_empty() {
            true => Ok(()),
            false => Err(Failure::Usage(agent_problems.join("\n"))),
        };
    }
    let report = block_on(async {
        Ok(
            orch_daemon::online::check(&loaded, orch_daemon::online::OnlineOptions::default())
                .await,
        )
    })?;
    let mut ok_lines = String::new();
    for line in &report.ok {
        ok_lines.push_str(line);
        ok_lines.push('\n');
    }
    print_stdout(&ok_lines)?;
    let agents_failed = !agent_problems.is_empty();
    let problems = agent_problems
        .into_iter()
        .chain(
            report
                .problems
                .iter()
                .map(|problem| format!("online: {problem}")),
        )
        .collect::<Vec<_>>()
        .join("\n");
    match report.worst() {
        _ if agents_failed => Err(Failure::Usage(problems)),
        None => Ok(()),
        Some(orch_daemon::online::ProblemKind::Config) => Err(Failure::Usage(problems)),
        Some(orch_daemon::online::ProblemKind::Unreachable) => Err(Failure::Runtime(problems)),
    }
}

/// Writes each warning to stderr as `warning: …`; they never change the exit code.
fn print_warnings(warnings: &[String]) {
    let mut stderr = std::io::stderr().lock();
    for warning in warnings {
        // Nothing more can be done if stderr is gone.
        let _ = writeln!(stderr, "warning: {warning}");
    }
}

fn config_reference() -> Result<(), Failure> {
    print_stdout(&config::reference_markdown())
}

fn print_stdout(text: &str) -> Result<(), Failure> {
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
        .map_err(|err| Failure::Runtime(format!("cannot write to stdout: {err}")))
}
