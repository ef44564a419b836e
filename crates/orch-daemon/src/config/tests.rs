//! Unit tests of the configuration loader, the reference and the value types.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use orch_core::domain::{Agent, Stage};
use orch_core::ports::StateNames;
use orch_gitea::MergeStyle;

use crate::config::reference::SECTIONS;
use crate::config::schema::{Fallback, KeyType};
use crate::config::{
    load, parse, reference_markdown, resolve_path, BaseUrl, Config, RetentionConfig,
};

pub(crate) const MINIMAL: &str = r#"
[plane]
base_url = "https://plane.test"
workspace_slug = "acme"

[gitea]
base_url = "https://gitea.test"

[[projects]]
key = "widgets"
plane_project_id = "p1"
repo = "acme/widgets"
work_item_prefix = "WI"
"#;

/// A temporary config directory with the three default prompts.
pub(crate) struct Dir {
    dir: tempfile::TempDir,
}

impl Dir {
    pub(crate) fn new() -> Dir {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::create_dir(dir.path().join("prompts")).expect("prompts dir");
        for role in ["analyst", "developer", "reviewer"] {
            let text = format!("You are the {role} of {{{{task}}}} in {{{{repo}}}}.\n");
            std::fs::write(dir.path().join(format!("prompts/{role}.md")), text).expect("prompt");
        }
        Dir { dir }
    }

    pub(crate) fn path(&self) -> &Path {
        self.dir.path()
    }

    pub(crate) fn parse(
        &self,
        text: &str,
        env: &BTreeMap<String, String>,
    ) -> Result<Config, String> {
        parse(text, "orch.toml", self.path(), env).map_err(|errors| errors.to_string())
    }
}

pub(crate) fn secrets_env() -> BTreeMap<String, String> {
    env(&[
        ("ORCH_PLANE_API_TOKEN", "plane-token-s3cret"),
        ("ORCH_PLANE_WEBHOOK_SECRET", "plane-hook-s3cret"),
        ("ORCH_GITEA_TOKEN", "gitea-token-s3cret"),
        ("ORCH_GITEA_WEBHOOK_SECRET", "gitea-hook-s3cret"),
    ])
}

fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
        .collect()
}

fn with(mut base: BTreeMap<String, String>, pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    base.extend(env(pairs));
    base
}

/// Loads `text` with the secrets in the environment and compares the error report line by line.
fn check_errors(text: &str, expected: &[&str]) {
    check_errors_with_env(text, &secrets_env(), expected);
}

fn check_errors_with_env(text: &str, env: &BTreeMap<String, String>, expected: &[&str]) {
    let dir = Dir::new();
    let report = dir.parse(text, env).expect_err("the config is refused");
    let lines: Vec<&str> = report.lines().collect();
    assert_eq!(lines, expected, "full report:\n{report}");
}

fn deploy_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy")
}

#[test]
fn minimal_config_loads_with_every_default() {
    let dir = Dir::new();
    let config = dir.parse(MINIMAL, &secrets_env()).expect("valid");

    assert_eq!(
        config.server.listen,
        "127.0.0.1:8787".parse::<SocketAddr>().expect("addr")
    );
    assert_eq!(config.server.admin_token, None);
    assert_eq!(config.server.max_body_bytes, 1_048_576);
    assert_eq!(config.storage.db_path, PathBuf::from("data/orch.db"));
    assert_eq!(config.workspace.repos_dir, PathBuf::from("data/repos"));
    assert_eq!(config.plane.base_url.as_str(), "https://plane.test");
    assert_eq!(config.plane.api_token.expose(), "plane-token-s3cret");
    assert_eq!(config.plane.rate_limit_per_min, 60);
    assert_eq!(config.gitea.merge_style, MergeStyle::Merge);
    assert!(config.gitea.require_ci);
    assert_eq!(config.telegram, None);
    assert_eq!(config.worker.concurrency, 2);
    assert_eq!(config.worker.per_repo_concurrency, 1);
    assert_eq!(config.worker.job_timeout, Duration::from_secs(3600));
    assert_eq!(config.worker.stall_timeout, Duration::from_secs(600));
    assert_eq!(
        (config.worker.max_attempts, config.worker.max_fix_rounds),
        (3, 3)
    );
    assert!(config.reconcile.enabled && config.reconcile.plane_enabled);
    assert_eq!(config.reconcile.interval, Duration::from_secs(60));
    assert_eq!(
        config.reconcile.grace.of(Stage::Development),
        Duration::from_secs(300)
    );
    for agent in Agent::ALL {
        let agent_config = config.agent(agent);
        assert_eq!(agent_config.command, ["claude", "-p"]);
        assert_eq!(
            agent_config.prompt.path,
            dir.path().join(format!("prompts/{agent}.md"))
        );
        assert_eq!(
            agent_config.prompt.text,
            format!("You are the {agent} of {{{{task}}}} in {{{{repo}}}}.\n")
        );
        assert_eq!(agent_config.timeout, Duration::from_secs(1800));
        assert!(agent_config.env.is_empty());
    }
    let project = &config.projects[0];
    assert_eq!(project.repo.to_string(), "acme/widgets");
    assert_eq!(project.base_branch.as_str(), "main");
    let expected_states = StateNames {
        awaiting: None,
        cancelled: None,
        ..StateNames::default()
    };
    assert_eq!(project.states, expected_states);
}

#[test]
fn environment_overrides_the_file() {
    let text = format!(
        "{MINIMAL}\n[server]\nlisten = \"127.0.0.1:1111\"\nadmin_token = \"from-file\"\n\
         [reconcile]\nenabled = true\nplane_enabled = true\n"
    );
    let env = with(
        secrets_env(),
        &[
            ("ORCH_LISTEN", "0.0.0.0:9000"),
            ("ORCH_ADMIN_TOKEN", "from-env"),
            ("ORCH_DB_PATH", "/var/lib/orch/orch.db"),
            ("ORCH_REPOS_DIR", "/var/lib/orch/repos"),
            ("ORCH_PLANE_URL", "http://127.0.0.1:3000/"),
            ("ORCH_GITEA_URL", "http://127.0.0.1:3001"),
            ("ORCH_PLANE_WEBHOOK_SECRET", "old, new"),
            ("ORCH_RECONCILE_ENABLED", "false"),
            ("ORCH_RECONCILE_PLANE_ENABLED", "0"),
            ("ORCH_TELEGRAM_BOT_TOKEN", "123:bot"),
            ("ORCH_TELEGRAM_CHAT_ID", "-100"),
        ],
    );
    let config = Dir::new().parse(&text, &env).expect("valid");

    assert_eq!(
        config.server.listen,
        "0.0.0.0:9000".parse::<SocketAddr>().expect("addr")
    );
    assert_eq!(
        config
            .server
            .admin_token
            .as_ref()
            .map(|token| token.expose()),
        Some("from-env")
    );
    assert_eq!(
        config.storage.db_path,
        PathBuf::from("/var/lib/orch/orch.db")
    );
    assert_eq!(
        config.workspace.repos_dir,
        PathBuf::from("/var/lib/orch/repos")
    );
    assert_eq!(config.plane.base_url.as_str(), "http://127.0.0.1:3000");
    assert_eq!(config.gitea.base_url.as_str(), "http://127.0.0.1:3001");
    let secrets: Vec<&str> = config
        .plane
        .webhook_secrets
        .iter()
        .map(|secret| secret.expose())
        .collect();
    assert_eq!(secrets, ["old", "new"]);
    assert!(!config.reconcile.enabled);
    assert!(!config.reconcile.plane_enabled);
    let telegram = config
        .telegram
        .expect("telegram enabled by the environment");
    assert_eq!(
        (telegram.bot_token.expose(), telegram.chat_id.as_str()),
        ("123:bot", "-100")
    );
    assert_eq!(telegram.api_base.as_str(), "https://api.telegram.org");
}

#[test]
fn empty_environment_variable_leaves_the_file_value() {
    let text = format!("{MINIMAL}\n[server]\nlisten = \"127.0.0.1:1111\"\n");
    let env = with(
        secrets_env(),
        &[("ORCH_LISTEN", ""), ("ORCH_TELEGRAM_BOT_TOKEN", "")],
    );
    let config = Dir::new().parse(&text, &env).expect("valid");
    assert_eq!(config.server.listen.port(), 1111);
    assert_eq!(config.telegram, None);
}

#[test]
fn unknown_keys_are_reported_with_their_paths() {
    let text = format!(
        "{MINIMAL}\n[servr]\nlisten = \"x\"\n[projects.states]\ninprogress = \"Doing\"\n\
         [agents.tester]\ncommand = [\"x\"]\n[reconcile.grace_s]\nqa = 5\n"
    );
    check_errors(
        &text,
        &[
            "config: reconcile.grace_s.qa: unknown key",
            "config: agents.tester: unknown key",
            "config: projects[0].states.inprogress: unknown key",
            "config: servr: unknown key",
        ],
    );
}

#[test]
fn every_error_is_reported_at_once() {
    let text = r#"
[server]
listen = "localhost"
max_body_bytes = 0

[plane]
base_url = "ftp://plane.test"

[gitea]
base_url = "https://gitea.test"
merge_style = "fast-forward"

[worker]
concurrency = "two"
max_attempts = 0

[reconcile]
enabled = "yes"

[[projects]]
key = "widgets"
plane_project_id = "not a uuid"
repo = "acme/widgets"
work_item_prefix = "9X"
base_branch = "-main"
"#;
    check_errors(
        text,
        &[
            "config: server.listen: expected an IP address and port such as 127.0.0.1:8787, got \"localhost\"",
            "config: server.max_body_bytes: expected an integer from 1 to 1073741824, got 0",
            "config: plane.base_url: expected an http:// or https:// URL, got \"ftp://plane.test\"",
            "config: plane.workspace_slug: required",
            "config: gitea.merge_style: expected merge, squash, rebase or rebase-merge, got \"fast-forward\"",
            "config: worker.concurrency: expected an integer from 1 to 64, got \"two\"",
            "config: worker.max_attempts: expected an integer from 1 to 100, got 0",
            "config: reconcile.enabled: expected true or false, got \"yes\"",
            "config: projects[0].plane_project_id: may hold only letters, digits, '-' and '_', got \"not a uuid\"",
            "config: projects[0].work_item_prefix: must be 1 to 10 letters or digits, starting with a letter, got \"9X\"",
            "config: projects[0].base_branch: must not start with '-' or '/', got \"-main\"",
        ],
    );
}

#[test]
fn bad_repo_is_reported_in_the_spec_form() {
    let text = format!(
        "{MINIMAL}\n[[projects]]\nkey = \"other\"\nplane_project_id = \"p2\"\nrepo = \"widgets\"\n\
         work_item_prefix = \"OT\"\n"
    );
    check_errors(
        &text,
        &[r#"config: projects[1].repo: expected "owner/name", got "widgets""#],
    );
}

#[test]
fn missing_secrets_name_their_environment_variables() {
    check_errors_with_env(
        MINIMAL,
        &BTreeMap::new(),
        &[
            "config: plane.api_token: required; set it in the file (or api_token_file), in ORCH_PLANE_API_TOKEN, or as the credential plane.api_token",
            "config: plane.webhook_secrets: required; set it in the file (or webhook_secrets_file), in ORCH_PLANE_WEBHOOK_SECRET, or as the credential plane.webhook_secrets",
            "config: gitea.token: required; set it in the file (or token_file), in ORCH_GITEA_TOKEN, or as the credential gitea.token",
            "config: gitea.webhook_secrets: required; set it in the file (or webhook_secrets_file), in ORCH_GITEA_WEBHOOK_SECRET, or as the credential gitea.webhook_secrets",
        ],
    );
}

#[test]
fn bad_environment_values_name_the_variable() {
    let env = with(
        secrets_env(),
        &[
            ("ORCH_LISTEN", "nonsense"),
            ("ORCH_RECONCILE_PLANE_ENABLED", "maybe"),
            ("ORCH_GITEA_URL", "gitea"),
        ],
    );
    check_errors_with_env(
        MINIMAL,
        &env,
        &[
            "config: server.listen (ORCH_LISTEN): expected an IP address and port such as 127.0.0.1:8787, got \"nonsense\"",
            "config: gitea.base_url (ORCH_GITEA_URL): expected an http:// or https:// URL, got \"gitea\"",
            "config: reconcile.plane_enabled (ORCH_RECONCILE_PLANE_ENABLED): expected true or false, got \"maybe\"",
        ],
    );
}

#[test]
fn secret_values_are_never_echoed_in_errors() {
    let text = format!(
        "{MINIMAL}\n[telegram]\nbot_token = 12345\nchat_id = \"1\"\napi_base = \"https://user:hunter2@api.test\"\n"
    );
    check_errors(
        &text,
        &[
            "config: telegram.bot_token: expected a string",
            "config: telegram.api_base: a URL must not carry credentials; use the token keys",
        ],
    );
}

#[test]
fn invalid_toml_is_one_error_with_line_and_column() {
    check_errors("[server]\nlisten = \n", &["config: orch.toml:2:10: invalid TOML: string values must be quoted, expected literal string"]);
}

#[test]
fn projects_must_be_present_and_unique() {
    let without_projects = MINIMAL.split("[[projects]]").next().expect("head");
    check_errors(
        without_projects,
        &["config: projects: at least one [[projects]] entry is required"],
    );

    let duplicated = format!(
        "{MINIMAL}{}",
        MINIMAL
            .split_once("[[projects]]")
            .map(|(_, tail)| format!("[[projects]]{tail}"))
            .expect("tail")
    );
    check_errors(
        &duplicated,
        &[
            "config: projects[1].key: \"widgets\" is already used by projects[0]",
            "config: projects[1].plane_project_id: \"p1\" is already used by projects[0]",
            "config: projects[1].repo: \"acme/widgets\" is already used by projects[0]",
        ],
    );
}

#[test]
fn state_names_must_be_non_empty_and_distinct() {
    let text = format!(
        "{MINIMAL}\n[projects.states]\nin_progress = \" \"\napproved = \"Done\"\nawaiting = \"\"\n"
    );
    check_errors(
        &text,
        &[
            "config: projects[0].states.in_progress: a state name must not be empty",
            "config: projects[0].states.awaiting: a state name must not be empty",
        ],
    );
    let text = format!("{MINIMAL}\n[projects.states]\napproved = \"Done\"\n");
    check_errors(
        &text,
        &["config: projects[0].states.done: \"Done\" is already the state of approved"],
    );
}

#[test]
fn prompts_must_exist_and_use_known_placeholders() {
    let dir = Dir::new();
    std::fs::write(
        dir.path().join("prompts/bad.md"),
        "Do {{ task }} with {{secret}}",
    )
    .expect("write");
    let text = format!(
        "{MINIMAL}\n[agents.analyst]\nprompt = \"prompts/bad.md\"\n[agents.reviewer]\nprompt = \"prompts/missing.md\"\n"
    );
    let report = dir.parse(&text, &secrets_env()).expect_err("refused");
    let known = "{{task}} {{title}} {{description}} {{feedback}} {{analysis}} {{branch}} {{base_branch}} {{repo}}";
    let bad = dir.path().join("prompts/bad.md");
    let missing = dir.path().join("prompts/missing.md");
    let expected = [
        format!(
            "config: agents.analyst.prompt: unknown placeholder {{{{secret}}}} (known: {known}) in {}",
            bad.display()
        ),
        format!(
            "config: agents.reviewer.prompt: cannot read {}: No such file or directory (os error 2)",
            missing.display()
        ),
    ];
    assert_eq!(
        report.lines().collect::<Vec<_>>(),
        expected,
        "full report:\n{report}"
    );
}

#[test]
fn agent_settings_are_checked() {
    let text = format!(
        "{MINIMAL}\n[worker]\njob_timeout_s = 600\n\
         [agents.developer]\ncommand = []\ntimeout_s = 601\nenv = {{ ORCH_TASK = \"x\", \"1BAD\" = \"y\", N = 1 }}\n"
    );
    check_errors(
        &text,
        &[
            "config: agents.analyst.timeout_s: 1800 is longer than worker.job_timeout_s (600)",
            "config: agents.developer.command: expected at least the program to run",
            "config: agents.developer.timeout_s: 601 is longer than worker.job_timeout_s (600)",
            "config: agents.developer.env.1BAD: expected a variable name of letters, digits and '_'",
            "config: agents.developer.env.N: expected a string",
            "config: agents.developer.env.ORCH_TASK: names starting with ORCH_ are reserved for orch",
            "config: agents.reviewer.timeout_s: 1800 is longer than worker.job_timeout_s (600)",
        ],
    );
}

#[test]
fn telegram_section_needs_its_token_and_chat() {
    check_errors(
        &format!("{MINIMAL}\n[telegram]\n"),
        &[
            "config: telegram.bot_token: required; set it in the file (or bot_token_file), in ORCH_TELEGRAM_BOT_TOKEN, or as the credential telegram.bot_token",
            "config: telegram.chat_id: required; set it in the file or in ORCH_TELEGRAM_CHAT_ID",
        ],
    );
    let config = Dir::new()
        .parse(
            &format!("{MINIMAL}\n[telegram]\nbot_token = \"1:x\"\nchat_id = -100123\n"),
            &secrets_env(),
        )
        .expect("valid");
    assert_eq!(
        config.telegram.map(|telegram| telegram.chat_id),
        Some("-100123".to_owned())
    );
}

#[test]
fn secrets_are_absent_from_debug_output() {
    let text = format!(
        "{MINIMAL}\n[server]\nadmin_token = \"admin-s3cret\"\n[telegram]\nbot_token = \"bot-s3cret\"\nchat_id = \"1\"\n\
         [agents.developer]\nenv = {{ ANTHROPIC_API_KEY = \"agent-s3cret\" }}\n"
    );
    let config = Dir::new().parse(&text, &secrets_env()).expect("valid");
    let debug = format!("{config:?}");
    for secret in [
        "admin-s3cret",
        "bot-s3cret",
        "agent-s3cret",
        "plane-token-s3cret",
        "plane-hook-s3cret",
        "gitea-token-s3cret",
        "gitea-hook-s3cret",
    ] {
        assert!(!debug.contains(secret), "{secret} shown in {debug}");
    }
    assert!(
        debug.contains("ANTHROPIC_API_KEY"),
        "the names stay visible: {debug}"
    );
    assert!(debug.contains("<redacted>"));
}

#[test]
fn pipeline_config_carries_projects_and_limits() {
    let text = MINIMAL.replace("[gitea]\n", "[gitea]\nrequire_ci = false\n")
        + "\n[worker]\nmax_attempts = 5\nmax_fix_rounds = 0\n[reconcile.grace_s]\nreview = 7\n";
    let config = Dir::new().parse(&text, &secrets_env()).expect("valid");
    let pipeline = config.pipeline();
    assert_eq!(pipeline.projects, config.projects);
    assert_eq!((pipeline.max_attempts, pipeline.max_fix_rounds), (5, 0));
    assert!(!pipeline.require_ci);
    assert_eq!(pipeline.grace.review, Duration::from_secs(7));
    assert_eq!(pipeline.grace.analysis, Duration::from_secs(300));
    assert_eq!(pipeline.full_pass_every, Duration::from_secs(3600));
}

#[test]
fn deploy_example_passes_check() {
    let env = with(secrets_env(), &[("ORCH_TELEGRAM_BOT_TOKEN", "1:bot")]);
    let config =
        load(&deploy_dir().join("orch.toml"), &env).unwrap_or_else(|errors| panic!("{errors}"));
    assert_eq!(config.projects.len(), 1);
    assert!(config.telegram.is_some());
    assert_eq!(config.projects[0].states, StateNames::default());
    for agent in [Agent::Analyst, Agent::Reviewer] {
        assert!(
            config.agent(agent).prompt.text.contains("ORCH_OUTPUT_DIR"),
            "{agent} is told where to write"
        );
    }
}

#[test]
fn deploy_agent_examples_stream_their_progress() {
    let env = with(secrets_env(), &[("ORCH_TELEGRAM_BOT_TOKEN", "1:bot")]);
    let claude =
        load(&deploy_dir().join("orch.toml"), &env).unwrap_or_else(|errors| panic!("{errors}"));
    for agent in Agent::ALL {
        let command = &claude.agent(agent).command;
        assert_eq!(command[..2], ["claude", "-p"], "{agent}");
        assert!(
            command
                .windows(2)
                .any(|pair| pair == ["--output-format", "stream-json"])
                && command.iter().any(|arg| arg == "--verbose"),
            "{agent}: Claude Code prints progress only with stream-json and --verbose"
        );
    }

    // deploy/agents/codex.toml replaces the agents tables of deploy/orch.toml.
    let example = std::fs::read_to_string(deploy_dir().join("orch.toml")).expect("example");
    let start = example.find("\n[agents]\n").expect("an [agents] table");
    let end = example.find("\n[[projects]]").expect("a project");
    let end = example[..end]
        .rfind("\n\n")
        .expect("a blank line before the projects");
    let codex_tables =
        std::fs::read_to_string(deploy_dir().join("agents/codex.toml")).expect("codex example");
    let text = format!("{}\n{codex_tables}{}", &example[..start], &example[end..]);
    let codex =
        parse(&text, "orch.toml", &deploy_dir(), &env).unwrap_or_else(|errors| panic!("{errors}"));
    for agent in Agent::ALL {
        let command = &codex.agent(agent).command;
        assert_eq!(command[..2], ["codex", "exec"], "{agent}");
        assert_eq!(
            command.last().map(String::as_str),
            Some("-"),
            "the prompt from stdin"
        );
        assert!(command.iter().any(|arg| arg == "--json"), "{agent}");
        assert_eq!(
            codex.agent(agent).prompt.text,
            claude.agent(agent).prompt.text,
            "one set of prompts serves both CLIs"
        );
    }
}

#[test]
fn unreadable_file_is_one_error_naming_it() {
    let dir = Dir::new();
    let path = dir.path().join("absent.toml");
    let report = load(&path, &BTreeMap::new())
        .expect_err("refused")
        .to_string();
    assert_eq!(
        report,
        format!(
            "config: {}: cannot read the file: No such file or directory (os error 2)",
            path.display()
        )
    );
}

#[test]
fn config_path_comes_from_the_flag_then_the_environment_then_the_default() {
    let env = env(&[("ORCH_CONFIG", "/etc/orch/orch.toml")]);
    assert_eq!(
        resolve_path(Some(Path::new("x.toml")), &env),
        PathBuf::from("x.toml")
    );
    assert_eq!(
        resolve_path(None, &env),
        PathBuf::from("/etc/orch/orch.toml")
    );
    assert_eq!(
        resolve_path(None, &BTreeMap::new()),
        PathBuf::from("orch.toml")
    );
}

/// Every key path of a TOML table, with array indices as `[]` and agent roles as `<role>`.
fn key_paths(prefix: &str, table: &toml::Table, out: &mut Vec<String>) {
    for (key, value) in table {
        let path = if prefix.is_empty() {
            key.clone()
        } else {
            format!("{prefix}.{key}")
        };
        out.push(path.clone());
        if key == "env" {
            // An agent's env table holds variable names, not config keys.
            continue;
        }
        let inner_prefix = if prefix == "agents" {
            "agents.<role>".to_owned()
        } else {
            path
        };
        match value {
            toml::Value::Table(inner) => key_paths(&inner_prefix, inner, out),
            toml::Value::Array(items) => {
                for item in items {
                    if let toml::Value::Table(inner) = item {
                        key_paths(&format!("{inner_prefix}[]"), inner, out);
                    }
                }
            }
            _ => {}
        }
    }
}

#[test]
fn reference_mentions_every_key_of_the_complete_example() {
    let text = std::fs::read_to_string(deploy_dir().join("orch.toml")).expect("example");
    let document: toml::Table = toml::from_str(&text).expect("toml");
    let mut paths = Vec::new();
    key_paths("", &document, &mut paths);
    let reference = reference_markdown();
    assert!(
        reference.starts_with("<!-- generated by `cargo xtask codegen`, do not edit -->\n"),
        "has the do-not-edit preamble"
    );
    assert!(paths.len() > 50, "the example has every key: {paths:?}");
    for path in paths {
        assert!(
            reference.contains(&format!("### `{path}`")),
            "{path} is missing from the reference"
        );
    }
    for var in [
        "ORCH_LISTEN",
        "ORCH_ADMIN_TOKEN",
        "ORCH_DB_PATH",
        "ORCH_REPOS_DIR",
        "ORCH_PLANE_URL",
        "ORCH_PLANE_API_TOKEN",
        "ORCH_PLANE_WEBHOOK_SECRET",
        "ORCH_GITEA_URL",
        "ORCH_GITEA_TOKEN",
        "ORCH_GITEA_WEBHOOK_SECRET",
        "ORCH_TELEGRAM_BOT_TOKEN",
        "ORCH_TELEGRAM_CHAT_ID",
        "ORCH_RECONCILE_ENABLED",
        "ORCH_RECONCILE_PLANE_ENABLED",
    ] {
        assert!(
            reference.contains(&format!("- environment: `{var}`")),
            "{var} is missing"
        );
    }
}

#[test]
fn docs_config_md_is_the_generated_reference() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/config.md");
    let on_disk = std::fs::read_to_string(&path).expect("docs/config.md exists");
    assert!(
        on_disk == reference_markdown(),
        "docs/config.md is stale: run `cargo run -p orch-daemon -- config-reference > docs/config.md`"
    );
}

#[test]
fn every_default_passes_its_keys_check() {
    let mut checked = 0;
    for section in SECTIONS {
        for key in section.keys {
            let (Fallback::Value(default), KeyType::Setting { check, .. }) = (key.fallback, key.ty)
            else {
                continue;
            };
            let mut value = default();
            if let toml::Value::String(text) = &mut value {
                *text = text.replace("<role>", "developer");
            }
            assert_eq!(
                check(&value),
                Ok(()),
                "{}.{} has default {value}",
                section.path,
                key.key
            );
            checked += 1;
        }
    }
    assert!(checked > 30, "only {checked} defaults checked");
}

#[test]
fn agent_config_converts_to_the_runner_role() {
    let text = format!("{MINIMAL}\n[agents.developer]\nenv = {{ API_KEY = \"k\" }}\n");
    let config = Dir::new().parse(&text, &secrets_env()).expect("valid");
    let role = config.agent(Agent::Developer).role_config();
    assert_eq!(role.command, ["claude", "-p"]);
    assert_eq!(
        role.prompt_template,
        "You are the developer of {{task}} in {{repo}}.\n"
    );
    assert_eq!(role.timeout, Duration::from_secs(1800));
    assert_eq!(role.env.get("API_KEY").map(String::as_str), Some("k"));
}

#[test]
fn base_urls_are_http_or_https_without_credentials() {
    let accepted = [
        ("https://plane.example.com/", "https://plane.example.com"),
        ("http://127.0.0.1:8080", "http://127.0.0.1:8080"),
        ("http://[::1]:3000/prefix", "http://[::1]:3000/prefix"),
    ];
    for (input, stored) in accepted {
        assert_eq!(
            BaseUrl::parse(input).map(|url| url.as_str().to_owned()),
            Ok(stored.to_owned()),
            "{input}"
        );
    }
    let refused = [
        ("plane.example.com", "expected an http:// or https:// URL"),
        ("https://", "expected a host name in the URL"),
        (
            "https://a b",
            "a URL must not contain spaces or control characters",
        ),
        (
            "https://x?y=1",
            "a base URL must not have a query or fragment",
        ),
        (
            "https://u:p@x",
            "a URL must not carry credentials; use the token keys",
        ),
        ("https://x:0", "expected a port from 1 to 65535 in the URL"),
        (
            "https://x:99999",
            "expected a port from 1 to 65535 in the URL",
        ),
    ];
    for (input, reason) in refused {
        assert_eq!(BaseUrl::parse(input), Err(reason), "{input}");
    }
}

/// Writes `text` to `name` in `dir` with `mode`; returns its path.
fn secret_file(dir: &Path, name: &str, text: &str, mode: u32) -> PathBuf {
    use std::os::unix::fs::PermissionsExt as _;
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write secret file");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).expect("chmod");
    path
}

/// The config's secrets by key path, exposed, in a fixed order.
fn exposed_secrets(config: &Config) -> Vec<(&'static str, String)> {
    let joined = |secrets: &[orch_core::secret::Secret]| {
        secrets
            .iter()
            .map(|secret| secret.expose())
            .collect::<Vec<_>>()
            .join(",")
    };
    vec![
        (
            "server.admin_token",
            config
                .server
                .admin_token
                .as_ref()
                .map(|token| token.expose().to_owned())
                .unwrap_or_default(),
        ),
        (
            "plane.api_token",
            config.plane.api_token.expose().to_owned(),
        ),
        (
            "plane.webhook_secrets",
            joined(&config.plane.webhook_secrets),
        ),
        ("gitea.token", config.gitea.token.expose().to_owned()),
        (
            "gitea.webhook_secrets",
            joined(&config.gitea.webhook_secrets),
        ),
        (
            "telegram.bot_token",
            config
                .telegram
                .as_ref()
                .map(|telegram| telegram.bot_token.expose().to_owned())
                .unwrap_or_default(),
        ),
    ]
}

/// Every secret of the file, as `(key path, what the file gives)`.
const FILE_SECRETS: [(&str, &str); 6] = [
    ("server.admin_token", "admin-from-file\n"),
    ("plane.api_token", "plane-from-file\r\n"),
    ("plane.webhook_secrets", "old-hook\n\n  new-hook  \n"),
    ("gitea.token", "gitea-from-file"),
    ("gitea.webhook_secrets", "gitea-hook\n"),
    ("telegram.bot_token", "1:bot-from-file\n"),
];

const SECRETS_AS_READ: [(&str, &str); 6] = [
    ("server.admin_token", "admin-from-file"),
    ("plane.api_token", "plane-from-file"),
    ("plane.webhook_secrets", "old-hook,new-hook"),
    ("gitea.token", "gitea-from-file"),
    ("gitea.webhook_secrets", "gitea-hook"),
    ("telegram.bot_token", "1:bot-from-file"),
];

fn owned(pairs: &[(&'static str, &str)]) -> Vec<(&'static str, String)> {
    pairs
        .iter()
        .map(|(key, value)| (*key, (*value).to_owned()))
        .collect()
}

#[test]
fn every_secret_can_come_from_its_file_key() {
    let dir = Dir::new();
    std::fs::create_dir(dir.path().join("secrets")).expect("secrets dir");
    for (key, text) in FILE_SECRETS {
        secret_file(&dir.path().join("secrets"), key, text, 0o600);
    }
    let absolute = dir.path().join("secrets/gitea.token");
    let text = MINIMAL
        .replace(
            "[plane]\n",
            "[plane]\napi_token_file = \"secrets/plane.api_token\"\n\
             webhook_secrets_file = \"secrets/plane.webhook_secrets\"\n",
        )
        .replace(
            "[gitea]\n",
            &format!(
                "[gitea]\ntoken_file = {:?}\nwebhook_secrets_file = \"secrets/gitea.webhook_secrets\"\n",
                absolute.display().to_string()
            ),
        )
        + "[server]\nadmin_token_file = \"secrets/server.admin_token\"\n\
           [telegram]\nbot_token_file = \"secrets/telegram.bot_token\"\nchat_id = \"1\"\n";

    let config = dir.parse(&text, &BTreeMap::new()).expect("valid");

    assert_eq!(exposed_secrets(&config), owned(&SECRETS_AS_READ));
    assert_eq!(
        config.plane.api_token_file,
        Some(dir.path().join("secrets/plane.api_token"))
    );
    assert_eq!(config.gitea.token_file, Some(absolute));
    assert_eq!(
        config.server.admin_token_file,
        Some(dir.path().join("secrets/server.admin_token"))
    );
    let debug = format!("{config:?}");
    for (_, secret) in SECRETS_AS_READ {
        for part in secret.split(',') {
            assert!(!debug.contains(part), "{part} shown in {debug}");
        }
    }
}

#[test]
fn credentials_directory_supplies_secrets_named_after_their_key_paths() {
    let dir = Dir::new();
    let credentials = dir.path().join("credentials");
    std::fs::create_dir(&credentials).expect("credentials dir");
    for (key, text) in FILE_SECRETS {
        secret_file(&credentials, key, text, 0o400);
    }
    let env = env(&[
        (
            "CREDENTIALS_DIRECTORY",
            credentials.to_str().expect("utf-8"),
        ),
        ("ORCH_TELEGRAM_CHAT_ID", "-100"),
    ]);

    let config = dir.parse(MINIMAL, &env).expect("valid");

    assert_eq!(exposed_secrets(&config), owned(&SECRETS_AS_READ));
    assert_eq!(config.plane.api_token_file, None);

    // The bot token's credential alone turns Telegram on, so a missing chat is reported.
    let env = env_without(&env, "ORCH_TELEGRAM_CHAT_ID");
    assert_eq!(
        dir.parse(MINIMAL, &env).expect_err("no chat"),
        "config: telegram.chat_id: required; set it in the file or in ORCH_TELEGRAM_CHAT_ID"
    );
    // Without the credentials, nothing is there.
    std::fs::remove_file(credentials.join("telegram.bot_token")).expect("remove");
    let config = dir.parse(MINIMAL, &env).expect("valid");
    assert_eq!(config.telegram, None);
}

fn env_without(env: &BTreeMap<String, String>, name: &str) -> BTreeMap<String, String> {
    let mut env = env.clone();
    env.remove(name);
    env
}

#[test]
fn a_secret_comes_from_the_environment_then_its_file_or_inline_value_then_its_credential() {
    let dir = Dir::new();
    let credentials = dir.path().join("credentials");
    std::fs::create_dir(&credentials).expect("credentials dir");
    secret_file(&credentials, "plane.api_token", "from-credential\n", 0o400);
    secret_file(dir.path(), "token", "from-file\n", 0o600);
    let others = [
        ("ORCH_PLANE_WEBHOOK_SECRET", "plane-hook"),
        ("ORCH_GITEA_TOKEN", "gitea-token"),
        ("ORCH_GITEA_WEBHOOK_SECRET", "gitea-hook"),
        (
            "CREDENTIALS_DIRECTORY",
            credentials.to_str().expect("utf-8"),
        ),
    ];
    let check = |plane_keys: &str, variable: Option<&str>, expected: &str| {
        let mut env = env(&others);
        if let Some(value) = variable {
            env.insert("ORCH_PLANE_API_TOKEN".to_owned(), value.to_owned());
        }
        let text = MINIMAL.replace("[plane]\n", &format!("[plane]\n{plane_keys}"));
        let config = dir
            .parse(&text, &env)
            .unwrap_or_else(|report| panic!("{report}"));
        assert_eq!(
            config.plane.api_token.expose(),
            expected,
            "{plane_keys} with {variable:?}"
        );
    };
    let file = "api_token_file = \"token\"\n";
    let inline = "api_token = \"inline\"\n";
    check(file, Some("from-env"), "from-env");
    check(inline, Some("from-env"), "from-env");
    check(file, None, "from-file");
    check(inline, None, "inline");
    check(
        "api_token = \"\"\napi_token_file = \"token\"\n",
        None,
        "from-file",
    );
    check("", None, "from-credential");
    check("api_token = \"\"\n", None, "from-credential");

    // A value and a file for the same key is ambiguous, whatever else is set.
    check_errors(
        &MINIMAL.replace("[plane]\n", &format!("[plane]\n{inline}{file}")),
        &["config: plane.api_token_file: give api_token or api_token_file, not both"],
    );
    check_errors(
        &MINIMAL.replace(
            "[gitea]\n",
            "[gitea]\nwebhook_secrets = [\"a\"]\nwebhook_secrets_file = \"hooks\"\n",
        ),
        &["config: gitea.webhook_secrets_file: give webhook_secrets or webhook_secrets_file, not both"],
    );
}

#[test]
fn unusable_secret_files_are_errors_naming_the_key_and_the_file_but_never_the_secret() {
    let dir = Dir::new();
    let path = |name: &str| dir.path().join(name).display().to_string();
    secret_file(dir.path(), "empty", "", 0o600);
    secret_file(dir.path(), "newline", "\n", 0o600);
    secret_file(dir.path(), "two-lines", "s3cret-one\ns3cret-two\n", 0o600);
    secret_file(dir.path(), "blank-lines", "\n  \n\n", 0o600);
    std::fs::write(dir.path().join("binary"), [0xff, 0xfe, b's']).expect("binary");
    std::fs::create_dir(dir.path().join("a-directory")).expect("dir");
    let credentials = dir.path().join("credentials");
    std::fs::create_dir(&credentials).expect("credentials dir");
    secret_file(&credentials, "gitea.token", "", 0o400);
    let text = r#"
[server]
admin_token_file = "absent"

[plane]
base_url = "https://plane.test"
workspace_slug = "acme"
api_token_file = "two-lines"
webhook_secrets_file = "blank-lines"

[gitea]
base_url = "https://gitea.test"
webhook_secrets_file = "a-directory"

[telegram]
bot_token_file = 7
chat_id = "1"

[[projects]]
key = "widgets"
plane_project_id = "p1"
repo = "acme/widgets"
work_item_prefix = "WI"
"#;
    let env = env(&[(
        "CREDENTIALS_DIRECTORY",
        credentials.to_str().expect("utf-8"),
    )]);
    let report = dir.parse(text, &env).expect_err("refused");
    let lines: Vec<&str> = report.lines().collect();
    assert_eq!(
        lines,
        [
            format!(
                "config: server.admin_token_file: cannot read {}: No such file or directory (os error 2)",
                path("absent")
            ),
            format!(
                "config: plane.api_token_file: {} holds more than one line",
                path("two-lines")
            ),
            format!(
                "config: plane.webhook_secrets_file: {} is empty",
                path("blank-lines")
            ),
            format!(
                "config: gitea.token ($CREDENTIALS_DIRECTORY): {} is empty",
                credentials.join("gitea.token").display()
            ),
            format!(
                "config: gitea.webhook_secrets_file: {} is not a file",
                path("a-directory")
            ),
            "config: telegram.bot_token_file: expected the path of a file".to_owned(),
        ],
        "full report:\n{report}"
    );
    assert!(!report.contains("s3cret"), "{report}");

    for (name, reason) in [
        ("empty", "is empty"),
        ("newline", "is empty"),
        ("binary", "is not UTF-8 text"),
    ] {
        let text = format!("{MINIMAL}[server]\nadmin_token_file = {name:?}\n");
        assert_eq!(
            dir.parse(&text, &secrets_env()).expect_err(name),
            format!("config: server.admin_token_file: {} {reason}", path(name))
        );
    }
}

#[test]
fn check_warns_about_secret_files_their_group_or_others_can_access() {
    let dir = Dir::new();
    let private = secret_file(dir.path(), "gitea-token", "gitea\n", 0o600);
    let shared = secret_file(dir.path(), "plane-hooks", "hook\n", 0o640);
    let credentials = dir.path().join("credentials");
    std::fs::create_dir(&credentials).expect("credentials dir");
    let credential = secret_file(&credentials, "gitea.webhook_secrets", "hook\n", 0o444);
    let text = MINIMAL
        .replace(
            "[plane]\n",
            "[plane]\napi_token = \"inline-s3cret\"\nwebhook_secrets_file = \"plane-hooks\"\n",
        )
        .replace("[gitea]\n", "[gitea]\ntoken_file = \"gitea-token\"\n")
        + "[server]\nadmin_token = \"inline-admin\"\n";
    let config_path = secret_file(dir.path(), "orch.toml", &text, 0o644);
    // The environment overrides the inline admin token, which still sits in the file.
    let env = env(&[
        (
            "CREDENTIALS_DIRECTORY",
            credentials.to_str().expect("utf-8"),
        ),
        ("ORCH_ADMIN_TOKEN", "from-env"),
    ]);

    let (_, files) = crate::config::load_with_secret_files(&config_path, &env).expect("valid");
    let warnings = crate::config::permission_warnings(&files);

    let read: Vec<(&str, &Path)> = files
        .iter()
        .map(|file| (file.key.as_str(), file.path.as_path()))
        .collect();
    assert_eq!(
        read,
        [
            ("server.admin_token", config_path.as_path()),
            ("plane.api_token", config_path.as_path()),
            ("plane.webhook_secrets", shared.as_path()),
            ("gitea.token", private.as_path()),
            ("gitea.webhook_secrets", credential.as_path()),
        ]
    );
    let fix = "(owned by the user orch runs as), or hand it to orch with systemd's LoadCredential=";
    let mut expected = vec![
        format!(
            "{} holds gitea.webhook_secrets and its mode 0444 gives its group or others access: run `chmod 600 {}` {fix}",
            credential.display(),
            credential.display()
        ),
        format!(
            "{} holds server.admin_token, plane.api_token and its mode 0644 gives its group or others access: run `chmod 600 {}` {fix}",
            config_path.display(),
            config_path.display()
        ),
        format!(
            "{} holds plane.webhook_secrets and its mode 0640 gives its group or others access: run `chmod 600 {}` {fix}",
            shared.display(),
            shared.display()
        ),
    ];
    expected.sort();
    assert_eq!(warnings, expected);

    // A config file whose secrets all come from elsewhere may be readable by everyone.
    let plain = secret_file(dir.path(), "plain.toml", MINIMAL, 0o644);
    let (_, files) = crate::config::load_with_secret_files(&plain, &secrets_env()).expect("valid");
    assert_eq!(files, []);
    assert!(crate::config::permission_warnings(&files).is_empty());
}

#[test]
fn agents_run_in_the_sandbox_by_default_at_nice_10_with_the_network_and_a_version_probe() {
    let config = Dir::new().parse(MINIMAL, &secrets_env()).expect("valid");
    assert_eq!(config.agents.sandbox, crate::config::SandboxMode::Bwrap);
    assert_eq!(config.agents.nice, 10);
    assert_eq!(
        config.agents.sandbox(),
        orch_agent::AgentSandbox::Bwrap { program: None }
    );
    for agent in Agent::ALL {
        let role = config.agent(agent).role_config();
        assert!(role.network);
        assert!(role.read_only_paths.is_empty() && role.writable_paths.is_empty());
        assert!(role.pass_env.is_empty());
        assert_eq!(role.probe, ["--version"]);
    }
}

#[test]
fn sandbox_settings_reach_the_runner() {
    let text = format!(
        "{MINIMAL}\n[agents]\nsandbox = \"none\"\nbwrap_path = \"/opt/bwrap/bin/bwrap\"\nnice = 0\n\
         [agents.developer]\nnetwork = false\npass_env = [\"ANTHROPIC_API_KEY\"]\n\
         read_only_paths = [\"/opt/models\", \"~/.config/agent\"]\nwritable_paths = [\"~/.claude\"]\n\
         probe = [\"doctor\", \"--quiet\"]\n"
    );
    let config = Dir::new().parse(&text, &secrets_env()).expect("valid");
    assert_eq!(config.agents.sandbox(), orch_agent::AgentSandbox::None);
    assert_eq!(
        config.agents.bwrap_path,
        Some(PathBuf::from("/opt/bwrap/bin/bwrap"))
    );
    assert_eq!(config.agents.nice, 0);
    let role = config.agent(Agent::Developer).role_config();
    assert!(!role.network);
    assert_eq!(role.pass_env, ["ANTHROPIC_API_KEY"]);
    assert_eq!(
        role.read_only_paths,
        [
            orch_agent::SandboxPath::Absolute(PathBuf::from("/opt/models")),
            orch_agent::SandboxPath::InHome(PathBuf::from(".config/agent")),
        ]
    );
    assert_eq!(
        role.writable_paths,
        [orch_agent::SandboxPath::InHome(PathBuf::from(".claude"))]
    );
    assert_eq!(role.probe, ["doctor", "--quiet"]);
    assert!(config.agent(Agent::Reviewer).role_config().network);
}

#[test]
fn sandbox_settings_are_checked() {
    let text = format!(
        "{MINIMAL}\n[agents]\nsandbox = \"firejail\"\nbwrap_path = \"bwrap\"\nnice = 20\n\
         [agents.developer]\nnetwork = \"off\"\npass_env = [\"ORCH_GITEA_TOKEN\", \"1BAD\", \"OK_KEY\"]\n\
         read_only_paths = [\"relative\", \"~\"]\nwritable_paths = [\"/a/../b\"]\nprobe = [1]\n"
    );
    check_errors(
        &text,
        &[
            "config: agents.sandbox: expected \"bwrap\" or \"none\", got \"firejail\"",
            "config: agents.bwrap_path: expected an absolute path, got \"bwrap\"",
            "config: agents.nice: expected an integer from 0 to 19, got 20",
            "config: agents.developer.pass_env[0]: ORCH_GITEA_TOKEN: names starting with ORCH_ are orch's own (its secrets and the agent contract) and never reach an agent",
            "config: agents.developer.pass_env[1]: expected a variable name of letters, digits and '_', got \"1BAD\"",
            "config: agents.developer.network: expected true or false, got \"off\"",
            "config: agents.developer.read_only_paths[0]: expected an absolute path or ~/…, got \"relative\"",
            "config: agents.developer.read_only_paths[1]: the whole home is not shown to agents; name what they need, such as ~/.claude",
            "config: agents.developer.writable_paths[0]: expected a path without '.', '..' or empty parts, got \"/a/../b\"",
            "config: agents.developer.probe[0]: expected a string, got 1",
        ],
    );
}

#[test]
fn tls_ca_file_is_read_relative_to_the_config_and_its_problems_are_config_errors() {
    let dir = Dir::new();
    let config = dir.parse(MINIMAL, &secrets_env()).expect("valid");
    assert_eq!(config.tls.ca_file, None, "no private CA by default");

    let ca = orch_sim::tls::TestCa::new().expect("a test CA");
    std::fs::write(dir.path().join("company-ca.pem"), ca.ca_pem()).expect("ca file");
    std::fs::write(dir.path().join("empty.pem"), "not a certificate\n").expect("file");
    let with = |ca_file: &str| format!("{MINIMAL}\n[tls]\nca_file = {ca_file:?}\n");

    let config = dir
        .parse(&with("company-ca.pem"), &secrets_env())
        .expect("valid");
    let ca_file = config.tls.ca_file.expect("ca_file read");
    assert_eq!(ca_file.path, dir.path().join("company-ca.pem"));
    assert_eq!(ca_file.certs.len(), 1);
    let (_, trust) = crate::tls::client_tls(&crate::config::TlsConfig {
        ca_file: Some(ca_file),
    });
    assert_eq!(trust.ca_file, 1);

    let missing = dir.path().join("missing.pem");
    let report = dir
        .parse(&with("missing.pem"), &secrets_env())
        .expect_err("refused");
    assert!(
        report.starts_with(&format!(
            "config: tls.ca_file: cannot read {}: ",
            missing.display()
        )),
        "{report}"
    );
    let report = dir
        .parse(&with("empty.pem"), &secrets_env())
        .expect_err("refused");
    assert_eq!(
        report.lines().collect::<Vec<_>>(),
        [format!(
            "config: tls.ca_file: {} holds no PEM certificate (-----BEGIN CERTIFICATE-----)",
            dir.path().join("empty.pem").display()
        )],
    );
}

#[test]
fn retention_defaults_to_thirty_days_of_everything_hourly() {
    let dir = Dir::new();
    let config = dir.parse(MINIMAL, &secrets_env()).expect("valid");
    let days = |n: u64| Duration::from_secs(n * 24 * 3600);
    assert_eq!(
        config.retention,
        RetentionConfig {
            enabled: true,
            interval: Duration::from_secs(3600),
            deliveries: days(30),
            jobs: days(30),
            history: days(30),
            agent_logs: days(30),
        }
    );
    let text = format!(
        "{MINIMAL}\n[retention]\ninterval_s = 600\ndeliveries_days = 7\njobs_days = 1\n\
         history_days = 365\nagent_logs_days = 2\n"
    );
    let env = with(secrets_env(), &[("ORCH_RETENTION_ENABLED", "false")]);
    let config = dir.parse(&text, &env).expect("valid");
    assert_eq!(
        config.retention,
        RetentionConfig {
            enabled: false,
            interval: Duration::from_secs(600),
            deliveries: days(7),
            jobs: days(1),
            history: days(365),
            agent_logs: days(2),
        }
    );
}

#[test]
fn retention_keeps_deliveries_for_the_dedupe_window_at_least() {
    check_errors(
        &format!("{MINIMAL}\n[retention]\ndeliveries_days = 6\njobs_days = 0\ninterval_s = 59\nkeep = 1\n"),
        &[
            "config: retention.interval_s: expected an integer from 60 to 86400, got 59",
            "config: retention.deliveries_days: expected an integer from 7 to 36500, got 6",
            "config: retention.jobs_days: expected an integer from 1 to 36500, got 0",
            "config: retention.keep: unknown key",
        ],
    );
}
