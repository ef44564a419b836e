//! The slot through which the crates below the daemon pass their named failpoints
//! (`ingress.after_commit_before_answer` in orch-http, `migrate.between_steps` in orch-sqlite).
//! The mechanism (reading `ORCH_FAILPOINTS`, killing orch like `kill -9`) lives in orch-daemon's
//! `failpoint` module, which installs its `hit` here at start. Only with the `failpoints`
//! feature (turned on through orch-daemon's, in test builds) is there a slot at all; without
//! it [`hit`] is empty. No point lies in the core itself, and the slot does no I/O
//! (docs/adr/0009-failpoints.md).

#[cfg(feature = "failpoints")]
static HIT: std::sync::OnceLock<fn(&'static str)> = std::sync::OnceLock::new();

/// Hands the slot the daemon's `failpoint::hit`; the first call wins.
#[cfg(feature = "failpoints")]
pub fn install(hit: fn(&'static str)) {
    let _ = HIT.set(hit);
}

/// Passes the failpoint `name`: the installed `hit` decides whether orch dies here.
#[inline]
pub fn hit(name: &'static str) {
    #[cfg(feature = "failpoints")]
    if let Some(hit) = HIT.get() {
        hit(name);
    }
    #[cfg(not(feature = "failpoints"))]
    let _ = name;
}
