//! The board for people (SPEC §5.3): `/` (a column per stage, a card per task), `/tasks/{id}`
//! (history, agent runs, Retry and Cancel), `/events` (live updates), and its login.
//!
//! Access follows the server's rules: the admin token (Bearer), the admin socket, or the
//! session cookie the login form sets after checking the token; nothing about work items is
//! shown without one. The commands are POSTs that a browser must send from a page orch
//! served (`Origin` equals `Host`), and the cookie is `SameSite=Strict`, so another site can
//! neither read the board nor press its buttons.

mod events;
mod session;
mod view;

use std::sync::Arc;

use askama::Template;
use bytes::Bytes;
use http_body_util::{BodyExt, Either, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{
    HeaderValue, CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE, LOCATION, SET_COOKIE,
    X_CONTENT_TYPE_OPTIONS,
};
use hyper::{Method, Request, StatusCode};
use percent_encoding::{percent_decode_str, utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use tokio::sync::watch;
use tracing::{info, warn};

use crate::access::{self, Transport};
use crate::api::{self, AdminCommand};
use crate::connections::Worker;
use crate::server::{error, error_and_close, Response};
use crate::state::AppState;

pub(crate) use events::EventStream;

/// An answer of the board: a whole body, or the `/events` stream.
pub(crate) type BoardResponse = hyper::Response<Either<Full<Bytes>, EventStream>>;

/// The largest login form orch reads.
const MAX_FORM_BYTES: usize = 4096;

/// What the board's pages may load: only orch's own script and style sheet.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; \
                   img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

const BOARD_JS: &str = include_str!("../assets/board.js");
const BOARD_CSS: &str = include_str!("../assets/board.css");

/// Whether `path` is one of the board's.
pub(crate) fn is_board_path(path: &str) -> bool {
    matches!(
        path,
        "/" | "/login" | "/logout" | "/events" | "/board.js" | "/board.css"
    ) || path.starts_with("/tasks/")
}

/// How a board request was admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Admission {
    /// The admin token (Bearer) or the admin socket: not a browser session.
    Credential(&'static str),
    /// The session cookie the login form set.
    Session,
}

impl Admission {
    fn via(self) -> &'static str {
        match self {
            Admission::Credential(via) => via,
            Admission::Session => "board_session",
        }
    }
}

/// Serves a board route; `stop` ends `/events` streams when the server stops.
pub(crate) async fn handle(
    state: Arc<AppState>,
    request: Request<Incoming>,
    transport: Transport,
    worker: &Worker,
    stop: watch::Receiver<bool>,
) -> BoardResponse {
    let Some(_work) = worker.begin_work() else {
        return whole(error_and_close(
            StatusCode::SERVICE_UNAVAILABLE,
            "the connection is closing",
        ));
    };
    let path = request.uri().path().to_owned();
    let method = request.method().clone();
    let admission = admit(&state, transport, request.headers());
    match (path.as_str(), &method) {
        ("/board.js", &Method::GET) => whole(asset("text/javascript; charset=utf-8", BOARD_JS)),
        ("/board.css", &Method::GET) => whole(asset("text/css; charset=utf-8", BOARD_CSS)),
        ("/login", &Method::GET) => whole(match admission {
            Some(_) => see_other("/"),
            None => login_page(&state, StatusCode::OK, None),
        }),
        ("/login", &Method::POST) => whole(login(&state, request).await),
        ("/logout", &Method::POST) => whole(logout(&request)),
        ("/events", &Method::GET) => match admission {
            Some(_) => events_response(events::start(state.clone(), stop)),
            None => whole(refused(&state, transport, &request)),
        },
        ("/", &Method::GET) => whole(match admission {
            Some(_) => board(&state).await,
            None => see_other("/login"),
        }),
        (_, &Method::GET) if path.starts_with("/tasks/") => whole(match admission {
            Some(_) => task(&state, &path, request.uri().query()).await,
            None => see_other("/login"),
        }),
        (_, &Method::POST) if path.starts_with("/tasks/") => whole(match admission {
            Some(admission) => command(&state, &path, &request, admission).await,
            None => refused(&state, transport, &request),
        }),
        _ => whole(error(StatusCode::METHOD_NOT_ALLOWED, "method not allowed")),
    }
}

/// The credential a board request presents: the server's (token, socket) or a session.
fn admit(state: &AppState, transport: Transport, headers: &hyper::HeaderMap) -> Option<Admission> {
    let token = state.admin_token.as_ref();
    if let Some(credential) = access::credential(token, transport, headers) {
        return Some(Admission::Credential(
            access::Admitted::With(credential).as_str(),
        ));
    }
    let token = token?;
    let cookie = session::from_headers(headers)?;
    session::is_valid(token, cookie, state.clock.now()).then_some(Admission::Session)
}

/// The answer to a request with no credential, as the JSON routes give it.
fn refused(state: &AppState, transport: Transport, request: &Request<Incoming>) -> Response {
    let token = state.admin_token.as_ref();
    match access::check(token, transport, request.headers(), access::Need::Admin) {
        Err(refusal) => access::refusal_response(refusal),
        // `admit` found no credential, so `check` refuses too; answer 401 all the same.
        Ok(_) => access::refusal_response(access::Refusal::MissingOrWrongToken),
    }
}

async fn board(state: &AppState) -> Response {
    match view::live_fragment(state).await {
        Ok(live) => html(StatusCode::OK, &view::BoardPage { live }),
        Err(err) => {
            warn!(error = %err, "board store read failed");
            error(StatusCode::SERVICE_UNAVAILABLE, "store unavailable")
        }
    }
}

async fn task(state: &AppState, path: &str, query: Option<&str>) -> Response {
    let id = path.trim_start_matches("/tasks/");
    let said = query.and_then(|query| form_value(query, "said"));
    let found = match api::find_task(state, id).await {
        Ok(found) => found,
        Err(err) => {
            warn!(error = %err, "task page store read failed");
            return error(StatusCode::SERVICE_UNAVAILABLE, "store unavailable");
        }
    };
    let task = match found {
        Ok(task) => task,
        Err(refused) => return refused.response(),
    };
    match view::task_page(state, &task, said).await {
        Ok(page) => html(StatusCode::OK, &page),
        Err(err) => {
            warn!(error = %err, "task page store read failed");
            error(StatusCode::SERVICE_UNAVAILABLE, "store unavailable")
        }
    }
}

/// `POST /tasks/{id}/retry|cancel`: the admin command, then back to the task page.
async fn command(
    state: &AppState,
    path: &str,
    request: &Request<Incoming>,
    admission: Admission,
) -> Response {
    let Some((id, verb)) = path.trim_start_matches("/tasks/").split_once('/') else {
        return error(StatusCode::NOT_FOUND, "no such route");
    };
    let command = match verb {
        "retry" => AdminCommand::Retry,
        "cancel" => AdminCommand::Cancel,
        _ => return error(StatusCode::NOT_FOUND, "no such route"),
    };
    // A browser sends `Origin` with every POST: it must be a page of this server. A session
    // is a browser's, so its commands must carry one.
    let origin = session::origin(request.headers());
    let cross_site = match (origin, admission) {
        (session::Origin::Foreign, _) => true,
        (session::Origin::Absent, Admission::Session) => true,
        (session::Origin::Same, _) | (session::Origin::Absent, Admission::Credential(_)) => false,
    };
    if cross_site {
        return error(
            StatusCode::FORBIDDEN,
            "board commands are accepted only from orch's own pages",
        );
    }
    match api::submit_command(state, id, command, admission.via()).await {
        Ok(done) => {
            let said = format!("{} of {}: {}", command.as_str(), done.work_item, done.note);
            see_other(&format!("/tasks/{id}?said={}", percent_encode(&said)))
        }
        Err(refused) => refused.response(),
    }
}

async fn login(state: &AppState, request: Request<Incoming>) -> Response {
    if session::origin(request.headers()) == session::Origin::Foreign {
        return error(
            StatusCode::FORBIDDEN,
            "the login form is accepted only from orch's own page",
        );
    }
    let Some(expected) = state.admin_token.clone() else {
        return login_page(state, StatusCode::FORBIDDEN, None);
    };
    let scheme = session::scheme(request.headers());
    let limited = Limited::new(request.into_body(), MAX_FORM_BYTES);
    let body = match tokio::time::timeout(state.limits.body_read_timeout, limited.collect()).await {
        Ok(Ok(collected)) => collected.to_bytes(),
        Ok(Err(_)) => return error_and_close(StatusCode::PAYLOAD_TOO_LARGE, "form too large"),
        Err(_) => return error_and_close(StatusCode::REQUEST_TIMEOUT, "form not received"),
    };
    let form = String::from_utf8_lossy(&body);
    let presented = form_value(&form, "token").unwrap_or_default();
    if !crate::signature::tokens_match(presented.as_bytes(), expected.expose().as_bytes()) {
        info!("board login refused: wrong token");
        return login_page(
            state,
            StatusCode::UNAUTHORIZED,
            Some("wrong token".to_owned()),
        );
    }
    info!("board login");
    let cookie = session::issue(&expected, state.clock.now());
    let mut response = see_other("/");
    response
        .headers_mut()
        .insert(SET_COOKIE, session::set_cookie(&cookie, scheme));
    response
}

fn logout(request: &Request<Incoming>) -> Response {
    if session::origin(request.headers()) == session::Origin::Foreign {
        return error(
            StatusCode::FORBIDDEN,
            "logout is accepted only from orch's own page",
        );
    }
    let mut response = see_other("/login");
    response
        .headers_mut()
        .insert(SET_COOKIE, session::clear_cookie());
    response
}

fn login_page(state: &AppState, status: StatusCode, message: Option<String>) -> Response {
    let disabled = state.admin_token.is_none();
    html(status, &view::LoginPage { message, disabled })
}

fn events_response(stream: EventStream) -> BoardResponse {
    let mut response = hyper::Response::new(Either::Right(stream));
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

fn whole(response: Response) -> BoardResponse {
    response.map(Either::Left)
}

/// A rendered page, with the board's security headers.
fn html(status: StatusCode, page: &impl Template) -> Response {
    let body = page
        .render()
        .expect("the board's templates render any value");
    let mut response = hyper::Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    headers.insert(CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    headers.insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    let mut response = hyper::Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    response
}

fn see_other(location: &str) -> Response {
    let mut response = hyper::Response::new(Full::new(Bytes::new()));
    *response.status_mut() = StatusCode::SEE_OTHER;
    let location =
        HeaderValue::from_str(location).expect("board locations are paths made of URL characters");
    response.headers_mut().insert(LOCATION, location);
    response
}

/// The value of `name` in `application/x-www-form-urlencoded` text (a form body or a query).
pub(crate) fn form_value(form: &str, name: &str) -> Option<String> {
    form.split('&')
        .filter_map(|pair| pair.split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| percent_decode(value))
}

/// Decodes `+` and `%XX`; a malformed escape stays as it is.
pub(crate) fn percent_decode(text: &str) -> String {
    percent_decode_str(&text.replace('+', " "))
        .decode_utf8_lossy()
        .into_owned()
}

/// Everything but RFC 3986's unreserved characters is escaped.
const UNRESERVED: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Percent-encodes everything but unreserved characters (RFC 3986).
pub(crate) fn percent_encode(text: &str) -> String {
    utf8_percent_encode(text, UNRESERVED).to_string()
}

#[cfg(test)]
mod tests;
