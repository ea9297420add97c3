//! Token exchange (RFC 8693) for workload identity federation: a workload presents an OIDC token
//! from an external issuer it already has (a CI job's ID token) and receives a short-lived
//! service token of the workspace whose trust policy admits it. No long-lived secret is involved,
//! so client authentication is optional for this grant.
//!
//! The policy is chosen among those trusting the token's issuer: every policy whose audience,
//! subject and claim patterns the token satisfies. They must all belong to one workspace (a token
//! must never be able to pick its tenant); among them, the first whose scopes cover the request.

use crate::context::Cx;
use crate::events::Actor;
use crate::federation::{ExternalTokenError, policy_admits};
use crate::service_tokens::{self, Mint, Via};
use portcullis_domain::ScopeSet;
use portcullis_proto::{ErrorCode, OAuthError, TokenResponse};
use portcullis_store::{Store, TrustPolicy};
use serde_json::json;
use std::net::IpAddr;

pub const TOKEN_TYPE_ID_TOKEN: &str = "urn:ietf:params:oauth:token-type:id_token";
pub const TOKEN_TYPE_JWT: &str = "urn:ietf:params:oauth:token-type:jwt";
pub const TOKEN_TYPE_ACCESS_TOKEN: &str = "urn:ietf:params:oauth:token-type:access_token";

pub struct Params {
    pub subject_token: String,
    pub subject_token_type: String,
    pub requested_token_type: Option<String>,
    pub scope: Option<String>,
    pub audience: Option<String>,
    pub resources: Vec<String>,
    pub actor_token: Option<String>,
    pub ip: Option<IpAddr>,
}

pub async fn exchange<S: Store>(cx: &Cx<S>, p: Params) -> Result<TokenResponse, OAuthError> {
    // RFC 8693 §2.1: the subject token type must be one we can verify.
    if p.subject_token_type != TOKEN_TYPE_ID_TOKEN && p.subject_token_type != TOKEN_TYPE_JWT {
        return Err(OAuthError::invalid_request(
            "subject_token_type must be urn:ietf:params:oauth:token-type:id_token or …:jwt",
        ));
    }
    if p.actor_token.is_some() {
        return Err(OAuthError::invalid_request("delegation with actor_token is not supported"));
    }
    if let Some(t) = &p.requested_token_type
        && t != TOKEN_TYPE_ACCESS_TOKEN
        && t != TOKEN_TYPE_JWT
    {
        return Err(OAuthError::invalid_request("only access tokens can be requested"));
    }
    // RFC 8693 §2.2.2: an audience or resource we do not serve is `invalid_target`; the token
    // is for one of our protected resources (RFC 8707), the default audience if none is named.
    let mut targets: Vec<&str> = p.resources.iter().map(String::as_str).collect();
    targets.extend(p.audience.as_deref());
    let mut targets = crate::oauth::resource::requested(&cx.settings, &targets)?;
    if targets.len() > 1 {
        return Err(OAuthError::new(ErrorCode::InvalidTarget, "a service token is issued for one resource"));
    }
    let target = targets.pop();
    let requested = match &p.scope {
        Some(raw) => Some(cx.catalogue.parse_known(raw).map_err(OAuthError::invalid_scope)?),
        None => None,
    };

    let now = cx.now();
    let mut candidates: Vec<TrustPolicy> = Vec::new();
    let mut store_failed = false;
    let verified = cx
        .issuer_keys
        .verify(&p.subject_token, now, async |iss: &str| {
            match cx.store.trust_policies_for_issuer(iss).await {
                Ok(list) => {
                    candidates = list;
                    !candidates.is_empty()
                }
                Err(e) => {
                    tracing::error!(error = %e, "loading trust policies failed");
                    store_failed = true;
                    false
                }
            }
        })
        .await;
    if store_failed {
        return Err(OAuthError::server_error());
    }
    // RFC 8693 §2.2.2: an unacceptable subject token is `invalid_request`.
    let (issuer, claims) = verified.map_err(|e| match e {
        ExternalTokenError::Unreachable => OAuthError::new(
            ErrorCode::TemporarilyUnavailable,
            "the subject token's issuer could not be reached",
        ),
        other => OAuthError::invalid_request(other.to_string()),
    })?;
    let admitted: Vec<&TrustPolicy> = candidates.iter().filter(|pol| policy_admits(pol, &claims)).collect();
    let Some(first) = admitted.first() else {
        return Err(OAuthError::invalid_request(
            "no trust policy admits this token (audience, subject or claims differ)",
        ));
    };
    if admitted.iter().any(|pol| pol.workspace_id != first.workspace_id) {
        tracing::warn!(issuer, "a token matches trust policies of several workspaces; refused");
        return Err(OAuthError::invalid_request(
            "this token is admitted by trust policies of several workspaces; the policies must be narrowed",
        ));
    }
    let (policy, scopes): (&TrustPolicy, ScopeSet) = match &requested {
        None => (first, first.scopes.clone()),
        Some(req) => {
            let pol = admitted.iter().find(|pol| req.is_subset(&pol.scopes)).ok_or_else(|| {
                OAuthError::invalid_scope("the trust policy does not allow the requested scope")
            })?;
            (pol, req.clone())
        }
    };
    let subject = claims.get("sub").and_then(|s| s.as_str()).unwrap_or_default().to_owned();
    let actor = Actor { id: policy.id.to_string(), ip: p.ip };
    let mut resp = service_tokens::mint(
        cx,
        Mint {
            workspace: &policy.workspace_id,
            scopes: &scopes,
            ttl: policy.max_ttl,
            actor: &actor,
            via: Via::Federation,
            subject: &subject,
            detail: json!({ "external_issuer": issuer, "external_subject": subject }),
            resource: target.as_deref(),
        },
    )
    .await?;
    resp.issued_token_type = Some(TOKEN_TYPE_ACCESS_TOKEN);
    Ok(resp)
}
