//! Audit searches as users write them (CLI flags, query-string parameters) and the JSON view of
//! an entry, shared by `portcullis audit search` and `GET /api/v1/audit`.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use portcullis_store::{AuditEntry, AuditQuery, IpNet};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use time::format_description::well_known::Rfc3339;
use time::{Date, OffsetDateTime, Time};

pub const DEFAULT_LIMIT: i64 = 50;
pub const MAX_LIMIT: i64 = 1_000;

/// Search filters as text.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct SearchParams {
    /// Entries at or after this time (RFC 3339, or a date `YYYY-MM-DD` meaning its start, UTC).
    pub from: Option<String>,
    /// Entries at or before this time (RFC 3339, or a date meaning its end, UTC).
    pub to: Option<String>,
    /// An API key id or a token's `jti`.
    pub credential: Option<String>,
    /// Credential kind: `api_key`, `access_token` or `service_token`.
    pub kind: Option<String>,
    pub user: Option<String>,
    pub client: Option<String>,
    /// An address or a CIDR (`10.0.0.0/8`, `2001:db8::/32`).
    pub ip: Option<String>,
    /// A route template with parameters (`/api/v1/contacts/{id}`) or a concrete path
    /// (`/api/v1/contacts/ct_1`, `/api/v1/contacts`).
    pub route: Option<String>,
    /// An MCP tool name.
    pub tool: Option<String>,
    /// A status (`403`) or a class (`4xx`).
    pub status: Option<String>,
    /// Only entries of routes that return personal data (`true`) or only others (`false`).
    pub pii: Option<bool>,
    /// An event name (`api.request`, `api_key.revoked`, `login.failed`, …).
    pub event: Option<String>,
    /// At most this many entries (default 50, at most 1000).
    pub limit: Option<i64>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
    /// Entries whose parameters hold this value as a keyed hash (an email, a phone number, …):
    /// the server hashes it as redaction did. Combine with other filters; it is not indexed.
    pub value: Option<String>,
}

/// Parses a time bound: RFC 3339, or a date (its first or last microsecond, UTC).
pub fn parse_time(s: &str, end_of_day: bool) -> Result<OffsetDateTime, String> {
    if let Ok(t) = OffsetDateTime::parse(s, &Rfc3339) {
        return Ok(t);
    }
    let fmt = time::macros::format_description!("[year]-[month]-[day]");
    let d =
        Date::parse(s, &fmt).map_err(|_| format!("{s:?} is not an RFC 3339 time or a YYYY-MM-DD date"))?;
    let t =
        if end_of_day { Time::from_hms_micro(23, 59, 59, 999_999).expect("valid") } else { Time::MIDNIGHT };
    Ok(d.with_time(t).assume_utc())
}

/// `403` → 403..=403; `4xx` → 400..=499.
pub fn parse_status(s: &str) -> Result<(u16, u16), String> {
    let bad = || format!("{s:?} is not a status (403) or a status class (4xx)");
    let lower = s.trim().to_ascii_lowercase();
    if let Some(class) = lower.strip_suffix("xx") {
        let c: u16 = class.parse().map_err(|_| bad())?;
        if !(1..=5).contains(&c) {
            return Err(bad());
        }
        return Ok((c * 100, c * 100 + 99));
    }
    let n: u16 = lower.parse().map_err(|_| bad())?;
    if !(100..=599).contains(&n) {
        return Err(bad());
    }
    Ok((n, n))
}

pub fn parse_ip(s: &str) -> Result<IpNet, String> {
    s.parse::<IpNet>()
        .or_else(|_| s.parse::<std::net::IpAddr>().map(IpNet::from))
        .map_err(|_| format!("{s:?} is not an IP address or CIDR"))
}

pub fn encode_cursor(e: &AuditEntry) -> String {
    B64.encode(format!("{}.{}", e.record.at_micros(), e.seq))
}

fn decode_cursor(s: &str) -> Result<(i64, i64), String> {
    let bad = || "the cursor is not one this server returned".to_owned();
    let raw = String::from_utf8(B64.decode(s).map_err(|_| bad())?).map_err(|_| bad())?;
    let (at, seq) = raw.split_once('.').ok_or_else(bad)?;
    Ok((at.parse().map_err(|_| bad())?, seq.parse().map_err(|_| bad())?))
}

const KINDS: &[&str] = &["api_key", "access_token", "service_token"];

/// The store query for `params` over `log`; errors name the offending parameter. `pseudonym`
/// hashes a `value` filter the way redaction stored it.
pub fn build_query(
    log: &str,
    p: &SearchParams,
    pseudonym: &dyn Fn(&str) -> String,
) -> Result<AuditQuery, String> {
    let limit = p.limit.unwrap_or(DEFAULT_LIMIT);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(format!("limit must be between 1 and {MAX_LIMIT}"));
    }
    if let Some(k) = &p.kind
        && !KINDS.contains(&k.as_str())
    {
        return Err(format!("kind must be one of {}", KINDS.join(", ")));
    }
    let from =
        p.from.as_deref().map(|s| parse_time(s, false)).transpose().map_err(|e| format!("from: {e}"))?;
    let to = p.to.as_deref().map(|s| parse_time(s, true)).transpose().map_err(|e| format!("to: {e}"))?;
    if let (Some(f), Some(t)) = (from, to)
        && f > t
    {
        return Err("from is after to".into());
    }
    Ok(AuditQuery {
        log: log.to_owned(),
        from,
        to,
        event: p.event.clone(),
        credential_id: p.credential.clone(),
        credential_kind: p.kind.clone(),
        user_id: p.user.clone(),
        client_id: p.client.clone(),
        ip: p.ip.as_deref().map(parse_ip).transpose().map_err(|e| format!("ip: {e}"))?,
        route: p.route.clone(),
        tool: p.tool.clone(),
        status: p.status.as_deref().map(parse_status).transpose().map_err(|e| format!("status: {e}"))?,
        pii: p.pii,
        events_only: false,
        param_value: p.value.as_deref().map(pseudonym),
        before: p.cursor.as_deref().map(decode_cursor).transpose().map_err(|e| format!("cursor: {e}"))?,
        limit,
    })
}

fn hex(h: &[u8]) -> String {
    h.iter().map(|b| format!("{b:02x}")).collect()
}

/// The JSON form of an entry (search results, exports, webhooks).
pub fn entry_json(e: &AuditEntry) -> Value {
    let r = &e.record;
    json!({
        "id": r.id.as_str(),
        "log": e.log,
        "seq": e.seq,
        "at": r.at.format(&Rfc3339).unwrap_or_default(),
        "workspace_id": r.workspace_id.as_ref().map(|w| w.as_str()),
        "event": r.event,
        "actor": r.actor,
        "subject": r.subject,
        "credential_kind": r.credential_kind,
        "credential_id": r.credential_id,
        "user_id": r.user_id,
        "client_id": r.client_id,
        "ip": r.ip.map(|i| i.to_string()),
        "method": r.method,
        "route": r.route,
        "path": r.path,
        "tool": r.tool,
        "params": serde_json::from_str::<Value>(&r.params).unwrap_or(Value::String(r.params.clone())),
        "status": r.status,
        "error": r.error,
        "duration_us": r.duration_us,
        "request_id": r.request_id,
        "pii_access": r.pii_access,
        "prev_hash": hex(&e.prev_hash),
        "hash": hex(&e.hash),
    })
}

fn unhex(s: &str) -> Option<[u8; 32]> {
    if s.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, b) in out.iter_mut().enumerate() {
        *b = u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

/// Reads back an entry from its [`entry_json`] form (exports, webhooks), so its hash can be
/// recomputed by whoever holds it.
pub fn entry_from_json(v: &Value) -> Option<AuditEntry> {
    let s = |k: &str| v.get(k).and_then(Value::as_str).map(str::to_owned);
    let mut r = portcullis_store::AuditRecord::new(
        s("event")?,
        OffsetDateTime::parse(v.get("at")?.as_str()?, &Rfc3339).ok()?,
    );
    r.id = portcullis_domain::AuditEntryId::from_string(s("id")?);
    r.workspace_id = s("workspace_id").map(portcullis_domain::WorkspaceId::from_string);
    r.actor = s("actor");
    r.subject = s("subject");
    r.credential_kind = s("credential_kind");
    r.credential_id = s("credential_id");
    r.user_id = s("user_id");
    r.client_id = s("client_id");
    r.ip = s("ip").map(|i| i.parse()).transpose().ok()?;
    r.method = s("method");
    r.route = s("route");
    r.path = s("path");
    r.tool = s("tool");
    r.params = match v.get("params")? {
        Value::String(raw) => raw.clone(),
        other => other.to_string(),
    };
    r.status = v.get("status").and_then(Value::as_u64).map(|n| n as u16);
    r.error = s("error");
    r.duration_us = v.get("duration_us").and_then(Value::as_i64);
    r.request_id = s("request_id");
    r.pii_access = v.get("pii_access")?.as_bool()?;
    Some(AuditEntry {
        log: s("log")?,
        seq: v.get("seq")?.as_i64()?,
        record: r,
        prev_hash: unhex(v.get("prev_hash")?.as_str()?)?,
        hash: unhex(v.get("hash")?.as_str()?)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_times_and_addresses_parse() {
        assert_eq!(parse_status("403"), Ok((403, 403)));
        assert_eq!(parse_status("4xx"), Ok((400, 499)));
        assert_eq!(parse_status("5XX"), Ok((500, 599)));
        assert!(parse_status("9xx").is_err() && parse_status("abc").is_err() && parse_status("42").is_err());
        assert_eq!(parse_time("2026-02-01", false).unwrap().to_string(), "2026-02-01 0:00:00.0 +00:00:00");
        assert_eq!(parse_time("2026-02-28", true).unwrap().microsecond(), 999_999);
        assert!(parse_time("2026-02-01T10:00:00+01:00", false).is_ok());
        assert!(parse_time("yesterday", false).is_err());
        assert_eq!(parse_ip("10.0.0.1").unwrap().to_string(), "10.0.0.1/32");
        assert_eq!(parse_ip("10.0.0.0/8").unwrap().to_string(), "10.0.0.0/8");
        assert!(parse_ip("10.0.0.0/33").is_err());
    }

    #[test]
    fn bad_parameters_are_named() {
        let bad = |p: SearchParams| build_query("ws_1", &p, &|v| v.to_owned()).unwrap_err();
        assert!(bad(SearchParams { limit: Some(0), ..Default::default() }).contains("limit"));
        assert!(bad(SearchParams { kind: Some("cookie".into()), ..Default::default() }).contains("kind"));
        assert!(bad(SearchParams { cursor: Some("!!".into()), ..Default::default() }).contains("cursor"));
        assert!(
            bad(SearchParams {
                from: Some("2026-03-01".into()),
                to: Some("2026-02-01".into()),
                ..Default::default()
            })
            .contains("after")
        );
    }
}
