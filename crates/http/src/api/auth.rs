//! Who is calling the admin API: any credential the guard accepts (an API key or a live access
//! token, typically a service token), authenticated and charged to its budgets by the same
//! [`portcullis_guard::Guard`] as the protected API, so limits (shared through Redis when
//! configured), caches and challenges are one implementation. The workspace is the
//! credential's own: nothing in the request can point a credential at another workspace.

use super::problem::Problem;
use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use portcullis_core::Cx;
use portcullis_core::events::Actor;
use portcullis_domain::{ApiKeyId, ScopeSet};
use portcullis_guard::audit::{AuditNote, rejection_code};
use portcullis_guard::{CredentialKind, Guard, Rejection};
use portcullis_store::{Store, Workspace};
use std::net::SocketAddr;

/// An authenticated caller of the admin API.
pub struct Principal {
    pub workspace: Workspace,
    pub scopes: ScopeSet,
    pub actor: Actor,
    /// Set when the caller used an API key (some operations need one).
    pub api_key: Option<ApiKeyId>,
}

impl Principal {
    /// RFC 6750 §3.1 `insufficient_scope` unless the credential holds `scope`.
    pub fn require(&self, scope: &str) -> Result<(), Problem> {
        if self.scopes.contains(scope) { Ok(()) } else { Err(Problem::insufficient_scope(scope)) }
    }
}

/// The guard's refusal as an RFC 9457 problem (with the same challenge).
fn problem(r: Rejection) -> Problem {
    match r {
        Rejection::Missing => {
            Problem::unauthorized("send an API key or token as Authorization: Bearer …", None)
        }
        Rejection::InvalidToken(why) => Problem::unauthorized(why, Some("invalid_token")),
        Rejection::IpNotAllowed(ip) => Problem::ip_not_allowed(ip),
        Rejection::InsufficientScope(s) => Problem::insufficient_scope(&s.join(" ")),
        Rejection::RateLimited(d) => Problem::rate_limited(d.retry_after_secs.unwrap_or(1)),
        Rejection::InvalidDpopProof(why) => Problem::unauthorized(why, Some("invalid_dpop_proof")),
        Rejection::UseDpopNonce => {
            Problem::unauthorized("the DPoP proof must carry the server nonce", Some("use_dpop_nonce"))
        }
        Rejection::Internal => Problem::internal(),
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
        let guard = parts.extensions.get::<Guard<S>>().cloned().ok_or_else(|| {
            tracing::error!("the admin API router is mounted without its guard");
            Problem::internal()
        })?;
        let note = parts.extensions.get::<AuditNote>().cloned();
        let refused = |r: Rejection| {
            if let Some(n) = &note {
                n.set_error(rejection_code(&r));
            }
            problem(r)
        };
        let call = portcullis_guard::Call::of(&parts.method, &parts.uri, &parts.extensions, &parts.headers);
        let who = guard.authenticate(&call, peer).await.map_err(refused)?;
        if let Some(n) = &note {
            n.set_principal(&who);
        }
        let who = guard.admit(who, &[] as &[&str]).await.map_err(refused)?.principal;
        let workspace = cx
            .store
            .workspace_by_id(&who.workspace_id)
            .await
            .map_err(|e| {
                tracing::error!(error = %e, "loading the caller's workspace failed");
                Problem::internal()
            })?
            .ok_or_else(|| {
                Problem::unauthorized("the credential's workspace no longer exists", Some("invalid_token"))
            })?;
        let actor_id = match who.kind {
            CredentialKind::ApiKey => who.credential_id.clone(),
            CredentialKind::ServiceToken => {
                who.minted_by.clone().unwrap_or_else(|| who.credential_id.clone())
            }
            CredentialKind::AccessToken => {
                who.user_id.as_ref().map(|u| u.to_string()).or(who.client_id.clone()).unwrap_or_default()
            }
        };
        let api_key =
            (who.kind == CredentialKind::ApiKey).then(|| ApiKeyId::from_string(who.credential_id.as_str()));
        Ok(Principal {
            workspace,
            scopes: who.scopes,
            actor: Actor { id: actor_id, ip: Some(who.ip) },
            api_key,
        })
    }
}
