//! Workload identity federation: trust policies, and verification of tokens from external OIDC
//! issuers (a CI provider, a cloud workload) presented for RFC 8693 token exchange.
//!
//! A trust policy of a workspace names an issuer, an audience the token must carry, a pattern for
//! `sub` (`repo:acme/app:ref:refs/heads/main`, or with `*` wildcards), optional patterns for other
//! claims, the scopes a service token from it may carry, and its longest lifetime.
//!
//! # Decisions
//! - The issuer's keys come from its discovery document (`/.well-known/openid-configuration` →
//!   `jwks_uri`) and are cached for 10 minutes; a token signed by an unknown `kid` triggers one
//!   refetch (at most every 30 seconds per issuer), so an issuer's key rotation is picked up.
//! - Issuers must be https; plain http is accepted only for loopback hosts (local tests).
//! - Only asymmetric algorithms are accepted, and the key's `alg` (when the JWKS states one) must
//!   match the token header's: a token cannot pick its own verification algorithm.
//! - Time claims are checked against the injected clock with 60 seconds of leeway.

use crate::admin::{Admin, AdminError, check_name};
use crate::events::{self, Actor};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use portcullis_domain::{ScopeSet, TrustPolicyId};
use portcullis_store::{Store, TrustPolicy, Workspace};
use serde::Serialize;
use serde_json::{Map, Value, json};
use std::collections::HashMap;
use std::sync::Mutex;
use time::{Duration, OffsetDateTime};

/// How long a fetched JWKS is used before it is fetched again.
const JWKS_TTL: Duration = Duration::minutes(10);
/// The least time between two fetches for one issuer (unknown `kid`s trigger refetches).
const REFETCH_THROTTLE: Duration = Duration::seconds(30);
/// Clock skew tolerated on `exp`, `nbf` and `iat`.
const LEEWAY: i64 = 60;
/// Largest discovery document or JWKS read.
const MAX_DOCUMENT: usize = 256 * 1024;

/// What `trust-policy create` takes.
#[derive(Clone, Debug, Default)]
pub struct NewTrustPolicy {
    pub name: String,
    pub issuer: String,
    pub audience: String,
    pub subject: String,
    /// `claim=pattern` pairs.
    pub claims: Vec<String>,
    pub scope: Option<String>,
    pub bundle: Option<String>,
    pub max_ttl: Duration,
}

/// A trust policy as shown to operators.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct TrustPolicyView {
    pub id: String,
    pub workspace_id: String,
    pub name: String,
    pub issuer: String,
    pub audience: String,
    pub subject: String,
    #[schema(value_type = Object)]
    pub claims: Map<String, Value>,
    pub scopes: Vec<String>,
    pub max_ttl_seconds: i64,
    pub created_at: String,
}

impl From<&TrustPolicy> for TrustPolicyView {
    fn from(p: &TrustPolicy) -> Self {
        Self {
            id: p.id.to_string(),
            workspace_id: p.workspace_id.to_string(),
            name: p.name.clone(),
            issuer: p.issuer.clone(),
            audience: p.audience.clone(),
            subject: p.subject.clone(),
            claims: p.claims.iter().map(|(k, v)| (k.clone(), Value::String(v.clone()))).collect(),
            scopes: p.scopes.iter().map(|s| s.to_string()).collect(),
            max_ttl_seconds: p.max_ttl.whole_seconds(),
            created_at: crate::rfc3339(p.created_at),
        }
    }
}

/// Checks an external issuer URL: https, or http on a loopback host.
pub fn check_issuer_url(issuer: &str) -> Result<url::Url, String> {
    let url = url::Url::parse(issuer).map_err(|_| format!("issuer {issuer:?} is not a URL"))?;
    let loopback = match url.host() {
        Some(url::Host::Domain(d)) => d == "localhost",
        Some(url::Host::Ipv4(a)) => a.is_loopback(),
        Some(url::Host::Ipv6(a)) => a.is_loopback(),
        None => false,
    };
    match url.scheme() {
        "https" => Ok(url),
        "http" if loopback => Ok(url),
        _ => Err(format!("issuer {issuer:?} must be an https URL (http only for loopback hosts)")),
    }
}

impl<S: Store> Admin<S> {
    pub async fn create_trust_policy(
        &self,
        actor: &Actor,
        ws: &Workspace,
        req: NewTrustPolicy,
        ceiling: Option<&ScopeSet>,
    ) -> Result<TrustPolicy, AdminError> {
        let name = req.name.trim().to_owned();
        check_name(&name)?;
        let issuer = req.issuer.trim().to_owned();
        check_issuer_url(&issuer).map_err(AdminError::Invalid)?;
        let audience = req.audience.trim().to_owned();
        if audience.is_empty() {
            return Err(AdminError::Invalid("a trust policy needs the audience its tokens carry".into()));
        }
        let subject = req.subject.trim().to_owned();
        if subject.is_empty() || subject.chars().all(|c| c == '*') {
            return Err(AdminError::Invalid(
                "a trust policy needs a subject pattern that is not just `*` (name the repository, branch or workload)"
                    .into(),
            ));
        }
        let mut claims: Vec<(String, String)> = Vec::new();
        for c in &req.claims {
            let (k, v) =
                c.split_once('=').filter(|(k, v)| !k.trim().is_empty() && !v.is_empty()).ok_or_else(
                    || AdminError::Invalid(format!("claim condition {c:?} must look like name=pattern")),
                )?;
            if ["iss", "aud", "sub", "exp", "nbf", "iat"].contains(&k.trim()) {
                return Err(AdminError::Invalid(format!(
                    "{k} is checked by the policy itself; use --issuer, --audience or --subject"
                )));
            }
            claims.retain(|(name, _)| name != k.trim());
            claims.push((k.trim().to_owned(), v.to_owned()));
        }
        claims.sort();
        crate::service_tokens::check_ttl(req.max_ttl).map_err(AdminError::Invalid)?;
        let (scopes, _) = self.expand_scopes(ws, req.scope.as_deref(), req.bundle.as_deref()).await?;
        self.check_credential_scopes(&scopes, ceiling)?;
        let now = self.clock.now();
        let p = TrustPolicy {
            id: TrustPolicyId::generate(),
            workspace_id: ws.id.clone(),
            name,
            issuer,
            audience,
            subject,
            claims,
            scopes,
            max_ttl: req.max_ttl,
            created_at: now,
        };
        self.store.insert_trust_policy(&p).await?;
        let detail = json!({ "issuer": p.issuer, "subject": p.subject, "scopes": p.scopes });
        events::record(
            self.events(),
            now,
            &ws.id,
            actor,
            "trust_policy.created",
            Some(p.id.as_str()),
            detail,
        )
        .await?;
        Ok(p)
    }

    pub async fn list_trust_policies(&self, ws: &Workspace) -> Result<Vec<TrustPolicy>, AdminError> {
        Ok(self.store.list_trust_policies(&ws.id).await?)
    }

    pub async fn trust_policy(&self, id: &str, ws: Option<&Workspace>) -> Result<TrustPolicy, AdminError> {
        self.store
            .trust_policy_by_id(&TrustPolicyId::from_string(id))
            .await?
            .filter(|p| ws.is_none_or(|w| w.id == p.workspace_id))
            .ok_or_else(|| AdminError::NotFound(format!("trust policy {id:?} does not exist")))
    }

    /// Deletes a policy; service tokens it issued stop working at once.
    pub async fn delete_trust_policy(
        &self,
        actor: &Actor,
        id: &str,
        ws: Option<&Workspace>,
    ) -> Result<TrustPolicy, AdminError> {
        let p = self.trust_policy(id, ws).await?;
        let deleted = self.store.delete_trust_policy(&p.id).await?;
        self.cache.invalidate();
        if !deleted {
            return Err(AdminError::NotFound(format!("trust policy {id:?} does not exist")));
        }
        events::record(
            self.events(),
            self.clock.now(),
            &p.workspace_id,
            actor,
            "trust_policy.deleted",
            Some(p.id.as_str()),
            json!({}),
        )
        .await?;
        Ok(p)
    }
}

/// Whether `value` matches `pattern`, where `*` stands for any run of characters (including
/// none) and everything else matches itself. Written here because the rule is this one line of
/// semantics; glob crates add path rules (`/`, `**`, classes) that would surprise policy authors.
pub fn matches(pattern: &str, value: &str) -> bool {
    let (p, v): (Vec<char>, Vec<char>) = (pattern.chars().collect(), value.chars().collect());
    let (mut pi, mut vi) = (0, 0);
    let (mut star, mut mark) = (None, 0);
    while vi < v.len() {
        if pi < p.len() && p[pi] != '*' && p[pi] == v[vi] {
            pi += 1;
            vi += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = vi;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            vi = mark;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

/// A claim as text for pattern matching (strings as they are; numbers and booleans printed).
fn claim_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// Whether verified `claims` satisfy `policy` (issuer already matched).
pub fn policy_admits(policy: &TrustPolicy, claims: &Map<String, Value>) -> bool {
    let aud_ok = match claims.get("aud") {
        Some(Value::String(a)) => *a == policy.audience,
        Some(Value::Array(list)) => list.iter().any(|a| a.as_str() == Some(policy.audience.as_str())),
        _ => false,
    };
    let sub_ok = claims.get("sub").and_then(Value::as_str).is_some_and(|s| matches(&policy.subject, s));
    aud_ok
        && sub_ok
        && policy.claims.iter().all(|(name, pattern)| {
            claims.get(name).and_then(claim_text).is_some_and(|v| matches(pattern, &v))
        })
}

/// Why an external token was not accepted. Safe to show the caller.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExternalTokenError {
    #[error("the subject token is not a well-formed JWT")]
    Malformed,
    #[error("no trust policy accepts tokens from this issuer")]
    UntrustedIssuer,
    #[error("the subject token's signing algorithm is not accepted")]
    Algorithm,
    #[error("the subject token is signed by a key its issuer does not publish")]
    UnknownKey,
    #[error("the subject token's signature is invalid")]
    BadSignature,
    #[error("the subject token expired")]
    Expired,
    #[error("the subject token is not valid yet")]
    NotYetValid,
    #[error("the issuer's keys could not be fetched")]
    Unreachable,
}

struct Cached {
    keys: JwkSet,
    fetched_at: OffsetDateTime,
}

/// External issuers' signing keys, fetched on demand and cached per issuer.
pub struct IssuerKeys {
    http: reqwest::Client,
    cache: Mutex<HashMap<String, Cached>>,
}

impl Default for IssuerKeys {
    fn default() -> Self {
        let http = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(5))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("HTTP client");
        Self { http, cache: Mutex::new(HashMap::new()) }
    }
}

impl IssuerKeys {
    async fn get_json(&self, url: &str) -> Result<Value, String> {
        check_issuer_url(url)?;
        let mut resp = self.http.get(url).send().await.map_err(|e| format!("GET {url}: {e}"))?;
        if !resp.status().is_success() {
            return Err(format!("GET {url}: status {}", resp.status()));
        }
        let mut body = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(|e| format!("GET {url}: {e}"))? {
            body.extend_from_slice(&chunk);
            if body.len() > MAX_DOCUMENT {
                return Err(format!("GET {url}: document too large"));
            }
        }
        serde_json::from_slice(&body).map_err(|e| format!("GET {url}: not JSON: {e}"))
    }

    async fn fetch(&self, issuer: &str) -> Result<JwkSet, String> {
        let discovery = format!("{}/.well-known/openid-configuration", issuer.trim_end_matches('/'));
        let doc = self.get_json(&discovery).await?;
        if doc.get("issuer").and_then(Value::as_str) != Some(issuer) {
            return Err(format!("{discovery} names another issuer"));
        }
        let jwks_uri =
            doc.get("jwks_uri").and_then(Value::as_str).ok_or(format!("{discovery} has no jwks_uri"))?;
        serde_json::from_value(self.get_json(jwks_uri).await?).map_err(|e| format!("{jwks_uri}: {e}"))
    }

    /// The issuer's key `kid`, from the cache or freshly fetched.
    async fn key(
        &self,
        issuer: &str,
        kid: Option<&str>,
        now: OffsetDateTime,
    ) -> Result<Jwk, ExternalTokenError> {
        let find = |set: &JwkSet| -> Option<Jwk> {
            match kid {
                Some(k) => set.find(k).cloned(),
                None if set.keys.len() == 1 => set.keys.first().cloned(),
                None => None,
            }
        };
        let (cached, may_fetch) = {
            let c = self.cache.lock().expect("lock");
            match c.get(issuer) {
                Some(e) => (
                    (now - e.fetched_at < JWKS_TTL).then(|| find(&e.keys)).flatten(),
                    now - e.fetched_at >= REFETCH_THROTTLE,
                ),
                None => (None, true),
            }
        };
        if let Some(k) = cached {
            return Ok(k);
        }
        if !may_fetch {
            return Err(ExternalTokenError::UnknownKey);
        }
        let keys = self.fetch(issuer).await.map_err(|e| {
            tracing::warn!(issuer, error = %e, "fetching an external issuer's keys failed");
            ExternalTokenError::Unreachable
        })?;
        let found = find(&keys);
        self.cache.lock().expect("lock").insert(issuer.to_owned(), Cached { keys, fetched_at: now });
        found.ok_or(ExternalTokenError::UnknownKey)
    }

    /// Verifies an external JWT against its issuer's published keys and the clock. Returns the
    /// issuer and the claims. `trusted` says whether any policy trusts an issuer (checked before
    /// anything is fetched, so untrusted issuers cause no outbound requests).
    pub async fn verify(
        &self,
        token: &str,
        now: OffsetDateTime,
        trusted: impl AsyncFnOnce(&str) -> bool,
    ) -> Result<(String, Map<String, Value>), ExternalTokenError> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| ExternalTokenError::Malformed)?;
        let payload = token.split('.').nth(1).ok_or(ExternalTokenError::Malformed)?;
        let unverified: Map<String, Value> = URL_SAFE_NO_PAD
            .decode(payload)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .ok_or(ExternalTokenError::Malformed)?;
        let issuer =
            unverified.get("iss").and_then(Value::as_str).ok_or(ExternalTokenError::Malformed)?.to_owned();
        if !trusted(&issuer).await {
            return Err(ExternalTokenError::UntrustedIssuer);
        }
        use Algorithm::*;
        if !matches!(header.alg, RS256 | RS384 | RS512 | PS256 | PS384 | PS512 | ES256 | ES384 | EdDSA) {
            return Err(ExternalTokenError::Algorithm);
        }
        let jwk = self.key(&issuer, header.kid.as_deref(), now).await?;
        if let Some(ka) = jwk.common.key_algorithm
            && format!("{ka:?}") != format!("{:?}", header.alg)
        {
            return Err(ExternalTokenError::Algorithm);
        }
        let key = DecodingKey::from_jwk(&jwk).map_err(|_| ExternalTokenError::UnknownKey)?;
        let mut v = Validation::new(header.alg);
        v.validate_exp = false;
        v.validate_nbf = false;
        v.validate_aud = false;
        v.required_spec_claims.clear();
        let claims = jsonwebtoken::decode::<Map<String, Value>>(token, &key, &v)
            .map_err(|e| match e.kind() {
                jsonwebtoken::errors::ErrorKind::InvalidSignature => ExternalTokenError::BadSignature,
                _ => ExternalTokenError::Malformed,
            })?
            .claims;
        let ts = now.unix_timestamp();
        let exp = claims.get("exp").and_then(Value::as_i64).ok_or(ExternalTokenError::Malformed)?;
        if exp + LEEWAY <= ts {
            return Err(ExternalTokenError::Expired);
        }
        let not_before =
            |name: &str| claims.get(name).and_then(Value::as_i64).is_some_and(|t| t - LEEWAY > ts);
        if not_before("nbf") || not_before("iat") {
            return Err(ExternalTokenError::NotYetValid);
        }
        Ok((issuer, claims))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns() {
        assert!(matches("repo:acme/app:ref:refs/heads/main", "repo:acme/app:ref:refs/heads/main"));
        assert!(!matches("repo:acme/app:ref:refs/heads/main", "repo:acme/app:ref:refs/heads/main2"));
        assert!(!matches("repo:acme/app:ref:refs/heads/main", "repo:acme/app:ref:refs/heads/mai"));
        assert!(matches("repo:acme/*:ref:refs/heads/main", "repo:acme/api:ref:refs/heads/main"));
        assert!(!matches("repo:acme/*:ref:refs/heads/main", "repo:evil/api:ref:refs/heads/main"));
        assert!(matches("repo:acme/app:*", "repo:acme/app:pull_request"));
        assert!(matches("a*b*c", "aXXbYYc"));
        assert!(!matches("a*b*c", "aXXbYY"));
        assert!(matches("*", ""));
        assert!(!matches("", "x"));
    }

    #[test]
    fn issuer_urls() {
        assert!(check_issuer_url("https://token.actions.githubusercontent.com").is_ok());
        assert!(check_issuer_url("http://127.0.0.1:8080").is_ok());
        assert!(check_issuer_url("http://localhost:8080").is_ok());
        assert!(check_issuer_url("http://ci.example.com").is_err());
        assert!(check_issuer_url("ftp://ci.example.com").is_err());
    }
}
