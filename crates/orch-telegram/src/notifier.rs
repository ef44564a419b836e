//! `TelegramNotifier`: `sendMessage`, `getMe` and `getChat`, and the mapping of answers to `NotifyError`.

use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use orch_core::links::WebLinks;
use orch_core::ports::{fit_text, Notifier, NotifyError, Subject};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::client::{Client, Exchange};
use crate::config::TelegramSettings;
use crate::html::{escape_href, escape_html, fit_message, MAX_MESSAGE_LEN};

/// What fixes a refused token.
const FIX_TOKEN: &str = "fix telegram.bot_token (ORCH_TELEGRAM_BOT_TOKEN)";
/// What fixes a refused chat.
const FIX_CHAT: &str = "fix telegram.chat_id (ORCH_TELEGRAM_CHAT_ID)";
/// Between two links under a message.
const LINK_SEPARATOR: &str = " · ";
/// The longest part of Telegram's `description` quoted in an error.
const MAX_DESCRIPTION_CHARS: usize = 200;

/// Sends notifications to one Telegram chat.
pub struct TelegramNotifier {
    client: Client,
    chat_id: Value,
    links: Option<WebLinks>,
}

/// The links line under a message about `subject`, as Telegram HTML: the work item in Plane,
/// and the pull request in Gitea when there is one.
pub fn links_html(links: &WebLinks, subject: &Subject) -> String {
    labelled_links(links, subject)
        .iter()
        .map(|(label, url)| {
            format!(
                "<a href=\"{}\">{}</a>",
                escape_href(url),
                escape_html(label)
            )
        })
        .collect::<Vec<_>>()
        .join(LINK_SEPARATOR)
}

/// How long the links line is once Telegram has parsed it, in UTF-16 units.
fn links_visible_len(links: &WebLinks, subject: &Subject) -> usize {
    let labels: Vec<String> = labelled_links(links, subject)
        .into_iter()
        .map(|(label, _)| label)
        .collect();
    labels.join(LINK_SEPARATOR).encode_utf16().count()
}

/// (label, URL) of each link.
fn labelled_links(links: &WebLinks, subject: &Subject) -> Vec<(String, String)> {
    let mut labelled = vec![(
        format!("{} in Plane", subject.work_item),
        links.work_item(&subject.project, &subject.issue),
    )];
    if let Some(pr) = subject.pr {
        labelled.push((
            format!("PR #{} in Gitea", pr.get()),
            links.pull_request(&subject.repo, pr),
        ));
    }
    labelled
}

/// The bot, as `getMe` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BotInfo {
    pub id: i64,
    pub first_name: String,
    pub username: Option<String>,
}

/// The configured chat, as `getChat` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatInfo {
    pub id: i64,
    /// `private`, `group`, `supergroup` or `channel`.
    pub kind: String,
    /// The group's or channel's title, or the person's first name.
    pub title: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Chat {
    id: i64,
    #[serde(rename = "type")]
    kind: String,
    title: Option<String>,
    first_name: Option<String>,
}

/// Telegram's answer envelope.
#[derive(Debug, Default, Deserialize)]
struct Envelope {
    #[serde(default)]
    ok: bool,
    #[serde(default)]
    result: Value,
    description: Option<String>,
    parameters: Option<Parameters>,
}

#[derive(Debug, Deserialize)]
struct Parameters {
    retry_after: Option<u64>,
}

#[derive(Debug, Deserialize)]
struct User {
    id: i64,
    first_name: String,
    username: Option<String>,
}

impl fmt::Debug for TelegramNotifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The client holds the token; only the chat is shown.
        f.debug_struct("TelegramNotifier")
            .field("chat_id", &self.chat_id)
            .finish_non_exhaustive()
    }
}

impl TelegramNotifier {
    pub fn new(config: &TelegramSettings) -> TelegramNotifier {
        // A numeric id goes as a number, `@channel` as a string, as the Bot API documents.
        let chat_id = match config.chat_id.trim().parse::<i64>() {
            Ok(numeric) => Value::from(numeric),
            Err(_) => Value::from(config.chat_id.trim()),
        };
        TelegramNotifier {
            client: Client::new(
                &config.api_base,
                config.bot_token.expose(),
                config.request_timeout,
                config.tls.clone(),
            ),
            chat_id,
            links: None,
        }
    }

    /// Messages about a task end with links to its work item and pull request.
    pub fn with_links(mut self, links: WebLinks) -> TelegramNotifier {
        self.links = Some(links);
        self
    }

    async fn send(&self, html: String) -> Result<(), NotifyError> {
        let body = json!({
            "chat_id": self.chat_id,
            "text": html,
            "parse_mode": "HTML",
            "link_preview_options": {"is_disabled": true},
        });
        self.call("sendMessage", body).await.map(|_| ())
    }

    /// Checks the token (`orch check --online`) and returns the bot it belongs to.
    #[tracing::instrument(skip_all)]
    pub async fn get_me(&self) -> Result<BotInfo, NotifyError> {
        let result = self.call("getMe", json!({})).await?;
        let user: User = serde_json::from_value(result).map_err(|err| {
            NotifyError::other(format!(
                "telegram getMe answered an unexpected shape: {err}"
            ))
        })?;
        Ok(BotInfo {
            id: user.id,
            first_name: user.first_name,
            username: user.username,
        })
    }

    /// Checks the chat (`orch check --online`): the bot can see `telegram.chat_id`. A chat the
    /// bot was never added to is `Invalid`, naming `telegram.chat_id`.
    #[tracing::instrument(skip_all)]
    pub async fn get_chat(&self) -> Result<ChatInfo, NotifyError> {
        let result = self
            .call("getChat", json!({"chat_id": self.chat_id}))
            .await?;
        let chat: Chat = serde_json::from_value(result).map_err(|err| {
            NotifyError::other(format!(
                "telegram getChat answered an unexpected shape: {err}"
            ))
        })?;
        Ok(ChatInfo {
            id: chat.id,
            kind: chat.kind,
            title: chat.title.or(chat.first_name),
        })
    }

    async fn call(&self, method: &'static str, body: Value) -> Result<Value, NotifyError> {
        let exchange = self.client.call(method, body).await;
        let result = classify(method, exchange);
        match &result {
            Ok(_) => tracing::debug!(method, "telegram call succeeded"),
            Err(err) => tracing::debug!(method, error = %err, "telegram call failed"),
        }
        result.map_err(|err| scrub_error(err, self.client.token()))
    }
}

#[async_trait]
impl Notifier for TelegramNotifier {
    #[tracing::instrument(skip_all)]
    async fn notify(&self, text: &str) -> Result<(), NotifyError> {
        self.send(escape_html(&fit_message(text))).await
    }

    #[tracing::instrument(skip_all)]
    async fn notify_about(&self, text: &str, subject: &Subject) -> Result<(), NotifyError> {
        let Some(links) = &self.links else {
            return self.notify(text).await;
        };
        // Telegram counts the text after entities are parsed: the links' labels, not URLs.
        let room = MAX_MESSAGE_LEN.saturating_sub(links_visible_len(links, subject) + 2);
        let text = fit_text(text, room);
        self.send(format!(
            "{}\n\n{}",
            escape_html(&text),
            links_html(links, subject)
        ))
        .await
    }
}

/// Maps one exchange to the result or the port's error classes.
fn classify(method: &str, exchange: Exchange) -> Result<Value, NotifyError> {
    let (status, body, header_retry_after) = match exchange {
        Exchange::Answered {
            status,
            body,
            retry_after,
        } => (status, body, retry_after),
        Exchange::Transport(reason) => {
            return Err(NotifyError::unavailable(format!(
                "telegram {method} failed: {reason}"
            )))
        }
        Exchange::Unusable => {
            return Err(NotifyError::Invalid(
                "telegram.api_base is not a usable url; fix telegram.api_base".to_owned(),
            ))
        }
    };
    let envelope: Envelope = serde_json::from_slice(&body).unwrap_or_default();
    let description = envelope
        .description
        .as_deref()
        .map(|text| text.chars().take(MAX_DESCRIPTION_CHARS).collect::<String>())
        .unwrap_or_else(|| "no description".to_owned());
    match status {
        200..=299 if envelope.ok => Ok(envelope.result),
        200..=299 => Err(NotifyError::other(format!("telegram {method} answered HTTP {status} without ok"))),
        429 => Err(NotifyError::Unavailable {
            message: format!("telegram {method} rate limited (HTTP 429)"),
            retry_after: envelope
                .parameters
                .and_then(|parameters| parameters.retry_after)
                .map(Duration::from_secs)
                .or(header_retry_after),
        }),
        500..=599 => Err(NotifyError::Unavailable {
            message: format!("telegram {method} answered HTTP {status}: {description}"),
            retry_after: header_retry_after,
        }),
        401 | 404 => Err(NotifyError::Unauthorized(format!(
            "telegram refused the bot token (HTTP {status}: {description}); {FIX_TOKEN} or telegram.api_base"
        ))),
        400 if description.contains("chat not found") => {
            Err(NotifyError::Invalid(format!("telegram: chat not found; {FIX_CHAT}")))
        }
        400..=499 => Err(NotifyError::Invalid(format!(
            "telegram {method} refused (HTTP {status}: {description}); {FIX_CHAT}"
        ))),
        _ => Err(NotifyError::Invalid(format!(
            "telegram {method} answered HTTP {status}; check telegram.api_base"
        ))),
    }
}

/// Removes the token from every text an error carries (Telegram echoes nothing of the URL
/// today; this keeps it so if that changes).
fn scrub_error(err: NotifyError, token: &str) -> NotifyError {
    let scrub = |text: String| {
        if token.is_empty() {
            text
        } else {
            text.replace(token, "<redacted>")
        }
    };
    match err {
        NotifyError::NotFound(text) => NotifyError::NotFound(scrub(text)),
        NotifyError::Conflict(text) => NotifyError::Conflict(scrub(text)),
        NotifyError::Unavailable {
            message,
            retry_after,
        } => NotifyError::Unavailable {
            message: scrub(message),
            retry_after,
        },
        NotifyError::Unauthorized(text) => NotifyError::Unauthorized(scrub(text)),
        NotifyError::Invalid(text) => NotifyError::Invalid(scrub(text)),
        NotifyError::Other(source) => NotifyError::other(scrub(source.to_string())),
    }
}

#[cfg(test)]
mod tests;
