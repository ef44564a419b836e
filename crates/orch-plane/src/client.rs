//! The HTTP side of `PlaneTracker`: ureq on the blocking pool, the call budget, retries,
//! classification of failures, and the call counters.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::budget::Budget;
use crate::config::{PlaneConfig, RetryPolicy};
use orch_core::ports::{TrackerError, UNTRUSTED_CERTIFICATE_HINT};

/// The most orch reads of one answer; Plane's pages of 100 items are far smaller.
const MAX_BODY_BYTES: u64 = 32 * 1024 * 1024;

/// Counters of Plane API use since start-up, for `/metrics`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PlaneStats {
    /// HTTP requests sent (every attempt, retries included).
    pub calls: u64,
    /// `429 Too Many Requests` answers.
    pub rate_limited: u64,
    /// Retries made after a retryable failure.
    pub retries: u64,
    /// Port calls that ended in an error (after retries).
    pub errors: u64,
}

#[derive(Debug, Default)]
pub(crate) struct Counters {
    calls: AtomicU64,
    rate_limited: AtomicU64,
    retries: AtomicU64,
    errors: AtomicU64,
}

impl Counters {
    pub(crate) fn snapshot(&self) -> PlaneStats {
        PlaneStats {
            calls: self.calls.load(Ordering::Relaxed),
            rate_limited: self.rate_limited.load(Ordering::Relaxed),
            retries: self.retries.load(Ordering::Relaxed),
            errors: self.errors.load(Ordering::Relaxed),
        }
    }

    pub(crate) fn count_error(&self) {
        self.errors.fetch_add(1, Ordering::Relaxed);
    }
}

/// The HTTP methods orch uses on Plane.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Method {
    Get,
    Patch,
    Post,
}

impl Method {
    fn as_str(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Patch => "PATCH",
            Method::Post => "POST",
        }
    }
}

/// One request: `path` is relative to `/api/v1/` and ends in `/`.
#[derive(Debug, Clone)]
pub(crate) struct Call {
    pub(crate) method: Method,
    pub(crate) path: String,
    pub(crate) query: Vec<(&'static str, String)>,
    pub(crate) body: Option<serde_json::Value>,
}

impl Call {
    pub(crate) fn get(path: String) -> Call {
        Call {
            method: Method::Get,
            path,
            query: Vec::new(),
            body: None,
        }
    }

    pub(crate) fn with_body(method: Method, path: String, body: serde_json::Value) -> Call {
        Call {
            method,
            path,
            query: Vec::new(),
            body: Some(body),
        }
    }

    pub(crate) fn query(mut self, key: &'static str, value: impl Into<String>) -> Call {
        self.query.push((key, value.into()));
        self
    }
}

/// A final answer: a 2xx, or a 4xx the caller maps (404, 409, 400 …).
#[derive(Debug)]
pub(crate) struct Answer {
    pub(crate) status: u16,
    pub(crate) body: Vec<u8>,
}

impl Answer {
    pub(crate) fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// The body as JSON of type `T`.
    pub(crate) fn json<T: serde::de::DeserializeOwned>(
        &self,
        what: &str,
    ) -> Result<T, TrackerError> {
        serde_json::from_slice(&self.body).map_err(|err| {
            TrackerError::other(format!("plane answered {what} with unexpected JSON: {err}"))
        })
    }

    /// Plane's error text (`detail`, `error` or the first field error), for messages.
    pub(crate) fn error_text(&self) -> String {
        let text = match serde_json::from_slice::<serde_json::Value>(&self.body) {
            Ok(serde_json::Value::Object(map)) => map
                .get("detail")
                .or_else(|| map.get("error"))
                .or_else(|| map.get("error_message"))
                .or_else(|| map.values().next())
                .map(|value| match value {
                    serde_json::Value::String(text) => text.clone(),
                    other => other.to_string(),
                }),
            _ => None,
        };
        let text = text.unwrap_or_else(|| String::from_utf8_lossy(&self.body).into_owned());
        text.chars().take(200).collect()
    }
}

/// What one attempt gave.
enum Attempt {
    Answered {
        status: u16,
        body: Vec<u8>,
        retry_after: Option<Duration>,
    },
    /// No usable answer: reset, timeout, refused connection, truncated body.
    Transport(String),
    /// The request could not be built (bad base URL): retrying will not help.
    Unusable(String),
}

/// ureq plus everything around it.
pub(crate) struct Client {
    agent: ureq::Agent,
    api_base: String,
    token: Arc<str>,
    budget: Arc<Budget>,
    /// A narrower budget on top of `budget`, for a share of the calls (the reconciler's half).
    lane: Option<Arc<Budget>>,
    /// The window of `budget`, for building lanes.
    window: Duration,
    permits: usize,
    retry: RetryPolicy,
    counters: Arc<Counters>,
}

impl Client {
    pub(crate) fn new(config: &PlaneConfig) -> Client {
        let agent_config = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(config.request_timeout))
            .max_redirects(0)
            .user_agent("orch")
            .tls_config(config.tls.clone())
            .build();
        let agent = ureq::Agent::new_with_config(agent_config);
        Client {
            agent,
            api_base: format!("{}/api/v1/", config.base_url.trim_end_matches('/')),
            token: Arc::from(config.api_token.as_str()),
            budget: Arc::new(Budget::new(config.call_budget(), config.rate_window)),
            lane: None,
            window: config.rate_window,
            permits: config.call_budget(),
            retry: config.retry.clone(),
            counters: Arc::new(Counters::default()),
        }
    }

    /// A client sharing this one's connections, budget and counters that may use at most
    /// half of the budget.
    pub(crate) fn half_share(&self) -> Client {
        Client {
            agent: self.agent.clone(),
            api_base: self.api_base.clone(),
            token: self.token.clone(),
            budget: self.budget.clone(),
            lane: Some(Arc::new(Budget::new(self.permits / 2, self.window))),
            window: self.window,
            permits: self.permits,
            retry: self.retry.clone(),
            counters: self.counters.clone(),
        }
    }

    pub(crate) fn counters(&self) -> &Counters {
        &self.counters
    }

    /// Sends `call` with the budget and bounded retries. Returns 2xx and the 4xx the caller
    /// maps; 401/403 become `Unauthorized`; 429, 5xx and transport failures are retried and
    /// end as `Unavailable`.
    pub(crate) async fn send(&self, call: &Call) -> Result<Answer, TrackerError> {
        let mut retry = 0u32;
        loop {
            let lane_permit = match &self.lane {
                Some(lane) => Some(lane.acquire().await),
                None => None,
            };
            let permit = self.budget.acquire().await;
            self.counters.calls.fetch_add(1, Ordering::Relaxed);
            let attempt = self.attempt(call).await;
            drop(permit);
            drop(lane_permit);
            let failure = match attempt {
                Attempt::Answered {
                    status,
                    body,
                    retry_after,
                } => match status {
                    401 | 403 => return Err(unauthorized(status, &Answer { status, body })),
                    429 => {
                        self.counters.rate_limited.fetch_add(1, Ordering::Relaxed);
                        Failure {
                            message: "rate limited (HTTP 429)".to_owned(),
                            retry_after,
                        }
                    }
                    500..=599 => {
                        let text = Answer { status, body }.error_text();
                        Failure {
                            message: format!("HTTP {status}: {text}"),
                            retry_after,
                        }
                    }
                    _ => return Ok(Answer { status, body }),
                },
                Attempt::Transport(message) => Failure {
                    message,
                    retry_after: None,
                },
                Attempt::Unusable(message) => {
                    return Err(TrackerError::Invalid(format!(
                        "cannot call plane: {message}; check plane.base_url"
                    )))
                }
            };
            let wait = match failure.retry_after {
                Some(retry_after) => retry_after,
                None => self.retry.backoff(retry),
            };
            if retry >= self.retry.max_retries || wait > self.retry.max_delay {
                return Err(TrackerError::Unavailable {
                    message: format!(
                        "{} {}: {} (after {} attempts)",
                        call.method.as_str(),
                        call.path,
                        failure.message,
                        retry + 1
                    ),
                    retry_after: failure.retry_after,
                });
            }
            tracing::debug!(
                method = call.method.as_str(),
                path = %call.path,
                retry,
                wait_ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX),
                error = %failure.message,
                "plane call will be retried"
            );
            self.counters.retries.fetch_add(1, Ordering::Relaxed);
            retry += 1;
            tokio::time::sleep(wait).await;
        }
    }

    /// One HTTP exchange on the blocking pool.
    async fn attempt(&self, call: &Call) -> Attempt {
        let agent = self.agent.clone();
        let url = format!("{}{}", self.api_base, call.path);
        let token = self.token.clone();
        let method = call.method;
        let query = call.query.clone();
        let body = call.body.as_ref().map(|body| body.to_string().into_bytes());
        let span = tracing::debug_span!("plane_http", method = method.as_str(), path = %call.path);
        let task = tokio::task::spawn_blocking(move || {
            let _entered = span.enter();
            exchange(&agent, method, &url, &token, &query, body)
        });
        match task.await {
            Ok(attempt) => attempt,
            Err(err) => Attempt::Transport(format!("plane call task failed: {err}")),
        }
    }
}

struct Failure {
    message: String,
    retry_after: Option<Duration>,
}

fn exchange(
    agent: &ureq::Agent,
    method: Method,
    url: &str,
    token: &str,
    query: &[(&'static str, String)],
    body: Option<Vec<u8>>,
) -> Attempt {
    let result = match method {
        Method::Get => agent
            .get(url)
            .header("X-Api-Key", token)
            .header("Accept", "application/json")
            .query_pairs(query.iter().map(|(key, value)| (*key, value.as_str())))
            .call(),
        Method::Patch | Method::Post => {
            let builder = if method == Method::Patch {
                agent.patch(url)
            } else {
                agent.post(url)
            };
            builder
                .header("X-Api-Key", token)
                .header("Accept", "application/json")
                .content_type("application/json")
                .send(body.unwrap_or_default())
        }
    };
    let mut response = match result {
        Ok(response) => response,
        Err(ureq::Error::BadUri(message)) => {
            return Attempt::Unusable(format!("bad url: {message}"))
        }
        Err(ureq::Error::Http(err)) => return Attempt::Unusable(err.to_string()),
        Err(err) => return Attempt::Transport(transport_message(&err)),
    };
    let status = response.status().as_u16();
    let retry_after = response
        .headers()
        .get("retry-after")
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.trim().parse::<u64>().ok())
        .map(Duration::from_secs);
    match response
        .body_mut()
        .with_config()
        .limit(MAX_BODY_BYTES)
        .read_to_vec()
    {
        Ok(body) => Attempt::Answered {
            status,
            body,
            retry_after,
        },
        Err(err) => Attempt::Transport(format!("reading the answer: {}", transport_message(&err))),
    }
}

fn transport_message(err: &ureq::Error) -> String {
    match err {
        ureq::Error::Timeout(which) => format!("timed out ({which:?})"),
        other if is_untrusted_certificate(other) => {
            format!("{other}; {UNTRUSTED_CERTIFICATE_HINT}")
        }
        other => other.to_string(),
    }
}

/// Whether `err` is a TLS certificate the client refused (rustls reports it as an i/o error).
fn is_untrusted_certificate(err: &ureq::Error) -> bool {
    match err {
        ureq::Error::Rustls(_) | ureq::Error::Tls(_) => true,
        ureq::Error::Io(io) => io.to_string().contains("certificate"),
        _ => false,
    }
}

/// 401/403, with the setting a person has to fix.
fn unauthorized(status: u16, answer: &Answer) -> TrackerError {
    let text = answer.error_text();
    if text.contains("permission") {
        TrackerError::Unauthorized(format!(
            "plane refused access (HTTP {status}: {text}); the api token's user must be a member of the \
             project: check plane.api_token (ORCH_PLANE_API_TOKEN), plane.workspace_slug and \
             projects[].plane_project_id"
        ))
    } else {
        TrackerError::Unauthorized(format!(
            "plane rejected the api token (HTTP {status}: {text}); fix plane.api_token (ORCH_PLANE_API_TOKEN)"
        ))
    }
}
