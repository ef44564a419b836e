//! `orch-telegram`: the `Notifier` adapter over Telegram's Bot API (work in progress).

#![forbid(unsafe_code)]
