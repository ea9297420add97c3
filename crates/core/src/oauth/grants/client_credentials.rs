//! The client credentials grant (RFC 6749 §4.4): a confidential client acting for itself in its
//! own workspace. The token's `sub` is the client; there is no refresh token (§4.4.3).

use crate::context::Cx;
use crate::oauth::tokens::mint_client_token;
use portcullis_proto::{OAuthError, TokenResponse};
use portcullis_store::{Client, Store};

pub struct Params {
    pub scope: Option<String>,
    /// RFC 8707 resources (already checked to be ours); the token is for one of them.
    pub resources: Vec<String>,
    /// The key of this request's verified DPoP proof (RFC 9449): the access token is bound to it.
    pub dpop_jkt: Option<String>,
}

pub async fn exchange<S: Store>(cx: &Cx<S>, client: &Client, p: Params) -> Result<TokenResponse, OAuthError> {
    // RFC 6749 §4.4: "The client credentials grant type MUST only be used by confidential
    // clients." (Also enforced when the client is created.)
    if client.is_public() {
        return Err(OAuthError::unauthorized_client("public clients cannot use client credentials"));
    }
    let Some(workspace) = &client.workspace_id else {
        return Err(OAuthError::unauthorized_client("this client is not bound to a workspace"));
    };
    // Identity scopes describe a user; a client acting for itself has none.
    let own = client.scopes.filter(|s| cx.catalogue.get(s.as_str()).is_some_and(|i| !i.identity));
    let scopes = match &p.scope {
        None => own,
        Some(raw) => {
            let requested = cx.catalogue.parse_known(raw).map_err(OAuthError::invalid_scope)?;
            if let Some(m) = requested.iter().find(|s| s.is_manage()) {
                return Err(OAuthError::invalid_scope(format!("{m} can never be granted through OAuth")));
            }
            if !requested.is_subset(&own) {
                let extra = requested.difference(&own);
                return Err(OAuthError::invalid_scope(format!("this client may not request: {extra}")));
            }
            requested
        }
    };
    if scopes.is_empty() {
        return Err(OAuthError::invalid_scope("no scope to grant"));
    }
    // A client acting for itself may ask for any of our resources.
    let audience = crate::oauth::resource::audience(&cx.settings, &cx.settings.resources, &p.resources)
        .or_else(|e| if p.resources.is_empty() { Ok(cx.settings.audience.clone()) } else { Err(e) })?;
    mint_client_token(cx, client, workspace, &scopes, &audience, p.dpop_jkt.as_deref())
}
