//! `orch serve` makes itself non-dumpable: a process of its own user cannot read its environment.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use orch_daemon::sandbox::{Sandbox, SandboxSetup};

/// A secret orch gets in its environment, as systemd's `EnvironmentFile=` would give it.
const SECRET_IN_ENV: &str = "admin-token-in-the-environment-5e1f";
/// How long `orch serve` may take to answer `/readyz`.
const READY_DEADLINE: Duration = Duration::from_secs(30);
const POLL: Duration = Duration::from_millis(50);

/// A child process ended when the test ends, pass or fail.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Whether this test runs as root, which reads every process's environment unless its
/// capabilities are dropped.
fn running_as_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            let line = status.lines().find(|line| line.starts_with("Uid:"))?;
            line.split_whitespace().nth(2).map(|euid| euid == "0")
        })
        .unwrap_or(false)
}

/// `program` as an ordinary process of this user: when the test runs as root, without any
/// capability (root's capabilities would let it read every environment, and a process with
/// capabilities is shielded from one without them whatever its dumpable flag).
fn as_plain_user(program: &str) -> Command {
    if running_as_root() {
        let mut command = Command::new("setpriv");
        command.args(["--bounding-set=-all", "--inh-caps=-all", "--", program]);
        command
    } else {
        Command::new(program)
    }
}

/// Reads `/proc/{pid}/environ` as a plain process of the same user, the way an unsandboxed
/// agent would.
fn read_environ_as_same_user(pid: u32) -> std::io::Result<Output> {
    as_plain_user("cat")
        .arg(format!("/proc/{pid}/environ"))
        .stdin(Stdio::null())
        .output()
}

fn ready(port: u16) -> bool {
    let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let request = b"GET /readyz HTTP/1.1\r\nHost: orch\r\nConnection: close\r\n\r\n";
    let mut answer = String::new();
    stream.write_all(request).is_ok()
        && stream.read_to_string(&mut answer).is_ok()
        && answer.starts_with("HTTP/1.1 200")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_is_not_dumpable_so_its_environment_is_unreadable_to_its_own_user() {
    // A process that did not protect itself shows its environment to its own user.
    let Ok(control) = as_plain_user("sleep")
        .arg("60")
        .env_clear()
        .env("ORCH_ADMIN_TOKEN", SECRET_IN_ENV)
        .spawn()
    else {
        // No `setpriv` to drop root's capabilities with: nothing to observe here.
        return;
    };
    let control = Killed(control);
    // `setpriv` holds root's capabilities until it has become `sleep`.
    let started = Instant::now();
    while std::fs::read_to_string(format!("/proc/{}/comm", control.0.id()))
        .map_or(true, |comm| comm.trim() != "sleep")
    {
        assert!(started.elapsed() < READY_DEADLINE, "sleep did not start");
        tokio::time::sleep(POLL).await;
    }
    let seen = read_environ_as_same_user(control.0.id()).expect("the reader ran");
    assert!(
        String::from_utf8_lossy(&seen.stdout).contains(SECRET_IN_ENV),
        "the reader cannot read an ordinary process's environment: {}",
        String::from_utf8_lossy(&seen.stderr)
    );

    let dir = tempfile::tempdir().expect("temp dir");
    let mut sandbox = Sandbox::new(SandboxSetup {
        dir: dir.path(),
        orch_binary: Path::new(env!("CARGO_BIN_EXE_orch")),
        agent_script: "{}",
        reconcile_interval_s: 60,
    })
    .await
    .expect("sandbox");
    // Root without capabilities cannot create the agents' sandbox (bwrap needs user
    // namespaces or CAP_SYS_ADMIN), and orch serve refuses to start without it.
    sandbox.set_agent_sandbox("none").expect("no agent sandbox");
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
        .port();
    let written = std::fs::read_to_string(&sandbox.config_path).expect("config");
    let with_port = written.replace(
        "listen = \"127.0.0.1:0\"",
        &format!("listen = \"127.0.0.1:{port}\""),
    );
    assert_ne!(written, with_port, "the sandbox config has a listen line");
    std::fs::write(&sandbox.config_path, with_port).expect("config");
    let orch = as_plain_user(env!("CARGO_BIN_EXE_orch"))
        .args(["serve", "--config"])
        .arg(&sandbox.config_path)
        .env_clear()
        .env("ORCH_ADMIN_TOKEN", SECRET_IN_ENV)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("orch serve starts");
    let orch = Killed(orch);
    let started = Instant::now();
    while !ready(port) {
        assert!(
            started.elapsed() < READY_DEADLINE,
            "orch serve was not ready within {READY_DEADLINE:?}"
        );
        tokio::time::sleep(POLL).await;
    }

    let seen = read_environ_as_same_user(orch.0.id()).expect("the reader ran");
    let stdout = String::from_utf8_lossy(&seen.stdout);
    assert!(
        !stdout.contains(SECRET_IN_ENV),
        "a process of orch's own user read its environment"
    );
    assert!(
        !seen.status.success(),
        "reading orch's environment did not fail"
    );
    assert!(
        String::from_utf8_lossy(&seen.stderr).contains("Permission denied"),
        "{}",
        String::from_utf8_lossy(&seen.stderr)
    );
}
