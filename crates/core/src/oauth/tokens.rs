//! Minting and checking tokens.
//!
//! - Access tokens are JWTs per RFC 9068 (`typ: at+jwt`), signed ES256, carrying the workspace,
//!   grant and token family so any replica can check them *live*: a token of a revoked grant or
//!   family, or whose user lost the permission, stops working before its `exp`.
//! - Refresh tokens are opaque (`pcl_rt_…`), stored hashed, in the family of their code.
//! - ID tokens (OpenID Connect Core §2) are issued when `openid` was granted.

use crate::context::{Cx, internal};
use crate::keys::VerifyError;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use portcullis_domain::secret::prefix;
use portcullis_domain::{FamilyId, GrantId, ScopeSet, TokenHash, UserId, WorkspaceId, random_token};
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

/// What the token endpoint issues for a user's grant.
pub struct UserTokens<'a> {
    pub client: &'a Client,
    pub user: &'a User,
    pub workspace_id: &'a WorkspaceId,
    pub grant_id: &'a GrantId,
    pub family: &'a TokenFamily,
    pub scopes: &'a ScopeSet,
    pub auth_time: OffsetDateTime,
    pub nonce: Option<&'a str>,
    pub with_refresh_token: bool,
}

/// Mints an access token, and a refresh token and ID token where they apply.
pub async fn issue_user_tokens<S: Store>(cx: &Cx<S>, t: UserTokens<'_>) -> Result<TokenResponse, OAuthError> {
    let now = cx.now();
    let ttl = cx.settings.access_token_ttl;
    let claims = AccessClaims {
        iss: cx.settings.issuer.clone(),
        sub: t.user.id.to_string(),
        aud: cx.settings.audience.clone(),
        exp: (now + ttl).unix_timestamp(),
        iat: now.unix_timestamp(),
        jti: uuid_like(),
        client_id: t.client.id.to_string(),
        scope: t.scopes.to_string(),
        workspace_id: t.workspace_id.to_string(),
        grant_id: Some(t.grant_id.to_string()),
        family_id: Some(t.family.id.to_string()),
        auth_time: Some(t.auth_time.unix_timestamp()),
    };
    let access_token = cx.keys.sign(ACCESS_TOKEN_TYP, &claims).map_err(internal)?;

    let refresh_token = if t.with_refresh_token {
        let secret = random_token(prefix::REFRESH_TOKEN);
        let expires_at = (now + cx.settings.refresh_token_idle_ttl).min(t.family.expires_at);
        let row = RefreshToken {
            hash: TokenHash::of(secret.expose_secret()),
            family_id: t.family.id.clone(),
            client_id: t.client.id.clone(),
            scopes: t.scopes.clone(),
            created_at: now,
            expires_at,
            consumed_at: None,
        };
        cx.store.insert_refresh_token(&row).await.map_err(internal)?;
        Some(secret.expose_secret().to_owned())
    } else {
        None
    };

    let id_token = if t.scopes.contains("openid") {
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
        Some(cx.keys.sign(ID_TOKEN_TYP, &id).map_err(internal)?)
    } else {
        None
    };

    Ok(TokenResponse {
        access_token,
        token_type: "Bearer",
        expires_in: ttl.whole_seconds().max(0) as u64,
        scope: Some(claims.scope),
        refresh_token,
        id_token,
    })
}

/// OpenID Connect Core §3.1.3.6: base64url of the left half of SHA-256 of the access token.
fn at_hash(access_token: &str) -> String {
    let d = Sha256::digest(access_token.as_bytes());
    URL_SAFE_NO_PAD.encode(&d[..16])
}

/// A unique token id (`jti`): 128 random bits.
fn uuid_like() -> String {
    portcullis_domain::secret::random_id(16)
}

/// An access token that verified and is live.
#[derive(Clone, Debug)]
pub struct LiveAccess {
    pub claims: AccessClaims,
    /// The token's scopes as they stand now: granted scopes ∩ the user's current permissions
    /// (identity scopes always remain).
    pub scopes: ScopeSet,
    pub user_id: Option<UserId>,
}

/// Verifies an access token's signature and claims, then checks live that its family, grant and
/// the user's membership still allow it. Every failure is `invalid_token` (RFC 6750 §3.1).
pub async fn check_access_token<S: Store>(cx: &Cx<S>, token: &str) -> Result<LiveAccess, OAuthError> {
    let invalid = |why: &'static str| OAuthError::new(ErrorCode::InvalidToken, why);
    let claims: AccessClaims = match cx.keys.verify(token, ACCESS_TOKEN_TYP) {
        Ok(c) => c,
        Err(VerifyError::UnknownKey) => {
            // Perhaps another replica rotated keys: reload once (throttled) and retry.
            cx.keys.reload_throttled(&cx.store, cx.now()).await;
            cx.keys.verify(token, ACCESS_TOKEN_TYP).map_err(|_| invalid("the access token is invalid"))?
        }
        Err(_) => return Err(invalid("the access token is invalid")),
    };
    let now = cx.now().unix_timestamp();
    if claims.iss != cx.settings.issuer {
        return Err(invalid("the access token was issued by another server"));
    }
    if claims.exp <= now {
        return Err(invalid("the access token expired"));
    }
    if claims.iat > now + 60 {
        return Err(invalid("the access token is not valid yet"));
    }
    let mut scopes = ScopeSet::parse(&claims.scope).map_err(|_| invalid("the access token is invalid"))?;

    if let Some(fid) = &claims.family_id {
        let fam = cx.store.family(&FamilyId::from_string(fid.as_str())).await.map_err(internal)?;
        match fam {
            Some(f) if f.revoked_at.is_none() && f.expires_at.unix_timestamp() > now => {}
            _ => return Err(invalid("the access token was revoked")),
        }
    }
    if let Some(gid) = &claims.grant_id {
        let grant = cx.store.grant_by_id(&GrantId::from_string(gid.as_str())).await.map_err(internal)?;
        if grant.is_none_or(|g| g.revoked_at.is_some()) {
            return Err(invalid("the access token was revoked"));
        }
    }
    let user_id = claims.grant_id.as_ref().map(|_| UserId::from_string(claims.sub.as_str()));
    if let Some(uid) = &user_id {
        let ws = WorkspaceId::from_string(claims.workspace_id.as_str());
        let m = cx.store.membership(&ws, uid).await.map_err(internal)?;
        let Some(m) = m else { return Err(invalid("the user is no longer a member of the workspace")) };
        scopes = cx.catalogue.delegable(&scopes, &m.permissions);
    }
    Ok(LiveAccess { claims, scopes, user_id })
}
