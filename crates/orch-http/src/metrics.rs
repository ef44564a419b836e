//! `Metrics`: orch's Prometheus registry, counted by the server and by the daemon.

use std::borrow::Cow;
use std::fmt;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;

use orch_core::domain::{Agent, JobKind, Service, Stage, DEGRADED_AFTER};
use orch_core::ports::{AgentOutcome, InboxStats, QueueSnapshot, Source};
use orch_core::time::Timestamp;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::Registry;

use crate::process::ProcessCollector;

/// The content type of `Metrics::encode`'s output (OpenMetrics text, which Prometheus reads).
pub const METRICS_CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// How one webhook delivery ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DeliveryOutcome {
    Queued,
    Duplicate,
    Ignored,
    /// 401: the signature failed (see `SignatureFailure`).
    Unauthorized,
    /// 400: not JSON, or an unusable delivery id.
    Invalid,
    /// 413.
    TooLarge,
    /// 408 or a broken upload.
    Incomplete,
    /// 503: the inbox commit failed.
    StoreFailed,
}

impl DeliveryOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryOutcome::Queued => "queued",
            DeliveryOutcome::Duplicate => "duplicate",
            DeliveryOutcome::Ignored => "ignored",
            DeliveryOutcome::Unauthorized => "unauthorized",
            DeliveryOutcome::Invalid => "invalid",
            DeliveryOutcome::TooLarge => "too_large",
            DeliveryOutcome::Incomplete => "incomplete",
            DeliveryOutcome::StoreFailed => "store_failed",
        }
    }
}

/// Why a webhook signature was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SignatureFailure {
    /// No signature header at all.
    Missing,
    /// A signature header that is not 64 hex digits (with `sha256=` where required).
    Malformed,
    /// Only Gitea's SHA-1 `X-Hub-Signature`, which orch never accepts.
    Sha1Only,
    /// Well-formed, but no configured secret produces it.
    Mismatch,
    /// No secret is configured for the source, so nothing can be verified.
    NoSecret,
}

impl SignatureFailure {
    pub fn as_str(self) -> &'static str {
        match self {
            SignatureFailure::Missing => "missing",
            SignatureFailure::Malformed => "malformed",
            SignatureFailure::Sha1Only => "sha1_only",
            SignatureFailure::Mismatch => "mismatch",
            SignatureFailure::NoSecret => "no_secret",
        }
    }
}

impl fmt::Display for SignatureFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How one job attempt ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum JobOutcome {
    Succeeded,
    Retried,
    /// An outside service was out: the job waits for it without using up an attempt.
    Waited,
    Failed,
    Cancelled,
    /// The job's task moved on before it ran: it did nothing.
    Skipped,
}

impl JobOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            JobOutcome::Succeeded => "succeeded",
            JobOutcome::Retried => "retried",
            JobOutcome::Waited => "waited",
            JobOutcome::Failed => "failed",
            JobOutcome::Cancelled => "cancelled",
            JobOutcome::Skipped => "skipped",
        }
    }
}

/// Why the server closed or refused a connection to protect the others.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum ConnectionShed {
    /// Closed to make room: it had been stalled or idle the longest when a cap was reached.
    Evicted,
    /// Refused: its peer was at its cap with every connection busy.
    Refused,
    /// Closed: the client did not read an answer within the write deadline.
    WriteTimeout,
}

impl ConnectionShed {
    fn as_str(self) -> &'static str {
        match self {
            ConnectionShed::Evicted => "evicted",
            ConnectionShed::Refused => "refused",
            ConnectionShed::WriteTimeout => "write_timeout",
        }
    }
}

/// orch's metrics. Clones share one registry. The server counts deliveries and signature
/// failures; the daemon counts jobs, reconcile passes and API calls; queue and inbox gauges
/// are refreshed from the `Store` on every scrape.
#[derive(Clone)]
pub struct Metrics {
    inner: Arc<Inner>,
}

struct Inner {
    registry: Registry,
    deliveries: Family<SourceOutcome, Counter>,
    signature_failures: Family<SourceReason, Counter>,
    ingest_seconds: Family<SourceLabel, Histogram>,
    jobs: Family<KindOutcome, Counter>,
    reconcile_runs: Counter,
    reconcile_unblocked: Counter,
    reconcile_errors: Counter,
    api_calls: Family<HostLabel, Counter>,
    api_rate_limited: Family<HostLabel, Counter>,
    jobs_queued: Gauge,
    jobs_running: Gauge,
    tasks_by_stage: Family<StageLabel, Gauge>,
    tasks_blocked: Gauge,
    tasks_awaiting_verdict: Gauge,
    inbox_pending: Gauge,
    inbox_lag_seconds: Gauge<f64, AtomicU64>,
    jobs_waiting: Family<ServiceLabel, Gauge>,
    service_degraded: Family<ServiceLabel, Gauge>,
    connections_shed: Family<ReasonLabel, Counter>,
    agent_run_seconds: Family<RoleOutcome, Histogram>,
    reconcile_last_success: Gauge<f64, AtomicU64>,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RoleOutcome {
    role: &'static str,
    outcome: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct VersionLabel {
    version: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SourceOutcome {
    source: &'static str,
    outcome: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SourceReason {
    source: &'static str,
    reason: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SourceLabel {
    source: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindOutcome {
    kind: &'static str,
    outcome: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HostLabel {
    host: Cow<'static, str>,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ServiceLabel {
    service: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabel {
    reason: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StageLabel {
    stage: &'static str,
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("orch");
        let deliveries = Family::<SourceOutcome, Counter>::default();
        registry.register(
            "webhook_deliveries",
            "Webhook deliveries by source and outcome",
            deliveries.clone(),
        );
        let signature_failures = Family::<SourceReason, Counter>::default();
        registry.register(
            "webhook_signature_failures",
            "Webhook deliveries refused for their signature, by source and reason",
            signature_failures.clone(),
        );
        let ingest_seconds = Family::<SourceLabel, Histogram>::new_with_constructor(
            ingest_histogram as fn() -> Histogram,
        );
        registry.register(
            "webhook_ingest_seconds",
            "Time from request head to answer for webhook deliveries stored or refused as duplicates",
            ingest_seconds.clone(),
        );
        let jobs = Family::<KindOutcome, Counter>::default();
        registry.register(
            "jobs_finished",
            "Job attempts by kind and outcome",
            jobs.clone(),
        );
        let reconcile_runs = Counter::default();
        registry.register(
            "reconcile_runs",
            "Reconcile passes run",
            reconcile_runs.clone(),
        );
        let reconcile_unblocked = Counter::default();
        registry.register(
            "reconcile_unblocked",
            "Tasks the reconciler unblocked",
            reconcile_unblocked.clone(),
        );
        let reconcile_errors = Counter::default();
        registry.register(
            "reconcile_errors",
            "Errors met by reconcile passes",
            reconcile_errors.clone(),
        );
        let api_calls = Family::<HostLabel, Counter>::default();
        registry.register(
            "api_calls",
            "Calls to outside APIs by host",
            api_calls.clone(),
        );
        let api_rate_limited = Family::<HostLabel, Counter>::default();
        registry.register(
            "api_rate_limited",
            "429 answers from outside APIs by host",
            api_rate_limited.clone(),
        );
        let jobs_queued = Gauge::default();
        registry.register("jobs_queued", "Jobs waiting to run", jobs_queued.clone());
        let jobs_running = Gauge::default();
        registry.register("jobs_running", "Jobs running", jobs_running.clone());
        let tasks_by_stage = Family::<StageLabel, Gauge>::default();
        registry.register("tasks", "Tasks by stage", tasks_by_stage.clone());
        let tasks_blocked = Gauge::default();
        registry.register(
            "tasks_blocked",
            "Tasks that need a person",
            tasks_blocked.clone(),
        );
        let tasks_awaiting_verdict = Gauge::default();
        registry.register(
            "tasks_awaiting_verdict",
            "Tasks at an open human gate",
            tasks_awaiting_verdict.clone(),
        );
        let inbox_pending = Gauge::default();
        registry.register(
            "inbox_pending",
            "Stored webhook deliveries not processed yet",
            inbox_pending.clone(),
        );
        let inbox_lag_seconds = Gauge::<f64, AtomicU64>::default();
        registry.register(
            "inbox_lag_seconds",
            "Age of the oldest unprocessed webhook delivery (0 when none)",
            inbox_lag_seconds.clone(),
        );
        let jobs_waiting = Family::<ServiceLabel, Gauge>::default();
        registry.register(
            "jobs_waiting",
            "Jobs waiting for an outside service to come back, by service",
            jobs_waiting.clone(),
        );
        let service_degraded = Family::<ServiceLabel, Gauge>::default();
        registry.register(
            "service_degraded",
            "1 while jobs have waited on the service for longer than 5 minutes (an outage)",
            service_degraded.clone(),
        );
        let connections_shed = Family::<ReasonLabel, Counter>::default();
        registry.register(
            "http_connections_shed",
            "HTTP connections the server closed or refused to protect the others, by reason",
            connections_shed.clone(),
        );
        registry.register(
            "build",
            "orch's version (always 1)",
            Info::new(VersionLabel {
                // Every crate of the workspace has orch's version.
                version: env!("CARGO_PKG_VERSION"),
            }),
        );
        let agent_run_seconds = Family::<RoleOutcome, Histogram>::new_with_constructor(
            agent_run_histogram as fn() -> Histogram,
        );
        registry.register(
            "agent_run_seconds",
            "How long agent runs took, by role and outcome",
            agent_run_seconds.clone(),
        );
        let reconcile_last_success = Gauge::<f64, AtomicU64>::default();
        registry.register(
            "reconcile_last_success_timestamp_seconds",
            "When the last reconcile pass without errors ended (Unix time; 0 before the first)",
            reconcile_last_success.clone(),
        );
        registry.register_collector(Box::new(ProcessCollector));
        Metrics {
            inner: Arc::new(Inner {
                registry,
                deliveries,
                signature_failures,
                ingest_seconds,
                jobs,
                reconcile_runs,
                reconcile_unblocked,
                reconcile_errors,
                api_calls,
                api_rate_limited,
                jobs_queued,
                jobs_running,
                tasks_by_stage,
                tasks_blocked,
                tasks_awaiting_verdict,
                inbox_pending,
                inbox_lag_seconds,
                jobs_waiting,
                service_degraded,
                connections_shed,
                agent_run_seconds,
                reconcile_last_success,
            }),
        }
    }

    /// Records one agent run that ended, with how long it ran.
    pub fn observe_agent_run(&self, agent: Agent, outcome: &AgentOutcome, elapsed: Duration) {
        let labels = RoleOutcome {
            role: agent.as_str(),
            outcome: agent_outcome_label(outcome),
        };
        self.inner
            .agent_run_seconds
            .get_or_create(&labels)
            .observe(elapsed.as_secs_f64());
    }

    /// Records that a reconcile pass without errors ended at `unix_seconds`.
    pub fn set_reconcile_success(&self, unix_seconds: f64) {
        self.inner.reconcile_last_success.set(unix_seconds);
    }

    pub fn count_delivery(&self, source: Source, outcome: DeliveryOutcome) {
        let labels = SourceOutcome {
            source: source.as_str(),
            outcome: outcome.as_str(),
        };
        self.inner.deliveries.get_or_create(&labels).inc();
    }

    pub fn count_signature_failure(&self, source: Source, reason: SignatureFailure) {
        let labels = SourceReason {
            source: source.as_str(),
            reason: reason.as_str(),
        };
        self.inner.signature_failures.get_or_create(&labels).inc();
    }

    /// Records how long a stored (or duplicate) delivery took to answer.
    pub fn observe_ingest(&self, source: Source, elapsed: Duration) {
        let labels = SourceLabel {
            source: source.as_str(),
        };
        self.inner
            .ingest_seconds
            .get_or_create(&labels)
            .observe(elapsed.as_secs_f64());
    }

    pub fn count_job(&self, kind: JobKind, outcome: JobOutcome) {
        let labels = KindOutcome {
            kind: kind.as_str(),
            outcome: outcome.as_str(),
        };
        self.inner.jobs.get_or_create(&labels).inc();
    }

    /// Counts one finished reconcile pass with what it unblocked and the errors it met.
    pub fn count_reconcile_run(&self, unblocked: u64, errors: u64) {
        self.inner.reconcile_runs.inc();
        self.inner.reconcile_unblocked.inc_by(unblocked);
        self.inner.reconcile_errors.inc_by(errors);
    }

    /// Counts one call to an outside API. `host` is a bare host name, never a URL (a
    /// Telegram URL carries the bot token).
    pub fn count_api_call(&self, host: &str) {
        self.inner
            .api_calls
            .get_or_create(&HostLabel {
                host: Cow::Owned(host.to_owned()),
            })
            .inc();
    }

    /// Counts one 429 answer from an outside API (also count the call itself).
    /// Adds `calls` API calls and `rate_limited` 429 answers to `host`'s counters (the daemon
    /// copies the adapters' own counters here).
    pub fn add_api_calls(&self, host: &str, calls: u64, rate_limited: u64) {
        let label = HostLabel {
            host: Cow::Owned(host.to_owned()),
        };
        self.inner.api_calls.get_or_create(&label).inc_by(calls);
        self.inner
            .api_rate_limited
            .get_or_create(&label)
            .inc_by(rate_limited);
    }

    pub fn count_api_rate_limited(&self, host: &str) {
        self.inner
            .api_rate_limited
            .get_or_create(&HostLabel {
                host: Cow::Owned(host.to_owned()),
            })
            .inc();
    }

    pub(crate) fn count_connection_shed(&self, reason: ConnectionShed) {
        self.inner
            .connections_shed
            .get_or_create(&ReasonLabel {
                reason: reason.as_str(),
            })
            .inc();
    }

    /// Sets the gauges read from the `Store` (done by the server before each scrape).
    pub fn set_store_gauges(&self, queue: &QueueSnapshot, inbox: &InboxStats, now: Timestamp) {
        for service in Service::ALL {
            let wait = queue.waiting.iter().find(|wait| wait.service == service);
            let label = ServiceLabel {
                service: service.as_str(),
            };
            self.inner
                .jobs_waiting
                .get_or_create(&label)
                .set(saturating_i64(wait.map_or(0, |wait| wait.jobs)));
            let degraded = wait.is_some_and(|wait| now.since(wait.since) >= DEGRADED_AFTER);
            self.inner
                .service_degraded
                .get_or_create(&label)
                .set(i64::from(degraded));
        }
        self.inner.jobs_queued.set(saturating_i64(queue.queued));
        self.inner
            .jobs_running
            .set(saturating_i64(queue.running.len() as u64));
        for stage in Stage::ALL {
            let count = queue
                .by_stage
                .iter()
                .find(|(each, _)| *each == stage)
                .map_or(0, |(_, count)| *count);
            self.inner
                .tasks_by_stage
                .get_or_create(&StageLabel {
                    stage: stage.as_str(),
                })
                .set(saturating_i64(count));
        }
        self.inner
            .tasks_blocked
            .set(saturating_i64(queue.blocked.len() as u64));
        self.inner
            .tasks_awaiting_verdict
            .set(saturating_i64(queue.awaiting_verdict.len() as u64));
        self.inner.inbox_pending.set(saturating_i64(inbox.pending));
        self.inner.inbox_lag_seconds.set(
            inbox
                .oldest_pending_age
                .map_or(0.0, |age| age.as_secs_f64()),
        );
    }

    /// The registry in the OpenMetrics text format (`METRICS_CONTENT_TYPE`).
    pub fn encode(&self) -> String {
        let mut text = String::with_capacity(4096);
        prometheus_client::encoding::text::encode(&mut text, &self.inner.registry)
            .expect("writing to a String cannot fail");
        text
    }
}

impl Default for Metrics {
    fn default() -> Metrics {
        Metrics::new()
    }
}

impl fmt::Debug for Metrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

/// 0.25 ms to about 2 s, doubling.
fn ingest_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.000_25, 2.0, 14))
}

/// 1 s to about 4.5 hours, doubling: agent runs take minutes.
fn agent_run_histogram() -> Histogram {
    Histogram::new(exponential_buckets(1.0, 2.0, 15))
}

fn agent_outcome_label(outcome: &AgentOutcome) -> &'static str {
    match outcome {
        AgentOutcome::Succeeded => "succeeded",
        AgentOutcome::Failed { .. } => "failed",
        AgentOutcome::TimedOut => "timed_out",
        AgentOutcome::Stalled => "stalled",
        AgentOutcome::Cancelled => "cancelled",
        AgentOutcome::CouldNotStart { .. } => "could_not_start",
    }
}

fn saturating_i64(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}
