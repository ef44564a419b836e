//! `Secret`: a token, a webhook secret or an agent's environment value that no `Debug` shows.

use std::fmt;

/// A secret string: a token, a webhook secret, an agent's environment value.
///
/// Its `Debug` never shows it, so a struct holding one can derive `Debug`; the text leaves
/// only through `expose`, at the one place that sends it.
/// It lives in the core, which does no I/O, so that the daemon's configuration, the server and
/// the adapters share one type and no one redacts a `Debug` by hand.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    /// The secret itself, for the one place that sends it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// `Secret(<redacted>)`, or `Secret(<empty>)` so a missing value still shows in a dump.
impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            f.write_str("Secret(<empty>)")
        } else {
            f.write_str("Secret(<redacted>)")
        }
    }
}

#[cfg(test)]
mod tests;
