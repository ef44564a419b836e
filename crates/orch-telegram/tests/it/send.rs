//! Delivering messages and asking who the bot is.

use orch_core::ports::Notifier;
use orch_sim::telegram::BOT_USERNAME;
use orch_telegram::{TelegramNotifier, MAX_MESSAGE_LEN};

use crate::{config_for, notifier_for, start_sim, CHAT};

#[tokio::test]
async fn delivered_text_is_html_escaped_with_link_previews_off() {
    let sim = start_sim().await;
    let notifier = notifier_for(&sim);

    notifier
        .notify("ET-001 <Add map> needs a verdict: R&D says 2 > 1, see https://plane.example.com/x")
        .await
        .expect("delivered");

    let messages = sim.messages();
    assert_eq!(messages.len(), 1);
    let message = &messages[0];
    assert_eq!(message.chat_id, CHAT);
    assert_eq!(message.parse_mode.as_deref(), Some("HTML"));
    assert!(message.link_preview_disabled);
    assert_eq!(
        message.text,
        "ET-001 &lt;Add map&gt; needs a verdict: R&amp;D says 2 &gt; 1, see https://plane.example.com/x"
    );
    assert_eq!(
        message.visible_text(),
        "ET-001 <Add map> needs a verdict: R&D says 2 > 1, see https://plane.example.com/x"
    );
}

#[tokio::test]
async fn a_channel_name_is_sent_as_a_string_chat_id() {
    let sim = orch_sim::telegram::TelegramSim::start(crate::TOKEN, "@orch_alerts")
        .await
        .expect("the sim starts");
    let mut config = config_for(&sim);
    config.chat_id = "@orch_alerts".to_owned();
    TelegramNotifier::new(&config)
        .notify("hello")
        .await
        .expect("delivered");
    assert_eq!(sim.messages()[0].chat_id, "@orch_alerts");
}

#[tokio::test]
async fn an_over_long_text_is_cut_to_telegrams_limit_and_delivered() {
    let sim = start_sim().await;
    let text = "<&>".repeat(MAX_MESSAGE_LEN);
    notifier_for(&sim).notify(&text).await.expect("delivered");
    let visible = sim.messages()[0].visible_text();
    assert_eq!(visible.encode_utf16().count(), MAX_MESSAGE_LEN);
    assert!(visible.ends_with('…'));
}

#[tokio::test]
async fn get_me_returns_the_bot() {
    let sim = start_sim().await;
    let bot = notifier_for(&sim)
        .get_me()
        .await
        .expect("the token is right");
    assert_eq!(bot.username.as_deref(), Some(BOT_USERNAME));
    assert_eq!(sim.get_me_calls(), 1);
    assert!(sim.messages().is_empty());
}
