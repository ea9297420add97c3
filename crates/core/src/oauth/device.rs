//! The device authorization grant (RFC 8628): the device asks for codes, the signed-in user enters
//! the short user code and answers the same consent page as in the browser flow.

use super::client_auth;
use super::consent::{ConsentView, Decision, eligible_workspaces, record_grant};
use crate::context::{Cx, internal};
use portcullis_domain::secret::prefix;
use portcullis_domain::{FamilyId, TokenHash, random_token};
use portcullis_proto::token::GRANT_DEVICE_CODE;
use portcullis_proto::{ClientAuth, OAuthError};
use portcullis_store::{DeviceApproval, DeviceCode, DeviceStatus, Session, Store, StoreError, TokenFamily};
use secrecy::ExposeSecret;
use serde::Serialize;
use time::Duration;

/// RFC 8628 §6.1: consonants only (no vowels, so no words; no look-alikes such as 0/O, 1/I).
pub const USER_CODE_ALPHABET: &[u8] = b"BCDFGHJKLMNPQRSTVWXZ";
/// Eight characters: 20^8 ≈ 2.6e10 codes (RFC 8628 §5.1 entropy), shown as `WDJB-MJHT`.
pub const USER_CODE_LEN: usize = 8;
/// Wrong user codes a user may enter per window before being refused (RFC 8628 §5.1: rate-limit
/// brute forcing). Counted in the database, so every replica enforces the same limit.
pub const MAX_USER_CODE_FAILURES: i64 = 5;
pub const USER_CODE_FAILURE_WINDOW: Duration = Duration::minutes(15);

/// The RFC 8628 §3.2 response.
#[derive(Debug, Serialize)]
pub struct DeviceAuthorizationResponse {
    pub device_code: String,
    pub user_code: String,
    pub verification_uri: String,
    pub verification_uri_complete: String,
    pub expires_in: i64,
    pub interval: i64,
}

fn random_user_code() -> String {
    let mut bytes = [0u8; USER_CODE_LEN];
    aws_lc_rs::rand::fill(&mut bytes).expect("randomness");
    // 256 is not a multiple of 20: reject the top values so every letter is equally likely.
    let mut out = String::with_capacity(USER_CODE_LEN);
    let mut i = 0;
    while out.len() < USER_CODE_LEN {
        if i == bytes.len() {
            aws_lc_rs::rand::fill(&mut bytes).expect("randomness");
            i = 0;
        }
        let b = bytes[i];
        i += 1;
        if b < 240 {
            out.push(USER_CODE_ALPHABET[(b % 20) as usize] as char);
        }
    }
    out
}

/// `WDJBMJHT` -> `WDJB-MJHT`.
pub fn display_user_code(code: &str) -> String {
    if code.len() == USER_CODE_LEN { format!("{}-{}", &code[..4], &code[4..]) } else { code.to_owned() }
}

/// What a person typed (`wdjb mjht`, `WDJB-MJHT`) to the stored form, or `None` if it cannot be a
/// user code.
pub fn normalize_user_code(raw: &str) -> Option<String> {
    let s: String =
        raw.chars().filter(|c| !c.is_whitespace() && *c != '-').collect::<String>().to_uppercase();
    (s.len() == USER_CODE_LEN && s.bytes().all(|b| USER_CODE_ALPHABET.contains(&b))).then_some(s)
}

/// `POST /oauth2/device_authorization` (RFC 8628 §3.1–3.2).
pub async fn start<S: Store>(
    cx: &Cx<S>,
    auth: &ClientAuth,
    scope: Option<&str>,
    resources: &[&str],
    verification_uri: String,
) -> Result<DeviceAuthorizationResponse, OAuthError> {
    let client = client_auth::authenticate(cx, auth).await?;
    let resources = crate::oauth::resource::requested(&cx.settings, resources)?;
    if !client.allows_grant(GRANT_DEVICE_CODE) {
        return Err(OAuthError::unauthorized_client(
            "this client may not use the device authorization grant",
        ));
    }
    let requested = match scope {
        Some(raw) => {
            let set = cx.catalogue.parse_known(raw).map_err(OAuthError::invalid_scope)?;
            if let Some(m) = set.iter().find(|s| s.is_manage()) {
                return Err(OAuthError::invalid_scope(format!("{m} can never be granted through OAuth")));
            }
            set
        }
        None => client.scopes.clone(),
    };
    let scopes = requested.intersection(&client.scopes);
    if scopes.is_empty() {
        return Err(OAuthError::invalid_scope("none of the requested scopes is allowed for this client"));
    }
    let now = cx.now();
    let device_code = random_token(prefix::DEVICE_CODE);
    let interval = cx.settings.device_poll_interval.whole_seconds();
    for _ in 0..5 {
        let user_code = random_user_code();
        let dc = DeviceCode {
            hash: TokenHash::of(device_code.expose_secret()),
            user_code: user_code.clone(),
            client_id: client.id.clone(),
            scopes: scopes.clone(),
            status: DeviceStatus::Pending,
            interval,
            last_polled_at: None,
            created_at: now,
            expires_at: now + cx.settings.device_code_ttl,
            resources: resources.clone(),
            approval: None,
        };
        match cx.store.insert_device_code(&dc).await {
            Ok(()) => {
                let shown = display_user_code(&user_code);
                return Ok(DeviceAuthorizationResponse {
                    device_code: device_code.expose_secret().to_owned(),
                    verification_uri_complete: format!("{verification_uri}?user_code={shown}"),
                    verification_uri,
                    user_code: shown,
                    expires_in: cx.settings.device_code_ttl.whole_seconds(),
                    interval,
                });
            }
            Err(StoreError::Duplicate(_)) => continue,
            Err(e) => return Err(internal(e)),
        }
    }
    Err(internal("could not draw a free user code"))
}

/// Why a user code cannot be used; the text is shown on the page.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum DeviceError {
    #[error("that code is not valid, or it has expired; check the code on your device")]
    NotFound,
    #[error("too many wrong codes; wait a few minutes and try again")]
    RateLimited,
    #[error("{0}")]
    Invalid(String),
    #[error("the server could not complete the request")]
    Internal,
}

impl From<OAuthError> for DeviceError {
    fn from(_: OAuthError) -> Self {
        Self::Internal
    }
}

/// Finds the pending device authorization for what the user typed, counting wrong codes.
async fn find<S: Store>(cx: &Cx<S>, session: &Session, raw: &str) -> Result<DeviceCode, DeviceError> {
    let now = cx.now();
    let failures = cx
        .store
        .user_code_failures_since(&session.user_id, now - USER_CODE_FAILURE_WINDOW)
        .await
        .map_err(internal)?;
    if failures >= MAX_USER_CODE_FAILURES {
        tracing::warn!(event = "user_code_rate_limited", security = true, user_id = %session.user_id, "user-code guessing refused");
        return Err(DeviceError::RateLimited);
    }
    let found = match normalize_user_code(raw) {
        Some(code) => cx.store.pending_device_by_user_code(&code, now).await.map_err(internal)?,
        None => None,
    };
    match found {
        Some(dc) => Ok(dc),
        None => {
            cx.store.record_user_code_failure(&session.user_id, now).await.map_err(internal)?;
            Err(DeviceError::NotFound)
        }
    }
}

/// The consent page for a user code (its `pending` field is the normalised user code).
pub async fn consent_view<S: Store>(
    cx: &Cx<S>,
    session: &Session,
    raw: &str,
) -> Result<ConsentView, DeviceError> {
    let dc = find(cx, session, raw).await?;
    let client =
        cx.store.client_by_id(&dc.client_id).await.map_err(internal)?.ok_or(DeviceError::NotFound)?;
    let workspaces =
        eligible_workspaces(cx, &client, &session.user_id).await.map_err(|_| DeviceError::Internal)?;
    let scopes = dc.scopes.iter().filter_map(|s| cx.catalogue.get(s.as_str()).cloned()).collect();
    Ok(ConsentView {
        pending: dc.user_code,
        unverified: client.origin != portcullis_store::ClientOrigin::Admin,
        client_name: client.name,
        client_id: client.id.to_string(),
        redirect_host: String::new(),
        scopes,
        workspaces,
    })
}

/// Records the user's answer for a device. Returns whether access was granted.
pub async fn decide<S: Store>(
    cx: &Cx<S>,
    session: &Session,
    raw: &str,
    decision: Decision,
) -> Result<bool, DeviceError> {
    let dc = find(cx, session, raw).await?;
    let now = cx.now();
    let Decision::Allow { workspace } = decision else {
        if !cx.store.deny_device(&dc.user_code, now).await.map_err(internal)? {
            return Err(DeviceError::NotFound);
        }
        tracing::info!(event = "consent_denied", client_id = %dc.client_id, user_id = %session.user_id, "device request denied");
        let mut r = crate::events::entry("consent.denied", now, None);
        r.client_id = Some(dc.client_id.to_string());
        r.user_id = Some(session.user_id.to_string());
        r.actor = Some(session.user_id.to_string());
        r.params = serde_json::json!({ "flow": "device" }).to_string();
        crate::events::write(cx.events(), r).await.map_err(internal)?;
        return Ok(false);
    };
    let client =
        cx.store.client_by_id(&dc.client_id).await.map_err(internal)?.ok_or(DeviceError::NotFound)?;
    if !eligible_workspaces(cx, &client, &session.user_id)
        .await
        .map_err(|_| DeviceError::Internal)?
        .iter()
        .any(|w| w.id == workspace)
    {
        return Err(DeviceError::Invalid("you cannot grant access to that workspace".into()));
    }
    let membership = cx
        .store
        .membership(&workspace, &session.user_id)
        .await
        .map_err(internal)?
        .ok_or_else(|| DeviceError::Invalid("you are not a member of that workspace".into()))?;
    let granted = cx.catalogue.delegable(&dc.scopes, &membership.permissions);
    if granted.is_empty() {
        return Err(DeviceError::Invalid(
            "you hold none of the requested permissions in that workspace".into(),
        ));
    }
    let grant =
        record_grant(cx, session, &client, &workspace, &granted).await.map_err(|_| DeviceError::Internal)?;
    let family = TokenFamily {
        id: FamilyId::generate(),
        client_id: client.id.clone(),
        user_id: Some(session.user_id.clone()),
        workspace_id: workspace.clone(),
        grant_id: Some(grant.id.clone()),
        created_at: now,
        expires_at: now + cx.settings.refresh_token_absolute_ttl,
        revoked_at: None,
        revoked_reason: None,
        resources: dc.resources.clone(),
    };
    let approval = DeviceApproval {
        user_id: session.user_id.clone(),
        workspace_id: workspace,
        grant_id: grant.id,
        family_id: family.id.clone(),
        scopes: granted,
        auth_time: session.auth_time,
    };
    if !cx.store.approve_device(&dc.user_code, &approval, &family, now).await.map_err(internal)? {
        return Err(DeviceError::NotFound);
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_codes_use_the_unambiguous_alphabet() {
        for _ in 0..200 {
            let c = random_user_code();
            assert_eq!(c.len(), USER_CODE_LEN);
            assert!(c.bytes().all(|b| USER_CODE_ALPHABET.contains(&b)), "{c}");
        }
        assert_eq!(display_user_code("WDJBMJHT"), "WDJB-MJHT");
    }

    #[test]
    fn typed_codes_are_normalised() {
        assert_eq!(normalize_user_code("wdjb-mjht").as_deref(), Some("WDJBMJHT"));
        assert_eq!(normalize_user_code(" WDJB MJHT ").as_deref(), Some("WDJBMJHT"));
        assert_eq!(normalize_user_code("WDJB-MJHA"), None, "vowels are not in the alphabet");
        assert_eq!(normalize_user_code("WDJB"), None);
    }
}
