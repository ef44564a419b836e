//! `RecordingNotifier`: keeps every message, and fails as Telegram does when told to.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;

use crate::links::WebLinks;
use crate::ports::{fit_text, Notifier, NotifyError, Subject};

/// The longest text delivered, in UTF-16 units with the links line: Telegram's limit, so that
/// the core meets the one real medium's cut in its tests.
pub const MAX_MESSAGE_LEN: usize = 4096;

/// What the fake's service does instead of delivering, each as Telegram answers it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotifierFault {
    /// A rate limit (429): `Unavailable` with the service's delay.
    RateLimited { retry_after: Duration },
    /// Down (5xx, timeout): `Unavailable` without a delay.
    Down,
    /// The credential was revoked (401): `Unauthorized`.
    CredentialRefused,
    /// The chat is unknown to the bot (400 chat not found): `Invalid`.
    UnknownChat,
}

impl NotifierFault {
    fn error(self) -> NotifyError {
        match self {
            NotifierFault::RateLimited { retry_after } => NotifyError::Unavailable {
                message: "rate limited".to_owned(),
                retry_after: Some(retry_after),
            },
            NotifierFault::Down => NotifyError::unavailable("notifier is down"),
            NotifierFault::CredentialRefused => {
                NotifyError::Unauthorized("the credential was refused".to_owned())
            }
            NotifierFault::UnknownChat => NotifyError::Invalid("chat not found".to_owned()),
        }
    }
}

/// Records delivered texts; `set_down(true)` makes every call `Unavailable`, `fail_next` one.
#[derive(Debug, Default)]
pub struct RecordingNotifier {
    links: Option<WebLinks>,
    state: Mutex<NotifierState>,
}

#[derive(Debug, Default)]
struct NotifierState {
    messages: Vec<String>,
    /// The subject of each message sent with `notify_about`, by message index.
    subjects: Vec<Option<Subject>>,
    /// The links under each message, by message index.
    links: Vec<Vec<String>>,
    /// Fails every call from now on.
    fault: Option<NotifierFault>,
    /// Fail the next calls, one each, before `fault` is looked at.
    next_faults: VecDeque<NotifierFault>,
}

impl RecordingNotifier {
    pub fn new() -> RecordingNotifier {
        RecordingNotifier::default()
    }

    /// Messages about a task link to its work item and pull request, as `TelegramNotifier`'s.
    pub fn with_links(mut self, links: WebLinks) -> RecordingNotifier {
        self.links = Some(links);
        self
    }

    pub fn messages(&self) -> Vec<String> {
        self.state.lock().expect("notifier mutex").messages.clone()
    }

    /// What each message was about (`None` for a plain `notify`), in message order.
    pub fn subjects(&self) -> Vec<Option<Subject>> {
        self.state.lock().expect("notifier mutex").subjects.clone()
    }

    /// The link targets under each message, in message order.
    pub fn links(&self) -> Vec<Vec<String>> {
        self.state.lock().expect("notifier mutex").links.clone()
    }

    /// How long each message is with its links line, in UTF-16 units (at most `MAX_MESSAGE_LEN`).
    pub fn message_lengths(&self) -> Vec<usize> {
        let state = self.state.lock().expect("notifier mutex");
        state
            .messages
            .iter()
            .zip(&state.links)
            .map(|(text, links)| text.encode_utf16().count() + links_len(links))
            .collect()
    }

    pub fn set_down(&self, down: bool) {
        self.fail_from_now(down.then_some(NotifierFault::Down));
    }

    /// Every call fails with `fault` until this is called with `None`.
    pub fn fail_from_now(&self, fault: Option<NotifierFault>) {
        self.state.lock().expect("notifier mutex").fault = fault;
    }

    /// The next call fails with `fault` (after those queued before it).
    pub fn fail_next(&self, fault: NotifierFault) {
        self.state
            .lock()
            .expect("notifier mutex")
            .next_faults
            .push_back(fault);
    }

    fn record(&self, text: &str, subject: Option<&Subject>) -> Result<(), NotifyError> {
        let mut state = self.state.lock().expect("notifier mutex");
        if let Some(fault) = state.next_faults.pop_front().or(state.fault) {
            return Err(fault.error());
        }
        let links = match (&self.links, subject) {
            (Some(links), Some(subject)) => {
                let mut targets = vec![links.work_item(&subject.project, &subject.issue)];
                targets.extend(subject.pr.map(|pr| links.pull_request(&subject.repo, pr)));
                targets
            }
            _ => Vec::new(),
        };
        let text = fit_text(text, MAX_MESSAGE_LEN.saturating_sub(links_len(&links)));
        state.messages.push(text.into_owned());
        state.subjects.push(subject.cloned());
        state.links.push(links);
        Ok(())
    }
}

/// The links go on a line of their own after an empty one, as in Telegram.
fn links_len(links: &[String]) -> usize {
    match links.join(" · ").encode_utf16().count() {
        0 => 0,
        line => line + "\n\n".len(),
    }
}

#[async_trait]
impl Notifier for RecordingNotifier {
    async fn notify(&self, text: &str) -> Result<(), NotifyError> {
        self.record(text, None)
    }

    async fn notify_about(&self, text: &str, subject: &Subject) -> Result<(), NotifyError> {
        self.record(text, Some(subject))
    }
}
