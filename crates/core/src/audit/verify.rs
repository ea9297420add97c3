//! Verification: recompute a log from its rows and compare with its signed checkpoints.
//!
//! What is caught, and how:
//! - a field edited: the entry's hash no longer matches its content (`altered`);
//! - an entry moved (its position changed): same, the position is hashed (`altered`);
//! - an entry deleted: a gap in positions (`missing`), or the head or a checkpoint counts more
//!   entries than exist (`missing` at the end);
//! - an entry inserted: it does not chain to its predecessor or breaks the next link
//!   (`unlinked`/`altered`), or lies beyond the head (`extra`);
//! - history rewritten with every hash recomputed: the Merkle root no longer matches the signed
//!   checkpoint covering it (`checkpoint`); without the checkpoint key this cannot be repaired.
//!
//! Entries after the newest checkpoint are chained but not yet signed (`unsigned_tail`); the
//! checkpointer signs every log at least every `checkpoint_interval`.

use super::signer::VerifierKey;
use portcullis_domain::audit::{self, Frontier, GENESIS};
use portcullis_store::{AuditCheckpoint, AuditStore};
use serde::Serialize;
use time::OffsetDateTime;

const PAGE: i64 = 5_000;

/// The first thing found wrong in a log.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct Problem {
    /// The position of the first broken entry (or where entries are missing).
    pub seq: i64,
    pub entry_id: Option<String>,
    /// `altered`, `missing`, `unlinked`, `extra`, `checkpoint` or `head`.
    pub kind: &'static str,
    pub detail: String,
}

#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct LogReport {
    pub log: String,
    pub ok: bool,
    /// Entries ever appended.
    pub size: i64,
    /// The position verification started from (0, or a checkpoint after pruning or `--from`).
    pub start: i64,
    pub entries_checked: i64,
    pub checkpoints_checked: i64,
    /// Entries after the newest signed checkpoint.
    pub unsigned_tail: i64,
    pub problem: Option<Problem>,
}

/// Optional time window; verification still starts from a signed checkpoint at or before
/// `from`, and stops after the last entry at or before `to`.
#[derive(Clone, Copy, Debug, Default)]
pub struct Window {
    pub from: Option<OffsetDateTime>,
    pub to: Option<OffsetDateTime>,
}

fn problem(seq: i64, entry_id: Option<&str>, kind: &'static str, detail: String) -> Option<Problem> {
    Some(Problem { seq, entry_id: entry_id.map(str::to_owned), kind, detail })
}

/// Checks one checkpoint on its own: note well formed, signed by `key`, for this log, and
/// consistent with its row.
fn check_checkpoint(cp: &AuditCheckpoint, key: &VerifierKey) -> Result<(), String> {
    let note = audit::parse_checkpoint(&cp.note).ok_or("the note is not a well-formed checkpoint")?;
    if !key.verifies(&note) {
        return Err("the note's signature does not verify with the audit key".into());
    }
    if note.origin != format!("{}/{}", key.name, cp.log) {
        return Err(format!("the note is for another log ({})", note.origin));
    }
    if note.size != cp.size as u64 || note.root != cp.root {
        return Err("the stored size or root differs from the signed note".into());
    }
    if cp.frontier.size() != cp.size as u64 || cp.frontier.root() != cp.root {
        return Err("the stored frontier does not fold to the signed root".into());
    }
    Ok(())
}

/// Verifies `log` against `key`.
pub async fn verify_log<S: AuditStore>(
    store: &S,
    key: &VerifierKey,
    log: &str,
    window: Window,
) -> Result<LogReport, String> {
    let e = |e: portcullis_store::StoreError| e.to_string();
    let mut report = LogReport {
        log: log.to_owned(),
        ok: true,
        size: 0,
        start: 0,
        entries_checked: 0,
        checkpoints_checked: 0,
        unsigned_tail: 0,
        problem: None,
    };
    // Checkpoints before the head: the log is live, and a checkpoint is never ahead of the head
    // that was current when it was made.
    let checkpoints = store.audit_checkpoints(log).await.map_err(e)?;
    let Some(mut head) = store.audit_head(log).await.map_err(e)? else {
        return Ok(report);
    };
    report.size = head.size;
    for cp in &checkpoints {
        if let Err(why) = check_checkpoint(cp, key) {
            report.problem =
                problem(cp.size, None, "checkpoint", format!("checkpoint at size {}: {why}", cp.size));
            break;
        }
        report.checkpoints_checked += 1;
    }
    let signed = checkpoints.last().map_or(0, |c| c.size);
    if report.problem.is_none() && signed > head.size {
        report.problem = problem(
            head.size,
            None,
            "missing",
            format!("a checkpoint signed {signed} entries but the log's head says {}", head.size),
        );
    }

    // Where to start: the latest signed position at or before the first stored entry (or `from`).
    let first = store.audit_entries(log, 0, 1).await.map_err(e)?.first().map_or(head.size, |x| x.seq);
    let target = match window.from {
        Some(from) => store.audit_seq_at(log, from).await.map_err(e)?.unwrap_or(head.size).max(first),
        None => first,
    };
    let base = checkpoints.iter().rev().find(|c| c.size <= target);
    let (mut n, mut prev, mut frontier) = match base {
        Some(cp) => (cp.size, cp.head, cp.frontier.clone()),
        None => (0, GENESIS, Frontier::default()),
    };
    report.start = n;
    if report.problem.is_none() && first > n {
        report.problem = problem(n, None, "missing", format!("entries {n} to {} are missing", first - 1));
    }
    // Index of the next checkpoint to compare against (checkpoints are sorted by size).
    let mut next_cp = checkpoints.partition_point(|c| c.size <= n);
    let mut segment_start = n;
    let mut stopped_early = false;
    'pages: while report.problem.is_none() {
        let page = store.audit_entries(log, n, PAGE).await.map_err(e)?;
        if page.is_empty() {
            break;
        }
        for entry in &page {
            if window.to.is_some_and(|to| entry.record.at > to) {
                stopped_early = true;
                break 'pages;
            }
            let id = Some(entry.record.id.as_str());
            if entry.seq > n {
                report.problem =
                    problem(n, None, "missing", format!("entries {n} to {} are missing", entry.seq - 1));
                break 'pages;
            }
            if entry.seq >= head.size {
                // The log is live: this may have been appended after the head was read.
                if let Some(now) = store.audit_head(log).await.map_err(e)? {
                    head = now;
                }
            }
            if entry.seq >= head.size {
                report.problem = problem(
                    entry.seq,
                    id,
                    "extra",
                    format!("entry {} lies beyond the log's head ({} entries)", entry.seq, head.size),
                );
                break 'pages;
            }
            if entry.expected_hash() != entry.hash {
                report.problem = problem(
                    n,
                    id,
                    "altered",
                    format!("entry {n}'s content or position no longer matches its hash (edited or moved)"),
                );
                break 'pages;
            }
            if entry.prev_hash != prev {
                report.problem = problem(
                    n,
                    id,
                    "unlinked",
                    format!("entry {n} does not follow entry {} (inserted, reordered or replaced)", n - 1),
                );
                break 'pages;
            }
            frontier.push(entry.hash);
            prev = entry.hash;
            n += 1;
            report.entries_checked += 1;
            while let Some(cp) = checkpoints.get(next_cp).filter(|c| c.size <= n) {
                next_cp += 1;
                if cp.size == n && (frontier.root() != cp.root || prev != cp.head) {
                    report.problem = problem(
                        segment_start,
                        None,
                        "checkpoint",
                        format!(
                            "entries {segment_start} to {} differ from what the checkpoint at size {} signed \
                             (history rewritten)",
                            n - 1,
                            cp.size
                        ),
                    );
                    break 'pages;
                }
                segment_start = n;
            }
        }
    }
    if report.problem.is_none() && !stopped_early {
        if n < head.size {
            report.problem =
                problem(n, None, "missing", format!("entries {n} to {} are missing", head.size - 1));
        } else if prev != head.head || frontier.root() != head.frontier.root() {
            report.problem = problem(n, None, "head", "the log's head does not match its last entry".into());
        }
    }
    report.size = head.size;
    report.unsigned_tail = (head.size - signed).max(0);
    report.ok = report.problem.is_none();
    Ok(report)
}
