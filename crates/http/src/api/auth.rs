//! Who is calling the admin API: an API key (`Authorization: Bearer pcl_live_…`) or a live
//! access token (a service token, typically). The workspace is the credential's own: nothing in
//! the request can point a credential at another workspace.

use super::problem::Problem;
use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::header;
use axum::http::request::Parts;
use portcullis_core::Cx;
use portcullis_core::api_keys::{KeyRejection, authenticate_key};
use portcullis_core::events::Actor;
use portcullis_core::oauth::tokens::check_access_token;
use portcullis_domain::{ApiKeySecret, ScopeSet, WorkspaceId};
use portcullis_guard::client_ip::client_ip;
use portcullis_store::{ApiKey, Store, Workspace};
use std::net::SocketAddr;

/// An authenticated caller of the admin API.
pub struct Principal {
    pub workspace: Workspace,
    pub scopes: ScopeSet,
    pub actor: Actor,
    /// Set when the caller used an API key (some operations need one).
    pub key: Option<ApiKey>,
}

impl Principal {
    /// RFC 6750 §3.1 `insufficient_scope` unless the credential holds `scope`.
    pub fn require(&self, scope: &str) -> Result<(), Problem> {
        if self.scopes.contains(scope) { Ok(()) } else { Err(Problem::insufficient_scope(scope)) }
    }
}

impl<S: Store> FromRequestParts<Cx<S>> for Principal {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, cx: &Cx<S>) -> Result<Self, Problem> {
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0.ip())
            .ok_or_else(Problem::internal)?;
        let ip = client_ip(&cx.settings.trusted_proxies, peer, &parts.headers);
        if !parts.headers.contains_key(header::AUTHORIZATION) {
            return Err(Problem::unauthorized("send an API key or token as Authorization: Bearer …", None));
        }
        let token = crate::routes::meta::bearer(&parts.headers).ok_or_else(|| {
            Problem::unauthorized(
                "the Authorization header must be Bearer <credential>",
                Some("invalid_request"),
            )
        })?;

        let (workspace_id, scopes, actor, key) = if ApiKeySecret::looks_like(token) {
            let key = authenticate_key(cx, token, ip).await.map_err(|e| match e {
                KeyRejection::Internal => Problem::internal(),
                KeyRejection::AddressNotAllowed => {
                    Problem::new(axum::http::StatusCode::FORBIDDEN, "forbidden", e.to_string())
                }
                other => Problem::unauthorized(other.to_string(), Some("invalid_token")),
            })?;
            if let Some(limit) = key.rate_limit {
                let d = cx.limiter.charge(&key.id, limit, cx.now());
                if !d.allowed {
                    return Err(Problem::rate_limited(d.reset));
                }
            }
            let actor = Actor { id: key.id.to_string(), ip: Some(ip) };
            (key.workspace_id.clone(), key.scopes.clone(), actor, Some(key))
        } else {
            let live = check_access_token(cx, token).await.map_err(|e| {
                if e.code == portcullis_proto::ErrorCode::ServerError {
                    Problem::internal()
                } else {
                    Problem::unauthorized(
                        e.description.as_deref().unwrap_or("invalid token").to_owned(),
                        Some("invalid_token"),
                    )
                }
            })?;
            let actor =
                Actor { id: live.claims.minted_by.clone().unwrap_or(live.claims.sub.clone()), ip: Some(ip) };
            (WorkspaceId::from_string(live.claims.workspace_id.as_str()), live.scopes, actor, None)
        };
        let workspace = cx
            .store
            .workspace_by_id(&workspace_id)
            .await
            .map_err(|e| {
                tracing::error!(error = %e, "loading the caller's workspace failed");
                Problem::internal()
            })?
            .ok_or_else(|| {
                Problem::unauthorized("the credential's workspace no longer exists", Some("invalid_token"))
            })?;
        Ok(Principal { workspace, scopes, actor, key })
    }
}
