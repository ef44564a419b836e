//! Who may do what: every transport, credential and forwarding header against each need.

use hyper::header::{HeaderMap, HeaderName, HeaderValue};
use orch_core::secret::Secret;

use crate::access::{check, is_relayed, Admitted, Credential, Need, Refusal, Transport};

const TOKEN: &str = "the-admin-token";

fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
    let mut headers = HeaderMap::new();
    for (name, value) in pairs {
        headers.append(
            HeaderName::from_bytes(name.as_bytes()).expect("header name"),
            HeaderValue::from_str(value).expect("header value"),
        );
    }
    headers
}

/// One request against one configuration: what `check` answers, written out.
fn check_case(
    token: Option<&str>,
    transport: Transport,
    pairs: &[(&str, &str)],
    need: Need,
) -> Result<Admitted, Refusal> {
    let secret = token.map(Secret::new);
    check(secret.as_ref(), transport, &headers(pairs), need)
}

const BEARER: (&str, &str) = ("authorization", "Bearer the-admin-token");
const FORWARDING: [(&str, &str); 4] = [
    ("x-forwarded-for", "127.0.0.1"),
    ("forwarded", "for=127.0.0.1"),
    ("x-real-ip", "127.0.0.1"),
    ("x-forwarded-host", "orch.example.com"),
];

#[test]
fn without_a_token_nothing_over_tcp_is_admin_whatever_it_claims() {
    assert_eq!(
        check_case(None, Transport::Tcp, &[], Need::Admin),
        Err(Refusal::NoAdminToken)
    );
    for forwarded in FORWARDING {
        assert_eq!(
            check_case(None, Transport::Tcp, &[forwarded], Need::Admin),
            Err(Refusal::NoAdminToken),
            "{forwarded:?}"
        );
    }
    assert_eq!(
        check_case(None, Transport::Tcp, &[BEARER], Need::Admin),
        Err(Refusal::NoAdminToken),
        "a token is worth nothing when none is configured"
    );
}

#[test]
fn the_admin_token_admits_over_tcp_and_a_wrong_or_missing_one_is_401() {
    assert_eq!(
        check_case(Some(TOKEN), Transport::Tcp, &[BEARER], Need::Admin),
        Ok(Admitted::With(Credential::AdminToken))
    );
    assert_eq!(
        check_case(
            Some(TOKEN),
            Transport::Tcp,
            &[BEARER, FORWARDING[0]],
            Need::Admin
        ),
        Ok(Admitted::With(Credential::AdminToken)),
        "a proxy may relay the token"
    );
    for wrong in [
        vec![],
        vec![("authorization", "Bearer not-the-token")],
        vec![("authorization", "Basic the-admin-token")],
        vec![("authorization", "the-admin-token")],
        vec![FORWARDING[1]],
    ] {
        assert_eq!(
            check_case(Some(TOKEN), Transport::Tcp, &wrong, Need::Admin),
            Err(Refusal::MissingOrWrongToken),
            "{wrong:?}"
        );
    }
}

#[test]
fn the_admin_socket_is_admin_unless_a_proxy_relayed_the_request() {
    for token in [None, Some(TOKEN)] {
        assert_eq!(
            check_case(token, Transport::AdminSocket, &[], Need::Admin),
            Ok(Admitted::With(Credential::AdminSocket))
        );
        assert_eq!(
            check_case(token, Transport::AdminSocket, &[], Need::Metrics),
            Ok(Admitted::With(Credential::AdminSocket))
        );
    }
    for forwarded in FORWARDING {
        assert_eq!(
            check_case(None, Transport::AdminSocket, &[forwarded], Need::Admin),
            Err(Refusal::NoAdminToken),
            "{forwarded:?}"
        );
        assert_eq!(
            check_case(
                Some(TOKEN),
                Transport::AdminSocket,
                &[forwarded],
                Need::Admin
            ),
            Err(Refusal::MissingOrWrongToken),
            "{forwarded:?}"
        );
        assert_eq!(
            check_case(
                Some(TOKEN),
                Transport::AdminSocket,
                &[forwarded, BEARER],
                Need::Admin
            ),
            Ok(Admitted::With(Credential::AdminToken)),
            "{forwarded:?}"
        );
    }
}

#[test]
fn metrics_are_open_over_tcp_only_while_no_token_is_set() {
    assert_eq!(
        check_case(None, Transport::Tcp, &[], Need::Metrics),
        Ok(Admitted::Open)
    );
    assert_eq!(
        check_case(None, Transport::Tcp, &[FORWARDING[0]], Need::Metrics),
        Ok(Admitted::Open)
    );
    assert_eq!(
        check_case(Some(TOKEN), Transport::Tcp, &[], Need::Metrics),
        Err(Refusal::MissingOrWrongToken)
    );
    assert_eq!(
        check_case(Some(TOKEN), Transport::Tcp, &[BEARER], Need::Metrics),
        Ok(Admitted::With(Credential::AdminToken))
    );
}

#[test]
fn forwarding_headers_are_recognised_in_any_case() {
    assert!(!is_relayed(&headers(&[
        ("host", "orch"),
        ("x-request-id", "1")
    ])));
    for name in [
        "Forwarded",
        "X-Forwarded-For",
        "X-FORWARDED-PROTO",
        "x-forwarded-host",
        "X-Real-IP",
    ] {
        assert!(is_relayed(&headers(&[(name, "x")])), "{name}");
    }
}
