//! The serial event loop: the one place that calls the orchestrator. It handles the inbox's
//! deliveries, the ends of jobs and the commands sent through its `LoopSink`, one at a time.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::{mpsc, oneshot, watch};
use tracing::{debug, error, info, warn};

use orch_core::event::{Event, Origin, Parsed};
use orch_core::orchestrator::{EventSink, HandleError, Handled};
use orch_core::ports::{InboxOutcome, Ports};
use orch_core::retries::{AfterFailure, EventKey, GivenUp, HandlingRetries};

use crate::runtime::{DeliveryParser, Loop, Observer, Services, Wakes};

/// The most deliveries, and job ends, one sweep reads.
const SWEEP_PAGE: u32 = 500;

/// The longest a processed delivery's mark waits for the rest of its page before the marks
/// gathered so far are written: it bounds what a crash makes orch handle again.
const MARKS_WAIT_AT_MOST: Duration = Duration::from_millis(250);

/// One command for the event loop, with a place for the answer.
pub(super) struct Command {
    event: Event,
    origin: Origin,
    reply: oneshot::Sender<Result<Handled, HandleError>>,
}

/// The event loop's end of the command channel.
pub(super) struct LoopSink {
    pub(super) commands: mpsc::Sender<Command>,
}

#[async_trait]
impl EventSink for LoopSink {
    async fn submit(&self, event: Event, origin: Origin) -> Result<Handled, HandleError> {
        let (reply, answer) = oneshot::channel();
        self.commands
            .send(Command {
                event,
                origin,
                reply,
            })
            .await
            .map_err(|_| HandleError::LoopStopped)?;
        answer.await.map_err(|_| HandleError::LoopStopped)?
    }
}

/// The longest one event may be handled before it counts as failed.
/// Longer than an adapter's own call timeout (30 s), so one slow call does not trip it.
pub const HANDLE_DEADLINE: Duration = Duration::from_secs(90);

/// The serial event loop: the one place that calls the orchestrator.
pub(super) struct EventLoop {
    pub(super) services: watch::Receiver<Arc<Services>>,
    pub(super) ports: Ports,
    pub(super) parser: DeliveryParser,
    pub(super) wakes: Arc<Wakes>,
    pub(super) observer: Arc<dyn Observer>,
    /// Deliveries and job ends whose handling failed, and when to try each again.
    pub(super) retries: HandlingRetries,
    /// The longest the loop sleeps without a wake-up: the safety sweep, or more often when
    /// a watchdog needs to hear from it.
    pub(super) idle_look: Duration,
    /// Background mirror refreshes a push started: they end with the loop (dropping the set
    /// aborts them), so none outlives the daemon and reports the services it talked to gone.
    pub(super) refreshes: tokio::task::JoinSet<()>,
}

impl EventLoop {
    pub(super) async fn run(
        mut self,
        mut commands: mpsc::Receiver<Command>,
        mut stopped: watch::Receiver<bool>,
    ) {
        loop {
            while self.refreshes.try_join_next().is_some() {}
            // A full page means more may wait: sweep again at once rather than at the next
            // wake-up, which may be the safety sweep seconds later.
            let more = self.sweep().await;
            self.observer.loop_alive(Loop::Events);
            tokio::select! {
                () = std::future::ready(()), if more => {}
                command = commands.recv() => match command {
                    Some(command) => {
                        let result = self.handle(&command.event, command.origin).await;
                        let _ = command.reply.send(result);
                    }
                    None => return,
                },
                _ = self.wakes.inbox.notified() => {}
                _ = self.wakes.ended.notified() => {}
                _ = tokio::time::sleep(self.idle_look) => {}
                _ = stopped.changed() => return,
            }
        }
    }

    async fn handle(&mut self, event: &Event, origin: Origin) -> Result<Handled, HandleError> {
        // One slow outside call (Plane or Gitea retrying through an outage) must not hold the
        // serial loop: past the deadline the event counts as failed and is tried again later.
        // Whatever it had already committed stays; handlers are idempotent.
        let services = self.services.borrow().clone();
        let result = match tokio::time::timeout(
            HANDLE_DEADLINE,
            services.orchestrator.handle(event, origin),
        )
        .await
        {
            Ok(result) => result,
            Err(_) => Err(HandleError::DeadlineExceeded(HANDLE_DEADLINE)),
        };
        // A long sweep is progress too: each handled event counts.
        self.observer.loop_alive(Loop::Events);
        if let Ok(handled) = &result {
            if handled.changed {
                self.observer.transition(handled);
                self.wakes.work();
            }
        }
        result
    }

    /// Handles every pending delivery and every unhandled job end, a page of each; whether a
    /// page was full and something in it was handled (a page of deliveries all waiting for
    /// their retry must not make the loop spin).
    ///
    /// The deliveries' "processed" marks are written together, one store write per page
    /// (`Marks`), not one per delivery: a write is a round trip through the inbox writer, and
    /// a backlog drains only as fast as they come back. R1 holds: a mark says the delivery's
    /// effects are committed (or that it has none, when ignored or a no-op). Handling commits
    /// its effects (transitions and the jobs they cause) in the store's own transactions
    /// before `handle` returns, and a mark is gathered only after that, so no mark is written
    /// before its delivery's effects; a delivery whose handling failed gets no mark and is
    /// read again. Gathering only widens the window between the effects and the mark: a crash
    /// in it makes orch handle those deliveries again after the restart, as a crash between a
    /// handling and its own mark always could, and handlers are idempotent (SPEC §4). The
    /// window is bounded by the page and by `MARKS_WAIT_AT_MOST`, and the marks are written
    /// before the inbox is read again, so a sweep never reads a delivery it already handled.
    async fn sweep(&mut self) -> bool {
        let store = self.ports.store.clone();
        let (mut full, mut progressed) = (false, false);
        match store.inbox_pending(SWEEP_PAGE).await {
            Ok(deliveries) => {
                full |= deliveries.len() >= SWEEP_PAGE as usize;
                let mut marks = Marks::default();
                for delivery in deliveries {
                    let key = EventKey::Delivery(delivery.id);
                    if !self.retries.is_due(key, self.ports.clock.now()) {
                        continue;
                    }
                    let outcome = match (self.parser)(
                        delivery.source,
                        &delivery.event_type,
                        &delivery.body,
                    ) {
                        Parsed::Ignored(reason) => Some(InboxOutcome::Ignored(reason)),
                        Parsed::Event(event) => {
                            self.remote_named(&event);
                            match self.handle(&event, Origin::Webhook).await {
                                Ok(handled) if handled.changed => Some(InboxOutcome::Applied),
                                Ok(handled) => Some(InboxOutcome::NoChange(handled.note)),
                                Err(err) => self.failed(key, &err),
                            }
                        }
                    };
                    if let Some(outcome) = outcome {
                        progressed = true;
                        marks.add(delivery.id, outcome);
                        self.retries.done(key);
                        if marks.waited_enough() {
                            self.write_marks(&mut marks).await;
                        }
                    }
                }
                self.write_marks(&mut marks).await;
            }
            Err(err) => warn!(error = %err, "inbox not readable"),
        }
        match store.unhandled_finished_jobs(SWEEP_PAGE).await {
            Ok(jobs) => {
                full |= jobs.len() >= SWEEP_PAGE as usize;
                for job in jobs {
                    let key = EventKey::JobEnd(job.id);
                    if !self.retries.is_due(key, self.ports.clock.now()) {
                        continue;
                    }
                    match self
                        .handle(&Event::JobFinished { job: job.id }, Origin::Worker)
                        .await
                    {
                        Ok(_) => {
                            progressed = true;
                            self.retries.done(key);
                        }
                        // A job's end is never given up: the task's next step depends on it.
                        Err(err) => {
                            self.failed(key, &err);
                        }
                    }
                }
            }
            Err(err) => warn!(error = %err, "ended jobs not readable"),
        }
        full && progressed
    }

    /// Writes the gathered marks in one store write. When it fails, the deliveries stay
    /// pending and the next sweep handles them again (idempotent, as after a crash).
    async fn write_marks(&self, marks: &mut Marks) {
        let written = std::mem::take(marks);
        if written.marks.is_empty() {
            return;
        }
        let now = self.ports.clock.now();
        if let Err(err) = self
            .ports
            .store
            .inbox_mark_processed_all(&written.marks, now)
            .await
        {
            warn!(deliveries = written.marks.len(), error = %err, "could not mark deliveries processed");
        }
    }

    /// A push names a repository: unless orch pushed that head itself, its mirror is marked
    /// stale before the event is handled (so a dispatch it causes fetches first) and refreshed
    /// in the background, off the dispatch path.
    fn remote_named(&mut self, event: &Event) {
        let Event::BranchPushed {
            repo,
            branch,
            head_sha,
        } = event
        else {
            return;
        };
        let workspace = self.ports.workspace.clone();
        if !workspace.remote_changed(repo, branch, head_sha) {
            return;
        }
        let repo = repo.clone();
        self.refreshes.spawn(async move {
            if let Err(err) = workspace.refresh(&repo).await {
                warn!(repo = %repo, error = %err, "mirror refresh failed; the next dispatch fetches");
            }
        });
    }

    /// Records a failed handling; `Some(outcome)` when the delivery is given up.
    fn failed(&mut self, key: EventKey, err: &HandleError) -> Option<InboxOutcome> {
        let (source, id) = (key.source(), key.id());
        match self.retries.failed(key, err, self.ports.clock.now()) {
            AfterFailure::RetryAt(_) if matches!(err, HandleError::TooEarly(_)) => {
                debug!(source, id, reason = %err, "event came too early; handling it again shortly");
                None
            }
            AfterFailure::RetryAt(_) => {
                warn!(source, id, error = %err, "event not handled; will try again");
                None
            }
            AfterFailure::GiveUp(given_up @ GivenUp::Ignored(_)) => {
                // The reconciler reads the fact again from the outside when it matters.
                info!(source, id, reason = %err, "event still too early; left to the reconciler");
                Some(given_up.outcome())
            }
            AfterFailure::GiveUp(given_up) => {
                error!(source, id, error = %err, "event given up after repeated failures");
                Some(given_up.outcome())
            }
        }
    }
}

/// Processed deliveries whose marks are not written yet, and since when the first waits.
#[derive(Default)]
struct Marks {
    marks: Vec<(i64, InboxOutcome)>,
    since: Option<tokio::time::Instant>,
}

impl Marks {
    fn add(&mut self, id: i64, outcome: InboxOutcome) {
        self.since.get_or_insert_with(tokio::time::Instant::now);
        self.marks.push((id, outcome));
    }

    /// Whether the first mark has waited `MARKS_WAIT_AT_MOST` (slow handlers in the page).
    fn waited_enough(&self) -> bool {
        self.since
            .is_some_and(|since| since.elapsed() >= MARKS_WAIT_AT_MOST)
    }
}
