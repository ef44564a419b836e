//! This crate's named failpoint, `ingress.after_commit_before_answer`. The mechanism (reading
//! `ORCH_FAILPOINTS`, killing orch like `kill -9`) lives in orch-daemon's `failpoint` module;
//! with the `failpoints` feature (turned on by orch-daemon's) the daemon installs its `hit`
//! here at start. Without the feature [`hit`] is empty and nothing is installed
//! (docs/adr/0009-failpoints.md).

/// A delivery's inbox write committed; its `202` is not written yet.
pub const INGRESS_AFTER_COMMIT_BEFORE_ANSWER: &str = "ingress.after_commit_before_answer";

#[cfg(feature = "failpoints")]
static HIT: std::sync::OnceLock<fn(&'static str)> = std::sync::OnceLock::new();

/// Hands this crate the daemon's `failpoint::hit`; the first call wins.
#[cfg(feature = "failpoints")]
pub fn install(hit: fn(&'static str)) {
    let _ = HIT.set(hit);
}

/// Passes the failpoint `name`: the installed `hit` decides whether orch dies here.
#[inline]
pub(crate) fn hit(name: &'static str) {
    #[cfg(feature = "failpoints")]
    if let Some(hit) = HIT.get() {
        hit(name);
    }
    #[cfg(not(feature = "failpoints"))]
    let _ = name;
}
