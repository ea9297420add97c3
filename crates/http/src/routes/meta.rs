//! Discovery (RFC 8414, OpenID Connect Discovery), the JWKS, userinfo and the health check.

use crate::paths;
use crate::responses::{bearer_error, no_store_json};
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use portcullis_core::Cx;
use portcullis_core::oauth::{discovery, userinfo};
use portcullis_store::Store;

fn public_json(body: String, max_age: u32) -> Response {
    let mut r = (StatusCode::OK, body).into_response();
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    if let Ok(v) = HeaderValue::from_str(&format!("public, max-age={max_age}")) {
        h.insert(header::CACHE_CONTROL, v);
    }
    r
}

/// A public JSON document (RFC 9728 metadata), cacheable for an hour.
pub fn public_document(v: &serde_json::Value) -> Response {
    public_json(v.to_string(), 3600)
}

/// Both metadata paths serve the same document.
pub async fn metadata<S: Store>(State(cx): State<Cx<S>>) -> Response {
    let doc = discovery::metadata(&cx.settings, &cx.catalogue, paths::endpoints(&cx.settings.issuer));
    public_json(serde_json::to_string(&doc).expect("metadata serialises"), 300)
}

/// The public keys. Cached briefly: a new key is published before it signs (see the README).
/// A (throttled) reload first, so a key rotated by another process is published within seconds.
pub async fn jwks<S: Store>(State(cx): State<Cx<S>>) -> Response {
    let now = cx.now();
    cx.keys.reload_throttled(&cx.store, now).await;
    public_json(serde_json::to_string(&cx.keys.jwks(now)).expect("jwks serialises"), 300)
}

/// `GET|POST /oauth2/userinfo` with `Authorization: Bearer …` (RFC 6750 §2.1).
pub async fn userinfo<S: Store>(State(cx): State<Cx<S>>, headers: HeaderMap) -> Response {
    let Some(token) = bearer(&headers) else { return bearer_error(None) };
    match userinfo::userinfo(&cx, token).await {
        Ok(info) => no_store_json(StatusCode::OK, serde_json::to_string(&info).expect("serialises")),
        Err(e) => bearer_error(Some(&e)),
    }
}

/// The token of an `Authorization: Bearer` header.
pub fn bearer(headers: &HeaderMap) -> Option<&str> {
    let v = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = v.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim()).filter(|t| !t.is_empty())
}

pub async fn healthz<S: Store>(State(cx): State<Cx<S>>) -> Response {
    match cx.store.ping().await {
        Ok(()) => public_json(r#"{"status":"ok"}"#.into(), 0),
        Err(e) => {
            tracing::error!(error = %e, "health check failed");
            let mut r = (StatusCode::SERVICE_UNAVAILABLE, r#"{"status":"unavailable"}"#).into_response();
            r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
            r
        }
    }
}
