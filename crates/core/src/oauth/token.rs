//! The token endpoint (RFC 6749 §3.2): authenticate the client, check it may use the grant, and
//! dispatch with an exhaustive `match` to the grant's module.

use super::client_auth;
use super::grants;
use crate::context::Cx;
use portcullis_proto::{ClientAuth, OAuthError, TokenRequest, TokenResponse};
use portcullis_store::Store;

pub async fn exchange<S: Store>(
    cx: &Cx<S>,
    auth: ClientAuth,
    req: TokenRequest,
) -> Result<TokenResponse, OAuthError> {
    let client = client_auth::authenticate(cx, &auth).await?;
    if !client.allows_grant(req.grant_type()) {
        return Err(OAuthError::unauthorized_client(format!(
            "this client may not use the {} grant",
            req.grant_type()
        )));
    }
    match req {
        TokenRequest::AuthorizationCode { code, redirect_uri, code_verifier } => {
            grants::authorization_code::exchange(
                cx,
                &client,
                grants::authorization_code::Params { code, redirect_uri, code_verifier },
            )
            .await
        }
    }
}
