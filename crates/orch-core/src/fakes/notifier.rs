//! `RecordingNotifier`: keeps every message, and can be told to be down.

use std::sync::Mutex;

use async_trait::async_trait;

use crate::ports::{Notifier, NotifyError};

/// Records delivered texts; `set_down(true)` makes every call `Unavailable`.
#[derive(Debug, Default)]
pub struct RecordingNotifier {
    state: Mutex<NotifierState>,
}

#[derive(Debug, Default)]
struct NotifierState {
    messages: Vec<String>,
    down: bool,
}

impl RecordingNotifier {
    pub fn new() -> RecordingNotifier {
        RecordingNotifier::default()
    }

    pub fn messages(&self) -> Vec<String> {
        self.state.lock().expect("notifier mutex").messages.clone()
    }

    pub fn set_down(&self, down: bool) {
        self.state.lock().expect("notifier mutex").down = down;
    }
}

#[async_trait]
impl Notifier for RecordingNotifier {
    async fn notify(&self, text: &str) -> Result<(), NotifyError> {
        let mut state = self.state.lock().expect("notifier mutex");
        if state.down {
            return Err(NotifyError::unavailable("notifier is down"));
        }
        state.messages.push(text.to_owned());
        Ok(())
    }
}
