//! Token introspection (RFC 7662) for access tokens (checked live) and refresh tokens.
//!
//! Callers are confidential clients (resource servers register as such); any of them may
//! introspect any token, as a resource server must be able to check tokens issued to other
//! clients. Anything not active — unknown, malformed, expired, revoked, of a revoked client or
//! grant, of a user who left the workspace — is just `{"active": false}` (§2.2). Access-token
//! state comes through the credential cache, as at the guard.

use super::client_auth;
use super::tokens::{live_access, verify_access_jwt_cached};
use crate::context::{Cx, internal};
use portcullis_domain::TokenHash;
use portcullis_domain::secret::prefix;
use portcullis_proto::{ClientAuth, OAuthError};
use portcullis_store::Store;
use serde::Serialize;

#[derive(Debug, Default, Serialize, PartialEq)]
pub struct Introspection {
    pub active: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sub: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_type: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exp: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub iat: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub aud: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub iss: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jti: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub workspace_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub grant_id: Option<String>,
    /// `service` for service tokens.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_use: Option<String>,
    /// RFC 9449 §6.2: the DPoP key a bound token is bound to.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cnf: Option<super::tokens::Confirmation>,
}

impl Introspection {
    fn inactive() -> Self {
        Self::default()
    }
}

pub async fn introspect<S: Store>(
    cx: &Cx<S>,
    auth: &ClientAuth,
    token: &str,
) -> Result<Introspection, OAuthError> {
    let client = client_auth::authenticate(cx, auth).await?;
    if client.is_public() {
        return Err(OAuthError::invalid_client("introspection requires a confidential client"));
    }
    if token.starts_with(prefix::REFRESH_TOKEN) {
        return refresh(cx, token).await;
    }
    // The same credential cache as the guard's: a resource server asking us is in the same
    // position as our own guard (a revocation in this process is seen at once, another
    // replica's within `credential_cache_ttl`; 0 makes every introspection read the database).
    let checked = match verify_access_jwt_cached(cx, token, 0).await {
        Ok(claims) => live_access(cx, claims, true).await,
        Err(e) => Err(e),
    };
    match checked {
        Ok(live) => {
            let c = live.claims;
            let token_type = super::tokens::token_type(c.jkt());
            Ok(Introspection {
                active: true,
                scope: Some(live.scopes.to_string()),
                client_id: Some(c.client_id),
                sub: Some(c.sub),
                token_type: Some(token_type),
                exp: Some(c.exp),
                iat: Some(c.iat),
                aud: Some(c.aud),
                iss: Some(c.iss),
                jti: Some(c.jti),
                workspace_id: Some(c.workspace_id),
                grant_id: c.grant_id,
                token_use: c.token_use,
                cnf: c.cnf,
            })
        }
        Err(e) if e.code == portcullis_proto::ErrorCode::ServerError => Err(e),
        Err(_) => Ok(Introspection::inactive()),
    }
}

async fn refresh<S: Store>(cx: &Cx<S>, token: &str) -> Result<Introspection, OAuthError> {
    let now = cx.now();
    let Some(t) = cx.store.refresh_token(&TokenHash::of(token)).await.map_err(internal)? else {
        return Ok(Introspection::inactive());
    };
    let Some(family) = cx.store.family(&t.family_id).await.map_err(internal)? else {
        return Ok(Introspection::inactive());
    };
    let client = cx.store.client_by_id(&t.client_id).await.map_err(internal)?;
    if t.consumed_at.is_some()
        || t.expires_at <= now
        || family.revoked_at.is_some()
        || family.expires_at <= now
        || client.is_none_or(|c| c.is_revoked())
    {
        return Ok(Introspection::inactive());
    }
    let (Some(grant_id), Some(user_id)) = (&family.grant_id, &family.user_id) else {
        return Ok(Introspection::inactive());
    };
    if cx.store.grant_by_id(grant_id).await.map_err(internal)?.is_none_or(|g| g.revoked_at.is_some()) {
        return Ok(Introspection::inactive());
    }
    let Some(m) = cx.store.membership(&family.workspace_id, user_id).await.map_err(internal)? else {
        return Ok(Introspection::inactive());
    };
    let scopes = cx.catalogue.delegable(&t.scopes, &m.permissions);
    if scopes.is_empty() {
        return Ok(Introspection::inactive());
    }
    Ok(Introspection {
        active: true,
        scope: Some(scopes.to_string()),
        client_id: Some(t.client_id.to_string()),
        sub: Some(user_id.to_string()),
        token_type: Some("refresh_token"),
        exp: Some(t.expires_at.unix_timestamp()),
        iat: Some(t.created_at.unix_timestamp()),
        aud: None,
        iss: Some(cx.settings.issuer.clone()),
        jti: None,
        workspace_id: Some(family.workspace_id.to_string()),
        grant_id: Some(grant_id.to_string()),
        token_use: None,
        cnf: None,
    })
}
