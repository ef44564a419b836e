//! `RecordingNotifier`: keeps every message, and can be told to be down.

use std::sync::Mutex;

use async_trait::async_trait;

use crate::ports::{Notifier, NotifyError, Subject};

/// Records delivered texts; `set_down(true)` makes every call `Unavailable`.
#[derive(Debug, Default)]
pub struct RecordingNotifier {
    state: Mutex<NotifierState>,
}

#[derive(Debug, Default)]
struct NotifierState {
    messages: Vec<String>,
    /// The subject of each message sent with `notify_about`, by message index.
    subjects: Vec<Option<Subject>>,
    down: bool,
}

impl RecordingNotifier {
    pub fn new() -> RecordingNotifier {
        RecordingNotifier::default()
    }

    pub fn messages(&self) -> Vec<String> {
        self.state.lock().expect("notifier mutex").messages.clone()
    }

    /// What each message was about (`None` for a plain `notify`), in message order.
    pub fn subjects(&self) -> Vec<Option<Subject>> {
        self.state.lock().expect("notifier mutex").subjects.clone()
    }

    pub fn set_down(&self, down: bool) {
        self.state.lock().expect("notifier mutex").down = down;
    }
}

impl RecordingNotifier {
    fn record(&self, text: &str, subject: Option<Subject>) -> Result<(), NotifyError> {
        let mut state = self.state.lock().expect("notifier mutex");
        if state.down {
            return Err(NotifyError::unavailable("notifier is down"));
        }
        state.messages.push(text.to_owned());
        state.subjects.push(subject);
        Ok(())
    }
}

#[async_trait]
impl Notifier for RecordingNotifier {
    async fn notify(&self, text: &str) -> Result<(), NotifyError> {
        self.record(text, None)
    }

    async fn notify_about(&self, text: &str, subject: &Subject) -> Result<(), NotifyError> {
        self.record(text, Some(subject.clone()))
    }
}
