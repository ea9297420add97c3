//! The authorization endpoint (RFC 6749 §4.1.1, RFC 7636 §4.3, RFC 9207, OpenID Connect Core
//! §3.1.2): validate the request, then decide what the browser does next.
//!
//! Until the client and its redirect URI are established, an error is shown to the user and
//! **never** redirected (RFC 6749 §4.1.2.1: otherwise we would be an open redirector). After that,
//! errors go back to the client with `error`, `state` and `iss`.

use super::append_query;
use super::consent;
use super::pkce;
use crate::context::{Cx, internal};
use portcullis_domain::redirect_uri::RedirectKind;
use portcullis_domain::{ClientId, ScopeSet};
use portcullis_proto::token::GRANT_AUTHORIZATION_CODE;
use portcullis_proto::{ErrorCode, OAuthError, Params};
use portcullis_store::{Client, PendingAuthorization, Session, Store};
use serde::{Deserialize, Serialize};

/// A validated authorization request, kept server-side while the user signs in and consents.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct AuthorizationRequest {
    pub client_id: ClientId,
    pub redirect_uri: String,
    pub redirect_uri_explicit: bool,
    /// Requested scopes the client may have (the request ∩ the client's registered scopes).
    pub scopes: ScopeSet,
    pub state: Option<String>,
    pub code_challenge: String,
    pub nonce: Option<String>,
    pub prompt: Prompt,
    /// RFC 8707: the protected resources the client asks access to (ours, checked).
    #[serde(default)]
    pub resources: Vec<String>,
    /// RFC 9449 §10: the DPoP key (thumbprint) the code will be bound to, from `dpop_jkt` or from
    /// the proof sent with the pushed request.
    #[serde(default)]
    pub dpop_jkt: Option<String>,
}

/// The OpenID Connect `prompt` parameter (§3.1.2.1).
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Prompt {
    pub none: bool,
    pub login: bool,
    pub consent: bool,
}

/// Where an authorization error goes.
#[derive(Debug, PartialEq)]
pub enum AuthorizeError {
    /// Shown on our error page: the redirect URI is not (yet) trustworthy.
    Page(OAuthError),
    /// Sent to the client: the full redirect URL carrying `error`, `state` and `iss`.
    Redirect(String),
    /// The client and redirect URI are known but the request is bad: `redirect` carries `error`
    /// to the client (a pushed request answers with `error` itself).
    Invalid { error: OAuthError, redirect: String },
}

impl AuthorizeError {
    /// The error, for endpoints that answer in JSON (pushed authorization requests).
    pub fn into_error(self) -> OAuthError {
        match self {
            Self::Page(e) | Self::Invalid { error: e, .. } => e,
            Self::Redirect(_) => OAuthError::invalid_request("the authorization request is invalid"),
        }
    }
}

/// RFC 9126 §2.2: the `request_uri` of a pushed request.
pub const REQUEST_URI_PREFIX: &str = "urn:ietf:params:oauth:request_uri:";
/// How long a pushed request can be used (RFC 9126 §2.2 suggests 5 to 600 seconds).
pub const PUSHED_REQUEST_TTL: time::Duration = time::Duration::seconds(60);

/// What is stored for a pushed request: wrapped, so it can never be mistaken for (and consented
/// to as) a pending authorization.
#[derive(Serialize, Deserialize)]
struct Pushed {
    pushed: AuthorizationRequest,
}

/// `POST /oauth2/par` (RFC 9126 §2): validates the authorization request of the authenticated
/// `client` as the authorization endpoint would and stores it for single use. Returns the
/// `request_uri` and its lifetime in seconds. `proof_jkt` is the key of a DPoP proof sent with
/// the push (RFC 9449 §10.1): the code is bound to it, and it must agree with any `dpop_jkt`.
pub async fn push<S: Store>(
    cx: &Cx<S>,
    client: &Client,
    p: &Params,
    proof_jkt: Option<String>,
) -> Result<(String, i64), OAuthError> {
    if p.has("request_uri") {
        return Err(OAuthError::invalid_request("request_uri cannot be pushed (RFC 9126 §2.1)"));
    }
    if p.get("client_id").is_some_and(|id| id != client.id.as_str()) {
        return Err(OAuthError::invalid_request("client_id does not match the authenticated client"));
    }
    let mut p = p.clone();
    p.set("client_id", client.id.as_str());
    let mut req = check(cx, &p, true).await.map_err(AuthorizeError::into_error)?;
    if let Some(jkt) = proof_jkt {
        if req.dpop_jkt.as_ref().is_some_and(|j| *j != jkt) {
            return Err(OAuthError::new(
                ErrorCode::InvalidDpopProof,
                "dpop_jkt does not match the key of the DPoP proof",
            ));
        }
        req.dpop_jkt = Some(jkt);
    }
    let now = cx.now();
    let id = format!("par_{}", portcullis_domain::secret::random_id(24));
    let stored = PendingAuthorization {
        id: id.clone(),
        payload: serde_json::to_string(&Pushed { pushed: req }).map_err(internal)?,
        created_at: now,
        expires_at: now + PUSHED_REQUEST_TTL,
    };
    cx.insert_pending(&stored).await.map_err(internal)?;
    Ok((format!("{REQUEST_URI_PREFIX}{id}"), PUSHED_REQUEST_TTL.whole_seconds()))
}

/// The pushed request a `request_uri` names, taken (single use), if `client_id` pushed it.
async fn take_pushed<S: Store>(cx: &Cx<S>, p: &Params) -> Result<AuthorizationRequest, AuthorizeError> {
    let bad = || {
        AuthorizeError::Page(OAuthError::invalid_request(
            "the request_uri is invalid, expired or already used",
        ))
    };
    let client_id = p.require("client_id")?;
    let uri = p.get("request_uri").unwrap_or_default();
    let Some(id) = uri.strip_prefix(REQUEST_URI_PREFIX).filter(|id| id.starts_with("par_")) else {
        return Err(bad());
    };
    // Only the client that pushed it may use it (checked before it is spent, so nobody else can
    // burn it), once.
    let Some(stored) = cx.pending(id).await.map_err(internal)? else { return Err(bad()) };
    let Ok(Pushed { pushed }) = serde_json::from_str::<Pushed>(&stored.payload) else { return Err(bad()) };
    if pushed.client_id.as_str() != client_id {
        return Err(bad());
    }
    if cx.take_pending(id).await.map_err(internal)?.is_none() {
        return Err(bad());
    }
    Ok(pushed)
}

impl From<OAuthError> for AuthorizeError {
    fn from(e: OAuthError) -> Self {
        Self::Page(e)
    }
}

/// What the browser does next.
#[derive(Debug, PartialEq)]
pub enum Next {
    /// Sign in, then continue with the pending request.
    Login { pending: String },
    /// Show the consent page for the pending request.
    Consent { pending: String },
    /// Go back to the client (with a code, or with an error).
    Redirect(String),
}

/// The error redirect for a validated request: `error`, `error_description`, `state`, `iss`.
pub fn error_redirect(issuer: &str, redirect_uri: &str, state: Option<&str>, e: &OAuthError) -> String {
    let mut p: Vec<(&str, &str)> = vec![("error", e.code.as_str())];
    if let Some(d) = &e.description {
        p.push(("error_description", d));
    }
    if let Some(s) = state {
        p.push(("state", s));
    }
    p.push(("iss", issuer));
    append_query(redirect_uri, &p)
}

/// Handles `GET /oauth2/authorize` for the browser's current session (if any).
pub async fn start<S: Store>(
    cx: &Cx<S>,
    params: &Params,
    session: Option<&Session>,
) -> Result<Next, AuthorizeError> {
    let req = validate(cx, params).await?;
    let redirect_err = |e: OAuthError| {
        AuthorizeError::Redirect(error_redirect(
            &cx.settings.issuer,
            &req.redirect_uri,
            req.state.as_deref(),
            &e,
        ))
    };

    if req.prompt.none {
        // OpenID Connect Core §3.1.2.1: never show a page.
        let Some(session) = session else {
            return Err(redirect_err(OAuthError::new(ErrorCode::LoginRequired, "the user is not signed in")));
        };
        return match consent::remembered(cx, &req, session).await.map_err(redirect_err)? {
            Some(url) => Ok(Next::Redirect(url)),
            None => Err(redirect_err(OAuthError::new(
                ErrorCode::ConsentRequired,
                "the user has not consented to this request",
            ))),
        };
    }

    if let Some(session) = session.filter(|_| !req.prompt.login)
        && !req.prompt.consent
        && let Some(url) = consent::remembered(cx, &req, session).await.map_err(redirect_err)?
    {
        return Ok(Next::Redirect(url));
    }

    let pending = store_pending(cx, &req).await.map_err(redirect_err)?;
    match session {
        Some(_) if !req.prompt.login => Ok(Next::Consent { pending }),
        _ => Ok(Next::Login { pending }),
    }
}

async fn store_pending<S: Store>(cx: &Cx<S>, req: &AuthorizationRequest) -> Result<String, OAuthError> {
    let now = cx.now();
    let p = PendingAuthorization {
        id: portcullis_domain::secret::random_id(24),
        payload: serde_json::to_string(req).map_err(internal)?,
        created_at: now,
        expires_at: now + cx.settings.authorization_request_ttl,
    };
    cx.insert_pending(&p).await.map_err(internal)?;
    Ok(p.id)
}

/// Validates an authorization request: either a `request_uri` of a pushed request (RFC 9126 §4,
/// whose parameters are the only ones used) or the parameters themselves.
pub async fn validate<S: Store>(cx: &Cx<S>, p: &Params) -> Result<AuthorizationRequest, AuthorizeError> {
    if p.has("request_uri") {
        return take_pushed(cx, p).await;
    }
    check(cx, p, false).await
}

/// Checks an authorization request's parameters; `pushed` when they came to the PAR endpoint.
async fn check<S: Store>(
    cx: &Cx<S>,
    p: &Params,
    pushed: bool,
) -> Result<AuthorizationRequest, AuthorizeError> {
    // 1. The client. Errors here are shown, never redirected.
    for name in ["client_id", "redirect_uri"] {
        if p.is_repeated(name) {
            return Err(AuthorizeError::Page(OAuthError::invalid_request(format!(
                "the {name} parameter was sent more than once"
            ))));
        }
    }
    let client_id = p.require("client_id")?;
    // An https client_id is resolved from its metadata document (fetched when new or stale).
    let client = super::client_metadata::load(cx, client_id)
        .await?
        .ok_or_else(|| OAuthError::invalid_request("the client_id is not registered here"))?;

    // 2. The redirect URI: exact string match (RFC 9700 §2.1), loopback port freedom only for
    //    public native clients (RFC 8252 §7.3).
    let (redirect_uri, explicit) = match p.get("redirect_uri") {
        Some(presented) => {
            let native = client.is_public();
            let ok = client
                .redirect_uris
                .iter()
                .any(|r| r.matches(presented, native && r.kind() == RedirectKind::Loopback));
            if !ok {
                return Err(AuthorizeError::Page(OAuthError::invalid_request(
                    "the redirect_uri does not match any URI registered for this client",
                )));
            }
            (presented.to_owned(), true)
        }
        None => match client.redirect_uris.as_slice() {
            [only] => (only.to_string(), false),
            [] => {
                return Err(AuthorizeError::Page(OAuthError::unauthorized_client(
                    "this client has no redirect URI registered",
                )));
            }
            _ => {
                return Err(AuthorizeError::Page(OAuthError::invalid_request(
                    "redirect_uri is required: this client registered several",
                )));
            }
        },
    };

    // 3. From here on errors are redirected to the client.
    let state = p.get("state").map(str::to_owned);
    let redirect_err = |e: OAuthError| AuthorizeError::Invalid {
        redirect: error_redirect(&cx.settings.issuer, &redirect_uri, state.as_deref(), &e),
        error: e,
    };
    if p.is_repeated("state") {
        // The state is ambiguous, so none is echoed.
        let e = OAuthError::invalid_request("the state parameter was sent more than once");
        return Err(AuthorizeError::Invalid {
            redirect: error_redirect(&cx.settings.issuer, &redirect_uri, None, &e),
            error: e,
        });
    }
    // RFC 9126 §5, §6: pushed requests may be required, of every client or of this one.
    if !pushed && (cx.settings.require_pushed_requests || client.require_pushed_requests) {
        return Err(redirect_err(OAuthError::invalid_request(
            "this client must push its authorization requests (RFC 9126): use the PAR endpoint",
        )));
    }
    p.reject_repeated().map_err(redirect_err)?;
    if state.as_ref().is_some_and(|s| s.len() > 2048) {
        return Err(redirect_err(OAuthError::invalid_request("state is longer than 2048 characters")));
    }

    if p.has("request") {
        return Err(redirect_err(OAuthError::new(
            ErrorCode::RequestNotSupported,
            "request objects are not supported",
        )));
    }
    match p.get("response_type") {
        None => return Err(redirect_err(OAuthError::invalid_request("response_type is missing"))),
        Some("code") => {}
        Some(_) => {
            return Err(redirect_err(OAuthError::new(
                ErrorCode::UnsupportedResponseType,
                "only response_type=code is supported",
            )));
        }
    }
    if let Some(mode) = p.get("response_mode")
        && mode != "query"
    {
        return Err(redirect_err(OAuthError::invalid_request("only response_mode=query is supported")));
    }
    if !client.allows_grant(GRANT_AUTHORIZATION_CODE) {
        return Err(redirect_err(OAuthError::unauthorized_client(
            "this client may not use the authorization code grant",
        )));
    }

    // PKCE (RFC 7636 §4.4.1; OAuth 2.1 §4.1.1): S256 is required of every client.
    let Some(code_challenge) = p.get("code_challenge") else {
        return Err(redirect_err(OAuthError::invalid_request("code_challenge is required (PKCE)")));
    };
    match p.get("code_challenge_method") {
        Some("S256") => {}
        Some("plain") => {
            return Err(redirect_err(OAuthError::invalid_request(
                "code_challenge_method plain is not allowed; use S256",
            )));
        }
        Some(_) => {
            return Err(redirect_err(OAuthError::invalid_request("code_challenge_method must be S256")));
        }
        None => {
            return Err(redirect_err(OAuthError::invalid_request(
                "code_challenge_method is required and must be S256",
            )));
        }
    }
    if !pkce::valid_challenge(code_challenge) {
        return Err(redirect_err(OAuthError::invalid_request(
            "code_challenge must be the 43-character base64url SHA-256 of the verifier",
        )));
    }

    // Scopes (RFC 6749 §3.3): unknown or :manage scopes are refused; an omitted scope means the
    // client's registered scopes.
    let requested = match p.get("scope") {
        Some(raw) => {
            let set =
                cx.catalogue.parse_known(raw).map_err(|e| redirect_err(OAuthError::invalid_scope(e)))?;
            if let Some(m) = set.iter().find(|s| s.is_manage()) {
                return Err(redirect_err(OAuthError::invalid_scope(format!(
                    "{m} can never be granted through OAuth"
                ))));
            }
            set
        }
        None => client.scopes.clone(),
    };
    let scopes = requested.intersection(&client.scopes);
    if scopes.is_empty() {
        return Err(redirect_err(OAuthError::invalid_scope(
            "none of the requested scopes is allowed for this client",
        )));
    }

    // RFC 8707 §2: unknown resources are `invalid_target`, sent back to the client.
    let resources = super::resource::requested(&cx.settings, &p.all("resource")).map_err(redirect_err)?;
    let prompt = parse_prompt(p.get("prompt")).map_err(redirect_err)?;
    let nonce = p.get("nonce").map(str::to_owned);
    if nonce.as_ref().is_some_and(|n| n.len() > 512) {
        return Err(redirect_err(OAuthError::invalid_request("nonce is longer than 512 characters")));
    }
    let dpop_jkt = p.get("dpop_jkt").map(super::dpop::parse_jkt).transpose().map_err(redirect_err)?;

    Ok(AuthorizationRequest {
        client_id: client.id.clone(),
        redirect_uri,
        redirect_uri_explicit: explicit,
        scopes,
        state,
        code_challenge: code_challenge.to_owned(),
        nonce,
        prompt,
        resources,
        dpop_jkt,
    })
}

/// OpenID Connect Core §3.1.2.1: `none` must stand alone; `select_account` is treated like
/// `consent` (the workspace choice is on the consent page); unknown values are ignored.
fn parse_prompt(raw: Option<&str>) -> Result<Prompt, OAuthError> {
    let mut p = Prompt::default();
    let Some(raw) = raw else { return Ok(p) };
    let values: Vec<&str> = raw.split(' ').filter(|v| !v.is_empty()).collect();
    for v in &values {
        match *v {
            "none" => p.none = true,
            "login" => p.login = true,
            "consent" | "select_account" => p.consent = true,
            _ => {}
        }
    }
    if p.none && values.len() > 1 {
        return Err(OAuthError::invalid_request("prompt=none cannot be combined with other values"));
    }
    Ok(p)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prompt_rules() {
        assert_eq!(parse_prompt(None).unwrap(), Prompt::default());
        assert!(parse_prompt(Some("consent")).unwrap().consent);
        assert!(parse_prompt(Some("login consent")).unwrap().login);
        assert!(parse_prompt(Some("none")).unwrap().none);
        assert!(parse_prompt(Some("none consent")).is_err());
        assert_eq!(parse_prompt(Some("whatever")).unwrap(), Prompt::default());
    }

    #[test]
    fn error_redirect_carries_state_and_iss() {
        let url = error_redirect(
            "https://auth.example",
            "https://app.example/cb?x=1",
            Some("s t"),
            &OAuthError::access_denied("no"),
        );
        assert_eq!(
            url,
            "https://app.example/cb?x=1&error=access_denied&error_description=no&state=s+t&iss=https%3A%2F%2Fauth.example"
        );
    }
}
