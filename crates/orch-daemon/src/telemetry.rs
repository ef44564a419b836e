//! Tracing to stderr, as text or JSON: `get_subscriber` builds, `init_subscriber` installs.

use tracing::Subscriber;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::EnvFilter;

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

/// A subscriber writing to stderr; `RUST_LOG` overrides `default_filter`.
pub fn get_subscriber(
    default_filter: &str,
    format: LogFormat,
) -> Box<dyn Subscriber + Send + Sync> {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
    // ureq traces request paths, and Telegram's bot token is in the path: never below warn.
    let filter = filter.add_directive("ureq=warn".parse().expect("a valid directive"));
    let registry = tracing_subscriber::registry().with(filter);
    match format {
        LogFormat::Text => {
            Box::new(registry.with(tracing_subscriber::fmt::layer().with_writer(std::io::stderr)))
        }
        LogFormat::Json => Box::new(
            registry.with(
                tracing_subscriber::fmt::layer()
                    .json()
                    .with_writer(std::io::stderr),
            ),
        ),
    }
}

/// Installs `subscriber` for the whole process; a second call is ignored.
pub fn init_subscriber(subscriber: Box<dyn Subscriber + Send + Sync>) {
    let _ = tracing::subscriber::set_global_default(subscriber);
}
