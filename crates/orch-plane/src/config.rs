//! `PlaneSettings`: what `PlaneTracker` needs to reach Plane.

use std::fmt;
use std::time::Duration;

use orch_core::backoff::RetryPolicy;
use orch_core::secret::Secret;

/// How to reach one Plane workspace: the adapter's settings, which orch-daemon builds from
/// its `[plane]` section.
#[derive(Clone)]
pub struct PlaneSettings {
    /// `https://plane.example.com`, without `/api/v1` (`plane.base_url`).
    pub base_url: String,
    /// `plane.workspace_slug`.
    pub workspace_slug: String,
    /// `plane.api_token` / `ORCH_PLANE_API_TOKEN`; sent as `X-Api-Key`, never logged.
    pub api_token: Secret,
    /// Plane's limit per API key (`plane.rate_limit_per_min`); orch uses at most 80 % of it.
    pub rate_limit_per_min: u32,
    /// The window the limit applies to: one minute, as Plane counts. Tests shorten it.
    pub rate_window: Duration,
    /// The deadline of one HTTP call, connect to last body byte.
    pub request_timeout: Duration,
    /// Retries of one call; a `Retry-After` longer than the backoff's cap ends them at once.
    pub retry: RetryPolicy,
    /// Which certificates prove the server (orch-daemon: the system's store plus `tls.ca_file`).
    /// The default is ureq's: the webpki roots compiled in.
    pub tls: ureq::tls::TlsConfig,
}

impl PlaneSettings {
    /// A configuration with production defaults: 60 calls/min, 30 s per call, 3 retries.
    pub fn new(
        base_url: impl Into<String>,
        workspace_slug: impl Into<String>,
        api_token: impl Into<String>,
    ) -> PlaneSettings {
        PlaneSettings {
            base_url: base_url.into(),
            workspace_slug: workspace_slug.into(),
            api_token: Secret::new(api_token),
            rate_limit_per_min: 60,
            rate_window: Duration::from_secs(60),
            request_timeout: Duration::from_secs(30),
            // The first attempt and three retries.
            retry: RetryPolicy {
                max_attempts: 4,
                ..RetryPolicy::default()
            },
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

impl fmt::Debug for PlaneSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PlaneSettings")
            .field("base_url", &self.base_url)
            .field("workspace_slug", &self.workspace_slug)
            .field("api_token", &self.api_token)
            .field("rate_limit_per_min", &self.rate_limit_per_min)
            .field("rate_window", &self.rate_window)
            .field("request_timeout", &self.request_timeout)
            .field("retry", &self.retry)
            .finish_non_exhaustive()
    }
}
