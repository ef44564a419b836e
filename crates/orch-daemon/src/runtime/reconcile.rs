//! The reconciler loop: one reconcile pass every interval with the current services.

use std::sync::Arc;

use tokio::sync::watch;
use tracing::info;

use orch_core::reconciler::TrackerSide;

use crate::runtime::{Observer, ReconcileSettings, Services};

pub(super) async fn reconcile_loop(
    services: watch::Receiver<Arc<Services>>,
    settings: ReconcileSettings,
    observer: Arc<dyn Observer>,
    mut stopped: watch::Receiver<bool>,
) {
    let side = if settings.plane_enabled {
        TrackerSide::Enabled
    } else {
        TrackerSide::Disabled
    };
    loop {
        let current = services.borrow().clone();
        let report = current.reconciler.run_once(side).await;
        info!(
            unblocked = report.unblocked.len(),
            replays = report.replays.len(),
            errors = report.errors.len(),
            "reconcile pass"
        );
        observer.reconciled(&report);
        tokio::select! {
            _ = tokio::time::sleep(settings.interval) => {}
            _ = stopped.changed() => return,
        }
    }
}
