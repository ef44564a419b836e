//! This crate's named failpoint, `ingress.after_commit_before_answer`. The mechanism (reading
//! `ORCH_FAILPOINTS`, killing orch like `kill -9`) lives in orch-daemon's `failpoint` module;
//! the point is passed through orch-core's `failpoint` slot, where the daemon installs its
//! `hit` at start (docs/adr/0009-failpoints.md).

/// A delivery's inbox write committed; its `202` is not written yet.
pub const INGRESS_AFTER_COMMIT_BEFORE_ANSWER: &str = "ingress.after_commit_before_answer";

pub(crate) use orch_core::failpoint::hit;
