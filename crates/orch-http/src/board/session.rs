//! The board's session cookie and its cross-site request checks.
//!
//! The cookie is stateless: `v1.{expires}.{hmac}`, where the HMAC-SHA256 is keyed with the
//! admin token, so it survives a restart, and rotating the token ends every session. It is
//! `HttpOnly` (no script reads it) and `SameSite=Strict` (no other site's page sends it).

use std::time::Duration;

use hmac::{Hmac, Mac};
use hyper::header::{HeaderMap, HeaderValue, COOKIE, HOST, ORIGIN};
use orch_core::secret::Secret;
use orch_core::time::Timestamp;
use sha2::Sha256;

use crate::signature::tokens_match;

/// The cookie's name.
pub(crate) const COOKIE_NAME: &str = "orch_session";

/// How long a session lasts after the login.
pub(crate) const SESSION_LIFETIME: Duration = Duration::from_secs(12 * 3600);

/// A new session's cookie value, valid until `now + SESSION_LIFETIME`.
pub(crate) fn issue(token: &Secret, now: Timestamp) -> String {
    let expires = now.as_millis() / 1000 + SESSION_LIFETIME.as_secs() as i64;
    format!("v1.{expires}.{}", hex::encode(mac(token, expires)))
}

/// Whether `value` is a session `issue` made with `token` that has not expired at `now`.
pub(crate) fn is_valid(token: &Secret, value: &str, now: Timestamp) -> bool {
    let mut parts = value.split('.');
    let (Some("v1"), Some(expires), Some(signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return false;
    };
    let Ok(expires) = expires.parse::<i64>() else {
        return false;
    };
    let Ok(signature) = hex::decode(signature) else {
        return false;
    };
    expires > now.as_millis() / 1000 && tokens_match(&signature, &mac(token, expires))
}

/// The session cookie's value among the request's cookies.
pub(crate) fn from_headers(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE_NAME)
        .map(|(_, value)| value.trim())
}

/// How the browser reached orch, as its `Origin` says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Scheme {
    Http,
    /// Through a TLS-terminating proxy: the cookie is marked `Secure`.
    Https,
}

/// The scheme the request's `Origin` names (`Http` without one).
pub(crate) fn scheme(headers: &HeaderMap) -> Scheme {
    let https = headers
        .get(ORIGIN)
        .and_then(|origin| origin.to_str().ok())
        .is_some_and(|origin| origin.starts_with("https://"));
    if https {
        Scheme::Https
    } else {
        Scheme::Http
    }
}

/// `Set-Cookie` for a new session; over HTTPS it is also `Secure`.
pub(crate) fn set_cookie(value: &str, scheme: Scheme) -> HeaderValue {
    let secure = match scheme {
        Scheme::Http => "",
        Scheme::Https => "; Secure",
    };
    let cookie = format!(
        "{COOKIE_NAME}={value}; Path=/; Max-Age={}; HttpOnly; SameSite=Strict{secure}",
        SESSION_LIFETIME.as_secs()
    );
    HeaderValue::from_str(&cookie).expect("a session value is hex, digits and dots")
}

/// `Set-Cookie` that ends the session.
pub(crate) fn clear_cookie() -> HeaderValue {
    HeaderValue::from_static("orch_session=; Path=/; Max-Age=0; HttpOnly; SameSite=Strict")
}

/// Where a request's `Origin` stands against the server it was sent to (its `Host`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Origin {
    /// No `Origin` header: not a browser's form or script (a CLI, curl).
    Absent,
    /// `Origin` names this server: a page orch served.
    Same,
    /// Another site, `null`, or no `Host` to compare with.
    Foreign,
}

/// Compares `Origin` with `Host`: a browser sends `Origin` with every POST, and another
/// site's page cannot make it name orch.
pub(crate) fn origin(headers: &HeaderMap) -> Origin {
    let Some(origin) = headers.get(ORIGIN) else {
        return Origin::Absent;
    };
    let host = headers.get(HOST).and_then(|host| host.to_str().ok());
    let origin_host = origin.to_str().ok().and_then(|origin| {
        origin
            .strip_prefix("http://")
            .or_else(|| origin.strip_prefix("https://"))
    });
    match (origin_host, host) {
        (Some(origin_host), Some(host)) if origin_host.eq_ignore_ascii_case(host) => Origin::Same,
        _ => Origin::Foreign,
    }
}

fn mac(token: &Secret, expires: i64) -> Vec<u8> {
    let mut mac = Hmac::<Sha256>::new_from_slice(token.expose().as_bytes())
        .expect("HMAC takes a key of any length");
    mac.update(format!("orch board session v1 {expires}").as_bytes());
    mac.finalize().into_bytes().to_vec()
}
