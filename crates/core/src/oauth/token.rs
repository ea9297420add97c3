//! The token endpoint (RFC 6749 §3.2): authenticate the client, check it may use the grant, and
//! dispatch with an exhaustive `match` to the grant's module.

use super::client_auth;
use super::dpop;
use super::grants;
use super::resource;
use crate::context::Cx;
use portcullis_proto::token::GRANT_TOKEN_EXCHANGE;
use portcullis_proto::{ClientAuth, ErrorCode, OAuthError, TokenRequest, TokenResponse};
use portcullis_store::{ClientOrigin, Store};
use std::net::IpAddr;

/// A DPoP proof sent to the token endpoint (the single `DPoP` header), and the endpoint's URL.
pub struct DpopProof<'a> {
    pub proof: &'a str,
    pub url: &'a str,
}

/// `auth` is `None` when the request carried no client credentials at all: allowed only for
/// token exchange (workload federation), where the subject token is the credential. Tokens of
/// token exchange are never DPoP-bound (their `token_type` says `Bearer`, as RFC 9449 §5 allows).
pub async fn exchange<S: Store>(
    cx: &Cx<S>,
    auth: Option<ClientAuth>,
    req: TokenRequest,
    ip: Option<IpAddr>,
    dpop: Option<DpopProof<'_>>,
) -> Result<TokenResponse, OAuthError> {
    if let TokenRequest::TokenExchange {
        subject_token,
        subject_token_type,
        requested_token_type,
        scope,
        audience,
        resources,
        actor_token,
    } = req
    {
        // A client that does authenticate must be registered for the grant.
        if let Some(auth) = &auth {
            let client = client_auth::authenticate(cx, auth).await?;
            if !client.allows_grant(GRANT_TOKEN_EXCHANGE) {
                return Err(OAuthError::unauthorized_client(
                    "this client may not use the token-exchange grant",
                ));
            }
        }
        let p = grants::token_exchange::Params {
            subject_token,
            subject_token_type,
            requested_token_type,
            scope,
            audience,
            resources,
            actor_token,
            ip,
        };
        return grants::token_exchange::exchange(cx, p).await;
    }
    let auth = auth.ok_or_else(|| OAuthError::invalid_client("client authentication is required"))?;
    let client = client_auth::authenticate(cx, &auth).await?;
    let dpop_jkt = match dpop {
        Some(d) => {
            let target = dpop::Target { method: "POST", url: d.url, access_token: None };
            Some(dpop::verify(cx, d.proof, &target).await.map_err(|e| e.oauth())?.jkt)
        }
        None if client.dpop_bound => {
            return Err(OAuthError::new(
                ErrorCode::InvalidDpopProof,
                "this client's tokens must be DPoP-bound: send a DPoP proof",
            ));
        }
        None => None,
    };
    // A refresh token issued because `offline_access` was granted may be used even by a client
    // not registered for the refresh grant (the grant module still checks the token's binding).
    let refresh_via_offline = matches!(req, TokenRequest::RefreshToken { .. });
    if !client.allows_grant(req.grant_type()) && !refresh_via_offline {
        return Err(OAuthError::unauthorized_client(format!(
            "this client may not use the {} grant",
            req.grant_type()
        )));
    }
    let issued = match req {
        TokenRequest::AuthorizationCode { code, redirect_uri, code_verifier, resources } => {
            let resources = resource::requested(&cx.settings, &as_strs(&resources))?;
            grants::authorization_code::exchange(
                cx,
                &client,
                grants::authorization_code::Params { code, redirect_uri, code_verifier, resources, dpop_jkt },
            )
            .await
        }
        TokenRequest::RefreshToken { refresh_token, scope, resources } => {
            let resources = resource::requested(&cx.settings, &as_strs(&resources))?;
            grants::refresh_token::exchange(
                cx,
                &client,
                grants::refresh_token::Params { refresh_token, scope, resources, dpop_jkt },
            )
            .await
        }
        TokenRequest::ClientCredentials { scope, resources } => {
            let resources = resource::requested(&cx.settings, &as_strs(&resources))?;
            grants::client_credentials::exchange(
                cx,
                &client,
                grants::client_credentials::Params { scope, resources, dpop_jkt },
            )
            .await
        }
        TokenRequest::DeviceCode { device_code, resources } => {
            let resources = resource::requested(&cx.settings, &as_strs(&resources))?;
            let p = grants::device_code::Params { device_code, resources, dpop_jkt };
            grants::device_code::exchange(cx, &client, p).await
        }
        TokenRequest::TokenExchange { .. } => unreachable!("handled above: it needs no client"),
    }?;
    // Self-registered clients that get tokens are in use, and are not reclaimed (kept to the hour).
    let now = cx.now();
    if client.origin != ClientOrigin::Admin
        && client.last_used_at.is_none_or(|t| now - t > time::Duration::hours(1))
        && let Err(e) = cx.store.touch_client(&client.id, now).await
    {
        tracing::warn!(error = %e, client_id = %client.id, "recording client use failed");
    }
    Ok(issued)
}

fn as_strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}
