//! Unit tests of signature verification.

use hyper::header::{HeaderMap, HeaderName, HeaderValue};
use orch_core::secret::Secret;

use crate::metrics::SignatureFailure;
use crate::signature::{tokens_match, verify_gitea, verify_plane};

const SECRET: &str = "s3cr3t-for-tests";
const OTHER_SECRET: &str = "another-secret";
const BODY: &[u8] = br#"{"event": "issue"}"#;

fn sign(secret: &str, body: &[u8]) -> String {
    use hmac::Mac;
    let mut mac =
        hmac::Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).expect("any key length");
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

fn sign_sha1(secret: &str, body: &[u8]) -> String {
    use hmac::Mac;
    let mut mac =
        hmac::Hmac::<sha1::Sha1>::new_from_slice(secret.as_bytes()).expect("any key length");
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

fn headers(pairs: &[(&str, String)]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (name, value) in pairs {
        map.insert(
            HeaderName::from_bytes(name.as_bytes()).expect("valid header name"),
            HeaderValue::from_str(value).expect("valid header value"),
        );
    }
    map
}

fn secrets(values: &[&str]) -> Vec<Secret> {
    values.iter().map(|value| Secret::new(*value)).collect()
}

#[track_caller]
fn check_plane(
    pairs: &[(&str, String)],
    configured: &[&str],
    expected: Result<(), SignatureFailure>,
) {
    assert_eq!(
        verify_plane(&headers(pairs), BODY, &secrets(configured)),
        expected,
        "headers: {pairs:?}"
    );
}

#[track_caller]
fn check_gitea(
    pairs: &[(&str, String)],
    configured: &[&str],
    expected: Result<(), SignatureFailure>,
) {
    assert_eq!(
        verify_gitea(&headers(pairs), BODY, &secrets(configured)),
        expected,
        "headers: {pairs:?}"
    );
}

#[test]
fn plane_signature_is_bare_hex_hmac_sha256_of_the_raw_body() {
    let good = sign(SECRET, BODY);
    check_plane(&[("x-plane-signature", good.clone())], &[SECRET], Ok(()));
    check_plane(
        &[("x-plane-signature", good.to_uppercase())],
        &[SECRET],
        Ok(()),
    );
    check_plane(&[], &[SECRET], Err(SignatureFailure::Missing));
    check_plane(
        &[("x-plane-signature", String::new())],
        &[SECRET],
        Err(SignatureFailure::Missing),
    );
    check_plane(
        &[("x-plane-signature", format!("sha256={good}"))],
        &[SECRET],
        Err(SignatureFailure::Malformed),
    );
    check_plane(
        &[("x-plane-signature", good[..63].to_owned())],
        &[SECRET],
        Err(SignatureFailure::Malformed),
    );
    check_plane(
        &[("x-plane-signature", "zz".repeat(32))],
        &[SECRET],
        Err(SignatureFailure::Malformed),
    );
    check_plane(
        &[("x-plane-signature", sign(OTHER_SECRET, BODY))],
        &[SECRET],
        Err(SignatureFailure::Mismatch),
    );
    check_plane(
        &[("x-plane-signature", sign(SECRET, b"{}"))],
        &[SECRET],
        Err(SignatureFailure::Mismatch),
    );
    check_plane(
        &[("x-plane-signature", good)],
        &[],
        Err(SignatureFailure::NoSecret),
    );
}

#[test]
fn gitea_accepts_its_own_header_or_the_sha256_hub_header_and_never_sha1() {
    let good = sign(SECRET, BODY);
    let wrong = sign(OTHER_SECRET, BODY);
    check_gitea(&[("x-gitea-signature", good.clone())], &[SECRET], Ok(()));
    check_gitea(
        &[("x-hub-signature-256", format!("sha256={good}"))],
        &[SECRET],
        Ok(()),
    );
    check_gitea(
        &[
            ("x-gitea-signature", good.clone()),
            ("x-hub-signature-256", format!("sha256={good}")),
        ],
        &[SECRET],
        Ok(()),
    );
    check_gitea(
        &[("x-hub-signature-256", good.clone())],
        &[SECRET],
        Err(SignatureFailure::Malformed),
    );
    check_gitea(
        &[("x-hub-signature-256", format!("sha1={good}"))],
        &[SECRET],
        Err(SignatureFailure::Malformed),
    );
    check_gitea(
        &[("x-gitea-signature", format!("sha256={good}"))],
        &[SECRET],
        Err(SignatureFailure::Malformed),
    );
    check_gitea(
        &[(
            "x-hub-signature",
            format!("sha1={}", sign_sha1(SECRET, BODY)),
        )],
        &[SECRET],
        Err(SignatureFailure::Sha1Only),
    );
    check_gitea(&[], &[SECRET], Err(SignatureFailure::Missing));
    check_gitea(
        &[("x-gitea-signature", wrong.clone())],
        &[SECRET],
        Err(SignatureFailure::Mismatch),
    );
    check_gitea(
        &[
            ("x-gitea-signature", wrong),
            (
                "x-hub-signature-256",
                format!("sha256={}", sign(SECRET, b"{}")),
            ),
        ],
        &[SECRET],
        Err(SignatureFailure::Mismatch),
    );
}

#[test]
fn any_configured_secret_may_sign_during_a_rotation() {
    let old = sign(SECRET, BODY);
    let new = sign(OTHER_SECRET, BODY);
    check_plane(
        &[("x-plane-signature", old.clone())],
        &[SECRET, OTHER_SECRET],
        Ok(()),
    );
    check_plane(
        &[("x-plane-signature", new.clone())],
        &[SECRET, OTHER_SECRET],
        Ok(()),
    );
    check_gitea(
        &[("x-gitea-signature", old)],
        &[OTHER_SECRET, SECRET],
        Ok(()),
    );
    check_gitea(
        &[("x-gitea-signature", new)],
        &[OTHER_SECRET, SECRET],
        Ok(()),
    );
}

#[test]
fn contract_sample_signature_verifies() {
    // From ../shared/contracts/gitea/README.md: the status.success.json signature.
    let contracts = match std::env::var_os("ORCH_CONTRACTS_DIR") {
        Some(dir) => std::path::PathBuf::from(dir),
        None => std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/contracts"),
    };
    let path = contracts.join("gitea/status.success.json");
    let body =
        std::fs::read(&path).unwrap_or_else(|err| panic!("reading {}: {err}", path.display()));
    let header = "59c71d2635a81cf462d2926a59acaa4a09ca8235df5eee9710d826d770ceb9ff".to_owned();
    let verified = verify_gitea(
        &headers(&[("x-gitea-signature", header)]),
        &body,
        &secrets(&[SECRET]),
    );
    assert_eq!(verified, Ok(()));
}

#[test]
fn admin_tokens_match_only_when_equal() {
    assert!(tokens_match(b"token-1", b"token-1"));
    assert!(!tokens_match(b"token-1", b"token-2"));
    assert!(!tokens_match(b"token", b"token-1"));
    assert!(!tokens_match(b"", b"token-1"));
}
