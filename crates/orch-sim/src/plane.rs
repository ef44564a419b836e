//! `PlaneSim`: Plane API v1 and the webhook sender.
