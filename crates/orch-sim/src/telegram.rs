//! `TelegramSim`: the Bot API methods orch uses (`getMe`, `getChat`, `sendMessage`), with fault injection.
//!
//! Requests go to `POST {api_base}/bot{token}/{method}` with a JSON body. A wrong token is
//! answered `401 Unauthorized`, an unknown method `404 Not Found`, a message to another chat
//! `400 Bad Request: chat not found`, and text that is not valid for `parse_mode = "HTML"`
//! (a bare `<` or `&`) `400 Bad Request: can't parse entities`, as the real service does.
//! Scripted faults (`TelegramFault`) are consumed one per request, in order.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};

use crate::server::{json, Handler, Reply, Request, Response, SimServer};

/// Telegram's limit on a message's text, in UTF-16 code units after entity parsing.
pub const MAX_TEXT_LEN: usize = 4096;

/// The username `getMe` reports.
pub const BOT_USERNAME: &str = "orch_sim_bot";

/// A message the simulator accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SentMessage {
    /// As sent: a number or an `@channel` name, rendered as text.
    pub chat_id: String,
    /// As sent, with its HTML entities.
    pub text: String,
    pub parse_mode: Option<String>,
    /// `link_preview_options.is_disabled` (or the older `disable_web_page_preview`).
    pub link_preview_disabled: bool,
}

impl SentMessage {
    /// The text a person would read: entities decoded (only for `parse_mode = "HTML"`).
    pub fn visible_text(&self) -> String {
        if self.parse_mode.as_deref() == Some("HTML") {
            decode_entities(&self.text)
        } else {
            self.text.clone()
        }
    }

    /// The `href` of each `<a>` tag, entities decoded, in order (only for `parse_mode = "HTML"`).
    pub fn links(&self) -> Vec<String> {
        if self.parse_mode.as_deref() != Some("HTML") {
            return Vec::new();
        }
        self.text
            .split("<a href=\"")
            .skip(1)
            .filter_map(|rest| rest.split_once('"'))
            .map(|(href, _)| decode_entities(href))
            .collect()
    }
}

/// A scripted misbehaviour, used for the next request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TelegramFault {
    /// `429` with `parameters.retry_after` (and a `Retry-After` header).
    TooManyRequests { retry_after: u64 },
    /// A 5xx with Telegram's error body.
    ServerError { status: u16 },
    /// `400 Bad Request: chat not found`, whatever the chat.
    ChatNotFound,
    /// Wait this long, then answer normally.
    Delay(Duration),
    /// Close the connection without answering.
    Drop,
}

/// A running Telegram Bot API simulator on `127.0.0.1`.
pub struct TelegramSim {
    server: SimServer,
    state: Arc<Mutex<State>>,
}

struct State {
    token: String,
    chat_id: String,
    messages: Vec<SentMessage>,
    calls: Vec<String>,
    faults: VecDeque<TelegramFault>,
}

impl TelegramSim {
    /// Starts a bot with `token` that may post only to `chat_id`.
    pub async fn start(token: &str, chat_id: &str) -> std::io::Result<TelegramSim> {
        let state = Arc::new(Mutex::new(State {
            token: token.to_owned(),
            chat_id: chat_id.to_owned(),
            messages: Vec::new(),
            calls: Vec::new(),
            faults: VecDeque::new(),
        }));
        let server = SimServer::start(handler(state.clone())).await?;
        Ok(TelegramSim { server, state })
    }

    /// The value for `telegram.api_base`, e.g. `http://127.0.0.1:PORT`.
    pub fn api_base(&self) -> String {
        self.server.base_url()
    }

    /// Every accepted message, oldest first.
    pub fn messages(&self) -> Vec<SentMessage> {
        self.lock().messages.clone()
    }

    /// The method names of every request with the right token, faults included.
    pub fn calls(&self) -> Vec<String> {
        self.lock().calls.clone()
    }

    /// How many `getMe` requests arrived with the right token.
    pub fn get_me_calls(&self) -> usize {
        self.lock()
            .calls
            .iter()
            .filter(|method| *method == "getMe")
            .count()
    }

    /// The bot's token is revoked and `token` issued (BotFather's `/revoke`): requests with
    /// the old one are answered `401 Unauthorized` from now on.
    pub fn replace_token(&self, token: &str) {
        self.lock().token = token.to_owned();
    }

    /// Queues `fault` for the next request.
    pub fn push_fault(&self, fault: TelegramFault) {
        self.lock().faults.push_back(fault);
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

fn handler(state: Arc<Mutex<State>>) -> Handler {
    Arc::new(move |request: Request| {
        let state = state.clone();
        Box::pin(async move {
            let fault = {
                let mut state = state
                    .lock()
                    .unwrap_or_else(|poisoned| poisoned.into_inner());
                match route(&state, &request) {
                    Route::Method(method) => {
                        state.calls.push(method);
                        state.faults.pop_front()
                    }
                    Route::Refused(response) => return Reply::Respond(response),
                }
            };
            match fault {
                Some(TelegramFault::Delay(delay)) => tokio::time::sleep(delay).await,
                Some(TelegramFault::Drop) => return Reply::Drop,
                Some(fault) => return Reply::Respond(fault_response(&fault)),
                None => {}
            }
            let mut state = state
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            Reply::Respond(answer(&mut state, &request))
        })
    })
}

enum Route {
    Method(String),
    Refused(Response),
}

/// Checks the method, path and token; returns the Bot API method name.
fn route(state: &State, request: &Request) -> Route {
    let path = request.uri().path();
    let Some((token, method)) = path
        .strip_prefix("/bot")
        .and_then(|rest| rest.split_once('/'))
    else {
        return Route::Refused(error(404, "Not Found"));
    };
    if token != state.token {
        return Route::Refused(error(401, "Unauthorized"));
    }
    if request.method() != hyper::Method::POST && request.method() != hyper::Method::GET {
        return Route::Refused(error(405, "Method Not Allowed"));
    }
    Route::Method(method.to_owned())
}

fn answer(state: &mut State, request: &Request) -> Response {
    let method = request.uri().path().rsplit('/').next().unwrap_or_default();
    match method {
        "getMe" => json(
            200,
            &json!({"ok": true, "result": {
                "id": 7_000_000_001_i64, "is_bot": true, "first_name": "orch sim",
                "username": BOT_USERNAME, "can_join_groups": true,
                "can_read_all_group_messages": false, "supports_inline_queries": false
            }}),
        ),
        "getChat" => get_chat(state, request),
        "sendMessage" => send_message(state, request),
        _ => error(404, "Not Found"),
    }
}

/// `getChat`: the chat's `ChatFullInfo` when it is the sim's chat, else `chat not found`, as
/// Telegram answers for a chat the bot was never added to.
fn get_chat(state: &State, request: &Request) -> Response {
    let Ok(body) = serde_json::from_slice::<Value>(request.body()) else {
        return error(400, "Bad Request: chat_id is empty");
    };
    let chat_id = match body.get("chat_id") {
        Some(Value::String(chat)) => chat.clone(),
        Some(Value::Number(chat)) => chat.to_string(),
        _ => return error(400, "Bad Request: chat_id is empty"),
    };
    if chat_id != state.chat_id {
        return error(400, "Bad Request: chat not found");
    }
    let chat = match chat_id.parse::<i64>() {
        Ok(id) if id < 0 => json!({"id": id, "type": "supergroup", "title": "orch sim chat"}),
        Ok(id) => json!({"id": id, "type": "private", "first_name": "orch sim person"}),
        Err(_) => json!({
            "id": -1_001_000_000_001_i64, "type": "channel", "title": "orch sim channel",
            "username": chat_id.trim_start_matches('@')
        }),
    };
    let mut result = chat;
    result["accent_color_id"] = json!(0);
    result["max_reaction_count"] = json!(11);
    json(200, &json!({"ok": true, "result": result}))
}

fn send_message(state: &mut State, request: &Request) -> Response {
    let Ok(body) = serde_json::from_slice::<Value>(request.body()) else {
        return error(400, "Bad Request: message text is empty");
    };
    let chat_id = match body.get("chat_id") {
        Some(Value::String(chat)) => chat.clone(),
        Some(Value::Number(chat)) => chat.to_string(),
        _ => return error(400, "Bad Request: chat_id is empty"),
    };
    let text = body
        .get("text")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    let parse_mode = body
        .get("parse_mode")
        .and_then(Value::as_str)
        .map(str::to_owned);
    if chat_id != state.chat_id {
        return error(400, "Bad Request: chat not found");
    }
    if text.trim().is_empty() {
        return error(400, "Bad Request: message text is empty");
    }
    let visible = match parse_mode.as_deref() {
        Some("HTML") => match check_html(&text) {
            Ok(()) => decode_entities(&text),
            Err(problem) => {
                return error(
                    400,
                    &format!("Bad Request: can't parse entities: {problem}"),
                )
            }
        },
        Some(other) if other != "MarkdownV2" && other != "Markdown" => {
            return error(
                400,
                &format!("Bad Request: unsupported parse_mode \"{other}\""),
            )
        }
        _ => text.clone(),
    };
    if visible.encode_utf16().count() > MAX_TEXT_LEN {
        return error(400, "Bad Request: message is too long");
    }
    let link_preview_disabled = body
        .pointer("/link_preview_options/is_disabled")
        .or_else(|| body.get("disable_web_page_preview"))
        .and_then(Value::as_bool)
        .unwrap_or(false);
    state.messages.push(SentMessage {
        chat_id: chat_id.clone(),
        text,
        parse_mode,
        link_preview_disabled,
    });
    let message_id = state.messages.len();
    let date = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|since| since.as_secs())
        .unwrap_or_default();
    json(
        200,
        &json!({"ok": true, "result": {
            "message_id": message_id, "date": date,
            "chat": {"id": chat_id, "type": "private"}, "text": visible
        }}),
    )
}

fn fault_response(fault: &TelegramFault) -> Response {
    match fault {
        TelegramFault::TooManyRequests { retry_after } => {
            let mut response = json(
                429,
                &json!({"ok": false, "error_code": 429,
                        "description": format!("Too Many Requests: retry after {retry_after}"),
                        "parameters": {"retry_after": retry_after}}),
            );
            if let Ok(value) = hyper::header::HeaderValue::from_str(&retry_after.to_string()) {
                response
                    .headers_mut()
                    .insert(hyper::header::RETRY_AFTER, value);
            }
            response
        }
        TelegramFault::ServerError { status } => error(*status, "Internal Server Error"),
        TelegramFault::ChatNotFound => error(400, "Bad Request: chat not found"),
        TelegramFault::Delay(_) | TelegramFault::Drop => error(500, "Internal Server Error"),
    }
}

fn error(status: u16, description: &str) -> Response {
    json(
        status,
        &json!({"ok": false, "error_code": status, "description": description}),
    )
}

/// The tags Telegram's HTML parse mode knows.
const HTML_TAGS: [&str; 16] = [
    "b",
    "strong",
    "i",
    "em",
    "u",
    "ins",
    "s",
    "strike",
    "del",
    "a",
    "code",
    "pre",
    "span",
    "tg-spoiler",
    "tg-emoji",
    "blockquote",
];

/// Checks that every `<` starts a known tag and every `&` an entity.
fn check_html(text: &str) -> Result<(), String> {
    let mut offset = 0;
    while offset < text.len() {
        let rest = &text[offset..];
        if rest.starts_with('<') {
            let Some(end) = rest.find('>') else {
                return Err(format!("unclosed start tag at byte offset {offset}"));
            };
            let name: String = rest[1..end]
                .trim_start_matches('/')
                .chars()
                .take_while(|c| !c.is_whitespace())
                .collect();
            if !HTML_TAGS.contains(&name.as_str()) {
                return Err(format!(
                    "Unsupported start tag \"{name}\" at byte offset {offset}"
                ));
            }
            offset += end + 1;
        } else if rest.starts_with('&') {
            let entity = rest
                .find(';')
                .map(|end| &rest[1..end])
                .filter(|entity| is_entity(entity));
            let Some(entity) = entity else {
                return Err(format!("Character entity expected at byte offset {offset}"));
            };
            offset += entity.len() + 2;
        } else {
            offset += rest.chars().next().map_or(1, char::len_utf8);
        }
    }
    Ok(())
}

fn is_entity(name: &str) -> bool {
    matches!(name, "lt" | "gt" | "amp" | "quot")
        || name.strip_prefix('#').is_some_and(|digits| {
            !digits.is_empty() && digits.len() <= 7 && digits.chars().all(|c| c.is_ascii_digit())
        })
}

/// Decodes the entities `check_html` accepts and drops tags (enough for tests).
fn decode_entities(text: &str) -> String {
    let mut decoded = String::new();
    let mut rest = text;
    while let Some(start) = rest.find(['&', '<']) {
        decoded.push_str(&rest[..start]);
        rest = &rest[start..];
        if rest.starts_with('<') {
            match rest.find('>') {
                Some(end) => rest = &rest[end + 1..],
                None => break,
            }
            continue;
        }
        let (replacement, skip) = match rest.find(';').map(|end| (&rest[1..end], end + 1)) {
            Some(("lt", skip)) => ('<', skip),
            Some(("gt", skip)) => ('>', skip),
            Some(("amp", skip)) => ('&', skip),
            Some(("quot", skip)) => ('"', skip),
            Some((numeric, skip)) if numeric.starts_with('#') => {
                match numeric[1..].parse::<u32>().ok().and_then(char::from_u32) {
                    Some(character) => (character, skip),
                    None => ('&', 1),
                }
            }
            _ => ('&', 1),
        };
        decoded.push(replacement);
        rest = &rest[skip..];
    }
    decoded.push_str(rest);
    decoded
}

#[cfg(test)]
mod tests;
