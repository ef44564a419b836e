//! Agents in a bubblewrap sandbox: what they see and may change, the network switch, that
//! nothing they start outlives them, interpreters outside `/usr`, and `orch check`'s probes.

use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Once;
use std::time::Duration;

use orch_agent::{
    check_sandbox, reap_orphans, AgentSandbox, ProbeOutcome, ReapOutcome, SandboxPath,
};
use orch_core::domain::Agent;
use orch_core::ports::{AgentOutcome, AgentRunner};

use crate::{eventually, timed, Fixture};

/// A variable of the test process that one role passes through to its agent.
const PASSED_NAME: &str = "SANDBOX_TEST_API_KEY";
const PASSED_VALUE: &str = "passed-through-api-key";

fn put_passed_variable_in_parent_environment() {
    static ONCE: Once = Once::new();
    // Set once, before any agent of this test binary reads it; std serialises environment
    // access with `Command::spawn`.
    ONCE.call_once(|| std::env::set_var(PASSED_NAME, PASSED_VALUE));
}

/// Runs `script` with bash as the developer in a sandbox configured by `adjust`; returns the
/// outcome and the log.
async fn run_script(
    fixture: &Fixture,
    script: &str,
    adjust: impl FnOnce(&mut orch_agent::RunnerConfig),
) -> (AgentOutcome, String) {
    let mut config = fixture.sandboxed(Agent::Developer, &["/bin/bash", "-c", script]);
    adjust(&mut config);
    crate::run_developer(fixture, config).await
}

/// A number to `sleep` for, unique to this test run and `n`, to find the process by.
fn marker(n: u64) -> String {
    (1_000_000_000 + u64::from(std::process::id()) * 10 + n).to_string()
}

/// The pids of host processes whose command line holds `marker`.
fn processes_with(marker: &str) -> Vec<u32> {
    let own = std::process::id();
    std::fs::read_dir("/proc")
        .expect("/proc is readable")
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| *pid != own)
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|cmdline| {
                String::from_utf8_lossy(&cmdline)
                    .split('\0')
                    .any(|word| word == marker)
            }) && crate::is_running(*pid)
        })
        .collect()
}

fn lines_of(log: &str) -> Vec<&str> {
    log.lines().collect()
}

#[tokio::test]
async fn the_sandbox_shows_the_run_and_the_system_and_nothing_of_orch() {
    let fixture = Fixture::new();
    std::fs::create_dir_all(fixture.data_dir()).expect("data dir");
    std::fs::write(fixture.data_dir().join("orch.db"), "database canary").expect("db");
    let other_worktree = fixture.dir.path().join("other-worktree");
    std::fs::create_dir_all(&other_worktree).expect("other worktree");
    std::fs::write(other_worktree.join("secret.txt"), "other task canary").expect("secret");
    let other_home = fixture.homes_dir().join("ET-002");
    std::fs::create_dir_all(&other_home).expect("other home");
    std::fs::write(other_home.join("token"), "other home canary").expect("token");
    std::fs::create_dir_all(fixture.logs_dir().join("ET-002")).expect("logs");
    std::fs::write(
        fixture.logs_dir().join("ET-002/1-developer.log"),
        "log canary",
    )
    .expect("log");
    let host_tmp_file = fixture.dir.path().join("host-tmp-file");
    std::fs::write(&host_tmp_file, "host tmp").expect("tmp file");

    let script = format!(
        r#"
        probe() {{ if "$@" 2>/dev/null; then echo "yes: $*"; else echo "no: $*"; fi; }}
        probe touch "$ORCH_WORKTREE/made-by-agent"
        probe touch "$ORCH_OUTPUT_DIR/output-by-agent"
        probe touch "$HOME/in-home"
        probe touch /tmp/in-tmp
        probe touch /usr/in-usr
        probe touch "$ORCH_PROMPT_FILE.changed"
        probe test -r "$ORCH_PROMPT_FILE"
        probe test -e {db}
        probe test -e {other}
        probe test -e {other_home}
        probe test -e {logs}
        probe test -e {tmp_file}
        echo "home: $HOME"
        echo "processes: $(ls /proc | grep -c '^[0-9]')"
        echo "pid1: $(tr '\0' ' ' < /proc/1/cmdline)"
        echo "caps: $(grep CapEff /proc/self/status)"
        "#,
        db = fixture.data_dir().join("orch.db").display(),
        other = other_worktree.display(),
        other_home = other_home.display(),
        logs = fixture.logs_dir().join("ET-002").display(),
        tmp_file = host_tmp_file.display(),
    );
    let (outcome, log) = run_script(&fixture, &script, |_| {}).await;
    assert_eq!(outcome, AgentOutcome::Succeeded, "{log}");

    let lines = lines_of(&log);
    for expected in [
        format!("yes: touch {}/made-by-agent", fixture.worktree().display()),
        format!(
            "yes: touch {}/output-by-agent",
            fixture.output_dir().display()
        ),
        format!(
            "yes: touch {}/in-home",
            fixture.homes_dir().join("ET-001").display()
        ),
        "yes: touch /tmp/in-tmp".to_owned(),
        "no: touch /usr/in-usr".to_owned(),
        format!(
            "home: {}",
            std::path::absolute(fixture.homes_dir().join("ET-001"))
                .expect("absolute")
                .display()
        ),
        "caps: CapEff:\t0000000000000000".to_owned(),
    ] {
        assert!(lines.contains(&expected.as_str()), "{expected:?} in {log}");
    }
    for line in &lines {
        if line.starts_with("yes: test -e") {
            panic!("the sandbox shows something of orch: {line}\n{log}");
        }
        if line.starts_with("yes: touch") && line.contains("prompt.md.changed") {
            panic!("the prompt files are writable: {line}");
        }
    }
    assert!(lines
        .iter()
        .any(|line| line.starts_with("yes: test -r") && line.ends_with("prompt.md")));
    let processes: usize = lines
        .iter()
        .find_map(|line| line.strip_prefix("processes: "))
        .and_then(|count| count.trim().parse().ok())
        .expect("the script counted processes");
    assert!(
        processes <= 5,
        "the sandbox sees {processes} processes: {log}"
    );
    assert!(
        lines
            .iter()
            .any(|line| line.starts_with("pid1: ") && line.contains("bwrap")),
        "{log}"
    );
    assert!(fixture.worktree().join("made-by-agent").is_file());
    assert!(fixture.homes_dir().join("ET-001/in-home").is_file());
    assert!(
        !Path::new("/tmp/in-tmp").exists(),
        "the sandbox's /tmp is its own"
    );
}

#[tokio::test]
async fn the_environment_holds_the_contract_a_private_home_and_passed_variables_only() {
    put_passed_variable_in_parent_environment();
    let fixture = Fixture::new();
    let mut config = fixture.sandboxed(Agent::Developer, &["/usr/bin/env"]);
    let role = config.roles.get_mut(&Agent::Developer).expect("configured");
    role.pass_env = vec![PASSED_NAME.to_owned(), "NOT_SET_ANYWHERE_42".to_owned()];
    role.env
        .insert("AGENT_MODEL".to_owned(), "sonnet".to_owned());
    let runner = fixture.runner(config);
    let agent = runner
        .start(fixture.request(Agent::Developer))
        .await
        .expect("the agent starts");
    assert_eq!(agent.wait().await, AgentOutcome::Succeeded);
    let log = fixture.log_text(Agent::Developer);
    let names: Vec<&str> = log
        .lines()
        .filter_map(|line| line.split_once('=').map(|(name, _)| name))
        .collect();
    // bwrap sets PWD to the directory it starts the agent in.
    for name in names.iter().filter(|name| !name.starts_with("ORCH_")) {
        assert!(
            ["PATH", "HOME", "LANG", "PWD", "AGENT_MODEL", PASSED_NAME].contains(name),
            "unexpected {name} in {log}"
        );
    }
    assert!(
        log.contains(&format!("{PASSED_NAME}={PASSED_VALUE}\n")),
        "{log}"
    );
    assert!(
        log.contains(&format!(
            "HOME={}\n",
            std::path::absolute(fixture.homes_dir().join("ET-001"))
                .expect("absolute")
                .display()
        )),
        "{log}"
    );
    assert!(log.contains("ORCH_AGENT=developer\n"), "{log}");
}

#[tokio::test]
async fn the_network_is_cut_when_the_role_says_so() {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let script =
        format!("if exec 3<>/dev/tcp/127.0.0.1/{port}; then echo connected; else echo refused; fi");
    for (network, expected) in [(true, "connected"), (false, "refused")] {
        let fixture = Fixture::new();
        let (outcome, log) = run_script(&fixture, &script, |config| {
            config
                .roles
                .get_mut(&Agent::Developer)
                .expect("configured")
                .network = network;
        })
        .await;
        assert_eq!(outcome, AgentOutcome::Succeeded, "{log}");
        assert!(
            log.lines().any(|line| line == expected),
            "network {network}: {log}"
        );
    }
}

#[tokio::test]
async fn a_setsid_grandchild_ends_when_the_agent_exits() {
    let fixture = Fixture::new();
    let marker = &marker(1);
    let script = format!("setsid sleep {marker} > /dev/null 2>&1 & sleep 0.2; echo left it");
    let (outcome, log) = run_script(&fixture, &script, |_| {}).await;
    assert_eq!(outcome, AgentOutcome::Succeeded, "{log}");
    assert!(
        eventually(|| processes_with(marker).is_empty()).await,
        "the grandchild outlived its sandbox: {:?}",
        processes_with(marker)
    );
}

#[tokio::test]
async fn cancel_ends_the_sandbox_with_every_escaped_grandchild() {
    let fixture = Fixture::new();
    let marker = &marker(2);
    let script = format!(
        "trap '' TERM; setsid sleep {marker} > /dev/null 2>&1 & (setsid sh -c 'sleep {marker}' &); echo started; sleep 1000"
    );
    let mut config = fixture.sandboxed(Agent::Developer, &["/bin/bash", "-c", &script]);
    config.kill_grace = Duration::from_millis(300);
    let runner = fixture.runner(config);
    let agent = runner
        .start(fixture.request(Agent::Developer))
        .await
        .expect("the agent starts");
    let record = agent.process().expect("a sandbox has a record");
    assert!(
        eventually(|| processes_with(marker).len() == 2).await,
        "the grandchildren did not start"
    );
    agent.cancel_handle().cancel();
    let (outcome, elapsed) = timed(agent.wait()).await;
    assert_eq!(outcome, AgentOutcome::Cancelled);
    assert!(elapsed < Duration::from_secs(3), "took {elapsed:?}");
    assert!(
        eventually(|| processes_with(marker).is_empty()).await,
        "escaped: {:?}",
        processes_with(marker)
    );
    assert!(!crate::is_running(record.pid), "bwrap survived");
}

#[tokio::test]
async fn a_cancel_right_after_the_start_leaves_no_sandbox_behind() {
    let fixture = Fixture::new();
    let marker = &marker(5);
    let script = format!("setsid sleep {marker} > /dev/null 2>&1 & sleep 1000");
    let mut config = fixture.sandboxed(Agent::Developer, &["/bin/bash", "-c", &script]);
    config.kill_grace = Duration::from_millis(300);
    let runner = fixture.runner(config);
    let agent = runner
        .start(fixture.request(Agent::Developer))
        .await
        .expect("the agent starts");
    // Cancelled while bwrap may still be setting the sandbox up.
    agent.cancel_handle().cancel();
    assert_eq!(agent.wait().await, AgentOutcome::Cancelled);
    assert!(
        eventually(|| processes_with(marker).is_empty()).await,
        "the sandbox outlived its cancel: {:?}",
        processes_with(marker)
    );
}

#[tokio::test]
async fn a_cooperative_agent_gets_sigterm_inside_the_sandbox_before_the_kill() {
    let fixture = Fixture::new();
    let script =
        r#"trap 'echo got-term; exit 0' TERM; echo started; while true; do sleep 0.05; done"#;
    let mut config = fixture.sandboxed(Agent::Developer, &["/bin/bash", "-c", script]);
    config.kill_grace = Duration::from_secs(30);
    let runner = fixture.runner(config);
    let agent = runner
        .start(fixture.request(Agent::Developer))
        .await
        .expect("the agent starts");
    assert!(
        eventually(
            || std::fs::read_to_string(fixture.log_file(Agent::Developer))
                .is_ok_and(|log| log.contains("started"))
        )
        .await
    );
    agent.cancel_handle().cancel();
    let (outcome, elapsed) = timed(agent.wait()).await;
    assert_eq!(outcome, AgentOutcome::Cancelled);
    assert!(
        elapsed < Duration::from_secs(5),
        "waited for the grace: {elapsed:?}"
    );
    assert!(fixture.log_text(Agent::Developer).contains("got-term"));
}

#[tokio::test]
async fn a_timeout_kills_a_sandbox_that_ignores_sigterm_after_the_grace() {
    let fixture = Fixture::new();
    let marker = &marker(3);
    let script = format!("trap '' TERM; setsid sleep {marker} & sleep 1000");
    let mut config = fixture.sandboxed(Agent::Developer, &["/bin/bash", "-c", &script]);
    config
        .roles
        .get_mut(&Agent::Developer)
        .expect("configured")
        .timeout = Duration::from_millis(400);
    let grace = Duration::from_millis(400);
    config.kill_grace = grace;
    let runner = fixture.runner(config);
    let agent = runner
        .start(fixture.request(Agent::Developer))
        .await
        .expect("the agent starts");
    let (outcome, elapsed) = timed(agent.wait()).await;
    assert_eq!(outcome, AgentOutcome::TimedOut);
    assert!(
        elapsed >= Duration::from_millis(800),
        "no grace: {elapsed:?}"
    );
    assert!(elapsed < Duration::from_secs(4), "took {elapsed:?}");
    assert!(eventually(|| processes_with(marker).is_empty()).await);
}

#[tokio::test]
async fn reaping_the_record_of_a_sandbox_ends_everything_in_it() {
    let fixture = Fixture::new();
    let marker = &marker(4);
    let script = format!("setsid sleep {marker} > /dev/null 2>&1 & sleep 1000");
    let runner = fixture.runner(fixture.sandboxed(Agent::Developer, &["/bin/bash", "-c", &script]));
    let agent = runner
        .start(fixture.request(Agent::Developer))
        .await
        .expect("the agent starts");
    let record = agent.process().expect("a record");
    assert!(eventually(|| processes_with(marker).len() == 1).await);

    let report = reap_orphans(&[record]);

    assert_eq!(report.entries[0].outcome, ReapOutcome::KilledGroup);
    assert!(
        eventually(|| processes_with(marker).is_empty()).await,
        "a grandchild survived the reaping of its sandbox"
    );
    assert!(matches!(agent.wait().await, AgentOutcome::Failed { .. }));
}

#[tokio::test]
async fn git_commit_works_inside_the_sandbox() {
    let fixture = Fixture::new();
    let script = r#"
        set -e
        export GIT_AUTHOR_NAME=agent GIT_AUTHOR_EMAIL=agent@localhost
        export GIT_COMMITTER_NAME=agent GIT_COMMITTER_EMAIL=agent@localhost
        git init --quiet --initial-branch=main
        echo work > work.txt
        git add work.txt
        git commit --quiet --message 'agent work'
        git log --oneline
        git status --short
        "#;
    let (outcome, log) = run_script(&fixture, script, |_| {}).await;
    assert_eq!(outcome, AgentOutcome::Succeeded, "{log}");
    assert!(log.contains("agent work"), "{log}");
    let head = Command::new("git")
        .args(["log", "--format=%s", "-1"])
        .current_dir(fixture.worktree())
        .output()
        .expect("git runs");
    assert_eq!(String::from_utf8_lossy(&head.stdout).trim(), "agent work");
}

/// An installation outside `/usr`: `{dir}/prefix/bin/bash` (a copy of bash) and a file in
/// `{dir}/prefix/lib/` it reads, with an agent script stored outside the worktree.
struct Installation {
    prefix: PathBuf,
    script: PathBuf,
}

fn installation(fixture: &Fixture, shebang: &str) -> Installation {
    let prefix = fixture.dir.path().join("prefix");
    std::fs::create_dir_all(prefix.join("bin")).expect("bin");
    std::fs::create_dir_all(prefix.join("lib")).expect("lib");
    std::fs::copy("/bin/bash", prefix.join("bin/agentbash")).expect("bash copied");
    std::fs::write(prefix.join("lib/marker"), "from the installation\n").expect("marker");
    let scripts = fixture.dir.path().join("scripts");
    std::fs::create_dir_all(&scripts).expect("scripts");
    let script = scripts.join("agent.sh");
    std::fs::write(
        &script,
        format!(
            "{shebang}\ncat {marker} > \"$ORCH_OUTPUT_DIR/marker\"\necho ran by \"$BASH\"\n",
            marker = prefix.join("lib/marker").display()
        ),
    )
    .expect("script");
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    Installation { prefix, script }
}

#[tokio::test]
async fn a_script_outside_the_worktree_runs_with_an_interpreter_installed_outside_usr() {
    let fixture = Fixture::new();
    let installed = installation(&fixture, "");
    let interpreter = installed.prefix.join("bin/agentbash");
    let command = [
        interpreter.to_str().expect("utf-8"),
        installed.script.to_str().expect("utf-8"),
    ];
    let runner = fixture.runner(fixture.sandboxed(Agent::Developer, &command));
    let agent = runner
        .start(fixture.request(Agent::Developer))
        .await
        .expect("the agent starts");
    assert_eq!(
        agent.wait().await,
        AgentOutcome::Succeeded,
        "{}",
        fixture.log_text(Agent::Developer)
    );
    assert_eq!(
        std::fs::read_to_string(fixture.output_dir().join("marker")).expect("written"),
        "from the installation\n"
    );
}

#[tokio::test]
async fn a_script_found_on_path_runs_with_its_env_interpreter_installed_outside_usr() {
    let fixture = Fixture::new();
    let installed = installation(&fixture, "#!/usr/bin/env agentbash");
    let scripts = installed.script.parent().expect("scripts dir");
    let search_path = format!(
        "{}:{}:/usr/bin:/bin",
        scripts.display(),
        installed.prefix.join("bin").display()
    );
    let mut config = fixture.sandboxed(Agent::Developer, &["agent.sh"]);
    config
        .roles
        .get_mut(&Agent::Developer)
        .expect("configured")
        .env
        .insert("PATH".to_owned(), search_path);
    let runner = fixture.runner(config);
    let agent = runner
        .start(fixture.request(Agent::Developer))
        .await
        .expect("the agent starts");
    assert_eq!(
        agent.wait().await,
        AgentOutcome::Succeeded,
        "{}",
        fixture.log_text(Agent::Developer)
    );
    assert!(
        fixture.log_text(Agent::Developer).contains("agentbash"),
        "{}",
        fixture.log_text(Agent::Developer)
    );
    assert!(fixture.output_dir().join("marker").is_file());
}

#[tokio::test]
async fn extra_paths_are_shown_read_only_or_writable_and_home_paths_land_in_the_private_home() {
    let fixture = Fixture::new();
    let shared = fixture.dir.path().join("shared-data");
    std::fs::create_dir_all(&shared).expect("shared");
    std::fs::write(shared.join("data.txt"), "shared").expect("data");
    let cache = fixture.dir.path().join("cache");
    std::fs::create_dir_all(&cache).expect("cache");
    let real_home = std::env::var_os("HOME").map(PathBuf::from);
    let script = format!(
        r#"
        cat {shared}/data.txt && echo read-shared
        touch {shared}/new 2>/dev/null && echo wrote-shared
        touch {cache}/new && echo wrote-cache
        "#,
        shared = shared.display(),
        cache = cache.display(),
    );
    let (outcome, log) = run_script(&fixture, &script, |config| {
        let role = config.roles.get_mut(&Agent::Developer).expect("configured");
        role.read_only_paths = vec![
            SandboxPath::Absolute(shared.clone()),
            SandboxPath::Absolute(PathBuf::from("/no/such/path")),
        ];
        role.writable_paths = vec![SandboxPath::Absolute(cache.clone())];
    })
    .await;
    assert_eq!(outcome, AgentOutcome::Succeeded, "{log}");
    assert!(log.contains("read-shared"), "{log}");
    assert!(!log.contains("wrote-shared"), "{log}");
    assert!(log.contains("wrote-cache"), "{log}");
    assert!(cache.join("new").is_file());

    // `~/x` is taken from orch's home and shown in the agent's private home.
    let Some(real_home) = real_home else { return };
    let settings = tempfile::Builder::new()
        .prefix(".orch-agent-test-")
        .tempdir_in(&real_home);
    let Ok(settings) = settings else { return };
    std::fs::write(settings.path().join("login.json"), "logged in").expect("login");
    let name = settings
        .path()
        .file_name()
        .expect("a name")
        .to_string_lossy()
        .into_owned();
    let home_fixture = Fixture::new();
    let (outcome, log) = run_script(
        &home_fixture,
        &format!("cat \"$HOME/{name}/login.json\"; touch \"$HOME/{name}/refreshed\""),
        |config| {
            config
                .roles
                .get_mut(&Agent::Developer)
                .expect("configured")
                .writable_paths = vec![SandboxPath::InHome(PathBuf::from(&name))];
        },
    )
    .await;
    assert_eq!(outcome, AgentOutcome::Succeeded, "{log}");
    assert!(log.contains("logged in"), "{log}");
    assert!(settings.path().join("refreshed").is_file());
}

#[tokio::test]
async fn a_configured_path_that_holds_orch_data_is_refused_and_nothing_starts() {
    let fixture = Fixture::new();
    std::fs::create_dir_all(fixture.data_dir()).expect("data dir");
    let (outcome, _) = run_script(&fixture, "echo should not run", |config| {
        config
            .roles
            .get_mut(&Agent::Developer)
            .expect("configured")
            .read_only_paths = vec![SandboxPath::Absolute(fixture.dir.path().to_path_buf())];
    })
    .await;
    match outcome {
        AgentOutcome::CouldNotStart { reason } => {
            assert!(reason.starts_with("read_only_paths: "), "{reason}");
            assert!(reason.contains("holds orch's own"), "{reason}");
        }
        other => panic!("expected could not start, got {other:?}"),
    }
}

#[tokio::test]
async fn a_missing_program_could_not_start_in_a_sandbox() {
    let fixture = Fixture::new();
    let runner =
        fixture.runner(fixture.sandboxed(Agent::Developer, &["no-such-agent-program", "-p"]));
    let agent = runner
        .start(fixture.request(Agent::Developer))
        .await
        .expect("a handle even so");
    assert_eq!(agent.process(), None);
    match agent.wait().await {
        AgentOutcome::CouldNotStart { reason } => {
            assert_eq!(reason, "no-such-agent-program: not found on PATH")
        }
        other => panic!("expected could not start, got {other:?}"),
    }
}

#[tokio::test]
async fn an_unsandboxed_agent_has_no_capabilities() {
    let fixture = Fixture::new();
    let runner = fixture.runner(fixture.config(
        Agent::Developer,
        &[
            "/bin/sh",
            "-c",
            "grep -E '^Cap(Eff|Prm|Bnd)' /proc/self/status",
        ],
    ));
    let agent = runner
        .start(fixture.request(Agent::Developer))
        .await
        .expect("the agent starts");
    assert_eq!(agent.wait().await, AgentOutcome::Succeeded);
    let log = fixture.log_text(Agent::Developer);
    assert!(log.contains("CapEff:\t0000000000000000"), "{log}");
    assert!(log.contains("CapPrm:\t0000000000000000"), "{log}");
}

#[tokio::test]
async fn the_sandbox_can_start_here() {
    let used = check_sandbox(&AgentSandbox::Bwrap { program: None })
        .await
        .expect("bubblewrap works on this machine");
    assert!(used.ends_with("bwrap"), "{used}");
    assert_eq!(
        check_sandbox(&AgentSandbox::None).await,
        Ok("none".to_owned())
    );
    let missing = check_sandbox(&AgentSandbox::Bwrap {
        program: Some(PathBuf::from("/no/such/bwrap")),
    })
    .await
    .expect_err("a missing bwrap cannot start sandboxes");
    assert!(missing.starts_with("/no/such/bwrap: "), "{missing}");
}

#[tokio::test]
async fn probes_report_the_first_line_a_failure_or_what_is_missing() {
    let fixture = Fixture::new();
    let mut config = fixture.sandboxed(Agent::Developer, &["/bin/sh", "-c", "true"]);
    config
        .roles
        .get_mut(&Agent::Developer)
        .expect("configured")
        .probe = vec!["-c".to_owned(), "echo agent 1.2.3; echo more".to_owned()];
    let mut failing = config.roles[&Agent::Developer].clone();
    failing.probe = vec![
        "-c".to_owned(),
        "echo 'cannot load libagent.so' >&2; exit 127".to_owned(),
    ];
    config.roles.insert(Agent::Reviewer, failing);
    let mut missing = config.roles[&Agent::Developer].clone();
    missing.command = vec!["no-such-agent-cli".to_owned()];
    missing.pass_env = vec!["NOT_SET_ANYWHERE_43".to_owned()];
    config.roles.insert(Agent::Analyst, missing);
    let runner = fixture.runner(config);

    let developer = runner.probe(Agent::Developer).await.expect("configured");
    assert_eq!(
        developer.outcome,
        ProbeOutcome::Ran {
            first_line: "agent 1.2.3".to_owned()
        }
    );
    assert!(developer.succeeded());
    let reviewer = runner.probe(Agent::Reviewer).await.expect("configured");
    assert_eq!(
        reviewer.outcome,
        ProbeOutcome::Failed {
            code: Some(127),
            output: "cannot load libagent.so".to_owned()
        }
    );
    let analyst = runner.probe(Agent::Analyst).await.expect("configured");
    assert_eq!(
        analyst.outcome,
        ProbeOutcome::CouldNotStart {
            reason: "no-such-agent-cli: not found on PATH".to_owned()
        }
    );
    assert_eq!(
        analyst.notes,
        vec!["pass_env: NOT_SET_ANYWHERE_43 is not set in orch's environment".to_owned()]
    );
    assert!(!std::env::temp_dir()
        .join(format!("orch-probe-{}-developer", std::process::id()))
        .exists());
    assert!(
        !fixture.dir.path().join("scratch").exists(),
        "orch's data is left alone"
    );
}
