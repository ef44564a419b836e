//! `check_host` against fake `PATH`s, fake gits and unusable data directories.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;

use crate::config::{self, Config};
use crate::preflight::{check_agent_programs, check_machine, parse_git_version};

/// Both checks, programs first, as `orch check` reports them.
fn check_host(config: &Config, path: Option<&std::ffi::OsStr>) -> Vec<String> {
    let mut problems = check_agent_programs(config, path);
    problems.extend(check_machine(config, path));
    problems
}

/// A temp dir with the prompts, a `bin/` of fake programs and the data directories.
struct Machine {
    dir: tempfile::TempDir,
}

impl Machine {
    fn new() -> Machine {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::create_dir(dir.path().join("prompts")).expect("prompts");
        for role in ["analyst", "developer", "reviewer"] {
            std::fs::write(
                dir.path().join(format!("prompts/{role}.md")),
                "Do {{task}}.\n",
            )
            .expect("prompt");
        }
        std::fs::create_dir(dir.path().join("bin")).expect("bin");
        let machine = Machine { dir };
        machine.program("agent-cli", "exit 0");
        machine.program("bwrap", "exit 0");
        machine.program("git", "echo 'git version 2.47.3'");
        machine
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// An executable shell script `bin/{name}`.
    fn program(&self, name: &str, body: &str) {
        let file = self.path().join("bin").join(name);
        std::fs::write(&file, format!("#!/bin/sh\n{body}\n")).expect("program");
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    }

    fn bin_path(&self) -> OsString {
        self.path().join("bin").into_os_string()
    }

    /// A config with every role running `command`, the data under `data`.
    fn config(&self, command: &str, data: &Path, extra: &str) -> Config {
        let text = format!(
            "[storage]\ndb_path = {:?}\n\n[workspace]\nrepos_dir = {:?}\n\n\
             [plane]\nbase_url = \"https://plane.test\"\nworkspace_slug = \"acme\"\napi_token = \"t\"\n\
             webhook_secrets = [\"s\"]\n\n[gitea]\nbase_url = \"https://gitea.test\"\ntoken = \"t\"\n\
             webhook_secrets = [\"s\"]\n\n[agents]\n{extra}\n\
             [agents.analyst]\ncommand = [{command:?}]\n[agents.developer]\ncommand = [{command:?}]\n\
             [agents.reviewer]\ncommand = [{command:?}]\n\n\
             [[projects]]\nkey = \"w\"\nplane_project_id = \"p1\"\nrepo = \"acme/widgets\"\nwork_item_prefix = \"WI\"\n",
            data.join("orch.db").display().to_string(),
            data.join("repos").display().to_string(),
        );
        config::parse(&text, "orch.toml", self.path(), &BTreeMap::new())
            .unwrap_or_else(|errors| panic!("{errors}\n{text}"))
    }
}

#[test]
fn a_machine_with_everything_has_no_problem() {
    let machine = Machine::new();
    let config = machine.config("agent-cli", &machine.path().join("data"), "");
    assert_eq!(
        check_host(&config, Some(&machine.bin_path())),
        Vec::<String>::new()
    );
}

#[test]
fn every_problem_is_reported_at_once_with_what_to_do() {
    let machine = Machine::new();
    std::fs::remove_file(machine.path().join("bin/bwrap")).expect("no bwrap");
    machine.program("git", "echo 'git version 2.30.2'");
    std::fs::write(machine.path().join("a-file"), "").expect("file");
    // /proc takes no new directory, whoever asks (the tests may run as root).
    let config = machine.config("claude", Path::new("/proc/orch-preflight-test"), "");
    let problems = check_host(&config, Some(&machine.bin_path()));
    let bin = machine.bin_path().to_string_lossy().into_owned();
    let git = machine.path().join("bin/git");
    let expected = [
        format!("agents.analyst.command: \"claude\" is not on PATH ({bin}): install it, or give its absolute path"),
        format!("agents.developer.command: \"claude\" is not on PATH ({bin}): install it, or give its absolute path"),
        format!("agents.reviewer.command: \"claude\" is not on PATH ({bin}): install it, or give its absolute path"),
        format!(
            "agents.sandbox: the sandbox needs bubblewrap, and \"bwrap\" is not on PATH ({bin}): install it \
             (apt-get install bubblewrap) or set agents.bwrap_path; agents.sandbox = \"none\" runs agents unconfined"
        ),
        format!(
            "git: {} is version 2.30, older than 2.38: orch needs 2.32 for its config environment \
             and 2.38 for merge-tree --write-tree; install a newer git first on PATH",
            git.display()
        ),
    ];
    assert_eq!(problems[..5], expected);
    assert_eq!(problems.len(), 7, "{problems:#?}");
    assert!(
        problems[5].starts_with(
            "storage.db_path: /proc/orch-preflight-test cannot be created: /proc is not writable ("
        ) && problems[5].ends_with(
            "): orch keeps its data there; make it writable by orch's user, or choose another directory"
        ),
        "{}",
        problems[5]
    );
    assert!(
        problems[6].starts_with("workspace.repos_dir: /proc/orch-preflight-test/repos cannot be created: /proc is not writable ("),
        "{}",
        problems[6]
    );
}

#[test]
fn no_git_a_file_in_the_data_path_and_a_missing_bwrap_path_are_problems() {
    let machine = Machine::new();
    std::fs::remove_file(machine.path().join("bin/git")).expect("no git");
    std::fs::write(machine.path().join("a-file"), "").expect("file");
    let agent = machine.path().join("bin/agent-cli").display().to_string();
    let config = machine.config(
        &agent,
        &machine.path().join("a-file/data"),
        "bwrap_path = \"/nonexistent/bwrap\"\n",
    );
    let problems = check_host(&config, Some(&machine.bin_path()));
    let bin = machine.bin_path().to_string_lossy().into_owned();
    let data = machine.path().join("a-file/data");
    assert_eq!(
        problems,
        [
            "agents.bwrap_path: the sandbox needs bubblewrap, and /nonexistent/bwrap is not an executable file: \
             install it (apt-get install bubblewrap) or set agents.bwrap_path; agents.sandbox = \"none\" runs agents unconfined"
                .to_owned(),
            format!("git: \"git\" is not on PATH ({bin}): install git 2.38 or newer"),
            format!(
                "storage.db_path: {} cannot be created: {} is not a directory: orch keeps its data there; \
                 make it writable by orch's user, or choose another directory",
                data.display(),
                machine.path().join("a-file").display()
            ),
            format!(
                "workspace.repos_dir: {} cannot be created: {} is not a directory: orch keeps its data there; \
                 make it writable by orch's user, or choose another directory",
                data.join("repos").display(),
                machine.path().join("a-file").display()
            ),
        ]
    );
}

#[test]
fn without_the_sandbox_bubblewrap_is_not_needed() {
    let machine = Machine::new();
    std::fs::remove_file(machine.path().join("bin/bwrap")).expect("no bwrap");
    let config = machine.config(
        "agent-cli",
        &machine.path().join("data"),
        "sandbox = \"none\"\n",
    );
    assert_eq!(
        check_host(&config, Some(&machine.bin_path())),
        Vec::<String>::new()
    );
}

#[test]
fn git_versions_are_read_from_what_git_prints() {
    for (text, expected) in [
        ("git version 2.47.3\n", Some((2, 47))),
        ("git version 2.38.0.windows.1", Some((2, 38))),
        ("git version 2.39.5 (Apple Git-154)", Some((2, 39))),
        ("git version 3.0", Some((3, 0))),
        ("hub version 2.14", None),
        ("git version two", None),
    ] {
        assert_eq!(parse_git_version(text), expected, "{text:?}");
    }
}
