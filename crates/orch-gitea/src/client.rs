//! The blocking HTTP layer of `GiteaForge`: one ureq agent, Gitea's error classes, counters.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use orch_core::ports::{ForgeError, UNTRUSTED_CERTIFICATE_HINT};
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::Value;

use crate::config::GiteaConfig;

/// Counters of the calls made to Gitea since start.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ForgeStats {
    /// HTTP calls sent (retries count again).
    pub calls: u64,
    /// Calls answered with 429.
    pub rate_limited: u64,
    /// Calls that failed: no answer (timeout, refused, reset), 5xx, 429, 401 or 403.
    pub errors: u64,
}

#[derive(Default)]
pub(crate) struct Counters {
    calls: AtomicU64,
    rate_limited: AtomicU64,
    errors: AtomicU64,
}

impl Counters {
    pub(crate) fn snapshot(&self) -> ForgeStats {
        ForgeStats {
            calls: self.calls.load(Ordering::Relaxed),
            rate_limited: self.rate_limited.load(Ordering::Relaxed),
            errors: self.errors.load(Ordering::Relaxed),
        }
    }
}

/// Why a call to Gitea failed, before it is classified into a `ForgeError`.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ApiError {
    /// Gitea answered with an unexpected status.
    #[error("gitea answered {status}: {message}")]
    Status {
        status: u16,
        message: String,
        retry_after: Option<Duration>,
    },
    /// No answer: timeout, connection refused or reset.
    #[error("gitea unreachable: {0}")]
    Transport(String),
    /// A 2xx answer whose body is not what Gitea sends.
    #[error("unexpected answer from gitea: {0}")]
    Decode(String),
    /// Gitea's answers contradict each other (e.g. 409 "exists" but no open PR).
    #[error("{0}")]
    Inconsistent(String),
}

impl ApiError {
    /// 429, 5xx and transport failures are worth another attempt.
    pub(crate) fn is_retryable(&self) -> bool {
        match self {
            ApiError::Status { status, .. } => *status == 429 || *status >= 500,
            ApiError::Transport(_) | ApiError::Inconsistent(_) => true,
            ApiError::Decode(_) => false,
        }
    }

    pub(crate) fn retry_after(&self) -> Option<Duration> {
        match self {
            ApiError::Status { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    /// The port's error class (STYLE §5: the adapter classifies, the core decides).
    pub(crate) fn into_forge(self) -> ForgeError {
        match self {
            ApiError::Status { status: 429, message, retry_after } => {
                ForgeError::Unavailable { message: format!("gitea rate limit (429): {message}"), retry_after }
            }
            ApiError::Status { status, message, retry_after } if status >= 500 => {
                ForgeError::Unavailable { message: format!("gitea answered {status}: {message}"), retry_after }
            }
            ApiError::Status { status: status @ (401 | 403), message, .. } => ForgeError::Unauthorized(format!(
                "gitea refused the token ({status}: {message}); check gitea.token / ORCH_GITEA_TOKEN"
            )),
            ApiError::Status { status: 404, message, .. } => ForgeError::NotFound(message),
            ApiError::Status { status: 409, message, .. } => ForgeError::Conflict(message),
            ApiError::Status { status, message, .. } => ForgeError::Invalid(format!("gitea answered {status}: {message}")),
            ApiError::Transport(message) => ForgeError::unavailable(format!("gitea unreachable: {message}")),
            ApiError::Decode(message) => ForgeError::other(format!("unexpected answer from gitea: {message}")),
            ApiError::Inconsistent(message) => ForgeError::Conflict(message),
        }
    }
}

/// One HTTP answer, body read.
pub(crate) struct Answer {
    pub(crate) status: u16,
    pub(crate) body: String,
    pub(crate) total_count: Option<u64>,
    pub(crate) retry_after: Option<Duration>,
}

impl Answer {
    /// Gitea's error message (`{"message": …}`), or the body's start.
    pub(crate) fn message(&self) -> String {
        #[derive(Deserialize)]
        struct ErrorBody {
            message: Option<String>,
            #[serde(rename = "StdErr")]
            std_err: Option<String>,
        }
        match serde_json::from_str::<ErrorBody>(&self.body) {
            Ok(ErrorBody {
                message: Some(message),
                ..
            }) => message,
            Ok(ErrorBody {
                std_err: Some(std_err),
                ..
            }) => std_err.trim().to_owned(),
            _ => self.body.chars().take(200).collect(),
        }
    }

    /// The error for an answer the caller did not expect.
    pub(crate) fn into_error(self) -> ApiError {
        ApiError::Status {
            status: self.status,
            message: self.message(),
            retry_after: self.retry_after,
        }
    }

    /// The body as `T`, if the status is one of `ok`; any other status is an error.
    pub(crate) fn json<T: DeserializeOwned>(self, ok: &[u16]) -> Result<T, ApiError> {
        if !ok.contains(&self.status) {
            return Err(self.into_error());
        }
        serde_json::from_str(&self.body).map_err(|err| ApiError::Decode(err.to_string()))
    }
}

/// HTTP methods the adapter uses.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Method {
    Get,
    Post,
    Patch,
}

/// A blocking Gitea API client. Every call has a deadline (the agent's global timeout).
pub(crate) struct Client {
    agent: ureq::Agent,
    api: String,
    auth: String,
    counters: Arc<Counters>,
}

impl Client {
    pub(crate) fn new(config: &GiteaConfig, counters: Arc<Counters>) -> Client {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_global(Some(config.request_timeout))
            .timeout_connect(Some(config.connect_timeout))
            .http_status_as_error(false)
            .tls_config(config.tls.clone())
            .build()
            .into();
        Client {
            agent,
            api: format!("{}/api/v1", config.base_url.trim_end_matches('/')),
            auth: format!("token {}", config.token),
            counters,
        }
    }

    /// Sends one request; any HTTP status is `Ok`, only a missing answer is `Err`.
    pub(crate) fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Answer, ApiError> {
        let url = format!("{}/{path}", self.api);
        self.counters.calls.fetch_add(1, Ordering::Relaxed);
        let sent = match method {
            Method::Get => self
                .agent
                .get(&url)
                .header("Authorization", &self.auth)
                .header("Accept", "application/json")
                .call(),
            Method::Post | Method::Patch => {
                let request = match method {
                    Method::Post => self.agent.post(&url),
                    _ => self.agent.patch(&url),
                };
                let request = request
                    .header("Authorization", &self.auth)
                    .header("Accept", "application/json");
                match body {
                    Some(body) => request.send_json(body),
                    None => request.send_empty(),
                }
            }
        };
        let mut response = match sent {
            Ok(response) => response,
            Err(err) => {
                self.counters.errors.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(?method, path, error = %err, "gitea call got no answer");
                if is_untrusted_certificate(&err) {
                    return Err(ApiError::Transport(format!(
                        "{err}; {UNTRUSTED_CERTIFICATE_HINT}"
                    )));
                }
                return Err(ApiError::Transport(err.to_string()));
            }
        };
        let status = response.status().as_u16();
        let header = |name: &str| {
            response
                .headers()
                .get(name)
                .and_then(|value| value.to_str().ok())
                .map(str::to_owned)
        };
        let total_count = header("x-total-count").and_then(|value| value.trim().parse().ok());
        let retry_after = header("retry-after")
            .and_then(|value| value.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let body = match response.body_mut().read_to_string() {
            Ok(body) => body,
            Err(err) => {
                self.counters.errors.fetch_add(1, Ordering::Relaxed);
                return Err(ApiError::Transport(format!("reading the answer: {err}")));
            }
        };
        if status == 429 {
            self.counters.rate_limited.fetch_add(1, Ordering::Relaxed);
        }
        if status == 429 || status >= 500 || status == 401 || status == 403 {
            self.counters.errors.fetch_add(1, Ordering::Relaxed);
        }
        tracing::debug!(?method, path, status, "gitea call answered");
        Ok(Answer {
            status,
            body,
            total_count,
            retry_after,
        })
    }

    pub(crate) fn get(&self, path: &str) -> Result<Answer, ApiError> {
        self.call(Method::Get, path, None)
    }
}

/// Everything but RFC 3986's unreserved characters is escaped in a path segment.
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// A branch name keeps its `/` (`feature/x`), which Gitea's compare path takes as is.
const BRANCH_PATH: &AsciiSet = &SEGMENT.remove(b'/');

/// Percent-encodes one path segment: an owner, a repository or a branch as a base.
pub(crate) fn encode_segment(piece: &str) -> String {
    utf8_percent_encode(piece, SEGMENT).to_string()
}

/// Percent-encodes a branch name as a path, keeping its `/`.
pub(crate) fn encode_branch_path(piece: &str) -> String {
    utf8_percent_encode(piece, BRANCH_PATH).to_string()
}

/// Whether `err` is a TLS certificate the client refused (rustls reports it as an i/o error).
fn is_untrusted_certificate(err: &ureq::Error) -> bool {
    match err {
        ureq::Error::Rustls(_) | ureq::Error::Tls(_) => true,
        ureq::Error::Io(io) => io.to_string().contains("certificate"),
        _ => false,
    }
}
