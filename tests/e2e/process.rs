//! `orch serve` as a child process: the single-writer lock, and a `kill -9` mid-agent.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use orch_core::domain::{JobStatus, Stage};
use orch_core::ports::Store;
use orch_daemon::sandbox::{self, Sandbox};

use crate::harness::{alive, approve_to_the_end_then_stop, orch_binary, sandbox, wait_for};

/// Gives the sandbox's config a fixed free port, so webhooks can reach a child process.
pub(crate) fn fix_port(sandbox: &Sandbox) -> u16 {
    let port = TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    let text = std::fs::read_to_string(&sandbox.config_path).expect("config");
    let text = text.replace(
        "listen = \"127.0.0.1:0\"",
        &format!("listen = \"127.0.0.1:{port}\""),
    );
    std::fs::write(&sandbox.config_path, text).expect("config written");
    sandbox.point_webhooks_at(&format!("http://127.0.0.1:{port}"));
    port
}

pub(crate) fn serve(sandbox: &Sandbox) -> Child {
    serve_command(sandbox).spawn().expect("orch serve starts")
}

/// `orch serve` on the sandbox's config, not started yet.
pub(crate) fn serve_command(sandbox: &Sandbox) -> Command {
    let mut command = Command::new(orch_binary());
    command
        .args(["serve", "--config"])
        .arg(&sandbox.config_path)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(daemon_log_file(sandbox));
    command
}

/// Where `serve_command`'s daemons write their log: one file per sandbox that every start
/// appends to, so a failing test can show what orch said (an unread pipe would also stall
/// orch once its buffer fills).
fn daemon_log_file(sandbox: &Sandbox) -> std::fs::File {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(sandbox.dir.join("orch.stderr"))
        .expect("orch's log file opens")
}

/// The last lines the sandbox's daemons logged, for a failure message.
pub(crate) fn daemon_log(sandbox: &Sandbox) -> String {
    let text = std::fs::read_to_string(sandbox.dir.join("orch.stderr")).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    let tail = &lines[lines.len().saturating_sub(60)..];
    format!(
        "orch's log (last {} lines):\n{}",
        tail.len(),
        tail.join("\n")
    )
}

pub(crate) async fn wait_ready(port: u16) {
    wait_for("orch to be ready", || async move {
        let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
        use std::io::{Read, Write};
        stream
            .write_all(b"GET /readyz HTTP/1.1\r\nHost: orch\r\nConnection: close\r\n\r\n")
            .ok()?;
        let mut answer = String::new();
        stream.read_to_string(&mut answer).ok()?;
        answer.starts_with("HTTP/1.1 200").then_some(())
    })
    .await;
}

/// The answer to `GET path` from orch on `port`, whole (status line, headers, body).
pub(crate) fn get(port: u16, path: &str) -> String {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connects");
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: orch\r\nConnection: close\r\n\r\n"
    )
    .expect("request written");
    let mut answer = String::new();
    stream.read_to_string(&mut answer).expect("answer read");
    answer
}

/// A new user's setup, seen from outside: the reconciler switched off, the daemon under a
/// supervisor that reads its stderr, and a Plane that puts state names in its activity.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_reconciler_off_orch_is_ready_logs_plainly_and_starts_items_from_either_activity_shape(
) {
    let (sandbox, _dir) = sandbox(r#"{"default": {}, "items": {}}"#).await;
    let port = fix_port(&sandbox);
    let text = std::fs::read_to_string(&sandbox.config_path).expect("config");
    let text = text.replace("[reconcile]\n", "[reconcile]\nenabled = false\n");
    std::fs::write(&sandbox.config_path, text).expect("config written");
    let mut daemon = Command::new(orch_binary())
        .args(["serve", "--config"])
        .arg(&sandbox.config_path)
        .env("RUST_LOG", "info")
        .env_remove("NO_COLOR")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("orch serve starts");
    wait_ready(port).await;
    let ready = get(port, "/readyz");
    assert!(
        ready.contains("\"reconciler\":\"disabled\""),
        "the kill switch shows in /readyz: {ready}"
    );

    let store =
        orch_sqlite::SqliteStore::open(&sandbox.config.storage.db_path).expect("store opens");
    sandbox
        .plane
        .set_activity_values(orch_sim::plane::ActivityValues::StateNames);
    let (item, _) = sandbox.create_item("Named states").await.expect("item");
    sandbox
        .move_item(&item, "In Progress")
        .await
        .expect("moved");
    wait_for("the webhook alone to start the task", || async {
        sandbox.task(&store, &item).await.ok()?.map(|_| ())
    })
    .await;

    daemon.kill().expect("orch is killed");
    let output = daemon.wait_with_output().expect("orch ends");
    let log = String::from_utf8_lossy(&output.stderr);
    assert!(log.contains("task created"), "{log}");
    assert!(
        !log.contains('\u{1b}'),
        "stderr is not a terminal: no ANSI escape codes in the log: {log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_serve_on_the_same_database_exits_non_zero_within_a_second() {
    let (sandbox, _dir) = sandbox(r#"{"default": {}, "items": {}}"#).await;
    let port = fix_port(&sandbox);
    let mut first = serve(&sandbox);
    wait_ready(port).await;
    let started = Instant::now();
    let second = Command::new(orch_binary())
        .args(["serve", "--config"])
        .arg(&sandbox.config_path)
        .output()
        .expect("second orch runs");
    let took = started.elapsed();
    first.kill().expect("first orch is killed");
    let _ = first.wait();
    assert!(!second.status.success());
    assert!(
        took < Duration::from_secs(1),
        "the second daemon took {took:?} to give up"
    );
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert!(stderr.contains("already in use"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_killed_while_an_agent_runs_recovers_on_restart_with_one_pr_and_no_orphan() {
    if std::env::var_os("RUN_SLOW_TESTS").is_none() {
        return;
    }
    serve_killed_while_an_agent_runs("bwrap").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_killed_while_an_unsandboxed_agent_runs_reaps_it_on_restart() {
    if std::env::var_os("RUN_SLOW_TESTS").is_none() {
        return;
    }
    serve_killed_while_an_agent_runs("none").await;
}

/// `kill -9` of `orch serve` while the developer hangs, then a restart: one PR, merged, and no
/// agent left. A sandboxed agent dies with orch (`--die-with-parent`); an unsandboxed one
/// outlives it in its own process group and is reaped at boot.
async fn serve_killed_while_an_agent_runs(agent_sandbox: &str) {
    let script = r#"{"default": {"developer": {"hang_times": 1}}, "items": {}}"#;
    let (mut sandbox, _dir) = sandbox(script).await;
    sandbox
        .set_agent_sandbox(agent_sandbox)
        .expect("sandbox mode set");
    let port = fix_port(&sandbox);
    let mut daemon = serve(&sandbox);
    wait_ready(port).await;
    let (item, work_item) = sandbox.create_item("Survive a crash").await.expect("item");
    sandbox
        .move_item(&item, "In Progress")
        .await
        .expect("moved");
    let store =
        orch_sqlite::SqliteStore::open(&sandbox.config.storage.db_path).expect("store opens");

    // The person approves the analysis; the developer then hangs on its first run.
    wait_for("the analysis gate", || async {
        let task = sandbox.task(&store, &item).await.ok()??;
        let in_review = sandbox
            .plane
            .item(&item)
            .is_some_and(|sim| sim.state_name == "In Review");
        (task.status == orch_core::domain::TaskStatus::AwaitingVerdict && in_review).then_some(())
    })
    .await;
    sandbox
        .move_item(&item, "Approved")
        .await
        .expect("approved");
    let orphan = wait_for("the developer to run", || async {
        let task = sandbox.task(&store, &item).await.ok()??;
        let jobs = store.jobs_of_task(task.id).await.ok()?;
        jobs.iter()
            .find(|job| {
                job.status == JobStatus::Running && job.kind().is_agent() && job.process.is_some()
            })
            .and_then(|job| job.process)
    })
    .await;
    // Spawned is not yet hanging: killed before the scripted agent counts its run, the agent
    // would hang again on the rerun, until its timeout, long after this test gives up.
    let counters = orch_sim::agent::Counters::new(Some(sandbox.dir.join("agent-state")));
    wait_for("the developer to hang", || async {
        let runs = counters.get(&work_item, orch_sim::agent::Role::Developer, "runs");
        (runs.ok()? >= 1).then_some(())
    })
    .await;
    daemon.kill().expect("kill -9");
    let _ = daemon.wait();
    if agent_sandbox == "none" {
        assert!(
            alive(orphan.pid),
            "the agent outlives a kill -9 of orch (its own process group)"
        );
    } else {
        wait_for("the sandbox to die with orch", || async {
            (!alive(orphan.pid)).then_some(())
        })
        .await;
    }

    let restarted = serve(&sandbox);
    wait_ready(port).await;
    wait_for("the orphan agent to be reaped", || async {
        (!alive(orphan.pid)).then_some(())
    })
    .await;
    let task = approve_to_the_end_then_stop(&sandbox, &store, &item, restarted).await;
    assert_eq!(task.stage, Stage::Done, "{}", daemon_log(&sandbox));
    assert!(sandbox::merged(&sandbox, Some(&task)));
    assert_eq!(
        sandbox.gitea.pulls(orch_daemon::sandbox::REPO).len(),
        1,
        "exactly one pull request"
    );
}

/// POSTs a Plane delivery signed with `secret` and returns the status code.
pub(crate) fn post_plane_delivery(port: u16, secret: &str, delivery: &str) -> Option<u16> {
    use std::io::{Read, Write};
    let body = format!(
        r#"{{"event": "issue_comment", "action": "created", "data": {{"n": "{delivery}"}}}}"#
    );
    let signature = orch_sim::webhook::hmac_sha256_hex(secret.as_bytes(), body.as_bytes());
    let request = format!(
        "POST /webhooks/plane HTTP/1.1\r\nHost: orch\r\nContent-Type: application/json\r\nX-Plane-Event: issue_comment\r\n\
         X-Plane-Delivery: {delivery}\r\nX-Plane-Signature: {signature}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.write_all(request.as_bytes()).ok()?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer).ok()?;
    answer.split(' ').nth(1)?.parse().ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_rotates_webhook_secrets_and_a_bad_file_keeps_the_last_good_config() {
    let (sandbox, _dir) = sandbox(r#"{"default": {}, "items": {}}"#).await;
    let port = fix_port(&sandbox);
    let mut daemon = serve_command(&sandbox)
        .stderr(Stdio::piped())
        .spawn()
        .expect("orch serve starts");
    wait_ready(port).await;
    assert_eq!(
        post_plane_delivery(port, "rotated-secret", "before"),
        Some(401)
    );

    let text = std::fs::read_to_string(&sandbox.config_path).expect("config");
    let rotated = text.replace(
        &format!(
            "webhook_secrets = [\"{}\"]",
            orch_daemon::sandbox::PLANE_SECRET
        ),
        &format!(
            "webhook_secrets = [\"{}\", \"rotated-secret\"]",
            orch_daemon::sandbox::PLANE_SECRET
        ),
    );
    assert_ne!(rotated, text);
    std::fs::write(&sandbox.config_path, &rotated).expect("config written");
    let hangup = |pid: u32| {
        Command::new("kill")
            .args(["-HUP", &pid.to_string()])
            .status()
            .expect("kill runs")
    };
    hangup(daemon.id());
    let mut attempt = 0;
    wait_for("the rotated secret to be accepted", || {
        attempt += 1;
        let delivery = format!("after-{attempt}");
        async move {
            (post_plane_delivery(port, "rotated-secret", &delivery) == Some(202)).then_some(())
        }
    })
    .await;

    // orch's log, read line by line, to see the refused reload happen.
    let log: std::sync::Arc<std::sync::Mutex<Vec<String>>> = std::sync::Arc::default();
    let stderr = daemon.stderr.take().expect("stderr is piped");
    let lines = log.clone();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            lines.lock().expect("log lock").push(line);
        }
    });
    std::fs::write(&sandbox.config_path, "this is [not toml").expect("bad config written");
    hangup(daemon.id());
    wait_for("the bad file to be refused", || {
        let refused = log
            .lock()
            .expect("log lock")
            .iter()
            .any(|line| line.contains("config reload refused"));
        async move { refused.then_some(()) }
    })
    .await;
    wait_ready(port).await;
    assert_eq!(
        post_plane_delivery(port, "rotated-secret", "after-bad-file"),
        Some(202),
        "the last good config stays"
    );
    daemon.kill().expect("stop orch");
    let _ = daemon.wait();
}
