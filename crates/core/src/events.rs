//! Who did something, and the record of what they did.
//!
//! Credential events (API key lifecycle, bundle and trust-policy changes, service-token mints,
//! grants, consent, sign-ins, refresh replays, token exchanges) are audit log entries: the same
//! chained, signed log as the guarded calls (see [`crate::audit`]). Recording is part of the
//! operation: an operation whose entry cannot be written fails.

use crate::audit::AuditLog;
use portcullis_domain::WorkspaceId;
use portcullis_store::{AuditRecord, AuditStore, StoreError};
use serde_json::Value;
use std::net::IpAddr;
use time::OffsetDateTime;

/// The credential or person behind an operation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Actor {
    /// `cli`, an API key id (`key_…`), a user id, or a trust policy id (`tp_…`).
    pub id: String,
    pub ip: Option<IpAddr>,
}

impl Actor {
    /// The operator at the command line.
    pub fn cli() -> Self {
        Self { id: "cli".into(), ip: None }
    }
}

/// Where events go: through the server's audit appender when there is one (group commit),
/// otherwise straight into the store (one-off CLI processes).
pub struct Writer<'a, S> {
    pub store: &'a S,
    pub audit: Option<&'a AuditLog>,
}

impl<S> Clone for Writer<'_, S> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<S> Copy for Writer<'_, S> {}

/// Appends a fully built record and waits until it is stored.
pub async fn write<S: AuditStore>(w: Writer<'_, S>, record: AuditRecord) -> Result<(), StoreError> {
    match w.audit {
        Some(log) => log.record(record).await.map_err(StoreError::Backend),
        None => {
            let now = record.at;
            w.store.append_audit(&[record], now).await.map(|_| ())
        }
    }
}

/// Appends an event of `kind` in `workspace` by `actor` about `subject`.
pub async fn record<S: AuditStore>(
    w: Writer<'_, S>,
    now: OffsetDateTime,
    workspace: &WorkspaceId,
    actor: &Actor,
    kind: &str,
    subject: Option<&str>,
    detail: Value,
) -> Result<(), StoreError> {
    let mut r = AuditRecord::new(kind, now);
    r.workspace_id = Some(workspace.clone());
    r.actor = Some(actor.id.clone());
    r.subject = subject.map(str::to_owned);
    r.ip = actor.ip;
    r.params = detail.to_string();
    write(w, r).await
}

/// A security or lifecycle event that did not come from the admin API (sign-ins, consent,
/// replays, revocations by users): `workspace` is `None` for the instance log.
pub fn entry(kind: &str, now: OffsetDateTime, workspace: Option<&WorkspaceId>) -> AuditRecord {
    let mut r = AuditRecord::new(kind, now);
    r.workspace_id = workspace.cloned();
    r
}

/// Records that a consumed code or refresh token was presented again and its family revoked
/// (`kind`: `authorization_code.replayed` or `refresh_token.replayed`).
pub async fn family_replayed<S: portcullis_store::Store>(
    cx: &crate::Cx<S>,
    family: &portcullis_domain::FamilyId,
    kind: &str,
) -> Result<(), StoreError> {
    let Some(f) = cx.store.family(family).await? else { return Ok(()) };
    let mut r = entry(kind, cx.now(), Some(&f.workspace_id));
    r.subject = Some(family.to_string());
    r.client_id = Some(f.client_id.to_string());
    r.user_id = f.user_id.map(|u| u.to_string());
    r.params = serde_json::json!({ "grant_id": f.grant_id.map(|g| g.to_string()), "family_revoked": true })
        .to_string();
    write(cx.events(), r).await
}
