//! Audit log records: what an entry says, where it sits in its log, and how it is hashed.
//!
//! Each workspace has its own log (so a tenant's log can be verified, exported and pruned on its
//! own); entries with no workspace (a failed sign-in, a call with an unknown credential) go to the
//! instance log [`SYSTEM_LOG`].

use portcullis_domain::audit::{self, Frontier, Hash};
use portcullis_domain::{AuditEntryId, AuditSinkId, WorkspaceId};
use serde::Serialize;
use std::net::IpAddr;
use time::OffsetDateTime;

use portcullis_domain::api_key::IpNet;

/// The log of entries that belong to no workspace.
pub const SYSTEM_LOG: &str = "_system";

/// What an audit entry says: everything except its position and hashes. Never holds secrets:
/// `params` is redacted before it gets here.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditRecord {
    pub id: AuditEntryId,
    /// Microsecond precision (finer parts are dropped before hashing, as storage keeps µs).
    pub at: OffsetDateTime,
    pub workspace_id: Option<WorkspaceId>,
    /// `api.request`, `mcp.request`, `gateway.request`, `admin.request`, or a credential event
    /// such as `api_key.created`, `refresh_token.replayed`, `login.failed`.
    pub event: String,
    /// Who did it (events): `cli`, a key id, a user id, a trust policy id.
    pub actor: Option<String>,
    /// What it was done to (events): a key id, a grant id, a `jti`.
    pub subject: Option<String>,
    /// `api_key`, `access_token` or `service_token` (calls).
    pub credential_kind: Option<String>,
    /// The API key id or the token's `jti`.
    pub credential_id: Option<String>,
    pub user_id: Option<String>,
    pub client_id: Option<String>,
    pub ip: Option<IpAddr>,
    pub method: Option<String>,
    /// The route template (`/api/v1/contacts/{id}`).
    pub route: Option<String>,
    /// The concrete path (`/api/v1/contacts/ct_1`).
    pub path: Option<String>,
    /// The MCP tool called.
    pub tool: Option<String>,
    /// A JSON object: query and body parameters after redaction, or event details.
    pub params: String,
    pub status: Option<u16>,
    /// The error code of a refused or failed call (`insufficient_scope`, `rate_limited`, …).
    pub error: Option<String>,
    pub duration_us: Option<i64>,
    pub request_id: Option<String>,
    /// The route returns personal data.
    pub pii_access: bool,
}

impl AuditRecord {
    /// An empty record of `event` at `at` (truncated to microseconds).
    pub fn new(event: impl Into<String>, at: OffsetDateTime) -> Self {
        Self {
            id: AuditEntryId::generate(),
            at: truncate_to_micros(at),
            workspace_id: None,
            event: event.into(),
            actor: None,
            subject: None,
            credential_kind: None,
            credential_id: None,
            user_id: None,
            client_id: None,
            ip: None,
            method: None,
            route: None,
            path: None,
            tool: None,
            params: "{}".into(),
            status: None,
            error: None,
            duration_us: None,
            request_id: None,
            pii_access: false,
        }
    }

    /// The log this record belongs to: its workspace's, or the instance log.
    pub fn log(&self) -> &str {
        self.workspace_id.as_ref().map_or(SYSTEM_LOG, |w| w.as_str())
    }

    pub fn at_micros(&self) -> i64 {
        micros(self.at)
    }

    /// The bytes that are hashed: a JSON array of every field in a fixed order, with the entry's
    /// log and position, so no field can change and no entry can move without breaking its hash.
    pub fn canonical(&self, log: &str, seq: i64) -> Vec<u8> {
        #[derive(Serialize)]
        struct Canonical<'a>(
            u8,
            &'a str,
            i64,
            &'a str,
            i64,
            Option<&'a str>,
            &'a str,
            [Option<&'a str>; 6],
            Option<String>,
            [Option<&'a str>; 4],
            &'a str,
            Option<u16>,
            Option<&'a str>,
            Option<i64>,
            Option<&'a str>,
            bool,
        );
        let c = Canonical(
            1,
            log,
            seq,
            self.id.as_str(),
            self.at_micros(),
            self.workspace_id.as_ref().map(|w| w.as_str()),
            &self.event,
            [
                self.actor.as_deref(),
                self.subject.as_deref(),
                self.credential_kind.as_deref(),
                self.credential_id.as_deref(),
                self.user_id.as_deref(),
                self.client_id.as_deref(),
            ],
            self.ip.map(|ip| ip.to_string()),
            [self.method.as_deref(), self.route.as_deref(), self.path.as_deref(), self.tool.as_deref()],
            &self.params,
            self.status,
            self.error.as_deref(),
            self.duration_us,
            self.request_id.as_deref(),
            self.pii_access,
        );
        serde_json::to_vec(&c).expect("plain values serialize")
    }
}

/// An entry as stored: its record, its log and position, and its chain hashes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditEntry {
    pub log: String,
    /// 0-based position in the log (its Merkle leaf index).
    pub seq: i64,
    pub record: AuditRecord,
    pub prev_hash: Hash,
    pub hash: Hash,
}

impl AuditEntry {
    /// Chains `record` after `prev` at position `seq` of `log`.
    pub fn chain(log: &str, seq: i64, prev: Hash, record: AuditRecord) -> Self {
        let hash = audit::entry_hash(&prev, &record.canonical(log, seq));
        Self { log: log.to_owned(), seq, record, prev_hash: prev, hash }
    }

    /// The hash this entry should have, recomputed from its fields.
    pub fn expected_hash(&self) -> Hash {
        audit::entry_hash(&self.prev_hash, &self.record.canonical(&self.log, self.seq))
    }
}

/// The state of one log after its last append.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditHead {
    pub log: String,
    /// Number of entries ever appended (pruning does not lower it).
    pub size: i64,
    /// Hash of the last entry ([`audit::GENESIS`] when empty).
    pub head: Hash,
    pub frontier: Frontier,
    pub updated_at: OffsetDateTime,
}

/// A signed statement of a log's size and Merkle root (a C2SP checkpoint).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditCheckpoint {
    pub log: String,
    pub size: i64,
    pub root: Hash,
    /// Hash of entry `size - 1`, where verification resumes after pruning.
    pub head: Hash,
    /// The Merkle frontier at `size` (folds to `root`), to resume verification mid-log.
    pub frontier: Frontier,
    /// The signed note.
    pub note: String,
    pub created_at: OffsetDateTime,
}

/// Filters of an audit search; all optional except the log. Newest first.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AuditQuery {
    pub log: String,
    pub from: Option<OffsetDateTime>,
    pub to: Option<OffsetDateTime>,
    pub event: Option<String>,
    pub credential_id: Option<String>,
    pub credential_kind: Option<String>,
    pub user_id: Option<String>,
    pub client_id: Option<String>,
    pub ip: Option<IpNet>,
    /// A route template (with `{…}` parameters) matches `route`; anything else matches `path`.
    pub route: Option<String>,
    pub tool: Option<String>,
    /// Inclusive status range (`403..=403`, `400..=499`).
    pub status: Option<(u16, u16)>,
    pub pii: Option<bool>,
    /// Only credential events (no `*.request` call entries).
    pub events_only: bool,
    /// Entries whose parameters contain this exact JSON string value (a redacted value's keyed
    /// hash, `hmac:…`). Not indexed: it narrows what the other filters select.
    pub param_value: Option<String>,
    /// Continue after this (at µs, seq) position, exclusive.
    pub before: Option<(i64, i64)>,
    pub limit: i64,
}

/// A webhook that receives a workspace's audit entries.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditSink {
    pub id: AuditSinkId,
    pub workspace_id: WorkspaceId,
    pub url: String,
    /// The signing secret, sealed with the key-encryption key.
    pub secret_sealed: Vec<u8>,
    /// Entries with `seq < cursor` have been delivered.
    pub cursor: i64,
    pub created_at: OffsetDateTime,
    pub disabled_at: Option<OffsetDateTime>,
    /// Delivery state, for operators.
    pub failures: i32,
    pub last_error: Option<String>,
    pub last_delivery_at: Option<OffsetDateTime>,
}

/// Outcome of taking a sink's delivery lease.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SinkLease {
    Taken,
    HeldElsewhere,
}

/// Microseconds since the Unix epoch.
pub fn micros(t: OffsetDateTime) -> i64 {
    (t.unix_timestamp_nanos() / 1_000) as i64
}

pub fn from_micros(us: i64) -> Option<OffsetDateTime> {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(us) * 1_000).ok()
}

fn truncate_to_micros(t: OffsetDateTime) -> OffsetDateTime {
    from_micros(micros(t)).unwrap_or(t)
}

/// An address as 16 bytes (IPv4 as IPv4-mapped IPv6), so a CIDR is a byte range.
pub fn ip_key(ip: IpAddr) -> [u8; 16] {
    match ip {
        IpAddr::V4(v4) => v4.to_ipv6_mapped().octets(),
        IpAddr::V6(v6) => v6.octets(),
    }
}

/// The inclusive [`ip_key`] range of a network.
pub fn ip_key_range(net: &IpNet) -> ([u8; 16], [u8; 16]) {
    (ip_key(net.network()), ip_key(net.broadcast()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_field_and_the_position_are_hashed() {
        let mut r = AuditRecord::new("api.request", OffsetDateTime::UNIX_EPOCH);
        r.workspace_id = Some(WorkspaceId::from_string("ws_1".to_owned()));
        let base = AuditEntry::chain("ws_1", 0, audit::GENESIS, r.clone());
        assert_eq!(base.expected_hash(), base.hash);
        assert_ne!(AuditEntry::chain("ws_1", 1, audit::GENESIS, r.clone()).hash, base.hash);
        assert_ne!(AuditEntry::chain("ws_2", 0, audit::GENESIS, r.clone()).hash, base.hash);
        assert_ne!(AuditEntry::chain("ws_1", 0, [1; 32], r.clone()).hash, base.hash);
        type Edit = Box<dyn Fn(&mut AuditRecord)>;
        let edits: Vec<Edit> = vec![
            Box::new(|r| r.status = Some(200)),
            Box::new(|r| r.pii_access = true),
            Box::new(|r| r.params = "{\"a\":1}".into()),
            Box::new(|r| r.ip = Some("10.0.0.1".parse().unwrap())),
            Box::new(|r| r.tool = Some("x".into())),
            Box::new(|r| r.client_id = Some("x".into())),
            Box::new(|r| r.at += time::Duration::microseconds(1)),
        ];
        for edit in edits {
            let mut e = r.clone();
            edit(&mut e);
            assert_ne!(AuditEntry::chain("ws_1", 0, audit::GENESIS, e).hash, base.hash);
        }
    }

    #[test]
    fn cidr_is_a_byte_range() {
        let (lo, hi) = ip_key_range(&"10.1.0.0/16".parse().unwrap());
        let inside = ip_key("10.1.2.3".parse().unwrap());
        let outside = ip_key("10.2.0.0".parse().unwrap());
        assert!(lo <= inside && inside <= hi);
        assert!(!(lo <= outside && outside <= hi));
    }
}
