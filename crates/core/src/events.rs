//! Who did something, and the record of what they did.
//!
//! Events are written for operations an operator must be able to trace later: API key
//! lifecycle, bundle and trust-policy changes, and every service-token mint (the tokens themselves
//! are never stored). Recording is best effort for reads but part of the operation for writes: a
//! mint whose event cannot be written fails.

use portcullis_domain::{EventId, WorkspaceId};
use portcullis_store::{Event, EventStore, StoreError};
use serde_json::Value;
use std::net::IpAddr;
use time::OffsetDateTime;

/// The credential or person behind an operation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Actor {
    /// `cli`, an API key id (`key_…`), or a trust policy id (`tp_…`).
    pub id: String,
    pub ip: Option<IpAddr>,
}

impl Actor {
    /// The operator at the command line.
    pub fn cli() -> Self {
        Self { id: "cli".into(), ip: None }
    }
}

/// Appends an event.
pub async fn record<S: EventStore>(
    store: &S,
    now: OffsetDateTime,
    workspace: &WorkspaceId,
    actor: &Actor,
    kind: &str,
    subject: Option<&str>,
    detail: Value,
) -> Result<(), StoreError> {
    store
        .record_event(&Event {
            id: EventId::generate(),
            workspace_id: workspace.clone(),
            kind: kind.to_owned(),
            actor: actor.id.clone(),
            subject: subject.map(str::to_owned),
            detail: detail.to_string(),
            ip: actor.ip.map(|ip| ip.to_string()),
            at: now,
        })
        .await
}
