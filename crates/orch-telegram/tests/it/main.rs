//! Integration tests of orch-telegram against `orch_sim::telegram::TelegramSim` on loopback.

mod contract;
mod errors;
mod logs;
mod send;

use std::time::Duration;

use orch_core::secret::Secret;
use orch_sim::telegram::TelegramSim;
use orch_telegram::{TelegramNotifier, TelegramSettings};

pub(crate) const TOKEN: &str = "7012345678:AAH-very-secret-bot-token";
pub(crate) const CHAT: &str = "-1001234567890";
/// Short, so the timeout test is fast; far above a loopback round trip.
pub(crate) const TEST_REQUEST_TIMEOUT: Duration = Duration::from_millis(500);

pub(crate) async fn start_sim() -> TelegramSim {
    TelegramSim::start(TOKEN, CHAT)
        .await
        .expect("the sim starts")
}

pub(crate) fn config_for(sim: &TelegramSim) -> TelegramSettings {
    TelegramSettings {
        bot_token: Secret::new(TOKEN),
        chat_id: CHAT.to_owned(),
        api_base: sim.api_base(),
        request_timeout: TEST_REQUEST_TIMEOUT,
        ..TelegramSettings::new(TOKEN, CHAT)
    }
}

pub(crate) fn notifier_for(sim: &TelegramSim) -> TelegramNotifier {
    TelegramNotifier::new(&config_for(sim))
}
