//! Integration tests of the `orch` binary: exit codes and output of `check` and `config-reference`.

mod admin;
mod alerts;
mod check_agents;
mod client;
mod demo_board;
mod dumpable;
mod online;
mod reading;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const SECRETS: [(&str, &str); 5] = [
    ("ORCH_PLANE_API_TOKEN", "plane-token"),
    ("ORCH_PLANE_WEBHOOK_SECRET", "plane-hook"),
    ("ORCH_GITEA_TOKEN", "gitea-token"),
    ("ORCH_GITEA_WEBHOOK_SECRET", "gitea-hook"),
    ("ORCH_TELEGRAM_BOT_TOKEN", "1:bot"),
];

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Runs `orch` with a clean environment plus `env`, in `cwd`.
fn orch(args: &[&str], env: &[(&str, &str)], cwd: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_orch"))
        .args(args)
        .env_clear()
        // orch looks git and the agents up on PATH, as any process has one.
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .envs(env.iter().copied())
        .current_dir(cwd)
        .output()
        .expect("orch runs")
}

/// The agents' prompts a config in `dir` names by default (`prompts/{role}.md`).
fn write_prompts(dir: &Path) {
    std::fs::create_dir_all(dir.join("prompts")).expect("prompts");
    for role in ["analyst", "developer", "reviewer"] {
        std::fs::write(
            dir.join(format!("prompts/{role}.md")),
            "Work on {{task}}.\n",
        )
        .expect("prompt");
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn check_accepts_the_deploy_example_with_a_one_line_summary() {
    let deploy = repo_root().join("deploy/orch.toml");
    let output = orch(
        &[
            "check",
            "--no-probe",
            "--config",
            deploy.to_str().expect("utf-8 path"),
        ],
        &SECRETS,
        &repo_root(),
    );
    let stdout = text(&output.stdout);
    assert_eq!(
        output.status.code(),
        Some(0),
        "stderr: {}",
        text(&output.stderr)
    );
    assert_eq!(stdout.lines().count(), 1, "{stdout}");
    assert!(
        stdout.starts_with("config ok: ") && stdout.contains("enduro-trails"),
        "{stdout}"
    );
}

#[test]
fn check_reads_secrets_from_systemd_credentials_and_warns_about_files_others_can_read() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tempfile::tempdir().expect("temp dir");
    let credentials = dir.path().join("credentials");
    std::fs::create_dir(&credentials).expect("credentials dir");
    let write = |name: &str, text: &str, mode: u32| {
        let path = credentials.join(name);
        std::fs::write(&path, text).expect("credential");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).expect("chmod");
        path
    };
    for name in [
        "plane.api_token",
        "plane.webhook_secrets",
        "gitea.token",
        "telegram.bot_token",
    ] {
        write(name, "s3cret-credential\n", 0o400);
    }
    let deploy = repo_root().join("deploy/orch.toml");
    let config = deploy.to_str().expect("utf-8 path");
    let env = [(
        "CREDENTIALS_DIRECTORY",
        credentials.to_str().expect("utf-8 path"),
    )];

    let output = orch(
        &["check", "--no-probe", "--config", config],
        &env,
        &repo_root(),
    );
    assert_eq!(
        output.status.code(),
        Some(2),
        "gitea.webhook_secrets is missing"
    );
    assert!(
        text(&output.stderr).contains("config: gitea.webhook_secrets: required"),
        "{}",
        text(&output.stderr)
    );

    let readable = write("gitea.webhook_secrets", "hook-one\nhook-two\n", 0o644);
    let output = orch(
        &["check", "--no-probe", "--config", config],
        &env,
        &repo_root(),
    );
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    assert_eq!(text(&output.stdout).lines().count(), 1);
    assert_eq!(
        stderr,
        format!(
            "warning: {} holds gitea.webhook_secrets and its mode 0644 gives its group or others \
             access: run `chmod 600 {}` (owned by the user orch runs as), or hand it to orch with \
             systemd's LoadCredential=\n",
            readable.display(),
            readable.display()
        )
    );
    assert!(!stderr.contains("s3cret") && !stderr.contains("hook-one"));
}

#[test]
fn check_finds_the_file_through_orch_config_then_the_working_directory() {
    let dir = tempfile::tempdir().expect("temp dir");
    let deploy = repo_root().join("deploy");
    let mut env = SECRETS.to_vec();
    let config_path = deploy.join("orch.toml");
    env.push(("ORCH_CONFIG", config_path.to_str().expect("utf-8 path")));
    assert_eq!(
        orch(&["check", "--no-probe"], &env, dir.path())
            .status
            .code(),
        Some(0)
    );

    let output = orch(&["check", "--no-probe"], &SECRETS, &deploy);
    assert_eq!(
        output.status.code(),
        Some(0),
        "./orch.toml is the default: {}",
        text(&output.stderr)
    );
}

#[test]
fn check_of_a_bad_config_exits_2_and_prints_every_error() {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = dir.path().join("orch.toml");
    std::fs::write(&config, "[server]\nlisten = \"nowhere\"\nextra = 1\n").expect("write");
    let output = orch(
        &["check", "--config", config.to_str().expect("utf-8 path")],
        &[],
        dir.path(),
    );
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(output.stdout.is_empty());
    let lines: Vec<&str> = stderr.lines().collect();
    assert!(lines.len() >= 8, "every error is reported: {stderr}");
    assert!(
        lines.iter().all(|line| line.starts_with("config: ")),
        "{stderr}"
    );
    assert!(
        lines.contains(&"config: server.extra: unknown key"),
        "{stderr}"
    );
    assert!(
        lines.contains(&"config: projects: at least one [[projects]] entry is required"),
        "{stderr}"
    );
}

#[test]
fn check_of_a_missing_file_exits_2() {
    let dir = tempfile::tempdir().expect("temp dir");
    let output = orch(&["check"], &[], dir.path());
    assert_eq!(output.status.code(), Some(2));
    assert_eq!(
        text(&output.stderr),
        "config: orch.toml: cannot read the file: No such file or directory (os error 2)\n"
    );
}

#[test]
fn bad_usage_exits_2() {
    let output = orch(&["no-such-command"], &[], &repo_root());
    assert_eq!(output.status.code(), Some(2));
}

#[test]
fn config_reference_prints_docs_config_md_and_is_hidden_from_help() {
    let output = orch(&["config-reference"], &[], &repo_root());
    assert_eq!(output.status.code(), Some(0));
    let on_disk =
        std::fs::read_to_string(repo_root().join("docs/config.md")).expect("docs/config.md");
    assert!(
        text(&output.stdout) == on_disk,
        "docs/config.md differs from `orch config-reference`"
    );

    let help = text(&orch(&["--help"], &[], &repo_root()).stdout);
    assert!(
        help.contains("check") && !help.contains("config-reference"),
        "{help}"
    );
}

#[test]
fn deploy_prompts_state_the_agent_contract() {
    let read = |name: &str| {
        std::fs::read_to_string(repo_root().join("deploy/prompts").join(name)).expect("prompt")
    };
    let analyst = read("analyst.md");
    assert!(analyst.contains("analysis.md") && analyst.contains("ORCH_OUTPUT_DIR"));
    let developer = read("developer.md");
    assert!(developer.contains("Commit your work on the current branch"));
    let reviewer = read("reviewer.md");
    for needle in [
        "review.md",
        "verdict",
        "`approve`",
        "`request_changes`",
        "ORCH_OUTPUT_DIR",
    ] {
        assert!(reviewer.contains(needle), "reviewer.md mentions {needle}");
    }
}

#[test]
fn deploy_unit_restarts_on_failure_and_stops_gently() {
    let unit = std::fs::read_to_string(repo_root().join("deploy/orch.service")).expect("unit");
    let directives: Vec<&str> = unit.lines().filter(|line| !line.starts_with('#')).collect();
    for expected in [
        "Type=notify",
        "NotifyAccess=main",
        "ExecReload=/bin/kill -HUP $MAINPID",
        "Restart=on-failure",
        "KillSignal=SIGTERM",
        "TimeoutStopSec=300",
        "ExecStart=/usr/local/bin/orch serve",
        "ReadWritePaths=/var/lib/orch",
    ] {
        assert!(
            directives.contains(&expected),
            "orch.service has {expected}"
        );
    }
    let value = |key: &str| {
        directives
            .iter()
            .find_map(|line| line.strip_prefix(key))
            .unwrap_or_else(|| panic!("orch.service sets {key}"))
    };
    // The event loop pets after each event, and one event may take the handling deadline.
    let watchdog: u64 = value("WatchdogSec=").parse().expect("seconds");
    assert!(
        watchdog >= 2 * orch_daemon::runtime::HANDLE_DEADLINE.as_secs(),
        "WatchdogSec={watchdog} leaves no margin over one slow event"
    );
    assert!(value("MemoryMax=").ends_with('G'), "a memory cap in GiB");
}

#[test]
fn deploy_unit_hands_every_secret_over_as_a_credential_not_in_the_environment() {
    let unit = std::fs::read_to_string(repo_root().join("deploy/orch.service")).expect("unit");
    let directives: Vec<&str> = unit.lines().filter(|line| !line.starts_with('#')).collect();
    for key in [
        "plane.api_token",
        "plane.webhook_secrets",
        "gitea.token",
        "gitea.webhook_secrets",
        "telegram.bot_token",
        "server.admin_token",
    ] {
        let expected = format!("LoadCredential={key}:/etc/orch/credentials/{key}");
        assert!(
            directives.contains(&expected.as_str()),
            "orch.service has {expected}"
        );
    }
    assert!(
        !directives
            .iter()
            .any(|line| line.starts_with("EnvironmentFile=")),
        "no secrets in the environment"
    );
}

#[test]
fn backup_copies_the_database_once_and_never_over_a_file() {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::create_dir(dir.path().join("data")).expect("data dir");
    let deploy = repo_root().join("deploy/orch.toml");
    let config = deploy.to_str().expect("utf-8 path");
    let backup = |dest: &str| orch(&["backup", "--config", config, dest], &SECRETS, dir.path());

    let output = backup("copy.db");
    assert_eq!(output.status.code(), Some(1), "no database yet");
    assert!(
        text(&output.stderr).contains("data/orch.db does not exist"),
        "{}",
        text(&output.stderr)
    );

    let output = orch(&["migrate", "--config", config], &SECRETS, dir.path());
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    let output = backup("copy.db");
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    let stdout = text(&output.stdout);
    assert!(
        stdout.starts_with("database data/orch.db backed up to copy.db: ")
            && stdout.contains(&format!("schema version {}", orch_sqlite::LATEST_VERSION)),
        "{stdout}"
    );
    assert!(dir.path().join("copy.db").is_file());

    let output = backup("copy.db");
    assert_eq!(
        output.status.code(),
        Some(2),
        "an existing file is bad usage"
    );
    assert!(
        text(&output.stderr).contains("copy.db exists already"),
        "{}",
        text(&output.stderr)
    );
}
