//! Token revocation (RFC 7009). The client authenticates; a token it does not own, an unknown or
//! malformed token, all answer success (§2.2: "invalid tokens do not cause an error response")
//! without revoking anything.

use super::client_auth;
use super::tokens::{ACCESS_TOKEN_TYP, AccessClaims};
use crate::context::{Cx, internal};
use portcullis_domain::TokenHash;
use portcullis_domain::secret::prefix;
use portcullis_proto::{ClientAuth, OAuthError};
use portcullis_store::Store;
use time::OffsetDateTime;

pub async fn revoke<S: Store>(
    cx: &Cx<S>,
    auth: &ClientAuth,
    token: &str,
    hint: Option<&str>,
) -> Result<(), OAuthError> {
    let client = client_auth::authenticate(cx, auth).await?;
    let now = cx.now();
    // Our formats tell refresh tokens (`pcl_rt_…`) from JWTs, so the hint is not needed (§2.1
    // allows ignoring it).
    let _ = hint;
    if token.starts_with(prefix::REFRESH_TOKEN) {
        if let Some(t) = cx.store.refresh_token(&TokenHash::of(token)).await.map_err(internal)?
            && t.client_id == client.id
        {
            // §2.1: revoking a refresh token revokes the whole grant chain.
            cx.store.revoke_family(&t.family_id, "revoked_by_client", now).await.map_err(internal)?;
            cx.cache.invalidate();
            tracing::info!(event = "token_revoked", kind = "refresh_token", family_id = %t.family_id, "refresh token revoked");
        }
        return Ok(());
    }
    if let Ok(claims) = cx.keys.verify::<AccessClaims>(token, ACCESS_TOKEN_TYP, now)
        && claims.client_id == client.id.as_str()
        && claims.iss == cx.settings.issuer
    {
        let exp = OffsetDateTime::from_unix_timestamp(claims.exp).unwrap_or(now);
        if exp > now {
            cx.store.revoke_access_token(&claims.jti, &client.id, exp, now).await.map_err(internal)?;
            cx.cache.invalidate();
            tracing::info!(event = "token_revoked", kind = "access_token", jti = %claims.jti, "access token revoked");
        }
    }
    Ok(())
}
