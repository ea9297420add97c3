//! Minting and checking tokens.
//!
//! - Access tokens are JWTs per RFC 9068 (`typ: at+jwt`), signed ES256, carrying the workspace,
//!   grant and token family so any replica can check them *live*: a token of a revoked client,
//!   grant or family, a revoked `jti`, or one whose user lost the permission, stops working before
//!   its `exp`.
//! - Refresh tokens are opaque (`pcl_rt_…`), stored hashed, in the family of their grant chain.
//! - ID tokens (OpenID Connect Core §2) are issued when `openid` was granted.
//!
//! Minting does not write: the grant that mints decides how the refresh token is stored (the
//! refresh grant stores it in the same transaction that consumes its predecessor).

use crate::cache::LiveStatus;
use crate::context::{Cx, internal};
use crate::keys::VerifyError;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use portcullis_domain::secret::prefix;
use portcullis_domain::{
    ApiKeyId, ClientId, FamilyId, GrantId, ScopeSet, TokenHash, TrustPolicyId, UserId, WorkspaceId,
    random_token,
};
use portcullis_proto::{ErrorCode, OAuthError, TokenResponse};
use portcullis_store::{Client, RefreshToken, Store, TokenFamily, User};
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;

pub const ACCESS_TOKEN_TYP: &str = "at+jwt";
pub const ID_TOKEN_TYP: &str = "JWT";

/// Claims of our access tokens (RFC 9068 §2.2 plus ours).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct AccessClaims {
    pub iss: String,
    pub sub: String,
    pub aud: String,
    pub exp: i64,
    pub iat: i64,
    pub jti: String,
    pub client_id: String,
    pub scope: String,
    /// The workspace the token acts in: every token belongs to exactly one.
    pub workspace_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grant_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub family_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_time: Option<i64>,
    /// `service` for service tokens (absent on OAuth access tokens).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_use: Option<String>,
    /// For service tokens: `cli`, the API key id or the trust policy id that minted it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub minted_by: Option<String>,
    /// RFC 9449 §6.1: the DPoP key the token is bound to; it is accepted only with proofs of it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cnf: Option<Confirmation>,
}

/// The `cnf` claim (RFC 7800) of DPoP-bound tokens.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Confirmation {
    /// RFC 7638 SHA-256 thumbprint of the key.
    pub jkt: String,
}

impl AccessClaims {
    /// The DPoP key thumbprint the token is bound to, if any.
    pub fn jkt(&self) -> Option<&str> {
        self.cnf.as_ref().map(|c| c.jkt.as_str())
    }
}

/// `token_type` of a response (RFC 9449 §5: `DPoP` for bound tokens).
pub fn token_type(jkt: Option<&str>) -> &'static str {
    if jkt.is_some() { "DPoP" } else { "Bearer" }
}

fn cnf(jkt: Option<&str>) -> Option<Confirmation> {
    jkt.map(|j| Confirmation { jkt: j.to_owned() })
}

/// Claims of ID tokens (OpenID Connect Core §2, §5.1).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct IdClaims {
    pub iss: String,
    pub sub: String,
    pub aud: String,
    pub exp: i64,
    pub iat: i64,
    pub auth_time: i64,
    pub azp: String,
    pub at_hash: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nonce: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

/// What to mint for a user's grant.
pub struct UserTokens<'a> {
    pub client: &'a Client,
    pub user: &'a User,
    pub workspace_id: &'a WorkspaceId,
    pub grant_id: &'a GrantId,
    pub family: &'a TokenFamily,
    /// The access token's `aud`: the protected resource it is for (RFC 8707).
    pub audience: &'a str,
    /// Scopes of this access token.
    pub scopes: &'a ScopeSet,
    /// Scopes of the refresh token (RFC 6749 §6: a rotated refresh token keeps the scope of the
    /// one it replaces, even when the access token was narrowed).
    pub refresh_scopes: &'a ScopeSet,
    pub auth_time: OffsetDateTime,
    pub nonce: Option<&'a str>,
    pub with_refresh_token: bool,
    /// ID tokens come from the authorization and device grants, not from refreshes.
    pub with_id_token: bool,
    /// The DPoP key of this request's proof: the access token is bound to it.
    pub dpop_jkt: Option<&'a str>,
    /// The DPoP key the refresh token is bound to (public clients' tokens, RFC 9449 §5).
    pub refresh_jkt: Option<&'a str>,
}

/// A minted response and the refresh-token row the caller must store for it.
pub struct Minted {
    pub response: TokenResponse,
    pub refresh: Option<RefreshToken>,
}

/// Mints an access token, and a refresh token and ID token where they apply. Writes nothing.
pub fn mint_user_tokens<S: Store>(cx: &Cx<S>, t: UserTokens<'_>) -> Result<Minted, OAuthError> {
    let now = cx.now();
    let ttl = cx.settings.access_token_ttl;
    let claims = AccessClaims {
        iss: cx.settings.issuer.clone(),
        sub: t.user.id.to_string(),
        aud: t.audience.to_owned(),
        exp: (now + ttl).unix_timestamp(),
        iat: now.unix_timestamp(),
        jti: new_jti(),
        client_id: t.client.id.to_string(),
        scope: t.scopes.to_string(),
        workspace_id: t.workspace_id.to_string(),
        grant_id: Some(t.grant_id.to_string()),
        family_id: Some(t.family.id.to_string()),
        auth_time: Some(t.auth_time.unix_timestamp()),
        token_use: None,
        minted_by: None,
        cnf: cnf(t.dpop_jkt),
    };
    let access_token = cx.keys.sign(ACCESS_TOKEN_TYP, &claims, now).map_err(internal)?;

    let (refresh_token, refresh) = if t.with_refresh_token {
        let secret = random_token(prefix::REFRESH_TOKEN);
        let row = RefreshToken {
            hash: TokenHash::of(secret.expose_secret()),
            family_id: t.family.id.clone(),
            client_id: t.client.id.clone(),
            scopes: t.refresh_scopes.clone(),
            created_at: now,
            expires_at: (now + cx.settings.refresh_token_idle_ttl).min(t.family.expires_at),
            consumed_at: None,
            successor_hash: None,
            successor_sealed: None,
            dpop_jkt: t.refresh_jkt.map(str::to_owned),
        };
        (Some(secret.expose_secret().to_owned()), Some(row))
    } else {
        (None, None)
    };

    let id_token = if t.with_id_token && t.scopes.contains("openid") {
        let id = IdClaims {
            iss: cx.settings.issuer.clone(),
            sub: t.user.id.to_string(),
            aud: t.client.id.to_string(),
            exp: (now + ttl).unix_timestamp(),
            iat: now.unix_timestamp(),
            auth_time: t.auth_time.unix_timestamp(),
            azp: t.client.id.to_string(),
            at_hash: at_hash(&access_token),
            nonce: t.nonce.map(str::to_owned),
            email: t.scopes.contains("email").then(|| t.user.email.to_string()),
            name: if t.scopes.contains("profile") { t.user.name.clone() } else { None },
        };
        Some(cx.keys.sign(ID_TOKEN_TYP, &id, now).map_err(internal)?)
    } else {
        None
    };

    Ok(Minted {
        response: TokenResponse {
            access_token,
            token_type: token_type(t.dpop_jkt),
            expires_in: ttl.whole_seconds().max(0) as u64,
            scope: Some(claims.scope),
            refresh_token,
            id_token,
            issued_token_type: None,
        },
        refresh,
    })
}

/// Mints and stores (refresh token included): for grants that start a chain.
pub async fn issue_user_tokens<S: Store>(cx: &Cx<S>, t: UserTokens<'_>) -> Result<TokenResponse, OAuthError> {
    let minted = mint_user_tokens(cx, t)?;
    if let Some(row) = &minted.refresh {
        cx.store.insert_refresh_token(row).await.map_err(internal)?;
    }
    Ok(minted.response)
}

/// An access token for a client acting as itself (client credentials): `sub` is the client.
pub fn mint_client_token<S: Store>(
    cx: &Cx<S>,
    client: &Client,
    workspace: &WorkspaceId,
    scopes: &ScopeSet,
    audience: &str,
    dpop_jkt: Option<&str>,
) -> Result<TokenResponse, OAuthError> {
    let now = cx.now();
    let ttl = cx.settings.access_token_ttl;
    let claims = AccessClaims {
        iss: cx.settings.issuer.clone(),
        sub: client.id.to_string(),
        aud: audience.to_owned(),
        exp: (now + ttl).unix_timestamp(),
        iat: now.unix_timestamp(),
        jti: new_jti(),
        client_id: client.id.to_string(),
        scope: scopes.to_string(),
        workspace_id: workspace.to_string(),
        grant_id: None,
        family_id: None,
        auth_time: None,
        token_use: None,
        minted_by: None,
        cnf: cnf(dpop_jkt),
    };
    Ok(TokenResponse {
        access_token: cx.keys.sign(ACCESS_TOKEN_TYP, &claims, now).map_err(internal)?,
        token_type: token_type(dpop_jkt),
        expires_in: ttl.whole_seconds().max(0) as u64,
        scope: Some(claims.scope),
        refresh_token: None,
        id_token: None,
        issued_token_type: None,
    })
}

/// OpenID Connect Core §3.1.3.6: base64url of the left half of SHA-256 of the access token.
fn at_hash(access_token: &str) -> String {
    let d = Sha256::digest(access_token.as_bytes());
    URL_SAFE_NO_PAD.encode(&d[..16])
}

/// A unique token id (`jti`): 128 random bits.
pub(crate) fn new_jti() -> String {
    portcullis_domain::secret::random_id(16)
}

/// An access token that verified and is live.
#[derive(Clone, Debug)]
pub struct LiveAccess {
    pub claims: AccessClaims,
    /// The token's scopes as they stand now: for user tokens, granted scopes ∩ the user's current
    /// permissions (identity scopes always remain).
    pub scopes: ScopeSet,
    /// The user, for tokens that act for one (absent for client-credentials tokens).
    pub user_id: Option<UserId>,
}

/// Verifies an access token's signature and claims, then checks live that its client, family,
/// grant, `jti` and the user's membership still allow it. Every failure is `invalid_token`
/// (RFC 6750 §3.1); the description says why, for logs and for the client.
pub async fn check_access_token<S: Store>(cx: &Cx<S>, token: &str) -> Result<LiveAccess, OAuthError> {
    let claims = verify_access_jwt(cx, token, 0).await?;
    live_access(cx, claims, false).await
}

fn invalid_token(why: &'static str) -> OAuthError {
    OAuthError::new(ErrorCode::InvalidToken, why)
}

/// The signature (our keys, `typ: at+jwt`), issuer and times of an access token, allowing
/// `leeway_secs` of clock skew on `exp`. The audience is the caller's to check: it depends on
/// which resource is asking.
pub async fn verify_access_jwt<S: Store>(
    cx: &Cx<S>,
    token: &str,
    leeway_secs: i64,
) -> Result<AccessClaims, OAuthError> {
    let now = cx.now();
    let claims = verified_claims(cx, token, now).await?;
    check_claims(cx, claims, now, leeway_secs)
}

/// [`verify_access_jwt`], reusing the claims of a token whose signature verified within the
/// credential cache TTL (the guard's hot path: an ECDSA verification costs more than the rest
/// of a request). Issuer and times are still checked on every call.
pub async fn verify_access_jwt_cached<S: Store>(
    cx: &Cx<S>,
    token: &str,
    leeway_secs: i64,
) -> Result<AccessClaims, OAuthError> {
    let now = cx.now();
    let ttl = cx.settings.credential_cache_ttl;
    if !ttl.is_positive() {
        return verify_access_jwt(cx, token, leeway_secs).await;
    }
    let hash: [u8; 32] = Sha256::digest(token.as_bytes()).into();
    let claims = match cx.cache.verified(&hash, now, ttl) {
        Some(c) => c,
        None => {
            let generation = cx.cache.snapshot();
            let c = verified_claims(cx, token, now).await?;
            cx.cache.put_verified(hash, c.clone(), now, generation);
            c
        }
    };
    check_claims(cx, claims, now, leeway_secs)
}

async fn verified_claims<S: Store>(
    cx: &Cx<S>,
    token: &str,
    now: OffsetDateTime,
) -> Result<AccessClaims, OAuthError> {
    Ok(match cx.keys.verify(token, ACCESS_TOKEN_TYP, now) {
        Ok(c) => c,
        Err(VerifyError::UnknownKey) => {
            // Perhaps another replica rotated keys: reload once (throttled) and retry.
            cx.keys.reload_throttled(&cx.store, now).await;
            cx.keys
                .verify(token, ACCESS_TOKEN_TYP, now)
                .map_err(|_| invalid_token("the access token is invalid"))?
        }
        Err(_) => return Err(invalid_token("the access token is invalid")),
    })
}

fn check_claims<S>(
    cx: &Cx<S>,
    claims: AccessClaims,
    now: OffsetDateTime,
    leeway_secs: i64,
) -> Result<AccessClaims, OAuthError> {
    let ts = now.unix_timestamp();
    if claims.iss != cx.settings.issuer {
        return Err(invalid_token("the access token was issued by another server"));
    }
    if claims.exp + leeway_secs <= ts {
        return Err(invalid_token("the access token expired"));
    }
    if claims.iat > ts + 60 {
        return Err(invalid_token("the access token is not valid yet"));
    }
    Ok(claims)
}

/// Whether verified `claims` are still live, and their scopes as they stand now. With `cached`,
/// a status loaded within [`crate::settings::Settings::credential_cache_ttl`] is reused (see
/// [`crate::cache`]); introspection and the token endpoint always ask the store.
pub async fn live_access<S: Store>(
    cx: &Cx<S>,
    claims: AccessClaims,
    cached: bool,
) -> Result<LiveAccess, OAuthError> {
    let now = cx.now();
    let ttl = cx.settings.credential_cache_ttl;
    let cached = cached && ttl.is_positive();
    let status = match cached.then(|| cx.cache.live(&claims.jti, now, ttl)).flatten() {
        Some(status) => status,
        None => {
            let generation = cx.cache.snapshot();
            let status = live_status(cx, &claims).await?;
            if cached {
                cx.cache.put_live(&claims.jti, status.clone(), now, generation);
            }
            status
        }
    };
    let scopes = status.map_err(invalid_token)?;
    let user_id = claims.grant_id.is_some().then(|| UserId::from_string(claims.sub.as_str()));
    Ok(LiveAccess { claims, scopes, user_id })
}

/// The live checks: client, revoked `jti`, family, grant and the user's current permissions
/// (service tokens: see [`service_token_status`]). The outer error is a storage failure.
async fn live_status<S: Store>(cx: &Cx<S>, claims: &AccessClaims) -> Result<LiveStatus, OAuthError> {
    let Ok(mut scopes) = ScopeSet::parse(&claims.scope) else {
        return Ok(Err("the access token is invalid"));
    };
    if claims.token_use.as_deref() == Some(crate::service_tokens::TOKEN_USE) {
        return service_token_status(cx, claims, scopes).await;
    }
    let ts = cx.now().unix_timestamp();
    let client =
        cx.store.client_by_id(&ClientId::from_string(claims.client_id.as_str())).await.map_err(internal)?;
    if client.is_none_or(|c| c.is_revoked()) {
        return Ok(Err("the client was revoked"));
    }
    if cx.store.access_token_revoked(&claims.jti).await.map_err(internal)? {
        return Ok(Err("the access token was revoked"));
    }
    if let Some(fid) = &claims.family_id {
        let fam = cx.store.family(&FamilyId::from_string(fid.as_str())).await.map_err(internal)?;
        match fam {
            Some(f) if f.revoked_at.is_none() && f.expires_at.unix_timestamp() > ts => {}
            _ => return Ok(Err("the access token was revoked")),
        }
    }
    if let Some(gid) = &claims.grant_id {
        let grant = cx.store.grant_by_id(&GrantId::from_string(gid.as_str())).await.map_err(internal)?;
        if grant.is_none_or(|g| g.revoked_at.is_some()) {
            return Ok(Err("the access token was revoked"));
        }
        let uid = UserId::from_string(claims.sub.as_str());
        let ws = WorkspaceId::from_string(claims.workspace_id.as_str());
        let m = cx.store.membership(&ws, &uid).await.map_err(internal)?;
        let Some(m) = m else { return Ok(Err("the user is no longer a member of the workspace")) };
        scopes = cx.catalogue.delegable(&scopes, &m.permissions);
        if scopes.is_empty() {
            return Ok(Err("the user no longer holds any of the granted permissions"));
        }
    }
    Ok(Ok(scopes))
}

/// The live part of checking a service token: not revoked by `jti`, and the credential that
/// minted it (API key or trust policy) still exists and is active.
async fn service_token_status<S: Store>(
    cx: &Cx<S>,
    claims: &AccessClaims,
    scopes: ScopeSet,
) -> Result<LiveStatus, OAuthError> {
    if cx.store.access_token_revoked(&claims.jti).await.map_err(internal)? {
        return Ok(Err("the service token was revoked"));
    }
    let minted_by = claims.minted_by.as_deref().unwrap_or_default();
    let live = if minted_by == "cli" {
        true
    } else if minted_by.starts_with(ApiKeyId::PREFIX) {
        crate::api_keys::key_is_live(cx, &ApiKeyId::from_string(minted_by)).await.map_err(internal)?
    } else if minted_by.starts_with(TrustPolicyId::PREFIX) {
        cx.store
            .trust_policy_by_id(&TrustPolicyId::from_string(minted_by))
            .await
            .map_err(internal)?
            .is_some_and(|p| p.workspace_id.as_str() == claims.workspace_id)
    } else {
        false
    };
    if !live {
        return Ok(Err("the credential that minted this service token was revoked"));
    }
    Ok(Ok(scopes))
}
