//! The scripted agent: a stand-in for Claude Code that follows the agent contract.
//!
//! It reads the `ORCH_*` variables of SPEC §5.4 and the prompt on stdin, then does its role's
//! job: the analyst writes `analysis.md`, the developer changes `work/{ORCH_TASK}.md` in the
//! worktree and commits it with git, the reviewer writes `review.md` and `verdict`. A JSON
//! script named by `SIM_AGENT_SCRIPT` (see `Script`) makes it misbehave per work item: fail N
//! times, hang, run for a while, request changes, make CI fail once, leave its change
//! uncommitted, or touch a shared file to provoke a merge conflict. Cross-run counters live
//! in `SIM_AGENT_STATE_DIR` (default: `{script}.state` beside the script).
//!
//! `run_from_env` blocks (it may sleep forever); call it outside any async runtime, as the
//! `orch-scripted-agent` binary and `orch`'s hidden subcommand do.

mod script;

use std::io::{Read, Write};
use std::path::{Component, Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::{Duration, Instant};

pub use script::{Behaviour, Counters, ItemScript, Role, Script};

/// Names of the variables the scripted agent reads beyond the agent contract.
pub const SCRIPT_VAR: &str = "SIM_AGENT_SCRIPT";
pub const STATE_DIR_VAR: &str = "SIM_AGENT_STATE_DIR";

/// The file whose presence at the head makes the simulated CI fail.
pub const CI_FAIL_FILE: &str = "CI_FAIL";

/// Exit code of a run that failed on purpose or because its work failed.
const EXIT_FAILED: u8 = 1;
/// Exit code of a run that could not understand its environment or script.
const EXIT_USAGE: u8 = 2;

/// How often a long run prints a progress line.
const PROGRESS_EVERY: Duration = Duration::from_secs(1);

/// The commit identity of the scripted agent's own commits.
const AGENT_NAME: &str = "scripted agent";
const AGENT_EMAIL: &str = "agent@localhost";

/// Runs the scripted agent with this process's environment, stdin and working directory.
pub fn run_from_env() -> ExitCode {
    let env = match AgentEnv::from_process() {
        Ok(env) => env,
        Err(message) => {
            report_error(&format!("scripted agent: {message}"));
            return ExitCode::from(EXIT_USAGE);
        }
    };
    match run(&env) {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Usage(message)) => {
            report_error(&format!("scripted agent: {message}"));
            ExitCode::from(EXIT_USAGE)
        }
        Err(Failure::Failed(message)) => {
            report_error(&format!("scripted agent: {message}"));
            ExitCode::from(EXIT_FAILED)
        }
    }
}

/// Everything one run reads from its environment.
#[derive(Debug)]
struct AgentEnv {
    role: Role,
    task: String,
    worktree: PathBuf,
    output_dir: PathBuf,
    title: String,
    base_branch: String,
    attempt: String,
    feedback: Option<String>,
    prompt: String,
    script: Script,
    counters: Counters,
}

#[derive(Debug)]
enum Failure {
    Usage(String),
    Failed(String),
}

impl AgentEnv {
    fn from_process() -> Result<AgentEnv, String> {
        // The prompt arrives on stdin: read it first, so the writer never sees a broken pipe.
        // A closed or unreadable stdin falls back to the prompt file.
        let mut prompt = String::new();
        let _ = std::io::stdin().read_to_string(&mut prompt);
        let var = |name: &str| std::env::var(name).ok().filter(|value| !value.is_empty());
        let required = |name: &str| var(name).ok_or_else(|| format!("{name} is not set"));

        let role_text = required("ORCH_AGENT")?;
        let role =
            Role::parse(&role_text).ok_or_else(|| format!("unknown ORCH_AGENT {role_text:?}"))?;
        let task = required("ORCH_TASK")?;
        if !task
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(format!("ORCH_TASK {task:?} is not a work item id"));
        }
        let worktree = match var("ORCH_WORKTREE") {
            Some(path) => PathBuf::from(path),
            None => std::env::current_dir().map_err(|err| format!("current directory: {err}"))?,
        };
        let output_dir = PathBuf::from(required("ORCH_OUTPUT_DIR")?);
        let feedback = match var("ORCH_FEEDBACK_FILE") {
            Some(path) => Some(
                std::fs::read_to_string(&path)
                    .map_err(|err| format!("read ORCH_FEEDBACK_FILE {path}: {err}"))?,
            ),
            None => None,
        };
        if prompt.is_empty() {
            if let Some(path) = var("ORCH_PROMPT_FILE") {
                prompt = std::fs::read_to_string(&path)
                    .map_err(|err| format!("read ORCH_PROMPT_FILE {path}: {err}"))?;
            }
        }
        let script_path = var(SCRIPT_VAR).map(PathBuf::from);
        let script = match &script_path {
            Some(path) => Script::load(path)?,
            None => Script::default(),
        };
        let state_dir = var(STATE_DIR_VAR).map(PathBuf::from).or_else(|| {
            script_path.map(|path| {
                let mut dir = path.into_os_string();
                dir.push(".state");
                PathBuf::from(dir)
            })
        });
        Ok(AgentEnv {
            role,
            task,
            worktree,
            output_dir,
            title: var("ORCH_TITLE").unwrap_or_default(),
            base_branch: var("ORCH_BASE_BRANCH").unwrap_or_else(|| "main".to_owned()),
            attempt: var("ORCH_ATTEMPT").unwrap_or_else(|| "1".to_owned()),
            feedback,
            prompt,
            script,
            counters: Counters::new(state_dir),
        })
    }

    fn behaviour(&self) -> &Behaviour {
        self.script.item(&self.task).role(self.role)
    }
}

fn run(env: &AgentEnv) -> Result<(), Failure> {
    let behaviour = env.behaviour();
    let runs = env
        .counters
        .bump(&env.task, env.role, "runs")
        .map_err(Failure::Usage)?;
    say(&format!(
        "scripted {} for {} (run {}, attempt {}, prompt {} bytes)",
        env.role.as_str(),
        env.task,
        runs + 1,
        env.attempt,
        env.prompt.len()
    ));
    if runs < behaviour.fail_times {
        return Err(Failure::Failed(format!(
            "scripted failure {} of {}",
            runs + 1,
            behaviour.fail_times
        )));
    }
    if behaviour.hang || runs - behaviour.fail_times < behaviour.hang_times {
        say("hanging");
        loop {
            std::thread::sleep(Duration::from_secs(3600));
        }
    }
    if behaviour.run_for_ms > 0 {
        let deadline = Instant::now() + Duration::from_millis(behaviour.run_for_ms);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            std::thread::sleep(left.min(PROGRESS_EVERY));
            say("working");
        }
    }
    let worked = env
        .counters
        .bump(&env.task, env.role, "worked")
        .map_err(Failure::Usage)?;
    match env.role {
        Role::Analyst => analyse(env, behaviour),
        Role::Developer => develop(env, behaviour, worked),
        Role::Reviewer => review(env, behaviour, worked),
    }?;
    say("done");
    Ok(())
}

fn analyse(env: &AgentEnv, behaviour: &Behaviour) -> Result<(), Failure> {
    let text = if behaviour.empty_output {
        String::new()
    } else {
        let mut text = format!(
            "# Analysis of {}\n\nTitle: {}\n\nPlan: change `work/{}.md`.\n",
            env.task, env.title, env.task
        );
        append_feedback(&mut text, env.feedback.as_deref());
        text
    };
    write_output(&env.output_dir, "analysis.md", &text)
}

fn develop(env: &AgentEnv, behaviour: &Behaviour, worked: u32) -> Result<(), Failure> {
    if env
        .feedback
        .as_deref()
        .is_some_and(|text| text.to_ascii_lowercase().contains("rebase"))
    {
        catch_up_with_base(env)?;
    }
    if behaviour.no_changes {
        return Ok(());
    }
    let mut touched: Vec<String> = Vec::new();

    let work_file = format!("work/{}.md", env.task);
    let work_path = env.worktree.join(&work_file);
    let mut content =
        std::fs::read_to_string(&work_path).unwrap_or_else(|_| format!("# {}\n\n", env.task));
    content.push_str(&format!(
        "- run {}: {}\n",
        worked + 1,
        first_line(env.feedback.as_deref())
    ));
    write_file(&work_path, &content)?;
    touched.push(work_file);

    let ci_fail = env.worktree.join(CI_FAIL_FILE);
    if worked < behaviour.ci_fail_times {
        write_file(&ci_fail, &format!("scripted CI failure for {}\n", env.task))?;
        touched.push(CI_FAIL_FILE.to_owned());
    } else if ci_fail.exists() {
        std::fs::remove_file(&ci_fail)
            .map_err(|err| Failure::Failed(format!("remove {CI_FAIL_FILE}: {err}")))?;
        touched.push(CI_FAIL_FILE.to_owned());
    }

    if let Some(shared) = &behaviour.conflict_file {
        let relative = Path::new(shared);
        if !relative
            .components()
            .all(|part| matches!(part, Component::Normal(_)))
        {
            return Err(Failure::Usage(format!(
                "conflict_file {shared:?} must be a relative path inside the worktree"
            )));
        }
        write_file(
            &env.worktree.join(relative),
            &format!("{} was here\n", env.task),
        )?;
        touched.push(shared.clone());
    }

    if behaviour.leave_uncommitted {
        say("leaving the change uncommitted");
        return Ok(());
    }
    let mut add: Vec<&str> = vec!["add", "--all", "--"];
    add.extend(touched.iter().map(String::as_str));
    git(&env.worktree, &add)?;
    let message = format!("{}: scripted change, run {}", env.task, worked + 1);
    git(
        &env.worktree,
        &["commit", "--quiet", "--no-verify", "--message", &message],
    )?;
    Ok(())
}

/// Answers "rebase onto <base>" feedback: merges the base (as orch last fetched it) into the
/// task branch, keeping this branch's side of every conflicting hunk, so the next merge of the
/// pull request is clean.
fn catch_up_with_base(env: &AgentEnv) -> Result<(), Failure> {
    if env.base_branch.starts_with('-') || env.base_branch.contains("..") {
        return Err(Failure::Usage(format!(
            "ORCH_BASE_BRANCH {:?} is not a branch",
            env.base_branch
        )));
    }
    let candidates = [
        format!("refs/remotes/origin/{}", env.base_branch),
        format!("refs/heads/{}", env.base_branch),
    ];
    let Some(base) = candidates.iter().find(|refname| {
        git(
            &env.worktree,
            &["rev-parse", "--verify", "--quiet", refname.as_str()],
        )
        .is_ok()
    }) else {
        return Err(Failure::Failed(format!(
            "base branch {} not found",
            env.base_branch
        )));
    };
    let message = format!("{}: merge {} (scripted rebase)", env.task, env.base_branch);
    git(
        &env.worktree,
        &[
            "merge",
            "--quiet",
            "--no-edit",
            "-X",
            "ours",
            "-m",
            &message,
            base,
        ],
    )?;
    say("caught up with the base branch");
    Ok(())
}

fn review(env: &AgentEnv, behaviour: &Behaviour, worked: u32) -> Result<(), Failure> {
    let verdict = if worked < behaviour.request_changes_runs() {
        "request_changes"
    } else {
        "approve"
    };
    let text = if behaviour.empty_output {
        String::new()
    } else {
        let mut text = format!("# Review of {}\n\nVerdict: {verdict}\n", env.task);
        append_feedback(&mut text, env.feedback.as_deref());
        text
    };
    write_output(&env.output_dir, "review.md", &text)?;
    write_output(&env.output_dir, "verdict", &format!("{verdict}\n"))
}

fn append_feedback(text: &mut String, feedback: Option<&str>) {
    if let Some(feedback) = feedback {
        text.push_str("\n## Feedback addressed\n\n");
        text.push_str(feedback.trim_end());
        text.push('\n');
    }
}

fn first_line(feedback: Option<&str>) -> &str {
    feedback
        .and_then(|text| text.lines().find(|line| !line.trim().is_empty()))
        .map_or("initial work", str::trim)
}

fn write_output(output_dir: &Path, name: &str, text: &str) -> Result<(), Failure> {
    write_file(&output_dir.join(name), text)
}

fn write_file(path: &Path, text: &str) -> Result<(), Failure> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)
            .map_err(|err| Failure::Failed(format!("create {}: {err}", parent.display())))?;
    }
    std::fs::write(path, text)
        .map_err(|err| Failure::Failed(format!("write {}: {err}", path.display())))
}

/// Runs git in the worktree with this process's environment plus the agent's commit identity.
fn git(worktree: &Path, args: &[&str]) -> Result<(), Failure> {
    let output = Command::new("git")
        .args(["-c", "commit.gpgsign=false"])
        .args(args)
        .current_dir(worktree)
        .env("GIT_AUTHOR_NAME", AGENT_NAME)
        .env("GIT_AUTHOR_EMAIL", AGENT_EMAIL)
        .env("GIT_COMMITTER_NAME", AGENT_NAME)
        .env("GIT_COMMITTER_EMAIL", AGENT_EMAIL)
        .env("GIT_TERMINAL_PROMPT", "0")
        .output()
        .map_err(|err| Failure::Failed(format!("run git: {err}")))?;
    if output.status.success() {
        Ok(())
    } else {
        let subcommand = args.first().copied().unwrap_or_default();
        Err(Failure::Failed(format!(
            "git {subcommand} failed: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        )))
    }
}

/// One progress line on stdout (orch's stall detection watches output).
fn say(line: &str) {
    let mut stdout = std::io::stdout().lock();
    let _ = writeln!(stdout, "{line}");
    let _ = stdout.flush();
}

fn report_error(line: &str) {
    let _ = writeln!(std::io::stderr().lock(), "{line}");
}

#[cfg(test)]
mod tests;
