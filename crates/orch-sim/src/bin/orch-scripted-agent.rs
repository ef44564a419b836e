//! The scripted agent as a standalone binary: see `orch_sim::agent`.

fn main() -> std::process::ExitCode {
    orch_sim::agent::run_from_env()
}
