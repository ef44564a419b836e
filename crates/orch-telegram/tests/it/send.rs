//! Delivering messages and asking who the bot is.

use orch_core::ids::{IssueId, PrNumber, ProjectId, RepoSlug, WorkItemId};
use orch_core::links::WebLinks;
use orch_core::ports::{Notifier, Subject};
use orch_sim::telegram::BOT_USERNAME;
use orch_telegram::{links_html, TelegramNotifier, MAX_MESSAGE_LEN};

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

fn subject(pr: Option<u64>) -> Subject {
    Subject {
        project: ProjectId::new("4f9a2c71").expect("valid project"),
        issue: IssueId::new("a1e2f3a4").expect("valid issue"),
        work_item: WorkItemId::new("ET", 1).expect("valid work item"),
        repo: RepoSlug::new("acme/app").expect("valid repo"),
        pr: pr.map(|number| PrNumber::new(number).expect("valid pr")),
    }
}

fn links() -> WebLinks {
    WebLinks {
        plane_base: "https://plane.example.com/".to_owned(),
        plane_workspace: "acme".to_owned(),
        gitea_base: "https://gitea.example.com".to_owned(),
    }
}

#[tokio::test]
async fn a_message_about_a_task_links_to_the_work_item_and_the_pull_request() {
    let sim = start_sim().await;
    let notifier = notifier_for(&sim).with_links(links());
    notifier
        .notify_about("ET-001: the review is ready <b>now</b>", &subject(Some(12)))
        .await
        .expect("delivered");
    notifier
        .notify_about("ET-001: the analysis is ready", &subject(None))
        .await
        .expect("delivered");
    let texts: Vec<String> = sim
        .messages()
        .into_iter()
        .map(|message| message.text)
        .collect();
    assert_eq!(
        texts,
        [
            "ET-001: the review is ready &lt;b&gt;now&lt;/b&gt;\n\n\
             <a href=\"https://plane.example.com/acme/projects/4f9a2c71/issues/a1e2f3a4/\">ET-001 in Plane</a> · \
             <a href=\"https://gitea.example.com/acme/app/pulls/12\">PR #12 in Gitea</a>",
            "ET-001: the analysis is ready\n\n\
             <a href=\"https://plane.example.com/acme/projects/4f9a2c71/issues/a1e2f3a4/\">ET-001 in Plane</a>",
        ]
    );
}

#[tokio::test]
async fn without_links_a_message_about_a_task_is_its_text() {
    let sim = start_sim().await;
    notifier_for(&sim)
        .notify_about("ET-001 & co", &subject(Some(3)))
        .await
        .expect("delivered");
    assert_eq!(sim.messages()[0].text, "ET-001 &amp; co");
}

#[test]
fn link_urls_are_escaped_for_the_href_attribute() {
    let hostile = WebLinks {
        plane_base: "https://plane.example.com/a\"onclick=\"x&<".to_owned(),
        ..links()
    };
    let html = links_html(&hostile, &subject(None));
    assert!(
        html.starts_with(
            "<a href=\"https://plane.example.com/a&quot;onclick=&quot;x&amp;&lt;/acme/"
        ),
        "{html}"
    );
}

#[tokio::test]
async fn an_over_long_text_about_a_task_is_cut_so_that_the_links_still_fit() {
    let sim = start_sim().await;
    let text = "x".repeat(MAX_MESSAGE_LEN);
    notifier_for(&sim)
        .with_links(links())
        .notify_about(&text, &subject(Some(12)))
        .await
        .expect("delivered");
    let message = &sim.messages()[0];
    assert!(
        message.text.ends_with("PR #12 in Gitea</a>"),
        "{}",
        message.text
    );
    let labels = "\n\nET-001 in Plane · PR #12 in Gitea";
    let kept = message.text.split("\n\n").next().expect("text part");
    assert!(kept.ends_with('…'));
    assert_eq!(
        kept.encode_utf16().count() + labels.encode_utf16().count(),
        MAX_MESSAGE_LEN
    );
}
