//! This crate's named failpoint, `migrate.between_steps`. The mechanism (reading
//! `ORCH_FAILPOINTS`, killing orch like `kill -9`) lives in orch-daemon's `failpoint` module;
//! with the `failpoints` feature (turned on by orch-daemon's) the daemon installs its `hit`
//! here at start. Without the feature [`hit`] is empty and nothing is installed
//! (docs/adr/0009-failpoints.md).

/// A migration step committed and the next one has not started.
pub const MIGRATE_BETWEEN_STEPS: &str = "migrate.between_steps";

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

#[cfg(all(test, feature = "failpoints"))]
mod tests {
    use std::sync::Mutex;
    use std::thread::ThreadId;

    use super::{install, MIGRATE_BETWEEN_STEPS};
    use crate::LATEST_VERSION;

    /// Every point passed, with the thread that passed it (other tests open databases too).
    static PASSED: Mutex<Vec<(ThreadId, &'static str)>> = Mutex::new(Vec::new());

    fn record(name: &'static str) {
        PASSED
            .lock()
            .expect("passed points")
            .push((std::thread::current().id(), name));
    }

    fn passed_here() -> usize {
        let me = std::thread::current().id();
        PASSED
            .lock()
            .expect("passed points")
            .iter()
            .filter(|(thread, name)| *thread == me && *name == MIGRATE_BETWEEN_STEPS)
            .count()
    }

    #[test]
    fn a_migration_passes_the_point_between_two_steps_and_not_after_the_last() {
        install(record);
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("orch.db");
        crate::migrate(&path).expect("migrated");
        assert_eq!(passed_here() as i64, LATEST_VERSION - 1);
        crate::migrate(&path).expect("up to date");
        assert_eq!(
            passed_here() as i64,
            LATEST_VERSION - 1,
            "no step, no point"
        );
    }
}
