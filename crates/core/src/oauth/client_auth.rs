//! Client authentication at the token endpoint (RFC 6749 §2.3, §3.2.1).
//!
//! Client secrets are 256 random bits, so they are stored as SHA-256 and compared in constant
//! time: a slow password hash would add latency on every token request and protect nothing, since
//! there is no low-entropy input to brute-force.

use crate::context::{Cx, internal};
use portcullis_domain::{ClientId, TokenHash};
use portcullis_proto::{ClientAuth, OAuthError};
use portcullis_store::{Client, Store};
use std::sync::Arc;

/// The client row, from the credential cache when fresh: client authentication is on the path of
/// every token request, and the row rarely changes (changes in this process invalidate the cache;
/// another replica's within `credential_cache_ttl`).
pub async fn cached_client<S: Store>(cx: &Cx<S>, id: &str) -> Result<Option<Arc<Client>>, OAuthError> {
    let (now, ttl) = (cx.now(), cx.settings.credential_cache_ttl);
    if let Some(c) = cx.cache.client(id, now, ttl) {
        return Ok(c);
    }
    let generation = cx.cache.snapshot();
    let c = cx.store.client_by_id(&ClientId::from_string(id)).await.map_err(internal)?.map(Arc::new);
    cx.cache.put_client(id, c.clone(), now, generation);
    Ok(c)
}

/// Identifies and authenticates the client. Every failure is `invalid_client` with the same
/// text, so the response does not reveal whether the client exists or was revoked.
pub async fn authenticate<S: Store>(cx: &Cx<S>, auth: &ClientAuth) -> Result<Arc<Client>, OAuthError> {
    let fail = || OAuthError::invalid_client("client authentication failed");
    let client = if super::client_metadata::is_document_url(auth.client_id()) {
        // A metadata document client (public): its document may need a fetch first.
        super::client_metadata::load(cx, auth.client_id()).await?
    } else {
        cached_client(cx, auth.client_id()).await?
    };
    let Some(client) = client.filter(|c| !c.is_revoked()) else { return Err(fail()) };
    match (auth, &client.secret_hash) {
        (ClientAuth::Basic { secret, .. } | ClientAuth::Post { secret, .. }, Some(stored)) => {
            let presented = TokenHash::of(secret);
            // After a rotation the previous secret keeps working until its grace period ends.
            let previous_ok = match (&client.previous_secret_hash, client.previous_secret_expires_at) {
                (Some(prev), Some(until)) => cx.now() < until && presented.ct_eq(prev),
                _ => false,
            };
            if presented.ct_eq(stored) || previous_ok { Ok(client) } else { Err(fail()) }
        }
        (ClientAuth::None { .. }, None) => Ok(client),
        (ClientAuth::None { .. }, Some(_)) => {
            Err(OAuthError::invalid_client("this client must authenticate with its secret"))
        }
        (_, None) => Err(OAuthError::invalid_client("this public client has no secret; send only client_id")),
    }
}
