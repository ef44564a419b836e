//! The `Notifier` contract suite, run against `RecordingNotifier` and `TelegramNotifier` on
//! `TelegramSim`.

use std::future::Future;
use std::time::Duration;

use async_trait::async_trait;

use crate::fakes::contract::{case, run_suite, Case};
use crate::ids::{IssueId, PrNumber, ProjectId, RepoSlug, WorkItemId};
use crate::links::WebLinks;
use crate::ports::{ErrorClass, Notifier, NotifyError, Subject, CUT_MARK};

/// A message as a person in the chat reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivered {
    /// The text, entities decoded, without the links line.
    pub text: String,
    /// The link targets under it, in order.
    pub links: Vec<String>,
}

/// A notifier for one chat, made with a good credential and `links()`, and what its service
/// does.
#[async_trait]
pub trait NotifierFixture: Send + Sync {
    fn notifier(&self) -> &dyn Notifier;

    /// Every message that arrived in the configured chat, oldest first.
    async fn delivered(&self) -> Vec<Delivered>;

    /// The medium's limit on a message, links line included, in the units it counts.
    fn max_message_len(&self) -> usize;

    /// The length of each delivered message, as the medium counts it against that limit.
    async fn delivered_lengths(&self) -> Vec<usize>;

    /// The service rate-limits the next call, asking to wait `retry_after`.
    async fn service_rate_limits_the_next_call(&self, retry_after: Duration);

    /// The service fails the next call (a 5xx).
    async fn service_fails_the_next_call(&self);

    /// The service no longer knows the configured chat for the next call.
    async fn chat_is_unknown_for_the_next_call(&self);

    /// The notifier's credential is revoked: every later call carries a refused one.
    async fn credential_is_revoked(&self);
}

/// The links every fixture's notifier is made with.
pub fn links() -> WebLinks {
    WebLinks {
        plane_base: "https://plane.example.com/".to_owned(),
        plane_workspace: "acme".to_owned(),
        gitea_base: "https://gitea.example.com".to_owned(),
    }
}

/// Runs the `Notifier` contract on a fresh fixture per case from `make` (given the case's name).
pub async fn notifier<F, Fut>(make: impl FnMut(&'static str) -> Fut)
where
    F: NotifierFixture + 'static,
    Fut: Future<Output = F>,
{
    let cases: Vec<&Case<dyn NotifierFixture>> = CASES.iter().collect();
    run_suite("Notifier", &cases, make, as_fixture::<F>).await;
}

fn as_fixture<F: NotifierFixture + 'static>(fixture: &F) -> &(dyn NotifierFixture + 'static) {
    fixture
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

const WORK_ITEM_URL: &str = "https://plane.example.com/acme/projects/4f9a2c71/issues/a1e2f3a4/";
const PR_URL: &str = "https://gitea.example.com/acme/app/pulls/12";

fn plain(text: &str) -> Delivered {
    Delivered {
        text: text.to_owned(),
        links: Vec::new(),
    }
}

/// What the service does to the next call (a revoked credential stays revoked).
#[derive(Debug, Clone, Copy)]
enum Fault {
    RateLimit(Duration),
    ServerFailure,
    UnknownChat,
    RevokedCredential,
}

async fn happen(fixture: &dyn NotifierFixture, fault: Fault) {
    match fault {
        Fault::RateLimit(delay) => fixture.service_rate_limits_the_next_call(delay).await,
        Fault::ServerFailure => fixture.service_fails_the_next_call().await,
        Fault::UnknownChat => fixture.chat_is_unknown_for_the_next_call().await,
        Fault::RevokedCredential => fixture.credential_is_revoked().await,
    }
}

/// Both ways of sending fail with `class` after `fault`, and deliver nothing.
async fn both_fail(fixture: &dyn NotifierFixture, class: ErrorClass, fault: Fault) {
    happen(fixture, fault).await;
    let plain = fixture.notifier().notify("ET-001 needs you").await;
    happen(fixture, fault).await;
    let about = fixture
        .notifier()
        .notify_about("ET-001 needs you", &subject(Some(12)))
        .await;
    for result in [plain, about] {
        let err: NotifyError = result.expect_err("the call fails");
        assert_eq!(err.class(), class, "{err}");
    }
    assert_eq!(fixture.delivered().await, [], "nothing arrives");
}

/// The one message delivered is `sent` cut to fit the medium's limit: a prefix of it ending
/// with `CUT_MARK`, as long as fits (a character two units long may leave one unused).
async fn assert_cut_to_fit(fixture: &dyn NotifierFixture, sent: &str) -> Delivered {
    let delivered = fixture.delivered().await;
    assert_eq!(delivered.len(), 1, "one message arrives");
    assert_cut(&delivered[0].text, sent);
    let max = fixture.max_message_len();
    let lengths = fixture.delivered_lengths().await;
    assert!(
        lengths
            .iter()
            .all(|length| (max - 1..=max).contains(length)),
        "{lengths:?} fill but do not pass the limit of {max}"
    );
    delivered[0].clone()
}

/// `delivered` is `sent` cut: a shorter prefix of it ending with `CUT_MARK`.
fn assert_cut(delivered: &str, sent: &str) {
    let kept = delivered
        .strip_suffix(CUT_MARK)
        .unwrap_or_else(|| panic!("a cut text ends with {CUT_MARK}: …{delivered:.40}"));
    assert!(sent.starts_with(kept), "the start of the text is kept");
    assert!(
        kept.len() + 1000 < sent.len(),
        "cut: {} of {} bytes kept",
        kept.len(),
        sent.len()
    );
}

/// Longer than any medium's limit, with characters to escape and ones two UTF-16 units long.
fn over_long_text() -> String {
    "ET-001 <needs> you & 🦀 ".repeat(600)
}

pub(super) const CASES: &[Case<dyn NotifierFixture>] = &[
    case!(a_message_arrives_in_the_chat_with_its_text, |fixture| {
        fixture
            .notifier()
            .notify("ET-001 needs a verdict: Add a map")
            .await
            .expect("delivered");
        assert_eq!(
            fixture.delivered().await,
            [plain("ET-001 needs a verdict: Add a map")]
        );
    }),
    case!(messages_arrive_in_the_order_they_were_sent, |fixture| {
        for text in ["first", "second", "third"] {
            fixture.notifier().notify(text).await.expect("delivered");
        }
        assert_eq!(
            fixture.delivered().await,
            [plain("first"), plain("second"), plain("third")]
        );
    }),
    case!(
        html_special_characters_and_entities_arrive_as_written,
        |fixture| {
            let text = "ET-001 <b>Add map</b>: R&D says 2 > 1 & \"3\" < 4, not &amp; or &#60;";
            fixture.notifier().notify(text).await.expect("delivered");
            fixture
                .notifier()
                .notify_about(text, &subject(Some(12)))
                .await
                .expect("delivered");
            let delivered = fixture.delivered().await;
            let texts: Vec<&str> = delivered.iter().map(|d| d.text.as_str()).collect();
            assert_eq!(texts, [text, text]);
        }
    ),
    case!(
        a_message_about_a_task_links_its_work_item_and_pull_request,
        |fixture| {
            fixture
                .notifier()
                .notify_about("ET-001: the review is ready", &subject(Some(12)))
                .await
                .expect("delivered");
            fixture
                .notifier()
                .notify_about("ET-001: the analysis is ready", &subject(None))
                .await
                .expect("delivered");
            assert_eq!(
                fixture.delivered().await,
                [
                    Delivered {
                        text: "ET-001: the review is ready".to_owned(),
                        links: vec![WORK_ITEM_URL.to_owned(), PR_URL.to_owned()],
                    },
                    Delivered {
                        text: "ET-001: the analysis is ready".to_owned(),
                        links: vec![WORK_ITEM_URL.to_owned()],
                    },
                ]
            );
        }
    ),
    case!(an_over_long_text_is_cut_and_delivered, |fixture| {
        let text = over_long_text();
        fixture.notifier().notify(&text).await.expect("delivered");
        let delivered = assert_cut_to_fit(fixture, &text).await;
        assert_eq!(delivered.links, Vec::<String>::new());
    }),
    case!(
        an_over_long_text_about_a_task_is_cut_so_its_links_still_fit,
        |fixture| {
            let text = over_long_text();
            fixture
                .notifier()
                .notify_about(&text, &subject(Some(12)))
                .await
                .expect("delivered");
            let delivered = assert_cut_to_fit(fixture, &text).await;
            assert_eq!(delivered.links, [WORK_ITEM_URL, PR_URL]);
        }
    ),
    case!(
        a_rate_limit_is_unavailable_with_the_services_delay,
        |fixture| {
            let delay = Duration::from_secs(17);
            both_fail(
                fixture,
                ErrorClass::Unavailable {
                    retry_after: Some(delay),
                },
                Fault::RateLimit(delay),
            )
            .await;
            fixture
                .notifier()
                .notify("ET-001 needs you")
                .await
                .expect("delivered once the limit passed");
            assert_eq!(fixture.delivered().await, [plain("ET-001 needs you")]);
        }
    ),
    case!(
        a_failing_service_is_unavailable_and_a_retry_delivers,
        |fixture| {
            both_fail(
                fixture,
                ErrorClass::Unavailable { retry_after: None },
                Fault::ServerFailure,
            )
            .await;
            fixture
                .notifier()
                .notify("ET-001 needs you")
                .await
                .expect("delivered once the service is back");
            assert_eq!(fixture.delivered().await, [plain("ET-001 needs you")]);
        }
    ),
    case!(an_unknown_chat_is_invalid, |fixture| {
        both_fail(fixture, ErrorClass::Invalid, Fault::UnknownChat).await;
    }),
    case!(a_revoked_credential_is_unauthorized, |fixture| {
        both_fail(fixture, ErrorClass::Unauthorized, Fault::RevokedCredential).await;
    }),
];
