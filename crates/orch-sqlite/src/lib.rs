//! orch's durable store: `SqliteStore` implements the `Store` port of orch-core on SQLite
//! (bundled, WAL) through an r2d2 connection pool, with versioned embedded migrations.
//!
//! Every write is one `BEGIN IMMEDIATE` transaction, so each port method is atomic; the
//! database itself enforces the rules the core relies on (one task per Plane issue, unique job
//! keys, at most one active agent job per task through a partial unique index), and completions
//! are fenced by `attempt_id`. Inbox commits use `synchronous=FULL`, so a delivery answered
//! `202` survives a power cut. Every blocking call runs on tokio's blocking pool, inside this
//! crate. This crate deliberately holds no domain logic: it stores what the core decides.
//! Its main types are `SqliteStore`, `StoreOptions` and `OpenError`; `migrate` applies the
//! migrations alone (`orch migrate`), and `backup` copies a live database (`orch backup`).
//! A full disk, a read-only database or file system and I/O errors are storage faults: calls
//! fail with `StoreError::Unavailable("storage fault: …")`, `StorageHealth` shows the fault
//! until a write commits again, and a probe thread tries a write while it lasts, so recovery
//! needs no restart.
//!
//! Where things are: `open` (opening, the writer lock, options, `OpenError`, `migrate`),
//! `schema` (the migrations), `store` (the `Store` port), `inbox` (the group-committing inbox
//! writer and its checkpointer), `rows` (row DTOs), `health` (storage faults and the probe),
//! `backup` (`VACUUM INTO`), `error` (SQLite errors to `StoreError`), `failpoint`.

#![forbid(unsafe_code)]

mod backup;
mod error;
pub mod failpoint;
mod health;
mod inbox;
mod open;
mod rows;
mod schema;
mod store;

#[cfg(test)]
mod tests;

pub use backup::{backup, Backup, BackupError};
pub use health::StorageHealth;
pub use open::{lock_path, migrate, OpenError, SqliteStore, StoreOptions, Synchronous};
pub use schema::{Migrated, LATEST_VERSION};
