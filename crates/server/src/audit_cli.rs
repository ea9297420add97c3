//! `portcullis audit …`: search, verify, checkpoint, prune, export and webhook sinks of the
//! audit log, working on the same database as `serve`.

use clap::{Args, Subcommand};
use portcullis_core::Cx;
use portcullis_core::audit::search::{self, SearchParams};
use portcullis_core::audit::signer::VerifierKey;
use portcullis_core::audit::verify::{self, Window};
use portcullis_core::audit::{export, retention, sinks};
use portcullis_store::{SYSTEM_LOG, Store};
use serde_json::{Value, json};

#[derive(Subcommand, Debug)]
pub enum AuditCmd {
    /// Search a workspace's audit log, newest first.
    Search(Box<SearchArgs>),
    /// Recompute the hash chain and Merkle roots and check every signed checkpoint; exits
    /// non-zero and names the first broken entry if anything was edited, deleted, reordered or
    /// inserted.
    Verify {
        /// Only this workspace's log (default: every log, including the instance log).
        #[arg(long, value_name = "SLUG")]
        workspace: Option<String>,
        /// Start from the signed checkpoint at or before this time (RFC 3339 or YYYY-MM-DD).
        #[arg(long)]
        from: Option<String>,
        /// Stop after the last entry at or before this time.
        #[arg(long)]
        to: Option<String>,
        /// Pin the checkpoint key (a C2SP verifier key, as `audit public-key` prints) instead
        /// of trusting the one in this database.
        #[arg(long, value_name = "VERIFIER_KEY")]
        key: Option<String>,
    },
    /// Sign a checkpoint of every log that grew (the server does this every interval).
    Checkpoint,
    /// Delete entries older than the retention window (signed checkpoints stay).
    Prune {
        /// Override the configured retention, e.g. 30d.
        #[arg(long, value_name = "DURATION")]
        retention: Option<String>,
    },
    /// Print the keyed hash a redacted value is stored as, to search for it.
    Hash { value: String },
    /// Print the checkpoint key as a C2SP verifier key.
    #[command(name = "public-key")]
    PublicKey,
    /// Write entries as gzip JSON Lines plus a signed digest per batch to s3://bucket/prefix
    /// (any S3-compatible store) or file:///dir.
    Export {
        #[arg(long)]
        from: String,
        #[arg(long)]
        to: String,
        #[arg(long = "to-url", value_name = "URL")]
        to_url: String,
        /// Only this workspace (default: every workspace and the instance log).
        #[arg(long, value_name = "SLUG")]
        workspace: Option<String>,
        /// Entries per file.
        #[arg(long, default_value_t = export::DEFAULT_BATCH)]
        batch: usize,
    },
    /// Check an export: every file against its digest, every digest's signature.
    #[command(name = "verify-export")]
    VerifyExport {
        #[arg(long, value_name = "URL")]
        url: String,
        #[arg(long, value_name = "VERIFIER_KEY")]
        key: Option<String>,
    },
    /// Webhook sinks that stream a workspace's entries to a SIEM.
    #[command(subcommand)]
    Sink(SinkCmd),
}

#[derive(Subcommand, Debug)]
pub enum SinkCmd {
    /// Add a sink; its signing secret is printed once.
    Add {
        #[arg(long, value_name = "SLUG")]
        workspace: String,
        #[arg(long)]
        url: String,
        /// Deliver entries from now on (default) or the whole retained log (`--from-start`).
        #[arg(long)]
        from_start: bool,
    },
    List {
        #[arg(long, value_name = "SLUG")]
        workspace: Option<String>,
    },
    /// Stop delivering to a sink.
    Remove { id: String },
}

#[derive(Args, Debug)]
pub struct SearchArgs {
    #[arg(long, value_name = "SLUG", required_unless_present = "system")]
    pub workspace: Option<String>,
    /// Search the instance log (sign-ins, calls with unknown credentials) instead.
    #[arg(long, conflicts_with = "workspace")]
    pub system: bool,
    #[arg(long)]
    pub from: Option<String>,
    #[arg(long)]
    pub to: Option<String>,
    /// An API key id or a token's jti.
    #[arg(long)]
    pub credential: Option<String>,
    /// api_key, access_token or service_token.
    #[arg(long)]
    pub kind: Option<String>,
    #[arg(long)]
    pub user: Option<String>,
    #[arg(long)]
    pub client: Option<String>,
    /// An address or CIDR.
    #[arg(long)]
    pub ip: Option<String>,
    /// A route template or concrete path.
    #[arg(long)]
    pub route: Option<String>,
    #[arg(long)]
    pub tool: Option<String>,
    /// 403 or 4xx.
    #[arg(long)]
    pub status: Option<String>,
    /// Only calls of routes that return personal data.
    #[arg(long)]
    pub pii: bool,
    /// An event name (api.request, api_key.revoked, login.failed, …).
    #[arg(long)]
    pub event: Option<String>,
    #[arg(long)]
    pub limit: Option<i64>,
    #[arg(long)]
    pub cursor: Option<String>,
    /// Entries whose (redacted) parameters hold this value, e.g. an email address: it is hashed
    /// the way redaction stored it. Not indexed; combine with other filters.
    #[arg(long)]
    pub value: Option<String>,
}

async fn log_of<S: Store>(cx: &Cx<S>, slug: &str) -> Result<String, String> {
    if slug == SYSTEM_LOG {
        return Ok(SYSTEM_LOG.into());
    }
    Ok(cx.admin().workspace(slug).await.map_err(|e| e.to_string())?.id.to_string())
}

fn emit(json: bool, value: Value, human: String) {
    if json {
        println!("{value}");
    } else {
        println!("{human}");
    }
}

pub async fn run<S: Store>(cx: &Cx<S>, cmd: &AuditCmd, json: bool) -> Result<(), String> {
    match cmd {
        AuditCmd::Search(a) => {
            let log = match &a.workspace {
                Some(slug) => log_of(cx, slug).await?,
                None => SYSTEM_LOG.into(),
            };
            let params = SearchParams {
                from: a.from.clone(),
                to: a.to.clone(),
                credential: a.credential.clone(),
                kind: a.kind.clone(),
                user: a.user.clone(),
                client: a.client.clone(),
                ip: a.ip.clone(),
                route: a.route.clone(),
                tool: a.tool.clone(),
                status: a.status.clone(),
                pii: a.pii.then_some(true),
                event: a.event.clone(),
                limit: a.limit,
                cursor: a.cursor.clone(),
                value: a.value.clone(),
            };
            let q = search::build_query(&log, &params, &|v| cx.audit.redactor.pseudonym(v))?;
            let entries = cx.store.search_audit(&q).await.map_err(|e| e.to_string())?;
            let next = (entries.len() as i64 == q.limit)
                .then(|| entries.last().map(search::encode_cursor))
                .flatten();
            let lines: Vec<String> = entries
                .iter()
                .map(|e| {
                    let r = &e.record;
                    format!(
                        "{}  {:<22} {:>3}  {:<14} {:<32} {:<6} {}{}",
                        portcullis_core::rfc3339(r.at),
                        r.event,
                        r.status.map_or("-".into(), |s| s.to_string()),
                        r.credential_kind.as_deref().or(r.actor.as_deref()).unwrap_or("-"),
                        r.credential_id.as_deref().or(r.subject.as_deref()).unwrap_or("-"),
                        r.method.as_deref().unwrap_or(""),
                        r.path.as_deref().unwrap_or(""),
                        r.tool.as_deref().map(|t| format!(" tool={t}")).unwrap_or_default(),
                    )
                })
                .collect();
            let mut human = if lines.is_empty() { "No entries match.".to_owned() } else { lines.join("\n") };
            if let Some(c) = &next {
                human.push_str(&format!("\nMore: --cursor {c}"));
            }
            emit(
                json,
                json!({ "entries": entries.iter().map(search::entry_json).collect::<Vec<_>>(), "next_cursor": next }),
                human,
            );
        }
        AuditCmd::Verify { workspace, from, to, key } => {
            let key = match key {
                Some(k) => VerifierKey::parse(k)?,
                None => VerifierKey::of(&cx.audit.signer),
            };
            let window = Window {
                from: from.as_deref().map(|s| search::parse_time(s, false)).transpose()?,
                to: to.as_deref().map(|s| search::parse_time(s, true)).transpose()?,
            };
            let logs: Vec<String> = match workspace {
                Some(slug) => vec![log_of(cx, slug).await?],
                None => cx
                    .store
                    .audit_heads()
                    .await
                    .map_err(|e| e.to_string())?
                    .into_iter()
                    .map(|h| h.log)
                    .collect(),
            };
            let mut reports = Vec::new();
            for log in &logs {
                reports.push(verify::verify_log(&cx.store, &key, log, window).await?);
            }
            let ok = reports.iter().all(|r| r.ok);
            let human = reports
                .iter()
                .map(|r| match &r.problem {
                    None => format!(
                        "ok      {}: {} entries checked from {}, {} checkpoints, {} not yet signed",
                        r.log, r.entries_checked, r.start, r.checkpoints_checked, r.unsigned_tail
                    ),
                    Some(p) => format!(
                        "BROKEN  {}: first broken entry {}{} ({}): {}",
                        r.log,
                        p.seq,
                        p.entry_id.as_deref().map(|i| format!(" [{i}]")).unwrap_or_default(),
                        p.kind,
                        p.detail
                    ),
                })
                .collect::<Vec<_>>()
                .join("\n");
            let human = if reports.is_empty() { "The audit log is empty.".to_owned() } else { human };
            emit(json, json!({ "ok": ok, "verifier_key": audit_key(&key), "logs": reports }), human);
            if !ok {
                return Err("the audit log failed verification".into());
            }
        }
        AuditCmd::Checkpoint => {
            cx.audit.flush().await;
            let made = cx.audit.checkpoint(&cx.store, cx.now()).await?;
            let human =
                made.iter().map(|c| format!("{} at size {}", c.log, c.size)).collect::<Vec<_>>().join("\n");
            emit(
                json,
                json!({ "checkpoints": made.iter().map(|c| json!({ "log": c.log, "size": c.size, "note": c.note })).collect::<Vec<_>>() }),
                if made.is_empty() { "Every log is already checkpointed.".into() } else { human },
            );
        }
        AuditCmd::Prune { retention } => {
            let keep = match retention {
                Some(r) => portcullis_core::parse_duration(r).map_err(|e| format!("--retention: {e}"))?,
                None => cx.settings.audit.retention,
            };
            let pruned = retention::prune(&cx.store, cx.now(), keep).await?;
            let human = pruned
                .iter()
                .map(|p| format!("{}: {} entries before {} deleted", p.log, p.deleted, p.below))
                .collect::<Vec<_>>()
                .join("\n");
            emit(
                json,
                json!({ "pruned": pruned }),
                if pruned.is_empty() { "Nothing to prune.".into() } else { human },
            );
        }
        AuditCmd::Hash { value } => {
            let h = cx.audit.redactor.pseudonym(value);
            emit(json, json!({ "hash": h }), h.clone());
        }
        AuditCmd::PublicKey => {
            let k = cx.audit.signer.verifier_key();
            emit(json, json!({ "verifier_key": k }), k.clone());
        }
        AuditCmd::Export { from, to, to_url, workspace, batch } => {
            let logs = match workspace {
                Some(slug) => Some(vec![log_of(cx, slug).await?]),
                None => None,
            };
            let from = search::parse_time(from, false).map_err(|e| format!("--from: {e}"))?;
            let to = search::parse_time(to, true).map_err(|e| format!("--to: {e}"))?;
            let summary =
                export::export(&cx.store, &cx.audit.signer, cx.now(), to_url, &[], from, to, logs, *batch)
                    .await?;
            let human = format!(
                "Exported {} entries in {} files to {}",
                summary.entries,
                summary.files.len(),
                to_url
            );
            emit(json, serde_json::to_value(&summary).map_err(|e| e.to_string())?, human);
        }
        AuditCmd::VerifyExport { url, key } => {
            let key = match key {
                Some(k) => VerifierKey::parse(k)?,
                None => VerifierKey::of(&cx.audit.signer),
            };
            let checked = export::verify_export(url, &[], &key).await?;
            emit(
                json,
                json!({ "ok": true, "files": checked.files, "entries": checked.entries }),
                format!(
                    "ok: {} files, {} entries, every digest signed and matching",
                    checked.files, checked.entries
                ),
            );
        }
        AuditCmd::Sink(SinkCmd::Add { workspace, url, from_start }) => {
            let ws = cx.admin().workspace(workspace).await.map_err(|e| e.to_string())?;
            let (sink, secret) = sinks::add(cx, &ws.id, url, *from_start).await.map_err(|e| e.to_string())?;
            emit(
                json,
                json!({ "sink": sinks::view(&sink), "secret": secret }),
                format!("Added sink {} for {}\nSigning secret (shown once): {secret}", sink.id, ws.slug),
            );
        }
        AuditCmd::Sink(SinkCmd::List { workspace }) => {
            let ws = match workspace {
                Some(slug) => Some(cx.admin().workspace(slug).await.map_err(|e| e.to_string())?.id),
                None => None,
            };
            let list = cx.store.list_audit_sinks(ws.as_ref()).await.map_err(|e| e.to_string())?;
            let human = list
                .iter()
                .map(|s| {
                    format!(
                        "{}  {}  delivered up to {}  {}",
                        s.id,
                        s.url,
                        s.cursor,
                        if s.disabled_at.is_some() {
                            "removed".to_owned()
                        } else {
                            format!("failures {}", s.failures)
                        }
                    )
                })
                .collect::<Vec<_>>()
                .join("\n");
            emit(
                json,
                json!({ "sinks": list.iter().map(sinks::view).collect::<Vec<_>>() }),
                if list.is_empty() { "No sinks.".into() } else { human },
            );
        }
        AuditCmd::Sink(SinkCmd::Remove { id }) => {
            let removed = cx
                .store
                .disable_audit_sink(&portcullis_domain::AuditSinkId::from_string(id.as_str()), cx.now())
                .await
                .map_err(|e| e.to_string())?;
            if !removed {
                return Err(format!("no active sink {id}"));
            }
            emit(json, json!({ "removed": id }), format!("Removed sink {id}"));
        }
    }
    Ok(())
}

fn audit_key(k: &VerifierKey) -> String {
    portcullis_domain::audit::verifier_key(&k.name, &k.public_key)
}
