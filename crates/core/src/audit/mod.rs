//! The tamper-evident audit log: every guarded call and every credential event, chained,
//! checkpointed and signed.
//!
//! # Layout
//! - this file: [`AuditLog`], the handle the guard and the core write through; its appender
//!   (group commit from a channel) and its checkpointer.
//! - [`signer`]: the dedicated Ed25519 checkpoint key and C2SP signed notes.
//! - [`redact`]: PII redaction of parameters before they are stored.
//! - [`verify`]: recomputes a log's chain and Merkle roots against its signed checkpoints.
//! - [`search`]: filters given as text (CLI flags, query strings) turned into store queries,
//!   cursors, and the JSON view of an entry.
//! - [`retention`]: pruning past the searchable window, at checkpoint boundaries.
//! - [`export`]: gzip JSON Lines plus signed digests to S3-compatible stores or a directory.
//! - [`sinks`]: webhook delivery to SIEMs from the log itself (the durable outbox).
//!
//! # Decisions
//! - Writes go through one appender task per process: callers put records on a bounded channel
//!   and the appender commits whatever has queued up as one transaction (group commit), so a
//!   busy guard pays one commit per batch instead of one per call. Calls are recorded without
//!   waiting (`durability = "async"`, the default) or, with `"sync"`, answered only once their
//!   entry is committed. Credential events are always awaited: the operation reports success only
//!   once its entry is stored.
//! - A full channel makes callers wait (backpressure) rather than drop entries.
//! - Several processes append to the same logs; the database serialises appends on each log's
//!   head row, so the chain stays linear (see `portcullis_store_sql::audit`).

pub mod export;
pub mod redact;
pub mod retention;
pub mod search;
pub mod signer;
pub mod sinks;
pub mod verify;

use portcullis_domain::Clock;
use portcullis_store::{AuditCheckpoint, AuditRecord, AuditStore};
pub use redact::{RedactionRules, Redactor};
pub use signer::AuditSigner;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use time::Duration;
use tokio::sync::{mpsc, oneshot};

/// Largest number of records committed in one transaction.
pub const MAX_BATCH: usize = 2_000;
/// Records that may wait for the appender before writers are made to wait.
pub const QUEUE_CAPACITY: usize = 65_536;

/// Whether a guarded call waits for its entry to be committed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Durability {
    /// Answer at once; the entry is committed with the next batch (within milliseconds). A crash
    /// can lose entries still queued, never one that was acknowledged.
    #[default]
    Async,
    /// Answer only after the entry is committed (group commit keeps this affordable).
    Sync,
}

/// How the audit log behaves.
#[derive(Clone, Debug)]
pub struct AuditSettings {
    /// Record every guarded call (events are always recorded). Off only for benchmarks and for
    /// deployments that audit elsewhere.
    pub requests: bool,
    pub durability: Durability,
    /// How often each log with new entries gets a signed checkpoint.
    pub checkpoint_interval: Duration,
    /// The searchable window; older entries are pruned (signed checkpoints stay).
    pub retention: Duration,
    /// Request bodies up to this size are parsed and recorded (redacted); larger ones as size.
    pub body_limit: usize,
    pub redaction: RedactionRules,
    /// How often the webhook worker looks for new entries.
    pub sink_poll: std::time::Duration,
    /// The first retry delay of a failing sink (doubling, with jitter, up to 5 minutes).
    pub sink_retry_base: std::time::Duration,
}

impl Default for AuditSettings {
    fn default() -> Self {
        Self {
            requests: true,
            durability: Durability::Async,
            checkpoint_interval: Duration::seconds(60),
            retention: Duration::days(90),
            body_limit: 64 * 1024,
            redaction: RedactionRules::default(),
            sink_poll: std::time::Duration::from_secs(1),
            sink_retry_base: std::time::Duration::from_secs(1),
        }
    }
}

enum Msg {
    Record(Box<AuditRecord>, Option<oneshot::Sender<Result<(), String>>>),
    Flush(oneshot::Sender<()>),
}

/// The handle everything writes audit entries through. Cheap to share (`Arc`).
pub struct AuditLog {
    tx: mpsc::Sender<Msg>,
    pub settings: AuditSettings,
    pub redactor: Redactor,
    pub signer: AuditSigner,
    /// Log → size of its newest checkpoint made here (to skip logs with nothing new).
    checkpointed: Mutex<HashMap<String, i64>>,
}

impl AuditLog {
    /// Starts the appender for `store` and returns the handle. Must run inside Tokio.
    pub fn start<S: AuditStore + Send + Sync + 'static>(
        store: S,
        clock: Arc<dyn Clock>,
        settings: AuditSettings,
        redactor: Redactor,
        signer: AuditSigner,
    ) -> Arc<Self> {
        let (tx, rx) = mpsc::channel(QUEUE_CAPACITY);
        tokio::spawn(appender(store, clock, rx));
        Arc::new(Self { tx, settings, redactor, signer, checkpointed: Mutex::default() })
    }

    /// Queues a record of a call; waits only if the queue is full, or (sync durability) until
    /// it is committed.
    pub async fn record_call(&self, record: AuditRecord) {
        match self.settings.durability {
            Durability::Async => {
                if self.tx.send(Msg::Record(Box::new(record), None)).await.is_err() {
                    tracing::error!("audit appender stopped; a call was not recorded");
                }
            }
            Durability::Sync => {
                if let Err(e) = self.record(record).await {
                    tracing::error!(error = %e, "a call's audit entry could not be written");
                }
            }
        }
    }

    /// Queues a record and waits until it is committed.
    pub async fn record(&self, record: AuditRecord) -> Result<(), String> {
        let (ack, done) = oneshot::channel();
        self.tx.send(Msg::Record(Box::new(record), Some(ack))).await.map_err(|_| "audit appender stopped")?;
        done.await.map_err(|_| "audit appender stopped")?
    }

    /// Returns once everything queued before this call is committed (used at shutdown).
    pub async fn flush(&self) {
        let (ack, done) = oneshot::channel();
        if self.tx.send(Msg::Flush(ack)).await.is_ok() {
            let _ = done.await;
        }
    }

    /// Signs a checkpoint of every log that grew since this process last checkpointed it.
    pub async fn checkpoint<S: AuditStore>(
        &self,
        store: &S,
        now: time::OffsetDateTime,
    ) -> Result<Vec<AuditCheckpoint>, String> {
        let mut made = Vec::new();
        for head in store.audit_heads().await.map_err(|e| e.to_string())? {
            let done = self.checkpointed.lock().expect("not poisoned").get(&head.log).copied();
            if head.size == 0 || done.is_some_and(|d| d >= head.size) {
                continue;
            }
            let root = head.frontier.root();
            let cp = AuditCheckpoint {
                note: self.signer.sign_checkpoint(&head.log, head.size as u64, &root),
                log: head.log.clone(),
                size: head.size,
                root,
                head: head.head,
                frontier: head.frontier,
                created_at: now,
            };
            store.insert_audit_checkpoint(&cp).await.map_err(|e| e.to_string())?;
            self.checkpointed.lock().expect("not poisoned").insert(head.log, head.size);
            made.push(cp);
        }
        Ok(made)
    }
}

/// Commits queued records in batches until every sender is gone.
async fn appender<S: AuditStore>(store: S, clock: Arc<dyn Clock>, mut rx: mpsc::Receiver<Msg>) {
    let mut records = Vec::with_capacity(MAX_BATCH);
    let mut acks = Vec::new();
    let mut flushes = Vec::new();
    while let Some(first) = rx.recv().await {
        let mut next = Some(first);
        while let Some(msg) = next.take() {
            match msg {
                Msg::Record(r, ack) => {
                    records.push(*r);
                    acks.extend(ack);
                }
                Msg::Flush(f) => flushes.push(f),
            }
            if records.len() < MAX_BATCH {
                next = rx.try_recv().ok();
            }
        }
        if !records.is_empty() {
            let result = commit(&store, &*clock, &records).await;
            for ack in acks.drain(..) {
                let _ = ack.send(result.clone());
            }
            records.clear();
        }
        for f in flushes.drain(..) {
            let _ = f.send(());
        }
    }
}

/// One batch, retried a few times on failure (a busy database, a failover).
async fn commit<S: AuditStore>(store: &S, clock: &dyn Clock, records: &[AuditRecord]) -> Result<(), String> {
    let mut delay = std::time::Duration::from_millis(50);
    let mut attempt = 1;
    loop {
        match store.append_audit(records, clock.now()).await {
            Ok(_) => return Ok(()),
            Err(e) if attempt >= 5 => {
                tracing::error!(error = %e, entries = records.len(), "audit entries could not be written");
                return Err(format!("the audit log could not be written: {e}"));
            }
            Err(e) => {
                tracing::warn!(error = %e, attempt, "writing audit entries failed; retrying");
                tokio::time::sleep(delay).await;
                delay *= 3;
                attempt += 1;
            }
        }
    }
}
