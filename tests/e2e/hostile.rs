//! A hostile developer agent (`hostile-agent.sh`, SPEC §5.4 "agents are untrusted") against
//! `orch serve` with real secrets in its config and environment: no secret or canary reaches
//! anything the agent can write out, the database is untouched, nothing the agent starts
//! outlives its job, orch's git ignores the config the agent wrote, and the pipeline finishes.
//! Once in the sandbox; once with `agents.sandbox = "none"` for what orch guarantees even then
//! (its environment is unreadable, its git ignores the user's config, agents get no capabilities).

use std::io::{Read, Write};
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt as _;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};

use orch_daemon::sandbox::{
    self, Approver, Sandbox, GITEA_SECRET, PLANE_SECRET, REPO, TELEGRAM_TOKEN,
};

use crate::harness::{orch_binary, sandbox, wait_for, CONVERGE};

const HOSTILE_AGENT: &str = include_str!("hostile-agent.sh");
const NO_SCRIPT: &str = r#"{"default": {}, "items": {}}"#;

/// Secrets that live only in orch's environment, never in a file.
struct EnvCanaries {
    admin_token: String,
    plain: String,
}

impl EnvCanaries {
    fn new(marker: &str) -> EnvCanaries {
        EnvCanaries {
            admin_token: format!("canary-admin-token-{marker}"),
            plain: format!("canary-environment-{marker}"),
        }
    }

    fn all(&self) -> [&str; 2] {
        [&self.admin_token, &self.plain]
    }
}

/// What the agent could plant its loot in, and what the test planted for it to find.
struct Scene {
    sandbox: Sandbox,
    dir: PathBuf,
    marker: String,
    canaries: EnvCanaries,
    /// Files of other tasks (worktree, home, log) holding this canary.
    other_task_canary: String,
    exfil: PathBuf,
    trap_log: PathBuf,
    proxy: Proxy,
    port: u16,
}

/// A listener standing in for the proxy the agent points orch's git at: it records what
/// arrives and answers 502.
struct Proxy {
    port: u16,
    received: Arc<Mutex<Vec<u8>>>,
}

impl Proxy {
    fn start() -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the proxy");
        let port = listener.local_addr().expect("addr").port();
        let received: Arc<Mutex<Vec<u8>>> = Arc::default();
        let sink = received.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let _ = stream.set_read_timeout(Some(std::time::Duration::from_secs(2)));
                let mut buffer = [0u8; 4096];
                let n_bytes = stream.read(&mut buffer).unwrap_or(0);
                sink.lock()
                    .expect("proxy lock")
                    .extend_from_slice(b"<connection>");
                sink.lock()
                    .expect("proxy lock")
                    .extend_from_slice(&buffer[..n_bytes]);
                let _ = stream.write_all(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n");
            }
        });
        Proxy { port, received }
    }

    fn received(&self) -> String {
        String::from_utf8_lossy(&self.received.lock().expect("proxy lock")).into_owned()
    }
}

async fn scene(agent_sandbox: &str) -> (Scene, tempfile::TempDir) {
    let (mut sandbox, temp) = sandbox(NO_SCRIPT).await;
    sandbox
        .set_agent_sandbox(agent_sandbox)
        .expect("sandbox mode set");
    let dir = sandbox.dir.clone();
    let marker = format!("hostile-{agent_sandbox}-{}", std::process::id());
    let exfil = dir.join("exfil");
    std::fs::create_dir_all(&exfil).expect("exfil dir");
    let script = dir.join("hostile/agent.sh");
    std::fs::create_dir_all(script.parent().expect("a parent")).expect("script dir");
    std::fs::write(&script, HOSTILE_AGENT).expect("script written");
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let proxy = Proxy::start();
    let trap_log = dir.join("trap-hook.log");

    // The hostile script is the developer; analyst and reviewer stay scripted agents.
    let text = std::fs::read_to_string(&sandbox.config_path).expect("config");
    let start = text.find("[agents.developer]").expect("a developer table");
    let end = text.find("[agents.reviewer]").expect("a reviewer table");
    let developer = format!(
        "[agents.developer]\ncommand = [{script:?}]\nprompt = \"prompts/developer.md\"\ntimeout_s = 120\n\
         env = {{ HOSTILE_MARKER = {marker:?}, HOSTILE_PROXY_PORT = \"{port}\", HOSTILE_TRAP_LOG = {trap:?}, HOSTILE_EXFIL = {exfil:?} }}\n\
         writable_paths = [{exfil:?}]\n\n",
        script = script.display().to_string(),
        port = proxy.port,
        trap = trap_log.display().to_string(),
        exfil = exfil.display().to_string(),
    );
    let port = free_port();
    let text = format!("{}{developer}{}", &text[..start], &text[end..]).replace(
        "listen = \"127.0.0.1:0\"",
        &format!("listen = \"127.0.0.1:{port}\""),
    );
    std::fs::write(&sandbox.config_path, text).expect("config written");
    sandbox.point_webhooks_at(&format!("http://127.0.0.1:{port}"));

    // Another task's worktree, home and log, each with a canary.
    let other_task_canary = format!("canary-other-task-{marker}");
    let data = sandbox
        .config
        .storage
        .db_path
        .parent()
        .expect("a data dir")
        .to_path_buf();
    let repos = &sandbox.config.workspace.repos_dir;
    for file in [
        repos.join(format!("{REPO}/worktrees/ZZ-999/secret.txt")),
        data.join("homes/ZZ-999/.credentials.json"),
        data.join("logs/ZZ-999/1-developer.log"),
    ] {
        std::fs::create_dir_all(file.parent().expect("a parent")).expect("dir");
        std::fs::write(&file, &other_task_canary).expect("canary written");
    }
    let scene = Scene {
        sandbox,
        dir,
        canaries: EnvCanaries::new(&marker),
        marker,
        other_task_canary,
        exfil,
        trap_log,
        proxy,
        port,
    };
    (scene, temp)
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

/// `orch serve` with a clean environment: `PATH`, a `HOME` of its own, and the canaries.
fn serve(scene: &Scene) -> Child {
    let home = scene.dir.join("orch-home");
    std::fs::create_dir_all(&home).expect("orch's home");
    let stderr = std::fs::File::create(scene.dir.join("orch.stderr")).expect("stderr file");
    Command::new(orch_binary())
        .args(["serve", "--config"])
        .arg(&scene.sandbox.config_path)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", &home)
        .env("RUST_LOG", "warn")
        .env("ORCH_ADMIN_TOKEN", &scene.canaries.admin_token)
        .env("HOSTILE_ENV_CANARY", &scene.canaries.plain)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(stderr)
        .spawn()
        .expect("orch serve starts")
}

async fn wait_ready(port: u16) {
    wait_for("orch to be ready", || async move {
        let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
        stream
            .write_all(b"GET /readyz HTTP/1.1\r\nHost: orch\r\nConnection: close\r\n\r\n")
            .ok()?;
        let mut answer = String::new();
        stream.read_to_string(&mut answer).ok()?;
        answer.starts_with("HTTP/1.1 200").then_some(())
    })
    .await;
}

/// Host processes whose first word is `marker` (the agent's grandchild).
fn processes_named(marker: &str) -> Vec<u32> {
    std::fs::read_dir("/proc")
        .expect("/proc")
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|cmdline| {
                cmdline.split(|byte| *byte == 0).next() == Some(marker.as_bytes())
            }) && crate::harness::alive(*pid)
        })
        .collect()
}

/// Everything the agent wrote where someone could read it: its logs, its exfiltration
/// directory, and the file it committed (merged into the repository on Gitea).
fn everything_the_agent_wrote_out(scene: &Scene) -> String {
    let mut text = String::new();
    let data = scene
        .sandbox
        .config
        .storage
        .db_path
        .parent()
        .expect("a data dir")
        .to_path_buf();
    let logs = data.join("logs");
    for entry in std::fs::read_dir(&logs).expect("logs").flatten() {
        if entry.file_name() == "ZZ-999" {
            continue;
        }
        for file in std::fs::read_dir(entry.path())
            .expect("a task's logs")
            .flatten()
        {
            text.push_str(&String::from_utf8_lossy(
                &std::fs::read(file.path()).expect("log"),
            ));
        }
    }
    if let Ok(loot) = std::fs::read(scene.exfil.join("loot.txt")) {
        text.push_str(&String::from_utf8_lossy(&loot));
    }
    let committed = Command::new("git")
        .args(["show", "main:hostile-loot.txt"])
        .current_dir(scene.sandbox.gitea.repo_path(REPO))
        .output()
        .expect("git runs");
    text.push_str(&String::from_utf8_lossy(&committed.stdout));
    text
}

fn assert_absent(haystack: &str, needles: &[&str], what: &str) {
    for needle in needles {
        assert!(
            !haystack.contains(needle),
            "{what} {needle:?} reached what the agent wrote out"
        );
    }
}

/// Runs one item through the pipeline with the hostile developer; returns the stopped scene.
async fn run_hostile_item(scene: &Scene) {
    let mut daemon = serve(scene);
    wait_ready(scene.port).await;
    let (item, _) = scene
        .sandbox
        .create_item("Innocent looking work item")
        .await
        .expect("item");
    scene
        .sandbox
        .move_item(&item, "In Progress")
        .await
        .expect("moved");
    let store =
        orch_sqlite::SqliteStore::open(&scene.sandbox.config.storage.db_path).expect("store opens");
    let ended = sandbox::play_person(
        &scene.sandbox,
        &store,
        std::slice::from_ref(&item),
        &mut Approver,
        CONVERGE,
        &mut |_, _| {},
    )
    .await
    .expect("person plays");
    daemon.kill().expect("stop orch");
    let _ = daemon.wait();
    let task = ended[0].task.clone().expect("a task");
    let stderr = std::fs::read_to_string(scene.dir.join("orch.stderr")).unwrap_or_default();
    assert!(
        sandbox::merged(&scene.sandbox, Some(&task)),
        "the pipeline did not finish: {} / {}\n{stderr}",
        task.stage,
        task.status
    );
}

fn database_intact_without(scene: &Scene, injected: &str) {
    let connection = rusqlite::Connection::open(&scene.sandbox.config.storage.db_path)
        .expect("the database opens");
    let check: String = connection
        .query_row("PRAGMA integrity_check", [], |row| row.get(0))
        .expect("integrity check");
    assert_eq!(check, "ok");
    let rows: i64 = connection
        .query_row(
            "SELECT count(*) FROM inbox WHERE delivery_id = ?1",
            [injected],
            |row| row.get(0),
        )
        .expect("count");
    assert_eq!(rows, 0, "the agent inserted a delivery");
}

fn assert_orchs_git_ignored_the_agents_config(scene: &Scene) {
    assert!(
        !scene.trap_log.exists(),
        "a hook of the agent's repository ran for orch's git: {}",
        std::fs::read_to_string(&scene.trap_log).unwrap_or_default()
    );
    let received = scene.proxy.received();
    assert!(
        received.is_empty(),
        "orch's git went through the agent's proxy: {received}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hostile_agent_in_the_sandbox_gets_no_secret_and_changes_nothing_of_orch() {
    let (scene, _temp) = scene("bwrap").await;
    run_hostile_item(&scene).await;

    let written = everything_the_agent_wrote_out(&scene);
    assert!(
        written.contains("hostile agent for ET-001"),
        "the agent ran and its output was read: {written}"
    );
    let gitea_token = scene.sandbox.gitea.token().to_owned();
    let plane_token = scene.sandbox.plane.api_token().to_owned();
    assert_absent(
        &written,
        &[
            &gitea_token,
            &plane_token,
            PLANE_SECRET,
            GITEA_SECRET,
            TELEGRAM_TOKEN,
        ],
        "a secret of orch's config",
    );
    assert_absent(
        &written,
        &scene.canaries.all(),
        "a secret of orch's environment",
    );
    assert_absent(&written, &[&scene.other_task_canary], "another task's file");
    assert!(
        written.contains("CapEff:\t0000000000000000"),
        "the agent had capabilities: {written}"
    );
    database_intact_without(&scene, &format!("hostile-{}", scene.marker));
    assert!(
        processes_named(&scene.marker).is_empty(),
        "the agent's setsid grandchild outlived its job"
    );
    assert_orchs_git_ignored_the_agents_config(&scene);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hostile_agent_without_the_sandbox_still_gets_neither_orchs_environment_nor_its_token() {
    let (scene, _temp) = scene("none").await;
    run_hostile_item(&scene).await;

    let written = everything_the_agent_wrote_out(&scene);
    // Without a sandbox the agent is orch's user: it reads orch's config and database (that is
    // what the sandbox is for). What orch guarantees even so: its environment stays unreadable
    // (non-dumpable, and the agent has no capabilities though orch runs as root here), and its
    // git never follows the config the agent wrote.
    assert!(
        written.contains("hostile agent for ET-001"),
        "the agent ran and its output was read: {written}"
    );
    assert_absent(
        &written,
        &scene.canaries.all(),
        "a secret of orch's environment",
    );
    assert!(
        written.contains("CapEff:\t0000000000000000"),
        "the agent had capabilities: {written}"
    );
    assert!(
        written.contains(&format!(
            "wrote {}",
            scene.dir.join("orch-home/.gitconfig").display()
        )),
        "the attack on orch's git config was made: {written}"
    );
    assert_orchs_git_ignored_the_agents_config(&scene);
    // Without a PID namespace a setsid grandchild escapes the agent's process group.
    for pid in processes_named(&scene.marker) {
        let _ = Command::new("kill")
            .args(["-KILL", &pid.to_string()])
            .status();
    }
}
