//! The daemon's `Observer`: the runtime's observations as metrics and readiness, passed on
//! to an extra observer (the demo's progress lines, systemd's watchdog).

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use orch_core::domain::{Agent, JobKind};
use orch_core::orchestrator::Handled;
use orch_core::ports::AgentOutcome;
use orch_core::reconciler::PassReport;
use orch_http::{JobOutcome, LoopState, Metrics, Readiness};

use crate::runtime::{Loop, Observer};

/// Metrics and readiness from the runtime's observations.
pub(super) struct DaemonObserver {
    pub(super) metrics: Metrics,
    pub(super) readiness: Readiness,
    pub(super) extra: Option<Arc<dyn Observer>>,
}

impl Observer for DaemonObserver {
    fn job_ended(&self, kind: JobKind, outcome: JobOutcome) {
        self.metrics.count_job(kind, outcome);
        if let Some(extra) = &self.extra {
            extra.job_ended(kind, outcome);
        }
    }

    fn reconciled(&self, report: &PassReport) {
        self.metrics
            .count_reconcile_run(report.unblocked.len() as u64, report.errors.len() as u64);
        if report.errors.is_empty() {
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0.0, |elapsed| elapsed.as_secs_f64());
            self.metrics.set_reconcile_success(now);
        }
        if let Some(extra) = &self.extra {
            extra.reconciled(report);
        }
    }

    fn agent_ran(&self, agent: Agent, outcome: &AgentOutcome, elapsed: Duration) {
        self.metrics.observe_agent_run(agent, outcome, elapsed);
        if let Some(extra) = &self.extra {
            extra.agent_ran(agent, outcome, elapsed);
        }
    }

    fn transition(&self, handled: &Handled) {
        if let Some(extra) = &self.extra {
            extra.transition(handled);
        }
    }

    fn loop_changed(&self, which: Loop, state: LoopState) {
        self.readiness.set_loop(which.as_str(), state);
    }

    fn loop_alive(&self, which: Loop) {
        if let Some(extra) = &self.extra {
            extra.loop_alive(which);
        }
    }
}
