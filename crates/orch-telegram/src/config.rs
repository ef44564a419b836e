//! The notifier's settings; the token never shows in `Debug`.

use std::fmt;
use std::time::Duration;

use orch_core::secret::Secret;

/// Telegram's own Bot API host.
pub const DEFAULT_API_BASE: &str = "https://api.telegram.org";
/// The deadline of one Bot API call.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// How `TelegramNotifier` reaches the Bot API: the adapter's settings, which orch-daemon builds
/// from its `[telegram]` section (SPEC §5.2).
#[derive(Clone)]
pub struct TelegramSettings {
    /// `telegram.bot_token` / `ORCH_TELEGRAM_BOT_TOKEN`. A secret.
    pub bot_token: Secret,
    /// `telegram.chat_id` / `ORCH_TELEGRAM_CHAT_ID`: a numeric id or `@channelname`.
    pub chat_id: String,
    /// `telegram.api_base`, without a trailing slash.
    pub api_base: String,
    /// The deadline of one call (connect, send and receive).
    pub request_timeout: Duration,
    /// Which certificates prove the server (orch-daemon: the system's store plus `tls.ca_file`).
    /// The default is ureq's: the webpki roots compiled in.
    pub tls: ureq::tls::TlsConfig,
}

impl TelegramSettings {
    /// A config for Telegram's own host with the default timeout.
    pub fn new(bot_token: impl Into<String>, chat_id: impl Into<String>) -> TelegramSettings {
        TelegramSettings {
            bot_token: Secret::new(bot_token),
            chat_id: chat_id.into(),
            api_base: DEFAULT_API_BASE.to_owned(),
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            tls: ureq::tls::TlsConfig::default(),
        }
    }
}

impl fmt::Debug for TelegramSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TelegramSettings")
            .field("bot_token", &self.bot_token)
            .field("chat_id", &self.chat_id)
            .field("api_base", &self.api_base)
            .field("request_timeout", &self.request_timeout)
            .finish_non_exhaustive()
    }
}
