//! Tests of the Telegram simulator over loopback HTTP.

use bytes::Bytes;
use serde_json::json;

use crate::telegram::{check_html, decode_entities, TelegramFault, TelegramSim};
use crate::webhook::post;

const TOKEN: &str = "123456:sim-token";
const CHAT: &str = "-1001234";

async fn send(sim: &TelegramSim, token: &str, body: serde_json::Value) -> u16 {
    let url = format!("{}/bot{token}/sendMessage", sim.api_base());
    let headers = [("content-type".to_owned(), "application/json".to_owned())];
    post(&url, &headers, Bytes::from(body.to_string()))
        .await
        .expect("the sim answers")
}

#[tokio::test]
async fn a_message_to_the_configured_chat_is_recorded() {
    let sim = TelegramSim::start(TOKEN, CHAT)
        .await
        .expect("the sim starts");
    let body = json!({"chat_id": -1001234, "text": "a &lt;b&gt; &amp; c", "parse_mode": "HTML",
                      "link_preview_options": {"is_disabled": true}});
    assert_eq!(send(&sim, TOKEN, body).await, 200);
    let messages = sim.messages();
    assert_eq!(messages.len(), 1);
    assert_eq!(messages[0].chat_id, CHAT);
    assert_eq!(messages[0].text, "a &lt;b&gt; &amp; c");
    assert_eq!(messages[0].visible_text(), "a <b> & c");
    assert!(messages[0].link_preview_disabled);
}

#[tokio::test]
async fn a_wrong_token_is_unauthorized_and_not_recorded() {
    let sim = TelegramSim::start(TOKEN, CHAT)
        .await
        .expect("the sim starts");
    assert_eq!(
        send(&sim, "123456:wrong", json!({"chat_id": CHAT, "text": "hi"})).await,
        401
    );
    assert!(sim.messages().is_empty());
    assert!(sim.calls().is_empty());
}

#[tokio::test]
async fn a_replaced_token_refuses_the_old_one_and_takes_the_new() {
    let sim = TelegramSim::start(TOKEN, CHAT)
        .await
        .expect("the sim starts");
    sim.replace_token("123456:new-token");
    let body = json!({"chat_id": CHAT, "text": "hi"});
    assert_eq!(send(&sim, TOKEN, body.clone()).await, 401);
    assert_eq!(send(&sim, "123456:new-token", body).await, 200);
    assert_eq!(sim.messages().len(), 1);
}

#[tokio::test]
async fn the_links_of_a_message_are_its_hrefs_decoded() {
    let sim = TelegramSim::start(TOKEN, CHAT)
        .await
        .expect("the sim starts");
    let text = "see <a href=\"https://x.example/a?b=1&amp;c=&quot;2&quot;\">this</a> · \
                <a href=\"https://y.example/\">that</a>";
    for parse_mode in ["HTML", "MarkdownV2"] {
        let body = json!({"chat_id": CHAT, "text": text, "parse_mode": parse_mode});
        assert_eq!(send(&sim, TOKEN, body).await, 200);
    }
    let messages = sim.messages();
    assert_eq!(
        messages[0].links(),
        ["https://x.example/a?b=1&c=\"2\"", "https://y.example/"]
    );
    assert_eq!(messages[0].visible_text(), "see this · that");
    assert_eq!(
        messages[1].links(),
        Vec::<String>::new(),
        "not HTML, no tags"
    );
}

#[tokio::test]
async fn another_chat_is_not_found() {
    let sim = TelegramSim::start(TOKEN, CHAT)
        .await
        .expect("the sim starts");
    assert_eq!(
        send(&sim, TOKEN, json!({"chat_id": "42", "text": "hi"})).await,
        400
    );
    assert!(sim.messages().is_empty());
}

#[tokio::test]
async fn unescaped_html_is_refused() {
    let sim = TelegramSim::start(TOKEN, CHAT)
        .await
        .expect("the sim starts");
    let body = json!({"chat_id": CHAT, "text": "if a < b && c", "parse_mode": "HTML"});
    assert_eq!(send(&sim, TOKEN, body).await, 400);
}

#[tokio::test]
async fn scripted_faults_are_used_once_each_in_order() {
    let sim = TelegramSim::start(TOKEN, CHAT)
        .await
        .expect("the sim starts");
    sim.push_fault(TelegramFault::TooManyRequests { retry_after: 3 });
    sim.push_fault(TelegramFault::ServerError { status: 502 });
    sim.push_fault(TelegramFault::ChatNotFound);
    let body = json!({"chat_id": CHAT, "text": "hi"});
    assert_eq!(send(&sim, TOKEN, body.clone()).await, 429);
    assert_eq!(send(&sim, TOKEN, body.clone()).await, 502);
    assert_eq!(send(&sim, TOKEN, body.clone()).await, 400);
    assert_eq!(send(&sim, TOKEN, body).await, 200);
    assert_eq!(sim.messages().len(), 1);
    assert_eq!(sim.calls().len(), 4);
}

#[test]
fn html_check_accepts_tags_and_entities_and_names_the_first_problem() {
    assert_eq!(check_html("<b>bold</b> &lt;x&gt; &amp; &#169; ok"), Ok(()));
    assert!(check_html("a <script> b").is_err());
    assert!(check_html("fish & chips").is_err());
    assert_eq!(decode_entities("<b>x</b> &lt;&amp;&gt; &#169;"), "x <&> ©");
}
