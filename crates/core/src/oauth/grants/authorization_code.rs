//! The authorization code grant (RFC 6749 §4.1.3, RFC 7636 §4.5–4.6, OAuth 2.1 §4.1.3).

use crate::context::{Cx, internal};
use crate::oauth::pkce;
use crate::oauth::tokens::{UserTokens, issue_user_tokens};
use portcullis_domain::{FamilyId, TokenHash};
use portcullis_proto::token::GRANT_REFRESH_TOKEN;
use portcullis_proto::{OAuthError, TokenResponse};
use portcullis_store::{AuthCode, Client, CodeCheck, CodeRedemption, Store};

pub struct Params {
    pub code: String,
    pub redirect_uri: Option<String>,
    pub code_verifier: Option<String>,
    /// RFC 8707 resources named on this token request (already checked to be ours).
    pub resources: Vec<String>,
    /// The key of this request's verified DPoP proof (RFC 9449): the access token is bound to it.
    pub dpop_jkt: Option<String>,
}

/// One message for every unusable code, so a client learns nothing about other clients' codes.
fn bad_code() -> OAuthError {
    OAuthError::invalid_grant("the authorization code is invalid, expired or already used")
}

pub async fn exchange<S: Store>(cx: &Cx<S>, client: &Client, p: Params) -> Result<TokenResponse, OAuthError> {
    let hash = TokenHash::of(&p.code);
    let Some(verifier) = p.code_verifier.as_deref().filter(|v| pkce::valid_verifier(v)) else {
        return Err(refused(cx, client, &hash, &p).await);
    };

    // Consume in one conditional update that also checks everything the code is bound to
    // (client, PKCE, redirect URI, DPoP key, expiry): of concurrent redemptions exactly one
    // wins, and a request that does not match changes nothing, so a stolen code presented by
    // the wrong client or without its verifier cannot burn the legitimate client's.
    let check = CodeCheck {
        client_id: client.id.clone(),
        code_challenge: pkce::s256(verifier),
        redirect_uri: p.redirect_uri.clone(),
        dpop_jkt: p.dpop_jkt.clone(),
    };
    let code = match cx.store.redeem_code(&hash, cx.now(), &check).await.map_err(internal)? {
        CodeRedemption::Redeemed(c) => *c,
        // RFC 6749 §4.1.2: "If an authorization code is used more than once, the authorization
        // server MUST deny the request and SHOULD revoke (when possible) all tokens previously
        // issued based on that authorization code."
        CodeRedemption::AlreadyRedeemed { family } => return Err(replay(cx, &family).await),
        CodeRedemption::Refused => return Err(refused(cx, client, &hash, &p).await),
        CodeRedemption::NotFound => return Err(bad_code()),
    };

    // The family, grant, user and membership in one read.
    let state = cx.store.family_state(&code.family_id).await.map_err(internal)?.ok_or_else(bad_code)?;
    let family = state.family;
    if family.revoked_at.is_some() {
        return Err(bad_code());
    }
    // The code is spent either way: a token request for a resource that was not authorized
    // does not get a second try with the same code.
    let audience = crate::oauth::resource::audience(&cx.settings, &family.resources, &p.resources)?;
    if state.grant_active != Some(true) {
        return Err(OAuthError::invalid_grant("the user's consent was revoked"));
    }
    let user = state.user.ok_or_else(bad_code)?;
    // Permissions are checked again now: consent does not outlive membership.
    let permissions = state
        .permissions
        .ok_or_else(|| OAuthError::invalid_grant("the user is no longer a member of the workspace"))?;
    let scopes = cx.catalogue.delegable(&code.scopes, &permissions);
    if scopes.is_empty() {
        return Err(OAuthError::invalid_grant("the user no longer holds any of the granted permissions"));
    }

    issue_user_tokens(
        cx,
        UserTokens {
            client,
            user: &user,
            workspace_id: &code.workspace_id,
            grant_id: &code.grant_id,
            family: &family,
            audience: &audience,
            scopes: &scopes,
            refresh_scopes: &scopes,
            auth_time: code.auth_time,
            nonce: code.nonce.as_deref(),
            with_refresh_token: client.allows_grant(GRANT_REFRESH_TOKEN) || scopes.contains("offline_access"),
            with_id_token: true,
            dpop_jkt: p.dpop_jkt.as_deref(),
            // RFC 9449 §5: a public client's refresh token is bound to the proof's key.
            refresh_jkt: p.dpop_jkt.as_deref().filter(|_| client.is_public()),
        },
    )
    .await
}

/// The error for a request that did not consume the code: read the code (a failure path, so the
/// extra read costs nothing on the way to a token) and say which check failed.
async fn refused<S: Store>(cx: &Cx<S>, client: &Client, hash: &TokenHash, p: &Params) -> OAuthError {
    let code = match cx.store.code_by_hash(hash).await {
        Ok(Some(c)) => c,
        Ok(None) => return bad_code(),
        Err(e) => return internal(e),
    };
    if code.redeemed_at.is_some() {
        return replay(cx, &code.family_id).await;
    }
    check_bindings(cx, client, &code, p).err().unwrap_or_else(bad_code)
}

/// Says which binding of the code a request fails (the store already refused it).
fn check_bindings<S: Store>(
    cx: &Cx<S>,
    client: &Client,
    code: &AuthCode,
    p: &Params,
) -> Result<(), OAuthError> {
    // RFC 6749 §4.1.3: "ensure that the authorization code was issued to the authenticated
    // confidential client, or if the client is public, ensure that the code was issued to
    // "client_id" in the request".
    if code.client_id != client.id {
        return Err(bad_code());
    }
    if cx.now() >= code.expires_at {
        return Err(bad_code());
    }
    // RFC 6749 §4.1.3: redirect_uri is required if it was in the authorization request, and the
    // values must be identical.
    match (&p.redirect_uri, code.redirect_uri_explicit) {
        (Some(r), _) if *r == code.redirect_uri => {}
        (None, false) => {}
        (None, true) => {
            return Err(OAuthError::invalid_grant(
                "redirect_uri is required because the authorization request included it",
            ));
        }
        (Some(_), _) => {
            return Err(OAuthError::invalid_grant("redirect_uri does not match the authorization request"));
        }
    }
    // RFC 7636 §4.6 (S256 only).
    let Some(verifier) = &p.code_verifier else {
        return Err(OAuthError::invalid_grant("code_verifier is required (PKCE)"));
    };
    if !pkce::verify(verifier, &code.code_challenge) {
        return Err(OAuthError::invalid_grant("the code_verifier does not match the code_challenge"));
    }
    // RFC 9449 §10: a code requested with `dpop_jkt` (or pushed with a proof) is redeemed only
    // with a proof of that key.
    if let Some(bound) = &code.dpop_jkt
        && p.dpop_jkt.as_ref() != Some(bound)
    {
        return Err(OAuthError::new(
            portcullis_proto::ErrorCode::InvalidDpopProof,
            "the authorization code is bound to another DPoP key",
        ));
    }
    Ok(())
}

/// A replayed code: revoke every token issued from it, committed before the error is returned.
async fn replay<S: Store>(cx: &Cx<S>, family: &FamilyId) -> OAuthError {
    let outcome = cx.store.revoke_family(family, "authorization_code_reused", cx.now()).await;
    cx.cache.invalidate();
    match outcome {
        Ok(revoked) => tracing::warn!(
            event = "authorization_code_replay", family_id = %family, revoked,
            "authorization code used twice; its tokens are revoked"
        ),
        Err(e) => return internal(e),
    }
    if let Err(e) = crate::events::family_replayed(cx, family, "authorization_code.replayed").await {
        return internal(e);
    }
    bad_code()
}
