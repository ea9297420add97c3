//! Dynamic client registration: `POST /oauth2/register` (RFC 7591) and the client
//! configuration endpoint `GET|PUT|DELETE /oauth2/register/{client_id}` (RFC 7592).
//!
//! The per-address rate limit lives here because the limiter (in-process, or shared in Redis)
//! belongs to the guard; an identical retry is answered before it is charged.

use crate::paths;
use crate::responses::{bearer_error, no_store_json, oauth_error};
use axum::Extension;
use axum::body::Body;
use axum::extract::{ConnectInfo, OriginalUri, Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use portcullis_core::Cx;
use portcullis_core::oauth::registration::{self, INITIAL_ACCESS_SCOPE, Registered, RegistrationMode};
use portcullis_guard::{Budget, Guard, Rejection, bearer};
use portcullis_proto::{ErrorCode, OAuthError};
use portcullis_store::Store;
use std::net::SocketAddr;

/// Client metadata is small; anything larger is not a registration.
const BODY_LIMIT: usize = 16 * 1024;

fn client_uri<S: Store>(cx: &Cx<S>, client_id: &str) -> String {
    format!("{}/{client_id}", paths::url(&cx.settings.issuer, paths::REGISTER))
}

fn registered<S: Store>(cx: &Cx<S>, status: StatusCode, r: &Registered) -> Response {
    no_store_json(status, r.to_json(&client_uri(cx, r.client.id.as_str())).to_string())
}

async fn json_body(headers: &HeaderMap, body: Body) -> Result<serde_json::Value, OAuthError> {
    let bad = |why: &'static str| OAuthError::new(ErrorCode::InvalidClientMetadata, why);
    let ct = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    if !ct.split(';').next().is_some_and(|t| t.trim().eq_ignore_ascii_case("application/json")) {
        return Err(bad("the request must be application/json (RFC 7591 §3.1)"));
    }
    let bytes = axum::body::to_bytes(body, BODY_LIMIT).await.map_err(|_| bad("the metadata is too large"))?;
    serde_json::from_slice(&bytes).map_err(|_| bad("the request body is not valid JSON"))
}

/// `POST /oauth2/register`
pub async fn register<S: Store>(
    State(cx): State<Cx<S>>,
    Extension(guard): Extension<Guard<S>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    OriginalUri(uri): OriginalUri,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let policy = &cx.settings.registration;
    if policy.mode == RegistrationMode::InitialAccessToken {
        // RFC 7591 §3: the initial access token is an API key or service token with apps:manage.
        let call = portcullis_guard::Call { method: "POST", path: uri.path(), headers: &headers };
        match guard.authenticate(&call, peer.ip()).await {
            Ok(p) if p.has(INITIAL_ACCESS_SCOPE) => {}
            Ok(_) => {
                return bearer_error(Some(&OAuthError::new(
                    ErrorCode::InsufficientScope,
                    "the initial access token must hold apps:manage",
                )));
            }
            Err(Rejection::Missing) => return bearer_error(None),
            Err(Rejection::Internal) => return oauth_error(&OAuthError::server_error()),
            Err(_) => {
                return bearer_error(Some(&OAuthError::new(
                    ErrorCode::InvalidToken,
                    "the initial access token is invalid",
                )));
            }
        }
    }
    let body = match json_body(&headers, body).await {
        Ok(b) => b,
        Err(e) => return oauth_error(&e),
    };
    let meta = match registration::check(&cx, &body) {
        Ok(m) => m,
        Err(e) => return oauth_error(&e),
    };
    let source =
        portcullis_guard::client_ip::client_ip(&cx.settings.trusted_proxies, peer.ip(), &headers).to_string();
    match registration::find_duplicate(&cx, &meta, &source).await {
        Ok(Some(existing)) => return registered(&cx, StatusCode::CREATED, &existing),
        Ok(None) => {}
        Err(e) => return oauth_error(&e),
    }
    let budget =
        Budget { bucket: format!("register:{source}"), limit: policy.rate_limit, policy: "registration" };
    if let Some(d) = guard.charge_budget(budget).await
        && !d.allowed
    {
        let retry = d.retry_after_secs.unwrap_or(d.window_secs).max(1);
        let e = OAuthError::new(
            ErrorCode::TemporarilyUnavailable,
            format!("too many registrations from this address; retry in {retry} s"),
        );
        let mut r = no_store_json(StatusCode::TOO_MANY_REQUESTS, e.to_json());
        if let Ok(v) = HeaderValue::from_str(&retry.to_string()) {
            r.headers_mut().insert(header::RETRY_AFTER, v);
        }
        return r;
    }
    match registration::create(&cx, meta, &source).await {
        Ok(r) => registered(&cx, StatusCode::CREATED, &r),
        Err(e) => oauth_error(&e),
    }
}

fn management_error(e: &OAuthError) -> Response {
    if e.code == ErrorCode::InvalidToken { bearer_error(Some(e)) } else { oauth_error(e) }
}

/// `GET /oauth2/register/{client_id}` (RFC 7592 §2.1)
pub async fn read<S: Store>(State(cx): State<Cx<S>>, Path(id): Path<String>, headers: HeaderMap) -> Response {
    // The registration access token, or the RFC 6750 challenge.
    let Some(t) = bearer(&headers) else { return bearer_error(None) };
    match registration::read(&cx, &id, t).await {
        Ok(r) => registered(&cx, StatusCode::OK, &r),
        Err(e) => management_error(&e),
    }
}

/// `PUT /oauth2/register/{client_id}` (RFC 7592 §2.2)
pub async fn update<S: Store>(
    State(cx): State<Cx<S>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    // The registration access token, or the RFC 6750 challenge.
    let Some(t) = bearer(&headers) else { return bearer_error(None) };
    // The token is checked before the body is looked at.
    if let Err(e) = registration::authenticate(&cx, &id, t).await {
        return management_error(&e);
    }
    let body = match json_body(&headers, body).await {
        Ok(b) => b,
        Err(e) => return oauth_error(&e),
    };
    match registration::update(&cx, &id, t, &body).await {
        Ok(r) => registered(&cx, StatusCode::OK, &r),
        Err(e) => management_error(&e),
    }
}

/// `DELETE /oauth2/register/{client_id}` (RFC 7592 §2.3)
pub async fn delete<S: Store>(
    State(cx): State<Cx<S>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    // The registration access token, or the RFC 6750 challenge.
    let Some(t) = bearer(&headers) else { return bearer_error(None) };
    match registration::delete(&cx, &id, t).await {
        Ok(()) => {
            let mut r = StatusCode::NO_CONTENT.into_response();
            r.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            r
        }
        Err(e) => management_error(&e),
    }
}
