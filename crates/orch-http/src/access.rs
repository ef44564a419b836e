//! Who may do what (SPEC §5.3): transports, credentials, and the access each route needs.
//!
//! A source address is never a credential: behind a reverse proxy on the same host every
//! request comes from 127.0.0.1. What counts is a credential the request presents (today the
//! admin token as a Bearer token; the board's session cookie will be one more
//! `Credential`) or the admin socket, which only orch's own user can connect to. A request that
//! carries forwarding headers was relayed by a proxy, so the socket proves nothing about it.

use hyper::header::{HeaderMap, HeaderValue, AUTHORIZATION, WWW_AUTHENTICATE};
use hyper::StatusCode;
use orch_core::secret::Secret;

use crate::server::{error, Response};
use crate::signature::tokens_match;

/// How a request reached the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Transport {
    /// The TCP listener, `server.listen`: whoever reaches the port, directly or via a proxy.
    Tcp,
    /// The admin socket `{db_path}.sock`, mode 0600: only orch's own user can connect.
    AdminSocket,
}

/// What a route needs from a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Need {
    /// Work items, tasks, logs and every command: a credential, always.
    Admin,
    /// `/metrics` (counts, no work items): a credential when an admin token is set, nothing
    /// over TCP otherwise, so a scraper works without secrets on a server that has none.
    Metrics,
}

/// A credential the server accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Credential {
    /// The request came over the admin socket and was not relayed by a proxy.
    AdminSocket,
    /// `Authorization: Bearer <server.admin_token>`.
    AdminToken,
}

/// Why a request was admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Admitted {
    /// It presented a credential.
    With(Credential),
    /// The route is open to it without one (`/metrics` over TCP with no admin token set).
    Open,
}

impl Admitted {
    /// How it was admitted, for logs: `admin_socket`, `admin_token` or `open`.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Admitted::With(Credential::AdminSocket) => "admin_socket",
            Admitted::With(Credential::AdminToken) => "admin_token",
            Admitted::Open => "open",
        }
    }
}

/// Why a request was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// No admin token is set, so nothing sent over TCP (or relayed) can be admitted: 403.
    NoAdminToken,
    /// An admin token is set and the request did not present it: 401.
    MissingOrWrongToken,
}

/// The headers a reverse proxy adds; a request with any of them was relayed.
const FORWARDING_HEADERS: [&str; 3] = ["forwarded", "x-forwarded-for", "x-real-ip"];

/// Whether a request with `headers`, arrived over `transport`, may use a route that needs
/// `need`, given the configured admin token.
pub(crate) fn check(
    admin_token: Option<&Secret>,
    transport: Transport,
    headers: &HeaderMap,
    need: Need,
) -> Result<Admitted, Refusal> {
    if let Some(credential) = credential(admin_token, transport, headers) {
        return Ok(Admitted::With(credential));
    }
    match (need, admin_token) {
        (_, Some(_)) => Err(Refusal::MissingOrWrongToken),
        (Need::Admin, None) => Err(Refusal::NoAdminToken),
        (Need::Metrics, None) => Ok(Admitted::Open),
    }
}

/// The credential a request presents, if the server accepts one.
pub(crate) fn credential(
    admin_token: Option<&Secret>,
    transport: Transport,
    headers: &HeaderMap,
) -> Option<Credential> {
    if transport == Transport::AdminSocket && !is_relayed(headers) {
        return Some(Credential::AdminSocket);
    }
    if let Some(expected) = admin_token {
        if presents_token(headers, expected) {
            return Some(Credential::AdminToken);
        }
    }
    None
}

/// Whether a proxy relayed the request: it carries `Forwarded`, any `X-Forwarded-*` or
/// `X-Real-IP`.
pub(crate) fn is_relayed(headers: &HeaderMap) -> bool {
    headers.keys().any(|name| {
        let name = name.as_str();
        FORWARDING_HEADERS.contains(&name) || name.starts_with("x-forwarded-")
    })
}

/// The answer to a refused request.
pub(crate) fn refusal_response(refusal: Refusal) -> Response {
    match refusal {
        Refusal::NoAdminToken => error(
            StatusCode::FORBIDDEN,
            "this route needs server.admin_token, which is not set; on the daemon's machine use \
             the orch CLI (it talks over the admin socket {db_path}.sock), or set \
             server.admin_token and send it as a Bearer token",
        ),
        Refusal::MissingOrWrongToken => {
            let mut response = error(StatusCode::UNAUTHORIZED, "missing or wrong admin token");
            response
                .headers_mut()
                .insert(WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            response
        }
    }
}

/// `Authorization: Bearer <token>` with the expected token, compared in constant time.
fn presents_token(headers: &HeaderMap, expected: &Secret) -> bool {
    let Some(value) = headers
        .get(AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
    else {
        return false;
    };
    let Some((scheme, token)) = value.trim().split_once(' ') else {
        return false;
    };
    scheme.eq_ignore_ascii_case("bearer")
        && tokens_match(token.trim().as_bytes(), expected.expose().as_bytes())
}

#[cfg(test)]
mod tests;
