//! The refresh token grant (RFC 6749 §6) with rotation and replay detection (OAuth 2.1 §4.3.1,
//! RFC 9700 §4.14.2).
//!
//! Every use consumes the presented token and returns a new access + refresh pair; consumption is
//! one conditional update, so of concurrent refreshes exactly one rotates. A consumed token
//! presented again is one of three things:
//! - within the client's **overlap window**, the *immediately previous* token (its successor not
//!   yet used): the same successor pair is returned — the race concurrent clients (SSR apps, MCP
//!   clients with several workers) otherwise lose;
//! - within [`REFRESH_RACE_TOLERANCE`], successor unused: a concurrent duplicate, refused with
//!   `invalid_grant` but without revoking anything;
//! - anything else: a **replay**. The whole family is revoked (committed before answering) and the
//!   event is logged as a security event.

use crate::context::{Cx, internal};
use crate::keys::{open_under_secret, seal_under_secret};
use crate::oauth::tokens::{UserTokens, mint_user_tokens};
use crate::settings::REFRESH_RACE_TOLERANCE;
use portcullis_domain::{FamilyId, TokenHash};
use portcullis_proto::{OAuthError, TokenResponse};
use portcullis_store::{Client, RefreshRotation, RefreshToken, Store};
use serde::{Deserialize, Serialize};

pub struct Params {
    pub refresh_token: String,
    pub scope: Option<String>,
    /// RFC 8707 resources named on this request (already checked to be ours): one of those the
    /// authorization was for.
    pub resources: Vec<String>,
    /// The key of this request's verified DPoP proof (RFC 9449): the access token is bound to it.
    pub dpop_jkt: Option<String>,
}

fn bad_token() -> OAuthError {
    OAuthError::invalid_grant("the refresh token is invalid, expired or revoked")
}

/// The response kept (sealed) for the overlap window.
#[derive(Serialize, Deserialize)]
struct Kept {
    access_token: String,
    expires_in: u64,
    scope: Option<String>,
    refresh_token: Option<String>,
    /// The DPoP key the kept access token is bound to.
    #[serde(default)]
    jkt: Option<String>,
}

pub async fn exchange<S: Store>(cx: &Cx<S>, client: &Client, p: Params) -> Result<TokenResponse, OAuthError> {
    let now = cx.now();
    let hash = TokenHash::of(&p.refresh_token);
    let token = cx.store.refresh_token(&hash).await.map_err(internal)?.ok_or_else(bad_token)?;

    // Bound to the client it was issued to; a mismatch changes nothing.
    if token.client_id != client.id {
        return Err(bad_token());
    }
    // RFC 9449 §5: a bound refresh token needs a proof of its key; without one nothing changes
    // (a thief without the key cannot even trigger replay detection).
    if let Some(bound) = &token.dpop_jkt
        && p.dpop_jkt.as_ref() != Some(bound)
    {
        return Err(OAuthError::new(
            portcullis_proto::ErrorCode::InvalidDpopProof,
            "the refresh token is bound to another DPoP key",
        ));
    }
    // The family with its grant, user and membership, in one read.
    let state = cx.store.family_state(&token.family_id).await.map_err(internal)?.ok_or_else(bad_token)?;
    let family = state.family;
    if family.revoked_at.is_some() || family.expires_at <= now {
        return Err(bad_token());
    }
    if token.consumed_at.is_some() {
        return reuse(cx, client, &p, &token).await;
    }
    if token.expires_at <= now {
        return Err(bad_token());
    }

    // RFC 8707 §2.2: the access token is for one of the authorized resources.
    let audience = crate::oauth::resource::audience(&cx.settings, &family.resources, &p.resources)?;

    // RFC 6749 §6: the requested scope may narrow, never widen.
    let requested = match &p.scope {
        None => token.scopes.clone(),
        Some(raw) => {
            let set = cx.catalogue.parse_known(raw).map_err(OAuthError::invalid_scope)?;
            if !set.is_subset(&token.scopes) {
                return Err(OAuthError::invalid_scope("a refresh cannot add scopes to the original grant"));
            }
            set
        }
    };

    // Live checks: the grant and the user's membership still stand.
    let Some(grant_id) = &family.grant_id else {
        return Err(bad_token());
    };
    if state.grant_active != Some(true) {
        return Err(OAuthError::invalid_grant("the user's consent was revoked"));
    }
    let user = state.user.ok_or_else(bad_token)?;
    let permissions = state
        .permissions
        .ok_or_else(|| OAuthError::invalid_grant("the user is no longer a member of the workspace"))?;
    let scopes = cx.catalogue.delegable(&requested, &permissions);
    if scopes.is_empty() {
        return Err(OAuthError::invalid_grant("the user no longer holds any of the granted permissions"));
    }

    let minted = mint_user_tokens(
        cx,
        UserTokens {
            client,
            user: &user,
            workspace_id: &family.workspace_id,
            grant_id,
            family: &family,
            audience: &audience,
            scopes: &scopes,
            refresh_scopes: &token.scopes,
            auth_time: family.created_at,
            nonce: None,
            with_refresh_token: true,
            with_id_token: false,
            dpop_jkt: p.dpop_jkt.as_deref(),
            refresh_jkt: token.dpop_jkt.as_deref(),
        },
    )?;
    let next = minted.refresh.expect("a refresh always mints a successor");
    let sealed = (client.refresh_overlap > time::Duration::ZERO).then(|| {
        let kept = Kept {
            access_token: minted.response.access_token.clone(),
            expires_in: minted.response.expires_in,
            scope: minted.response.scope.clone(),
            refresh_token: minted.response.refresh_token.clone(),
            jkt: p.dpop_jkt.clone(),
        };
        seal_under_secret(&p.refresh_token, &serde_json::to_vec(&kept).expect("serialises"))
    });

    match cx.store.rotate_refresh(&hash, now, &next, sealed.as_deref()).await.map_err(internal)? {
        RefreshRotation::Rotated => Ok(minted.response),
        // A concurrent request consumed it between our read and our update.
        RefreshRotation::AlreadyConsumed(current) => reuse(cx, client, &p, &current).await,
        RefreshRotation::NotFound => Err(bad_token()),
    }
}

/// A consumed token presented again: the overlap window, a concurrent duplicate, or a replay.
async fn reuse<S: Store>(
    cx: &Cx<S>,
    client: &Client,
    p: &Params,
    token: &RefreshToken,
) -> Result<TokenResponse, OAuthError> {
    let now = cx.now();
    let consumed_at = token.consumed_at.expect("called for consumed tokens");
    let elapsed = now - consumed_at;
    let successor_unused = match &token.successor_hash {
        Some(h) => {
            cx.store.refresh_token(h).await.map_err(internal)?.is_some_and(|s| s.consumed_at.is_none())
        }
        None => false,
    };

    if successor_unused && elapsed <= client.refresh_overlap {
        let kept = token
            .successor_sealed
            .as_deref()
            .and_then(|sealed| open_under_secret(&p.refresh_token, sealed))
            .and_then(|plain| serde_json::from_slice::<Kept>(&plain).ok())
            // The kept access token is bound to a key: only a proof of the same key gets it.
            .filter(|k| k.jkt == p.dpop_jkt);
        if let Some(k) = kept {
            tracing::info!(event = "refresh_overlap", family_id = %token.family_id, "previous refresh token reused within the overlap window");
            return Ok(TokenResponse {
                token_type: crate::oauth::tokens::token_type(k.jkt.as_deref()),
                access_token: k.access_token,
                expires_in: k.expires_in,
                scope: k.scope,
                refresh_token: k.refresh_token,
                id_token: None,
                issued_token_type: None,
            });
        }
    }
    if successor_unused && elapsed <= REFRESH_RACE_TOLERANCE {
        tracing::info!(event = "refresh_race", family_id = %token.family_id, "concurrent refresh with the same token refused");
        return Err(OAuthError::invalid_grant(
            "this refresh token was just used by a concurrent request; use the refresh token that request received",
        ));
    }
    Err(replay(cx, &token.family_id).await)
}

/// A replayed refresh token: revoke the whole family, committed before the error is returned.
async fn replay<S: Store>(cx: &Cx<S>, family: &FamilyId) -> OAuthError {
    let outcome = cx.store.revoke_family(family, "refresh_token_reused", cx.now()).await;
    cx.cache.invalidate();
    match outcome {
        Ok(revoked) => tracing::warn!(
            event = "refresh_token_replay", security = true, family_id = %family, revoked,
            "a consumed refresh token was presented again; its family is revoked"
        ),
        Err(e) => return internal(e),
    }
    if let Err(e) = crate::events::family_replayed(cx, family, "refresh_token.replayed").await {
        return internal(e);
    }
    bad_token()
}
