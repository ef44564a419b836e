//! Config errors: each names its key path; a load reports all of them at once.

use std::fmt;

/// One problem of the configuration, at one key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("config: {key}: {message}")]
pub struct ConfigError {
    /// Where: `projects[1].repo`, `server.listen (ORCH_LISTEN)`, or the file for whole-file problems.
    pub key: String,
    /// What, lowercase: `expected "owner/name", got "widgets"`.
    pub message: String,
}

/// Every problem found in one load, in the order the keys were checked (never empty).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(Vec<ConfigError>);

impl ConfigErrors {
    pub(crate) fn new(errors: Vec<ConfigError>) -> ConfigErrors {
        debug_assert!(!errors.is_empty(), "a failed load has at least one error");
        ConfigErrors(errors)
    }

    pub(crate) fn single(key: impl Into<String>, message: impl Into<String>) -> ConfigErrors {
        ConfigErrors(vec![ConfigError {
            key: key.into(),
            message: message.into(),
        }])
    }

    pub fn errors(&self) -> &[ConfigError] {
        &self.0
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// One error per line.
impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (idx, error) in self.0.iter().enumerate() {
            if idx > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{error}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}
