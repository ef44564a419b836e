//! Webhook ingress: read the body under a cap, verify, classify, check JSON, store, answer.

use std::time::Instant;

use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::header::{HeaderMap, HeaderValue, CONTENT_LENGTH, RETRY_AFTER};
use hyper::{Request, StatusCode};
use orch_core::ports::{InboxInsert, NewDelivery, Source};
use sha2::{Digest, Sha256};
use tracing::{debug, error, warn};

use crate::connections::Worker;
use crate::metrics::DeliveryOutcome;
use crate::server::{error, error_and_close, json, Response};
use crate::signature::{verify_gitea, verify_plane};
use crate::state::{AppState, WebhookEvents};

/// The longest delivery id accepted.
const MAX_DELIVERY_ID_LEN: usize = 128;

/// Handles one delivery. The request counts as work on `worker`'s connection (which is then
/// never closed to make room for another) only once its body has arrived.
pub(crate) async fn handle(
    state: &AppState,
    source: Source,
    request: Request<Incoming>,
    worker: &Worker,
) -> Response {
    let started = Instant::now();
    let (parts, body) = request.into_parts();
    let max = state.max_body_bytes;
    let declared = declared_length(&parts.headers);
    if declared.is_some_and(|length| length > max as u64) {
        return too_large(state, source);
    }
    let capacity = declared.map_or(0, |length| usize::try_from(length).unwrap_or(max).min(max));
    let read = tokio::time::timeout(
        state.limits.body_read_timeout,
        read_capped(body, max, capacity),
    )
    .await;
    let body = match read {
        Ok(Ok(body)) => body,
        Ok(Err(ReadError::TooLarge)) => return too_large(state, source),
        Ok(Err(ReadError::Broken(err))) => {
            debug!(source = %source, error = %err, "webhook body read failed");
            state
                .metrics
                .count_delivery(source, DeliveryOutcome::Incomplete);
            return error_and_close(StatusCode::BAD_REQUEST, "request body could not be read");
        }
        Err(_elapsed) => {
            warn!(source = %source, "webhook body read timed out");
            state
                .metrics
                .count_delivery(source, DeliveryOutcome::Incomplete);
            return error_and_close(StatusCode::REQUEST_TIMEOUT, "request body too slow");
        }
    };

    let Some(_work) = worker.begin_work() else {
        return error_and_close(StatusCode::SERVICE_UNAVAILABLE, "the connection is closing");
    };

    // Authenticity first: nothing below runs for a forged request.
    let verified = match source {
        Source::Plane => verify_plane(&parts.headers, &body, &state.plane_secrets.snapshot()),
        Source::Gitea => verify_gitea(&parts.headers, &body, &state.gitea_secrets.snapshot()),
    };
    if let Err(reason) = verified {
        warn!(source = %source, reason = %reason, "webhook signature refused");
        state.metrics.count_signature_failure(source, reason);
        state
            .metrics
            .count_delivery(source, DeliveryOutcome::Unauthorized);
        return error(StatusCode::UNAUTHORIZED, "invalid webhook signature");
    }

    let event_type = match classify(source, &parts.headers, state.webhook_events) {
        Ok(event_type) => event_type,
        Err(reason) => {
            debug!(source = %source, reason = %reason, "webhook ignored");
            state
                .metrics
                .count_delivery(source, DeliveryOutcome::Ignored);
            return json(
                StatusCode::OK,
                &serde_json::json!({ "status": "ignored", "reason": reason }),
            );
        }
    };

    if serde_json::from_slice::<serde::de::IgnoredAny>(&body).is_err() {
        state
            .metrics
            .count_delivery(source, DeliveryOutcome::Invalid);
        return error(StatusCode::BAD_REQUEST, "body is not valid JSON");
    }

    let body_sha256 = hex::encode(Sha256::digest(&body));
    let delivery_id = match delivery_id(source, &parts.headers) {
        Ok(Some(id)) => id,
        Ok(None) => body_sha256.clone(),
        Err(reason) => {
            state
                .metrics
                .count_delivery(source, DeliveryOutcome::Invalid);
            return error(StatusCode::BAD_REQUEST, reason);
        }
    };

    let delivery = NewDelivery {
        source,
        delivery_id: delivery_id.clone(),
        event_type: event_type.to_owned(),
        body_sha256,
        body,
        received_at: state.clock.now(),
    };
    // The insert runs in its own task so that a client hanging up cannot cancel it between
    // the commit and the wake-up.
    let store = state.store.clone();
    let wake = state.wake.clone();
    let insert = tokio::spawn(async move {
        let inserted = store.inbox_insert(delivery).await;
        if let (Ok(InboxInsert::Queued(_)), Some(wake)) = (&inserted, wake) {
            wake.notify_one();
        }
        inserted
    });
    let inserted = match insert.await {
        Ok(inserted) => inserted,
        Err(join_error) => {
            error!(source = %source, delivery = %delivery_id, error = %join_error, "inbox insert task failed");
            state
                .metrics
                .count_delivery(source, DeliveryOutcome::StoreFailed);
            return inbox_unavailable();
        }
    };
    match inserted {
        Ok(InboxInsert::Queued(id)) => {
            crate::failpoint::hit(crate::failpoint::INGRESS_AFTER_COMMIT_BEFORE_ANSWER);
            debug!(source = %source, delivery = %delivery_id, event = event_type, inbox_id = id, "webhook queued");
            state
                .metrics
                .count_delivery(source, DeliveryOutcome::Queued);
            state.metrics.observe_ingest(source, started.elapsed());
            json(
                StatusCode::ACCEPTED,
                &serde_json::json!({ "status": "queued" }),
            )
        }
        Ok(InboxInsert::Duplicate) => {
            debug!(source = %source, delivery = %delivery_id, event = event_type, "webhook duplicate");
            state
                .metrics
                .count_delivery(source, DeliveryOutcome::Duplicate);
            state.metrics.observe_ingest(source, started.elapsed());
            json(
                StatusCode::ACCEPTED,
                &serde_json::json!({ "status": "duplicate" }),
            )
        }
        Err(err) => {
            error!(source = %source, delivery = %delivery_id, error = %err, "inbox commit failed");
            state
                .metrics
                .count_delivery(source, DeliveryOutcome::StoreFailed);
            inbox_unavailable()
        }
    }
}

/// The answer when the delivery could not be stored (a full disk, a read-only database, a
/// busy one): 503 with `Retry-After`, never 202, so a sender that retries sends it again.
fn inbox_unavailable() -> Response {
    let mut response = error(StatusCode::SERVICE_UNAVAILABLE, "inbox unavailable");
    response
        .headers_mut()
        .insert(RETRY_AFTER, HeaderValue::from_static(INBOX_RETRY_AFTER_S));
    response
}

/// Seconds a sender is asked to wait after a 503 from the inbox.
const INBOX_RETRY_AFTER_S: &str = "10";

/// Which of `events` a verified delivery is, or why it is ignored.
fn classify(
    source: Source,
    headers: &HeaderMap,
    events: WebhookEvents,
) -> Result<&'static str, String> {
    let (header, used) = match source {
        Source::Plane => ("x-plane-event", events.plane),
        Source::Gitea => {
            // `X-Gitea-Event-Type` names review kinds (and was never empty for `status`, unlike
            // `X-Gitea-Event`); very old Gitea sends only `X-Gitea-Event`.
            if headers.contains_key("x-gitea-event-type") {
                ("x-gitea-event-type", events.gitea)
            } else {
                ("x-gitea-event", events.gitea)
            }
        }
    };
    let value = headers
        .get(header)
        .and_then(|value| value.to_str().ok())
        .map(str::trim)
        .unwrap_or("");
    if value.is_empty() {
        return Err(format!("no {header} header"));
    }
    match used.iter().find(|event| **event == value) {
        Some(event) => Ok(event),
        None => {
            let mut shown = value.to_owned();
            shown.truncate(64);
            Err(format!("{} event {shown:?} is not used", source.as_str()))
        }
    }
}

/// The delivery id header's value; `None` when absent or empty (the caller uses the body's
/// hash then).
fn delivery_id(source: Source, headers: &HeaderMap) -> Result<Option<String>, &'static str> {
    let header = match source {
        Source::Plane => "x-plane-delivery",
        Source::Gitea => "x-gitea-delivery",
    };
    let Some(value) = headers.get(header) else {
        return Ok(None);
    };
    let value = value
        .to_str()
        .map_err(|_| "delivery id is not printable ASCII")?
        .trim();
    if value.is_empty() {
        return Ok(None);
    }
    if value.len() > MAX_DELIVERY_ID_LEN || !value.bytes().all(|byte| byte.is_ascii_graphic()) {
        return Err("delivery id must be 1 to 128 printable characters");
    }
    Ok(Some(value.to_owned()))
}

fn declared_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

fn too_large(state: &AppState, source: Source) -> Response {
    warn!(source = %source, max_body_bytes = state.max_body_bytes as u64, "webhook body too large");
    state
        .metrics
        .count_delivery(source, DeliveryOutcome::TooLarge);
    error_and_close(StatusCode::PAYLOAD_TOO_LARGE, "request body too large")
}

enum ReadError {
    TooLarge,
    Broken(hyper::Error),
}

/// Reads the body, but never more than `max + 1` bytes plus one read buffer: the first
/// byte over the cap ends the read, and dropping the body makes hyper stop reading and close
/// the connection.
async fn read_capped(
    mut body: Incoming,
    max: usize,
    capacity: usize,
) -> Result<Vec<u8>, ReadError> {
    let mut bytes = Vec::with_capacity(capacity);
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(ReadError::Broken)?;
        if let Ok(data) = frame.into_data() {
            if data.len() > max - bytes.len() {
                return Err(ReadError::TooLarge);
            }
            bytes.extend_from_slice(&data);
        }
    }
    Ok(bytes)
}
