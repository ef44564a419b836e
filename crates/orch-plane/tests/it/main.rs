//! Integration tests of `PlaneTracker` against `orch_sim::plane::PlaneSim`.
