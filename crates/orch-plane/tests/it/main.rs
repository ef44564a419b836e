//! Integration tests of `PlaneTracker` against `orch_sim::plane::PlaneSim` on loopback.

mod contract;
mod faults;
mod reads;
mod writes;

use std::time::Duration;

use orch_core::backoff::{Backoff, RetryPolicy};
use orch_core::ids::ProjectId;
use orch_plane::{PlaneSettings, PlaneTracker};
use orch_sim::plane::PlaneSim;

/// A simulator with one project (`ET`) and a tracker for it with test-speed retries.
pub(crate) struct Setup {
    pub(crate) sim: PlaneSim,
    pub(crate) tracker: PlaneTracker,
    pub(crate) project: ProjectId,
}

/// Retries in milliseconds so tests stay fast; `max_delay` allows a `Retry-After: 1`.
pub(crate) fn fast_config(sim: &PlaneSim, token: &str) -> PlaneSettings {
    let mut config = PlaneSettings::new(sim.base_url(), sim.workspace_slug(), token);
    config.rate_limit_per_min = 6000;
    config.request_timeout = Duration::from_secs(5);
    config.retry = RetryPolicy {
        max_attempts: 4,
        backoff: Backoff {
            base: Duration::from_millis(5),
            cap: Duration::from_secs(2),
        },
    };
    config
}

pub(crate) async fn setup() -> Setup {
    let sim = PlaneSim::start().await.expect("plane sim starts");
    let project = ProjectId::new(sim.add_project("ET")).expect("sim ids are valid");
    let tracker = PlaneTracker::new(&fast_config(&sim, sim.api_token()));
    Setup {
        sim,
        tracker,
        project,
    }
}
