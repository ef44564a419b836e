//! This crate's named failpoint, `migrate.between_steps`. The mechanism (reading
//! `ORCH_FAILPOINTS`, killing orch like `kill -9`) lives in orch-daemon's `failpoint` module;
//! the point is passed through orch-core's `failpoint` slot, where the daemon installs its
//! `hit` at start (docs/adr/0009-failpoints.md).

/// A migration step committed and the next one has not started.
pub const MIGRATE_BETWEEN_STEPS: &str = "migrate.between_steps";

pub(crate) use orch_core::failpoint::hit;

#[cfg(all(test, feature = "failpoints"))]
mod tests {
    use std::sync::Mutex;
    use std::thread::ThreadId;

    use super::MIGRATE_BETWEEN_STEPS;
    use crate::LATEST_VERSION;
    use orch_core::failpoint::install;

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
