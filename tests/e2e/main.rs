//! End-to-end tests: orch in-process on a loopback port, and as a child process, against the
//! Plane, Gitea and Telegram simulators, with real git and real SQLite.

#![forbid(unsafe_code)]

mod backup;
mod board;
mod crash;
mod crash_matrix;
mod flood;
mod harness;
mod hostile;
mod pipeline;
mod process;
mod storage;
mod systemd;
