//! The bot token is in every request's URL path: it must never reach a log or an error.

use std::io;
use std::sync::{Arc, Mutex};

use orch_core::ports::Notifier;
use orch_core::secret::Secret;
use orch_sim::telegram::TelegramFault;
use orch_telegram::{TelegramNotifier, TelegramSettings};

use crate::{config_for, notifier_for, start_sim, CHAT, TEST_REQUEST_TIMEOUT, TOKEN};

/// A `tracing` sink into memory.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl io::Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn text(&self) -> String {
        String::from_utf8_lossy(
            &self
                .0
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner()),
        )
        .into_owned()
    }
}

#[tokio::test]
async fn the_token_is_absent_from_captured_logs_and_error_messages() {
    let captured = Captured::default();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .with_writer({
            let captured = captured.clone();
            move || captured.clone()
        })
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let sim = start_sim().await;
    let notifier = notifier_for(&sim);
    let mut errors = Vec::new();
    notifier.notify("delivered").await.expect("delivered");
    notifier.get_me().await.expect("the token is right");
    for fault in [
        TelegramFault::TooManyRequests { retry_after: 1 },
        TelegramFault::ServerError { status: 500 },
        TelegramFault::ChatNotFound,
        TelegramFault::Drop,
        TelegramFault::Delay(TEST_REQUEST_TIMEOUT * 4),
    ] {
        sim.push_fault(fault);
        errors.push(
            notifier
                .notify("refused")
                .await
                .expect_err("the fault fails the send"),
        );
    }
    let mut wrong_token = config_for(&sim);
    wrong_token.bot_token = Secret::new(format!("{TOKEN}-rotated"));
    errors.push(
        TelegramNotifier::new(&wrong_token)
            .notify("refused")
            .await
            .expect_err("unauthorized"),
    );
    let unusable = TelegramSettings {
        bot_token: Secret::new(TOKEN),
        chat_id: CHAT.to_owned(),
        api_base: "http://exa mple".to_owned(),
        request_timeout: TEST_REQUEST_TIMEOUT,
        ..TelegramSettings::new(TOKEN, CHAT)
    };
    errors.push(
        TelegramNotifier::new(&unusable)
            .notify("refused")
            .await
            .expect_err("a bad url"),
    );

    let logs = captured.text();
    assert!(
        logs.contains("telegram call failed"),
        "nothing was captured: {logs}"
    );
    let secret_part = TOKEN.split_once(':').expect("id:secret").1;
    assert!(!logs.contains(secret_part), "the token was logged: {logs}");
    assert!(!logs.contains("/bot"), "a bot api url was logged: {logs}");
    assert!(
        !logs.contains(&sim.api_base()),
        "the api url was logged: {logs}"
    );
    for err in &errors {
        for text in [err.to_string(), format!("{err:?}")] {
            assert!(
                !text.contains(secret_part),
                "the token is in an error: {text}"
            );
            assert!(
                !text.contains("/bot"),
                "a bot api url is in an error: {text}"
            );
        }
    }
}

#[test]
fn the_config_debug_redacts_the_token() {
    let config = TelegramSettings::new(TOKEN, CHAT);
    let debug = format!("{config:?}");
    assert!(!debug.contains("very-secret"), "{debug}");
    assert!(
        debug.contains("<redacted>") && debug.contains(CHAT),
        "{debug}"
    );
}
