//! `GiteaSettings`, how `GiteaForge` reaches Gitea (endpoint, token, timeouts, retries), and `MergeStyle`.

use std::fmt;
use std::time::Duration;

use orch_core::backoff::RetryPolicy;
use orch_core::secret::Secret;

/// How pull requests are merged (`gitea.merge_style`, Gitea's `Do`): the one definition, which
/// orch-daemon's configuration reads too.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum MergeStyle {
    #[default]
    Merge,
    Squash,
    Rebase,
    RebaseMerge,
}

impl MergeStyle {
    pub const ALL: [MergeStyle; 4] = [
        MergeStyle::Merge,
        MergeStyle::Squash,
        MergeStyle::Rebase,
        MergeStyle::RebaseMerge,
    ];

    /// Parses the configuration word (`merge`, `squash`, `rebase`, `rebase-merge`).
    pub fn parse(word: &str) -> Option<MergeStyle> {
        MergeStyle::ALL
            .into_iter()
            .find(|style| style.as_str() == word)
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

impl fmt::Display for MergeStyle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Everything `GiteaForge` needs: the adapter's settings, which orch-daemon builds from its
/// `[gitea]` section. `Debug` redacts the token.
#[derive(Clone)]
pub struct GiteaSettings {
    /// `gitea.base_url`, e.g. `https://gitea.example.com` (no `/api/v1`).
    pub base_url: String,
    /// `gitea.token` / `ORCH_GITEA_TOKEN`.
    pub token: Secret,
    pub merge_style: MergeStyle,
    pub delete_branch_after_merge: bool,
    pub connect_timeout: Duration,
    /// The whole of one HTTP call.
    pub request_timeout: Duration,
    /// Retries of one operation; a `Retry-After` longer than the backoff's cap waits the cap.
    pub retry: RetryPolicy,
    /// Which certificates prove the server (orch-daemon: the system's store plus `tls.ca_file`).
    /// The default is ureq's: the webpki roots compiled in.
    pub tls: ureq::tls::TlsConfig,
}

impl GiteaSettings {
    /// Production defaults for `base_url` and `token`.
    pub fn new(base_url: impl Into<String>, token: impl Into<String>) -> GiteaSettings {
        GiteaSettings {
            base_url: base_url.into(),
            token: Secret::new(token),
            merge_style: MergeStyle::Merge,
            delete_branch_after_merge: false,
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(30),
            retry: RetryPolicy::default(),
            tls: ureq::tls::TlsConfig::default(),
        }
    }
}

impl fmt::Debug for GiteaSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GiteaSettings")
            .field("base_url", &self.base_url)
            .field("token", &self.token)
            .field("merge_style", &self.merge_style)
            .field("delete_branch_after_merge", &self.delete_branch_after_merge)
            .field("connect_timeout", &self.connect_timeout)
            .field("request_timeout", &self.request_timeout)
            .field("retry", &self.retry)
            .finish_non_exhaustive()
    }
}
