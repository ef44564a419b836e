//! The inbox writer: one thread that group-commits concurrent deliveries (one fsync per batch).

use std::path::Path;
use std::sync::mpsc;
use std::time::Duration;

use orch_core::ports::{InboxInsert, NewDelivery, StoreError};
use rusqlite::{params, Connection, TransactionBehavior};
use tokio::sync::oneshot;

use crate::error::Error;
use crate::{open_connection, OpenError, StorageHealth};

/// How long a body hash dedupes deliveries (SPEC §4).
const BODY_DEDUPE_WINDOW: Duration = Duration::from_secs(7 * 24 * 60 * 60);
/// The most deliveries one commit takes.
const MAX_BATCH: usize = 256;

struct Request {
    delivery: NewDelivery,
    reply: oneshot::Sender<Result<InboxInsert, StoreError>>,
}

/// Hands deliveries to the writer thread. Every reply comes after the commit that holds the
/// delivery, made with `synchronous=FULL`; deliveries that arrive while a commit runs share
/// the next one, so throughput does not stop at one fsync per delivery.
pub(crate) struct InboxWriter {
    sender: mpsc::Sender<Request>,
}

impl InboxWriter {
    /// Opens the writer's own connection and starts its thread; the thread ends when the
    /// writer is dropped.
    pub(crate) fn start(
        path: &Path,
        busy_timeout: Duration,
        health: StorageHealth,
    ) -> Result<InboxWriter, OpenError> {
        let conn = open_connection(path)?;
        let sqlite = |source| OpenError::Sqlite {
            path: path.to_path_buf(),
            source,
        };
        conn.busy_timeout(busy_timeout).map_err(sqlite)?;
        conn.execute_batch("PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON;")
            .map_err(sqlite)?;
        let (sender, receiver) = mpsc::channel();
        std::thread::Builder::new()
            .name("orch-inbox-writer".to_owned())
            .spawn(move || run(conn, receiver, &health))
            .map_err(OpenError::Thread)?;
        Ok(InboxWriter { sender })
    }

    pub(crate) async fn insert(&self, delivery: NewDelivery) -> Result<InboxInsert, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.sender
            .send(Request { delivery, reply })
            .map_err(|_| StoreError::Unavailable("inbox writer has stopped".to_owned()))?;
        answer
            .await
            .map_err(|_| StoreError::Unavailable("inbox writer has stopped".to_owned()))?
    }
}

fn run(mut conn: Connection, receiver: mpsc::Receiver<Request>, health: &StorageHealth) {
    while let Ok(first) = receiver.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match receiver.try_recv() {
                Ok(request) => batch.push(request),
                Err(_) => break,
            }
        }
        let deliveries: Vec<&NewDelivery> = batch.iter().map(|request| &request.delivery).collect();
        let committed = commit_batch(&mut conn, &deliveries);
        health.observe_write(&committed);
        match committed {
            Ok(outcomes) => {
                for (request, outcome) in batch.into_iter().zip(outcomes) {
                    health.observe_read(&outcome);
                    // The caller may have gone away; the delivery is stored regardless.
                    let _ = request.reply.send(outcome.map_err(StoreError::from));
                }
            }
            Err(err) => {
                let failure = Failure::from(err);
                tracing::warn!(error = %failure.message, size = batch.len(), "inbox commit failed");
                for request in batch {
                    let _ = request.reply.send(Err(failure.to_store_error()));
                }
            }
        }
    }
}

/// Inserts every delivery in one transaction; one delivery's statement error does not stop
/// the others, but a storage fault (after which SQLite may have rolled the transaction back
/// already) or a failed commit fails them all, and the batch is rolled back whole.
fn commit_batch(
    conn: &mut Connection,
    deliveries: &[&NewDelivery],
) -> Result<Vec<Result<InboxInsert, Error>>, Error> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let mut outcomes = Vec::with_capacity(deliveries.len());
    for delivery in deliveries {
        match insert_one(&tx, delivery) {
            Err(err) if err.storage_fault().is_some() => return Err(err),
            outcome => outcomes.push(outcome),
        }
    }
    tx.commit()?;
    Ok(outcomes)
}

fn insert_one(conn: &Connection, delivery: &NewDelivery) -> Result<InboxInsert, Error> {
    let source = delivery.source.as_str();
    let window_start = (delivery.received_at - BODY_DEDUPE_WINDOW).as_millis();
    let duplicate: bool = conn
        .prepare_cached(
            "SELECT EXISTS (SELECT 1 FROM inbox WHERE source = ?1 AND delivery_id = ?2) \
             OR EXISTS (SELECT 1 FROM inbox WHERE source = ?1 AND body_sha256 = ?3 AND received_at > ?4)",
        )?
        .query_row(params![source, delivery.delivery_id, delivery.body_sha256, window_start], |row| row.get(0))?;
    if duplicate {
        return Ok(InboxInsert::Duplicate);
    }
    conn.prepare_cached(
        "INSERT INTO inbox (source, delivery_id, event_type, body_sha256, body, received_at) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?
    .execute(params![
        source,
        delivery.delivery_id,
        delivery.event_type,
        delivery.body_sha256,
        delivery.body,
        delivery.received_at.as_millis(),
    ])?;
    Ok(InboxInsert::Queued(conn.last_insert_rowid()))
}

/// A batch failure, told to every caller of the batch.
struct Failure {
    busy: bool,
    message: String,
}

impl From<Error> for Failure {
    fn from(err: Error) -> Failure {
        let err = StoreError::from(err);
        Failure {
            busy: matches!(err, StoreError::Unavailable(_)),
            message: err.to_string(),
        }
    }
}

impl Failure {
    fn to_store_error(&self) -> StoreError {
        if self.busy {
            StoreError::Unavailable(self.message.clone())
        } else {
            StoreError::Other(self.message.clone().into())
        }
    }
}
