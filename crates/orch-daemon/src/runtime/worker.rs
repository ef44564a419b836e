//! The worker: two dispatchers (agents and actions) that claim jobs and run each under a
//! heartbeat, the reclaim of expired or earlier boots' leases, and the lease keeper.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{watch, Semaphore};
use tokio::task::JoinSet;
use tracing::{debug, error, info, warn};

use orch_core::domain::{ClaimedJob, JobKind, JobResult, ProcessRecord};
use orch_core::ids::BootId;
use orch_core::ports::{ClaimKinds, ClaimRequest, Ports, StoreError};
use orch_http::JobOutcome;

use crate::runtime::{Observer, Reaper, RuntimeSettings, Services, Wakes};

/// Claims and runs jobs.
pub(super) struct Worker {
    pub(super) ports: Ports,
    pub(super) services: watch::Receiver<Arc<Services>>,
    pub(super) wakes: Arc<Wakes>,
    pub(super) observer: Arc<dyn Observer>,
    pub(super) settings: RuntimeSettings,
    pub(super) stopped: watch::Receiver<bool>,
    pub(super) reaper: Reaper,
}

/// How often a dispatcher looks again while a due job waits for its repository's limit.
const HELD_BACK_LOOK: Duration = Duration::from_secs(2);

/// How long an idle dispatcher sleeps at most before looking again.
const IDLE_LOOK: Duration = Duration::from_secs(30);

impl Worker {
    pub(super) async fn dispatch(self: Arc<Self>, kinds: ClaimKinds, slots: Arc<Semaphore>) {
        let mut stopped = self.stopped.clone();
        let mut running = JoinSet::new();
        let wake = match kinds {
            ClaimKinds::Agents { .. } => &self.wakes.agents,
            ClaimKinds::Actions => &self.wakes.actions,
        };
        loop {
            if *stopped.borrow() {
                break;
            }
            let permit = tokio::select! {
                permit = slots.clone().acquire_owned() => permit.expect("the semaphore is never closed"),
                _ = stopped.changed() => break,
            };
            let now = self.ports.clock.now();
            let request = ClaimRequest {
                owner: self.settings.boot.clone(),
                kinds,
                now,
                lease: self.settings.lease,
            };
            match self.ports.store.claim_next(&request).await {
                Ok(Some(claimed)) => {
                    let worker = self.clone();
                    running.spawn(async move {
                        let job = claimed.job.clone();
                        let attempt = claimed.attempt.clone();
                        // A panic in a job's run is a bug: it must not leave the job running
                        // until its lease expires, nor its agent behind.
                        let run = tokio::spawn({
                            let worker = worker.clone();
                            async move { worker.run(claimed).await }
                        });
                        if let Err(err) = run.await {
                            if err.is_panic() {
                                worker.panicked(&job, &attempt).await;
                            }
                        }
                        drop(permit);
                    });
                    while running.try_join_next().is_some() {}
                }
                Ok(None) => {
                    drop(permit);
                    // A job due already but not claimed waits for its repository's running
                    // agent to end, which wakes this dispatcher; meanwhile another repository's
                    // retry may come due, so look again now and then, not every few ms.
                    let now = self.ports.clock.now();
                    let wait = match self.ports.store.next_due(kinds).await {
                        Ok(Some(due)) if due > now => due.since(now).min(IDLE_LOOK),
                        Ok(Some(_)) => HELD_BACK_LOOK,
                        _ => IDLE_LOOK,
                    };
                    tokio::select! {
                        _ = wake.notified() => {}
                        _ = tokio::time::sleep(wait.max(Duration::from_millis(5))) => {}
                        _ = stopped.changed() => break,
                    }
                }
                Err(err) => {
                    drop(permit);
                    warn!(error = %err, "no job could be claimed");
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                        _ = stopped.changed() => break,
                    }
                }
            }
        }
        while running.join_next().await.is_some() {}
    }

    async fn run(&self, claimed: ClaimedJob) {
        let job = &claimed.job;
        // A job runs to its end with the services it started with, even across a reload.
        let services = self.services.borrow().clone();
        let task = match self.ports.store.task(job.task).await {
            Ok(Some(task)) => task,
            Ok(None) => {
                self.finish(
                    &claimed,
                    JobResult::Failed {
                        error: "the job's task is gone".to_owned(),
                    },
                )
                .await;
                return;
            }
            Err(err) => {
                let not_before = self.ports.clock.now() + Duration::from_secs(5);
                self.finish(
                    &claimed,
                    JobResult::Retry {
                        not_before,
                        error: err.to_string(),
                    },
                )
                .await;
                return;
            }
        };
        debug!(job = %job.id, kind = %job.kind(), task = %task.work_item, "job started");
        crate::failpoint::hit(crate::failpoint::WORKER_AFTER_CLAIM_BEFORE_SPAWN);
        let result = if job.kind().is_agent() {
            match services.executor.start_agent(&claimed, &task).await {
                Err(result) => Some(result),
                Ok(running) => {
                    crate::failpoint::hit(crate::failpoint::WORKER_AFTER_SPAWN_BEFORE_RECORD);
                    if let Some(process) = running.process() {
                        if let Err(err) = self
                            .ports
                            .store
                            .record_process(job.id, &claimed.attempt, process)
                            .await
                        {
                            warn!(job = %job.id, error = %err, "agent process not recorded");
                        }
                    }
                    let cancel = running.cancel_handle();
                    let started = tokio::time::Instant::now();
                    let outcome = self
                        .with_heartbeat(&claimed, Some(&cancel), running.wait())
                        .await;
                    match outcome {
                        Watched::Done(outcome) => {
                            crate::failpoint::hit(crate::failpoint::AGENT_AFTER_EXIT_BEFORE_RESULT);
                            if let JobKind::Agent(agent) = job.kind() {
                                self.observer.agent_ran(agent, &outcome, started.elapsed());
                            }
                            Some(
                                services
                                    .executor
                                    .finish_agent(&claimed, &task, outcome)
                                    .await,
                            )
                        }
                        Watched::Lost => None,
                        Watched::Interrupted => Some(self.hand_back()),
                    }
                }
            }
        } else {
            match self
                .with_heartbeat(
                    &claimed,
                    None,
                    services.executor.run_action(&claimed, &task),
                )
                .await
            {
                Watched::Done(result) => Some(result),
                Watched::Lost => None,
                Watched::Interrupted => Some(self.hand_back()),
            }
        };
        match result {
            Some(result) => self.finish(&claimed, result).await,
            None => {
                info!(job = %job.id, kind = %job.kind(), "job lease lost (cancelled or reclaimed); its result is dropped");
                self.wakes.work();
            }
        }
    }

    /// The run of `job` panicked: its agent (if any) is killed and the attempt ends as a
    /// failure, retried later like any other (three panics fail the job for good).
    async fn panicked(&self, job: &orch_core::domain::Job, attempt: &orch_core::ids::AttemptId) {
        error!(job = %job.id, kind = %job.kind(), "a job's worker panicked; its attempt ends as failed");
        if let Ok(Some(current)) = self.ports.store.job(job.id).await {
            if let Some(process) = current.process {
                (self.reaper)(&[process]);
            }
        }
        let error = "orch's worker panicked while running this job".to_owned();
        let result = if job.attempts >= PANICS_BEFORE_FAILING {
            JobResult::Failed { error }
        } else {
            JobResult::Retry {
                not_before: self.ports.clock.now() + self.settings.lease,
                error,
            }
        };
        let claimed = ClaimedJob {
            job: job.clone(),
            attempt: attempt.clone(),
        };
        self.finish(&claimed, result).await;
    }

    fn hand_back(&self) -> JobResult {
        JobResult::HandBack {
            error: "interrupted by shutdown".to_owned(),
        }
    }

    /// Runs `work` while extending the lease. A lost lease (the job was cancelled or
    /// reclaimed) cancels an agent; a shutdown past the grace cancels it too.
    async fn with_heartbeat<T>(
        &self,
        claimed: &ClaimedJob,
        cancel: Option<&orch_core::ports::CancelHandle>,
        work: impl std::future::Future<Output = T>,
    ) -> Watched<T> {
        tokio::pin!(work);
        let mut stopped = self.stopped.clone();
        let mut lost = false;
        let mut interrupted = false;
        let mut deadline: Option<tokio::time::Instant> = None;
        loop {
            let beat = tokio::time::sleep(self.settings.heartbeat_every);
            let grace_over = async {
                match deadline {
                    Some(deadline) => tokio::time::sleep_until(deadline).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                output = &mut work => {
                    return if lost {
                        Watched::Lost
                    } else if interrupted {
                        Watched::Interrupted
                    } else {
                        Watched::Done(output)
                    };
                }
                _ = beat => {
                    let now = self.ports.clock.now();
                    match self.ports.store.heartbeat(claimed.job.id, &claimed.attempt, now, self.settings.lease).await {
                        Ok(()) => {}
                        Err(StoreError::Conflict(_)) => {
                            lost = true;
                            match cancel {
                                Some(cancel) => cancel.cancel(),
                                None => return Watched::Lost,
                            }
                        }
                        Err(err) => warn!(job = %claimed.job.id, error = %err, "heartbeat failed"),
                    }
                }
                _ = stopped.changed(), if deadline.is_none() && cancel.is_some() => {
                    deadline = Some(tokio::time::Instant::now() + self.settings.shutdown_grace);
                }
                _ = grace_over => {
                    interrupted = true;
                    deadline = None;
                    if let Some(cancel) = cancel {
                        cancel.cancel();
                    }
                }
            }
        }
    }

    async fn finish(&self, claimed: &ClaimedJob, result: JobResult) {
        let kind = claimed.job.kind();
        let outcome = match &result {
            JobResult::Succeeded(_) => JobOutcome::Succeeded,
            JobResult::Retry { .. } | JobResult::HandBack { .. } => JobOutcome::Retried,
            JobResult::Wait { .. } => JobOutcome::Waited,
            JobResult::Failed { .. } => JobOutcome::Failed,
            JobResult::Obsolete { .. } => JobOutcome::Skipped,
        };
        match &result {
            JobResult::Retry { error, .. }
            | JobResult::Failed { error }
            | JobResult::HandBack { error } => {
                warn!(job = %claimed.job.id, kind = %kind, outcome = outcome.as_str(), error = %error, "job attempt did not succeed");
            }
            JobResult::Wait { error, service, .. } => {
                warn!(job = %claimed.job.id, kind = %kind, service = %service, error = %error, "job waits for a service to come back");
            }
            JobResult::Obsolete { reason } => {
                info!(job = %claimed.job.id, kind = %kind, reason = %reason, "job skipped: its task moved on");
            }
            JobResult::Succeeded(_) => {}
        }
        let ended = result.is_end();
        let now = self.ports.clock.now();
        match self
            .ports
            .store
            .finish_job(claimed.job.id, &claimed.attempt, result, now)
            .await
        {
            Ok(()) => {
                self.observer.job_ended(kind, outcome);
                if ended {
                    self.wakes.ended.notify_one();
                }
                // A slot (and maybe a repository's agent limit) is free, and a retry may be due.
                self.wakes.work();
            }
            Err(StoreError::Conflict(reason)) => {
                info!(job = %claimed.job.id, reason = %reason, "a stale attempt's result was rejected");
            }
            Err(err) => {
                error!(job = %claimed.job.id, error = %err, "job result not recorded; the lease will expire and the job run again")
            }
        }
    }
}

/// Attempts after which a job whose worker keeps panicking fails for good.
const PANICS_BEFORE_FAILING: u32 = 3;

/// Re-queues jobs whose lease expired or belongs to an earlier boot, and kills the agent
/// process groups they left: at start-up, and while running (a worker died, or a result
/// could not be recorded), so no job stays `running` for ever.
pub(super) async fn reclaim(
    ports: &Ports,
    boot: &BootId,
    reaper: &Reaper,
) -> Result<usize, StoreError> {
    let now = ports.clock.now();
    let reclaimed = ports.store.reclaim_leases(boot, now).await?;
    let orphans: Vec<ProcessRecord> = reclaimed.iter().filter_map(|job| job.process).collect();
    if !reclaimed.is_empty() {
        info!(
            jobs = reclaimed.len(),
            orphans = orphans.len(),
            "reclaimed jobs whose lease expired or belonged to an earlier boot"
        );
    }
    reaper(&orphans);
    Ok(reclaimed.len())
}

/// Reclaims expired leases every half lease, so a job whose worker is gone runs again
/// within about one and a half leases (SPEC §4.1: within 2 × lease).
pub(super) async fn keep_leases(
    ports: Ports,
    settings: RuntimeSettings,
    reaper: Reaper,
    wakes: Arc<Wakes>,
    mut stopped: watch::Receiver<bool>,
) {
    let every = (settings.lease / 2).max(Duration::from_millis(10));
    loop {
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = stopped.changed() => return,
        }
        match reclaim(&ports, &settings.boot, &reaper).await {
            Ok(0) => {}
            Ok(_) => wakes.work(),
            Err(err) => warn!(error = %err, "expired leases not reclaimed; trying again"),
        }
    }
}

/// How watched work ended.
enum Watched<T> {
    Done(T),
    /// The lease was lost: the result must not be recorded.
    Lost,
    /// Shutdown cut it short: hand the job back.
    Interrupted,
}
