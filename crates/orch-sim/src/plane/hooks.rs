//! The webhook sender: Plane's headers and signature, a new delivery id per attempt, retries
//! on network errors only, and the delivery faults.

use bytes::Bytes;

use serde_json::Value;

use crate::plane::pyjson;
use crate::plane::{DeliveryOutcome, DeliveryRecord, Inner};
use crate::webhook::{hmac_sha256_hex, post};

/// A webhook waiting to be sent, with its body already serialised.
pub(crate) struct Pending {
    event: &'static str,
    action: &'static str,
    body: Bytes,
}

impl Pending {
    pub(crate) fn new(event: &'static str, action: &'static str, payload: &Value) -> Pending {
        Pending {
            event,
            action,
            body: Bytes::from(pyjson::to_python_json(payload).into_bytes()),
        }
    }
}

/// `X-Plane-Signature`: lowercase hex HMAC-SHA256 of the raw body under the secret.
pub(crate) fn signature(secret: &str, body: &[u8]) -> String {
    hmac_sha256_hex(secret.as_bytes(), body)
}

/// Sends `hook` to the configured target, if any, like Plane's `webhook_send_task`.
pub(crate) async fn deliver(inner: &Inner, hook: Pending) {
    let Some(target) = inner.world().target.clone() else {
        return;
    };
    let signature = signature(&target.secret, &hook.body);
    let (copies, retries, retry_delay) = {
        let mut faults = inner.faults();
        if faults.drop_deliveries > 0 {
            faults.drop_deliveries -= 1;
            drop(faults);
            inner.records().deliveries.push(DeliveryRecord {
                delivery_id: uuid::Uuid::new_v4().to_string(),
                event: hook.event.to_owned(),
                action: hook.action.to_owned(),
                body: hook.body.to_vec(),
                signature,
                outcome: DeliveryOutcome::DroppedByFault,
            });
            return;
        }
        let copies = if faults.duplicate_deliveries > 0 {
            faults.duplicate_deliveries -= 1;
            2
        } else {
            1
        };
        (copies, faults.delivery_retries, faults.delivery_retry_delay)
    };
    for _ in 0..copies {
        for attempt in 0..=retries {
            let delivery_id = uuid::Uuid::new_v4().to_string();
            let headers = vec![
                ("Content-Type".to_owned(), "application/json".to_owned()),
                ("User-Agent".to_owned(), "Autopilot".to_owned()),
                ("X-Plane-Delivery".to_owned(), delivery_id.clone()),
                ("X-Plane-Event".to_owned(), hook.event.to_owned()),
                ("X-Plane-Signature".to_owned(), signature.clone()),
            ];
            let result = post(&target.url, &headers, hook.body.clone()).await;
            let outcome = match &result {
                Ok(status) => DeliveryOutcome::Answered(*status),
                Err(err) => DeliveryOutcome::NetworkError(err.to_string()),
            };
            inner.records().deliveries.push(DeliveryRecord {
                delivery_id,
                event: hook.event.to_owned(),
                action: hook.action.to_owned(),
                body: hook.body.to_vec(),
                signature: signature.clone(),
                outcome,
            });
            if result.is_ok() || attempt == retries {
                break;
            }
            tokio::time::sleep(retry_delay.saturating_mul(2u32.saturating_pow(attempt))).await;
        }
    }
}
