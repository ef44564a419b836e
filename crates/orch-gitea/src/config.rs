//! How `GiteaForge` is configured: endpoint, token, merge style, timeouts and retries.

use std::fmt;
use std::time::Duration;

/// How pull requests are merged (`gitea.merge_style`, Gitea's `Do`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MergeStyle {
    #[default]
    Merge,
    Squash,
    Rebase,
    RebaseMerge,
}

impl MergeStyle {
    /// Parses the configuration word (`merge`, `squash`, `rebase`, `rebase-merge`).
    pub fn parse(word: &str) -> Option<MergeStyle> {
        match word {
            "merge" => Some(MergeStyle::Merge),
            "squash" => Some(MergeStyle::Squash),
            "rebase" => Some(MergeStyle::Rebase),
            "rebase-merge" => Some(MergeStyle::RebaseMerge),
            _ => None,
        }
    }

    /// The word Gitea expects in `Do`.
    pub fn as_str(self) -> &'static str {
        match self {
            MergeStyle::Merge => "merge",
            MergeStyle::Squash => "squash",
            MergeStyle::Rebase => "rebase",
            MergeStyle::RebaseMerge => "rebase-merge",
        }
    }
}

/// Retries of one forge operation: full-jitter exponential backoff, honouring `Retry-After`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in all, the first included (1 = no retry).
    pub max_attempts: u32,
    /// The backoff before the second attempt is drawn from `[0, base]`, then `[0, 2·base]`, …
    pub base: Duration,
    /// No wait is longer than this, `Retry-After` included.
    pub cap: Duration,
}

impl RetryPolicy {
    /// SPEC §4: base 1 s, cap 5 min; three attempts, then the job layer retries.
    pub fn production() -> RetryPolicy {
        RetryPolicy {
            max_attempts: 3,
            base: Duration::from_secs(1),
            cap: Duration::from_secs(300),
        }
    }

    /// The wait before attempt `attempt + 1`, after `attempt` failed attempts.
    pub fn delay(&self, attempt: u32, retry_after: Option<Duration>) -> Duration {
        let backoff = orch_core::backoff::Backoff {
            base: self.base,
            cap: self.cap,
        };
        backoff
            .delay(attempt, retry_after, rand::random::<f64>())
            .min(self.cap)
    }
}

impl Default for RetryPolicy {
    fn default() -> RetryPolicy {
        RetryPolicy::production()
    }
}

/// Everything `GiteaForge` needs. `Debug` redacts the token.
#[derive(Clone)]
pub struct GiteaConfig {
    /// `gitea.base_url`, e.g. `https://gitea.example.com` (no `/api/v1`).
    pub base_url: String,
    /// `gitea.token` / `ORCH_GITEA_TOKEN`.
    pub token: String,
    pub merge_style: MergeStyle,
    pub delete_branch_after_merge: bool,
    pub connect_timeout: Duration,
    /// The whole of one HTTP call.
    pub request_timeout: Duration,
    pub retry: RetryPolicy,
    /// Which certificates prove the server (orch-daemon: the system's store plus `tls.ca_file`).
    /// The default is ureq's: the webpki roots compiled in.
    pub tls: ureq::tls::TlsConfig,
}

impl GiteaConfig {
    /// Production defaults for `base_url` and `token`.
    pub fn new(base_url: impl Into<String>, token: impl Into<String>) -> GiteaConfig {
        GiteaConfig {
            base_url: base_url.into(),
            token: token.into(),
            merge_style: MergeStyle::Merge,
            delete_branch_after_merge: false,
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(30),
            retry: RetryPolicy::production(),
            tls: ureq::tls::TlsConfig::default(),
        }
    }
}

impl fmt::Debug for GiteaConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GiteaConfig")
            .field("base_url", &self.base_url)
            .field(
                "token",
                &if self.token.is_empty() {
                    "<empty>"
                } else {
                    "<redacted>"
                },
            )
            .field("merge_style", &self.merge_style)
            .field("delete_branch_after_merge", &self.delete_branch_after_merge)
            .field("connect_timeout", &self.connect_timeout)
            .field("request_timeout", &self.request_timeout)
            .field("retry", &self.retry)
            .finish_non_exhaustive()
    }
}
