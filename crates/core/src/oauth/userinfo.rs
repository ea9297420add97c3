//! The OpenID Connect UserInfo endpoint (Core §5.3). Claims follow the granted scopes: `email`
//! needs the `email` scope and `name` the `profile` scope (Core §5.4).

use super::tokens::check_access_token;
use crate::context::{Cx, internal};
use portcullis_proto::{ErrorCode, OAuthError};
use portcullis_store::Store;
use serde::Serialize;

#[derive(Debug, Serialize, PartialEq)]
pub struct UserInfo {
    pub sub: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

/// The user's claims for a live access token. Errors are RFC 6750 `invalid_token`.
pub async fn userinfo<S: Store>(cx: &Cx<S>, bearer: &str) -> Result<UserInfo, OAuthError> {
    let live = check_access_token(cx, bearer).await?;
    let Some(uid) = live.user_id else {
        return Err(OAuthError::new(ErrorCode::InvalidToken, "this token does not represent a user"));
    };
    let user = cx
        .store
        .user_by_id(&uid)
        .await
        .map_err(internal)?
        .ok_or_else(|| OAuthError::new(ErrorCode::InvalidToken, "the user no longer exists"))?;
    Ok(UserInfo {
        sub: user.id.to_string(),
        email: live.scopes.contains("email").then(|| user.email.to_string()),
        name: if live.scopes.contains("profile") { user.name } else { None },
    })
}
