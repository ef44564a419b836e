//! The `Notifier` port: telling people on Telegram (or wherever) that they are needed.

use async_trait::async_trait;

use crate::ports::error::port_error;

port_error!(
    /// Why a notification was not delivered.
    NotifyError,
    "notifier"
);

/// Sends short texts to the people who run orch.
#[async_trait]
pub trait Notifier: Send + Sync {
    /// Delivers `text` (plain text; the adapter escapes it for its medium).
    ///
    /// Errors: MUST return `Unavailable` (with `retry_after` when the service gave one) for
    /// rate limits, 5xx and timeouts; `Unauthorized` for a bad credential; `Invalid` for a
    /// permanent refusal (unknown chat), naming the setting to fix.
    async fn notify(&self, text: &str) -> Result<(), NotifyError>;
}
