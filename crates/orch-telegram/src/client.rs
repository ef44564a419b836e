//! One Bot API call over ureq on tokio's blocking pool; nothing here ever formats a URL.

use std::sync::Arc;
use std::time::Duration;

use orch_core::ports::UNTRUSTED_CERTIFICATE_HINT;

/// The most of an answer that is read.
const MAX_ANSWER_BYTES: u64 = 256 * 1024;

/// What came back from one call.
#[derive(Debug)]
pub(crate) enum Exchange {
    Answered {
        status: u16,
        body: Vec<u8>,
        /// The `Retry-After` header, when there was one.
        retry_after: Option<Duration>,
    },
    /// No usable answer. The text is built from fixed words only (no URL).
    Transport(String),
    /// The request could not even be built: `telegram.api_base` is not a usable URL.
    Unusable,
}

/// ureq, the token and the base URL.
pub(crate) struct Client {
    agent: ureq::Agent,
    api_base: String,
    token: Arc<str>,
}

impl Client {
    pub(crate) fn new(
        api_base: &str,
        token: &str,
        timeout: Duration,
        tls: ureq::tls::TlsConfig,
    ) -> Client {
        let config = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(timeout))
            .tls_config(tls)
            .max_redirects(0)
            .user_agent("orch")
            .build();
        Client {
            agent: ureq::Agent::new_with_config(config),
            api_base: api_base.trim_end_matches('/').to_owned(),
            token: Arc::from(token),
        }
    }

    pub(crate) fn token(&self) -> &str {
        &self.token
    }

    /// POSTs `body` as JSON to the Bot API `method`, on the blocking pool, carrying the
    /// caller's span and subscriber.
    pub(crate) async fn call(&self, method: &'static str, body: serde_json::Value) -> Exchange {
        let agent = self.agent.clone();
        let url = format!("{}/bot{}/{method}", self.api_base, self.token);
        let span = tracing::debug_span!("telegram_http", method);
        let dispatch = tracing::dispatcher::get_default(Clone::clone);
        let task = tokio::task::spawn_blocking(move || {
            tracing::dispatcher::with_default(&dispatch, || {
                span.in_scope(|| exchange(&agent, &url, &body))
            })
        });
        match task.await {
            Ok(exchange) => exchange,
            Err(_) => Exchange::Transport("the call's task ended abnormally".to_owned()),
        }
    }
}

fn exchange(agent: &ureq::Agent, url: &str, body: &serde_json::Value) -> Exchange {
    let mut response = match agent
        .post(url)
        .header("Accept", "application/json")
        .send_json(body)
    {
        Ok(response) => response,
        Err(ureq::Error::BadUri(_) | ureq::Error::Http(_)) => return Exchange::Unusable,
        Err(err) => return Exchange::Transport(describe(&err)),
    };
    let status = response.status().as_u16();
    let retry_after = response
        .headers()
        .get("retry-after")
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.trim().parse::<u64>().ok())
        .map(Duration::from_secs);
    match response
        .body_mut()
        .with_config()
        .limit(MAX_ANSWER_BYTES)
        .read_to_vec()
    {
        Ok(body) => Exchange::Answered {
            status,
            body,
            retry_after,
        },
        Err(err) => Exchange::Transport(format!("reading the answer failed: {}", describe(&err))),
    }
}

/// A ureq error in fixed words. ureq's own `Display` can carry the URL (`BadUri`), and with it
/// the token, so it is never used.
fn describe(err: &ureq::Error) -> String {
    match err {
        ureq::Error::Timeout(_) => "timed out".to_owned(),
        ureq::Error::HostNotFound => "host not found".to_owned(),
        ureq::Error::ConnectionFailed => "connection failed".to_owned(),
        other if is_untrusted_certificate(other) => UNTRUSTED_CERTIFICATE_HINT.to_owned(),
        ureq::Error::Io(io) => format!("i/o error ({})", io.kind()),
        ureq::Error::Protocol(_) => "malformed http answer".to_owned(),
        ureq::Error::TooManyRedirects | ureq::Error::RedirectFailed => "redirected".to_owned(),
        ureq::Error::BodyExceedsLimit(_) => "answer too large".to_owned(),
        _ => "request failed".to_owned(),
    }
}

/// Whether `err` is a TLS certificate the client refused (rustls reports it as an i/o error).
fn is_untrusted_certificate(err: &ureq::Error) -> bool {
    match err {
        ureq::Error::Rustls(_) | ureq::Error::Tls(_) => true,
        ureq::Error::Io(io) => io.to_string().contains("certificate"),
        _ => false,
    }
}
