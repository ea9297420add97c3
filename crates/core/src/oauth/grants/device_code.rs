//! The device authorization grant's token request (RFC 8628 §3.4–3.5): the device polls until the
//! user decides.

use crate::context::{Cx, internal};
use crate::oauth::tokens::{UserTokens, issue_user_tokens};
use portcullis_domain::TokenHash;
use portcullis_proto::token::GRANT_REFRESH_TOKEN;
use portcullis_proto::{ErrorCode, OAuthError, TokenResponse};
use portcullis_store::{Client, DeviceStatus, Store};

pub struct Params {
    pub device_code: String,
    /// RFC 8707 resources named on this token request (already checked to be ours).
    pub resources: Vec<String>,
    /// The key of this request's verified DPoP proof (RFC 9449): the access token is bound to it.
    pub dpop_jkt: Option<String>,
}

pub async fn exchange<S: Store>(cx: &Cx<S>, client: &Client, p: Params) -> Result<TokenResponse, OAuthError> {
    let now = cx.now();
    let hash = TokenHash::of(&p.device_code);
    // One statement records the poll and tells whether it came too soon.
    let (dc, too_fast) = cx
        .store
        .poll_device(&hash, now)
        .await
        .map_err(internal)?
        .ok_or_else(|| OAuthError::invalid_grant("the device code is invalid"))?;
    if dc.client_id != client.id {
        return Err(OAuthError::invalid_grant("the device code is invalid"));
    }
    if now >= dc.expires_at && dc.status != DeviceStatus::Consumed {
        return Err(OAuthError::new(ErrorCode::ExpiredToken, "the device code expired; start again"));
    }
    match dc.status {
        DeviceStatus::Pending if too_fast => {
            Err(OAuthError::new(ErrorCode::SlowDown, format!("poll at most every {} seconds", dc.interval)))
        }
        DeviceStatus::Pending => {
            Err(OAuthError::new(ErrorCode::AuthorizationPending, "the user has not answered yet"))
        }
        DeviceStatus::Denied => Err(OAuthError::access_denied("the user denied the request")),
        DeviceStatus::Consumed => Err(OAuthError::invalid_grant("the device code was already used")),
        DeviceStatus::Approved => {
            let approval = dc.approval.ok_or_else(|| internal("approved device code without approval"))?;
            if !cx.store.consume_device(&hash, now).await.map_err(internal)? {
                return Err(OAuthError::invalid_grant("the device code was already used"));
            }
            let family = cx.store.family(&approval.family_id).await.map_err(internal)?;
            let Some(family) = family.filter(|f| f.revoked_at.is_none()) else {
                return Err(OAuthError::invalid_grant("the authorization was revoked"));
            };
            let grant = cx.store.grant_by_id(&approval.grant_id).await.map_err(internal)?;
            if grant.is_none_or(|g| g.revoked_at.is_some()) {
                return Err(OAuthError::invalid_grant("the user's consent was revoked"));
            }
            let user = cx
                .store
                .user_by_id(&approval.user_id)
                .await
                .map_err(internal)?
                .ok_or_else(|| OAuthError::invalid_grant("the user no longer exists"))?;
            let membership = cx
                .store
                .membership(&approval.workspace_id, &approval.user_id)
                .await
                .map_err(internal)?
                .ok_or_else(|| {
                    OAuthError::invalid_grant("the user is no longer a member of the workspace")
                })?;
            let scopes = cx.catalogue.delegable(&approval.scopes, &membership.permissions);
            if scopes.is_empty() {
                return Err(OAuthError::invalid_grant(
                    "the user no longer holds any of the granted permissions",
                ));
            }
            let audience = crate::oauth::resource::audience(&cx.settings, &family.resources, &p.resources)?;
            issue_user_tokens(
                cx,
                UserTokens {
                    client,
                    user: &user,
                    workspace_id: &approval.workspace_id,
                    grant_id: &approval.grant_id,
                    family: &family,
                    audience: &audience,
                    scopes: &scopes,
                    refresh_scopes: &scopes,
                    auth_time: approval.auth_time,
                    nonce: None,
                    with_refresh_token: client.allows_grant(GRANT_REFRESH_TOKEN)
                        || scopes.contains("offline_access"),
                    with_id_token: true,
                    dpop_jkt: p.dpop_jkt.as_deref(),
                    refresh_jkt: p.dpop_jkt.as_deref().filter(|_| client.is_public()),
                },
            )
            .await
        }
    }
}
