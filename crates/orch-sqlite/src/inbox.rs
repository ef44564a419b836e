//! The inbox writer: one thread that owns every write of the inbox and group-commits them.
//!
//! Deliveries that arrive while a commit runs share the next one (one fsync per batch), and the
//! event loop's "processed" marks ride in the same transactions: the inbox has one writer, so
//! acknowledgements never wait on SQLite's busy handler (which sleeps in steps of milliseconds)
//! behind the event loop's own commits, and a mark costs an `UPDATE`, not a transaction. The
//! event loop sends a page's marks as one request: one round trip, and one transaction.
//! The writer never checkpoints the WAL itself: a checkpointer thread with its own connection
//! does, beside it, so copying pages into the database file and its fsync never hold up an
//! acknowledgement. Under writes without a pause the WAL would never start over from its
//! beginning (SQLite restarts it only when a write begins after a checkpoint copied every
//! frame), so once it is longer than `StoreOptions::wal_restart_bytes` the writer copies the
//! last frames itself between two batches, and its next commit restarts the WAL.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::Duration;

use orch_core::ports::{InboxInsert, NewDelivery, StoreError};
use orch_core::time::Timestamp;
use rusqlite::{params, Connection, TransactionBehavior};
use tokio::sync::oneshot;

use crate::error::Error;
use crate::open::open_connection;
use crate::{OpenError, StorageHealth};

/// How long a body hash dedupes deliveries (SPEC §4).
const BODY_DEDUPE_WINDOW: Duration = Duration::from_secs(7 * 24 * 60 * 60);
/// The most requests one commit takes.
const MAX_BATCH: usize = 256;
/// The writer's page cache (KiB): the inbox's indexes stay in memory instead of being read
/// back from the file for every insert.
const WRITER_CACHE_KIB: u32 = 16 * 1024;
/// The least time between two checkpoints; commits in between share the next one.
const CHECKPOINT_PAUSE: Duration = Duration::from_millis(100);

type Reply<T> = oneshot::Sender<Result<T, StoreError>>;

enum Request {
    Insert {
        delivery: NewDelivery,
        reply: Reply<InboxInsert>,
    },
    /// Marks of deliveries, each with its outcome: one request, so they share a
    /// transaction, whatever else the batch holds.
    MarkProcessed {
        marks: Vec<(i64, String)>,
        at: Timestamp,
        reply: Reply<()>,
    },
}

/// What one request of a batch came to, before its reply.
enum Outcome {
    Inserted(Result<InboxInsert, Error>),
    Marked(Result<(), Error>),
}

impl Outcome {
    /// The outcome, unless it is a storage fault, which fails the whole batch.
    fn unless_fault(self) -> Result<Outcome, Error> {
        match self {
            Outcome::Inserted(Err(err)) | Outcome::Marked(Err(err))
                if err.storage_fault().is_some() =>
            {
                Err(err)
            }
            outcome => Ok(outcome),
        }
    }
}

/// Hands inbox writes to the writer thread. An insert's reply comes after the commit that
/// holds the delivery, made with `synchronous=FULL`; a batch of marks alone commits with
/// `synchronous=NORMAL`, like the store's other writes.
pub(crate) struct InboxWriter {
    sender: mpsc::Sender<Request>,
}

impl InboxWriter {
    /// Opens the writer's own connection and starts its thread; the thread ends when the
    /// writer is dropped.
    pub(crate) fn start(
        path: &Path,
        busy_timeout: Duration,
        wal_restart_bytes: u64,
        health: StorageHealth,
    ) -> Result<InboxWriter, OpenError> {
        let conn = open_connection(path)?;
        let sqlite = |source| OpenError::Sqlite {
            path: path.to_path_buf(),
            source,
        };
        conn.busy_timeout(busy_timeout).map_err(sqlite)?;
        conn.execute_batch(&format!(
            "PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON; \
             PRAGMA cache_size = -{WRITER_CACHE_KIB}; PRAGMA wal_autocheckpoint = 0; \
             PRAGMA journal_size_limit = {wal_size_limit};",
            // A restart cuts the WAL back to twice its usual length: only a burst's growth.
            wal_size_limit = i64::try_from(wal_restart_bytes.saturating_mul(2)).unwrap_or(i64::MAX)
        ))
        .map_err(sqlite)?;
        let checkpointer = open_connection(path)?;
        checkpointer.busy_timeout(busy_timeout).map_err(sqlite)?;
        let (nudge, nudged) = mpsc::sync_channel(1);
        let restart = Arc::new(AtomicBool::new(false));
        let wal = WalCheckpoints {
            nudge,
            restart: restart.clone(),
        };
        std::thread::Builder::new()
            .name("orch-checkpoint".to_owned())
            .spawn(move || checkpoints(&checkpointer, &nudged, &restart, wal_restart_bytes))
            .map_err(OpenError::Thread)?;
        let (sender, receiver) = mpsc::channel();
        std::thread::Builder::new()
            .name("orch-inbox-writer".to_owned())
            .spawn(move || run(conn, &receiver, &health, &wal))
            .map_err(OpenError::Thread)?;
        Ok(InboxWriter { sender })
    }

    pub(crate) async fn insert(&self, delivery: NewDelivery) -> Result<InboxInsert, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.send(Request::Insert { delivery, reply }, answer).await
    }

    /// Records how deliveries were handled, in one transaction; `NotFound` naming the ids
    /// that are in no row (the others are marked).
    pub(crate) async fn mark_processed(
        &self,
        marks: Vec<(i64, String)>,
        at: Timestamp,
    ) -> Result<(), StoreError> {
        let (reply, answer) = oneshot::channel();
        let request = Request::MarkProcessed { marks, at, reply };
        self.send(request, answer).await
    }

    async fn send<T>(
        &self,
        request: Request,
        answer: oneshot::Receiver<Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        let stopped = || StoreError::Unavailable("inbox writer has stopped".to_owned());
        self.sender.send(request).map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }
}

/// The writer's side of the checkpointer: a nudge after each commit, and the checkpointer's
/// request that the writer finish a checkpoint so that the WAL restarts.
struct WalCheckpoints {
    nudge: mpsc::SyncSender<()>,
    restart: Arc<AtomicBool>,
}

fn run(
    mut conn: Connection,
    receiver: &mpsc::Receiver<Request>,
    health: &StorageHealth,
    wal: &WalCheckpoints,
) {
    let mut full = true;
    while let Ok(first) = receiver.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match receiver.try_recv() {
                Ok(request) => batch.push(request),
                Err(_) => break,
            }
        }
        // Only deliveries to acknowledge need the fsync of every commit.
        let needs_full = batch
            .iter()
            .any(|request| matches!(request, Request::Insert { .. }));
        let committed = set_synchronous(&conn, &mut full, needs_full)
            .and_then(|()| commit_batch(&mut conn, &batch));
        health.observe_write(&committed);
        match committed {
            Ok(outcomes) => {
                // A checkpoint is already due when the channel is full: nothing to add.
                let _ = wal.nudge.try_send(());
                for (request, outcome) in batch.into_iter().zip(outcomes) {
                    // The caller may have gone away; the write is committed regardless.
                    match (request, outcome) {
                        (Request::Insert { reply, .. }, Outcome::Inserted(outcome)) => {
                            health.observe_read(&outcome);
                            let _ = reply.send(outcome.map_err(StoreError::from));
                        }
                        (Request::MarkProcessed { reply, .. }, Outcome::Marked(outcome)) => {
                            health.observe_read(&outcome);
                            let _ = reply.send(outcome.map_err(StoreError::from));
                        }
                        _ => unreachable!("commit_batch answers each request in kind"),
                    }
                }
            }
            Err(err) => {
                let failure = Failure::from(err);
                tracing::warn!(error = %failure.message, size = batch.len(), "inbox commit failed");
                for request in batch {
                    match request {
                        Request::Insert { reply, .. } => {
                            let _ = reply.send(Err(failure.to_store_error()));
                        }
                        Request::MarkProcessed { reply, .. } => {
                            let _ = reply.send(Err(failure.to_store_error()));
                        }
                    }
                }
            }
        }
        // After the replies, so that no delivery of this batch waits for it.
        if wal.restart.swap(false, Ordering::Relaxed) {
            restart_checkpoint(&conn);
        }
    }
}

/// Copies the frames the checkpointer's last pass left (those committed since) into the
/// database file, from the writer's connection, between two of its transactions: when no
/// reader still needs a frame, the WAL holds nothing uncopied and the next commit writes from
/// its beginning. Passive: it never waits on a reader or the busy handler.
fn restart_checkpoint(conn: &Connection) {
    match wal_checkpoint(conn) {
        Ok(frames) => tracing::debug!(frames, "WAL checkpointed by the inbox writer"),
        Err(err) => tracing::debug!(error = %err, "WAL checkpoint by the inbox writer failed"),
    }
}

/// A passive checkpoint; the number of frames in the WAL.
fn wal_checkpoint(conn: &Connection) -> rusqlite::Result<i64> {
    conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |row| row.get(1))
}

/// Copies committed WAL pages into the database file after commits (at most one checkpoint
/// per `CHECKPOINT_PAUSE`), until the writer stops. A passive checkpoint never blocks the
/// writer; a failed one is tried again after the next commit. When the WAL is longer than
/// `restart_bytes`, it asks the writer to restart it.
fn checkpoints(
    conn: &Connection,
    nudged: &mpsc::Receiver<()>,
    restart: &AtomicBool,
    restart_bytes: u64,
) {
    let page_bytes = conn
        .query_row("PRAGMA page_size", [], |row| row.get::<_, u64>(0))
        .unwrap_or(4096);
    while nudged.recv().is_ok() {
        match wal_checkpoint(conn) {
            Ok(frames) if u64::try_from(frames).unwrap_or(0) * page_bytes >= restart_bytes => {
                restart.store(true, Ordering::Relaxed);
            }
            Ok(_) => {}
            Err(err) => tracing::debug!(error = %err, "WAL checkpoint failed"),
        }
        std::thread::sleep(CHECKPOINT_PAUSE);
    }
}

/// Switches the connection's `synchronous` between `FULL` and `NORMAL` when it must change.
fn set_synchronous(conn: &Connection, full: &mut bool, needs_full: bool) -> Result<(), Error> {
    if *full != needs_full {
        let level = if needs_full { "FULL" } else { "NORMAL" };
        conn.execute_batch(&format!("PRAGMA synchronous = {level}"))?;
        *full = needs_full;
    }
    Ok(())
}

/// Runs every request in one transaction; one request's statement error does not stop the
/// others, but a storage fault (after which SQLite may have rolled the transaction back
/// already) or a failed commit fails them all, and the batch is rolled back whole.
fn commit_batch(conn: &mut Connection, batch: &[Request]) -> Result<Vec<Outcome>, Error> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let mut outcomes = Vec::with_capacity(batch.len());
    for request in batch {
        let outcome = match request {
            Request::Insert { delivery, .. } => Outcome::Inserted(insert_one(&tx, delivery)),
            Request::MarkProcessed { marks, at, .. } => Outcome::Marked(mark_all(&tx, marks, *at)),
        };
        outcomes.push(outcome.unless_fault()?);
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

/// Marks each delivery; the ids in no row come back as one `NotFound` after the others are
/// marked (the transaction still commits them).
fn mark_all(conn: &Connection, marks: &[(i64, String)], at: Timestamp) -> Result<(), Error> {
    let mut update =
        conn.prepare_cached("UPDATE inbox SET processed_at = ?2, outcome = ?3 WHERE id = ?1")?;
    let mut missing = Vec::new();
    for (id, outcome) in marks {
        if update.execute(params![id, at.as_millis(), outcome])? == 0 {
            missing.push(id.to_string());
        }
    }
    match missing.as_slice() {
        [] => Ok(()),
        [id] => Err(Error::NotFound(format!("delivery {id}"))),
        ids => Err(Error::NotFound(format!("deliveries {}", ids.join(", ")))),
    }
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
