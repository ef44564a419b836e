//! The `Notifier` contract suite of orch-core, run against `TelegramNotifier` on `TelegramSim`.

use std::time::Duration;

use async_trait::async_trait;
use orch_core::fakes::contract::{self, Delivered, NotifierFixture};
use orch_core::ports::Notifier;
use orch_sim::telegram::{TelegramFault, TelegramSim};
use orch_telegram::{TelegramNotifier, MAX_MESSAGE_LEN};

use crate::{notifier_for, start_sim, CHAT};

#[tokio::test]
async fn telegram_notifier_keeps_the_notifier_contract() {
    contract::notifier(|_case| async {
        let sim = start_sim().await;
        let notifier = notifier_for(&sim).with_links(contract::notifier::links());
        Telegram { sim, notifier }
    })
    .await;
}

struct Telegram {
    sim: TelegramSim,
    notifier: TelegramNotifier,
}

#[async_trait]
impl NotifierFixture for Telegram {
    fn notifier(&self) -> &dyn Notifier {
        &self.notifier
    }

    async fn delivered(&self) -> Vec<Delivered> {
        self.sim
            .messages()
            .into_iter()
            .filter(|message| message.chat_id == CHAT)
            .map(|message| {
                let links = message.links();
                let visible = message.visible_text();
                // The links' labels are a line of their own, after an empty one.
                let text = match visible.rsplit_once("\n\n") {
                    Some((text, _labels)) if !links.is_empty() => text.to_owned(),
                    _ => visible,
                };
                Delivered { text, links }
            })
            .collect()
    }

    fn max_message_len(&self) -> usize {
        MAX_MESSAGE_LEN
    }

    async fn delivered_lengths(&self) -> Vec<usize> {
        self.sim
            .messages()
            .iter()
            .filter(|message| message.chat_id == CHAT)
            .map(|message| message.visible_text().encode_utf16().count())
            .collect()
    }

    async fn service_rate_limits_the_next_call(&self, retry_after: Duration) {
        self.sim.push_fault(TelegramFault::TooManyRequests {
            retry_after: retry_after.as_secs(),
        });
    }

    async fn service_fails_the_next_call(&self) {
        self.sim
            .push_fault(TelegramFault::ServerError { status: 502 });
    }

    async fn chat_is_unknown_for_the_next_call(&self) {
        self.sim.push_fault(TelegramFault::ChatNotFound);
    }

    async fn credential_is_revoked(&self) {
        self.sim
            .replace_token("7012345678:AAH-the-token-after-revoke");
    }
}
