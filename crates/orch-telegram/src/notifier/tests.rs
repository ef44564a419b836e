//! Tests of the answer classification, without a network.

use std::time::Duration;

use orch_core::ports::{ErrorClass, NotifyError};

use crate::client::Exchange;
use crate::notifier::{classify, scrub_error};

fn answered(status: u16, body: &str) -> Exchange {
    Exchange::Answered {
        status,
        body: body.as_bytes().to_vec(),
        retry_after: None,
    }
}

fn check(exchange: Exchange, expected: ErrorClass, message_part: &str) {
    let err = classify("sendMessage", exchange).expect_err("an error answer");
    assert_eq!(err.class(), expected, "{err}");
    assert!(err.to_string().contains(message_part), "{err}");
}

#[test]
fn an_ok_answer_yields_its_result() {
    let result = classify("getMe", answered(200, r#"{"ok":true,"result":{"id":1}}"#)).expect("ok");
    assert_eq!(result["id"], 1);
}

#[test]
fn answers_are_classified_for_the_core() {
    check(
        answered(
            429,
            r#"{"ok":false,"error_code":429,"description":"Too Many Requests: retry after 7","parameters":{"retry_after":7}}"#,
        ),
        ErrorClass::Unavailable {
            retry_after: Some(Duration::from_secs(7)),
        },
        "rate limited",
    );
    check(
        Exchange::Answered {
            status: 429,
            body: b"not json".to_vec(),
            retry_after: Some(Duration::from_secs(3)),
        },
        ErrorClass::Unavailable {
            retry_after: Some(Duration::from_secs(3)),
        },
        "HTTP 429",
    );
    check(
        answered(502, "<html>bad gateway</html>"),
        ErrorClass::Unavailable { retry_after: None },
        "HTTP 502",
    );
    check(
        Exchange::Transport("timed out".to_owned()),
        ErrorClass::Unavailable { retry_after: None },
        "timed out",
    );
    check(
        answered(401, r#"{"ok":false,"description":"Unauthorized"}"#),
        ErrorClass::Unauthorized,
        "ORCH_TELEGRAM_BOT_TOKEN",
    );
    check(
        answered(404, r#"{"ok":false,"description":"Not Found"}"#),
        ErrorClass::Unauthorized,
        "telegram.bot_token",
    );
    check(
        answered(
            400,
            r#"{"ok":false,"description":"Bad Request: chat not found"}"#,
        ),
        ErrorClass::Invalid,
        "chat not found; fix telegram.chat_id (ORCH_TELEGRAM_CHAT_ID)",
    );
    check(
        answered(
            403,
            r#"{"ok":false,"description":"Forbidden: bot was kicked from the group chat"}"#,
        ),
        ErrorClass::Invalid,
        "telegram.chat_id",
    );
    check(
        answered(
            400,
            r#"{"ok":false,"description":"Bad Request: message is too long"}"#,
        ),
        ErrorClass::Invalid,
        "too long",
    );
    check(
        answered(200, r#"{"ok":false}"#),
        ErrorClass::Other,
        "without ok",
    );
    check(answered(302, ""), ErrorClass::Invalid, "telegram.api_base");
}

#[test]
fn the_token_is_scrubbed_from_every_error_text() {
    let token = "123456:ABC-secret";
    let err = scrub_error(
        NotifyError::Invalid(format!("echoed /bot{token}/sendMessage")),
        token,
    );
    assert_eq!(
        err.to_string(),
        "notifier: refused: echoed /bot<redacted>/sendMessage"
    );
}
