//! Signing and delivering webhooks the way Plane and Gitea do.

use std::time::Duration;

use bytes::Bytes;
use hmac::{Hmac, Mac};
use http_body_util::Full;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use sha2::Sha256;

/// Lowercase hex HMAC-SHA256 of `body` under `secret`.
pub fn hmac_sha256_hex(secret: &[u8], body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes keys of any length");
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

/// Lowercase hex HMAC-SHA1 of `body` under `secret` (Gitea's `X-Hub-Signature`).
pub fn hmac_sha1_hex(secret: &[u8], body: &[u8]) -> String {
    let mut mac =
        Hmac::<sha1::Sha1>::new_from_slice(secret).expect("HMAC takes keys of any length");
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

/// Why a delivery got no HTTP answer.
#[derive(Debug)]
pub struct DeliveryError(pub String);

impl std::fmt::Display for DeliveryError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "delivery failed: {}", self.0)
    }
}

impl std::error::Error for DeliveryError {}

/// POSTs `body` with `headers` to `url` (plain `http://` only) and returns the status code.
/// Network errors and a 10 s timeout are `Err`.
pub async fn post(
    url: &str,
    headers: &[(String, String)],
    body: Bytes,
) -> Result<u16, DeliveryError> {
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let mut request = hyper::Request::builder().method("POST").uri(url);
    for (name, value) in headers {
        request = request.header(name.as_str(), value.as_str());
    }
    let request = request
        .body(Full::new(body))
        .map_err(|err| DeliveryError(err.to_string()))?;
    match tokio::time::timeout(Duration::from_secs(10), client.request(request)).await {
        Ok(Ok(response)) => Ok(response.status().as_u16()),
        Ok(Err(err)) => Err(DeliveryError(err.to_string())),
        Err(_) => Err(DeliveryError("timed out after 10 s".to_owned())),
    }
}
