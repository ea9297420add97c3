//! Export: gzip JSON Lines files plus one signed digest per file, to any S3-compatible store
//! (`s3://bucket/prefix`, configured by the usual `AWS_*` variables, `AWS_ENDPOINT` for
//! non-AWS stores) or a directory (`file:///dir`), through the `object_store` crate.
//!
//! Layout under the prefix: `<log>/<first seq>-<last seq>.jsonl.gz` and next to it
//! `….digest.json`. A digest (in the spirit of CloudTrail's digest files) names its file's
//! SHA-256, entry count, first and last position and hash, the newest signed checkpoint
//! covering the file, and the SHA-256 of the previous digest of the same log in this export, so
//! a missing file breaks the digest chain. It is signed with the audit checkpoint key
//! (Ed25519 over the digest without its `signature`).

use super::search::{entry_from_json, entry_json};
use super::signer::AuditSigner;
use super::signer::VerifierKey;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use flate2::Compression;
use flate2::read::GzDecoder;
use flate2::write::GzEncoder;
use futures::TryStreamExt;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use portcullis_store::{AuditEntry, AuditStore};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use std::io::{BufRead, BufReader, Write};
use time::OffsetDateTime;

pub const DEFAULT_BATCH: usize = 10_000;

/// The signed description of one exported file.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Digest {
    pub version: u32,
    pub log: String,
    pub file: String,
    pub file_sha256: String,
    pub entries: u64,
    pub first_seq: i64,
    pub last_seq: i64,
    pub first_prev_hash: String,
    pub last_hash: String,
    pub exported_at: String,
    /// The newest signed checkpoint at or beyond `last_seq + 1`, if one existed.
    pub checkpoint: Option<String>,
    /// SHA-256 of the previous digest of this log in the same export (`None` for the first).
    pub previous_digest_sha256: Option<String>,
    /// The key name of the signature.
    pub key: String,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub signature: Option<String>,
}

impl Digest {
    fn signed_bytes(&self) -> Vec<u8> {
        let mut unsigned = self.clone();
        unsigned.signature = None;
        serde_json::to_vec(&unsigned).expect("digest serialises")
    }
}

#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct Summary {
    pub entries: u64,
    pub files: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Checked {
    pub files: u64,
    pub entries: u64,
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Store options (`aws_endpoint`, `aws_allow_http`, …) beyond the `AWS_*` environment.
pub type Options = [(String, String)];

/// Opens `url` as an object store and the prefix within it; `extra` options override the
/// environment's.
pub fn open(url: &str, extra: &Options) -> Result<(Box<dyn ObjectStore>, Path), String> {
    let parsed = url::Url::parse(url).map_err(|e| format!("{url}: {e}"))?;
    if !matches!(parsed.scheme(), "s3" | "file") {
        return Err(format!("{url}: only s3:// and file:// destinations are supported"));
    }
    if parsed.scheme() == "file" {
        let dir = parsed.to_file_path().map_err(|_| format!("{url}: not a local path"))?;
        std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    }
    let mut opts = std::env::vars()
        .filter(|(k, _)| k.starts_with("AWS_"))
        .map(|(k, v)| (k.to_ascii_lowercase(), v))
        .collect::<Vec<_>>();
    opts.extend(extra.iter().cloned());
    object_store::parse_url_opts(&parsed, opts).map_err(|e| format!("{url}: {e}"))
}

/// Exports entries with `from <= at <= to` of `logs` (default: every log).
#[allow(clippy::too_many_arguments, reason = "each is a distinct export parameter")]
pub async fn export<S: AuditStore>(
    store_: &S,
    signer: &AuditSigner,
    now: OffsetDateTime,
    url: &str,
    extra: &Options,
    from: OffsetDateTime,
    to: OffsetDateTime,
    logs: Option<Vec<String>>,
    batch: usize,
) -> Result<Summary, String> {
    let e = |e: portcullis_store::StoreError| e.to_string();
    let batch = batch.clamp(1, 1_000_000);
    let (store, prefix) = open(url, extra)?;
    let logs = match logs {
        Some(l) => l,
        None => store_.audit_heads().await.map_err(e)?.into_iter().map(|h| h.log).collect(),
    };
    let mut summary = Summary { entries: 0, files: Vec::new() };
    for log in logs {
        let Some(mut next) = store_.audit_seq_at(&log, from).await.map_err(e)? else { continue };
        let checkpoints = store_.audit_checkpoints(&log).await.map_err(e)?;
        let mut previous: Option<String> = None;
        loop {
            let page = store_.audit_entries(&log, next, batch as i64).await.map_err(e)?;
            let chunk: Vec<&AuditEntry> = page.iter().take_while(|x| x.record.at <= to).collect();
            let (Some(first), Some(last)) = (chunk.first(), chunk.last()) else { break };
            let mut gz = GzEncoder::new(Vec::new(), Compression::default());
            for entry in &chunk {
                serde_json::to_writer(&mut gz, &entry_json(entry)).map_err(|e| e.to_string())?;
                gz.write_all(b"\n").map_err(|e| e.to_string())?;
            }
            let bytes = gz.finish().map_err(|e| e.to_string())?;
            let name = format!("{:012}-{:012}.jsonl.gz", first.seq, last.seq);
            let mut digest = Digest {
                version: 1,
                log: log.clone(),
                file: name.clone(),
                file_sha256: hex(&Sha256::digest(&bytes)),
                entries: chunk.len() as u64,
                first_seq: first.seq,
                last_seq: last.seq,
                first_prev_hash: hex(&first.prev_hash),
                last_hash: hex(&last.hash),
                exported_at: crate::rfc3339(now),
                checkpoint: checkpoints.iter().find(|c| c.size > last.seq).map(|c| c.note.clone()),
                previous_digest_sha256: previous.clone(),
                key: signer.name().to_owned(),
                signature: None,
            };
            digest.signature = Some(B64.encode(signer.sign_bytes(&digest.signed_bytes())));
            let digest_bytes = serde_json::to_vec_pretty(&digest).map_err(|e| e.to_string())?;
            previous = Some(hex(&Sha256::digest(&digest_bytes)));
            let dir = prefix.clone().join(log.as_str());
            put(&*store, &dir.clone().join(name.as_str()), bytes).await?;
            put(&*store, &dir.join(format!("{name}.digest.json").as_str()), digest_bytes).await?;
            summary.entries += chunk.len() as u64;
            summary.files.push(format!("{log}/{name}"));
            if chunk.len() < page.len() || page.len() < batch {
                break;
            }
            next = last.seq + 1;
        }
    }
    Ok(summary)
}

async fn put(store: &dyn ObjectStore, path: &Path, bytes: Vec<u8>) -> Result<(), String> {
    store.put(path, PutPayload::from(bytes)).await.map(|_| ()).map_err(|e| format!("writing {path}: {e}"))
}

async fn get(store: &dyn ObjectStore, path: &Path) -> Result<Vec<u8>, String> {
    let r = store.get(path).await.map_err(|e| format!("reading {path}: {e}"))?;
    Ok(r.bytes().await.map_err(|e| format!("reading {path}: {e}"))?.to_vec())
}

/// Checks every digest under `url`: signature, its file's hash and contents (each entry's hash
/// recomputed and chained), and the digest chain of each log.
pub async fn verify_export(url: &str, extra: &Options, key: &VerifierKey) -> Result<Checked, String> {
    let (store, prefix) = open(url, extra)?;
    let mut digests: Vec<Path> = store
        .list(Some(&prefix))
        .try_filter(|m| std::future::ready(m.location.as_ref().ends_with(".digest.json")))
        .map_ok(|m| m.location)
        .try_collect()
        .await
        .map_err(|e| format!("listing {url}: {e}"))?;
    digests.sort_by(|a, b| a.as_ref().cmp(b.as_ref()));
    if digests.is_empty() {
        return Err(format!("no digests under {url}"));
    }
    let mut checked = Checked { files: 0, entries: 0 };
    let mut previous: std::collections::HashMap<String, (String, i64)> = Default::default();
    for path in digests {
        let raw = get(&*store, &path).await?;
        let d: Digest = serde_json::from_slice(&raw).map_err(|e| format!("{path}: not a digest: {e}"))?;
        let bad = |why: String| format!("{path}: {why}");
        let sig =
            d.signature.as_deref().and_then(|s| B64.decode(s).ok()).ok_or_else(|| bad("unsigned".into()))?;
        if d.key != key.name || !key.verifies_bytes(&d.signed_bytes(), &sig) {
            return Err(bad("the signature does not verify with the audit key".into()));
        }
        match (previous.get(&d.log), &d.previous_digest_sha256) {
            (Some((prev_hash, prev_last)), Some(claimed))
                if claimed == prev_hash && d.first_seq == prev_last + 1 => {}
            (None, None) => {}
            _ => {
                return Err(bad(
                    "the digest chain of this log is broken (a file is missing or reordered)".into()
                ));
            }
        }
        previous.insert(d.log.clone(), (hex(&Sha256::digest(&raw)), d.last_seq));
        let file_path =
            Path::parse(path.as_ref().trim_end_matches(".digest.json")).map_err(|e| bad(e.to_string()))?;
        let bytes = get(&*store, &file_path).await?;
        if hex(&Sha256::digest(&bytes)) != d.file_sha256 {
            return Err(bad(format!("{} does not match its digest", d.file)));
        }
        let mut prev = d.first_prev_hash.clone();
        let mut n = 0u64;
        for (seq, line) in (d.first_seq..).zip(BufReader::new(GzDecoder::new(&bytes[..])).lines()) {
            let line = line.map_err(|e| bad(format!("{}: {e}", d.file)))?;
            let v: serde_json::Value =
                serde_json::from_str(&line).map_err(|e| bad(format!("{}: {e}", d.file)))?;
            let entry = entry_from_json(&v).ok_or_else(|| bad(format!("{}: an unreadable entry", d.file)))?;
            if entry.seq != seq || hex(&entry.prev_hash) != prev || entry.expected_hash() != entry.hash {
                return Err(bad(format!("{}: entry {seq} is altered or out of order", d.file)));
            }
            prev = hex(&entry.hash);
            n += 1;
        }
        if n != d.entries || prev != d.last_hash {
            return Err(bad(format!("{} holds {n} entries; its digest says {}", d.file, d.entries)));
        }
        checked.files += 1;
        checked.entries += n;
    }
    Ok(checked)
}
