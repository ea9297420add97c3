//! Column values to validated domain types.

use portcullis_domain::{Email, RedirectUri, ScopeSet, Slug, TokenHash};
use portcullis_store::{StoreError, StoreResult};
use time::OffsetDateTime;

pub fn time(secs: i64) -> StoreResult<OffsetDateTime> {
    OffsetDateTime::from_unix_timestamp(secs)
        .map_err(|e| StoreError::Corrupt(format!("timestamp {secs}: {e}")))
}

pub fn slug(s: String) -> StoreResult<Slug> {
    Slug::parse(&s).map_err(|e| StoreError::Corrupt(e.0))
}

pub fn email(s: String) -> StoreResult<Email> {
    Email::parse(&s).map_err(|e| StoreError::Corrupt(e.0))
}

pub fn scopes(s: String) -> StoreResult<ScopeSet> {
    ScopeSet::parse(&s).map_err(|e| StoreError::Corrupt(e.0))
}

pub fn hash(b: &[u8]) -> StoreResult<TokenHash> {
    TokenHash::from_bytes(b).ok_or_else(|| StoreError::Corrupt("hash is not 32 bytes".into()))
}

pub fn words(s: String) -> Vec<String> {
    s.split(' ').filter(|w| !w.is_empty()).map(str::to_owned).collect()
}

pub fn redirect_uris(s: String) -> StoreResult<Vec<RedirectUri>> {
    serde_json::from_str(&s).map_err(|e| StoreError::Corrupt(format!("redirect_uris: {e}")))
}

pub fn redirect_uris_json(uris: &[RedirectUri]) -> String {
    serde_json::to_string(uris).expect("URIs serialise")
}

pub fn cidrs(s: String) -> StoreResult<Vec<portcullis_domain::api_key::IpNet>> {
    serde_json::from_str(&s).map_err(|e| StoreError::Corrupt(format!("allowed_cidrs: {e}")))
}

pub fn cidrs_json(c: &[portcullis_domain::api_key::IpNet]) -> String {
    serde_json::to_string(c).expect("CIDRs serialise")
}

pub fn rate_limit(s: Option<String>) -> StoreResult<Option<portcullis_domain::RateLimit>> {
    s.map(|s| portcullis_domain::RateLimit::parse(&s).map_err(|e| StoreError::Corrupt(e.0))).transpose()
}

pub fn environment(s: String) -> StoreResult<portcullis_domain::KeyEnvironment> {
    s.parse().map_err(|e: portcullis_domain::Invalid| StoreError::Corrupt(e.0))
}

/// A JSON object of claim name to pattern, in name order.
pub fn claims(s: String) -> StoreResult<Vec<(String, String)>> {
    let m: std::collections::BTreeMap<String, String> =
        serde_json::from_str(&s).map_err(|e| StoreError::Corrupt(format!("claims: {e}")))?;
    Ok(m.into_iter().collect())
}

pub fn claims_json(c: &[(String, String)]) -> String {
    let m: std::collections::BTreeMap<&str, &str> = c.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    serde_json::to_string(&m).expect("claims serialise")
}
