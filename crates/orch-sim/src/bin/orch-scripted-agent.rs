//! The scripted agent as a standalone binary: see `orch_sim::agent`.

#![forbid(unsafe_code)]

fn main() -> std::process::ExitCode {
    orch_sim::agent::run_from_env()
}
