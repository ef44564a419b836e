//! Failures, classified for the core's retry decisions and naming the setting to fix.

use std::time::Duration;

use orch_core::ports::{ErrorClass, Notifier, NotifyError};
use orch_core::secret::Secret;
use orch_sim::telegram::TelegramFault;
use orch_telegram::{TelegramNotifier, TelegramSettings};

use crate::{config_for, notifier_for, start_sim, CHAT, TEST_REQUEST_TIMEOUT, TOKEN};

async fn notify_error(notifier: &TelegramNotifier) -> NotifyError {
    notifier
        .notify("ET-001 needs you")
        .await
        .expect_err("the send fails")
}

#[tokio::test]
async fn rate_limit_is_unavailable_with_telegrams_retry_after() {
    let sim = start_sim().await;
    sim.push_fault(TelegramFault::TooManyRequests { retry_after: 17 });
    let notifier = notifier_for(&sim);

    let err = notify_error(&notifier).await;

    assert_eq!(
        err.class(),
        ErrorClass::Unavailable {
            retry_after: Some(Duration::from_secs(17))
        }
    );
    assert!(sim.messages().is_empty());
    notifier
        .notify("ET-001 needs you")
        .await
        .expect("delivered once the limit passed");
    assert_eq!(sim.messages().len(), 1);
}

#[tokio::test]
async fn server_errors_are_unavailable() {
    let sim = start_sim().await;
    let notifier = notifier_for(&sim);
    for status in [500, 502, 503] {
        sim.push_fault(TelegramFault::ServerError { status });
        let err = notify_error(&notifier).await;
        assert_eq!(
            err.class(),
            ErrorClass::Unavailable { retry_after: None },
            "{status}: {err}"
        );
    }
}

#[tokio::test]
async fn a_slow_answer_times_out_as_unavailable() {
    let sim = start_sim().await;
    sim.push_fault(TelegramFault::Delay(TEST_REQUEST_TIMEOUT * 4));
    let err = notify_error(&notifier_for(&sim)).await;
    assert_eq!(err.class(), ErrorClass::Unavailable { retry_after: None });
    assert!(err.to_string().contains("timed out"), "{err}");
}

#[tokio::test]
async fn a_dropped_connection_is_unavailable() {
    let sim = start_sim().await;
    sim.push_fault(TelegramFault::Drop);
    let err = notify_error(&notifier_for(&sim)).await;
    assert_eq!(
        err.class(),
        ErrorClass::Unavailable { retry_after: None },
        "{err}"
    );
}

#[tokio::test]
async fn an_unreachable_host_is_unavailable() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
    let api_base = format!("http://{}", listener.local_addr().expect("bound"));
    drop(listener);
    let config = TelegramSettings {
        bot_token: Secret::new(TOKEN),
        chat_id: CHAT.to_owned(),
        api_base,
        request_timeout: TEST_REQUEST_TIMEOUT,
        ..TelegramSettings::new(TOKEN, CHAT)
    };
    let err = notify_error(&TelegramNotifier::new(&config)).await;
    assert_eq!(
        err.class(),
        ErrorClass::Unavailable { retry_after: None },
        "{err}"
    );
}

#[tokio::test]
async fn chat_not_found_is_invalid_naming_the_chat_setting() {
    let sim = start_sim().await;
    let mut config = config_for(&sim);
    config.chat_id = "424242".to_owned();

    let err = notify_error(&TelegramNotifier::new(&config)).await;

    assert_eq!(err.class(), ErrorClass::Invalid);
    assert!(err.to_string().contains("chat not found"), "{err}");
    assert!(
        err.to_string()
            .contains("telegram.chat_id (ORCH_TELEGRAM_CHAT_ID)"),
        "{err}"
    );
}

#[tokio::test]
async fn a_wrong_token_is_unauthorized_naming_the_token_setting() {
    let sim = start_sim().await;
    let mut config = config_for(&sim);
    config.bot_token = Secret::new("7012345678:AAH-wrong-token");
    let notifier = TelegramNotifier::new(&config);

    let send_err = notify_error(&notifier).await;
    let check_err = notifier.get_me().await.expect_err("getMe fails too");

    for err in [send_err, check_err] {
        assert_eq!(err.class(), ErrorClass::Unauthorized);
        assert!(
            err.to_string()
                .contains("telegram.bot_token (ORCH_TELEGRAM_BOT_TOKEN)"),
            "{err}"
        );
        assert!(!err.to_string().contains("wrong-token"), "{err}");
    }
}

#[tokio::test]
async fn an_unusable_api_base_is_invalid_naming_the_setting() {
    let config = TelegramSettings {
        bot_token: Secret::new(TOKEN),
        chat_id: CHAT.to_owned(),
        api_base: "http://exa mple".to_owned(),
        request_timeout: TEST_REQUEST_TIMEOUT,
        ..TelegramSettings::new(TOKEN, CHAT)
    };
    let err = notify_error(&TelegramNotifier::new(&config)).await;
    assert_eq!(err.class(), ErrorClass::Invalid, "{err}");
    assert!(err.to_string().contains("fix telegram.api_base"), "{err}");
}
