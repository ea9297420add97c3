//! The signed-in user's own view of what they granted, and revoking it (withdrawing consent
//! revokes every token of that grant at once).

use crate::context::{Cx, internal};
use portcullis_domain::GrantId;
use portcullis_proto::OAuthError;
use portcullis_store::{Grant, GrantFilter, Session, Store};

/// A grant with the names a person recognises.
#[derive(Debug)]
pub struct GrantView {
    pub grant: Grant,
    pub client_name: String,
    pub workspace_name: String,
}

/// The user's active grants, newest first.
pub async fn grants<S: Store>(cx: &Cx<S>, session: &Session) -> Result<Vec<GrantView>, OAuthError> {
    let grants = cx
        .store
        .list_grants(&GrantFilter { user_id: Some(session.user_id.clone()), ..Default::default() })
        .await
        .map_err(internal)?;
    let mut out = Vec::with_capacity(grants.len());
    for g in grants {
        let client_name = cx.store.client_by_id(&g.client_id).await.map_err(internal)?.map(|c| c.name);
        let workspace_name =
            cx.store.workspace_by_id(&g.workspace_id).await.map_err(internal)?.map(|w| w.name);
        out.push(GrantView {
            client_name: client_name.unwrap_or_else(|| g.client_id.to_string()),
            workspace_name: workspace_name.unwrap_or_else(|| g.workspace_id.to_string()),
            grant: g,
        });
    }
    Ok(out)
}

/// Revokes one of the user's own grants. Returns false if it is not theirs or already revoked.
pub async fn revoke<S: Store>(cx: &Cx<S>, session: &Session, grant_id: &str) -> Result<bool, OAuthError> {
    let id = GrantId::from_string(grant_id);
    let Some(g) = cx.store.grant_by_id(&id).await.map_err(internal)? else { return Ok(false) };
    if g.user_id != session.user_id || g.revoked_at.is_some() {
        return Ok(false);
    }
    let revoked = cx.store.revoke_grant(&id, cx.now()).await.map_err(internal)?;
    cx.cache.invalidate();
    if revoked {
        tracing::info!(event = "grant_revoked", by = "user", grant_id = %id, client_id = %g.client_id, "consent withdrawn");
        let mut r = crate::events::entry("grant.revoked", cx.now(), Some(&g.workspace_id));
        r.subject = Some(id.to_string());
        r.client_id = Some(g.client_id.to_string());
        r.user_id = Some(g.user_id.to_string());
        r.actor = Some(g.user_id.to_string());
        r.params = serde_json::json!({ "by": "user" }).to_string();
        crate::events::write(cx.events(), r).await.map_err(internal)?;
    }
    Ok(revoked)
}
