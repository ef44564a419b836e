//! `orch check` starts each agent in the sandbox with its probe, says what is missing, and
//! warns about running agents without a sandbox.

use std::path::Path;

use crate::{orch, text, write_prompts, SECRETS};

/// A config in `dir` whose agents are the given `[agents…]` tables, with its prompts.
fn write_config(dir: &Path, agents: &str) -> String {
    write_prompts(dir);
    let text = format!(
        r#"
[storage]
db_path = "{data}/orch.db"

[workspace]
repos_dir = "{data}/repos"

[plane]
base_url = "https://plane.test"
workspace_slug = "acme"

[gitea]
base_url = "https://gitea.test"

{agents}

[[projects]]
key = "widgets"
plane_project_id = "p1"
repo = "acme/widgets"
work_item_prefix = "WI"
"#,
        data = dir.join("data").display(),
    );
    let path = dir.join("orch.toml");
    std::fs::write(&path, text).expect("config");
    path.display().to_string()
}

/// The secrets of the config above (it has no Telegram section).
fn secrets() -> Vec<(&'static str, &'static str)> {
    SECRETS
        .into_iter()
        .filter(|(name, _)| !name.starts_with("ORCH_TELEGRAM"))
        .collect()
}

fn check(dir: &Path, config: &str) -> std::process::Output {
    let path = std::env::var("PATH").unwrap_or_default();
    let mut env = secrets();
    env.push(("PATH", &path));
    orch(&["check", "--config", config], &env, dir)
}

const WORKING: &str = r#"
[agents.analyst]
command = ["/bin/sh", "-c", "exit 0"]
probe = ["-c", "echo analyst 1.0"]

[agents.developer]
command = ["/bin/sh"]
probe = ["-c", "echo developer 2.0"]

[agents.reviewer]
command = ["/bin/sh"]
probe = ["-c", "echo reviewer 3.0"]
"#;

#[test]
fn check_starts_every_agent_in_the_sandbox_and_lists_each() {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = write_config(dir.path(), WORKING);
    let output = check(dir.path(), &config);
    let stdout = text(&output.stdout);
    assert_eq!(
        output.status.code(),
        Some(0),
        "{stdout}{}",
        text(&output.stderr)
    );
    let lines: Vec<&str> = stdout.lines().collect();
    assert!(lines[0].starts_with("config ok: "), "{stdout}");
    assert!(
        lines[1].starts_with("sandbox: ") && lines[1].ends_with("bwrap"),
        "{stdout}"
    );
    assert_eq!(
        &lines[2..],
        [
            "agent analyst: /bin/sh -c echo analyst 1.0: ok: analyst 1.0",
            "agent developer: /bin/sh -c echo developer 2.0: ok: developer 2.0",
            "agent reviewer: /bin/sh -c echo reviewer 3.0: ok: reviewer 3.0",
        ]
    );
    assert_eq!(text(&output.stderr), "");
}

#[test]
fn check_says_which_agent_cannot_run_and_why_and_exits_2() {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = write_config(
        dir.path(),
        r#"
[agents.analyst]
command = ["no-such-agent-cli", "-p"]
pass_env = ["NOT_SET_FOR_CHECK_42"]

[agents.developer]
command = ["/bin/sh"]
probe = ["-c", "echo 'error while loading shared libraries: libagent.so' >&2; exit 127"]
writable_paths = ["/no/such/cache"]

[agents.reviewer]
command = ["/bin/sh"]
probe = ["-c", "echo fine"]
"#,
    );
    let output = check(dir.path(), &config);
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    for expected in [
        "warning: agents.analyst: pass_env: NOT_SET_FOR_CHECK_42 is not set in orch's environment",
        "warning: agents.developer: writable_paths: /no/such/cache is not shown: it does not exist",
        &format!(
            "agents.analyst.command: \"no-such-agent-cli\" is not on PATH ({}): install it, or give its absolute path",
            std::env::var("PATH").unwrap_or_default()
        ),
        "agents.developer: /bin/sh -c echo 'error while loading shared libraries: libagent.so' >&2; exit 127: exited with code 127: error while loading shared libraries: libagent.so",
    ] {
        assert!(
            stderr.lines().any(|line| line == expected),
            "{expected:?} in {stderr}"
        );
    }
    assert!(text(&output.stdout).contains("agent reviewer: /bin/sh -c echo fine: ok: fine"));
}

#[test]
fn check_fails_when_bubblewrap_cannot_be_found() {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = write_config(
        dir.path(),
        &format!("[agents]\nbwrap_path = \"/no/such/bwrap\"\n{WORKING}"),
    );
    let output = check(dir.path(), &config);
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert_eq!(
        stderr.trim_end(),
        "agents.bwrap_path: the sandbox needs bubblewrap, and /no/such/bwrap is not an executable file: \
         install it (apt-get install bubblewrap) or set agents.bwrap_path; agents.sandbox = \"none\" runs agents unconfined",
        "one line, and no probe started"
    );
}

#[test]
fn check_warns_when_agents_run_without_a_sandbox() {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = write_config(
        dir.path(),
        &format!("[agents]\nsandbox = \"none\"\n{WORKING}"),
    );
    let output = check(dir.path(), &config);
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.starts_with("warning: agents.sandbox = \"none\": agents run as orch's user"),
        "{stderr}"
    );
    assert!(text(&output.stdout).contains("sandbox: none"));

    let output = orch(
        &["check", "--no-probe", "--config", &config],
        &secrets(),
        dir.path(),
    );
    assert_eq!(output.status.code(), Some(0));
    assert_eq!(
        text(&output.stdout).lines().count(),
        1,
        "nothing was started"
    );
    assert!(text(&output.stderr).contains("agents.sandbox = \"none\""));
}

#[test]
fn serve_refuses_to_start_when_the_sandbox_cannot() {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = write_config(
        dir.path(),
        &format!("[server]\nlisten = \"127.0.0.1:0\"\n[agents]\nbwrap_path = \"/no/such/bwrap\"\n{WORKING}"),
    );
    let output = orch(&["serve", "--config", &config], &secrets(), dir.path());
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("agents.sandbox: /no/such/bwrap: "),
        "{stderr}"
    );
}

#[test]
fn check_reports_an_unusable_data_directory_with_the_agents_problems_in_one_report() {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = write_config(
        dir.path(),
        r#"
[agents.analyst]
command = ["no-such-agent-cli"]

[agents.developer]
command = ["/bin/sh"]
probe = ["-c", "echo fine"]

[agents.reviewer]
command = ["/bin/sh"]
probe = ["-c", "echo fine"]
"#,
    );
    // The data directory's place is taken by a file.
    std::fs::write(dir.path().join("data"), "").expect("a file");
    let output = check(dir.path(), &config);
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    let settings: Vec<&str> = stderr
        .lines()
        .filter(|line| !line.starts_with("warning: "))
        .filter_map(|line| line.split(": ").next())
        .collect();
    assert_eq!(
        settings,
        [
            "storage.db_path",
            "workspace.repos_dir",
            "agents.analyst.command"
        ],
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!(
            "{} is not a directory: orch keeps its data there; make it writable by orch's user, or choose another directory",
            dir.path().join("data").display()
        )),
        "{stderr}"
    );
}

/// The niceness of this test process (field 19 of its `/proc` stat line).
fn own_niceness() -> u8 {
    let stat = std::fs::read_to_string("/proc/self/stat").expect("/proc is readable");
    let after_name = &stat[stat.rfind(')').expect("a stat line") + 2..];
    after_name
        .split(' ')
        .nth(16)
        .and_then(|field| field.parse().ok())
        .expect("a niceness from 0 to 19")
}

#[test]
fn check_starts_agents_at_the_configured_lower_priority() {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = write_config(
        dir.path(),
        r#"
[agents]
nice = 6

[agents.developer]
command = ["/bin/sh"]
probe = ["-c", "cut -d' ' -f19 /proc/self/stat"]
"#,
    );
    let output = check(dir.path(), &config);
    let stdout = text(&output.stdout);
    let expected = (own_niceness() + 6).min(19);
    assert!(
        stdout.lines().any(|line| line
            == format!(
                "agent developer: /bin/sh -c cut -d' ' -f19 /proc/self/stat: ok: {expected}"
            )),
        "{stdout}{}",
        text(&output.stderr)
    );
}
