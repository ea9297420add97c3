//! Pruning entries older than the searchable window.
//!
//! A log is only ever cut at the size of one of its signed checkpoints: the checkpoint keeps
//! the hash of the last pruned entry and the Merkle frontier, so the entries that remain still
//! verify against it and every later checkpoint. Entries past the window but after the newest
//! suitable checkpoint wait for the next one.

use portcullis_store::AuditStore;
use serde::Serialize;
use time::{Duration, OffsetDateTime};

#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct Pruned {
    pub log: String,
    /// Entries before this position are gone.
    pub below: i64,
    pub deleted: u64,
}

/// Prunes every log to `retention` before `now`.
pub async fn prune<S: AuditStore>(
    store: &S,
    now: OffsetDateTime,
    retention: Duration,
) -> Result<Vec<Pruned>, String> {
    let e = |e: portcullis_store::StoreError| e.to_string();
    let cutoff = now - retention;
    let mut out = Vec::new();
    for head in store.audit_heads().await.map_err(e)? {
        // The first entry to keep; everything before it is past the window.
        let keep_from = store.audit_seq_at(&head.log, cutoff).await.map_err(e)?.unwrap_or(head.size);
        let Some(cp) = store
            .audit_checkpoints(&head.log)
            .await
            .map_err(e)?
            .into_iter()
            .rev()
            .find(|c| c.size <= keep_from)
        else {
            continue;
        };
        let deleted = store.prune_audit(&head.log, cp.size).await.map_err(e)?;
        if deleted > 0 {
            tracing::info!(log = %head.log, below = cp.size, deleted, "pruned audit entries past retention");
            out.push(Pruned { log: head.log, below: cp.size, deleted });
        }
    }
    Ok(out)
}
