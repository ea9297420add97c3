//! Service tokens: 5–60 minute access tokens for CI jobs and scripts, minted on demand and never
//! stored.
//!
//! A service token is an RFC 9068 JWT signed with the same keys as OAuth access tokens, told
//! apart by `token_use: "service"` and carrying `minted_by`: `cli`, the API key (`key_…`) or the
//! trust policy (`tp_…`) that minted it. Checking one is live like any access token, and a token
//! dies with the key or trust policy behind it. Every mint is recorded as an event (the token
//! itself is not: only its `jti`).

use crate::context::{Cx, internal};
use crate::events::{self, Actor};
use crate::oauth::tokens::{ACCESS_TOKEN_TYP, AccessClaims};
use portcullis_domain::{ScopeSet, WorkspaceId};
use portcullis_proto::{OAuthError, TokenResponse};
use portcullis_store::Store;
use serde_json::json;
use time::Duration;

pub const MIN_TTL: Duration = Duration::minutes(5);
pub const MAX_TTL: Duration = Duration::minutes(60);
/// The `token_use` claim of service tokens.
pub const TOKEN_USE: &str = "service";

/// Refuses lifetimes outside 5–60 minutes.
pub fn check_ttl(ttl: Duration) -> Result<(), String> {
    if ttl < MIN_TTL || ttl > MAX_TTL {
        return Err(format!(
            "a service token lives between 5 and 60 minutes (asked for {}s)",
            ttl.whole_seconds()
        ));
    }
    Ok(())
}

/// How the token came to be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Via {
    Cli,
    ApiKey,
    /// RFC 8693 exchange of an external OIDC token under a trust policy.
    Federation,
}

impl Via {
    fn as_str(self) -> &'static str {
        match self {
            Self::Cli => "cli",
            Self::ApiKey => "api_key",
            Self::Federation => "federation",
        }
    }
}

/// What to mint. The caller has checked that the minter may hand out `scopes`.
pub struct Mint<'a> {
    pub workspace: &'a WorkspaceId,
    pub scopes: &'a ScopeSet,
    pub ttl: Duration,
    pub actor: &'a Actor,
    pub via: Via,
    /// `sub` of the token: the minter, or the external subject for federation.
    pub subject: &'a str,
    /// Extra detail for the event (the external issuer, say).
    pub detail: serde_json::Value,
    /// The protected resource the token is for (RFC 8707); `None`: the default audience.
    pub resource: Option<&'a str>,
}

/// Signs a service token and records the mint.
pub async fn mint<S: Store>(cx: &Cx<S>, m: Mint<'_>) -> Result<TokenResponse, OAuthError> {
    check_ttl(m.ttl).map_err(OAuthError::invalid_request)?;
    if m.scopes.is_empty() {
        return Err(OAuthError::invalid_scope("a service token needs at least one scope"));
    }
    let aud = match m.resource {
        Some(r) => crate::oauth::resource::requested(&cx.settings, &[r])?.remove(0),
        None => cx.settings.audience.clone(),
    };
    let now = cx.now();
    let claims = AccessClaims {
        iss: cx.settings.issuer.clone(),
        sub: m.subject.to_owned(),
        aud,
        exp: (now + m.ttl).unix_timestamp(),
        iat: now.unix_timestamp(),
        jti: crate::oauth::tokens::new_jti(),
        client_id: m.actor.id.clone(),
        scope: m.scopes.to_string(),
        workspace_id: m.workspace.to_string(),
        grant_id: None,
        family_id: None,
        auth_time: None,
        token_use: Some(TOKEN_USE.to_owned()),
        minted_by: Some(m.actor.id.clone()),
        cnf: None,
    };
    let token = cx.keys.sign(ACCESS_TOKEN_TYP, &claims, now).map_err(internal)?;
    let mut detail = json!({
        "via": m.via.as_str(),
        "scope": claims.scope,
        "ttl_seconds": m.ttl.whole_seconds(),
        "expires_at": crate::rfc3339(now + m.ttl),
        "sub": claims.sub,
        "aud": claims.aud,
    });
    if let (Some(d), serde_json::Value::Object(extra)) = (detail.as_object_mut(), m.detail) {
        d.extend(extra);
    }
    // A token exchange (RFC 8693) is its own event kind, so exchanges can be searched for alone.
    let kind = if m.via == Via::Federation { "token.exchanged" } else { "service_token.minted" };
    events::record(cx.events(), now, m.workspace, m.actor, kind, Some(&claims.jti), detail)
        .await
        .map_err(internal)?;
    tracing::info!(event = "service_token_minted", workspace_id = %m.workspace, minted_by = %m.actor.id, jti = %claims.jti, "service token minted");
    Ok(TokenResponse {
        access_token: token,
        token_type: "Bearer",
        expires_in: m.ttl.whole_seconds() as u64,
        scope: Some(claims.scope),
        refresh_token: None,
        id_token: None,
        issued_token_type: None,
    })
}
