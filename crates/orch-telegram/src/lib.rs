//! `orch-telegram` tells people on Telegram that orch needs them: `TelegramNotifier`
//! implements the core's `Notifier` port over the Bot API's `sendMessage`, and offers
//! `get_me` and `get_chat` for `orch check --online`. Texts are plain text from the core; this crate escapes
//! them for `parse_mode = "HTML"`, turns link previews off and keeps them under Telegram's
//! length limit.
//!
//! The bot token is part of every request's URL path, so this crate never logs a URL, a
//! request body or a ureq error's text, and every error message is built from fixed words
//! plus Telegram's `description` with the token scrubbed. It deliberately does not retry:
//! notifications are durable `notify` jobs, and the core retries them using the
//! `Unavailable { retry_after }` this crate reports. Main types: `TelegramNotifier`,
//! `TelegramConfig` (its `Debug` redacts the token) and `BotInfo`.

#![forbid(unsafe_code)]

mod client;
mod config;
mod html;
mod notifier;

pub use config::{TelegramConfig, DEFAULT_API_BASE, DEFAULT_REQUEST_TIMEOUT};
pub use html::{escape_html, fit_message, MAX_MESSAGE_LEN};
pub use notifier::{links_html, BotInfo, ChatInfo, TelegramNotifier};
