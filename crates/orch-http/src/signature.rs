//! Webhook signatures: HMAC-SHA256 of the raw body, compared in constant time.

use hmac::{Hmac, Mac};
use hyper::header::HeaderMap;
use orch_core::secret::Secret;
use sha2::{Digest as _, Sha256};
use subtle::{Choice, ConstantTimeEq};

use crate::metrics::SignatureFailure;

/// Plane's header: lowercase hex, no prefix.
pub(crate) const PLANE_SIGNATURE: &str = "x-plane-signature";
/// Gitea's own header: hex, no prefix.
pub(crate) const GITEA_SIGNATURE: &str = "x-gitea-signature";
/// The GitHub-style header Gitea also sends: `sha256=<hex>`.
pub(crate) const HUB_SIGNATURE_256: &str = "x-hub-signature-256";
/// The SHA-1 header Gitea sends too; never accepted, only recognised for the failure reason.
pub(crate) const HUB_SIGNATURE_SHA1: &str = "x-hub-signature";

const DIGEST_LEN: usize = 32;

type Digest = [u8; DIGEST_LEN];

/// Checks a Plane delivery's `X-Plane-Signature` against every secret.
pub(crate) fn verify_plane(
    headers: &HeaderMap,
    body: &[u8],
    secrets: &[Secret],
) -> Result<(), SignatureFailure> {
    let Some(value) = header_text(headers, PLANE_SIGNATURE) else {
        return Err(SignatureFailure::Missing);
    };
    let claimed = parse_hex_digest(value).ok_or(SignatureFailure::Malformed)?;
    verify_any(&[claimed], body, secrets)
}

/// Checks a Gitea delivery: `X-Gitea-Signature` (bare hex) or `X-Hub-Signature-256`
/// (`sha256=` hex). A delivery signed only with SHA-1 (`X-Hub-Signature`) is refused.
pub(crate) fn verify_gitea(
    headers: &HeaderMap,
    body: &[u8],
    secrets: &[Secret],
) -> Result<(), SignatureFailure> {
    let mut claimed = Vec::with_capacity(2);
    let mut malformed = false;
    if let Some(value) = header_text(headers, GITEA_SIGNATURE) {
        match parse_hex_digest(value) {
            Some(digest) => claimed.push(digest),
            None => malformed = true,
        }
    }
    if let Some(value) = header_text(headers, HUB_SIGNATURE_256) {
        match value.strip_prefix("sha256=").and_then(parse_hex_digest) {
            Some(digest) => claimed.push(digest),
            None => malformed = true,
        }
    }
    if claimed.is_empty() {
        return Err(if malformed {
            SignatureFailure::Malformed
        } else if header_text(headers, HUB_SIGNATURE_SHA1).is_some() {
            SignatureFailure::Sha1Only
        } else {
            SignatureFailure::Missing
        });
    }
    verify_any(&claimed, body, secrets)
}

/// A non-empty header value as text; empty or non-ASCII values count as absent.
fn header_text<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get(name)
        .and_then(|value| value.to_str().ok())
        .map(str::trim)
        .filter(|value| !value.is_empty())
}

/// Exactly 64 hex digits (either case).
fn parse_hex_digest(text: &str) -> Option<Digest> {
    let mut digest = [0u8; DIGEST_LEN];
    hex::decode_to_slice(text, &mut digest).ok()?;
    Some(digest)
}

fn hmac_sha256(key: &[u8], body: &[u8]) -> Digest {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes keys of any length");
    mac.update(body);
    mac.finalize().into_bytes().into()
}

/// Whether any claimed digest equals the HMAC under any secret. Every pair is compared, in
/// constant time, so timing tells nothing about which secret or how many bytes matched.
fn verify_any(claimed: &[Digest], body: &[u8], secrets: &[Secret]) -> Result<(), SignatureFailure> {
    if secrets.is_empty() {
        return Err(SignatureFailure::NoSecret);
    }
    let mut matched = Choice::from(0);
    for secret in secrets {
        let expected = hmac_sha256(secret.expose().as_bytes(), body);
        for digest in claimed {
            matched |= expected.ct_eq(digest);
        }
    }
    if bool::from(matched) {
        Ok(())
    } else {
        Err(SignatureFailure::Mismatch)
    }
}

/// Whether a presented bearer token equals the configured one, in constant time. Both are
/// hashed first, so neither the content nor the length of the token shows in the timing.
pub(crate) fn tokens_match(presented: &[u8], expected: &[u8]) -> bool {
    let presented: Digest = Sha256::digest(presented).into();
    let expected: Digest = Sha256::digest(expected).into();
    bool::from(presented.ct_eq(&expected))
}

#[cfg(test)]
mod tests;
