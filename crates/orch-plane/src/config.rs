//! `PlaneConfig` and `RetryPolicy`: what `PlaneTracker` needs to reach Plane.

use std::fmt;
use std::time::Duration;

/// How to reach one Plane workspace.
#[derive(Clone)]
pub struct PlaneConfig {
    /// `https://plane.example.com`, without `/api/v1` (`plane.base_url`).
    pub base_url: String,
    /// `plane.workspace_slug`.
    pub workspace_slug: String,
    /// `plane.api_token` / `ORCH_PLANE_API_TOKEN`; sent as `X-Api-Key`, never logged.
    pub api_token: String,
    /// Plane's limit per API key (`plane.rate_limit_per_min`); orch uses at most 80 % of it.
    pub rate_limit_per_min: u32,
    /// The window the limit applies to: one minute, as Plane counts. Tests shorten it.
    pub rate_window: Duration,
    /// The deadline of one HTTP call, connect to last body byte.
    pub request_timeout: Duration,
    pub retry: RetryPolicy,
    /// Which certificates prove the server (orch-daemon: the system's store plus `tls.ca_file`).
    /// The default is ureq's: the webpki roots compiled in.
    pub tls: ureq::tls::TlsConfig,
}

impl PlaneConfig {
    /// A configuration with production defaults: 60 calls/min, 30 s per call, 3 retries.
    pub fn new(
        base_url: impl Into<String>,
        workspace_slug: impl Into<String>,
        api_token: impl Into<String>,
    ) -> PlaneConfig {
        PlaneConfig {
            base_url: base_url.into(),
            workspace_slug: workspace_slug.into(),
            api_token: api_token.into(),
            rate_limit_per_min: 60,
            rate_window: Duration::from_secs(60),
            request_timeout: Duration::from_secs(30),
            retry: RetryPolicy::default(),
            tls: ureq::tls::TlsConfig::default(),
        }
    }

    /// How many calls orch allows itself per `rate_window`: 80 % of the limit, at least one.
    pub fn call_budget(&self) -> usize {
        usize::try_from(self.rate_limit_per_min.saturating_mul(4) / 5)
            .unwrap_or(usize::MAX)
            .max(1)
    }
}

impl fmt::Debug for PlaneConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PlaneConfig")
            .field("base_url", &self.base_url)
            .field("workspace_slug", &self.workspace_slug)
            .field(
                "api_token",
                &if self.api_token.is_empty() {
                    "<empty>"
                } else {
                    "<redacted>"
                },
            )
            .field("rate_limit_per_min", &self.rate_limit_per_min)
            .field("rate_window", &self.rate_window)
            .field("request_timeout", &self.request_timeout)
            .field("retry", &self.retry)
            .finish_non_exhaustive()
    }
}

/// Bounded retries with full-jitter exponential backoff (SPEC §4).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Retries after the first attempt; 0 = try once.
    pub max_retries: u32,
    /// The backoff before retry `n` is uniform in `[0, min(max_delay, base_delay · 2ⁿ)]`.
    pub base_delay: Duration,
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> RetryPolicy {
        RetryPolicy {
            max_retries: 3,
            base_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(300),
        }
    }
}

impl RetryPolicy {
    /// The upper bound of the backoff before retry `retry` (0-based).
    pub fn ceiling(&self, retry: u32) -> Duration {
        self.policy().delay(retry + 1, None, 1.0)
    }

    /// A full-jitter delay before retry `retry` (0-based): orch-core's policy, so every
    /// retry in orch backs off the same way.
    pub fn backoff(&self, retry: u32) -> Duration {
        self.policy().delay(retry + 1, None, rand::random::<f64>())
    }

    fn policy(&self) -> orch_core::backoff::Backoff {
        orch_core::backoff::Backoff {
            base: self.base_delay,
            cap: self.max_delay,
        }
    }
}
