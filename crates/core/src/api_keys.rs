//! Scoped API keys: creation (secret shown once), rotation with a grace period, revocation,
//! authentication of a presented key, batched usage records and per-key rate limits.
//!
//! # Decisions
//! - Keys are looked up by SHA-256 of the presented secret; the format's checksum is verified
//!   first, so a mistyped or truncated key never reaches the database.
//! - Scopes are explicit and known to the catalogue (no wildcards, no identity scopes). A key
//!   created through the admin API can never hold more than the key that created it.
//! - Rotation keeps the key's id and settings; the previous secret works until the grace period
//!   ends (at most 30 days, never past the key's expiry). Revocation is immediate.
//! - `last_used_at`/`last_used_ip` are collected in memory and written in batches
//!   ([`UsageRecorder`]), so authenticating a key is a read, not a write.

use crate::admin::{Admin, AdminError, check_name};
use crate::context::Cx;
use crate::events::{self, Actor};
use portcullis_domain::api_key::{ip_allowed, parse_cidr};
use portcullis_domain::{ApiKeyId, ApiKeySecret, MalformedKey, RateLimit, ScopeSet};
use portcullis_store::{ApiKey, KeyUsage, Store, StoreError, Workspace};
use serde::Serialize;
use serde_json::json;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use time::{Duration, OffsetDateTime};

/// The longest grace period of a rotated key's previous secret.
pub const MAX_KEY_GRACE: Duration = Duration::days(30);

/// Largest metadata document accepted, in bytes of JSON.
const MAX_METADATA: usize = 4096;

/// When a new key expires.
#[derive(Clone, Copy, Debug)]
pub enum Expiry {
    In(Duration),
    At(OffsetDateTime),
}

/// What `key create` takes. Scopes come from `scope`, `bundle` or both (their union).
#[derive(Clone, Debug, Default)]
pub struct NewKey {
    pub name: String,
    pub description: Option<String>,
    pub metadata: Option<serde_json::Value>,
    pub scope: Option<String>,
    pub bundle: Option<String>,
    pub allow_cidrs: Vec<String>,
    pub expires: Option<Expiry>,
    pub rate_limit: Option<String>,
}

/// A key as shown to operators (CLI `--json` and the admin API): never the secret.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct KeyView {
    pub id: String,
    pub workspace_id: String,
    pub name: String,
    pub description: Option<String>,
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<serde_json::Value>,
    /// Display prefix of the current secret, e.g. `pcl_live_AbCd`.
    pub prefix: String,
    pub scopes: Vec<String>,
    pub allowed_cidrs: Vec<String>,
    /// e.g. `600/min`.
    pub rate_limit: Option<String>,
    /// `live` or `test`.
    pub environment: String,
    pub bundle: Option<String>,
    /// `active`, `expired` or `revoked`.
    pub status: String,
    pub created_at: String,
    pub expires_at: Option<String>,
    pub rotated_at: Option<String>,
    /// Until when the secret replaced by the last rotation still works.
    pub previous_secret_expires_at: Option<String>,
    pub revoked_at: Option<String>,
    pub last_used_at: Option<String>,
    pub last_used_ip: Option<String>,
}

/// A key with its secret: the response to create and rotate, the only time the secret is shown.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct IssuedKeyView {
    #[serde(flatten)]
    pub key: KeyView,
    /// The full key. Shown once; store it now.
    pub secret: String,
}

impl KeyView {
    pub fn of(k: &ApiKey, now: OffsetDateTime) -> Self {
        let status = if k.revoked_at.is_some() {
            "revoked"
        } else if k.expires_at.is_some_and(|e| e <= now) {
            "expired"
        } else {
            "active"
        };
        Self {
            id: k.id.to_string(),
            workspace_id: k.workspace_id.to_string(),
            name: k.name.clone(),
            description: k.description.clone(),
            metadata: k.metadata.as_deref().and_then(|m| serde_json::from_str(m).ok()),
            prefix: k.prefix.clone(),
            scopes: k.scopes.iter().map(|s| s.to_string()).collect(),
            allowed_cidrs: k.allowed_cidrs.iter().map(|c| c.to_string()).collect(),
            rate_limit: k.rate_limit.map(|r| r.to_string()),
            environment: k.environment.as_str().to_owned(),
            bundle: k.bundle.clone(),
            status: status.to_owned(),
            created_at: crate::rfc3339(k.created_at),
            expires_at: k.expires_at.map(crate::rfc3339),
            rotated_at: k.rotated_at.map(crate::rfc3339),
            previous_secret_expires_at: k
                .previous_secret_expires_at
                .filter(|t| *t > now && k.previous_secret_hash.is_some())
                .map(crate::rfc3339),
            revoked_at: k.revoked_at.map(crate::rfc3339),
            last_used_at: k.last_used_at.map(crate::rfc3339),
            last_used_ip: k.last_used_ip.clone(),
        }
    }
}

/// A created or rotated key and its secret (which exists only in this value).
pub struct IssuedKey {
    pub key: ApiKey,
    pub secret: ApiKeySecret,
}

impl IssuedKey {
    pub fn view(&self, now: OffsetDateTime) -> IssuedKeyView {
        IssuedKeyView { key: KeyView::of(&self.key, now), secret: self.secret.expose().to_owned() }
    }
}

impl<S: Store> Admin<S> {
    /// Creates a key in `ws`. `ceiling`: the scopes of the credential creating it, if it is not
    /// the operator (a key never creates a more powerful key).
    pub async fn create_key(
        &self,
        actor: &Actor,
        ws: &Workspace,
        req: NewKey,
        ceiling: Option<&ScopeSet>,
    ) -> Result<IssuedKey, AdminError> {
        let now = self.clock.now();
        let name = req.name.trim().to_owned();
        check_name(&name)?;
        let description = req.description.map(|d| d.trim().to_owned()).filter(|d| !d.is_empty());
        if description.as_ref().is_some_and(|d| d.chars().count() > 1000) {
            return Err(AdminError::Invalid("a description must be at most 1000 characters".into()));
        }
        let metadata = match req.metadata {
            None | Some(serde_json::Value::Null) => None,
            Some(v @ serde_json::Value::Object(_)) => {
                let text = v.to_string();
                if text.len() > MAX_METADATA {
                    return Err(AdminError::Invalid("metadata must be at most 4096 bytes of JSON".into()));
                }
                Some(text)
            }
            Some(_) => return Err(AdminError::Invalid("metadata must be a JSON object".into())),
        };
        let (scopes, bundle) = self.expand_scopes(ws, req.scope.as_deref(), req.bundle.as_deref()).await?;
        self.check_credential_scopes(&scopes, ceiling)?;
        let mut allowed_cidrs = Vec::new();
        for c in &req.allow_cidrs {
            let net = parse_cidr(c).map_err(|e| AdminError::Invalid(e.0))?;
            if !allowed_cidrs.contains(&net) {
                allowed_cidrs.push(net);
            }
        }
        let rate_limit = req
            .rate_limit
            .as_deref()
            .map(RateLimit::parse)
            .transpose()
            .map_err(|e| AdminError::Invalid(e.0))?;
        let expires_at = match req.expires {
            None => None,
            Some(Expiry::In(d)) if d <= Duration::ZERO => {
                return Err(AdminError::Invalid("the expiry must be in the future".into()));
            }
            Some(Expiry::In(d)) => Some(now + d),
            Some(Expiry::At(t)) if t <= now => {
                return Err(AdminError::Invalid("the expiry must be in the future".into()));
            }
            Some(Expiry::At(t)) => Some(t),
        };
        let secret = ApiKeySecret::generate(self.key_environment);
        let key = ApiKey {
            id: ApiKeyId::generate(),
            workspace_id: ws.id.clone(),
            name,
            description,
            metadata,
            scopes,
            allowed_cidrs,
            rate_limit,
            environment: self.key_environment,
            prefix: secret.display_prefix(),
            secret_hash: secret.hash(),
            previous_secret_hash: None,
            previous_secret_expires_at: None,
            bundle,
            created_at: now,
            expires_at,
            rotated_at: None,
            revoked_at: None,
            last_used_at: None,
            last_used_ip: None,
        };
        self.store.insert_api_key(&key).await?;
        let detail = json!({ "name": key.name, "scopes": key.scopes, "prefix": key.prefix });
        events::record(self.events(), now, &ws.id, actor, "api_key.created", Some(key.id.as_str()), detail)
            .await?;
        tracing::info!(event = "api_key_created", key_id = %key.id, workspace_id = %ws.id, "API key created");
        Ok(IssuedKey { key, secret })
    }

    pub async fn list_keys(&self, ws: &Workspace) -> Result<Vec<ApiKey>, AdminError> {
        Ok(self.store.list_api_keys(&ws.id).await?)
    }

    /// A key by id; with `ws`, only if it belongs to that workspace.
    pub async fn key(&self, id: &str, ws: Option<&Workspace>) -> Result<ApiKey, AdminError> {
        self.store
            .api_key_by_id(&ApiKeyId::from_string(id))
            .await?
            .filter(|k| ws.is_none_or(|w| w.id == k.workspace_id))
            .ok_or_else(|| AdminError::NotFound(format!("API key {id:?} does not exist")))
    }

    /// Issues a new secret for the same key; the old secret keeps working for `grace` (at most
    /// 30 days, and never past the key's expiry).
    pub async fn rotate_key(
        &self,
        actor: &Actor,
        id: &str,
        ws: Option<&Workspace>,
        grace: Duration,
    ) -> Result<IssuedKey, AdminError> {
        if grace < Duration::ZERO || grace > MAX_KEY_GRACE {
            return Err(AdminError::Invalid("the grace period must be between 0 and 30 days".into()));
        }
        let now = self.clock.now();
        let key = self.key(id, ws).await?;
        if key.revoked_at.is_some() {
            return Err(AdminError::Conflict(format!("API key {id:?} is revoked")));
        }
        if key.expires_at.is_some_and(|e| e <= now) {
            return Err(AdminError::Conflict(format!("API key {id:?} has expired")));
        }
        let until = (grace > Duration::ZERO).then(|| {
            let end = now + grace;
            key.expires_at.map_or(end, |e| end.min(e))
        });
        let secret = ApiKeySecret::generate(key.environment);
        let rotated =
            self.store.rotate_api_key(&key.id, &secret.hash(), &secret.display_prefix(), until, now).await?;
        self.cache.invalidate();
        if !rotated {
            return Err(AdminError::Conflict(format!("API key {id:?} was revoked meanwhile")));
        }
        let detail = json!({ "grace_seconds": grace.whole_seconds(), "prefix": secret.display_prefix() });
        events::record(
            self.events(),
            now,
            &key.workspace_id,
            actor,
            "api_key.rotated",
            Some(key.id.as_str()),
            detail,
        )
        .await?;
        tracing::info!(event = "api_key_rotated", key_id = %key.id, grace_seconds = grace.whole_seconds(), "API key rotated");
        Ok(IssuedKey { key: self.key(id, ws).await?, secret })
    }

    /// Revokes a key at once (every secret of it, and every service token it minted).
    pub async fn revoke_key(
        &self,
        actor: &Actor,
        id: &str,
        ws: Option<&Workspace>,
    ) -> Result<ApiKey, AdminError> {
        let now = self.clock.now();
        let key = self.key(id, ws).await?;
        let revoked = self.store.revoke_api_key(&key.id, now).await?;
        self.cache.invalidate();
        if !revoked {
            return Err(AdminError::Conflict(format!("API key {id:?} is already revoked")));
        }
        events::record(
            self.events(),
            now,
            &key.workspace_id,
            actor,
            "api_key.revoked",
            Some(key.id.as_str()),
            json!({}),
        )
        .await?;
        tracing::info!(event = "api_key_revoked", key_id = %key.id, "API key revoked");
        self.key(id, ws).await
    }

    /// Scopes a key, service token or trust policy may carry: known, explicit, not identity
    /// scopes, at least one, and (for a credential creating another) within its own scopes.
    pub fn check_credential_scopes(
        &self,
        scopes: &ScopeSet,
        ceiling: Option<&ScopeSet>,
    ) -> Result<(), AdminError> {
        if scopes.is_empty() {
            return Err(AdminError::Invalid("at least one scope is needed (--scope or --bundle)".into()));
        }
        if let Some(id) = self.catalogue.identity_part(scopes).iter().next() {
            return Err(AdminError::Invalid(format!(
                "{id} is an OpenID Connect identity scope; API credentials act for a workspace, not a person"
            )));
        }
        if let Some(max) = ceiling {
            let beyond: Vec<String> =
                scopes.iter().filter(|s| !max.contains(s.as_str())).map(|s| s.to_string()).collect();
            if !beyond.is_empty() {
                return Err(AdminError::Forbidden(format!(
                    "the calling credential does not hold {}, so it cannot hand it out",
                    beyond.join(", ")
                )));
            }
        }
        Ok(())
    }
}

/// Why a presented key was refused. The texts are safe to return to the caller, who holds the
/// key (an unknown key gets the same answer as a made-up one).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyRejection {
    #[error("{0}")]
    Malformed(MalformedKey),
    #[error("this API key belongs to another environment ({0} keys are not accepted here)")]
    WrongEnvironment(&'static str),
    #[error("the API key is invalid")]
    Unknown,
    #[error("the API key was revoked")]
    Revoked,
    #[error("the API key expired")]
    Expired,
    #[error("this API key secret was replaced by a rotation and its grace period has ended")]
    GraceEnded,
    #[error("the API key may not be used from this address")]
    AddressNotAllowed,
    #[error("storage error")]
    Internal,
}

impl From<StoreError> for KeyRejection {
    fn from(e: StoreError) -> Self {
        tracing::error!(error = %e, "API key lookup failed");
        Self::Internal
    }
}

/// Checks a presented API key: format and checksum (no lookup), environment, then the stored key
/// by hash, its state, which secret matched, and the caller's address. Records the use.
pub async fn authenticate_key<S: Store>(
    cx: &Cx<S>,
    presented: &str,
    ip: IpAddr,
) -> Result<ApiKey, KeyRejection> {
    authenticate_key_with(cx, presented, ip, false).await
}

/// [`authenticate_key`], reusing a row loaded within the credential cache TTL when `cached`
/// (the guard's hot path; see [`crate::cache`]). The checks still run against the clock.
pub async fn authenticate_key_with<S: Store>(
    cx: &Cx<S>,
    presented: &str,
    ip: IpAddr,
    cached: bool,
) -> Result<ApiKey, KeyRejection> {
    let secret = ApiKeySecret::parse(presented).map_err(KeyRejection::Malformed)?;
    if secret.environment() != cx.settings.key_environment {
        return Err(KeyRejection::WrongEnvironment(secret.environment().as_str()));
    }
    let hash = secret.hash();
    let now = cx.now();
    let ttl = cx.settings.credential_cache_ttl;
    let cached = cached && ttl.is_positive();
    let row = match cached.then(|| cx.cache.key(&hash, now, ttl)).flatten() {
        Some(row) => row,
        None => {
            let generation = cx.cache.snapshot();
            let row = cx.store.api_key_by_hash(&hash).await?;
            if cached {
                cx.cache.put_key(hash.clone(), row.clone(), now, generation);
            }
            row
        }
    };
    let key = row.ok_or(KeyRejection::Unknown)?;
    if key.revoked_at.is_some() {
        return Err(KeyRejection::Revoked);
    }
    if key.expires_at.is_some_and(|e| e <= now) {
        return Err(KeyRejection::Expired);
    }
    if !key.secret_hash.ct_eq(&hash) {
        // Found by its previous secret: valid only within the grace period.
        let in_grace = key.previous_secret_hash.as_ref().is_some_and(|p| p.ct_eq(&hash))
            && key.previous_secret_expires_at.is_some_and(|until| now < until);
        if !in_grace {
            return Err(KeyRejection::GraceEnded);
        }
    }
    if !ip_allowed(&key.allowed_cidrs, ip) {
        return Err(KeyRejection::AddressNotAllowed);
    }
    cx.usage.record(&key.id, now, ip);
    Ok(key)
}

/// Whether a key (by id) can still act: used to end service tokens of a revoked key.
pub async fn key_is_live<S: Store>(cx: &Cx<S>, id: &ApiKeyId) -> Result<bool, StoreError> {
    let now = cx.now();
    Ok(cx
        .store
        .api_key_by_id(id)
        .await?
        .is_some_and(|k| k.revoked_at.is_none() && k.expires_at.is_none_or(|e| e > now)))
}

/// Last uses of keys since the previous flush, newest per key.
#[derive(Default)]
pub struct UsageRecorder {
    pending: Mutex<HashMap<ApiKeyId, KeyUsage>>,
}

/// How often recorded key uses are written.
pub const USAGE_FLUSH_EVERY: std::time::Duration = std::time::Duration::from_secs(15);

impl UsageRecorder {
    pub fn record(&self, id: &ApiKeyId, at: OffsetDateTime, ip: IpAddr) {
        let mut p = self.pending.lock().expect("lock");
        let e = p.entry(id.clone()).or_insert_with(|| KeyUsage { id: id.clone(), at, ip: ip.to_string() });
        if at >= e.at {
            e.at = at;
            e.ip = ip.to_string();
        }
    }

    /// Writes what was recorded since the last flush (one transaction). On failure the uses are
    /// kept for the next attempt.
    pub async fn flush<S: Store>(&self, store: &S) -> Result<usize, StoreError> {
        let batch: Vec<KeyUsage> = {
            let mut p = self.pending.lock().expect("lock");
            std::mem::take(&mut *p).into_values().collect()
        };
        if batch.is_empty() {
            return Ok(0);
        }
        match store.record_api_key_usage(&batch).await {
            Ok(()) => Ok(batch.len()),
            Err(e) => {
                let mut p = self.pending.lock().expect("lock");
                for u in batch {
                    p.entry(u.id.clone()).or_insert(u);
                }
                Err(e)
            }
        }
    }
}
