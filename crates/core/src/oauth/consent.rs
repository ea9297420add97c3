//! Consent: what the consent page shows, what the user decided, and the authorization code that
//! results (RFC 6749 §4.1.2).
//!
//! The granted scopes are the requested scopes ∩ the client's registered scopes (already applied
//! when the request was validated) ∩ the user's permissions in the chosen workspace; identity
//! scopes (`openid`, `email`, …) are the user's own to grant. The result is recorded as a grant,
//! one per user, client and workspace.

use super::append_query;
use super::authorize::{AuthorizationRequest, error_redirect};
use crate::context::{Cx, internal};
use crate::scopes::ScopeInfo;
use crate::settings::CODE_TTL;
use portcullis_domain::secret::prefix;
use portcullis_domain::{FamilyId, GrantId, ScopeSet, TokenHash, UserId, WorkspaceId, random_token};
use portcullis_proto::OAuthError;
use portcullis_store::{
    AuthCode, Client, Grant, PendingAuthorization, Session, Store, TokenFamily, Workspace,
};
use secrecy::ExposeSecret;

/// What the consent page shows.
#[derive(Debug)]
pub struct ConsentView {
    pub pending: String,
    pub client_name: String,
    pub client_id: String,
    /// The host the user will be sent back to, so they can recognise the app.
    pub redirect_host: String,
    /// The app registered itself (RFC 7591) or is known only by its metadata document: its name
    /// is its own claim, so the page says so and leads with the redirect host.
    pub unverified: bool,
    pub scopes: Vec<ScopeInfo>,
    /// The workspaces the user may grant access to (empty: nothing can be granted).
    pub workspaces: Vec<Workspace>,
}

/// What the consent step does.
#[derive(Debug)]
pub enum ConsentStep {
    /// Sign in first (no session, or `prompt=login` asked for a fresh sign-in).
    Login,
    Show(ConsentView),
    /// A remembered consent covers the request: straight back to the client.
    Redirect(String),
}

/// Why the consent step cannot go on; shown on our error page.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ConsentError {
    #[error(
        "this authorization request has expired or was already answered; return to the app and start again"
    )]
    Expired,
    #[error("{0}")]
    Invalid(String),
    #[error("the server could not complete the request")]
    Internal,
}

impl From<OAuthError> for ConsentError {
    fn from(_: OAuthError) -> Self {
        Self::Internal
    }
}

/// The user's answer.
#[derive(Debug)]
pub enum Decision {
    Allow { workspace: WorkspaceId },
    Deny,
}

async fn load<S: Store>(
    cx: &Cx<S>,
    id: &str,
) -> Result<(PendingAuthorization, AuthorizationRequest, std::sync::Arc<Client>), ConsentError> {
    let pending = cx.pending(id).await.map_err(internal)?.ok_or(ConsentError::Expired)?;
    let req: AuthorizationRequest =
        serde_json::from_str(&pending.payload).map_err(|e| ConsentError::from(internal(e)))?;
    let client =
        super::client_auth::cached_client(cx, req.client_id.as_str()).await?.ok_or(ConsentError::Expired)?;
    Ok((pending, req, client))
}

/// `GET /consent`: what to show for a pending request.
pub async fn show<S: Store>(
    cx: &Cx<S>,
    pending_id: &str,
    session: Option<&Session>,
) -> Result<ConsentStep, ConsentError> {
    let (pending, req, client) = load(cx, pending_id).await?;
    let Some(session) = session else { return Ok(ConsentStep::Login) };
    if req.prompt.login && session.auth_time < pending.created_at {
        return Ok(ConsentStep::Login);
    }
    if !req.prompt.consent
        && let Some(url) = remembered(cx, &req, session).await?
    {
        cx.take_pending(pending_id).await.map_err(internal)?;
        return Ok(ConsentStep::Redirect(url));
    }
    let workspaces = eligible_workspaces(cx, &client, &session.user_id).await?;
    let scopes = req.scopes.iter().filter_map(|s| cx.catalogue.get(s.as_str()).cloned()).collect();
    Ok(ConsentStep::Show(ConsentView {
        pending: pending.id,
        unverified: client.origin != portcullis_store::ClientOrigin::Admin,
        client_name: client.name.clone(),
        client_id: client.id.to_string(),
        redirect_host: url::Url::parse(&req.redirect_uri)
            .ok()
            .and_then(|u| u.host_str().map(str::to_owned))
            .unwrap_or_else(|| req.redirect_uri.clone()),
        scopes,
        workspaces,
    }))
}

/// The user's workspaces this client may be granted (a workspace-bound client: only its own).
pub(crate) async fn eligible_workspaces<S: Store>(
    cx: &Cx<S>,
    client: &Client,
    user: &UserId,
) -> Result<Vec<Workspace>, ConsentError> {
    Ok(eligible_memberships(cx, client, user).await?.into_iter().map(|(w, _)| w).collect())
}

/// The workspaces the user may grant `client`, with the user's membership in each.
async fn eligible_memberships<S: Store>(
    cx: &Cx<S>,
    client: &Client,
    user: &UserId,
) -> Result<Vec<(Workspace, portcullis_store::Membership)>, ConsentError> {
    let all = cx.store.memberships_of_user(user).await.map_err(internal)?;
    Ok(all.into_iter().filter(|(w, _)| client.workspace_id.as_ref().is_none_or(|id| *id == w.id)).collect())
}

/// `POST /consent`: records the decision and returns where to send the browser.
pub async fn decide<S: Store>(
    cx: &Cx<S>,
    pending_id: &str,
    session: &Session,
    decision: Decision,
) -> Result<String, ConsentError> {
    let (_, req, client) = load(cx, pending_id).await?;
    let back =
        |e: OAuthError| error_redirect(&cx.settings.issuer, &req.redirect_uri, req.state.as_deref(), &e);

    let Decision::Allow { workspace } = decision else {
        take(cx, pending_id).await?;
        tracing::info!(event = "consent_denied", client_id = %client.id, user_id = %session.user_id, "consent denied");
        let mut r = crate::events::entry("consent.denied", cx.now(), None);
        r.client_id = Some(client.id.to_string());
        r.user_id = Some(session.user_id.to_string());
        r.actor = Some(session.user_id.to_string());
        r.params = serde_json::json!({ "scope": req.scopes.to_string() }).to_string();
        crate::events::write(cx.events(), r).await.map_err(|e| ConsentError::from(internal(e)))?;
        return Ok(back(OAuthError::access_denied("the user denied the request")));
    };

    // One query answers both: may the client be granted this workspace, and what the user holds.
    let Some((_, membership)) = eligible_memberships(cx, &client, &session.user_id)
        .await?
        .into_iter()
        .find(|(w, _)| w.id == workspace)
    else {
        return Err(ConsentError::Invalid("you cannot grant access to that workspace".into()));
    };
    take(cx, pending_id).await?;

    let granted = cx.catalogue.delegable(&req.scopes, &membership.permissions);
    if granted.is_empty() {
        return Ok(back(OAuthError::access_denied(
            "you hold none of the requested permissions in that workspace",
        )));
    }

    let grant = record_grant(cx, session, &client, &workspace, &granted).await?;
    Ok(issue_code(cx, &req, session, &grant, &granted).await?)
}

/// Records consent as the user's one active grant to this client in this workspace (adding the
/// newly granted scopes to any it already had).
pub(crate) async fn record_grant<S: Store>(
    cx: &Cx<S>,
    session: &Session,
    client: &Client,
    workspace: &WorkspaceId,
    granted: &ScopeSet,
) -> Result<Grant, OAuthError> {
    let now = cx.now();
    let previous = cx
        .store
        .active_grants(&session.user_id, &client.id)
        .await
        .map_err(internal)?
        .into_iter()
        .find(|g| g.workspace_id == *workspace)
        .map(|g| g.scopes);
    let created = previous.is_none();
    let previous = previous.unwrap_or_default();
    let grant = cx
        .store
        .upsert_grant(&Grant {
            id: GrantId::generate(),
            user_id: session.user_id.clone(),
            client_id: client.id.clone(),
            workspace_id: workspace.clone(),
            scopes: previous.union(granted),
            created_at: now,
            updated_at: now,
            revoked_at: None,
        })
        .await
        .map_err(internal)?;
    tracing::info!(
        event = "consent_given", client_id = %client.id, user_id = %session.user_id,
        workspace_id = %workspace, grant_id = %grant.id, scope = %granted, "consent given"
    );
    let mut r = crate::events::entry("consent.given", now, Some(workspace));
    r.client_id = Some(client.id.to_string());
    r.user_id = Some(session.user_id.to_string());
    r.actor = Some(session.user_id.to_string());
    r.subject = Some(grant.id.to_string());
    r.params = serde_json::json!({ "scope": granted.to_string(), "grant_scope": grant.scopes.to_string() })
        .to_string();
    crate::events::write(cx.events(), r.clone()).await.map_err(internal)?;
    if created {
        let mut g = r;
        g.id = portcullis_domain::AuditEntryId::generate();
        g.event = "grant.created".into();
        crate::events::write(cx.events(), g).await.map_err(internal)?;
    }
    Ok(grant)
}

async fn take<S: Store>(cx: &Cx<S>, pending_id: &str) -> Result<(), ConsentError> {
    // Single use: of two concurrent submissions of one form, only one proceeds.
    cx.take_pending(pending_id).await.map_err(internal)?.ok_or(ConsentError::Expired)?;
    Ok(())
}

/// A remembered consent: exactly one active grant of this user to this client that already
/// covers what the request would grant in its workspace. With several candidates the user must
/// choose the workspace, so none is used.
pub async fn remembered<S: Store>(
    cx: &Cx<S>,
    req: &AuthorizationRequest,
    session: &Session,
) -> Result<Option<String>, OAuthError> {
    let grants = cx.store.active_grants(&session.user_id, &req.client_id).await.map_err(internal)?;
    let mut found = None;
    for g in grants {
        let Some(m) = cx.store.membership(&g.workspace_id, &session.user_id).await.map_err(internal)? else {
            continue;
        };
        let effective = cx.catalogue.delegable(&req.scopes, &m.permissions);
        if !effective.is_empty() && effective.is_subset(&g.scopes) {
            if found.is_some() {
                return Ok(None);
            }
            found = Some((g, effective));
        }
    }
    match found {
        Some((g, scopes)) => Ok(Some(issue_code(cx, req, session, &g, &scopes).await?)),
        None => Ok(None),
    }
}

/// Creates the authorization code (and the token family its tokens will belong to) and returns
/// the success redirect with `code`, `state` and `iss` (RFC 9207).
async fn issue_code<S: Store>(
    cx: &Cx<S>,
    req: &AuthorizationRequest,
    session: &Session,
    grant: &Grant,
    scopes: &ScopeSet,
) -> Result<String, OAuthError> {
    let now = cx.now();
    let secret = random_token(prefix::AUTH_CODE);
    let family = TokenFamily {
        id: FamilyId::generate(),
        client_id: req.client_id.clone(),
        user_id: Some(session.user_id.clone()),
        workspace_id: grant.workspace_id.clone(),
        grant_id: Some(grant.id.clone()),
        created_at: now,
        expires_at: now + cx.settings.refresh_token_absolute_ttl,
        revoked_at: None,
        revoked_reason: None,
        resources: req.resources.clone(),
    };
    let code = AuthCode {
        hash: TokenHash::of(secret.expose_secret()),
        client_id: req.client_id.clone(),
        user_id: session.user_id.clone(),
        workspace_id: grant.workspace_id.clone(),
        grant_id: grant.id.clone(),
        family_id: family.id.clone(),
        redirect_uri: req.redirect_uri.clone(),
        redirect_uri_explicit: req.redirect_uri_explicit,
        code_challenge: req.code_challenge.clone(),
        scopes: scopes.clone(),
        nonce: req.nonce.clone(),
        auth_time: session.auth_time,
        created_at: now,
        expires_at: now + CODE_TTL,
        redeemed_at: None,
        dpop_jkt: req.dpop_jkt.clone(),
    };
    cx.store.insert_code(&code, &family).await.map_err(internal)?;
    let mut p: Vec<(&str, &str)> = vec![("code", secret.expose_secret())];
    if let Some(s) = &req.state {
        p.push(("state", s));
    }
    p.push(("iss", &cx.settings.issuer));
    Ok(append_query(&req.redirect_uri, &p))
}
