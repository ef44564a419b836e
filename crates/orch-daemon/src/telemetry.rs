//! Tracing to stderr, as text or JSON: `get_subscriber` builds, `init_subscriber` installs.

use std::ffi::OsStr;
use std::io::IsTerminal;

use tracing::Subscriber;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::EnvFilter;

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

/// Whether text log lines carry ANSI colour codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Colour {
    Ansi,
    Plain,
}

impl Colour {
    /// Colour only on a terminal, never when `NO_COLOR` is set to anything but the empty
    /// string (no-color.org): under systemd stderr is the journal, which shows codes as text.
    pub fn decide(no_color: Option<&OsStr>, stderr_is_terminal: bool) -> Colour {
        let no_color = no_color.is_some_and(|value| !value.is_empty());
        if stderr_is_terminal && !no_color {
            Colour::Ansi
        } else {
            Colour::Plain
        }
    }

    /// The decision for this process's stderr and environment.
    pub fn for_stderr() -> Colour {
        Colour::decide(
            std::env::var_os("NO_COLOR").as_deref(),
            std::io::stderr().is_terminal(),
        )
    }
}

/// A subscriber writing to stderr; `RUST_LOG` overrides `default_filter`.
pub fn get_subscriber(
    default_filter: &str,
    format: LogFormat,
    colour: Colour,
) -> Box<dyn Subscriber + Send + Sync> {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
    // ureq traces request paths, and Telegram's bot token is in the path: never below warn.
    let filter = filter.add_directive("ureq=warn".parse().expect("a valid directive"));
    let registry = tracing_subscriber::registry().with(filter);
    match format {
        LogFormat::Text => Box::new(
            registry.with(
                tracing_subscriber::fmt::layer()
                    .with_ansi(colour == Colour::Ansi)
                    .with_writer(std::io::stderr),
            ),
        ),
        LogFormat::Json => Box::new(
            registry.with(
                tracing_subscriber::fmt::layer()
                    .json()
                    .with_ansi(false)
                    .with_writer(std::io::stderr),
            ),
        ),
    }
}

/// Installs `subscriber` for the whole process; a second call is ignored.
pub fn init_subscriber(subscriber: Box<dyn Subscriber + Send + Sync>) {
    let _ = tracing::subscriber::set_global_default(subscriber);
}

#[cfg(test)]
mod tests;
